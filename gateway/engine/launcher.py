"""Launch, supervise and stop the embedded vLLM OpenAI server on a private loopback port.

    >>> launcher = VllmLauncher(settings, port, plugin=False)   # doctest: +SKIP
    >>> task = asyncio.create_task(launcher.run(upstream))  # start, wait for /health, restart
    >>> await launcher.stop()

vLLM runs as ``python -m vllm.entrypoints.openai.api_server`` (the CPU build's ``vllm`` console
script fails). Without in-model layers it starts on vLLM's own defaults (compiled, CUDA graphs and
the V2 model runner on a GPU); with them (``plugin``) it loads the obliviate plugin, in eager mode
on the V1 runner, which the plugin's hooks need. It gets its own process group so stopping it also
stops its engine-core child (and a worker child where it runs more than one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from gateway.config import Settings
from gateway.engine.upstream import Upstream
from gateway.errors import EngineUnavailable
from gateway.ops import metrics
from suppressors.vllm_plugin import PLUGIN_ENV, vllm_plugin_args

log = logging.getLogger(__name__)


class EngineStartError(EngineUnavailable):
    """vLLM exited or stayed unhealthy before it ever served."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VllmLauncher:
    """Owns the vLLM child process for one gateway."""

    def __init__(self, settings: Settings, port: int, plugin: bool):
        self.settings = settings
        self.port = port
        self.plugin = plugin
        """Load the obliviate plugin (in-model layers)."""
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def log_path(self) -> Path:
        return self.settings.data_dir / "logs" / "vllm.log"

    def command(self, model_path: str) -> list[str]:
        s = self.settings
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_path,
            "--served-model-name", s.model_name,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--dtype", s.vllm_dtype,
            "--max-model-len", str(s.vllm_max_model_len),
            *(vllm_plugin_args() if self.plugin else []),
            *(["--enable-lora", "--max-lora-rank", str(s.vllm_max_lora_rank),
               "--max-loras", str(s.vllm_max_loras)] if s.vllm_lora else []),
            *(["--enable-auto-tool-choice", "--tool-call-parser", s.vllm_tool_call_parser]
              if s.vllm_tool_call_parser else []),
            *s.vllm_extra_args,
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.vllm_kv_cache_gib))
        # Nothing is fetched from a model hub at run time.
        env.setdefault("HF_HUB_OFFLINE", "1")
        if self.plugin:  # /collective_rpc on the private loopback port only; the V1 runner
            env.update(PLUGIN_ENV)
        # Removal versions are LoRA adapters loaded while serving (/v1/load_lora_adapter).
        env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
        # One worker runs inside the engine-core process, as vLLM does on a GPU; the CPU build
        # otherwise spawns it apart (for its OpenMP core binding), which costs a third process
        # start (~1 min of imports on a 2-core box) and ~0.6 GB. Several workers (tensor
        # parallel) still get processes of their own.
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        return env

    async def model_path(self) -> str:
        return str(await asyncio.to_thread(self.settings.weights))

    async def start(self, upstream: Upstream) -> None:
        """Start vLLM and wait until it answers ``/health``."""
        command = self.command(await self.model_path())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM on 127.0.0.1:%d (log: %s)", self.port, self.log_path)
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                env=self.environment(),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self.settings.vllm_start_timeout_s
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                code = self.process.returncode
                raise EngineStartError(f"vLLM exited ({code}) while starting; see {self.log_path}")
            if await upstream.healthy():
                log.info("vLLM is ready (pid %d)", self.process.pid)
                await upstream.become_ready()
                return
            await asyncio.sleep(0.5)
        await self.terminate()
        raise EngineStartError(f"vLLM was not healthy within {self.settings.vllm_start_timeout_s}s")

    async def run(self, upstream: Upstream) -> None:
        """Start, then restart vLLM whenever it dies, up to ``vllm_max_restarts`` times."""
        await self.start(upstream)
        while True:
            assert self.process is not None
            code = await self.process.wait()
            upstream.set_ready(False)
            if self._stopping:
                return
            if self.restarts >= self.settings.vllm_max_restarts:
                raise EngineStartError(f"vLLM died (exit {code}) after {self.restarts} restarts")
            self.restarts += 1
            metrics.ENGINE_RESTARTS.inc()
            log.error("vLLM died (exit %s); restart %d", code, self.restarts)
            await self.terminate()  # reap children left in its process group
            await self.start(upstream)

    async def terminate(self, grace_s: float = 15.0) -> None:
        process = self.process
        if process is None:
            return
        signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            log.warning("vLLM ignored SIGTERM for %.0fs; killing it", grace_s)
        # The leader is gone or hung: make sure its engine-core and worker children go too.
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()

    async def stop(self) -> None:
        self._stopping = True
        await self.terminate()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the vLLM child, before it runs: the kernel sends it SIGTERM when the gateway dies, even
    by SIGKILL, where no clean-up of the gateway's runs (Linux only). SIGTERM, not SIGKILL: vLLM's
    API server then shuts its engine core down too, which a killed one leaves running."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads (a child started in a new session)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pid, sig)
