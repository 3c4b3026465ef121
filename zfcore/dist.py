"""torch.distributed, when a run is launched by ``torchrun``: set-up, rank, barrier, all-gather.

Every function here is a no-op, or the single-process answer, when torch.distributed is
not initialised, so that the same code runs alone and under ``torchrun --nproc_per_node=N``
(NCCL on GPUs, gloo on CPUs).
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Optional, Tuple

import torch
import torch.distributed as _td

__all__ = ["active", "rank_world", "collective_device", "all_reduce", "all_gather_cat", "broadcast_index",
           "init", "shutdown", "barrier", "compute_device"]


def active():
    """``torch.distributed`` when a process group is initialised, else None."""
    return _td if _td.is_available() and _td.is_initialized() else None


def rank_world() -> Tuple[int, int]:
    """(this process's rank, the number of processes): (0, 1) when not distributed."""
    d = active()
    return (d.get_rank(), d.get_world_size()) if d is not None else (0, 1)


def collective_device() -> torch.device:
    """Where tensors must be for a collective: this rank's GPU under NCCL, else the CPU."""
    d = active()
    if d is not None and d.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def compute_device() -> torch.device:
    """Where this rank computes: its GPU under NCCL, else a GPU when there is one, else the CPU."""
    d = active()
    if d is not None and d.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, on the CPU (``t`` itself when not distributed)."""
    d = active()
    if d is None:
        return t
    t2 = t.to(collective_device())
    d.all_reduce(t2)
    return t2.cpu()


def all_gather_cat(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's ``t`` (same shape on all), concatenated along ``dim`` in rank order, on the CPU."""
    d = active()
    if d is None:
        return t
    t = t.contiguous().to(collective_device())
    out = [torch.empty_like(t) for _ in range(d.get_world_size())]
    d.all_gather(out, t)
    return torch.cat([o.cpu() for o in out], dim)


def broadcast_index(index: Optional[int], device=None) -> int:
    """Rank 0's ``index`` on every rank (``index`` itself, or 0 for None, when not distributed)."""
    d = active()
    if d is None:
        return int(index or 0)
    pick = torch.tensor([int(index or 0)], device=device if device is not None else collective_device())
    d.broadcast(pick, 0)
    return int(pick)


def init() -> Tuple[int, int, torch.device]:
    """(rank, world, device); starts torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if not _td.is_initialized():
        # a long timeout: rank 0 may compute the per-pixel mean of a large training set
        # while the others wait at a barrier
        _td.init_process_group(backend, timeout=timedelta(hours=3))
        atexit.register(shutdown)
    return _td.get_rank(), _td.get_world_size(), device


def barrier() -> None:
    """Wait for every rank (nothing when not distributed)."""
    d = active()
    if d is not None:
        d.barrier()


def shutdown() -> None:
    """End the process group (nothing when there is none); ``init`` registers it to run at exit.

    A process that exits with a gloo group still alive can abort while the interpreter is torn
    down ("terminate called without an active exception": gloo's worker threads still hold
    tensors), which fails a run that had finished its work.
    """
    if _td.is_available() and _td.is_initialized():
        _td.destroy_process_group()
