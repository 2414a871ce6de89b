"""One live gateway for the whole session: real `obliviate serve`, real vLLM CPU server, SmolLM2.

Starting vLLM costs ~40 s (plus ~50 s once to convert the embedded model), so every test that needs
the engine shares this process. Tests must leave it healthy.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from evals.live_gateway import REPO, start_gateway, stop
from gateway.engine.launcher import free_port

DATA_DIR = REPO / ".obliviate"
MODEL = "smollm2-135m-instruct"
API_KEY = "test-user-key"


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
