"""The prepared GPU run: its plan is ordered by risk and fits the device limit; its harness keeps
every line a step printed and every finished step's row, whatever kills the step or the harness;
`--rehearse` runs the whole plan on CPU through that harness; bad input ends in one line."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from eval.bench import gpu as bench_gpu
from eval.bench.gpu_harness import KILL_WAIT_S, Step, run_plan

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["env", "pytest-gpu", "graph-decode", "decode-tau", "decode-every4", "train-eager", "train-log", "kernels",
         "compile-sp", "compile-byte"]


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "eval.cli", "bench", "gpu", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_plan_is_ordered_by_risk_and_fits_the_device_limit():
    gpu, cpu = bench_gpu.plan(), bench_gpu.plan(rehearse=True)
    assert [s.name for s in gpu] == [s.name for s in cpu] == ORDER
    assert [bench_gpu.REHEARSAL_SLACK * s.timeout_s for s in gpu] == [s.timeout_s for s in cpu]
    assert sum(s.timeout_s for s in gpu) <= 540 and bench_gpu.BUDGET_S <= 540
    steps = {s.name: s.argv for s in gpu}
    for name in ("graph-decode", "decode-tau", "decode-every4", "train-eager", "train-log", "kernels", "compile-sp"):
        assert steps[name][steps[name].index("--device") + 1] == "cuda", name
    assert not any("--eager-fallback" in s.argv for s in gpu)  # a failed graph capture fails the step
    assert steps["decode-tau"][steps["decode-tau"].index("--threshold") + 1] == "1.5"
    assert steps["decode-every4"][steps["decode-every4"].index("--scratch-every") + 1] == "4"
    assert steps["kernels"][steps["kernels"].index("--dtype") + 1] == "fp32"  # the dtype the model's scans run at
    assert "--compile" not in steps["train-eager"] and {"--compile", "heavy-p16-aux2"} <= set(steps["compile-sp"])
    assert {"-m", "gpu", "--continue-on-collection-errors"} <= set(steps["pytest-gpu"])
    for s in cpu:
        assert "--device" not in s.argv or s.argv[s.argv.index("--device") + 1] == "cpu", s.name
    assert "aot-eager" in bench_gpu.plan(rehearse=True)[-1].argv and "aot-eager" not in gpu[-1].argv


def test_dry_run_lists_the_plan(capsys):
    assert bench_gpu.main(["--dry-run", "--out", "/tmp/x"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ORDER and "-X faulthandler -u" in lines[1]
    assert lines[-1].startswith("total limit")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_one_error_line(tmp_path):
    r = cli("--out", str(tmp_path / "g"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: bench gpu: no CUDA device") and not (tmp_path / "g").exists()


@pytest.mark.parametrize("bad", ["file", "under-a-file", "only"])
def test_bad_out_or_step_one_error_line(tmp_path, bad):
    (tmp_path / "f").write_text("x")
    args = {"file": ["--out", str(tmp_path / "f")], "under-a-file": ["--out", str(tmp_path / "f" / "sub")],
            "only": ["--only", "env,warp-drive", "--out", str(tmp_path / "o")]}[bad]
    r = cli("--rehearse", *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    expected = "error: --only env,warp-drive: unknown step(s) warp-drive;" if bad == "only" else "error: --out"
    assert r.stderr.startswith(expected), r.stderr
    assert (tmp_path / "f").read_text() == "x"


HANGS = """
import signal, time
print('first line'); print('second line')
def on_int(*_):
    print('got SIGINT, still hanging')
signal.signal(signal.SIGINT, on_int)
while True:
    time.sleep(0.1)
