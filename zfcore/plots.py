"""Figures and tables for the book. Every function returns a matplotlib Figure
(or an HTML string) and computes nothing the library does not already give."""
from __future__ import annotations

import html as _html
from typing import Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["html_table", "scene_gallery", "training_curves", "filter_grid", "filters_to_image"]


def html_table(rows: Iterable[Sequence], header: Sequence[str], caption: Optional[str] = None) -> str:
    """A plain HTML table (for ``IPython.display.HTML``); cells are escaped."""
    out = ['<table class="zf-table">']
    if caption:
        out.append(f"<caption>{_html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_html.escape(str(h))}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_html.escape(str(c))}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def scene_gallery(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], per_class: int = 1,
                  max_classes: Optional[int] = None, cols: int = 10, boxes: Optional[np.ndarray] = None,
                  size: float = 1.0, fontsize: float = 8):
    """A grid of scenes, ``per_class`` examples of each class, titled with the class name.

    Args:
        images: (N, S, S, 3) uint8.
        labels: (N,) class indices.
        boxes: optional (N, 4) boxes ``(x0, y0, x1, y1)`` drawn over the images.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    n_cls = len(classes) if max_classes is None else min(max_classes, len(classes))
    picks = []
    for c in range(n_cls):
        idx = np.flatnonzero(labels == c)[:per_class]
        picks.extend((c, int(i)) for i in idx)
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + fontsize / 40)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (c, i) in zip(axes.flat, picks):
        ax.imshow(images[i])
        ax.set_title(classes[c], fontsize=fontsize)
        if boxes is not None:
            x0, y0, x1, y1 = boxes[i]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
    fig.tight_layout(pad=0.3)
    return fig


def training_curves(metrics: List[dict], title: str = ""):
    """Loss, top-1 and top-5 error per epoch, train and validation; learning-rate drops marked."""
    import matplotlib.pyplot as plt
    ep = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    panels = [("loss", "train_loss", "val_loss", "cross-entropy"),
              ("top-1 error", "train_top1_err", "val_top1_err", "%"),
              ("top-5 error", "train_top5_err", "val_top5_err", "%")]
    drops = [m["epoch"] for a, m in zip(metrics, metrics[1:]) if m["lr"] < a["lr"]]
    for ax, (name, tr, va, unit) in zip(axes, panels):
        ax.plot(ep, [m[tr] for m in metrics], "o-", ms=3, label="train (random crops, dropout on)")
        ax.plot(ep, [m[va] for m in metrics], "s-", ms=3, label="validation (centre crop)")
        for d in drops:
            ax.axvline(d - 0.5, color="grey", ls=":", lw=1)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if drops:
        axes[1].text(0.98, 0.95, "dotted: learning rate / 10", transform=axes[1].transAxes,
                     ha="right", va="top", fontsize=7, color="grey")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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


def filter_grid(weight, title: str = "", size: float = 5.0, cols: Optional[int] = None):
    """A figure of the first-layer filters (see :func:`filters_to_image`)."""
    import matplotlib.pyplot as plt
    img = filters_to_image(weight, cols=cols)
    fig, ax = plt.subplots(figsize=(size, size * img.shape[0] / img.shape[1]))
    ax.imshow(img, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


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


def trimmed_pairs(projections, patches, side: int):
    """Per map, the k (projection, patch) images trimmed to the part of the field that lies
    inside the image (rows and columns where the patch is all zero are outside it),
    each resized to ``side`` pixels: lists of (h, w, 3) floats in [0, 1]."""
    out = []
    for prs, pas in zip(projections, patches):
        pairs = []
        for pr, pa in zip(prs, pas):
            pa = np.asarray(pa, np.float32)
            pa = pa / 255.0 if pa.max() > 1.0 else pa
            inside = pa.max(2) > 0
            rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            if len(rows) and len(cols):
                sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                pa, pr = pa[sl], pr[:, sl[0], sl[1]]
            pairs.append((_resize_tile(normalize_projection(pr), side, fill=0.5), _resize_tile(pa, side)))
        out.append(pairs)
    return out


def feature_grid(projections, patches, maps: Sequence[int], title: str = "", cols: int = 2,
                 cell: float = 1.6, side: int = 64):
    """Fig. 2's layout: for each feature map, its top-k deconv projections (left, a 3x3
    tile for k = 9) beside the image patches of the same activations (right).

    Args:
        projections: (M, k, 3, h, w) projections cropped to the receptive field.
        patches: (M, k, h, w, 3) uint8 or float image patches (zero outside the image).
        maps: the M feature-map indices, for the labels.
        cols: maps per row of the figure.
        side: pixels of each tile; a field larger than the image is first trimmed to
            the part inside it.
    """
    import matplotlib.pyplot as plt
    m = len(maps)
    rows = -(-m // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * cell, rows * cell * 1.08), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    pairs = trimmed_pairs(projections, patches, side)
    for i, f in enumerate(maps):
        r, c = divmod(i, cols)
        per = int(np.ceil(np.sqrt(len(pairs[i]))))
        proj = tile([p for p, _ in pairs[i]], cols=per)
        pat = tile([q for _, q in pairs[i]], cols=per)
        axes[r, 2 * c].imshow(proj, interpolation="nearest")
        axes[r, 2 * c].set_title(f"map {f}", fontsize=8, loc="left")
        axes[r, 2 * c + 1].imshow(pat, interpolation="nearest")
    fig.tight_layout(pad=0.4)
    if title:
        fig.subplots_adjust(top=1 - 0.6 / (rows * cell * 1.08))
        fig.suptitle(title)
    return fig


def _as_rgb_image(x) -> np.ndarray:
    """(3, h, w) float in model space (mean-subtracted) -> (h, w, 3) in [0, 1] for display."""
    a = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, np.float32)
    a = a.transpose(1, 2, 0)
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def method_comparison(image, rows: "dict", title: str = ""):
    """Rows of projections by method, each row one layer: the image, then one
    panel per method (e.g. deconvnet, gradient, guided backpropagation).

    Args:
        image: (H, W, 3) uint8 or (3, H, W) tensor, shown in the first column.
        rows: ``{row label: {method: (3, H, W) projection}}``.
    """
    import matplotlib.pyplot as plt
    labels = list(rows)
    methods = list(next(iter(rows.values())))
    img = np.asarray(image) if not hasattr(image, "detach") else _as_rgb_image(image)
    fig, axes = plt.subplots(len(labels), len(methods) + 1, figsize=(2.1 * (len(methods) + 1), 2.1 * len(labels)),
                             squeeze=False)
    for r, lab in enumerate(labels):
        axes[r, 0].imshow(img)
        axes[r, 0].set_ylabel(lab, fontsize=9)
        for c, meth in enumerate(methods):
            axes[r, c + 1].imshow(normalize_projection(rows[lab][meth]), interpolation="nearest")
            if r == 0:
                axes[r, c + 1].set_title(meth, fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout(pad=0.4)
    return fig


def deconv_steps(trace, kinds: "dict", title: str = "", cols: int = 6):
    """The deconvnet's way down (:func:`zfcore.deconv.project_steps` for one image):
    one panel per step, feature-map signals shown as the sum over maps (red
    positive, blue negative), the final signal as an RGB projection.

    Args:
        trace: ``[(layer name, (C, h, w) or (3, H, W) signal), ...]`` for one image.
        kinds: ``{layer name: what its inverse does}`` ("filter", "unpool", "rectify", ...).
    """
    import matplotlib.pyplot as plt
    n = len(trace)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (name, sig) in enumerate(trace):
        ax = axes.flat[i]
        s = sig.detach().cpu().float()
        if i == n - 1 and s.shape[0] == 3:
            ax.imshow(normalize_projection(s), interpolation="nearest")
        else:
            m = s.sum(0).numpy() if s.dim() == 3 else s.reshape(1, -1).numpy()
            v = float(np.abs(m).max()) or 1.0
            ax.imshow(m, cmap="bwr", vmin=-v, vmax=v, interpolation="nearest")
        what = "the activation" if i == 0 else kinds.get(name, "")
        ax.set_title(f"{name}\n{what}" if i else f"{name}: {what}", fontsize=8)
    fig.tight_layout(pad=0.4)
    if title:
        fig.subplots_adjust(top=1 - 0.35 / (2.2 * rows))
        fig.suptitle(title)
    return fig


def _resize_tile(img: np.ndarray, side: int, fill: float = 1.0) -> np.ndarray:
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


def feature_sheet(projections, patches, maps: Sequence[int], cols: int = 6, side: int = 36):
    """Every map of a layer in one image (for the static book): per map, its top-k
    projections tiled beside its top-k patches, each tile resized to ``side`` pixels.

    Args as :func:`feature_grid`. Returns a PIL image (white background, map
    numbers written above each pair).
    """
    from PIL import Image, ImageDraw
    cells = []
    for pairs in trimmed_pairs(projections, patches, side):
        per = int(np.ceil(np.sqrt(len(pairs))))
        pr = tile([p for p, _ in pairs], cols=per)
        pa = tile([q for _, q in pairs], cols=per)
        gap = np.ones((pr.shape[0], 4, 3), np.float32)
        cells.append(np.concatenate([pr, gap, pa], 1))
    ch, cw = cells[0].shape[:2]
    label = 12
    rows = -(-len(cells) // cols)
    sheet = np.ones((rows * (ch + label + 8), cols * (cw + 12), 3), np.float32)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        y, x = r * (ch + label + 8) + label, c * (cw + 12)
        sheet[y:y + ch, x:x + cw] = cell
    img = Image.fromarray((sheet * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for i, f in enumerate(maps):
        r, c = divmod(i, cols)
        draw.text((c * (cw + 12), r * (ch + label + 8)), f"map {f}", fill=(0, 0, 0))
    return img


def image_details_html(img, summary: str, quality: int = 75) -> str:
    """A collapsed HTML ``<details>`` holding ``img`` (a PIL image) inline as a JPEG:
    large galleries stay in the static page without weighing on it until opened."""
    import base64
    import io
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    data = base64.b64encode(buf.getvalue()).decode()
    return (f"<details><summary>{_html.escape(summary)}</summary>"
            f'<img style="max-width:none" src="data:image/jpeg;base64,{data}"/></details>')


def evolution_grid(projections, epochs: Sequence[int], maps: Sequence[int], title: str = "",
                   side: int = 48, patches=None):
    """Fig. 4: one row per feature map, one column per epoch, the projection of the
    map's strongest activation over the data set at that epoch (with ``patches``, the
    image patch drawn small beneath each projection is omitted: projections only).

    Args:
        projections: (M, E, 3, R, R') from :func:`zfcore.mining.evolution_projections`.
        patches: optional (M, E, R, R', 3), used to trim the field to the image.
    """
    import matplotlib.pyplot as plt
    m, e = len(maps), len(epochs)
    fig, axes = plt.subplots(m, e, figsize=(1.05 * e, 1.1 * m), squeeze=False)
    for i in range(m):
        if patches is not None:
            row = [p for p, _ in trimmed_pairs([projections[i]], [patches[i]], side)[0]]
        else:
            row = [_resize_tile(normalize_projection(p), side, fill=0.5) for p in projections[i]]
        for j in range(e):
            ax = axes[i, j]
            ax.imshow(row[j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"epoch {epochs[j]}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"map {maps[i]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig
