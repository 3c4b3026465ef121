"""Exact receptive fields, read off the architecture.

Fig. 2 shows, beside each strong activation, "the corresponding image patch":
the part of the input the activation sees. That part follows from the kernels,
strides, paddings and dilations of the layers below it, nothing else.

Per axis, the unit at index ``i`` of a layer's output covers the input pixels
``[start + i * jump, start + i * jump + size)``; :func:`field_geometry` gives
``(jump, size, start)`` for every layer with spatial outputs. Through a layer
with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (a
convolution, a max or an average pooling)::

    jump'  = jump * s
    size'  = size + (d * (k - 1)) * jump
    start' = start - p * jump

(ReLU, contrast normalisation across maps, dropout and a size-preserving
adaptive pooling change nothing.) Ceil-mode pooling does not change the
formula either; it only adds a last unit whose window runs past the end of its
input.

An adaptive average pooling from ``L`` to ``O`` positions (torchvision's
``avgpool`` at sizes other than 224 px) averages, for output ``i``, the inputs
``[floor(i * L / O), ceil((i + 1) * L / O))`` (PyTorch's bins). When ``L`` is a
multiple of ``O`` that is a window with ``k = s = L / O``, ``p = 0``, and the
formula holds. Otherwise the bins differ in size and step (5 to 6: starts 0, 0,
1, 2, 3, 4) and no ``(jump, size, start)`` describes the units at or above the
pool: there :func:`field_geometry` gives a *bounding* window, the narrowest of
that form (through the pool, stride ``floor(L / O)`` or ``ceil(L / O)``, which
may be 0 where the pool enlarges the maps) that contains every unit's field.
:func:`receptive_fields` is exact everywhere: it walks the bins themselves.

That formula is the field before clipping. :func:`receptive_field` gives the
exact box: it walks down from the unit, clipping the index range to the layer's
real input at every layer. A padded position or the missing tail of a ceil-mode
window is not an input, so nothing behind it is seen. Clipping only the final
box to the image is the same on the left (every start is <= 0), and on the
right too unless a layer below dropped the image's last rows (a floor division
in its output size) and a layer above reaches past its input's end: with
zfnet at 51-54 px, the last unit of the ceil-mode pool2 would seem to see
pixel 50 as well, which no conv2 unit sees. At 48, 64 and 224 px, zfnet, the
Krizhevsky model and torchvision's AlexNet have no such unit. The box is the
set of input pixels with a nonzero gradient for the unit, when no weight is
zero and every unit is active (the tests check this, through adaptive poolings
too).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from .chain import Step, chain, find_step

__all__ = ["Field", "field_geometry", "receptive_field", "receptive_fields", "average_window", "window"]


class Field(NamedTuple):
    """One axis of a layer's field: unit ``i`` covers ``[start + i*jump, start + i*jump + size)``."""
    jump: int
    size: int
    start: int


