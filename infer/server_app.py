"""The web layer of `scratchpad serve`: routes, guards (API key, Content-Type, body size), admission,
budget calibration off the event loop, streaming and non-streaming answers, disconnects.

    POST /v1/completions   POST /v1/chat/completions   GET /v1/models   GET /health

Every error, unknown routes included, has the OpenAI shape {"error": {message, type, param, code}}.
"""

import asyncio
import hmac
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from infer.api_fields import ApiError, parse_json
from infer.chat import DEFAULT_TEMPLATE, ChatTemplate, chat_body, chat_chunk, parse_chat
from infer.engine_thread import Admission, EngineThread, Pending
from infer.openai_api import FINISH, Job, completion_body, completion_chunk, parse_completion, usage_chunk
from infer.options import prompt_trigger
from infer.playground import add_playground
from infer.sequence import Sequence
from infer.stop_text import StreamText, visible_output

MAX_BODY_BYTES = 1 << 20


@dataclass
class Endpoint:
    """What differs between completions and chat: parsing, ids, bodies, stream chunks."""
    prefix: str
    chunk_object: str
    parse: Callable[[dict], Job]
    body: Callable
    chunk: Callable
    opening: Callable  # (rid, index, job) -> the first chunk of a choice's stream, or None


def calibrate(model, job: Job):
    """Each request's trigger from the scratchpad budget on its prompt (a forward: runs in a worker)."""
    for r in job.reqs:
        r.trigger = prompt_trigger(model, r.prompt, job.budget, r.trigger)


