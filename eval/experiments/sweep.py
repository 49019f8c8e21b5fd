"""The sweep experiment: one model at every τ (or at the τ per target scratchpad rate) over the same
held-out windows: BPB, scratchpad rate, FLOPs and KV per byte against the byte-level baseline, the
lag figures, the engine's counted events checked against the parallel forward's on a sample, and
trained baselines (models, a BPE-tokenizer baseline) scored on the same bytes."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from eval.engine_check import engine_check, engine_sample
from eval.experiments.bpb import run_bpb
from eval.experiments.lag import lag_figures
from eval.experiments.tokenizer_baseline import TokenBaseline
from eval.loading import load_eval_model, model_info
from eval.report import fmt
from eval.scoring import entropy_quantile_thresholds, paired_difference
from eval.windows import WINDOWING
from scratchpad.errors import UserError


def spread_summary(rows: list[dict]) -> dict:
    """What a BPB difference between taus means: each row's standard error over windows, and each
    row's difference from tau = inf with its paired standard error (same windows, so the
    window-to-window spread cancels); the text names the best finite tau."""
    se = [r["bpb_se"] for r in rows if r.get("bpb_se") is not None]
    out = dict(se_min=min(se) if se else None, se_max=max(se) if se else None, windows=rows[0]["windows"])
    text = (f"each BPB's standard error over its {rows[0]['windows']} windows is {fmt(out['se_min'], 2)}–{fmt(out['se_max'], 2)}"
            if se else "one window only: no spread to show")
    plain = next((r for r in rows if math.isinf(r["threshold"])), None)
    others = [r for r in rows if r is not plain and r.get("window_bpb")]
    if plain is None or not plain.get("window_bpb") or not others:
        out["text"] = text
        return out
    for r in others:
        r["diff_vs_plain"], r["diff_vs_plain_se"] = paired_difference(r["window_bpb"], plain["window_bpb"])
    best = min(others, key=lambda r: r["bpb"])
    d, d_se = best["diff_vs_plain"], best["diff_vs_plain_se"]
    z = abs(d) / d_se if d_se else math.inf
    out.update(best_threshold=best["threshold"], diff_vs_plain=d, diff_vs_plain_se=d_se)
    out["text"] = (text + f"; the best finite τ = {fmt(best['threshold'], 3)} differs from τ = ∞ by {d:+.4f} BPB "
                   f"± {fmt(d_se, 2)} (paired SE over the same windows; {fmt(z, 2)} SE: "
                   + ("more than noise)" if z >= 2 else "within noise)"))
    return out


def sweep_rows(model, arr, W: int, taus: list[float], batch_size: int, engine_bytes: int, engine_rows: int = 2,
               targets: list[float] | None = None, log=lambda line: None) -> list[dict]:
    """run_bpb rows (with the lag summary) per τ; with engine_bytes, each row's `engine` check on a sample."""
    rows = []
    sample = engine_sample(arr, W, engine_bytes, engine_rows) if engine_bytes else None
    for i, tau in enumerate(taus):
        r = run_bpb(model, arr, W, tau, batch_size, lag=True)
        if targets is not None:
            r["target_rate"] = targets[i]
        if sample is not None:
            t0 = time.perf_counter()
            r["engine"] = engine_check(model, sample, tau)
            r["engine"]["seconds"] = time.perf_counter() - t0
        rows.append(r)
        log(f"tau {fmt(tau):>6}: bpb {r['bpb']:.4f}, scratchpads {100 * r['scratchpad_rate']:5.1f}%, "
            f"{fmt(r['flops_per_byte'])} FLOPs/byte ({r['flops_ratio_vs_byte']:.3f}x byte), KV {r['kv_ratio_vs_byte']:.3f}x"
            + (f", engine {'agrees' if r['engine']['agree'] else 'DISAGREES'}" if sample is not None else ""))
    return rows


