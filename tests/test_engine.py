"""Incremental decode reproduces the parallel forward; scratchpads never touch the caches;
rows never influence each other."""
import math

import pytest
import torch

from eval.causality import audit_bytes, calibrate_entropy_patcher
from infer import Engine, compiled_step
from infer.runner import span_bucket
from scratchpad import ModelConfig, build_model
from scratchpad.kv_pages import PagedCache
from scratchpad.mixers import SSMState
from scratchpad.trigger import Trigger


def model_for(name, dtype=torch.float64):
    model = build_model(ModelConfig.preset(name)).to(dtype).eval()
    calibrate_entropy_patcher(model, audit_bytes(40, torch.Generator().manual_seed(0)).to(torch.long))
    return model


def text_bytes(B, T, seed=0):
    return audit_bytes(T, torch.Generator().manual_seed(seed)).repeat(B, 1)[:B] if B <= 2 else torch.cat(
        [audit_bytes(T, torch.Generator().manual_seed(seed + i))[:1] for i in range(B)])


@pytest.mark.parametrize("name", ModelConfig.tiny_presets())
def test_decode_equals_parallel_forward_float64(name):
    model = model_for(name)
    engine = Engine(model)
    x = text_bytes(3, 36, seed=3)
    median_entropy = float(model(x).entropy.median()) + 1e-7  # off any exact tie
    for tau in (0.0, 1.5, median_entropy, math.inf):
        ref = model(x, threshold=tau if model.cfg.scratchpad else None)  # no scratchpads if never trained with them
        got = engine.teacher_force(x, tau, prefill=[0, 7, 20])  # batch > 1, different prompt lengths
        assert (got - ref.logits).abs().max() <= 1e-9, f"tau={tau}"
        ev = engine.last_events
        assert [e.commits for e in ev] == ref.commits.tolist()
        assert [e.scratchpads for e in ev] == ref.scratchpads.tolist()


@pytest.mark.parametrize("name", ModelConfig.tiny_presets())
def test_decode_with_scratch_every_equals_parallel_forward(name):
    """The stride trigger (every k-th byte of a patch, alone or with the entropy trigger) decodes
    exactly like the parallel forward, eagerly and as CUDA graphs replay the step."""
    model = model_for(name)
    x = text_bytes(3, 36, seed=4)
    for static in (False, True):
        engine = Engine(model, static=static)
        for tau, every in ((math.inf, 1), (math.inf, 3), (1.5, 2)):
            ref = model(x, threshold=tau, scratch_every=every)
            got = engine.teacher_force(x, tau, prefill=[0, 7, 20], scratch_every=every)
            assert (got - ref.logits).abs().max() <= 1e-9, f"tau={tau} every={every} static={static}"
            assert [e.scratchpads for e in engine.last_events] == ref.scratchpads.tolist()
            if model.cfg.scratchpad and every == 1:  # every byte that does not close a patch
                assert ref.scratchpads.tolist() == (~ref.ends).sum(1).tolist()


@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-sp-entropy-p8", "tiny-sp-router-p8", "tiny-heavy-p4",
                                  "tiny-study-C-soft-boundary"])
def test_static_step_as_graphs_replay_it_equals_parallel_forward(name):
    """The step CUDA graphs capture (front, then trunk + decoder or decoder alone, masks deciding
    commit / transient / unused per slot, KV pages read in buckets) decodes exactly like the
    parallel forward, here on CPU."""
    model = model_for(name)
    x = text_bytes(3, 30, seed=6)
    for tau in (0.0, 1.5, math.inf):
        got = Engine(model, static=True).teacher_force(x, tau, prefill=[0, 5, 17])
        assert (got - model(x, threshold=tau).logits).abs().max() <= 1e-9, f"tau={tau}"


@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-sp-whitespace-p8", "tiny-sp-router-p8"])
def test_decode_equals_parallel_forward_float32(name):
    model = model_for(name, torch.float32)
    x = text_bytes(2, 40, seed=5)
    ref = model(x, threshold=1.5).logits
    got = Engine(model).teacher_force(x, 1.5, prefill=[0, 13])
    assert ((got - ref).abs().max() / ref.abs().max()) <= 1e-4


def cache_snapshot(runner):
    """The trunk's committed state: SSM states, and each row's valid KV entries read through its pages."""
    st = runner.state
    out = [st.trunk_length.clone()]
    for layer in st.trunk:
        if isinstance(layer, SSMState):
            out.append(layer.h.clone())
        else:
            assert isinstance(layer, PagedCache)
            K, V, valid = layer.keys()
            for b in range(st.slots):
                out += [K[:, b][:, valid[b]].clone(), V[:, b][:, valid[b]].clone()]  # head-major pages
    return out


@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-sp-entropy-p8"])
def test_scratchpads_leave_trunk_caches_bit_identical(name):
    model = model_for(name)
    engine = Engine(model)
    x = text_bytes(2, 33, seed=7)
    engine.teacher_force(x, math.inf)
    plain = cache_snapshot(engine.last_runner)
    engine.teacher_force(x, 0.0)
    assert sum(e.scratchpads for e in engine.last_events) > 0
    with_scratch = cache_snapshot(engine.last_runner)
    assert len(plain) == len(with_scratch)
    for a, b in zip(plain, with_scratch):
        assert torch.equal(a, b)
    assert torch.equal(engine.last_runner.state.trunk_length, model(x).commits), "KV length == committed patches"


