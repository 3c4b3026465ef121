"""Feature invariance (Zeiler & Fergus 2014, Section 4.4, Fig. 5).

"5 example images being translated, rotated and scaled by varying degrees while
looking at the changes in the feature vectors from the top and bottom layers of
the model, relative to the untransformed feature." Fig. 5 has one row per
transformation -- vertical translation (-60 to +60 px at 224 px), scale (1 to
1.8) and rotation (0 to 350 degrees), rows a-c -- and four columns: 1, the
images as they are transformed; 2 and 3, the Euclidean distance between the
feature vectors of the original and of the transformed image at layer 1 and at
layer 7; 4, the probability of the true class. The paper's reading: "Small
transformations have a dramatic effect in the first layer of the model, but a
lesser impact at the top feature layer, being quasi-linear for translation &
scaling. The network output is stable to translations and scalings. In general,
the output is not invariant to rotation, except for object with rotational
symmetry."

What is "layer 1" and "layer 7" (:func:`default_layers`):

* layer 1 is the output of the whole first layer of Fig. 3 -- conv1, ReLU,
  max-pool, contrast normalisation -- that is ``norm1`` in our models (the step
  just before the second convolution of the chain: ``features.2``, the first
  max-pool, in torchvision's AlexNet, which has no normalisation);
* layer 7 is fc7 after its ReLU, ``relu7`` in our models (``classifier.5`` in
  AlexNet): the rectified output of the last fully connected layer below the
  classifier, the feature vector the paper's transfer experiments use.

Both are read from one forward pass walked as :func:`zfcore.activations.layer_activations`
walks it (non-in-place, eval mode, no gradients), so torchvision's in-place ReLUs
do not overwrite them; any other pair (or more) of layers can be named.

The transformations themselves (the scenes re-rendered with their object moved, scaled or
rotated; any other image warped) are :mod:`zfcore.invariance_transforms`; the paper's
observations checked, the table and the figure are :mod:`zfcore.invariance_report`. Here:
:func:`invariance` measures a batch of originals against their variants;
:func:`scene_invariance` does the whole of Fig. 5 on a trained run (on the user's folders,
which have no recipes, :func:`split_warp_invariance`); :func:`warp_invariance` on a user's
own prepared images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .chain import EvalMode, blocks, chain, device_of, find_step, forward
from .data.splits import load_split
from .data.transforms import center_crop, preprocess
from .invariance_transforms import (KINDS, check_kind, check_values, default_values, labelled_object,
                                    scene_inputs, scene_variants, warp_variants)
from .runs import preset_of
from .view import ModelView

__all__ = ["default_layers", "InvarianceCurves", "SceneInvariance", "curves_of", "invariance",
           "choose_images", "object_room", "scene_invariance", "split_warp_invariance", "warp_invariance"]


# --------------------------------------------------------------------------------------------
# measuring


def default_layers(model: nn.Module, input_size: Optional[int] = None) -> Tuple[str, str]:
    """The module paths of Fig. 5's "layer 1" and "layer 7" in ``model``.

    Layer 1: the step just before the second Conv2d of the chain -- the output
    of the whole first layer (conv, ReLU, pool, normalisation): ``norm1`` for ours,
    ``features.2`` for torchvision's AlexNet. Layer 7: the ReLU after the
    second-to-last Linear (fc7 rectified): ``relu7`` for ours, ``classifier.5``
    for AlexNet.

    Raises:
        ValueError: a model with fewer than two Conv2d or two Linear layers (name the
            layers yourself), or one that is not a supported chain.
    """
    chain(model, input_size)                  # a chain zfcore can walk, or UnsupportedModel
    return _default_layers(model)


def _default_layers(model: nn.Module) -> Tuple[str, str]:
    """The paper's layer 1 and layer 7 (:func:`zfcore.chain.blocks`): the first block's last
    module, and the block of the second-to-last fully connected layer (its ReLU)."""
    modules = dict(model.named_modules())
    found = blocks(model)
    convs = [k for k, (w, _) in found.items() if isinstance(modules[w], nn.Conv2d)]
    fcs = [k for k, (w, _) in found.items() if isinstance(modules[w], nn.Linear)]
    if len(convs) < 2 or len(fcs) < 2:
        raise ValueError(f"cannot tell layer 1 and layer 7 of a model with {len(convs)} Conv2d and "
                         f"{len(fcs)} Linear layers; pass layers=(lower, upper) by name (its layers: "
                         f"{', '.join(n for n, m in modules.items() if n and not list(m.children()))})")
    return found[convs[0]][1], found[fcs[-2]][1]


@dataclass
class InvarianceCurves:
    """One row of Fig. 5: N images, each transformed by V values of one kind.

    Attributes:
        kind: the transformation (one of :data:`KINDS`, or any label).
        values: (V,) the amounts (the x axis).
        layers: the L layers measured, lowest first (default ``(layer 1, layer 7)``).
        distance: (L, N, V) Euclidean distance between the flattened feature vector of
            the original and of the transformed image at each layer (Fig. 5 (b), (c)).
        relative: (L, N, V) the same divided by the norm of the original's feature
            vector, so that the layers can be compared.
        norm: (L, N) norm of the original's feature vector at each layer.
        prob: (N, V) softmax probability of the true class (Fig. 5 (d)).
        top_class: (N, V) the most probable class.
        labels: (N,) the true classes.
        original_prob: (N,) probability of the true class for the original image.
        original_top: (N,) most probable class for the original image.
        images: optional (N, V, h, w, 3) uint8, the transformed images as the model
            sees them (for Fig. 5 (a)).
    """
    kind: str
    values: np.ndarray
    layers: Tuple[str, ...]
    distance: np.ndarray
    relative: np.ndarray
    norm: np.ndarray
    prob: np.ndarray
    top_class: np.ndarray
    labels: np.ndarray
    original_prob: np.ndarray
    original_top: np.ndarray
    images: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def correct(self) -> np.ndarray:
        """(N, V) bool: the transformed image's most probable class is the true one."""
        return self.top_class == self.labels[:, None]


