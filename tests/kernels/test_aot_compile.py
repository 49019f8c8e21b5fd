"""Every Triton kernel compiles ahead of time for sm_90 (H100/H200) and sm_80 (A100) on this CPU
machine, with the ptxas in the triton wheel, without register spills (kernels/aot_check.py).
The compiles run in a subprocess without TRITON_INTERPRET (the kernel tests' conftest turns the
interpreter on, and interpreted kernels cannot be compiled). The full dtype x block-size matrix
runs with -m slow (or `python -m kernels.aot_check --full`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed: the kernels cannot be compiled")

from kernels import aot_check  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
_MISSING = [a for a in aot_check.ARCHES if aot_check.ptxas_path(a) is None]
needs_ptxas = pytest.mark.skipif(bool(_MISSING), reason=f"triton's ptxas is absent (for sm_{_MISSING}): "
                                 "ahead-of-time compilation needs the wheel's nvidia backend binaries")


def _python(code_or_args, timeout=900):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _compile_all(full: bool) -> list[dict]:
    r = _python(["-m", "kernels.aot_check", "--json", *(["--full"] if full else [])])
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _assert_clean(records: list[dict]):
    failed = [f"sm_{r['arch']} {r['label']}: {r['error']}" for r in records if not r["ok"]]
    spilled = [f"sm_{r['arch']} {r['label']}: {r['spill_stores']}/{r['spill_loads']} bytes" for r in records
               if r["ok"] and r["spill_stores"] + r["spill_loads"] > 0]
    assert not failed, "compile errors:\n" + "\n".join(failed)
    assert not spilled, "register spills:\n" + "\n".join(spilled)
    assert all(r["registers"] > 0 for r in records)


@needs_ptxas
def test_every_kernel_compiles_for_sm90_and_sm80_without_spills():
    records = _compile_all(full=False)
    assert {(r["label"], r["arch"]) for r in records} == {(v.label, a) for v, a in aot_check.default_cases()}
    assert {r["arch"] for r in records} == set(aot_check.ARCHES)
    _assert_clean(records)


@needs_ptxas
@pytest.mark.slow
def test_every_kernel_variant_compiles_without_spills():
    records = _compile_all(full=True)
    assert len(records) == len(aot_check.variants(True)) * len(aot_check.ARCHES)
    _assert_clean(records)


@needs_ptxas
def test_a_broken_kernel_fails_the_check(tmp_path):
    script = tmp_path / "broken_kernel.py"  # @triton.jit needs its source in a file
    script.write_text(textwrap.dedent("""
        import triton, triton.language as tl
        from kernels import aot_check

        @triton.jit
        def broken(a_ptr, out_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            x = tl.load(a_ptr + offs, mask=offs < n)
            tl.store(out_ptr + offs, x + tl.arange(0, BLOCK // 2), mask=offs < n)  # [BLOCK] + [BLOCK/2]

        v = aot_check.Variant("broken", "__main__", (("a_ptr", "*fp32"), ("out_ptr", "*fp32"), ("n", "i32"),
                              ("BLOCK", "constexpr")), (("BLOCK", 128),), 4)
        print(aot_check.run_all([(v, 90)])[0]["error"])
    """))
    r = _python([str(script)])
    assert r.returncode == 0, r.stderr[-2000:]
    err = r.stdout.strip()
    assert err and err != "None" and ("shape" in err.lower() or "broadcast" in err.lower()), err


def test_variants_cover_every_kernel_and_flag():
    from kernels.scan_plan import TABLES

    kernels = {"_scan_summary_kernel", "_scan_fwd_kernel", "_scan_bwd_kernel", "_carry_kernel", "_scratch_fwd_kernel",
               "_scratch_bwd_kernel"}
    vs = aot_check.variants()
    assert {v.kernel for v in vs} == kernels
    bwd_flags = {v.constexprs for v in vs if v.kernel == "_scan_bwd_kernel"}
    assert {(dict(f)["HAS_H0"], dict(f)["HAS_START"]) for f in bwd_flags} == {(False, False), (False, True), (True, False),
                                                                               (True, True)}
    carry_flags = {(dict(v.constexprs)["REVERSE"], dict(v.constexprs)["WRITE_STATES"], dict(v.constexprs)["HAS_START"])
                   for v in vs if v.kernel == "_carry_kernel"}
    assert carry_flags == {(r, w, s) for r in (False, True) for w, s in ((False, False), (True, False), (True, True))}
    # every (BLOCK_D, num_warps) a plan table launches the sweep kernels with is compiled
    launched = {(r.block_d, r.num_warps) for t in TABLES.values() for r in t.rows}
    for name in ("_scan_summary_kernel", "_scan_fwd_kernel", "_scan_bwd_kernel"):
        assert launched <= {(dict(v.constexprs)["BLOCK_D"], v.num_warps) for v in vs if v.kernel == name}, name
    assert len(aot_check.variants(True)) > len(vs)
