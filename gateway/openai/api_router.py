"""Routes of the OpenAI surface; user API keys are checked here, never on admin routes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from gateway.auth import bearer_token, require_api_key
from gateway.body import parse_body
from gateway.errors import APIError, InvalidRequest
from gateway.openai.protocol import ChatCompletionRequest, CompletionRequest
from gateway.openai.serving import OpenAIServing, RequestTimer
from gateway.routing.protocol import ARM_HEADER
from gateway.routing.serving import ArmPlan, Router

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.openai_serving


async def _generate(
    request: Request, route: str, model: type[ChatCompletionRequest] | type[CompletionRequest]
) -> Response:
    timer = RequestTimer(route)
    try:
        settings = request.app.state.settings
        body = await parse_body(request, model, settings.max_body_bytes)
        if settings.vllm_lora and not settings.upstream and body.wants_prompt_logprobs():
            # vLLM's CPU build kills its engine scoring prompts of a batch with LoRA enabled.
            raise InvalidRequest(
                "Prompt log-probabilities (echo with logprobs, prompt_logprobs) are off while "
                "this gateway serves LoRA model versions (vllm_lora).",
                param="logprobs",
            )
        return await _serving(request).forward(route, body, timer, await _plan(request, body))
    except APIError as error:
        timer.finish(error.status)
        return error.response(headers=timer.header())


async def _plan(request: Request, body: ChatCompletionRequest | CompletionRequest) -> ArmPlan:
    """The arm serving this request: header, else sticky weights by ``user``, else API key."""
    routing: Router = request.app.state.router
    identity = getattr(body, "user", None) or bearer_token(request)
    arm = routing.select(request.headers.get(ARM_HEADER), request.state.admin, identity)
    if arm in ("suppression", "baseline"):
        return routing.plan(arm, request.app.state.registry)
    return await asyncio.to_thread(routing.plan, arm, request.app.state.registry)


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _generate(request, "/v1/chat/completions", ChatCompletionRequest)


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _generate(request, "/v1/completions", CompletionRequest)


@router.get("/models")
async def models(request: Request) -> Response:
    return await _serving(request).get("/v1/models")
