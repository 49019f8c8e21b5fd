"""The scale experiment: where Scratchpad Patching pays -- the trend with trunk size at equal training
compute. At each trunk width (and local design) every model (byte, p16-plain, p16-sp, p4-sp, bpe:
one trunk) trains to the same budget (training FLOPs, bytes or time), logs its learning curve, is
scored on every held-out set at every τ and audited; the pilot compares local designs at one width.
scale_report.py turns the results into the gap, the trend and the crossover."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from eval.experiments.reproduce import Plan, evaluate_model, training_budget
from eval.experiments.tokenizer_baseline import TokenBaseline, train_baseline
from eval.experiments.training import train_variant
from scratchpad import ModelConfig, build_model
from scratchpad.accounting import parameter_counts

MODELS = {"byte": "heavy-byte", "p16-plain": "heavy-p16-plain", "p16-sp": "heavy-p16", "p4-sp": "heavy-p4", "bpe": "heavy-byte"}
DEFAULT_MODELS = "byte,p16-plain,p16-sp,bpe"
DEFAULT_THRESHOLDS = "0,1.5,3,inf"
PILOT_MODEL = "p16-sp"


def scale_config(key: str, d: int, local: tuple[int, int], tiny: bool) -> ModelConfig:
    """The model `key` with trunk width d and local design (span, width); aux depth 2."""
    base = ModelConfig.preset(("tiny-" if tiny else "") + MODELS[key])
    span, width = local
    return dataclasses.replace(base, name=f"{key}-d{d}-span{span}-w{width}", d_model=d, d_local=width,
                               local_attn_span=span, n_aux_layers=2).validate()


def environment(a) -> dict:
    """Core pinning and load, stated in the report."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return dict(cores=cores, cpu_count=os.cpu_count(), threads=a.threads, loadavg=list(os.getloadavg()),
                time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def train_bpe(key: str, cfg: ModelConfig, run: Path, sets: list[dict], budget: dict, a, log) -> dict:
    """The BPE baseline with this trunk: trained once into run/baseline (reused after), scored per set."""
    folder = run / "baseline"
    if (folder / "token_lm.json").is_file():
        tb = TokenBaseline.load(folder)
        log("  reused a finished run")
    else:
        run.mkdir(parents=True, exist_ok=True)
        tb = train_baseline(a.data, cfg, sample_bytes=a.bpe_sample_bytes, train_bytes=a.bpe_train_bytes,
                            seq_len_bytes=a.seq_len, batch_size=a.batch_size, lr=a.lr, warmup=a.warmup, seed=a.seed,
                            log=lambda s: log("  " + s), **budget)
        tb.save(folder)
    evals = {}
    for s in sets:
        r = tb.evaluate(s["arr"], a.eval_batch)
        evals[s["name"]] = dict(rows=[dict(threshold=float("inf"), **r)])
        log(f"  {s['name']}: bpe {r['bpb']:.4f}")
    m = tb.meta
    return dict(key=key, name=cfg.name, params=tb.params, trunk_params=None, scratchpad=False, steps=m["steps"],
                train_flops=m["train_flops"], train_bytes=m["train_bytes"], train_seconds=m["train_seconds"],
                causality="n/a (token model)", causality_passed=None, evals=evals, curve=[])


def from_log(run: Path) -> dict:
    """What the run's log says beyond the evaluation: its learning curve ([[cumulative training FLOPs,
    val BPB at tau = inf]] at each eval event) and when it started training."""
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    flops = {e["step"]: e.get("flops") for e in log if e.get("event") == "step"}
    return dict(curve=[[flops[e["step"]], e["val_bpb"]] for e in log if e.get("event") == "eval" and flops.get(e["step"])],
                started=next((e.get("time") for e in log if e.get("event") == "start"), None))


def run_model(key: str, cfg: ModelConfig, folder: Path, sets: list[dict], taus: list[float], budget: dict, a,
              log=lambda line: None) -> dict:
    """Train (or reuse / resume) one model and evaluate it."""
    log(f"{key} ({cfg.name}) -> {folder}")
    if key == "bpe":
        res = train_bpe(key, cfg, folder, sets, budget, a, log)
    else:
        cfg_path = folder.parent / f"{key}.config.json"
        folder.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(cfg.to_json())
        t0 = time.perf_counter()
        reused = train_variant(None, a, folder, config=str(cfg_path), resume_unfinished=True)[0]
        log(f"  {'reused a finished run' if reused else f'trained in {time.perf_counter() - t0:.0f}s'}")
        res = evaluate_model(key, folder, sets, taus if cfg.scratchpad else [float("inf")], a, log)
        res.update(from_log(folder))
    res["trunk_params"] = parameter_counts(build_model(cfg))["trunk"]
    res["d_model"] = cfg.d_model
    return res


@dataclass
class ScalePlan(Plan):
    """A reproduce Plan plus the BPE baseline's tokenizer sample and training bytes, and whether this
    is the local-design pilot."""

    bpe_sample_bytes: int = 4 << 20
    bpe_train_bytes: int = 32 << 20
    pilot: bool = False


@dataclass
class ScaleResult:
    """One result per model, in training order: its key, scale d, local design, budget, training
    (steps, FLOPs, learning curve), evaluation rows per held-out set and causality audit."""

    results: list[dict]


def run(plan: ScalePlan, grid: dict, byte_configs: dict, sets: list[dict], taus: list[float], runs: Path, byte_steps: int,
        on_result=lambda results: None, log=lambda line: None) -> ScaleResult:
    """Train and evaluate every model of grid {(d, local): {key: config}}, each cell to the budget its
    byte baseline (byte_configs[(d, local)]) spends in byte_steps steps; on_result(results so far)
    after every model (the report is rewritten as the runs go)."""
    results = []
    for (d, local), configs in grid.items():
        budget = training_budget(plan.budget, byte_steps, byte_configs[(d, local)], configs, plan)
        cell = dataclasses.replace(plan, steps=budget["steps"], flops_budget=budget["flops_budget"])
        tag = f"d{d}" + (f"-span{local[0]}-w{local[1]}" if plan.pilot or local != (4, 64) else "")
        for k, cfg in configs.items():
            res = run_model(k, cfg, runs / tag / k, sets, taus, budget, cell, log)
            res.update(scale=d, local=f"{local[0]}x{local[1]}", budget=budget)
            results.append(res)
            on_result(results)
    return ScaleResult(results)
