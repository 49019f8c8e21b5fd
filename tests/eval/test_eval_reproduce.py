"""eval reproduce: equal training data for every model, SP models swept over tau, targets checked,
finished runs reused and unfinished ones resumed, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eval.cli_args import parse_size
from eval.engine_check import engine_kv
from eval.experiments.reproduce import CLOSE_TO_DENSE, kv_sample, kv_target
from eval.experiments.reproduce_cli import main
from scratchpad import ModelConfig, build_model

W = 64


def args(assets, tmp_path, *extra):
    return ["--tiny", "--data", assets["corpus"], "--eval-data", f"{assets['corpus']},{assets['code']}",
            "--train-bytes", 8 * 2 * W, "--seq-len", W, "--batch-size", 2, "--warmup", 2, "--window", W,
            "--eval-bytes", 8 * W + 1, "--thresholds", "1", "--audit-positions", 2, "--threads", 1,
            "--runs", tmp_path / "runs", "--out", tmp_path / "out", *extra]


def test_reproduce_trains_on_equal_data_and_checks_the_targets(assets, tmp_path, cli, read_report):
    code, stdout, err = cli(main, args(assets, tmp_path, "--models", "byte,p16-plain,p16", "--budget", "bytes"))
    assert code == 0, err
    r = read_report(tmp_path / "out" / "reproduce.json")
    assert r["steps"] == 8 and r["train_bytes"] == 8 * 2 * W
    models = r["models"]
    assert list(models) == ["byte", "p16-plain", "p16"]
    assert {m["steps"] for m in models.values()} == {8}
    for m in models.values():
        assert m["causality_passed"]
    sp = models["p16"]["evals"]["corpus"]["rows"]
    assert [row["threshold"] for row in sp] == ["inf", 1.0, 0.0]
    assert all(row["kv_ratio_vs_byte"] == 1 / 16 for row in sp)            # 8 full windows of 64
    assert [row["threshold"] for row in models["byte"]["evals"]["code"]["rows"]] == ["inf"]
    assert models["byte"]["evals"]["corpus"]["rows"][0]["flops_ratio_vs_byte"] == pytest.approx(1.0)
    assert models["byte"]["train_flops"] > models["p16-plain"]["train_flops"]
    # Each target's verdict follows from the report's own numbers, and the console prints it.
    byte_bpb, plain_bpb = (models[k]["evals"]["corpus"]["rows"][0]["bpb"] for k in ("byte", "p16-plain"))
    best, sp_inf, dense = min(sp, key=lambda row: row["bpb"]), sp[0], sp[2]   # sp: tau inf, 1, 0
    cheap = min((row for row in sp if row["bpb"] <= dense["bpb"] + CLOSE_TO_DENSE), key=lambda row: row["flops_per_byte"])
    rise, level = sp_inf["lag"]["offset_slope"], dense["lag"]["offset_slope"]
    sp_kv, byte_kv = (models[k]["evals"]["corpus"]["engine_kv"] for k in ("p16", "byte"))
    assert byte_kv["entries"] == byte_kv["bytes"] == 2 * W and sp_kv["entries"] == 2 * W // 16   # P = 16 met here
    expected = [plain_bpb > byte_bpb and (plain_bpb - best["bpb"]) / (plain_bpb - byte_bpb) >= 0.5,
                cheap["flops_ratio_vs_byte"] <= 1 / 3,
                16 * sp_kv["kv_bytes"] == byte_kv["kv_bytes"] > 0,         # what the engine held
                rise["slope"] is not None and rise["slope"] > 2 * rise["se"],
                level["slope"] is not None and abs(level["slope"]) <= 2 * level["se"]]
    assert [t["met"] for t in r["targets"]["corpus"]] == expected
    for t in r["targets"]["corpus"]:
        assert f"corpus: {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}" in stdout

    # a second call reuses the finished runs; a run cut short continues with --resume
    log = tmp_path / "runs" / "p16" / "log.jsonl"
    lines = log.read_text().splitlines()
    ends = [json.loads(line) for line in lines if json.loads(line)["event"] == "end"]
    assert ends and ends[-1]["reason"] == "steps"
    log.write_text("\n".join(line.replace('"reason": "steps"', '"reason": "signal"') for line in lines) + "\n")  # as if killed
    code, stdout, err = cli(main, args(assets, tmp_path, "--models", "p16-plain,p16", "--budget", "bytes"))
    assert code == 0, err
    assert stdout.count("reused a finished run") == 1
    assert stdout.count("reused its evaluation") == 2   # same weights, same settings
    again = read_report(tmp_path / "out" / "reproduce.json")["models"]
    assert again["p16-plain"]["evals"] == models["p16-plain"]["evals"]
    code, stdout, err = cli(main, args(assets, tmp_path, "--models", "p16", "--thresholds", "2", "--budget", "bytes"))
    assert code == 0, err
    assert "reused its evaluation" not in stdout                # other settings: evaluated anew
    assert [row["threshold"] for row in read_report(tmp_path / "out" / "reproduce.json")["models"]["p16"]["evals"]
            ["corpus"]["rows"]] == ["inf", 2.0, 0.0]


@pytest.mark.parametrize("extra, needle", [
    (["--models", "p16,p3"], "unknown model 'p3'"),
    (["--train-bytes", "lots"], "--train-bytes"),
    (["--thresholds", "x"], "--thresholds"),
    (["--eval-bytes", 20], "smaller than one window"),
])
def test_bad_input(assets, tmp_path, cli, user_error, extra, needle):
    code, _, err = cli(main, args(assets, tmp_path, *extra))
    user_error(code, err, needle)
    assert not (tmp_path / "runs").exists()


def test_parse_size():
    assert parse_size("4M", "--x") == 4 << 20
    assert parse_size("512k", "--x") == 512 << 10
    assert parse_size("1000", "--x") == 1000


def test_flops_budget_stops_every_model_within_one_step_of_the_byte_baselines_flops(assets, tmp_path, cli, read_report):
    code, stdout, err = cli(main, args(assets, tmp_path, "--models", "byte,p16-plain,p16", "--thresholds", "inf"))
    assert code == 0, err
    r = read_report(tmp_path / "out" / "reproduce.json")
    budget = r["flops_budget"]
    models = r["models"]
    assert models["byte"]["steps"] == 8 and models["byte"]["train_flops"] == pytest.approx(budget, rel=1e-9)
    for key in ("p16-plain", "p16"):
        log = [json.loads(line) for line in (tmp_path / "runs" / key / "log.jsonl").read_text().splitlines()]
        steps = [e for e in log if e["event"] == "step"]
        spent = sum(e["model_flops"] for e in steps)
        assert models[key]["train_flops"] == pytest.approx(spent)
        assert spent >= budget * (1 - 1e-9) and spent - steps[-1]["model_flops"] < budget   # stopped at the first step past it
        assert steps[-1]["flops"] == pytest.approx(spent)
        assert models[key]["steps"] > 8                        # patch models see more bytes for the same FLOPs
        assert log[-1]["event"] == "end" and log[-1]["reason"] == "flops_budget"


@pytest.mark.parametrize("extra, needle", [
    (["--budget", "joules"], "--budget 'joules': choose from flops, bytes, time"),
    (["--budget", "time"], "--budget time needs --time-budget"),
])
def test_bad_budgets_one_line(assets, tmp_path, cli, extra, needle):
    code, stdout, err = cli(main, args(assets, tmp_path, "--models", "byte,p16", *extra))
    assert code == 2 and needle in err and "Traceback" not in err


@pytest.mark.parametrize("preset, met", [("tiny-heavy-p16", True), ("tiny-heavy-p8", False), ("tiny-sp-fixed-p4", False)])
def test_kv_target_is_what_the_engine_holds_and_misses_when_patches_are_not_16(assets, preset, met):
    """The KV target compares the trunk KV the engine holds after decoding the same bytes (at τ = 0,
    so scratchpads fire, and must add no entry) with the byte baseline's: met at P = 16 only."""
    arr = np.frombuffer((assets["corpus"] / "val.bin").read_bytes(), np.uint8)
    x = kv_sample(arr, W)
    byte = engine_kv(build_model(ModelConfig.preset("tiny-heavy-byte")).eval(), x)
    model = build_model(ModelConfig.preset(preset)).eval()
    sp = engine_kv(model, x)
    assert byte["entries"] == x.numel() and byte["kv_bytes"] == x.numel() * byte["bytes_per_entry"] > 0
    assert sp["entries"] == x.numel() // model.cfg.patch_size
    assert kv_target(sp, byte)["met"] is met
