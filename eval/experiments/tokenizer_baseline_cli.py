"""`scratchpad eval tokenizer`: train the tokenizer baseline, a sentencepiece BPE tokenizer trained on
a sample of the training corpus and the same trunk (the scratchpad package's `Stack` of a preset's
trunk mixers and width) trained over its tokens; BPB is counted per byte (total token NLL / bytes),
so it sits on the same axis as the byte-level models.

    scratchpad eval tokenizer --data /work/data/text --out runs/tok --preset byte --time-budget 20m

Lossless on any bytes: bytes map 1:1 to the code points U+0000..U+00FF (Latin-1) before
sentencepiece sees them, normalisation is off (identity, no dummy prefix, whitespace kept), the
newline is a user-defined piece (sentencepiece trains on lines), and byte fallback covers anything
unseen; decode(encode(b)) == b is checked on the evaluated bytes and reported. The merges therefore
act on bytes, as in byte-level BPE.

What it writes into --out (OUT, or OUT/baseline, is what `eval sweep --tokenizer-baseline` and
`eval variants --tokenizer-baseline` load):
    baseline/tokenizer.model         the sentencepiece model  } written atomically, like a
    baseline/token_lm.safetensors    the token LM's weights   } model checkpoint folder
    baseline/token_lm.json           vocab size, trunk config, token seq len, training summary, evaluation
    tokenizer_baseline.md / .json / .png   the report (the PNG: the training loss curve)
"""
from __future__ import annotations

import math
import sys

from eval.experiments.tokenizer_baseline import CLI_SUBFOLDER, TokenBaseline, run
from eval.report import out_folder, plot_xy, short_path, table, write_report
from eval.windows import data_file, read_bytes
from scratchpad import ModelConfig
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, add_threads_flag, describe, int_flag, parse_duration, set_threads


def report_rows(res: dict, meta: dict, params: int) -> list:
    """The report's one row: trunk, size, steps, speed, BPB, compression, FLOPs and KV per byte."""
    return [[meta.get("preset"), params, meta.get("steps"), meta.get("ms_per_step"), res["bpb"], res["bytes_per_token"],
             res["flops_per_byte"], res["kv_bytes_per_byte"], res["lossless"]]]


REPORT_HEADERS = ["trunk of", "params", "steps", "ms/step", "BPB (per byte)", "bytes/token", "FLOPs/byte", "KV bytes/byte",
                  "lossless"]


def render(tb: TokenBaseline, out, data, preset: str, eval_bytes: int) -> None:
    """tokenizer_baseline.md, .json and .png (the training loss curve) into out."""
    res = tb.meta["eval"]
    sections = [
        f"BPE tokenizer ({tb.tok.vocab_size} pieces, sentencepiece) trained on {tb.meta['tokenizer_sample_bytes']:,} bytes "
        f"of `{data}` train.bin; token LM = embedding → the `{preset}` trunk "
        f"({'/'.join(tb.model.trunk_cfg['trunk_mixers'])}, d={tb.model.trunk_cfg['d_model']}) → head, "
        f"windows of {tb.seq_len} tokens (≈{tb.meta['seq_len_bytes']} bytes). Evaluated on the first {eval_bytes:,} bytes of val.bin "
        f"in non-overlapping token windows; BPB = summed token NLL / bytes covered / ln 2.",
        table(REPORT_HEADERS, report_rows(res, tb.meta, tb.params)),
    ]
    per_byte = 1 / (math.log(2) * tb.meta["train_bytes_per_token"])  # nats/token -> bits/byte on the training data
    curve = tb.meta.get("loss_curve") or []
    note = plot_xy(out / "tokenizer_baseline.png",
                   [dict(label="training loss (bits per byte via train bytes/token)", x=[c[0] for c in curve],
                         y=[c[1] * per_byte for c in curve])],
                   "training step", "bits per byte",
                   f"BPE baseline ({tb.tok.vocab_size} pieces, {preset} trunk), {short_path(data)}",
                   points=[dict(label=f"held-out BPB {res['bpb']:.4f}", x=float(tb.meta["steps"]), y=res["bpb"])])
    write_report(out, "tokenizer_baseline", "Tokenizer baseline", sections, dict(command="tokenizer_baseline", **tb.meta,
                 params=tb.params, vocab_size=tb.tok.vocab_size, seq_len=tb.seq_len), png_note=note, png=True)


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval tokenizer", description=describe(__doc__))
    ap.add_argument("--data", required=True, help="corpus folder with train.bin and val.bin")
    ap.add_argument("--out", required=True, help="folder for the tokenizer, token LM and report")
    ap.add_argument("--preset", default="byte", help="take the trunk (mixers, width) of this preset (default byte)")
    ap.add_argument("--time-budget", help="training time (20m, 90s)")
    ap.add_argument("--steps", type=int_flag("--steps"), help="or a fixed number of steps")
    ap.add_argument("--vocab-size", type=int_flag("--vocab-size", 300), default=4096)
    ap.add_argument("--sample-bytes", type=int_flag("--sample-bytes", 1000), default=8 << 20,
                    help="bytes of train.bin the tokenizer learns from (default 8 MiB)")
    ap.add_argument("--train-bytes", type=int_flag("--train-bytes", 1000), default=32 << 20,
                    help="bytes of train.bin encoded for LM training (default 32 MiB)")
    ap.add_argument("--seq-len", type=int_flag("--seq-len", 8), help="context in bytes, converted to tokens (default min(1024, max_seq_len))")
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=8)
    ap.add_argument("--eval-bytes", type=int_flag("--eval-bytes", 2), default=1 << 16, help="bytes of val.bin scored (default 65536)")
    add_threads_flag(ap)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    ModelConfig.preset(a.preset)
    budget = parse_duration(a.time_budget) if a.time_budget else None
    if not budget and not a.steps:
        raise UserError("give --time-budget DURATION or --steps N")
    set_threads(a.threads)
    out = out_folder(a.out)
    val = read_bytes(data_file(a.data, "val"), a.eval_bytes)
    tb = run(a.data, a.preset, val, a.vocab_size, a.sample_bytes, a.train_bytes, budget, a.steps, a.seq_len, a.batch_size,
             log=lambda line: print(line, flush=True))
    tb.save(out / CLI_SUBFOLDER)
    render(tb, out, a.data, a.preset, len(val))
    res = tb.meta["eval"]
    print(f"tokenizer baseline: bpb {res['bpb']:.4f} ({res['bytes_per_token']:.2f} bytes/token, {tb.meta['steps']} steps) "
          f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
