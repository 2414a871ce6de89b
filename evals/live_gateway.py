"""Start a real `obliviate serve` process and wait until it answers (benchmarks and tests).

url, process = start_gateway(Path("gw.log"), "--vllm-port", "8101")
...
stop(process)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.engine.launcher import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s}s:\n{log.read_text()[-4000:]}")


def start_gateway(
    log: Path, *args: str, timeout_s: float = 900, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen]:
    """Run `obliviate serve ARGS` on a free port, logging to ``log``; return its URL and process.

    ``env`` adds variables (secrets such as OBLIVIATE_ADMIN_TOKEN are never flags)."""
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
    wait_healthy(url, process, timeout_s, log)
    return url, process


def stop(process: subprocess.Popen) -> None:
    """Stop like Ctrl-C does (the gateway then stops its vLLM)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
