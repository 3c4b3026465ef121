"""The deconvnet of Section 2.1 (Fig. 1), with plain and guided backpropagation beside it.

Zeiler & Fergus (2014), Section 2.1: to see what excites one activation, the
image is run forward through the convnet; the chosen activation of one feature
map is kept and *every other activation of that layer is set to zero*; the
signal then goes down a *deconvnet* attached to each layer, which applies, layer
by layer from the top:

* **unpool** -- max pooling is not invertible, but "we can obtain an approximate
  inverse by recording the locations of the maxima within each pooling region in
  a set of *switch* variables"; the unpooling puts each value back at its
  switch. The switches are recorded per image. With overlapping pooling (3x3,
  stride 2, as in Fig. 3) two pooling outputs can share one switch; their values
  are *added* at that position (a scatter-add), not overwritten (as
  ``F.max_unpool2d`` would do);
* **rectify** -- "we pass the reconstructed signal through a relu
  non-linearity": a ReLU on the signal itself;
* **filter** -- "the deconvnet uses transposed versions of the same filters"
  (flipped vertically and horizontally), applied to the rectified maps: a
  ``conv_transpose2d`` with the layer's own weights, stride, padding and
  dilation, cut to the layer's input size, without the bias.

Fully connected layers are projected with their transposed weights, flatten is
undone, and dropout (off at test time) and ``Identity`` pass the signal through.
Average pooling (``AvgPool2d``, and ``AdaptiveAvgPool2d`` of any output size, as
in torchvision's AlexNet and VGG at sizes other than 224 px) is linear: the
signal goes down through its transpose, each value spread evenly over the
window it averaged (its gradient, the same for the three methods below).
Contrast normalisation is *not* used on the way down.

So the deconvnet is back-propagation of one activation with two differences:
the ReLU is applied to the signal instead of being gated by the forward
activation (backprop passes the signal where the ReLU's forward *input* was
positive, whatever the signal's sign), and normalisation is skipped (backprop
goes through it). :func:`project` computes all three, for comparison:

* ``"deconvnet"``: Section 2.1, as above;
* ``"gradient"``: ordinary back-propagation (the gradient of the activation with
  respect to the image);
* ``"guided"``: guided back-propagation (Springenberg et al., 2015): the ReLU
  passes the signal only where both its forward input and the signal are
  positive; normalisation back-propagated as usual.

All three return "the backward signal of a unit gradient at the chosen
activation, multiplied by the activation's value", so that they are on the same
scale, and equal to captum's ``NeuronDeconvolution``, ``NeuronGradient`` and
``NeuronGuidedBackprop`` times that value.

The forward pass is run by walking :func:`zfcore.chain.chain` with
non-in-place operations (torchvision's AlexNet and VGG use ``ReLU(inplace=True)``,
which would overwrite the activations the walk needs), in eval mode, under
``torch.no_grad``: nothing is left on the model's parameters, and the model's
train/eval mode is restored. Images are moved to the model's device and cast to
its dtype (float64 or float16 images for a float32 model are computed in
float32); images holding NaN or infinite values are refused.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .chain import EvalMode, Step, UnsupportedModel, chain, forward, local_response_norm, max_pool2d
from .activations import CHUNK_ELEMENTS, FeatureArg, PositionArg, check_selection, prepare, select
from .fields import average_window, window
from .layout import preferred_layout

__all__ = ["check_method", "project_steps", "inverse_kinds", "METHODS", "project"]

METHODS = ("deconvnet", "gradient", "guided")


# --------------------------------------------------------------------------------------------
# checks


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------
# forward


# --------------------------------------------------------------------------------------------
# selection


# --------------------------------------------------------------------------------------------
# backward


def _conv_down(step: Step, g: torch.Tensor) -> torch.Tensor:
    """Filter: the transposed filters of a Conv2d, cut to the layer's input shape (no bias)."""
    m: nn.Conv2d = step.module
    if m.padding_mode != "zeros":
        raise UnsupportedModel(f"cannot handle module {step.name!r}: padding_mode={m.padding_mode!r} "
                               f"(only zero padding can be projected back)")
    _, hin, win = step.in_shape
    tops = []
    for i in range(2):
        if m.padding == "valid":
            tops.append(0)
        elif m.padding == "same":
            tops.append(m.dilation[i] * (m.kernel_size[i] - 1) // 2)
        else:
            tops.append(m.padding[i])
    full = _transposed_filters(m, g)
    # The full output covers the padded input except rows/cols the forward
    # stride never reached; pad those with zeros, then cut the padding off.
    need_h = tops[0] + hin - full.shape[2]
    need_w = tops[1] + win - full.shape[3]
    if need_h > 0 or need_w > 0:
        full = F.pad(full, (0, max(need_w, 0), 0, max(need_h, 0)))
    return full[:, :, tops[0]:tops[0] + hin, tops[1]:tops[1] + win]


def _transposed_filters(m: nn.Conv2d, g: torch.Tensor) -> torch.Tensor:
    """``g`` through the transposed filters of ``m`` (no bias, no padding: the whole transposed
    output, ``(H - 1) * stride + dilation * (k - 1) + 1`` per axis). Onto few maps (the image's
    three) ``conv_transpose2d`` is slow on the CPU; there the same sums are one matrix product
    and a ``fold`` (col2im), several times faster."""
    w = m.weight.detach()
    if m.groups != 1 or m.in_channels > 4:
        return F.conv_transpose2d(g, w, None, m.stride, 0, 0, m.groups, m.dilation)
    n, c, h, wd = g.shape
    kh, kw = w.shape[2:]
    out = [(h - 1) * m.stride[0] + m.dilation[0] * (kh - 1) + 1,
           (wd - 1) * m.stride[1] + m.dilation[1] * (kw - 1) + 1]
    cols = torch.matmul(w.reshape(c, -1).t(), g.reshape(n, c, h * wd))      # (n, C_in * kh * kw, h * wd)
    return F.fold(cols, out, (kh, kw), dilation=m.dilation, stride=m.stride)


def _unpool(step: Step, g: torch.Tensor, switches: torch.Tensor) -> torch.Tensor:
    """Unpool: every value back at its switch, values sharing a switch added up."""
    n, c = g.shape[:2]
    _, hin, win = step.in_shape
    out = torch.zeros(n, c, hin * win, dtype=g.dtype, device=g.device)
    out.scatter_add_(2, switches.reshape(n, c, -1), g.reshape(n, c, -1))
    return out.reshape(n, c, hin, win)


def _unaverage(step: Step, g: torch.Tensor) -> torch.Tensor:
    """Average pooling down: the transpose of the averaging (its gradient; it is linear), each
    value spread evenly over the window (or adaptive bin) it averaged, overlaps added up."""
    with torch.enable_grad():
        a = torch.zeros((g.shape[0], *step.in_shape), dtype=g.dtype, device=g.device, requires_grad=True)
        (grad,) = torch.autograd.grad(step.module(a), a, g)
    return grad


def _lrn_backward(m: nn.LocalResponseNorm, inp: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Normalisation back-propagated (in float32 for half-precision signals, as it runs forward)."""
    with torch.enable_grad():
        a = inp.detach().requires_grad_(True)
        y = local_response_norm(m, a)
        (grad,) = torch.autograd.grad(y, a, g)
    return grad


def _relu_down(method: str, inp: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if method == "deconvnet":                         # rectify the signal itself
        return F.relu(g)
    if method == "gradient":                          # gated by the forward input
        return g * (inp > 0).to(g.dtype)
    return F.relu(g) * (inp > 0).to(g.dtype)          # guided: both


def _down(steps: List[Step], acts: List[torch.Tensor], switches: List, top: int,
          g: torch.Tensor, method: str, trace: Optional[list] = None) -> torch.Tensor:
    """Take the signal ``g`` at the output of step ``top`` down to the image.

    With ``trace`` (a list), append ``(name, signal)`` after each step: the signal
    at the *input* of that layer, i.e. what the step made of the signal above it."""
    for k in range(top, -1, -1):
        step = steps[k]
        m = step.module
        inp = acts[k]
        if isinstance(m, nn.Conv2d):
            g = _conv_down(step, g)
        elif isinstance(m, nn.ReLU):
            g = _relu_down(method, inp, g)
        elif isinstance(m, nn.MaxPool2d):
            g = _unpool(step, g, switches[k])
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            g = _unaverage(step, g)
        elif isinstance(m, nn.LocalResponseNorm):
            if method != "deconvnet":                 # the deconvnet skips normalisation
                g = _lrn_backward(m, inp, g)
        elif isinstance(m, nn.Linear):
            g = g @ m.weight.detach()
        elif isinstance(m, nn.Flatten):
            g = g.reshape(g.shape[0], *step.in_shape)
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            pass                                      # identities here
        else:
            raise UnsupportedModel(f"cannot handle module {step.name!r} ({type(m).__name__})")
        if trace is not None:
            trace.append((step.name, g.clone()))
    return g


# --------------------------------------------------------------------------------------------
# the same, on the receptive field only
#
# The projection of one unit depends only on the input inside its receptive field
# and on the layers up to its own (:mod:`zfcore.fields`). For a unit at index
# (i, j) of a spatial layer, every level l of the chain (l = 0 the image, l = k + 1
# the output of step k) holds a window of positions
# ``[i * mult + offset, i * mult + offset + n)`` per axis that the unit depends on;
# at the image it is the unpadded, unclipped receptive field
# ``[start + i * jump, start + i * jump + size)``. The walk runs on these windows
# with *unpadded* convolutions and poolings (their grids line up with the
# network's strides by construction, and the top window is 1x1), and reproduces
# the network's borders exactly: positions of a window outside the level's real
# extent are set to what the network would see there -- zero at the input of a
# convolution (zero padding), -inf at the input of a max pooling (its padding,
# and the missing tail of a "ceil mode" window) -- and the signal on the way down
# is cut to the real positions, as the full walk cuts it. An average pooling is
# walked so when its windows are all summed over their zero-padded input and
# divided by one number (zfcore.fields.average_window: so an adaptive pooling
# whose bins are one window); one whose border windows count only the inputs
# inside them, or whose adaptive bins differ, sends the projection down the full
# walk. Every other layer acts position by position (ReLU, normalisation across
# maps, dropout, identities), so nothing else changes. The results are pasted
# back at the fields' places in full-size zero images.
#
# Given the positions, the windows' activations are computed on the windows: each
# projection pays only for its field. Asked for the strongest activation (the
# public call's default), the maxima need whole maps: each distinct image of the
# batch goes forward whole once (the top 9 of several maps share images), and the
# windows' activations, and the max poolings' switches (found again on the windows
# of the poolings' inputs: the same values, so the same maxima), are cut out of
# that pass instead of computed a second time. Either way the way down runs on the
# windows, in chunks of about CHUNK_ELEMENTS floats per level.

# Walk on crops when the receptive field has at most this fraction of the image's
# pixels (the work per pixel is the same; the rest is overhead).
_CROP_MAX_AREA = 0.6

_CROPPABLE = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.LocalResponseNorm,
              nn.Dropout, nn.Identity)
_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def _crop_geometry(steps: List[Step], top: int) -> Optional[List[List[Tuple[int, int, int]]]]:
    """``geo[l][axis] = (mult, offset, n)`` for levels l = 0 .. top + 1 (see above), or None
    when the chain up to ``top`` cannot be walked on crops (a non-spatial layer, a conv that
    does not pad with zeros, an average pooling that is not one window with one divisor)."""
    for st in steps[: top + 1]:
        m = st.module
        if not isinstance(m, _CROPPABLE) or len(st.out_shape) != 3:
            return None
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            return None
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) and average_window(st) is None:
            return None
    cur = [(1, 0, 1), (1, 0, 1)]
    geo: List = [None] * (top + 2)
    geo[top + 1] = cur
    for k in range(top, -1, -1):
        win = window(steps[k])
        if win is not None:
            cur = [(mult * s, off * s - p, (n - 1) * s + ke)
                   for (mult, off, n), (ke, s, p) in zip(cur, win)]
        geo[k] = cur
    return geo


def _level_masks(geo, steps: List[Step], top: int, pos: torch.Tensor, device) -> List:
    """Per level, a bool mask (N, 1, n_y, n_x), True at the window positions *outside* the
    level's real extent, or None where every window lies inside."""
    masks = []
    for lvl in range(top + 2):
        shape = steps[lvl].in_shape if lvl <= top else steps[top].out_shape
        valid = []
        for a in range(2):
            mult, off, n = geo[lvl][a]
            idx = pos[:, a:a + 1] * mult + off + torch.arange(n)
            valid.append((idx >= 0) & (idx < shape[1 + a]))
        if all(bool(v.all()) for v in valid):
            masks.append(None)
        else:                                         # True *outside*: the positions to fill
            masks.append(~(valid[0][:, None, :, None] & valid[1][:, None, None, :]).to(device))
    return masks


def _forward_crops(steps: List[Step], h: torch.Tensor, top: int, masks: List
                   ) -> Tuple[List[torch.Tensor], List]:
    """:func:`_forward` on the windows: unpadded ops, positions outside each level's extent
    filled as the network's padding would fill them (zero; -inf before a max pooling)."""
    acts = [h]
    switches: List = []
    for k, step in enumerate(steps[: top + 1]):
        m = step.module
        sw = None
        if isinstance(m, nn.Conv2d):
            h = F.conv2d(h, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        elif isinstance(m, nn.ReLU):
            h = F.relu(h)
        elif isinstance(m, nn.MaxPool2d):
            if masks[k] is not None:
                h = h.masked_fill(masks[k], float("-inf"))
            h, sw = max_pool2d(h, m.kernel_size, m.stride, 0, m.dilation, return_indices=True)
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            kernel, stride, _, divisor = average_window(step)     # outside the level: zero already
            h = F.avg_pool2d(h, kernel, stride, 0, divisor_override=divisor)
        elif isinstance(m, nn.LocalResponseNorm):
            h = local_response_norm(m, h)
        # Dropout (eval), Identity: the identity
        if masks[k + 1] is not None and isinstance(m, _WINDOWED):
            # outside the level: zero (never used; ReLU and normalisation keep zeros zero);
            # in place: h is this step's own new tensor
            h = h.masked_fill_(masks[k + 1], 0.0)
        acts.append(h)
        switches.append(sw)
    return acts, switches


def _down_crops(steps: List[Step], geo, acts: List, switches: List, top: int,
                g: torch.Tensor, method: str, masks: List) -> torch.Tensor:
    """:func:`_down` on the windows, the signal cut to each level's real extent. ``acts[k]``
    (the windows of step k's input) is read only where the method needs it: at a ReLU or a
    normalisation, for the gradient and guided backprop."""
    for k in range(top, -1, -1):
        m = steps[k].module
        inp = acts[k]
        n, c, hin, win = g.shape[0], steps[k].in_shape[0], geo[k][0][2], geo[k][1][2]
        if isinstance(m, nn.Conv2d):
            g = _transposed_filters(m, g)
        elif isinstance(m, nn.ReLU):
            g = _relu_down(method, inp, g)
        elif isinstance(m, nn.MaxPool2d):
            out = torch.zeros(n, c, hin * win, dtype=g.dtype, device=g.device)
            out.scatter_add_(2, switches[k].reshape(n, c, -1), g.reshape(n, c, -1))
            g = out.reshape(n, c, hin, win)
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            kernel, stride, _, divisor = average_window(steps[k])
            with torch.enable_grad():
                a = torch.zeros((n, c, hin, win), dtype=g.dtype, device=g.device, requires_grad=True)
                (g,) = torch.autograd.grad(F.avg_pool2d(a, kernel, stride, 0, divisor_override=divisor), a, g)
        elif isinstance(m, nn.LocalResponseNorm):
            if method != "deconvnet":
                g = _lrn_backward(m, inp, g)
        if masks[k] is not None and isinstance(m, _WINDOWED):
            g = g.masked_fill_(masks[k], 0.0)         # g is this step's own new tensor
    return g


def _distinct(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(first, copy)``: the indices of the distinct images of ``x`` (their first occurrence) and,
    for every image, the position of its copy among them (``x[first[copy[i]]]`` equals ``x[i]``
    exactly). The top 9 of several maps often share images: each goes forward once."""
    n = x.shape[0]
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    # a key: some pixels' bits (equal images have equal keys; images with equal keys are compared)
    flat = x.reshape(n, -1)
    keys = flat[:, :: max(1, flat.shape[1] // 509)].contiguous().view(bits).sum(1, dtype=torch.int64).tolist()
    first: List[int] = []
    copy: List[int] = []
    seen: Dict[int, List[int]] = {}
    for i, key in enumerate(keys):
        for u in seen.get(key, []):
            if torch.equal(x[first[u]], x[i]):
                copy.append(u)
                break
        else:
            seen.setdefault(key, []).append(len(first))
            copy.append(len(first))
            first.append(i)
    return torch.tensor(first), torch.tensor(copy)


def _windows(t: torch.Tensor, rows: List[int], starts: List[Tuple[int, int]], size: Tuple[int, int],
             fill, memory_format=torch.contiguous_format) -> torch.Tensor:
    """(m, C, ny, nx): the windows ``[y0, y0 + ny) x [x0, x0 + nx)`` of maps ``t[rows[i]]``
    (C, H, W), ``fill`` where a window runs outside them; in ``memory_format``."""
    ny, nx = size
    _, c, h, w = t.shape
    out = torch.empty((len(rows), c, ny, nx), dtype=t.dtype, device=t.device,
                      memory_format=memory_format).fill_(fill)
    for i, (r, (y0, x0)) in enumerate(zip(rows, starts)):
        ya, yb, xa, xb = max(0, y0), min(h, y0 + ny), max(0, x0), min(w, x0 + nx)
        if ya < yb and xa < xb:
            out[i, :, ya - y0:yb - y0, xa - x0:xb - x0] = t[r, :, ya:yb, xa:xb]
    return out


def _window_starts(geo, lvl: int, pos: torch.Tensor) -> List[Tuple[int, int]]:
    (my, oy, _), (mx, ox, _) = geo[lvl]
    return list(zip((pos[:, 0] * my + oy).tolist(), (pos[:, 1] * mx + ox).tolist()))


def _cut(steps: List[Step], geo, top: int, acts: List[torch.Tensor], rows: List[int],
         pos: torch.Tensor, method: str) -> Tuple[List, List]:
    """What the way down (:func:`_down_crops`) reads, cut out of a full forward pass (``acts`` of
    :func:`_forward`) instead of computed again: the windows of the activations it reads, and each
    max pooling's switches, found again on the window of its input (the same values, so the same
    maxima; -inf outside the input, as the pooling's padding)."""
    need = method != "deconvnet"
    win_acts: List = [None] * (top + 1)
    win_sw: List = [None] * (top + 1)
    for k in range(top + 1):
        m = steps[k].module
        size = (geo[k][0][2], geo[k][1][2])
        if need and isinstance(m, (nn.ReLU, nn.LocalResponseNorm)):
            win_acts[k] = _windows(acts[k], rows, _window_starts(geo, k, pos), size, 0.0)
        if isinstance(m, nn.MaxPool2d):
            win = _windows(acts[k], rows, _window_starts(geo, k, pos), size, float("-inf"),
                           torch.channels_last)              # (see zfcore.chain.max_pool2d)
            _, win_sw[k] = max_pool2d(win, m.kernel_size, m.stride, 0, m.dilation, return_indices=True)
    return win_acts, win_sw


def _whole_layout(model: nn.Module, steps: List[Step], x: torch.Tensor, top: int) -> torch.memory_format:
    """The memory layout in which the whole-image pass to step ``top`` runs fastest on this
    machine (:func:`zfcore.layout.preferred_layout`, measured once on two images of ``x``'s size
    and kept: at 224 px the ZF network's pass to conv5 ran about a quarter faster channels-last on
    this project's Intel Xeon)."""
    probe = torch.zeros(min(2, x.shape[0]), *x.shape[1:], dtype=x.dtype, device=x.device)
    return preferred_layout(model, probe, forward=lambda z: forward(steps, z, top, switches=False),
                            tag=f"deconv whole pass to {steps[top].name}", shared=False)


def _whole_pass(steps: List[Step], top: int, xs: torch.Tensor, rows: torch.Tensor, feats: torch.Tensor
                ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """The whole-image pass of the images ``xs`` (n, 3, H, W) up to step ``top``: ``(acts, maps)``,
    ``acts[k]`` the input of step k (k <= top, as :func:`zfcore.chain.forward` gives them) and
    ``maps`` (m, H', W') the output maps ``feats[i]`` of images ``rows[i]``. When step ``top`` is a
    convolution, only the maps asked for are computed there (its filters' subset: the same sums),
    when they are fewer than three quarters of its maps."""
    m = steps[top].module
    want = torch.unique(feats)
    if not isinstance(m, nn.Conv2d) or m.groups != 1 or len(want) > 0.75 * m.out_channels:
        acts, _ = forward(steps, xs, top, switches=False)
        return acts, acts[top + 1][rows.to(xs.device), feats.to(xs.device)]
    acts, _ = forward(steps, xs, top - 1, switches=False)       # acts[top]: the convolution's input
    w = m.weight[want.to(m.weight.device)]
    b = m.bias[want.to(m.weight.device)] if m.bias is not None else None
    out = F.conv2d(acts[top], w, b, m.stride, m.padding, m.dilation)
    index = torch.searchsorted(want, feats)                     # each map's place among those computed
    return acts, out[rows.to(xs.device), index.to(xs.device)]


def _project_cropped(steps: List[Step], geo, x: torch.Tensor, top: int, layer: str,
                     feature: FeatureArg, position: PositionArg, method: str,
                     model: Optional[nn.Module] = None) -> torch.Tensor:
    """The projections walked down the receptive fields. Given the positions, the windows'
    activations are computed on the windows; asked for the strongest, each distinct image goes
    forward whole once (the maxima need whole maps), in this machine's faster memory layout
    (:func:`_whole_layout`), and the windows are cut out of that pass."""
    n, _, hh, ww = x.shape
    feats, pos = check_selection(steps[top].out_shape, n, layer, feature, position)
    result = torch.zeros(n, x.shape[1], hh, ww, dtype=x.dtype, device=x.device)
    (_, _, ny), (_, _, nx) = geo[0]
    per_crop = max(steps[k].in_shape[0] * geo[k][0][2] * geo[k][1][2] for k in range(top + 1))
    crop_chunk = max(1, CHUNK_ELEMENTS // per_crop)

    def down(rows: List[int], ps: torch.Tensor, fs: torch.Tensor, values: torch.Tensor, acts, switches, masks):
        m = len(ps)
        g = torch.zeros(m, steps[top].out_shape[0], 1, 1, dtype=x.dtype, device=x.device)
        g[torch.arange(m, device=x.device), fs.to(x.device), 0, 0] = 1.0
        g = _down_crops(steps, geo, acts, switches, top, g, method, masks)
        g = g * values.reshape(m, 1, 1, 1)
        for i, (y0, x0) in enumerate(_window_starts(geo, 0, ps)):   # paste the field's part inside the image
            ya, yb = max(0, y0), min(hh, y0 + ny)
            xa, xb = max(0, x0), min(ww, x0 + nx)
            result[rows[i], :, ya:yb, xa:xb] = g[i, :, ya - y0:yb - y0, xa - x0:xb - x0]

    if pos is None:
        first, copy = _distinct(x)
        per_image = sum(math.prod(st.in_shape) for st in steps[: top + 1]) + math.prod(steps[top].out_shape)
        chunk = max(1, (4 * CHUNK_ELEMENTS) // per_image)
        fmt = _whole_layout(model, steps, x, top) if model is not None else torch.contiguous_format
        for u0 in range(0, len(first), chunk):
            xs = x[first[u0:u0 + chunk].to(x.device)].contiguous(memory_format=fmt)
            mine = ((copy >= u0) & (copy < u0 + chunk)).nonzero().flatten()
            local = (copy[mine] - u0)
            acts, top_maps = _whole_pass(steps, top, xs, local, feats[mine])               # (m, H', W')
            flat = top_maps.flatten(1).argmax(1)
            w_top = top_maps.shape[2]
            ps_all = torch.stack([flat // w_top, flat % w_top], 1).cpu()
            values_all = top_maps.flatten(1).gather(1, flat[:, None])[:, 0]
            del top_maps
            for s0 in range(0, len(mine), crop_chunk):
                sel = slice(s0, s0 + crop_chunk)
                ps = ps_all[sel]
                masks = _level_masks(geo, steps, top, ps, x.device)
                win_acts, win_sw = _cut(steps, geo, top, acts, local[sel].tolist(), ps, method)
                down(mine[sel].tolist(), ps, feats[mine[sel]], values_all[sel], win_acts, win_sw, masks)
            del acts
        return result

    for s0 in range(0, n, crop_chunk):
        xs, ps, fs = x[s0:s0 + crop_chunk], pos[s0:s0 + crop_chunk], feats[s0:s0 + crop_chunk]
        m = len(ps)
        crops = _windows(xs, list(range(m)), _window_starts(geo, 0, ps), (ny, nx), 0.0)
        masks = _level_masks(geo, steps, top, ps, x.device)
        acts, switches = _forward_crops(steps, crops, top, masks)
        out = acts[top + 1]                           # (m, C, 1, 1)
        values = out[torch.arange(m, device=out.device), fs.to(out.device), 0, 0]
        down(list(range(s0, s0 + m)), ps, fs, values, acts, switches, masks)
        del acts, switches
    return result


def project(model: nn.Module, x: torch.Tensor, layer: str, feature: FeatureArg,
            position: PositionArg = None, method: str = "deconvnet") -> torch.Tensor:
    """Project one activation per image down to pixel space (Section 2.1, Fig. 1).

    For each image, the activation of map ``feature`` in ``layer`` at
    ``position`` (default: the strongest one in that map) is kept and all the
    other activations of the layer are set to zero; the signal goes down to the
    image through the deconvnet: at each layer, *unpool* (using the *switches*,
    the locations of the maxima recorded in the forward pass of this image;
    values sharing a switch add up), *rectify* (a ReLU on the signal) and
    *filter* (the layer's filters, transposed). Contrast normalisation is
    skipped on the way down.

    This is back-propagation of that activation with two differences (Section
    2.1): the ReLU is applied to the signal itself instead of being gated by the
    forward activation, and normalisation is skipped. ``method`` gives the
    alternatives: ``"gradient"`` (ordinary back-propagation: ReLU gated by its
    forward input, normalisation back-propagated) and ``"guided"`` (guided
    back-propagation: the ReLU passes the signal where both its forward input
    and the signal are positive; normalisation back-propagated).

    Every method returns the backward signal of a *unit* gradient at the chosen
    activation, multiplied by the activation's value (for a positive value, the
    same as sending the value itself down). For ``"deconvnet"`` this equals
    captum's ``NeuronDeconvolution`` on a model whose normalisation passes the
    gradient straight through, times the value; for ``"gradient"`` and
    ``"guided"``, ``NeuronGradient`` and ``NeuronGuidedBackprop`` times the value.

    The forward pass walks the model's chain (:func:`zfcore.chain.chain`) with
    non-in-place operations in eval mode (dropout off), without gradients;
    the model's mode is restored and nothing is left on its parameters.

    Args:
        model: a chain of Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
            LocalResponseNorm, Linear, Dropout, Flatten, Identity: our
            :func:`zfcore.models.zfnet` and ``krizhevsky``, torchvision's AlexNet
            and VGG at any input size they take; in float32, float64, float16 or
            bfloat16.
        x: images, shape (N, 3, H, W), finite, on any device and of any floating
            dtype (moved to the model's device and cast to its dtype).
        layer: module path of the layer whose output holds the activation:
            ``"conv5"``, ``"fc6"`` for ours, ``"features.10"``,
            ``"classifier.1"`` for torchvision's. For our models ``conv<k>`` is
            the convolution's output, before the ReLU and the pooling.
        feature: the feature map (for a fully connected layer, the neuron):
            an int for every image, or N ints (a LongTensor of shape (N,)), one
            per image.
        position: ``None`` (default) for the strongest activation of the map in
            each image (see :func:`zfcore.activations.strongest`); else ``(y, x)`` in the layer's
            maps for every image, or a LongTensor of shape (N, 2), one (y, x)
            per image. Must be ``None`` for a fully connected layer.
        method: ``"deconvnet"`` (default, Section 2.1), ``"gradient"`` or ``"guided"``.

    Returns:
        The projections, shape (N, 3, H, W), on the model's device, in its dtype.
        Image ``i`` depends only on image ``i`` and its own feature and position:
        the batched result equals the one-by-one results.

    Raises:
        ValueError: images not of shape (N, 3, H, W), or holding NaN or infinite
            values (the message gives the first); an unknown layer (the
            message lists the valid ones); ``feature`` out of range (the message
            gives 0..C-1); ``position`` out of range or given for a fully
            connected layer; an unknown ``method``.
        zfcore.chain.UnsupportedModel: (a ValueError) the model is not a chain of
            the supported modules; the message names the module.
    """
    return _project(model, x, layer, feature, position, method, None)


def project_steps(model: nn.Module, x: torch.Tensor, layer: str, feature: FeatureArg,
                  position: PositionArg = None, method: str = "deconvnet") -> List[Tuple[str, torch.Tensor]]:
    """The deconvnet's way down, step by step (for showing Section 2.1 at work).

    Arguments as for :func:`project`. Returns ``[(name, signal), ...]``: first the
    isolated activation at the output of ``layer`` (every other activation zero),
    then, for each layer from ``layer`` down to the first, the signal that layer's
    inverse produced (the signal at its input: after *filtering* for a conv layer,
    *unpooling* for a pooling layer, *rectification* for a ReLU), all scaled by the
    activation's value. The last signal is :func:`project`'s result.
    """
    trace: list = []
    _project(model, x, layer, feature, position, method, trace)
    return trace


def _project(model, x, layer, feature, position, method, trace, crop=None):
    """``crop``: None to walk on the receptive fields where that pays off (spatial layers
    whose field is small against the image), True wherever possible, False never."""
    check_method(method)
    steps, (top,), x = prepare(model, x, [layer])
    if trace is None and crop is not False:
        geo = _crop_geometry(steps, top)
        if geo is not None and (crop or geo[0][0][2] * geo[0][1][2]
                                <= _CROP_MAX_AREA * x.shape[2] * x.shape[3]):
            with EvalMode(model), torch.no_grad():
                return _project_cropped(steps, geo, x, top, layer, feature, position, method, model)
    with EvalMode(model), torch.no_grad():
        acts, switches = forward(steps, x, top)
        out = acts[top + 1]
        values, pos, feats = select(out, layer, feature, position)
        n = out.shape[0]
        rows = torch.arange(n, device=out.device)
        feats = feats.to(out.device)
        g = torch.zeros_like(out)
        if pos is None:
            g[rows, feats] = 1.0
        else:
            pos = pos.to(out.device)
            g[rows, feats, pos[:, 0], pos[:, 1]] = 1.0
        scale = values.reshape(n, *([1] * (g.dim() - 1)))
        if trace is not None:
            trace.append((layer, g * scale))
        g = _down(steps, acts, switches, top, g, method, trace)
        if trace is not None:
            trace[1:] = [(name, t * values.reshape(n, *([1] * (t.dim() - 1)))) for name, t in trace[1:]]
        return g * values.reshape(n, 1, 1, 1)


def inverse_kinds(model: nn.Module, input_size=None) -> dict:
    """What the deconvnet does at each layer on the way down, by layer name:
    ``"filter"`` (conv: transposed filters), ``"unpool"`` (max-pool: switches),
    ``"spread"`` (average pooling: its transpose), ``"rectify"`` (ReLU on the signal),
    ``"skip"`` (normalisation), ``"transpose"`` (fully connected), ``"reshape"``
    (flatten), ``"pass"`` (dropout, identities, a size-preserving adaptive pooling)."""
    kinds = {nn.Conv2d: "filter", nn.MaxPool2d: "unpool", nn.ReLU: "rectify",
             nn.AvgPool2d: "spread (transposed averaging)", nn.AdaptiveAvgPool2d: "spread (transposed averaging)",
             nn.LocalResponseNorm: "skip (no normalisation)", nn.Linear: "transpose",
             nn.Flatten: "reshape"}
    out = {}
    for step in chain(model, input_size):
        kind = next((v for t, v in kinds.items() if isinstance(step.module, t)), "pass")
        if isinstance(step.module, nn.AdaptiveAvgPool2d) and step.in_shape == step.out_shape:
            kind = "pass"
        out[step.name] = kind
    return out
