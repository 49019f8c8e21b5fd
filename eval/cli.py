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
    (("serve",), "infer.serve", "OpenAI-compatible completions server (continuous batching; needs the [serve] extra)"),
    (("train",), "train.cli", "train or fine-tune a model"),
    (("data", "build"), "train.corpus.installed", "build a byte corpus (text or code) from installed sources"),
    (("data", "build", "files"), "train.corpus.folder", "build a byte corpus from a folder of your own files"),
    (("show",), "eval.show", "one HTML page: a text byte by byte, its entropy, patches and scratchpads (a τ slider)"),
    (("eval", "causality"), "eval.causality_cli", "causality audit: future bytes must not move past logits"),
    (("eval", "bpb"), "eval.experiments.bpb_cli", "bits per byte on held-out data"),
    (("eval", "sweep"), "eval.experiments.sweep_cli", "entropy-threshold sweep: BPB vs FLOPs and KV per byte"),
    (("eval", "lag"), "eval.experiments.lag_cli", "patch-lag profile, trunk's share, aux head's own BPB"),
    (("eval", "reproduce"), "eval.experiments.reproduce_cli", "SP vs byte baseline and plain patching at equal training data"),
    (("eval", "scale"), "eval.experiments.scale_cli", "the trend with trunk size: SP vs byte, plain P16 and BPE at equal training FLOPs"),
    (("eval", "variants"), "eval.experiments.variants_cli", "reproduce the residual byte patching study's table"),
    (("eval", "triggers"), "eval.experiments.triggers_cli", "scratchpad trigger ablation at matched rate"),
    (("eval", "code"), "eval.experiments.code_cli", "code BPB and next-line completion"),
    (("eval", "harness"), "eval.experiments.harness_cli", "lm-evaluation-harness tasks per tau: accuracy, scratchpad rate, FLOPs/byte ([harness] extra)"),
    (("eval", "tokenizer"), "eval.experiments.tokenizer_baseline_cli", "train the BPE-tokenizer baseline (same trunk over tokens)"),
    (("bench", "generate"), "eval.bench.generate_cli", "decode speed: SP vs byte-level baseline"),
    (("bench", "serve"), "eval.bench.serve_cli", "load test of scratchpad serve: bytes/s, time to first byte, latency; --soak: poison, disconnects, oversized bodies"),
    (("bench", "train"), "eval.bench.train_cli", "training throughput of the presets"),
    (("bench", "kernels"), "eval.bench.kernels", "scan kernel benchmarks"),
    (("bench", "gpu"), "eval.bench.gpu", "the prepared GPU run (--rehearse: the same plan on CPU): gpu tests, graph decode == forward, decode, training, kernels, compile"),
]


def usage(group: str | None = None) -> str:
    """The command list (of one group, e.g. "eval", when given)."""
    head = f"scratchpad {group} <subcommand>" if group else "scratchpad <command>"
    lines = [f"usage: {head} [options]   (add --help to any command for its options)", ""]
    for words, module, help_text in COMMANDS:
        if group is None or words[0] == group:
            lines.append(f"  {' '.join(words):<18} {help_text}")
    return "\n".join(lines)


def groups() -> list[str]:
    """First words shared by several commands ("eval", "bench", "data")."""
    return sorted({words[0] for words, _, _ in COMMANDS if len(words) > 1})


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
    if found is None and argv[0] in groups():
        subs = list(dict.fromkeys(w[1] for w, _, _ in COMMANDS if w[0] == argv[0] and len(w) > 1))
        if len(argv) > 1 and argv[1] in ("-h", "--help", "help"):
            print(usage(argv[0]))
            return 0
        given = f"unknown subcommand {argv[1]!r}" if len(argv) > 1 else "a subcommand is needed"
        print(f"error: scratchpad {argv[0]}: {given}; one of: {', '.join(subs)}", file=sys.stderr)
        return 2
    if found is None:
        print(f"error: unknown command {argv[0]!r}; commands: {', '.join(sorted({w[0] for w, _, _ in COMMANDS}))} "
              f"(scratchpad --help lists them)", file=sys.stderr)
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
