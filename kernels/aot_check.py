"""Ahead-of-time compilation of every Triton kernel for NVIDIA targets, on any machine.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))` runs the whole Triton -> PTX
-> cubin pipeline (with the `ptxas` that ships in the triton wheel) without a GPU, so a kernel
that would fail to compile on an H100/H200 (sm_90) or A100 (sm_80), or that spills registers, is
found on a CPU machine. The interpreter (TRITON_INTERPRET=1) runs the kernels' arithmetic but never
compiles them; this check is the other half.

`variants(full)` lists what the wrappers in kernels/scan_triton.py, kernels/scan_carry.py and
kernels/step_triton.py launch: their dtypes (fp16/bf16/fp32 activations; fp32 or like-activation
states), constexpr flags, block sizes and num_warps (the scan's from the plan tables of
kernels/scan_plan.py). full=False keeps one variant per kernel and flag combination
(the default test suite); full=True is the whole product.

    python -m kernels.aot_check [--full] [--arch 90,80]
"""
from __future__ import annotations

import itertools
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ARCHES = (90, 80)
ACT = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Variant:
    kernel: str                  # attribute name in its module
    module: str                  # the module that defines it, e.g. "kernels.scan_triton"
    signature: tuple             # ((arg, type), ...) in argument order; constexprs typed "constexpr"
    constexprs: tuple            # ((name, value), ...)
    num_warps: int

    @property
    def label(self) -> str:
        ptrs = ",".join(t[1:] for _, t in self.signature if t.startswith("*"))
        flags = ",".join(f"{k}={v}" for k, v in self.constexprs)
        return f"{self.kernel}[{ptrs}|{flags}|w{self.num_warps}]"


def _scan_blocks(full: bool) -> list[tuple[int, int]]:
    """(BLOCK_D, num_warps) of the sweep kernels: every pair the plan tables hold (full: also
    the narrower blocks and every warp count a sweep tries)."""
    from kernels.scan_plan import TABLES, warps_for

    pairs = {(r.block_d, r.num_warps) for t in TABLES.values() for r in t.rows} | {(128, warps_for(128))}
    if full:
        pairs |= {(bd, w) for bd in (16, 32, 64, 128, 256) for w in (1, 2, 4) if w * 32 <= max(bd, 32)}
    return sorted(pairs)


