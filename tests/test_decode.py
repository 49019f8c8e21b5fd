"""The model's own decode API, without the engine: allocate_state, load_state (prefill) and step
reproduce the parallel forward with a trigger per slot, and every cache type's reset returns a
slot to the freshly allocated state without touching the others."""
import math

import pytest
import torch

from scratchpad.trigger import Trigger
from tests.test_engine import model_for, text_bytes

# one preset per kind of cache: SSM states, byte-level attention rings + paged trunk KV, the soft
# patcher's coordinates (and soft pooling), the router, the patch-AR decoder
PRESETS = ["tiny-sp-fixed-p4", "tiny-heavy-p4", "tiny-study-C-soft-boundary", "tiny-sp-router-p8",
           "tiny-study-F-gru-local-dec"]


@pytest.mark.parametrize("name", PRESETS)
def test_model_step_equals_the_parallel_forward_with_a_trigger_per_slot(name):
    model = model_for(name)
    x = text_bytes(2, 30, seed=2)
    triggers = [Trigger(1.5), Trigger(math.inf, 2)]
    refs = [model(x[b : b + 1], trigger=t) for b, t in enumerate(triggers)]
    if model.cfg.scratchpad:  # (a model trained without them never fires one: Trigger.for_model)
        assert all(int(r.scratchpads) > 0 for r in refs)
    state = model.allocate_state(2)
    start = 6
    for b, t in enumerate(triggers):
        model.load_state(state, b, x[b, :start], t)
        assert torch.allclose(state.logits[b], refs[b].logits[0, start - 1], rtol=0, atol=1e-9)
    for i in range(start, x.shape[1]):
        for b in range(2):  # the page the next commit writes (the engine's scheduler does this)
            state.pages.ensure(b, int(state.trunk_length[b]))
        logits = model.step(x[:, i], state)
        for b in range(2):
            assert (logits[b] - refs[b].logits[0, i]).abs().max() <= 1e-9, f"slot {b} byte {i}"
    for b in range(2):
        ev = state.events(b)
        assert (ev.bytes, ev.commits, ev.scratchpads) == (x.shape[1], int(refs[b].commits), int(refs[b].scratchpads))


@pytest.mark.parametrize("name", PRESETS)
def test_reset_returns_a_slot_to_the_allocated_state_and_leaves_the_others(name):
    model = model_for(name)
    x = text_bytes(2, 20, seed=5)
    fresh = model.allocate_state(2)
    state = model.allocate_state(2)
    for b in range(2):
        model.load_state(state, b, x[b, :9], Trigger(0.5, 3))
    for i in range(9, 20):
        for b in range(2):
            state.pages.ensure(b, int(state.trunk_length[b]))
        model.step(x[:, i], state)
    def slot(st, s):  # every tensor's rows of slot s (counts [5, B] holds a slot per column)
        return [(t[:, s] if t is st.counts else t[s]).clone() for t in st.tensors()]

    kept = slot(state, 1)
    assert any(not torch.equal(a, b) for a, b in zip(slot(state, 0), slot(fresh, 0)))
    state.reset(0)
    for i, (got, want) in enumerate(zip(slot(state, 0), slot(fresh, 0))):
        assert torch.equal(got, want), f"tensor {i} of slot 0 is not back to its allocated state"
    assert all(torch.equal(a, b) for a, b in zip(slot(state, 1), kept)), "slot 1 changed"
    assert state.pages.pages_held(0) == 0 and state.pages.pages_held(1) > 0
