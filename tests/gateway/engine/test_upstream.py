"""The pooled connection to vLLM."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.engine import upstream as upstream_module
from gateway.engine.launcher import free_port
from gateway.engine.upstream import HEALTH_FAILURES, Upstream
from gateway.errors import EngineUnavailable

pytestmark = pytest.mark.anyio


def client_port(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.client.port if request.client else 0))


HEALTH = {"status": 200, "delay_s": 0.0}


async def health(request: Request) -> PlainTextResponse:
    await asyncio.sleep(HEALTH["delay_s"])
    return PlainTextResponse("", status_code=HEALTH["status"])


@pytest.fixture
def vllm_like() -> Iterator[str]:
    """A server that closes idle connections after 5 s, as vLLM's does by default; its
    ``/health`` answers ``HEALTH["status"]`` after ``HEALTH["delay_s"]``."""
    port = free_port()
    app = Starlette(routes=[Route("/port", client_port), Route("/health", health)])
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


async def test_a_late_health_check_does_not_take_the_server_out(
    vllm_like: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vLLM streaming at full load can answer ``/health`` late: the gateway answered 503 to
    every request after one such check, so it now waits for several late ones in a row. A
    server that answers an error (or refuses) is out at once: it may be restarting, without the
    hooks and adapters it had."""
    monkeypatch.setattr(upstream_module, "HEALTH_TIMEOUT_S", 0.2)
    upstream = Upstream(vllm_like)
    await upstream.follow_health()
    assert upstream.ready
    try:
        HEALTH["delay_s"] = 0.5
        for _ in range(HEALTH_FAILURES - 1):
            await upstream.follow_health()
        assert upstream.ready
        HEALTH["delay_s"] = 0.0
        await upstream.follow_health()  # the count starts again
        HEALTH["delay_s"] = 0.5
        for _ in range(HEALTH_FAILURES - 1):
            await upstream.follow_health()
        assert upstream.ready
        await upstream.follow_health()
        assert not upstream.ready
        HEALTH["delay_s"] = 0.0
        await upstream.follow_health()
        assert upstream.ready
        HEALTH["status"] = 503
        await upstream.follow_health()
        assert not upstream.ready
    finally:
        HEALTH.update(status=200, delay_s=0.0)
    await upstream.follow_health()
    assert upstream.ready
    await upstream.client.aclose()


@contextlib.asynccontextmanager
async def raw_engine(
    answers: list[bytes], gate: asyncio.Event | None = None
) -> AsyncIterator[tuple[Upstream, list[bytes]]]:
    """An ``Upstream`` on a bare TCP server that writes ``answers[i]`` to the i-th request it
    reads (nothing past the list; once ``gate`` is set, if given) and closes the connection;
    the requests it read."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        if gate is not None:
            await gate.wait()
        if len(seen) <= len(answers):
            writer.write(answers[len(seen) - 1])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    upstream = Upstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    upstream.set_ready(True)
    try:
        yield upstream, seen
    finally:
        await upstream.aclose()
        server.close()


async def test_a_reset_connection_is_tried_again_on_a_new_one() -> None:
    """A server that closes a connection as a request arrives (a pooled connection at its
    keep-alive timeout, or under load) answered nothing: the request goes out once more, and
    one such reset does not make the engine unreachable (503 for everyone)."""
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with raw_engine([b"", ok]) as (upstream, seen):
        response = await upstream.send("POST", "/v1/chat/completions", {"model": "m"})
    assert (response.status_code, response.text, len(seen)) == (200, "ok", 2)


async def test_an_answer_broken_after_its_headers_is_not_sent_again() -> None:
    """Only a request that got no answer is sent again: a generation that breaks after vLLM
    began to answer would otherwise run twice."""
    broken = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"
    async with raw_engine([broken]) as (upstream, seen):
        with pytest.raises(EngineUnavailable):
            await upstream.send("POST", "/v1/chat/completions", {"model": "m"})
    assert len(seen) == 1


async def test_sent_is_set_once_the_request_is_out_and_before_its_answer() -> None:
    """The gateway checks a conversation only once its request is out (``sent``), so the
    engine never waits for the check."""
    gate, sent = asyncio.Event(), asyncio.Event()
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with raw_engine([ok], gate) as (upstream, seen):
        call = asyncio.create_task(upstream.send("POST", "/v1/completions", {}, sent=sent))
        await asyncio.wait_for(sent.wait(), 10)
        assert not call.done()  # its answer is still to come
        gate.set()
        assert ((await call).text, len(seen)) == ("ok", 1)
