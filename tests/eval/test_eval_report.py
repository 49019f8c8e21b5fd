"""Report writing: strict JSON, Markdown tables, PNGs drawn (matplotlib is a test dependency), and
skipped with a note when matplotlib is missing."""
from __future__ import annotations

import json
import math

import eval.report as report


def test_strict_json_and_tables(tmp_path, read_report):
    out = report.out_folder(tmp_path / "r")
    written = report.write_report(out, "x", "Title", ["text", report.table(["a", "b"], [[math.inf, 0.5], [None, "q|r"]])],
                                  dict(rows=[dict(threshold=math.inf, bpb=float("nan"), n=3)]))
    r = read_report(written["json"])
    assert r["rows"] == [dict(threshold="inf", bpb=None, n=3)] and "environment" in r
    assert float(r["rows"][0]["threshold"]) == math.inf
    md = (out / "x.md").read_text()
    assert md.startswith("# Title") and "| ∞ | 0.5 |" in md and "q\\|r" in md


def test_png_degrades_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "have_matplotlib", lambda: False)
    note = report.plot_xy(tmp_path / "p.png", [dict(label="s", x=[1, 2], y=[3, 4])], "x", "y", "t")
    assert note and "matplotlib" in note and not (tmp_path / "p.png").exists()
    report.write_report(tmp_path, "p", "T", ["body"], {}, png_note=note, png=True)
    assert "matplotlib" in (tmp_path / "p.md").read_text()
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["png"] is None and "matplotlib" in data["png_note"]


def test_png_written_with_matplotlib(tmp_path):
    """matplotlib is in the [test] extra: the picture must be drawn, not skipped."""
    assert report.have_matplotlib()
    note = report.plot_xy(tmp_path / "p.png", [dict(label="s", x=[1, 2, math.inf], y=[3, 4, 5], annotate=["a", "b", "c"])],
                          "x", "y", "t", points=[dict(label="pt", x=1.5, y=3.5)], vlines=[dict(label="v", x=1.2)], logx=True)
    png = (tmp_path / "p.png").read_bytes()
    assert note is None and png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_out_folder_errors(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for bad in (f, None):
        try:
            report.out_folder(bad)
        except report.UserError as e:
            assert "--out" in str(e)
        else:
            raise AssertionError("expected a UserError")
