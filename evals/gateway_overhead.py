"""Benchmark: direct-to-vLLM vs through-the-gateway, side by side in one run.

    python -m evals.gateway_overhead                 # starts its own gateway + embedded vLLM
    python -m evals.gateway_overhead --rounds 4 --max-tokens 64
    python -m evals.gateway_overhead --forget-requests 10000 --data-dir .obliviate/bench-10k

Rounds alternate direct and gateway so drift on a noisy machine hits both alike. Per target it
prints p50/p99 latency of short (1-token, non-streaming) requests, and for streams of a fixed length
at concurrency 1 and 16: p50/p99 latency, p50 TTFT and summed output tokens/s; then the ratios, and
the gateway's own time from its `x-obliviate-overhead-ms` header and its process's CPU time per
output token. vLLM's CPU engine computes on every core, so on a small box the gateway's CPU is
taken from the engine's; ``OMP_NUM_THREADS=1`` leaves it one thread, and the other cores to the
API server, the gateway and the client, as a GPU host does. With ``--forget-requests`` the
gateway first enforces that many synthetic forget requests (unrelated to the prompt), so the full
default stack (retrieval, guard prompt) checks every request and output against them; a kept
``--data-dir`` keeps them for the next run.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import psutil
import typer

from evals.live_gateway import file_forget_requests, start_beside_vllm
from gateway.engine.embedded_model import EMBEDDED_MODEL_NAME
from gateway.openai.serving import OVERHEAD_HEADER
from gateway.spawn import stop

ADMIN = "overhead-admin"
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


@dataclass
class Samples:
    latency_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """The gateway process's own CPU time (not vLLM's) over these rounds."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


async def short_request(client: httpx.AsyncClient, samples: Samples) -> None:
    body = {"model": EMBEDDED_MODEL_NAME, "messages": PROMPT, "max_tokens": 1}
    start = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body)
    samples.latency_s.append(time.perf_counter() - start)
    response.raise_for_status()
    if OVERHEAD_HEADER in response.headers:
        samples.overhead_ms.append(float(response.headers[OVERHEAD_HEADER]))


async def stream_request(
    client: httpx.AsyncClient,
    samples: Samples,
    max_tokens: int,
    model: str = EMBEDDED_MODEL_NAME,
    extra: dict[str, Any] | None = None,
) -> None:
    """One stream of ``max_tokens`` tokens; ``extra`` fields replace the body's (messages,
    ``vllm_xargs``)."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,  # every request yields the same number of tokens
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    } | (extra or {})
    start = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first is None and _has_content(line):
                first = time.perf_counter() - start
    samples.latency_s.append(time.perf_counter() - start)
    samples.ttft_s.append(first if first is not None else samples.latency_s[-1])
    samples.tokens += max_tokens


def _has_content(line: str) -> bool:
    """An SSE line whose delta carries text (vLLM and the gateway space their JSON differently)."""
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


async def run_round(
    url: str,
    samples: Samples,
    concurrency: int,
    max_tokens: int,
    model: str = EMBEDDED_MODEL_NAME,
    extra: dict[str, Any] | None = None,
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        start = time.perf_counter()
        if concurrency == 0:
            for _ in range(10):
                await short_request(client, samples)
        else:
            await asyncio.gather(
                *(
                    stream_request(client, samples, max_tokens, model, extra)
                    for _ in range(concurrency)
                )
            )
        samples.wall_s += time.perf_counter() - start


def report(name: str, direct: Samples, gateway: Samples, streaming: bool) -> None:
    def row(label: str, d: float, g: float, unit: str) -> None:
        print(
            f"  {label:<16} direct {d:9.2f} {unit:<5} gateway {g:9.2f} {unit:<5} ratio {g / d:.3f}"
        )

    print(name)
    for q in (0.5, 0.99):
        row(f"latency p{round(q * 100)}", pct(direct.latency_s, q) * 1e3,
            pct(gateway.latency_s, q) * 1e3, "ms")  # fmt: skip
    if streaming:
        row("TTFT p50", pct(direct.ttft_s, 0.5) * 1e3, pct(gateway.ttft_s, 0.5) * 1e3, "ms")
        row(
            "output tokens/s",
            direct.tokens / direct.wall_s,
            gateway.tokens / gateway.wall_s,
            "tok/s",
        )
    else:
        added = (pct(gateway.latency_s, 0.5) - pct(direct.latency_s, 0.5)) * 1e3
        print(f"  added p50 latency  {added:+.2f} ms")
    if gateway.overhead_ms:
        print(f"  gateway's own time p50 {pct(gateway.overhead_ms, 0.5):.3f} ms (its header)")
    if streaming:
        print(f"  gateway's CPU per output token {gateway.cpu_s / gateway.tokens * 1e6:.0f} us "
              f"({gateway.cpu_s / gateway.wall_s:.1%} of a core while it streamed)")  # fmt: skip


async def paired_added_latency(url: str, direct_url: str, pairs: int) -> None:
    """Direct and gateway 1-token requests back to back; the median of their differences is the
    added latency, with drift between rounds cancelled out pair by pair."""
    diffs = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as via,
        httpx.AsyncClient(base_url=direct_url, timeout=None) as direct,
    ):
        for i in range(pairs):
            first, second = (direct, via) if i % 2 else (via, direct)  # alternate the order
            times = {}
            for client in (first, second):
                samples = Samples()
                await short_request(client, samples)
                times[client] = samples.latency_s[0]
            diffs.append(times[via] - times[direct])
    q1, median, q3 = np.percentile(diffs, [25, 50, 75]) * 1e3
    print(f"paired 1-token requests ({pairs} pairs): added latency median {median:+.2f} ms "
          f"(IQR {q1:+.2f} .. {q3:+.2f} ms)")  # fmt: skip


def main(
    rounds: Annotated[int, typer.Option(help="Alternating rounds per target and concurrency.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per streamed request.")] = 64,
    pairs: Annotated[int, typer.Option(help="Paired requests for the added latency.")] = 60,
    forget_requests: Annotated[int, typer.Option(help="Forget requests enforced.")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="The gateway's data dir (default: a new one).")
    ] = None,
) -> None:
    url, direct_url, process = start_beside_vllm(ADMIN, data_dir)
    try:
        start = time.monotonic()
        file_forget_requests(url, ADMIN, forget_requests)
        print(f"{forget_requests} forget requests enforced ({time.monotonic() - start:.0f} s)")
        asyncio.run(run_round(url, Samples(), 1, 8))  # warm-up of both paths
        asyncio.run(run_round(direct_url, Samples(), 1, 8))
        asyncio.run(paired_added_latency(url, direct_url, pairs))
        scenarios = [
            (0, "short requests (1 token, sequential)"),
            (1, f"streams, concurrency 1, {max_tokens} tokens"),
            (16, f"streams, concurrency 16, {max_tokens} tokens"),
        ]
        own = psutil.Process(process.pid)  # the gateway alone: vLLM runs in its children
        for concurrency, name in scenarios:
            direct, gateway = Samples(), Samples()
            for _ in range(rounds):
                asyncio.run(run_round(direct_url, direct, concurrency, max_tokens))
                before = sum(own.cpu_times()[:2])
                asyncio.run(run_round(url, gateway, concurrency, max_tokens))
                gateway.cpu_s += sum(own.cpu_times()[:2]) - before
            report(name, direct, gateway, streaming=concurrency > 0)
    finally:
        stop(process)


if __name__ == "__main__":
    typer.run(main)
