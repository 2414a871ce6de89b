"""Soak: kill -9 the gateway while forget requests are being posted, restart it, check the store.

    python -m evals.durability --trials 200 --upstream http://127.0.0.1:8101   # a running vLLM
    python -m evals.durability --trials 50                      # each gateway launches its vLLM

Each trial starts a gateway on one data directory (in front of ``--upstream``, or with a vLLM of
its own, eager, which the kill must take down with it: no process the gateway started may
outlive it by more than ``ORPHAN_GRACE_S``), posts forget
requests one after another (each with its own Idempotency-Key, as a careful client does) and kills
the gateway with SIGKILL after a random delay. A restarted gateway must then hold every request it
acknowledged (201) exactly once; the one in flight at the kill is retried with its key and must
not be duplicated. After the last trial every acknowledged subject must be blocked and the index
must hold exactly the stored requests (``obliviate_forget_index_requests`` in ``/metrics``).
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import typer

from evals.live_gateway import metric
from gateway.engine.launcher import free_port
from gateway.spawn import fresh_data_dir, start_gateway

ADMIN = "durability-admin"
ORPHAN_GRACE_S = 30.0
MODEL = "smollm2-135m-instruct"


@dataclass
class Soak:
    acked: dict[str, str] = field(default_factory=dict)
    """Idempotency key -> request id, for every 201 seen."""
    in_flight: list[str] = field(default_factory=list)
    """Keys posted without an answer (the gateway died first)."""
    posted: int = 0


def subject(key: str) -> str:
    return f"Quillon Varensk {key}"


def post(url: str, key: str) -> httpx.Response:
    body = {"subject": subject(key), "qa": [{"question": f"Who is {subject(key)}?",
            "answer": f"{subject(key)} is a lighthouse keeper."}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {ADMIN}", "Idempotency-Key": key}
    return httpx.post(f"{url}/admin/v1/forget-requests", json=body, headers=headers, timeout=30)


def trial(soak: Soak, data_dir: Path, upstream: str | None, log: Path, rng: random.Random) -> None:
    url, process = _start(data_dir, upstream, log)
    for key in soak.in_flight:  # the client retries what it never got an answer for
        response = post(url, key)
        _require(response.status_code in (200, 201), response.text)
        soak.acked[key] = response.json()["id"]
    soak.in_flight.clear()
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            key = f"k{soak.posted}"
            soak.posted += 1
            soak.in_flight.append(key)
            try:
                response = post(url, key)
            except httpx.HTTPError:
                return  # killed mid-request: stays in flight
            if response.status_code == 201:
                soak.acked[key] = response.json()["id"]
                soak.in_flight.remove(key)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(rng.uniform(0.2, 2.0))
    started = psutil.Process(process.pid).children(recursive=True)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stop.set()
    thread.join()
    _, alive = psutil.wait_procs(started, timeout=ORPHAN_GRACE_S)
    _require(not alive, f"orphans after kill -9: {[p.pid for p in alive]}")


def check(soak: Soak, data_dir: Path, upstream: str | None, log: Path) -> int:
    """Every acknowledged request exists once and is blocked; returns how many were checked."""
    url, process = _start(data_dir, upstream, log)
    try:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        stored, after = [], None
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            page = httpx.get(f"{url}/admin/v1/forget-requests", params=params,
                             headers=headers, timeout=30).json()  # fmt: skip
            stored += page["data"]
            if not page["has_more"]:
                break
            after = page["last_id"]
        subjects = [r["subject"] for r in stored]
        _require(len(subjects) == len(set(subjects)), "a forget request was stored twice")
        ids = {r["id"] for r in stored}
        _require(set(soak.acked.values()) <= ids, "an acknowledged forget request was lost")
        indexed = metric(url, "obliviate_forget_index_requests")
        _require(indexed == len(ids), "index and store differ")
        for key in soak.acked:
            body = {
                "model": MODEL,
                "max_tokens": 4,
                "messages": [{"role": "user", "content": f"Tell me about {subject(key)}."}],
            }
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
            _require("retrieval" in reply.headers["x-obliviate-layers"], f"{key} is not enforced")
        return len(soak.acked)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


class SoakFailed(Exception):
    """A guarantee the soak checks did not hold."""


def _require(holds: bool, failure: str) -> None:
    """A check that ``python -O`` keeps (a bare assert would vanish)."""
    if not holds:
        raise SoakFailed(failure)


def _start(data_dir: Path, upstream: str | None, log: Path):
    engine = (["--upstream", upstream, "--served-model-name", MODEL] if upstream
              else ["--vllm-port", str(free_port()), "--vllm-arg=--enforce-eager"])  # fmt: skip
    return start_gateway(
        log, *engine, "--data-dir", str(data_dir), timeout_s=600,
        env={"OBLIVIATE_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip


def run(trials: int, upstream: str | None, work: Path, seed: int = 0) -> Soak:
    soak = Soak()
    rng = random.Random(seed)
    data_dir = fresh_data_dir(work / "data")  # shares the embedder's export: starts are quick
    for number in range(trials):
        trial(soak, data_dir, upstream, work / f"trial-{number}.log", rng)
    check(soak, data_dir, upstream, work / "check.log")
    return soak


def main(
    upstream: Annotated[
        str | None, typer.Option(help="A running vLLM; default: each gateway launches its own.")
    ] = None,
    trials: Annotated[int, typer.Option(help="Kills.")] = 200,
    seed: int = 0,
) -> None:
    work = Path(tempfile.mkdtemp())
    start = time.monotonic()
    soak = run(trials, upstream, work, seed)
    print(f"{trials} kills in {time.monotonic() - start:.0f} s: {soak.posted} posts, "
          f"{len(soak.acked)} acknowledged, all present once and enforced, no orphan")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
