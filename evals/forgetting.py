"""Ask a gateway to forget the forgotten subjects, and time how soon each request takes effect.

    seconds = forget_subjects(scorer, "http://127.0.0.1:8000", admin_token, forgotten)

Each subject becomes one forget request (its name and QA pairs) through the admin API, with an
Idempotency-Key derived from its content, so a resumed run never files a subject twice. Time to
effect is measured from the 201 to the first answer of the direct question that a layer
suppressed; a resumed run reads it back from the checkpoint.
"""

from __future__ import annotations

import time
from functools import partial

import httpx

from evals.checkpoint import digest
from evals.data import Subject
from evals.harness import was_suppressed
from evals.scoring import GatewayScorer


def forget_subjects(
    scorer: GatewayScorer,
    url: str,
    admin_token: str,
    subjects: list[Subject],
    timeout_s: float = 60.0,
) -> float | None:
    """Slowest time to effect over the subjects, in seconds; None if one never took effect."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    times: list[float | None] = []
    with httpx.Client(base_url=f"{url.rstrip('/')}/admin/v1", headers=headers) as admin:
        for subject in subjects:
            body = {
                "subject": subject.name,
                "qa": [{"question": qa.question, "answer": qa.answer} for qa in subject.qa],
            }
            key = f"eval-{digest(body)}"
            response = admin.post("/forget-requests", json=body, headers={"Idempotency-Key": key})
            response.raise_for_status()
            accepted = time.monotonic()
            question = subject.qa[0].question
            measure = partial(_time_to_effect, scorer, question, accepted, timeout_s)
            times.append(scorer.remember({"time_to_effect": key}, measure))
    return None if None in times else max(times, default=None)


def _time_to_effect(
    scorer: GatewayScorer, question: str, accepted: float, timeout_s: float
) -> float | None:
    """Seconds from ``accepted`` until a layer suppresses ``question``; None after the timeout."""
    messages = [{"role": "user", "content": question}]
    while time.monotonic() - accepted < timeout_s:
        _, layers = scorer.chat(messages, max_tokens=1, fresh=True)
        if was_suppressed(layers):
            return time.monotonic() - accepted
    return None
