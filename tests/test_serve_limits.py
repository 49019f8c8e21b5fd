"""What one client may ask of `scratchpad serve`: a non-streaming client that disconnects frees its
slot within a second (raw sockets), bodies over --max-body-bytes get 413, budget calibration
never freezes the event loop, 429 only when slots and queue are really full, API key (401),
JSON Content-Type (415), and unknown routes answer in the OpenAI error shape."""
import json
import socket
import threading
import time

import pytest
from serve_client import NAME, Server, openai, openai_error

import infer.server_app


def raw_post(server, body: dict) -> socket.socket:
    """A non-streaming completion request sent over a raw socket (the response is never read)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


def wait_for(cond, seconds: float) -> float:
    """Poll cond() until true; -> the seconds it took (fails after `seconds`)."""
    start = time.perf_counter()
    while not cond():
        assert time.perf_counter() - start < seconds, "timed out"
        time.sleep(0.02)
    return time.perf_counter() - start


def test_a_non_streaming_client_that_disconnects_frees_its_slot_within_a_second(model):
    s = Server(model, max_batch=2, max_queue=4)
    try:
        socks = [raw_post(s, dict(model=NAME, prompt=f"hold {i}", max_tokens=60000, temperature=0)) for i in range(2)]
        wait_for(lambda: s.health()["active"] == 2, 10)
        time.sleep(0.3)  # bytes flowing: the old disconnect check never ran while they did
        for sock in socks:
            sock.close()
        assert wait_for(lambda: s.health()["active"] == 0, 1.0) <= 1.0
        r = s.client.completions.create(model=NAME, prompt="next", max_tokens=4, temperature=0)
        assert r.choices[0].finish_reason in ("length", "stop") and s.health()["in_flight"] == 0
    finally:
        s.close()


def test_body_limit_413(model):
    s = Server(model, max_batch=1, max_body_bytes=2000)
    try:
        openai_error(*s.complete(dict(prompt="x" * 3000)), 413)
        sock = socket.create_connection((s.host, s.port), timeout=10)  # chunked: no Content-Length to refuse early
        chunk = b"x" * 1500
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2 + b"0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
        sock.close()
        assert s.complete(dict(prompt="fits", max_tokens=2, temperature=0))[0] == 200
    finally:
        s.close()


def test_health_answers_during_a_budget_calibration(model, monkeypatch):
    calibrate = infer.server_app.calibrate

    def slow(*args):  # a long calibration: a forward over many long prompts holds its thread
        time.sleep(1.5)
        calibrate(*args)

    monkeypatch.setattr(infer.server_app, "calibrate", slow)
    s = Server(model, max_batch=2, max_queue=2)
    try:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=s.complete(
            dict(prompt=["abc " * 50] * 2, scratchpad_budget=0.3, max_tokens=1))))
        t.start()
        time.sleep(0.3)
        start = time.perf_counter()
        h = s.health()
        assert time.perf_counter() - start < 0.5 and h["in_flight"] == 2
        t.join(30)
        status, body = out["r"]
        assert status == 200 and all(c["scratchpad"]["entropy_threshold"] != 1.5 for c in body["choices"])
    finally:
        s.close()


def test_429_only_when_slots_and_queue_are_full(model):
    s = Server(model, max_batch=1, max_queue=1)
    try:
        err = openai_error(*s.complete(dict(prompt=["a"] * 3, max_tokens=1)), 400)  # can never fit: not 429
        assert err["param"] == "prompt" and "at most 2" in err["message"]
        assert s.complete(dict(prompt=["a", "b"], max_tokens=2, temperature=0))[0] == 200  # fits exactly
        stream = s.client.completions.create(model=NAME, prompt="hold", max_tokens=60000, temperature=0, stream=True)
        next(iter(stream))
        queued = threading.Thread(target=s.complete, args=(dict(prompt="q", max_tokens=2, temperature=0),))
        queued.start()
        wait_for(lambda: s.health()["in_flight"] == 2, 5)
        with pytest.raises(openai.RateLimitError, match="2 requests in flight for 1 slots"):
            s.client.completions.create(model=NAME, prompt="x", max_tokens=3)
        stream.close()
        queued.join(30)
        wait_for(lambda: s.health()["in_flight"] == 0, 5)
    finally:
        s.close()


def test_api_key_content_type_and_openai_shaped_errors(model, monkeypatch):
    s = Server(model, api_key="sekret", max_batch=1)
    try:
        assert s.client.completions.create(model=NAME, prompt="hi", max_tokens=2, temperature=0).choices
        assert [m.id for m in s.client.models.list().data] == [NAME]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
            assert openai_error(*s.complete(dict(prompt="hi"), headers), 401)["code"] == "invalid_api_key"
        assert openai_error(*s.request("GET", "/v1/models"), 401)["code"] == "invalid_api_key"
        key = {"Authorization": "Bearer sekret"}
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            hdrs = {**key, "Content-Type": ctype} if ctype else key
            st, body = s.request("POST", "/v1/completions", json.dumps({"model": NAME, "prompt": "x"}).encode()
                                 if ctype else None, hdrs)
            openai_error(st, body, 415)
        with_charset = {**key, "Content-Type": "application/json; charset=utf-8"}
        assert s.complete(dict(prompt="x", max_tokens=1), with_charset)[0] == 200
        assert openai_error(*s.request("GET", "/v1/nothing-here"), 404)["code"] == "not_found"
        openai_error(*s.request("GET", "/v1/completions", headers=key), 405)
        assert s.health()["status"] == "ok"  # /health needs no key
    finally:
        s.close()
