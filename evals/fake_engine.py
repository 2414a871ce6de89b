"""A FAKE OpenAI streaming engine for benchmarks only: it stands in for a GPU vLLM, which this
CPU box cannot run, so that the gateway's own ceiling shows. It generates nothing: every chat
completion streams ``max_tokens`` words of a fixed story, in vLLM's chunk format (one token per
chunk, usage in the last one when asked), as fast as the client reads or at ``--tokens-per-s``
per stream; a request's own ``fake_tokens_per_s`` field sets its pace, and its
``fake_first_token_ms`` how long its first chunk waits (a prefill; none by default).

    python -m evals.fake_engine --port 8199                     # then: obliviate serve --upstream
    python -m evals.fake_engine --port 8199 --tokens-per-s 100  # a GPU's per-request pace

The real-engine comparison stays ``evals.gateway_overhead`` (vLLM's CPU build).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "fake-engine"
STORY = "the lighthouse keeper walked along the shore and watched the grey sea roll in under a sky"
WORDS = STORY.split()


def _chunk(rid: str, created: int, delta: dict[str, Any], finish: str | None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": MODEL,
            "choices": [choice]}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


PACE_FIELD = "fake_tokens_per_s"
FIRST_TOKEN_FIELD = "fake_first_token_ms"


def build(tokens_per_s: float) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        pace = float(body.get(PACE_FIELD, tokens_per_s))
        pause = 1 / pace if pace > 0 else 0.0
        count = int(body.get("max_tokens") or 16)
        words = [" " + WORDS[i % len(WORDS)] for i in range(count)]
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        usage = {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            return JSONResponse({"id": rid, "object": "chat.completion", "created": created,
                                 "model": MODEL, "usage": usage, "choices": [choice]})  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            await asyncio.sleep(float(body.get(FIRST_TOKEN_FIELD, 0)) / 1000)
            yield _chunk(rid, created, {"role": "assistant", "content": ""}, None)
            for i, word in enumerate(words):
                if pause:
                    await asyncio.sleep(pause)
                finish = "length" if i == count - 1 else None
                yield _chunk(rid, created, {"content": word}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                end = {"id": rid, "object": "chat.completion.chunk", "created": created,
                       "model": MODEL, "choices": [], "usage": usage}  # fmt: skip
                yield b"data: " + json.dumps(end).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/health", health), Route("/v1/models", models),
    ])  # fmt: skip


def main(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8199,
    tokens_per_s: Annotated[
        float, typer.Option(help="Pace of each stream; 0 = as fast as it is read.")
    ] = 0.0,
) -> None:
    uvicorn.run(build(tokens_per_s), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    typer.run(main)
