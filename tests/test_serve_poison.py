"""One client cannot hurt the others: poison requests among victims on a live server. Settings
that would overflow the engine get a 400 where they enter; a fault the engine raises for one
request (injected into the batched step) ends that request with an engine error, and every
victim still gets the bytes it gets alone."""
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_client import NAME, Server, openai, openai_error
from test_serve_isolation import POISON_TAU, poisoned_step

from infer import Engine


def test_poison_among_victims(model):
    prompts = [f"victim {i}: " + "a quick fox " * i for i in range(6)]
    triggers = [(1.5, 0), (math.inf, 2), (1.5, 3)]
    engine = Engine(model)
    alone = [engine.generate(p, max_bytes=24, threshold=triggers[i % 3][0], scratch_every=triggers[i % 3][1])[0]
             for i, p in enumerate(prompts)]
    server = Server(model, max_batch=3, max_queue=16)
    poisoned_step(server.app.state.engine_thread.scheduler.runner)
    poison = [dict(entropy_threshold=POISON_TAU), dict(entropy_threshold=1e39), dict(scratch_every=2**63),
              dict(entropy_threshold=POISON_TAU, stream=True)]

    def victim(i):
        tau, every = triggers[i % 3]
        kw = dict(model=NAME, prompt=prompts[i], max_tokens=24, temperature=0,
                  extra_body={"entropy_threshold": tau if math.isfinite(tau) else "inf", "scratch_every": every})
        if i % 2:
            chunks = list(server.client.completions.create(stream=True, **kw))
            return "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        r = server.client.completions.create(**kw)
        return r.choices[0].text, r.choices[0].finish_reason

    def attack(k):
        settings = dict(poison[k])
        body = dict(prompt=f"poison {k} " * 3, max_tokens=40, temperature=0)
        if not settings.pop("stream", False):
            return server.complete({**body, **settings})
        with pytest.raises(openai.APIError, match="engine failed"):  # the error event of a stream
            list(server.client.completions.create(model=NAME, stream=True, extra_body=settings, **body))
        return None

    try:
        with ThreadPoolExecutor(10) as pool:
            victims = [pool.submit(victim, i) for i in range(6)]
            attacks = [pool.submit(attack, k) for k in range(len(poison))]
            got = [f.result() for f in victims]
            hits = [f.result() for f in attacks]
        for i, (text, finish) in enumerate(got):
            assert text == alone[i].output.decode("utf-8", errors="replace"), f"victim {i}"
            assert finish == {"max_bytes": "length", "eos": "stop"}[alone[i].stop_reason], f"victim {i}"
        err = openai_error(*hits[0], 500)
        assert err["code"] == "engine_error" and "injected fault" in err["message"]
        assert openai_error(*hits[1], 400)["param"] == "entropy_threshold"
        assert openai_error(*hits[2], 400)["param"] == "scratch_every"
        h = server.health()
        assert h["engine_errors"] >= 2 and h["active"] == 0 and h["in_flight"] == 0
    finally:
        server.close()
