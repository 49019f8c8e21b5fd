"""`scratchpad eval causality [--preset NAME ... | --all-presets | --model PATH]`: the causality
audit (eval/causality.py) on presets with random weights or on a trained model; one line per
model, exit 1 if any leaks. Changing byte k must leave every logit at positions t < k unchanged.
"""
from __future__ import annotations

import json
import sys

import torch

from eval.causality import audit_bytes, audit_model, calibrate_entropy_patcher
from scratchpad import ModelConfig, build_model, load_model
from scratchpad.errors import run_cli
from scratchpad.flags import Parser, describe, int_flag


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval causality", description=describe(__doc__))
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", action="append", help="preset name (repeatable)")
    src.add_argument("--all-presets", action="store_true", help="every preset (tiny forms, plus full size with --full)")
    src.add_argument("--model", help="model folder or training --out folder (its best/, else last/)")
    ap.add_argument("--full", action="store_true", help="with --all-presets: also the full-size presets (slow)")
    ap.add_argument("--length", type=int_flag("--length", 3), default=48, help="bytes per audit sequence")
    ap.add_argument("--positions", type=int_flag("--positions"), default=6, help="random perturbed positions per setting")
    ap.add_argument("--seed", type=int_flag("--seed", 0), default=0, help="seed of the perturbed positions and bytes")
    ap.add_argument("--json", action="store_true", help="print one JSON line with all results")
    args = ap.parse_args(argv)

    if args.model:
        targets = [(args.model, lambda: load_model(args.model))]
    else:
        names = args.preset or [n for n in ModelConfig.presets() if args.all_presets and (args.full or n.startswith("tiny-"))]
        if not names:
            names = [n for n in ModelConfig.presets() if n.startswith("tiny-")]
        for n in names:
            ModelConfig.preset(n)  # unknown names fail before any work
        targets = [(n, lambda n=n: build_model(ModelConfig.preset(n))) for n in names]

    results = []
    for name, make in targets:
        torch.manual_seed(args.seed)
        model = make().double()
        if not args.model:
            calibrate_entropy_patcher(model, audit_bytes(args.length, torch.Generator().manual_seed(args.seed)))
        r = audit_model(model, name, args.length, args.positions, args.seed)
        print(r.line(), flush=True)
        results.append(r)
    if args.json:
        print(json.dumps({"results": [r.__dict__ for r in results], "all_passed": all(r.passed for r in results)}))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