def evaluate_baselines(paths: list[str], tokenizer_dir: str | None, arr, W: int, batch_size: int, threads) -> list[dict]:
    """Each trained baseline model at τ = ∞ and the tokenizer baseline on the same bytes."""
    out = []
    for p in paths:
        m, label = load_eval_model(p, threads)
        Wb = min(W, m.cfg.max_seq_len)
        r = run_bpb(m, arr, Wb, math.inf, batch_size)
        out.append(dict(label=f"{m.cfg.name} ({label})", kind="model", path=label, window=Wb, **{
            k: r[k] for k in ("bpb", "bpb_se", "flops_per_byte", "flops_per_byte_split", "kv_bytes_per_byte", "scratchpad_rate",
                              "trunk_calls_per_byte", "bytes")}))
    if tokenizer_dir:
        tb = TokenBaseline.load(tokenizer_dir)
        r = tb.evaluate(arr, batch_size)
        out.append(dict(label=f"BPE tokens ({tb.tok.vocab_size}) + {tb.model.trunk_cfg.get('preset')} trunk", kind="tokenizer",
                        path=str(tokenizer_dir), **r))
    return out


@dataclass
class SweepResult:
    """Rows per τ (cheapest first), the byte-level baseline's cost, the trained baselines, the
    engine check's summary, the lag figures and the noise summary."""

    model: dict
    data: dict
    window: int
    targets: list[float] | None
    rows: list[dict]
    byte_baseline: dict
    baselines: list[dict]
    engine_check: dict
    lag_figures: dict
    spread: dict

    def json(self) -> dict:
        return dict(command="sweep", model=self.model, data=self.data, window=self.window,
                    method=WINDOWING.format(W=self.window), mode="rates" if self.targets is not None else "thresholds",
                    rows=self.rows, byte_baseline=self.byte_baseline, baselines=self.baselines,
                    engine_check=self.engine_check, lag_figures=self.lag_figures, spread=self.spread)


def run(model, label: str, arr, data: dict, W: int, taus: list[float] | None = None, targets: list[float] | None = None,
        batch_size: int = 8, engine_bytes: int = 256, baselines: list[str] = (), tokenizer_baseline: str | None = None,
        threads: int | None = None, log=lambda line: None) -> SweepResult:
    """The sweep over taus, or over the τ per target rate in targets, of arr (uint8 [n])."""
    if not model.cfg.scratchpad:
        raise UserError(f"{label}: this model has no scratchpads (config scratchpad=false), so every tau gives the same "
                        f"result; use 'scratchpad eval bpb' for it, or pass it as --baseline of a scratchpad model's sweep")
    if targets is not None:
        taus = entropy_quantile_thresholds(model, arr, W, targets, batch_size)
    order = sorted(range(len(taus)), key=lambda i: (taus[i], i), reverse=True)  # cheapest first
    taus = [taus[i] for i in order]
    targets = [targets[i] for i in order] if targets is not None else None
    log(f"sweep of {model.cfg.name} over {len(arr):,} bytes in windows of {W}")
    rows = sweep_rows(model, arr, W, taus, batch_size, engine_bytes, targets=targets, log=log)
    figures = lag_figures(model, arr, W, rows, batch_size)
    trained = evaluate_baselines(list(baselines), tokenizer_baseline, arr, W, batch_size, threads)
    for b in trained:
        log(f"baseline {b['label']}: bpb {b['bpb']:.4f}, {fmt(b['flops_per_byte'])} FLOPs/byte")
    byte_base = dict(flops_per_byte=rows[0]["byte_baseline_flops_per_byte"],
                     flops_per_byte_split=rows[0]["byte_baseline_flops_per_byte_split"],
                     kv_bytes_per_byte=rows[0]["byte_baseline_kv_bytes_per_byte"])
    eng = [r["engine"] for r in rows if "engine" in r]
    engine_summary = dict(bytes_per_row=min(engine_bytes, W, len(arr)) if eng else 0, rows=2 if eng else 0,
                          all_agree=all(e["agree"] for e in eng) if eng else None,
                          logits_all_agree=all(e["logits_agree"] for e in eng) if eng else None)
    return SweepResult(model=model_info(model, label), data=data, window=W, targets=targets, rows=rows,
                       byte_baseline=byte_base, baselines=trained, engine_check=engine_summary, lag_figures=figures,
                       spread=spread_summary(rows))
