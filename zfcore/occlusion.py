"""Occlusion sensitivity (Zeiler & Fergus 2014, Section 4.2, Fig. 7).

A grey square is slid over the image; for every occluder position the network
is run on the occluded image and Fig. 7 plots:

* (b) the *total activation* of one feature map of a layer (in the paper the
  strongest layer-5 map of the unoccluded image): the map's output summed over
  its positions, :attr:`OcclusionMaps.activity`;
* (d) the probability of the correct class, :attr:`OcclusionMaps.prob`;
* (e) the most probable class, :attr:`OcclusionMaps.top_class`.

(Panel (c), the deconv projections of that map, is :func:`zfcore.deconv.project`.)
The paper gives neither the occluder size, nor its stride, nor the grey value;
they are arguments here.

This first version is exact and batched: each occluded image is run through the
whole chain (:func:`zfcore.chain.chain`, walked with non-in-place operations as
:func:`zfcore.deconv.layer_activations` does), ``batch_size`` occluder positions
per forward pass, in eval mode and without gradients; the layer's output and the
logits come from the same pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from .chain import chain, find_step
from .deconv import _EvalMode, _check_images, _device_of, _forward, project, strongest

__all__ = ["occluder_grid", "OcclusionMaps", "sensitivity"]


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
            summed over its positions (Fig. 7 (b), the "total activation").
        unoccluded_prob, unoccluded_activity: the same for the unoccluded image.
        projection: (3, H, W) float, Fig. 7 (c): the deconvnet projection
            (:func:`zfcore.deconv.project`) of the strongest activation of map
            ``feature`` of ``layer`` in the unoccluded image, all other
            activations of the layer zero; ``None`` when not asked for.
        position: (row, column) of that strongest activation in the layer's map
            (``None`` for a fully connected layer or when not asked for).
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


def _total(out: torch.Tensor, feature: int) -> torch.Tensor:
    """Total activity of ``feature`` per image: (N,) from (N, C, H, W) or (N, J)."""
    a = out[:, feature]
    return a.reshape(a.shape[0], -1).sum(dim=1)


def sensitivity(model: nn.Module, x: torch.Tensor, size: int, stride: int, fill: float = 0.0,
                target: Optional[int] = None, layer: Optional[str] = None,
                feature: Optional[int] = None, batch_size: int = 64,
                projection: bool = True) -> OcclusionMaps:
    """Occlusion sensitivity maps of one image (Fig. 7 (b), (d), (e)).

    Args:
        model: a supported chain (:func:`zfcore.chain.chain`): ours, torchvision's AlexNet/VGG.
        x: one image, shape (1, 3, H, W); H and W need not be equal (if the model takes them).
        size: side of the square occluder, in pixels.
        stride: step between occluder positions (see :func:`occluder_grid`).
        fill: the value the occluded square is set to (the "grey").
        target: class whose probability is mapped; default the unoccluded prediction.
        layer: module path of the layer whose activity is mapped; default the last
            Conv2d of the chain (``"conv5"`` for ours, ``"features.10"`` for AlexNet).
            Its output is read before any (in-place) ReLU.
        feature: feature map (or unit, for a fully connected layer); default the map
            with the strongest activation (max over positions) in the unoccluded image.
        batch_size: occluded images per forward pass.
        projection: also compute Fig. 7 (c), the deconvnet projection of the
            map's strongest activation in the unoccluded image
            (:attr:`OcclusionMaps.projection`).

    Returns:
        :class:`OcclusionMaps`.

    Raises:
        ValueError: wrong image shape, bad size/stride, target or feature out of
            range, unknown layer (the message lists the layers).
    """
    _check_images(x)
    if x.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, 3, H, W), got shape {tuple(x.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    h, w = int(x.shape[2]), int(x.shape[3])
    ys, xs = occluder_grid(h, w, size, stride)
    steps = chain(model, (h, w))
    if layer is None:
        convs = [s.name for s in steps if isinstance(s.module, nn.Conv2d)]
        if not convs:
            raise ValueError("the model has no Conv2d layer; pass layer=")
        layer = convs[-1]
    li = find_step(steps, layer)
    last = len(steps) - 1
    x = x.detach().to(_device_of(model, x))

    with _EvalMode(model), torch.no_grad():
        acts, _ = _forward(steps, x, last)
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
        target = int(target)
        n_feat = out0.shape[1]
        if feature is None:
            feature = int(out0[0].reshape(n_feat, -1).max(dim=1).values.argmax())
        if isinstance(feature, bool) or int(feature) != feature or not 0 <= int(feature) < n_feat:
            raise ValueError(f"feature {feature!r} is out of range for layer {layer!r}, which has "
                             f"{n_feat} maps: expected 0..{n_feat - 1}")
        feature = int(feature)
        unocc_prob = float(p0[target])
        unocc_act = float(_total(out0, feature)[0])

        corners = [(yy, xx) for yy in ys for xx in xs]
        probs, tops, actv = [], [], []
        for b in range(0, len(corners), batch_size):
            chunk = corners[b:b + batch_size]
            xb = x.repeat(len(chunk), 1, 1, 1)
            for k, (yy, xx) in enumerate(chunk):
                xb[k, :, yy:yy + size, xx:xx + size] = fill
            acts, _ = _forward(steps, xb, last)
            p = torch.softmax(acts[-1].float(), dim=1)
            probs.append(p[:, target])
            tops.append(p.argmax(dim=1))
            actv.append(_total(acts[li + 1], feature).float())
            del acts

    proj, pos = None, None
    if projection:
        proj = project(model, x, layer, feature)[0].detach().float().cpu()
        _, p = strongest(model, x, layer, feature)
        pos = None if p is None else (int(p[0, 0]), int(p[0, 1]))
    shape = (len(ys), len(xs))
    return OcclusionMaps(
        ys=ys, xs=xs, target=target, layer=layer, feature=feature,
        prob=torch.cat(probs).reshape(shape).cpu(),
        top_class=torch.cat(tops).reshape(shape).cpu(),
        activity=torch.cat(actv).reshape(shape).cpu(),
        unoccluded_prob=unocc_prob, unoccluded_activity=unocc_act,
        projection=proj, position=pos)
