"""Forwarding of OpenAI requests to vLLM, streaming end to end, with timing and metrics.

The request is validated, forwarded with the pooled client, and the answer relayed: bytes as they
arrive for a stream (the client's disconnect closes the upstream connection, which makes vLLM abort
the request), the body as is otherwise. vLLM's errors are normalised to OpenAI's shape; an error
after a stream started is one ``data:`` event followed by ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from gateway.engine.upstream import Upstream
from gateway.errors import APIError, InvalidRequest, RequestTooLarge, UpstreamError, from_upstream
from gateway.ops import metrics

OVERHEAD_HEADER = "x-obliviate-overhead-ms"
_DONE = b"data: [DONE]\n\n"
Model = TypeVar("Model", bound=BaseModel)


class RequestTimer:
    """Splits a request's wall time into the gateway's own part and the upstream call."""

    def __init__(self, route: str):
        self.route = route
        self.start = time.perf_counter()
        self.upstream_s = 0.0

    def overhead_s(self) -> float:
        return time.perf_counter() - self.start - self.upstream_s

    def header(self) -> dict[str, str]:
        overhead = self.overhead_s()
        metrics.OVERHEAD.labels(self.route).observe(overhead)
        return {OVERHEAD_HEADER: f"{overhead * 1000:.3f}"}

    def finish(self, status: int) -> None:
        metrics.REQUESTS.labels(self.route, str(status)).inc()
        metrics.LATENCY.labels(self.route).observe(time.perf_counter() - self.start)


async def parse_body(request: Request, model: type[Model], max_bytes: int) -> Model:
    """Read and validate a JSON body; errors name the offending field."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise RequestTooLarge(f"Request body over {max_bytes} bytes.")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise RequestTooLarge(f"Request body over {max_bytes} bytes.")
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from exc


class OpenAIServing:
    """Forwards generation requests and relays the answers."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream

    async def forward(
        self, path: str, request: BaseModel, timer: RequestTimer, *, stream: bool
    ) -> Response:
        body = request.model_dump(exclude_unset=True)
        sent = time.perf_counter()
        response = await self.upstream.send("POST", path, body, stream=stream)
        if response.status_code != 200:
            error = await self._upstream_error(response)
            timer.upstream_s = time.perf_counter() - sent
            raise error
        if stream:
            timer.upstream_s = time.perf_counter() - sent
            return StreamingResponse(
                self._relay(response, timer),
                media_type="text/event-stream",
                headers=timer.header(),
            )
        timer.upstream_s = time.perf_counter() - sent
        timer.finish(200)
        return Response(response.content, media_type="application/json", headers=timer.header())

    async def get(self, path: str) -> Response:
        response = await self.upstream.send("GET", path)
        if response.status_code != 200:
            raise await self._upstream_error(response)
        return Response(response.content, media_type="application/json")

    async def _upstream_error(self, response: httpx.Response) -> APIError:
        try:
            await response.aread()
            payload: Any = response.json()
        except (json.JSONDecodeError, httpx.HTTPError):
            payload = response.text[:500] if response.is_closed else None
        finally:
            await response.aclose()
        if response.status_code >= 500:
            metrics.UPSTREAM_ERRORS.labels(kind="status").inc()
        return from_upstream(response.status_code, payload)

    async def _relay(self, response: httpx.Response, timer: RequestTimer) -> AsyncIterator[bytes]:
        first = True
        try:
            async for chunk in response.aiter_raw():
                if first:
                    metrics.TTFT.labels(timer.route).observe(time.perf_counter() - timer.start)
                    first = False
                yield chunk
        except httpx.HTTPError as exc:
            metrics.UPSTREAM_ERRORS.labels(kind="stream").inc()
            error = UpstreamError(f"The engine failed mid-stream: {type(exc).__name__}")
            yield error.sse_event()
            yield _DONE
        finally:
            # Reached on completion, error, or client disconnect (cancellation): closing the
            # upstream connection makes vLLM abort a request nobody reads any more.
            await response.aclose()
            timer.finish(200)
