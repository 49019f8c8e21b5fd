"""Shared report writing for the eval commands: one folder, Markdown + JSON (+ PNG).

Every eval command writes `<name>.md` (human-readable: what was measured, how, the table) and
`<name>.json` (the same numbers for machines) into its `--out` folder, and a `<name>.png` where a
picture helps. PNGs need matplotlib (the optional `plot` extra); without it the picture is
skipped and the Markdown says so. JSON is strict: inf becomes the string "inf" (float("inf")
reads it back), NaN becomes null.
"""
from __future__ import annotations

import json
import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from scratchpad.checkpoint import ensure_writable_dir
from scratchpad.errors import UserError


def out_folder(path) -> Path:
    """Create (if needed) and check an --out folder; a UserError if it cannot be written."""
    if not path:
        raise UserError("--out is required (a folder for the Markdown/JSON/PNG report)")
    return ensure_writable_dir(path)


def jsonable(v):
    """Strict-JSON copy: inf -> "inf"/"-inf", NaN -> None, tuples -> lists, Paths -> str."""
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        return jsonable(v.item())
    return v


def environment() -> dict:
    import torch

    return dict(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__,
                python=platform.python_version(), machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
                threads=torch.get_num_threads(), argv=sys.argv[1:])


def fmt(v, digits: int = 4) -> str:
    """Compact cell text: floats to `digits` significant figures, inf as ∞, None as -."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{max(1, digits - 1)}e}"
        return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}".rstrip("0").rstrip(".") or "0"
    if isinstance(v, int) and abs(v) >= 100_000:
        return f"{v:,}"
    return str(v)


def table(headers: list[str], rows: list[list], digits: int = 4) -> str:
    """A Markdown table; cells go through fmt()."""
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c, digits).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


PLOT_MISSING = "PNG skipped: matplotlib is not installed (`pip install matplotlib` or the `plot` extra)"


def plot_xy(path: Path, series: list[dict], xlabel: str, ylabel: str, title: str, points: list[dict] | None = None,
            vlines: list[dict] | None = None, logx: bool = False) -> str | None:
    """Line plot of series [{label, x, y, annotate?}] with optional single points [{label, x, y}]
    and vertical lines [{label, x}]. Returns None when written, else a one-line note why not."""
    if not have_matplotlib():
        return PLOT_MISSING
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    markers = "os^Dv<>p*h"
    try:
        for i, s in enumerate(series):
            pts = [(x, y) for x, y in zip(s["x"], s["y"]) if _finite(x) and _finite(y)]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=markers[i % len(markers)], label=s["label"])
            merged: dict = {}  # coinciding points share one label
            for x, y, note in zip(s["x"], s["y"], s.get("annotate") or []):
                if _finite(x) and _finite(y) and note:
                    merged.setdefault((round(x, 9), round(y, 9)), []).append(note)
            for (x, y), notes in merged.items():
                ax.annotate(notes[0] if len(notes) == 1 else f"{notes[0]} … {notes[-1]}", (x, y),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
        for j, p in enumerate(points or []):
            if _finite(p["x"]) and _finite(p["y"]):
                ax.scatter([p["x"]], [p["y"]], marker="*XPd"[j % 4], s=120, zorder=5, label=p["label"],
                           color=f"C{(len(series) + j) % 10}")
        for v in vlines or []:
            if _finite(v["x"]):
                ax.axvline(v["x"], linestyle="--", linewidth=1, color="grey")
                ax.annotate(v["label"], (v["x"], 0.98), xycoords=("data", "axes fraction"), rotation=90,
                            va="top", ha="right", fontsize=7, color="grey")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    except Exception as e:  # a picture must never cost the numbers
        return f"PNG skipped: matplotlib failed ({type(e).__name__}: {e})"
    finally:
        plt.close(fig)
    return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def write_report(out: Path, name: str, title: str, sections: list[str], data: dict, png_note: str | None = None,
                 png: bool = False) -> dict:
    """Write out/name.md (title, sections joined by blank lines, PNG link or note) and
    out/name.json (data + environment). Returns {kind: path} of what was written."""
    out = Path(out)
    written = {}
    md = [f"# {title}", ""]
    md += [s.rstrip() + "\n" for s in sections if s]
    png_path = out / f"{name}.png"
    if png:
        if png_note is None and png_path.is_file():
            md.append(f"![{title}]({name}.png)\n")
            written["png"] = str(png_path)
        elif png_note:
            md.append(f"_{png_note}_\n")
    payload = dict(data)
    payload.setdefault("environment", environment())
    if png:
        payload["png"] = str(png_path.name) if "png" in written else None
        if png_note:
            payload["png_note"] = png_note
    try:
        (out / f"{name}.md").write_text("\n".join(md))
        (out / f"{name}.json").write_text(json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise UserError(f"cannot write the report into {out}: {e.strerror or e}") from None
    written["md"] = str(out / f"{name}.md")
    written["json"] = str(out / f"{name}.json")
    return written
