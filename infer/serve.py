"""`scratchpad serve`: an OpenAI-compatible server (completions and chat) over the continuous-batching engine.

    scratchpad serve [--model M] [--host 127.0.0.1] [--port 8000] [--max-batch N] [--api-key KEY]
    POST /v1/completions   POST /v1/chat/completions   GET /v1/models   GET /health

One engine thread runs the scheduler: each request's prompt is prefilled into a free slot, all
slots decode together, finished or disconnected requests free their slot at once; requests beyond
the slots wait in a bounded queue (then 429). An engine error ends only the request it comes from.
SIGTERM or Ctrl-C stops admitting and lets requests finish for --shutdown-timeout seconds, then
ends the rest (finish_reason "cancelled") and exits 0; a second signal exits at once.
Needs the `[serve]` extra (FastAPI + uvicorn).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time

from infer.generate import DECODE_THREADS, add_eager_fallback_flag, decode_device
from infer.server_app import MAX_BODY_BYTES, build_app
from scratchpad.errors import UserError
from scratchpad.flags import Parser, add_threads_flag, describe, int_flag, parse_int_flag, set_threads

SHUTDOWN_TIMEOUT = 10.0


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); a UserError when it cannot be had."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"cannot listen on {host}:{port}: the host does not resolve ({e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def make_server(app):
    """A uvicorn server whose first SIGTERM/SIGINT drains the app (see app.state.drain) and whose
    second exits at once."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # uvicorn's re-raises the signal after shutdown (exit code != 0)
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

        def handle_exit(self, sig, frame):
            if self.should_exit:
                print("second signal: exiting now", file=sys.stderr, flush=True)
                os._exit(1)
            print(f"signal {signal.Signals(sig).name}: no new requests; finishing those in flight for up to "
                  f"{app.state.shutdown_timeout:g}s", file=sys.stderr, flush=True)
            app.state.drain(app.state.shutdown_timeout)
            self.should_exit = True

    grace = app.state.shutdown_timeout + 5  # a backstop: the drain ends every request before this
    return DrainingServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=grace))


class ServerThread:
    """A server on 127.0.0.1 (an ephemeral port by default) in a background thread: for tests
    and the load benchmark. close() stops uvicorn and the engine thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
        self.sock = listen(host, port)
        self.app, self.host, self.port = app, host, self.sock.getsockname()[1]
        app.state.shutdown_timeout = getattr(app.state, "shutdown_timeout", SHUTDOWN_TIMEOUT)
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs=dict(sockets=[self.sock]), daemon=True)
        self.thread.start()
        deadline = time.time() + timeout
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server did not start on {host}:{self.port}")
            time.sleep(0.05)
        self.url = f"http://{host}:{self.port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.engine_thread.stop()


def port_flag(text) -> int:
    port = parse_int_flag("--port", text, 0)
    if port > 65535:
        raise UserError(f"--port {port}: must be at most 65535")
    return port


def seconds_flag(text) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v < float("inf"):
        raise UserError(f"--shutdown-timeout {text!r}: give seconds >= 0")
    return v


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad serve", description=describe(__doc__))
    ap.add_argument("--model", metavar="DIR", help="model folder (default: the packaged default model)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=port_flag, default=8000, help="port, 0 = any free one (default 8000)")
    ap.add_argument("--max-batch", type=int_flag("--max-batch"), default=8, metavar="N",
                    help="decode slots: requests served together (default 8)")
    ap.add_argument("--max-queue", type=int_flag("--max-queue", 0), default=64, metavar="N",
                    help="requests that may wait for a slot before the server answers 429 (default 64)")
    ap.add_argument("--max-body-bytes", type=int_flag("--max-body-bytes"), default=MAX_BODY_BYTES, metavar="N",
                    help=f"largest request body; larger ones get 413 (default {MAX_BODY_BYTES})")
    ap.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' on /v1 (default: the "
                    "SCRATCHPAD_API_KEY environment variable; neither: no key)")
    ap.add_argument("--shutdown-timeout", type=seconds_flag, default=SHUTDOWN_TIMEOUT, metavar="S",
                    help="on SIGTERM/Ctrl-C, let requests finish for S seconds, then cancel them "
                    f"(default {SHUTDOWN_TIMEOUT:g})")
    ap.add_argument("--chat-template", metavar="FILE", help="JSON chat template for /v1/chat/completions "
                    "(default: the plain-text User:/Assistant: template, see infer/chat.py)")
    ap.add_argument("--name", help="model name clients pass as 'model' (default: the config's name)")
    add_threads_flag(ap, DECODE_THREADS, "decode is a chain of small ops")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (CUDA: the decode step replays as CUDA graphs)")
    add_eager_fallback_flag(ap)
    args = ap.parse_args(argv)
    device = decode_device(args.device)
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
    except ImportError:
        raise UserError("scratchpad serve needs FastAPI and uvicorn: pip install -e '.[serve]'") from None
    from infer.chat import ChatTemplate
    from scratchpad import load_model

    api_key = args.api_key or os.environ.get("SCRATCHPAD_API_KEY") or None
    template = ChatTemplate.load(args.chat_template) if args.chat_template else None
    sock = listen(args.host, args.port)  # before the model loads: a busy port fails at once
    set_threads(args.threads)
    model = load_model(args.model, device=device)
    name = args.name or model.cfg.name
    app = build_app(model, name, args.max_batch, args.max_queue, api_key=api_key, max_body_bytes=args.max_body_bytes,
                    chat_template=template, eager_fallback=args.eager_fallback)
    app.state.shutdown_timeout = args.shutdown_timeout
    port = sock.getsockname()[1]
    print(f"serving {name!r} on http://{args.host}:{port}/v1 ({args.max_batch} slots"
          f"{', API key required' if api_key else ''})", file=sys.stderr, flush=True)
    try:
        make_server(app).run(sockets=[sock])
    finally:
        app.state.engine_thread.stop()
    return 0


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
