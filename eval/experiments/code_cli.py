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

import sys

from eval.experiments.code import CodeResult, run
from eval.loading import load_eval_model
from eval.report import fmt, out_folder, plot_bars, short_path, table, write_report
from eval.windows import data_file, read_bytes
from infer.options import parse_threshold
from scratchpad.errors import run_cli
from scratchpad.flags import THRESHOLD_FLAGS, Parser, add_threads_flag, describe, int_flag


def render(res: CodeResult, out, seed: int, max_line_bytes: int) -> None:
    """code.md, code.json and code.png into out."""
    d = res.data
    head = ["model", "τ", "BPB held-out code", "BPB held-out Python", "next-line exact", "exact match", "similarity",
            "scratchpad rate (gen)"]
    body = [[f"{r['role']}: {r['model']['path']}", r["threshold"], r["bpb_code"], r["bpb_python"],
             f"{r['completion']['exact']}/{r['completion']['lines']}", r["completion"]["exact_match"],
             r["completion"]["mean_similarity"], r["completion"]["scratchpad_rate"]] for r in res.models]
    ex_head = ["line", "target"] + [f"{r['role']} output" for r in res.models]
    ex_body = [[f"doc {ln['document']}:{ln['line']}", _cell(ln["target"])]
               + [_cell(ln["outputs"][r["role"]]["output"]) + (" ✓" if ln["outputs"][r["role"]]["exact"] else "") for r in res.models]
               for ln in res.lines[:12]]
    sections = [
        f"Data: `{d['path']}` ({d['file_bytes']:,} bytes, {d['python_documents']} held-out documents parse as Python with functions). "
        f"BPB over the first {d['bpb_bytes_code']:,} bytes of the file and over {d['bpb_bytes_python']:,} bytes of its Python documents, "
        "in non-overlapping windows scored from an empty context.",
        f"Next-line completion: {len(res.lines)} lines inside function bodies (seed {seed}; not blank, comment-only or "
        f"docstring; at most {max_line_bytes} bytes); prompt = 0x00 + everything before the line in its document "
        "(last bytes up to the context); greedy decode until a newline; exact match after stripping whitespace. "
        "Similarity = difflib character ratio.",
        table(head, body),
    ]
    if res.delta:
        sections.append("Fine-tuned minus base: " + ", ".join(f"{k} {fmt(v)}" for k, v in res.delta.items() if v is not None) + ".")
    sections.append("## First lines\n\n" + table(ex_head, ex_body))
    note = plot_bars(out / "code.png", ["BPB, held-out code", "BPB, held-out Python", "next-line similarity"],
                     [dict(label=f"{r['role']} ({r['completion']['exact']}/{r['completion']['lines']} lines exact)",
                           values=[r["bpb_code"], r["bpb_python"], r["completion"]["mean_similarity"]]) for r in res.models],
                     "bits per byte / similarity (0-1)", f"Code evaluation, {short_path(d['path'])}")
    write_report(out, "code", "Code: BPB and next-line completion", sections, res.json(), png_note=note, png=True)


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
    res = run(models, path, bytes(read_bytes(path)), tau, a.max_bytes, a.lines, a.max_line_bytes, a.context, a.window,
              a.batch_size, a.seed, log=lambda line: print(line, flush=True))
    render(res, out, a.seed, a.max_line_bytes)
    print(f"-> {out / 'code.md'}")
    return 0


def _cell(s: str, n: int = 60) -> str:
    s = s.replace("`", "'")
    return "`" + (s if len(s) <= n else s[: n - 1] + "…") + "`" if s else "(empty)"


if __name__ == "__main__":
    sys.exit(run_cli(main))
