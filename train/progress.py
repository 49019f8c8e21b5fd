"""What a training run says as it goes: the start (or resume) event and its console line, then
per step the log event and, every --log-every steps, one console line whose speed covers the steps
since the previous line. Rank 0 prints; every rank's `log` is a no-op without an open log."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import torch

from train.hardware import machine_load, peak_flops, peak_memory_bytes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, log, say, args, dist, bytes_per_step: int, first_step: int):
        """log(event, **fields) writes the JSON log; say(line) prints (rank 0 only is asked to)."""
        self.log, self.say, self.args, self.dist = log, say, args, dist
        self.bytes_per_step, self.first_step = bytes_per_step, first_step
        self.peak = peak_flops(dist.device, args.dtype)
        self.window = dict(bytes=0, time=0.0, steps=0)

    def announce(self, model, corpus, step: int, resumed: bool, prev_world, unused: list, val_windows: int, notes):
        """The start or resume event and the run's console header (model, processes, batch, budget)."""
        a, dist, dev = self.args, self.dist, self.dist.device
        n_params = sum(p.numel() for p in model.parameters())
        if resumed:
            if dist.main and prev_world not in (None, dist.world):
                self.say(f"note: the checkpoint was written by {prev_world} process(es), this run has {dist.world}; "
                         f"the data order differs from an uninterrupted run")
            self.log("resume", step=step, time=_now(), world_size=dist.world, **machine_load())
        else:
            self.log("start", time=_now(), args=a.to_dict(), config=model.cfg.to_dict(), params=n_params,
                     world_size=dist.world, device=str(dev),
                     device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                     peak_flops=self.peak, threads=torch.get_num_threads(), train_bytes=len(corpus.train),
                     val_bytes=len(corpus.val), val_windows=val_windows, unused_parameters=unused,
                     manifest=corpus.manifest if isinstance(corpus.manifest, dict) else None, **machine_load())
        if not dist.main:
            return
        budgets = [f"{a.steps} steps" if a.steps else "", f"{a.time_budget:g}s of training" if a.time_budget else "",
                   f"{a.flops_budget:.3e} training FLOPs" if a.flops_budget else ""]
        self.say(f"{'resuming' if resumed else 'training'} {model.cfg.name}: {n_params / 1e6:.2f}M params, "
                 f"{dist.world} process(es) on {dev}, {a.dtype}{', compiled' if a.compile else ''}, batch "
                 f"{a.batch_size}x{a.grad_accum}x{dist.world} of {a.seq_len} bytes, {' or '.join(b for b in budgets if b)}"
                 + (f", from step {step}" if resumed else ""))
        for note in notes:
            if note:
                self.say(note)

    def step(self, st, bytes_seen: int, flops_spent: float):
        """The step event of StepLoop's step st, and the console line when one is due."""
        a, dist = self.args, self.dist
        byte_l, aux_l, n_scratch, _ = st.stats
        scratch_rate = n_scratch / (a.batch_size * a.seq_len)
        perf = dict(step_ms=round(1000 * st.step_s, 2), bytes_per_s=round(self.bytes_per_step / max(st.step_s, 1e-9), 1),
                    model_flops=st.flops, flops=flops_spent)
        if self.peak:
            perf["mfu"] = round(st.flops / st.step_s / self.peak / dist.world, 5)
        mem = peak_memory_bytes(dist.device)
        if mem is not None:
            perf["peak_mem_bytes"] = mem
        self.log("step", step=st.step, loss=st.loss, byte_loss=byte_l, aux_loss=aux_l, bpb=byte_l / math.log(2),
                 lr=st.lr, grad_norm=st.grad_norm, scratch_rate=scratch_rate, bytes=bytes_seen,
                 elapsed=round(st.elapsed, 3), **perf)
        if st.step == self.first_step and a.compile and dist.main:
            self.say(f"compile: the first step took {st.step_s:.1f}s (torch.compile warm-up, counted in the training time)")
            self.log("compile", step=st.step, first_step_s=round(st.step_s, 3))
        w = self.window
        w["bytes"] += self.bytes_per_step
        w["time"] += st.step_s
        w["steps"] += 1
        if dist.main and (st.step % max(1, a.log_every) == 0 or (a.steps and st.step == a.steps)):
            mfu = f" | MFU {100 * perf['mfu']:.1f}%" if "mfu" in perf else ""
            self.say(f"step {st.step:>7}{f'/{a.steps}' if a.steps else ''} | loss (byte+aux) {st.loss:.4f} "
                     f"| bpb {byte_l / math.log(2):.4f} | lr {st.lr:.2e} "
                     f"| {w['bytes'] / max(w['time'], 1e-9) / 1e3:,.1f} kB/s "
                     f"| {1000 * w['time'] / max(1, w['steps']):.0f} ms/step{mfu} "
                     f"| scratchpads {100 * scratch_rate:.1f}% | {_hms(st.elapsed)}")
            w.update(bytes=0, time=0.0, steps=0)
