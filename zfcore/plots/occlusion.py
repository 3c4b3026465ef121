"""Fig. 7 (Section 4.2): occlusion sensitivity drawn."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .images import as_rgb_image, normalize_projection


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
    model input (mean-subtracted: stretched to [0, 1] by :func:`as_rgb_image`), or
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
        return as_rgb_image(a).astype(np.float64)
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
