"""bench serve: streaming clients against a local server, aggregate bytes/s and latencies, per-request triggers."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="needs the [serve] extra: pip install -e '.[serve]'")

from eval.bench.serve import summarize  # noqa: E402
from eval.bench.serve_cli import main  # noqa: E402


def test_load_run_with_the_stride_trigger(assets, tmp_path, cli, read_report):
    code, out, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--clients", "1,2", "--seconds", "1",
                                "--max-batch", 2, "--max-tokens", 8, "--threshold", "inf", "--scratch-every", 2,
                                "--threads", 1, "--out", tmp_path])
    assert code == 0, err
    r = read_report(tmp_path / "load.json")
    assert r["threshold"] == "inf" and r["scratch_every"] == 2
    for row in r["rows"]:  # a non-finite tau must reach the server as "inf", or every request is a 400
        assert row["errors"] == 0 and row["requests"] >= 1 and row["aggregate_bytes_per_second"] > 0
    assert "--scratch-every 2" in (tmp_path / "load.md").read_text()


def test_summary_percentiles():
    recs = [dict(start=0.0, times=[0.1, 0.2, 0.4], bytes=[1, 1, 2]), dict(error=429, body="busy")]
    s = summarize(recs, 1.0)
    assert s["requests"] == 1 and s["errors"] == 1 and s["bytes"] == 4
    assert s["ttfb_ms_p50"] == pytest.approx(100) and s["inter_byte_ms_p50"] == pytest.approx(100)


@pytest.mark.parametrize("flag,val", [("--threshold", "-1"), ("--scratch-every", "-1"), ("--clients", "0")])
def test_bad_flags(assets, tmp_path, cli, user_error, flag, val):
    code, _, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], flag, val, "--seconds", "1"])
    user_error(code, err, flag)


def test_soak_run_hurts_no_victim_and_refuses_every_bad_request(assets, tmp_path, cli, read_report):
    code, out, err = cli(main, ["--model", assets["models"]["tiny-sp-fixed-p4"], "--soak", "--clients", 4,
                                "--seconds", "3", "--max-batch", 2, "--max-tokens", 8, "--threads", 1,
                                "--out", tmp_path])
    assert code == 0, err
    r = read_report(tmp_path / "soak.json")["soak"]
    assert r["normal"] >= 1 and r["victims_hurt"] == 0 and r["bytes_per_second"] > 0
    assert r["poison_refused"] == r["poison"] and r["oversized_refused"] == r["oversized"]
    assert r["slots_in_use_after"] == 0 and r["in_flight_after"] == 0 and r["engine_errors"] == 0
    assert "victims_hurt" in (tmp_path / "soak.md").read_text()


def test_soak_summary_counts_victims_and_memory_spread():
    from eval.bench.serve_soak import summarize as soak_summary

    recs = [dict(kind="normal", status=200, seconds=0.1, bytes=8, hurt=False),
            dict(kind="normal", status=500, seconds=0.3, bytes=0, hurt=True),
            dict(kind="poison", status=400, refused=True), dict(kind="oversized", status=200, refused=False)]
    s = soak_summary(recs, 2.0, [(0.0, 100), (1.0, 200), (2.0, 210)], warmup=1.0)
    assert s["victims_hurt"] == 1 and s["poison_refused"] == 1 and s["oversized_refused"] == 0
    assert s["latency_ms_p50"] == pytest.approx(100) and s["bytes_per_second"] == 4
    assert s["rss_spread_after_warmup"] == pytest.approx(0.05)


def test_load_and_soak_run_from_python_quietly(assets, tmp_path, capsys):
    """eval.bench.serve.run and serve_soak.run are the benches without the command: they parse
    nothing, write nothing and print nothing; load rows reach on_row as they are measured."""
    from eval.bench import serve, serve_soak
    from scratchpad import load_model

    model = load_model(assets["models"]["tiny-sp-fixed-p4"])
    seen = []
    res = serve.run(model, "tiny", [1, 2], 0.5, max_batch=2, max_tokens=4, tau=0.0, on_row=seen.append)
    soak = serve_soak.run(model, "tiny", 2, 1.0, max_batch=2, max_tokens=4, tau=float("inf"), scratch_every=2)
    assert capsys.readouterr() == ("", "")
    assert seen == res.rows and [r["clients"] for r in res.rows] == [1, 2]
    assert all(r["errors"] == 0 and r["requests"] >= 1 and r["bytes"] > 0 for r in res.rows)
    assert res.json()["threshold"] == 0.0 and res.json()["config"] == model.cfg.name
    assert soak.row["clients"] == 2 and soak.row["victims_hurt"] == 0 and soak.row["engine_errors"] == 0
    assert soak.json()["threshold"] == "inf" and soak.json()["scratch_every"] == 2 and soak.warmup == 0.25
    assert soak.rss and all(kb > 0 for _, kb in soak.rss)
