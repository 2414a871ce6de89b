"""Run a real `obliviate serve` as a child process and wait until it answers.

    url, process = start_gateway(Path("gw.log"), "--vllm-port", "8101")
    ...
    stop(process)

For what drives the gateway from outside, as its users do: the test suite, the benchmarks and the
durability soak.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.engine.embedded_model import ensure_embedded_model
from gateway.engine.launcher import free_port
from index.embedder import DEFAULT_CACHE

REPO = Path(__file__).resolve().parents[1]
NO_AUDITS = {"OBLIVIATE_AUDIT_INTERVAL_S": "0"}
"""Settings of a gateway started for a test or a benchmark of something else: its audits of
forget requests (``gateway.evidence.audit``) ask the engine in the background, a load of their
own."""
"""The source checkout (an editable install): children run there and share its ``.obliviate``."""


def fresh_data_dir(root: Path) -> Path:
    """A data directory sharing the repo's converted embedded model and embedder export (made
    once), with nothing else in it yet; made if missing."""
    embedded = ensure_embedded_model(REPO / ".obliviate")
    (root / "models").mkdir(parents=True, exist_ok=True)
    if not (root / "models" / embedded.name).exists():
        (root / "models" / embedded.name).symlink_to(embedded)
    (REPO / DEFAULT_CACHE).mkdir(parents=True, exist_ok=True)
    if not (root / "embedders").exists():
        (root / "embedders").symlink_to(REPO / DEFAULT_CACHE)
    return root


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    # One client: each new one builds an SSL context, a third of a core at this poll rate.
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log.read_text()[-4000:]
                raise RuntimeError(f"{url} exited ({process.returncode}):\n{tail}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s}s:\n{log.read_text()[-4000:]}")


def start_gateway(
    log: Path, *args: str, timeout_s: float = 900, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen]:
    """Run `obliviate serve ARGS` on a free port, logging to ``log``; return its URL and process
    once it answers.

    ``env`` adds variables (secrets such as OBLIVIATE_ADMIN_TOKEN are never flags)."""
    url, process = launch_gateway(log, *args, env=env)
    wait_healthy(url, process, timeout_s, log)
    return url, process


def launch_gateway(
    log: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen]:
    """Like ``start_gateway``, without waiting: a start is mostly imports on one thread, so two
    launched at once take little longer than one on a 2-core machine."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "obliviate"), "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    return url, process


def stop(process: subprocess.Popen) -> None:
    """Stop like Ctrl-C does (the gateway then stops its vLLM)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
