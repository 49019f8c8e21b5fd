"""Trainer: learning, exact resume after SIGKILL, fine-tuning, time budgets, divergence and bad input."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scratchpad import ModelConfig, build_model, load_model, save_model
from scratchpad.checkpoint import read_tensors
from scratchpad.errors import run_cli
from train.cli import main, parse_duration

ROOT = Path(__file__).resolve().parents[2]
TEXT = b"the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\x00"
FAST = ["--seq-len", "64", "--batch-size", "8", "--warmup", "5", "--lr", "3e-3", "--threads", "1", "--eval-windows", "4",
        "--log-every", "1000"]


def make_corpus(folder: Path, text: bytes = TEXT, train_bytes: int = 40_000, val_bytes: int = 4_000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    reps = train_bytes // len(text) + 1
    (folder / "train.bin").write_bytes((text * reps)[:train_bytes])
    (folder / "val.bin").write_bytes((text * (val_bytes // len(text) + 1))[:val_bytes])
    return folder


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def events(out: Path, kind: str | None = None) -> list[dict]:
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if kind is None or r["event"] == kind]


def run(argv, capsys):
    code = run_cli(main, [str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def assert_user_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def tensors_equal(a: Path, b: Path) -> bool:
    ta, tb = read_tensors(a), read_tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# ----------------------------------------------------------------------------------------------


def test_loss_decreases_and_checkpoints_load(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--out", out, "--steps", 40,
                             "--eval-every", 20, "--save-every", 20, *FAST], capsys)
    assert code == 0, err
    losses = [e["loss"] for e in events(out, "step")]
    assert [e["step"] for e in events(out, "step")] == list(range(1, 41))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 2.0, losses
    evals = events(out, "eval")
    assert [e["step"] for e in evals] == [20, 40]
    assert {"val_bpb", "val_bpb_tau1.5", "val_scratch_rate_tau1.5"} <= set(evals[-1])
    assert evals[-1]["val_bpb"] < 8.0 - 1.0  # uniform over 256 bytes = 8 bits
    assert "val bpb" in stdout and "scratchpads" in stdout
    model = load_model(out / "last")
    assert model.cfg.name == "tiny-sp-fixed-p4"
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["metric"] == "val_bpb_tau1.5" and best["step"] in (20, 40)
    load_model(out / "best")
    state = read_tensors(out / "last" / "train_state.safetensors")
    assert int(state["step"][0]) == 40 and any(k.startswith("opt.") for k in state)
    # the LR schedule: warmup to the peak, cosine down to lr * min_lr_ratio
    lrs = [e["lr"] for e in events(out, "step")]
    assert lrs[4] == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-4)


def test_grad_accum_and_non_scratchpad_preset(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(["--preset", "tiny-study-F-gru-local-dec", "--data", corpus, "--out", out, "--steps", 4,
                        "--grad-accum", 2, *FAST], capsys)
    assert code == 0, err
    ev = events(out, "eval")[-1]
    assert "val_bpb_tau1.5" not in ev and math.isfinite(ev["val_bpb"])
    assert events(out, "end")[0]["bytes"] == 4 * 2 * 8 * 64


def _train_cmd(out, corpus, *extra):
    return [sys.executable, "-m", "train.cli", "--preset", "tiny-sp-fixed-p4", "--data", str(corpus), "--out", str(out),
            *map(str, extra), *FAST]


def test_resume_after_sigkill_is_exact(corpus, tmp_path):
    steps = ["--steps", 60, "--save-every", 10, "--eval-every", 0]
    full, killed = tmp_path / "full", tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p_full = subprocess.Popen(_train_cmd(full, corpus, *steps), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p = subprocess.Popen(_train_cmd(killed, corpus, *steps), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    log = killed / "log.jsonl"
    ckpt_step = None
    while time.time() < deadline and p.poll() is None:
        if log.exists():
            ck = [json.loads(line) for line in log.read_text().splitlines() if '"checkpoint"' in line]
            if ck and ck[-1]["step"] >= 20:
                ckpt_step = ck[-1]["step"]
                break
        time.sleep(0.005)
    assert p.poll() is None, "training finished before it could be killed; " + p.stderr.read().decode()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stderr.close()
    assert ckpt_step is not None and ckpt_step < 60
    _, err_full = p_full.communicate(timeout=120)
    assert p_full.returncode == 0, err_full.decode()

    # resume: only --out and --resume are needed; everything else comes from the checkpoint
    r = subprocess.run([sys.executable, "-m", "train.cli", "--out", str(killed), "--resume"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert b"resuming" in r.stdout

    def trajectory(out):
        return [(e["step"], e["loss"], e["byte_loss"], e["grad_norm"], e["lr"]) for e in events(out, "step")]

    a, b = trajectory(full), trajectory(killed)
    assert [s for s, *_ in b] == list(range(1, 61))  # steps logged after the checkpoint were cut back
    assert a == b
    assert [e["step"] for e in events(killed, "resume")] == [ckpt_step]
    assert tensors_equal(full / "last" / "model.safetensors", killed / "last" / "model.safetensors")


def test_resume_rules(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--preset", "tiny-byte", "--data", corpus, "--out", out, "--steps", 3, *FAST], capsys)[0] == 0
    log_before = (out / "log.jsonl").read_bytes()
    # a finished run does nothing more; a longer --steps continues it
    code, err = run(["--out", out, "--resume", "--lr", "1e-2"], capsys)[::2]
    assert_user_error(code, err, "--lr", "differs from the run being resumed")
    code, err = run(["--out", out, "--resume", "--preset", "tiny-sp-fixed-p4"], capsys)[::2]
    assert_user_error(code, err, "patch_size", "--preset tiny-sp-fixed-p4")
    other = make_corpus(tmp_path / "other-corpus", text=b"a different corpus entirely\n")
    code, err = run(["--out", out, "--resume", "--steps", 5, "--data", other], capsys)[::2]
    assert_user_error(code, err, "--data", "differs from the run being resumed")
    assert (out / "log.jsonl").read_bytes() == log_before
    # the same folder spelled differently is the same corpus
    code, _, err = run(["--out", out, "--resume", "--steps", 5, "--data", Path(os.path.relpath(corpus))], capsys)
    assert code == 0, err
    assert [e["step"] for e in events(out, "step")] == [1, 2, 3, 4, 5]


def test_resume_recovers_from_a_crash_between_the_checkpoint_renames(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--preset", "tiny-byte", "--data", corpus, "--out", out, "--steps", 3, *FAST], capsys)[0] == 0
    # atomic_folder moves the old folder aside, then renames the new one into place; a crash in
    # between leaves .last.old-PID and a complete or partial .last.tmp-*
    os.replace(out / "last", out / ".last.old-123")
    (out / ".last.tmp-abc").mkdir()
    (out / ".last.tmp-abc" / "model.safetensors").write_bytes(b"partial")
    code, _, err = run(["--out", out, "--resume", "--steps", 4], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "log.jsonl"]
    assert [e["step"] for e in events(out, "step")] == [1, 2, 3, 4]


def test_fine_tune_from_checkpoint(corpus, tmp_path, capsys):
    base = tmp_path / "base"
    assert run(["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--out", base, "--steps", 30, *FAST], capsys)[0] == 0
    other = make_corpus(tmp_path / "other", text=b"sphinx of black quartz, judge my vow. the lazy dog sleeps.\x00")
    ft, scratch = tmp_path / "ft", tmp_path / "scratch"
    # a training --out folder stands for its last/ checkpoint; a matching --preset is accepted
    code, _, err = run(["--init-from", base, "--preset", "tiny-sp-fixed-p4", "--data", other, "--out", ft, "--steps", 2, *FAST], capsys)
    assert code == 0, err
    assert run(["--preset", "tiny-sp-fixed-p4", "--data", other, "--out", scratch, "--steps", 2, *FAST], capsys)[0] == 0
    assert events(ft, "step")[0]["loss"] < events(scratch, "step")[0]["loss"] - 1.0
    assert events(ft, "start")[0]["args"]["init_from"] == str(base)


def test_init_from_mismatch_names_the_field(corpus, tmp_path, capsys):
    ckpt = save_model(build_model(ModelConfig.preset("tiny-sp-fixed-p4")), tmp_path / "ckpt")
    code, _, err = run(["--init-from", ckpt, "--preset", "tiny-sp-fixed-p8", "--data", corpus, "--out", tmp_path / "o",
                        "--steps", 2, *FAST], capsys)
    assert_user_error(code, err, "patch_size", "4", "8", "--preset tiny-sp-fixed-p8")
    assert not (tmp_path / "o").exists()
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(ModelConfig.preset("tiny-sp-fixed-p4").to_json().replace('"d_model": 32', '"d_model": 64'))
    code, _, err = run(["--init-from", ckpt, "--config", cfg_file, "--data", corpus, "--out", tmp_path / "o", "--steps", 2, *FAST], capsys)
    assert_user_error(code, err, "d_model: 32", "64")


def test_time_budget(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    t0 = time.time()
    code, _, err = run(["--preset", "tiny-study-A-fixed-mean", "--data", corpus, "--out", out, "--time-budget", "1.5s",
                        "--save-every", "0.4s", *FAST], capsys)
    assert code == 0, err
    end = events(out, "end")[0]
    assert end["reason"] == "time_budget" and end["elapsed"] >= 1.5 and time.time() - t0 < 30
    lrs = [e["lr"] for e in events(out, "step")]
    assert lrs[-1] < 0.5 * max(lrs)  # the cosine follows elapsed time
    assert len(events(out, "checkpoint")) >= 3  # --save-every 0.4s: by training time, and at the end


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--out", out, "--steps", 50, "--save-every", 1,
                        *FAST, "--lr", "1e4", "--clip", "0"], capsys)
    assert_user_error(code, err, "training stopped", "last good checkpoint")
    stop = events(out, "stop")[0]
    assert stop["reason"] == "nonfinite"
    model = load_model(out / "last")  # loads: every tensor finite
    assert int(read_tensors(out / "last" / "train_state.safetensors")["step"][0]) == stop["step"] - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("text,seconds", [("20m", 1200), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("45", 45), ("2min", 120)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def _bad_cases(tmp: Path, corpus: Path):
    (tmp / "empty").mkdir()
    (tmp / "other").mkdir()
    (tmp / "other" / "notes.txt").write_text("hi")
    make_corpus(tmp / "emptytrain")
    (tmp / "emptytrain" / "train.bin").write_bytes(b"")
    make_corpus(tmp / "small", train_bytes=50)
    make_corpus(tmp / "noval")
    (tmp / "noval" / "val.bin").unlink()
    (tmp / "afile").write_text("x")
    ok = ["--preset", "tiny-byte", "--steps", 2]
    o = tmp / "o"
    return {
        "missing data dir": ([*ok, "--data", tmp / "nope", "--out", o], ["no such data folder"]),
        "empty data dir": ([*ok, "--data", tmp / "empty", "--out", o], ["is empty"]),
        "no train.bin": ([*ok, "--data", tmp / "other", "--out", o], ["no train.bin"]),
        "empty train.bin": ([*ok, "--data", tmp / "emptytrain", "--out", o], ["train.bin", "empty file"]),
        "train.bin smaller than a window": ([*ok, "--data", tmp / "small", "--out", o], ["smaller than one training window"]),
        "no val.bin": ([*ok, "--data", tmp / "noval", "--out", o], ["val.bin", "missing"]),
        "data is a file": ([*ok, "--data", tmp / "afile", "--out", o], ["not a folder"]),
        "out under a file": ([*ok, "--data", corpus, "--out", tmp / "afile" / "sub"], ["--out", "not writable"]),
        "out is a file": ([*ok, "--data", corpus, "--out", tmp / "afile"], ["not a folder"]),
        "negative steps": (["--preset", "tiny-byte", "--steps", -3, "--data", corpus, "--out", o], ["--steps -3", ">= 1"]),
        "zero steps": (["--preset", "tiny-byte", "--steps", 0, "--data", corpus, "--out", o], ["--steps 0"]),
        "steps not a number": (["--preset", "tiny-byte", "--steps", "ten", "--data", corpus, "--out", o], ["not an integer"]),
        "bad time budget": (["--preset", "tiny-byte", "--time-budget", "20x", "--data", corpus, "--out", o], ["not a duration"]),
        "bad save-every": ([*ok, "--save-every", "often", "--data", corpus, "--out", o], ["--save-every", "not a duration"]),
        "negative time budget": (["--preset", "tiny-byte", "--time-budget", "-5m", "--data", corpus, "--out", o], ["--time-budget"]),
        "no length": (["--preset", "tiny-byte", "--data", corpus, "--out", o], ["--steps N, --time-budget DURATION or --flops-budget"]),
        "no model": (["--steps", 2, "--data", corpus, "--out", o], ["--preset NAME"]),
        "flops budget below one step": (["--preset", "tiny-byte", "--flops-budget", "1e3", "--data", corpus, "--out", o],
                                        ["--flops-budget", "less than one training step"]),
        "flops budget not a number": (["--preset", "tiny-byte", "--flops-budget", "lots", "--data", corpus, "--out", o],
                                      ["--flops-budget 'lots': not a number"]),
        "unknown preset": (["--preset", "nope", "--steps", 2, "--data", corpus, "--out", o], ["unknown preset"]),
        "preset and config": (["--preset", "tiny-byte", "--config", tmp / "afile", "--steps", 2, "--data", corpus, "--out", o],
                              ["not both"]),
        "config not json": (["--config", tmp / "afile", "--steps", 2, "--data", corpus, "--out", o], ["not valid JSON"]),
        "seq-len too long": ([*ok, "--seq-len", 4096, "--data", corpus, "--out", o], ["exceeds the model's max_seq_len"]),
        "bad lr": ([*ok, "--lr", "-1", "--data", corpus, "--out", o], ["--lr"]),
        "unknown flag": ([*ok, "--bogus", "--data", corpus, "--out", o], ["unrecognized arguments"]),
        "no out": ([*ok, "--data", corpus], ["--out is required"]),
        "resume nothing": (["--resume", "--out", tmp / "empty"], ["no checkpoint"]),
        "resume missing": (["--resume", "--out", tmp / "nope"], ["no such folder"]),
        "init-from missing": (["--init-from", tmp / "nope", "--steps", 2, "--data", corpus, "--out", o], ["no such model folder"]),
    }


def test_bad_inputs_one_line_exit_2(corpus, tmp_path, capsys):
    for name, (argv, needles) in _bad_cases(tmp_path, corpus).items():
        code, out, err = run(argv, capsys)
        try:
            assert_user_error(code, err, *needles)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        assert not (tmp_path / "o").exists(), name


def test_existing_run_and_corrupt_checkpoint_are_not_overwritten(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--preset", "tiny-byte", "--data", corpus, "--out", out, "--steps", 2, *FAST], capsys)[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run(["--preset", "tiny-byte", "--data", corpus, "--out", out, "--steps", 2, *FAST], capsys)
    assert_user_error(code, err, "already holds a training run", "--resume")
    for victim in ("model.safetensors", "train_state.safetensors"):
        path = out / "last" / victim
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])
        code, _, err = run(["--out", out, "--resume", "--steps", 4], capsys)
        assert_user_error(code, err, victim, "corrupted")
        path.write_bytes(good)
    (out / "last" / "trainer.json").write_text("{")
    code, _, err = run(["--out", out, "--resume", "--steps", 4], capsys)
    assert_user_error(code, err, "trainer.json", "corrupted")
    (out / "last" / "trainer.json").write_bytes(before[out / "last" / "trainer.json"])
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_cli_subprocess_error_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "eval.cli", "train", "--preset", "tiny-byte", "--data", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "o"), "--steps", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such data folder"]


def test_bench_train_smoke(capsys):
    from eval.bench.train_cli import main as bench_main

    assert bench_main(["--presets", "tiny-sp-fixed-p4,tiny-byte", "--quick", "--steps", "1", "--warmup", "0", "--seq-len", "64",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(out[-1])
    assert rec["bench"] == "train"
    assert [(r["preset"], r["scratchpads"]) for r in rec["results"]] == [("tiny-sp-fixed-p4", True), ("tiny-byte", False),
                                                                         ("tiny-sp-fixed-p4", False)]
    assert rec["results"][2]["scratch_rate"] == 0
    assert all(r["bytes_per_s"] > 0 and r["params"] > 0 for r in rec["results"])
    assert any(line.startswith("tiny-byte") for line in out)


def test_flops_budget_stops_at_the_first_step_past_it_and_resumes_exactly(corpus, tmp_path, capsys, monkeypatch):
    from scratchpad.accounting import training_flops
    from train.loop import StepLoop

    per_step = training_flops(ModelConfig.preset("tiny-sp-fixed-p4"), 8, 64, 8 * 16, 0)
    budget = str(6.5 * per_step)   # ~6 steps; scratchpads make steps dearer, so fewer
    argv = ["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--flops-budget", budget, "--save-every", 1,
            "--eval-every", 0, *FAST]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run([*argv, "--out", full], capsys)[0] == 0
    steps = events(full, "step")
    spent = [e["flops"] for e in steps]
    assert spent[-1] >= float(budget) > spent[-2]                      # stopped at the first step past the budget
    assert spent[-1] == pytest.approx(sum(e["model_flops"] for e in steps))
    assert events(full, "end")[0]["reason"] == "flops_budget"

    real_step = StepLoop.step

    def interrupted(self, step, *a, **k):  # SIGINT after step 2: the trainer stops after step 3 with a checkpoint
        st = real_step(self, step, *a, **k)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return st

    monkeypatch.setattr(StepLoop, "step", interrupted)
    assert run([*argv, "--out", cut], capsys)[0] == 130
    monkeypatch.setattr(StepLoop, "step", real_step)
    assert run(["--out", cut, "--resume"], capsys)[0] == 0
    resumed = events(cut, "step")
    assert [e["step"] for e in resumed] == [e["step"] for e in steps]
    assert [e["loss"] for e in resumed] == [e["loss"] for e in steps]   # the FLOP count and schedule survive the cut
    assert [e["flops"] for e in resumed] == pytest.approx(spent, rel=1e-12)
