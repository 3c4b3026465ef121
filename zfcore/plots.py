"""Figures and tables for the book. Every function returns a matplotlib Figure
(or an HTML string) and computes nothing the library does not already give."""
from __future__ import annotations

import html as _html
from typing import Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["html_table", "scene_gallery", "training_curves", "filter_grid", "filters_to_image",
           "randomization_curves", "randomization_maps", "deletion_insertion_curves"]


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
        projections: (M, E, 3, R, R') from :func:`zfcore.evolution.evolution_projections`.
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


# --------------------------------------------------------------------------- occlusion (Fig. 7)
#
# Geometry shared by the matplotlib figure and the PNG explorer: entry [i, j] of an
# :class:`zfcore.occlusion.OcclusionMaps` map is the occluder whose top-left corner is
# (ys[i], xs[j]); it is drawn as a cell around the occluder's centre (ys[i] + size/2,
# xs[j] + size/2), the cells' edges half-way between neighbouring centres. The maps
# therefore line up with the image, and the border strips (less than size/2 wide)
# that no occluder centre reaches are left blank.

#: Colour of the target class in the most-probable-class map (Fig. 7 (e)).
TARGET_COLOUR = (0.17, 0.63, 0.17)
#: Colours of the other most frequent classes, then of "other classes".
CLASS_COLOURS = ((0.12, 0.47, 0.71), (1.0, 0.50, 0.05), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74),
                 (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81))
OTHER_COLOUR = (0.78, 0.78, 0.78)
#: Colour of the blank border that no occluder centre reaches.
BLANK_COLOUR = (0.93, 0.93, 0.93)
ACTIVITY_CMAP = "inferno"
PROB_CMAP = "viridis"


def occlusion_edges(starts: Sequence[int], size: int, side: int) -> np.ndarray:
    """Edges (in pixels) of the cells drawn for occluder corners ``starts`` along one side.

    Args:
        starts: the occluder's top-left corners along the side (``maps.ys`` or ``maps.xs``).
        size: the occluder's side.
        side: the image's side (edges are clipped to ``[0, side]``).

    Returns:
        (len(starts) + 1,) floats: cell ``i`` spans ``[edges[i], edges[i + 1])``, centred
        on ``starts[i] + size / 2`` (half-way to the neighbouring centres).
    """
    c = np.asarray(starts, np.float64) + size / 2.0
    if c.size == 0:
        raise ValueError("no occluder positions")
    if c.size == 1:
        e = np.array([c[0] - size / 2.0, c[0] + size / 2.0])
    else:
        mid = (c[1:] + c[:-1]) / 2.0
        e = np.concatenate([[c[0] - (c[1] - c[0]) / 2.0], mid, [c[-1] + (c[-1] - c[-2]) / 2.0]])
    return np.clip(e, 0.0, float(side))


def occluder_size_of(maps, height: int, width: int, size: Optional[int] = None) -> int:
    """The occluder's side, from the grid: the last corner is always ``side - size``
    (:func:`zfcore.occlusion.occluder_grid`). With ``size`` given, check it instead.

    Raises:
        ValueError: the maps do not fit an image of ``height`` x ``width`` (or ``size``).
    """
    sy, sx = int(height) - int(maps.ys[-1]), int(width) - int(maps.xs[-1])
    if size is None:
        if sy != sx or sy < 1:
            raise ValueError(f"the occlusion maps (last corner ({maps.ys[-1]}, {maps.xs[-1]})) do not "
                             f"fit a {height}x{width} image; is it the image the model saw?")
        return sy
    size = int(size)
    if (sy, sx) != (size, size):
        raise ValueError(f"the occlusion maps (last corner ({maps.ys[-1]}, {maps.xs[-1]})) do not fit a "
                         f"{size} px occluder on a {height}x{width} image; is it the image the model saw?")
    return size


