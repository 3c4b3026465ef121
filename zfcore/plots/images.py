"""Images as the figures show them: filters, deconv projections and model inputs turned
into RGB in [0, 1], tiled and resized. numpy (and Pillow for resizing) only, no figure."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["filters_to_image", "normalize_projection", "tile", "as_rgb_image", "resize_tile", "to_u8", "enlarge"]


def filters_to_image(weight, pad: int = 1, cols: Optional[int] = None) -> np.ndarray:
    """Tile first-layer filters (O, 3, k, k) into one RGB image, each filter
    contrast-stretched to [0, 1] on its own (as Fig. 6 shows them)."""
    w = weight.detach().cpu().float().numpy() if hasattr(weight, "detach") else np.asarray(weight, np.float32)
    o, c, k, _ = w.shape
    if c != 3:
        raise ValueError(f"expected first-layer filters of shape (O, 3, k, k), got {w.shape}")
    cols = cols or int(np.ceil(np.sqrt(o)))
    rows = -(-o // cols)
    tile = np.ones((rows * (k + pad) + pad, cols * (k + pad) + pad, 3), np.float32)
    for i in range(o):
        f = w[i].transpose(1, 2, 0)
        lo, hi = f.min(), f.max()
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
        r, cc = divmod(i, cols)
        tile[pad + r * (k + pad): pad + r * (k + pad) + k, pad + cc * (k + pad): pad + cc * (k + pad) + k] = f
    return tile


def normalize_projection(p, percentile: float = 99.5) -> np.ndarray:
    """A deconv projection (3, h, w) as an RGB image in [0, 1]: grey where it is zero,
    scaled by its own magnitude (the ``percentile`` of |p| maps to full contrast,
    larger values are clipped), as the paper shows them."""
    a = p.detach().cpu().float().numpy() if hasattr(p, "detach") else np.asarray(p, np.float32)
    nz = np.abs(a)[np.abs(a) > 0]
    m = float(np.percentile(nz, percentile)) if nz.size else 0.0
    img = 0.5 + a / (2 * m) if m > 0 else np.full_like(a, 0.5)
    return np.clip(img.transpose(1, 2, 0), 0, 1)


def tile(images: Sequence[np.ndarray], cols: int = 3, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile equally sized (h, w, 3) images, row by row, with ``pad`` pixels between them."""
    images = list(images)
    if not images:
        raise ValueError("nothing to tile")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), fill, np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = im
    return out


def as_rgb_image(x) -> np.ndarray:
    """(3, h, w) float in model space (mean-subtracted) -> (h, w, 3) in [0, 1] for display."""
    a = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, np.float32)
    a = a.transpose(1, 2, 0)
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def resize_tile(img: np.ndarray, side: int, fill: float = 1.0) -> np.ndarray:
    """``img`` (h, w, 3) in [0, 1] scaled to fit ``side`` x ``side``, centred on ``fill``."""
    from PIL import Image
    u8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    h, w = u8.shape[:2]
    s = side / max(h, w)
    nw, nh = max(1, min(side, round(w * s))), max(1, min(side, round(h * s)))
    small = np.asarray(Image.fromarray(u8).resize((nw, nh), Image.NEAREST if s >= 1 else Image.LANCZOS),
                       np.float32) / 255.0
    out = np.full((side, side, 3), fill, np.float32)
    y, x = (side - nh) // 2, (side - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


def to_u8(img: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 (rounded: a float that came from uint8 / 255 goes back exactly)."""
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def enlarge(img: np.ndarray, zoom: int) -> np.ndarray:
    """Each pixel of ``img`` (h, w, ...) drawn as ``zoom`` x ``zoom`` (nearest neighbour)."""
    return img if zoom == 1 else img.repeat(zoom, 0).repeat(zoom, 1)
