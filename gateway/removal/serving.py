"""Removal jobs and model versions: validation, the one-at-a-time job runner, the adapter swap.

A job runs in its own process (``accelerate launch -m removal.worker``, with the accelerate config
of ``removal_accelerate``: here one CPU process at nice 10 on one torch thread, so serving keeps the
CPU it needs; on a GPU node one or several GPUs). The runner copies the worker's progress into
the job record; when the worker finishes, the new adapter is loaded into the running vLLM
*before* the version is recorded, so a version that exists can be served, and a failed job changes
nothing that is served. Requests already running keep the weights they started on: a version is a
new adapter name, never an overwrite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from gateway.config import Settings
from gateway.engine.launcher import signal_group
from gateway.engine.pool import Upstreams
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.removal.protocol import RemovalJobCreate
from index.store import REVOKED, ForgetRequest, ForgetStore
from removal.registry import (
    CANCELLED,
    FAILED,
    FINISHED,
    SUCCEEDED,
    ModelVersion,
    Registry,
    RemovalJob,
)

if TYPE_CHECKING:
    from removal.trainer import TrainSpec

log = logging.getLogger(__name__)
POLL_S = 0.5
LEASE_S = 30.0


def training_pairs(record: ForgetRequest) -> list[tuple[str, str]]:
    """What a removal method trains on: the request's QA pairs and documents."""
    return [(qa["question"], qa["answer"]) for qa in record.qa] + [
        ("", document) for document in record.documents
    ]


