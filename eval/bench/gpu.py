"""`scratchpad bench gpu`: the one prepared GPU run, for the first session that is lent a GPU.

Runs, in order of the risk each retires, every step as a child process with its own time limit
(the limits sum to at most 540 s; no step starts once the --budget is spent):

    env              device, driver, torch/triton versions, nvidia-smi (OUT/env.json)
    pytest-gpu       python -m pytest -m gpu (kernels at real sizes, graph breaks of a compiled
                     training step; the graph decode test runs as the next step instead)
    graph-decode     CUDA-graph decode == parallel forward: default model and a tiny all-SSM model,
                     tau 0, 1.5, inf and the stride trigger (python -m eval.bench.graph_decode)
    decode-tau       scratchpad bench generate --device cuda at tau = 1.5 (no eager fallback: a
    decode-every4    failed capture fails the step), and at every 4th byte of a patch
    train-eager      scratchpad bench train, bf16, eager: the default model's preset and its byte
                     baseline (bytes/s, MFU, peak memory)
    train-log        40 steps of the real trainer on synthetic text (OUT/train_log.jsonl)
    kernels          scratchpad bench kernels at the model's dtype (fp32) vs copy bandwidth
    compile-sp       scratchpad bench train --compile, each preset on its own: eager and compiled
    compile-byte     on the same steps, speedup, compile time, loss agreement

Each step's output streams into OUT/<step>.txt as it is printed; OUT/summary.json and OUT/README.md
get each step's row as soon as it ends (see eval/bench/gpu_harness.py: a hung step gets SIGINT,
then a faulthandler stack dump, then SIGKILL, and keeps what it printed).

    scratchpad bench gpu --out "$OUT/gpu"   # on the GPU machine, from the repository root
                                            # (or python -m eval.bench.gpu without an install)
    scratchpad bench gpu --budget 400       # less device time: the last steps (compile) are cut
    scratchpad bench gpu --only compile-sp  # a rerun of chosen steps
    scratchpad bench gpu --rehearse         # anywhere: every step on CPU at tiny sizes, same harness
                                            # (compile steps with the aot_eager backend)
    scratchpad bench gpu --dry-run          # the steps, their limits and commands; nothing run

Exit code 0 only when every step passed, 1 otherwise, 2 for bad input.
"""
from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from eval.bench.gpu_harness import Step, run_plan
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe

DEFAULT_OUT = Path(__file__).parents[1] / "reports" / "gpu"
REHEARSAL_OUT = Path(tempfile.gettempdir()) / "scratchpad-bench-gpu-rehearsal"
SP_PRESET, BYTE_PRESET = "heavy-p16-aux2", "heavy-byte"  # the packaged default model's design
TINY_SP, TINY_BYTE = "tiny-sp-fixed-p4", "tiny-heavy-byte"
BUDGET_S = 540.0  # the device allows 600 s a command; the harness adds at most a few seconds
REHEARSAL_SLACK = 3  # rehearsal limits and budget: the GPU run's times this


