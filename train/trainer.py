"""The trainer: single process or `torchrun` DDP, exact resume, fine-tuning, time budgets.

Output folder (`--out DIR`), written by rank 0 only (train/state.py reads and writes it):

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
                             scratchpad models and tau = inf (plain patching) otherwise

A step event's `loss` is the optimised loss: byte cross-entropy + aux_loss_weight x the aux head's
cross-entropy (+ the router loss of learned patchers); `byte_loss` and `aux_loss` are its parts
(nats), `bpb` is byte_loss in bits. `step_ms` waits for the device; `bytes_per_s`, `model_flops`
(forward + backward, scratchpad.accounting), `mfu` (on GPUs with a known peak, train/hardware.py)
and `peak_mem_bytes` (CUDA) describe the step's speed. An eval event's `val_bpb` is at tau = inf.

Exact resume: window sampling and training thresholds are counter-based (train/data.py), the LR
schedule is a function of the step (when training by --steps), and optimizer moments, RNG states
and the step are restored bit-exactly, so on CPU a resumed run logs the same per-step losses as an
uninterrupted one. On resume the log is cut back to its length at the checkpoint, so it describes
one trajectory. With --time-budget the cosine schedule follows elapsed training time, which is not
reproducible across runs (resume still continues the budget where it stopped).

The parts: train/args.py (arguments, resume rules, the run's config), train/loss.py (loss module, validation BPB), train/dist.py (process group), train/optim.py
(AdamW, schedule), train/state.py (run folder, train state), train/loop.py (the optimizer step), train/progress.py (log events, console lines),
scratchpad/precision.py (dtype, compile), train/hardware.py (timing, MFU); this file wires them into a run.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from scratchpad import UserError, build_model, load_model
from scratchpad.accounting import training_flops
from scratchpad.checkpoint import ensure_writable_dir
from train.args import TrainArgs, merge_resume_args, resolve_config
from train.loss import LossModule, unused_parameters, validation_bpb
from train.data import ByteCorpus, batch_generator, seed_model_rng
from train.dist import Dist
from scratchpad.precision import check_dtype, compile_module, compile_problem
from train.hardware import machine_load, reset_peak_memory
from train.progress import Progress
from train.loop import NonFinite, StepLoop
from train.optim import make_optimizer, schedule_warning
from train.state import (BEST, LAST, LOG_FILE, STATE_FILE, params_hash, read_saved_args, read_saved_world,
                         read_train_state, recover_checkpoint_folders, restore_train_state,
                         train_state_tensors, write_best, write_last)

EVAL_TAU = 1.5  # the runtime default threshold, evaluated next to tau = inf for scratchpad models

__all__ = ["EVAL_TAU", "TrainArgs", "Trainer", "train"]


class Trainer:
    def __init__(self, args: TrainArgs, given: set[str] | None = None, out_stream=None):
        self.args = args
        self.given = set(given or ())
        self.print = (lambda s: print(s, file=out_stream or sys.stdout, flush=True))
        self.log_f = None
        self.stop_signal = 0
        self.dist = Dist(args.device)  # started by run(); _setup reads its device and rank

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
            self.args = a = merge_resume_args(read_saved_args(last), a, self.given)
            resume_state = last
        elif out.is_dir() and ((out / LAST).exists() or (out / LOG_FILE).exists()):
            raise UserError(f"--out {out}: already holds a training run; pass --resume to continue it or choose another --out")
        if not a.steps and not a.time_budget and not a.flops_budget:
            raise UserError("give --steps N, --time-budget DURATION or --flops-budget FLOPS")
        self.dtype_note = check_dtype(a.dtype, self.dist.device)
        if a.compile:
            problem = compile_problem(self.dist.device)
            if problem:
                raise UserError(f"--compile: {problem}; run without --compile")

        source, cfg = resolve_config(a, resume_state)  # config and weights

        seq_len = a.seq_len or min(1024, cfg.max_seq_len)
        if seq_len > cfg.max_seq_len:
            raise UserError(f"--seq-len {seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        a.seq_len = seq_len
        floor = a.grad_accum * self.dist.world * training_flops(cfg, a.batch_size, seq_len,
                                                               a.batch_size * (seq_len // cfg.patch_size), 0)
        if a.flops_budget and a.flops_budget < floor and resume_state is None:
            raise UserError(f"--flops-budget {a.flops_budget:.3e}: less than one training step of this model and batch "
                            f"(~{floor:.3e} FLOPs)")
        corpus = ByteCorpus(a.data, seq_len)

        # output folder: must be writable (checked now so a long run cannot fail at its first save)
        if self.dist.main:
            ensure_writable_dir(out)

        state = None
        torch.manual_seed(a.seed)
        if source is not None:
            model = load_model(source)
            if resume_state is not None:
                state = read_train_state(resume_state)
        else:
            model = build_model(cfg)
        return corpus, model, state

    # logging ----------------------------------------------------------------------------------
    def log(self, event: str, **fields):
        if self.log_f is None:
            return
        import json

        self.log_f.write(json.dumps({"event": event, **fields}) + "\n")
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
        self.log_f.flush()
        counters = dict(step=step, elapsed=self.elapsed, bytes_seen=self.bytes_seen, flops=self.flops_spent,
                        best_val=self.best_val,
                        best_step=self.best_step, data_seed=self.args.seed, log_offset=self.log_f.tell())
        st = train_state_tensors(self.opt, self.model, counters, self.dist.device)
        summary = dict(args=self.args.to_dict(), step=step, world_size=self.dist.world,
                       elapsed_s=round(self.elapsed, 3), bytes_seen=self.bytes_seen, last_eval=self.last_eval,
                       best_val_bpb=None if math.isinf(self.best_val) else self.best_val, best_step=self.best_step,
                       saved=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__)
        write_last(self.out, self.model, st, summary)
        self.log("checkpoint", step=step, path=str(self.out / LAST), **({"replica_hashes": hashes} if hashes else {}))

    def _save_best(self, step: int, metrics: dict):
        if not self.dist.main:
            return
        write_best(self.out, self.model, dict(step=step, metric=self.metric_name, **metrics))
        self.log("best", step=step, **{self.metric_name: self.best_val})

    # evaluation -------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation BPB at tau = inf (and EVAL_TAU for scratchpad models) over this rank's windows."""
        return validation_bpb(self.model, self.eval_model, self.corpus, self.val_offsets[self.dist.rank :: self.dist.world],
                              self.dist, self.args.batch_size, self.args.dtype, EVAL_TAU)

    def _eval_and_maybe_best(self, step: int):
        t0 = time.perf_counter()
        res = self.evaluate()
        self.last_eval = dict(step=step, **res)
        self.log("eval", step=step, eval_s=round(time.perf_counter() - t0, 3), **res)
        parts = [f"val bpb at tau=inf {res['val_bpb']:.4f}"]
        if f"val_bpb_tau{EVAL_TAU:g}" in res:
            parts.append(f"at tau={EVAL_TAU:g} {res[f'val_bpb_tau{EVAL_TAU:g}']:.4f} "
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

    def _open_log(self, log_offset):
        if not self.dist.main:
            return
        path = self.out / LOG_FILE
        if log_offset is not None and path.exists() and path.stat().st_size > log_offset:
            with open(path, "r+b") as f:
                f.truncate(log_offset)
        self.log_f = open(path, "a")

    def _train(self, corpus, model, state) -> int:
        """The run: restore or start the counters, wrap the model, step until a budget or a signal
        stops it, then evaluate and save the last step."""
        a, dist, dev = self.args, self.dist, self.dist.device
        self.out, self.corpus = Path(a.out), corpus
        self.model = model = model.to(dev).train()
        self.metric_name = f"val_bpb_tau{EVAL_TAU:g}" if model.cfg.scratchpad else "val_bpb"
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.opt = make_optimizer(model, a.lr, a.weight_decay, dev)
        step, log_offset = self._restore(state)
        self.val_offsets = corpus.val_offsets(a.eval_windows)

        unused = unused_parameters(model, dev, a.seq_len) if dist.enabled else []
        ddp = dist.wrap(LossModule(model), find_unused=bool(unused))
        step_model, self.eval_model = ddp, model
        if a.compile:
            step_model, self.eval_model = compile_module(ddp), compile_module(model)

        self._open_log(log_offset)
        self.bytes_per_step = a.batch_size * a.grad_accum * dist.world * a.seq_len
        self.progress = Progress(self.log, self.print, a, dist, self.bytes_per_step, first_step=step + 1)
        self.progress.announce(model, corpus, step, state is not None, read_saved_world(self.out) if state is not None else None,
                               unused, len(self.val_offsets), (schedule_warning(a), self.dtype_note))
        self.loop = StepLoop(step_model, [p for p in model.parameters() if p.requires_grad], self.opt, a, dist, dev,
                             no_sync=getattr(ddp, "no_sync", None), stop_flag=lambda: self.stop_signal != 0,
                             step_flops=self._step_flops, flops_spent=self.flops_spent)
        reset_peak_memory(dev)
        try:
            step, stop_reason = self.loop.run(step, self.elapsed, self._batch, self._on_step)
        except NonFinite as e:
            self.log("stop", step=e.step, reason="nonfinite", what=e.what, value=str(e.value), lr=e.lr)
            kept = f"{self.out / LAST} (step {self.saved_step})" if self.saved_step > 0 else "none (no checkpoint was written yet)"
            raise UserError(f"step {e.step}: {e.what} is {e.value}; training stopped, the last good checkpoint is kept: "
                            f"{kept} (try a lower --lr or --clip)") from None
        return self._finish(step, stop_reason)

    def _restore(self, state) -> tuple[int, int | None]:
        """The run's counters, from the train state on resume (else zero) -> (step, log offset)."""
        step, self.elapsed, self.bytes_seen, self.flops_spent = 0, 0.0, 0, 0.0
        self.best_val, self.best_step, self.last_eval, self.saved_step, self.saved_elapsed = math.inf, -1, None, 0, 0.0
        if state is None:
            return step, None
        c = restore_train_state(state, self.opt, self.model, self.out / LAST / STATE_FILE, self.args.seed, self.dist.device)
        step, self.elapsed, self.bytes_seen, self.flops_spent = c["step"], c["elapsed"], c["bytes_seen"], c["flops"]
        self.best_val, self.best_step = c["best_val"], c["best_step"]
        self.saved_step, self.saved_elapsed = step, self.elapsed
        return step, c["log_offset"]

    def _batch(self, step: int, micro: int):
        """Micro-batch `micro` of `step` on this rank: (x, y [batch, seq_len], training taus [batch])."""
        a, dev = self.args, self.dist.device
        x, y = self.corpus.batch(a.seed, step, micro, self.dist.rank, a.batch_size)
        tau = self.model.sample_thresholds(a.batch_size, batch_generator(a.seed, step, micro, self.dist.rank))
        seed_model_rng(a.seed, step, micro, self.dist.rank)
        return x.to(dev, non_blocking=True), y.to(dev, non_blocking=True), tau.to(dev)

    def _step_flops(self, stats) -> float:
        """Training FLOPs of one optimizer step; stats: means over micro-batches of StepLoop's STATS."""
        a = self.args
        return a.grad_accum * self.dist.world * training_flops(self.model.cfg, a.batch_size, a.seq_len, stats[3], stats[2])

    def _on_step(self, st):
        """After each optimizer step: counters, the step's log and console line, evaluation, checkpoint."""
        a = self.args
        self.elapsed, self.flops_spent = st.elapsed, self.loop.flops_spent
        self.bytes_seen += self.bytes_per_step
        self.progress.step(st, self.bytes_seen, self.flops_spent)
        if a.eval_every > 0 and st.step % a.eval_every == 0:
            self._eval_and_maybe_best(st.step)
        due = a.save_every > 0 and st.step % a.save_every == 0
        if due or bool(a.save_every_s and self.elapsed - self.saved_elapsed >= a.save_every_s):
            self._check_finite(st.step)
            self._save(st.step)

    def _finish(self, step: int, stop_reason: str) -> int:
        """Evaluate and save the last step (unless just done), the end event, the closing line -> exit code."""
        dist = self.dist
        if self.last_eval is None or self.last_eval.get("step") != step:
            self._eval_and_maybe_best(step)
        if self.saved_step != step:
            self._check_finite(step)
            self._save(step)
        final_hashes = dist.gather(params_hash(self.model)) if dist.enabled else None
        self.log("end", step=step, reason=stop_reason, elapsed=round(self.elapsed, 3), bytes=self.bytes_seen,
                 flops=self.flops_spent, **machine_load(),
                 best_step=self.best_step, **{f"best_{self.metric_name}": None if math.isinf(self.best_val) else self.best_val},
                 **{k: v for k, v in (self.last_eval or {}).items() if k != "step"},
                 **({"replica_hashes": final_hashes} if final_hashes else {}))
        if dist.main:
            msg = {"steps": "done", "time_budget": "time budget reached", "flops_budget": "FLOP budget reached",
                   "signal": "interrupted"}[stop_reason]
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


def train(args: TrainArgs, given: set[str] | None = None) -> int:
    return Trainer(args, given).run()