"""


def test_hung_step_gets_sigint_then_a_stack_dump_and_keeps_its_output(tmp_path, monkeypatch):
    """Unbuffered or not in the caller's environment, a step killed at its limit keeps every line it
    printed (a block-buffered stdout loses them when the process is aborted), then the next runs."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    steps = [Step("hangs", ["-c", HANGS], 3), Step("after", ["-c", "print('ran')"], 30)]
    t0 = time.monotonic()
    rows = run_plan(steps, tmp_path, budget_s=60, title="t", log=lambda s: None)
    assert time.monotonic() - t0 < 3 + KILL_WAIT_S + 15
    assert [r["status"] for r in rows] == ["timeout", "passed"]
    text = (tmp_path / "hangs.txt").read_text()
    assert text.startswith("first line\nsecond line\n")
    assert text.index("got SIGINT") < text.index("Fatal Python error: Aborted")  # SIGINT first, then the dump
    assert 'File "<string>"' in text  # faulthandler's stack of the hung code
    assert (tmp_path / "after.txt").read_text() == "ran\n"
    readme = (tmp_path / "README.md").read_text()
    assert "| hangs | timeout |" in readme and "| after | passed |" in readme


def test_each_row_is_on_disk_while_the_next_step_runs(tmp_path):
    """Step two reads summary.json: step one's final row and its own 'running' row must be there."""
    check = textwrap.dedent(f"""
        import json, sys
        rows = {{r['step']: r for r in json.load(open({str(tmp_path / 'summary.json')!r}))['steps']}}
        sys.exit(0 if rows['one']['status'] == 'failed' and rows['one']['returncode'] == 3
                 and rows['one']['result'] == {{'n': 1}} and rows['two']['status'] == 'running' else 1)
    """)
    steps = [Step("one", ["-c", "import sys; print('{\"n\": 1}'); sys.exit(3)"], 30), Step("two", ["-c", check], 30)]
    rows = run_plan(steps, tmp_path, budget_s=60, title="t", log=lambda s: None)
    assert [r["status"] for r in rows] == ["failed", "passed"]


def child_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a dead child of a dead parent awaiting its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_harness_killed_mid_step_leaves_the_finished_rows(tmp_path, sig):
    """The harness itself is killed while a step hangs: SIGKILL leaves the step 'running' on disk;
    SIGTERM records it as interrupted. Either way the step's process ends with the harness."""
    pid_file = tmp_path / "child.pid"
    hang = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    parent = textwrap.dedent(f"""
        from pathlib import Path
        from eval.bench.gpu_harness import Step, run_plan
        run_plan([Step('quick', ['-c', 'print(1)'], 30), Step('hang', ['-c', {hang!r}], 50)],
                 Path({str(tmp_path)!r}), 120, 't')
    """)
    p = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        p.send_signal(sig)
        p.wait(timeout=30)
        s = summary(tmp_path)
        assert {r["step"]: r["status"] for r in s["steps"]} == {
            "quick": "passed", "hang": "running" if sig == signal.SIGKILL else "interrupted"}
        assert s["complete"] is False and "not finished" in (tmp_path / "README.md").read_text()
        assert p.returncode != 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and child_alive(child):
            time.sleep(0.1)
        assert not child_alive(child)
    finally:
        if pid_file.exists() and pid_file.read_text():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()


def test_budget_cuts_the_running_step_and_skips_the_rest(tmp_path):
    steps = [Step("slow", ["-c", "import time; time.sleep(60)"], 30), Step("late", ["-c", "pass"], 30)]
    rows = run_plan(steps, tmp_path, budget_s=10, title="t", log=lambda s: None)
    assert [r["status"] for r in rows] == ["timeout", "skipped"]
    assert rows[0]["limit_s"] <= 10 - KILL_WAIT_S and rows[0]["seconds"] < 10 + 2


