"""Routes of the OpenAI surface; user API keys are checked here, never on admin routes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from gateway.auth import bearer_token, require_api_key
from gateway.body import documented, parse_body
from gateway.errors import APIError, InvalidRequest
from gateway.openai.protocol import ChatCompletionRequest, CompletionRequest, PassThroughBody
from gateway.openai.responses import ResponsesRequest
from gateway.openai.serving import AnyRequest, OpenAIServing, RequestTimer
from gateway.routing.protocol import ARM_HEADER
from gateway.routing.serving import ArmPlan, Router

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
# vLLM's routes whose answers are numbers or the client's own text: relayed as they are.
PASSTHROUGH = ("/tokenize", "/detokenize", "/pooling", "/score", "/rerank", "/v1/embeddings",
               "/v1/score", "/v1/rerank")  # fmt: skip
passthrough_router = APIRouter(dependencies=[Depends(require_api_key)])


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.openai_serving


async def _generate(request: Request, route: str, model: type[AnyRequest]) -> Response:
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


async def _plan(request: Request, body: AnyRequest) -> ArmPlan:
    """The arm serving this request: header, else sticky weights by ``user``, else API key."""
    routing: Router = request.app.state.router
    identity = getattr(body, "user", None) or bearer_token(request)
    arm = routing.select(request.headers.get(ARM_HEADER), request.state.admin, identity)
    if arm in ("suppression", "baseline"):
        return routing.plan(arm)
    return await asyncio.to_thread(routing.plan, arm)


@router.post("/chat/completions", openapi_extra=documented(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    return await _generate(request, "/v1/chat/completions", ChatCompletionRequest)


@router.post("/completions", openapi_extra=documented(CompletionRequest))
async def completions(request: Request) -> Response:
    return await _generate(request, "/v1/completions", CompletionRequest)


@router.post("/responses", openapi_extra=documented(ResponsesRequest))
async def responses(request: Request) -> Response:
    return await _generate(request, "/v1/responses", ResponsesRequest)


@router.get("/models")
async def models(request: Request) -> Response:
    return await _serving(request).get("/v1/models")


async def _passthrough(request: Request) -> Response:
    try:
        settings = request.app.state.settings
        body = await parse_body(request, PassThroughBody, settings.max_body_bytes)
        return await _serving(request).passthrough(request.url.path, body.model_dump())
    except APIError as error:
        return error.response()


for _path in PASSTHROUGH:
    passthrough_router.add_api_route(
        _path, _passthrough, methods=["POST"], openapi_extra=documented(PassThroughBody)
    )
