"""The FastAPI application: routes, API key check, OpenAI-style errors."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from jinja2 import TemplateError
from starlette.exceptions import HTTPException

# Imported only by tunesmith.serve.server.serve, so `tunesmith --help` does not pay for FastAPI.
from tunesmith.serve.batcher import Batcher, Completion, GenerationRequest
from tunesmith.serve.hosts import allowed_hosts, host_allowed, refusal
from tunesmith.serve.pool import ModelPool, Route
from tunesmith.serve.render import chat_prompt, conversation_prompt, encode, renderer
from tunesmith.serve.schemas import ChatRequest, ClassifyRequest, CompletionRequest
from tunesmith.serve.tools import (
    RequestProblem,
    ToolPlan,
    ToolStream,
    check_tools,
    plan_tools,
    reply_message,
    request_messages,
    uses_tools,
)

DEFAULT_MAX_TOKENS = 96  # tunesmith generate's default
MAX_CLASSIFY_INPUTS = 256


class ApiError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        """The JSON response."""
        kind = {401: "authentication_error", 404: "not_found_error"}.get(self.status, "invalid_request_error")
        if self.status >= 500:
            kind = "server_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def create_app(
    pool: ModelPool, api_key: str | None = None, batcher: Batcher | None = None, bind_host: str | None = None
) -> FastAPI:
    """The server for ``pool``; with ``api_key`` every /v1 route needs ``Authorization: Bearer KEY``.

    ``bind_host``: the address it listens on; requests whose Host header names another site are refused
    (DNS rebinding, see ``serve.hosts``). None: no Host check (an app not bound by ``serve``).
    """
    worker = batcher or Batcher()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        await asyncio.to_thread(worker.stop)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    app = FastAPI(title="tunesmith", lifespan=lifespan)
    app.state.pool, app.state.batcher = pool, worker
    _install_error_handlers(app)
    if bind_host is not None:
        _check_hosts(app, allowed_hosts(bind_host))
    guarded = [Depends(check_key)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": len(pool.routes)}

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(route) for route in pool.routes.values()]}

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat(body: ChatRequest, request: Request) -> Any:
        route = _generative(pool, body.model)
        prompt, plan = _chat_prompt(route, body)
        limit = body.max_completion_tokens or body.max_tokens
        job = _job(route, encode(route, prompt, chat=True), body, limit, strip=True, param="messages")
        return await _answer(worker, job, body, request, chat=True, plan=plan)

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        route = _generative(pool, body.model)
        job = _job(route, encode(route, body.prompt, chat=False), body, body.max_tokens, strip=False, param="prompt")
        return await _answer(worker, job, body, request, chat=False)

    @app.post("/v1/classify", dependencies=guarded)
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        return await _classify(pool, body)

    return app


def _route(pool: ModelPool, model: str) -> Route:
    route = pool.get(model)
    if route is None:
        known = ", ".join(pool.routes)
        raise ApiError(404, f"model {model!r} is not served here (served: {known})", "model", "model_not_found")
    return route


def _generative(pool: ModelPool, model: str) -> Route:
    route = _route(pool, model)
    if not route.form.generates:
        raise ApiError(400, f"model {model!r} is a classification run: use POST /v1/classify", "model")
    return route


def _chat_prompt(route: Route, body: ChatRequest) -> tuple[str, ToolPlan]:
    """The prompt text (a forced call opening included) and what the request asks of tools."""
    raw = [m.plain() for m in body.messages]
    try:
        tools = check_tools(body.tools)
        chat = route.form.serves_chat
        if not chat and tools:
            raise RequestProblem("tools", f"model {route.id!r} is a {route.task} run: it reads user text, not tools")
        plan = plan_tools(tools, body.tool_choice, force=chat and not renderer(route).native_tools)
        if chat and (uses_tools(raw, plan) or route.form.turns):
            return conversation_prompt(route, request_messages(raw), plan.offered) + plan.prefix, plan
        return chat_prompt(route, _plain_turns(raw)), plan
    except RequestProblem as bad:
        raise ApiError(400, str(bad), bad.param) from None
    except TemplateError as err:  # a chat template may refuse a conversation (its raise_exception)
        raise ApiError(400, f"messages: the chat template of {body.model!r} refused them: {err}", "messages") from err


def _plain_turns(raw: list[dict[str, Any]]) -> list[dict[str, str]]:
    for index, message in enumerate(raw):
        if message.get("content") is None:
            raise RequestProblem(f"messages[{index}].content", f"missing: a {message['role']} message has content")
    return [{"role": m["role"], "content": m["content"]} for m in raw]


def _job(route: Route, ids: list[int], body: Any, limit: int | None, strip: bool, param: str) -> GenerationRequest:
    context = route.engine.context
    if context is not None and len(ids) >= context:
        raise ApiError(
            400,
            f"the prompt has {len(ids)} tokens; model {route.id!r} reads at most {context} "
            "(its context), answer included",
            param,
            "context_length_exceeded",
        )
    max_tokens = limit or DEFAULT_MAX_TOKENS
    if context is not None:
        max_tokens = min(max_tokens, context - len(ids))
    sample = bool(body.temperature)  # absent or 0: greedy, the answer tunesmith generate gives
    return GenerationRequest(
        route=route,
        input_ids=ids,
        max_tokens=max_tokens,
        strip=strip,
        stop=body.stops(),
        sample=sample,
        temperature=body.temperature or 1.0,
        top_p=body.top_p if body.top_p is not None else 1.0,
        seed=body.seed if body.seed is not None else 0,
        stream=bool(body.stream),
    )


async def _answer(
    worker: Batcher, job: GenerationRequest, body: Any, request: Request, chat: bool, plan: ToolPlan | None = None
) -> Any:
    if len(job.stop) > 4:
        raise ApiError(400, "stop: at most 4 sequences", "stop")
    events = job.bind()
    worker.submit(job)
    meta = _Meta(chat, body.model, plan or ToolPlan())
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(job, events, meta, usage), media_type="text/event-stream")
    try:
        completion = await _wait_done(job, events, request)
    finally:
        job.cancelled = True  # a no-op once answered; frees the row if the client left
    return meta.whole(completion)


async def _wait_done(job: GenerationRequest, events: asyncio.Queue[tuple[str, Any]], request: Request) -> Completion:
    while True:
        try:
            kind, payload = await asyncio.wait_for(events.get(), timeout=0.5)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancelled = True
            continue
        if kind == "done":
            return payload
        if kind == "error":
            raise ApiError(500, payload, code="generation_failed")


async def _stream(
    job: GenerationRequest, events: asyncio.Queue[tuple[str, Any]], meta: _Meta, usage: bool
) -> AsyncIterator[str]:
    calls = ToolStream() if meta.plan.reads_calls else None
    try:
        yield meta.chunk("", None, first=True)
        if calls is not None:
            for delta in calls.feed(meta.plan.prefix):
                yield meta.delta(delta)
        while True:
            kind, payload = await events.get()
            if kind == "delta" and calls is not None:
                for delta in calls.feed(payload):
                    yield meta.delta(delta)
            elif kind == "delta":
                yield meta.chunk(payload, None)
            elif kind == "error":
                yield _sse({"error": {"message": payload, "type": "server_error", "param": None, "code": None}})
                break
            else:
                for delta in calls.close() if calls is not None else []:
                    yield meta.delta(delta)
                called = calls is not None and calls.calls > 0
                yield meta.chunk("", "tool_calls" if called else payload.finish_reason)
                if usage:
                    yield _sse(meta.envelope([], usage=_usage(payload)))
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled = True  # the client went away mid-stream (or we are done): stop generating its row


class _Meta:
    """Response envelopes for one request."""

    def __init__(self, chat: bool, model: str, plan: ToolPlan) -> None:
        self.chat, self.model, self.plan = chat, model, plan
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def envelope(self, choices: list[dict[str, Any]], stream: bool = True, **extra: Any) -> dict[str, Any]:
        kind = ("chat.completion" if self.chat else "text_completion") + (".chunk" if stream and self.chat else "")
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices} | extra

    def chunk(self, text: str, finish: str | None, first: bool = False) -> str:
        if self.chat:
            # With tools the answer may be calls alone: content null until text comes, as OpenAI streams it.
            opening = None if self.plan.reads_calls else text
            delta: dict[str, Any] = {"role": "assistant", "content": opening} if first else {"content": text}
            choice = {"index": 0, "delta": delta if finish is None else {}, "finish_reason": _reason(finish)}
        else:
            choice = {"index": 0, "text": text, "finish_reason": _reason(finish), "logprobs": None}
        return _sse(self.envelope([choice]))

    def delta(self, delta: dict[str, Any]) -> str:
        """One chat chunk carrying ``delta`` (content or tool-call pieces)."""
        return _sse(self.envelope([{"index": 0, "delta": delta, "finish_reason": None}]))

    def whole(self, done: Completion) -> dict[str, Any]:
        finish = _reason(done.finish_reason)
        if self.chat and self.plan.reads_calls:
            message, called = reply_message(self.plan.prefix + done.text)
            choice = {"index": 0, "message": message, "logprobs": None}
            finish = "tool_calls" if called else finish
        elif self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": None}
        else:
            choice = {"index": 0, "text": done.text, "logprobs": None}
        choice["finish_reason"] = finish
        return self.envelope([choice], stream=False, usage=_usage(done))


def _reason(finish: str | None) -> str | None:
    if finish == "tool_calls":
        return finish
    return None if finish is None else ("length" if finish == "length" else "stop")


def _usage(done: Completion) -> dict[str, int]:
    total = done.prompt_tokens + done.completion_tokens
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens, "total_tokens": total}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _model_card(route: Route) -> dict[str, Any]:
    card: dict[str, Any] = {"id": route.id, "object": "model", "created": 0, "owned_by": "tunesmith"}
    card |= {"task": route.task, "kind": "base" if route.parent is None else "run", "parent": route.parent}
    return card


async def _classify(pool: ModelPool, body: ClassifyRequest) -> dict[str, Any]:
    from tunesmith.evaluate.classify import predict_texts

    route = _route(pool, body.model)
    if route.run is None:
        raise ApiError(400, f"model {body.model!r} is not a classification run", "model")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if len(texts) > MAX_CLASSIFY_INPUTS:
        raise ApiError(400, f"input: at most {MAX_CLASSIFY_INPUTS} texts per request, got {len(texts)}", "input")
    run = route.run

    def predict() -> list[Any]:
        with route.engine.lock:
            return predict_texts(run, texts)

    predictions = await asyncio.to_thread(predict)
    data = [{"index": i, "label": p.label, "score": p.probability} for i, p in enumerate(predictions)]
    return {"object": "list", "model": body.model, "data": data}


def _check_hosts(app: FastAPI, hosts: frozenset[str] | None) -> None:
    @app.middleware("http")
    async def check_host(request: Request, call_next: Any) -> Any:
        if not host_allowed(request.headers.get("host"), hosts):
            return ApiError(400, refusal(request.headers.get("host")), code="invalid_host").response()
        return await call_next(request)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, ApiError)
        return err.response()

    async def invalid(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        return _validation_error(err.errors()).response()

    async def http_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, HTTPException)
        return ApiError(err.status_code, str(err.detail)).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)


def _validation_error(errors: Any) -> ApiError:
    first: dict[str, Any] = next(iter(errors), {})
    if first.get("type") == "json_invalid":
        return ApiError(400, "the request body is not valid JSON", code="invalid_json")
    field = ""
    for part in first.get("loc", ()):
        if part != "body":
            field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    field = field or "body"
    return ApiError(400, f"{field}: {first.get('msg', 'invalid value')}", field, "invalid_request")
