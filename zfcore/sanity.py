"""Sanity checks of the visualizations: can the pictures be trusted? (beyond the paper)

Zeiler & Fergus read their deconvnet projections (Figs. 1-2) and occlusion maps (Fig. 7)
by eye. Later work learned to test such pictures with numbers; this module asks those
questions of the deconvnet, the plain gradient, guided backpropagation
(:func:`zfcore.deconv.project`) and occlusion (:func:`zfcore.occlusion.sensitivity`), each
in its *class-specific* form (:func:`class_maps`):

* **Model-parameter randomization** (Adebayo et al., "Sanity Checks for Saliency Maps",
  NeurIPS 2018, Section 3.1 and Fig. 2): re-initialize the weighted layers from the top
  (fc8, fc7, ..., conv1), cumulatively (:func:`cascading_randomization`) or one at a time
  (:func:`independent_randomization`), and compare each map with the trained network's by
  Spearman rank correlation of absolute and of signed values and by SSIM. Beside it, the
  level that the architecture alone gives (:func:`architecture_level`): the same
  similarity between the maps of two independently initialized networks.
* **Class sensitivity** (Nie, Zhang & Patel, ICML 2018, who predict that the deconvnet and
  guided backpropagation do "partial image recovery" and barely depend on the class):
  the map for the true class against the map for another class (:func:`class_sensitivity`).
* **Localization** against the scenes' object boxes: the pointing game (Zhang et al.,
  "Top-down Neural Attention by Excitation Backprop", ECCV 2016: a hit when the map's
  maximum lies on the object; :func:`pointing_game`) and the share of positive map
  energy inside the box (:func:`energy_share`), each against its chance level
  (:func:`pointing_chance`).
* **Faithfulness** (Petsiuk, Das & Saenko, "RISE", BMVC 2018): deletion and insertion
  curves of the class probability as pixels are removed, or added to a blurred image, in
  the map's order of importance, with a random order as the baseline
  (:func:`deletion_insertion`).

:func:`run_checks` runs them all on a batch of prepared images and :func:`findings` turns
the result into :class:`zfcore.findings.Finding` verdicts on each published prediction.

Conventions (Adebayo et al.'s released code, the ``saliency`` library's visualizers):
a map of shape (N, C, H, W) is reduced to a grey (N, H, W) map by summing over channels,
of the absolute values (:func:`grayscale`, ``absolute=True``) or of the signed values;
SSIM is taken on the absolute grey map divided by its 99th percentile and clipped to
[0, 1] (:func:`normalize_map`). Every function takes prepared (mean-subtracted) tensors
and any model :func:`zfcore.chain.chain` can walk; nothing changes the model given: the
randomized networks are deep copies.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .chain import EvalMode, chain, check_images, device_of
from .deconv import METHODS as BACKWARD_METHODS
from .deconv import project, strongest
from .findings import HOLDS, NOT_TESTABLE, SE_MARGIN, Finding, difference_verdict, mean_se
from .layout import Threads
from .occlusion import default_occluder, pixel_drop, sensitivity
from .progress import progress_bar

__all__ = ["METHODS", "class_maps", "grayscale", "importance", "normalize_map", "spearman", "ssim",
           "Similarity", "similarity", "weighted_layers", "output_layer", "randomized_copy",
           "Randomization", "cascading_randomization", "independent_randomization",
           "architecture_level", "other_classes", "class_sensitivity", "box_masks",
           "pointing_game", "pointing_chance", "centre_hits", "energy_share", "DeletionInsertion",
           "deletion_insertion", "Sample", "test_sample", "SanityChecks", "run_checks", "summary",
           "findings", "EQUIVALENCE_TOLERANCE"]

#: The methods compared: the three backward passes of :func:`zfcore.deconv.project`, then occlusion.
METHODS = tuple(BACKWARD_METHODS) + ("occlusion",)

#: How far (in Spearman's rho) a mean similarity may exceed the architecture-alone level and
#: still count as "no more alike than two random networks" (fixed before any run).
EQUIVALENCE_TOLERANCE = 0.1

Target = Union[int, Sequence[int], torch.Tensor, None]


# --------------------------------------------------------------------------------------------
# checks


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with EvalMode(model), torch.no_grad():
        out = model(x.to(device_of(model, x)))
    if out.dim() != 2:
        raise ValueError(f"the model's output has shape {tuple(out.shape)}; expected (N, classes)")
    return out


def _targets(model: nn.Module, x: torch.Tensor, target: Target, what: str = "target") -> torch.Tensor:
    """``target`` as an (N,) LongTensor on the CPU; None: the model's prediction for each image."""
    n = x.shape[0]
    logits = _logits(model, x)
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


def _as_maps(maps, what: str = "maps") -> torch.Tensor:
    """``maps`` as a float64 (N, H, W) CPU tensor; ValueError naming the problem otherwise."""
    t = torch.as_tensor(maps)
    if t.dim() != 3 or t.shape[0] == 0:
        raise ValueError(f"{what} must have shape (N, H, W) with N >= 1, got {tuple(t.shape)}; reduce "
                         f"(N, C, H, W) maps with zfcore.sanity.grayscale or importance")
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.uint8)):
        raise ValueError(f"{what} must hold numbers, got dtype {t.dtype}")
    t = t.detach().cpu().to(torch.float64)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{what} hold {int(bad.sum())} NaN or infinite values (first in map "
                         f"{int(bad.reshape(len(t), -1).any(1).nonzero()[0])})")
    return t


def _as_boxes(boxes, n: int) -> torch.Tensor:
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


