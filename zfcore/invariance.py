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

Both are read from one forward pass walked as :func:`zfcore.deconv.layer_activations`
walks it (non-in-place, eval mode, no gradients), so torchvision's in-place ReLUs
do not overwrite them; any other pair (or more) of layers can be named.

Two ways to transform an image:

* on the generated scenes (:func:`scene_variants`), the image is *re-rendered*
  from its recipe (:class:`zfcore.data.scenes.SceneSpec`) with its labelled
  object moved, scaled or rotated on the very same background, the other
  objects unchanged; then, as evaluation does (Section 3, :func:`zfcore.train.evaluate`),
  the per-pixel training mean is subtracted and the centre crop the model takes
  is cut out. No border, no black corner, no crop of the background enters the
  picture; only the object changes.
* on any other image (:func:`warp_variants`), the whole picture is warped
  (an affine map about its centre, bilinear); the pixels that come from outside
  the picture are filled with a constant: 0 for a mean-subtracted image (that is,
  the mean), mid-grey 128 for a uint8 image.

:func:`invariance` measures a batch of originals against their variants;
:func:`scene_invariance` does the whole of Fig. 5 on a trained run; :func:`findings`
says, from the numbers, whether each of the paper's observations holds;
:func:`figure` draws Fig. 5.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .chain import EvalMode, chain, device_of, find_step, forward
from .data.transforms import center_crop

__all__ = ["KINDS", "TRANSFORMS", "Transform", "default_values", "default_layers",
           "labelled_object", "transform_spec", "scene_variants", "scene_inputs", "warp_variants",
           "InvarianceCurves", "SceneInvariance", "invariance", "choose_images", "object_room",
           "scene_invariance", "split_warp_invariance", "warp_invariance", "Finding", "findings", "distance_rows", "figure"]


# --------------------------------------------------------------------------------------------
# the three transformations


@dataclass(frozen=True)
class Transform:
    """One row of Fig. 5.

    Attributes:
        kind: ``"translation"``, ``"scale"`` or ``"rotation"``.
        axis: what a value means (the x axis of Fig. 5's plots).
        paper: the range the paper uses.
        identity: the value that leaves the image unchanged.
    """
    kind: str
    axis: str
    paper: str
    identity: float


TRANSFORMS: Dict[str, Transform] = {
    "translation": Transform("translation", "vertical shift (pixels, + is down)",
                             "-60 to +60 px (224 px images)", 0.0),
    "scale": Transform("scale", "scale factor", "1 to 1.8", 1.0),
    "rotation": Transform("rotation", "rotation (degrees, counter-clockwise)",
                          "0 to 350 degrees", 0.0),
}
#: The transformations of Fig. 5, in its row order.
KINDS: Tuple[str, ...] = tuple(TRANSFORMS)

_PAPER_SIZE = 224            # the paper's input side: translations scale by image_size / 224
_PAPER_SHIFT = 60.0          # the paper's largest vertical shift, in pixels at 224 px


def _check_kind(kind: str) -> Transform:
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transformation {kind!r}; valid kinds: {', '.join(KINDS)}")
    return TRANSFORMS[kind]


def default_values(kind: str, image_size: int = 224, n: Optional[int] = None) -> np.ndarray:
    """The values of one transformation that Fig. 5 sweeps, for ``image_size`` inputs.

    * ``"translation"``: vertical shifts in whole pixels, from -60 to +60 at 224 px,
      scaled by ``image_size / 224`` (about +-13 px at 48 px, +-17 px at 64 px);
      ``n`` (default 13) evenly spaced values rounded to whole pixels (step 10 at 224 px);
    * ``"scale"``: ``n`` (default 9) factors from 1 to 1.8 (step 0.1);
    * ``"rotation"``: ``n`` (default 36) angles from 0 to 350 degrees (step 10).

    Args:
        kind: one of :data:`KINDS`.
        image_size: side of the model's input (the crop it sees).
        n: how many values (at least 2).

    Returns:
        (V,) float64, increasing, the identity value included.

    Raises:
        ValueError: unknown kind (listing the valid ones), ``image_size < 1`` or ``n < 2``.
    """
    _check_kind(kind)
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 2):
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if kind == "translation":
        r = _PAPER_SHIFT * image_size / _PAPER_SIZE
        v = np.unique(np.round(np.linspace(-r, r, int(n or 13))))
        return np.unique(np.concatenate([v, [0.0]])).astype(np.float64)
    if kind == "scale":
        return np.round(np.linspace(1.0, 1.8, int(n or 9)), 6)
    return np.round(np.linspace(0.0, 350.0, int(n or 36)), 6)


