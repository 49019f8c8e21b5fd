"""`scratchpad bench serve`: load test of `scratchpad serve` on 127.0.0.1.

Starts the server in this process, runs N concurrent streaming clients for a bounded time (each
sends a request, reads its server-sent events to the end, sends the next), and reports aggregate
bytes/s and p50/p99 of time-to-first-byte and inter-byte latency (gaps between streamed events,
per byte). Writes Markdown + JSON with --out.

--soak: one run of N clients sending a mix of normal, poison, disconnecting and oversized
requests (eval/bench/serve_soak.py); reports bytes/s, p50/p99 latency, victims hurt (normal requests
whose bytes differ from the same prompt served alone; must be 0) and RSS over time.
The measurements are eval/bench/serve.py and eval/bench/serve_soak.py.
"""
from __future__ import annotations

import json
import sys

from eval.bench import serve as load_bench
from eval.bench import serve_soak as soak_bench
from eval.bench.serve_soak import DISCONNECT_AFTER, MIX, POISON
from eval.cli_args import parse_counts
from eval.report import out_folder, table, write_report
from infer.generate import DECODE_THREADS
from infer.options import parse_threshold
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import (THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe, int_flag,
                              parse_duration, set_threads)


def parser() -> Parser:
    ap = Parser(prog="scratchpad bench serve", description=describe(__doc__))
    ap.add_argument("--model", metavar="DIR", help="model folder (default: the packaged default model)")
    ap.add_argument("--clients", default="1,4,16", metavar="N,N", help="concurrent streaming clients per run")
    ap.add_argument("--seconds", type=lambda t: parse_duration(t, "--seconds"), default=20.0,
                    help="duration of each run (default 20s)")
    ap.add_argument("--max-batch", type=int_flag("--max-batch"), default=16, metavar="N", help="server slots")
    ap.add_argument("--max-tokens", type=int_flag("--max-tokens"), default=128, metavar="N", help="bytes per request")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", default="1.5", metavar="TAU",
                    help="entropy threshold per request, 'inf' = none (default 1.5)")
    add_scratch_every_flag(ap)
    ap.add_argument("--soak", action="store_true", help="one soak run: normal, poison, disconnecting and oversized "
                    "requests from --clients N clients for --seconds (report soak.md / soak.json)")
    ap.add_argument("--out", metavar="DIR", help="write load.md and load.json (soak.md / soak.json) here")
    add_threads_flag(ap, DECODE_THREADS, "the serve command's default")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    clients = parse_counts(args.clients, "--clients")
    tau = parse_threshold(args.threshold, "--threshold")
    try:
        import infer.serve  # noqa: F401 -- the [serve] extra, checked before the model loads
    except ImportError:
        raise UserError("bench serve needs the [serve] extra: pip install -e '.[serve]'") from None
    from scratchpad import load_model

    set_threads(args.threads)
    model = load_model(args.model)
    source = args.model or "packaged default model"
    knobs = dict(max_batch=args.max_batch, max_tokens=args.max_tokens, tau=tau, scratch_every=args.scratch_every)
    if args.soak:
        soak = soak_bench.run(model, source, max(clients), args.seconds, **knobs)
        print(json.dumps(soak.row))
        if args.out:
            write_soak_report(soak, args.out)
        return 0 if soak.row["victims_hurt"] == 0 else 1
    res = load_bench.run(model, source, clients, args.seconds, **knobs, on_row=lambda row: print(json.dumps(row)))
    if args.out:
        write_load_report(res, args.clients, args.out)
    return 0


def write_load_report(res, clients_flag: str, out: str) -> None:
    """load.md and load.json of a ServeBenchResult."""
    tau, every = res.tau, res.scratch_every
    how = (f"`scratchpad bench serve --clients {clients_flag} --seconds {res.seconds:g} --max-batch "
           f"{res.max_batch} --max-tokens {res.max_tokens} --threshold {tau:g} --scratch-every {every}`: "
           f"server and streaming clients in one process on 127.0.0.1, {res.threads} torch thread(s), greedy, "
           f"tau = {tau:g}" + (f", a scratchpad at every k-th byte of a patch (k = {every})" if every else "")
           + ". TTFB = request sent to first streamed byte (includes queueing and prefill); inter-byte = gap "
           "between streamed events per byte.")
    body = table(["clients", "requests", "bytes/s (aggregate)", "TTFB p50 ms", "TTFB p99 ms",
                  "inter-byte p50 ms", "inter-byte p99 ms", "errors"],
                 [[r["clients"], r["requests"], r["aggregate_bytes_per_second"], r["ttfb_ms_p50"], r["ttfb_ms_p99"],
                   r["inter_byte_ms_p50"], r["inter_byte_ms_p99"], r["errors"]] for r in res.rows])
    write_report(out_folder(out), "load", f"scratchpad serve under load ({res.config})", [how, body], res.json())


def write_soak_report(soak, out: str) -> None:
    """soak.md and soak.json of a SoakResult."""
    from infer.server_app import MAX_BODY_BYTES  # the [serve] extra

    n, load = soak.row["clients"], soak.load
    how = (f"`scratchpad bench serve --soak --clients {n} --seconds {soak.seconds:g} --max-batch {soak.max_batch} "
           f"--max-tokens {soak.max_tokens} --threshold {soak.tau:g} --scratch-every {soak.scratch_every}`: server and "
           f"{n} client threads in one process on 127.0.0.1, {soak.threads} torch thread(s). Each request is drawn "
           f"from {len(MIX)}: 5 normal (greedy, {soak.max_tokens} bytes, streaming or not, checked against the prompt "
           f"served alone), 2 poison (one of {len(POISON)} bodies that must get 400), 2 disconnecting (60,000 "
           f"bytes asked, socket closed after {DISCONNECT_AFTER:g} s), 1 oversized (a body over the "
           f"{MAX_BODY_BYTES}-byte limit: 413). RSS of the whole process, sampled every second; warm-up = the "
           f"first {soak.warmup:g} s. Machine load average at the start (1/5/15 min): {load[0]:.1f}/{load[1]:.1f}/"
           f"{load[2]:.1f} (other jobs share the cores). bytes/s and latency: the normal requests.")
    body = table(["what", "value"], [[k, v] for k, v in soak.row.items()])
    series = table(["t (s)", "RSS (kB)"], [[round(t), kb] for t, kb in soak.rss[::max(1, len(soak.rss) // 12)]])
    write_report(out_folder(out), "soak", f"scratchpad serve soak ({soak.config})", [how, body, series], soak.json())


if __name__ == "__main__":
    sys.exit(run_cli(main))
