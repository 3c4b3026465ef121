"""The incremental engine of occlusion sensitivity (:func:`zfcore.occlusion.sensitivity`).

An occluded image differs from the unoccluded one only inside the occluder. A layer's output
differs only where its window (kernel, stride, padding) meets the part of its input that
differs: the occluder's *projective field*, grown layer by layer. So for each occluder position
each layer is recomputed only on a patch: the rectangle of its output that the changed input
reaches, read from a window of the input made of the unoccluded activations (computed once)
with the previous layer's recomputed patch laid over them. Patches have one size per layer for
all positions (the largest any position needs; shifted inward at the border), so many
positions go through a layer as one batch. Pointwise layers (ReLU, contrast normalisation
across maps, dropout at test time, identity) act on the patch as it is. At the first layer
that mixes all positions (flatten, fully connected) or that the engine does not cover (a
dilated convolution, ...), the patches are laid over full copies of the unoccluded
activations and the rest of the chain runs on whole maps: the result is exact either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .chain import Step, forward, local_response_norm, max_pool2d
from .fields import average_window
from .layout import Threads

__all__ = ["incremental", "patch_total", "PATCH_SHARE_LIMIT"]


@dataclass
class _Axis:
    """One axis of a patch: per-position start (N,) and the patch's common length."""
    start: torch.Tensor
    length: int


def _window_params(step: Step) -> Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]]:
    """(kernel, stride, padding) per axis of a conv, max pool or average pool the engine covers,
    else None. An average pooling is covered when it is one window with one divisor
    (:func:`zfcore.fields.average_window`: an adaptive pooling whose input is a multiple of its
    output, an ``AvgPool2d`` whose border windows are divided as the others); one whose bins
    differ (torchvision's ``avgpool`` at most sizes other than 224 px) needs whole maps."""
    m = step.module
    pair = lambda v: (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))  # noqa: E731
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        avg = average_window(step)
        return None if avg is None else avg[:3]
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str) or m.padding_mode != "zeros" or pair(m.dilation) != (1, 1):
            return None
        return pair(m.kernel_size), pair(m.stride), pair(m.padding)
    if isinstance(m, nn.MaxPool2d):
        if pair(m.dilation) != (1, 1) or m.return_indices:
            return None
        return pair(m.kernel_size), pair(m.stride if m.stride is not None else m.kernel_size), pair(m.padding)
    return None


_POINTWISE = (nn.ReLU, nn.LocalResponseNorm, nn.Dropout, nn.Identity)


def _is_pointwise(step: Step) -> bool:
    """A layer that acts position by position on a patch (an adaptive pooling that keeps the size)."""
    m = step.module
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return step.in_shape == step.out_shape
    return isinstance(m, _POINTWISE) and len(step.out_shape) == 3


def _grow(ax: _Axis, k: int, s: int, p: int, out_len: int) -> _Axis:
    """The output patch of a window layer (kernel k, stride s, padding p) whose changed input is
    ``[ax.start, ax.start + ax.length)``: every output whose window meets it, one common length."""
    lo = -torch.div(-(ax.start + p - k + 1), s, rounding_mode="floor")    # ceil
    lo = lo.clamp(min=0)
    hi = torch.div(ax.start + ax.length - 1 + p, s, rounding_mode="floor").clamp(max=out_len - 1)
    length = int((hi - lo + 1).max()) if lo.numel() else 1
    length = min(max(length, 1), out_len)
    return _Axis(lo.clamp(max=out_len - length), length)


def _overlay(base: torch.Tensor, y0: List[int], x0: List[int], wy: int, wx: int, patch: torch.Tensor,
             ay: List[int], ax: List[int], shift_y: int = 0, shift_x: int = 0) -> torch.Tensor:
    """Windows of the unoccluded map with each position's patch laid over them.

    Args:
        base: (C, Ly, Lx) unoccluded map, padded by ``shift_y`` rows and ``shift_x`` columns
            before the first.
        y0, x0: each position's window corner in ``base``; the windows are ``wy`` x ``wx``.
        patch: (B, C, Py, Px) recomputed values; position b's sits at unpadded row
            ``ay[b]`` and column ``ax[b]`` of the map.

    Returns:
        (B, C, wy, wx).
    """
    b, c, ph, pw = patch.shape
    # every window in one copy (a cat), then each patch laid over its window: small copies, run
    # on one thread (on several, each small copy pays for waking the others)
    win = torch.stack([base[:, y:y + wy, x:x + wx] for y, x in zip(y0, x0)])
    with Threads(1):
        for i in range(b):
            ty, tx = ay[i] + shift_y - y0[i], ax[i] + shift_x - x0[i]
            sy0, sx0 = max(0, -ty), max(0, -tx)
            sy1, sx1 = min(ph, wy - ty), min(pw, wx - tx)
            if sy1 > sy0 and sx1 > sx0:
                win[i, :, ty + sy0:ty + sy1, tx + sx0:tx + sx1] = patch[i, :, sy0:sy1, sx0:sx1]
    return win


def _full(base: torch.Tensor, patch: torch.Tensor, ay: "_Axis", ax: "_Axis") -> torch.Tensor:
    """(B, C, H, W): the unoccluded map ``base`` (C, H, W) with each position's patch laid over it."""
    b = patch.shape[0]
    return _overlay(base, [0] * b, [0] * b, base.shape[1], base.shape[2], patch,
                    ay.start.tolist(), ax.start.tolist())