def _check_values(kind: str, values) -> np.ndarray:
    _check_kind(kind)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence of numbers, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite numbers, got {v.tolist()}")
    if kind == "scale" and np.any(v <= 0):
        raise ValueError(f"scale factors must be > 0, got {v.tolist()}")
    return v


def _magnitude(kind: str, values: np.ndarray) -> np.ndarray:
    """How far each value is from the identity, in [0, 1] over the range swept
    (rotation: the angle to 0, over 180 degrees)."""
    v = np.asarray(values, np.float64)
    if kind == "rotation":
        a = np.mod(v, 360.0)
        return np.minimum(a, 360.0 - a) / 180.0
    d = np.abs(v - TRANSFORMS[kind].identity)
    return d / d.max() if d.max() > 0 else d


# --------------------------------------------------------------------------------------------
# re-rendered scenes


def labelled_object(spec) -> int:
    """Index in ``spec.objects`` of the scene's labelled object: the largest one
    with a class (``label >= 0``), as :class:`zfcore.data.scenes.SceneSet` labels images.

    Raises:
        ValueError: the scene has no labelled object.
    """
    ks = [k for k, o in enumerate(spec.objects) if o.label >= 0]
    if not ks:
        raise ValueError("the scene has no labelled object (every object has label < 0)")
    return max(ks, key=lambda k: spec.objects[k].size)


def transform_spec(spec, kind: str, value: float, stored_size: int):
    """A copy of the scene recipe with its labelled object transformed (Fig. 5).

    * ``"translation"``: the object's centre moves down by ``value`` pixels of the
      ``stored_size`` image (``cy += value / stored_size``); as the centre crop is a
      plain crop, that is ``value`` pixels of the model's input too (the renderer
      rounds the sprite's corner to a whole pixel, so an object whose corner lies
      exactly on a half pixel can move one pixel more or less);
    * ``"scale"``: the object's size is multiplied by ``value``, about its centre;
    * ``"rotation"``: ``value`` degrees are added to the object's angle
      (counter-clockwise, as :class:`~zfcore.data.scenes.ObjectSpec` counts it);
      the angle is taken modulo 360, so 360 draws exactly what 0 draws.

    The identity value returns an unchanged copy, so the scene renders bit for bit
    as stored. The background and the other objects are never changed.

    Args:
        spec: a :class:`zfcore.data.scenes.SceneSpec`.
        kind: one of :data:`KINDS`.
        value: the amount (see :func:`default_values`).
        stored_size: side of the stored images (``SceneSet.stored_size``).

    Returns:
        a new :class:`~zfcore.data.scenes.SceneSpec` (``spec`` is not modified).
    """
    _check_values(kind, [value])
    out = copy.deepcopy(spec)
    obj = out.objects[labelled_object(out)]
    value = float(value)
    if kind == "translation":
        if value != 0.0:
            obj.cy = obj.cy + value / float(stored_size)
    elif kind == "scale":
        if value != 1.0:
            obj.size = obj.size * value
    else:
        turn = value % 360.0
        if turn != 0.0:
            obj.angle = obj.angle + turn
    return out


def scene_variants(spec, kind: str, values: Sequence[float], stored_size: int,
                   crop_size: int) -> np.ndarray:
    """The scene re-rendered once per value with its labelled object transformed.

    Each variant is rendered at ``stored_size`` (:func:`zfcore.data.scenes.render_scene`)
    from :func:`transform_spec`, then its centre ``crop_size`` crop is cut out,
    as evaluation takes it (Section 3). Feed the crops to the model with
    :func:`scene_inputs`.

    Args:
        spec: a :class:`zfcore.data.scenes.SceneSpec`.
        kind: one of :data:`KINDS`.
        values: (V,) amounts.
        stored_size: side of the stored images.
        crop_size: side of the model's input (``preset.image_size``).

    Returns:
        (V, crop_size, crop_size, 3) uint8.
    """
    from .data.scenes import render_scene
    v = _check_values(kind, values)
    if crop_size > stored_size:
        raise ValueError(f"crop_size {crop_size} is larger than stored_size {stored_size}")
    top = (stored_size - crop_size) // 2
    out = np.empty((len(v), crop_size, crop_size, 3), np.uint8)
    for j, value in enumerate(v):
        img, _ = render_scene(transform_spec(spec, kind, value, stored_size), stored_size)
        out[j] = img[top:top + crop_size, top:top + crop_size]
    return out


