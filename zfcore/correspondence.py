"""Correspondence analysis (Zeiler & Fergus 2014, Section 4.3, Table 1).

Does the network relate the same part of different images of one class, e.g.
the eyes of different dogs? The paper takes 5 frontal dog images, occludes the
same part (the right eye, the left eye, the nose) in each, or a random region,
and measures how *consistently* the occlusion changes the features of layer l:

* ``eps_i = x_i - x~_i``, the change of image ``i``'s layer-l features
  (original minus occluded);
* ``Delta_l = sum over pairs i != j of H(sign(eps_i), sign(eps_j))``, ``H`` the
  Hamming distance.

A lower ``Delta`` means the part is handled more consistently across images.
Table 1 finds the eyes and nose below random regions at layer 5 (0.067-0.079
against 0.107) and only slightly below at layer 7 (0.068-0.069 against 0.073).

Choices where the paper is silent (all arguments of :func:`correspondence_table`):

* ``H`` is the *normalised* Hamming distance, the fraction of feature dimensions
  whose signs differ (the paper's values, about 0.1, are of that size), and
  ``Delta`` is reported as the *mean* over the ordered pairs ``i != j``: the
  paper's sum divided by the number of pairs (20 for 5 images). The ordering
  of parts and random regions is unaffected. A change smaller than ``rtol``
  times the layer's largest activation is rounding and counts as no change
  (sign 0).
* Layer 5 is the output of the conv5 block after rectification and pooling
  (``pool5``, the 9216 inputs of fc6 in Fig. 3); layer 7 is fc7 after its ReLU
  (``relu7``). Both are arguments, so a torchvision AlexNet (``"features.12"``,
  ``"classifier.5"``) works too.
* Images: our scenes' ``"dog face"`` class (OpenMoji 1F436, a frontal dog
  face). Its parts are located from the glyph's geometry (:data:`FACE_PARTS`:
  the centroids of the eye and nose blobs of the rasterised sprite) and carried
  into every scene by its recipe (:func:`zfcore.data.scenes.object_point`:
  scale, rotation, position) and into the centre crop the model sees.
  *Left* and *right* are as seen in the image (the "left eye" is the dog's
  right eye).
* The occluder is a square of side ``part_size`` (0.2) times the object's size
  (the glyph's longer side), set to ``fill`` = 0 in the mean-subtracted input,
  i.e. to the per-pixel mean. Random occluders have the same side; ``"random"``
  puts each one at a uniformly random position in the model's input (the
  paper's "random regions"), ``"random on object"`` (a stricter control) inside
  the object's box.
* Repeated draws: each draw picks ``n_images`` (5) images of the class from the
  test split (those whose parts all lie inside the crop) and new random
  positions; the table gives the mean and standard deviation (ddof=1) of
  ``Delta`` over ``draws`` draws. Same seed, same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .data.scenes import SOURCE_CLASSES, SceneSpec, load_scenes, object_point
from .data.transforms import center_crop
from .activations import layer_activations
from .presets import get_preset
from .runs import preset_of
from .view import ModelView

__all__ = ["FACE_PARTS", "PROFILE_GLYPHS", "PART_SIZE", "RANDOM_OCCLUSIONS", "PAPER_TABLE1", "PAPER_LAYERS",
           "class_glyphs", "face_object", "part_point", "part_box", "random_box", "occlude", "hamming_matrix",
           "delta_measure", "delta", "CorrespondenceTable", "correspondence_table", "has_parts"]

# The parts of each face glyph, as fractions (u, v) of the sprite's width and height
# (zfcore.data.scenes.glyph, 128 px): the centroids of the dark blobs of the eyes and
# the nose of OpenMoji 1F436 (pixels with alpha > 128 and every channel < 90, labelled
# into connected components). "left" and "right" as seen in the image.
FACE_PARTS: Dict[str, Dict[str, Tuple[float, float]]] = {
    "dog face": {"left eye": (0.364, 0.364), "right eye": (0.673, 0.366), "nose": (0.507, 0.562)},
}

# OpenMoji's other drawings of a face class, and why they cannot give it parts: every dog it
# ships besides the frontal face 1F436 is drawn in profile, one eye showing, so the paper's
# three parts (both eyes and the nose) cannot be placed on them (its extras, E000-E435, hold no
# dog). Table 1's dogs are therefore one drawing; chapter 07 says so.
PROFILE_GLYPHS: Dict[str, Dict[str, str]] = {
    "dog face": {"1F415": "dog", "1F429": "poodle", "1F9AE": "guide dog", "1F415-200D-1F9BA": "service dog"},
}

# The occluder's side as a fraction of the object's size (its glyph's longer side).
# On the dog face: a square about 4 eye diameters wide around the eye; the two eye
# squares do not touch, and an eye square and the nose square barely overlap.
PART_SIZE = 0.2

RANDOM_OCCLUSIONS = ("random", "random on object")

# Table 1 of the paper: occlusion -> (layer 5, layer 7), each (mean, std).
PAPER_TABLE1: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {
    "right eye": ((0.067, 0.007), (0.069, 0.015)),
    "left eye": ((0.069, 0.007), (0.068, 0.013)),
    "nose": ((0.079, 0.017), (0.069, 0.011)),
    "random": ((0.107, 0.017), (0.073, 0.014)),
}
PAPER_LAYERS = ("layer 5", "layer 7")

Box = Tuple[int, int, int, int]


# --------------------------------------------------------------------------------------------
# where the parts are


def _check_face(cls: str) -> Dict[str, Tuple[float, float]]:
    if cls not in FACE_PARTS:
        raise ValueError(f"no parts are defined for class {cls!r}; face classes with parts: "
                         f"{', '.join(FACE_PARTS)}")
    return FACE_PARTS[cls]


def _check_part(cls: str, part: str) -> Tuple[float, float]:
    parts = _check_face(cls)
    if part not in parts:
        raise ValueError(f"unknown part {part!r} of {cls!r}; its parts are: {', '.join(parts)}")
    return parts[part]


def class_glyphs(cls: str, classes=None) -> Tuple[str, ...]:
    """The OpenMoji glyphs the scenes draw class ``cls`` with, read from the generator's class table
    (``classes``, default :data:`zfcore.data.scenes.SOURCE_CLASSES`: one codepoint, or several)."""
    codes = (SOURCE_CLASSES if classes is None else classes)[cls]
    return (codes,) if isinstance(codes, str) else tuple(dict.fromkeys(codes))


def face_object(spec: SceneSpec, cls: str = "dog face"):
    """The object of ``spec`` drawn with a glyph of class ``cls`` (:func:`class_glyphs`).

    Raises:
        ValueError: ``cls`` has no parts defined, or the scene holds no such object.
    """
    _check_face(cls)
    codes = class_glyphs(cls)
    for obj in reversed(spec.objects):                  # the last drawn is on top
        if obj.glyph in codes:
            return obj
    raise ValueError(f"the scene holds no {cls!r} object (its glyphs: "
                     f"{', '.join(o.glyph for o in spec.objects)})")


def _crop_offset(stored_size: int, image_size: int) -> int:
    # zfcore.data.transforms.center_crop takes rows/columns from (S - s) // 2
    if image_size > stored_size:
        raise ValueError(f"the model's input {image_size} is larger than the stored images "
                         f"({stored_size})")
    return (stored_size - image_size) // 2


def part_point(spec: SceneSpec, part: str, stored_size: int, image_size: int,
               cls: str = "dog face") -> Tuple[float, float]:
    """Where ``part`` of the ``cls`` object of scene ``spec`` is in the model's input.

    The point of :data:`FACE_PARTS` is carried through the object's scale,
    rotation and position (:func:`zfcore.data.scenes.object_point`) into the
    stored image of side ``stored_size``, then into its centre crop of side
    ``image_size`` (what evaluation feeds the model, :func:`zfcore.train.evaluate`).

    Returns:
        ``(x, y)`` in continuous pixel coordinates of the crop (may lie outside it).
    """
    u, v = _check_part(cls, part)
    x, y = object_point(face_object(spec, cls), stored_size, u, v)
    off = _crop_offset(stored_size, image_size)
    return x - off, y - off


def _side(spec: SceneSpec, stored_size: int, cls: str, part_size: float) -> int:
    if not 0 < part_size <= 1:
        raise ValueError(f"part_size is a fraction of the object's size in (0, 1], got {part_size!r}")
    return max(1, int(round(part_size * face_object(spec, cls).size * stored_size)))


def _clip_box(x0: int, y0: int, side: int, image_size: int) -> Box:
    x1, y1 = x0 + side, y0 + side
    return (max(0, x0), max(0, y0), min(image_size, x1), min(image_size, y1))


def part_box(spec: SceneSpec, part: str, stored_size: int, image_size: int, cls: str = "dog face",
             part_size: float = PART_SIZE) -> Box:
    """The occluder over ``part``: a square of side ``round(part_size * object size * stored_size)``
    pixels centred on the part, clipped to the crop.

    Returns:
        ``(x0, y0, x1, y1)`` in pixels of the model's input (rows ``y0:y1``, columns ``x0:x1``).
    """
    side = _side(spec, stored_size, cls, part_size)
    x, y = part_point(spec, part, stored_size, image_size, cls)
    return _clip_box(int(round(x - side / 2)), int(round(y - side / 2)), side, image_size)


def random_box(rng: np.random.Generator, side: int, image_size: int,
               within: Optional[Sequence[float]] = None) -> Box:
    """A square occluder of ``side`` pixels at a uniformly random position.

    Args:
        rng: the source of randomness.
        side: the square's side in pixels.
        image_size: the side of the model's input.
        within: optional ``(x0, y0, x1, y1)`` region (e.g. the object's box) the
            square must lie in; where the region is narrower than ``side`` the
            square is centred on it. Default: anywhere in the input.
    Returns:
        ``(x0, y0, x1, y1)`` in pixels of the model's input, inside it.
    """
    side = min(int(side), image_size)
    lo = [0, 0]
    hi = [image_size - side, image_size - side]
    if within is not None:
        for a in range(2):
            r0 = int(np.ceil(max(0.0, within[a])))
            r1 = int(np.floor(min(float(image_size), within[a + 2])))
            if r1 - r0 >= side:
                lo[a], hi[a] = r0, r1 - side
            else:
                c = int(round((r0 + r1) / 2 - side / 2))
                lo[a] = hi[a] = min(max(0, c), image_size - side)
    x0 = int(rng.integers(lo[0], hi[0] + 1))
    y0 = int(rng.integers(lo[1], hi[1] + 1))
    return (x0, y0, x0 + side, y0 + side)


def occlude(images: torch.Tensor, boxes, fill: float = 0.0) -> torch.Tensor:
    """Copies of ``images`` with one box each set to ``fill`` (the occluder, Fig. 8).

    Args:
        images: (N, C, H, W) float, mean-subtracted (so ``fill=0`` is the mean).
        boxes: (N, 4) ``(x0, y0, x1, y1)`` integer pixel boxes, one per image.
        fill: the occluder's value.
    Returns:
        (N, C, H, W): ``images`` outside the boxes, ``fill`` inside.
    Raises:
        ValueError: on a shape mismatch.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(b) != images.shape[0]:
        raise ValueError(f"{len(b)} boxes for {images.shape[0]} images")
    out = images.clone()
    for i, (x0, y0, x1, y1) in enumerate(b.tolist()):
        out[i, :, max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = fill
    return out


# --------------------------------------------------------------------------------------------
# the measure


def hamming_matrix(signs: torch.Tensor) -> torch.Tensor:
    """Normalised Hamming distances between rows of sign vectors.

    Args:
        signs: (N, D) with values in {-1, 0, 1}.
    Returns:
        (N, N) float64: entry ``[i, j]`` is the fraction of the D dimensions where
        rows i and j differ.
    """
    if signs.dim() != 2:
        raise ValueError(f"expected (N, D) signs, got {tuple(signs.shape)}")
    d = signs.shape[1]
    same = torch.zeros(signs.shape[0], signs.shape[0], dtype=torch.float64)
    for v in (-1, 0, 1):
        b = (signs == v).double()
        same += b @ b.T
    return 1.0 - same / max(1, d)


def delta_measure(eps: torch.Tensor, tol: float = 0.0) -> float:
    """Section 4.3's ``Delta`` of a set of feature changes.

    ``Delta = mean over ordered pairs i != j of H(sign(eps_i), sign(eps_j))``,
    ``H`` the normalised Hamming distance: the paper's sum over pairs divided
    by their number ``N (N - 1)``.

    Args:
        eps: (N, ...) feature changes ``x_i - x~_i``, one row per image (flattened).
        tol: changes with ``|eps| <= tol`` count as 0.
    Returns:
        ``Delta`` in [0, 1].
    Raises:
        ValueError: fewer than 2 images.
    """
    n = eps.shape[0]
    if n < 2:
        raise ValueError(f"Delta needs at least 2 images, got {n}")
    e = eps.reshape(n, -1)
    s = torch.sign(e).to(torch.int8)
    s[e.abs() <= tol] = 0
    h = hamming_matrix(s)
    return float(h.sum() / (n * (n - 1)))              # the diagonal is 0


def _features(model: nn.Module, x: torch.Tensor, layers: Sequence[str], batch_size: int = 256,
              with_shapes: bool = False):
    """(N, D) float64 flattened outputs of ``layers`` for images ``x``, on the CPU
    (and, ``with_shapes``, each layer's output shape for one image)."""
    dev = next(model.parameters()).device
    out: Dict[str, List[torch.Tensor]] = {l: [] for l in layers}
    shapes: Dict[str, Tuple[int, ...]] = {}
    for s in range(0, x.shape[0], batch_size):
        acts = layer_activations(model, x[s:s + batch_size].to(dev), list(layers))
        for l in layers:
            shapes[l] = tuple(acts[l].shape[1:])
            out[l].append(acts[l].reshape(acts[l].shape[0], -1).double().cpu())
    feats = {l: torch.cat(v) for l, v in out.items()}
    return (feats, shapes) if with_shapes else feats


def delta(model: nn.Module, originals: torch.Tensor, occluded: torch.Tensor, layer: str,
          rtol: float = 1e-5) -> float:
    """``Delta_l`` of Section 4.3 for one set of images and their occluded copies.

    Args:
        model: a chain (ours, torchvision's AlexNet or VGG; see
            :func:`zfcore.activations.layer_activations`).
        originals: (N, 3, H, W) model inputs, N >= 2.
        occluded: (N, 3, H, W) the same images, occluded.
        layer: module path of layer l (``"pool5"``, ``"relu7"``, ``"features.12"`` ...).
        rtol: changes below ``rtol`` times the largest activation of the
            originals at that layer are rounding and count as 0.
    Returns:
        ``Delta_l`` (see :func:`delta_measure`).
    Raises:
        ValueError: mismatched shapes, fewer than 2 images, an unknown layer.
    """
    if originals.shape != occluded.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and occluded {tuple(occluded.shape)} "
                         f"differ in shape")
    if originals.shape[0] < 2:
        raise ValueError(f"Delta needs at least 2 images, got {originals.shape[0]}")
    f = _features(model, torch.cat([originals, occluded]), [layer])[layer]
    n = originals.shape[0]
    x, xt = f[:n], f[n:]
    return delta_measure(x - xt, tol=rtol * float(x.abs().max()))


# --------------------------------------------------------------------------------------------
# Table 1


@dataclass
class CorrespondenceTable:
    """Table 1 on one model: ``Delta`` per occlusion, layer and draw.

    Attributes:
        cls, split, scale: the class, the split and the scale the images came from.
        layers: the layers' module paths (layer 5, layer 7).
        occlusions: the rows: part names and random kinds.
        deltas: (len(occlusions), len(layers), draws) ``Delta`` of every draw.
        pool: (P,) indices into the split of the candidate images.
        chosen: (draws, n_images) positions into ``pool`` of each draw's images.
        boxes: occlusion -> (draws, n_images, 4) occluders ``(x0, y0, x1, y1)``
            in pixels of the model's input.
        crops: (P, s, s, 3) uint8 the centre crops of the pool images (what the model sees).
        mean_crop: (s, s, 3) float32, the centre crop of the per-pixel mean.
        unchanged: (len(occlusions), len(layers), draws) the share of the layer's
            features that the occlusion left unchanged (sign 0), averaged over the images.
        shapes: layer -> the shape of its output for one image.
        n_images, part_size, fill, seed: the settings.
        specs: the recipes of the pool images (:class:`zfcore.data.scenes.SceneSpec`), what
            they share and how they differ (:func:`zfcore.correspondence_report.easier_text`).
    """
    cls: str
    split: str
    scale: str
    layers: Tuple[str, ...]
    occlusions: Tuple[str, ...]
    deltas: np.ndarray
    pool: np.ndarray
    chosen: np.ndarray
    boxes: Dict[str, np.ndarray] = field(repr=False)
    crops: np.ndarray = field(repr=False)
    mean_crop: np.ndarray = field(repr=False)
    unchanged: Optional[np.ndarray] = field(default=None, repr=False)
    shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    n_images: int = 5
    part_size: float = PART_SIZE
    fill: float = 0.0
    seed: int = 0
    specs: List[SceneSpec] = field(default_factory=list, repr=False)

    @property
    def draws(self) -> int:
        return int(self.deltas.shape[2])

    def _index(self, occlusion: str, layer: str) -> Tuple[int, int]:
        if occlusion not in self.occlusions:
            raise ValueError(f"no row {occlusion!r}; rows: {', '.join(self.occlusions)}")
        if layer not in self.layers:
            raise ValueError(f"no layer {layer!r}; layers: {', '.join(self.layers)}")
        return self.occlusions.index(occlusion), self.layers.index(layer)

    def values(self, occlusion: str, layer: str) -> np.ndarray:
        """(draws,) ``Delta`` of every draw."""
        i, j = self._index(occlusion, layer)
        return self.deltas[i, j]

    def mean(self, occlusion: str, layer: str) -> float:
        return float(self.values(occlusion, layer).mean())

    def std(self, occlusion: str, layer: str) -> float:
        """Standard deviation over the draws (ddof=1; 0 for a single draw)."""
        v = self.values(occlusion, layer)
        return float(v.std(ddof=1)) if len(v) > 1 else 0.0

    def rows(self, digits: int = 3) -> List[Tuple[str, ...]]:
        """``(occlusion, "mean +- std" per layer)`` rows, as Table 1 prints them."""
        return [(o, *[f"{self.mean(o, l):.{digits}f} ± {self.std(o, l):.{digits}f}" for l in self.layers])
                for o in self.occlusions]


def _preset_of(run, scale):
    if scale is None and run is None:
        raise ValueError("give a run or a scale")
    return preset_of(run, scale)


def correspondence_table(run=None, cls: str = "dog face",
                         occlusions: Sequence[str] = ("right eye", "left eye", "nose", "random"),
                         layers: Sequence[str] = ("pool5", "relu7"), n_images: int = 5,
                         draws: int = 20, split: str = "test", part_size: float = PART_SIZE,
                         fill: float = 0.0, seed: int = 0, rtol: float = 1e-5, *, scale=None,
                         model: Optional[nn.Module] = None, mean: Optional[torch.Tensor] = None,
                         device=None) -> CorrespondenceTable:
    """Table 1 (Section 4.3): ``Delta`` at ``layers`` for parts and random regions.

    For each of ``draws`` draws: ``n_images`` images of class ``cls`` from the
    ``split`` of the scenes (those whose parts all lie inside the model's centre
    crop), each occluded at every part of ``occlusions`` and, for
    ``"random"``/``"random on object"``, at a new random position; ``Delta`` of
    every occlusion and layer (:func:`delta`). The same images serve every row of
    one draw. Same arguments, same numbers.

    Args:
        run: a :class:`zfcore.runs.Run` (its final model, mean and preset), or
            None when ``model``, ``mean`` and ``scale`` are given.
        cls: a class with parts in :data:`FACE_PARTS` that the model was trained on.
        occlusions: rows: part names of ``cls`` and/or :data:`RANDOM_OCCLUSIONS`.
        layers: module paths of the layers compared (layer 5 and layer 7).
        n_images: images per draw (5 in the paper), at least 2.
        draws: repetitions for the mean and standard deviation.
        split: the scenes split the images come from.
        part_size: occluder side as a fraction of the object's size.
        fill: the occluder's value in the mean-subtracted input (0: the mean).
        seed: seeds the images' and random occluders' draws.
        rtol: see :func:`delta`.
        scale: the preset (default: the run's).
        model, mean: override the run's final model and (3, S, S) per-pixel mean.
        device: where the model runs (default: where its parameters are).
    Returns:
        a :class:`CorrespondenceTable`.
    Raises:
        ValueError: an unknown class (the message lists the face classes), part,
            random kind or layer; ``n_images < 2``; ``draws < 1``; fewer usable
            images of the class than ``n_images``; a folder scale (``imagenet``), whose
            images carry no part positions (:func:`has_parts`).
    """
    parts, occlusions, layers = _check_request(cls, occlusions, layers, n_images, draws)
    n_images, draws = int(n_images), int(draws)
    p = _preset_of(run, scale)
    view, ds = _view_and_scenes(run, p, cls, split, model, mean, device)
    S, s = ds.stored_size, p.image_size
    pool = _pool(ds, cls, parts, s, n_images, split)
    P = len(pool)
    x = view.inputs(ds.images[pool], device="cpu").contiguous()            # (P, 3, s, s)
    part_rows = [o for o in occlusions if o in parts]
    # the parts' occluders are fixed per image: every pool image, once
    fixed_boxes = {o: np.array([part_box(ds.specs[i], o, S, s, cls, part_size) for i in pool.tolist()],
                               np.int64).reshape(P, 4) for o in part_rows}
    chosen, rand_boxes = _draws(ds, pool, cls, occlusions, part_size, n_images, draws, seed, s)
    # one forward pass over every image the table needs
    batch = [x] + [occlude(x, fixed_boxes[o], fill) for o in part_rows]
    for o, b in rand_boxes.items():
        batch.append(occlude(x[chosen.reshape(-1)], b.reshape(-1, 4), fill))
    feats, shapes = _features(view.model, torch.cat(batch), layers, with_shapes=True)
    deltas, unchanged = _deltas(feats, occlusions, part_rows, list(rand_boxes), chosen, P, rtol)
    boxes = {o: fixed_boxes[o][chosen] for o in part_rows}
    boxes.update(rand_boxes)
    mean_crop = center_crop(view.mean.float(), s).permute(1, 2, 0).numpy().copy()
    return CorrespondenceTable(cls=cls, split=split, scale=p.name, layers=layers, occlusions=occlusions,
                               deltas=deltas, pool=pool, chosen=chosen, boxes=boxes,
                               crops=view.display(ds.images[pool]).copy(), mean_crop=mean_crop,
                               unchanged=unchanged, shapes=shapes, n_images=n_images, part_size=part_size,
                               fill=fill, seed=seed, specs=[ds.specs[i] for i in pool.tolist()])


def _check_request(cls: str, occlusions: Sequence[str], layers: Sequence[str], n_images: int, draws: int):
    """The class's parts and the rows and layers asked for, as tuples; ValueError naming the problem."""
    parts = _check_face(cls)
    occlusions = tuple(occlusions)
    for o in occlusions:
        if o not in parts and o not in RANDOM_OCCLUSIONS:
            raise ValueError(f"unknown occlusion {o!r}; the parts of {cls!r} are "
                             f"{', '.join(parts)}, the random kinds {', '.join(RANDOM_OCCLUSIONS)}")
    if not occlusions:
        raise ValueError("no occlusions asked for")
    layers = tuple(layers)
    if not layers:
        raise ValueError("no layers asked for")
    if isinstance(n_images, bool) or int(n_images) != n_images or n_images < 2:
        raise ValueError(f"Delta compares pairs of images: n_images must be an int >= 2, got {n_images!r}")
    if isinstance(draws, bool) or int(draws) != draws or draws < 1:
        raise ValueError(f"draws must be an int >= 1, got {draws!r}")
    return parts, occlusions, layers


def _view_and_scenes(run, p, cls: str, split: str, model, mean, device):
    """The model's view (the run's final model and mean, or those given, in eval mode) and the
    scenes' ``split``, checked to have part positions and the class."""
    if not has_parts(p):
        raise ValueError(f"the correspondence analysis occludes the same part (eyes, nose) of every "
                         f"image, so it needs each part's position in each image: the generated scenes "
                         f"carry them (each dog face's recorded position, scale and rotation), but the "
                         f"{p.name!r} scale reads your prepared folders, whose images have class labels "
                         f"only (ImageNet has no part annotations)")
    model = model if model is not None else run.load()
    mean = mean if mean is not None else run.mean()
    if device is not None:
        model = model.to(device)
    model.eval()
    ds = load_scenes(p, split, progress=False)
    if cls not in ds.classes:
        face = [c for c in FACE_PARTS if c in ds.classes]
        raise ValueError(f"class {cls!r} is not among the {len(ds.classes)} classes of the "
                         f"{p.name!r} scale; face classes with parts there: {', '.join(face) or 'none'}")
    return ModelView(model, p.image_size, mean=mean.float()), ds


def _pool(ds, cls: str, parts, s: int, n_images: int, split: str) -> np.ndarray:
    """(P,) indices of the images of the class whose parts all lie inside the crop."""
    c = ds.classes.index(cls)
    pool = []
    for i in np.flatnonzero(ds.labels == c).tolist():
        pts = [part_point(ds.specs[i], q, ds.stored_size, s, cls) for q in parts]
        if all(0 <= x < s and 0 <= y < s for x, y in pts):
            pool.append(i)
    if len(pool) < n_images:
        raise ValueError(f"only {len(pool)} {split} images of {cls!r} have all its parts inside the "
                         f"{s}x{s} crop; n_images={n_images} asked for")
    return np.asarray(pool, np.int64)


def _draws(ds, pool: np.ndarray, cls: str, occlusions, part_size: float, n_images: int, draws: int,
           seed: int, s: int):
    """Each draw's images, ``(draws, n_images)`` positions into ``pool``, and the random
    occluders, new positions every draw: kind -> ``(draws, n_images, 4)``."""
    S = ds.stored_size
    off = _crop_offset(S, s)
    sides = [_side(ds.specs[i], S, cls, part_size) for i in pool.tolist()]
    chosen = np.empty((draws, n_images), np.int64)
    rand_boxes = {o: np.empty((draws, n_images, 4), np.int64) for o in occlusions if o in RANDOM_OCCLUSIONS}
    for d in range(draws):
        chosen[d] = np.random.default_rng([seed, d]).choice(len(pool), size=n_images, replace=False)
        for o in rand_boxes:
            rng = np.random.default_rng([seed, d, 1 + RANDOM_OCCLUSIONS.index(o)])
            for k, j in enumerate(chosen[d].tolist()):
                within = None
                if o == "random on object":
                    within = ds.object_box(int(pool[j])) - off
                rand_boxes[o][d, k] = random_box(rng, sides[j], s, within)
    return chosen, rand_boxes


def _deltas(feats, occlusions, part_rows, random_rows, chosen: np.ndarray, P: int, rtol: float):
    """``Delta`` and the share of unchanged features, (len(occlusions), len(layers), draws) each,
    from the features of one pass over the originals, each part's occluded pool, and each random
    kind's occluded draws, in that order."""
    draws, n_images = chosen.shape
    orig = {l: f[:P] for l, f in feats.items()}
    occ: Dict[str, Dict[str, torch.Tensor]] = {}
    start = P
    for o in part_rows:
        occ[o] = {l: f[start:start + P] for l, f in feats.items()}
        start += P
    for o in random_rows:
        occ[o] = {l: f[start:start + draws * n_images] for l, f in feats.items()}
        start += draws * n_images
    layers = list(feats)
    deltas = np.zeros((len(occlusions), len(layers), draws))
    unchanged = np.zeros_like(deltas)
    for j, l in enumerate(layers):
        tol = rtol * float(orig[l].abs().max())
        for d in range(draws):
            idx = torch.from_numpy(chosen[d])
            for i, o in enumerate(occlusions):
                if o in random_rows:
                    xt = occ[o][l][d * n_images:(d + 1) * n_images]
                else:
                    xt = occ[o][l][idx]
                eps = orig[l][idx] - xt
                deltas[i, j, d] = delta_measure(eps, tol=tol)
                unchanged[i, j, d] = float((eps.abs() <= tol).double().mean())
    return deltas, unchanged


# --------------------------------------------------------------------------------------------
# which data have parts


def has_parts(scale) -> bool:
    """Whether ``scale``'s data locate object parts (the scenes do; the user's folders do not)."""
    return get_preset(scale).data == "scenes"
