"""The prepared GPU run: its plan fits the 10-minute device limit, its runner records failures,
time-outs and the budget, and its summary reads the benchmarks' JSON lines. (The run itself needs
a GPU; on CPU it refuses in one line.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eval import bench_gpu

ROOT = Path(__file__).resolve().parents[2]


def test_plan_covers_the_issue_and_fits_ten_minutes():
    st = bench_gpu.steps()
    names = [s.name for s in st]
    assert names == ["env", "pytest-gpu", "bench-kernels", "bench-train", "bench-train-compile-sp",
                     "bench-train-compile-byte", "train-log", "bench-generate"]
    assert sum(s.timeout_s for s in st) <= 600 and bench_gpu.BUDGET_S <= 600
    assert {"bf16", "heavy-p16-aux2,heavy-byte"} <= set(st[3].argv) and "--compile" not in st[3].argv
    assert {"--compile", "heavy-p16-aux2"} <= set(st[4].argv) and {"--compile", "heavy-byte"} <= set(st[5].argv)
    assert "-m" in st[1].argv and "gpu" in st[1].argv


def test_dry_run_lists_commands(capsys):
    assert bench_gpu.main(["--dry-run", "--out", "/tmp/x"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 9 and "bench train" in out[3] and out[-1].startswith("total limit")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the refusal on a machine without CUDA")
def test_without_cuda_one_error_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "eval.cli", "bench", "gpu", "--out", str(tmp_path / "g")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bench gpu: no CUDA device") and "Traceback" not in r.stderr
    assert not (tmp_path / "g").exists()


def test_runner_records_pass_fail_timeout_and_budget(tmp_path):
    py = sys.executable
    todo = [bench_gpu.Step("ok", [py, "-c", "print('{\"bench\": \"train\", \"results\": []}')"], 30, "bench_train.txt"),
            bench_gpu.Step("fails", [py, "-c", "import sys; sys.exit(3)"], 30, "fails.txt"),
            bench_gpu.Step("slow", [py, "-c", "import time; time.sleep(30)"], 1.5, "slow.txt"),
            bench_gpu.Step("late", [py, "-c", "pass"], 30, "late.txt")]
    recs = bench_gpu.run_steps(todo, tmp_path, budget_s=6.0, log=lambda s: None)
    assert [r["status"] for r in recs][:3] == ["passed", "failed", "timeout"]
    assert recs[1]["returncode"] == 3
    assert recs[3]["status"] in ("passed", "skipped")  # the budget may or may not be spent by then
    recs = bench_gpu.run_steps(todo[3:], tmp_path, budget_s=1.0, log=lambda s: None)
    assert recs[0]["status"] == "skipped"
    assert (tmp_path / "bench_train.txt").read_text().startswith("{")


def test_summary_reads_the_json_lines(tmp_path):
    row = dict(preset="sp-fixed-p16", dtype="bf16", bytes_per_s=1e6, compiled_bytes_per_s=2e6, compile_speedup=2.0,
               mfu=0.1, compiled_mfu=0.2, loss_max_rel_diff=1e-6)
    (tmp_path / "bench_train_compile_sp.txt").write_text("table\n" + json.dumps(dict(bench="train", results=[row])) + "\n")
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(dict(event="step", step=i, bytes_per_s=100.0 * i, mfu=0.3,
                                                                        peak_mem_bytes=5)) for i in range(1, 5)))
    bench_gpu.write_summary(tmp_path, [dict(step="bench-train", status="passed", seconds=1.0, output="bench_train.txt",
                                            command="x")], 12.0)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["numbers"]["bench_train_compile_sp"]["results"][0]["compile_speedup"] == 2.0
    assert s["numbers"]["train_log"]["steps"] == 4 and s["numbers"]["train_log"]["mfu"] == 0.3
    readme = (tmp_path / "README.md").read_text()
    assert "| sp-fixed-p16 | bf16 | 1,000,000 | 2,000,000 | 2.0 |" in readme


def test_train_log_step_runs_the_real_trainer(tmp_path, capsys):
    # the GPU step's function on CPU at a tiny size: the trainer's log lands in OUT/train_log.jsonl
    assert bench_gpu.train_log_run(tmp_path, device="cpu", preset="tiny-sp-fixed-p4", steps_=2, batch=2, seq_len=64,
                                   dtype="fp32") == 0
    recs = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if r["event"] == "step"]
    assert len(steps) == 2 and all(s["bytes_per_s"] > 0 and s["model_flops"] > 0 for s in steps)
    assert bench_gpu.key_numbers(tmp_path)["train_log"]["steps"] == 2
