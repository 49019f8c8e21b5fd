"""The trainer: single process or `torchrun` DDP, exact resume, fine-tuning, time budgets.

Output folder (`--out DIR`), written by rank 0 only:

    DIR/log.jsonl            one JSON object per line: start, step (every step), eval, checkpoint,
                             best, resume, stop, end events
    DIR/last/                the latest checkpoint (written every --save-every steps and at the end)
        model.safetensors    weights (fp32)
        config.json          the ModelConfig
        train_state.safetensors
                             optimizer moments per parameter name (opt.<name>.exp_avg, ...),
                             step, training seconds, bytes seen, best val BPB, torch RNG state(s),
                             data position (seed, step) and the log offset at save time
        trainer.json         the training arguments and a human-readable summary
    DIR/best/                the checkpoint with the lowest validation BPB so far (model.safetensors,
                             config.json, best.json); the metric is val BPB at tau = 1.5 for
                             scratchpad models and tau = None (plain patching) otherwise

Each checkpoint folder is written under a temporary name and renamed into place
(scratchpad.checkpoint.atomic_folder), so a crash at any moment leaves the previous one intact.
`DIR/last` and `DIR/best` load with `scratchpad.load_model` like any model folder.

Exact resume: window sampling and training thresholds are counter-based (train/data.py), the LR
schedule is a function of the step (when training by --steps), and optimizer moments, RNG states
and the step are restored bit-exactly, so on CPU a resumed run logs the same per-step losses as an
uninterrupted one. On resume the log is cut back to its length at the checkpoint, so it describes
one trajectory. With --time-budget the cosine schedule follows elapsed training time, which is not
reproducible across runs (resume still continues the budget where it stopped).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn

from scratchpad import ModelConfig, UserError, build_model, load_model
from scratchpad.checkpoint import (CONFIG_FILE, atomic_folder, ensure_writable_dir, read_config, read_tensors,
                                   write_model_files)
from train.data import ByteCorpus, batch_generator, seed_model_rng

LOG_FILE = "log.jsonl"
LAST, BEST = "last", "best"
STATE_FILE = "train_state.safetensors"
ARGS_FILE = "trainer.json"
FORMAT = 1
EVAL_TAU = 1.5  # the runtime default threshold, evaluated next to tau = None for scratchpad models

# Arguments that may change when resuming; every other one must match the run being resumed.
RESUME_MAY_CHANGE = {"steps", "time_budget", "eval_every", "save_every", "save_every_s", "log_every", "threads", "data",
                     "device", "resume", "out"}


@dataclass
class TrainArgs:
    data: str = ""
    out: str = ""
    preset: str | None = None
    config: str | None = None
    steps: int | None = None
    time_budget: float | None = None     # seconds of training-step time
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

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainArgs":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------------------------
# Distributed environment


class Dist:
    """torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) or a single process."""

    def __init__(self, device_kind: str | None):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        kind = device_kind or ("cuda" if torch.cuda.is_available() else "cpu")
        if kind not in ("cpu", "cuda"):
            raise UserError(f"--device must be cpu or cuda, got {kind!r}")
        if kind == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
        self.device = torch.device(f"cuda:{self.local_rank}") if kind == "cuda" else torch.device("cpu")
        self.enabled = self.world > 1
        self.started_group = False

    def start(self):
        if not self.enabled:
            return
        import torch.distributed as dist

        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.started_group = True

    def stop(self):
        if self.started_group:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.barrier()
            dist.destroy_process_group()
            self.started_group = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(t)
        return t

    def gather(self, obj) -> list:
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree(self, fn):
        """Run fn() on every rank; if any rank raises UserError, every rank raises it (no hangs)."""
        err, result = None, None
        try:
            result = fn()
        except UserError as e:
            err = str(e)
        errs = [e for e in self.gather(err) if e]
        if errs:
            raise UserError(errs[0])
        return result


# ----------------------------------------------------------------------------------------------
# Model, optimizer, schedule


class LossModule(nn.Module):
    """What DDP wraps: returns tensors only (loss with grad; detached byte loss and counts)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y, tau):
        out = self.model(x, targets=y, threshold=tau)
        return out.loss, out.byte_loss.detach(), out.scratch.sum().detach()


def param_groups(model: nn.Module, weight_decay: float):
    """AdamW groups: decay on matrices only; none on norms, biases, embeddings or other vectors."""
    embed_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embed_params else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device):
    extra = dict(fused=True) if device.type == "cuda" else dict(foreach=True)
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95), eps=1e-8, **extra)