class RemovalService:
    def __init__(
        self, settings: Settings, store: ForgetStore, registry: Registry, upstream: Upstreams
    ):
        self.settings = settings
        self.store = store
        self.registry = registry
        self.upstream = upstream
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The runner's event loop: ``create_job`` runs in a worker thread and wakes it there."""
        self.process: asyncio.subprocess.Process | None = None
        self.running: str | None = None
        """The job this replica's runner follows."""
        self.runner = settings.replica
        self._recovered = False

    @property
    def jobs_dir(self) -> Path:
        return self.settings.shared / "jobs"

    @property
    def versions_dir(self) -> Path:
        return self.settings.shared / "versions"

    # Jobs

    def create_job(self, body: RemovalJobCreate) -> RemovalJob:
        if not (self.settings.vllm_lora or self.settings.upstream):
            raise Conflict(
                "Removal versions are served as LoRA adapters: start the gateway with "
                "vllm_lora = true (OBLIVIATE_VLLM_LORA=true)."
            )
        # Imported here: torch, ~7 s of a gateway's start on a slow box, once a job is made.
        from removal.trainer import method_config

        try:
            config = method_config(body.method, body.params)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"Bad method or params: {exc}", param="params") from exc
        parent = self._parent(body.parent)
        removed = set(parent.forget_request_ids) if parent else set()
        if body.forget_requests == "pending":
            records = [r for r in self.store.active() if r.id not in removed]
        else:
            records = [self._forget_request(request_id) for request_id in body.forget_requests]
        if not any(training_pairs(r) for r in records):
            raise InvalidRequest(
                "Nothing to train on: removal needs forget requests with qa or documents.",
                param="forget_requests",
            )
        # A chain past the limit is consolidated to it (see removal.trainer); one job is not.
        if config.lora_rank > self.settings.vllm_max_lora_rank:
            raise InvalidRequest(
                f"lora_rank {config.lora_rank} > vllm_max_lora_rank "
                f"{self.settings.vllm_max_lora_rank}: lower it, or raise the limit.",
                param="params",
            )
        job = self.registry.create_job(
            body.method, body.params, [r.id for r in records], parent.id if parent else None
        )
        if self._loop is not None:  # an asyncio.Event is not thread-safe
            self._loop.call_soon_threadsafe(self.wake.set)
        return job

    def _parent(self, name: str) -> ModelVersion | None:
        if name == "base":
            return None
        if name == "latest":
            return self.registry.latest_version()
        return self.version(name)

    def _forget_request(self, request_id: str) -> ForgetRequest:
        record = self.store.get(request_id)
        if record is None:
            raise NotFound(f"No forget request {request_id!r}.", param="forget_requests")
        if record.status == REVOKED:
            raise Conflict(f"Forget request {request_id!r} is revoked.", param="forget_requests")
        return record

    def job(self, job_id: str) -> RemovalJob:
        job = self.registry.job(job_id)
        if job is None:
            raise NotFound(f"No removal job {job_id!r}.", param="id")
        return job

    def cancel(self, job_id: str) -> RemovalJob:
        job = self.job(job_id)
        if job.status in FINISHED:
            raise Conflict(f"Removal job {job_id!r} already {job.status}.")
        self.registry.update_job(job_id, status=CANCELLED)
        if self.running == job_id and self.process is not None:
            # The runner sees the exit and keeps 'cancelled'.
            signal_group(self.process.pid, signal.SIGKILL)
        return self.job(job_id)

    # The runner

    async def run_once(self) -> None:
        """One round of the job runner (the gateway's supervisor runs rounds for its lifetime):
        run the next queued job, or wait up to 5 s for one. Replicas sharing the database each
        run rounds; a job is claimed by one of them (a lease it renews)."""
        self._loop = asyncio.get_running_loop()
        if not self._recovered:  # jobs this replica was running when it stopped
            await asyncio.to_thread(
                self.registry.fail_abandoned, "its runner stopped during the job", self.runner
            )
            self._recovered = True
        await asyncio.to_thread(self.registry.fail_abandoned, "its runner stopped (lease)")
        job = await asyncio.to_thread(self.registry.claim, self.runner, LEASE_S)
        if job is None:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=5)
            return
        try:
            await self._run(job)
        except Exception as exc:  # the job fails; the runner and serving go on
            log.exception("removal job %s failed", job.id)
            await asyncio.to_thread(
                self.registry.update_job, job.id, status=FAILED, error=str(exc)[:2000]
            )
        finally:
            # However the round ends (cancelled, the database away), no worker outlives it.
            if self.process is not None and self.process.returncode is None:
                signal_group(self.process.pid, signal.SIGKILL)
            self.process = self.running = None

    async def _run(self, job: RemovalJob) -> None:
        job_dir = self.jobs_dir / job.id
        output = self.versions_dir / job.id
        await asyncio.to_thread(self._write_spec, job, job_dir, output)
        log.info("removal job %s (%s) started", job.id, job.method)
        with (job_dir / "worker.log").open("wb") as out:
            # `accelerate launch` through its own module: the CLI's entry point imports every
            # subcommand first (`estimate` pulls in transformers and sklearn: ~30 s here).
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "accelerate.commands.launch",
                "--config_file", str(self.settings.accelerate_config()),
                "-m", "removal.worker", str(job_dir),
                stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
        self.running = job.id
        code = await self._follow(job.id, job_dir)
        # The forget requests' text in clear leaves the disk with the job (a purge relies on it).
        await asyncio.to_thread((job_dir / "spec.json").unlink, missing_ok=True)
        if (await asyncio.to_thread(self.registry.job, job.id)).status == CANCELLED:
            await asyncio.to_thread(shutil.rmtree, output, ignore_errors=True)
            return
        metrics = await asyncio.to_thread(_result, job_dir, code)
        version = await self._record_version(job, output, metrics)
        await asyncio.to_thread(self.store.mark_removed, job.forget_request_ids, version.id)
        done = {"status": SUCCEEDED, "metrics": metrics, "version_id": version.id}
        await asyncio.to_thread(functools.partial(self.registry.update_job, job.id, **done))
        log.info("removal job %s produced %s", job.id, version.id)

    async def _record_version(self, job: RemovalJob, output: Path, metrics: dict) -> ModelVersion:
        """Load the adapter, then record the version: a version that exists can be served, and
        an adapter vLLM refuses fails the job. Another replica may take the same number first:
        then the adapter is unloaded and the next number tried."""
        while True:
            version_id = await asyncio.to_thread(self.registry.next_version_id)
            await self.upstream.ensure_adapter(version_id, str(output))
            try:
                return await asyncio.to_thread(
                    self.registry.create_version, version_id, job, str(output), metrics
                )
            except IntegrityError:
                await self.upstream.unload_adapter(version_id)

    def _write_spec(self, job: RemovalJob, job_dir: Path, output: Path) -> None:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "spec.json").write_text(json.dumps(self._spec(job, output).__dict__))

    def _spec(self, job: RemovalJob, output: Path) -> TrainSpec:
        from removal.trainer import TrainSpec

        records = (self.store.get(i) for i in job.forget_request_ids)
        forget = [p for r in records if r is not None for p in training_pairs(r)]  # purged: gone
        retain = self.settings.retain_pairs()
        parent = self.registry.version(job.parent_version) if job.parent_version else None
        return TrainSpec(
            method=job.method,
            base_model=str(self.settings.weights()),
            forget=forget,
            retain=retain,
            output=str(output),
            params=job.params,
            parent_adapter=parent.path if parent else None,
            threads=self.settings.removal_threads,
            max_rank=self.settings.vllm_max_lora_rank,
        )

    async def _follow(self, job_id: str, job_dir: Path) -> int:
        """Renew the lease and copy progress into the job record until the worker exits; its
        exit code. A job cancelled on any replica is killed here."""
        assert self.process is not None
        progress = job_dir / "progress.json"
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(self.process.wait(), POLL_S)
            fields = {}
            if progress.exists():
                with contextlib.suppress(json.JSONDecodeError, OSError):
                    fields["progress"] = json.loads(progress.read_text())
            held = await asyncio.to_thread(
                self.registry.renew, job_id, self.runner, LEASE_S, **fields
            )
            if held is None:
                signal_group(self.process.pid, signal.SIGKILL)

    # Versions

    def version(self, version_id: str) -> ModelVersion:
        version = self.registry.version(version_id)
        if version is None:
            raise NotFound(f"No model version {version_id!r}.", param="id")
        return version

    async def delete_version(self, version_id: str) -> ModelVersion:
        version = await asyncio.to_thread(self.version, version_id)
        versions = await asyncio.to_thread(self.registry.versions)
        children = [v.id for v in versions if v.parent == version_id]
        if children:
            raise Conflict(f"Model version {version_id!r} is parent of {children}.")
        # The shared routing's pin is checked in the deleting transaction (VersionPinned: 409).
        await asyncio.to_thread(self.registry.delete_version, version_id)
        await self.upstream.unload_adapter(version_id)
        await asyncio.to_thread(self.store.unmark_removed, version_id)
        await asyncio.to_thread(shutil.rmtree, version.path, ignore_errors=True)
        return version


def _result(job_dir: Path, code: int | None) -> dict:
    """The worker's metrics, or why it has none."""
    result_path = job_dir / "result.json"
    if code != 0 or not result_path.exists():
        tail = (job_dir / "worker.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the worker exited with {code}: {tail}")
    return json.loads(result_path.read_text())