def _check_batch(x, what: str, dims: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected {what} as a float tensor, got {type(x).__name__}")
    shape = "(N, 3, H, W)" if dims == 4 else "(N, V, 3, H, W)"
    if x.dim() != dims or x.shape[-3] != 3 or not x.is_floating_point() or x.shape[0] == 0:
        raise ValueError(f"expected {what} of shape {shape}, float, N >= 1; got "
                         f"{tuple(x.shape)} {x.dtype}")
    return x


def invariance(model: nn.Module, originals: torch.Tensor, variants: torch.Tensor, labels,
               values: Sequence[float], kind: str = "custom",
               layers: Optional[Sequence[str]] = None, batch_size: int = 32,
               images: Optional[np.ndarray] = None) -> InvarianceCurves:
    """Fig. 5's measurements for N images and V transformed versions of each.

    Every image is run through ``model`` (walked as a chain, eval mode, no
    gradients; one pass gives the layers and the output), and for each variant:
    the Euclidean distance between its feature vector and the original's at each
    of ``layers`` (the whole output of the layer, flattened), that distance over
    the norm of the original's vector, and the softmax probability of the true class.

    Args:
        model: a supported chain (ours, torchvision's AlexNet and VGG).
        originals: (N, 3, H, W) float, the model's inputs for the untransformed images.
        variants: (N, V, 3, H, W) float, the inputs of the transformed ones.
        labels: (N,) the true classes.
        values: (V,) the amounts, for the record and the plots.
        kind: the transformation's name.
        layers: the layers to measure, lowest first (default :func:`default_layers`:
            layer 1 and layer 7).
        batch_size: images per forward pass.
        images: optional (N, V, h, w, 3) uint8 pictures of the variants, kept for plotting.

    Returns:
        :class:`InvarianceCurves`.

    Raises:
        ValueError: tensors of the wrong shape, mismatched N, H, W or V, labels out of
            range, unknown layer (the message lists the model's layers).
    """
    _check_batch(originals, "originals", 4)
    _check_batch(variants, "variants", 5)
    n, v = int(variants.shape[0]), int(variants.shape[1])
    if originals.shape[0] != n or originals.shape[1:] != variants.shape[2:]:
        raise ValueError(f"originals {tuple(originals.shape)} and variants {tuple(variants.shape)} do "
                         f"not match: expected (N, 3, H, W) and (N, V, 3, H, W)")
    vals = np.asarray(values, np.float64)
    if vals.ndim != 1 or len(vals) != v:
        raise ValueError(f"values must hold V={v} numbers (one per variant), got shape {vals.shape}")
    labs = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labs.shape != (n,) or not np.issubdtype(labs.dtype, np.integer):
        raise ValueError(f"labels must be {n} ints (one per image), got {labs.shape} {labs.dtype}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    probe = _Probe(model, (int(originals.shape[2]), int(originals.shape[3])), layers, batch_size)
    with EvalMode(model), torch.no_grad():
        f0, p0 = probe(originals)
        _check_labels(labs, p0.shape[1])
        f1, p1 = probe(variants.reshape(n * v, *variants.shape[2:]))
    return _curves(kind, vals, probe.layers, f0, p0, f1, p1, labs, images)


def _check_labels(labs: np.ndarray, n_cls: int) -> None:
    if labs.min() < 0 or labs.max() >= n_cls:
        raise ValueError(f"labels must lie in 0..{n_cls - 1} (the model has {n_cls} classes), "
                         f"got {labs.tolist()}")


class _Probe:
    """The model walked as a chain once (:func:`zfcore.chain.chain`); calling it on
    (M, 3, H, W) images gives each layer's flattened output, (M, D_l) float64, and
    the softmax, (M, classes) float64, from one forward pass per ``batch_size`` images.
    Call it inside ``EvalMode(model)`` and ``torch.no_grad()``."""

    def __init__(self, model: nn.Module, size: Tuple[int, int], layers: Optional[Sequence[str]],
                 batch_size: int):
        self.steps = chain(model, size)
        self.layers = tuple(layers) if layers is not None else _default_layers(model)
        if not self.layers:
            raise ValueError("layers must name at least one layer")
        self.idx = [find_step(self.steps, name) for name in self.layers]
        self.device = device_of(model, torch.zeros(0))
        self.batch_size = batch_size

    def __call__(self, x: torch.Tensor):
        feats: List[List[torch.Tensor]] = [[] for _ in self.idx]
        probs = []
        last = len(self.steps) - 1
        for s in range(0, len(x), self.batch_size):
            acts, _ = forward(self.steps, x[s:s + self.batch_size].detach().to(self.device), last)
            for k, i in enumerate(self.idx):
                feats[k].append(acts[i + 1].reshape(acts[i + 1].shape[0], -1).double().cpu())
            logits = acts[-1]
            if logits.dim() != 2:
                raise ValueError(f"the model's output has shape {tuple(logits.shape)}; "
                                 f"expected (N, classes)")
            probs.append(torch.softmax(logits.double(), dim=1).cpu())
            del acts
        return [torch.cat(f) for f in feats], torch.cat(probs)


def _curves(kind, vals, layers, f0, p0, f1, p1, labs, images) -> InvarianceCurves:
    """Distances and probabilities from the probe's outputs for N originals and N x V variants."""
    n, v = len(labs), len(vals)
    lab_t = torch.as_tensor(labs, dtype=torch.long)
    dist = np.stack([(b.view(n, v, -1) - a[:, None]).norm(dim=2).numpy() for a, b in zip(f0, f1)])
    norm = np.stack([a.norm(dim=1).numpy() for a in f0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(norm[:, :, None] > 0, dist / norm[:, :, None], np.nan)
    p1 = p1.view(n, v, -1)
    return InvarianceCurves(
        kind=kind, values=np.asarray(vals, np.float64), layers=tuple(layers), distance=dist,
        relative=rel, norm=norm,
        prob=p1.gather(2, lab_t.view(n, 1, 1).expand(n, v, 1))[..., 0].numpy(),
        top_class=p1.argmax(dim=2).numpy(), labels=np.asarray(labs).astype(np.int64),
        original_prob=p0.gather(1, lab_t.view(n, 1))[:, 0].numpy(),
        original_top=p0.argmax(dim=1).numpy(), images=images)


def warp_invariance(model: nn.Module, images: torch.Tensor, labels,
                    kinds: Sequence[str] = KINDS, values: Optional[Dict[str, Sequence[float]]] = None,
                    fill: float = 0.0, layers: Optional[Sequence[str]] = None,
                    batch_size: int = 32) -> Dict[str, InvarianceCurves]:
    """Fig. 5 on a user's own images: each is warped (:func:`warp_variants`) and measured.

    Args:
        model: a supported chain.
        images: (N, 3, H, W) float, the model's preprocessed inputs.
        labels: (N,) true classes.
        kinds: which transformations.
        values: per kind, the amounts (default :func:`default_values` at ``H``).
        fill: the value of pixels from outside the image (0: the mean, for
            mean-subtracted or normalised images).
        layers, batch_size: as for :func:`invariance`.

    Returns:
        ``{kind: InvarianceCurves}``.
    """
    _check_batch(images, "images", 4)
    values = dict(values or {})
    out = {}
    for kind in kinds:
        vals = check_values(kind, values[kind] if kind in values else
                             default_values(kind, int(images.shape[-2])))
        var = torch.stack([warp_variants(x, kind, vals, fill=fill) for x in images.detach().cpu()])
        out[kind] = invariance(model, images, var, labels, vals, kind, layers, batch_size)
    return out


# --------------------------------------------------------------------------------------------
# on the scenes


@dataclass
class SceneInvariance:
    """Fig. 5 on the scenes: the chosen images and one :class:`InvarianceCurves` per kind.

    Attributes:
        curves: ``{kind: InvarianceCurves}``, in the order of :data:`KINDS`.
        indices: (N,) the images' indices in the split.
        split: the split they come from.
        class_names: (N,) the true class name of each image.
        originals: (N, h, w, 3) uint8, the untransformed centre crops.
        room: (N,) the share of the object that stays inside the crop under the
            largest translation and scale (see :func:`object_room`); NaN for warped
            images (no object position is known).
        scale: the preset's name.
        method: ``"render"``: the scenes re-rendered with their object transformed
            (:func:`scene_variants`); ``"warp"``: the whole stored image warped
            (:func:`warp_variants`), for the user's folders, which have no recipe.
    """
    curves: Dict[str, InvarianceCurves]
    indices: np.ndarray
    split: str
    class_names: List[str]
    originals: np.ndarray = field(repr=False)
    room: np.ndarray
    scale: str
    method: str = "render"

    def __getitem__(self, kind: str) -> InvarianceCurves:
        return self.curves[kind]


def object_room(spec, stored_size: int, crop_size: int, shift: float, zoom: float) -> float:
    """The share of the labelled object that stays inside the centre crop under the
    largest translation (``+-shift`` pixels, vertically) and the largest scale (``zoom``).

    The object is taken as the square of side ``size * stored_size`` (its sprite's
    longer side) centred on its centre; the result is the smallest of the three
    visible shares (shifted up, shifted down, scaled). Rotation is left out.
    """
    obj = spec.objects[labelled_object(spec)]
    off = (stored_size - crop_size) / 2.0
    cx, cy = obj.cx * stored_size - off, obj.cy * stored_size - off
    half = obj.size * stored_size / 2.0

    def share(cx, cy, half):
        w = max(0.0, min(cx + half, crop_size) - max(cx - half, 0.0))
        h = max(0.0, min(cy + half, crop_size) - max(cy - half, 0.0))
        return w * h / (2 * half) ** 2

    return float(min(share(cx, cy - shift, half), share(cx, cy + shift, half),
                     share(cx, cy, half * zoom)))


def choose_images(specs: Sequence, labels: np.ndarray, correct: np.ndarray, n: int, seed: int,
                  stored_size: int, crop_size: int, shift: float, zoom: float,
                  min_room: float = 0.6) -> Tuple[np.ndarray, np.ndarray]:
    """Pick Fig. 5's ``n`` images, deterministically from ``seed``.

    The paper shows 5 images of different classes that the model recognises. We
    take, in an order drawn from ``seed``, images that (1) the model classifies
    correctly (top-1 of the centre crop), (2) whose object stays mostly in the
    frame under the largest translation and scale (:func:`object_room` at least
    ``min_room``), (3) of classes not yet taken. If fewer than ``n`` qualify, the
    rest are filled one by one from the remaining images: correctly classified
    first, then of a class not yet taken, then with the most room.

    The largest scale (1.8) makes most objects overflow the crop, as zooming into
    a photograph does in the paper; ``min_room`` 0.6 keeps roughly the quarter of
    the scenes with the smallest, most central objects.

    Returns:
        ``(indices (n,), room (n,))``.
    """
    labels = np.asarray(labels)
    correct = np.asarray(correct, bool)
    if not 1 <= n <= len(specs):
        raise ValueError(f"n_images must be between 1 and {len(specs)}, got {n}")
    room = np.array([object_room(s, stored_size, crop_size, shift, zoom) for s in specs])
    order = np.random.default_rng(seed).permutation(len(specs))
    picked: List[int] = []
    taken = set()
    for i in order:
        if correct[i] and room[i] >= min_room and labels[i] not in taken:
            picked.append(int(i))
            taken.add(labels[i])
            if len(picked) == n:
                break
    while len(picked) < n:
        rest = [int(i) for i in order if int(i) not in picked]
        best = min(rest, key=lambda i: (not correct[i], labels[i] in taken, -room[i]))
        picked.append(best)
        taken.add(labels[best])
    idx = np.array(picked, np.int64)
    return idx, room[idx]


def _view_of(run, p, ds, device) -> ModelView:
    """The model's view of split ``ds``: ``run``'s final model (on ``device``), its float mean and
    the preset's crop, the sizes checked."""
    model = run.model if getattr(run, "model", None) is not None else run.load()
    if device is not None:
        model = model.to(device)
    if p.image_size > ds.stored_size:
        raise ValueError(f"image_size {p.image_size} is larger than the stored images ({ds.stored_size})")
    return ModelView(model, p.image_size, mean=run.mean().float())


def scene_invariance(run, split: str = "test", n_images: int = 5, seed: int = 0,
                     kinds: Sequence[str] = KINDS,
                     values: Optional[Dict[str, Sequence[float]]] = None,
                     layers: Optional[Sequence[str]] = None, scale=None, min_room: float = 0.6,
                     batch_size: int = 64, device=None) -> SceneInvariance:
    """Fig. 5 on a split of the run's data, with a trained run's final model.

    On the scenes, ``n_images`` images of ``split`` are chosen (:func:`choose_images`),
    each is re-rendered with its object transformed (:func:`scene_variants`) by every
    value of every kind, and measured (:func:`invariance`).

    At a folder scale (the user's ImageNet) there is no recipe to re-render: the
    images are warped instead (:func:`split_warp_invariance`; ``method`` ``"warp"``
    in the result).

    Args:
        run: a :class:`zfcore.runs.Run` (``train_or_load(scale)``).
        split: the scenes split to draw the images from.
        n_images: how many images (5 in the paper).
        seed: the draw of the images.
        kinds: which rows of Fig. 5.
        values: per kind, the amounts (default :func:`default_values` at the preset's
            ``image_size``).
        layers: as for :func:`invariance` (default: layer 1 and layer 7).
        scale: the preset of the scenes (default: the run's own).
        min_room: see :func:`choose_images`.
        batch_size: images per forward pass.
        device: where to run the model (default: where it is; ``run.load()`` gives the CPU).

    Returns:
        :class:`SceneInvariance`.
    """
    p = preset_of(run, scale)
    for kind in kinds:
        check_kind(kind)
    values = dict(values or {})
    vals = {k: check_values(k, values[k] if k in values else default_values(k, p.image_size))
            for k in kinds}
    ds = load_split(p, split, progress=False)
    if getattr(ds, "specs", None) is None:
        return split_warp_invariance(run, ds, n_images=n_images, seed=seed, kinds=kinds, values=vals,
                                     layers=layers, scale=p, batch_size=batch_size, device=device)
    view = _view_of(run, p, ds, device)
    model, size, stored = view.model, view.image_size, ds.stored_size
    probe = _Probe(model, (size, size), layers, batch_size)
    correct = np.zeros(len(ds), bool)
    with EvalMode(model), torch.no_grad():
        for s in range(0, len(ds), 256):
            _, probs = probe(view.inputs(ds.images[s:s + 256]))
            correct[s:s + 256] = probs.argmax(1).numpy() == ds.labels[s:s + 256]
        shift = float(np.abs(vals["translation"]).max()) if "translation" in vals else 0.0
        zoom = float(np.max(vals["scale"])) if "scale" in vals else 1.0
        idx, room = choose_images(ds.specs, ds.labels, correct, n_images, seed, stored, size, shift,
                                  max(zoom, 1.0), min_room)
        labels = ds.labels[idx]
        f0, p0 = probe(view.inputs(ds.images[idx]))
        curves = {}
        for kind in kinds:
            pics = np.stack([scene_variants(ds.specs[i], kind, vals[kind], stored, size) for i in idx])
            f1, p1 = probe(scene_inputs(pics, view.mean).flatten(0, 1))
            curves[kind] = _curves(kind, vals[kind], probe.layers, f0, p0, f1, p1, labels, pics)
    return SceneInvariance(curves=curves, indices=idx, split=split,
                           class_names=[ds.classes[int(l)] for l in labels],
                           originals=np.ascontiguousarray(view.display(ds.images[idx])), room=room,
                           scale=p.name)


def _recognized(view: ModelView, ds, n_images: int, seed: int, limit: int) -> np.ndarray:
    """(n_images,) indices into ``ds`` for Fig. 5 without recipes: in an order drawn from ``seed``
    (among the first ``limit``), images the model classifies correctly, of classes not yet taken;
    the rest, if fewer qualify, the most probable true class first."""
    labels_all = np.asarray(ds.labels)
    order, pred, p_true = view.predictions(ds.images, labels_all, seed=seed,
                                           limit=max(int(limit), int(n_images)))
    correct = pred == labels_all
    picked: List[int] = []
    taken = set()
    for i in order:
        if correct[i] and labels_all[i] not in taken:
            picked.append(int(i))
            taken.add(labels_all[i])
            if len(picked) == n_images:
                break
    if len(picked) < n_images:
        rest = sorted((int(i) for i in order if int(i) not in picked),
                      key=lambda i: (not correct[i], labels_all[i] in taken, -p_true[i]))
        picked += rest[:n_images - len(picked)]
    return np.array(picked, np.int64)


def split_warp_invariance(run, ds, n_images: int = 5, seed: int = 0, kinds: Sequence[str] = KINDS,
                          values: Optional[Dict[str, Sequence[float]]] = None,
                          layers: Optional[Sequence[str]] = None, scale=None, limit: int = 2000,
                          batch_size: int = 64, device=None) -> SceneInvariance:
    """Fig. 5 on a split without recipes (the user's folders): the images are warped.

    The images are chosen as :func:`choose_images` does, without the room criterion
    (no object position is known): in an order drawn from ``seed`` among the first
    ``limit`` of that order, images the model classifies correctly (top-1 of the
    centre crop), of classes not yet taken; if fewer than ``n_images`` qualify, the
    rest are filled with the most probable true class first. Each *stored* image,
    minus the per-pixel training mean, is warped about its centre (:func:`warp_variants`:
    shifted down, zoomed in, turned counter-clockwise; bilinear), pixels from outside
    set to 0, the mean; then the centre crop the model takes is cut out. Warping the
    stored image rather than the crop lets its margin (16 px each side at 256/224)
    fill the crop before the mean does. The pictures of Fig. 5 (a) are those inputs
    with the mean added back.

    Args:
        run: a :class:`zfcore.runs.Run`.
        ds: a split (:func:`zfcore.data.splits.load_split`), e.g. a ``FolderSplit``.
        values: per kind, the amounts (default :func:`default_values` at the crop size).
        scale: the preset (default: the run's).
        limit: images classified to find the correct ones (a seeded sample).
        n_images, seed, kinds, layers, batch_size, device: as for :func:`scene_invariance`.

    Returns:
        :class:`SceneInvariance` with ``method="warp"`` and ``room`` NaN.
    """
    p = preset_of(run, scale)
    values = dict(values or {})
    vals = {k: check_values(k, values[k] if k in values else default_values(k, p.image_size))
            for k in kinds}
    N = len(ds)
    if not 1 <= n_images <= N:
        raise ValueError(f"n_images must be between 1 and {N}, got {n_images}")
    view = _view_of(run, p, ds, device)
    model, mean, size = view.model, view.mean, view.image_size
    idx = _recognized(view, ds, n_images, seed, limit)
    labels = np.asarray(ds.labels)[idx]
    probe = _Probe(model, (size, size), layers, batch_size)
    with EvalMode(model), torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(ds.images[idx])).permute(0, 3, 1, 2)
        full = preprocess(x, mean)                                   # (n, 3, S, S), mean-subtracted
        x0 = center_crop(full, size).contiguous()    # cut as the warped variants are: after the mean
        f0, p0 = probe(x0)
        m = center_crop(mean, size)
        curves = {}
        for kind in kinds:
            var = torch.stack([center_crop(warp_variants(x, kind, vals[kind], fill=0.0), size)
                               for x in full])                       # (n, V, 3, s, s)
            f1, p1 = probe(var.flatten(0, 1).contiguous())
            pics = (var + m).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
            curves[kind] = _curves(kind, vals[kind], probe.layers, f0, p0, f1, p1, labels, pics)
    originals = (x0 + m).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return SceneInvariance(curves=curves, indices=idx, split=ds.split,
                           class_names=[ds.classes[int(l)] for l in labels],
                           originals=originals, room=np.full(len(idx), np.nan), scale=p.name,
                           method="warp")


def curves_of(result) -> Dict[str, InvarianceCurves]:
    """``{kind: InvarianceCurves}`` of a :class:`SceneInvariance`, one :class:`InvarianceCurves`
    or such a dict (ValueError for anything else)."""
    if isinstance(result, SceneInvariance):
        return result.curves
    if isinstance(result, InvarianceCurves):
        return {result.kind: result}
    if isinstance(result, dict):
        return result
    raise ValueError(f"expected a SceneInvariance, an InvarianceCurves or a dict of them, got "
                     f"{type(result).__name__}")
