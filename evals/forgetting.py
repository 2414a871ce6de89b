"""Ask a gateway to forget the forgotten subjects, and time how soon each request takes effect.

    seconds = forget_subjects(scorer, "http://127.0.0.1:8000", admin_token, forgotten)

Each subject becomes one forget request (its name and QA pairs) through the admin API, with an
Idempotency-Key derived from its content, so a resumed run never files a subject twice. Time to
effect is measured from the 201 to the first answer of the direct question that a layer
suppressed, once the request's in-model layers are built as well (the record's
``in_model_ready``: before that, a stack that scores forgotten texts in-model withholds them, and
forget quality would mix both states); a resumed run reads it back from the checkpoint (keyed by
the request's content), without asking the gateway.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Literal

import httpx

from evals.checkpoint import digest
from evals.data import Subject
from evals.scoring import GatewayScorer

Content = Literal["qa", "documents", "subject"]
POLL_S = 1.0
"""Pause between time-to-effect probes: polling flat out starves the artifact build of a small
CPU host."""


def request_body(subject: Subject, content: Content = "qa") -> dict:
    """A subject as a forget request: its name and QA pairs, its name and its answers as
    documents, or its name alone (what a forget request should contain is an open question)."""
    body: dict = {"subject": subject.name}
    if content == "qa":
        body["qa"] = [{"question": qa.question, "answer": qa.answer} for qa in subject.qa]
    elif content == "documents":
        body["documents"] = [qa.answer for qa in subject.qa]
    return body


def file_request(admin: httpx.Client, body: dict) -> tuple[dict, float]:
    """POST the forget request (idempotent: a resumed run files it once); (record, accepted at
    ``time.monotonic()``)."""
    key = f"eval-{digest(body)}"
    response = admin.post("/forget-requests", json=body, headers={"Idempotency-Key": key})
    response.raise_for_status()
    return response.json(), time.monotonic()


def forget_subjects(
    scorer: GatewayScorer,
    url: str,
    admin_token: str,
    subjects: list[Subject],
    timeout_s: float = 900.0,
) -> float | None:
    """Slowest time to effect over the subjects, in seconds; None if one never took effect."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    times: list[float | None] = []
    with httpx.Client(base_url=f"{url.rstrip('/')}/admin/v1", headers=headers) as admin:
        for subject in subjects:
            body = request_body(subject)
            measure = partial(_file_and_time, admin, scorer, body, subject.qa[0].question,
                              timeout_s)  # fmt: skip
            # Keyed by the request's content: a rerun from the cache files nothing.
            times.append(scorer.remember({"time_to_effect": digest(body)}, measure))
    return None if None in times else max(times, default=None)


def _file_and_time(
    admin: httpx.Client, scorer: GatewayScorer, body: dict, question: str, timeout_s: float
) -> float | None:
    record, accepted = file_request(admin, body)
    return time_to_effect(scorer, admin, record["id"], question, accepted, timeout_s)


def time_to_effect(
    scorer: GatewayScorer,
    admin: httpx.Client,
    request_id: str,
    question: str,
    accepted: float,
    timeout_s: float,
) -> float | None:
    """Seconds from ``accepted`` until a layer acts on ``question`` and forget request
    ``request_id`` has its in-model layers built (when the gateway has any); None after the
    timeout."""
    messages = [{"role": "user", "content": question}]
    acted = False
    while time.monotonic() - accepted < timeout_s:
        if not acted:
            _, layers = scorer.chat(messages, max_tokens=1, fresh=True)
            acted = bool(layers)
        if acted and in_model_ready(admin, [request_id]):
            return time.monotonic() - accepted
        time.sleep(POLL_S)
    return None


def in_model_ready(admin: httpx.Client, request_ids: list[str]) -> bool:
    """Whether each of those forget requests has its in-model layers' files built (the record's
    ``in_model_ready``; true too when the gateway has no in-model layer)."""
    for request_id in request_ids:
        response = admin.get(f"/forget-requests/{request_id}")
        response.raise_for_status()
        if response.json().get("in_model_ready") is False:
            return False
    return True


def wait_in_model_ready(admin: httpx.Client, request_ids: list[str], timeout_s: float) -> float:
    """Seconds until ``in_model_ready``; TimeoutError after ``timeout_s``.

    Building takes about a minute on a fast 2-core box for the layers made from model states
    (steering, the assistant head), over 5 minutes on a slow one."""
    start = time.monotonic()
    while not in_model_ready(admin, request_ids):
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"in-model layers not built after {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - start
