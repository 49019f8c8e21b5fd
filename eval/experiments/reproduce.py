"""The reproduce experiment: the Scratchpad Patching headline, as a controlled experiment.

Five models of one design (the trunk-heavy `heavy-*` presets, or their `--scale gpu` form) are
trained on the same bytes (`byte`: every byte a patch; `p16-plain`: P = 16 without scratchpads;
`p16`, `p8`, `p4`: SP at P = 16, 8, 4) to an equal budget of training FLOPs, data or time. Every
SP model is scored at every τ, the others at τ = ∞, on the same held-out windows, with the lag
figures (eval/experiments/lag.py), inference FLOPs and KV per byte, the trunk KV the engine holds
after decoding a sample, and the causality audit of the trained weights; `targets` checks the
paper's claims at P = 16. Finished runs are reused and unfinished ones continue exactly.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from eval.causality import audit_model
from eval.engine_check import engine_kv, engine_sample
from eval.experiments.bpb import run_bpb
from eval.experiments.lag import lag_figures
from eval.experiments.training import TrainPlan, logged_flops, read_log, train_variant
from eval.report import fmt, jsonable
from scratchpad import ModelConfig, load_model
from scratchpad.accounting import parameter_counts, training_flops
from scratchpad.errors import UserError

MODELS = [("byte", "heavy-byte"), ("p16-plain", "heavy-p16-plain"), ("p16", "heavy-p16"), ("p8", "heavy-p8"),
          ("p4", "heavy-p4")]
SCALES = {"cpu": {}, "gpu": dict(d_model=512, d_local=96, n_heads=8, trunk_mixers=["ssm", "attn"] * 4)}
CLOSE_TO_DENSE = 0.02  # "BPB within 0.02 of its τ = 0 value"
KV_SAMPLE = 256  # bytes per row the engine decodes to measure the KV it holds


def model_config(preset: str, scale: str) -> ModelConfig:
    cfg = ModelConfig.preset(preset)
    if preset.startswith("tiny-") or not SCALES[scale]:
        return cfg
    return dataclasses.replace(cfg, name=f"{cfg.name}-{scale}", **SCALES[scale]).validate()


BUDGETS = ("flops", "bytes", "time")


def step_flops_floor(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Training FLOPs of one step without scratchpads (fixed patches): the least a step can cost."""
    return training_flops(cfg, batch, seq_len, commits=batch * (seq_len // cfg.patch_size), scratchpads=0)


def training_budget(kind: str, steps: int, byte_cfg: ModelConfig, configs: dict, a) -> dict:
    """The TrainArgs budget fields every model of one comparison trains to:
    flops  -> the byte baseline's training FLOPs for `steps` steps (`--train-bytes`), for every model;
    bytes  -> `steps` steps for every model (equal data);
    time   -> `a.time_budget` seconds of training-step time for every model."""
    if kind not in BUDGETS:
        raise UserError(f"--budget {kind!r}: choose from {', '.join(BUDGETS)}")
    if kind == "bytes":
        return dict(steps=steps, time_budget=None, flops_budget=None)
    if kind == "time":
        if not a.time_budget:
            raise UserError("--budget time needs --time-budget DURATION")
        return dict(steps=None, time_budget=a.time_budget, flops_budget=None)
    budget = steps * step_flops_floor(byte_cfg, a.batch_size, a.seq_len)
    for k, cfg in configs.items():
        floor = step_flops_floor(cfg, a.batch_size, a.seq_len)
        if budget < floor:
            raise UserError(f"--train-bytes: the FLOP budget {budget:.3e} is less than one training step of {k} "
                            f"({floor:.3e}); use more --train-bytes")
    return dict(steps=None, time_budget=None, flops_budget=budget)


def kv_sample(arr, window: int):
    """The bytes the engine decodes to measure its KV: two rows of KV_SAMPLE bytes (fewer in a short
    window, a multiple of 16 so that P = 16 commits a whole number of patches) -> LongTensor [2, n]."""
    n = max(16, min(KV_SAMPLE, window) // 16 * 16)
    return engine_sample(arr, window, n, rows=2)


def evaluate_model(key: str, run: Path, sets: list[dict], taus: list[float], a, log=lambda line: None) -> dict:
    """Every number of one trained model: per eval set, rows per τ with lag profiles and the figures,
    and the trunk KV the engine holds after decoding a sample (eval/engine_check.py: engine_kv).
    Kept in run/eval.json and reused while the checkpoint and the evaluation settings are the same."""
    folder = run / "last"
    settings = jsonable(dict(checkpoint_mtime=(folder / "model.safetensors").stat().st_mtime_ns, taus=taus, kv_sample=KV_SAMPLE,
                             window=a.window, eval_batch=a.eval_batch, audit_positions=a.audit_positions,
                             sets=[[s["path"], s["bytes"]] for s in sets]))
    cache = run / "eval.json"
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text(), parse_constant=float)
        except json.JSONDecodeError:
            saved = {}
        if saved.get("settings") == settings:
            log("  reused its evaluation (eval.json)")
            return restore_inf(saved["result"])
    model = load_model(folder).float().eval().to(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = model.cfg
    train_log = read_log(run)
    end = next((e for e in reversed(train_log) if e.get("event") == "end"), {})
    params = parameter_counts(model)
    res = dict(key=key, name=cfg.name, checkpoint=str(folder), params=params["total"],
               trunk_param_share=params["trunk"] / params["total"], patch_size=cfg.patch_size, scratchpad=cfg.scratchpad,
               steps=sum(e.get("event") == "step" for e in train_log), train_seconds=end.get("elapsed"),
               train_flops=logged_flops(train_log), train_bytes=sum(e.get("event") == "step" for e in train_log) * a.batch_size * a.seq_len,
               evals={})
    for s in sets:
        rows = [run_bpb(model, s["arr"], a.window, tau, a.eval_batch, lag=True)
                for tau in (taus if cfg.scratchpad else [math.inf])]
        res["evals"][s["name"]] = dict(rows=rows, engine_kv=engine_kv(model, kv_sample(s["arr"], a.window)),
                                       **lag_figures(model, s["arr"], a.window, rows, a.eval_batch))
        log(f"  {s['name']}: " + ", ".join(f"tau {fmt(r['threshold'])} {r['bpb']:.4f}" for r in rows))
    audit = audit_model(load_model(folder), key, length=min(160, cfg.max_seq_len), positions=a.audit_positions)
    res.update(causality="PASS" if audit.passed else f"FAIL (first leaking position {audit.first_leak})",
               causality_passed=audit.passed, causality_checks=audit.checks)
    del model
    gc.collect()
    cache.write_text(json.dumps(jsonable(dict(settings=settings, result=res))))
    return res


def restore_inf(v):
    """Undo jsonable's "inf" strings (thresholds) after reading a cached evaluation."""
    if v == "inf":
        return math.inf
    if isinstance(v, dict):
        return {k: restore_inf(x) for k, x in v.items()}
    if isinstance(v, list):
        return [restore_inf(x) for x in v]
    return v


def kv_target(sp: dict, byte: dict) -> dict:
    """The KV claim from what the engine held (engine_kv of the SP model and of the byte baseline
    on the same sample): exactly 1/16 of the byte baseline's trunk KV bytes per byte."""
    a, b = sp["kv_bytes_per_byte"], byte["kv_bytes_per_byte"]
    value = (f"{fmt(a / b)} (engine-held trunk KV after decoding {sp['bytes']:,} bytes: {a:.1f} vs {b:.1f} bytes per "
             f"byte; {sp['entries']} vs {byte['entries']} entries)" if b else "the byte baseline holds no trunk KV")
    return dict(target="KV per byte exactly 1/16 of the byte baseline (the engine's caches)", value=value,
                met=bool(b) and sp["bytes"] == byte["bytes"] and 16 * sp["kv_bytes"] == byte["kv_bytes"])


def targets(models: dict, set_name: str) -> list[dict]:
    """The paper's claims at P = 16, checked on one eval set."""
    byte, plain, sp = (models.get(k, {}).get("evals", {}).get(set_name) for k in ("byte", "p16-plain", "p16"))
    if not (byte and plain and sp):
        return []
    b, p = byte["rows"][0], plain["rows"][0]
    best = min(sp["rows"], key=lambda r: r["bpb"])
    dense = next(r for r in sp["rows"] if r["threshold"] == 0)
    gap = p["bpb"] - b["bpb"]
    closed = (p["bpb"] - best["bpb"]) / gap if gap > 0 else None
    near = [r for r in sp["rows"] if r["bpb"] <= dense["bpb"] + CLOSE_TO_DENSE]
    cheap = min(near, key=lambda r: r["flops_per_byte"])
    inf_row = next(r for r in sp["rows"] if math.isinf(r["threshold"]))
    s_inf, s_0 = inf_row["lag"]["offset_slope"], dense["lag"]["offset_slope"]
    rising = s_inf["slope"] is not None and s_inf["slope"] > 2 * s_inf["se"]
    flat = s_0["slope"] is not None and abs(s_0["slope"]) <= 2 * s_0["se"]
    return [
        dict(target="SP at its best τ closes ≥ 50% of the BPB gap between plain P=16 and the byte baseline",
             value=(f"{fmt(closed)} (plain {p['bpb']:.4f}, SP {best['bpb']:.4f} at τ={fmt(best['threshold'])}, byte "
                    f"{b['bpb']:.4f})" if closed is not None else
                    f"no gap: plain P=16 {p['bpb']:.4f} is not worse than the byte baseline {b['bpb']:.4f}"),
             met=closed is not None and closed >= 0.5),
        dict(target=f"at BPB within {CLOSE_TO_DENSE} of its τ = 0 value, ≤ 1/3 of the byte baseline's inference FLOPs",
             value=f"{fmt(cheap['flops_ratio_vs_byte'])}x at τ={fmt(cheap['threshold'])} (BPB {cheap['bpb']:.4f} vs "
                   f"{dense['bpb']:.4f} at τ=0)", met=cheap["flops_ratio_vs_byte"] <= 1 / 3),
        kv_target(sp["engine_kv"], byte["engine_kv"]),
        dict(target="lag profile at τ = ∞ rises with lag (slope > 2 standard errors)",
             value=f"{fmt(s_inf['slope'])} ± {fmt(s_inf['se'])} bits/byte per byte of lag", met=rising),
        dict(target="lag profile at τ = 0 is flat within noise (|slope| ≤ 2 standard errors)",
             value=f"{fmt(s_0['slope'])} ± {fmt(s_0['se'])}", met=flat),
    ]


def budget_text(a) -> str:
    """What is equal across the models, in words."""
    if a.flops_budget:
        return f"an equal training-FLOP budget of {a.flops_budget:.4e} (the byte baseline's on --train-bytes)"
    if a.time_budget:
        return f"an equal budget of {a.time_budget:g} s of training-step time"
    return f"equal training data ({a.steps} steps)"


@dataclass
class Plan(TrainPlan):
    """A TrainPlan plus the comparison's evaluation window, model scale and what is equal across
    models (budget: flops, bytes or time)."""

    window: int = 1024
    scale: str = "cpu"
    budget: str = "flops"


@dataclass
class ReproduceResult:
    """Per model (in order): its training and evaluation (evaluate_model); per eval set: the targets."""

    plan: Plan
    byte_steps: int
    models: dict
    sets: list[dict]
    targets: dict = field(default_factory=dict)

    def json(self, command: str) -> dict:
        p = self.plan
        return dict(command="reproduce", argv=command, data=str(p.data), steps=self.byte_steps, batch_size=p.batch_size,
                    seq_len=p.seq_len, budget=p.budget, flops_budget=p.flops_budget, time_budget=p.time_budget,
                    train_bytes=self.byte_steps * p.batch_size * p.seq_len, scale=p.scale, window=p.window,
                    models=self.models, targets=self.targets,
                    eval_sets=[{k: v for k, v in s.items() if k != "arr"} for s in self.sets])


def run(plan: Plan, configs: dict[str, ModelConfig], sets: list[dict], taus: list[float], runs: Path, byte_steps: int,
        log=lambda line: None) -> ReproduceResult:
    """Train (or reuse, or continue) each model of configs into runs/<key> under plan, and evaluate it
    on every held-out set in sets (dicts with name, path, bytes and arr: uint8 [n])."""
    models = {}
    for k, cfg in configs.items():
        folder = runs / k
        cfg_path = runs / f"{k}.config.json"
        cfg_path.write_text(cfg.to_json())
        log(f"{k} ({cfg.name}): {budget_text(plan)} -> {folder}")
        t0 = time.perf_counter()
        reused = train_variant(None, plan, folder, config=str(cfg_path), resume_unfinished=True)[0]
        log(f"  {'reused a finished run' if reused else f'trained in {time.perf_counter() - t0:.0f}s'}")
        models[k] = evaluate_model(k, folder, sets, taus, plan, log)
    return ReproduceResult(plan=plan, byte_steps=byte_steps, models=models, sets=sets,
                           targets={s["name"]: targets(models, s["name"]) for s in sets})
