"""The decode step as CUDA graphs replay it (its CPU stand-in, Engine(static=True)): trunk work
only where eager decode does it, and a failed capture that is an error unless the caller asks
for the eager fallback."""
import math

import pytest
import torch

from infer import Engine
from infer.graphs import GraphCaptureError, StepGraphs
from scratchpad import load_model
from tests.test_engine import model_for, text_bytes

PREFILL = [0, 7, 20]


def steps_needing_the_trunk(ref, starts) -> int:
    """Decode steps at which some started row commits or scratches, by the parallel forward."""
    need = ref.ends | ref.scratch  # [B, T]
    started = torch.arange(need.shape[1]) >= torch.tensor(starts).unsqueeze(1)
    return int((need & started).any(0)[min(starts):].sum())


@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-sp-entropy-p8", "tiny-sp-router-p8", "tiny-heavy-p4",
                                  "tiny-study-C-soft-boundary"])
def test_static_step_runs_the_trunk_exactly_where_eager_does(name):
    model = model_for(name)
    x = text_bytes(3, 36, seed=8)
    for tau, every in ((0.0, 0), (1.5, 0), (math.inf, 0), (math.inf, 3), (1.5, 2)):
        ref = model(x, threshold=tau, scratch_every=every)
        expected = steps_needing_the_trunk(ref, PREFILL)
        passes = {}
        for static in (False, True):
            engine = Engine(model, static=static)
            got = engine.teacher_force(x, tau, prefill=PREFILL, scratch_every=every)
            assert engine.last_runner.step_kind == ("static" if static else "eager")
            assert (got - ref.logits).abs().max() <= 1e-9, f"tau={tau} every={every} static={static}"
            passes[static] = engine.last_runner.trunk_passes
        assert passes[False] == passes[True] == expected, f"tau={tau} every={every}"
        if tau == math.inf and every == 0:  # commits alone: most bytes skip the trunk
            assert expected < x.shape[1] - min(PREFILL)


def test_packaged_model_static_decode_runs_eagers_trunk_passes():
    """The issue's case: code bytes teacher-forced at tau 1.5 (52 trunk passes eager, 82 static
    before the step was split) and at every 4th byte."""
    model = load_model(None).eval()
    x = torch.tensor(list(b"def main(argv=None):\n    args = parse(argv)\n    for x in args.items:\n"
                          b"        print(x)\n")).view(1, -1)
    for tau, every in ((1.5, 0), (math.inf, 4)):
        passes = []
        for static in (False, True):
            engine = Engine(model, static=static)
            engine.teacher_force(x, tau, scratch_every=every)
            passes.append(engine.last_runner.trunk_passes)
        assert passes[0] == passes[1] < x.shape[1], f"tau={tau} every={every}"


def fail_capture(monkeypatch, when=lambda key: True):
    """Make recording the pieces whose key satisfies `when` raise, as a failed CUDA capture does."""
    record = StepGraphs._record

    def failing(self, key, piece):
        if when(key):
            raise RuntimeError("injected capture failure\nsecond line of the CUDA error")
        return record(self, key, piece)

    monkeypatch.setattr(StepGraphs, "_record", failing)


def test_failed_capture_is_an_error_without_the_fallback(monkeypatch):
    model = model_for("tiny-sp-fixed-p4", torch.float32)
    fail_capture(monkeypatch)
    with pytest.raises(GraphCaptureError) as err:
        Engine(model, static=True).generate([b"abc"], max_bytes=4, temperature=0.0)
    message = str(err.value)
    assert "\n" not in message and "injected capture failure" in message and "--eager-fallback" in message


def test_eager_fallback_decodes_eagerly_and_says_so(monkeypatch, capsys):
    model = model_for("tiny-sp-fixed-p4", torch.float32)
    kw = dict(max_bytes=12, temperature=0.0, eos_byte=None, threshold=1.0)
    eager = Engine(model).generate([b"abc", b"de"], **kw)
    fail_capture(monkeypatch)
    engine = Engine(model, static=True, eager_fallback=True)
    got = engine.generate([b"abc", b"de"], **kw)
    assert [g.output for g in got] == [g.output for g in eager]
    runner = engine.last_runner
    assert runner.step_kind == "eager" and "RuntimeError: injected capture failure" in runner.fallback
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: capturing the decode step") and "eager fallback" in notes[0]


def test_capture_failing_mid_sequence_falls_back_without_losing_state(monkeypatch):
    """A capture for a larger KV span fails after some bytes ran as graphs: the warm-up's state is
    restored and eager decode goes on from the same byte, still equal to the parallel forward."""
    model = model_for("tiny-heavy-p4")
    x = text_bytes(2, 40, seed=4)
    ref = model(x, threshold=1.5)
    fail_capture(monkeypatch, when=lambda key: key[0] == "trunk_back" and key[2] >= 3)
    with pytest.raises(GraphCaptureError):
        Engine(model, static=True, page=2).teacher_force(x, 1.5, prefill=[0, 9])
    engine = Engine(model, static=True, page=2, eager_fallback=True)
    got = engine.teacher_force(x, 1.5, prefill=[0, 9])
    runner = engine.last_runner
    assert runner.step_kind == "eager" and runner.fallback is not None
    assert (got - ref.logits).abs().max() <= 1e-9
    assert runner.trunk_passes == steps_needing_the_trunk(ref, [0, 9])
