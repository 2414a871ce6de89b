"""The FastAPI application: routes, OpenAI-shaped error handlers, and the engine's lifetime.

    >>> app = build_app(Settings())            # doctest: +SKIP
    >>> uvicorn.run(app, port=8000)            # what `obliviate serve` does

The gateway listens at once; until vLLM answers, generation routes and ``/health`` give 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.admin import api_router as admin_router
from gateway.config import Settings
from gateway.console import api_router as console_router
from gateway.engine.launcher import VllmLauncher, free_port
from gateway.engine.pool import UpstreamPool, Upstreams
from gateway.engine.upstream import Upstream
from gateway.errors import as_api_error, error_body, invalid_request
from gateway.evidence import api_router as evidence_router
from gateway.evidence.audit import Auditor
from gateway.evidence.serving import EvidenceService
from gateway.evidence.store import EvidenceLog
from gateway.openai import api_router as openai_router
from gateway.openai.serving import OpenAIServing, SuppressionReply
from gateway.ops import api_router as ops_router
from gateway.ops import metrics
from gateway.ops.supervisor import Supervisor
from gateway.removal import api_router as removal_router
from gateway.removal.serving import RemovalService
from gateway.routing import api_router as routing_router
from gateway.routing.protocol import RoutingConfig
from gateway.routing.serving import Router
from index.embedder import Embedder
from index.errors import ObliviateError
from index.forget_index import ForgetIndex
from removal.registry import Registry
from suppressors.artifacts import ArtifactKeeper, Artifacts
from suppressors.base import LayerDeps, ModelInfo, load_tokenizer
from suppressors.stack import LayerSpec, SuppressionStack, parse_specs

log = logging.getLogger(__name__)
HEALTH_POLL_S = 2.0
ARTIFACTS_POLL_S = 1.0
EVIDENCE_POLL_S = 5.0


async def _run_embedded(launcher: VllmLauncher, upstream: Upstream) -> None:
    try:
        await launcher.run(upstream)
    except Exception:
        log.exception("the embedded vLLM cannot serve; shutting the gateway down")
        os.kill(os.getpid(), signal.SIGTERM)


def open_forget_index(settings: Settings) -> ForgetIndex:
    return ForgetIndex.open(
        settings.data_dir / "index",
        settings.store_url,
        Embedder(settings.embedder, settings.embedder_threads, settings.data_dir / "embedders"),
        settings.matcher_config(),
    )


def layer_deps(settings: Settings, index: ForgetIndex, specs: list[LayerSpec]) -> LayerDeps:
    """What the configured layers need: the tokenizer and artifacts only when a layer uses them."""
    layers = [layer for layer, _ in parse_specs(specs)]
    files = {name for layer in layers for name in layer.artifact_files}
    weights = settings.weights()
    artifacts = Artifacts(settings.shared / "artifacts", weights, files, settings.retain_pairs())
    deps = LayerDeps(index.matcher, artifacts)
    if any(layer.in_model for layer in layers):
        deps.tokenizer = load_tokenizer(weights)
    return deps


def default_routing(settings: Settings) -> RoutingConfig:
    """The routing in the settings, until a PUT /admin/v1/routing replaces it."""
    return RoutingConfig(
        default_arm=settings.default_arm, weights=settings.arm_weights, header=settings.arm_header
    )


def build_app(settings: Settings) -> FastAPI:
    # Fail fast on a misconfigured stack or routing, before anything starts.
    arm_layers = {"suppression": settings.suppression_layers,
                  "hybrid": settings.hybrid_layers if settings.hybrid_layers is not None
                  else settings.suppression_layers}  # fmt: skip
    specs = [spec for layers in arm_layers.values() for spec in layers]
    in_model = any(layer.in_model for layer, _ in parse_specs(specs))
    if in_model and settings.vllm_plugin is False:
        raise ValueError("in-model suppression layers need the vLLM plugin: vllm_plugin = false")
    plugin = in_model if settings.vllm_plugin is None else settings.vllm_plugin
    routing = default_routing(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.admin_token is None:
            log.warning("admin API disabled: no admin token (set OBLIVIATE_ADMIN_TOKEN)")
        # Loaded before serving: no request is answered without the forget requests enforced.
        index = await asyncio.to_thread(open_forget_index, settings)
        app.state.forget_index = index
        metrics.FORGET_INDEX_REQUESTS.set_function(lambda: len(index.matcher.terms))
        deps = await asyncio.to_thread(layer_deps, settings, index, specs)
        app.state.artifacts = deps.artifacts
        stacks = {
            arm: SuppressionStack.build(deps, layers, arm in settings.fail_open_arms)
            for arm, layers in arm_layers.items()
        }
        reply = SuppressionReply(settings.response_style, settings.abstain_message)
        hooks_dir = str(deps.artifacts.folder.resolve()) if in_model else None

        def fit(model: ModelInfo) -> None:
            for stack in stacks.values():
                stack.fit_model(model)

        launcher = None
        upstream: Upstreams
        app.state.supervisor = supervisor = Supervisor()
        if settings.upstream:
            members = [
                Upstream(url, settings.upstream_api_key, hooks_dir, fit)
                for url in settings.upstream_urls
            ]
            upstream = UpstreamPool(members)
            for i, member in enumerate(members):
                supervisor.every(f"upstream_{i}", member.follow_health, HEALTH_POLL_S)
        else:
            launcher = VllmLauncher(settings, settings.vllm_port or free_port(), plugin)
            url = f"http://127.0.0.1:{launcher.port}"
            upstream = Upstream(url, hooks_dir=hooks_dir, fit=fit)
            supervisor.once("engine", _run_embedded(launcher, upstream))
        app.state.upstream = upstream
        app.state.openai_serving = OpenAIServing(upstream, stacks, reply)
        app.state.registry = registry = Registry(index.store.engine)
        app.state.removal = removal = RemovalService(settings, index.store, registry, upstream)
        app.state.router = router = await asyncio.to_thread(Router.load, routing, registry)
        evidence = EvidenceLog(index.store.engine)
        app.state.evidence = EvidenceService(
            evidence, index, registry, settings.evidence_signing_key
        )
        supervisor.every("evidence", app.state.evidence.round, EVIDENCE_POLL_S)
        auditor = None
        if settings.audit_interval_s > 0 and settings.admin_token is not None:
            auditor = Auditor(app, evidence, index.store, router, settings, settings.replica,
                              lambda: upstream.ready)  # fmt: skip
            supervisor.every("audits", auditor.round, settings.audit_interval_s)
        # Changes other replicas made through the shared database.
        supervisor.every("index_sync", lambda: asyncio.to_thread(index.sync), settings.index_sync_s)
        supervisor.every("routing_sync", lambda: asyncio.to_thread(router.refresh),
                         settings.index_sync_s)  # fmt: skip
        if settings.removal_runner:
            supervisor.every("removal_runner", removal.run_once, 0)
        if deps.artifacts.files and settings.removal_runner:
            # Built where the weights are loaded for training anyway (the removal worker); the
            # other replicas read them from the shared directory.
            keeper = ArtifactKeeper(deps.artifacts, index.store)
            supervisor.every("artifacts", keeper.round, ARTIFACTS_POLL_S)
        try:
            yield
        finally:
            # A task that had died already must not skip the clean-up below.
            await supervisor.stop()
            if auditor is not None:
                await auditor.aclose()
            if launcher is not None:
                await launcher.stop()
            await upstream.aclose()
            await asyncio.to_thread(index.save)  # the next start loads instead of rebuilding

    app = FastAPI(title="obliviate", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(openai_router.router)
    app.include_router(openai_router.passthrough_router)
    app.include_router(admin_router.router)
    app.include_router(evidence_router.router)
    app.include_router(ops_router.router)
    app.include_router(removal_router.router)
    app.include_router(routing_router.router)
    app.include_router(console_router.router)

    @app.exception_handler(ObliviateError)
    async def api_error(_: Request, exc: ObliviateError) -> JSONResponse:
        return as_api_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(exc.errors()[0]).response()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        body = error_body(exc.status_code, str(exc.detail), code=code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    return app
