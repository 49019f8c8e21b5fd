"""`scratchpad bench train`: training throughput of the presets (bytes/s, ms/step, parameters).

Each preset runs the trainer's step (forward with per-row sampled training thresholds, backward,
gradient clipping, AdamW) on the same batch shape: by default the study's shape, seq 1024 and
batch 4. A few untimed warm-up steps come first; the table reports the median of the timed steps.
The last line of output is one JSON object with every number. Scratchpad presets get a second
row trained with tau = inf (no scratchpads): an untrained aux head has high entropy everywhere, so
the sampled training thresholds fire scratchpads at most bytes and that row shows the patch-only
cost. Step times of untrained models also reflect untrained patchers (the entropy patcher ends a
patch at almost every byte until its aux head learns; see the B/patch column).

    scratchpad bench train                       # byte, the six study-* presets, sp-fixed-p16
    scratchpad bench train --quick               # seq 256, 1 warm-up + 3 timed steps
    scratchpad bench train --presets byte,sp-fixed-p4 --batch-size 8 --steps 10
    scratchpad bench train --presets sp-fixed-p16 --no-plain --compile --seq-len 256 --warmup 5 --steps 45

--compile trains every row twice from one initialisation, eager and torch.compile, alternating step
by step on the same seeded batches (machine load hits both alike): the row gains
the compiled bytes/s, the speedup, the first (compiling) step's seconds and the largest relative
difference between the two runs' per-step losses (warm-up steps included). --dtype bf16 trains
under bf16 autocast (the default on CUDA). The measurement is eval/bench/train.py.
"""
from __future__ import annotations

import json
import sys

import torch

from eval.bench.train import DEFAULT_PRESETS, device_name, load_bytes, row_label, run
from scratchpad import ModelConfig, UserError
from scratchpad.errors import run_cli
from scratchpad.flags import Parser, add_threads_flag
from scratchpad.precision import DTYPES, check_dtype, compile_problem


def parser() -> Parser:
    p = Parser(prog="scratchpad bench train", description="Training throughput of the presets.")
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated preset names")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=None, help="default 1024 (256 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per preset (default 2, 1 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per preset (default 5, 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="shorter sequences and fewer steps")
    p.add_argument("--no-plain", action="store_true", help="skip the extra tau=inf (no scratchpads) row of scratchpad presets")
    p.add_argument("--data", default=None, help="corpus folder to read train.bin from (default: synthetic text)")
    add_threads_flag(p)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--dtype", choices=list(DTYPES), default=None, help="default bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="also run every row under torch.compile on the same steps: "
                   "bytes/s of both, the speedup, and the largest relative difference of their per-step losses")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(sys.argv[1:] if argv is None else argv)
    seq_len = a.seq_len or (256 if a.quick else 1024)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    steps = a.steps if a.steps is not None else (3 if a.quick else 5)
    for flag, v, lo in (("--batch-size", a.batch_size, 1), ("--seq-len", seq_len, 2), ("--warmup", warmup, 0),
                        ("--steps", steps, 1)):
        if v < lo:
            raise UserError(f"{flag} {v}: must be >= {lo}")
    names = [n.strip() for n in a.presets.split(",") if n.strip()]
    for n in names:
        ModelConfig.preset(n)  # unknown names fail before anything runs
    kind = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    device = torch.device(kind)
    a.dtype = a.dtype or ("bf16" if kind == "cuda" else "fp32")
    note = check_dtype(a.dtype, device)
    if note:
        print(note, file=sys.stderr)
    if a.compile and compile_problem(device):
        raise UserError(f"--compile: {compile_problem(device)}; run without --compile")
    old_threads = torch.get_num_threads()
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        return bench(a, names, device, seq_len, warmup, steps)
    finally:
        torch.set_num_threads(old_threads)


def bench(a, names: list[str], device: torch.device, seq_len: int, warmup: int, steps: int) -> int:
    """Print the header, a table row per measured row as it comes, then the JSON line."""
    data = load_bytes(a.data, max(1 << 20, 4 * a.batch_size * (seq_len + 1)))
    print(f"training throughput on {device_name(device)}, {torch.get_num_threads()} threads, batch {a.batch_size} x "
          f"{seq_len} bytes, {warmup} warm-up + {steps} timed steps (median), AdamW + clipping"
          + (", bf16 autocast" if a.dtype == "bf16" else ", fp32") + (", eager and torch.compile" if a.compile else ""),
          flush=True)
    hdr = f"{'preset':<26}{'params':>9}{'seq':>6}{'ms/step':>10}{'bytes/s':>11}{'vs byte':>9}{'B/patch':>9}{'scratch':>9}"
    if a.compile:
        hdr += f"{'compiled':>11}{'speedup':>9}{'loss diff':>11}{'compile s':>11}"
    print(hdr)
    print("-" * len(hdr), flush=True)
    seen = []

    def print_row(r: dict) -> None:
        seen.append(r)
        base = next((x for x in seen if x["preset"] == "byte"), None)
        rel = f"{r['bytes_per_s'] / base['bytes_per_s']:.2f}x" if base else "-"
        print(f"{row_label(r):<26}{r['params'] / 1e6:>8.2f}M{r['seq_len']:>6}{r['ms_per_step']:>10.1f}"
              f"{r['bytes_per_s']:>11,.0f}{rel:>9}{r['bytes_per_patch']:>9.2f}{100 * r['scratch_rate']:>8.1f}%"
              + (f"{r['compiled_bytes_per_s']:>11,.0f}{r['compile_speedup']:>8.2f}x{r['loss_max_rel_diff']:>11.1e}"
                 f"{r['compile_first_step_s']:>11.1f}" if a.compile else ""), flush=True)

    res = run(names, data, a.batch_size, seq_len, warmup, steps, device, a.dtype, a.compile, plain=not a.no_plain,
              on_row=print_row)
    print(json.dumps(res.json()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
