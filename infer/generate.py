"""`scratchpad generate`: stream bytes from a prompt with entropy-triggered scratchpads.

    scratchpad generate "Once upon a time" --entropy-threshold 1.5 --max-bytes 200 --stats
"""
from __future__ import annotations

import argparse
import codecs
import json
import math
import sys
import time
from pathlib import Path

import torch

from infer.engine import Engine, parse_threshold
from infer.stats import decode_stats
from scratchpad import load_model
from scratchpad.errors import UserError, run_cli


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{what} {path}: {e.strerror}") from None


def budget_threshold(model, prompt: bytes, rate: float) -> float:
    """tau such that about a fraction `rate` of the prompt's bytes would trigger a scratchpad."""
    if not 0 <= rate <= 1:
        raise UserError(f"--scratchpad-budget must be a fraction in [0, 1], got {rate}")
    if rate == 0:
        return math.inf
    if len(prompt) < 2:
        raise UserError("--scratchpad-budget calibrates on the prompt; give a prompt of at least 2 bytes")
    x = torch.tensor(list(prompt[-model.cfg.max_seq_len:]), dtype=torch.long).unsqueeze(0)
    with torch.no_grad():
        out = model(x)
    ent = out.entropy[~out.ends]
    if ent.numel() == 0:
        return math.inf
    return float(ent.float().quantile(1 - rate).clamp(min=0))


def build_parser():
    ap = argparse.ArgumentParser(prog="scratchpad generate", description=__doc__.split("\n")[0])
    ap.add_argument("prompt", nargs="?", default=None, help="prompt text (UTF-8); empty = beginning of text")
    ap.add_argument("--prompt-file", help="read the prompt's bytes from a file (any bytes)")
    ap.add_argument("--prompts-file", help="one prompt per line; generates them as one batch")
    ap.add_argument("--batch", type=int, default=1, help="repeat the prompt this many times in one batch")
    ap.add_argument("--model", help="model folder (default: the packaged default model)")
    ap.add_argument("--entropy-threshold", "-t", default="1.5", help="tau in nats; 'inf'/'none' = no scratchpads")
    ap.add_argument("--scratchpad-budget", type=float, help="pick tau on the prompt so about this fraction of bytes trigger")
    ap.add_argument("--max-bytes", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    ap.add_argument("--no-eos", action="store_true", help="do not stop at the end-of-text byte")
    ap.add_argument("--stats", action="store_true", help="print scratchpad rate, trunk calls, FLOPs and KV vs byte baseline")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    ap.add_argument("--raw", action="store_true", help="write raw bytes (no UTF-8 repair)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    return ap


def gather_prompts(args) -> list[bytes]:
    sources = sum(x is not None for x in (args.prompt, args.prompt_file, args.prompts_file))
    if sources > 1:
        raise UserError("give only one of PROMPT, --prompt-file, --prompts-file")
    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    if args.prompts_file:
        lines = read_file(args.prompts_file, "prompts file").split(b"\n")
        prompts = [line for line in lines if line.strip()]
        if not prompts:
            raise UserError(f"prompts file {args.prompts_file} holds no prompt")
        return prompts
    prompt = read_file(args.prompt_file, "prompt file") if args.prompt_file else (args.prompt or "").encode("utf-8")
    return [prompt] * args.batch


class Stream:
    """Writes bytes as they come: UTF-8 held until complete, invalid bytes as U+FFFD (or raw)."""

    def __init__(self, raw: bool):
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, row: int, data: bytes):
        if self.raw:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(self.decoder.decode(data))
            sys.stdout.flush()

    def close(self):
        if not self.raw:
            sys.stdout.write(self.decoder.decode(b"", final=True))
        sys.stdout.write("\n")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_bytes < 1:
        raise UserError(f"--max-bytes must be >= 1, got {args.max_bytes}")
    if args.threads:
        torch.set_num_threads(args.threads)
    tau = parse_threshold(args.entropy_threshold)
    prompts = gather_prompts(args)
    model = load_model(args.model)
    if args.scratchpad_budget is not None:
        tau = budget_threshold(model, prompts[0], args.scratchpad_budget)
    limit = model.cfg.max_seq_len
    for p in prompts:
        if len(p) >= limit:
            print(f"note: prompt of {len(p)} bytes exceeds the model's {limit}-byte context; "
                  f"keeping its last {limit - 1} bytes", file=sys.stderr)
            break
    stream = Stream(args.raw) if len(prompts) == 1 and not args.json else None
    engine = Engine(model)
    start = time.perf_counter()
    gens = engine.generate(prompts, max_bytes=args.max_bytes, threshold=tau, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=[s.encode() for s in args.stop],
                           eos_byte=None if args.no_eos else 0, on_bytes=stream)
    seconds = time.perf_counter() - start
    stats = decode_stats(model.cfg, gens, seconds)
    stats["threshold"] = tau if math.isfinite(tau) else "inf"
    if args.json:
        print(json.dumps({"outputs": [g.output.decode("utf-8", errors="replace") for g in gens],
                          "stop_reasons": [g.stop_reason for g in gens], "stats": stats}))
        return 0
    if stream:
        stream.close()
    else:
        for i, g in enumerate(gens):
            text = g.output.decode("utf-8", errors="replace")
            print(f"--- [{i}] {g.prompt[:40]!r} ({g.stop_reason})\n{text}")
    if args.stats:
        print(format_stats(stats), file=sys.stderr)
    return 0


def format_stats(s: dict) -> str:
    return (f"[stats] tau={s['threshold']}  scratchpad rate {s['scratchpad_rate']:.3f}  "
            f"trunk calls/byte {s['trunk_calls_per_byte']:.3f}  "
            f"FLOPs/byte {s['flops_per_byte'] / 1e6:.2f}M ({s['flops_ratio_vs_byte']:.2f}x byte baseline)  "
            f"KV bytes/byte {s['kv_bytes_per_byte']:.0f} ({s['kv_ratio_vs_byte']:.3f}x)  "
            f"{s['bytes_per_second']:.0f} bytes/s")


if __name__ == "__main__":
    sys.exit(run_cli(main))