def occluder_stride_of(maps) -> Optional[int]:
    """The grid's stride (the first step; None for a single position)."""
    steps = [b - a for a, b in zip(maps.ys, maps.ys[1:])] + [b - a for a, b in zip(maps.xs, maps.xs[1:])]
    return int(steps[0]) if steps else None


def occlusion_pixels(values, ys: Sequence[int], xs: Sequence[int], size: int, height: int, width: int,
                     zoom: int = 1) -> np.ndarray:
    """An occlusion map (len(ys), len(xs)) resampled to the image's pixels.

    Each output pixel takes the entry of the cell (see :func:`occlusion_edges`)
    holding its centre; pixels outside every cell are NaN (floats) or -1 (ints).

    Returns:
        (height * zoom, width * zoom) array, float64 for float maps, int64 for class maps.
    """
    v = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    ey, ex = occlusion_edges(ys, size, height), occlusion_edges(xs, size, width)
    py = (np.arange(int(height) * zoom) + 0.5) / zoom
    px = (np.arange(int(width) * zoom) + 0.5) / zoom
    iy = np.searchsorted(ey, py, side="right") - 1
    ix = np.searchsorted(ex, px, side="right") - 1
    oky = (iy >= 0) & (iy < len(ys)) & (py < ey[-1])
    okx = (ix >= 0) & (ix < len(xs)) & (px < ex[-1])
    out = v[np.clip(iy, 0, len(ys) - 1)][:, np.clip(ix, 0, len(xs) - 1)]
    inside = oky[:, None] & okx[None, :]
    if np.issubdtype(out.dtype, np.integer):
        out = out.astype(np.int64)
        out[~inside] = -1
    else:
        out = out.astype(np.float64)
        out[~inside] = np.nan
    return out


def colorize(values: np.ndarray, cmap: str, vmin: float, vmax: float,
             blank=BLANK_COLOUR) -> np.ndarray:
    """(h, w) floats -> (h, w, 3) RGB in [0, 1] through a matplotlib colormap; NaN -> ``blank``."""
    import matplotlib
    v = np.asarray(values, np.float64)
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((v - vmin) / span, 0.0, 1.0)
    rgb = matplotlib.colormaps[cmap](np.nan_to_num(t, nan=0.0))[..., :3]
    rgb[np.isnan(v)] = blank
    return rgb


def prob_limits(maps, prob_range: str = "auto"):
    """Colour limits of the probability map (Fig. 7 (d)).

    ``"unit"``: 0 to 1, as the paper shows it; ``"data"``: the map's min and max;
    ``"auto"``: 0 to 1 unless neither the map nor the unoccluded image reach 0.2
    (a model unsure of the class), then the data range.
    """
    p = maps.prob.detach().cpu().numpy() if hasattr(maps.prob, "detach") else np.asarray(maps.prob)
    lo, hi = float(p.min()), float(p.max())
    if prob_range == "unit" or (prob_range == "auto" and max(hi, maps.unoccluded_prob) >= 0.2):
        return 0.0, 1.0
    if prob_range not in ("auto", "data"):
        raise ValueError(f"prob_range must be 'auto', 'unit' or 'data', got {prob_range!r}")
    return (lo, hi) if hi > lo else (lo - 1e-6, hi + 1e-6)


def class_name(c: int, class_names: Optional[Sequence[str]] = None) -> str:
    """The name of class ``c`` (``"class c"`` when names are not known)."""
    c = int(c)
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else f"class {c}"