def _run_step(step: Step, h: torch.Tensor) -> torch.Tensor:
    """One step of the chain on whole maps, without in-place ops."""
    return forward([step], h, 0)[0][-1]


def _pointwise(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A pointwise layer on a patch (any spatial size)."""
    if isinstance(m, nn.ReLU):
        return F.relu(h)
    if isinstance(m, nn.LocalResponseNorm):                  # across maps, at each position
        return local_response_norm(m, h)
    return h               # dropout at test time, identity, a size-preserving adaptive pool


# a window layer whose patch would cover more than this share of its output runs on whole maps
# (from there on, the patches would be nearly whole anyway, and laying them over the
# unoccluded maps costs more than it saves)
PATCH_SHARE_LIMIT = 0.5


def _worth_a_patch(step: Step, ay: _Axis, ax: _Axis, params) -> bool:
    (ky, kx), (sy, sx), (py_, px_) = params
    _, h_out, w_out = step.out_shape
    oy = _grow(ay, ky, sy, py_, h_out)
    ox = _grow(ax, kx, sx, px_, w_out)
    return oy.length * ox.length <= PATCH_SHARE_LIMIT * h_out * w_out


def _window_layer(step: Step, base: torch.Tensor, patch: torch.Tensor, ay: _Axis, ax: _Axis,
                  params) -> Tuple[torch.Tensor, _Axis, _Axis]:
    """Recompute a conv / max pool / average pool on the patch its changed input reaches."""
    (ky, kx), (sy, sx), (py_, px_) = params
    m = step.module
    _, h_in, w_in = step.in_shape
    _, h_out, w_out = step.out_shape
    oy = _grow(ay, ky, sy, py_, h_out)
    ox = _grow(ax, kx, sx, px_, w_out)
    # pad the unoccluded input once: zeros for a convolution or an average pool, -inf for a max
    # pool; enough on the far side for the last window (ceil mode)
    pad_val = float("-inf") if isinstance(m, nn.MaxPool2d) else 0.0
    ly = max(h_in + 2 * py_, (h_out - 1) * sy + ky)
    lx = max(w_in + 2 * px_, (w_out - 1) * sx + kx)
    padded = F.pad(base, (px_, lx - w_in - px_, py_, ly - h_in - py_), value=pad_val)
    wy = (oy.length - 1) * sy + ky
    wx = (ox.length - 1) * sx + kx
    win = _overlay(padded, (oy.start * sy).tolist(), (ox.start * sx).tolist(), wy, wx, patch,
                   ay.start.tolist(), ax.start.tolist(), shift_y=py_, shift_x=px_)
    if isinstance(m, nn.Conv2d):
        out = F.conv2d(win, m.weight, m.bias, (sy, sx), 0, 1, m.groups)
    elif isinstance(m, nn.MaxPool2d):
        out = max_pool2d(win, (ky, kx), (sy, sx), 0)
    else:                                      # one divisor for every window (_window_params)
        out = F.avg_pool2d(win, (ky, kx), (sy, sx), 0, divisor_override=average_window(step)[3])
    return out, oy, ox


def incremental(steps: List[Step], acts: List[torch.Tensor], x: torch.Tensor, corners: List[Tuple[int, int]],
                 size: int, fill: float, li: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run the occluded images of ``corners`` through the chain incrementally.

    Args:
        acts: the unoccluded activations, ``acts[k]`` the input of step k (batch of 1).
        corners: the occluders' top-left corners (y, x), one per image of the batch.

    Returns:
        ``(logits, layer_out)``: logits (B, classes); ``layer_out`` the output of step ``li``,
        either whole ((B, C, H, W) or (B, J)) or, where it was still a patch, a tuple
        ``(patch, ay, ax)`` for :func:`patch_total`.
    """
    dev = x.device
    b = len(corners)
    ay = _Axis(torch.tensor([c[0] for c in corners], device=dev), size)
    ax = _Axis(torch.tensor([c[1] for c in corners], device=dev), size)
    h = torch.full((b, x.shape[1], size, size), float(fill), dtype=x.dtype, device=dev)
    full = False
    layer_out = None
    for k, step in enumerate(steps):
        m = step.module
        if not full:
            params = _window_params(step)
            if params is not None and _worth_a_patch(step, ay, ax, params):
                h, ay, ax = _window_layer(step, acts[k][0], h, ay, ax, params)
            elif _is_pointwise(step):
                h = _pointwise(m, h)
            else:
                h = _full(acts[k][0], h, ay, ax)
                full = True
                h = _run_step(step, h)
        else:
            h = _run_step(step, h)
        if k == li:
            layer_out = h if full else (h, ay, ax)
    return h, layer_out


def patch_total(base: torch.Tensor, patch: torch.Tensor, ay: _Axis, ax: _Axis, feature: int) -> torch.Tensor:
    """Total of map ``feature`` per position: the unoccluded total, minus the unoccluded values
    under the patch, plus the patch. base: (C, H, W); patch: (B, C, Py, Px)."""
    f = base[feature]
    acc = torch.promote_types(f.dtype, torch.float32)           # as in zfcore.occlusion._total
    under = torch.stack([f[y:y + ay.length, x:x + ax.length]
                         for y, x in zip(ay.start.tolist(), ax.start.tolist())])
    return f.sum(dtype=acc) + (patch[:, feature].to(acc) - under.to(acc)).reshape(patch.shape[0], -1).sum(dim=1)
