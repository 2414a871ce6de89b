"""Benchmark: the gateway alone at GPU speed, in front of a FAKE engine (``evals.fake_engine``)
that streams tokens as fast as they are read, side by side with that engine direct.

    python -m evals.relay_benchmark                                  # 0, 10^3 and 10^4 requests
    python -m evals.relay_benchmark --forget-requests 0,1000 --streams 64 --tokens 256

For each number of enforced forget requests (synthetic, unrelated to the streamed text; kept in
``--data-dir`` so a rerun resumes filing them) it prints: tokens per second relayed over
``--streams`` concurrent streams, direct and through the gateway with the output watch on (the
suppression arm) and off (the baseline arm, which an admin may pick), and the gateway's tokens
per second of its own CPU time (per core); then, at concurrency 1, the gateway's added time to
first token and added time per token (medians of paired direct/gateway streams).

The paired streams are paced (``--pace`` tokens per second each, faster than a GPU streams one
request): unpaced, the fake engine writes a whole stream in a few milliseconds on the cores the
gateway and the client share, and the pairs would measure that contention, not the gateway.
Paced, the added time per token is how much later the whole stream ends, over its tokens: the
engine's pauses hide the gateway's own work per token (its CPU cost is the per-core figure).
``--first-token-ms`` gives the paired streams a prefill (a GPU's takes milliseconds), which the
gateway's check of the conversation runs beside.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import psutil
import typer

from evals.fake_engine import FIRST_TOKEN_FIELD, MODEL, PACE_FIELD
from evals.gateway_overhead import Samples, stream_request
from evals.live_gateway import file_forget_requests
from gateway.engine.launcher import free_port
from gateway.spawn import NO_AUDITS, fresh_data_dir, start_gateway, stop

ADMIN = "relay-admin"


def start_engine() -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [sys.executable, "-m", "evals.fake_engine", "--port", str(port)]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return url, process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError("the fake engine did not start")


async def relay(url: str, streams: int, tokens: int, arm: str | None) -> tuple[float, Samples]:
    """Tokens per second over ``streams`` concurrent streams, and their samples."""
    headers = {"Authorization": f"Bearer {ADMIN}"} | ({"x-obliviate-arm": arm} if arm else {})
    samples = Samples()
    async with httpx.AsyncClient(base_url=url, timeout=None, headers=headers) as client:
        start = time.perf_counter()
        await asyncio.gather(
            *(stream_request(client, samples, tokens, model=MODEL) for _ in range(streams))
        )
        samples.wall_s = time.perf_counter() - start
    return samples.tokens / samples.wall_s, samples


async def paired(
    url: str, direct: str, tokens: int, pairs: int, pace: float, first_token_ms: float
) -> tuple[float, float]:
    """Median added TTFT and added time per token of single streams (ms)."""
    ttft, per_token = [], []
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=None, headers=headers) as via,
        httpx.AsyncClient(base_url=direct, timeout=None) as straight,
    ):
        for i in range(pairs):
            order = (straight, via) if i % 2 else (via, straight)
            got = {}
            for client in order:
                samples = Samples()
                fields = {PACE_FIELD: pace, FIRST_TOKEN_FIELD: first_token_ms}
                await stream_request(client, samples, tokens, MODEL, fields)
                got[client] = samples
            ttft.append(got[via].ttft_s[0] - got[straight].ttft_s[0])
            per_token.append((got[via].latency_s[0] - got[straight].latency_s[0]) / tokens)
    return float(np.median(ttft) * 1e3), float(np.median(per_token) * 1e3)


def measure(url: str, engine: str, process: psutil.Process, streams: int, tokens: int,
            pairs: int, pace: float, first_token_ms: float) -> None:  # fmt: skip
    asyncio.run(relay(url, 4, 16, None))  # warm-up
    direct, _ = asyncio.run(relay(engine, streams, tokens, None))
    cpu_s = {}
    rates = {}
    for arm in (None, "baseline"):
        before = sum(process.cpu_times()[:2])
        rates[arm], _ = asyncio.run(relay(url, streams, tokens, arm))
        cpu_s[arm] = sum(process.cpu_times()[:2]) - before
    watched, plain = rates[None], rates["baseline"]
    relayed = streams * tokens
    print(
        f"  {streams} streams x {tokens} tokens: direct {direct:8.0f} tok/s | gateway, watched "
        f"{watched:8.0f} tok/s ({watched / direct:.3f} of direct) | gateway, not watched "
        f"{plain:8.0f} tok/s ({plain / direct:.3f})"
    )
    print(f"  relay per core of the gateway's CPU time: watched {relayed / cpu_s[None]:8.0f} "
          f"tok/s | not watched {relayed / cpu_s['baseline']:8.0f} tok/s")  # fmt: skip
    ttft, per_token = asyncio.run(paired(url, engine, tokens, pairs, pace, first_token_ms))
    print(f"  concurrency 1, {pairs} pairs at {pace:.0f} tok/s, first token after "
          f"{first_token_ms:.0f} ms: added TTFT p50 {ttft:+.2f} ms, "
          f"added per token p50 {per_token:+.4f} ms")  # fmt: skip


def main(
    forget_requests: Annotated[str, typer.Option(help="Comma-separated counts.")] = "0,1000,10000",
    streams: Annotated[int, typer.Option(help="Concurrent streams.")] = 64,
    tokens: Annotated[int, typer.Option(help="Tokens per stream.")] = 256,
    pairs: Annotated[int, typer.Option(help="Paired single streams per count.")] = 40,
    pace: Annotated[float, typer.Option(help="Tokens per second of each paired stream.")] = 1000,
    first_token_ms: Annotated[
        float, typer.Option(help="The fake engine's prefill for each paired stream.")
    ] = 0.0,
    data_dir: Annotated[Path, typer.Option(help="Gateways' data dirs (resumable).")] = Path(
        ".obliviate/bench-relay"
    ),
) -> None:
    engine, engine_process = start_engine()
    try:
        for count in [int(c) for c in forget_requests.split(",")]:
            url, gateway = start_gateway(
                data_dir / f"gateway-{count}.log", "--upstream", engine,
                "--data-dir", str(fresh_data_dir(data_dir / str(count))),
                "--served-model-name", MODEL, env={"OBLIVIATE_ADMIN_TOKEN": ADMIN, **NO_AUDITS},
            )  # fmt: skip
            try:
                start = time.monotonic()
                file_forget_requests(url, ADMIN, count)
                print(f"{count} forget requests enforced ({time.monotonic() - start:.0f} s)")
                measure(url, engine, psutil.Process(gateway.pid), streams, tokens, pairs, pace,
                        first_token_ms)  # fmt: skip
            finally:
                stop(gateway)
    finally:
        engine_process.terminate()
        engine_process.wait()


if __name__ == "__main__":
    typer.run(main)
