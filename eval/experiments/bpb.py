"""The bpb experiment: bits per byte of one model at one tau over held-out windows (eval/windows.py),
with the realised scratchpad rate, trunk calls per byte and FLOPs/KV per byte against the
byte-level baseline of equal trunk. `run_bpb` is the row every scoring experiment shares."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from eval import compressors
from eval.lag_stats import LagStats
from eval.loading import model_info
from eval.scoring import accounting, entropy_quantile_thresholds, evaluate, score
from eval.windows import WINDOWING, batches
from scratchpad.errors import UserError
from scratchpad.precision import compile_module, compile_problem


def run_bpb(model, arr, window: int, threshold: float, batch_size: int, lag: bool = False) -> dict:
    """BPB and accounting of one model at one tau over arr (uint8 [n]); lag=True adds the lag
    profile and the aux head's BPB from the same pass (eval/lag_stats.py)."""
    t0 = time.perf_counter()
    stats = LagStats() if lag else None
    sc = evaluate(model, arr, window, threshold, batch_size, on_output=stats)
    ev = sc.events
    res = dict(threshold=threshold, bpb=sc.bpb, bpb_se=sc.bpb_se, bytes=ev.bytes, windows=sc.windows, nats=sc.nats,
               commits=ev.commits, scratchpads=ev.scratchpads, keys=ev.keys, aux_steps=ev.aux,
               window_bpb=[round(v, 6) for v in sc.window_bpb])
    res.update(accounting(model.cfg, sc))
    if stats is not None:
        res["lag"] = stats.summary()
    res["seconds"] = time.perf_counter() - t0
    return res


def compile_for_eval(model, arr, window: int, threshold: float, batch_size: int):
    """-> (the compiled model, seconds its first batch took: the compile time)."""
    problem = compile_problem(next(model.parameters()).device)
    if problem:
        raise UserError(f"--compile: {problem}; run without --compile")
    compiled = compile_module(model)
    x, y = next(iter(batches(arr, window, batch_size)))
    t0 = time.perf_counter()
    score(compiled, x, y, threshold=None if math.isinf(threshold) else threshold)
    return compiled, time.perf_counter() - t0


@dataclass
class BpbResult:
    """One model at one tau: `row` is run_bpb's row (plus compile_s when compiled); `threshold` the
    tau asked for (or picked for `target_rate`), row["threshold"] the one that ran."""

    model: dict
    data: dict
    window: int
    threshold: float
    target_rate: float | None
    note: str | None
    row: dict
    compressors: dict | None = None

    def json(self) -> dict:
        out = dict(command="bpb", model=self.model, data=self.data, window=self.window,
                   method=WINDOWING.format(W=self.window), requested_threshold=self.threshold,
                   target_rate=self.target_rate, note=self.note, **self.row)
        if self.compressors is not None:
            out["compressors"] = self.compressors
        return out


def run(model, label: str, arr, data: dict, window: int, threshold: float, rate: float | None = None,
        batch_size: int = 8, compile: bool = False, compare_compressors: bool = False, log=lambda line: None) -> BpbResult:
    """Score arr (uint8 [n], described by `data`) at tau = threshold, or at the tau whose
    scratchpad rate on these bytes is `rate`. A model without scratchpads runs at tau = inf."""
    if rate is not None:
        if not model.cfg.scratchpad:
            raise UserError(f"--rate: {label} has no scratchpads (config scratchpad=false)")
        threshold = entropy_quantile_thresholds(model, arr, window, [rate], batch_size)[0]
    if not model.cfg.scratchpad and math.isfinite(threshold):
        note = f"this model has no scratchpads (config scratchpad=false); --threshold {threshold:g} is ignored"
        tau = math.inf
    else:
        note, tau = None, threshold
    compiled, compile_s = compile_for_eval(model, arr, window, tau, batch_size) if compile else (model, None)
    if compile_s is not None:
        log(f"compile: {compile_s:.1f}s (torch.compile warm-up on one batch)")
    row = run_bpb(compiled, arr, window, tau, batch_size)
    if compile_s is not None:
        row["compile_s"] = round(compile_s, 2)
    comp = compressors.compare(arr, window) if compare_compressors else None
    return BpbResult(model=model_info(model, label), data=data, window=window, threshold=threshold, target_rate=rate,
                     note=note, row=row, compressors=comp)
