"""The three transformations of Fig. 5 (Zeiler & Fergus 2014, Section 4.4).

Fig. 5 has one row per transformation: vertical translation (-60 to +60 px at 224 px),
scale (1 to 1.8) and rotation (0 to 350 degrees) (:data:`TRANSFORMS`, :func:`default_values`).
Two ways to transform an image:

* on the generated scenes (:func:`scene_variants`), the image is *re-rendered*
  from its recipe (:class:`zfcore.data.scenes.SceneSpec`) with its labelled
  object moved, scaled or rotated on the very same background, the other
  objects unchanged (:func:`transform_spec`); then, as evaluation does (Section 3),
  the per-pixel training mean is subtracted and the centre crop the model takes
  is cut out (:func:`scene_inputs`). No border, no black corner, no crop of the
  background enters the picture; only the object changes.
* on any other image (:func:`warp_variants`), the whole picture is warped
  (an affine map about its centre, bilinear); the pixels that come from outside
  the picture are filled with a constant: 0 for a mean-subtracted image (that is,
  the mean), mid-grey 128 for a uint8 image.

:mod:`zfcore.invariance` measures the features of the transformed images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from .data.scenes import render_scene
from .data.transforms import center_crop

__all__ = ["KINDS", "TRANSFORMS", "Transform", "check_kind", "check_values", "magnitude", "default_values",
           "labelled_object", "transform_spec", "scene_variants", "scene_inputs", "warp_variants"]

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


def check_kind(kind: str) -> Transform:
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
    check_kind(kind)
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


def check_values(kind: str, values) -> np.ndarray:
    check_kind(kind)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence of numbers, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite numbers, got {v.tolist()}")
    if kind == "scale" and np.any(v <= 0):
        raise ValueError(f"scale factors must be > 0, got {v.tolist()}")
    return v


def magnitude(kind: str, values: np.ndarray) -> np.ndarray:
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
    check_values(kind, [value])
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
    v = check_values(kind, values)
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

    Equal to :func:`zfcore.data.transforms.preprocess` followed by
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
    v = check_values(kind, values)
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
