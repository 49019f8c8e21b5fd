"""eval sweep: rows per tau, FLOPs rise as tau falls, KV ratio = 1/P, engine-counted FLOPs agree
with the parallel accounting, --rates, baselines as points, bad threshold lists."""
from __future__ import annotations

import math

import pytest

from eval.engine_check import engine_check, engine_sample
from eval.experiments import sweep
from eval.experiments.sweep_cli import main
from eval.report import have_matplotlib
from eval.windows import eval_bytes
from scratchpad import load_model

W = 64
ROW_KEYS = ("threshold", "bpb", "scratchpad_rate", "trunk_calls_per_byte", "flops_per_byte", "flops_per_byte_split",
            "flops_ratio_vs_byte", "kv_bytes_per_byte", "kv_ratio_vs_byte", "byte_baseline_flops_per_byte", "engine")


def test_sweep_thresholds(assets, tmp_path, cli, read_report):
    out = tmp_path / "sweep"
    code, stdout, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W,
                                   "--thresholds", "0,0.5,1,1.5,2,3,inf", "--engine-bytes", 24, "--threads", 1,
                                   "--max-bytes", 20 * W + 1,
                                   "--baseline", assets["models"]["tiny-byte"], "--out", out])
    assert code == 0, err
    r = read_report(out / "sweep.json")
    rows = r["rows"]
    assert len(rows) == 7
    for row in rows:
        for k in ROW_KEYS:
            assert k in row, k
        assert set(row["flops_per_byte_split"]) == {"encoder", "aux", "trunk", "decoder"}
        assert sum(row["flops_per_byte_split"].values()) == pytest.approx(row["flops_per_byte"])
        # fixed P = 4, 20 full windows of W = 64: one committed KV entry per 4 bytes, whatever tau
        assert row["bytes"] == 20 * W
        assert row["kv_ratio_vs_byte"] == 1 / 4
        assert row["kv_bytes_per_byte"] == pytest.approx(row["byte_baseline_kv_bytes_per_byte"] / 4, rel=1e-12)
        assert row["engine"]["agree"] and row["engine"]["logits_agree"]
        assert row["engine"]["engine_events"] == row["engine"]["parallel_events"]
    taus = [math.inf if t == "inf" else t for t in (row["threshold"] for row in rows)]
    assert taus == sorted(taus, reverse=True)  # cheapest first
    flops = [row["flops_per_byte"] for row in rows]
    rates = [row["scratchpad_rate"] for row in rows]
    assert all(b >= a for a, b in zip(flops, flops[1:])), flops     # FLOPs rise as tau falls
    assert all(b >= a for a, b in zip(rates, rates[1:])), rates
    assert flops[-1] > flops[0] and rates[0] == 0 and rates[-1] > 0.5
    assert len(set(round(f) for f in flops)) >= 4                  # the sharpened head spreads the taus
    assert r["engine_check"]["all_agree"] is True
    assert r["baselines"] and r["baselines"][0]["kind"] == "model"
    assert r["baselines"][0]["flops_per_byte"] == pytest.approx(r["byte_baseline"]["flops_per_byte"])
    assert (out / "sweep.md").is_file()
    assert (out / "sweep.png").is_file() == have_matplotlib()


def test_sweep_rates_hit_their_targets(assets, tmp_path, cli, read_report):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W,
                              "--rates", "0,0.1,0.3", "--engine-bytes", 0, "--out", tmp_path])
    assert code == 0, err
    rows = read_report(tmp_path / "sweep.json")["rows"]
    assert [row["target_rate"] for row in rows] == [0, 0.1, 0.3]
    for row in rows:
        assert row["scratchpad_rate"] == pytest.approx(row["target_rate"], abs=0.02)
        assert "engine" not in row


@pytest.mark.parametrize("name", ["tiny-sp-entropy-p8", "tiny-sp-whitespace-p8"])
def test_engine_counts_agree_with_parallel_accounting(assets, name):
    """Variable patchers too: the engine's counted commits, scratchpads, keys and aux steps, priced by
    the accounting, equal the parallel forward's."""
    model = load_model(assets["models"][name]).eval()
    arr, _ = eval_bytes(assets["corpus"], "val", None, W)
    x = engine_sample(arr, W, 40, rows=2)
    for tau in (math.inf, 1.0, 0.0):
        c = engine_check(model, x, tau)
        assert c["agree"] and c["logits_agree"], (tau, c)
        assert c["engine_flops_per_byte"] == c["parallel_flops_per_byte"]


@pytest.mark.parametrize("bad,needle", [("0,abc", "abc"), ("-1", "[0, 100]"), ("nan", "nan"), ("0,,1", "list"), ("1,1", "repeats")])
def test_sweep_bad_threshold_lists(assets, tmp_path, cli, user_error, bad, needle):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--thresholds", bad,
                              "--out", tmp_path])
    user_error(code, err, "--thresholds", needle)


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "x"])
def test_sweep_bad_rates(assets, tmp_path, cli, user_error, bad):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--rates", bad,
                              "--out", tmp_path])
    user_error(code, err, "--rates")


def test_sweep_refuses_model_without_scratchpads(assets, tmp_path, cli, user_error):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-byte"], "--data", assets["corpus"], "--out", tmp_path])
    user_error(code, err, "no scratchpads")


def test_sweep_runs_from_python_quietly_and_matches_the_command(assets, tmp_path, cli, read_report, capsys):
    """eval.experiments.sweep.run is the experiment without the command: it parses nothing, writes
    nothing and prints nothing unless given a log, and its JSON is what the command writes."""
    model = load_model(assets["models"]["tiny-sp-fixed-p4"]).float().eval()
    arr, data = eval_bytes(assets["corpus"], "val", 4 * W + 1, W)
    res = sweep.run(model, "tiny", arr, data, W, taus=[math.inf, 1.0], engine_bytes=16)
    assert capsys.readouterr() == ("", "") and not any(tmp_path.iterdir())
    assert [r["threshold"] for r in res.rows] == [math.inf, 1.0] and res.engine_check["all_agree"]
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--data", assets["corpus"], "--window", W,
                              "--thresholds", "inf,1", "--engine-bytes", 16, "--max-bytes", 4 * W + 1, "--out", tmp_path])
    assert code == 0, err
    written = read_report(tmp_path / "sweep.json")["rows"]
    assert [r["bpb"] for r in written] == pytest.approx([r["bpb"] for r in res.rows], rel=1e-12)
