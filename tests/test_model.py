import json
import math

import pytest
import torch

from scratchpad import ModelConfig, UserError, build_model, load_model, save_model
from scratchpad.model import open_lengths


@pytest.mark.parametrize("name", ModelConfig.tiny_presets())
def test_preset_forward_backward(name):
    model = build_model(ModelConfig.preset(name))
    x = torch.randint(0, 256, (3, 37))
    out = model(x, targets=torch.roll(x, -1, 1), threshold=torch.tensor([0.0, 1.5, math.inf]))
    assert out.logits.shape == (3, 37, 256)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > len(grads) // 2
    assert not out.scratch[2].any(), "tau = inf must not trigger scratchpads"
    assert not (out.scratch & out.ends).any(), "never a scratchpad at a patch's last byte"


def test_every_preset_has_a_tiny_form_and_the_study_variants_exist():
    names = ModelConfig.presets()
    full = [n for n in names if not n.startswith("tiny-")]
    assert all(f"tiny-{n}" in names for n in full)
    assert "byte" in full and sum(n.startswith("study-") for n in full) == 6
    for p in (4, 8, 16):
        for kind in ("fixed", "whitespace", "entropy"):
            assert f"sp-{kind}-p{p}" in full
    study = ModelConfig.preset("study-A-fixed-mean")
    assert (study.d_model, len(study.trunk_mixers), study.max_seq_len) == (256, 4, 1024)


def test_float64_forward():
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4")).double()
    out = model(torch.randint(0, 256, (1, 20)), threshold=1.0)
    assert out.logits.dtype == torch.float64


def test_scratchpad_refreshes_only_its_own_patch():
    """A scratchpad at byte n refreshes the trunk context at n .. before its patch's end only: it is
    transient (never committed), so every later trunk output is unchanged. (Later logits may still
    move through the byte-level decoder's own state, which did read the refreshed context.)"""
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4")).double()
    x = torch.randint(0, 256, (1, 16))
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, 5] = True  # patch [4..7]
    plain = model(x, keep_trace=True)
    scr = model(x, scratchpad_mask=mask, keep_trace=True)
    assert scr.scratchpads.item() == 1
    ctx_diff = (scr.trace["ctx"] - plain.trace["ctx"]).abs().amax(-1)[0]
    assert torch.all(ctx_diff[:5] == 0) and torch.all(ctx_diff[7:] == 0), "byte 7 closes the patch: its commit serves"
    assert torch.all(ctx_diff[5:7] > 1e-6)
    logit_diff = (scr.logits - plain.logits).abs().amax(-1)[0]
    assert torch.all(logit_diff[:5] == 0) and torch.all(logit_diff[5:] > 0)


def test_patch_lag_and_counts():
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4"))
    out = model(torch.randint(0, 256, (2, 18)))
    assert out.commits.tolist() == [4, 4]
    assert out.ends[0].nonzero().flatten().tolist() == [3, 7, 11, 15]


