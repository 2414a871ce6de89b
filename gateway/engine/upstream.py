"""The vLLM OpenAI server the gateway forwards to, over one pool of connections.

    upstream = Upstream("http://127.0.0.1:8101")
    response = await upstream.send("POST", "/v1/chat/completions", body, stream=True)

Connection failures and a not-ready engine become ``EngineUnavailable`` (HTTP 503).
Requests go straight to the pool's transport: an ``httpx.AsyncClient`` around it (cookies,
redirects, URL merging) would cost a third more CPU per request, and the engine answers with
none of those. ``HTTP(S)_PROXY`` is not used for the engine (the client has a transport of its
own, which httpx mounts no proxy over).
Model versions are LoRA adapters that vLLM loads at run time (``/v1/load_lora_adapter``):
``ensure_adapter`` loads one the first time it is needed, again after vLLM restarted.
When in-model suppression layers are configured, ``become_ready`` first installs the plugin's hooks
in the (re)started vLLM (``POST /collective_rpc``), so no request runs on an unhooked model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec

from gateway.errors import EngineUnavailable, from_upstream
from gateway.ops import metrics
from suppressors.base import ModelInfo, UnfitModel
from suppressors.vllm_plugin import INSTALL_METHOD, WORKER_EXTENSION

log = logging.getLogger(__name__)
# Generation can take minutes on a CPU: no read timeout, but fail fast when vLLM is not there.
TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0)
# Idle connections are dropped before vLLM closes them (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s by
# default), so a request never goes out on a connection vLLM is closing.
LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=3.0)
HEALTH_FAILURES = 3
"""Late health checks in a row that take a server the gateway does not own out of service: one
slow answer while it streams at full load is not a server gone (Kubernetes' failureThreshold)."""
HEALTH_TIMEOUT_S = 2.0
_TIMEOUTS = {"timeout": TIMEOUT.as_dict()}
_KEPT_URLS = 32
"""Parsed URLs kept for reuse: the routes requests are posted to (a fixed, short list)."""


class EngineLacksPlugin(EngineUnavailable):
    """The vLLM server cannot run the configured in-model layers."""


class Upstream:
    """One vLLM server; ``ready`` is kept by whoever watches its health (launcher or start-up).

    ``hooks_dir``: the artifacts folder the plugin's hooks read, when in-model layers are used;
    ``fit`` then gets the served model's ``ModelInfo`` at each install (``UnfitModel``: refused)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        hooks_dir: str | None = None,
        fit: Callable[[ModelInfo], None] | None = None,
    ):
        self.hooks_dir = hooks_dir
        self.fit = fit
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.transport = httpx.AsyncHTTPTransport(limits=LIMITS)
        self.client = httpx.AsyncClient(
            base_url=self.base_url, timeout=TIMEOUT, headers=auth, transport=self.transport
        )
        """For the gateway's own calls (health, hooks, adapters); ``send`` uses the transport."""
        self._auth = auth
        self._json_headers = {"content-type": "application/json", **auth}
        self._urls: dict[str, httpx.URL] = {}
        self.ready = False
        self.outstanding = 0
        """Requests in flight (kept by ``UpstreamPool``)."""
        self.adapters: set[str] = set()
        self._adapter_lock = asyncio.Lock()
        self._late_checks = 0

    async def become_ready(self) -> None:
        """Prepare a vLLM that just became healthy, then let requests through."""
        if self.hooks_dir is not None:
            await self.install_hooks(self.hooks_dir)
        self.set_ready(True)

    async def install_hooks(self, hooks_dir: str) -> ModelInfo:
        """Hook the engine's model; ``EngineLacksPlugin`` says why it cannot be (no plugin, the
        V2 model runner, a model layout the hooks do not know, a layer the model cannot run)."""
        body = {"method": INSTALL_METHOD, "args": [hooks_dir]}
        try:
            response = await self.client.post("/collective_rpc", json=body, timeout=60)
        except httpx.HTTPError as exc:
            raise EngineLacksPlugin(f"installing hooks failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise EngineLacksPlugin(
                f"{self.base_url} cannot run in-model suppression layers (HTTP "
                f"{response.status_code} from /collective_rpc): start vLLM with "
                f"VLLM_SERVER_DEV_MODE=1, VLLM_USE_V2_MODEL_RUNNER=0, --enforce-eager and "
                f"--worker-extension-cls {WORKER_EXTENSION}, or leave those layers out of "
                f"suppression_layers"
            )
        reported = response.json()["results"][0]  # one per worker; they serve the same model
        if error := reported.get("error"):
            raise EngineLacksPlugin(f"{self.base_url} cannot run in-model layers: {error}")
        names = {f.name for f in dataclasses.fields(ModelInfo)}
        model = ModelInfo(**{k: v for k, v in reported.items() if k in names})
        try:
            if self.fit is not None:
                self.fit(model)
        except UnfitModel as exc:
            raise EngineLacksPlugin(f"{self.base_url} serves {model.architecture}: {exc}") from exc
        return model

    async def follow_health(self) -> None:
        """Keep ``ready`` in step with a server this gateway does not own (one round). A server
        that refuses, resets or answers an error is out at once (it may be restarting, without
        the hooks and adapters it had); one that answers too late, after ``HEALTH_FAILURES``
        such checks in a row."""
        try:
            response = await self.client.get("/health", timeout=HEALTH_TIMEOUT_S)
            healthy, late = response.status_code == 200, False
        except httpx.TimeoutException:
            healthy, late = False, True
        except httpx.HTTPError:
            healthy, late = False, False
        if healthy:
            self._late_checks = 0
            if not self.ready:
                try:
                    await self.become_ready()
                except EngineLacksPlugin as exc:
                    log.error("%s", exc)  # stays not ready: 503s rather than unsuppressed answers
            return
        self._late_checks = self._late_checks + 1 if late else HEALTH_FAILURES
        if self._late_checks >= HEALTH_FAILURES:
            self.set_ready(False)

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        if not ready:
            self.adapters.clear()  # a restarted vLLM has none loaded
        metrics.ENGINE_READY.set(1 if ready else 0)

    async def ensure_adapter(self, name: str, path: str) -> None:
        """Load the LoRA adapter ``name`` from ``path`` unless this vLLM already has it."""
        if name in self.adapters:
            return
        async with self._adapter_lock:
            if name in self.adapters:
                return
            body = {"lora_name": name, "lora_path": path}
            response = await self.send("POST", "/v1/load_lora_adapter", body)
            # 400 "already loaded": loaded by an earlier gateway run against the same vLLM.
            if response.status_code != 200 and "already" not in response.text:
                raise from_upstream(response.status_code, _json_or_text(response))
            self.adapters.add(name)

    async def unload_adapter(self, name: str) -> None:
        """Unload ``name`` if this vLLM has it (a deleted version)."""
        async with self._adapter_lock:
            if name in self.adapters and self.ready:
                await self.send("POST", "/v1/unload_lora_adapter", {"lora_name": name})
            self.adapters.discard(name)

    async def healthy(self, timeout: float = 2.0) -> bool:
        try:
            response = await self.client.get("/health", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        sent: asyncio.Event | None = None,
    ) -> httpx.Response:
        """Send one request; with ``stream`` the caller must ``aclose()`` the response.
        ``sent`` is set once the request is written and its answer awaited (a call that fails
        before may never set it)."""
        if not self.ready:
            raise EngineUnavailable("The engine is starting or restarting; retry shortly.")
        request = self._request(method, path, body)
        if sent is not None:
            request.extensions = {**request.extensions, "trace": _setting(sent)}
        try:
            try:
                response = await self._send(request)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                # A pooled connection the server reset or closed as the request went out
                # (under load, or at its keep-alive timeout): no answer had begun, so once more
                # on a new connection before the engine counts as unreachable. (An answer that
                # breaks after its headers is not sent again: see below.)
                metrics.UPSTREAM_ERRORS.labels(kind="connection_reset").inc()
                response = await self._send(request)
            if not stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.HTTPError as exc:
            metrics.UPSTREAM_ERRORS.labels(kind="connect").inc()
            raise EngineUnavailable(f"The engine is unreachable: {type(exc).__name__}") from exc
        return response

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Request:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + path)
            if body is not None and len(self._urls) < _KEPT_URLS:  # not GET /v1/responses/{id}
                self._urls[path] = url
        if body is None:
            return httpx.Request(method, url, headers=self._auth, extensions=_TIMEOUTS)
        content = msgspec.json.encode(body)
        return httpx.Request(
            method, url, content=content, headers=self._json_headers, extensions=_TIMEOUTS
        )

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.client.aclose()  # closes the transport too


def _setting(sent: asyncio.Event) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` callback that sets ``sent`` when the request is out."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("receive_response_headers.started"):
            sent.set()

    return trace


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
