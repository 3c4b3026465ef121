"""Model-parameter randomization and class sensitivity of the maps (beyond the paper).

* **Model-parameter randomization** (Adebayo et al., "Sanity Checks for Saliency Maps",
  NeurIPS 2018, Section 3.1 and Fig. 2): re-initialize the weighted layers from the top
  (fc8, fc7, ..., conv1), cumulatively (:func:`cascading_randomization`) or one at a time
  (:func:`independent_randomization`), and compare each map with the trained network's by
  Spearman rank correlation of absolute and of signed values and by SSIM
  (:func:`zfcore.saliency.similarity`). Beside it, the level that the architecture alone gives
  (:func:`architecture_level`): the same similarity between the maps of two independently
  initialized networks.
* **Class sensitivity** (Nie, Zhang & Patel, ICML 2018, who predict that the deconvnet and
  guided backpropagation do "partial image recovery" and barely depend on the class):
  the map for the true class against the map for another class (:func:`class_sensitivity`).

The maps are :func:`zfcore.saliency.class_maps`. Nothing changes the model given: the
randomized networks are deep copies.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .chain import chain, check_images, device_of
from .findings import mean_se
from .models import ZFNet
from .progress import progress_bar
from .saliency import (Similarity, Target, check_method, class_targets, compute_maps, map_setup,
                       positive_int, similarity)

__all__ = ["weighted_layers", "randomized_copy", "Randomization", "randomize", "cascading_randomization",
           "independent_randomization", "architecture_level", "other_classes", "class_sensitivity"]

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


def randomize(model, x, method, target, seed, mode, layers, occluder, batch_size, progress, init,
              reference=None) -> Randomization:
    """:func:`cascading_randomization` (``mode="cascading"``) or :func:`independent_randomization`
    (``"independent"``), every argument given; ``reference``: the trained network's maps if
    already computed (:func:`zfcore.sanity.run_checks` passes them, so that step 0 is the same
    computation on a copy)."""
    check_method(method)
    check_images(x)
    size = (int(x.shape[2]), int(x.shape[3]))
    order = weighted_layers(model, size)
    if layers is not None:
        unknown = [n for n in layers if n not in order]
        if unknown:
            raise ValueError(f"cannot randomize {unknown[0]!r}: the model's weighted layers are "
                             f"{', '.join(order)}")
        order = [n for n in order if n in set(layers)]
    t, args = map_setup(model, x, target, occluder, batch_size)
    if reference is None:
        reference = compute_maps(model, x, method, t, *args)
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
        m = compute_maps(work, x, method, t, *args)
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
    (:func:`zfcore.saliency.class_maps`, for the same class as the trained network's) is compared with
    the trained network's map: Spearman rank correlation of the absolute and of the
    signed grey maps, and SSIM (:func:`zfcore.saliency.similarity`). A method whose maps stay alike while
    the top layers are re-drawn does not depend on what those layers learned.

    Args:
        model: the trained network (never changed).
        x: prepared images, (N, 3, H, W).
        method: one of :data:`METHODS`.
        target: the class of each image (an int or N ints); None: the trained network's
            prediction. The same class is mapped at every step.
        seed: seed of the new weights (:func:`randomized_copy`).
        layers: randomize only these (still from the top down); default every weighted layer.
        occluder, batch_size: for ``"occlusion"`` (see :func:`zfcore.saliency.class_maps`).
        init: a custom re-initialization rule for models other than ours (see
            :func:`randomized_copy`).

    Returns:
        :class:`Randomization` with ``layers = [None, "fc8", ..., "conv1"]`` and ``spearman``,
        ``spearman_signed``, ``ssim`` of shape (len(layers), N).
    """
    return randomize(model, x, method, target, seed, "cascading", layers, occluder, batch_size,
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
    return randomize(model, x, method, target, seed, "independent", layers, occluder, batch_size,
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
    check_method(method)
    check_images(x)
    t, args = map_setup(model, x, target, occluder, batch_size)
    a = randomized_copy(model, seed + 1, init=init)
    b = randomized_copy(model, seed + 2, init=init)
    return similarity(compute_maps(a, x, method, t, *args), compute_maps(b, x, method, t, *args))


def other_classes(target, num_classes: int, seed: int = 0) -> torch.Tensor:
    """For each image a class other than its ``target``, drawn uniformly (seeded): (N,) long."""
    t = torch.as_tensor(target).to(torch.long).cpu().reshape(-1)
    num_classes = positive_int(num_classes, "num_classes", 2)
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
    check_method(method)
    check_images(x)
    t, args = map_setup(model, x, target, occluder, batch_size)
    o = class_targets(model, x, other, "other")
    if bool((o == t).any()):
        i = int((o == t).nonzero()[0])
        raise ValueError(f"other[{i}] is image {i}'s target class {int(t[i])}: choose another class "
                         f"(zfcore.randomization.other_classes draws one)")
    ref = maps if maps is not None else compute_maps(model, x, method, t, *args)
    return similarity(ref, compute_maps(model, x, method, o, *args))
