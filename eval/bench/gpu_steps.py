"""Steps of `scratchpad bench gpu` that are not commands of their own (run as its children):

    python -m eval.bench.gpu_steps env --out DIR          # DIR/env.json; one JSON line
    python -m eval.bench.gpu_steps train-log --out DIR    # the real trainer on synthetic text;
                                                          # DIR/train_log.jsonl; one JSON line
    python -m eval.bench.gpu_steps aot-eager bench train ARGS...   # the rehearsal's compile steps

aot-eager runs a `scratchpad` command with torch.compile's backend set to aot_eager: Dynamo and
AOTAutograd trace the forward and backward as on the GPU (graph breaks, custom operators, their
fake and autograd registrations), without inductor's code generation, which on CPU is C++ (not the
GPU's Triton) and costs minutes of a shared CPU core at any model size.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag


def env_info() -> dict:
    """Device, driver and library versions, the git commit (where this is a checkout), nvidia-smi's text."""
    info = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), python=sys.version.split()[0],
                torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    for lib in ("triton", "fla"):
        try:
            info[lib] = getattr(__import__(lib), "__version__", True)
        except ImportError:
            info[lib] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    info["commit"] = _run(["git", "rev-parse", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    info["uncommitted_changes"] = None if status is None else bool(status)
    info["nvidia_smi"] = _run(["nvidia-smi"])
    return info


def _run(argv: list[str]) -> str | None:
    """A command's stdout (stripped); None where it does not run or fails."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def train_log_run(out: Path, device: str, preset: str, steps: int, batch: int, seq_len: int, dtype: str) -> dict:
    """`steps` steps of `preset` through the real trainer on synthetic text; its log.jsonl is copied
    to out/train_log.jsonl. -> the trainer's exit code and the median of its later steps."""
    from eval.bench.train import synthetic_text
    from train.trainer import TrainArgs, Trainer

    copied = out / "train_log.jsonl"
    copied.unlink(missing_ok=True)  # never report an earlier run's log
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus"
        corpus.mkdir()
        (corpus / "train.bin").write_bytes(synthetic_text(max(8 * batch * seq_len, 1 << 16), 0).tobytes())
        (corpus / "val.bin").write_bytes(synthetic_text(max(2 * batch * seq_len, 1 << 14), 1).tobytes())
        run = Path(d) / "run"
        args = TrainArgs(preset=preset, data=str(corpus), out=str(run), steps=steps, batch_size=batch, seq_len=seq_len,
                         warmup=min(10, steps), dtype=dtype, device=device, eval_every=0, log_every=10, eval_windows=4)
        code = Trainer(args, given={"preset", "data", "out"}).run()
        log = run / "log.jsonl"
        if log.exists():
            copied.write_bytes(log.read_bytes())
    recs = [json.loads(line) for line in copied.read_text().splitlines()] if copied.exists() else []
    done = [r for r in recs if r.get("event") == "step"]
    later = done[len(done) // 2:]
    summary = dict(preset=preset, device=device, dtype=dtype, exit_code=code, steps=len(done))
    if later:
        summary.update(median_bytes_per_s=sorted(r["bytes_per_s"] for r in later)[len(later) // 2],
                       mfu=later[-1].get("mfu"), peak_mem_bytes=later[-1].get("peak_mem_bytes"))
    return summary


def run_aot_eager(argv: list[str]) -> int:
    """`scratchpad ARGV...` with every torch.compile call using the aot_eager backend."""
    import functools

    from eval.cli import main as scratchpad

    torch.compile = functools.partial(torch.compile, backend="aot_eager")
    return scratchpad(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["aot-eager"]:
        return run_aot_eager(argv[1:])
    ap = Parser(prog="python -m eval.bench.gpu_steps", description=describe(__doc__))
    ap.add_argument("step", choices=["env", "train-log"], help="(or aot-eager COMMAND..., see above)")
    ap.add_argument("--out", required=True, help="report folder (exists)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--preset", default="heavy-p16-aux2")
    ap.add_argument("--steps", type=int_flag("--steps"), default=40)
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=16)
    ap.add_argument("--seq-len", type=int_flag("--seq-len"), default=1024)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    a = ap.parse_args(argv)
    out = Path(a.out)
    if not out.is_dir():
        raise UserError(f"--out {out}: not a folder")
    if a.step == "env":
        info = env_info()
        (out / "env.json").write_text(json.dumps(info, indent=2) + "\n")
        print(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"}))
        return 0
    if a.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    summary = train_log_run(out, a.device, a.preset, a.steps, a.batch_size, a.seq_len, a.dtype)
    print(json.dumps(summary))
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(run_cli(main))
