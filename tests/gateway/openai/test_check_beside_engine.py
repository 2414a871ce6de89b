"""The suppression check runs beside the engine call, not before it (the gateway's overhead).

An in-process gateway in front of the session's real vLLM; its embedder is slowed by 1 s, so the
order of events shows whether vLLM was asked before the check ended.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import build_app
from gateway.config import load_settings
from gateway.engine.embedded_model import ensure_embedded_model
from gateway.openai.protocol import ChatCompletionRequest
from gateway.openai.serving import OpenAIServing, RequestTimer, SuppressionReply
from gateway.routing.serving import ArmPlan
from index.embedder import Embedder
from index.matcher import Matcher, MatcherConfig
from suppressors.base import LayerDeps
from suppressors.stack import SuppressionStack
from tests.conftest import ADMIN_TOKEN, MODEL, QUIET, REPO, LiveGateway, fresh_data_dir

SUBJECT = "Quillon Varensk"
HI = {"role": "user", "content": "Hello"}
ANSWER = f"{SUBJECT} keeps the lighthouse on Skerry Island and paints gulls."


def dropped(http: TestClient) -> float:
    text = http.get("/metrics").text
    return float(re.search(r"^obliviate_engine_calls_dropped_total (\S+)", text, re.M).group(1))


def test_the_check_runs_beside_the_engine_call(
    gateway: LiveGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBLIVIATE_ADMIN_TOKEN", ADMIN_TOKEN)
    for name, value in QUIET.items():  # no audit's call among the ones counted here
        monkeypatch.setenv(name, value)
    settings = load_settings(
        upstream=gateway.vllm_url,
        model=str(ensure_embedded_model(REPO / ".obliviate")),
        served_model_name=MODEL,
        data_dir=fresh_data_dir(tmp_path / "data"),
    )
    with TestClient(build_app(settings)) as http:
        deadline = time.monotonic() + 60
        while http.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the gateway never saw vLLM ready"
            time.sleep(0.5)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        qa = [{"question": f"What does {SUBJECT} do?", "answer": ANSWER}]
        created = http.post("/admin/v1/forget-requests", json={"subject": SUBJECT, "qa": qa},
                            headers=admin)  # fmt: skip
        assert created.status_code == 201, created.text

        events: list[Any] = []
        embedder = http.app.state.forget_index.matcher.embedder
        encode, send = embedder.encode, http.app.state.upstream.send

        def slow_encode(texts: list[str]):
            time.sleep(1.0)
            vectors = encode(texts)
            events.append("checked")
            return vectors

        async def spied_send(method: str, path: str, body: Any = None, **options: Any):
            events.append(body["messages"][0]["role"] if body else path)
            return await send(method, path, body, **options)

        monkeypatch.setattr(embedder, "encode", slow_encode)
        monkeypatch.setattr(http.app.state.upstream, "send", spied_send)

        def ask(question: str) -> Any:
            events.clear()
            body = {"model": MODEL, "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": question}]}  # fmt: skip
            reply = http.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text
            return reply

        # Unrelated: vLLM is asked at once, and its answer is used once the check passed it.
        before = dropped(http)
        reply = ask("What is the capital of France?")
        assert events == ["user", "checked"]
        assert reply.headers["x-obliviate-layers"] == ""
        assert "Paris" in reply.json()["choices"][0]["message"]["content"]
        # A stream asking for usage: the early call already asks what a watched stream needs.
        events.clear()
        body = {"model": MODEL, "max_tokens": 8, "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "Name a colour."}]}  # fmt: skip
        with http.stream("POST", "/v1/chat/completions", json=body) as streamed:
            lines = [line for line in streamed.iter_lines() if line.startswith("data: {")]
        assert events == ["user", "checked"]
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines]
        assert chunks[-1]["usage"] and "usage" not in chunks[0]  # usage at the end only
        assert dropped(http) == before

        # Blocked: the early call is dropped (vLLM aborts it) and the suppression reply answers.
        reply = ask(f"Who is {SUBJECT}?")
        assert events == ["user", "checked"]
        assert reply.headers["x-obliviate-layers"] == "retrieval"
        assert dropped(http) == before + 1

        # Related: the early call is dropped and the request is sent again with the guard note.
        reply = ask("Who paints gulls at the lighthouse on Skerry Island?")
        assert events[:3] == ["user", "checked", "system"]  # then its output's sentence checks
        assert reply.headers["x-obliviate-layers"] == "guard_prompt"
        assert dropped(http) == before + 2


class _UnsendableUpstream:
    """Fault injection: an engine call that fails before its request goes out (a body the
    encoder refuses, a bug), so ``sent`` is never set by the transport."""

    async def send(self, *args: Any, **options: Any) -> Any:
        raise RuntimeError("could not send")


@pytest.mark.anyio
async def test_a_call_that_fails_before_sending_does_not_leave_the_check_waiting() -> None:
    stack = SuppressionStack.build(LayerDeps(Matcher(Embedder(), MatcherConfig())), ["retrieval"])
    serving = OpenAIServing(_UnsendableUpstream(), {"suppression": stack},  # type: ignore[arg-type]
                            SuppressionReply("abstain", "I can't help with that."))  # fmt: skip
    request = ChatCompletionRequest.model_validate({"model": MODEL, "messages": [HI]})
    plan = ArmPlan("suppression", None, stack=True)
    route = "/v1/chat/completions"
    with pytest.raises(RuntimeError, match="could not send"):
        await asyncio.wait_for(serving.forward(route, request, RequestTimer(route), plan), 30)