def _pair(v) -> Tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def window(step: Step) -> Optional[List[Tuple[int, int, int]]]:
    """(effective kernel, stride, left padding) per axis (y, x), or None for a 1-to-1 layer; for an
    adaptive pooling whose bins are not one window, the bounding window (:func:`_bounding_bins`)."""
    m = step.module
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise ValueError(f"layer {step.name!r}: padding_mode={m.padding_mode!r} is not supported "
                             f"(the field assumes zero padding)")
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                p = (0, 0)
            else:  # "same": PyTorch puts the smaller half on the left
                p = tuple((d[a] * (k[a] - 1)) // 2 for a in range(2))
        else:
            p = _pair(m.padding)
    elif isinstance(m, nn.MaxPool2d):
        k, p, d = _pair(m.kernel_size), _pair(m.padding), _pair(m.dilation)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
    elif isinstance(m, nn.AvgPool2d):
        k, p, d = _pair(m.kernel_size), _pair(m.padding), (1, 1)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
    elif isinstance(m, nn.AdaptiveAvgPool2d) and step.in_shape != step.out_shape:
        return [_bounding_bins(step.in_shape[1 + a], step.out_shape[1 + a]) for a in range(2)]
    else:
        return None          # ReLU, LRN, dropout, identity, size-preserving adaptive pooling
    return [(d[a] * (k[a] - 1) + 1, s[a], p[a]) for a in range(2)]


def _bins(length: int, out: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's adaptive pooling bins from ``length`` to ``out``: output i averages inputs
    ``[lo[i], hi[i])`` with lo = floor(i * length / out), hi = ceil((i + 1) * length / out)."""
    i = torch.arange(out)
    return (i * length) // out, -((-(i + 1) * length) // out)


def _bounding_bins(length: int, out: int) -> Tuple[int, int, int]:
    """(kernel, stride, padding) of the narrowest fixed window containing every adaptive
    pooling bin (exactly the bins when ``length`` is a multiple of ``out``)."""
    lo, hi = _bins(length, out)
    i = torch.arange(out)
    best = None
    for j in sorted({length // out, -(-length // out)}):
        start, end = int((lo - i * j).min()), int((hi - i * j).max())
        if best is None or end - start < best[0]:
            best = (end - start, j, -start)
    return best


def average_window(step: Step) -> Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int], int]]:
    """An average pooling as one fixed window: ``(kernel, stride, padding, divisor)``
    (per-axis pairs (y, x) and one int) when every output is the sum of its
    ``kernel`` window of the zero-padded input divided by the same ``divisor``;
    ``None`` when it is not.

    That holds for ``AvgPool2d`` with ``divisor_override``, or whose windows all lie
    inside the padded input and either count the padding (``count_include_pad``,
    the default) or have none; and for ``AdaptiveAvgPool2d`` from ``L`` to ``O``
    positions when ``O`` divides ``L`` (kernel = stride = L / O). It fails for
    windows that count only the inputs inside them (``count_include_pad=False`` with
    padding, a ceil-mode window past the padded end) and for adaptive bins of
    different sizes. ``None`` too for a step that is no average pooling.
    """
    m = step.module
    if isinstance(m, nn.AdaptiveAvgPool2d):
        q = []
        for a in range(2):
            length, out = step.in_shape[1 + a], step.out_shape[1 + a]
            if length % out:
                return None
            q.append(length // out)
        return (q[0], q[1]), (q[0], q[1]), (0, 0), q[0] * q[1]
    if not isinstance(m, nn.AvgPool2d):
        return None
    k, p = _pair(m.kernel_size), _pair(m.padding)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    if m.divisor_override:
        return k, s, p, int(m.divisor_override)
    inside = all((step.out_shape[1 + a] - 1) * s[a] + k[a] <= step.in_shape[1 + a] + 2 * p[a]
                 for a in range(2))
    if inside and (m.count_include_pad or p == (0, 0)):
        return k, s, p, k[0] * k[1]
    return None


def _spatial_steps(model: nn.Module, input_size) -> List[Step]:
    """The steps with (C, H, W) outputs, from the first layer to the flatten."""
    out = []
    for st in chain(model, input_size):
        if len(st.out_shape) != 3:
            break
        out.append(st)
    return out


def field_geometry(model: nn.Module, input_size=None) -> Dict[str, Tuple[Field, Field]]:
    """``{layer: (Field y, Field x)}`` for every layer with spatial outputs, in forward order.

    Exact before clipping, except at and above an adaptive pooling whose bins are
    not one fixed window: there a bounding window (see the module docstring).

    Args:
        model: a chain of layers (see :mod:`zfcore.chain`).
        input_size: the image side (default: the model's own, else 224).
    """
    geo = [Field(1, 1, 0), Field(1, 1, 0)]
    result: Dict[str, Tuple[Field, Field]] = {}
    for st in _spatial_steps(model, input_size):
        win = window(st)
        if win is not None:
            geo = [Field(f.jump * s, f.size + (ke - 1) * f.jump, f.start - p * f.jump)
                   for f, (ke, s, p) in zip(geo, win)]
        result[st.name] = (geo[0], geo[1])
    return result


def _layer_steps(model, layer, input_size):
    steps = chain(model, input_size)
    i = find_step(steps, layer)
    if len(steps[i].out_shape) != 3:
        raise ValueError(f"layer {layer!r} has no spatial output (shape {steps[i].out_shape}); "
                         f"receptive fields are defined for conv, pooling, ReLU and norm layers")
    return steps[:i + 1]


def receptive_fields(model: nn.Module, layer: str, positions, input_size=None) -> torch.Tensor:
    """The boxes that the units at ``positions`` of ``layer`` see, in input pixels.

    Args:
        positions: (N, 2) integers ``(y, x)`` in the layer's output.
    Returns:
        (N, 4) int64 ``(y0, y1, x0, x1)``, half-open and inside the image: exactly
        the input pixels that can reach the unit (see the module docstring).
    Raises:
        ValueError: an unknown or non-spatial layer, or a position outside the layer's output.
    """
    steps = _layer_steps(model, layer, input_size)
    pos = torch.as_tensor(positions, dtype=torch.int64).reshape(-1, 2)
    _, h, w = steps[-1].out_shape
    bad = (pos[:, 0] < 0) | (pos[:, 0] >= h) | (pos[:, 1] < 0) | (pos[:, 1] >= w)
    if bool(bad.any()):
        y, x = pos[int(bad.nonzero()[0])].tolist()
        raise ValueError(f"position ({y}, {x}) is outside layer {layer!r}'s {h}x{w} output")
    # inclusive index ranges [lo, hi] per axis, walked down to the image
    lo = pos.clone()
    hi = pos.clone()
    for st in reversed(steps):
        in_hw = st.in_shape[1:]
        if isinstance(st.module, nn.AdaptiveAvgPool2d):        # the bins themselves
            for a in range(2):
                b_lo, b_hi = _bins(in_hw[a], st.out_shape[1 + a])
                lo[:, a], hi[:, a] = b_lo[lo[:, a]], b_hi[hi[:, a]] - 1
            continue
        win = window(st)
        if win is None:
            continue
        for a, (ke, s, p) in enumerate(win):
            lo[:, a] = (lo[:, a] * s - p).clamp(0, in_hw[a] - 1)
            hi[:, a] = (hi[:, a] * s - p + ke - 1).clamp(0, in_hw[a] - 1)
    return torch.stack([lo[:, 0], hi[:, 0] + 1, lo[:, 1], hi[:, 1] + 1], 1)


def receptive_field(model: nn.Module, layer: str, position: Sequence[int],
                    input_size=None) -> Tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the box (half-open, inside the image) that the unit at
    ``position`` ``(y, x)`` of ``layer`` sees. See :func:`receptive_fields`."""
    return tuple(int(v) for v in receptive_fields(model, layer, [list(position)], input_size)[0])
