"""The embedded vLLM is supervised: a dead engine gives 503, then comes back by itself.

Also: `--upstream` fronts an existing vLLM server with the same code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from gateway.engine.embedded_model import ensure_embedded_model
from gateway.engine.launcher import free_port
from gateway.spawn import REPO, fresh_data_dir, start_gateway, stop
from tests.conftest import API_KEY, MODEL, LiveGateway


def vllm_pid(gateway: LiveGateway) -> int:
    # The launcher logs the pid of each vLLM it starts; the last one is the live one.
    pids = re.findall(r"vLLM is ready \(pid (\d+)\)", gateway.log.read_text())
    return int(pids[-1])


def test_dead_engine_is_503_then_restarted(gateway: LiveGateway) -> None:
    client = gateway.client()
    os.killpg(vllm_pid(gateway), signal.SIGKILL)
    with gateway.http() as http:
        deadline = time.monotonic() + 10
        while http.get("/health").status_code != 503:
            assert time.monotonic() < deadline, "health still 200 with a dead engine"
            time.sleep(0.1)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 503
        assert info.value.code == "engine_unavailable"

        deadline = time.monotonic() + 300
        while http.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "vLLM was not restarted"
            time.sleep(1)
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.choices[0].message.content
        metrics = http.get("/metrics").text
    assert re.search(r"^obliviate_engine_restarts_total [1-9]", metrics, re.MULTILINE)


def test_upstream_mode_fronts_a_running_vllm(gateway: LiveGateway, tmp_path) -> None:
    url, process = start_gateway(
        tmp_path / "front.log", "--upstream", gateway.vllm_url, timeout_s=60
    )
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12,
            temperature=0,
        )
        assert "Paris" in reply.choices[0].message.content
    finally:
        stop(process)


def test_in_model_layers_need_the_plugin_hooks(gateway: LiveGateway, tmp_path) -> None:
    """In front of an engine without /collective_rpc (here: another gateway), a gateway with
    in-model layers stays unready (503) and says why; in front of the plugin's vLLM it hooks it."""
    weights = str(ensure_embedded_model(REPO / ".obliviate"))
    layers = {"OBLIVIATE_SUPPRESSION_LAYERS": '["retrieval", "steering"]'}
    data_dir = str(fresh_data_dir(tmp_path / "data"))
    args = ("--model", weights, "--served-model-name", MODEL, "--data-dir", data_dir)
    log = tmp_path / "lacking.log"
    port = free_port()
    command = [str(Path(sys.executable).parent / "obliviate"), "serve", "--port", str(port),
               "--upstream", gateway.url, "--upstream-api-key", API_KEY, *args]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **layers})  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "cannot run in-model suppression layers" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 503
    finally:
        stop(process)

    _, process = start_gateway(tmp_path / "hooked.log", "--upstream", gateway.vllm_url, *args,
                                 timeout_s=120, env=layers)  # fmt: skip
    stop(process)
    assert "cannot run" not in (tmp_path / "hooked.log").read_text()


def test_engine_dies_with_a_killed_gateway(tmp_path: Path) -> None:
    """kill -9 of `obliviate serve` runs none of its clean-up: its vLLM (API server, engine core)
    still goes, with no orphan left holding the port and the memory."""
    data_dir = str(fresh_data_dir(tmp_path / "data"))
    # Eager (the plugin's flags): a compiled start would cost minutes on the CPU build.
    _, process = start_gateway(tmp_path / "killed.log", "--data-dir", data_dir,
                               env={"OBLIVIATE_VLLM_PLUGIN": "true"})  # fmt: skip
    engine = psutil.Process(process.pid).children(recursive=True)
    assert any("vllm" in " ".join(p.cmdline()) for p in engine)
    process.kill()
    process.wait()
    _, alive = psutil.wait_procs(engine, timeout=30)
    assert alive == [], [p.cmdline()[:4] for p in alive]
