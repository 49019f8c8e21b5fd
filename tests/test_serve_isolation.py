"""Isolation in the scheduler: an exception while serving one request ends that request alone
(reason "error"); every other request completes with the bytes it gets when served alone."""
import math

import pytest

from infer import Engine
from infer.sequence import Request, Sequence
from scratchpad.trigger import Trigger

POISON_TAU = 4.321  # a valid tau the injected faults below recognise a poisoned slot by


def victims():
    prompts = [f"victim {i}: " + "the cat sat " * i for i in range(5)]
    return [Request(p.encode(), max_bytes=20 + 3 * i, trigger=Trigger([1.5, math.inf][i % 2], [0, 2][i % 2 and i > 2]),
                    temperature=0.0) for i, p in enumerate(prompts)]


def serve(model, reqs, slots, fault=None):
    """Serve `reqs` on one scheduler (fault(runner) patches the runner first) -> the sequences."""
    sched = Engine(model).scheduler(slots)
    if fault is not None:
        fault(sched.runner)
    seqs = [sched.submit(Sequence(r, index=i)) for i, r in enumerate(reqs)]
    sched.run()
    return seqs, sched


def poisoned_step(runner):
    """The batched step raises whenever an active slot runs at POISON_TAU (a fault nobody can pin
    from outside: the whole batch's step fails)."""
    step = runner.step

    def faulty(x):
        st = runner.state
        if bool(((st.trigger.tau == POISON_TAU) & st.active).any()):
            raise RuntimeError("injected fault in the batched step")
        return step(x)

    runner.step = faulty


def poisoned_prefill(runner):
    prefill = runner.prefill

    def faulty(slot, prompt, trigger):
        if trigger.tau == POISON_TAU:
            raise ValueError("injected fault in prefill")
        return prefill(slot, prompt, trigger)

    runner.prefill = faulty


@pytest.mark.parametrize("fault", [poisoned_step, poisoned_prefill])
def test_a_poison_request_fails_alone_and_victims_get_their_alone_output(model, fault):
    alone = [serve(model, [r], 1)[0][0].result() for r in victims()]
    reqs = victims()
    poison = [Request(b"poison " * k, max_bytes=30, trigger=Trigger(POISON_TAU), temperature=0.0) for k in (1, 3)]
    mixed = reqs[:2] + [poison[0]] + reqs[2:] + [poison[1]]
    seqs, sched = serve(model, mixed, slots=3, fault=fault)
    got = [s.result() for s in seqs]
    for g in (got[2], got[-1]):
        assert g.stop_reason == "error" and "injected fault" in g.error
    for want, g in zip(alone, got[:2] + got[3:-1]):
        assert g.stop_reason == want.stop_reason and g.output == want.output and g.error is None
    assert sched.errors >= 2 and not sched.running and len(sched.free) == 3


def test_engine_generate_raises_the_pinned_error(model):
    engine = Engine(model)
    poisoned_prefill(engine.runner(2))
    with pytest.raises(ValueError, match="injected fault"):  # what the failed prompt raised, not a wrapper
        engine.generate(["fine", "bad"], max_bytes=4, threshold=POISON_TAU, max_batch=2)


@pytest.mark.parametrize("kw, needle", [(dict(threshold=1e39), "entropy threshold"),
                                        (dict(scratch_every=2**63), "longest patch"),
                                        (dict(scratch_every=5), "longest patch")])
def test_settings_that_overflow_the_slots_are_refused_where_they_enter(model, kw, needle):
    from scratchpad.errors import UserError

    with pytest.raises(UserError, match=needle):
        Engine(model).generate("x", max_bytes=2, **kw)