def top_class_colours(top_class, target: int, top: int = 6):
    """Colours for the most-probable-class map (Fig. 7 (e)).

    The target class is green (:data:`TARGET_COLOUR`); the ``top`` most frequent other
    classes get :data:`CLASS_COLOURS`; the rest are grey (:data:`OTHER_COLOUR`).

    Returns:
        ``(legend, lut)``: ``legend`` a list of ``(class or None for "other", colour,
        positions)`` in legend order (target first, then by frequency), ``lut`` a dict
        class -> colour for every class in the map.
    """
    t = top_class.detach().cpu().numpy() if hasattr(top_class, "detach") else np.asarray(top_class)
    classes, counts = np.unique(t, return_counts=True)
    order = [int(c) for c in classes[np.lexsort((classes, -counts))]]
    count = {int(c): int(n) for c, n in zip(classes, counts)}
    legend = [(int(target), TARGET_COLOUR, count.get(int(target), 0))]
    lut = {int(target): TARGET_COLOUR}
    others = [c for c in order if c != int(target)]
    for c, colour in zip(others[:min(top, len(CLASS_COLOURS))], CLASS_COLOURS):
        legend.append((c, colour, count[c]))
        lut[c] = colour
    rest = others[min(top, len(CLASS_COLOURS)):]
    if rest:
        legend.append((None, OTHER_COLOUR, sum(count[c] for c in rest)))
        for c in rest:
            lut[c] = OTHER_COLOUR
    return legend, lut


def top_class_rgb(classes_px: np.ndarray, lut: dict) -> np.ndarray:
    """(h, w) int classes (-1 outside the cells) -> (h, w, 3) RGB in [0, 1]."""
    out = np.empty(classes_px.shape + (3,), np.float64)
    out[...] = BLANK_COLOUR
    for c, colour in lut.items():
        out[classes_px == c] = colour
    return out


def display_image(image) -> np.ndarray:
    """An image to show, as (H, W, 3) floats in [0, 1].

    Accepts uint8 (H, W, 3) or (3, H, W) (array or tensor), or a float (3, H, W)
    model input (mean-subtracted: stretched to [0, 1] by :func:`_as_rgb_image`), or
    float (H, W, 3) already in [0, 1].
    """
    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or 3 not in (a.shape[0], a.shape[-1]):
        raise ValueError(f"expected an image of shape (H, W, 3) or (3, H, W), got {a.shape}")
    chw = a.shape[0] == 3 and a.shape[-1] != 3
    if a.dtype == np.uint8:
        return (a.transpose(1, 2, 0) if chw else a).astype(np.float64) / 255.0
    if chw:
        return _as_rgb_image(a).astype(np.float64)
    return np.clip(a.astype(np.float64), 0.0, 1.0)


def occlusion_overlay(image, maps, size: Optional[int] = None, which: str = "prob", alpha: float = 0.6,
                      zoom: int = 1, prob_range: str = "auto") -> np.ndarray:
    """A map of Fig. 7 laid over the image: (H zoom, W zoom, 3) RGB in [0, 1].

    Each pixel is ``alpha`` the map's colour at that pixel (the occluder centred there,
    see :func:`occlusion_pixels`) and ``1 - alpha`` the image; the border no occluder
    centre reaches shows the image alone.

    Args:
        image: the image the model saw (see :func:`display_image`).
        maps: :class:`zfcore.occlusion.OcclusionMaps` of that image.
        size: the occluder's side (default: read off the grid, :func:`occluder_size_of`).
        which: ``"prob"`` (Fig. 7 (d), colour limits :func:`prob_limits`), ``"activity"``
            (Fig. 7 (b), its data range) or ``"top_class"`` (Fig. 7 (e)).
    """
    img = display_image(image)
    h, w = img.shape[:2]
    size = occluder_size_of(maps, h, w, size)
    if which == "top_class":
        _, lut = top_class_colours(maps.top_class, maps.target)
        px = occlusion_pixels(maps.top_class, maps.ys, maps.xs, size, h, w, zoom)
        rgb, inside = top_class_rgb(px, lut), px >= 0
    elif which in ("prob", "activity"):
        v = getattr(maps, which)
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        lo, hi = prob_limits(maps, prob_range) if which == "prob" else (float(v.min()), float(v.max()))
        px = occlusion_pixels(v, maps.ys, maps.xs, size, h, w, zoom)
        rgb = colorize(px, PROB_CMAP if which == "prob" else ACTIVITY_CMAP, lo, hi)
        inside = ~np.isnan(px)
    else:
        raise ValueError(f"which must be 'prob', 'activity' or 'top_class', got {which!r}")
    base = img.repeat(zoom, 0).repeat(zoom, 1) if zoom > 1 else img
    out = base.copy()
    out[inside] = alpha * rgb[inside] + (1 - alpha) * base[inside]
    return out


