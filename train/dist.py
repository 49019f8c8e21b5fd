"""The process group: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) or a single process."""
from __future__ import annotations

import contextlib
import os

import torch

from kernels import check_backend
from scratchpad.errors import UserError


class Dist:
    """torchrun's environment or a single process; collectives are no-ops without a group."""

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
        check_backend(self.device)  # SCRATCHPAD_KERNELS=triton where it cannot run: one line, before any work
        self.enabled = self.world > 1
        self.started_group = False

    @classmethod
    def single(cls, device_kind: str | None = "cpu") -> "Dist":
        """One process whatever the environment says (for jobs that never join a group)."""
        d = cls(device_kind)
        d.world, d.rank, d.local_rank, d.local_world, d.enabled = 1, 0, 0, 1, False
        return d

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

    def wrap(self, module: torch.nn.Module, find_unused: bool) -> torch.nn.Module:
        """DDP around module when there is a group, the module itself otherwise."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                   find_unused_parameters=find_unused)
