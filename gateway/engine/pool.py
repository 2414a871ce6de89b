"""Several vLLM servers behind one gateway (``--upstream URL1,URL2``).

    pool = UpstreamPool([Upstream("http://vllm-0:8000"), Upstream("http://vllm-1:8000")])
    response = await pool.send("POST", "/v1/chat/completions", body, stream=True)

Each request goes to the ready server with the fewest requests in flight (streams count until
they close). A server that fails to answer is ejected (not ready) until its health check passes
again, and the request is sent to another one: nothing of it had reached the client yet. A stream
that already started on a server that dies ends with an error event (see ``OpenAIServing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.engine.upstream import Upstream
from gateway.errors import EngineUnavailable


class UpstreamPool:
    def __init__(self, members: list[Upstream]):
        self.members = members

    @property
    def ready(self) -> bool:
        return any(member.ready for member in self.members)

    async def healthy(self, timeout: float = 2.0) -> bool:
        for member in self.members:
            if member.ready and await member.healthy(timeout):
                return True
        return False

    async def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        sent: asyncio.Event | None = None,
    ) -> httpx.Response:
        """Send to the least busy ready server, retrying on the others while none answers.
        ``sent``: see ``Upstream.send``."""
        tried: list[Upstream] = []
        while candidates := [m for m in self.members if m.ready and m not in tried]:
            member = min(candidates, key=lambda m: m.outstanding)
            member.outstanding += 1
            try:
                response = await member.send(method, path, body, stream=stream, sent=sent)
            except BaseException as exc:  # also a call cancelled in flight
                member.outstanding -= 1
                if not isinstance(exc, EngineUnavailable):
                    raise
                member.set_ready(False)  # its health watcher lets it back in
                tried.append(member)
                continue
            if stream:
                response.stream = _Outstanding(response.stream, member)
            else:
                member.outstanding -= 1
            return response
        raise EngineUnavailable("No engine is ready; retry shortly.")

    async def ensure_adapter(self, name: str, path: str) -> None:
        for member in self.members:
            if member.ready:
                await member.ensure_adapter(name, path)

    async def unload_adapter(self, name: str) -> None:
        for member in self.members:
            await member.unload_adapter(name)

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()


Upstreams = Upstream | UpstreamPool
"""What generation and removal send to: the embedded vLLM, or the configured servers."""


class _Outstanding(httpx.AsyncByteStream):
    """A streamed body that counts as in flight on its server until it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, member: Upstream):
        self.stream = stream
        self.member = member
        self.open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        if self.open:
            self.open = False
            self.member.outstanding -= 1
        await self.stream.aclose()
