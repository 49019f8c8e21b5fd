"""What the training log and console say: the loss's parts, the tau of val BPB, speed fields,
schedule warnings; --dtype and --compile input checks."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from scratchpad import ModelConfig
from test_trainer import FAST, ROOT, assert_user_error, events, make_corpus, run
from scratchpad import precision


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")


def test_log_separates_the_loss_parts_and_names_the_eval_tau(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--out", out, "--steps", 3,
                             *FAST, "--warmup", 10, "--log-every", 1], capsys)
    assert code == 0, err
    assert "warning: --warmup 10 exceeds --steps 3" in stdout
    w = ModelConfig.preset("tiny-sp-fixed-p4").aux_loss_weight
    for e in events(out, "step"):
        assert e["loss"] == pytest.approx(e["byte_loss"] + w * e["aux_loss"], rel=1e-5)
        assert e["bpb"] == pytest.approx(e["byte_loss"] / math.log(2))
        assert e["step_ms"] > 0 and e["bytes_per_s"] > 0 and e["model_flops"] > 0
        assert "mfu" not in e and "peak_mem_bytes" not in e  # CPU: no known peak, no device memory
    assert "loss (byte+aux)" in stdout
    assert "val bpb at tau=inf" in stdout and "at tau=1.5" in stdout
    start = events(out, "start")[0]
    assert start["args"]["dtype"] == "fp32" and start["args"]["compile"] is False
    end = events(out, "end")[0]
    for e in (start, end):  # the load a run trained under, for wall-clock comparisons
        assert e["cores"] == sorted(os.sched_getaffinity(0)) and e["cpu_count"] == os.cpu_count()
        assert len(e["loadavg"]) == 3 and all(v >= 0 for v in e["loadavg"])


def test_no_warmup_warning_when_warmup_fits(corpus, tmp_path, capsys):
    code, stdout, err = run(["--preset", "tiny-byte", "--data", corpus, "--out", tmp_path / "r", "--steps", 3, *FAST,
                             "--warmup", 3], capsys)
    assert code == 0, err
    assert "warning:" not in stdout


def test_train_flops_grow_with_scratchpads():
    from scratchpad.accounting import training_flops as train_flops

    cfg = ModelConfig.preset("tiny-sp-fixed-p4")
    plain = train_flops(cfg, 8, 64, commits=8 * 16, scratchpads=0)
    more = train_flops(cfg, 8, 64, commits=8 * 16, scratchpads=100)
    assert 0 < plain < more


def test_bf16_on_cpu_trains_and_a_slow_bf16_is_named(corpus, tmp_path, capsys, monkeypatch):
    code, _, err = run(["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--out", tmp_path / "r", "--steps", 2, *FAST,
                        "--dtype", "bf16"], capsys)
    assert code == 0, err
    steps = events(tmp_path / "r", "step")
    assert len(steps) == 2 and all(math.isfinite(e["loss"]) for e in steps)
    assert events(tmp_path / "r", "start")[0]["args"]["dtype"] == "bf16"
    # a CPU where bf16 matmuls are slower: one note line, and the run continues
    monkeypatch.setattr(precision, "_matmul_seconds", lambda dtype, **k: 2.0 if dtype == torch.bfloat16 else 1.0)
    note = precision.check_dtype("bf16", torch.device("cpu"))
    assert note.startswith("note: --dtype bf16 on this CPU is 2.0x slower than fp32") and "\n" not in note
    assert precision.check_dtype("fp32", torch.device("cpu")) is None


def test_bad_dtype_is_one_line(corpus, tmp_path, capsys):
    code, _, err = run(["--preset", "tiny-byte", "--data", corpus, "--out", tmp_path / "r", "--steps", 2, "--dtype", "fp16"],
                       capsys)
    assert_user_error(code, err, "--dtype")


def test_compile_without_a_compiler_is_one_line(corpus, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), CXX="/nonexistent/c++", PATH="/nonexistent")
    r = subprocess.run([sys.executable, "-m", "train.cli", "--preset", "tiny-byte", "--data", str(corpus), "--out",
                        str(tmp_path / "r"), "--steps", "2", "--compile", *map(str, FAST)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --compile: no working C++ compiler"), r.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_compiled_training_logs_the_compile_once_and_matches_eager(corpus, tmp_path, capsys):
    base = ["--preset", "tiny-sp-fixed-p4", "--data", corpus, "--steps", 4, *FAST, "--eval-every", 0]
    assert run([*base, "--out", tmp_path / "e"], capsys)[0] == 0
    code, stdout, err = run([*base, "--out", tmp_path / "c", "--compile"], capsys)
    assert code == 0, err
    assert stdout.count("compile: the first step took") == 1
    assert [e["step"] for e in events(tmp_path / "c", "compile")] == [1]
    e = [s["loss"] for s in events(tmp_path / "e", "step")]
    c = [s["loss"] for s in events(tmp_path / "c", "step")]
    assert len(e) == len(c) == 4 and max(abs(a - b) / abs(a) for a, b in zip(e, c)) < 1e-4
    ve, vc = events(tmp_path / "e", "eval")[-1], events(tmp_path / "c", "eval")[-1]
    assert vc["val_bpb"] == pytest.approx(ve["val_bpb"], rel=1e-4)
