"""The class-specific maps that the sanity checks test, and how alike two maps are.

Four methods give each image a map for one class (:func:`class_maps`): the deconvnet, the
plain gradient and guided backpropagation (the projection of the class's unit of the output
layer to pixels, :func:`zfcore.deconv.project`), and occlusion (the drop in the class's
probability as a grey square covers each part of the image, :func:`zfcore.occlusion.sensitivity`).

Conventions (Adebayo et al.'s released code, the ``saliency`` library's visualizers): a map
of shape (N, C, H, W) is reduced to a grey (N, H, W) map by summing over channels, of the
absolute values (:func:`grayscale`, ``absolute=True``) or of the signed values; two maps are
compared by Spearman's rank correlation (:func:`spearman`) and by SSIM, taken on the absolute
grey map divided by its 99th percentile and clipped to [0, 1] (:func:`normalize_map`,
:func:`ssim`); :func:`similarity` gives all three. Every function takes prepared
(mean-subtracted) tensors and any model :func:`zfcore.chain.chain` can walk.

The checked-argument helpers (:func:`class_targets`, :func:`as_maps`, :func:`positive_int`,
:func:`map_setup`, :func:`compute_maps`) are public because the checks built on the maps
(:mod:`zfcore.randomization`, :mod:`zfcore.localization_checks`, :mod:`zfcore.faithfulness`)
share them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from .chain import EvalMode, chain, check_images, device_of
from .deconv import METHODS as BACKWARD_METHODS
from .deconv import project
from .activations import strongest
from .findings import mean_se
from .occlusion import default_occluder, pixel_drop, sensitivity
from .progress import progress_bar

__all__ = ["METHODS", "Target", "check_method", "class_logits", "class_targets", "as_maps",
           "positive_int", "output_layer", "occluder_size", "class_maps", "map_setup", "compute_maps",
           "grayscale", "importance", "normalize_map", "spearman", "ssim", "Similarity", "similarity"]

#: The methods compared: the three backward passes of :func:`zfcore.deconv.project`, then occlusion.
METHODS = tuple(BACKWARD_METHODS) + ("occlusion",)

Target = Union[int, Sequence[int], torch.Tensor, None]

# --------------------------------------------------------------------------------------------
# checks


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def class_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with EvalMode(model), torch.no_grad():
        out = model(x.to(device_of(model, x)))
    if out.dim() != 2:
        raise ValueError(f"the model's output has shape {tuple(out.shape)}; expected (N, classes)")
    return out


def class_targets(model: nn.Module, x: torch.Tensor, target: Target, what: str = "target") -> torch.Tensor:
    """``target`` as an (N,) LongTensor on the CPU; None: the model's prediction for each image."""
    n = x.shape[0]
    logits = class_logits(model, x)
    classes = logits.shape[1]
    if target is None:
        return logits.argmax(dim=1).cpu()
    if isinstance(target, bool):
        raise ValueError(f"{what} must be a class index or {n} of them, got a bool")
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} must hold integer class indices, got dtype {t.dtype}")
    t = t.to(torch.long).cpu()
    if t.dim() == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"{what} must be a class index or {n} of them (one per image), got shape "
                         f"{tuple(t.shape)}")
    bad = (t < 0) | (t >= classes)
    if bool(bad.any()):
        raise ValueError(f"{what} {int(t[bad][0])} is out of range: the model has {classes} classes, "
                         f"expected 0..{classes - 1}")
    return t


def as_maps(maps, what: str = "maps") -> torch.Tensor:
    """``maps`` as a float64 (N, H, W) CPU tensor; ValueError naming the problem otherwise."""
    t = torch.as_tensor(maps)
    if t.dim() != 3 or t.shape[0] == 0:
        raise ValueError(f"{what} must have shape (N, H, W) with N >= 1, got {tuple(t.shape)}; reduce "
                         f"(N, C, H, W) maps with zfcore.saliency.grayscale or importance")
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.uint8)):
        raise ValueError(f"{what} must hold numbers, got dtype {t.dtype}")
    t = t.detach().cpu().to(torch.float64)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{what} hold {int(bad.sum())} NaN or infinite values (first in map "
                         f"{int(bad.reshape(len(t), -1).any(1).nonzero()[0])})")
    return t



