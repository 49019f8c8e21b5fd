"""`scratchpad bench serve`: load test of `scratchpad serve` on 127.0.0.1.

Starts the server in this process, runs N concurrent streaming clients for a bounded time (each
sends a request, reads its server-sent events to the end, sends the next), and reports aggregate
bytes/s and p50/p99 of time-to-first-byte and inter-byte latency (gaps between streamed events,
per byte). Writes Markdown + JSON with --out.

--soak: one run of N clients sending a mix of normal, poison, disconnecting and oversized
requests (eval/bench/serve_soak.py); reports bytes/s, p50/p99 latency, victims hurt (normal requests
whose bytes differ from the same prompt served alone; must be 0) and RSS over time.
"""
from __future__ import annotations

import http.client
import json
import sys
import threading
import time

import numpy as np

from eval.cli_args import parse_counts
from eval.report import out_folder, table, write_report
from infer.generate import DECODE_THREADS
from infer.options import parse_threshold
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import (THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe, int_flag,
                              parse_duration, set_threads)
from scratchpad.trigger import tau_json

PROMPTS = ["The history of the English language begins with ", "def fibonacci(n):\n    ", "Once upon a time, ",
           "In 1969 the first humans ", "import numpy as np\n"]


def client(host, port, name, stop_at, max_tokens, tau, every, out, index):
    """One client: streaming requests back to back until stop_at; appends per-request records."""
    conn = http.client.HTTPConnection(host, port, timeout=300)
    k = 0
    while time.perf_counter() < stop_at:
        body = json.dumps({"model": name, "prompt": PROMPTS[(index + k) % len(PROMPTS)], "max_tokens": max_tokens,
                           "temperature": 0, "stream": True,
                           "entropy_threshold": tau_json(tau), "scratch_every": every})
        k += 1
        t0 = time.perf_counter()
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            out.append(dict(error=resp.status, body=resp.read().decode()[:200]))
            continue
        times, nbytes = [], []
        while True:
            line = resp.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                resp.read()  # the end of the chunked body, so the connection can be reused
                break
            text = json.loads(data)["choices"][0]["text"]
            if text:
                times.append(time.perf_counter())
                nbytes.append(len(text.encode()))
        out.append(dict(start=t0, times=times, bytes=nbytes))
    conn.close()


def summarize(records, seconds: float) -> dict:
    ok = [r for r in records if "error" not in r and r["times"]]
    ttfb = [r["times"][0] - r["start"] for r in ok]
    gaps = [(b - a) / n for r in ok for a, b, n in zip(r["times"], r["times"][1:], r["bytes"][1:])]
    total = sum(sum(r["bytes"]) for r in ok)

    def pct(v, q):
        return float(np.percentile(v, q)) * 1000 if v else None

    return dict(requests=len(ok), errors=len(records) - len(ok), bytes=total, seconds=seconds,
                aggregate_bytes_per_second=total / seconds, ttfb_ms_p50=pct(ttfb, 50), ttfb_ms_p99=pct(ttfb, 99),
                inter_byte_ms_p50=pct(gaps, 50), inter_byte_ms_p99=pct(gaps, 99))


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad bench serve", description=describe(__doc__))
    ap.add_argument("--model", metavar="DIR", help="model folder (default: the packaged default model)")
    ap.add_argument("--clients", default="1,4,16", metavar="N,N", help="concurrent streaming clients per run")
    ap.add_argument("--seconds", type=lambda t: parse_duration(t, "--seconds"), default=20.0,
                    help="duration of each run (default 20s)")
    ap.add_argument("--max-batch", type=int_flag("--max-batch"), default=16, metavar="N", help="server slots")
    ap.add_argument("--max-tokens", type=int_flag("--max-tokens"), default=128, metavar="N", help="bytes per request")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", default="1.5", metavar="TAU",
                    help="entropy threshold per request, 'inf' = none (default 1.5)")
    add_scratch_every_flag(ap)
    ap.add_argument("--soak", action="store_true", help="one soak run: normal, poison, disconnecting and oversized "
                    "requests from --clients N clients for --seconds (report soak.md / soak.json)")
    ap.add_argument("--out", metavar="DIR", help="write load.md and load.json (soak.md / soak.json) here")
    add_threads_flag(ap, DECODE_THREADS, "the serve command's default")
    args = ap.parse_args(argv)
    clients = parse_counts(args.clients, "--clients")
    tau = parse_threshold(args.threshold, "--threshold")
    try:
        from infer.serve import ServerThread, build_app
    except ImportError:
        raise UserError("bench serve needs the [serve] extra: pip install -e '.[serve]'") from None
    from scratchpad import load_model

    set_threads(args.threads)
    model = load_model(args.model)
    name = model.cfg.name
    if args.soak:
        from eval.bench.serve_soak import soak_main

        return soak_main(args, model, clients, tau)
    srv = ServerThread(build_app(model, name, args.max_batch, max_queue=max(clients)))
    rows = []
    try:
        for n in clients:
            records: list = []
            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(srv.host, srv.port, name, start + args.seconds,
                                                              args.max_tokens, tau, args.scratch_every, records, i))
                       for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            row = dict(clients=n, **summarize(records, time.perf_counter() - start))
            rows.append(row)
            print(json.dumps(row))
    finally:
        srv.close()
    data = dict(model=args.model or "packaged default model", config=name, max_batch=args.max_batch,
                max_tokens=args.max_tokens, threshold=tau_json(tau),
                scratch_every=args.scratch_every, threads=args.threads, seconds=args.seconds,
                rows=rows)
    if args.out:
        how = (f"`scratchpad bench serve --clients {args.clients} --seconds {args.seconds:g} --max-batch "
               f"{args.max_batch} --max-tokens {args.max_tokens} --threshold {tau:g} --scratch-every {args.scratch_every}`: "
               f"server and streaming clients in one process on 127.0.0.1, {args.threads} torch thread(s), greedy, "
               f"tau = {tau:g}" + (f", a scratchpad at every k-th byte of a patch (k = {args.scratch_every})"
                                   if args.scratch_every else "") + ". TTFB = request sent "
               "to first streamed byte (includes queueing and prefill); inter-byte = gap between streamed "
               "events per byte.")
        body = table(["clients", "requests", "bytes/s (aggregate)", "TTFB p50 ms", "TTFB p99 ms",
                      "inter-byte p50 ms", "inter-byte p99 ms", "errors"],
                     [[r["clients"], r["requests"], r["aggregate_bytes_per_second"], r["ttfb_ms_p50"], r["ttfb_ms_p99"],
                       r["inter_byte_ms_p50"], r["inter_byte_ms_p99"], r["errors"]] for r in rows])
        write_report(out_folder(args.out), "load", f"scratchpad serve under load ({name})", [how, body], data)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
