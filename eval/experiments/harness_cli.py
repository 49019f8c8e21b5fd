"""`scratchpad eval harness`: run lm-evaluation-harness tasks on a scratchpad model, one run per tau,
with accuracy, scratchpad rate and FLOPs per byte against the byte baseline side by side.

    scratchpad eval harness --tasks sp_completion --include-path eval/harness_tasks \\
        --threshold inf,3,1.5,0 --out reports/harness

Needs the [harness] extra (pip install 'scratchpad-patching[harness]'). The adapter is
eval/harness.py (model `scratchpad`). Writes harness.md (a row per tau) and harness.json (the
harness's own output for every tau, with the adapter's accounting beside it) into --out.
"""
from __future__ import annotations

import difflib
import functools
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from eval.cli_args import parse_thresholds
from eval.experiments.harness_report import metric_cells, per_doc, write
from eval.loading import load_eval_model
from eval.report import fmt, out_folder
from infer.options import tau_json
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe, int_flag

INSTALL = "pip install 'scratchpad-patching[harness]'"


def parse_limit(text) -> float | int:
    """--limit: a number of documents per task (>= 1) or a fraction of them (0 < f < 1)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (0 < v < float("inf")) or (v >= 1 and v != int(v)):
        raise UserError(f"--limit {text!r}: give a whole number of documents (>= 1) or a fraction in (0, 1)")
    return int(v) if v >= 1 else v


def import_harness():
    """(lm_eval, the adapter module), or one line saying how to install the extra."""
    try:
        import lm_eval

        import eval.harness as adapter
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("lm_eval", "datasets"):
            raise UserError(f"scratchpad eval harness needs lm-eval ({e.name} is not installed): {INSTALL}") from None
        raise
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # the harness's progress chatter; errors still show
    return lm_eval, adapter


def check_include_path(include_path: str | None):
    if include_path is not None and not Path(include_path).is_dir():
        p = Path(include_path)
        raise UserError(f"--include-path {p}: {'not a folder' if p.exists() else 'no such folder'} "
                        "(a folder of lm-eval task YAML files)")


@functools.lru_cache(maxsize=4)
def all_tasks(include_path: str | None):
    """The harness's TaskManager over its own tasks and include_path (indexing ~15k task files takes
    seconds: once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


def task_manager(tasks: list[str], include_path: str | None):
    """A TaskManager that knows every name in `tasks`: the include path's alone when it holds them
    all (fast), else lm-eval's full index; an unknown name is one error line."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(t in local.all_tasks for t in tasks):
            return local
    tm = all_tasks(include_path)
    known = set(tm.all_tasks)
    for t in tasks:
        if t not in known:
            close = difflib.get_close_matches(t, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            where = f" nor in --include-path {include_path}" if include_path else " (local tasks need --include-path DIR)"
            raise UserError(f"--tasks: unknown task {t!r}: not among lm-eval's {len(known)} tasks{where}{hint}")
    return tm


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
    lm_eval, adapter = import_harness()
    device = adapter.model_device(a.device)
    model, label = load_eval_model(a.model, a.threads)
    model = model.to(device)
    tm = task_manager(tasks, a.include_path)

    runs = []
    for tau in taus:
        lm = adapter.ScratchpadHarnessLM(pretrained=model, entropy_threshold=tau, scratch_every=a.scratch_every,
                                         batch_size=a.batch_size, max_length=a.max_length)
        t0 = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=a.limit, num_fewshot=a.num_fewshot, task_manager=tm,
                                      log_samples=True)
        docs = per_doc(res.pop("samples"))
        harness = json.loads(json.dumps(res, default=lm_eval.utils.handle_non_serializable))  # as lm-eval writes it
        runs.append(dict(threshold=tau_json(tau), seconds=round(time.perf_counter() - t0, 2), scratchpad=lm.stats(),
                         harness=harness, docs=docs))
        s = runs[-1]["scratchpad"]
        cells = metric_cells(res["results"], tasks)
        print(f"tau {fmt(tau)}: " + ", ".join(f"{k} {v}" for k, v in cells.items())
              + f"; scratchpads at {100 * s['scratchpad_rate']:.1f}% of bytes, {fmt(s['flops_per_byte'])} FLOPs/byte "
              f"({s['flops_ratio_vs_byte']:.3f}x the byte baseline)", file=sys.stderr)

    write(out, runs, tasks, dict(command="scratchpad eval harness " + shlex.join(argv), model=label, tasks=tasks,
                                 include_path=a.include_path, limit=a.limit, num_fewshot=a.num_fewshot,
                                 scratch_every=a.scratch_every), model.cfg)
    print(f"{len(runs)} run(s) of {', '.join(tasks)} -> {out / 'harness.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
