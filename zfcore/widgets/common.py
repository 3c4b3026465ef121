"""What the explorers share: PNG encoding, the checks of a split and layers, the model's view
of a split, ipywidgets."""
from __future__ import annotations

import base64
import html as _html
import io
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.splits import SPLITS, load_split
from ..mining import default_layers
from ..runs import preset_of
from ..view import ModelView

__all__ = ["png_bytes", "decode_png", "check_split", "check_layers", "setup", "ipywidgets", "gallery_block", "pick_examples"]


def png_bytes(img: np.ndarray, compress_level: int = 1) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (fast, lossless compression)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG",
                                                                     compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W, 3) uint8 (for tests and checks)."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _inline(png: bytes, max_bytes: int) -> Tuple[str, bytes]:
    """``(mime, bytes)`` to inline: the PNG itself, or above ``max_bytes`` a JPEG of it (quality 88):
    a default-scale explorer draws images of millions of pixels, and the page carries three."""
    if len(png) <= max_bytes:
        return "image/png", png
    from PIL import Image
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="JPEG", quality=88)
    return ("image/jpeg", buf.getvalue()) if buf.tell() < len(png) else ("image/png", png)


def gallery_block(figures: Iterable[Tuple[Sequence[bytes], str, str]], kind: str,
                  max_bytes: int = 400_000) -> str:
    """An explorer's static gallery: ``<div class="zf-gallery zf-gallery-KIND">`` of one
    ``<figure>`` per example, ``(pngs, caption_html, alt)``: its PNGs inline (side by side; one over
    ``max_bytes`` as a JPEG), each with the alt text ``alt`` in words, the caption (HTML, as the
    explorer writes it) below them. Styled by ``book/_static/zf.css``; ``book/_static/zf.js`` links
    each image to a full-size copy."""
    parts = [f'<div class="zf-gallery zf-gallery-{_html.escape(kind)}">']
    for pngs, caption, alt in figures:
        imgs = ""
        for png in pngs:
            mime, data = _inline(png, max_bytes)
            imgs += (f'<img alt="{_html.escape(alt, quote=True)}" '
                     f'src="data:{mime};base64,{base64.b64encode(data).decode()}"/>')
        parts.append(f"<figure>{imgs}<figcaption>{caption}</figcaption></figure>")
    parts.append("</div>")
    return "\n".join(parts)


def pick_examples(candidates: Sequence[int], n: int, exclude: Iterable[int] = (),
                  labels: Optional[Sequence[int]] = None) -> List[int]:
    """``n`` of ``candidates`` not in ``exclude`` (e.g. the images the page's figures already
    show), in their order: with ``labels`` (a class per index), first one per class not shown yet
    (the classes of ``exclude`` count as shown), then the rest. The examples of a static gallery.
    ValueError when none is left."""
    if int(n) < 1:
        raise ValueError(f"a gallery needs at least one example, got n={n}")
    skip = {int(i) for i in exclude}
    left = [int(i) for i in candidates if int(i) not in skip]
    if not left:
        raise ValueError(f"no example left for the gallery: every candidate is excluded ({sorted(skip)[:12]})")
    if labels is None:
        return left[:int(n)]
    seen = {int(labels[i]) for i in skip if 0 <= i < len(labels)}
    first = []
    for i in left:
        if int(labels[i]) not in seen and len(first) < int(n):
            seen.add(int(labels[i]))
            first.append(i)
    rest = [i for i in left if i not in first]
    return (first + rest)[:int(n)]


def check_split(split: str) -> None:
    """ValueError naming the valid splits when ``split`` is not one."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def check_layers(model, layers: Optional[Sequence[str]]) -> List[str]:
    """``layers`` checked against the model's conv layers (default: all of them)."""
    valid = default_layers(model)
    if layers is None:
        return valid
    layers = list(layers)
    if not layers:
        raise ValueError(f"no layers given; the model's conv layers are: {', '.join(valid)}")
    for name in layers:
        if name not in valid:
            raise ValueError(f"unknown layer {name!r}; the model's conv layers are: {', '.join(valid)}")
    return layers


def setup(run, split: str, scale, device):
    """``(preset, view, split)`` of ``run`` over ``split``: the preset of ``scale`` (default the
    run's), a :class:`zfcore.view.ModelView` of the final model on ``device`` (default CUDA if
    available) with the run's mean at that preset's crop, and the split: a scenes ``SceneSet``, or
    at a folder scale a :class:`~zfcore.data.splits.FolderSplit` (:func:`zfcore.data.splits.load_split`)."""
    check_split(split)
    p = preset_of(run, scale)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = run.load().to(device).eval()
    view = ModelView(model, p.image_size, mean=run.mean(), classes=run.classes or None)
    return p, view, load_split(p, split, progress=False)


def ipywidgets():
    """The ipywidgets module (an ImportError saying how to install it)."""
    try:
        import ipywidgets as w
    except ImportError as e:      # pragma: no cover - an install problem
        raise ImportError("the explorers need ipywidgets (pip install ipywidgets)") from e
    return w
