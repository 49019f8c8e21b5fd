"""The soak run of `scratchpad bench serve --soak`, as a `run`: for a bounded time (and at most
MAX_REQUESTS requests), client threads send a fixed mix of normal, poison, disconnecting and oversized
requests to a server on 127.0.0.1. A normal request must get exactly the bytes its prompt gets alone
(greedy); one that does not, or fails, is a victim hurt. The process RSS is sampled each second.
`run(model, ...)` parses nothing and prints nothing; the command is eval/bench/serve_cli.py.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from eval.bench.serve import PROMPTS, ServerSetup
from scratchpad.trigger import tau_json

# what once crashed the engine or was taken for something else; each must get a 400
POISON = [{"entropy_threshold": 1e39}, {"scratch_every": 2**63}, {"prompt": "Hi\ud800"}, {"stream": "false"},
          {"logprobs": 6}, {"suffix": "end"}, {"seed": 2**70}, {"temperature": "0"}]
MIX = ["normal"] * 5 + ["poison"] * 2 + ["disconnect"] * 2 + ["oversized"]  # per 10 requests
MAX_REQUESTS = 20000
DISCONNECT_AFTER = 0.2  # seconds a disconnecting client waits before it closes its socket


def rss_kb() -> int:
    """This process's resident memory in kB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Soak:
    def __init__(self, host: str, port: int, name: str, max_tokens: int, max_body_bytes: int, alone: dict,
                 triggers: dict):
        """alone: prompt -> (text, finish_reason) of that prompt served alone; triggers: the
        normal requests' entropy_threshold and scratch_every."""
        self.host, self.port, self.name, self.triggers = host, port, name, triggers
        self.max_tokens, self.max_body_bytes, self.alone = max_tokens, max_body_bytes, alone
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.sent = 0

    def _take(self) -> bool:
        with self.lock:
            self.sent += 1
            return self.sent <= MAX_REQUESTS

    def _record(self, **r):
        with self.lock:
            self.records.append(r)

    def _post(self, body, stream: bool = False):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            data = body if isinstance(body, bytes) else json.dumps(body)
            conn.request("POST", "/v1/completions", data, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        return resp.status, raw

    def normal(self, rng: random.Random):
        prompt = rng.choice(PROMPTS)
        stream = rng.random() < 0.5
        t0 = time.perf_counter()
        status, raw = self._post({"model": self.name, "prompt": prompt, "max_tokens": self.max_tokens,
                                  "temperature": 0, "stream": stream, **self.triggers})
        took = time.perf_counter() - t0
        text, finish = None, None
        if status == 200 and stream:
            events = [json.loads(x[6:]) for x in raw.decode().split("\n") if x.startswith("data: {")]
            text = "".join(e["choices"][0]["text"] for e in events)
            finish = events[-1]["choices"][0]["finish_reason"]
        elif status == 200:
            choice = json.loads(raw)["choices"][0]
            text, finish = choice["text"], choice["finish_reason"]
        hurt = status != 200 or (text, finish) != self.alone[prompt]
        self._record(kind="normal", status=status, seconds=took, bytes=len((text or "").encode()), hurt=hurt)

    def poison(self, rng: random.Random):
        body = {"model": self.name, "prompt": "x", "max_tokens": self.max_tokens, **rng.choice(POISON)}
        status, _ = self._post(json.dumps(body).encode())
        self._record(kind="poison", status=status, refused=status == 400)

    def disconnect(self, rng: random.Random):
        body = json.dumps({"model": self.name, "prompt": rng.choice(PROMPTS), "max_tokens": 60000,
                           "temperature": 0, "stream": rng.random() < 0.5}).encode()
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (self.host.encode(), len(body), body))
            time.sleep(DISCONNECT_AFTER)
        self._record(kind="disconnect")

    def oversized(self, rng: random.Random):
        pad = "x" * (self.max_body_bytes + 1024)
        status, _ = self._post({"model": self.name, "prompt": pad, "max_tokens": 1})
        self._record(kind="oversized", status=status, refused=status == 413)

    def client(self, index: int, stop_at: float):
        rng = random.Random(index)
        while time.perf_counter() < stop_at and self._take():
            getattr(self, rng.choice(MIX))(rng)


