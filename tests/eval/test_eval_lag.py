"""eval lag: offsets and lags counted right for fixed and variable patchers and with scratchpads,
trunk removal really removes the trunk, the report's figures, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eval.experiments.lag import without_trunk
from eval.experiments.lag_cli import main
from eval.lag_stats import LagStats, bytes_since
from eval.report import have_matplotlib
from eval.windows import batches, eval_bytes
from scratchpad import load_model

W = 64


def manual_since(mask_row) -> list[int]:
    out, last = [], -1
    for t, m in enumerate(mask_row.tolist()):
        if m:
            last = t
        out.append(t - last)
    return out


def test_bytes_since_counts_from_the_latest_mark():
    mask = torch.tensor([[False, False, True, False, False, False, True, True],
                         [True, False, False, False, False, False, False, False]])
    assert bytes_since(mask).tolist() == [[1, 2, 0, 1, 2, 3, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7]]


def collect(model, arr, tau):
    stats, outs = LagStats(), []
    with torch.no_grad():
        for x, y in batches(arr, W, 4):
            out = model(x, threshold=tau)
            stats(out, y)
            outs.append(out)
    return stats, outs


def counts(profile) -> dict:
    return {r["bucket"]: r["bytes"] for r in profile.rows()}


@pytest.mark.parametrize("name", ["tiny-sp-fixed-p4", "tiny-sp-whitespace-p8", "tiny-sp-entropy-p8"])
def test_offsets_and_lags_match_a_byte_by_byte_count(assets, name):
    model = load_model(assets["models"][name]).eval()
    arr, _ = eval_bytes(assets["corpus"], "val", 10 * W + 1, W)
    for tau in (None, 1.0):
        stats, outs = collect(model, arr, tau)
        want_off, want_lag = {}, {}
        for out in outs:
            for e, s in zip(out.ends, out.scratch):
                for v in manual_since(e):
                    want_off[v] = want_off.get(v, 0) + 1
                for v in manual_since(e | s):
                    want_lag[v] = want_lag.get(v, 0) + 1
        assert counts(stats.offset) == want_off
        assert counts(stats.lag) == want_lag
        if tau is None:
            assert counts(stats.offset) == counts(stats.lag)
    if name == "tiny-sp-fixed-p4":  # 10 windows of 64: offsets 1, 2, 3, 0, 1, 2, 3, 0, ...
        stats, _ = collect(model, arr, None)
        assert counts(stats.offset) == {0: 160, 1: 160, 2: 160, 3: 160}


def test_every_byte_is_fresh_at_tau_zero(assets):
    model = load_model(assets["models"]["tiny-sp-fixed-p4"]).eval()
    arr, _ = eval_bytes(assets["corpus"], "val", 4 * W + 1, W)
    stats, _ = collect(model, arr, 0.0)
    assert counts(stats.lag) == {0: 4 * W}
    assert set(counts(stats.offset)) == {0, 1, 2, 3}


def test_profile_bpb_averages_back_to_the_total(assets):
    model = load_model(assets["models"]["tiny-sp-fixed-p4"]).eval()
    arr, _ = eval_bytes(assets["corpus"], "val", 4 * W + 1, W)
    stats, outs = collect(model, arr, 1.0)
    rows = stats.offset.rows()
    mean = sum(r["bpb"] * r["bytes"] for r in rows) / sum(r["bytes"] for r in rows)
    nats = []
    for out, (_, y) in zip(outs, batches(arr, W, 4)):
        nats.append(torch.nn.functional.cross_entropy(out.logits.transpose(1, 2), y, reduction="none"))
    assert mean == pytest.approx(float(torch.cat([n.flatten() for n in nats]).mean()) / math.log(2), rel=1e-6)


def test_without_trunk_removes_every_trunk_path_and_leaves_the_model_alone(assets):
    model = load_model(assets["models"]["tiny-sp-fixed-p4"]).eval()
    before = [p.clone() for p in model.parameters()]
    cut = without_trunk(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    x = torch.from_numpy(np.frombuffer(b"The quick brown fox jumps over the lazy dog. " * 2, np.uint8).astype(np.int64))[None]
    ref = cut(x, threshold=0.0).logits
    with torch.no_grad():
        for p in list(cut.trunk.parameters()) + list(cut.pooling.parameters()) + [cut.start]:
            p.add_(torch.randn_like(p))
    assert torch.equal(cut(x, threshold=0.0).logits, ref)          # the trunk no longer reaches any byte
    assert not torch.equal(model(x, threshold=0.0).logits, ref)     # ... while it does in the model


def test_lag_report(assets, tmp_path, cli, read_report):
    out = tmp_path / "lag"
    code, stdout, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"],
                                   "--window", W, "--thresholds", "1.5", "--max-bytes", 10 * W + 1, "--out", out])
    assert code == 0, err
    r = read_report(out / "lag.json")
    taus = [row["threshold"] for row in r["rows"]]
    assert taus == ["inf", 1.5, 0.0]                                   # 0 and inf always added
    gaps = {row["threshold"]: row["gap_closed"] for row in r["rows"]}
    assert gaps["inf"] == 0 and gaps[0.0] == pytest.approx(1.0)
    assert r["bpb_plain"] == r["rows"][0]["bpb"]
    assert r["trunk_share"] == pytest.approx(r["bpb_without_trunk"] - r["bpb_plain"])
    assert r["aux_bpb"] is not None and r["aux_bpb"] > 0
    for row in r["rows"]:
        assert sum(b["bytes"] for b in row["lag"]["by_offset"]) == 10 * W
    assert (out / "lag.png").is_file() == have_matplotlib()
    assert "Where scratchpads can pay" in (out / "lag.md").read_text()


def test_model_without_scratchpads_reports_tau_inf_only(assets, tmp_path, cli, read_report):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-study-A-fixed-mean"], "--data", assets["corpus"],
                              "--window", W, "--max-bytes", 4 * W + 1, "--out", tmp_path])
    assert code == 0, err
    assert "τ has no effect" in err
    r = read_report(tmp_path / "lag.json")
    assert [row["threshold"] for row in r["rows"]] == ["inf"]
    assert r["aux_bpb"] is None


@pytest.mark.parametrize("args, needle", [
    (["--thresholds", "1,abc"], "--thresholds"),
    (["--window", 10_000], "--window"),
    (["--max-bytes", 30], "smaller than one window"),
])
def test_bad_input_is_one_error_line(assets, tmp_path, cli, user_error, args, needle):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W,
                              "--out", tmp_path] + args)
    user_error(code, err, needle)
