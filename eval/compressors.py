"""General-purpose compressors on the model's held-out bytes (`scratchpad eval bpb
--compare-compressors`): bits per byte of `gzip -9`, `bzip2 -9`, `xz -9e` and `zstd -19`, the
command-line tools as installed (a missing or failing tool is reported as skipped, never fatal).

The bytes are exactly the ones the model is scored on: every byte after the first (the model
predicts byte i from bytes < i; eval/windows.py). Two numbers per tool:
  * whole-file: the tool compresses all of those bytes as one stream;
  * per window: the bytes each model window predicts (window_spans) are compressed independently,
    each from an empty state, like the model, which starts every window from an empty context.
BPB = 8 x compressed bytes (container header and checksum included) / bytes. Each tool reads
stdin and writes stdout; zstd is told the input size (--stream-size), as it would know a file's.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from eval.report import table
from eval.windows import window_spans


@dataclass(frozen=True)
class Compressor:
    name: str
    args: tuple[str, ...]  # after the executable; "{n}" becomes the input size

    def command(self, n: int | None = None) -> list[str]:
        return [self.name, *(a.replace("{n}", str(n)) if n is not None else a for a in self.args)]

    def shown(self) -> str:
        return " ".join(a.replace("{n}", "N") for a in self.command())


COMPRESSORS = (
    Compressor("gzip", ("-9", "-c")),
    Compressor("bzip2", ("-9", "-c")),
    Compressor("xz", ("-9e", "-T1", "-c")),
    Compressor("zstd", ("-19", "-q", "-c", "--stream-size={n}")),
)


class ToolFailed(Exception):
    pass


def compressed_size(exe: str, comp: Compressor, data: bytes) -> int:
    """Bytes of `exe` (the tool's resolved path) compressing `data`."""
    cmd = comp.command(len(data))
    try:
        r = subprocess.run([exe, *cmd[1:]], input=data, capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolFailed(f"{type(e).__name__}: {e}") from None
    if r.returncode != 0:
        last = (r.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise ToolFailed(f"exit code {r.returncode}: {last}")
    return len(r.stdout)


def version(exe: str) -> str:
    """The tool's version number, e.g. 1.0.8 (bzip2 prints it on stderr)."""
    try:
        r = subprocess.run([exe, "--version"], input=b"", capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(r"\d+(?:\.\d+)+", (r.stdout + r.stderr).decode(errors="replace"))
    return m.group(0) if m else "?"


def compare(arr: np.ndarray, window: int, compressors=COMPRESSORS) -> dict:
    """Whole-file and per-window BPB of each installed compressor on the bytes the model predicts."""
    data = np.asarray(arr, dtype=np.uint8)
    predicted = data[1:].tobytes()
    chunks = [data[s + 1:s + 1 + L].tobytes() for s, L in window_spans(len(data), window)]
    n = len(predicted)
    rows, skipped = [], []
    for comp in compressors:
        exe = shutil.which(comp.name)
        if exe is None:
            skipped.append(dict(name=comp.name, command=comp.shown(), reason="not installed (not on PATH)"))
            continue
        try:
            whole = compressed_size(exe, comp, predicted)
            per_window = sum(compressed_size(exe, comp, c) for c in chunks)
        except ToolFailed as e:
            skipped.append(dict(name=comp.name, command=comp.shown(), reason=f"failed ({e})"))
            continue
        rows.append(dict(name=comp.name, command=comp.shown(), path=exe, version=version(exe),
                         whole_bytes=whole, whole_bpb=8 * whole / n, window_bytes=per_window,
                         window_bpb=8 * per_window / n))
    return dict(bytes=n, window=window, windows=len(chunks), compressors=rows, skipped=skipped,
                method="the bytes the model predicts (all but the first); whole-file = one stream, per window = "
                       "each model window's predicted bytes compressed independently; BPB = 8 x compressed size "
                       "(headers included) / bytes")


def section(res: dict, model_bpb: float, model_label: str) -> str:
    """The Markdown paragraph and table of a `compare` result beside the model's BPB."""
    W = res["window"]
    rows = [[f"model ({model_label})", "-", model_bpb, "-"]]
    rows += [[f"`{r['command']}`", r["whole_bpb"], r["window_bpb"], r["version"]] for r in res["compressors"]]
    text = (f"Compressors on the same {res['bytes']:,} bytes: {res['method']}. The model scores each "
            f"{W}-byte window from an empty context, so its number sits in the per-window column.\n\n"
            + table(["", "BPB whole-file", f"BPB per {W}-byte window ({res['windows']} windows)", "version"], rows))
    if res["skipped"]:
        text += "\n\nSkipped: " + "; ".join(f"`{s['command']}` {s['reason']}" for s in res["skipped"]) + "."
    return text


def summary_line(res: dict) -> str:
    parts = [f"{r['name']} {r['whole_bpb']:.3f} / {r['window_bpb']:.3f}" for r in res["compressors"]]
    line = f"compressors, bpb whole-file / per {res['window']}-byte window: " + (", ".join(parts) or "none installed")
    if res["skipped"]:
        line += "; skipped: " + ", ".join(f"{s['name']} ({s['reason']})" for s in res["skipped"])
    return line