def positive_int(value, name: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# the maps


def output_layer(model: nn.Module, input_size=None) -> str:
    """The module path of the model's last layer, whose units are the classes (``"fc8"`` for ours,
    ``"classifier.6"`` for torchvision's AlexNet and VGG)."""
    steps = chain(model, input_size)
    for step in reversed(steps):
        if isinstance(step.module, nn.Linear):
            return step.name
    raise ValueError("the model has no Linear layer whose units could be the classes")


def occluder_size(h: int, w: int, occluder: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    if occluder is None:
        size, _ = default_occluder(min(h, w))
        return size, max(1, size // 2)
    if len(tuple(occluder)) != 2:
        raise ValueError(f"occluder must be (size, stride) in pixels, got {occluder!r}")
    size, stride = occluder
    return positive_int(size, "occluder size"), positive_int(stride, "occluder stride")


def class_maps(model: nn.Module, x: torch.Tensor, method: str, target: Target = None, *,
               layer: Optional[str] = None, occluder: Optional[Tuple[int, int]] = None,
               batch_size: int = 128, progress: bool = False) -> torch.Tensor:
    """The class-specific map of each image, by one method.

    * ``"deconvnet"``, ``"gradient"``, ``"guided"``: the projection of the class's unit of
      the output layer (``fc8``) to pixels, :func:`zfcore.deconv.project`
      ``(model, x, "fc8", target, method=...)``, times the sign of that unit's value: the
      backward signal of a unit gradient at the class's score, times ``|score|``
      (:func:`project` scales by the value itself, which would flip the map of a class
      with a negative score; the sign matters to the signed rank correlation);
    * ``"occlusion"``: the drop in the class's softmax probability when a grey square (the
      mean, 0) covers each part of the image (Fig. 7 (d)), spread onto the pixels as the
      mean over the occluder positions covering each one
      (:func:`zfcore.occlusion.sensitivity` and :func:`~zfcore.occlusion.pixel_drop`).

    Args:
        model: a chain :func:`zfcore.chain.chain` can walk (ours, torchvision's AlexNet/VGG).
        x: prepared images, (N, 3, H, W).
        method: one of :data:`METHODS`.
        target: the class of each image, an int or N ints; None: the model's prediction.
        layer: the layer whose units are the classes (default :func:`output_layer`).
        occluder: ``(size, stride)`` in pixels for occlusion; default the size of
            :func:`zfcore.occlusion.default_occluder` (a quarter of the side) at a stride of
            half of it: a 7x7 grid of positions, coarser than Fig. 7's (the randomizations
            need one map per layer and image), each pixel covered by up to 4 positions.
        batch_size: occluded images per forward pass.

    Returns:
        float32 on the CPU: (N, 3, H, W) for the backward methods, (N, 1, H, W) for occlusion.
    """
    check_method(method)
    check_images(x)
    t, (default_layer, occ, batch_size) = map_setup(model, x, target, occluder, batch_size)
    return compute_maps(model, x, method, t, layer if layer is not None else default_layer, occ,
                        batch_size, progress)


def map_setup(model: nn.Module, x: torch.Tensor, target: Target, occluder, batch_size: int):
    """The checked classes, and the rest of :func:`compute_maps`' arguments: (layer, occluder, batch_size)."""
    size = (int(x.shape[2]), int(x.shape[3]))
    t = class_targets(model, x, target)
    return t, (output_layer(model, size), occluder_size(size[0], size[1], occluder),
               positive_int(batch_size, "batch_size"))


def compute_maps(model: nn.Module, x: torch.Tensor, method: str, t: torch.Tensor, layer: str,
                 occluder: Tuple[int, int], batch_size: int, progress: bool = False) -> torch.Tensor:
    """:func:`class_maps` once its arguments are checked and its defaults filled in
    (:func:`map_setup`): ``t`` the (N,) classes."""
    if method == "occlusion":
        h, w = int(x.shape[2]), int(x.shape[3])
        size, stride = occluder
        out = torch.zeros(x.shape[0], 1, h, w)
        for i in progress_bar(range(x.shape[0]), desc="occluding", enabled=progress, leave=False):
            m = sensitivity(model, x[i:i + 1], size, stride, target=int(t[i]), batch_size=batch_size,
                            projection=False)
            out[i, 0] = pixel_drop(m, size, (h, w))
        return out
    values, _ = strongest(model, x, layer, t)
    maps = project(model, x, layer, t, method=method)
    sign = torch.sign(values).reshape(-1, 1, 1, 1).to(maps.dtype)
    return (maps * sign).detach().float().cpu()


def grayscale(maps: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """(N, C, H, W) maps to grey (N, H, W) maps: the sum over channels of the absolute
    values (``absolute=True``, Adebayo et al.'s "absolute value" maps) or of the signed ones."""
    m = torch.as_tensor(maps)
    if m.dim() != 4:
        raise ValueError(f"expected maps of shape (N, C, H, W), got {tuple(m.shape)}")
    return (m.abs() if absolute else m).sum(dim=1)


def importance(maps: torch.Tensor, method: str) -> torch.Tensor:
    """The (N, H, W) importance of each pixel, as the localization and faithfulness checks
    read a map: the absolute grey map for the backward methods (a large change of the score
    either way), the probability drop itself for occlusion (positive where covering the pixel
    lowers the class's probability)."""
    check_method(method)
    return grayscale(maps, absolute=method != "occlusion")


def normalize_map(gray: torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """Grey (N, H, W) maps divided by their ``percentile``-th percentile of absolute values and
    clipped to [0, 1] (absolute maps) or [-1, 1] (signed ones), as the ``saliency`` library's
    ``VisualizeImageGrayscale`` that Adebayo et al. used; an all-zero map stays zero. float64."""
    g = as_maps(gray, "gray").numpy()
    n = g.shape[0]
    vmax = np.percentile(np.abs(g).reshape(n, -1), percentile, axis=1).reshape(n, 1, 1)
    lo = 0.0 if (g >= 0).all() else -1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(vmax > 0, g / np.where(vmax > 0, vmax, 1.0), 0.0)
    return np.clip(out, lo, 1.0)


# --------------------------------------------------------------------------------------------
# similarity


def _ranks(v: np.ndarray) -> np.ndarray:
    """The ranks (1..P) of each row of (N, P) float64 ``v``, ties given their average rank."""
    n, p = v.shape
    order = np.argsort(v, axis=1)
    s = np.take_along_axis(v, order, axis=1)
    first = np.ones((n, p), bool)                 # where a run of equal values starts
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones((n, p), bool)                  # ... and where one ends
    last[:, :-1] = first[:, 1:]
    pos = np.arange(p)
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, p)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, p))
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=1)
    return ranks


def spearman(a, b) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps, over their pixels.

    Args:
        a, b: (N, ...) maps (any shape after the first axis, the same for both).

    Returns:
        (N,) float64: the Pearson correlation of the ranks (ties get their average rank, as in
        ``scipy.stats.spearmanr``, which the tests check it against), NaN where a map is
        constant (no ranks to correlate).
    """
    x = np.asarray(torch.as_tensor(a).detach().cpu().to(torch.float64))
    y = np.asarray(torch.as_tensor(b).detach().cpu().to(torch.float64))
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"spearman needs two batches of maps of one shape (N, ...), got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("spearman: the maps hold NaN or infinite values")
    n = x.shape[0]
    rx = _ranks(x.reshape(n, -1))
    ry = _ranks(y.reshape(n, -1))
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    cov = (rx * ry).sum(axis=1)
    var = (rx * rx).sum(axis=1) * (ry * ry).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def ssim(a, b) -> np.ndarray:
    """The structural similarity (scikit-image's ``structural_similarity``, its default 7x7
    window, data range 1) of each pair of grey maps after :func:`normalize_map`.

    Args:
        a, b: (N, H, W) grey maps, H and W at least 7.

    Returns:
        (N,) float64.
    """
    x, y = normalize_map(a), normalize_map(b)
    if x.shape != y.shape:
        raise ValueError(f"ssim needs two batches of maps of one shape (N, H, W), got {x.shape} and {y.shape}")
    if min(x.shape[1:]) < 7:
        raise ValueError(f"ssim needs maps of at least 7x7 pixels (its window), got {x.shape[1]}x{x.shape[2]}")
    rng = 2.0 if (x.min() < 0 or y.min() < 0) else 1.0
    return np.array([structural_similarity(x[i], y[i], data_range=rng) for i in range(len(x))])


@dataclass
class Similarity:
    """How alike two sets of maps are, image by image (each (N,) float64).

    Attributes:
        spearman: rank correlation of the absolute grey maps (Adebayo et al.'s "with absolute value").
        spearman_signed: rank correlation of the signed grey maps ("without absolute value").
        ssim: SSIM of the normalized absolute grey maps.
    """
    spearman: np.ndarray
    spearman_signed: np.ndarray
    ssim: np.ndarray

    METRICS = ("spearman", "spearman_signed", "ssim")

    def mean(self, metric: str = "spearman") -> float:
        return mean_se(getattr(self, metric))[0]


def similarity(reference: torch.Tensor, maps: torch.Tensor) -> Similarity:
    """:class:`Similarity` of (N, C, H, W) ``maps`` to (N, C, H, W) ``reference``."""
    ra, ma = grayscale(reference, True), grayscale(maps, True)
    if ra.shape != ma.shape:
        raise ValueError(f"maps of shape {tuple(maps.shape)} cannot be compared with maps of shape "
                         f"{tuple(reference.shape)}")
    return Similarity(spearman=spearman(ra, ma),
                      spearman_signed=spearman(grayscale(reference, False), grayscale(maps, False)),
                      ssim=ssim(ra, ma))