def _int_arg(value, name: str, lo: int = 1) -> int:
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


def _occluder(h: int, w: int, occluder: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    if occluder is None:
        size, _ = default_occluder(min(h, w))
        return size, max(1, size // 2)
    if len(tuple(occluder)) != 2:
        raise ValueError(f"occluder must be (size, stride) in pixels, got {occluder!r}")
    size, stride = occluder
    return _int_arg(size, "occluder size"), _int_arg(stride, "occluder stride")


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
    _check_method(method)
    check_images(x)
    t, (default_layer, occ, batch_size) = _setup(model, x, target, occluder, batch_size)
    return _maps(model, x, method, t, layer if layer is not None else default_layer, occ, batch_size,
                 progress)


def _setup(model: nn.Module, x: torch.Tensor, target: Target, occluder, batch_size: int):
    """The checked classes, and the rest of :func:`_maps`' arguments: (layer, occluder, batch_size)."""
    size = (int(x.shape[2]), int(x.shape[3]))
    t = _targets(model, x, target)
    return t, (output_layer(model, size), _occluder(size[0], size[1], occluder),
               _int_arg(batch_size, "batch_size"))


def _maps(model: nn.Module, x: torch.Tensor, method: str, t: torch.Tensor, layer: str,
          occluder: Tuple[int, int], batch_size: int, progress: bool = False) -> torch.Tensor:
    """:func:`class_maps` with its arguments checked and its defaults filled in."""
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
    _check_method(method)
    return grayscale(maps, absolute=method != "occlusion")


def normalize_map(gray: torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """Grey (N, H, W) maps divided by their ``percentile``-th percentile of absolute values and
    clipped to [0, 1] (absolute maps) or [-1, 1] (signed ones), as the ``saliency`` library's
    ``VisualizeImageGrayscale`` that Adebayo et al. used; an all-zero map stays zero. float64."""
    g = _as_maps(gray, "gray").numpy()
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
    from skimage.metrics import structural_similarity
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


# --------------------------------------------------------------------------------------------
# randomization


def weighted_layers(model: nn.Module, input_size=None) -> List[str]:
    """The model's weighted layers (Conv2d, Linear) from the top down: the order in which
    Adebayo et al.'s cascade re-initializes them (``["fc8", "fc7", ..., "conv1"]`` for ours)."""
    names = [s.name for s in chain(model, input_size) if isinstance(s.module, (nn.Conv2d, nn.Linear))]
    if not names:
        raise ValueError("the model has no Conv2d or Linear layer to randomize")
    return names[::-1]


def _reinit_all(model: nn.Module) -> None:
    """Every weighted layer re-drawn by the model's own rule, from the global generator."""
    from .models import ZFNet
    if isinstance(model, ZFNet):                # Section 3: N(0, std^2) per the model's config
        model.reset_parameters(model.config.get("init_std", 1e-2))
        return
    for m in model.modules():                   # anything else: each layer's PyTorch default
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()


def randomized_copy(model: nn.Module, seed: int = 0, layers: Optional[Sequence[str]] = None,
                    init: Optional[Callable[[nn.Module], None]] = None) -> nn.Module:
    """A deep copy of ``model`` with ``layers`` (default: every weighted layer) re-initialized.

    The new weights are those of a fresh initialization of the whole network drawn from
    ``seed`` on the CPU: for our models :meth:`zfcore.models.ZFNet.reset_parameters` with
    the model's own settings (Section 3: weights from N(0, std^2), biases 0; the "matched"
    scaling where the model was built with it), for any other model each Conv2d's and
    Linear's own ``reset_parameters`` (PyTorch's default), or ``init(copy)`` if given. So
    a layer gets the same random weights whichever other layers are randomized with it, on
    any device. ``model`` itself is never changed.

    Returns:
        The copy, on the model's device, in eval mode.
    """
    names = dict(model.named_modules())
    if layers is not None:
        for name in layers:
            if name not in names or not isinstance(names[name], (nn.Conv2d, nn.Linear)):
                valid = [n for n, m in names.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
                raise ValueError(f"cannot randomize {name!r}: not a weighted layer of the model; its "
                                 f"weighted layers are: {', '.join(valid)}")
    device = device_of(model, torch.zeros(()))
    fresh = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        (init or _reinit_all)(fresh)
    if layers is None:
        return fresh.to(device).eval()
    out = copy.deepcopy(model).eval()
    _copy_layers(fresh, out, layers)
    return out


def _copy_layers(src: nn.Module, dst: nn.Module, layers: Sequence[str]) -> None:
    s, d = dict(src.named_modules()), dict(dst.named_modules())
    with torch.no_grad():
        for name in layers:
            for pname, p in d[name].named_parameters(recurse=False):
                p.copy_(getattr(s[name], pname))


@dataclass
class Randomization:
    """The maps of one method as the network's weights are re-initialized (Adebayo et al. 2018).

    Attributes:
        method: the method (one of :data:`METHODS`).
        mode: ``"cascading"`` (the layers from the top down, cumulatively) or ``"independent"``
            (one layer at a time, the others trained).
        layers: ``[None, "fc8", "fc7", ...]``: entry 0 names no layer (nothing randomized: the
            trained network run on a copy); entry k is the layer randomized at step k (with every
            entry before it, in the cascading mode).
        spearman, spearman_signed, ssim: (len(layers), N) float64, each step's maps against the
            trained network's (:class:`Similarity`); row 0 compares the copy with the original.
        maps: (len(layers), N, C, H, W) float32, the maps at each step.
        reference: (N, C, H, W) float32, the trained network's maps.
        target: (N,) the class of each image's maps (the same at every step).
        seed: the seed of the re-initialization (:func:`randomized_copy`).
    """
    method: str
    mode: str
    layers: List[Optional[str]]
    spearman: np.ndarray
    spearman_signed: np.ndarray
    ssim: np.ndarray
    maps: torch.Tensor = field(repr=False)
    reference: torch.Tensor = field(repr=False)
    target: torch.Tensor = field(repr=False)
    seed: int = 0

    @property
    def labels(self) -> List[str]:
        """The layers as plot labels: ``"none"`` for entry 0."""
        return ["none" if n is None else n for n in self.layers]

    def mean(self, metric: str = "spearman") -> np.ndarray:
        """(len(layers),) the mean of ``metric`` over the images (NaN entries left out)."""
        return np.array([mean_se(r)[0] for r in getattr(self, metric)])

    def sem(self, metric: str = "spearman") -> np.ndarray:
        """(len(layers),) the standard error of that mean."""
        return np.array([mean_se(r)[1] for r in getattr(self, metric)])

    def at(self, layer: Optional[str], metric: str = "spearman") -> np.ndarray:
        """(N,) the per-image ``metric`` at the step that randomized ``layer``."""
        if layer not in self.layers:
            raise ValueError(f"no step randomized {layer!r}; the steps are: {', '.join(self.labels)}")
        return getattr(self, metric)[self.layers.index(layer)]


def _randomize(model, x, method, target, seed, mode, layers, occluder, batch_size, progress, init,
               reference=None):
    _check_method(method)
    check_images(x)
    size = (int(x.shape[2]), int(x.shape[3]))
    order = weighted_layers(model, size)
    if layers is not None:
        unknown = [n for n in layers if n not in order]
        if unknown:
            raise ValueError(f"cannot randomize {unknown[0]!r}: the model's weighted layers are "
                             f"{', '.join(order)}")
        order = [n for n in order if n in set(layers)]
    t, args = _setup(model, x, target, occluder, batch_size)
    if reference is None:
        reference = _maps(model, x, method, t, *args)
    fresh = randomized_copy(model, seed, init=init)
    work = copy.deepcopy(model).eval()
    steps: List[Optional[str]] = [None] + list(order)
    maps, sims = [], []
    bar = progress_bar(steps, desc=f"{mode} randomization ({method})", enabled=progress)
    for name in bar:
        if name is not None:
            if mode == "independent" and len(maps) > 1:
                _copy_layers(model, work, [steps[len(maps) - 1]])     # put the last one back
            _copy_layers(fresh, work, [name])
        m = _maps(work, x, method, t, *args)
        maps.append(m)
        sims.append(similarity(reference, m))
    return Randomization(method=method, mode=mode, layers=steps,
                         spearman=np.stack([s.spearman for s in sims]),
                         spearman_signed=np.stack([s.spearman_signed for s in sims]),
                         ssim=np.stack([s.ssim for s in sims]), maps=torch.stack(maps),
                         reference=reference, target=t, seed=int(seed))


def cascading_randomization(model: nn.Module, x: torch.Tensor, method: str, target: Target = None,
                            seed: int = 0, *, layers: Optional[Sequence[str]] = None,
                            occluder: Optional[Tuple[int, int]] = None, batch_size: int = 128,
                            progress: bool = True,
                            init: Optional[Callable[[nn.Module], None]] = None) -> Randomization:
    """Cascading model-parameter randomization (Adebayo et al. 2018, Section 3.1, Fig. 2).

    The weighted layers are re-initialized one by one from the top (fc8, fc7, ..., conv1),
    cumulatively, on a deep copy of ``model``; after each step each image's map
    (:func:`class_maps`, for the same class as the trained network's) is compared with
    the trained network's map: Spearman rank correlation of the absolute and of the
    signed grey maps, and SSIM (:func:`similarity`). A method whose maps stay alike while
    the top layers are re-drawn does not depend on what those layers learned.

    Args:
        model: the trained network (never changed).
        x: prepared images, (N, 3, H, W).
        method: one of :data:`METHODS`.
        target: the class of each image (an int or N ints); None: the trained network's
            prediction. The same class is mapped at every step.
        seed: seed of the new weights (:func:`randomized_copy`).
        layers: randomize only these (still from the top down); default every weighted layer.
        occluder, batch_size: for ``"occlusion"`` (see :func:`class_maps`).
        init: a custom re-initialization rule for models other than ours (see
            :func:`randomized_copy`).

    Returns:
        :class:`Randomization` with ``layers = [None, "fc8", ..., "conv1"]`` and ``spearman``,
        ``spearman_signed``, ``ssim`` of shape (len(layers), N).
    """
    return _randomize(model, x, method, target, seed, "cascading", layers, occluder, batch_size,
                      progress, init)


def independent_randomization(model: nn.Module, x: torch.Tensor, method: str, target: Target = None,
                              seed: int = 0, *, layers: Optional[Sequence[str]] = None,
                              occluder: Optional[Tuple[int, int]] = None, batch_size: int = 128,
                              progress: bool = True,
                              init: Optional[Callable[[nn.Module], None]] = None) -> Randomization:
    """Independent randomization (Adebayo et al. 2018, Section 3.1): one layer at a time.

    As :func:`cascading_randomization`, but step k re-initializes only layer k (with the
    same new weights the cascade gives it), every other layer keeping its trained
    weights. Step 1 (the top layer alone) is the cascade's step 1.
    """
    return _randomize(model, x, method, target, seed, "independent", layers, occluder, batch_size,
                      progress, init)


def architecture_level(model: nn.Module, x: torch.Tensor, method: str, target: Target = None,
                       seed: int = 0, *, occluder: Optional[Tuple[int, int]] = None,
                       batch_size: int = 128,
                       init: Optional[Callable[[nn.Module], None]] = None) -> Similarity:
    """The similarity that the architecture alone gives: the maps of two independently
    initialized copies of the network (seeds ``seed + 1`` and ``seed + 2``), for the same
    images and classes, compared as the randomization compares them.

    A randomized network's map that is "as unlike the trained one as two random networks'
    maps are to each other" has lost what training put in; one that stays above this level
    keeps something, and the level itself says how much of a map the architecture and the
    image fix before any training (stride and border patterns, the image's edges).
    ``target`` None: the trained network's prediction (the cascade's classes).
    """
    _check_method(method)
    check_images(x)
    t, args = _setup(model, x, target, occluder, batch_size)
    a = randomized_copy(model, seed + 1, init=init)
    b = randomized_copy(model, seed + 2, init=init)
    return similarity(_maps(a, x, method, t, *args), _maps(b, x, method, t, *args))


def other_classes(target, num_classes: int, seed: int = 0) -> torch.Tensor:
    """For each image a class other than its ``target``, drawn uniformly (seeded): (N,) long."""
    t = torch.as_tensor(target).to(torch.long).cpu().reshape(-1)
    num_classes = _int_arg(num_classes, "num_classes", 2)
    g = torch.Generator().manual_seed(int(seed))
    shift = torch.randint(1, num_classes, (len(t),), generator=g)
    return (t + shift) % num_classes


def class_sensitivity(model: nn.Module, x: torch.Tensor, method: str, target: Target, other: Target, *,
                      occluder: Optional[Tuple[int, int]] = None, batch_size: int = 128,
                      maps: Optional[torch.Tensor] = None) -> Similarity:
    """How much a method's map depends on the class (Nie et al. 2018): the similarity of the
    map for ``target`` to the map for ``other`` on the same image and network. Near 1: the
    picture barely changes with the class asked about (Nie et al. predict this of the
    deconvnet and guided backpropagation). ``maps``: the target's maps if already computed."""
    _check_method(method)
    check_images(x)
    t, args = _setup(model, x, target, occluder, batch_size)
    o = _targets(model, x, other, "other")
    if bool((o == t).any()):
        i = int((o == t).nonzero()[0])
        raise ValueError(f"other[{i}] is image {i}'s target class {int(t[i])}: choose another class "
                         f"(zfcore.sanity.other_classes draws one)")
    ref = maps if maps is not None else _maps(model, x, method, t, *args)
    return similarity(ref, _maps(model, x, method, o, *args))


# --------------------------------------------------------------------------------------------
# localization


def box_masks(boxes, shape: Tuple[int, int], tolerance: float = 0.0) -> torch.Tensor:
    """(N, H, W) bool: the pixels of each box, pixel (i, j) in when its centre (j + 0.5, i + 0.5)
    lies in ``[x0, x1) x [y0, y1)`` (as :func:`zfcore.occlusion.box_share`), or within
    ``tolerance`` pixels (Euclidean) of the box."""
    h, w = int(shape[0]), int(shape[1])
    b = _as_boxes(boxes, len(boxes) if not isinstance(boxes, torch.Tensor) else boxes.shape[0])
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
        maps: (N, H, W) importance maps (:func:`importance`); the maximum is the first one in
            row-major order where several pixels share it.
        boxes: (N, 4) the object's box ``(x0, y0, x1, y1)`` in the maps' pixels.
        tolerance: pixels of slack around the box (Zhang et al. allow 15 at their image sizes;
            0 by default).

    Returns:
        (N,) bool tensor: hit or miss. The accuracy is its mean; compare it with
        :func:`pointing_chance`, the hit rate of a maximum placed at random.
    """
    m = _as_maps(maps)
    masks = box_masks(_as_boxes(boxes, m.shape[0]), m.shape[1:], tolerance)
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
    b = _as_boxes(boxes, len(boxes) if not isinstance(boxes, torch.Tensor) else boxes.shape[0])
    m = torch.zeros(len(b), h, w)
    m[:, h // 2, w // 2] = 1.0
    return pointing_game(m, b, tolerance)


def energy_share(maps, boxes) -> torch.Tensor:
    """(N,) float64: the share of each map's positive energy (the sum of its positive values)
    that lies inside the box (the "energy-based pointing game" of Score-CAM, Wang et al. 2020);
    NaN for a map with no positive value. Its chance level is :func:`pointing_chance`, the
    box's share of the pixels.

    Args:
        maps: (N, H, W) importance maps (:func:`importance`).
        boxes: (N, 4) the object's box ``(x0, y0, x1, y1)`` in the maps' pixels.
    """
    m = _as_maps(maps)
    masks = box_masks(_as_boxes(boxes, m.shape[0]), m.shape[1:])
    pos = m.clamp(min=0)
    total = pos.sum(dim=(1, 2))
    inside = (pos * masks).sum(dim=(1, 2))
    return torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones(())),
                       torch.full_like(total, float("nan")))


# --------------------------------------------------------------------------------------------
# faithfulness


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
        maps: (N, H, W) importance maps (:func:`importance`), or None for a random order.
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
    steps = _int_arg(steps, "steps")
    if start not in ("blur", "mean"):
        raise ValueError(f"start must be 'blur' or 'mean', got {start!r}")
    batch_size = _int_arg(batch_size, "batch_size")
    n, _, h, w = x.shape
    t = _targets(model, x, target)
    num_classes = int(_logits(model, x[:1]).shape[1])
    g = torch.Generator().manual_seed(int(seed))
    if maps is None:
        m = torch.rand(n, h, w, generator=g, dtype=torch.float64)
        g = torch.Generator().manual_seed(int(seed) + 1)
    else:
        m = _as_maps(maps)
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


# --------------------------------------------------------------------------------------------
# a sample of test images, and every check at once


@dataclass
class Sample:
    """Test images prepared for the model.

    Attributes:
        indices: (N,) the images' indices in the split.
        x: (N, 3, s, s) float32, the mean-subtracted centre crops the model sees.
        crops: (N, s, s, 3) uint8, the same crops for display.
        labels: (N,) long, the true classes.
        boxes: (N, 4) float64, the labelled object's box ``(x0, y0, x1, y1)`` in the crop's
            pixels, or None where the data records no boxes (the user's folders).
        classes: the class names.
    """
    indices: np.ndarray
    x: torch.Tensor
    crops: np.ndarray
    labels: torch.Tensor
    boxes: Optional[torch.Tensor]
    classes: List[str]


def test_sample(scale, mean: torch.Tensor, n_images: int, split: str = "test", seed: int = 0) -> Sample:
    """``n_images`` images of a split of ``scale``'s data (a seeded random sample, in index
    order), as the model sees them: the centre crop minus the run's training mean
    (``run.mean()``), with each scene's object box moved into the crop."""
    from .data.splits import has_boxes, load_split
    from .presets import get_preset
    from .data.transforms import preprocess
    p = get_preset(scale)
    n_images = _int_arg(n_images, "n_images")
    ds = load_split(p, split, progress=False)
    if len(ds) == 0:
        raise ValueError(f"the {split!r} split of the {p.name!r} scale has no images")
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n_images])
    s = p.image_size
    off = (ds.stored_size - s) // 2
    images = np.asarray(ds.images[idx])
    crops = images[:, off:off + s, off:off + s]
    x = preprocess(torch.from_numpy(images).permute(0, 3, 1, 2), mean)[:, :, off:off + s, off:off + s]
    boxes = None
    if has_boxes(ds):
        boxes = torch.tensor(np.stack([ds.object_box(int(i)) for i in idx]), dtype=torch.float64) - off
    return Sample(indices=idx, x=x.contiguous(), crops=np.ascontiguousarray(crops),
                  labels=torch.as_tensor(np.asarray(ds.labels)[idx], dtype=torch.long), boxes=boxes,
                  classes=list(ds.classes))


@dataclass
class SanityChecks:
    """Every check of this module on one batch of images (see :func:`run_checks`).

    Attributes (dicts are keyed by method):
        methods: the methods checked.
        target, other: (N,) the true classes and, per image, another class.
        maps: the trained network's maps for ``target`` ((N, C, H, W) each).
        cascade, independent: :class:`Randomization` per method, on the first
            ``n_randomized`` images.
        architecture: :class:`Similarity` of two independently initialized networks' maps.
        class_sensitivity: :class:`Similarity` of the maps for ``target`` and ``other``.
        centre: the centre baseline's hits ((N,) bool, :func:`centre_hits`; None without boxes).
        pointing, chance, energy: the pointing game's hits ((N,) bool), its chance level and
            the positive energy inside the box, per method (None without boxes).
        faithfulness: :class:`DeletionInsertion` per method, and under ``"random"`` the
            random order.
        classifier: the weighted layers that map features to classes (the fully connected
            ones), from the top; ``layers``: every weighted layer from the top.
    """
    methods: Tuple[str, ...]
    target: torch.Tensor
    other: torch.Tensor
    maps: Dict[str, torch.Tensor]
    cascade: Dict[str, Randomization]
    independent: Dict[str, Randomization]
    architecture: Dict[str, Similarity]
    class_sensitivity: Dict[str, Similarity]
    pointing: Optional[Dict[str, torch.Tensor]]
    chance: Optional[torch.Tensor]
    energy: Optional[Dict[str, torch.Tensor]]
    faithfulness: Dict[str, DeletionInsertion]
    layers: List[str]
    classifier: List[str]
    n_randomized: int
    seed: int
    occluder: Tuple[int, int]
    steps: int
    centre: Optional[torch.Tensor] = None


def run_checks(model: nn.Module, x: torch.Tensor, target: Target, boxes=None, *,
               methods: Sequence[str] = METHODS, n_randomized: Optional[int] = None, seed: int = 0,
               steps: int = 16, occluder: Optional[Tuple[int, int]] = None, batch_size: int = 128,
               threads: Optional[int] = 1, progress: bool = True) -> SanityChecks:
    """Every check on one batch of prepared images: the randomizations (cascading, independent,
    the architecture-alone level), the class sensitivity, the localization (with ``boxes``) and
    the faithfulness of each method's maps for the images' classes.

    Args:
        model: the trained network (never changed).
        x: prepared images, (N, 3, H, W).
        target: the true class of each image (N ints); None: the model's predictions.
        boxes: (N, 4) object boxes ``(x0, y0, x1, y1)`` in the images' pixels, or None.
        methods: any of :data:`METHODS`.
        n_randomized: randomize on the first this many images only (the randomizations cost
            one set of maps per layer); default all.
        seed: the randomization's seed (the architecture level uses ``seed + 1`` and
            ``seed + 2``), the other classes' and the deletion's ties'.
        steps: deletion and insertion increments.
        occluder: ``(size, stride)`` for occlusion (see :func:`class_maps`).
        threads: torch CPU threads while the checks run (at most the current count; restored
            after); None leaves the count. One by default: the checks are many passes of a few
            images, which go faster on one thread, and on a busy machine many times faster
            (OpenMP threads spin waiting for each other at every operation: 2.7 s against 29 s
            for the tiny chapter's checks on a loaded 2-core machine).
    """
    with Threads(threads):
        return _run_checks(model, x, target, boxes, methods, n_randomized, seed, steps, occluder,
                           batch_size, progress)


def _run_checks(model, x, target, boxes, methods, n_randomized, seed, steps, occluder, batch_size,
                progress) -> SanityChecks:
    check_images(x)
    for m in methods:
        _check_method(m)
    n = x.shape[0]
    nr = n if n_randomized is None else min(_int_arg(n_randomized, "n_randomized"), n)
    t = _targets(model, x, target)
    num_classes = _logits(model, x[:1]).shape[1]
    other = other_classes(t, num_classes, seed)
    h, w = int(x.shape[2]), int(x.shape[3])
    occ = _occluder(h, w, occluder)
    kw = dict(occluder=occ, batch_size=batch_size)
    layers = weighted_layers(model, (h, w))
    mods = dict(model.named_modules())
    classifier = [name for name in layers if isinstance(mods[name], nn.Linear)]
    b = None if boxes is None else _as_boxes(boxes, n)
    maps, cascade, independent, arch, cls, point, energy, faith = {}, {}, {}, {}, {}, {}, {}, {}
    for method in progress_bar(methods, desc="sanity checks", enabled=progress):
        # the first nr images as one batch, as the randomizations see them: their step 0 is then
        # the same computation on a copy, bit for bit
        maps[method] = torch.cat([class_maps(model, part, method, t[sl], **kw)
                                  for sl in (slice(0, nr), slice(nr, n)) for part in (x[sl],) if len(part)])
        for mode, out in (("cascading", cascade), ("independent", independent)):
            out[method] = _randomize(model, x[:nr], method, t[:nr], seed, mode, None, occ, batch_size,
                                     False, None, reference=maps[method][:nr])
        arch[method] = architecture_level(model, x[:nr], method, t[:nr], seed, **kw)
        cls[method] = class_sensitivity(model, x, method, t, other, maps=maps[method], **kw)
        imp = importance(maps[method], method)
        if b is not None:
            point[method] = pointing_game(imp, b)
            energy[method] = energy_share(imp, b)
        faith[method] = deletion_insertion(model, x, imp, t, steps, seed=seed, batch_size=batch_size,
                                           progress=False)
    faith["random"] = deletion_insertion(model, x, None, t, steps, seed=seed, batch_size=batch_size,
                                         progress=False)
    return SanityChecks(methods=tuple(methods), target=t, other=other, maps=maps, cascade=cascade,
                        independent=independent, architecture=arch, class_sensitivity=cls,
                        pointing=point if b is not None else None,
                        chance=pointing_chance(b, (h, w)) if b is not None else None,
                        energy=energy if b is not None else None, faithfulness=faith, layers=layers,
                        classifier=classifier, n_randomized=nr, seed=int(seed), occluder=occ,
                        steps=int(steps), centre=centre_hits(b, (h, w)) if b is not None else None)


# --------------------------------------------------------------------------------------------
# the literature's predictions, checked

_ADEBAYO = "Adebayo et al. 2018"
_NIE = "Nie et al. 2018"
_NAMES = {"deconvnet": "the deconvnet", "gradient": "the gradient", "guided": "guided backpropagation",
          "occlusion": "occlusion"}


def _untestable(claim, source, published, criterion, why) -> Finding:
    return Finding(claim=claim, source=source, published=published, measured="-", criterion=criterion,
                   verdict=NOT_TESTABLE, evidence=why)


def _fmt(values) -> str:
    m, se, n = mean_se(values)
    return "n/a" if n == 0 else (f"{m:.2f}" if not math.isfinite(se) else f"{m:.2f} ± {se:.2f}")


def summary(checks: SanityChecks) -> Tuple[List[str], List[Tuple[str, ...]]]:
    """``(header, rows)``: one row per method (and one for the random order) of the numbers the
    checks give, each a mean ± its standard error over the images, for
    :func:`zfcore.plots.html_table`: the rank correlation with the trained network's map after
    the classifier's and after every layer's randomization, the architecture-alone level, the
    class sensitivity, the pointing game's hit rate and its chance level, the positive energy in
    the box, and the deletion and insertion areas."""
    top_fc = checks.classifier[-1] if checks.classifier else None
    bottom = checks.layers[-1]
    header = ["method", f"Spearman |map| after {top_fc} randomized" if top_fc else "-",
              f"after all ({bottom})", "two random networks", "true vs another class",
              "pointing game: hits", "chance", "the image centre", "positive energy in the box",
              "deletion AUC",
              "insertion AUC"]
    rows = []
    for m in checks.methods:
        casc, f = checks.cascade[m], checks.faithfulness[m]
        centre = "-" if checks.centre is None else f"{checks.centre.double().mean():.0%}"
        loc = (("-",) * 4 if checks.pointing is None else
               (f"{checks.pointing[m].double().mean():.0%}", f"{checks.chance.mean():.0%}", centre,
                _fmt(checks.energy[m].numpy())))
        rows.append((_NAMES[m], _fmt(casc.at(top_fc)) if top_fc else "-", _fmt(casc.at(bottom)),
                     _fmt(checks.architecture[m].spearman), _fmt(checks.class_sensitivity[m].spearman),
                     *loc, _fmt(f.deletion_auc), _fmt(f.insertion_auc)))
    rnd = checks.faithfulness["random"]
    rows.append(("a random order", *[""] * (len(header) - 3), _fmt(rnd.deletion_auc), _fmt(rnd.insertion_auc)))
    return header, rows


def findings(checks: SanityChecks) -> List[Finding]:
    """The predictions of Adebayo et al. (2018) and Nie et al. (2018), and the localization and
    faithfulness checks, as :class:`zfcore.findings.Finding` verdicts on ``checks``.

    Each criterion is fixed here, from the claim, before any run: a claimed ordering holds when
    the per-image difference is more than :data:`zfcore.findings.SE_MARGIN` standard errors in
    the claimed direction, does not hold when it is that far the other way, and is "not
    testable" in between; the claim that the gradient after full randomization is no more like
    the trained map than the architecture alone makes it allows the margin
    :data:`EQUIVALENCE_TOLERANCE` above that level. Similarities are Spearman's rho of the absolute maps
    (Adebayo et al.'s main measure). Claims about a method that was not run are left out.
    """
    out: List[Finding] = []
    have = set(checks.methods)
    top_fc = checks.classifier[-1] if checks.classifier else None     # the lowest fc layer
    bottom = checks.layers[-1]
    se = f"{SE_MARGIN:g} SE"
    casc, ind, arch, cls = checks.cascade, checks.independent, checks.architecture, checks.class_sensitivity

    # Adebayo et al.: guided backpropagation is insensitive to the top layers, the gradient is not
    if {"guided", "gradient"} <= have and top_fc is not None:
        g, d = casc["guided"].at(top_fc), casc["gradient"].at(top_fc)
        v, ev = difference_verdict(g - d)
        out.append(Finding(
            claim=f"Randomizing the classifier (the fc layers, down to {top_fc}) changes guided "
                  f"backpropagation's map less than the gradient's",
            source=f"{_ADEBAYO}, Sec. 3.1, Fig. 2 (cascading randomization)",
            published="guided backprop stays visually and numerically similar through randomization of "
                      "the higher layers; the gradient's rank correlation falls as layers are randomized",
            measured=f"Spearman |map| after {top_fc}: guided {_fmt(g)}, gradient {_fmt(d)}",
            criterion=f"per-image difference (guided - gradient) above 0 by more than {se}",
            verdict=v, evidence=ev))
        ga, gc = arch["guided"].spearman, g
        v, ev = difference_verdict(gc[: len(ga)] - ga)
        out.append(Finding(
            claim="After the classifier's randomization guided backpropagation's map is still closer to "
                  "the trained network's than two random networks' maps are to each other",
            source=f"{_ADEBAYO}, Sec. 3.1, Fig. 2",
            published="guided backprop's maps stay similar to the trained model's while the higher layers "
                      "are randomized",
            measured=f"Spearman |map|: after {top_fc} {_fmt(gc)}; two random networks {_fmt(ga)}",
            criterion=f"per-image difference (after {top_fc} - architecture alone) above 0 by more than {se}",
            verdict=v, evidence=ev))
    if "gradient" in have:
        full, a = casc["gradient"].at(bottom), arch["gradient"].spearman
        v, ev = difference_verdict(full - a, EQUIVALENCE_TOLERANCE, above=False)
        out.append(Finding(
            claim="Once every layer is randomized, the gradient's map is no more like the trained one than "
                  "two random networks' maps are like each other",
            source=f"{_ADEBAYO}, Sec. 3.1, Fig. 2",
            published="the gradient is sensitive to the model's parameters: its maps change under "
                      "randomization (the test it passes)",
            measured=f"Spearman |map|: trained vs fully random {_fmt(full)}; two random networks {_fmt(a)}",
            criterion=f"per-image difference (trained vs random - architecture alone) below "
                      f"+{EQUIVALENCE_TOLERANCE:g} by more than {se}",
            verdict=v, evidence=ev))
    if {"guided", "gradient"} <= have and len(checks.layers) > 1:
        topl = checks.layers[0]
        g, d = ind["guided"].at(topl), ind["gradient"].at(topl)
        v, ev = difference_verdict(g - d)
        out.append(Finding(
            claim=f"Randomizing the top layer ({topl}) alone changes guided backpropagation's map less "
                  f"than the gradient's",
            source=f"{_ADEBAYO}, Sec. 3.1 (independent randomization)",
            published="the independent test shows the same: guided backprop insensitive to the top "
                      "layers' weights",
            measured=f"Spearman |map| with {topl} random: guided {_fmt(g)}, gradient {_fmt(d)}",
            criterion=f"per-image difference (guided - gradient) above 0 by more than {se}",
            verdict=v, evidence=ev))

    # Nie et al.: the deconvnet and guided backpropagation recover the image, whatever the class
    for m in ("deconvnet", "guided"):
        if not {m, "gradient"} <= have:
            continue
        a, d = cls[m].spearman, cls["gradient"].spearman
        v, ev = difference_verdict(a - d)
        out.append(Finding(
            claim=f"{_NAMES[m].capitalize()}'s map barely changes with the class asked about; the "
                  f"gradient's does",
            source=f"{_NIE} (class insensitivity)",
            published=f"{_NAMES[m]}'s pictures hardly change with the class chosen; the plain gradient's do",
            measured=f"Spearman |map|, true vs another class: {m} {_fmt(a)}, gradient {_fmt(d)}",
            criterion=f"per-image difference ({m} - gradient) above 0 by more than {se}",
            verdict=v, evidence=ev))
    for m in ("deconvnet", "guided"):
        if not {m, "gradient"} <= have:
            continue
        a, d = casc[m].at(bottom), casc["gradient"].at(bottom)
        v, ev = difference_verdict(a - d)
        out.append(Finding(
            claim=f"{_NAMES[m].capitalize()}'s map looks alike for the trained and a fully random "
                  f"network (image recovery), more than the gradient's does",
            source=f"{_NIE} (partial image recovery)",
            published=f"{_NAMES[m]} does (partial) image recovery: its pictures look alike for trained "
                      f"and randomly weighted networks; the gradient's do not",
            measured=f"Spearman |map|, trained vs fully random: {m} {_fmt(a)}, gradient {_fmt(d)}",
            criterion=f"per-image difference ({m} - gradient) above 0 by more than {se}",
            verdict=v, evidence=ev))

    # localization on the scenes' boxes
    zf = "Zeiler & Fergus 2014, Sec. 4.2 (read by eye)"
    for m in checks.methods:
        claim = f"{_NAMES[m].capitalize()}'s map points at the object more often than chance"
        crit = f"per-image (hit - box's share of the image) above 0 by more than {se}"
        src = f"Zhang et al. 2016 (the pointing game); {zf}"
        pub = ("the maps highlight the object that drives the class (the occluded object matters, "
               "Fig. 7)" if m == "occlusion" else "the projections show the object's parts (Figs. 2, 7 (c))")
        if checks.pointing is None:
            out.append(_untestable(claim, src, pub, crit, "the data records no object boxes"))
            continue
        hits = checks.pointing[m].double().numpy()
        chance = checks.chance.numpy()
        v, ev = difference_verdict(hits - chance)
        out.append(Finding(claim=claim, source=src, published=pub,
                           measured=f"hit rate {hits.mean():.0%}, chance {chance.mean():.0%}",
                           criterion=crit, verdict=v, evidence=ev))
        claim = f"{_NAMES[m].capitalize()}'s map points at the object more often than the image's centre does"
        crit = f"per-image (hit - the centre pixel's hit) above 0 by more than {se}"
        src = "Zhang et al. 2016 (the pointing game and its centre baseline)"
        if checks.centre is None:
            out.append(_untestable(claim, src, pub, crit, "the data records no object boxes"))
            continue
        centre = checks.centre.double().numpy()
        v, ev = difference_verdict(hits - centre)
        out.append(Finding(claim=claim, source=src, published=pub + "; a map should beat the centre prior",
                           measured=f"hit rate {hits.mean():.0%}, the centre {centre.mean():.0%}",
                           criterion=crit, verdict=v, evidence=ev))
    for m in checks.methods:
        claim = f"More of {_NAMES[m]}'s positive map energy falls inside the object's box than chance"
        crit = f"per-image (share inside - box's share of the image) above 0 by more than {se}"
        src = f"the energy-based pointing game (Wang et al. 2020, Score-CAM); {zf}"
        pub = "the object drives the class: the map's mass should sit on it"
        if checks.energy is None:
            out.append(_untestable(claim, src, pub, crit, "the data records no object boxes"))
            continue
        share = checks.energy[m].numpy()
        chance = checks.chance.numpy()
        v, ev = difference_verdict(share - chance)
        out.append(Finding(claim=claim, source=src, published=pub,
                           measured=f"share inside {_fmt(share)}, chance {chance.mean():.2f}",
                           criterion=crit, verdict=v, evidence=ev))

    # faithfulness: only where the model recognizes the intact images above chance
    rnd = checks.faithfulness["random"]
    chance_v, chance_ev = difference_verdict(rnd.intact, 1.0 / max(rnd.num_classes, 1))
    at_chance = chance_v != HOLDS
    why = (f"the model's probability of the class on the intact images is not above chance "
           f"(1/{rnd.num_classes}): {chance_ev}")
    for m in checks.methods:
        f = checks.faithfulness[m]
        v, ev = difference_verdict(rnd.deletion_auc - f.deletion_auc)
        if at_chance:
            v, ev = NOT_TESTABLE, why
        out.append(Finding(
            claim=f"Deleting pixels in the order of {_NAMES[m]}'s map lowers the class's probability "
                  f"faster than a random order",
            source="Petsiuk et al. 2018 (RISE), deletion",
            published="a map that explains the decision has a lower deletion area than a random order",
            measured=f"deletion AUC {_fmt(f.deletion_auc)}, random order {_fmt(rnd.deletion_auc)}",
            criterion=f"per-image (random - map) deletion AUC above 0 by more than {se}",
            verdict=v, evidence=ev))
        v, ev = difference_verdict(f.insertion_auc - rnd.insertion_auc)
        if at_chance:
            v, ev = NOT_TESTABLE, why
        out.append(Finding(
            claim=f"Inserting pixels in the order of {_NAMES[m]}'s map raises the class's probability "
                  f"faster than a random order",
            source="Petsiuk et al. 2018 (RISE), insertion",
            published="a map that explains the decision has a higher insertion area than a random order",
            measured=f"insertion AUC {_fmt(f.insertion_auc)}, random order {_fmt(rnd.insertion_auc)}",
            criterion=f"per-image (map - random) insertion AUC above 0 by more than {se}",
            verdict=v, evidence=ev))
    return out
