"""`scratchpad bench gpu`: the one prepared GPU run, for the first session that is lent a GPU.

On an H100/H200 it finishes in under 10 minutes (each step has its own time limit, and the whole
run stops starting new steps when its budget is spent) and writes OUT (default eval/reports/gpu/):

    env.json               device, driver, torch/triton versions, nvidia-smi
    pytest_gpu.txt         python -m pytest -m gpu (the CUDA tests of the Triton kernels and engine)
    bench_kernels.txt      scratchpad bench kernels: scan/step kernels vs copy bandwidth (fla HGRN
                           side by side when fla-core is installed; the machine has no network)
    bench_train.txt        scratchpad bench train, bf16, eager, the default model's preset (heavy-p16-aux2)
                           and its byte baseline (heavy-byte): bytes/s, MFU, peak memory
    bench_train_compile_{sp,byte}.txt   the same per preset, eager and --compile alternating on the
                           same steps: compiled bytes/s and MFU, speedup, compile time, loss agreement
    train_log.jsonl        a 40-step `scratchpad train --dtype bf16` run on synthetic text: the
                           trainer's own step log (synchronised step time, bytes/s, MFU, peak memory)
    bench_generate.txt     scratchpad bench generate --device cuda
    summary.json, README.md   each step's command, exit code, seconds, and the key numbers

    scratchpad bench gpu                  # on the GPU machine, from the repository root
    scratchpad bench gpu --dry-run        # anywhere: the steps and their commands, nothing run

A step that fails or runs out of time is recorded as such and the next one runs; the exit code is 0
only when every step passed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe

DEFAULT_OUT = Path(__file__).parent / "reports" / "gpu"
SP_PRESET, BYTE_PRESET = "heavy-p16-aux2", "heavy-byte"  # the packaged default model's design
BUDGET_S = 570.0  # 9.5 minutes: the run must end within 10 on the device


@dataclass
class Step:
    name: str
    argv: list[str]      # run with the current python; "{out}" is replaced by the output folder
    timeout_s: float
    output: str          # file under OUT that receives stdout + stderr


def steps() -> list[Step]:
    py = [sys.executable]
    cli = [*py, "-m", "eval.cli"]
    train = [*cli, "bench", "train", "--no-plain", "--device", "cuda", "--dtype", "bf16", "--seq-len", "1024",
             "--batch-size", "16", "--warmup", "5", "--steps", "20"]
    return [
        Step("env", [*py, "-m", "eval.bench_gpu", "--env-only", "--out", "{out}"], 30, "env.txt"),
        Step("pytest-gpu", [*py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"], 100, "pytest_gpu.txt"),
        # the compiled-reference column of the kernel bench would cost minutes of compiling: left out
        Step("bench-kernels", [*cli, "bench", "kernels", "--device", "cuda", "--dtype", "bf16", "--budget", "2",
                               "--no-compile"], 100, "bench_kernels.txt"),
        # eager first (numbers even if compiling runs out of time), then each preset eager + compiled
        Step("bench-train", [*train, "--presets", f"{SP_PRESET},{BYTE_PRESET}"], 60, "bench_train.txt"),
        Step("bench-train-compile-sp", [*train, "--presets", SP_PRESET, "--compile"], 120,
             "bench_train_compile_sp.txt"),
        Step("bench-train-compile-byte", [*train, "--presets", BYTE_PRESET, "--compile"], 90, "bench_train_compile_byte.txt"),
        Step("train-log", [*py, "-m", "eval.bench_gpu", "--train-only", "--out", "{out}"], 60, "train.txt"),
        Step("bench-generate", [*cli, "bench", "generate", "--device", "cuda", "--batch-sizes", "1,16,64"], 40,
             "bench_generate.txt"),
    ]


def run_steps(todo: list[Step], out: Path, budget_s: float, log=print) -> list[dict]:
    """Run each step as a subprocess with its time limit (capped by what is left of the budget);
    skip the rest once the budget is spent. -> one record per step."""
    t_start = time.monotonic()
    records = []
    for st in todo:
        left = budget_s - (time.monotonic() - t_start)
        argv = [a.replace("{out}", str(out)) for a in st.argv]
        rec = dict(step=st.name, command=shlex.join(argv), output=st.output)
        if left < 5:
            rec.update(status="skipped", reason=f"budget of {budget_s:g}s spent")
            records.append(rec)
            log(f"[{st.name}] skipped: budget spent")
            continue
        limit = min(st.timeout_s, left)
        log(f"[{st.name}] {rec['command']}  (limit {limit:.0f}s)")
        t0 = time.monotonic()
        with open(out / st.output, "w") as f:
            try:
                p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=limit, check=False)
                rec.update(status="passed" if p.returncode == 0 else "failed", returncode=p.returncode)
            except subprocess.TimeoutExpired:
                rec.update(status="timeout", returncode=None)
        rec["seconds"] = round(time.monotonic() - t0, 1)
        log(f"[{st.name}] {rec['status']} in {rec['seconds']}s -> {out / st.output}")
        records.append(rec)
    return records


def env_info() -> dict:
    import torch

    info = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__,
                cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = None
    try:
        import fla  # noqa: F401

        info["fla"] = True
    except ImportError:
        info["fla"] = False
    return info


def train_log_run(out: Path, device: str = "cuda", preset: str = SP_PRESET, steps_: int = 40, batch: int = 16,
                  seq_len: int = 1024, dtype: str = "bf16") -> int:
    """40 bf16 steps of the default preset on synthetic text, through the real trainer."""
    import tempfile

    from eval.bench_train import synthetic_text
    from train.trainer import TrainArgs, Trainer

    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus"
        corpus.mkdir()
        (corpus / "train.bin").write_bytes(synthetic_text(8 << 20, 0).tobytes())
        (corpus / "val.bin").write_bytes(synthetic_text(1 << 20, 1).tobytes())
        run = Path(d) / "run"
        args = TrainArgs(preset=preset, data=str(corpus), out=str(run), steps=steps_, batch_size=batch, seq_len=seq_len,
                         warmup=10, dtype=dtype, device=device, eval_every=0, log_every=10, eval_windows=16)
        code = Trainer(args, given={"preset", "data", "out"}).run()
        if (run / "log.jsonl").exists():
            (out / "train_log.jsonl").write_bytes((run / "log.jsonl").read_bytes())
    return code


def key_numbers(out: Path) -> dict:
    """The headline numbers from the steps' outputs (JSON lines), where they ran."""
    nums = {}
    for name in ("bench_train.txt", "bench_train_compile_sp.txt", "bench_train_compile_byte.txt", "bench_kernels.txt",
                 "bench_generate.txt"):
        path = out / name
        if not path.exists():
            continue
        for line in reversed(path.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                try:
                    nums[name.removesuffix(".txt")] = json.loads(line)
                except json.JSONDecodeError:
                    pass
                break
    log = out / "train_log.jsonl"
    if log.exists():
        steps_ = [json.loads(line) for line in log.read_text().splitlines() if '"event": "step"' in line]
        if steps_:
            last = steps_[len(steps_) // 2:]
            nums["train_log"] = dict(steps=len(steps_), median_bytes_per_s=sorted(s["bytes_per_s"] for s in last)[len(last) // 2],
                                     mfu=[s.get("mfu") for s in last][-1], peak_mem_bytes=last[-1].get("peak_mem_bytes"))
    return nums


def write_summary(out: Path, records: list[dict], wall: float):
    nums = key_numbers(out)
    (out / "summary.json").write_text(json.dumps(dict(wall_s=round(wall, 1), steps=records, numbers=nums), indent=2))
    lines = ["# GPU run (`scratchpad bench gpu`)", "",
             f"Wall time {wall:.0f} s. Each step's full output is in the file named beside it.", "",
             "| step | status | seconds | output | command |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['step']} | {r['status']} | {r.get('seconds', '-')} | {r['output']} | `{r['command']}` |")
    bt = [r for k in ("bench_train_compile_sp", "bench_train_compile_byte") for r in nums.get(k, {}).get("results", [])]
    bt = bt or nums.get("bench_train", {}).get("results", [])
    if bt:
        lines += ["", "| preset | dtype | bytes/s eager | bytes/s compiled | speedup | MFU eager | MFU compiled | loss diff |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in bt:
            lines.append(f"| {r['preset']} | {r['dtype']} | {r['bytes_per_s']:,.0f} | {r.get('compiled_bytes_per_s', 0):,.0f} | "
                         f"{r.get('compile_speedup', '-')} | {r.get('mfu', '-')} | {r.get('compiled_mfu', '-')} | "
                         f"{r.get('loss_max_rel_diff', '-')} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad bench gpu", description=describe(__doc__))
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="report folder")
    ap.add_argument("--budget", type=float, default=BUDGET_S, metavar="SECONDS", help="stop starting steps after this long")
    ap.add_argument("--dry-run", action="store_true", help="print the steps and their commands; run nothing")
    ap.add_argument("--env-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(a.out)
    if a.dry_run:
        for st in steps():
            print(f"{st.name:<15} limit {st.timeout_s:>4.0f}s -> {st.output:<20} "
                  f"{shlex.join([x.replace('{out}', str(out)) for x in st.argv])}")
        print(f"total limit {sum(s.timeout_s for s in steps()):.0f}s, budget {a.budget:g}s")
        return 0
    import torch

    if not torch.cuda.is_available():
        raise UserError("bench gpu: no CUDA device here; this is the prepared run for a GPU machine "
                        "(--dry-run lists its steps)")
    out.mkdir(parents=True, exist_ok=True)
    if a.env_only:
        info = env_info()
        (out / "env.json").write_text(json.dumps(info, indent=2))
        print(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"}))
        return 0
    if a.train_only:
        return train_log_run(out)
    t0 = time.monotonic()
    records = run_steps(steps(), out, a.budget)
    write_summary(out, records, time.monotonic() - t0)
    bad = [r["step"] for r in records if r["status"] != "passed"]
    print(f"bench gpu: {len(records) - len(bad)}/{len(records)} steps passed in {time.monotonic() - t0:.0f}s -> {out}"
          + (f"; not passed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
