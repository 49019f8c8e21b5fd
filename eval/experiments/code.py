"""The code experiment: BPB on held-out code (all of it, and its Python documents only) and
next-line exact match on held-out Python function bodies, for a model and optionally its code
fine-tuned version. See code_cli.py for how lines are picked and scored."""
from __future__ import annotations

import ast
import difflib
import math
import time
from dataclasses import dataclass

import numpy as np

from eval.experiments.bpb import run_bpb
from eval.loading import model_info
from eval.report import fmt
from eval.windows import default_window
from infer.engine import Engine
from scratchpad.errors import UserError
from scratchpad.vocab import DOCUMENT_SEPARATOR


def python_documents(raw: bytes) -> list[tuple[int, bytes, ast.Module]]:
    """(index, bytes, tree) of the documents that parse as Python and define a function."""
    docs = []
    for i, d in enumerate(raw.split(bytes([DOCUMENT_SEPARATOR]))):
        if b"def " not in d or b"\r" in d:
            continue
        try:
            tree = ast.parse(d.decode("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError):
            continue
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(tree)):
            docs.append((i, d, tree))
    return docs


def body_lines(doc: bytes, tree: ast.Module, max_line_bytes: int) -> list[int]:
    """0-based line numbers inside function bodies worth completing."""
    lines = doc.split(b"\n")
    keep = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            continue
        body = node.body
        skip = set()
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) and isinstance(first.value.value, str):
            skip = set(range(first.lineno - 1, (first.end_lineno or first.lineno)))
        for ln in range(body[0].lineno - 1, (node.end_lineno or body[-1].lineno)):
            if ln in skip or ln >= len(lines):
                continue
            s = lines[ln].strip()
            if s and not s.startswith(b"#") and len(lines[ln]) <= max_line_bytes:
                keep.add(ln)
    return sorted(keep)


def pick_lines(docs, n: int, max_line_bytes: int, seed: int) -> list[dict]:
    """A seeded sample of n candidate lines with their full prompts (separator + document before the line)."""
    cands = []
    for di, (_, doc, tree) in enumerate(docs):
        for ln in body_lines(doc, tree, max_line_bytes):
            cands.append((di, ln))
    if not cands:
        return []
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(cands), size=min(n, len(cands)), replace=False).tolist())
    items = []
    for c in chosen:
        di, ln = cands[c]
        idx, doc, _ = docs[di]
        lines = doc.split(b"\n")
        start = sum(len(x) + 1 for x in lines[:ln])
        prompt = bytes([DOCUMENT_SEPARATOR]) + doc[:start]
        items.append(dict(document=idx, line=ln + 1, prompt=prompt, target=lines[ln]))
    return items


def complete(model, items: list[dict], threshold: float, max_line_bytes: int, batch: int) -> dict:
    engine = Engine(model)
    outs, bytes_seen, scratch, commits = [], 0, 0, 0
    for i in range(0, len(items), batch):
        group = items[i : i + batch]
        gens = engine.generate([it["prompt"] for it in group], max_bytes=max_line_bytes + 1, threshold=threshold,
                               temperature=0.0, stop=[b"\n"], eos_byte=None)
        for g in gens:
            outs.append(g.output)
            bytes_seen += g.events.bytes
            scratch += g.events.scratchpads
            commits += g.events.commits
    per_line, exact, sim = [], 0, 0.0
    for it, o in zip(items, outs):
        want = it["target"].strip()
        got = o.rstrip(b"\n").strip()
        ok = got == want
        r = difflib.SequenceMatcher(None, want, got).ratio()
        exact += ok
        sim += r
        per_line.append(dict(output=got.decode("utf-8", "replace"), exact=bool(ok), similarity=r))
    n = max(len(items), 1)
    return dict(lines=len(items), exact=exact, exact_match=exact / n, mean_similarity=sim / n,
                scratchpad_rate=scratch / max(bytes_seen, 1), per_line=per_line)


def _diff(a, b):
    return None if a is None or b is None else a - b


