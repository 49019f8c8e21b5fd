"""Loads sp_completion.jsonl from this folder, whatever the working directory (lm-eval's
`custom_dataset` hook): no download, no Hugging Face cache."""
from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).with_name("sp_completion.jsonl")


def load(**_metadata) -> dict:
    """{"test": datasets.Dataset} of {"id", "context", "choices" (4 strings), "label"} rows."""
    import datasets

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"test": datasets.Dataset.from_list(rows)}
