"""The engine's public behaviour: prompt types, the caller's model mode, models without
scratchpads, sliding past the context, per-sequence sampling streams, paged trunk KV."""
import dataclasses
import math

import pytest
import torch

from eval.causality import audit_bytes, calibrate_entropy_patcher
from eval.cli import main as cli
from infer import Engine
from scratchpad import ModelConfig, build_model, save_model
from scratchpad.accounting import costs


def tiny(name="tiny-sp-fixed-p4", **changes):
    cfg = dataclasses.replace(ModelConfig.preset(name), **changes).validate()
    model = build_model(cfg).eval()
    calibrate_entropy_patcher(model, audit_bytes(40, torch.Generator().manual_seed(0)).to(torch.long))
    return model


def test_generate_accepts_bytes_str_and_lists():
    engine = Engine(tiny())
    kw = dict(max_bytes=6, eos_byte=None)
    one = engine.generate(b"Hi", **kw)
    assert len(one) == 1 and one[0].prompt == b"Hi" and len(one[0].output) == 6
    assert engine.generate("Hi", **kw)[0].output == one[0].output
    assert [g.output for g in engine.generate(["Hi", b"Hi", "h\u00e9"], **kw)][:2] == [one[0].output] * 2
    assert engine.generate(["h\u00e9"], **kw)[0].prompt == "h\u00e9".encode()
    with pytest.raises(TypeError):
        engine.generate([1, 2], **kw)


def test_engine_leaves_the_models_mode_alone():
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4")).train()
    with pytest.raises(ValueError, match="eval mode"):
        Engine(model)
    assert model.training, "the engine must not switch the caller's model to eval mode"
    model.eval()
    Engine(model).generate(b"ab", max_bytes=2)
    assert not model.training


def test_model_trained_without_scratchpads_never_fires_them(tmp_path, capsys):
    model = tiny(scratchpad=False)
    engine = Engine(model)
    assert not engine.scratchpads_enabled
    low = engine.generate(b"some text here", max_bytes=24, threshold=0.0, eos_byte=None)[0]
    off = engine.generate(b"some text here", max_bytes=24, threshold=math.inf, eos_byte=None)[0]
    assert low.events.scratchpads == 0 and low.output == off.output
    engine.teacher_force(audit_bytes(30, torch.Generator().manual_seed(1)).view(1, -1), 0.0)
    assert engine.last_events[0].scratchpads == 0
    save_model(model, tmp_path / "m")
    code = cli(["generate", "abc", "--model", str(tmp_path / "m"), "-t", "0.5", "--max-bytes", "3", "--no-eos"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("trained without scratchpads") == 1


def test_generation_past_the_context_slides_and_says_so(tmp_path, capsys):
    model = tiny(max_seq_len=64)
    g = Engine(model).generate(b"abc", max_bytes=150, eos_byte=None)[0]
    assert len(g.output) == 150 and g.stop_reason == "max_bytes" and g.slides >= 3
    save_model(model, tmp_path / "m")
    code = cli(["generate", "abc", "--model", str(tmp_path / "m"), "--max-bytes", "100", "--no-eos"])
    out, err = capsys.readouterr()
    assert code == 0 and "context slid" in err and "64-byte context" in err


def test_a_sequences_samples_do_not_depend_on_its_batch():
    engine = Engine(tiny())
    kw = dict(max_bytes=20, temperature=1.0, top_k=40, top_p=0.9, eos_byte=None)
    pair = engine.generate([b"zzz other", b"abc"], seed=10, **kw)
    alone = engine.generate([b"abc"], seed=11, **kw)[0]  # row i samples with seed + i
    assert pair[1].output == alone.output
    mixed = engine.generate([b"abc", b"abc"], seed=11, **kw)  # two seeds: different streams
    assert mixed[0].output == alone.output and mixed[1].output != alone.output


@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-sp-whitespace-p8", "tiny-sp-entropy-p8",
                                  "tiny-sp-router-p8"])
def test_trunk_kv_is_held_in_pages_of_committed_patches(name):
    model = tiny(name).double()  # float64: entropy boundaries off float32 near-ties
    page = 4
    engine = Engine(model, page=page)
    x = audit_bytes(120, torch.Generator().manual_seed(2)).view(1, -1)
    n = x.shape[1]
    engine.teacher_force(x, 1.5)
    r = engine.last_runner
    commits = int(r.state.trunk_length[0])
    assert commits == int(model(x).commits[0]) and commits < n
    per_patch = costs(model.cfg, kv_dtype_bytes=8).kv_bytes_per_patch
    assert r.kv_bytes_per_position == per_patch > 0
    held = r.state.pages.pages_held(0) * page * per_patch  # KV bytes the row holds, measured from its pages
    assert held == math.ceil((commits + 1) / page) * page * per_patch
    assert held < n * per_patch, "one entry per committed patch (in whole pages), never one per byte"
    g = Engine(model, page=page).generate(bytes(x[0, :60].tolist()), max_bytes=40, eos_byte=None)[0]
    assert g.slides == 0
    assert g.kv_bytes == math.ceil((g.events.commits + 1) / page) * page * per_patch
