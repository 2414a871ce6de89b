"""Load test: many concurrent streaming clients plus admin writes, gateway vs direct vLLM.

    python -m evals.load_test --clients 64 --duration 180 --forget-requests 10000

Starts a gateway + embedded vLLM (on a new data dir, or ``--data-dir`` to keep it), files
``--forget-requests`` synthetic forget requests, then runs the same closed-loop load twice for
``--duration`` seconds each: straight to vLLM, then through the gateway while an admin client adds
and revokes a forget request every second. Prints per target p50/p99 latency and TTFT, output
tokens/s and errors, and the gateway's resident memory (start, end, peak) sampled every 5 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from evals.gateway_overhead import Samples, pct, stream_request
from evals.live_gateway import file_forget_requests, start_beside_vllm
from gateway.spawn import stop

ADMIN = "load-admin"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def clients(url: str, count: int, duration_s: float, max_tokens: int) -> tuple[Samples, int]:
    samples, errors = Samples(), 0
    deadline = time.monotonic() + duration_s

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            try:
                await stream_request(client, samples, max_tokens)
            except httpx.HTTPError as exc:
                errors += 1
                print(f"  error from {url}: {exc!r}", flush=True)

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(count)))
        samples.wall_s = time.perf_counter() - start
    return samples, errors


async def admin_writes(url: str, duration_s: float) -> int:
    """Add then revoke one forget request per second; returns how many writes failed."""
    failed = 0
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=f"{url}/admin/v1", headers=headers, timeout=60) as admin:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            body = {"subject": f"Load Subject {time.monotonic_ns()}"}
            created = await admin.post("/forget-requests", json=body)
            ok = created.status_code == 201
            if ok:
                revoked = await admin.delete(f"/forget-requests/{created.json()['id']}")
                ok = revoked.status_code == 200
            failed += not ok
            await asyncio.sleep(1)
    return failed


async def memory(pid: int, duration_s: float, out: list[float]) -> None:
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        out.append(rss_mib(pid))
        await asyncio.sleep(5)


def main(
    clients_: Annotated[int, typer.Option("--clients", help="Concurrent streaming clients.")] = 64,
    duration: Annotated[float, typer.Option(help="Seconds of load per target.")] = 180,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per streamed request.")] = 32,
    forget_requests: Annotated[int, typer.Option(help="Forget requests filed first.")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="The gateway's data dir (default: a new one).")
    ] = None,
) -> None:
    url, direct_url, process = start_beside_vllm(ADMIN, data_dir)
    try:
        start = time.monotonic()
        file_forget_requests(url, ADMIN, forget_requests)
        print(f"{forget_requests} forget requests filed in {time.monotonic() - start:.0f} s")
        rss: list[float] = []
        direct, direct_errors = asyncio.run(clients(direct_url, clients_, duration, max_tokens))

        async def through_gateway() -> tuple[tuple[Samples, int], int, None]:
            return await asyncio.gather(
                clients(url, clients_, duration, max_tokens),
                admin_writes(url, duration),
                memory(process.pid, duration, rss),
            )

        (gateway, gateway_errors), write_errors, _ = asyncio.run(through_gateway())
        print(f"{clients_} streaming clients, {duration:.0f} s each, {max_tokens} tokens/request")
        for name, s, errors in (("direct", direct, direct_errors),
                                ("gateway", gateway, gateway_errors)):  # fmt: skip
            print(f"  {name:<8} requests {len(s.latency_s):5d}  errors {errors}  "
                  f"latency p50 {pct(s.latency_s, 0.5):6.2f} s p99 {pct(s.latency_s, 0.99):6.2f} s"
                  f"  TTFT p50 {pct(s.ttft_s, 0.5):6.2f} s p99 {pct(s.ttft_s, 0.99):6.2f} s  "
                  f"{s.tokens / s.wall_s:7.1f} tok/s")  # fmt: skip
        ratio = (gateway.tokens / gateway.wall_s) / (direct.tokens / direct.wall_s)
        print(f"  throughput ratio gateway/direct {ratio:.3f}; admin write errors {write_errors}")
        print(f"  gateway RSS MiB: start {rss[0]:.0f}, end {rss[-1]:.0f}, peak {max(rss):.0f}")
    finally:
        stop(process)


if __name__ == "__main__":
    typer.run(main)
