"""Localization of the maps against the objects' boxes (beyond the paper).

The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV
2016: a hit when the map's maximum lies on the object; :func:`pointing_game`), its centre
baseline (:func:`centre_hits`) and the share of positive map energy inside the box
(:func:`energy_share`, the "energy-based pointing game" of Score-CAM), each against its
chance level, the box's share of the image (:func:`pointing_chance`). The maps are
(N, H, W) importance maps (:func:`zfcore.saliency.importance`); the boxes ``(x0, y0, x1, y1)``
in the maps' pixels.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .saliency import as_maps

__all__ = ["as_boxes", "box_masks", "pointing_game", "pointing_chance", "centre_hits", "energy_share"]


def as_boxes(boxes, n: int) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64) if not isinstance(boxes, torch.Tensor)
                        else boxes).detach().cpu().to(torch.float64)
    if b.shape != (n, 4):
        raise ValueError(f"boxes must have shape ({n}, 4), one (x0, y0, x1, y1) per map, got {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("boxes hold NaN or infinite coordinates")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"box {i} {b[i].tolist()} is not (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
    return b




def box_masks(boxes, shape: Tuple[int, int], tolerance: float = 0.0) -> torch.Tensor:
    """(N, H, W) bool: the pixels of each box, pixel (i, j) in when its centre (j + 0.5, i + 0.5)
    lies in ``[x0, x1) x [y0, y1)`` (as :func:`zfcore.occlusion.box_share`), or within
    ``tolerance`` pixels (Euclidean) of the box."""
    h, w = int(shape[0]), int(shape[1])
    b = as_boxes(boxes, len(boxes) if not isinstance(boxes, torch.Tensor) else boxes.shape[0])
    cy = torch.arange(h, dtype=torch.float64) + 0.5
    cx = torch.arange(w, dtype=torch.float64) + 0.5
    x0, y0, x1, y1 = (b[:, k].reshape(-1, 1, 1) for k in range(4))
    inside = ((cy.reshape(1, h, 1) >= y0) & (cy.reshape(1, h, 1) < y1)
              & (cx.reshape(1, 1, w) >= x0) & (cx.reshape(1, 1, w) < x1))
    if tolerance and tolerance > 0:
        dy = torch.clamp(torch.maximum(y0 - cy.reshape(1, h, 1), cy.reshape(1, h, 1) - y1), min=0)
        dx = torch.clamp(torch.maximum(x0 - cx.reshape(1, 1, w), cx.reshape(1, 1, w) - x1), min=0)
        inside = inside | (torch.sqrt(dx * dx + dy * dy) <= tolerance)
    return inside


def pointing_game(maps, boxes, tolerance: float = 0.0) -> torch.Tensor:
    """The pointing game (Zhang et al., ECCV 2016): a hit when the map's maximum lies on
    the object.

    Args:
        maps: (N, H, W) importance maps (:func:`zfcore.saliency.importance`); the maximum is the first one in
            row-major order where several pixels share it.
        boxes: (N, 4) the object's box ``(x0, y0, x1, y1)`` in the maps' pixels.
        tolerance: pixels of slack around the box (Zhang et al. allow 15 at their image sizes;
            0 by default).

    Returns:
        (N,) bool tensor: hit or miss. The accuracy is its mean; compare it with
        :func:`pointing_chance`, the hit rate of a maximum placed at random.
    """
    m = as_maps(maps)
    masks = box_masks(as_boxes(boxes, m.shape[0]), m.shape[1:], tolerance)
    flat = m.reshape(m.shape[0], -1).argmax(dim=1)
    return masks.reshape(m.shape[0], -1)[torch.arange(m.shape[0]), flat]


def pointing_chance(boxes, shape: Tuple[int, int], tolerance: float = 0.0) -> torch.Tensor:
    """(N,) float64: the chance level of the pointing game, each box's share of the image's
    pixels (with the same ``tolerance``): the hit rate of a maximum at a random pixel."""
    return box_masks(boxes, shape, tolerance).to(torch.float64).mean(dim=(1, 2))


def centre_hits(boxes, shape: Tuple[int, int], tolerance: float = 0.0) -> torch.Tensor:
    """(N,) bool: the pointing game of a map whose maximum is the image's centre pixel
    ``(H // 2, W // 2)``: the centre baseline (objects are often near the middle, so pointing
    at the centre can beat the box's share of the pixels)."""
    h, w = int(shape[0]), int(shape[1])
    b = as_boxes(boxes, len(boxes) if not isinstance(boxes, torch.Tensor) else boxes.shape[0])
    m = torch.zeros(len(b), h, w)
    m[:, h // 2, w // 2] = 1.0
    return pointing_game(m, b, tolerance)


def energy_share(maps, boxes) -> torch.Tensor:
    """(N,) float64: the share of each map's positive energy (the sum of its positive values)
    that lies inside the box (the "energy-based pointing game" of Score-CAM, Wang et al. 2020);
    NaN for a map with no positive value. Its chance level is :func:`pointing_chance`, the
    box's share of the pixels.

    Args:
        maps: (N, H, W) importance maps (:func:`zfcore.saliency.importance`).
        boxes: (N, 4) the object's box ``(x0, y0, x1, y1)`` in the maps' pixels.
    """
    m = as_maps(maps)
    masks = box_masks(as_boxes(boxes, m.shape[0]), m.shape[1:])
    pos = m.clamp(min=0)
    total = pos.sum(dim=(1, 2))
    inside = (pos * masks).sum(dim=(1, 2))
    return torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones(())),
                       torch.full_like(total, float("nan")))
