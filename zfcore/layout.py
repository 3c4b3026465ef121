"""How this machine runs tensors fastest: the memory layout of a convnet (channels-last or
contiguous), and how many threads small tensor operations get.

Which layout is faster depends on the processor and its kernels. Measured on this project's
machines with ``make bench``, a forward pass of the default scale's ZF network to conv5 ran
faster in channels-last on an AMD EPYC, and slower on an Intel Xeon with AVX-512 (1080
against 1470 images/s). So the layout is measured once per machine, model and input shape,
and the choice is kept in ``artifacts/layouts.json``: every later run on the machine uses the
same layout, so that its numbers are reproducible (the two layouts round differently, in the
last bits of float32). ``ZF_LAYOUT=contiguous`` or ``ZF_LAYOUT=channels_last`` forces one.

:class:`Threads` runs a block on fewer CPU threads: operations on small tensors go faster on one
thread, and on a busy machine much faster, since spinning OpenMP threads wait for each other at
every operation.

:func:`zfcore.keep_freed_memory` (run when :mod:`zfcore` is imported) tells glibc's allocator to
keep the memory a batch frees for the next batch. By default glibc serves large tensors (a
batch's conv1 maps: 11 MB at the default scale) from fresh pages and, as the heap shrinks,
hands them back, so that later batches fault them in again: measured on a 2-core Intel Xeon VM
at the default scale, up to 9,720 page faults in a forward pass of 2000 images (up to 150,000
in one of mining), and none with the memory kept. Three processes of each, run in turn (median
of 6 passes each): forward 450, 473, 505 ms kept against 513, 441, 596 ms by default; mining
458, 495, 538 ms against 608, 526, 708 ms.
``ZF_MALLOC=system`` leaves glibc's own settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from typing import Callable, Optional

import torch
from torch import nn

from . import dist as zdist
from .artifacts import artifacts_dir, atomic_write

__all__ = ["LAYOUTS", "preferred_layout", "as_layout", "machine_name", "Threads"]

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

_CHOSEN: dict = {}          # this process's choices, by key


class Threads:
    """Run a ``with`` block on ``n`` torch CPU threads (at most the current count), then restore
    the count; ``None`` leaves it."""

    def __init__(self, n: Optional[int]):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None and self.n != self.old:
            torch.set_num_threads(max(1, min(int(self.n), self.old)))

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.old:
            torch.set_num_threads(self.old)
        return False


def machine_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(model: nn.Module, x: torch.Tensor, tag: str = "") -> str:
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    device = x.device.type if x.device.type == "cpu" else torch.cuda.get_device_name(x.device)
    what = [machine_name(), device, torch.__version__, torch.get_num_threads(),
            str(x.dtype), list(x.shape), [type(model).__name__, shapes]]
    text = json.dumps(what + [tag] if tag else what, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _store():
    return artifacts_dir() / "layouts.json"


def _read() -> dict:
    try:
        data = json.loads(_store().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}                              # none yet, or damaged: measured again


def _measure(forward: Callable[[torch.Tensor], object], x: torch.Tensor, rounds: int = 2) -> str:
    """The faster layout for ``forward`` on ``x``: one warm-up each, then the best of
    ``rounds`` alternating runs of each (so that a busy machine slows both alike)."""
    best = {name: float("inf") for name in LAYOUTS}
    for r in range(rounds + 1):
        for name, fmt in LAYOUTS.items():
            xi = x.contiguous(memory_format=fmt)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            forward(xi)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            if r > 0:
                best[name] = min(best[name], time.perf_counter() - t0)
    return min(best, key=best.get)


def as_layout(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``x`` (N, C, H, W) as kernels will read it in memory format ``fmt``: ``x`` itself when its
    strides are already ordered so (e.g. a crop of images stored (N, H, W, C), which the
    convolutions take as channels-last without a copy), else a copy in ``fmt``."""
    if x.dim() == 4:
        n, c, h, w = x.stride()
        if fmt == torch.channels_last and c == 1 and n >= h >= w >= c:
            return x
        if fmt == torch.contiguous_format and w == 1 and n >= c >= h >= w:
            return x
    return x.contiguous(memory_format=fmt)


def preferred_layout(model: nn.Module, x: torch.Tensor,
                     forward: Optional[Callable[[torch.Tensor], object]] = None,
                     tag: str = "", shared: bool = True) -> torch.memory_format:
    """The memory format in which ``forward`` (default ``model``) runs ``x`` fastest here.

    Args:
        model: the network (its parameter shapes key the choice).
        x: a batch as it will be run, (N, C, H, W), on the model's device.
        forward: what is timed, called on ``x`` in each layout, without gradients
            (default: ``model(x)``); e.g. a forward that stops at the last layer needed.
        tag: what ``forward`` is, when it is not the model's whole pass (e.g. the layer it
            stops at): choices for one model and shape but different forwards are kept apart.
        shared: under torch.distributed, rank 0's choice is every rank's (a collective: every
            rank must call it alike); False: this process decides alone (for work that one
            rank may do by itself, e.g. a projection).

    Returns:
        ``torch.channels_last`` or ``torch.contiguous_format``. Measured once per machine,
        model, input shape and thread count (and ``tag``), then read from
        ``artifacts/layouts.json``.
    """
    forced = os.environ.get("ZF_LAYOUT")
    if forced:
        if forced not in LAYOUTS:
            raise ValueError(f"ZF_LAYOUT={forced!r}: expected one of {', '.join(LAYOUTS)}")
        return LAYOUTS[forced]
    if x.dim() != 4:
        return torch.contiguous_format
    key = _key(model, x, tag)
    name = _CHOSEN.get(key) or _read().get(key)
    rank, world = zdist.rank_world() if shared else (0, 1)
    if name not in LAYOUTS:
        name = None
        if rank == 0:
            with torch.no_grad():
                name = _measure(forward or model, x)
            stored = _read()
            stored[key] = name
            try:
                _store().parent.mkdir(parents=True, exist_ok=True)
                atomic_write(_store(), lambda f: f.write(json.dumps(stored, indent=1).encode()))
            except OSError:
                pass                              # a read-only artifacts folder: keep it in memory
    if world > 1:
        name = list(LAYOUTS)[zdist.broadcast_index(list(LAYOUTS).index(name) if name else 0, x.device)]
    _CHOSEN[key] = name
    return LAYOUTS[name]
