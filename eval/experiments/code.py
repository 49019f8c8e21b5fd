"""`scratchpad eval code`: BPB on held-out code and next-line exact match on held-out Python
functions, for a model and (optionally) its code fine-tuned version.

    scratchpad eval code --data /work/data/code --finetuned runs/code-ft --out reports/code
    (fine-tune first: scratchpad train --init-from scratchpad/default_model --data /work/data/code --out runs/code-ft ...)

* BPB: the first --max-bytes of val.bin (all held-out code, e.g. C and Python) and, separately, the
  held-out Python documents only, scored like `eval bpb` (non-overlapping windows).
* Next line: held-out documents (val.bin, split at the 0x00 separator) that parse as Python are
  searched for lines inside function bodies (not blank, not comment-only, not the docstring); a
  seeded sample of them is completed: the prompt is the separator plus everything in the document
  before the line (its last --context bytes), the model generates greedily (temperature 0) until a
  newline, and the output matches when it equals the line after stripping surrounding whitespace.
  A character-level similarity (difflib ratio) is reported next to exact match.
Writes code.md and code.json into --out.
"""
from __future__ import annotations

import ast
import difflib
import math
import sys
import time

import numpy as np

from eval.experiments.bpb import run_bpb
from eval.loading import load_eval_model, model_info
from eval.report import fmt, out_folder, plot_bars, short_path, table, write_report
from eval.windows import data_file, default_window, read_bytes
from infer.options import parse_threshold
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import THRESHOLD_FLAGS, Parser, add_threads_flag, describe, int_flag
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
    from infer.engine import Engine

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


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval code", description=describe(__doc__))
    ap.add_argument("--model", help="model folder (default: the packaged default model)")
    ap.add_argument("--finetuned", help="the same model after code fine-tuning (model or training --out folder)")
    ap.add_argument("--data", required=True, help="code corpus folder (val.bin) or a byte file")
    ap.add_argument("--split", default="val")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", default="1.5", metavar="TAU",
                    help="tau for BPB and generation (default 1.5; inf = none)")
    ap.add_argument("--max-bytes", type=int_flag("--max-bytes", 2), default=1 << 17, help="bytes scored for BPB (default 131072)")
    ap.add_argument("--lines", type=int_flag("--lines"), default=100, help="held-out function-body lines to complete (default 100)")
    ap.add_argument("--max-line-bytes", type=int_flag("--max-line-bytes", 2), default=120,
                    help="longest line to pick, and the generation limit (default 120)")
    ap.add_argument("--context", type=int_flag("--context", 2), help="prompt bytes kept (default min(max_seq_len, 1024) - 1)")
    ap.add_argument("--window", type=int_flag("--window", 2), help="BPB window (default min(max_seq_len, 1024))")
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=8, help="windows per forward / prompts per generation batch")
    ap.add_argument("--seed", type=int_flag("--seed", 0), default=0)
    add_threads_flag(ap)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    tau = parse_threshold(a.threshold, "--threshold")
    out = out_folder(a.out)
    roles = [("base", a.model)] + ([("finetuned", a.finetuned)] if a.finetuned else [])
    models = [(role, *load_eval_model(path, a.threads)) for role, path in roles]
    path = data_file(a.data, a.split)
    raw = bytes(read_bytes(path))
    docs = python_documents(raw)
    if not docs:
        raise UserError(f"--data {path}: no held-out document parses as Python with a function in it "
                        f"(documents are separated by 0x00; use a code corpus such as 'scratchpad data build code')")
    py_bytes = np.frombuffer(bytes([DOCUMENT_SEPARATOR]).join(d for _, d, _ in docs), np.uint8)[: a.max_bytes]
    code_bytes = np.frombuffer(raw, np.uint8)[: a.max_bytes]

    results = []
    items = None
    for role, model, label in models:
        W = default_window(model.cfg, a.window)
        context = min(a.context or W - 1, model.cfg.max_seq_len - 1)
        if items is None:
            items = pick_lines(docs, a.lines, a.max_line_bytes, a.seed)
            if not items:
                raise UserError(f"--data {path}: the Python documents have no function-body line of at most {a.max_line_bytes} bytes")
        tau_m = tau if model.cfg.scratchpad else math.inf
        t0 = time.perf_counter()
        res = dict(role=role, model=model_info(model, label), threshold=tau_m, window=W)
        for key, arr in (("code", code_bytes), ("python", py_bytes)):
            if len(arr) < W + 1:
                res[f"bpb_{key}"] = None
                res[f"bpb_{key}_note"] = f"{len(arr)} bytes, fewer than one window of {W + 1}"
                continue
            r = run_bpb(model, arr, W, tau_m, a.batch_size)
            res[f"bpb_{key}"] = r["bpb"]
            res[f"bpb_{key}_bytes"] = r["bytes"]
            res[f"scratchpad_rate_{key}"] = r["scratchpad_rate"]
        comp = complete(model, [dict(it, prompt=it["prompt"][-context:]) for it in items], tau_m, a.max_line_bytes, a.batch_size)
        res["completion"] = {k: v for k, v in comp.items() if k != "per_line"}
        res["per_line"] = comp["per_line"]
        res["seconds"] = time.perf_counter() - t0
        results.append(res)
        print(f"{role}: bpb {fmt(res['bpb_code'])} on held-out code, {fmt(res['bpb_python'])} on held-out Python; next-line exact "
              f"match {comp['exact']}/{comp['lines']} ({100 * comp['exact_match']:.1f}%), similarity {comp['mean_similarity']:.3f}",
              flush=True)

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
    result = dict(command="code", data=dict(path=str(path), file_bytes=len(raw), python_documents=len(docs),
                                            bpb_bytes_code=len(code_bytes), bpb_bytes_python=len(py_bytes)),
                  models=results, finetuned_minus_base=delta, lines=lines,
                  method=dict(bpb="non-overlapping windows, each scored fully from an empty context",
                              completion="greedy until newline, exact match after strip; prompt = separator + document before the line"))
    head = ["model", "τ", "BPB held-out code", "BPB held-out Python", "next-line exact", "exact match", "similarity",
            "scratchpad rate (gen)"]
    body = [[f"{r['role']}: {r['model']['path']}", r["threshold"], r["bpb_code"], r["bpb_python"],
             f"{r['completion']['exact']}/{r['completion']['lines']}", r["completion"]["exact_match"],
             r["completion"]["mean_similarity"], r["completion"]["scratchpad_rate"]] for r in results]
    ex_head = ["line", "target"] + [f"{r['role']} output" for r in results]
    ex_body = [[f"doc {ln['document']}:{ln['line']}", _cell(ln["target"])]
               + [_cell(ln["outputs"][r["role"]]["output"]) + (" ✓" if ln["outputs"][r["role"]]["exact"] else "") for r in results]
               for ln in lines[:12]]
    sections = [
        f"Data: `{path}` ({len(raw):,} bytes, {len(docs)} held-out documents parse as Python with functions). "
        f"BPB over the first {len(code_bytes):,} bytes of the file and over {len(py_bytes):,} bytes of its Python documents, "
        "in non-overlapping windows scored from an empty context.",
        f"Next-line completion: {len(items)} lines inside function bodies (seed {a.seed}; not blank, comment-only or "
        f"docstring; at most {a.max_line_bytes} bytes); prompt = 0x00 + everything before the line in its document "
        "(last bytes up to the context); greedy decode until a newline; exact match after stripping whitespace. "
        "Similarity = difflib character ratio.",
        table(head, body),
    ]
    if delta:
        sections.append("Fine-tuned minus base: " + ", ".join(f"{k} {fmt(v)}" for k, v in delta.items() if v is not None) + ".")
    sections.append("## First lines\n\n" + table(ex_head, ex_body))
    note = plot_bars(out / "code.png", ["BPB, held-out code", "BPB, held-out Python", "next-line similarity"],
                     [dict(label=f"{r['role']} ({r['completion']['exact']}/{r['completion']['lines']} lines exact)",
                           values=[r["bpb_code"], r["bpb_python"], r["completion"]["mean_similarity"]]) for r in results],
                     "bits per byte / similarity (0-1)", f"Code evaluation, {short_path(path)}")
    write_report(out, "code", "Code: BPB and next-line completion", sections, result, png_note=note, png=True)
    print(f"-> {out / 'code.md'}")
    return 0


def _diff(a, b):
    return None if a is None or b is None else a - b


def _cell(s: str, n: int = 60) -> str:
    s = s.replace("`", "'")
    return "`" + (s if len(s) <= n else s[: n - 1] + "…") + "`" if s else "(empty)"


if __name__ == "__main__":
    sys.exit(run_cli(main))
