"""`scratchpad serve`: the official openai client against a local server (127.0.0.1 only):
16 concurrent requests, streaming and not, each equal to the same prompt decoded alone; a
client that disconnects frees its slot; bad input gets an OpenAI-style JSON error."""
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_client import NAME, Server, openai, openai_error

from infer import Engine


@pytest.fixture(scope="module")
def server(model):
    s = Server(model, max_batch=4, max_queue=64)
    yield s
    s.close()


def test_sixteen_concurrent_requests_equal_batch_one(server, model):
    prompts = [f"request {i}: " + "the cat sat on the mat " * (i % 5) for i in range(16)]
    lengths = [12 + 3 * (i % 4) for i in range(16)]
    # per-request triggers side by side: entropy, stride alone, both
    triggers = [[(1.5, 0), (math.inf, 3), (1.5, 2)][i % 3] for i in range(16)]
    engine = Engine(model)
    want = [engine.generate(p, max_bytes=n, threshold=tau, scratch_every=k)[0]
            for p, n, (tau, k) in zip(prompts, lengths, triggers)]

    def ask(i):
        tau, every = triggers[i]
        kw = dict(model=NAME, prompt=prompts[i], max_tokens=lengths[i], temperature=0,
                  extra_body={"entropy_threshold": tau if math.isfinite(tau) else "inf", "scratch_every": every})
        if i % 2:
            chunks = list(server.client.completions.create(stream=True, **kw))
            return "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        r = server.client.completions.create(**kw)
        assert r.usage.prompt_tokens == len(prompts[i].encode())
        assert r.usage.completion_tokens == len(want[i].output)
        info = r.choices[0].model_extra["scratchpad"]
        assert info["trunk_calls"] == want[i].events.commits + want[i].events.scratchpads and info["kv_bytes"] > 0
        assert info["scratch_every"] == every and info["entropy_threshold"] == (tau if math.isfinite(tau) else "inf")
        return r.choices[0].text, r.choices[0].finish_reason

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(ask, range(16)))
    for i, (text, finish) in enumerate(got):
        assert text == want[i].output.decode("utf-8", errors="replace"), f"request {i}"
        assert finish == {"max_bytes": "length", "eos": "stop", "stop_string": "stop"}[want[i].stop_reason]
    h = server.health()
    assert h["active"] == 0 and h["waiting"] == 0 and h["engine_errors"] == 0
    assert [m.id for m in server.client.models.list().data] == [NAME]


