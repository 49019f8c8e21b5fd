"""`scratchpad eval harness`: run lm-evaluation-harness tasks on a scratchpad model, one run per tau,
with accuracy, scratchpad rate and FLOPs per byte against the byte baseline side by side.

    scratchpad eval harness --tasks sp_completion --include-path eval/harness_tasks \\
        --threshold inf,3,1.5,0 --out reports/harness

Needs the [harness] extra (pip install 'scratchpad-patching[harness]'). The adapter is
eval/harness.py (model `scratchpad`). Writes harness.md (a row per tau) and harness.json (the
harness's own output for every tau, with the adapter's accounting beside it) into --out.
"""
from __future__ import annotations

import shlex
import sys

from eval.cli_args import parse_thresholds
from eval.experiments.harness import check_include_path, import_harness, run
from eval.experiments.harness_report import write
from eval.loading import load_eval_model
from eval.report import out_folder
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe, int_flag


def parse_limit(text) -> float | int:
    """--limit: a number of documents per task (>= 1) or a fraction of them (0 < f < 1)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (0 < v < float("inf")) or (v >= 1 and v != int(v)):
        raise UserError(f"--limit {text!r}: give a whole number of documents (>= 1) or a fraction in (0, 1)")
    return int(v) if v >= 1 else v


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval harness", description=describe(__doc__))
    ap.add_argument("--tasks", required=True, help="comma-separated lm-eval task names (e.g. arc_easy,hellaswag)")
    ap.add_argument("--include-path", metavar="DIR", help="a folder of extra task YAMLs (e.g. eval/harness_tasks)")
    ap.add_argument("--limit", type=parse_limit, help="documents per task: a number, or a fraction (default: all)")
    ap.add_argument("--num-fewshot", type=int_flag("--num-fewshot", 0), metavar="K", help="few-shot examples (default: the task's)")
    ap.add_argument("--model", metavar="DIR", help="model folder or training --out folder (the adapter's pretrained=; "
                    "default: the packaged default model)")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", default="1.5", metavar="TAU[,TAU...]",
                    help="entropy threshold(s) in nats, 'inf' = no scratchpads; several = one run each")
    add_scratch_every_flag(ap)
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=8, help="rows per forward")
    ap.add_argument("--max-length", type=int_flag("--max-length", 2), metavar="BYTES",
                    help="bytes of context per forward (default min(max_seq_len, 1024))")
    add_threads_flag(ap)
    ap.add_argument("--out", required=True, help="report folder (harness.md, harness.json)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    argv = list(sys.argv[1:] if argv is None else argv)
    a = ap.parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    if not tasks:
        raise UserError(f"--tasks {a.tasks!r}: no task names")
    taus = parse_thresholds(a.threshold, "--threshold")
    check_include_path(a.include_path)
    out = out_folder(a.out)
    device = import_harness()[1].model_device(a.device)
    model, label = load_eval_model(a.model, a.threads)
    model = model.to(device)
    res = run(model, tasks, taus, a.include_path, a.limit, a.num_fewshot, a.scratch_every, a.batch_size, a.max_length,
              log=lambda line: print(line, file=sys.stderr))
    write(out, res.runs, tasks, dict(command="scratchpad eval harness " + shlex.join(argv), model=label, tasks=tasks,
                                 include_path=a.include_path, limit=a.limit, num_fewshot=a.num_fewshot,
                                 scratch_every=a.scratch_every), model.cfg)
    print(f"{len(res.runs)} run(s) of {', '.join(tasks)} -> {out / 'harness.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
