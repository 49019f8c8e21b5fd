"""`scratchpad train`: train, resume or fine-tune a model (single process or under torchrun).

    scratchpad train --preset sp-fixed-p16 --data corpus/ --out runs/sp16 --time-budget 20m
    scratchpad train --out runs/sp16 --data corpus/ --resume [--steps 30000]
    scratchpad train --init-from runs/sp16/best --data code-corpus/ --out runs/sp16-code --steps 2000
    torchrun --nproc-per-node 2 -m train.cli --preset byte --data corpus/ --out runs/byte --steps 5000

See train/trainer.py for the output folder's layout and the log's fields.
"""
from __future__ import annotations

import argparse
import math
import re

from scratchpad import ModelConfig, UserError
from scratchpad.flags import Parser, parse_duration, parse_int_flag
from scratchpad.precision import DTYPES
from train.args import TrainArgs
from train.trainer import train

__all__ = ["build_parser", "main", "parse_args", "parse_duration", "parse_int_flag"]


def build_parser() -> argparse.ArgumentParser:
    d = TrainArgs()
    p = Parser(prog="scratchpad train", description="Train, resume or fine-tune a Scratchpad Patching model.",
                argument_default=argparse.SUPPRESS)
    m = p.add_argument_group("model")
    m.add_argument("--preset", metavar="NAME", help="a named ModelConfig (see --list-presets)")
    m.add_argument("--config", metavar="FILE", help="a ModelConfig JSON file")
    m.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's weights (fine-tuning); "
                   "a model folder or a training --out folder")
    m.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    r = p.add_argument_group("run")
    r.add_argument("--data", metavar="DIR", help="corpus folder with train.bin and val.bin (flat uint8)")
    r.add_argument("--out", metavar="DIR", help="output folder: log.jsonl, last/, best/")
    r.add_argument("--steps", metavar="N", help="optimizer steps to train")
    r.add_argument("--time-budget", metavar="DURATION", help="train for this long (20m, 90s, 1h30m); "
                   "counts training steps, not evaluation or checkpoint writes; the cosine LR schedule follows the elapsed fraction")
    r.add_argument("--flops-budget", metavar="FLOPS", help="train until this many training FLOPs are spent (e.g. 2.5e13; "
                   "forward + backward by scratchpad.accounting.training_flops at each step's counted commits and "
                   "scratchpads); stops at the first step that reaches it; the cosine LR schedule follows the spent fraction")
    r.add_argument("--resume", action="store_true", help="continue the run in --out exactly where its last checkpoint left off")
    h = p.add_argument_group("hyperparameters")
    h.add_argument("--batch-size", metavar="B", help=f"sequences per micro-batch per process (default {d.batch_size})")
    h.add_argument("--seq-len", metavar="T", help="bytes per sequence (default min(1024, max_seq_len))")
    h.add_argument("--lr", metavar="LR", help=f"peak learning rate (default {d.lr:g})")
    h.add_argument("--min-lr-ratio", metavar="R", help=f"final LR as a fraction of --lr (default {d.min_lr_ratio:g})")
    h.add_argument("--warmup", metavar="N", help=f"linear warmup steps (default {d.warmup})")
    h.add_argument("--grad-accum", metavar="N", help=f"micro-batches per optimizer step (default {d.grad_accum})")
    h.add_argument("--weight-decay", metavar="W", help=f"AdamW decay on matrices (default {d.weight_decay:g})")
    h.add_argument("--clip", metavar="NORM", help=f"gradient clipping norm, 0 = off (default {d.clip:g})")
    h.add_argument("--seed", metavar="S", help=f"initialisation and data-sampling seed (default {d.seed})")
    o = p.add_argument_group("evaluation, checkpoints, machine")
    o.add_argument("--eval-every", metavar="N", help=f"validate every N steps, 0 = only at the end (default {d.eval_every})")
    o.add_argument("--eval-windows", metavar="N", help=f"fixed validation windows of seq-len bytes (default {d.eval_windows})")
    o.add_argument("--save-every", metavar="N|DURATION", help=f"checkpoint every N steps (0 = only at the end) or every "
                   f"DURATION of training time, e.g. 10m (default {d.save_every} steps)")
    o.add_argument("--log-every", metavar="N", help=f"progress line every N steps (default {d.log_every})")
    o.add_argument("--threads", metavar="N", help="CPU threads per process (default: torch's, or cores / processes under torchrun)")
    o.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    o.add_argument("--dtype", choices=list(DTYPES), help="fp32, or bf16 autocast (weights and optimizer stay fp32); "
                   "default fp32")
    o.add_argument("--compile", action="store_true", help="torch.compile the training and evaluation forward "
                   "(the first step pays the compile time, reported once)")
    return p


def _float(name, text, lo, hi=math.inf, lo_open=False):
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"--{name} {text!r}: not a number") from None
    if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
        rng = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise UserError(f"--{name} {text}: must be {rng}" + (f" and <= {hi:g}" if math.isfinite(hi) else ""))
    return v


INTS = {"steps": 1, "batch_size": 1, "seq_len": 1, "warmup": 0, "grad_accum": 1, "eval_every": 0, "eval_windows": 1,
        "save_every": 0, "log_every": 1, "seed": 0, "threads": 1}
FLOATS = {"flops_budget": (0.0, math.inf, True), "lr": (0.0, math.inf, True), "min_lr_ratio": (0.0, 1.0, False), "weight_decay": (0.0, math.inf, False),
          "clip": (0.0, math.inf, False)}


def parse_args(argv) -> tuple[TrainArgs | None, set[str]]:
    ns = vars(build_parser().parse_args(argv))
    if ns.pop("list_presets", False):
        print("\n".join(ModelConfig.presets()))
        return None, set()
    given = set(ns)
    values = {}
    for k, v in ns.items():
        name = k.replace("_", "-")
        if k == "save_every":  # steps, or a duration of training time
            given.add("save_every_s")
            if re.fullmatch(r"[+-]?\d+", v.strip()):
                v, values["save_every_s"] = parse_int_flag(name, v, 0), None
            else:
                v, values["save_every_s"] = 0, parse_duration(v, "--save-every")
        elif k in INTS:
            v = parse_int_flag(name, v, INTS[k])
        elif k in FLOATS:
            v = _float(name, v, *FLOATS[k])
        elif k == "time_budget":
            v = parse_duration(v)
        values[k] = v
    for req in ("out",) if values.get("resume") else ("data", "out"):
        if req not in values:
            raise UserError(f"scratchpad train: --{req} is required")
    return TrainArgs(**values), given


def main(argv=None) -> int:
    import sys

    args, given = parse_args(sys.argv[1:] if argv is None else argv)
    if args is None:
        return 0
    return train(args, given)


if __name__ == "__main__":
    import sys

    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
