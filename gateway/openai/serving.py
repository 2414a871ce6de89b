"""Forwarding of OpenAI requests to vLLM through the suppression stack, streaming end to end.

The stack checks the conversation while vLLM already works on it: the check may answer on its own
(the request is suppressed), add a system instruction, or attach per-request controls for the vLLM
plugin; the last two send the request again, as changed. No engine output is used before the check
ends. While nothing is forgotten, answers are relayed as they arrive (bytes
for a stream). Otherwise every output passes the stack's output watch over every field that
carries text (``gateway.openai.watch``): a stream is parsed event by event, text and the tokens
of its log-probabilities are released once checked, and a blocked stream ends cleanly with the
suppression answer. Closing the upstream response (also when the client disconnects) makes vLLM
abort.
vLLM's errors are normalised to OpenAI's shape; an error after a stream started is one ``data:``
event followed by ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import msgspec
from fastapi import Response
from fastapi.responses import StreamingResponse

from gateway.engine.pool import Upstreams
from gateway.errors import (
    APIError,
    ContentSuppressed,
    UpstreamError,
    as_api_error,
    from_upstream,
)
from gateway.openai.protocol import DONE, CompletionRequest, GenerationRequest, sse
from gateway.openai.responses import (
    ResponsesRequest,
    ResponseStreamWatch,
    output_texts,
    watch_response,
)
from gateway.openai.watch import ChoiceWatch
from gateway.ops import metrics
from gateway.routing.protocol import ARM_HEADER, VERSION_HEADER
from gateway.routing.serving import ArmPlan
from suppressors.base import RequestContext
from suppressors.stack import StackFailed, SuppressionStack
from suppressors.vllm_plugin.controls import encode

OVERHEAD_HEADER = "x-obliviate-overhead-ms"
LAYERS_HEADER = "x-obliviate-layers"
AnyRequest = GenerationRequest | ResponsesRequest


@dataclass
class SuppressionReply:
    """How a suppressed request is answered."""

    style: Literal["abstain", "error"]
    message: str


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


class OpenAIServing:
    """Forwards generation requests through the suppression stack and relays the answers."""

    def __init__(
        self, upstream: Upstreams, stacks: dict[str, SuppressionStack], reply: SuppressionReply
    ):
        self.upstream = upstream
        self.stacks = stacks
        """The stack of each arm that has one (suppression, hybrid); they share one matcher."""
        self.matcher = next(iter(stacks.values())).matcher
        self.reply = reply

    async def forward(
        self, route: str, request: AnyRequest, timer: RequestTimer, plan: ArmPlan
    ) -> Response:
        """Serve ``request`` on the arm ``plan`` (its weights, and the stack if it has one).

        The engine's call goes out first and the stack checks the conversation while the engine
        works on it; nothing of the answer is used before the check ends, so the check costs
        time only where it outlasts the engine's first token. A check that blocks the request,
        or changes what vLLM must be sent (a guard note, in-model controls), drops the early
        call, and vLLM aborts it."""
        metrics.ARM_REQUESTS.labels(plan.arm).inc()
        arm = {ARM_HEADER: plan.arm, VERSION_HEADER: plan.version.id if plan.version else ""}
        body = request.model_dump(exclude_unset=True)
        if plan.version is not None:
            await self.upstream.ensure_adapter(plan.version.id, plan.version.path)
            body["model"] = plan.version.id
        early = copy.deepcopy(body) if plan.stack else body  # only a check changes it
        if plan.stack and self.stacks[plan.arm].watches:
            _ask_usage_per_chunk(early, request)  # what a watched stream needs
        sent_at = time.perf_counter()
        sent = asyncio.Event()
        call = asyncio.create_task(
            self.upstream.send("POST", route, early, stream=request.stream, sent=sent)
        )
        call.add_done_callback(lambda _: sent.set())  # a call that failed before sending
        # The check begins once the request is out, so the engine never waits for it.
        check = asyncio.create_task(self._check(request, plan, sent)) if plan.stack else None
        try:
            ctx = await check if check is not None else None
        except BaseException:
            await _drop(call)
            raise
        if ctx is not None:
            _apply(body, ctx, request)
        blocked = ctx is not None and ctx.blocked_by is not None
        if blocked or body != early:
            await _drop(call)
            if blocked:
                return self._suppressed(request, ctx, timer, arm)
            sent_at = time.perf_counter()
            call = asyncio.create_task(
                self.upstream.send("POST", route, body, stream=request.stream)
            )
        response = await call
        if response.status_code != 200:
            error = await self._upstream_error(response)
            timer.upstream_s = time.perf_counter() - sent_at
            raise error
        timer.upstream_s = time.perf_counter() - sent_at
        # A request that only scores its prompt generates nothing: there is no output to watch.
        watched = ctx is not None and not ctx.only_scores
        if request.stream:
            events = response.aiter_raw()
            if watched and isinstance(request, ResponsesRequest):
                events = self._watched_responses(response, request, ctx)
            elif watched:
                events = self._watched(response, request, ctx)
            relay = self._relay(events, response, timer)
            headers = timer.header() | _layers(ctx) | arm
            return StreamingResponse(relay, media_type="text/event-stream", headers=headers)
        content = response.content
        if watched:
            content = await self._checked_answer(content, request, ctx)
        timer.finish(200)
        headers = timer.header() | _layers(ctx) | arm
        return Response(content, media_type="application/json", headers=headers)

    async def _check(
        self, request: AnyRequest, plan: ArmPlan, sent: asyncio.Event
    ) -> RequestContext | None:
        """The stack's verdict on the conversation, once the early call is ``sent``;
        SuppressionUnavailable when it cannot say."""
        await sent.wait()
        try:
            texts = await self._texts(request)
            return await self.stacks[plan.arm].before(texts, plan.exempt, request.only_scores())
        except StackFailed as exc:
            raise as_api_error(exc) from exc

    async def _texts(self, request: AnyRequest) -> list[str]:
        """The conversation's texts; token-id prompts are detokenized by vLLM when it matters,
        and a previous response (Responses API) is read back from vLLM."""
        texts = request.texts()
        if not len(self.matcher):
            return texts
        if isinstance(request, CompletionRequest):
            for tokens in request.token_prompts():
                body = {"model": request.model, "tokens": tokens}
                texts.append((await self._json("POST", "/detokenize", body))["prompt"])
        if isinstance(request, ResponsesRequest) and request.previous_response_id:
            path = f"/v1/responses/{request.previous_response_id}"
            texts += output_texts(await self._json("GET", path))
        return texts

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.upstream.send(method, path, body)
        if response.status_code != 200:
            raise await self._upstream_error(response)
        return response.json()

    async def get(self, path: str) -> Response:
        response = await self.upstream.send("GET", path)
        if response.status_code != 200:
            raise await self._upstream_error(response)
        return Response(response.content, media_type="application/json")

    async def passthrough(self, path: str, body: Any) -> Response:
        """A vLLM route whose answer cannot carry forgotten knowledge, relayed as it is."""
        response = await self.upstream.send("POST", path, body)
        if response.status_code != 200:
            raise await self._upstream_error(response)
        return Response(response.content, media_type=response.headers.get("content-type"))

    def _suppressed(
        self,
        request: AnyRequest,
        ctx: RequestContext,
        timer: RequestTimer,
        arm: dict[str, str],
    ) -> Response:
        if self.reply.style == "error":
            raise ContentSuppressed("This request touches content the service was asked to forget.")
        if request.wants_prompt_logprobs():
            # A scoring client (lm-eval's loglikelihood, TOFU) cannot parse an abstention with
            # no log-probabilities: it gets an error it can report.
            raise ContentSuppressed(
                "This text touches content the service was asked to forget: its "
                "log-probabilities are withheld."
            )
        timer.finish(200)
        headers = timer.header() | _layers(ctx) | arm
        if not request.stream:
            answer = request.abstention(self.reply.message)
            return Response(json.dumps(answer), media_type="application/json", headers=headers)
        events = request.abstention_events(self.reply.message)
        return StreamingResponse(iter(events), media_type="text/event-stream", headers=headers)

    async def _checked_answer(
        self, content: bytes, request: AnyRequest, ctx: RequestContext
    ) -> bytes:
        answer = json.loads(content)
        blocked = False
        if isinstance(request, ResponsesRequest):
            if not await watch_response(answer, ctx):
                blocked = True
                answer = request.abstention(self.reply.message)
        else:
            for choice in answer.get("choices", []):
                if not await ChoiceWatch(ctx, request).feed(choice, streaming=False, final=True):
                    blocked = True
                    request.blank_choice(choice, self.reply.message, streaming=False)
        if blocked and self.reply.style == "error":
            raise ContentSuppressed("The answer touched content the service was asked to forget.")
        return json.dumps(answer).encode()

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

    async def _relay(
        self, events: AsyncIterator[bytes], response: httpx.Response, timer: RequestTimer
    ) -> AsyncIterator[bytes]:
        """Stream ``events`` to the client, timing the first and closing the upstream after."""
        first = True
        try:
            async for event in events:
                if first:
                    metrics.TTFT.labels(timer.route).observe(time.perf_counter() - timer.start)
                    first = False
                yield event
        except httpx.HTTPError as exc:
            yield _stream_failed(exc)
            yield DONE
        finally:
            # Reached on completion, error, or client disconnect (cancellation): closing the
            # upstream connection makes vLLM abort a request nobody reads any more.
            await response.aclose()
            timer.finish(200)

    async def _watched(
        self, response: httpx.Response, request: GenerationRequest, ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """Upstream events re-emitted with only checked text; the answer ends a blocked one.
        What one network read brought is checked once per choice and goes out in one write: the
        faster the engine, the more tokens a read holds, so the watch keeps up under load."""
        watchers: dict[int, ChoiceWatch] = {}
        usage: dict[str, Any] | None = None
        skeleton: dict[str, Any] = {}
        async for lines in _data_lines(response):
            out: list[bytes] = []
            chunks = [_event(line) for line in lines if line != "data: [DONE]"]
            last = {
                c["index"]: i for i, chunk in enumerate(chunks) for c in chunk.get("choices", ())
            }
            for i, chunk in enumerate(chunks):
                if "choices" not in chunk:  # an error event: pass it on
                    out.append(sse(chunk))
                    continue
                usage = chunk.pop("usage", None) or usage
                skeleton = {k: v for k, v in chunk.items() if k != "choices"}
                for choice in chunk["choices"]:
                    watcher = watchers.setdefault(choice["index"], ChoiceWatch(ctx, request))
                    final = choice.get("finish_reason") is not None
                    check = last[choice["index"]] == i
                    if not await watcher.feed(choice, streaming=True, final=final, check=check):
                        yield b"".join([*out, *self._blocked_tail(request, skeleton, usage)])
                        return
                if chunk["choices"]:
                    out.append(sse(chunk))
            if out:
                yield b"".join(out)
        if usage is not None and request.wants_usage():
            yield sse({**skeleton, "choices": [], "usage": usage})
        yield DONE

    def _blocked_tail(
        self, request: GenerationRequest, skeleton: dict[str, Any], usage: dict[str, Any] | None
    ) -> list[bytes]:
        if self.reply.style == "error":
            error = ContentSuppressed("The answer touched content the service was asked to forget.")
            return [error.sse_event(), DONE]
        return request.abstention_events(self.reply.message, skeleton, usage)

    async def _watched_responses(
        self, response: httpx.Response, request: ResponsesRequest, ctx: RequestContext
    ) -> AsyncIterator[bytes]:
        """vLLM's Responses events re-emitted with only checked text; the suppression answer
        (or an error event) ends a blocked one."""
        watch = ResponseStreamWatch(ctx)
        async for lines in _data_lines(response):
            for line in lines:
                if await watch.feed(_event(line)):
                    continue
                if self.reply.style == "error":
                    error = ContentSuppressed(
                        "The answer touched content the service was asked to forget."
                    )
                    yield b"".join([*watch.events.take(), watch.error_event(error)])
                else:
                    tail = request.abstention_events(self.reply.message, watch)
                    yield b"".join(tail)
                return
            yield b"".join(watch.events.take())


async def _data_lines(response: httpx.Response) -> AsyncIterator[list[str]]:
    """The stream's ``data:`` lines, as many at a time as each network read completes."""
    pending = b""
    async for block in response.aiter_bytes():
        *complete, pending = (pending + block).split(b"\n")
        lines = [line.rstrip(b"\r").decode() for line in complete if line.startswith(b"data: ")]
        if lines:
            yield lines
    if pending.startswith(b"data: "):
        yield [pending.rstrip(b"\r").decode()]