def _argmin2(values) -> tuple:
    v = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    i, j = np.unravel_index(int(np.argmin(v)), v.shape)
    return int(i), int(j)


def occlusion_figure(image, maps, class_names: Optional[Sequence[str]] = None, title: str = "", *,
                     size: Optional[int] = None, box=None, prob_range: str = "auto", top: int = 6,
                     panel: float = 3.0):
    """One row of Fig. 7 (Section 4.2): occlusion sensitivity of one image.

    Panels, as in the paper: (a) the input, with the occluder drawn (grey, outlined)
    where it lowers the target's probability most; (b) the total activity of the
    mapped feature map (:attr:`~zfcore.occlusion.OcclusionMaps.activity`) per occluder
    position; (c) the deconvnet projection of that map's strongest activation in the
    unoccluded image (:func:`normalize_projection`); (d) the probability of the target
    class per occluder position; (e) the most probable class per occluder position,
    the target class in green and the few most frequent others named in the legend.
    The maps are drawn at the occluders' centres over the image's extent
    (:func:`occlusion_edges`), so they line up with (a) and (c).

    Args:
        image: the image the model saw, (H, W, 3) or (3, H, W) uint8, or the (3, H, W)
            float model input (see :func:`display_image`).
        maps: :class:`zfcore.occlusion.OcclusionMaps` from
            :func:`zfcore.occlusion.sensitivity` on that image.
        class_names: names of the classes, index = class (default ``"class c"``).
        title: the figure's title.
        size: the occluder's side (default: read off the grid, :func:`occluder_size_of`).
        box: optional object box ``(x0, y0, x1, y1)`` in the image's pixels, outlined in (a).
        prob_range: colour limits of (d): ``"auto"``, ``"unit"`` or ``"data"`` (:func:`prob_limits`).
        top: classes named in (e)'s legend besides the target.
        panel: inches per panel.

    Returns:
        A matplotlib Figure (1 x 5 panels).

    Raises:
        ValueError: the maps do not fit the image (a different size or occluder).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle
    img = display_image(image)
    h, w = img.shape[:2]
    size = occluder_size_of(maps, h, w, size)
    stride = occluder_stride_of(maps)
    ey, ex = occlusion_edges(maps.ys, size, h), occlusion_edges(maps.xs, size, w)
    target = class_name(maps.target, class_names)
    fig, axes = plt.subplots(1, 5, figsize=(5 * panel + 1.6, panel + (0.85 if title else 0.6)),
                             layout="constrained")
    fs = 9

    def frame(ax):
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        ax.set_facecolor(BLANK_COLOUR)
        ax.set_xticks([])
        ax.set_yticks([])

    def heat(ax, values, cmap, lo, hi, unoccluded, fmt):
        v = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
        m = ax.pcolormesh(ex, ey, v, cmap=cmap, vmin=lo, vmax=hi, shading="flat")
        frame(ax)
        cb = fig.colorbar(m, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=7)
        if lo <= unoccluded <= hi:          # the unoccluded image's value, marked on the bar
            cb.ax.axhline(unoccluded, color="red", lw=1.5)
        cb.set_label(f"red line: unoccluded ({unoccluded:{fmt}})", fontsize=7)

    # (a) the input and the occluder
    ax = axes[0]
    ax.imshow(img, extent=(0, w, h, 0), interpolation="nearest")
    frame(ax)
    i, j = _argmin2(maps.prob)
    ax.add_patch(Rectangle((maps.xs[j], maps.ys[i]), size, size, facecolor=(0.5, 0.5, 0.5, 0.55),
                           edgecolor="white", lw=1.5))
    ax.add_patch(Rectangle((maps.xs[j], maps.ys[i]), size, size, fill=False, edgecolor="black",
                           lw=0.8, ls="--"))
    if box is not None:
        x0, y0, x1, y1 = [float(b) for b in box]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", lw=1.2))
    grid = f"{len(maps.ys)}x{len(maps.xs)} positions" + (f", stride {stride}" if stride else "")
    ax.set_title(f"(a) input {w}x{h}, {size}x{size} occluder\n{grid}\n(grey: where p is lowest"
                 + ("; green: object)" if box is not None else ")"), fontsize=fs)

    # (b) total activity of the feature map
    heat(axes[1], maps.activity, ACTIVITY_CMAP, float(maps.activity.min()), float(maps.activity.max()),
         maps.unoccluded_activity, ".3g")
    axes[1].set_title(f"(b) total activity\n{maps.layer}, map {maps.feature}", fontsize=fs)

    # (c) the deconv projection of that map
    ax = axes[2]
    if maps.projection is not None:
        ax.imshow(normalize_projection(maps.projection), extent=(0, w, h, 0), interpolation="nearest")
    frame(ax)
    where = f"\nstrongest at {tuple(maps.position)}" if maps.position is not None else ""
    ax.set_title(f"(c) deconv projection\n{maps.layer}, map {maps.feature}{where}"
                 if maps.projection is not None else "(c) no projection computed", fontsize=fs)

    # (d) probability of the target class
    lo, hi = prob_limits(maps, prob_range)
    heat(axes[3], maps.prob, PROB_CMAP, lo, hi, maps.unoccluded_prob, ".3g")
    axes[3].set_title(f"(d) p({target})\nmin {float(maps.prob.min()):.3g}", fontsize=fs)

    # (e) the most probable class
    ax = axes[4]
    legend, lut = top_class_colours(maps.top_class, maps.target, top)
    codes = {c: k for k, c in enumerate(lut)}
    colours = [lut[c] for c in lut]
    t = maps.top_class.detach().cpu().numpy() if hasattr(maps.top_class, "detach") else np.asarray(maps.top_class)
    idx = np.vectorize(codes.get)(t).astype(np.float64)
    from matplotlib.colors import BoundaryNorm, ListedColormap
    ax.pcolormesh(ex, ey, idx, cmap=ListedColormap(colours),
                  norm=BoundaryNorm(np.arange(len(colours) + 1) - 0.5, len(colours)), shading="flat")
    frame(ax)
    n = t.size
    handles = []
    for c, colour, cnt in legend:
        name = "other classes" if c is None else class_name(c, class_names)
        name = name if len(name) <= 24 else name[:23] + "\u2026"
        if c == maps.target:
            name = f"{name} (target)"
        handles.append(Patch(facecolor=colour, edgecolor="black", lw=0.4,
                             label=f"{name}: {100 * cnt / n:.0f}%"))
    leg = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=7,
                    frameon=False, handlelength=1.2, borderaxespad=0.0, title="share of positions",
                    title_fontsize=7, alignment="left")
    leg.get_texts()[0].set_fontweight("bold")
    ax.set_title("(e) most probable class", fontsize=fs)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# the sanity checks (zfcore.sanity; beyond the paper)

#: One colour per method of :data:`zfcore.sanity.METHODS` (and the random order).
SANITY_COLOURS = {"deconvnet": "C0", "gradient": "C1", "guided": "C2", "occlusion": "C3", "random": "k"}
SANITY_NAMES = {"deconvnet": "deconvnet", "gradient": "gradient", "guided": "guided backprop",
                "occlusion": "occlusion", "random": "random order"}

_SIMILARITY_TITLES = {"spearman": "Spearman rank correlation, |map|", "spearman_signed": "Spearman, signed map",
                      "ssim": "SSIM, |map|"}


def randomization_curves(results: "dict", levels: Optional["dict"] = None,
                         metrics: Sequence[str] = ("spearman", "spearman_signed", "ssim"), title: str = ""):
    """Similarity to the trained network's maps as layers are randomized (Adebayo et al. 2018, Fig. 2).

    Args:
        results: method -> :class:`zfcore.sanity.Randomization` (cascading or independent).
        levels: method -> :class:`zfcore.sanity.Similarity`, the architecture-alone level,
            drawn as a dashed line of the method's colour; None draws none.
        metrics: one panel per similarity measure.

    Returns:
        A Figure: the mean over the images at each step, with one standard error as bars.
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.0), sharey=True, squeeze=False)
    labels: List[str] = []
    for ax, metric in zip(axes[0], metrics):
        for m, res in results.items():
            colour = SANITY_COLOURS.get(m)
            ax.errorbar(range(len(res.layers)), res.mean(metric), yerr=res.sem(metric), color=colour,
                        marker="o", ms=4, capsize=2, label=SANITY_NAMES.get(m, m))
            if levels is not None and m in levels:
                ax.axhline(levels[m].mean(metric), color=colour, ls="--", lw=1)
            labels = res.labels
        ax.set_xticks(range(len(labels)), labels, rotation=45)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(_SIMILARITY_TITLES.get(metric, metric), fontsize=10)
        mode = next(iter(results.values())).mode if results else "cascading"
        ax.set_xlabel("randomized from the top, down to" if mode == "cascading" else "the one layer randomized")
    axes[0, 0].set_ylabel("similarity to the trained network's map")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def randomization_maps(image, results: "dict", index: int = 0, box=None, title: str = "", panel: float = 1.45):
    """One image's maps at every step of a randomization, one row per method.

    Each map is shown as Adebayo et al. show them: the sum over the channels of its absolute
    values, divided by its 99th percentile (:func:`zfcore.sanity.normalize_map`).

    Args:
        image: (H, W, 3) uint8, the image the model saw.
        results: method -> :class:`zfcore.sanity.Randomization`.
        index: which image of the batch.
        box: optional object box ``(x0, y0, x1, y1)``, outlined in green on the image.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .saliency import grayscale, normalize_map
    methods = list(results)
    labels = results[methods[0]].labels
    fig, axes = plt.subplots(len(methods), len(labels) + 1, squeeze=False,
                             figsize=(panel * (len(labels) + 1), panel * 1.1 * len(methods) + (0.3 if title else 0)))
    for r, m in enumerate(methods):
        axes[r, 0].imshow(image)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            axes[r, 0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
        axes[r, 0].set_ylabel(SANITY_NAMES.get(m, m), fontsize=8)
        for c, g in enumerate(normalize_map(grayscale(results[m].maps[:, index], absolute=True))):
            axes[r, c + 1].imshow(g, cmap="gray", vmin=0, vmax=1)
    for c, lab in enumerate(labels):
        axes[0, c + 1].set_title(lab, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def deletion_insertion_curves(results: "dict", title: str = ""):
    """Mean deletion and insertion curves (Petsiuk et al. 2018), one line per method.

    Args:
        results: method (or ``"random"``, drawn dashed) -> :class:`zfcore.sanity.DeletionInsertion`.
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, curve in zip(axes, ("deletion", "insertion")):
        for m, res in results.items():
            ax.plot(res.fractions, getattr(res, curve).mean(0), color=SANITY_COLOURS.get(m),
                    ls="--" if m == "random" else "-", label=SANITY_NAMES.get(m, m))
        ax.set_xlabel(f"share of the pixels {'removed' if curve == 'deletion' else 'inserted'}")
        ax.set_title(curve.capitalize() + (" (a lower area is better)" if curve == "deletion"
                                           else " (a higher area is better)"), fontsize=10)
    axes[0].set_ylabel("probability of the class")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
