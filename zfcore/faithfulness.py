"""Faithfulness of the maps: deletion and insertion (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

Deletion and insertion curves of the class probability as pixels are removed, or added to
a blurred image, in the map's order of importance, with a random order as the baseline
(:func:`deletion_insertion`). The maps are (N, H, W) importance maps
(:func:`zfcore.saliency.importance`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .chain import EvalMode, check_images, device_of
from .progress import progress_bar
from .saliency import Target, as_maps, class_logits, class_targets, positive_int

__all__ = ["DeletionInsertion", "deletion_insertion"]



@dataclass
class DeletionInsertion:
    """Deletion and insertion curves (Petsiuk et al., RISE, BMVC 2018).

    Attributes:
        fractions: (steps + 1,) the share of the pixels removed (deletion) or inserted.
        deletion: (N, steps + 1) the class's probability as the most important pixels are
            set to ``fill`` (the mean), in the map's order.
        insertion: (N, steps + 1) the class's probability as they are put back into the
            start image (blurred, or the mean), in the same order.
        deletion_auc, insertion_auc: (N,) the areas under the curves, in [0, 1] (trapezoids
            over ``fractions``): a faithful map has a low deletion and a high insertion area.
        target: (N,) the classes.
        num_classes: the model's number of classes (``1 / num_classes`` is chance).

    ``deletion[:, 0]`` is the probability on the intact image: a model at chance there has
    nothing for the curves to lose or regain.
    """
    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    target: torch.Tensor = field(repr=False)
    num_classes: int = 0

    @property
    def intact(self) -> np.ndarray:
        """(N,) the class's probability on the intact images."""
        return self.deletion[:, 0]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of each channel (zero padding replaced by edge replication)."""
    radius = max(1, int(math.ceil(2 * sigma)))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype).to(x.device)
    c = x.shape[1]
    h = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    h = F.conv2d(h, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    h = F.pad(h, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(h, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def deletion_insertion(model: nn.Module, x: torch.Tensor, maps, target: Target, steps: int = 32, *,
                       start: str = "blur", fill: float = 0.0, sigma: Optional[float] = None,
                       seed: int = 0, batch_size: int = 256, progress: bool = True) -> DeletionInsertion:
    """Deletion and insertion (Petsiuk et al., RISE, BMVC 2018).

    The pixels of each image are ordered by the map, most important first (ties in an order
    drawn from ``seed``). *Deletion* sets them, ``HW / steps`` at a time, to ``fill`` (0: the
    training mean, in prepared images) and follows the class's softmax probability;
    *insertion* starts from a blurred copy of the image (``start="blur"``) or from the mean
    (``"mean"``) and puts the original pixels back in the same order. The area under each
    curve summarizes it: low for deletion and high for insertion when the map ranks the
    pixels the model needs first. ``maps=None`` orders the pixels at random, the baseline.

    Args:
        model: a chain zfcore can walk; run in eval mode, without gradients.
        x: prepared images, (N, 3, H, W).
        maps: (N, H, W) importance maps (:func:`zfcore.saliency.importance`), or None for a random order.
        target: the class of each image (an int or N ints); None: the model's prediction.
        steps: the number of increments (the curves have ``steps + 1`` points).
        start: the insertion's start, ``"blur"`` or ``"mean"``.
        fill: the value of a deleted pixel (and of the ``"mean"`` start).
        sigma: the blur's standard deviation in pixels; default RISE's 5 at 224 px, scaled to
            the image (1.4 at 64 px).
        batch_size: images per forward pass.

    Returns:
        :class:`DeletionInsertion`, AUCs of shape (N,) in [0, 1].
    """
    check_images(x)
    steps = positive_int(steps, "steps")
    if start not in ("blur", "mean"):
        raise ValueError(f"start must be 'blur' or 'mean', got {start!r}")
    batch_size = positive_int(batch_size, "batch_size")
    n, _, h, w = x.shape
    t = class_targets(model, x, target)
    num_classes = int(class_logits(model, x[:1]).shape[1])
    g = torch.Generator().manual_seed(int(seed))
    if maps is None:
        m = torch.rand(n, h, w, generator=g, dtype=torch.float64)
        g = torch.Generator().manual_seed(int(seed) + 1)
    else:
        m = as_maps(maps)
        if tuple(m.shape) != (n, h, w):
            raise ValueError(f"maps must have shape ({n}, {h}, {w}), one per image, got {tuple(m.shape)}")
    # the order: a random permutation first, then a stable sort, so that ties fall at random
    perm = torch.stack([torch.randperm(h * w, generator=g) for _ in range(n)])
    flat = m.reshape(n, -1)
    order = perm.gather(1, torch.argsort(-flat.gather(1, perm), dim=1, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(n, -1).contiguous())
    counts = [int(round(k * h * w / steps)) for k in range(steps + 1)]
    dev = device_of(model, x)
    xs = x.detach().to(dev)
    base = (_blur(xs, sigma if sigma is not None else 5.0 * min(h, w) / 224) if start == "blur"
            else torch.full_like(xs, float(fill)))
    rank = rank.reshape(n, 1, h, w).to(dev)
    tt = t.to(dev)
    dele = torch.zeros(n, steps + 1, dtype=torch.float64)
    ins = torch.zeros(n, steps + 1, dtype=torch.float64)
    with EvalMode(model), torch.no_grad():
        for k in progress_bar(range(steps + 1), desc="deletion and insertion", enabled=progress,
                              leave=False):
            for s0 in range(0, n, batch_size):
                sl = slice(s0, s0 + batch_size)
                gone = rank[sl] < counts[k]
                for curve, img in ((dele, torch.where(gone, torch.full_like(xs[sl], float(fill)), xs[sl])),
                                   (ins, torch.where(gone, xs[sl], base[sl]))):
                    p = torch.softmax(model(img).float(), dim=1)
                    curve[sl, k] = p[torch.arange(p.shape[0], device=dev), tt[sl]].double().cpu()
    frac = torch.tensor(counts, dtype=torch.float64) / (h * w)
    return DeletionInsertion(fractions=frac.numpy(), deletion=dele.numpy(), insertion=ins.numpy(),
                             deletion_auc=torch.trapezoid(dele, frac, dim=1).clamp(0, 1).numpy(),
                             insertion_auc=torch.trapezoid(ins, frac, dim=1).clamp(0, 1).numpy(),
                             target=t, num_classes=num_classes)