def build_app(model, model_name: str, max_batch: int = 8, max_queue: int = 64, max_tokens_limit: int = 65536,
              api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES,
              chat_template: ChatTemplate | None = None, eager_fallback: bool = False):
    """The FastAPI app and its engine thread (app.state.engine_thread: stop it on shutdown;
    app.state.drain(seconds): stop admitting, cancel what still runs after `seconds`)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    from infer.engine import Engine

    cfg = model.cfg
    scheduler = Engine(model, eager_fallback=eager_fallback).scheduler(max_batch)
    worker = EngineThread(scheduler)
    gate = Admission(max_batch, max_queue)
    calibrator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scratchpad-calibrate")
    template = chat_template or ChatTemplate(DEFAULT_TEMPLATE)
    app = FastAPI(title="scratchpad serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine_thread = worker

    def drain(seconds: float):
        gate.draining = True
        timer = threading.Timer(seconds, worker.cancel_all)
        timer.daemon = True
        timer.start()

    app.state.drain = drain

    def error(e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # unknown routes, wrong methods
        what = {404: f"no route {request.method} {request.url.path}", 405: f"{request.method} is not allowed on "
                f"{request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error(ApiError(exc.status_code, what, code="not_found" if exc.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def internal(request, exc):  # no traceback in a response
        return error(ApiError(500, "internal server error", kind="server_error"))

    def check_key(request: Request):
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), api_key.encode()):
            raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer KEY'", code="invalid_api_key")

    async def read_json(request: Request) -> dict:
        check_key(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise ApiError(415, f"Content-Type must be application/json, got {media or 'none'!r}")
        if gate.draining:
            raise ApiError(503, "the server is shutting down", kind="server_error")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            raise ApiError(413, f"the request body has {int(length)} bytes; the limit is {max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise ApiError(413, f"the request body exceeds the limit of {max_body_bytes} bytes")
            chunks.append(chunk)
        return parse_json(b"".join(chunks))

    @app.get("/health")
    async def health():
        return {"status": "draining" if gate.draining else "ok", "model": model_name, "slots": max_batch,
                "active": scheduler.active_slots, "waiting": len(scheduler.waiting), "in_flight": gate.in_flight,
                "engine_errors": worker.errors}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "scratchpad"}]}

    completions_endpoint = Endpoint(
        "cmpl", "text_completion", lambda b: parse_completion(b, model_name, cfg, max_tokens_limit, gate.capacity),
        completion_body, completion_chunk,
        lambda rid, i, job: completion_chunk(rid, model_name, i, job.echo[i]) if job.echo else None)
    chat_endpoint = Endpoint(
        "chatcmpl", "chat.completion.chunk", lambda b: parse_chat(b, model_name, cfg, template, max_tokens_limit),
        chat_body, chat_chunk, lambda rid, i, job: chat_chunk(rid, model_name, i, "", first=True))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer(request, completions_endpoint)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await answer(request, chat_endpoint)

    async def answer(request: Request, ep: Endpoint):
        job = ep.parse(await read_json(request))
        n = len(job.reqs)
        if not gate.has_room(n):
            raise ApiError(429, f"the server is busy: {gate.in_flight} requests in flight for {max_batch} slots and "
                           f"a queue of {max_queue}; retry later", kind="rate_limit_error")
        gate.take(n)
        loop = asyncio.get_running_loop()
        try:
            if job.budget is not None:
                await loop.run_in_executor(calibrator, calibrate, model, job)
        except BaseException:
            gate.release(n)
            raise
        pending = Pending(loop, n, gate.release)
        seqs = [Sequence(r, pending.on_bytes if job.stream else None, index=i, on_done=pending.on_done)
                for i, r in enumerate(job.reqs)]
        for s in seqs:
            worker.submit(s)
        rid = f"{ep.prefix}-{uuid.uuid4().hex[:24]}"
        trig = [r.trigger.for_model(cfg) for r in job.reqs]
        if job.stream:
            return StreamingResponse(stream(rid, ep, job, seqs, pending, trig), media_type="text/event-stream")
        if not await finished_or_gone(request, pending, seqs):
            return Response(status_code=499)  # nobody reads it: the client went away
        gens = [s.result() for s in seqs]
        failed = next((g for g in gens if g.stop_reason == "error"), None)
        if failed is not None:
            raise engine_error(failed.error)
        texts = []
        for i, (g, r) in enumerate(zip(gens, job.reqs)):
            shown = visible_output(g.output, g.stop_reason, r.stop)
            if g.logprobs is not None:  # none for the bytes of the stop string
                g.logprobs = g.logprobs[: len(shown)]
            texts.append((job.echo[i] if job.echo else "") + shown.decode("utf-8", errors="replace"))
        return ep.body(rid, model_name, gens, texts, trig)

    async def finished_or_gone(request: Request, pending: Pending, seqs: list[Sequence]) -> bool:
        """Wait for every sequence to end, or for the client to disconnect (then cancel them)."""
        done = asyncio.ensure_future(pending.all_done.wait())
        gone = asyncio.ensure_future(disconnected(request))
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel(), gone.cancel()
            if not pending.all_done.is_set():
                for s in seqs:
                    worker.cancel(s)
        return pending.all_done.is_set()

    async def disconnected(request: Request):
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def stream(rid, ep: Endpoint, job: Job, seqs, pending: Pending, trig):
        texts = [StreamText(r.stop) for r in job.reqs]
        left = len(seqs)
        try:
            for i in range(len(seqs)):
                first = ep.opening(rid, i, job)
                if first is not None:
                    yield sse(first)
            while left:
                kind, i, payload = await pending.queue.get()
                if kind == "bytes":
                    text = texts[i].feed(payload)
                    if text:
                        yield sse(ep.chunk(rid, model_name, i, text))
                    continue
                left -= 1
                g = payload.result()
                if g.stop_reason == "error":
                    yield sse(engine_error(g.error).body())
                    break
                tail = texts[i].end(g.stop_reason)
                if tail:
                    yield sse(ep.chunk(rid, model_name, i, tail))
                yield sse(ep.chunk(rid, model_name, i, "", FINISH[g.stop_reason], g, trig[i]))
            else:
                if job.include_usage:
                    yield sse(usage_chunk(rid, model_name, ep.chunk_object, [s.result() for s in seqs]))
            yield "data: [DONE]\n\n"
        finally:  # the client went away (or we finished): whatever still runs is cancelled
            for s in seqs:
                if not s.done:
                    worker.cancel(s)

    add_playground(app, model, model_name, read_json)  # GET /: the playground page (infer/playground.py)
    return app


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def engine_error(detail: str) -> ApiError:
    return ApiError(500, f"the engine failed on this request ({detail}); other requests were not affected",
                    kind="server_error", code="engine_error")
