"""The pooled connection to vLLM."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.engine.launcher import free_port
from gateway.engine.upstream import Upstream

pytestmark = pytest.mark.anyio


def client_port(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.client.port if request.client else 0))


@pytest.fixture
def vllm_like() -> Iterator[str]:
    """A server that closes idle connections after 5 s, as vLLM's does by default."""
    port = free_port()
    app = Starlette(routes=[Route("/port", client_port)])
    config = uvicorn.Config(app, port=port, log_level="error", timeout_keep_alive=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()


async def test_idle_connections_are_dropped_before_vllm_closes_them(vllm_like: str) -> None:
    """A request sent on a connection vLLM is closing is lost ("Server disconnected without
    sending a response"): after 4 s idle the gateway opens a new one."""
    upstream = Upstream(vllm_like)
    ports = [(await upstream.client.get("/port")).text]
    await asyncio.sleep(0.5)
    ports.append((await upstream.client.get("/port")).text)
    await asyncio.sleep(4)
    ports.append((await upstream.client.get("/port")).text)
    await upstream.client.aclose()
    assert ports[0] == ports[1] != ports[2]  # pooled while fresh, not once near vLLM's 5 s
