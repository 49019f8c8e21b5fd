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
        if v != 0 and (abs(v) >= 10 ** digits or abs(v) < 1e-3):  # one pattern for every large number: 2.300e+06
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


PLOT_MISSING = "PNG skipped: matplotlib is not installed (pip install -e '.[plot]', the `plot` extra)"


# (marker, colour) pairs: every point or series of one picture gets its own pair (15 shapes x 10 colours)
MARKERS = "osD^v<>ph*XPd8H"


def style(i: int) -> dict:
    """The i-th distinct point style of a picture."""
    return dict(marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}")


def short_path(path) -> str:
    """A path for a picture's title: its last two components, never the machine's absolute path."""
    parts = Path(str(path)).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else str(path)


def xy_figure(series: list[dict], xlabel: str, ylabel: str, title: str, points: list[dict] | None = None,
              vlines: list[dict] | None = None, logx: bool = False, note: str | None = None):
    """A matplotlib figure: line series [{label, x, y, err?, annotate?}] (err: y error bars, e.g. the
    standard error), single points [{label, x, y, err?}], vertical lines [{label, x}] (named in the
    legend), and an optional note under the axes. Every series and point has its own marker."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5 if note else 4.5), dpi=120)
    for i, s in enumerate(series):
        errs = s.get("err") or [None] * len(s["x"])
        pts = [(x, y, e) for x, y, e in zip(s["x"], s["y"], errs) if _finite(x) and _finite(y)]
        if not pts:
            continue
        xs, ys, es = zip(*pts)
        yerr = [e if _finite(e) else 0.0 for e in es] if any(_finite(e) for e in es) else None
        ax.errorbar(xs, ys, yerr=yerr, capsize=3, label=s["label"], **style(i))
        merged: dict = {}  # coinciding points share one label
        for x, y, text in zip(s["x"], s["y"], s.get("annotate") or []):
            if _finite(x) and _finite(y) and text:
                merged.setdefault((round(x, 9), round(y, 9)), []).append(text)
        for (x, y), texts in merged.items():
            ax.annotate(texts[0] if len(texts) == 1 else f"{texts[0]} … {texts[-1]}", (x, y),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    for j, p in enumerate(points or []):
        if _finite(p["x"]) and _finite(p["y"]):
            st = style(len(series) + j)
            ax.errorbar([p["x"]], [p["y"]], yerr=[p["err"]] if _finite(p.get("err")) else None, capsize=3,
                        markersize=9, linestyle="none", zorder=5, label=p["label"], **st)
    for k, v in enumerate(vlines or []):
        if _finite(v["x"]):
            ax.axvline(v["x"], linestyle="--", linewidth=1, color=f"C{(len(series) + len(points or []) + k) % 10}",
                       label=v["label"])
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    return fig


def bar_figure(categories: list[str], series: list[dict], ylabel: str, title: str, stacked: bool = False,
               note: str | None = None):
    """Bars: one group per category, one bar (or, stacked, one layer) per series [{label, values}];
    each bar is labelled with its value."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5 if not note else 5), dpi=120)
    n = len(series)
    width = 0.8 if stacked else 0.8 / max(n, 1)
    bottom = [0.0] * len(categories)
    for i, s in enumerate(series):
        vals = [v if _finite(v) else 0.0 for v in s["values"]]
        xs = [c + (0 if stacked else (i - (n - 1) / 2) * width) for c in range(len(categories))]
        bars = ax.bar(xs, vals, width, bottom=bottom if stacked else None, label=s["label"], color=f"C{i % 10}")
        if not stacked:
            ax.bar_label(bars, labels=[fmt(v, 3) if _finite(v) else "-" for v in s["values"]], fontsize=7)
        else:
            bottom = [b + v for b, v in zip(bottom, vals)]
    if stacked:
        for c, total in enumerate(bottom):
            ax.annotate(fmt(float(total), 3), (c, total), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(range(len(categories)), categories, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if n > 1:
        ax.legend(fontsize=7)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    return fig


def save_figure(path: Path, make) -> str | None:
    """Write the figure `make()` builds to path. Returns None when written, else a one-line note
    why not (no matplotlib, or matplotlib failed): a picture must never cost the numbers."""
    if not have_matplotlib():
        return PLOT_MISSING
    import matplotlib.pyplot as plt

    fig = None
    try:
        fig = make()
        fig.savefig(path)
    except Exception as e:  # noqa: BLE001
        return f"PNG skipped: matplotlib failed ({type(e).__name__}: {e})"
    finally:
        if fig is not None:
            plt.close(fig)
    return None


def plot_xy(path: Path, series: list[dict], xlabel: str, ylabel: str, title: str, points: list[dict] | None = None,
            vlines: list[dict] | None = None, logx: bool = False, note: str | None = None) -> str | None:
    """xy_figure written to path; None when written, else a one-line note why not."""
    return save_figure(path, lambda: xy_figure(series, xlabel, ylabel, title, points, vlines, logx, note))


def plot_bars(path: Path, categories: list[str], series: list[dict], ylabel: str, title: str, stacked: bool = False,
              note: str | None = None) -> str | None:
    """bar_figure written to path; None when written, else a one-line note why not."""
    return save_figure(path, lambda: bar_figure(categories, series, ylabel, title, stacked, note))


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
