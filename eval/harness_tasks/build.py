"""Build the `sp_completion` multiple-choice task from a corpus's held-out split.

    python -m eval.harness_tasks.build --data /work/data/text --out eval/harness_tasks/sp_completion

Each item cuts a held-out document at a space inside a line: the context is up to CONTEXT bytes
of the document before the cut (starting at a word), the gold continuation is the next whole
words of that line (MIN_CONT..MAX_CONT bytes, starting with the space). The three distractors
are the gold continuations of other items with the closest byte lengths, so every choice is real
text of about the same length and only the context tells them apart. Documents are drawn in
proportion to their size, one item per document. Deterministic for a given corpus and seed.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

from scratchpad.errors import UserError, run_cli

CONTEXT, MIN_CONTEXT = 256, 48
MIN_CONT, MAX_CONT = 16, 48
CHOICES = 4
WORD = re.compile(rb" [^\s]+")


def continuation_at(doc: bytes, cut: int) -> bytes | None:
    """Whole words of the line from the space at `cut`: MIN_CONT..MAX_CONT bytes, or None."""
    end = cut
    for m in WORD.finditer(doc, cut):
        if m.start() != end or m.end() - cut > MAX_CONT:
            break
        end = m.end()
        if end - cut >= MIN_CONT:
            cont = doc[cut:end]
            return cont if re.search(rb"[A-Za-z]", cont) and len(cont.split()) >= 2 else None
    return None


def context_before(doc: bytes, cut: int) -> bytes:
    """Up to CONTEXT bytes before `cut`, starting at the beginning of a word (or of the document)."""
    start = max(0, cut - CONTEXT)
    if start > 0:
        ws = re.search(rb"\s", doc[start:cut])
        start = cut if ws is None else start + ws.end()
    return doc[start:cut]


def gold_items(docs: list[bytes], n: int, rng: random.Random) -> list[dict]:
    """One (context, continuation) per document, documents drawn by size without repeats."""
    order = rng.sample(range(len(docs)), len(docs))
    order.sort(key=lambda i: rng.random() ** (1 / max(len(docs[i]), 1)), reverse=True)  # weighted by size
    items = []
    for i in order:
        doc = docs[i]
        cuts = [m.start() for m in re.finditer(rb" ", doc) if m.start() >= MIN_CONTEXT]
        rng.shuffle(cuts)
        for cut in cuts:
            cont, ctx = continuation_at(doc, cut), context_before(doc, cut)
            if cont is not None and len(ctx) >= MIN_CONTEXT:
                items.append(dict(doc=i, context=ctx.decode(), gold=cont.decode()))
                break
        if len(items) == n:
            return items
    raise UserError(f"only {len(items)} documents hold a usable cut; asked for {n}")


def with_distractors(items: list[dict], rng: random.Random) -> list[dict]:
    """Each item's choices: its gold and the golds of the CHOICES-1 items closest in byte length."""
    rows = []
    for k, it in enumerate(items):
        others = sorted((j for j in range(len(items)) if items[j]["gold"] != it["gold"]),
                        key=lambda j: (abs(len(items[j]["gold"].encode()) - len(it["gold"].encode())), rng.random()))
        picked = []
        for j in others:
            if items[j]["gold"] not in picked:
                picked.append(items[j]["gold"])
            if len(picked) == CHOICES - 1:
                break
        label = rng.randrange(CHOICES)
        choices = picked[:label] + [it["gold"]] + picked[label:]
        rows.append(dict(id=k, context=it["context"], choices=choices, label=label))
    return rows


def build(val: bytes, n: int, seed: int) -> list[dict]:
    docs = []
    for d in val.split(b"\x00"):
        try:
            d.decode("utf-8")
            docs.append(d)
        except UnicodeDecodeError:
            continue
    rng = random.Random(seed)
    return with_distractors(gold_items(docs, n, rng), rng)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.harness_tasks.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="corpus folder holding val.bin (scratchpad data build text --out DIR)")
    ap.add_argument("--out", required=True, help="task folder; writes sp_completion.jsonl there")
    ap.add_argument("--items", type=int, default=200, help="items (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    val = Path(a.data) / "val.bin"
    if not val.is_file():
        raise UserError(f"--data {a.data}: no val.bin there (build one with: scratchpad data build text --out DIR)")
    rows = build(val.read_bytes(), a.items, a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sp_completion.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} items from {val} -> {out / 'sp_completion.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
