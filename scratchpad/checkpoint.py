"""Checkpoint folders: `model.safetensors` + `config.json` (+ extra files such as a trainer's
`train_state.safetensors`). Written to a temporary sibling and renamed into place, so a crash never
leaves a half checkpoint. Nothing is unpickled."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scratchpad.config import ModelConfig
from scratchpad.errors import UserError

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def ensure_writable_dir(path, flag: str = "--out") -> Path:
    """Create `path` if needed and prove it is writable (so a long job cannot fail at its first
    write); otherwise one UserError line naming the flag."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{flag} {out}: not writable, cannot write there ({e.strerror or e})") from None
    return out


@contextlib.contextmanager
def atomic_folder(folder):
    """Yield a temporary folder beside `folder`; on success it replaces `folder` in one rename
    (the previous version is removed only after the new one is in place)."""
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    except OSError as e:
        raise UserError(f"cannot write to {folder.parent}: {e.strerror}") from None
    try:
        yield tmp
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_model_files(model, folder: Path, extra: dict | None = None):
    """Write the model's weights and config (and `extra` = {filename: tensor dict}) into folder."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / MODEL_FILE))
    (folder / CONFIG_FILE).write_text(model.cfg.to_json())
    for name, tensors in (extra or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / name))


def save_model(model, folder) -> Path:
    """Atomically write `folder` with model.safetensors + config.json."""
    with atomic_folder(folder) as tmp:
        write_model_files(model, tmp)
    return Path(folder)


def read_config(folder) -> ModelConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing (not a model folder?)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    return ModelConfig.from_json(text, source=str(path))


def read_tensors(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: corrupted or truncated safetensors file ({str(e).splitlines()[0][:120]})") from None


RUN_CHECKPOINTS = ("best", "last")  # what a training --out folder stands for, in this order


def resolve_model_folder(path, flag: str = "--model") -> Path:
    """The one rule for every flag that names a model (`generate/eval/bench --model`, `train
    --init-from`): PATH is a model folder (it holds config.json), or a training --out folder, which
    stands for its best/ checkpoint (lowest validation BPB), else its last/ (a run that has not
    validated yet). Anything else is a UserError naming the flag."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag} {p}: no such model folder")
    if not p.is_dir():
        raise UserError(f"{flag} {p}: not a folder (a model folder holds {CONFIG_FILE} and {MODEL_FILE})")
    if (p / CONFIG_FILE).is_file():
        return p
    for sub in RUN_CHECKPOINTS:
        if (p / sub / CONFIG_FILE).is_file():
            return p / sub
    raise UserError(f"{flag} {p}: not a model folder (no {CONFIG_FILE}) nor a training run (no "
                    f"{' or '.join(s + '/' for s in RUN_CHECKPOINTS)})")


def load_model(folder=None, device="cpu", flag: str = "--model"):
    """Load a model folder or a training run folder (see resolve_model_folder; None: the packaged
    default model) in eval mode. Any missing, truncated or mismatched file raises UserError naming it."""
    from scratchpad.model import build_model

    if folder is None:
        folder = DEFAULT_MODEL_DIR
        if not (folder / CONFIG_FILE).is_file():
            raise UserError("no default model is packaged in this install; pass --model PATH")
    folder = resolve_model_folder(folder, flag)
    cfg = read_config(folder)
    model = build_model(cfg)
    state = read_tensors(folder / MODEL_FILE)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserError(f"{folder / MODEL_FILE}: does not match {folder / CONFIG_FILE} ({what})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise UserError(f"{folder / MODEL_FILE}: tensor {k} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}")
        if not torch.isfinite(v).all():
            raise UserError(f"{folder / MODEL_FILE}: tensor {k} holds NaN or inf")
    model.load_state_dict(state)
    return model.to(device).eval()