def scene_inputs(crops, mean: torch.Tensor) -> torch.Tensor:
    """Model inputs from centre crops: the crop minus the centre crop of the per-pixel mean.

    Equal to :func:`zfcore.train.preprocess` followed by
    :func:`zfcore.data.transforms.center_crop`, as evaluation does it (Section 3).

    Args:
        crops: (..., h, w, 3) uint8, the centre crops (numpy or torch).
        mean: (3, S, S) float, the run's per-pixel training mean (``run.mean()``).

    Returns:
        (..., 3, h, w) float32.
    """
    x = crops if isinstance(crops, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(crops))
    if x.dim() < 3 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 crops of shape (..., h, w, 3), got {tuple(x.shape)} {x.dtype}")
    h, w = int(x.shape[-3]), int(x.shape[-2])
    if h != w:
        raise ValueError(f"expected square crops, got {h}x{w}")
    if mean.dim() != 3 or mean.shape[0] != 3 or mean.shape[-1] < w:
        raise ValueError(f"expected a (3, S, S) mean with S >= {w}, got {tuple(mean.shape)}")
    return x.movedim(-1, -3).float() - center_crop(mean.float(), h)


# --------------------------------------------------------------------------------------------
# warped images


def warp_variants(image, kind: str, values: Sequence[float], fill: Optional[float] = None):
    """A user's image warped once per value (Fig. 5, for images that have no recipe).

    An affine map about the image centre, bilinear: ``"translation"`` shifts it
    down by ``value`` pixels, ``"scale"`` zooms in by ``value`` (about the centre),
    ``"rotation"`` turns it ``value`` degrees counter-clockwise. Pixels that come
    from outside the picture are set to ``fill``: by default 0 for a float image
    (for a mean-subtracted image, that is the mean) and mid-grey 128 for a uint8
    image. The identity value returns an exact copy.

    Args:
        image: a float tensor (3, H, W), e.g. already mean-subtracted, or a uint8
            image (H, W, 3) (numpy or torch).
        kind: one of :data:`KINDS`.
        values: (V,) amounts.
        fill: value of the pixels from outside.

    Returns:
        (V, 3, H, W) float32 for a float image; (V, H, W, 3) uint8 for a uint8 image.

    Raises:
        ValueError: an image of another shape or dtype, unknown kind, empty values.
    """
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode
    v = _check_values(kind, values)
    is_uint8 = False
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"expected an image tensor (3, H, W) or uint8 array (H, W, 3), "
                         f"got {type(image).__name__}")
    if image.dtype == torch.uint8:
        if image.dim() != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected a uint8 image of shape (H, W, 3), got {tuple(image.shape)}")
        is_uint8 = True
        x = image.permute(2, 0, 1).float()
        fill = 128.0 if fill is None else float(fill)
    else:
        if not image.is_floating_point() or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a float image of shape (3, H, W) or a uint8 image of shape "
                             f"(H, W, 3), got {tuple(image.shape)} {image.dtype}")
        x = image.detach().float()
        fill = 0.0 if fill is None else float(fill)
    outs = []
    for value in v:
        value = float(value)
        angle, dy, s = 0.0, 0.0, 1.0
        if kind == "translation":
            dy = value
        elif kind == "scale":
            s = value
        else:
            angle = value % 360.0
        if angle == 0.0 and dy == 0.0 and s == 1.0:
            outs.append(x.clone())
            continue
        # torchvision turns clockwise: negate for counter-clockwise
        outs.append(TF.affine(x, angle=-angle, translate=[0, dy], scale=s, shear=[0.0, 0.0],
                              interpolation=InterpolationMode.BILINEAR, fill=[fill] * 3))
    out = torch.stack(outs)
    if is_uint8:
        return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return out


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
    return _default_layers(chain(model, input_size))


