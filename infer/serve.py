"""`scratchpad serve`: an OpenAI-compatible completions server over the continuous-batching engine.

    scratchpad serve [--model M] [--host 127.0.0.1] [--port 8000] [--max-batch N]
    POST /v1/completions   GET /v1/models   GET /health

One engine thread runs the scheduler: each request's prompt is prefilled into a free slot, all
slots decode together, finished or disconnected requests free their slot at once; requests beyond
the slots wait in a bounded queue (then 429). Needs the `[serve]` extra (FastAPI + uvicorn).
"""
import asyncio
import codecs
import json
import sys
import threading
import time
import traceback
import uuid

from infer.generate import DECODE_THREADS
from infer.openai_api import ApiError, chunk_body, completion_body, parse_completion, FINISH
from infer.options import effective_every, effective_threshold
from infer.sequence import Sequence
from scratchpad.errors import UserError
from scratchpad.flags import Parser, add_threads_flag, describe, int_flag, set_threads


class EngineThread:
    """Runs Scheduler.step in a loop on its own thread; the web loop submits and cancels."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.wake = threading.Event()
        self.stopping = False
        self.errors = 0
        self.thread = threading.Thread(target=self._loop, name="scratchpad-engine", daemon=True)
        self.thread.start()

    def submit(self, seq: Sequence):
        self.scheduler.submit(seq)
        self.wake.set()

    def cancel(self, seq: Sequence):
        self.scheduler.cancel(seq)
        self.wake.set()

    def stop(self):
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=10)

    def _loop(self):
        while not self.stopping:
            if not self.scheduler.has_work():
                self.wake.wait(0.1)
                self.wake.clear()
                continue
            try:
                self.scheduler.step()
            except Exception:  # a bug must not take the server down: fail what is in flight
                self.errors += 1
                traceback.print_exc(file=sys.stderr)
                self.scheduler.abort_all()


class Pending:
    """A sequence's bytes and end, handed from the engine thread to the web loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.queue = loop, asyncio.Queue()

    def on_bytes(self, seq, data: bytes):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("bytes", seq.index, data))

    def on_done(self, seq):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("done", seq.index, seq))


def build_app(model, model_name: str, max_batch: int = 8, max_queue: int = 64, max_tokens_limit: int = 65536):
    """The FastAPI app and its engine thread (app.state.engine_thread; stop it on shutdown)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    from infer.engine import Engine

    engine = Engine(model)
    scheduler = engine.scheduler(max_batch)
    worker = EngineThread(scheduler)
    app = FastAPI(title="scratchpad serve")
    app.state.engine_thread = worker

    def error(e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(Exception)
    async def internal(request, exc):  # no traceback in a response
        return error(ApiError(500, "internal server error", kind="server_error"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "slots": max_batch, "active": scheduler.active_slots,
                "waiting": len(scheduler.waiting), "engine_errors": worker.errors}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "scratchpad"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        try:
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ApiError(400, f"the request body is not valid JSON ({e})") from None
            reqs, opts = parse_completion(body, model_name, model, max_tokens_limit)
            free = max_batch - scheduler.active_slots
            if len(scheduler.waiting) + len(reqs) > max_queue + free:
                raise ApiError(429, f"the server is busy: {max_batch} slots in use and {len(scheduler.waiting)} "
                               f"requests waiting (limit {max_queue}); retry later", kind="rate_limit_error")
        except ApiError as e:
            return error(e)
        loop = asyncio.get_running_loop()
        pending = Pending(loop)
        seqs = [Sequence(r, pending.on_bytes, index=i, on_done=pending.on_done) for i, r in enumerate(reqs)]
        for s in seqs:
            worker.submit(s)
        rid = f"cmpl-{uuid.uuid4().hex[:24]}"
        triggers = [(effective_threshold(model.cfg, r.threshold), effective_every(model.cfg, r.scratch_every))
                    for r in reqs]
        if opts["stream"]:
            return StreamingResponse(stream(rid, seqs, pending, triggers), media_type="text/event-stream")
        try:
            left = len(seqs)
            while left:
                try:
                    kind, _, _ = await asyncio.wait_for(pending.queue.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        raise asyncio.CancelledError from None
                    continue
                left -= kind == "done"
        except BaseException:
            for s in seqs:
                worker.cancel(s)
            raise
        return completion_body(rid, model_name, [s.result() for s in seqs], triggers)

    async def stream(rid, seqs, pending, triggers):
        decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in seqs]
        left = len(seqs)
        try:
            while left:
                kind, i, payload = await pending.queue.get()
                if kind == "bytes":
                    text = decoders[i].decode(payload)
                    if text:
                        yield f"data: {json.dumps(chunk_body(rid, model_name, i, text))}\n\n"
                else:
                    left -= 1
                    g = payload.result()
                    tail = decoders[i].decode(b"", final=True)
                    yield f"data: {json.dumps(chunk_body(rid, model_name, i, tail, FINISH[g.stop_reason], g, triggers[i]))}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # the client went away (or we finished): whatever still runs is cancelled
            for s in seqs:
                if not s.done:
                    worker.cancel(s)

    return app


class ServerThread:
    """A server on 127.0.0.1 (an ephemeral port by default) in a background thread: for tests
    and the load benchmark. close() stops uvicorn and the engine thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.app, self.host, self.port = app, host, port
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + timeout
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server did not start on {host}:{port}")
            time.sleep(0.05)
        self.url = f"http://{host}:{port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.engine_thread.stop()


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad serve", description=describe(__doc__))
    ap.add_argument("--model", metavar="DIR", help="model folder (default: the packaged default model)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int_flag("--port", 0), default=8000, help="port (default 8000)")
    ap.add_argument("--max-batch", type=int_flag("--max-batch"), default=8, metavar="N",
                    help="decode slots: requests served together (default 8)")
    ap.add_argument("--max-queue", type=int_flag("--max-queue", 0), default=64, metavar="N",
                    help="requests that may wait for a slot before the server answers 429 (default 64)")
    ap.add_argument("--name", help="model name clients pass as 'model' (default: the config's name)")
    add_threads_flag(ap, DECODE_THREADS, "decode is a chain of small ops")
    args = ap.parse_args(argv)
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
    except ImportError:
        raise UserError("scratchpad serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None
    import uvicorn

    from scratchpad import load_model

    set_threads(args.threads)
    model = load_model(args.model)
    name = args.name or model.cfg.name
    app = build_app(model, name, args.max_batch, args.max_queue)
    print(f"serving {name!r} on http://{args.host}:{args.port}/v1 ({args.max_batch} slots)", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        app.state.engine_thread.stop()
    return 0


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