def test_rehearsal_runs_every_step_on_cpu(tmp_path):
    """`--rehearse` end to end: each step of the plan ran on CPU through the harness and passed,
    each wrote its report file, the summary has its row and the README its result line."""
    out = tmp_path / "rehearsal"
    r = cli("--rehearse", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = summary(out)["steps"]
    assert summary(out)["complete"] is True
    assert [x["step"] for x in rows] == ORDER and all(x["status"] == "passed" for x in rows)
    for name in ORDER:
        assert (out / f"{name}.txt").stat().st_size > 0, name
    res = {x["step"]: x.get("result") for x in rows}
    assert res["graph-decode"]["failed"] == 0 and len(res["graph-decode"]["cases"]) == 2
    assert {c["decode_step"] for cases in res["graph-decode"]["cases"].values() for c in cases} == {"static"}
    assert res["train-log"]["exit_code"] == 0 and res["train-log"]["steps"] >= 1
    assert res["decode-every4"]["scratch_every"] == 4 and res["decode-tau"]["threshold"] == 1.5
    assert res["compile-sp"]["results"][0]["compiled_bytes_per_s"] > 0
    assert (out / "env.json").exists() and (out / "train_log.jsonl").exists()
    readme = (out / "README.md").read_text()
    assert all(f"| {name} | passed |" in readme for name in ORDER)
    assert "- **decode-every4**: tau inf, every 4:" in readme and "unexpected shape" not in readme
    assert re.search(r"- \*\*pytest-gpu\*\*: `\d+ skipped, \d+ deselected in", readme)  # no JSON: the last line


def test_result_lines_read_the_gpu_runs_json():
    """The README lines of the steps whose GPU output differs in shape from the rehearsal's."""
    env = dict(device="NVIDIA H100 80GB HBM3", capability="9.0", sms=132, memory_gib=79.1, torch="2.13.0", cuda="12.8",
               triton="3.7.1")
    assert bench_gpu.env_line(env) == ("NVIDIA H100 80GB HBM3 (sm 9.0, 132 SMs, 79.1 GiB); torch 2.13.0, CUDA 12.8, "
                                       "triton 3.7.1")
    assert bench_gpu.env_line(dict(env, commit="0123456789abcdef", uncommitted_changes=True)).endswith(
        "triton 3.7.1; commit 0123456789 with uncommitted changes")
    dec = dict(threshold=1.5, scratch_every=0, bytes_per_second=dict(sp_b1=900.0, byte_b1=450.0), speedup_vs_byte=2.0,
               flops_ratio_vs_byte=0.517, speedup_vs_byte_b16=1.5, speedup_vs_byte_b64=1.25,
               decode_step=dict(sp_b1="cuda-graphs", byte_b1="cuda-graphs"),
               graph_fallback=dict(sp_b1=None, byte_b1=None))
    assert bench_gpu.decode_line(dec) == (
        "tau 1.5, every 0: 900 vs 450 B/s at batch 1 = 2.00x the byte baseline (FLOP ratio 0.517), batch 16 1.50x, "
        "batch 64 1.25x; decode step: cuda-graphs")
    scan = [dict(op="scan fwd", impl=impl, B=8, T=T, D=1024, gbps=g, frac_of_copy=f)
            for impl, T, g, f in (("triton", 4096, 2000.0, 0.6), ("triton", 16384, 2500.0, 0.75),
                                  ("torch", 16384, 500.0, 0.15))]
    line = bench_gpu.kernels_line(dict(dtype="float32", copy_bandwidth_Bps=3.3e12, scan=scan, steps=[{}] * 14))
    assert line == ("float32, copy 3,300 GB/s; at 8x16384x1024: scan fwd triton 2,500 GB/s (75%), "
                    "scan fwd torch 500 GB/s (15%); 14 step-latency rows")


def test_rerun_of_some_steps_keeps_the_other_rows(tmp_path):
    """--only reruns steps into an earlier report: the other steps keep their rows and README lines."""
    def step(name, code):
        return Step(name, ["-c", code], 30, lambda r: f"n={r['n']}")

    first = [step("a", "print('{\"n\": 1}')"), step("b", "import sys; sys.exit(4)"), step("c", "print('{\"n\": 3}')")]
    run_plan(first, tmp_path, budget_s=60, title="t", log=lambda s: None)
    rerun = step("b", "print('{\"n\": 2}')")
    rows = run_plan([rerun], tmp_path, budget_s=60, title="t", log=lambda s: None, plan=[first[0], rerun, first[2]])
    assert [(r["step"], r["status"]) for r in rows] == [("a", "passed"), ("b", "passed"), ("c", "passed")]
    assert [r["step"] for r in summary(tmp_path)["steps"]] == ["a", "b", "c"]
    readme = (tmp_path / "README.md").read_text()
    assert "- **a**: n=1\n- **b**: n=2\n- **c**: n=3" in readme
