"""`scratchpad data build {text,code,mix} --out DIR`: a byte corpus from the installed sources.

Finds each source of the kind (train/corpus/sources.py), installs missing ones unless --no-install
(train/corpus/install.py), reads them (train/corpus/formats.py) and builds train.bin, val.bin and
manifest.json (train/corpus/build.py). A rebuild with the same request and unchanged inputs is
skipped. From a folder of your own files: `scratchpad data build files` (train/corpus/folder.py).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from scratchpad.errors import UserError
from scratchpad.flags import Parser
from train.corpus.build import build_corpus
from train.corpus.install import locate_all
from train.corpus.reading import Tally
from train.corpus.sources import KINDS, Context, sources_for
from train.corpus.store import (FORMAT_VERSION, MANIFEST, MB, check_val_fraction, claim_out_dir, log_summary,
                                up_to_date, write_json_atomic)


def make_parser() -> argparse.ArgumentParser:
    names = {k: ", ".join(s.name for s in sources_for(k)) for k in KINDS}
    p = Parser(
        prog="scratchpad data build",
        description="Build a byte corpus (train.bin, val.bin, manifest.json) from installed sources "
                    "(from a folder of your own files: scratchpad data build files --help).",
        epilog=f"text sources: {names['text']}. code sources: {names['code']}. mix: all of them. "
               "Documents are separated by a 0x00 byte. --max-mb is shared between sources by "
               "water-filling (equal caps, small sources keep everything).",
    )
    p.add_argument("kind", choices=KINDS, help="which corpus")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-mb", type=float, default=100.0,
                   help="cap on train+val size in MB (10^6 bytes), shared between sources (default 100)")
    p.add_argument("--val-fraction", type=float, default=0.01,
                   help="fraction of documents held out for val.bin (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="sampling and split seed (default 0)")
    p.add_argument("--install", action=argparse.BooleanOptionalAction, default=True,
                   help="apt-get/pip install missing sources (default: on)")
    p.add_argument("--source", nargs="+", action="extend", metavar="NAME",
                   help="only these sources (default: every source of the kind)")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if the manifest says up to date, and write into a folder holding files no "
                        "builder wrote (only train.bin, val.bin and manifest.json are replaced)")
    p.add_argument("--cache-dir", default=None,
                   help="where PyPI sources are pip-installed (default $SCRATCHPAD_CACHE or ~/.cache/scratchpad)")
    p.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests: a fake filesystem root
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if not args.max_mb > 0:
        raise UserError(f"--max-mb must be positive, got {args.max_mb:g}")
    check_val_fraction(args.val_fraction)
    out = claim_out_dir(args.out, args.force)
    max_bytes = int(args.max_mb * MB)

    def warn(msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr, flush=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    root = Path(args.root)
    install = args.install and root.resolve() == Path("/")
    ctx = Context(root=root, log=log, **({"cache_dir": Path(args.cache_dir)} if args.cache_dir else {}))
    candidates = sources_for(args.kind)
    if args.source:
        known = {s.name for s in candidates}
        unknown = [n for n in args.source if n not in known]
        if unknown:
            raise UserError(f"unknown {args.kind} source {', '.join(unknown)} (choose from {', '.join(sorted(known))})")
        candidates = [s for s in candidates if s.name in set(args.source)]

    found, missing = locate_all(candidates, ctx, install, warn)
    if not found:
        raise UserError(
            f"no {args.kind} source found (looked for {', '.join(s.name for s in candidates)})"
            + ("; rerun with --install" if not args.install else "; see the warnings above")
        )
    for msg in missing.values():
        warn(msg)
    skipped = [s.name for s in candidates if s.name not in found]
    request = {
        "kind": args.kind,
        "format_version": FORMAT_VERSION,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "max_bytes": max_bytes,
        "sources": {name: {"path": ", ".join(map(str, loc.paths)), "fingerprint": loc.fingerprint}
                    for name, loc in found.items()},
        "skipped_sources": skipped,
    }
    if up_to_date(out, request, args.force, log):
        return 0

    for name, loc in found.items():
        log(f"source {name}: {loc.detail}")
    tallies = {name: Tally() for name in found}
    by_name = {s.name: s for s in candidates}
    docs = {name: by_name[name].documents(loc, tallies[name]) for name, loc in found.items()}
    t0 = time.time()
    log(f"building {args.kind} corpus in {out} (max {args.max_mb:g} MB, val fraction {args.val_fraction}, seed {args.seed})")
    manifest = build_corpus(
        docs, out, val_fraction=args.val_fraction, seed=args.seed, max_bytes=max_bytes, log=log, force=args.force,
        extra={
            "kind": args.kind,
            "command": shlex.join(["scratchpad", "data", "build", *argv]),
            "argv": argv,
            "request": request,
            "build_seconds": None,
        },
    )
    # Per-source reading statistics: what was read (files, entries, ...) and what was skipped, by reason.
    for name, tally in tallies.items():
        manifest["sources"][name]["reading"] = {**dict(sorted(tally.seen.items())), "skipped": tally.skipped_dict()}
        manifest["sources"][name]["path"] = request["sources"][name]["path"]
    manifest["build_seconds"] = round(time.time() - t0, 1)
    write_json_atomic(out / MANIFEST, manifest)

    log_summary(manifest, out, log)
    if skipped:
        warn(f"skipped sources: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
