"""Occlusion sensitivity (Zeiler & Fergus 2014, Section 4.2, Fig. 7).

A grey square is slid over the image; for every occluder position the network
is run on the occluded image and Fig. 7 plots:

* (b) the *total activation* of one feature map of a layer (in the paper the
  strongest layer-5 map of the unoccluded image): the *rectified* map (the
  layer's output after a ReLU, as the next layer sees it: for ours and AlexNet the
  ReLU that follows the convolution) summed over its positions,
  :attr:`OcclusionMaps.activity`. The strongest map is chosen on the same
  rectified output (:func:`driving_maps`). ``rectify=False`` sums the raw output
  instead, which for a convolution is negative at most positions and is not the
  paper's "total activity in the feature map";
* (d) the probability of the correct class, :attr:`OcclusionMaps.prob`;
* (e) the most probable class, :attr:`OcclusionMaps.top_class`.

* (c) the deconvnet projection (:func:`zfcore.deconv.project`) of that map's
  strongest activation in the unoccluded image, :attr:`OcclusionMaps.projection`.

The paper gives neither the occluder size, nor its stride, nor the grey value;
they are arguments here.

Two engines, both exact, both batched (``batch_size`` occluder positions at a
time, in eval mode, without gradients; the layer's output and the logits come
from the same pass), walking the chain (:func:`zfcore.chain.chain`) with
non-in-place operations as :func:`zfcore.activations.layer_activations` does:

* ``"incremental"`` (default): only the part of each layer's output that the
  occluder can reach (its projective field, grown layer by layer through the
  kernels, strides and pools) is recomputed, from the unoccluded activations
  (computed once) with the previous layer's recomputed patch laid over them;
  see :mod:`zfcore.incremental`. At the first layer that mixes all
  positions (flatten, fully connected) the patches are laid over full copies of
  the unoccluded maps and the rest runs on whole maps. At 224 px with a 56-pixel
  occluder this skips about 60% of the ZF network's arithmetic (``make bench``
  measures it against captum's ``Occlusion``);
* ``"full"``: each occluded image through the whole chain.

An average pooling is a window layer too when it sums a fixed window and divides
by one number (:func:`zfcore.fields.average_window`); one that does not
(torchvision's ``avgpool``, an adaptive pooling to 6x6 or 7x7, at most sizes
other than 224 px: its bins differ in size) is where the incremental engine goes
over to whole maps.

They agree to float rounding (the tests check both against a naive loop, on our
models and torchvision's AlexNet and VGG, square and not, at sizes where
torchvision's adaptive pooling resizes the maps).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .chain import EvalMode, Step, chain, check_images, device_of, dtype_of, find_step, forward
from .data.splits import has_boxes, load_split
from .deconv import project
from .activations import layer_activations, strongest
from .incremental import incremental, patch_total
from .progress import progress_bar
from .runs import preset_of
from .view import ModelView

__all__ = ["occluder_grid", "default_occluder", "OcclusionMaps", "sensitivity", "ENGINES", "pixel_drop",
           "box_share", "Localization", "localization", "fig7_examples", "driving_maps"]

ENGINES = ("incremental", "full")


def _grid_1d(side: int, size: int, stride: int, what: str) -> List[int]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"occluder size must be an int >= 1, got {size!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"occluder stride must be an int >= 1, got {stride!r}")
    if size > side:
        raise ValueError(f"occluder size {size} is larger than the image {what} {side}")
    starts = list(range(0, side - size + 1, stride))
    if starts[-1] != side - size:
        starts.append(side - size)
    return starts


def default_occluder(image_size: int) -> Tuple[int, int]:
    """The default occluder ``(size, stride)`` for images of ``image_size`` pixels.

    The paper (Section 4.2, Fig. 7) gives neither; we scale them to the input:
    ``size = round(image_size / 4)`` (a quarter of the side: 56 px at 224, 12 at
    48) and ``stride = round(image_size / 28)`` (8 px at 224, 2 at 48), each at
    least 1. That is about ``(image_size - size) / stride + 1`` = 22 positions
    per side, 484 occluded images per input.
    """
    s = int(image_size)
    return max(1, int(round(s / 4))), max(1, int(round(s / 28)))


def occluder_grid(height: int, width: int, size: int, stride: int) -> Tuple[List[int], List[int]]:
    """Top-left corners of the occluder positions (Fig. 7).

    Corners ``0, stride, 2*stride, ...`` along each side, plus ``side - size``
    where the steps do not reach it, so that the squares always cover the
    border (no corner is repeated).

    Returns:
        ``(ys, xs)``: the row corners (for ``height``) and column corners (for ``width``).

    Raises:
        ValueError: ``size < 1``, ``size`` larger than a side, or ``stride < 1``.
    """
    return (_grid_1d(int(height), size, stride, "height"),
            _grid_1d(int(width), size, stride, "width"))


@dataclass
class OcclusionMaps:
    """The maps of Fig. 7, one entry per occluder position.

    Attributes:
        ys, xs: the occluder's top-left corners (rows, columns); the maps have
            shape ``(len(ys), len(xs))`` and entry ``[i, j]`` is the occluder at
            ``(ys[i], xs[j])``.
        target: the class whose probability is mapped (Fig. 7 (d)).
        layer, feature: the layer and feature map whose activity is mapped (Fig. 7 (b)).
        prob: (len(ys), len(xs)) float, softmax probability of ``target`` (Fig. 7 (d)).
        top_class: (len(ys), len(xs)) long, the most probable class (Fig. 7 (e)).
        activity: (len(ys), len(xs)) float, the map ``feature`` of ``layer``
            summed over its positions (Fig. 7 (b), the "total activation"): after a ReLU
            (never negative) when ``rectified``, the raw output otherwise.
        unoccluded_prob, unoccluded_activity: the same for the unoccluded image.
        projection: (3, H, W) float, Fig. 7 (c): the deconvnet projection
            (:func:`zfcore.deconv.project`) of the strongest activation of map
            ``feature`` of ``layer`` in the unoccluded image, all other
            activations of the layer zero; ``None`` when not asked for.
        position: (row, column) of that strongest activation in the layer's map
            (``None`` for a fully connected layer or when not asked for).
        unoccluded_class: the most probable class of the unoccluded image.
        rectified: whether ``activity`` sums the rectified map (the paper's total activity).
    """
    ys: List[int]
    xs: List[int]
    target: int
    layer: str
    feature: int
    prob: torch.Tensor
    top_class: torch.Tensor
    activity: torch.Tensor
    unoccluded_prob: float
    unoccluded_activity: float
    projection: Optional[torch.Tensor] = None
    position: Optional[Tuple[int, int]] = None
    unoccluded_class: Optional[int] = None
    rectified: bool = True


def _total(out: torch.Tensor, feature: int, rectify: bool) -> torch.Tensor:
    """Total activity of ``feature`` per image: (N,) from (N, C, H, W) or (N, J), after a ReLU when
    ``rectify``; summed in float32 at least (a half-precision sum of many positions would lose most of its
    digits; the incremental engine's :func:`zfcore.incremental.patch_total` sums as this does)."""
    a = out[:, feature].clamp(min=0) if rectify else out[:, feature]
    return a.reshape(a.shape[0], -1).sum(dim=1, dtype=torch.promote_types(a.dtype, torch.float32))


def sensitivity(model: nn.Module, x: torch.Tensor, size: int, stride: int, fill: float = 0.0,
                target: Optional[int] = None, layer: Optional[str] = None,
                feature: Optional[int] = None, batch_size: int = 64,
                projection: bool = True, engine: str = "incremental", rectify: bool = True) -> OcclusionMaps:
    """Occlusion sensitivity maps of one image (Fig. 7 (b), (d), (e)).

    Args:
        model: a supported chain (:func:`zfcore.chain.chain`): ours, torchvision's AlexNet/VGG
            at any input size they take.
        x: one image, shape (1, 3, H, W), finite; H and W need not be equal (if the model
            takes them). Moved to the model's device and cast to its dtype (a float64 image
            for a float32 model is occluded and run in float32).
        size: side of the square occluder, in pixels.
        stride: step between occluder positions (see :func:`occluder_grid`).
        fill: the value the occluded square is set to (the "grey"): a number, finite
            in the model's dtype.
        target: class whose probability is mapped; default the unoccluded prediction.
        layer: module path of the layer whose activity is mapped; default the last
            Conv2d of the chain (``"conv5"`` for ours, ``"features.10"`` for AlexNet).
            Its output is read before any (in-place) ReLU, and rectified here (``rectify``).
        feature: feature map (or unit, for a fully connected layer); default the map
            with the strongest rectified activation (max over positions) in the unoccluded
            image (:func:`driving_maps`).
        batch_size: occluded images per forward pass.
        projection: also compute Fig. 7 (c), the deconvnet projection of the
            map's strongest activation in the unoccluded image
            (:attr:`OcclusionMaps.projection`).
        engine: ``"incremental"`` or ``"full"`` (the module's docstring).
        rectify: Fig. 7 (b) sums the map after a ReLU (``max(0, .)``), the paper's total
            activity of a rectified map; ``False`` sums the layer's raw output.

    Returns:
        :class:`OcclusionMaps`.

    Raises:
        ValueError: wrong image shape, NaN or infinite pixels, a NaN, infinite or
            non-numeric ``fill``, bad size/stride, target or feature out of range,
            unknown layer (the message lists the layers).
    """
    check_images(x)
    dtype = dtype_of(model, x.dtype)
    fill = _check_fill(fill, dtype)
    if x.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, 3, H, W), got shape {tuple(x.shape)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    h, w = int(x.shape[2]), int(x.shape[3])
    ys, xs = occluder_grid(h, w, size, stride)
    steps = chain(model, (h, w))
    layer = _default_layer(steps) if layer is None else layer
    li = find_step(steps, layer)
    x = x.detach().to(device_of(model, x), dtype)

    with EvalMode(model), torch.no_grad():
        acts, _ = forward(steps, x, len(steps) - 1)
        u = _unoccluded(acts, li, layer, target, feature, rectify)
        corners = [(yy, xx) for yy in ys for xx in xs]
        probs, tops, actv = [], [], []
        for b in range(0, len(corners), batch_size):
            logits, total = _occluded(steps, acts, x, corners[b:b + batch_size], size, fill, li,
                                      u.feature, engine, rectify)
            p = torch.softmax(logits.float(), dim=1)
            probs.append(p[:, u.target])
            tops.append(p.argmax(dim=1))
            actv.append(total.float())

    proj, pos = _projection(model, x, layer, u.feature) if projection else (None, None)
    shape = (len(ys), len(xs))
    return OcclusionMaps(
        ys=ys, xs=xs, target=u.target, layer=layer, feature=u.feature,
        prob=torch.cat(probs).reshape(shape).cpu(),
        top_class=torch.cat(tops).reshape(shape).cpu(),
        activity=torch.cat(actv).reshape(shape).cpu(),
        unoccluded_prob=u.prob, unoccluded_activity=u.activity,
        projection=proj, position=pos, unoccluded_class=u.predicted, rectified=bool(rectify))


def _check_fill(fill, dtype: torch.dtype) -> float:
    """The occluder's value as a float, finite in the model's dtype."""
    try:
        fill_value = float(fill)
    except (TypeError, ValueError):
        raise ValueError(f"fill must be a number (the occluder's value), got {fill!r}") from None
    if isinstance(fill, bool) or not math.isfinite(fill_value):
        raise ValueError(f"fill must be a finite number (the occluder's value), got {fill!r}")
    if not bool(torch.isfinite(torch.tensor(fill_value, dtype=dtype))):
        raise ValueError(f"fill {fill!r} is not finite in the model's dtype {dtype}: expected a finite value")
    return fill_value


def _default_layer(steps: List[Step]) -> str:
    """The chain's last Conv2d (the paper maps a layer-5 feature map)."""
    convs = [s.name for s in steps if isinstance(s.module, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer; pass layer=")
    return convs[-1]


@dataclass
class _Unoccluded:
    """What the unoccluded image gives: the target, the feature, their values, the prediction."""
    target: int
    feature: int
    prob: float
    activity: float
    predicted: int


def _strongest_map(out: torch.Tensor) -> torch.Tensor:
    """(N,) the map of (N, C, ...) whose strongest rectified activation (max over positions of
    ``max(0, .)``) is largest, the lowest index among ties (a map never positive is 0)."""
    return out.reshape(out.shape[0], out.shape[1], -1).amax(dim=2).clamp(min=0).argmax(dim=1)


def driving_maps(model: nn.Module, x: torch.Tensor, layer: Optional[str] = None) -> torch.Tensor:
    """(N,) long: each image's strongest map of ``layer`` (default: the chain's last Conv2d,
    ``conv5``), the one Fig. 7 (b) and (c) show (:func:`sensitivity`'s default ``feature``):
    the largest rectified activation, max over positions."""
    check_images(x)
    layer = _default_layer(chain(model, (int(x.shape[2]), int(x.shape[3])))) if layer is None else layer
    return _strongest_map(layer_activations(model, x, layer)[layer]).cpu()


def _unoccluded(acts: List[torch.Tensor], li: int, layer: str, target: Optional[int],
                feature: Optional[int], rectify: bool) -> _Unoccluded:
    """The target (default: the prediction) and feature (default: the strongest map), checked,
    with the unoccluded image's probability and total activity."""
    out0, logits0 = acts[li + 1], acts[-1]
    if logits0.dim() != 2:
        raise ValueError(f"the model's output has shape {tuple(logits0.shape)}; expected (N, classes)")
    n_cls = logits0.shape[1]
    p0 = torch.softmax(logits0.float(), dim=1)[0]
    if target is None:
        target = int(p0.argmax())
    if isinstance(target, bool) or int(target) != target or not 0 <= int(target) < n_cls:
        raise ValueError(f"target {target!r} is out of range: the model has {n_cls} classes, "
                         f"expected 0..{n_cls - 1}")
    n_feat = out0.shape[1]
    if feature is None:
        feature = int(_strongest_map(out0[:1])[0])
    if isinstance(feature, bool) or int(feature) != feature or not 0 <= int(feature) < n_feat:
        raise ValueError(f"feature {feature!r} is out of range for layer {layer!r}, which has "
                         f"{n_feat} maps: expected 0..{n_feat - 1}")
    target, feature = int(target), int(feature)
    return _Unoccluded(target, feature, float(p0[target]), float(_total(out0, feature, rectify)[0]),
                       int(p0.argmax()))


def _occluded(steps: List[Step], acts: List[torch.Tensor], x: torch.Tensor, chunk: List[Tuple[int, int]],
              size: int, fill: float, li: int, feature: int, engine: str,
              rectify: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(logits, total activity of ``feature``) of the images occluded at the corners of ``chunk``."""
    if engine == "incremental":
        logits, out = incremental(steps, acts, x, chunk, size, fill, li)
        if isinstance(out, tuple):
            base, patch = acts[li + 1][0][feature:feature + 1], out[0][:, feature:feature + 1]
            if rectify:             # the rectified map: the ReLU is elementwise, so it commutes with the patch
                base, patch = base.clamp(min=0), patch.clamp(min=0)
            return logits, patch_total(base, patch, out[1], out[2], 0)
        return logits, _total(out, feature, rectify)
    xb = x.repeat(len(chunk), 1, 1, 1)
    for k, (yy, xx) in enumerate(chunk):
        xb[k, :, yy:yy + size, xx:xx + size] = fill
    full, _ = forward(steps, xb, len(steps) - 1)
    return full[-1], _total(full[li + 1], feature, rectify)


def _projection(model: nn.Module, x: torch.Tensor, layer: str, feature: int):
    """Fig. 7 (c): the projection of the map's strongest activation, and where it is."""
    proj = project(model, x, layer, feature)[0].detach().float().cpu()
    _, p = strongest(model, x, layer, feature)
    return proj, None if p is None else (int(p[0, 0]), int(p[0, 1]))


# --------------------------------------------------------------------------------------------
# does the model look at the object? (beyond the paper)


def pixel_drop(maps: OcclusionMaps, size: int, shape: Tuple[int, int]) -> torch.Tensor:
    """The drop in the target's probability spread back onto the pixels.

    Each pixel gets the mean, over the occluder positions that cover it, of
    ``unoccluded_prob - prob`` (what captum's ``Occlusion`` returns per pixel);
    pixels no occluder covers get 0.

    Args:
        maps: the result of :func:`sensitivity`.
        size: the occluder's side.
        shape: the image's ``(H, W)``.

    Returns:
        (H, W) float.
    """
    h, w = int(shape[0]), int(shape[1])
    drop = (maps.unoccluded_prob - maps.prob).float()
    # sums over the squares, by an integral image of the corner map (no loop over positions)
    corner = torch.zeros(h + 1, w + 1)
    count = torch.zeros(h + 1, w + 1)
    ys = torch.tensor(maps.ys)
    xs = torch.tensor(maps.xs)
    for sign, dy, dx in ((1, 0, 0), (-1, size, 0), (-1, 0, size), (1, size, size)):
        corner.index_put_((ys[:, None] + dy, xs[None, :] + dx), sign * drop, accumulate=True)
        count.index_put_((ys[:, None] + dy, xs[None, :] + dx), torch.full(drop.shape, float(sign)),
                         accumulate=True)
    total = corner.cumsum(0).cumsum(1)[:h, :w]
    n = count.cumsum(0).cumsum(1)[:h, :w]
    return torch.where(n > 0.5, total / n.clamp(min=1), torch.zeros(()))


def box_share(maps: OcclusionMaps, size: int, box: Sequence[float], shape: Tuple[int, int]) -> dict:
    """How much of the probability drop of ``maps`` falls inside ``box``.

    Args:
        maps: the result of :func:`sensitivity`.
        size: the occluder's side.
        box: ``(x0, y0, x1, y1)`` in pixels of the image the maps were computed on
            (clipped to it); pixel ``(i, j)`` is inside when its centre is.
        shape: the image's ``(H, W)``.

    Returns:
        ``{"share": the positive pixel drop (:func:`pixel_drop`) inside the box over all of
        it (0 when nothing drops), "chance": the box's share of the pixels,
        "lowest_inside": whether the occluder centre with the lowest probability is in the
        box, "lowest_inside_chance": the share of occluder centres in the box}``.
    """
    h, w = int(shape[0]), int(shape[1])
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    ry = torch.arange(h, dtype=torch.float32) + 0.5
    rx = torch.arange(w, dtype=torch.float32) + 0.5
    inside = ((ry >= y0) & (ry < y1))[:, None] & ((rx >= x0) & (rx < x1))[None, :]
    drop = pixel_drop(maps, size, (h, w)).clamp(min=0)
    total = float(drop.sum())
    cy = torch.tensor(maps.ys, dtype=torch.float32) + size / 2
    cx = torch.tensor(maps.xs, dtype=torch.float32) + size / 2
    centre_in = ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    return {"share": float(drop[inside].sum()) / total if total > 0 else 0.0,
            "chance": float(inside.float().mean()),
            "lowest_inside": bool(centre_in.flatten()[int(maps.prob.argmin())]),
            "lowest_inside_chance": float(centre_in.float().mean())}


@dataclass
class Localization:
    """Where the probability drop falls, over a set of images (the localization check).

    Attributes:
        indices: (N,) the images of the split used.
        share: (N,) the share of the positive pixel drop (:func:`pixel_drop`, negative
            values set to 0) that falls inside the object's box.
        chance: (N,) the box's share of the image: what a drop spread evenly would give.
        min_inside: (N,) bool, the occluder position with the lowest probability has its
            centre inside the box.
        min_inside_chance: (N,) the share of occluder centres that lie inside the box.
        unoccluded_prob: (N,) the true class's probability without occluder.
        correct: (N,) bool, the unoccluded prediction is the true class.
        size, stride: the occluder.
        seconds: how long the check took.
    """
    indices: np.ndarray
    share: np.ndarray
    chance: np.ndarray
    min_inside: np.ndarray
    min_inside_chance: np.ndarray
    unoccluded_prob: np.ndarray
    correct: np.ndarray
    size: int
    stride: int
    seconds: float = 0.0

    def summary(self) -> dict:
        """Means over the images, and the share of images where the object gets more than chance."""
        return {"images": int(len(self.indices)),
                "share_inside": float(self.share.mean()), "chance": float(self.chance.mean()),
                "images_above_chance": float((self.share > self.chance).mean()),
                "lowest_inside": float(self.min_inside.mean()),
                "lowest_inside_chance": float(self.min_inside_chance.mean())}


def localization(run, split: str = "test", n_images: int = 100, size: Optional[int] = None,
                 stride: Optional[int] = None, fill: float = 0.0, seed: int = 0,
                 batch_size: int = 128, progress: bool = True) -> Localization:
    """Does the model look at the object? The localization check on the scenes (beyond the paper).

    Section 4.2 of the paper argues from Fig. 7 that "the model is localizing the
    objects within the scene, as the probability of the correct class drops
    significantly when the object is occluded". Here that is measured: for
    ``n_images`` images of a scenes split (a seeded random sample), the occlusion
    map of the *true* class is spread back onto the pixels (:func:`pixel_drop`)
    and the share of the drop inside the object's box is compared with the box's
    share of the image (the chance level, if the drop were spread evenly).

    Args:
        run: a trained :class:`zfcore.train.Run` on the scenes.
        split: the scenes split.
        n_images: how many images (all when larger than the split).
        size, stride: the occluder; default :func:`default_occluder` of the input
            size with the stride doubled (a coarser grid: many images).
        fill: the occluder's value (0.0, the mean).

    Returns:
        :class:`Localization`.

    Raises:
        ValueError: at a folder scale (``imagenet``): the check needs each image's object
            box, which only the generated scenes carry.
    """

    p = preset_of(run)
    if p.data != "scenes":
        raise ValueError(f"the localization check needs each image's object box, which only the "
                         f"generated scenes carry; the {p.name!r} scale reads your prepared folders, "
                         f"whose images have class labels only")
    ds = load_split(p, split, progress=False)
    if not has_boxes(ds):       # pragma: no cover - every scenes split has boxes
        raise ValueError(f"the {split!r} split has no object boxes: the localization check needs them")
    s = p.image_size
    d_size, d_stride = default_occluder(s)
    size = d_size if size is None else size
    stride = 2 * d_stride if stride is None else stride
    occluder_grid(s, s, size, stride)                       # checks size and stride
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be an int >= 1, got {n_images!r}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(ds))[:n_images])
    view = run.view()
    model = view.model
    off = (ds.stored_size - s) // 2                         # the crop's corner, for the boxes
    x_all = view.inputs(ds.images[idx])
    share, chance, low_in, low_chance, p0, correct = [], [], [], [], [], []
    for k in progress_bar(range(len(idx)), desc="occluding", enabled=progress):
        i = int(idx[k])
        label = int(ds.labels[i])
        m = sensitivity(model, x_all[k:k + 1], size, stride, fill=fill, target=label,
                        batch_size=batch_size, projection=False)
        b = box_share(m, size, (ds.object_box(i) - off).tolist(), (s, s))
        share.append(b["share"])
        chance.append(b["chance"])
        low_in.append(b["lowest_inside"])
        low_chance.append(b["lowest_inside_chance"])
        p0.append(m.unoccluded_prob)
        correct.append(m.unoccluded_class == label)
    return Localization(indices=idx, share=np.array(share), chance=np.array(chance),
                        min_inside=np.array(low_in), min_inside_chance=np.array(low_chance),
                        unoccluded_prob=np.array(p0), correct=np.array(correct),
                        size=size, stride=stride, seconds=time.perf_counter() - t0)


def fig7_examples(model: nn.Module, ds, mean: torch.Tensor, image_size: int, n: int = 3, seed: int = 0,
                  min_prob: float = 0.5, limit: Optional[int] = None,
                  batch_size: int = 256) -> Tuple[List[int], List[int]]:
    """Fig. 7's images: ``(chosen, good)``, indices into the split ``ds``.

    ``good``: the images the model classifies correctly (top-1 of the centre crop)
    with a probability of the true class above ``min_prob``, in an order drawn from
    ``seed``. ``chosen``: ``n`` of them of different classes, the first one with a
    distractor (an object of no class, ``box_labels == -1``) where the split records
    them (the scenes do; the user's folders do not). If fewer than ``n`` qualify, the
    rest are filled, in the same order, from the other images, those with the highest
    probability of their true class first, so that the figure always has ``n`` rows.

    Args:
        model: the network (eval mode is set for the pass); mean: its (3, S, S) mean.
        ds: a split (:func:`zfcore.data.splits.load_split`): a scenes ``SceneSet`` or
            a :class:`~zfcore.data.splits.FolderSplit`.
        limit: look at no more than this many images (the first ``limit`` of the
            seeded order). Default: all of a split held in memory (the scenes), 2000 of
            one read from files (a folder split: ImageNet's 50,000 validation images
            would take long to classify on a CPU).
    """
    if len(ds) == 0:
        raise ValueError("the split has no images")
    if limit is None and not isinstance(ds.images, np.ndarray):
        limit = 2000
    labels = np.asarray(ds.labels)
    order, pred, p_true = ModelView(model, image_size, mean=mean).predictions(
        ds.images, labels, seed=seed, limit=limit, batch_size=batch_size)
    good = [int(i) for i in order if pred[i] == labels[i] and p_true[i] > min_prob]
    box_labels = getattr(ds, "box_labels", None)
    chosen = [i for i in good if (np.asarray(box_labels[i]) == -1).any()][:1] if box_labels is not None else []
    for i in good:
        if len(chosen) >= n:
            break
        if i not in chosen and labels[i] not in {labels[j] for j in chosen}:
            chosen.append(i)
    if len(chosen) < n:
        rest = sorted((int(i) for i in order if int(i) not in chosen),
                      key=lambda i: (pred[i] != labels[i], -p_true[i]))
        chosen += rest[:n - len(chosen)]
    return chosen, good