def _carry_variants(act: str, full: bool):
    """The tree over chunk summaries (kernels/scan_carry.py): tiles of CARRY_TILE positions, and the
    smaller last level; the start state in fp32 or the activations' dtype (an initial state / d_final)."""
    from kernels.scan_carry import CARRY_ELEMS, CARRY_TILE

    tiles = [2 ** k for k in range(1, CARRY_TILE.bit_length())] if full else [CARRY_TILE]
    f32 = ("p_ptr", "e_ptr", "s_ptr", "tp_ptr", "te_ptr")
    modes = ((False, False, "fp32"), (True, False, "fp32"), (True, True, "fp32")) + (((True, True, act),) if full else ())
    for tile, rev, (write, has_start, start) in itertools.product(tiles, (False, True), modes):
        sig = [(n, "*fp32") for n in f32[:2]] + [("start_ptr", f"*{start}")] + [(n, "*fp32") for n in f32[2:]]
        flags = (("REVERSE", rev), ("WRITE_STATES", write), ("HAS_START", has_start), ("TILE", tile),
                 ("BLOCK_D", CARRY_ELEMS // tile))
        yield Variant("_carry_kernel", "kernels.scan_carry", (*sig, ("N", "i32"), ("D", "i32"),
                      *((k, "constexpr") for k, _ in flags)), flags, 4)


def _scan_variants(full: bool):
    """Default: fp32 (what the model launches) at every block a plan table uses; bf16 at 128."""
    i32 = ("T", "D", "CHUNK", "NC")
    for act in ACT if full else ("fp32", "bf16"):
        yield from _carry_variants(act, full)
        for block, w in _scan_blocks(full) if full or act == "fp32" else [(128, 1)]:
            for rev in (False, True):  # summary: x = b (forward) or dh (reverse), both in act dtype
                sig = [("a_ptr", f"*{act}"), ("x_ptr", f"*{act}"), ("p_ptr", "*fp32"), ("e_ptr", "*fp32")]
                yield Variant("_scan_summary_kernel", "kernels.scan_triton", (*sig, *((n, "i32") for n in i32),
                              ("REVERSE", "constexpr"), ("BLOCK_D", "constexpr")), (("REVERSE", rev), ("BLOCK_D", block)), w)
            # start: the chunk starts (fp32), or the initial state / d_final itself with one chunk
            for state, start in itertools.product(("fp32", act) if full else ("fp32",), (False, True)):
                sig = [("a_ptr", f"*{act}"), ("b_ptr", f"*{act}"), ("start_ptr", f"*{state}"), ("h_ptr", f"*{act}"),
                       ("hT_ptr", f"*{state}")]
                yield Variant("_scan_fwd_kernel", "kernels.scan_triton", (*sig, *((n, "i32") for n in i32),
                              ("HAS_START", "constexpr"), ("BLOCK_D", "constexpr")), (("HAS_START", start), ("BLOCK_D", block)), w)
                for h0 in (False, True):
                    sig = [("a_ptr", f"*{act}"), ("h_ptr", f"*{act}"), ("h0_ptr", f"*{state}"), ("dh_ptr", f"*{act}"),
                           ("start_ptr", f"*{state}"), ("da_ptr", f"*{act}"), ("db_ptr", f"*{act}"), ("dh0_ptr", f"*{state}")]
                    yield Variant("_scan_bwd_kernel", "kernels.scan_triton", (*sig, *((n, "i32") for n in i32),
                                  ("HAS_H0", "constexpr"), ("HAS_START", "constexpr"), ("BLOCK_D", "constexpr")),
                                  (("HAS_H0", h0), ("HAS_START", start), ("BLOCK_D", block)), w)


def _step_variants(full: bool):
    from kernels.step_triton import _SCRATCH_BLOCK

    for act in ACT if full else ("fp32", "bf16"):
        for state in ("fp32", act) if full else ("fp32",):
            sig = (("a_ptr", f"*{act}"), ("b_ptr", f"*{act}"), ("s_ptr", f"*{state}"), ("out_ptr", f"*{act}"),
                   ("n", "i32"), ("BLOCK", "constexpr"))
            yield Variant("_scratch_fwd_kernel", "kernels.step_triton", sig, (("BLOCK", _SCRATCH_BLOCK),), 4)
            sig = (("g_ptr", f"*{act}"), ("a_ptr", f"*{act}"), ("s_ptr", f"*{state}"), ("da_ptr", f"*{act}"),
                   ("db_ptr", f"*{act}"), ("ds_ptr", f"*{state}"), ("n", "i32"), ("BLOCK", "constexpr"))
            yield Variant("_scratch_bwd_kernel", "kernels.step_triton", sig, (("BLOCK", _SCRATCH_BLOCK),), 4)


def variants(full: bool = False) -> list[Variant]:
    seen, out = set(), []
    for v in itertools.chain(_scan_variants(full), _step_variants(full)):
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def ptxas_path(arch: int) -> str | None:
    """The ptxas in the triton wheel (None when the wheel has none)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        p = get_ptxas(arch).path
    except Exception:  # noqa: BLE001 -- any failure to locate it means: not available
        return None
    return p if p and Path(p).is_file() else None


@dataclass
class Result:
    label: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int


def compile_variant(v: Variant, arch: int, fn=None) -> Result:
    """Compile one variant for sm_<arch>; raise on a compile error; report registers and spills
    (ptxas -v on the generated PTX). fn overrides the kernel (tests compile a broken copy)."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = fn or getattr(importlib.import_module(v.module), v.kernel)
    src = ASTSource(fn=kernel, signature=dict(v.signature), constexprs=dict(v.constexprs))
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": v.num_warps})
    regs, stores, loads = _ptxas_usage(compiled.asm["ptx"], arch)
    return Result(v.label, arch, regs, stores, loads)


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int, int]:
    from triton.backends.nvidia.compiler import sm_arch_from_capability

    ptxas = ptxas_path(arch)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        r = subprocess.run([ptxas, "-v", f"--gpu-name={sm_arch_from_capability(arch)}", str(src), "-o", str(Path(d) / "k.o")],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ptxas failed: {(r.stderr or r.stdout).strip()[:500]}")
    log = r.stdout + r.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if regs is None or spill is None:
        raise RuntimeError(f"ptxas -v printed no register/spill line:\n{log}")
    return int(regs.group(1)), int(spill.group(1)), int(spill.group(2))


def run_all(cases) -> list[dict]:
    """Compile (variant, arch) pairs; one record per pair: label, arch, ok, error, registers, spills."""
    out = []
    for v, arch in cases:
        rec = dict(label=v.label, arch=arch, ok=False, error=None)
        try:
            r = compile_variant(v, arch)
            rec.update(ok=True, registers=r.registers, spill_stores=r.spill_stores, spill_loads=r.spill_loads)
        except Exception as e:  # noqa: BLE001 -- report every failing variant, then fail
            msg = " ".join(str(e).split())
            rec["error"] = f"{type(e).__name__}: {msg if len(msg) <= 400 else msg[:150] + ' ... ' + msg[-250:]}"
        out.append(rec)
    return out


def default_cases(full: bool = False):
    """fp32 (what the model launches: the SSM coefficients are fp32) on every target, bf16 on sm_90;
    with full, every variant on every target."""
    return [(v, a) for v in variants(full) for a in ARCHES if full or a == 90 or "bf16" not in v.label]


def main(argv=None) -> int:
    import argparse
    import json
    import os
    import sys

    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 is set: the kernels are interpreted, not compiled; unset it", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="python -m kernels.aot_check", description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="every dtype, block size and flag combination")
    p.add_argument("--arch", default=None, help="comma-separated compute capabilities (default: 90 and 80)")
    p.add_argument("--json", action="store_true", help="one JSON list of records instead of lines")
    a = p.parse_args(argv)
    cases = default_cases(a.full)
    if a.arch:
        arches = [int(x) for x in a.arch.split(",") if x.strip()]
        cases = [(v, x) for v in variants(a.full) for x in arches]
    if any(ptxas_path(x) is None for x in {x for _, x in cases}):
        print("ptxas is not in the triton wheel: nothing compiled", file=sys.stderr)
        return 2
    records = run_all(cases)
    if a.json:
        print(json.dumps(records))
    bad = 0
    for r in records:
        if not r["ok"]:
            bad += 1
            if not a.json:
                print(f"FAIL sm_{r['arch']} {r['label']}: {r['error']}")
            continue
        spill = r["spill_stores"] + r["spill_loads"]
        bad += spill > 0
        if not a.json:
            print(f"{'SPILL' if spill else 'ok   '} sm_{r['arch']} {r['label']}: {r['registers']} registers, "
                  f"{r['spill_stores']}/{r['spill_loads']} bytes spill stores/loads")
    if not a.json:
        print(f"{len(records)} kernel variants compiled ahead of time: "
              f"{'all compiled, no spills' if not bad else f'{bad} failed or spilled'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