def plan(rehearse: bool = False) -> list[Step]:
    """The steps with their limits; rehearse: the same steps on CPU at the smallest sizes that
    still run each one, the compile steps with the aot_eager backend, REHEARSAL_SLACK times the
    limits (a CPU core shared with other work starts Python and traces graphs slowly)."""
    cli = ["-m", "eval.cli"]
    dev = ["--device", "cpu" if rehearse else "cuda"]
    if rehearse:
        tests = ["tests/test_gpu_decode.py"]
        decode = ["--batch-sizes", "1", "--max-bytes", "8", "--repeats", "1", "--threads", "1"]
        train = ["--dtype", "fp32", "--seq-len", "32", "--batch-size", "2", "--warmup", "1", "--steps", "1",
                 "--threads", "1"]
        sp, byte = TINY_SP, TINY_BYTE
        log = ["--preset", TINY_SP, "--steps", "2", "--batch-size", "2", "--seq-len", "32", "--dtype", "fp32"]
        kernels = ["--shapes", "2x64x32", "--step-d", "32", "--reps", "1", "--warmup", "0", "--budget", "1"]
        decode_bytes = "16"
    else:
        tests = []
        decode = ["--batch-sizes", "1,16,64"]
        train = ["--dtype", "bf16", "--seq-len", "1024", "--batch-size", "16", "--warmup", "5", "--steps", "20"]
        sp, byte = SP_PRESET, BYTE_PRESET
        log = ["--preset", SP_PRESET, "--steps", "40", "--batch-size", "16", "--seq-len", "1024", "--dtype", "bf16"]
        kernels = ["--shapes", "8x1024x512,8x4096x1024,8x16384x2048", "--budget", "1"]
        decode_bytes = "160"
    bench_train = [*cli, "bench", "train", "--no-plain", *dev, *train, "--presets"]
    # rehearsal: Dynamo + AOTAutograd without inductor's C++ code generation (eval/bench/gpu_steps.py)
    compile_train = [*(["-m", "eval.bench.gpu_steps", "aot-eager"] if rehearse else cli), *bench_train[2:]]
    steps = [
        Step("env", ["-m", "eval.bench.gpu_steps", "env", "--out", "{out}"], 20, env_line, ("env.json",)),
        # a test file that fails to import (an optional package missing there) must not stop the
        # rest; the graph decode comparison runs as the next step, which keeps its numbers
        Step("pytest-gpu", ["-m", "pytest", "-m", "gpu", "-rfEs", "-p", "no:cacheprovider",
                            "--continue-on-collection-errors", "--deselect",
                            "tests/test_gpu_decode.py::test_cuda_graph_decode_equals_parallel_forward", *tests], 90),
        Step("graph-decode", ["-m", "eval.bench.graph_decode", *dev, "--bytes", decode_bytes], 60, graph_decode_line),
        Step("decode-tau", [*cli, "bench", "generate", *dev, "--threshold", "1.5", *decode], 40, decode_line),
        Step("decode-every4", [*cli, "bench", "generate", *dev, "--threshold", "inf", "--scratch-every", "4", *decode],
             40, decode_line),
        Step("train-eager", [*bench_train, f"{sp},{byte}"], 45, train_line),
        Step("train-log", ["-m", "eval.bench.gpu_steps", "train-log", "--out", "{out}", *dev, *log], 35,
             train_log_line, ("train_log.jsonl",)),
        Step("kernels", [*cli, "bench", "kernels", *dev, "--dtype", "fp32", "--no-compile", *kernels], 60,
             kernels_line),
        Step("compile-sp", [*compile_train, sp, "--compile"], 80, train_line),
        Step("compile-byte", [*compile_train, byte, "--compile"], 60, train_line),
    ]
    if rehearse:
        for st in steps:
            st.timeout_s *= REHEARSAL_SLACK
    return steps


# one README line per step, from the last JSON line the step printed ------------------------------
def env_line(r: dict) -> str:
    where = "no CUDA"
    if "device" in r:
        where = f"{r['device']} (sm {r['capability']}, {r['sms']} SMs, {r['memory_gib']} GiB)"
    line = f"{where}; torch {r['torch']}, CUDA {r['cuda']}, triton {r['triton']}"
    if r.get("commit"):
        line += f"; commit {r['commit'][:10]}" + (" with uncommitted changes" if r.get("uncommitted_changes") else "")
    return line


def graph_decode_line(r: dict) -> str:
    rows = [c for cases in r["cases"].values() for c in cases]
    steps = sorted({c.get("decode_step", "not captured") for c in rows})
    worst = "-" if r["worst_rel_diff"] is None else f"{r['worst_rel_diff']:.1e}"
    return (f"{len(rows) - r['failed']}/{len(rows)} cases passed: logits, events and trunk passes equal the forward's "
            f"(worst relative difference {worst}); decode step: {', '.join(steps)}")


def decode_line(r: dict) -> str:
    bps = r["bytes_per_second"]
    rest = "".join(f", batch {k.removeprefix('speedup_vs_byte_b')} {v:.2f}x" for k, v in r.items()
                   if k.startswith("speedup_vs_byte_b"))
    fell_back = {k: v for k, v in r["graph_fallback"].items() if v}
    return (f"tau {r['threshold']}, every {r['scratch_every']}: {bps.get('sp_b1', 0):,.0f} vs "
            f"{bps.get('byte_b1', 0):,.0f} B/s at batch 1 = {r['speedup_vs_byte']:.2f}x the byte baseline "
            f"(FLOP ratio {r['flops_ratio_vs_byte']:.3f}){rest}; decode step: "
            f"{', '.join(sorted(set(r['decode_step'].values())))}" + (f"; fell back: {fell_back}" if fell_back else ""))


def train_line(r: dict) -> str:
    def one(x):
        s = f"{x['preset']} {x['bytes_per_s']:,.0f} B/s (MFU {x.get('mfu', '-')})"
        if "compiled_bytes_per_s" in x:
            s += (f", compiled {x['compiled_bytes_per_s']:,.0f} B/s ({x['compile_speedup']}x, first step "
                  f"{x['compile_first_step_s']:.0f} s, loss diff {x['loss_max_rel_diff']:.1e})")
        return s
    return f"{r['dtype']}: " + "; ".join(one(x) for x in r["results"])


