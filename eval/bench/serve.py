"""The serve load bench: concurrent streaming clients against `scratchpad serve` on 127.0.0.1, as a `run`.

`run(model, ...)` starts the server in this process and, per client count, runs that many clients for
a bounded time (each sends a request, reads its server-sent events to the end, sends the next); a row
holds aggregate bytes/s and p50/p99 of time-to-first-byte and inter-byte latency (gaps between
streamed events, per byte). It parses nothing and prints nothing (`on_row` sees each row as it is
measured). The soak run is eval/bench/serve_soak.py; the command is eval/bench/serve_cli.py.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

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
    """One run's row from its clients' records: requests, errors, bytes/s, TTFB and inter-byte p50/p99 in ms."""
    ok = [r for r in records if "error" not in r and r["times"]]
    ttfb = [r["times"][0] - r["start"] for r in ok]
    gaps = [(b - a) / n for r in ok for a, b, n in zip(r["times"], r["times"][1:], r["bytes"][1:])]
    total = sum(sum(r["bytes"]) for r in ok)

    def pct(v, q):
        return float(np.percentile(v, q)) * 1000 if v else None

    return dict(requests=len(ok), errors=len(records) - len(ok), bytes=total, seconds=seconds,
                aggregate_bytes_per_second=total / seconds, ttfb_ms_p50=pct(ttfb, 50), ttfb_ms_p99=pct(ttfb, 99),
                inter_byte_ms_p50=pct(gaps, 50), inter_byte_ms_p99=pct(gaps, 99))


@dataclass
class ServerSetup:
    """What a load or soak run served: the model (source, config name), the engine's batch and
    byte limits, the trigger, torch threads, and the run's length in seconds."""
    source: str
    config: str
    max_batch: int
    max_tokens: int
    tau: float
    scratch_every: int
    threads: int
    seconds: float


@dataclass
class ServeBenchResult(ServerSetup):
    """rows: one `summarize` row per client count, with its "clients"."""
    rows: list[dict] = field(default_factory=list)

    def json(self) -> dict:
        """load.json."""
        return dict(model=self.source, config=self.config, max_batch=self.max_batch, max_tokens=self.max_tokens,
                    threshold=tau_json(self.tau), scratch_every=self.scratch_every, threads=self.threads,
                    seconds=self.seconds, rows=self.rows)


def run(model, source: str, clients: list[int], seconds: float, max_batch: int = 16, max_tokens: int = 128,
        tau: float = 1.5, scratch_every: int = 0, on_row=lambda row: None) -> ServeBenchResult:
    """Serve `model` (from `source`) with max_batch slots; for each count in clients, that many
    streaming clients for `seconds`, greedy, max_tokens bytes a request, at tau / every k-th byte."""
    from infer.serve import ServerThread, build_app

    name = model.cfg.name
    res = ServeBenchResult(source, name, max_batch, max_tokens, tau, scratch_every, torch.get_num_threads(), seconds)
    srv = ServerThread(build_app(model, name, max_batch, max_queue=max(clients)))
    try:
        for n in clients:
            records: list = []
            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(srv.host, srv.port, name, start + seconds, max_tokens, tau,
                                                              scratch_every, records, i)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            res.rows.append(dict(clients=n, **summarize(records, time.perf_counter() - start)))
            on_row(res.rows[-1])
    finally:
        srv.close()
    return res
