"""Streaming under concurrency, and a client disconnect that frees the request in vLLM."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import MODEL, LiveGateway


def running_in_vllm(gateway: LiveGateway) -> float:
    metrics = httpx.get(f"{gateway.vllm_url}/metrics", timeout=5).text
    match = re.search(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", metrics, re.MULTILINE)
    assert match, "vLLM exports no num_requests_running"
    return float(match.group(1))


def test_sixteen_concurrent_streams_complete(gateway: LiveGateway) -> None:
    client = gateway.client()

    def one(i: int) -> tuple[str, str | None]:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Count from {i} to {i + 5}."}],
            max_tokens=24,
            stream=True,
        )
        parts, finish = [], None
        for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        return "".join(parts), finish

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert all(text and finish in ("stop", "length") for text, finish in results)


def test_disconnect_cancels_upstream_request(gateway: LiveGateway) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell a very long story about a dragon."}],
        "max_tokens": 1500,
        "min_tokens": 1500,
        "stream": True,
    }
    with gateway.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()
        for _ in range(6):
            next(lines)
        assert running_in_vllm(gateway) == 1
    # 1500 tokens take over a minute here; a freed request leaves vLLM within seconds.
    deadline = time.monotonic() + 20
    while running_in_vllm(gateway) > 0:
        assert time.monotonic() < deadline, "vLLM still generates for a client that left"
        time.sleep(0.25)