def train_log_line(r: dict) -> str:
    return (f"{r['preset']} {r['dtype']}: {r['steps']} logged steps, median {r.get('median_bytes_per_s', 0):,.0f} B/s, "
            f"MFU {r.get('mfu')}, peak memory {r.get('peak_mem_bytes')}")


def _gbps(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"


def kernels_line(r: dict) -> str:
    """Achieved bandwidth of each scan at the largest shape, against the copy bandwidth measured."""
    B, T, D = max(((x["B"], x["T"], x["D"]) for x in r["scan"]), key=lambda s: s[0] * s[1] * s[2])
    cells = [f"{x['op']} {x['impl']} {_gbps(x['gbps'])} GB/s ({x['frac_of_copy']:.0%})" for x in r["scan"]
             if (x["B"], x["T"], x["D"]) == (B, T, D)]
    return (f"{r['dtype']}, copy {_gbps(r['copy_bandwidth_Bps'] / 1e9)} GB/s; at {B}x{T}x{D}: " + ", ".join(cells)
            + f"; {len(r['steps'])} step-latency rows")


# the command ---------------------------------------------------------------------------------
def prepare_out(out: Path, steps: list[Step]) -> Path:
    """Create OUT and remove the files an earlier run of these steps left there (other steps'
    files stay: --only reruns some steps into an earlier report); any problem is one line."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    for name in [f for s in steps for f in (s.output, *s.extra_files)]:
        (out / name).unlink(missing_ok=True)
    return out


def select(steps: list[Step], only: str | None) -> list[Step]:
    if not only:
        return steps
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in {s.name for s in steps}]
    if unknown or not names:
        raise UserError(f"--only {only}: unknown step(s) {', '.join(unknown) or '(none given)'}; the steps are "
                        + ", ".join(s.name for s in steps))
    return [s for s in steps if s.name in names]


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad bench gpu", description=describe(__doc__))
    ap.add_argument("--out", help=f"report folder (default {DEFAULT_OUT}; with --rehearse {REHEARSAL_OUT})")
    ap.add_argument("--budget", type=float, metavar="SECONDS", help=f"no step starts after this long, and a running "
                    f"step is cut to what is left (default {BUDGET_S:g}; with --rehearse {REHEARSAL_SLACK} times that)")
    ap.add_argument("--rehearse", action="store_true", help="every step on CPU at tiny sizes, through the same harness")
    ap.add_argument("--only", metavar="STEP,STEP", help="run these steps of the plan only; the report in --out keeps "
                    "the other steps' rows (a rerun after a failure)")
    ap.add_argument("--dry-run", action="store_true", help="print the steps, their limits and commands; run nothing")
    a = ap.parse_args(argv)
    if a.budget is None:
        a.budget = BUDGET_S * (REHEARSAL_SLACK if a.rehearse else 1)
    if not a.budget > 0:
        raise UserError(f"--budget {a.budget:g}: must be > 0")
    whole = plan(a.rehearse)
    steps = select(whole, a.only)
    out = Path(a.out) if a.out else (REHEARSAL_OUT if a.rehearse else DEFAULT_OUT)
    if a.dry_run:
        for st in steps:
            print(f"{st.name:<14} limit {st.timeout_s:>4.0f} s -> {st.output:<18} {shlex.join(st.command(out))}")
        print(f"total limit {sum(s.timeout_s for s in steps):.0f} s, budget {a.budget:g} s")
        return 0
    if not a.rehearse:
        import torch

        if not torch.cuda.is_available():
            raise UserError("bench gpu: no CUDA device here; this is the prepared run for a GPU machine "
                            "(--rehearse runs its steps on CPU, --dry-run lists them)")
    prepare_out(out, steps)
    title = ("GPU run rehearsed on CPU (`scratchpad bench gpu --rehearse`)" if a.rehearse
             else "GPU run (`scratchpad bench gpu`)")
    rows = run_plan(steps, out, a.budget, title, plan=whole if a.only else None)
    rows = [r for r in rows if r["step"] in {s.name for s in steps}]
    bad = [r["step"] for r in rows if r["status"] != "passed"]
    print(f"bench gpu: {len(rows) - len(bad)}/{len(rows)} steps passed -> {out}/README.md"
          + (f"; not passed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
