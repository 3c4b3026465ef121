"""What the feature maps see (Sections 2.1 and 4, Figs. 2-4 and 6): filter grids, top-k
projection and patch sheets, the deconvnet compared with other methods, the way down, the
evolution over training."""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from .images import as_rgb_image, filters_to_image, normalize_projection, resize_tile, tile

__all__ = ["filter_grid", "trimmed_pairs", "feature_grid", "method_comparison", "deconv_steps",
           "feature_sheet", "evolution_grid", "projection_tiles", "projection_tile", "fig6_figure",
           "spectra_figure"]


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
            pairs.append((resize_tile(normalize_projection(pr), side, fill=0.5), resize_tile(pa, side)))
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
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * cell, rows * cell * 1.08 + (0.3 if title else 0)),
                             squeeze=False, layout="constrained")
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
    if title:
        fig.suptitle(title)
    return fig


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
    img = np.asarray(image) if not hasattr(image, "detach") else as_rgb_image(image)
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
    # constrained layout keeps the suptitle above the two-line panel titles and each row's titles
    # clear of the row above (tight_layout + subplots_adjust let them overlap)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.4 * rows + (0.35 if title else 0)),
                             squeeze=False, layout="constrained")
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
        ax.set_title(f"{name}\n{what}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


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
            row = [resize_tile(normalize_projection(p), side, fill=0.5) for p in projections[i]]
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


def projection_tiles(projections, title: str = "", cols: int = 3, size: float = 4.5):
    """A map's top-k projections (k, 3, h, w) tiled ``cols`` per row, one figure."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(tile([normalize_projection(p) for p in projections], cols=cols))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return fig


# --------------------------------------------------------------------------- Fig. 6

def projection_tile(projections, boxes, cols: int = 4, side: int = 48, count: int = 16) -> np.ndarray:
    """Tile the first ``count`` projections, each cut to its receptive field box and scaled
    to ``side`` pixels (grey is zero, as :func:`zfcore.plots.normalize_projection`)."""
    ims = []
    for p, (y0, y1, x0, x1) in list(zip(projections, boxes.tolist()))[:count]:
        ims.append(resize_tile(normalize_projection(p[:, y0:y1, x0:x1]), side, fill=0.5))
    return tile(ims, cols=cols)


def fig6_figure(no_renorm: dict, krizhevsky: dict, zf: dict, *, count: int = 16, title: str = ""):
    """Fig. 6's layout from three :func:`zfcore.architecture.fig6_metrics` dicts: (a) layer-1 filters without
    renormalisation, (b) Krizhevsky layer 1, (c) ZF layer 1 (:func:`zfcore.plots.filters_to_image`,
    each filter contrast-stretched on its own), (d) Krizhevsky and (e) ZF layer-2 projections
    (the strongest layer-2 activation of each of ``count`` validation images, cut to its field)."""
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(12, 7.4))
    gs = fig.add_gridspec(2, 6, height_ratios=[1, 1.15])
    top = [(no_renorm, "(a) no renormalisation"), (krizhevsky, "(b) Krizhevsky layer 1"),
           (zf, "(c) ZF layer 1")]
    for i, (m, name) in enumerate(top):
        ax = fig.add_subplot(gs[0, 2 * i:2 * i + 2])
        ax.imshow(filters_to_image(m["weight"]), interpolation="nearest")
        ax.set_title(f"{name}: {m['conv1']}", fontsize=10)
        ax.axis("off")
    for i, (m, name) in enumerate([(krizhevsky, "(d) Krizhevsky layer 2"), (zf, "(e) ZF layer 2")]):
        ax = fig.add_subplot(gs[1, 3 * i:3 * i + 3])
        ax.imshow(projection_tile(m["projections"], m["boxes"], count=count), interpolation="nearest")
        ax.set_title(f"{name}: strongest activation of {min(count, len(m['projections']))} images", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def spectra_figure(metrics: Mapping[str, dict], title: str = ""):
    """The mean power spectrum (log scale, DC at the centre) of each model's layer-2
    projections, its first layer's grid harmonics marked: where aliasing shows."""
    import matplotlib.pyplot as plt
    from ..architecture import power_spectrum
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2), squeeze=False)
    for ax, (label, m) in zip(axes[0], metrics.items()):
        proj = m["projections"]
        s = m["stride"]
        size = s * math.ceil(2 * max(proj.shape[-2:]) / s)
        p = np.fft.fftshift(power_spectrum(proj, size))
        ext = (-0.5, 0.5 - 1 / size, 0.5 - 1 / size, -0.5)
        ax.imshow(np.log10(p + p[p > 0].min()), cmap="magma", extent=ext)
        h = [k / s for k in range(-(s // 2), s // 2 + 1)]
        for a in h:
            for b in h:
                if a or b:
                    ax.add_patch(plt.Circle((b, a), 3.0 / max(proj.shape[-2:]), fill=False, color="cyan", lw=0.6))
        ax.set_title(f"{label}\nharmonics of period {s}: {100 * m['alias_own']:.2f}% of the energy", fontsize=9)
        ax.set_xlabel("cycles / pixel")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
