"""ModelConfig: every architectural choice of a model, JSON round trip, presets, validation."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from scratchpad.errors import UserError

PATCHERS = ("fixed", "whitespace", "entropy", "entropy-monotonic", "router", "soft")
POOLINGS = ("mean", "attn", "xattn", "gru", "soft")
DECODERS = ("residual", "patch-ar")
MIXERS = ("ssm", "attn")
RENAMED = {"local_window": "local_attn_span"}  # old config.json field name -> current name


@dataclass
class ModelConfig:
    """Every architectural choice of a model; `config.json` of a model folder is this, as JSON.
    Widths are `d_*`, layer counts `n_*`; sizes in bytes unless said otherwise."""

    name: str = "custom"             # preset name or a label; informational only
    # local byte models: encoder (every byte) -> aux head (next-byte entropy) ... decoder (every byte)
    d_local: int = 128               # width of the byte-level encoder, aux stack and decoder
    n_enc_layers: int = 1            # encoder layers (their states h feed patch pooling and the decoder)
    n_aux_layers: int = 2            # aux stack layers; its head's entropy triggers scratchpads / entropy patches
    n_dec_layers: int = 1            # decoder layers: h + the latest trunk output -> next-byte logits
    decoder_reads_aux: bool = False  # decoder input = aux stack output (aux layers feed prediction, always run)
    local_mixer: str = "ssm"         # sequence mixer of the local models: "ssm" (diagonal SSM) or "attn"
    local_attn_span: int = 128       # local "attn" only: bytes a byte attends back to (= its KV ring size)
    # trunk: runs once per committed patch (and per scratchpad), over pooled patch vectors
    d_model: int = 256               # trunk width
    trunk_mixers: list = field(default_factory=lambda: ["ssm", "ssm", "ssm", "ssm"])  # one "ssm"/"attn" per layer
    n_heads: int = 4                 # attention heads (trunk, local attention, attention pooling)
    ssm_expand: int = 1              # SSM inner width = ssm_expand * d
    mlp_mult: float = 2.0            # MLP hidden width = mlp_mult * d
    # patching: which bytes close a patch, and how a patch becomes one trunk input
    patcher: str = "fixed"           # one of PATCHERS (see scratchpad/patchers.py)
    patch_size: int = 4              # fixed P; target mean size for router / soft
    max_patch_len: int = 16          # bound on every variable patcher (fixed uses patch_size); see longest_patch
    entropy_boundary: float = 2.0    # nats; entropy patcher threshold (monotonic: on the increase)
    soft_sigma: float = 0.5          # soft patcher / pooling: Gaussian width in patch coordinates
    router_ratio_weight: float = 0.03  # router patcher: weight of the loss pulling its mean patch size to patch_size
    pooling: str = "xattn"           # one of POOLINGS: span of encoder states -> one trunk input (scratchpad/pooling.py)
    decoder: str = "residual"        # "residual" (byte residual + trunk context) or "patch-ar" (reset per patch)
    # scratchpads: transient trunk steps where the aux entropy exceeds the runtime threshold tau
    scratchpad: bool = True          # False: trained and run without scratchpads; tau has no effect
    train_threshold_min: float = 0.0  # training samples tau per row uniformly in [min, max] ...
    train_threshold_max: float = 4.0  # ... (the upper end of that range) ...
    train_no_scratchpad_prob: float = 0.25  # ... or, with this probability, tau = inf (plain patching)
    train_scratch_keep: float = 0.3  # training keeps this random fraction of triggered scratchpads
    aux_loss_weight: float = 1.0     # loss = byte CE + aux_loss_weight * aux-head CE (+ router loss)
    max_seq_len: int = 4096          # longest sequence (bytes) a forward or a decode may hold

    def aux_runs(self, entropy_scratchpads: bool) -> bool:
        """Does inference run the aux stack at every byte? For an entropy patcher, for a decoder that
        reads it, or when scratchpads are entropy-triggered (unless every byte already commits)."""
        every_byte = self.patcher == "fixed" and self.patch_size == 1
        return (self.patcher.startswith("entropy") or self.decoder_reads_aux
                or (entropy_scratchpads and self.scratchpad and not every_byte))

    @property
    def longest_patch(self) -> int:
        """Longest possible patch in bytes: how many byte features pooling reads per span (and
        the decode state's pooling ring holds)."""
        return self.patch_size if self.patcher == "fixed" else self.max_patch_len

    def validate(self) -> "ModelConfig":
        def bad(name, why):
            raise UserError(f"config {self.name!r}: field '{name}' {why}")

        for f in dataclasses.fields(self):
            v, default = getattr(self, f.name), f.default if f.default is not dataclasses.MISSING else f.default_factory()
            want = (int, float) if isinstance(default, float) else type(default)
            if not isinstance(v, want) or (isinstance(v, bool) and not isinstance(default, bool)):
                bad(f.name, f"must be of type {type(default).__name__}, got {v!r}")

        for name in ("d_local", "d_model", "n_heads", "ssm_expand", "patch_size", "max_patch_len", "max_seq_len", "local_attn_span"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, f"must be a positive integer, got {v!r}")
        for name in ("n_enc_layers", "n_aux_layers", "n_dec_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                bad(name, f"must be an integer >= 0, got {v!r}")
        if self.n_aux_layers < 1 and (self.scratchpad or self.patcher.startswith("entropy") or self.decoder_reads_aux):
            bad("n_aux_layers", "must be >= 1 when scratchpads, entropy patching or the decoder use the aux head")
        if self.decoder_reads_aux and self.decoder == "patch-ar":
            bad("decoder_reads_aux", "applies to the residual decoder only")
        if self.patcher not in PATCHERS:
            bad("patcher", f"must be one of {', '.join(PATCHERS)}, got {self.patcher!r}")
        if self.pooling not in POOLINGS:
            bad("pooling", f"must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if (self.pooling == "soft") != (self.patcher == "soft"):
            bad("pooling", "'soft' pooling goes with the 'soft' patcher and only with it")
        if self.decoder not in DECODERS:
            bad("decoder", f"must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.local_mixer not in MIXERS:
            bad("local_mixer", f"must be one of {', '.join(MIXERS)}, got {self.local_mixer!r}")
        if self.decoder == "patch-ar" and self.local_mixer != "ssm":
            bad("decoder", "'patch-ar' resets state per patch and needs local_mixer 'ssm'")
        if not isinstance(self.trunk_mixers, (list, tuple)) or not self.trunk_mixers:
            bad("trunk_mixers", "must be a non-empty list of 'ssm'/'attn'")
        for m in self.trunk_mixers:
            if m not in MIXERS:
                bad("trunk_mixers", f"has unknown mixer {m!r}")
        for name, d in (("d_model", self.d_model), ("d_local", self.d_local)):
            if d % self.n_heads:
                bad(name, f"({d}) must be divisible by n_heads ({self.n_heads})")
        if self.patcher != "fixed" and self.max_patch_len < 2:
            bad("max_patch_len", "must be >= 2 for variable patchers")
        if self.patcher in ("router", "soft") and self.patch_size < 2:
            bad("patch_size", "(the target size) must be >= 2 for learned patchers")
        lo, hi = self.train_threshold_min, self.train_threshold_max
        if not (0 <= lo <= hi) or math.isnan(hi):
            bad("train_threshold_min", f"and train_threshold_max must satisfy 0 <= min <= max, got {lo}, {hi}")
        if not 0 <= self.train_no_scratchpad_prob <= 1:
            bad("train_no_scratchpad_prob", "must be in [0, 1]")
        if not 0 < self.train_scratch_keep <= 1:
            bad("train_scratch_keep", "must be in (0, 1]")
        if self.soft_sigma <= 0:
            bad("soft_sigma", "must be > 0")
        return self

    # JSON round trip ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "ModelConfig":
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a JSON object")
        d = {RENAMED.get(k, k): v for k, v in d.items()}  # configs written before a field was renamed
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {', '.join(unknown)}")
        return cls(**d).validate()

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "ModelConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, source)

    # presets -----------------------------------------------------------------------------
    @staticmethod
    def presets() -> list[str]:
        return list(_PRESETS) + [f"tiny-{n}" for n in _PRESETS]

    @staticmethod
    def tiny_presets() -> list[str]:
        """The test-size form of every preset."""
        return [f"tiny-{n}" for n in _PRESETS]

    @classmethod
    def preset(cls, name: str) -> "ModelConfig":
        base = name[len("tiny-") :] if name.startswith("tiny-") else name
        if base not in _PRESETS:
            raise UserError(f"unknown preset {name!r}; known: {', '.join(cls.presets())}")
        cfg = cls(name=base, **_PRESETS[base])
        return (tiny(cfg) if name.startswith("tiny-") else cfg).validate()


def tiny(cfg: ModelConfig) -> ModelConfig:
    """The same variant at test size: widths 32/16, two trunk layers keeping the mixer kinds."""
    kinds = sorted(set(cfg.trunk_mixers), key=cfg.trunk_mixers.index)
    trunk = (kinds * 2)[:2]
    return dataclasses.replace(
        cfg, name=f"tiny-{cfg.name}", d_local=16, d_model=32, n_heads=2, trunk_mixers=trunk,
        n_enc_layers=1, n_dec_layers=1, n_aux_layers=min(cfg.n_aux_layers, 2), local_attn_span=min(cfg.local_attn_span, 32),
        max_seq_len=512,
    )


_SP_TRUNK = ["ssm", "attn", "ssm", "attn"]
# The study's models had no aux head; only D (entropy boundaries) needs one.
_STUDY = dict(d_model=256, d_local=128, trunk_mixers=["ssm"] * 4, max_seq_len=1024, scratchpad=False,
              n_aux_layers=0, aux_loss_weight=0.0)

_PRESETS: dict[str, dict] = {
    # byte-level baseline with the SP trunk: every byte is a patch
    "byte": dict(patcher="fixed", patch_size=1, pooling="mean", trunk_mixers=_SP_TRUNK, scratchpad=False),
    # the residual byte patching study's six variants (d=256, 4 SSM layers, seq 1024)
    "study-A-fixed-mean": dict(_STUDY, patcher="fixed", patch_size=4, pooling="mean"),
    "study-B-attn-pool": dict(_STUDY, patcher="fixed", patch_size=4, pooling="attn"),
    "study-C-soft-boundary": dict(_STUDY, patcher="soft", patch_size=4, max_patch_len=16, pooling="soft"),
    "study-D-entropy": dict(_STUDY, patcher="entropy", patch_size=4, max_patch_len=16, pooling="mean",
                            n_aux_layers=2, aux_loss_weight=1.0),
    "study-E-full-bytes": dict(_STUDY, patcher="fixed", patch_size=1, pooling="mean"),
    "study-F-gru-local-dec": dict(_STUDY, patcher="fixed", patch_size=4, pooling="gru", decoder="patch-ar"),
    # learned causal router (H-Net style)
    "sp-router-p8": dict(patcher="router", patch_size=8, max_patch_len=16, trunk_mixers=_SP_TRUNK),
}
# Trunk-heavy design: light local models whose attention reads only the last 4 bytes (so context
# older than ~10 bytes must come through the trunk), the decoder reading the aux stack (the aux layer
# feeds prediction, not only the trigger), and a 6-layer trunk holding ~94% of the parameters.
_HEAVY = dict(d_local=64, n_enc_layers=1, n_aux_layers=1, n_dec_layers=1, decoder_reads_aux=True, local_mixer="attn",
              local_attn_span=4, d_model=256, trunk_mixers=["ssm", "attn"] * 3)
_PRESETS["heavy-byte"] = dict(_HEAVY, patcher="fixed", patch_size=1, pooling="mean", scratchpad=False)
_PRESETS["heavy-p16-plain"] = dict(_HEAVY, patcher="fixed", patch_size=16, scratchpad=False)
for _p in (4, 8, 16):
    _PRESETS[f"heavy-p{_p}"] = dict(_HEAVY, patcher="fixed", patch_size=_p)
# the packaged default model: heavy-p16 with a 2-layer aux stack (eval/reports/design-cpu/)
_PRESETS["heavy-p16-aux2"] = dict(_HEAVY, patcher="fixed", patch_size=16, n_aux_layers=2)
for _p in (4, 8, 16):
    _PRESETS[f"sp-fixed-p{_p}"] = dict(patcher="fixed", patch_size=_p, trunk_mixers=_SP_TRUNK)
    _PRESETS[f"sp-whitespace-p{_p}"] = dict(patcher="whitespace", patch_size=_p, max_patch_len=_p, trunk_mixers=_SP_TRUNK)
    _PRESETS[f"sp-entropy-p{_p}"] = dict(patcher="entropy", patch_size=_p, max_patch_len=_p, trunk_mixers=_SP_TRUNK)
