"""`scratchpad eval lag`: is a model in the regime where scratchpads pay?

    scratchpad eval lag --model runs/heavy-p16 --data /work/data/text --thresholds 0,1,1.5,2,3,inf --out reports/lag

Three figures, each over the same windows as `eval bpb` (eval/windows.py):
* the **lag profile**: BPB by *offset* (bytes since the latest committed patch: the lag a byte
  would have at τ = ∞) at every τ, and BPB by *lag* (bytes since the latest usable trunk output,
  committed or scratchpad) at every τ. At τ = ∞ the profile should rise with the offset when the
  trunk carries information that goes stale inside a patch; as τ falls, scratchpads refresh the
  trunk output and the profile should flatten. The slope (bits per byte of offset, least squares
  over bytes) and its standard error say whether a rise is more than noise;
* the **trunk's share**: BPB with the trunk's context removed (the decoder's `up` projection
  zeroed, so no trunk output reaches any byte) minus BPB at τ = ∞;
* the **aux head's own BPB** (encoder + aux stack + aux head, no trunk): a model whose aux head
  out-predicts it wastes its trunk.
Plus the fraction of the BPB gap between τ = ∞ and τ = 0 that each τ closes.
Writes lag.md, lag.json, lag.png (BPB vs offset, one line per τ) and lag-realised.png (BPB vs lag).
"""
from __future__ import annotations

import sys

from eval.cli_args import common_args, parse_thresholds
from eval.experiments.lag import LagResult, run
from eval.loading import load_eval_model
from eval.report import fmt, out_folder, plot_xy, table, write_report
from eval.windows import WINDOWING, default_window, eval_bytes
from scratchpad.errors import run_cli
from scratchpad.flags import Parser, describe

DEFAULT_THRESHOLDS = "0,1,1.5,2,3,inf"


def _grid(rows: list[dict], key: str, text) -> list[list]:
    """Table rows: one per bucket of rows[*]["lag"][key], one cell per τ (text(cell), '-' if empty)."""
    cells = [{b["bucket"]: b for b in r["lag"][key]} for r in rows]
    return [[g] + [text(c[g]) if g in c else "-" for c in cells] for g in sorted(set().union(*cells))]


def lag_sections(rows: list[dict], figures: dict) -> list[str]:
    """Markdown for the three figures (shared with `eval sweep`)."""
    f = figures
    aux = (f"aux head alone (encoder + aux stack, no trunk): **{fmt(f['aux_bpb'])}** BPB"
           + (" — better than the model at τ = ∞: the trunk adds nothing the local models lack"
              if f["aux_bpb"] is not None and f["aux_bpb"] < f["bpb_plain"] else "")
           if f["aux_bpb"] is not None else "no aux head (this model was trained without one)")
    head = ["τ", "BPB", "scratchpad rate", "gap closed", "slope by offset (bits/byte per byte)", "± se",
            "slope by lag", "± se"]
    body = [[r["threshold"], r["bpb"], r["scratchpad_rate"], r.get("gap_closed"), r["lag"]["offset_slope"]["slope"],
             r["lag"]["offset_slope"]["se"], r["lag"]["lag_slope"]["slope"], r["lag"]["lag_slope"]["se"]] for r in rows]
    grid = _grid(rows, "by_offset", lambda c: f"{c['bpb']:.3f} ± {c['se']:.3f}" if c["se"] is not None else "-")
    lgrid = _grid(rows, "by_lag", lambda c: f"{c['bpb']:.3f} ({c['bytes']:,})")
    taus = [f"τ = {fmt(r['threshold'])}" for r in rows]
    return [
        "## Where scratchpads can pay\n\n"
        f"- BPB at τ = ∞ (plain patching): **{fmt(f['bpb_plain'])}**; with the trunk's context removed: "
        f"**{fmt(f['bpb_without_trunk'])}** (trunk's share {fmt(f['trunk_share'])} bits/byte)\n"
        f"- {aux}\n"
        + (f"- gap between τ = ∞ and τ = 0: {fmt(f['gap_plain_minus_dense'])} bits/byte"
           if f["gap_plain_minus_dense"] is not None else "- τ = 0 was not evaluated: no gap fraction")
        + "\n\nThe offset of a byte is the number of bytes since the latest committed patch (its lag at τ = ∞); "
        "its lag is the number of bytes since the latest usable trunk output, committed or scratchpad (0 = the trunk "
        "has read this byte). The slope is the least-squares slope of per-byte bits on the offset (or lag) over "
        "all scored bytes; ± one standard error (bytes treated as independent, so it is optimistic). Compare τ by "
        "offset: the same bytes fall in each offset bucket at every τ. BPB by realised lag mixes in the trigger's "
        "selection (entropy-triggered scratchpads fire before hard bytes, so lag 0 collects hard bytes), so its slope "
        "can be negative without saying anything about staleness.",
        table(head, body),
        "### BPB by offset since the latest commit (± standard error)\n\n" + table(["offset"] + taus, grid),
        "### BPB by realised lag (bytes in the bucket)\n\n" + table(["lag"] + taus, lgrid),
    ]


def lag_plots(out, rows: list[dict], title: str, stem: str = "lag") -> str | None:
    """<stem>.png (BPB by offset, a line per τ) and <stem>-realised.png (BPB by lag). Returns a note
    when no picture could be drawn."""
    def series(key):
        return [dict(label=f"τ = {fmt(r['threshold'], 3)}", x=[b["bucket"] for b in r["lag"][key]],
                     y=[b["bpb"] for b in r["lag"][key]]) for r in rows]

    note = plot_xy(out / f"{stem}.png", series("by_offset"), "bytes since the latest committed patch (offset; = lag at τ = ∞)",
                   "bits per byte", f"Lag profile by offset, {title}")
    plot_xy(out / f"{stem}-realised.png", series("by_lag"), "bytes since the latest usable trunk output (lag)",
            "bits per byte", f"BPB by realised lag, {title}")
    return note


def render(res: LagResult, out, label: str, cfg) -> None:
    """lag.md, lag.json, lag.png and lag-realised.png into out."""
    data, W = res.data, res.window
    png_note = lag_plots(out, res.rows, f"{cfg.name}, {data['split'] or 'file'} {data['bytes_used']:,} bytes")
    sections = [f"Model: `{label}` ({cfg.name}, patcher {cfg.patcher}, P={cfg.patch_size}). Data: `{data['path']}`, "
                f"{data['bytes_used']:,} bytes. Method: {WINDOWING.format(W=W)}." + (f"\n\nNote: {res.note}." if res.note else "")]
    sections += lag_sections(res.rows, res.figures)
    if png_note is None:
        sections.append("![BPB by realised lag](lag-realised.png)")
    write_report(out, "lag", "Patch-lag diagnostics", sections, res.json(), png_note=png_note, png=True)


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval lag", description=describe(__doc__))
    common_args(ap, max_bytes=1 << 16)
    ap.add_argument("--thresholds", default=DEFAULT_THRESHOLDS,
                    help=f"comma-separated taus in nats, 'inf' = none; 0 and inf are always added (default {DEFAULT_THRESHOLDS})")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    taus = parse_thresholds(a.thresholds)
    out = out_folder(a.out)
    model, label = load_eval_model(a.model, a.threads)
    W = default_window(model.cfg, a.window)
    arr, data = eval_bytes(a.data, a.split, a.max_bytes, W)
    res = run(model, label, arr, data, W, taus, a.batch_size, log=lambda line: print(line, flush=True))
    if res.note:
        print(f"note: {res.note}", file=sys.stderr)
    render(res, out, label, model.cfg)
    print(f"-> {out / 'lag.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