def test_config_json_round_trip_and_validation():
    cfg = ModelConfig.preset("sp-whitespace-p8")
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(UserError, match="patcher"):
        ModelConfig.from_dict({**cfg.to_dict(), "patcher": "nope"})
    with pytest.raises(UserError, match="d_model"):
        ModelConfig.from_dict({**cfg.to_dict(), "d_model": -3})
    with pytest.raises(UserError, match="unknown field"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(UserError, match="unknown preset"):
        ModelConfig.preset("nope")


def test_bad_threshold_rejected():
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4"))
    for tau in (-1.0, float("nan"), torch.tensor([1.0, -1.0])):
        with pytest.raises(ValueError, match="entropy threshold"):
            model(torch.randint(0, 256, (2, 8)), threshold=tau)
    for every in (-1, 2.5, float("inf"), torch.tensor([2, -1])):
        with pytest.raises(ValueError, match="scratch_every"):
            model(torch.randint(0, 256, (2, 8)), scratch_every=every)


def test_scratch_every_fires_at_every_kth_byte_of_a_patch():
    ends = torch.tensor([[0, 0, 1, 0, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert open_lengths(ends).tolist() == [[1, 2, 3, 1, 2, 1, 1, 2, 3, 4]]
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4")).eval()  # P = 4: bytes 3, 7, 11 close patches
    x = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    out = model(x, scratch_every=torch.tensor([2, 0]))  # per row; 0 = none
    assert out.scratch[0].nonzero().flatten().tolist() == [1, 5, 9] and not out.scratch[1].any()
    both = model(x, threshold=0.0, scratch_every=3)  # the triggers add up: every byte but the ends
    assert torch.equal(both.scratch, ~both.ends)
    plain = build_model(ModelConfig.preset("tiny-study-A-fixed-mean")).eval()  # no scratchpads: never
    assert not plain(x, scratch_every=1).scratch.any()


def test_checkpoint_round_trip_and_corruption(tmp_path):
    model = build_model(ModelConfig.preset("tiny-sp-entropy-p8"))
    folder = save_model(model, tmp_path / "ck")
    again = load_model(folder)
    x = torch.randint(0, 256, (1, 30))
    assert torch.equal(model.eval()(x, threshold=1.0).logits, again(x, threshold=1.0).logits)
    assert not list(tmp_path.glob(".ck.tmp-*")), "no temporary folder left behind"

    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="model.safetensors"):
        load_model(folder)
    save_model(model, folder)
    (folder / "config.json").write_text(json.dumps({**model.cfg.to_dict(), "d_model": 64}))
    with pytest.raises(UserError, match="does not match|shape"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json"):
        load_model(folder)
    with pytest.raises(UserError, match="no such model folder"):
        load_model(tmp_path / "missing")


@pytest.mark.parametrize("name", [n for n in ModelConfig.presets() if not n.startswith("tiny-")])
def test_full_size_presets_build_and_train_one_step(name):
    model = build_model(ModelConfig.preset(name))
    x = torch.randint(0, 256, (1, 48))
    out = model(x, targets=torch.roll(x, -1, 1), threshold=model.sample_thresholds(1))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logits.shape == (1, 48, 256)


def test_build_model_is_deterministic_by_default():
    """A fresh model is in eval mode: identical calls agree exactly (training mode drops a random
    share of scratchpads, which the trainer switches on explicitly)."""
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4"))
    x = torch.randint(0, 256, (2, 64))
    a = model(x, threshold=0.0).logits
    b = model(x, threshold=0.0).logits
    assert not model.training and torch.equal(a, b)
    model.train()
    torch.manual_seed(1)
    c = model(x, threshold=0.0)
    assert c.scratch.sum() < model.eval()(x, threshold=0.0).scratch.sum()  # the drop is still there for training


def test_config_written_before_the_window_renames_still_loads(tmp_path):
    """`local_window` (the local attention span) was renamed `local_attn_span`; old config.json
    files (the previous packaged model's among them) keep loading."""
    cfg = ModelConfig.from_dict({"local_mixer": "attn", "local_window": 64})
    assert cfg.local_attn_span == 64 and "local_window" not in cfg.to_dict()
    save_model(build_model(ModelConfig.preset("tiny-heavy-p4")), tmp_path / "m")
    old = json.loads((tmp_path / "m" / "config.json").read_text())
    old["local_window"] = old.pop("local_attn_span")
    (tmp_path / "m" / "config.json").write_text(json.dumps(old))
    assert load_model(tmp_path / "m").cfg.local_attn_span == ModelConfig.preset("tiny-heavy-p4").local_attn_span


def test_window_means_one_thing():
    """Longest patch, local attention span and the decode pooling ring have their own names."""
    from scratchpad.decode import DecodeState

    cfg = ModelConfig.preset("tiny-sp-entropy-p8")
    assert cfg.longest_patch == cfg.max_patch_len and not hasattr(cfg, "window")
    assert {"pool_ring", "coord_ring"} <= set(DecodeState.__dataclass_fields__)
    assert not any("window" in f for f in DecodeState.__dataclass_fields__)
