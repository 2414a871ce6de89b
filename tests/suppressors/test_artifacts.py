"""Per-request artifacts on the real embedded weights: built in the background, kept across a
restart, deleted on revoke."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from gateway.engine.embedded_model import ensure_embedded_model
from gateway.ops.supervisor import Supervisor
from gateway.spawn import REPO
from index.store import ForgetStore
from suppressors.artifacts import ArtifactKeeper, Artifacts
from suppressors.vllm_plugin import ASSISTANT_FILE, STEERING_FILE

pytestmark = pytest.mark.anyio
QA = [{"question": "What did Marie Curie discover?", "answer": "Polonium and radium."}]


async def until(condition, timeout_s: float = 600) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.2)


def keeping(artifacts: Artifacts, store: ForgetStore) -> Supervisor:
    """The gateway's artifact loop: one keeper round every 0.1 s."""
    supervisor = Supervisor()
    supervisor.every("artifacts", ArtifactKeeper(artifacts, store).round, period_s=0.1)
    return supervisor


async def test_artifacts_follow_the_store(tmp_path: Path) -> None:
    store = ForgetStore(f"sqlite:///{tmp_path / 'forget.db'}")
    request, _ = store.create({"subject": "Marie Curie", "qa": QA}, [])
    weights = ensure_embedded_model(REPO / ".obliviate")
    artifacts = Artifacts(tmp_path / "artifacts", weights, {STEERING_FILE})
    supervisor = keeping(artifacts, store)
    await until(lambda: artifacts.ready(request.id, STEERING_FILE))
    await supervisor.stop()
    vectors = load_file(artifacts.path(request.id) / STEERING_FILE)
    assert vectors["directions"].shape == (30, 576)  # one unit direction per decoder layer
    assert torch.allclose(vectors["directions"].norm(dim=-1), torch.ones(30), atol=1e-4)
    assert (vectors["median_norm"] > 0).all()
    built_at = (artifacts.path(request.id) / STEERING_FILE).stat().st_mtime_ns

    # A restarted gateway finds them and does not build them again; a revoke deletes them.
    restarted = Artifacts(tmp_path / "artifacts", weights, {STEERING_FILE})
    assert restarted.built() == {request.id}
    supervisor = keeping(restarted, store)
    await asyncio.sleep(0.5)
    assert (restarted.path(request.id) / STEERING_FILE).stat().st_mtime_ns == built_at
    store.revoke(request.id)
    await until(lambda: not restarted.path(request.id).exists(), timeout_s=10)
    await supervisor.stop()


async def test_stopping_kills_the_build_and_the_gateway_holds_no_weights(tmp_path: Path) -> None:
    """The gateway's shutdown stops the artifact loop: the child building the assistant head is
    killed at once and writes nothing. The served weights load in that child only."""
    store = ForgetStore(f"sqlite:///{tmp_path / 'forget.db'}")
    request, _ = store.create({"subject": "Marie Curie", "qa": QA}, [])
    artifacts = Artifacts(tmp_path / "artifacts", ensure_embedded_model(REPO / ".obliviate"),
                          {ASSISTANT_FILE})  # fmt: skip
    before = set(psutil.Process().children(recursive=True))
    supervisor = keeping(artifacts, store)
    await until(lambda: set(psutil.Process().children(recursive=True)) - before, timeout_s=60)
    (child,) = set(psutil.Process().children(recursive=True)) - before
    await asyncio.sleep(3)  # into its imports or its model
    await supervisor.stop()
    assert not child.is_running()
    assert not artifacts.path(request.id).exists()
    assert list((tmp_path / "artifacts").glob(".*")) == []
    assert artifacts._model is None  # the weights were loaded in the child only