def test_batch_rows_are_independent():
    model = model_for("tiny-sp-whitespace-p4", torch.float32)
    engine = Engine(model)
    prompt = b"the cat sat on "
    alone = engine.generate([prompt], max_bytes=24, threshold=1.0, eos_byte=None)[0].output
    same = engine.generate([prompt] * 3, max_bytes=24, threshold=1.0, eos_byte=None)
    assert all(g.output == alone for g in same)
    mixed = engine.generate([b"zz\xff\x00 other neighbour text", prompt, b""], max_bytes=24, threshold=1.0, eos_byte=None)
    assert mixed[1].output == alone


def test_sampling_is_reproducible_and_stops():
    model = model_for("tiny-sp-fixed-p4", torch.float32)
    engine = Engine(model)
    kw = dict(max_bytes=30, threshold=1.5, temperature=1.0, top_k=50, top_p=0.9, eos_byte=None)
    a = engine.generate([b"abc", b""], seed=3, **kw)
    b = engine.generate([b"abc", b""], seed=3, **kw)
    assert [g.output for g in a] == [g.output for g in b]
    assert all(len(g.output) == 30 and g.stop_reason == "max_bytes" for g in a)
    stop = a[0].output[5:7]
    c = engine.generate([b"abc"], seed=3, stop=[stop], **kw)[0]
    assert c.stop_reason == "stop_string" and c.output.endswith(stop) and len(c.output) <= 7 + 2


def test_generate_takes_one_trigger_in_place_of_threshold_and_scratch_every():
    engine = Engine(model_for("tiny-sp-fixed-p4", torch.float32))
    kw = dict(max_bytes=24, temperature=0.0, eos_byte=None)
    by_kwargs = engine.generate([b"abc"], threshold=None, scratch_every=3, **kw)[0]
    by_trigger = engine.generate([b"abc"], trigger=Trigger(every=3), **kw)[0]
    assert (by_trigger.output, by_trigger.events) == (by_kwargs.output, by_kwargs.events)
    assert by_trigger.events.scratchpads > 0 == engine.generate([b"abc"], threshold=None, **kw)[0].events.scratchpads
    with pytest.raises(ValueError, match="not both"):
        engine.generate([b"abc"], trigger=Trigger(0.5), scratch_every=3, **kw)


def test_prompt_longer_than_context_keeps_its_tail_and_slides():
    model = model_for("tiny-sp-fixed-p4", torch.float32)
    limit = model.cfg.max_seq_len
    prompt = bytes(range(256)) * ((limit + 50) // 256 + 1)
    g = Engine(model).generate([prompt], max_bytes=5, eos_byte=None)[0]
    assert g.prompt == prompt and len(g.output) == 5 and g.stop_reason == "max_bytes" and g.slides == 1
    assert g.events.bytes == (limit - 1) + 1 + (limit * 3 // 4) + 3  # first context, one step, slid context, 3 steps
    stopped = Engine(model, context="stop").generate([prompt], max_bytes=5, eos_byte=None)[0]
    assert stopped.stop_reason == "limit" and len(stopped.output) == 2 and stopped.slides == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-heavy-p4"])
def test_compiled_step_equals_parallel_forward(name):
    """The CPU-compiled step (each piece compiled by Inductor, replayed on fixed buffers) decodes
    like eager: with 2-position pages the KV span read grows 1 -> 2 -> 3 -> 4 -> 6 pages within a
    row, so every trunk variant is compiled for its own span."""
    model = model_for(name)
    x = text_bytes(2, 40, seed=4)
    for tau, every in ((0.0, 0), (1.5, 0), (math.inf, 0), (math.inf, 2)):
        engine = Engine(model, compile=True, page=2)
        got = engine.teacher_force(x, tau, prefill=[0, 9], scratch_every=every)
        assert (got - model(x, threshold=tau, scratch_every=every).logits).abs().max() <= 1e-9, f"tau={tau} every={every}"
        assert engine.last_runner.step_kind == "compiled"
        assert {key[2] for key in engine.last_runner.graphs.replays if key[0] == "trunk_back"} >= {1, 2, 3, 4, 6}


@pytest.mark.parametrize("tau,every", [(1.5, 0), (math.inf, 2)])
def test_compiled_step_replays_each_variant_on_its_own_tensors(monkeypatch, tau, every):
    """The default suite's check of the compiled replay (the slow test above runs Inductor): each
    piece is traced once per variant and then called directly on the tensors it was traced
    against, so a variant key missing something a graph is specialised to (the KV span read:
    1 -> 2 -> 3 pages of 2 patches here), a state tensor that moved, or a graph reused from
    another runner (two engines over one model below) would change the logits. The backend runs
    Dynamo's graph as traced, without Inductor's minutes of C++ compilation."""
    traced = []

    def as_traced(gm, example_inputs):
        traced.append(gm)
        return gm

    monkeypatch.setattr(compiled_step, "inductor", as_traced)
    model = model_for("tiny-sp-fixed-p4")
    x = text_bytes(2, 24, seed=4)
    ref = model(x, threshold=tau, scratch_every=every)
    assert int(ref.commits.min()) > 2 * 2  # each row ends up holding 3 pages: spans 1, 2 and 3 all run
    for prefill in ([0, 5], [7, 3]):
        engine = Engine(model, compile=True, page=2)
        got = engine.teacher_force(x, tau, prefill=prefill, scratch_every=every)
        assert engine.last_runner.step_kind == "compiled" and traced, "the engine compiled nothing"
        assert (got - ref.logits).abs().max() <= 1e-9


def test_span_buckets_read_at_most_half_again_the_pages_held():
    """Compiled and captured steps read the held KV pages rounded up to a bucket: few buckets
    (about two per doubling), each the smallest that holds them, never 1.5x more than held."""
    buckets = [span_bucket(n) for n in range(1, 1025)]
    assert buckets[:12] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12]
    assert all(n <= b <= 1.5 * n for n, b in enumerate(buckets, start=1))
    assert len(set(buckets)) == 20
