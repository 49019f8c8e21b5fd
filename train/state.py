"""A training run's folder on disk: the checkpoint files, the train state (optimizer moments,
counters, RNG) saved beside the weights, the saved arguments, and crash recovery.

    DIR/log.jsonl     DIR/last/{model.safetensors, config.json, train_state.safetensors, trainer.json}
    DIR/best/{model.safetensors, config.json, best.json}
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch

from scratchpad.checkpoint import atomic_folder, read_tensors, write_model_files
from scratchpad.errors import UserError

LOG_FILE = "log.jsonl"
LAST, BEST = "last", "best"
STATE_FILE = "train_state.safetensors"
ARGS_FILE = "trainer.json"
FORMAT = 1
COUNTERS = {"step": torch.int64, "elapsed": torch.float64, "bytes_seen": torch.int64, "best_val": torch.float64,
            "best_step": torch.int64, "log_offset": torch.int64, "data_seed": torch.int64, "flops": torch.float64}
OPTIONAL_COUNTERS = {"flops": 0.0}  # absent from checkpoints written before FLOPs were counted


def optimizer_tensors(opt, names: dict) -> dict:
    """AdamW moments keyed by parameter name: opt.<name>.exp_avg, ...; names maps id(param) -> name."""
    out = {}
    for p, st in opt.state.items():
        name = names[id(p)]
        for k, v in st.items():
            out[f"opt.{name}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def load_optimizer_tensors(opt, model, tensors: dict, source: Path):
    sd = opt.state_dict()
    index = {}
    named = dict(model.named_parameters())
    order = [p for g in opt.param_groups for p in g["params"]]
    pid = {id(p): i for i, p in enumerate(order)}
    for name, p in named.items():
        if id(p) in pid:
            index[name] = pid[id(p)]
    state = {}
    for key, v in tensors.items():
        if not key.startswith("opt."):
            continue
        name, _, k = key[4:].rpartition(".")
        if name not in index:
            raise UserError(f"{source}: optimizer state for unknown parameter {name!r}")
        state.setdefault(index[name], {})[k] = v
    for name, i in index.items():
        st = state.get(i)
        if st is not None and set(st) != {"step", "exp_avg", "exp_avg_sq"}:
            raise UserError(f"{source}: optimizer state for {name!r} is incomplete")
        if st is not None and st["exp_avg"].shape != named[name].shape:
            raise UserError(f"{source}: optimizer state for {name!r} has shape {tuple(st['exp_avg'].shape)}, "
                            f"expected {tuple(named[name].shape)}")
    sd["state"] = state
    opt.load_state_dict(sd)


def train_state_tensors(opt, model, counters: dict, device: torch.device) -> dict:
    """Everything besides the weights that an exact resume needs, as tensors."""
    st = optimizer_tensors(opt, {id(p): n for n, p in model.named_parameters()})
    for k, dt in COUNTERS.items():
        st[k] = torch.tensor([counters[k]], dtype=dt)
    st["data_step"] = torch.tensor([counters["step"]], dtype=torch.int64)
    st["rng_torch"] = torch.get_rng_state()
    if device.type == "cuda":
        st["rng_cuda"] = torch.cuda.get_rng_state(device)
    return st


def read_train_state(last: Path) -> dict:
    state = read_tensors(last / STATE_FILE)
    for k in COUNTERS:
        if k not in state:
            raise UserError(f"{last / STATE_FILE}: corrupted (no '{k}')")
    return state


def restore_train_state(state: dict, opt, model, source: Path, seed: int, device: torch.device) -> dict:
    """Load the optimizer moments and RNG states; return the counters (step, elapsed, ...)."""
    load_optimizer_tensors(opt, model, state, source)
    counters = {k: (int if dt == torch.int64 else float)(state[k][0]) if k in state else OPTIONAL_COUNTERS[k]
                for k, dt in COUNTERS.items()}
    if counters["data_seed"] != seed:
        raise UserError(f"{source}: data seed {counters['data_seed']} does not match --seed {seed}")
    torch.set_rng_state(state["rng_torch"])
    if device.type == "cuda" and "rng_cuda" in state:
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return counters


def write_last(out: Path, model, state: dict, summary: dict):
    with atomic_folder(out / LAST) as tmp:
        write_model_files(model, tmp, extra={STATE_FILE: state})
        (tmp / ARGS_FILE).write_text(json.dumps(dict(format=FORMAT, **summary), indent=2))


def write_best(out: Path, model, info: dict):
    with atomic_folder(out / BEST) as tmp:
        write_model_files(model, tmp)
        (tmp / "best.json").write_text(json.dumps(info, indent=2))


def read_saved_args(last: Path) -> dict:
    path = last / ARGS_FILE
    try:
        d = json.loads(path.read_text())
        return dict(d["args"])
    except FileNotFoundError:
        raise UserError(f"{path}: missing (incomplete checkpoint)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path}: corrupted ({type(e).__name__})") from None


def read_saved_world(out: Path) -> int | None:
    try:
        return int(json.loads((out / LAST / ARGS_FILE).read_text()).get("world_size"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def params_hash(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def recover_checkpoint_folders(out: Path):
    """Undo what a crash inside atomic_folder can leave behind: if DIR/last (or best) is missing
    but its previous version was moved aside (`.last.old-PID`, between the two renames), put it
    back; then drop leftover temporary folders (`.last.tmp-*`, never renamed into place)."""
    import shutil

    if not out.is_dir():
        return
    for name in (LAST, BEST):
        olds = sorted(out.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
        if not (out / name).exists() and olds:
            with contextlib.suppress(OSError):
                os.replace(olds.pop(), out / name)
        for junk in olds + list(out.glob(f".{name}.tmp-*")):
            shutil.rmtree(junk, ignore_errors=True)