def lr_at(args: TrainArgs, step: int, elapsed: float) -> float:
    """Linear warmup over --warmup steps, then cosine to lr * min_lr_ratio over the run
    (by step count with --steps, by training time with --time-budget; the further one wins)."""
    if args.warmup > 0 and step <= args.warmup:
        return args.lr * step / args.warmup
    progress = 0.0
    if args.steps:
        progress = max(progress, (step - args.warmup) / max(1, args.steps - args.warmup))
    if args.time_budget:
        progress = max(progress, elapsed / args.time_budget)
    progress = min(max(progress, 0.0), 1.0)
    lo = args.lr * args.min_lr_ratio
    return lo + 0.5 * (args.lr - lo) * (1.0 + math.cos(math.pi * progress))


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def unused_parameters(model, device, seq_len: int) -> list[str]:
    """Parameters that get no gradient from a training forward (structurally unused in this
    config); DDP needs find_unused_parameters=True when there are any."""
    L = min(seq_len, 64)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, L + 1), generator=g).to(device)
    tau = model.sample_thresholds(2, g).to(device)
    with autocast(device):
        out = model(x[:, :-1], targets=x[:, 1:], threshold=tau)
    out.loss.backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return names


def params_hash(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def config_diff(a: ModelConfig, b: ModelConfig) -> list[tuple[str, object, object]]:
    """Fields (other than the name) where two configs differ."""
    da, db = a.to_dict(), b.to_dict()
    return [(k, da[k], db[k]) for k in da if k != "name" and da[k] != db[k]]


# ----------------------------------------------------------------------------------------------
# Checkpoints


def optimizer_tensors(opt, names: dict) -> dict:
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


def resolve_model_folder(path) -> Path:
    """A model folder, or a training --out folder (its last/ checkpoint)."""
    p = Path(path)
    if not (p / CONFIG_FILE).is_file() and (p / LAST / CONFIG_FILE).is_file():
        return p / LAST
    return p


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


# ----------------------------------------------------------------------------------------------
# The run


class Trainer:
    def __init__(self, args: TrainArgs, given: set[str] | None = None, out_stream=None):
        self.args = args
        self.given = set(given or ())
        self.print = (lambda s: print(s, file=out_stream or sys.stdout, flush=True))
        self.log_f = None
        self.stop_signal = 0

    # setup ------------------------------------------------------------------------------------
    def _setup(self):
        """Validate everything and build the model; raises UserError before anything is written."""
        a = self.args
        out = Path(a.out)
        resume_state = None
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a folder")
        if a.resume:
            if a.init_from:
                raise UserError("--resume continues the run in --out; it does not take --init-from")
            last = out / LAST
            if not (last / STATE_FILE).is_file():
                what = "no such folder" if not out.exists() else f"no checkpoint in {last}"
                raise UserError(f"--resume: {out}: {what}")
            saved = self._read_saved_args(last)
            for k, v in saved.items():
                if k in self.given and k not in RESUME_MAY_CHANGE and getattr(a, k) != v and k not in ("preset", "config"):
                    flag = "--" + k.replace("_", "-")
                    raise UserError(f"{flag} {getattr(a, k)} differs from the run being resumed ({v}); "
                                    f"resume continues a run exactly, use a new --out to change it")
            merged = dict(saved)
            # the checkpoint's own config.json defines the model; --preset/--config, if given, are
            # only checked against it (a --config file of the original run need not exist any more)
            merged["preset"] = merged["config"] = None
            for k in RESUME_MAY_CHANGE | {"preset", "config"}:
                if k in self.given:
                    merged[k] = getattr(a, k)
            merged["resume"], merged["out"] = True, a.out
            self.args = a = TrainArgs.from_dict(merged)
            resume_state = last
        elif out.is_dir() and ((out / LAST).exists() or (out / LOG_FILE).exists()):
            raise UserError(f"--out {out}: already holds a training run; pass --resume to continue it or choose another --out")
        if not a.steps and not a.time_budget:
            raise UserError("give --steps N or --time-budget DURATION")

        # config and weights
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
        source = resume_state or (resolve_model_folder(a.init_from) if a.init_from else None)
        if source is not None:
            if not Path(source).is_dir():
                raise UserError(f"--init-from {a.init_from}: no such model folder")
            cfg = read_config(source)
            if requested is not None:
                diff = config_diff(cfg, requested)
                if diff:
                    parts = "; ".join(f"{k}: {va!r} in the checkpoint, {vb!r} in {req_src}" for k, va, vb in diff[:4])
                    more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
                    raise UserError(f"{source}: config does not match {req_src}: {parts}{more}")
        elif requested is not None:
            cfg = requested
        else:
            raise UserError("give --preset NAME, --config FILE or --init-from CKPT")

        seq_len = a.seq_len or min(1024, cfg.max_seq_len)
        if seq_len > cfg.max_seq_len:
            raise UserError(f"--seq-len {seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        a.seq_len = seq_len
        corpus = ByteCorpus(a.data, seq_len)

        # output folder: must be writable (checked now so a long run cannot fail at its first save)
        if self.dist.main:
            ensure_writable_dir(out)

        state = None
        torch.manual_seed(a.seed)
        if source is not None:
            model = load_model(source)
            if resume_state is not None:
                state = read_tensors(resume_state / STATE_FILE)
                for k in ("step", "elapsed", "bytes_seen", "log_offset", "best_val", "data_seed"):
                    if k not in state:
                        raise UserError(f"{resume_state / STATE_FILE}: corrupted (no '{k}')")
        else:
            model = build_model(cfg)
        return corpus, model, state

    def _read_saved_args(self, last: Path) -> dict:
        path = last / ARGS_FILE
        try:
            d = json.loads(path.read_text())
            return dict(d["args"])
        except FileNotFoundError:
            raise UserError(f"{path}: missing (incomplete checkpoint)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{path}: corrupted ({type(e).__name__})") from None

    def _read_saved_world(self):
        try:
            return int(json.loads((self.out / LAST / ARGS_FILE).read_text()).get("world_size"))
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    # logging ----------------------------------------------------------------------------------
    def log(self, event: str, **fields):
        if self.log_f is None:
            return
        rec = {"event": event, **fields}
        self.log_f.write(json.dumps(rec) + "\n")
        self.log_f.flush()

    # checkpoints ------------------------------------------------------------------------------
    def _save(self, step: int):
        """Write DIR/last atomically (rank 0), after a replica check across ranks."""
        hashes = self.dist.gather(params_hash(self.model)) if self.dist.enabled else None
        self.saved_step, self.saved_elapsed = step, self.elapsed  # on every rank: later collectives depend on it
        if not self.dist.main:
            return
        if hashes and len(set(hashes)) > 1:
            self.log("replica_mismatch", step=step, hashes=hashes)
            raise RuntimeError(f"step {step}: DDP replicas diverged (parameter hashes {hashes})")
        names = {id(p): n for n, p in self.model.named_parameters()}
        st = optimizer_tensors(self.opt, names)
        st.update({
            "step": torch.tensor([step], dtype=torch.int64),
            "elapsed": torch.tensor([self.elapsed], dtype=torch.float64),
            "bytes_seen": torch.tensor([self.bytes_seen], dtype=torch.int64),
            "best_val": torch.tensor([self.best_val], dtype=torch.float64),
            "best_step": torch.tensor([self.best_step], dtype=torch.int64),
            "data_seed": torch.tensor([self.args.seed], dtype=torch.int64),
            "data_step": torch.tensor([step], dtype=torch.int64),
            "rng_torch": torch.get_rng_state(),
        })
        if self.dist.device.type == "cuda":
            st["rng_cuda"] = torch.cuda.get_rng_state(self.dist.device)
        self.log_f.flush()
        offset = self.log_f.tell()
        st["log_offset"] = torch.tensor([offset], dtype=torch.int64)
        summary = dict(format=FORMAT, args=self.args.to_dict(), step=step, world_size=self.dist.world,
                       elapsed_s=round(self.elapsed, 3), bytes_seen=self.bytes_seen, last_eval=self.last_eval,
                       best_val_bpb=None if math.isinf(self.best_val) else self.best_val, best_step=self.best_step,
                       saved=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__)
        with atomic_folder(self.out / LAST) as tmp:
            write_model_files(self.model, tmp, extra={STATE_FILE: st})
            (tmp / ARGS_FILE).write_text(json.dumps(summary, indent=2))
        self.log("checkpoint", step=step, path=str(self.out / LAST), **({"replica_hashes": hashes} if hashes else {}))

    def _save_best(self, step: int, metrics: dict):
        if not self.dist.main:
            return
        with atomic_folder(self.out / BEST) as tmp:
            write_model_files(self.model, tmp)
            (tmp / "best.json").write_text(json.dumps(dict(step=step, metric=self.metric_name, **metrics), indent=2))
        self.log("best", step=step, **{self.metric_name: self.best_val})

    # evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        model, dev = self.model, self.dist.device
        was_training = model.training
        model.eval()
        mine = self.val_offsets[self.dist.rank :: self.dist.world]
        taus = [None] + ([EVAL_TAU] if model.cfg.scratchpad else [])
        res = {}
        for tau in taus:
            acc = torch.zeros(3, dtype=torch.float64, device=dev)  # nats, bytes, scratchpads
            for x, y in self.corpus.val_batches(mine, self.args.batch_size):
                x, y = x.to(dev), y.to(dev)
                with autocast(dev):
                    out = model(x, targets=y, threshold=tau)
                n = y.numel()
                acc += torch.stack([out.byte_loss.double() * n, torch.tensor(float(n), device=dev, dtype=torch.float64),
                                    out.scratch.sum().double()])
            acc = self.dist.all_sum(acc)
            bpb = float(acc[0] / acc[1] / math.log(2)) if acc[1] > 0 else float("nan")
            if tau is None:
                res["val_bpb"] = bpb
            else:
                res[f"val_bpb_tau{tau:g}"] = bpb
                res[f"val_scratch_rate_tau{tau:g}"] = float(acc[2] / acc[1]) if acc[1] > 0 else 0.0
        model.train(was_training)
        return res

    def _eval_and_maybe_best(self, step: int):
        t0 = time.perf_counter()
        res = self.evaluate()
        self.last_eval = dict(step=step, **res)
        self.log("eval", step=step, eval_s=round(time.perf_counter() - t0, 3), **res)
        parts = [f"val bpb {res['val_bpb']:.4f}"]
        if f"val_bpb_tau{EVAL_TAU:g}" in res:
            parts.append(f"at tau {EVAL_TAU:g}: {res[f'val_bpb_tau{EVAL_TAU:g}']:.4f} "
                         f"(scratchpads at {100 * res[f'val_scratch_rate_tau{EVAL_TAU:g}']:.1f}% of bytes)")
        if self.dist.main:
            self.print(f"step {step:>7} | " + " | ".join(parts))
        value = res.get(self.metric_name)
        if value is not None and math.isfinite(value) and value < self.best_val:
            self.best_val, self.best_step = value, step
            self._save_best(step, res)
        return res

    # main loop --------------------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        self.dist = Dist(a.device)
        self.dist.start()
        old_handlers, old_threads = {}, torch.get_num_threads()
        try:
            if a.threads:
                torch.set_num_threads(a.threads)
            elif self.dist.enabled and self.dist.device.type == "cpu":
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, self.dist.local_world)))
            if self.args.resume and self.dist.main:
                recover_checkpoint_folders(Path(self.args.out))
            self.dist.gather(None)  # barrier: other ranks look at --out only after the recovery
            corpus, model, state = self.dist.agree(self._setup)
            a = self.args
            if a.threads:
                torch.set_num_threads(a.threads)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError):  # not the main thread
                    old_handlers[sig] = signal.signal(sig, self._on_signal)
            return self._train(corpus, model, state)
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            torch.set_num_threads(old_threads)  # for callers that run main() in-process
            if self.log_f is not None:
                self.log_f.close()
                self.log_f = None
            self.dist.stop()

    def _on_signal(self, signum, frame):
        self.stop_signal = signum

    def _train(self, corpus, model, state) -> int:
        a, dist, dev = self.args, self.dist, self.dist.device
        self.out, self.corpus = Path(a.out), corpus
        self.model = model = model.to(dev).train()
        self.metric_name = f"val_bpb_tau{EVAL_TAU:g}" if model.cfg.scratchpad else "val_bpb"
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.opt = make_optimizer(model, a.lr, a.weight_decay, dev)
        step, self.elapsed, self.bytes_seen = 0, 0.0, 0
        self.best_val, self.best_step, self.last_eval, self.saved_step = math.inf, -1, None, 0
        log_offset = None
        self.saved_elapsed = 0.0
        if state is not None:
            load_optimizer_tensors(self.opt, model, state, self.out / LAST / STATE_FILE)
            step = int(state["step"][0])
            self.elapsed = float(state["elapsed"][0])
            self.bytes_seen = int(state["bytes_seen"][0])
            self.best_val = float(state["best_val"][0])
            self.best_step = int(state["best_step"][0])
            log_offset = int(state["log_offset"][0])
            if int(state["data_seed"][0]) != a.seed:
                raise UserError(f"{self.out / LAST / STATE_FILE}: data seed {int(state['data_seed'][0])} does not match --seed {a.seed}")
            torch.set_rng_state(state["rng_torch"])
            if dev.type == "cuda" and "rng_cuda" in state:
                torch.cuda.set_rng_state(state["rng_cuda"], dev)
            self.saved_step, self.saved_elapsed = step, self.elapsed
        self.val_offsets = corpus.val_offsets(a.eval_windows)

        unused = unused_parameters(model, dev, a.seq_len) if dist.enabled else []
        step_model = LossModule(model)
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            step_model = DDP(step_model, device_ids=[dev.index] if dev.type == "cuda" else None,
                             find_unused_parameters=bool(unused))

        if dist.main:
            path = self.out / LOG_FILE
            if log_offset is not None and path.exists() and path.stat().st_size > log_offset:
                with open(path, "r+b") as f:
                    f.truncate(log_offset)
            self.log_f = open(path, "a")
        n_params = sum(p.numel() for p in model.parameters())
        global_batch = a.batch_size * a.grad_accum * dist.world
        bytes_per_step = global_batch * a.seq_len
        if state is not None:
            prev_world = self._read_saved_world()
            if dist.main and prev_world not in (None, dist.world):
                self.print(f"note: the checkpoint was written by {prev_world} process(es), this run has {dist.world}; "
                           f"the data order differs from an uninterrupted run")
            self.log("resume", step=step, time=datetime.now(timezone.utc).isoformat(timespec="seconds"), world_size=dist.world)
        else:
            self.log("start", time=datetime.now(timezone.utc).isoformat(timespec="seconds"), args=a.to_dict(),
                     config=model.cfg.to_dict(), params=n_params, world_size=dist.world, device=str(dev),
                     threads=torch.get_num_threads(), train_bytes=len(corpus.train), val_bytes=len(corpus.val),
                     val_windows=len(self.val_offsets), unused_parameters=unused,
                     manifest=corpus.manifest if isinstance(corpus.manifest, dict) else None)
        if dist.main:
            what = f"{a.steps} steps" if a.steps else ""
            if a.time_budget:
                what += (" or " if what else "") + f"{a.time_budget:g}s of training"
            self.print(f"{'resuming' if state is not None else 'training'} {model.cfg.name}: {n_params / 1e6:.2f}M params, "
                       f"{dist.world} process(es) on {dev}, batch {a.batch_size}x{a.grad_accum}x{dist.world} of "
                       f"{a.seq_len} bytes, {what}" + (f", from step {step}" if state is not None else ""))

        scale = 1.0 / a.grad_accum
        params = [p for p in model.parameters() if p.requires_grad]
        elapsed_local = self.elapsed  # this rank's training-step seconds; ranks agree on their mean
        window_bytes, window_time = 0, 0.0
        stop_reason = "steps"
        while True:
            if a.steps and step >= a.steps:
                stop_reason = "steps"
                break
            if a.time_budget and self.elapsed >= a.time_budget:
                stop_reason = "time_budget"
                break
            step += 1
            lr = lr_at(a, step, self.elapsed)
            for g in self.opt.param_groups:
                g["lr"] = lr
            t0 = time.perf_counter()
            acc = torch.zeros(3, device=dev, dtype=torch.float64)
            for micro in range(a.grad_accum):
                x, y = corpus.batch(a.seed, step, micro, dist.rank, a.batch_size)
                tau = model.sample_thresholds(a.batch_size, batch_generator(a.seed, step, micro, dist.rank))
                seed_model_rng(a.seed, step, micro, dist.rank)
                x, y, tau = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True), tau.to(dev)
                sync = contextlib.nullcontext()
                if dist.enabled and micro < a.grad_accum - 1:
                    sync = step_model.no_sync()
                with sync:
                    with autocast(dev):
                        loss, byte_loss, n_scratch = step_model(x, y, tau)
                    (loss * scale).backward()
                acc += torch.stack([loss.detach().double(), byte_loss.double(), n_scratch.double()])
            gnorm = torch.nn.utils.clip_grad_norm_(params, a.clip if a.clip > 0 else math.inf)
            local_bad = float(not torch.isfinite(acc[:2]).all())
            so_far = elapsed_local + (time.perf_counter() - t0)
            summary = torch.cat([acc, torch.tensor([local_bad, float(self.stop_signal != 0), so_far],
                                                   device=dev, dtype=torch.float64)])
            summary = dist.all_sum(summary).cpu()
            n_micro = a.grad_accum * dist.world
            loss_v, byte_v = float(summary[0]) / n_micro, float(summary[1]) / n_micro
            gnorm_v = float(gnorm)
            if summary[3] > 0 or not math.isfinite(gnorm_v):
                what = "loss" if summary[3] > 0 else "gradient norm"
                val = loss_v if summary[3] > 0 else gnorm_v
                self.log("stop", step=step, reason="nonfinite", what=what, value=str(val), lr=lr)
                kept = f"{self.out / LAST} (step {self.saved_step})" if self.saved_step > 0 else "none (no checkpoint was written yet)"
                raise UserError(f"step {step}: {what} is {val}; training stopped, the last good checkpoint is kept: {kept}"
                                f" (try a lower --lr or --clip)")
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            # identical on every rank, so time-based schedules and stops agree
            self.elapsed = float(summary[5]) / dist.world
            self.bytes_seen += bytes_per_step
            step_ms = 1000 * (time.perf_counter() - t0)
            elapsed_local += step_ms / 1000
            rate = bytes_per_step / max(step_ms / 1000, 1e-9)
            scratch_rate = float(summary[2]) / (a.batch_size * a.seq_len * n_micro)
            self.log("step", step=step, loss=loss_v, byte_loss=byte_v, bpb=byte_v / math.log(2), lr=lr,
                     grad_norm=gnorm_v, scratch_rate=scratch_rate, bytes=self.bytes_seen,
                     step_ms=round(step_ms, 2), bytes_per_s=round(rate, 1), elapsed=round(self.elapsed, 3))
            window_bytes += bytes_per_step
            window_time += step_ms / 1000
            if dist.main and (step % max(1, a.log_every) == 0 or (a.steps and step == a.steps)):
                self.print(f"step {step:>7}{f'/{a.steps}' if a.steps else ''} | loss {loss_v:.4f} | bpb {byte_v / math.log(2):.4f} "
                           f"| lr {lr:.2e} | {window_bytes / max(window_time, 1e-9) / 1e3:,.1f} kB/s "
                           f"| {1000 * window_time / max(1, window_bytes // bytes_per_step):.0f} ms/step "
                           f"| scratchpads {100 * scratch_rate:.1f}% | {_hms(self.elapsed)}")
                window_bytes, window_time = 0, 0.0
            if a.eval_every > 0 and step % a.eval_every == 0:
                self._eval_and_maybe_best(step)
            due = a.save_every > 0 and step % a.save_every == 0
            due = due or bool(a.save_every_s and self.elapsed - self.saved_elapsed >= a.save_every_s)
            if due:
                self._check_finite(step)
                self._save(step)
            if summary[4] > 0:
                stop_reason = "signal"
                break

        # final evaluation and checkpoint
        if self.last_eval is None or self.last_eval.get("step") != step:
            self._eval_and_maybe_best(step)
        if self.saved_step != step:
            self._check_finite(step)
            self._save(step)
        final_hashes = dist.gather(params_hash(model)) if dist.enabled else None
        self.log("end", step=step, reason=stop_reason, elapsed=round(self.elapsed, 3), bytes=self.bytes_seen,
                 best_step=self.best_step, **{f"best_{self.metric_name}": None if math.isinf(self.best_val) else self.best_val},
                 **{k: v for k, v in (self.last_eval or {}).items() if k != "step"},
                 **({"replica_hashes": final_hashes} if final_hashes else {}))
        if dist.main:
            msg = {"steps": "done", "time_budget": "time budget reached", "signal": "interrupted"}[stop_reason]
            self.print(f"{msg} at step {step}: checkpoint {self.out / LAST}, best {self.out / BEST} (step {self.best_step})")
        if stop_reason == "signal":
            if dist.main:
                print(f"interrupted: checkpoint at step {step} saved; continue with --resume", file=sys.stderr)
            return 130
        return 0

    def _check_finite(self, step):
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        bad = [b for r in self.dist.gather(bad) for b in r] if self.dist.enabled else bad
        if bad:
            self.log("stop", step=step, reason="nonfinite", what="parameters", names=bad[:5])
            raise UserError(f"step {step}: parameter {bad[0]} holds NaN or inf; training stopped, the last good "
                            f"checkpoint is kept: {self.out / LAST} (step {self.saved_step})")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train(args: TrainArgs, given: set[str] | None = None) -> int:
    return Trainer(args, given).run()
