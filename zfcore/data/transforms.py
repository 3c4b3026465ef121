"""The paper's transforms (Section 3), on batches of tensors.

Images are stored as uint8 arrays of side ``stored_size`` (256 in the paper:
"resize the smallest side to 256, crop the centre 256x256"). The per-pixel mean
over the training set (a (3, S, S) float tensor) is subtracted, so pixels lie
roughly in [-128, 128] as the paper's layer-1 input does. Training takes random
``image_size`` crops (224) and horizontal flips; evaluation averages the softmax
over 10 crops: the 4 corners and the centre, each also flipped.
"""
from __future__ import annotations

from typing import Optional

import torch
from PIL import Image

__all__ = ["shortest_side_center_crop", "to_chw", "preprocess", "random_crop_flip",
           "center_crop", "ten_crop", "ten_crop_offsets"]


def shortest_side_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shortest side is ``size``, then take the central ``size`` x ``size``."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_chw(images_hwc: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) uint8 (a view)."""
    return images_hwc.permute(0, 3, 1, 2)


def preprocess(images: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) minus the (3, S, S) per-pixel mean -> float32 (Section 3)."""
    return images.float() - mean


def random_crop_flip(images: torch.Tensor, size: int, generator: Optional[torch.Generator] = None,
                     flip: bool = True, mean: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A random ``size`` x ``size`` crop of each image, flipped left-right with probability 1/2.

    Args:
        images: (N, C, S, S), any dtype.
        size: crop side.
        generator: the source of randomness (for repeatable runs); the draws are
            made on the CPU, so a run repeats on any device.
        mean: optional (C, S, S) per-pixel mean; when given, the result is the
            float32 crop of ``images - mean`` (the crop is taken first, so only
            ``size`` x ``size`` pixels are converted).
    Returns:
        (N, C, size, size), in channels-last memory layout: the dtype of ``images``,
        or float32 when ``mean`` is given.
    """
    n, c, h, w = images.shape
    if size > h or size > w:
        raise ValueError(f"crop {size} is larger than the images ({h}x{w})")
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    if images.device.type == "cpu":
        return _crop_flip_numpy(images, size, top, left, flips, mean)
    return _crop_flip_gather(images, size, top, left, flips, mean)


def _crop_flip_numpy(images, size, top, left, flips, mean):
    """On the CPU: one numpy slice per image (several times faster than torch ops
    on small slices, or than a gather with index tensors)."""
    import numpy as np
    x = images.numpy()
    m = mean.numpy() if mean is not None else None
    n, c = x.shape[:2]
    # written as (N, size, size, C): the result is a channels-last (N, C, size, size) tensor,
    # the layout the convolutions run fastest on
    nhwc = np.empty((n, size, size, c), np.float32 if m is not None else x.dtype)
    out = nhwc.transpose(0, 3, 1, 2)
    for i, (t, l, f) in enumerate(zip(top.tolist(), left.tolist(), flips.tolist())):
        crop = x[i, :, t:t + size, l:l + size]
        mc = m[:, t:t + size, l:l + size] if m is not None else None
        if f:
            crop = crop[:, :, ::-1]
            mc = mc[:, :, ::-1] if mc is not None else None
        if mc is not None:
            np.subtract(crop, mc, out=out[i], dtype=np.float32)
        else:
            out[i] = crop
    return torch.from_numpy(nhwc).permute(0, 3, 1, 2)


def _crop_flip_gather(images, size, top, left, flips, mean):
    """On an accelerator: one gather for the whole batch."""
    n = images.shape[0]
    dev = images.device
    ar = torch.arange(size)
    rows = (top[:, None] + ar[None, :]).to(dev)                       # (N, size)
    cols = left[:, None] + ar[None, :]
    cols = torch.where(flips[:, None], cols.flip(1), cols).to(dev)     # (N, size)
    idx_n = torch.arange(n, device=dev)[:, None, None]
    out = images.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (N, size, size, C)
    out = out.permute(0, 3, 1, 2)
    if mean is not None:
        m = mean.permute(1, 2, 0)[rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        out = out.float() - m
    return out.contiguous(memory_format=torch.channels_last)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` crop of (N, C, H, W) images."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def ten_crop_offsets(stored: int, size: int) -> list:
    """(top, left) of the 4 corner crops and the centre crop."""
    m = stored - size
    c = m // 2
    return [(0, 0), (0, m), (m, 0), (m, m), (c, c)]


def ten_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's 10 crops: 4 corners + centre, each also flipped.

    (N, C, S, S) -> (N, 10, C, size, size); crops 0-4 unflipped, 5-9 flipped.
    """
    s = images.shape[-1]
    crops = [images[..., t:t + size, l:l + size] for t, l in ten_crop_offsets(s, size)]
    crops = crops + [c.flip(-1) for c in crops]
    return torch.stack(crops, 1)