@dataclass
class CodeResult:
    """Per model (base, then finetuned): BPB on code and Python, completion figures; the picked lines
    with each model's output; finetuned minus base when both ran."""

    data: dict
    models: list[dict]
    lines: list[dict]
    delta: dict | None

    def json(self) -> dict:
        return dict(command="code", data=self.data, models=self.models, finetuned_minus_base=self.delta,
                    lines=self.lines,
                    method=dict(bpb="non-overlapping windows, each scored fully from an empty context",
                                completion="greedy until newline, exact match after strip; prompt = separator + "
                                           "document before the line"))


def run(models: list[tuple], path, raw: bytes, tau: float, max_bytes: int, n_lines: int = 100, max_line_bytes: int = 120,
        context: int | None = None, window: int | None = None, batch_size: int = 8, seed: int = 0,
        log=lambda line: None) -> CodeResult:
    """models: (role, model, label) in order; raw: the held-out file's bytes (documents split at 0x00)."""
    docs = python_documents(raw)
    if not docs:
        raise UserError(f"--data {path}: no held-out document parses as Python with a function in it "
                        f"(documents are separated by 0x00; use a code corpus such as 'scratchpad data build code')")
    py_bytes = np.frombuffer(bytes([DOCUMENT_SEPARATOR]).join(d for _, d, _ in docs), np.uint8)[:max_bytes]
    code_bytes = np.frombuffer(raw, np.uint8)[:max_bytes]
    items = pick_lines(docs, n_lines, max_line_bytes, seed)
    if not items:
        raise UserError(f"--data {path}: the Python documents have no function-body line of at most {max_line_bytes} bytes")
    results = []
    for role, model, label in models:
        W = default_window(model.cfg, window)
        ctx = min(context or W - 1, model.cfg.max_seq_len - 1)
        tau_m = tau if model.cfg.scratchpad else math.inf
        t0 = time.perf_counter()
        res = dict(role=role, model=model_info(model, label), threshold=tau_m, window=W)
        for key, arr in (("code", code_bytes), ("python", py_bytes)):
            if len(arr) < W + 1:
                res[f"bpb_{key}"] = None
                res[f"bpb_{key}_note"] = f"{len(arr)} bytes, fewer than one window of {W + 1}"
                continue
            r = run_bpb(model, arr, W, tau_m, batch_size)
            res[f"bpb_{key}"] = r["bpb"]
            res[f"bpb_{key}_bytes"] = r["bytes"]
            res[f"scratchpad_rate_{key}"] = r["scratchpad_rate"]
        comp = complete(model, [dict(it, prompt=it["prompt"][-ctx:]) for it in items], tau_m, max_line_bytes, batch_size)
        res["completion"] = {k: v for k, v in comp.items() if k != "per_line"}
        res["per_line"] = comp["per_line"]
        res["seconds"] = time.perf_counter() - t0
        results.append(res)
        log(f"{role}: bpb {fmt(res['bpb_code'])} on held-out code, {fmt(res['bpb_python'])} on held-out Python; next-line "
            f"exact match {comp['exact']}/{comp['lines']} ({100 * comp['exact_match']:.1f}%), similarity "
            f"{comp['mean_similarity']:.3f}")
    lines = [dict(document=it["document"], line=it["line"], target=it["target"].decode("utf-8", "replace"),
                  prompt_bytes_available=len(it["prompt"]), outputs={r["role"]: r["per_line"][i] for r in results})
             for i, it in enumerate(items)]
    for r in results:
        del r["per_line"]
    delta = None
    if len(results) == 2:
        b, f = results
        delta = dict(bpb_code=_diff(f["bpb_code"], b["bpb_code"]), bpb_python=_diff(f["bpb_python"], b["bpb_python"]),
                     exact_match=f["completion"]["exact_match"] - b["completion"]["exact_match"],
                     mean_similarity=f["completion"]["mean_similarity"] - b["completion"]["mean_similarity"])
    data = dict(path=str(path), file_bytes=len(raw), python_documents=len(docs), bpb_bytes_code=len(code_bytes),
                bpb_bytes_python=len(py_bytes))
    return CodeResult(data=data, models=results, lines=lines, delta=delta)
