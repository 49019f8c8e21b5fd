"""The harness experiment: lm-evaluation-harness tasks on a scratchpad model, one run per τ, each with
the harness's own results, per-document outcomes and the adapter's accounting (scratchpad rate,
FLOPs per byte against the byte baseline). The adapter is eval/harness.py (model `scratchpad`);
lm-eval comes with the [harness] extra."""
from __future__ import annotations

import difflib
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from eval.experiments.harness_report import metric_cells, per_doc
from eval.report import fmt
from scratchpad.errors import UserError
from scratchpad.trigger import tau_json

INSTALL = "pip install 'scratchpad-patching[harness]'"


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
    """--include-path must be a folder (of lm-eval task YAMLs)."""
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


@dataclass
class HarnessResult:
    """One lm-eval run of the tasks per τ: threshold, seconds, the adapter's accounting (scratchpad),
    the harness's JSON output (harness) and per-document outcomes (docs)."""

    tasks: list[str]
    runs: list[dict]


def run(model, tasks: list[str], taus: list[float], include_path: str | None = None, limit=None,
        num_fewshot: int | None = None, scratch_every: int = 0, batch_size: int = 8, max_length: int | None = None,
        log=lambda line: None) -> HarnessResult:
    """Run the lm-eval tasks on model once per τ in taus."""
    lm_eval, adapter = import_harness()
    tm = task_manager(tasks, include_path)
    runs = []
    for tau in taus:
        lm = adapter.ScratchpadHarnessLM(pretrained=model, entropy_threshold=tau, scratch_every=scratch_every,
                                         batch_size=batch_size, max_length=max_length)
        t0 = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=limit, num_fewshot=num_fewshot, task_manager=tm,
                                      log_samples=True)
        docs = per_doc(res.pop("samples"))
        harness = json.loads(json.dumps(res, default=lm_eval.utils.handle_non_serializable))  # as lm-eval writes it
        runs.append(dict(threshold=tau_json(tau), seconds=round(time.perf_counter() - t0, 2), scratchpad=lm.stats(),
                         harness=harness, docs=docs))
        s = runs[-1]["scratchpad"]
        cells = metric_cells(res["results"], tasks)
        log(f"tau {fmt(tau)}: " + ", ".join(f"{k} {v}" for k, v in cells.items())
            + f"; scratchpads at {100 * s['scratchpad_rate']:.1f}% of bytes, {fmt(s['flops_per_byte'])} FLOPs/byte "
            f"({s['flops_ratio_vs_byte']:.3f}x the byte baseline)")
    return HarnessResult(tasks=tasks, runs=runs)