def _default_layers(steps) -> Tuple[str, str]:
    convs = [i for i, s in enumerate(steps) if isinstance(s.module, nn.Conv2d)]
    fcs = [i for i, s in enumerate(steps) if isinstance(s.module, nn.Linear)]
    if len(convs) < 2 or len(fcs) < 2:
        raise ValueError(f"cannot tell layer 1 and layer 7 of a model with {len(convs)} Conv2d and "
                         f"{len(fcs)} Linear layers; pass layers=(lower, upper) by name (its layers: "
                         f"{', '.join(s.name for s in steps if not s.name.startswith('<'))})")
    lower = steps[convs[1] - 1].name
    upper_i = fcs[-2]
    for i in range(fcs[-2] + 1, fcs[-1]):
        if isinstance(steps[i].module, nn.ReLU):
            upper_i = i
            break
    return lower, steps[upper_i].name


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
        self.layers = tuple(layers) if layers is not None else _default_layers(self.steps)
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
        vals = _check_values(kind, values[kind] if kind in values else
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


def _model_mean_sizes(run, p, ds, device):
    """(model, float mean, crop size, stored size) of ``run`` on split ``ds``, sizes checked."""
    model = run.model if getattr(run, "model", None) is not None else run.load()
    if device is not None:
        model = model.to(device)
    size, stored = p.image_size, ds.stored_size
    if size > stored:
        raise ValueError(f"image_size {size} is larger than the stored images ({stored})")
    return model, run.mean().float(), size, stored


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
        run: a :class:`zfcore.train.Run` (``train_or_load(scale)``).
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
    from .data.splits import load_split
    from .runs import preset_of
    p = preset_of(run, scale)
    for kind in kinds:
        _check_kind(kind)
    values = dict(values or {})
    vals = {k: _check_values(k, values[k] if k in values else default_values(k, p.image_size))
            for k in kinds}
    ds = load_split(p, split, progress=False)
    if getattr(ds, "specs", None) is None:
        return split_warp_invariance(run, ds, n_images=n_images, seed=seed, kinds=kinds, values=vals,
                                     layers=layers, scale=p, batch_size=batch_size, device=device)
    model, mean, size, stored = _model_mean_sizes(run, p, ds, device)
    top = (stored - size) // 2
    crops = np.ascontiguousarray(ds.images[:, top:top + size, top:top + size])
    probe = _Probe(model, (size, size), layers, batch_size)
    correct = np.zeros(len(ds), bool)
    with EvalMode(model), torch.no_grad():
        for s in range(0, len(ds), 256):
            _, probs = probe(scene_inputs(crops[s:s + 256], mean))
            correct[s:s + 256] = probs.argmax(1).numpy() == ds.labels[s:s + 256]
        shift = float(np.abs(vals["translation"]).max()) if "translation" in vals else 0.0
        zoom = float(np.max(vals["scale"])) if "scale" in vals else 1.0
        idx, room = choose_images(ds.specs, ds.labels, correct, n_images, seed, stored, size, shift,
                                  max(zoom, 1.0), min_room)
        labels = ds.labels[idx]
        f0, p0 = probe(scene_inputs(crops[idx], mean))
        curves = {}
        for kind in kinds:
            pics = np.stack([scene_variants(ds.specs[i], kind, vals[kind], stored, size) for i in idx])
            f1, p1 = probe(scene_inputs(pics, mean).flatten(0, 1))
            curves[kind] = _curves(kind, vals[kind], probe.layers, f0, p0, f1, p1, labels, pics)
    return SceneInvariance(curves=curves, indices=idx, split=split,
                           class_names=[ds.classes[int(l)] for l in labels],
                           originals=crops[idx].copy(), room=room, scale=p.name)


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
        run: a :class:`zfcore.train.Run`.
        ds: a split (:func:`zfcore.data.splits.load_split`), e.g. a ``FolderSplit``.
        values: per kind, the amounts (default :func:`default_values` at the crop size).
        scale: the preset (default: the run's).
        limit: images classified to find the correct ones (a seeded sample).
        n_images, seed, kinds, layers, batch_size, device: as for :func:`scene_invariance`.

    Returns:
        :class:`SceneInvariance` with ``method="warp"`` and ``room`` NaN.
    """
    from .runs import preset_of
    from .view import ModelView
    from .data.transforms import preprocess
    p = preset_of(run, scale)
    values = dict(values or {})
    vals = {k: _check_values(k, values[k] if k in values else default_values(k, p.image_size))
            for k in kinds}
    N = len(ds)
    if not 1 <= n_images <= N:
        raise ValueError(f"n_images must be between 1 and {N}, got {n_images}")
    model, mean, size, stored = _model_mean_sizes(run, p, ds, device)
    labels_all = np.asarray(ds.labels)
    order, pred, p_true = ModelView(model, size, mean=mean).predictions(
        ds.images, labels_all, seed=seed, limit=max(int(limit), int(n_images)))
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
    idx = np.array(picked, np.int64)
    labels = labels_all[idx]
    probe = _Probe(model, (size, size), layers, batch_size)
    with EvalMode(model), torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(ds.images[idx])).permute(0, 3, 1, 2)
        full = preprocess(x, mean)                                   # (n, 3, S, S), mean-subtracted
        x0 = center_crop(full, size).contiguous()
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


# --------------------------------------------------------------------------------------------
# the paper's findings, checked


@dataclass
class Finding:
    """One of the paper's observations, checked on the numbers.

    Attributes:
        claim: the observation, in the paper's words where it has them.
        kind: the transformation it is checked on.
        holds: whether the numbers bear it out (by the criterion in ``criterion``).
        criterion: the test applied.
        evidence: the numbers.
    """
    claim: str
    kind: str
    holds: bool
    criterion: str
    evidence: str


def _curves_of(result) -> Dict[str, InvarianceCurves]:
    if isinstance(result, SceneInvariance):
        return result.curves
    if isinstance(result, InvarianceCurves):
        return {result.kind: result}
    if isinstance(result, dict):
        return result
    raise ValueError(f"expected a SceneInvariance, an InvarianceCurves or a dict of them, got "
                     f"{type(result).__name__}")


def _fmt_value(kind: str, v: float) -> str:
    if kind == "translation":
        return f"{v:g} px"
    if kind == "rotation":
        return f"{v:g} deg"
    return f"x{v:g}"


def findings(result, small: float = 0.5, stable_share: float = 0.8,
             wide_angle: float = 90.0) -> List[Finding]:
    """Check the paper's three observations on Fig. 5 (Section 4.4) against the numbers.

    1. "Small transformations have a dramatic effect in the first layer of the
       model, but a lesser impact at the top feature layer" -- for each kind: over
       the small transforms (not the identity, and at most ``small`` of the way
       to the largest; for rotation, at most ``small`` x 180 degrees from 0), the
       mean *relative* distance at the top layer is below that at the bottom layer.
    2. "The network output is stable to translations and scalings" -- for
       translation and for scale: the most probable class stays the true one for at
       least ``stable_share`` of all (image, value) pairs.
    3. "In general, the output is not invariant to rotation" -- the most probable
       class stays the true one for less than ``stable_share`` of the pairs whose
       angle is at least ``wide_angle`` degrees from 0.

    The criteria are fixed before looking; a finding that fails is reported as such.

    Args:
        result: a :class:`SceneInvariance`, or ``{kind: InvarianceCurves}``.

    Returns:
        a list of :class:`Finding`, claim 1 for each kind present, then claims 2 and 3.
    """
    curves = _curves_of(result)
    out: List[Finding] = []
    c1 = ("Small transformations change layer 1 a lot and layer 7 less "
          "(\"a dramatic effect in the first layer ... a lesser impact at the top feature layer\")")
    for kind in KINDS:
        if kind not in curves:
            continue
        c = curves[kind]
        m = _magnitude(kind, c.values)
        sel = (m > 0) & (m <= small + 1e-9)
        lo, hi = c.layers[0], c.layers[-1]
        crit = (f"mean distance / norm of the original's features, over the transforms up to "
                f"{small:.0%} of the largest: {hi} below {lo}")
        if not sel.any():
            out.append(Finding(c1, kind, False, crit, "no small transformation among the values"))
            continue
        r_lo = float(np.nanmean(c.relative[0][:, sel]))
        r_hi = float(np.nanmean(c.relative[-1][:, sel]))
        first = int(np.argmin(np.where(m > 0, m, np.inf)))
        full_lo = np.nanmax(c.relative[0], axis=1)
        full_hi = np.nanmax(c.relative[-1], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            on_lo = float(np.nanmean(c.relative[0][:, first] / full_lo))
            on_hi = float(np.nanmean(c.relative[-1][:, first] / full_hi))
        ev = (f"{lo}: {r_lo:.3f}, {hi}: {r_hi:.3f} (ratio {r_hi / r_lo:.2f}); at the smallest "
              f"transform ({_fmt_value(kind, c.values[first])}) {lo} has made {on_lo:.0%} of its "
              f"largest change over the range, {hi} {on_hi:.0%}") if r_lo > 0 else \
            f"{lo}: {r_lo:.3f}, {hi}: {r_hi:.3f}"
        out.append(Finding(c1, kind, bool(r_hi < r_lo), crit, ev))
    c2 = "The output is stable to translation and scaling"
    for kind in ("translation", "scale"):
        if kind not in curves:
            continue
        c = curves[kind]
        share = float(c.correct.mean())
        crit = f"top-1 stays the true class for at least {stable_share:.0%} of the transformed images"
        ev = (f"top-1 correct for {share:.0%} of {c.correct.size}; true-class probability "
              f"{np.mean(c.prob):.2f} on average (originals {np.mean(c.original_prob):.2f}), "
              f"lowest {np.min(c.prob):.2f}")
        out.append(Finding(c2, kind, bool(share >= stable_share), crit, ev))
    if "rotation" in curves:
        c = curves["rotation"]
        c3 = "The output is not invariant to rotation"
        a = _magnitude("rotation", c.values) * 180.0
        sel = a >= wide_angle - 1e-9
        crit = (f"top-1 stays the true class for less than {stable_share:.0%} of the images rotated "
                f"by {wide_angle:g} degrees or more")
        if not sel.any():
            out.append(Finding(c3, "rotation", False, crit,
                               f"no angle of {wide_angle:g} degrees or more among the values"))
        else:
            share = float(c.correct[:, sel].mean())
            ev = (f"top-1 correct for {share:.0%} of {c.correct[:, sel].size}; true-class probability "
                  f"{np.mean(c.prob[:, sel]):.2f} on average there (originals "
                  f"{np.mean(c.original_prob):.2f}); per image "
                  + ", ".join(f"{x:.0%}" for x in c.correct[:, sel].mean(1)))
            out.append(Finding(c3, "rotation", bool(share < stable_share), crit, ev))
    return out


def distance_rows(result) -> List[tuple]:
    """Rows ``(kind, layer, mean distance, mean relative distance, relative distance at the
    smallest transform, at the largest)`` over the images and the non-identity values,
    for the book's table beside Fig. 5 (the paper plots the raw distance)."""
    rows = []
    for kind, c in _curves_of(result).items():
        m = _magnitude(kind, c.values) if kind in TRANSFORMS else np.ones(len(c.values))
        moved = m > 0
        if not moved.any():
            continue
        first = int(np.argmin(np.where(moved, m, np.inf)))
        last = int(np.argmax(m))
        for k, layer in enumerate(c.layers):
            rows.append((kind, layer, float(np.mean(c.distance[k][:, moved])),
                         float(np.nanmean(c.relative[k][:, moved])),
                         float(np.nanmean(c.relative[k][:, first])),
                         float(np.nanmean(c.relative[k][:, last]))))
    return rows


# --------------------------------------------------------------------------------------------
# the figure


def _strip(images: np.ndarray, cols: Sequence[int], colors, pad: int = 2) -> np.ndarray:
    """(N, V, h, w, 3) uint8 -> one float image: a row per image (framed in its colour),
    a column per chosen value."""
    n, _, h, w, _ = images.shape
    k = len(cols)
    out = np.ones((n * (h + 2 * pad) + (n - 1), k * (w + 2 * pad) + (k - 1), 3), np.float32)
    for r in range(n):
        for j, c in enumerate(cols):
            y, x = r * (h + 2 * pad + 1), j * (w + 2 * pad + 1)
            out[y:y + h + 2 * pad, x:x + w + 2 * pad] = colors[r][:3]
            out[y + pad:y + pad + h, x + pad:x + pad + w] = images[r, c] / 255.0
    return out


def figure(result, relative: bool = True, examples: int = 5, names: Optional[Sequence[str]] = None,
           title: str = ""):
    """Fig. 5: a row per transformation (a: translation, b: scale, c: rotation) and four
    columns: 1, the images transformed (``examples`` values from the smallest to the
    largest, a row per image framed in its colour); 2, the layer-1 distance; 3, the
    layer-7 distance (the first and the last of ``layers``); 4, the probability of the
    true class; a line per image.

    Args:
        result: a :class:`SceneInvariance` or ``{kind: InvarianceCurves}``.
        relative: plot the distance over the norm of the original's features (so that
            (b) and (c) share a scale), else the raw Euclidean distance, as the paper does.
        examples: how many values column (a) shows.
        names: a label per image (default: the class names of a SceneInvariance).
        title: the figure's title.

    Returns:
        a matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    curves = _curves_of(result)
    if names is None and isinstance(result, SceneInvariance):
        names = result.class_names
    kinds = [k for k in KINDS if k in curves] + [k for k in curves if k not in KINDS]
    fig, axes = plt.subplots(len(kinds), 4, figsize=(15, 3.3 * len(kinds)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.25, 1, 1, 1]})
    colors = plt.get_cmap("tab10").colors
    for r, kind in enumerate(kinds):
        c = curves[kind]
        n = c.prob.shape[0]
        k = min(examples, len(c.values))
        cols = np.unique(np.round(np.linspace(0, len(c.values) - 1, k)).astype(int))
        axis = TRANSFORMS[kind].axis if kind in TRANSFORMS else kind
        ax = axes[r, 0]
        if c.images is not None:
            img = _strip(c.images, cols, [colors[i % 10] for i in range(n)])
            ax.imshow(img)
            w = c.images.shape[3] + 5
            ax.set_xticks([(j + 0.5) * w - 0.5 for j in range(len(cols))])
            ax.set_xticklabels([f"{c.values[j]:g}" for j in cols], fontsize=8)
            h = c.images.shape[2] + 5
            ax.set_yticks([(i + 0.5) * h - 0.5 for i in range(n)])
            ax.set_yticklabels([names[i] if names is not None else f"image {i}" for i in range(n)],
                               fontsize=8)
            for i, t in enumerate(ax.get_yticklabels()):
                t.set_color(colors[i % 10])
            ax.tick_params(length=0)
            ax.set_xlabel(axis, fontsize=9)
        else:
            ax.axis("off")
        ax.set_title(f"({'abc'[r] if r < 3 else r}1) {kind}: the images", fontsize=10)
        data = c.relative if relative else c.distance
        ylab = "||f(x') - f(x)|| / ||f(x)||" if relative else "||f(x') - f(x)||"
        ymax = float(np.nanmax(data[[0, -1]])) * 1.05 if np.isfinite(np.nanmax(data)) else 1.0
        for col, li, name in ((1, 0, "layer 1"), (2, len(c.layers) - 1, "layer 7")):
            ax = axes[r, col]
            for i in range(n):
                ax.plot(c.values, data[li, i], "o-", ms=2.5, lw=1.2, color=colors[i % 10])
            ax.set_title(f"({'abc'[r] if r < 3 else r}{col + 1}) {name} ({c.layers[li]}): distance",
                         fontsize=10)
            ax.set_xlabel(axis, fontsize=9)
            ax.set_ylabel(ylab, fontsize=9)
            if relative:
                ax.set_ylim(0, ymax or 1.0)
            ax.grid(alpha=0.3)
        ax = axes[r, 3]
        for i in range(n):
            label = names[i] if names is not None else f"image {i}"
            ax.plot(c.values, c.prob[i], "o-", ms=2.5, lw=1.2, color=colors[i % 10], label=label)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"({'abc'[r] if r < 3 else r}4) probability of the true class", fontsize=10)
        ax.set_xlabel(axis, fontsize=9)
        ax.set_ylabel("P(true class)", fontsize=9)
        ax.grid(alpha=0.3)
        if kind == "rotation":
            for a in axes[r, 1:]:
                a.set_xticks(np.arange(0, 361, 90))
    handles, labels = axes[0, 3].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    return fig
