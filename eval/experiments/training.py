"""Training runs the comparison experiments share (reproduce, scale, variants): what every model
of one comparison trains under (`TrainPlan`), one run through the trainer (reused when finished,
continued when cut short), and what its log says."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from scratchpad.errors import UserError
from train.trainer import TrainArgs, Trainer


@dataclass
class TrainPlan:
    """The corpus, batches, schedule, seed, budget (steps, time_budget or flops_budget) and device of
    every run of one comparison, and how its trained weights are scored and audited."""

    data: str
    batch_size: int = 8
    seq_len: int | None = None
    lr: float = 2e-3
    warmup: int = 100
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    steps: int | None = None
    time_budget: float | None = None
    flops_budget: float | None = None
    eval_every: int = 0
    eval_windows: int = 16
    eval_batch: int = 8
    audit_positions: int = 4


def read_log(run: Path) -> list[dict]:
    """The events of a run's log.jsonl."""
    path = run / "log.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable training log ({type(e).__name__})") from None


def train_variant(preset: str | None, a: "TrainPlan", run: Path, config: str | None = None,
                  resume_unfinished: bool = False) -> tuple[bool, float]:
    """Train preset (or a config JSON file) into run/ under plan a unless a finished run is already
    there; an unfinished one is an error, or continues exactly with resume_unfinished.
    -> (reused, wall seconds)."""
    resume = False
    if (run / "log.jsonl").exists():
        if any(e.get("event") == "end" and e.get("reason") != "signal" for e in read_log(run)):
            return True, 0.0
        if not resume_unfinished:
            raise UserError(f"{run}: holds an unfinished training run; remove it (or continue it with "
                            f"'scratchpad train --resume --out {run}') and run variants again")
        if not (run / "last").is_dir():
            raise UserError(f"{run}: an unfinished training run with no checkpoint to continue from; remove it and run again")
        resume = True
    args = TrainArgs(data=str(a.data), out=str(run), preset=preset, config=config, time_budget=a.time_budget,
                     steps=a.steps, flops_budget=a.flops_budget, batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr, warmup=a.warmup,
                     eval_every=a.eval_every, eval_windows=a.eval_windows, save_every=0 if not resume_unfinished else 100,
                     log_every=50, seed=a.seed, threads=a.threads, device=a.device, resume=resume)
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run / "train.out", "a" if resume else "w") as f:
        given = {"out", "resume"} if resume else {"data", "out", "preset" if preset else "config"}
        code = Trainer(args, given=given, out_stream=f).run()
    if code != 0:
        raise UserError(f"{preset}: training stopped with code {code} (see {run / 'train.out'})")
    return False, time.perf_counter() - t0


def logged_flops(log: list[dict]) -> float:
    """Training FLOPs of a run: the sum of its step events' `model_flops` (the trainer counts them
    with scratchpad.accounting.training_flops from each step's commits and scratchpads)."""
    return float(sum(e.get("model_flops", 0.0) for e in log if e.get("event") == "step"))