def drive(soak: Soak, clients: int, seconds: float) -> tuple[float, list[tuple[float, int]]]:
    """Run the clients for `seconds`; -> (wall seconds, [(t, RSS kB)] sampled every second)."""
    start = time.perf_counter()
    stop_at = start + seconds
    rss = [(0.0, rss_kb())]
    threads = [threading.Thread(target=soak.client, args=(i, stop_at), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        rss.append((time.perf_counter() - start, rss_kb()))
    return time.perf_counter() - start, rss


def summarize(records: list[dict], wall: float, rss: list[tuple[float, int]], warmup: float) -> dict:
    """The soak row: counts per kind, victims hurt, the normal requests' bytes/s and latency, RSS after warm-up."""
    normal = [r for r in records if r["kind"] == "normal"]
    lat = [r["seconds"] for r in normal if not r["hurt"]]
    after = [kb for t, kb in rss if t >= warmup] or [rss[-1][1]]

    def pct(q):
        return float(np.percentile(lat, q)) * 1000 if lat else None

    def count(kind, key=None):
        rs = [r for r in records if r["kind"] == kind]
        return len(rs) if key is None else sum(bool(r[key]) for r in rs)

    return dict(seconds=wall, requests=len(records), normal=len(normal), victims_hurt=count("normal", "hurt"),
                poison=count("poison"), poison_refused=count("poison", "refused"), disconnects=count("disconnect"),
                oversized=count("oversized"), oversized_refused=count("oversized", "refused"),
                bytes_per_second=sum(r["bytes"] for r in normal) / wall, latency_ms_p50=pct(50),
                latency_ms_p99=pct(99), rss_kb_start=rss[0][1], rss_kb_after_warmup=after[0], rss_kb_end=rss[-1][1],
                rss_kb_max_after_warmup=max(after), rss_spread_after_warmup=(max(after) - min(after)) / min(after))


def http_get(host: str, port: int, path: str) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@dataclass
class SoakResult(ServerSetup):
    """row: the `summarize` row with the server's health after the run; rss: [(t, kB)] every second."""
    warmup: float
    load: tuple[float, float, float]
    row: dict
    rss: list[tuple[float, int]]

    def json(self) -> dict:
        """soak.json."""
        return dict(model=self.source, config=self.config, max_batch=self.max_batch, max_tokens=self.max_tokens,
                    threshold=tau_json(self.tau), scratch_every=self.scratch_every, threads=self.threads,
                    seconds=self.seconds, warmup_seconds=self.warmup, mix=MIX, load_average_1_5_15_min=self.load,
                    soak=self.row, rss_kb=self.rss)


def run(model, source: str, clients: int, seconds: float, max_batch: int = 16, max_tokens: int = 128,
        tau: float = 1.5, scratch_every: int = 0) -> SoakResult:
    """Serve `model` (from `source`) with max_batch slots to `clients` soak clients for `seconds`;
    each normal request is checked against its prompt served alone at the same trigger."""
    from infer import Engine
    from infer.openai_api import FINISH
    from infer.serve import ServerThread, build_app
    from infer.server_app import MAX_BODY_BYTES

    name = model.cfg.name
    engine = Engine(model)
    alone = {}
    for p in PROMPTS:
        g = engine.generate(p, max_bytes=max_tokens, threshold=tau, scratch_every=scratch_every)[0]
        alone[p] = (g.output.decode("utf-8", errors="replace"), FINISH[g.stop_reason])
    srv = ServerThread(build_app(model, name, max_batch, max_queue=64))
    soak = Soak(srv.host, srv.port, name, max_tokens, MAX_BODY_BYTES, alone,
                {"entropy_threshold": tau_json(tau), "scratch_every": scratch_every})
    load = os.getloadavg()  # other work on this machine shares its cores: stated in the report
    try:
        wall, rss = drive(soak, clients, seconds)
        time.sleep(1.5)  # the last disconnected requests are cancelled within a second
        health = json.loads(http_get(srv.host, srv.port, "/health"))
    finally:
        srv.close()
    warmup = seconds / 4
    row = dict(clients=clients, **summarize(soak.records, wall, rss, warmup), slots_in_use_after=health["active"],
               in_flight_after=health["in_flight"], engine_errors=health["engine_errors"])
    return SoakResult(source, name, max_batch, max_tokens, tau, scratch_every, torch.get_num_threads(), seconds, warmup,
                      load, row, rss)
