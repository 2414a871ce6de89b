"""One live gateway for the whole session: real `obliviate serve`, real vLLM CPU server, SmolLM2.

Starting vLLM costs 2-3 minutes on a slow 2-core box (plus ~50 s once to convert the embedded
model), so every test that needs the engine shares this process, or fronts its vLLM with a gateway
of its own (``--upstream``). Tests must leave it healthy. Removal tests share a second one, with
LoRA on, which starts beside the first.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from sqlalchemy import create_engine, text

from gateway.engine.embedded_model import ensure_embedded_model
from gateway.engine.launcher import free_port
from gateway.spawn import NO_AUDITS, REPO, fresh_data_dir, launch_gateway, stop, wait_healthy

MODEL = "smollm2-135m-instruct"
API_KEY = "test-user-key"
ADMIN_TOKEN = "test-admin-token"
TOFU = REPO / "evals" / "data" / "tofu"
QUIET = NO_AUDITS
"""Audits ask the engine in the background: on only where a test reads them, and short there."""
AUDITS = {"OBLIVIATE_AUDIT_INTERVAL_S": "0.5", "OBLIVIATE_AUDIT_PROBES": "6",
          "OBLIVIATE_AUDIT_BEST_OF": "2", "OBLIVIATE_AUDIT_MAX_TOKENS": "24"}  # fmt: skip


def tiny_llama(folder: Path) -> Path:
    """A seeded random 8-layer Llama with the embedded model's tokenizer (fast training tests)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model(REPO / ".obliviate"))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass
class LiveGateway:
    url: str
    vllm_url: str
    process: subprocess.Popen
    log: Path
    data_dir: Path
    fronts_another: bool

    def client(self, **kwargs: object) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, **kwargs)

    def http(self) -> httpx.Client:
        # httpx's 5 s default is shorter than a busy LoRA engine's queue on a slow 2-core box.
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/admin/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )

    def wait(self) -> LiveGateway:
        wait_healthy(self.url, self.process, 900, self.log)
        return self

    def stop(self) -> None:
        stop(self.process)
        if not self.fronts_another:
            # Stopping the gateway stops its vLLM with it.
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{self.vllm_url}/health", timeout=2)


def launch(
    root: Path,
    env: dict[str, str] | None = None,
    upstream: LiveGateway | None = None,
    args: tuple[str, ...] = (),
) -> LiveGateway:
    """A gateway on a fresh data directory under ``root``, started (``wait()`` for it): with a
    vLLM of its own, or in front of ``upstream``'s (no engine start, which is most of a start's
    minutes); ``args`` adds flags (``--model`` another model)."""
    data_dir = fresh_data_dir(root / "data")
    if upstream is None:
        vllm_port = free_port()
        vllm_url = f"http://127.0.0.1:{vllm_port}"
        engine = ["--vllm-port", str(vllm_port)]
    else:
        vllm_url = upstream.vllm_url
        weights = str(ensure_embedded_model(REPO / ".obliviate"))
        engine = ["--upstream", vllm_url, "--model", weights, "--served-model-name", MODEL]
    url, process = launch_gateway(
        root / "gateway.log",
        "--data-dir", str(data_dir),
        "--api-key", API_KEY,
        *engine,
        *args,
        env={"OBLIVIATE_ADMIN_TOKEN": ADMIN_TOKEN, **QUIET, **(env or {})},
    )  # fmt: skip
    return LiveGateway(url, vllm_url, process, root / "gateway.log", data_dir, upstream is not None)


@contextlib.contextmanager
def live_gateway(
    root: Path,
    env: dict[str, str] | None = None,
    upstream: LiveGateway | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[LiveGateway]:
    """``launch``, healthy, stopped on exit."""
    live = launch(root, env, upstream, args)
    try:
        yield live.wait()
    finally:
        live.stop()


def gateway_with_layers(name: str, layers: list[object]) -> object:
    """A module fixture: a gateway of its own (data directory, these suppression ``layers``) in
    front of the session gateway's vLLM. ``scoring = gateway_with_layers("scoring", LAYERS)``."""

    @pytest.fixture(scope="module")
    def fixture(
        gateway: LiveGateway, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[LiveGateway]:
        env = {"OBLIVIATE_SUPPRESSION_LAYERS": json.dumps(layers)}
        with live_gateway(tmp_path_factory.mktemp(name), env, upstream=gateway) as live:
            yield live

    return fixture


@pytest.fixture(scope="session")
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    # A gateway's start is mostly imports on one thread: when this run has LoRA tests too, their
    # gateway starts now, beside this one, on the other core.
    if any("lora_gateway" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("lora_launched")
    # Text-only itself, but gateways with in-model layers front its vLLM: it loads the plugin.
    env = {"OBLIVIATE_VLLM_PLUGIN": "true"}
    with live_gateway(tmp_path_factory.mktemp("gateway"), env) as live:
        yield live


@pytest.fixture(scope="session")
def lora_launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    # Text-only: its vLLM starts on vLLM's own defaults (compiled, no plugin).
    live = launch(tmp_path_factory.mktemp("lora"), {"OBLIVIATE_VLLM_LORA": "true", **AUDITS})
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def lora_gateway(lora_launched: LiveGateway) -> LiveGateway:
    """A second gateway, with LoRA on (``vllm_lora``), for removal jobs and model versions.

    Shared by the removal and console tests; each deletes the versions it made."""
    return lora_launched.wait()


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL server on loopback (Debian's package, which ``make setup``
    installs); ``stop`` and ``start`` make a database outage."""

    url: str
    """The server's URL, without a database name."""
    pg_ctl: list[str | Path]
    options: str

    def start(self) -> None:
        subprocess.run([*self.pg_ctl, "-o", self.options, "-w", "start"], check=True,
                       capture_output=True)  # fmt: skip

    def stop(self) -> None:
        subprocess.run([*self.pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    assert bins, "PostgreSQL is missing: `make setup` installs Debian's postgresql"
    root = Path(tempfile.mkdtemp(prefix="obliviate-pg-"))  # outside pytest's 0700 tmp folders
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")  # initdb refuses to run as root
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run([*as_postgres, bins[-1] / "initdb", "-D", root / "data", "-U", "obliviate", "-A", "trust"])
    pg_ctl = [*as_postgres, bins[-1] / "pg_ctl", "-D", root / "data", "-l", root / "log"]
    server = PostgresServer(f"postgresql+psycopg://obliviate@127.0.0.1:{port}", pg_ctl, options)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(postgres_server: PostgresServer) -> str:
    """The URL of the session's PostgreSQL server, without a database name."""
    return postgres_server.url


@pytest.fixture
def postgres_url(postgres: str) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(f"{postgres}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{postgres}/{name}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client(gateway: LiveGateway) -> OpenAI:
    return gateway.client()
