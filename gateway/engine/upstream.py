"""The vLLM OpenAI server the gateway forwards to, over one pooled ``httpx.AsyncClient``.

    upstream = Upstream("http://127.0.0.1:8101")
    response = await upstream.send("POST", "/v1/chat/completions", body, stream=True)

Connection failures and a not-ready engine become ``EngineUnavailable`` (HTTP 503).
"""

from __future__ import annotations

from typing import Any

import httpx

from gateway.errors import EngineUnavailable
from gateway.ops import metrics

# Generation can take minutes on a CPU: no read timeout, but fail fast when vLLM is not there.
TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0)
LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=256)


class Upstream:
    """One vLLM server; ``ready`` is kept by whoever watches its health (launcher or start-up)."""

    def __init__(self, base_url: str, api_key: str | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.base_url, timeout=TIMEOUT, limits=LIMITS, headers=headers
        )
        self.ready = False

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        metrics.ENGINE_READY.set(1 if ready else 0)

    async def healthy(self, timeout: float = 2.0) -> bool:
        try:
            response = await self.client.get("/health", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def send(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        """Send one request; with ``stream`` the caller must ``aclose()`` the response."""
        if not self.ready:
            raise EngineUnavailable("The engine is starting or restarting; retry shortly.")
        request = self.client.build_request(method, path, json=body)
        try:
            return await self.client.send(request, stream=stream)
        except httpx.HTTPError as exc:
            metrics.UPSTREAM_ERRORS.labels(kind="connect").inc()
            raise EngineUnavailable(f"The engine is unreachable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self.client.aclose()
