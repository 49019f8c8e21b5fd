"""The report of `scratchpad eval harness`: the harness's metrics per tau, paired against the first
tau on the same documents, the gold choices' bits per byte, and the adapter's accounting."""
from __future__ import annotations

import math
from pathlib import Path

from eval.report import fmt, table, write_report
from eval.scoring import paired_difference

LN2 = math.log(2)


def metric_cells(results: dict, tasks: list[str]) -> dict[str, str]:
    """{"task metric": "value ± stderr"} for the requested tasks (a tag: all tasks it ran)."""
    names = [t for t in tasks if t in results]
    if len(names) < len(tasks):
        names += [t for t in results if t not in names]
    cells = {}
    for name in names:
        for key, value in results[name].items():
            metric, _, filt = key.partition(",")
            if not filt or "_stderr" in metric or not isinstance(value, (int, float)):
                continue
            se = results[name].get(f"{metric}_stderr,{filt}")
            label = f"{name} {metric}" + ("" if filt == "none" else f" ({filt})")
            cells[label] = fmt(value) + (f" ± {fmt(se)}" if isinstance(se, (int, float)) else "")
    return cells


def per_doc(samples: dict) -> dict:
    """From the harness's logged samples, per task: each metric's value per document, and for
    multiple-choice documents the gold choice's summed ln p and UTF-8 bytes."""
    out = {}
    for task, rows in samples.items():
        metrics: dict[str, dict] = {}
        gold_nats, gold_bytes = 0.0, 0
        for s in rows:
            for m in s.get("metrics", []):
                if isinstance(s.get(m), (int, float)):
                    metrics.setdefault(m, {})[str(s["doc_id"])] = float(s[m])
            target, args, resps = s.get("target"), s.get("arguments"), s.get("filtered_resps")
            if isinstance(target, int) and isinstance(resps, list) and len(resps) == len(args or []) > target >= 0:
                gold_nats -= float(resps[target][0])
                gold_bytes += len(str(args[target][1]).encode("utf-8"))
        out[task] = dict(metrics=metrics, gold_bytes=gold_bytes,
                         gold_bpb=gold_nats / gold_bytes / LN2 if gold_bytes else None)
    return out


def paired_vs_first(run: dict, first: dict) -> dict[str, dict]:
    """{"task Δmetric": {mean, se, documents}}: this run minus the first, per document, on the
    documents both scored."""
    out = {}
    for task, doc in run["docs"].items():
        for metric, values in doc["metrics"].items():
            base = first["docs"].get(task, {}).get("metrics", {}).get(metric, {})
            common = sorted(set(values) & set(base))
            if len(common) > 1:
                mean, se = paired_difference([values[d] for d in common], [base[d] for d in common])
                out[f"{task} Δ{metric}"] = dict(mean=mean, se=se, documents=len(common))
    return out


def write(out: Path, runs: list[dict], tasks: list[str], meta: dict, cfg):
    """harness.md (a row per tau) and harness.json (meta, and per tau the harness's output, the
    adapter's accounting and the per-task summaries) into out."""
    first_tau = "∞" if runs[0]["threshold"] == "inf" else fmt(runs[0]["threshold"])
    for r in runs:
        r["paired_vs_first"] = paired_vs_first(r, runs[0]) if r is not runs[0] else {}
        r["gold_bpb"] = {t: d["gold_bpb"] for t, d in r["docs"].items() if d["gold_bpb"] is not None}
    cells = [{**metric_cells(r["harness"]["results"], tasks), **{f"{t} gold BPB": fmt(v) for t, v in r["gold_bpb"].items()},
              **{k: f"{d['mean']:+.4f} ± {fmt(d['se'])}" for k, d in r["paired_vs_first"].items()}} for r in runs]
    columns = list(dict.fromkeys(k for c in cells for k in c))
    rows = [[float("inf") if r["threshold"] == "inf" else r["threshold"], *(c.get(k, "") for k in columns),
             r["scratchpad"]["scratchpad_rate"], r["scratchpad"]["trunk_calls_per_byte"], r["scratchpad"]["flops_per_byte"],
             r["scratchpad"]["flops_ratio_vs_byte"], r["scratchpad"]["bytes"], r["seconds"]] for r, c in zip(runs, cells)]
    head = runs[0]["harness"]
    n_docs = ", ".join(f"{t}: {n['effective']}" for t, n in head.get("n-samples", {}).items())
    acct = runs[0]["scratchpad"]
    sections = [
        f"Model: `{meta['model']}` ({cfg.name}, patcher {cfg.patcher}, P={cfg.patch_size}). Tasks: {', '.join(tasks)}"
        + (f" (include path `{meta['include_path']}`)" if meta["include_path"] else "")
        + f"; documents per task: {n_docs}; lm-eval {head.get('lm_eval_version', '?')}, adapter `scratchpad` "
          "(eval/harness.py).",
        f"Command: `{meta['command']}`",
        table(["τ", *columns, "scratchpad rate", "trunk calls / byte", "FLOPs / byte", "× byte baseline", "bytes",
               "seconds"], rows),
        f"Scoring is exact over UTF-8 bytes: a choice's log-likelihood is the sum of ln p over its bytes by the "
        f"parallel forward at τ (context truncated from the left to {acct['window']} bytes). ± is the harness's "
        f"standard error over documents. Δ columns: the run minus τ = {first_tau} on the same documents, with the "
        "standard error of the per-document difference (what both runs get right or wrong alike cancels). Gold "
        "BPB: bits per "
        "byte of the correct choices given their contexts. Accounting counts the events of every byte the model "
        "read (scratchpad.accounting.per_byte); the byte baseline is the byte-level model of equal trunk on the "
        f"same bytes ({fmt(acct['byte_baseline_flops_per_byte'])} FLOPs/byte).",
    ]
    for r in runs:
        r.pop("docs")
    write_report(out, "harness", "lm-evaluation-harness", sections, dict(meta, runs=runs))