def _event(line: str) -> dict[str, Any]:
    """A ``data:`` line's JSON object; anything else fails the stream like a broken connection
    (an error event, then ``[DONE]``)."""
    try:
        event = msgspec.json.decode(line[len("data: ") :])
    except msgspec.DecodeError as exc:
        raise httpx.DecodingError(f"the engine sent an event that is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise httpx.DecodingError("the engine sent an event that is not a JSON object")
    return event


def _apply(body: dict[str, Any], ctx: RequestContext, request: AnyRequest) -> None:
    """Put the stack's instructions and controls into the body sent to vLLM."""
    if ctx.system_notes:
        request.add_note(body, "\n\n".join(ctx.system_notes))
    if ctx.controls:
        body["vllm_xargs"] = {**body.get("vllm_xargs", {}), **encode(ctx.controls)}
        # Steered or corrupted prompt tokens have other KV values: never share their prefix cache.
        digest = hashlib.sha256(json.dumps(ctx.controls, sort_keys=True).encode()).hexdigest()
        body["cache_salt"] = f"{body.get('cache_salt') or ''}obliviate-{digest[:32]}"[-128:]
    _ask_usage_per_chunk(body, request)


def _ask_usage_per_chunk(body: dict[str, Any], request: AnyRequest) -> None:
    if request.stream and request.wants_usage():
        # Usage in every chunk, so a watched stream cut short still reports what was generated.
        body["stream_options"] = {**body["stream_options"], "continuous_usage_stats": True}


async def _drop(call: asyncio.Task[httpx.Response]) -> None:
    """Abandon an engine call: cancelled in flight, or its response closed (vLLM aborts both)."""
    metrics.ENGINE_CALLS_DROPPED.inc()
    if call.cancel():
        return
    if call.exception() is None:
        await call.result().aclose()


def _layers(ctx: RequestContext | None) -> dict[str, str]:
    return {LAYERS_HEADER: ",".join(ctx.acted) if ctx is not None else ""}


def _stream_failed(exc: httpx.HTTPError) -> bytes:
    metrics.UPSTREAM_ERRORS.labels(kind="stream").inc()
    return UpstreamError(f"The engine failed mid-stream: {type(exc).__name__}").sse_event()
