"""Loading the model an eval command scores, and the description of it every report carries."""
from __future__ import annotations

from scratchpad import load_model
from scratchpad.accounting import parameter_counts
from scratchpad.checkpoint import resolve_model_folder
from scratchpad.flags import set_threads


def load_eval_model(path, threads: int | None = None):
    """(model in eval mode, fp32, label). path None = the packaged default model."""
    set_threads(threads)
    if path is None:
        model = load_model(None)
        label = "default model (scratchpad/default_model)"
    else:
        folder = resolve_model_folder(path)
        model = load_model(folder)
        label = str(folder)
    return model.float().eval(), label


def model_info(model, label: str) -> dict:
    """The model's path, design, parameter counts and full config, for a report's JSON."""
    cfg = model.cfg
    return dict(path=label, name=cfg.name, patcher=cfg.patcher, patch_size=cfg.patch_size, pooling=cfg.pooling,
                scratchpad=cfg.scratchpad, d_model=cfg.d_model, trunk_mixers=list(cfg.trunk_mixers),
                max_seq_len=cfg.max_seq_len, params=parameter_counts(model), config=cfg.to_dict())
