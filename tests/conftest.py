"""One live gateway for the whole session: real `obliviate serve`, real vLLM CPU server, SmolLM2.

Starting vLLM costs ~40 s (plus ~50 s once to convert the embedded model), so every test that needs
the engine shares this process. Tests must leave it healthy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / ".obliviate"
MODEL = "smollm2-135m-instruct"
API_KEY = "test-user-key"
START_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@dataclass
class LiveGateway:
    url: str
    vllm_url: str
    process: subprocess.Popen
    log: Path

    def client(self, **kwargs: object) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, **kwargs)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"})


def start_gateway(
    log: Path, *args: str, timeout_s: float = START_TIMEOUT_S
) -> tuple[str, subprocess.Popen]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "obliviate"), "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    wait_healthy(url, process, timeout_s, log)
    return url, process


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    vllm_port = free_port()
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    url, process = start_gateway(
        log, "--data-dir", str(DATA_DIR), "--api-key", API_KEY, "--vllm-port", str(vllm_port)
    )
    yield LiveGateway(url, f"http://127.0.0.1:{vllm_port}", process, log)
    stop(process)
    # Stopping the gateway stops vLLM with it.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{vllm_port}/health", timeout=2)


@pytest.fixture
def client(gateway: LiveGateway) -> OpenAI:
    return gateway.client()


os.environ.setdefault("HF_HUB_OFFLINE", "1")
