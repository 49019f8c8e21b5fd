"""eval scale: equal training FLOPs at every trunk width, scale.json as the issue fixes it, the report's
numbers from the runs' own records, the pilot, resumability and bad input."""
from __future__ import annotations

import json
import math

import pytest

from eval.experiments.scale_cli import main
from eval.experiments.scale_report import fit_trend, trend_sentence

W = 64


def args(assets, tmp_path, *extra):
    return ["--tiny", "--data", assets["corpus"], "--eval-data", f"{assets['corpus']},{assets['code']}",
            "--train-bytes", 6 * 2 * W, "--seq-len", W, "--batch-size", 2, "--warmup", 2, "--window", W,
            "--eval-bytes", 4 * W + 1, "--thresholds", "1.5,0", "--audit-positions", 2, "--threads", 1,
            "--local", "4x16", "--curve-points", 3, "--bpe-sample-bytes", 4000, "--bpe-train-bytes", 4000,
            "--runs", tmp_path / "runs", "--out", tmp_path / "out", *extra]


def test_scale_trains_every_model_to_equal_flops_and_reports_from_the_runs(assets, tmp_path, cli, read_report):
    code, out, err = cli(main, args(assets, tmp_path, "--trunk-dims", "16,32", "--models", "byte,p16-plain,p16-sp,bpe"))
    assert code == 0, err
    r = read_report(tmp_path / "out" / "scale.json")
    runs = r["runs"]
    assert [(x["scale"], x["model"]) for x in runs] == [(d, m) for d in (16, 32) for m in ("byte", "p16-plain", "p16-sp", "bpe")]
    for d in (16, 32):
        at = {x["model"]: x for x in runs if x["scale"] == d}
        budget = at["byte"]["train_flops"]
        for m, x in at.items():
            assert budget <= x["train_flops"] * (1 + 1e-9) and x["train_flops"] < budget * 1.10, m   # equal within 10%
            assert set(x["bpb"]) == {"corpus", "code"}
        assert set(at["p16-sp"]["bpb"]["corpus"]) == {"inf", "1.5", "0"}
        assert set(at["byte"]["bpb"]["code"]) == {"inf"} and set(at["p16-sp"]["infer_flops_per_byte"]) == {"inf", "1.5", "0"}
        assert at["p16-sp"]["train_bytes"] > at["byte"]["train_bytes"]     # cheaper steps: more data for the FLOPs
        assert at["byte"]["causality"] == "PASS" and at["p16-sp"]["causality"] == "PASS"
        assert len(at["byte"]["learning_curve"]) >= 3
        curve_flops = [c[0] for c in at["p16-sp"]["learning_curve"]]
        assert curve_flops == sorted(curve_flops) and curve_flops[-1] == pytest.approx(at["p16-sp"]["train_flops"])
    assert runs[4]["trunk_params"] > 3 * runs[0]["trunk_params"]          # d 16 -> 32: ~4x trunk parameters
    # the gap rows are the runs' own numbers: SP best τ minus byte, per set
    for g in r["gaps"]:
        at = {x["model"]: x for x in runs if x["scale"] == g["scale"]}
        sp = at["p16-sp"]["bpb"][g["set"]]
        assert g["gap_best"] == pytest.approx(min(sp.values()) - at["byte"]["bpb"][g["set"]]["inf"], abs=1e-5)
        assert g["gap_best_se"] > 0
    md = (tmp_path / "out" / "scale.md").read_text()
    assert "Trend:" in md and "train-d16.png" in md
    # a second call reuses everything
    code, out, err = cli(main, args(assets, tmp_path, "--trunk-dims", "16,32", "--models", "byte,p16-plain,p16-sp,bpe"))
    assert code == 0, err
    assert out.count("reused a finished run") == 8


def test_pilot_compares_local_designs_at_equal_flops(assets, tmp_path, cli, read_report):
    code, out, err = cli(main, args(assets, tmp_path, "--trunk-dims", "16", "--pilot", "--locals", "4x16,8x16"))
    assert code == 0, err
    r = read_report(tmp_path / "out" / "pilot.json")
    assert [x["local"] for x in r["runs"]] == ["4x16", "8x16"] and r["best"] in ("4x16", "8x16")
    flops = [x["train_flops"] for x in r["runs"]]
    assert max(flops) < 1.1 * min(flops)
    code, out, err = cli(main, args(assets, tmp_path, "--trunk-dims", "16", "--pilot", "--locals", "4x16,4x32"))
    assert code == 0, err
    wide = read_report(tmp_path / "out" / "pilot.json")["runs"]
    log = [json.loads(line) for line in (tmp_path / "runs" / "d16-span4-w32" / "p16-sp" / "log.jsonl").read_text().splitlines()]
    last = [e for e in log if e["event"] == "step"][-1]
    assert wide[1]["train_flops"] - last["model_flops"] < wide[0]["train_flops"]   # a wider local model: no larger budget


def test_trend_fit_finds_a_known_crossover():
    pts = [dict(trunk_params=n, gap=0.5 - 0.25 * math.log10(n / 1e4), gap_se=0.01) for n in (1e4, 1e5, 1e6)]
    fit = fit_trend(pts, "gap")
    assert fit["slope_per_decade"] == pytest.approx(-0.25) and fit["crossover_params"] == pytest.approx(1e6, rel=1e-6)
    flat = fit_trend([dict(trunk_params=n, gap=0.5, gap_se=0.01) for n in (1e4, 1e5)], "gap")
    assert "crossover_params" not in flat
    assert "SP would catch up at ~1e+06" in trend_sentence(fit, "text", [p["gap"] for p in pts[:2]])
    assert "no crossover" in trend_sentence(flat, "text", [0.5, 0.5])
    ahead = fit_trend([dict(trunk_params=n, gap=-0.4 + 0.1 * math.log10(n / 1e4), gap_se=0.01) for n in (1e4, 1e6)], "gap")
    assert "SP is ahead" in trend_sentence(ahead, "text", [-0.4, -0.2]) and "byte baseline would catch up" in \
        trend_sentence(ahead, "text", [-0.4, -0.2])


@pytest.mark.parametrize("extra, needle", [
    (["--budget", "joules"], "--budget 'joules': choose from flops, bytes, time"),
    (["--trunk-dims", "16,big"], "--trunk-dims"),
    (["--trunk-dims", "17"], "divisible by n_heads"),
    (["--models", "byte,gpt"], "unknown model 'gpt'"),
    (["--local", "4"], "--local: '4' is not SPANxWIDTH"),
])
def test_bad_input_one_line(assets, tmp_path, cli, user_error, extra, needle):
    code, out, err = cli(main, args(assets, tmp_path, *extra))
    user_error(code, err, needle)
