"""The training arguments and the rules for resuming a run with (some of) them changed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from scratchpad import ModelConfig
from scratchpad.checkpoint import read_config, resolve_model_folder
from scratchpad.errors import UserError

# Arguments that may change when resuming; every other one must match the run being resumed
# (--data included: a resumed run must draw its windows from the same corpus).
RESUME_MAY_CHANGE = {"steps", "time_budget", "flops_budget", "eval_every", "save_every", "save_every_s", "log_every", "threads",
                     "device", "resume", "out", "compile"}


@dataclass
class TrainArgs:
    data: str = ""
    out: str = ""
    preset: str | None = None
    config: str | None = None
    steps: int | None = None
    time_budget: float | None = None     # seconds of training-step time
    flops_budget: float | None = None    # training FLOPs (scratchpad.accounting.training_flops)
    init_from: str | None = None
    resume: bool = False
    batch_size: int = 8                  # sequences per micro-batch per process
    seq_len: int | None = None           # None: min(1024, cfg.max_seq_len)
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    grad_accum: int = 1
    weight_decay: float = 0.1
    clip: float = 1.0
    eval_every: int = 500
    eval_windows: int = 32
    save_every: int = 500
    save_every_s: float | None = None    # also checkpoint after this much training time
    log_every: int = 10
    seed: int = 0
    threads: int | None = None
    device: str | None = None            # "cpu" | "cuda"; default: cuda when available
    dtype: str = "fp32"                  # "fp32" | "bf16" (autocast; weights and optimizer stay fp32)
    compile: bool = False                # torch.compile the training and evaluation forward

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainArgs":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _same(key: str, a, b) -> bool:
    if key == "data" and a and b:  # the same folder however it is spelled
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def merge_resume_args(saved: dict, args: TrainArgs, given: set[str]) -> TrainArgs:
    """The arguments of a resumed run: the saved ones, with the flags the user gave that may change.
    A given flag that may not change and differs from the saved value is one UserError line."""
    for k, v in saved.items():
        if k in given and k not in RESUME_MAY_CHANGE and k not in ("preset", "config") and not _same(k, getattr(args, k, v), v):
            flag = "--" + k.replace("_", "-")
            raise UserError(f"{flag} {getattr(args, k)} differs from the run being resumed ({v}); "
                            f"resume continues a run exactly, use a new --out to change it")
    merged = dict(saved)
    # the checkpoint's own config.json defines the model; --preset/--config, if given, are only
    # checked against it (a --config file of the original run need not exist any more)
    merged["preset"] = merged["config"] = None
    for k in RESUME_MAY_CHANGE | {"preset", "config"}:
        if k in given:
            merged[k] = getattr(args, k)
    merged["resume"], merged["out"] = True, args.out
    return TrainArgs.from_dict(merged)


def config_diff(a: ModelConfig, b: ModelConfig) -> list[tuple[str, object, object]]:
    """Fields (other than the name) where two configs differ."""
    da, db = a.to_dict(), b.to_dict()
    return [(k, da[k], db[k]) for k in da if k != "name" and da[k] != db[k]]


def resolve_config(a: TrainArgs, resume_state: Path | None) -> tuple[Path | None, ModelConfig]:
    """(weights folder or None, config) of a run: --preset or --config, or the checkpoint's config
    (--resume, --init-from), which a given preset or config must match."""
    requested = None
    if a.preset and a.config:
        raise UserError("give --preset or --config, not both")
    if a.preset:
        requested, req_src = ModelConfig.preset(a.preset), f"--preset {a.preset}"
    elif a.config:
        path = Path(a.config)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--config {path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        requested, req_src = ModelConfig.from_json(text, source=str(path)), f"--config {path}"
    source = resume_state or (resolve_model_folder(a.init_from, "--init-from") if a.init_from else None)
    if source is None:
        if requested is None:
            raise UserError("give --preset NAME, --config FILE or --init-from CKPT")
        return None, requested
    cfg = read_config(source)
    if requested is not None:
        diff = config_diff(cfg, requested)
        if diff:
            parts = "; ".join(f"{k}: {va!r} in the checkpoint, {vb!r} in {req_src}" for k, va, vb in diff[:4])
            more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
            raise UserError(f"{source}: config does not match {req_src}: {parts}{more}")
    return source, cfg
