"""The order in which a split is read: shuffled per epoch, cut into global
mini-batches, and each global batch shared among the ranks of a distributed run.

With one process a rank's batch is the whole global batch; with ``world``
processes rank ``r`` takes ``batch[r::world]``, so the ranks together see
exactly what one process would, and DistributedDataParallel's gradient average
is the gradient of the global batch (for equal shares).
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch

__all__ = ["epoch_order", "global_batches", "rank_share"]


def epoch_order(n: int, shuffle: bool, seed: int = 0, epoch: int = 0) -> torch.Tensor:
    """A permutation of ``range(n)`` drawn from ``seed`` and ``epoch`` (or range order)."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def global_batches(n: int, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                   drop_last: Optional[bool] = None) -> Iterator[torch.Tensor]:
    """Index tensors of the global mini-batches of one epoch.

    ``drop_last`` defaults to ``shuffle``: training drops the last partial
    batch, evaluation keeps every example."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    drop_last = shuffle if drop_last is None else drop_last
    order = epoch_order(n, shuffle, seed, epoch)
    stop = (n // batch_size) * batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def rank_share(batch: torch.Tensor, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The part of a global batch that rank ``rank`` of ``world`` processes."""
    return batch[rank::world] if world > 1 else batch
