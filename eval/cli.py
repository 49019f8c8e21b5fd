"""`scratchpad`: the one console command. Dispatches to each part's thin CLI.

It lives in `eval` because eval sits at the top of the import graph
(kernels <- scratchpad <- train, infer <- eval) and may import every part.
Each subcommand module has `main(argv) -> int` and also runs as `python -m <module>`.
"""
from __future__ import annotations

import importlib
import sys

from scratchpad.errors import run_cli

# (words, module, help). Longest match wins, so "eval causality" is one command.
COMMANDS = [
    (("generate",), "infer.generate", "generate bytes from a prompt (streams)"),
    (("train",), "train.cli", "train or fine-tune a model"),
    (("data", "build"), "train.corpus", "build a byte corpus (text or code) from installed sources"),
    (("data", "build", "files"), "train.files", "build a byte corpus from a folder of your own files"),
    (("eval", "causality"), "eval.causality", "causality audit: future bytes must not move past logits"),
    (("eval", "bpb"), "eval.bpb", "bits per byte on held-out data"),
    (("eval", "sweep"), "eval.sweep", "entropy-threshold sweep: BPB vs FLOPs and KV per byte"),
    (("eval", "lag"), "eval.lag", "patch-lag profile, trunk's share, aux head's own BPB"),
    (("eval", "reproduce"), "eval.reproduce", "SP vs byte baseline and plain patching at equal training data"),
    (("eval", "variants"), "eval.variants", "reproduce the residual byte patching study's table"),
    (("eval", "triggers"), "eval.triggers", "scratchpad trigger ablation at matched rate"),
    (("eval", "code"), "eval.code", "code BPB and next-line completion"),
    (("eval", "tokenizer"), "eval.tokenizer_baseline", "train the BPE-tokenizer baseline (same trunk over tokens)"),
    (("bench", "generate"), "eval.bench_generate", "decode speed: SP vs byte-level baseline"),
    (("bench", "train"), "eval.bench_train", "training throughput of the presets"),
    (("bench", "kernels"), "kernels.bench", "scan kernel benchmarks"),
]


def usage() -> str:
    lines = ["usage: scratchpad <command> [options]   (scratchpad <command> --help for details)", ""]
    for words, module, help_text in COMMANDS:
        lines.append(f"  {' '.join(words):<18} {help_text}")
    return "\n".join(lines)


def resolve(argv: list[str]):
    best = None
    for words, module, _ in COMMANDS:
        if tuple(argv[: len(words)]) == words and (best is None or len(words) > len(best[0])):
            best = (words, module)
    return best


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    found = resolve(argv)
    if found is None:
        print(f"scratchpad: unknown command {' '.join(argv[:2])!r}\n\n{usage()}", file=sys.stderr)
        return 2
    words, module = found
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            print(f"scratchpad: '{' '.join(words)}' is not built yet ({module})", file=sys.stderr)
            return 2
        raise
    return run_cli(mod.main, argv[len(words):])


if __name__ == "__main__":
    sys.exit(main())