def test_a_disconnect_frees_the_slot(model):
    s = Server(model, max_batch=1, max_queue=4)
    try:
        stream = s.client.completions.create(model=NAME, prompt="go on", max_tokens=60000, temperature=0,
                                             stream=True)
        next(iter(stream))
        assert s.health()["active"] == 1
        stream.close()  # the client goes away mid-stream
        start = time.time()
        r = s.client.completions.create(model=NAME, prompt="next", max_tokens=5, temperature=0)
        assert len(r.choices[0].text.encode()) >= 1 and time.time() - start < 30
        assert s.health()["active"] == 0
    finally:
        s.close()


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (json.dumps({"model": "nope", "prompt": "x"}).encode(), 404, "model"),
    (json.dumps({"model": NAME, "prompt": "x", "max_tokens": -1}).encode(), 400, "max_tokens"),
    (json.dumps({"model": NAME, "prompt": "x", "max_tokens": 10**9}).encode(), 400, "max_tokens"),
    (json.dumps({"model": NAME, "prompt": "x", "entropy_threshold": "high"}).encode(), 400, "entropy_threshold"),
    (json.dumps({"model": NAME, "prompt": "x", "entropy_threshold": -1}).encode(), 400, "entropy_threshold"),
    (json.dumps({"model": NAME, "prompt": "x", "entropy_threshold": 1, "scratchpad_budget": 0.5}).encode(), 400,
     "entropy_threshold"),
    (json.dumps({"model": NAME, "prompt": "x", "scratch_every": -1}).encode(), 400, "scratch_every"),
    (json.dumps({"model": NAME, "prompt": "x", "scratch_every": 2.5}).encode(), 400, "scratch_every"),
    (json.dumps({"model": NAME, "prompt": "x", "scratch_every": "4"}).encode(), 400, "scratch_every"),
    (json.dumps({"model": NAME, "prompt": "xy", "scratchpad_budget": 1.5}).encode(), 400, "scratchpad_budget"),
    (json.dumps({"model": NAME, "prompt": "x", "scratchpad_budget": 0.3}).encode(), 400, "scratchpad_budget"),
    (json.dumps({"model": NAME, "prompt": "x" * 600}).encode(), 400, "prompt"),
    (json.dumps({"model": NAME, "prompt": 5}).encode(), 400, "prompt"),
    (json.dumps({"model": NAME, "prompt": "x", "temperature": -1}).encode(), 400, "temperature"),
    # poison that used to pass and then crash the engine step for every request in flight
    (json.dumps({"model": NAME, "prompt": "x", "entropy_threshold": 1e39}).encode(), 400, "entropy_threshold"),
    (json.dumps({"model": NAME, "prompt": "x", "scratch_every": 2**63}).encode(), 400, "scratch_every"),
    (json.dumps({"model": NAME, "prompt": "x", "scratch_every": 5}).encode(), 400, "scratch_every"),
    (json.dumps({"model": NAME, "prompt": "x", "seed": 2**64}).encode(), 400, "seed"),
    (b'{"model": "tiny-sp", "prompt": "x", "entropy_threshold": NaN}', 400, None),
    # strict types: a string is not a boolean
    (json.dumps({"model": NAME, "prompt": "x", "stream": "false"}).encode(), 400, "stream"),
    (json.dumps({"model": NAME, "prompt": "x", "echo": 1}).encode(), 400, "echo"),
    # a lone surrogate is not text
    (json.dumps({"model": NAME, "prompt": "Hi\ud800"}).encode(), 400, "prompt"),
    (json.dumps({"model": NAME, "prompt": "Hi", "stop": ["\udfff"]}).encode(), 400, "stop"),
    # not implemented: refused, never ignored
    (json.dumps({"model": NAME, "prompt": "x", "logprobs": 6}).encode(), 400, "logprobs"),
    (json.dumps({"model": NAME, "prompt": "x", "logprobs": 2, "stream": True}).encode(), 400, "logprobs"),
    (json.dumps({"model": NAME, "prompt": "x", "suffix": "end"}).encode(), 400, "suffix"),
    (json.dumps({"model": NAME, "prompt": "x", "presence_penalty": 0.5}).encode(), 400, "presence_penalty"),
])
def test_bad_input_gets_an_openai_style_error_and_the_server_keeps_serving(server, body, status, param):
    code, got = server.request("POST", "/v1/completions", body)
    err = openai_error(code, got, status)
    assert err["param"] == param and "Traceback" not in json.dumps(got)
    r = server.client.completions.create(model=NAME, prompt="ok", max_tokens=3, temperature=0)
    assert r.choices[0].text is not None and server.health()["status"] == "ok"


def test_more_requests_than_slots_and_queue_get_429(model):
    s = Server(model, max_batch=1, max_queue=0)
    try:
        stream = s.client.completions.create(model=NAME, prompt="hold", max_tokens=60000, temperature=0, stream=True)
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as e:
            s.client.completions.create(model=NAME, prompt="x", max_tokens=3)
        assert "busy" in str(e.value)
        stream.close()
    finally:
        s.close()


def test_a_budget_sets_tau_and_keeps_the_rest_of_the_requests_trigger(server):
    r = server.client.completions.create(model=NAME, prompt="the cat sat on the mat, the dog", max_tokens=4,
                                         temperature=0, extra_body={"scratchpad_budget": 0.3, "scratch_every": 3})
    info = r.choices[0].model_extra["scratchpad"]
    assert info["scratch_every"] == 3 and info["entropy_threshold"] != "inf"
