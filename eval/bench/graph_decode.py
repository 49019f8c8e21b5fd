"""Graph decode == parallel forward: teacher-force bytes through the engine's decode step and
compare every position's logits (and the commits and scratchpads counted) with the parallel
forward, for the packaged default model and a tiny all-SSM scratchpad model, at tau 0, 1.5, inf
and the stride trigger (a scratchpad at every 4th byte of a patch; every 2nd at P = 4).

    python -m eval.bench.graph_decode --device cuda     # the step replays as CUDA graphs
    python -m eval.bench.graph_decode --device cpu      # the step as graphs replay it (static), no capture

Prints one line per case, then one JSON line; exit code 1 when any case differs, runs the trunk at
other bytes than eager decode would, or could not be captured. A step of `scratchpad bench gpu`;
tests/test_gpu_decode.py asserts the same cases.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import torch

from eval.bench.train import synthetic_text
from infer import Engine
from infer.graphs import GraphCaptureError
from scratchpad import ModelConfig, build_model, load_model
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag

TAUS = (0.0, 1.5, math.inf)
REL_TOL = 1e-4  # float32 decode vs forward (DESIGN.md section 5)


def tiny_ssm_model() -> torch.nn.Module:
    """tiny-sp-fixed-p4 with an all-SSM trunk (the scan and scratch-step kernels, no attention)."""
    cfg = ModelConfig.preset("tiny-sp-fixed-p4")
    torch.manual_seed(0)
    return build_model(replace(cfg, name="tiny-sp-fixed-p4-ssm", trunk_mixers=["ssm"] * len(cfg.trunk_mixers))).eval()


MODELS = {"default": lambda: load_model(None), "tiny-ssm": tiny_ssm_model}  # name -> float32 model in eval mode


def text(rows: int, n: int) -> torch.Tensor:
    """[rows, n] word-like bytes, a different stretch per row."""
    return torch.from_numpy(synthetic_text(rows * n, 7).reshape(rows, n).astype("int64"))


def cases(cfg) -> list[tuple[float, int]]:
    """(tau, scratch at every k-th byte of a patch; 0 = no stride trigger)."""
    return [(tau, 0) for tau in TAUS] + [(math.inf, max(1, min(4, cfg.patch_size // 2)))]


def steps_needing_the_trunk(ref, starts: list[int]) -> int:
    """Decode steps at which some started row commits or scratches, by the parallel forward's
    masks ref.ends, ref.scratch [B, T]: the trunk passes eager decode runs."""
    need = (ref.ends | ref.scratch).cpu()
    started = torch.arange(need.shape[1]) >= torch.tensor(starts).unsqueeze(1)
    return int((need & started).any(0)[min(starts):].sum())


def compare(model, x: torch.Tensor, device: str, prefill: list[int]) -> list[dict]:
    """Teacher-force x [B, T] (row b's first prefill[b] bytes through the parallel prefill) for
    each case, with the step CUDA graphs replay (on CPU: its uncaptured stand-in). -> one row per
    case: relative max difference to the forward, event and trunk-pass agreement, the decode step
    that ran; a failed capture is a failed row (error), not an eager fallback."""
    x = x.to(device)
    engine = Engine(model, device=device, static=device == "cpu")
    want = "static" if device == "cpu" else "cuda-graphs"
    rows = []
    for tau, every in cases(model.cfg):
        row = dict(tau="inf" if math.isinf(tau) else tau, every=every)
        rows.append(row)
        with torch.no_grad():
            ref = model(x, threshold=tau, scratch_every=every)
        try:
            got = engine.teacher_force(x, tau, prefill=prefill, scratch_every=every)
        except GraphCaptureError as e:
            row.update(error=str(e), passed=False)
            continue
        ev, runner = engine.last_events, engine.last_runner
        row.update(rel_diff=float((got - ref.logits).abs().max() / ref.logits.abs().max()),
                   commits_equal=[e.commits for e in ev] == ref.commits.tolist(),
                   scratchpads_equal=[e.scratchpads for e in ev] == ref.scratchpads.tolist(),
                   scratchpads=sum(e.scratchpads for e in ev), bytes=sum(e.bytes for e in ev),
                   trunk_passes=runner.trunk_passes, trunk_passes_eager=steps_needing_the_trunk(ref, prefill),
                   decode_step=runner.step_kind)
        row["passed"] = bool(row["rel_diff"] <= REL_TOL and row["commits_equal"] and row["scratchpads_equal"]
                             and row["trunk_passes"] == row["trunk_passes_eager"] and row["decode_step"] == want)
    return rows


def describe_row(r: dict) -> str:
    if "error" in r:
        return r["error"]
    return (f"rel diff {r['rel_diff']:.2e}, events equal {r['commits_equal'] and r['scratchpads_equal']}, "
            f"trunk passes {r['trunk_passes']} (eager {r['trunk_passes_eager']}), {r['decode_step']}")


def main(argv=None) -> int:
    ap = Parser(prog="python -m eval.bench.graph_decode", description=describe(__doc__))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--bytes", type=int_flag("--bytes", 8), default=160, metavar="N", help="bytes per row (2 rows)")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    torch.backends.cuda.matmul.allow_tf32 = False  # the comparison is of float32 arithmetic
    x = text(2, a.bytes)
    failed = 0
    results = {}
    for name, make in MODELS.items():
        rows = compare(make().to(a.device), x, a.device, prefill=[0, a.bytes // 3])
        for r in rows:
            verdict = "ok" if r["passed"] else "FAILED"
            print(f"{name:<9} tau={r['tau']!s:<4} every={r['every']} {describe_row(r)} -> {verdict}")
        failed += sum(not r["passed"] for r in rows)
        results[name] = rows
    worst = max((r["rel_diff"] for rows in results.values() for r in rows if "rel_diff" in r), default=None)
    print(json.dumps(dict(device=a.device, bytes=a.bytes, cases=results, failed=failed, worst_rel_diff=worst)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
