"""Fig. 7 (Section 4.2): occlusion sensitivity drawn.

:func:`occlusion_panels` decides what each panel shows (the images, colour limits, titles,
the occluder where the probability is lowest, the legend); two renderers draw that one
description: :func:`occlusion_figure` as a matplotlib figure (the book's static rows) and
:func:`occlusion_sheet` as one raster image, drawn with numpy and Pillow in milliseconds
(:class:`zfcore.widgets.OcclusionExplorer`'s panels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .images import as_rgb_image, enlarge, normalize_projection, to_u8


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




# --------------------------------------------------------------------------- the panels, described once

#: Fig. 7's panels, left to right ((f), the probability laid over the image, is the sheet's).
PANELS = ("input", "activity", "projection", "prob", "top_class", "overlay")


@dataclass
class OcclusionPanels:
    """What Fig. 7's panels of one image show, for both renderers.

    Attributes:
        image: (H, W, 3) floats in [0, 1], the image the model saw.
        maps: the :class:`zfcore.occlusion.OcclusionMaps`.
        size, stride: the occluder (stride None for a single position).
        lowest: ``(i, j)``, the occluder position where the target's probability is lowest.
        limits: ``{"activity": (lo, hi), "prob": (lo, hi)}``, the colour limits of (b) and (d).
        unoccluded: ``{"activity": ..., "prob": ...}``, the unoccluded image's values.
        legend: ``[(class or None, colour, share of the positions, label)]`` of (e).
        lut: class -> colour of (e).
        titles: panel name -> its title lines.
        box: the object's box ``(x0, y0, x1, y1)`` in the image's pixels, or None.
    """
    image: np.ndarray
    maps: object
    size: int
    stride: Optional[int]
    lowest: Tuple[int, int]
    limits: Dict[str, Tuple[float, float]]
    unoccluded: Dict[str, float]
    legend: List[tuple]
    lut: dict
    titles: Dict[str, Tuple[str, ...]]
    box: Optional[Tuple[float, float, float, float]] = None


def _numpy(v) -> np.ndarray:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _legend(maps, class_names, top: int, target_word: str):
    """(e)'s legend entries with their labels, and the colour of every class."""
    legend, lut = top_class_colours(maps.top_class, maps.target, top)
    n = _numpy(maps.top_class).size
    out = []
    for c, colour, cnt in legend:
        name = "other classes" if c is None else class_name(c, class_names)
        name = name if len(name) <= 24 else name[:23] + "\u2026"
        if c == maps.target:
            name = f"{name} ({target_word})"
        out.append((c, colour, cnt / n, f"{name}: {100 * cnt / n:.0f}%"))
    return out, lut


def _titles(maps, w: int, h: int, size: int, stride: Optional[int], target: str, boxed: bool):
    grid = f"{len(maps.ys)}x{len(maps.xs)} positions" + (f", stride {stride}" if stride else "")
    where = (f"strongest at {tuple(maps.position)}",) if maps.position is not None else ()
    return {
        "input": (f"(a) input {w}x{h}, {size}x{size} occluder", grid,
                  "(grey: where p is lowest" + ("; green: object)" if boxed else ")")),
        "activity": ("(b) total activity" + (" (after ReLU)" if getattr(maps, "rectified", True) else " (raw, before ReLU)"),
                     f"{maps.layer}, map {maps.feature}"),
        "projection": (("(c) deconv projection", f"{maps.layer}, map {maps.feature}") + where
                       if maps.projection is not None else ("(c) no projection computed",)),
        "prob": (f"(d) p({target})", f"min {float(maps.prob.min()):.3g}"),
        "top_class": ("(e) most probable class",),
        "overlay": ("(f) (d) over the image",),
    }


def occlusion_panels(image, maps, class_names: Optional[Sequence[str]] = None, *, size: Optional[int] = None,
                     box=None, prob_range: str = "auto", top: int = 6,
                     target_word: str = "target") -> OcclusionPanels:
    """Fig. 7's panels of one image, described (see :func:`occlusion_figure` for the panels).

    Args as :func:`occlusion_figure`; ``target_word`` names the target in (e)'s legend.

    Raises:
        ValueError: the maps do not fit the image (a different size or occluder).
    """
    img = display_image(image)
    h, w = img.shape[:2]
    size = occluder_size_of(maps, h, w, size)
    stride = occluder_stride_of(maps)
    p = _numpy(maps.prob)
    i, j = np.unravel_index(int(np.argmin(p)), p.shape)
    act = _numpy(maps.activity)
    legend, lut = _legend(maps, class_names, top, target_word)
    box = None if box is None else tuple(float(b) for b in box)
    return OcclusionPanels(
        image=img, maps=maps, size=size, stride=stride, lowest=(int(i), int(j)),
        limits={"activity": (float(act.min()), float(act.max())), "prob": prob_limits(maps, prob_range)},
        unoccluded={"activity": maps.unoccluded_activity, "prob": maps.unoccluded_prob},
        legend=legend, lut=lut, box=box,
        titles=_titles(maps, w, h, size, stride, class_name(maps.target, class_names), box is not None))


# --------------------------------------------------------------------------- the matplotlib figure

def _frame(ax, w: int, h: int) -> None:
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_facecolor(BLANK_COLOUR)
    ax.set_xticks([])
    ax.set_yticks([])


def _heat(fig, ax, P: OcclusionPanels, name: str, cmap: str, edges) -> None:
    """(b) or (d): the map over the occluders' cells, with a colour bar marking the unoccluded value."""
    lo, hi = P.limits[name]
    v0 = P.unoccluded[name]
    m = ax.pcolormesh(edges[1], edges[0], _numpy(getattr(P.maps, name)), cmap=cmap, vmin=lo, vmax=hi,
                      shading="flat")
    _frame(ax, P.image.shape[1], P.image.shape[0])
    cb = fig.colorbar(m, ax=ax, fraction=0.046, pad=0.03)
    cb.ax.tick_params(labelsize=7)
    if lo <= v0 <= hi:          # the unoccluded image's value, marked on the bar
        cb.ax.axhline(v0, color="red", lw=1.5)
    cb.set_label(f"red line: unoccluded ({v0:.3g})", fontsize=7)


def _input_axes(ax, P: OcclusionPanels) -> None:
    """(a): the image, the occluder where p is lowest, the object's box."""
    from matplotlib.patches import Rectangle
    h, w = P.image.shape[:2]
    ax.imshow(P.image, extent=(0, w, h, 0), interpolation="nearest")
    _frame(ax, w, h)
    y, x = P.maps.ys[P.lowest[0]], P.maps.xs[P.lowest[1]]
    ax.add_patch(Rectangle((x, y), P.size, P.size, facecolor=(0.5, 0.5, 0.5, 0.55), edgecolor="white", lw=1.5))
    ax.add_patch(Rectangle((x, y), P.size, P.size, fill=False, edgecolor="black", lw=0.8, ls="--"))
    if P.box is not None:
        x0, y0, x1, y1 = P.box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", lw=1.2))


def _top_class_axes(ax, P: OcclusionPanels, edges) -> None:
    """(e): the most probable class per cell, and the legend."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    codes = {c: k for k, c in enumerate(P.lut)}
    colours = [P.lut[c] for c in P.lut]
    idx = np.vectorize(codes.get)(_numpy(P.maps.top_class)).astype(np.float64)
    ax.pcolormesh(edges[1], edges[0], idx, cmap=ListedColormap(colours),
                  norm=BoundaryNorm(np.arange(len(colours) + 1) - 0.5, len(colours)), shading="flat")
    _frame(ax, P.image.shape[1], P.image.shape[0])
    handles = [Patch(facecolor=colour, edgecolor="black", lw=0.4, label=label) for _, colour, _, label in P.legend]
    leg = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=7,
                    frameon=False, handlelength=1.2, borderaxespad=0.0, title="share of positions",
                    title_fontsize=7, alignment="left")
    leg.get_texts()[0].set_fontweight("bold")


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
    (:func:`occlusion_edges`), so they line up with (a) and (c). What each panel shows
    comes from :func:`occlusion_panels`.

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
    P = occlusion_panels(image, maps, class_names, size=size, box=box, prob_range=prob_range, top=top)
    h, w = P.image.shape[:2]
    edges = (occlusion_edges(maps.ys, P.size, h), occlusion_edges(maps.xs, P.size, w))
    fig, axes = plt.subplots(1, 5, figsize=(5 * panel + 1.6, panel + (0.85 if title else 0.6)),
                             layout="constrained")
    _input_axes(axes[0], P)
    _heat(fig, axes[1], P, "activity", ACTIVITY_CMAP, edges)
    if maps.projection is not None:
        axes[2].imshow(normalize_projection(maps.projection), extent=(0, w, h, 0), interpolation="nearest")
    _frame(axes[2], w, h)
    _heat(fig, axes[3], P, "prob", PROB_CMAP, edges)
    _top_class_axes(axes[4], P, edges)
    for ax, name in zip(axes, PANELS):
        ax.set_title("\n".join(P.titles[name]), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- the raster sheet

def font(size: int = 12):
    """Pillow's built-in font at ``size`` px (its small bitmap font where FreeType is missing)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:        # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def fit_text(draw, text: str, fnt, width: float) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels in ``fnt``."""
    if draw.textlength(text, font=fnt) <= width:
        return text
    while text and draw.textlength(text + "\u2026", font=fnt) > width:
        text = text[:-1]
    return text + "\u2026"


def sheet_panels(P: OcclusionPanels, zoom: int) -> Dict[str, np.ndarray]:
    """The six panels as (s zoom, s zoom, 3) floats in [0, 1], in :data:`PANELS` order."""
    m, z, size = P.maps, zoom, P.size
    h, w = P.image.shape[:2]
    ys, xs = m.ys, m.xs
    a = enlarge(P.image, z).copy()
    y0, x0 = ys[P.lowest[0]] * z, xs[P.lowest[1]] * z
    a[y0:y0 + size * z, x0:x0 + size * z] = 0.45 * a[y0:y0 + size * z, x0:x0 + size * z] + 0.55 * 0.5
    b = colorize(occlusion_pixels(_numpy(m.activity), ys, xs, size, h, w, z), ACTIVITY_CMAP, *P.limits["activity"])
    c = normalize_projection(m.projection) if m.projection is not None else np.full((h, w, 3), 0.5)
    d = colorize(occlusion_pixels(m.prob, ys, xs, size, h, w, z), PROB_CMAP, *P.limits["prob"])
    e = top_class_rgb(occlusion_pixels(m.top_class, ys, xs, size, h, w, z), P.lut)
    f = occlusion_overlay(P.image, m, size, "prob", zoom=z)
    return dict(zip(PANELS, (a, b, enlarge(c, z), d, e, f)))


def _sheet_bars(canvas: np.ndarray, P: OcclusionPanels, boxes: dict, S: int, top: int, bar_h: int) -> None:
    """Colour bars (``S`` wide) under (b) and (d), a red tick at the unoccluded value."""
    ramp = np.linspace(0.0, 1.0, S)[None, :].repeat(bar_h, 0)
    for name, cmap in (("activity", ACTIVITY_CMAP), ("prob", PROB_CMAP)):
        lo, hi = P.limits[name]
        v0 = P.unoccluded[name]
        px = boxes[name][2]
        canvas[top:top + bar_h, px:px + S] = to_u8(colorize(ramp, cmap, 0.0, 1.0))
        if hi > lo and lo <= v0 <= hi:
            tx = px + min(S - 2, int(round((v0 - lo) / (hi - lo) * (S - 1))))
            canvas[top - 3:top + bar_h + 3, max(px, tx - 1):tx + 2] = (220, 0, 0)


def _sheet_text(draw, P: OcclusionPanels, boxes: dict, zoom: int, under: int, font_size: int, bar_h: int) -> None:
    """The outlines on (a), the titles, the bars' limits and (e)'s legend."""
    fnt, small = font(font_size), font(font_size - 1)
    z, (head, bottom, ax0, right) = zoom, boxes["input"]
    S, H = right - ax0, bottom - head                     # the panels' width and height
    y0, x0 = P.maps.ys[P.lowest[0]] * z, P.maps.xs[P.lowest[1]] * z
    draw.rectangle([ax0 + x0, head + y0, ax0 + x0 + P.size * z - 1, head + y0 + P.size * z - 1],
                   outline=(255, 255, 255), width=max(1, z // 2))
    if P.box is not None:
        bx0, by0, bx1, by1 = [v * z for v in P.box]
        draw.rectangle([ax0 + max(0.0, bx0), head + max(0.0, by0), ax0 + min(S - 1.0, bx1),
                        head + min(H - 1.0, by1)], outline=(0, 230, 0), width=1)
    for name in PANELS:
        px = boxes[name][2]
        t1, t2 = (P.titles[name] + ("",))[:2]
        draw.text((px, 2), fit_text(draw, t1, fnt, S), fill=(0, 0, 0), font=fnt)
        draw.text((px, 2 + font_size + 3), fit_text(draw, t2, small, S), fill=(80, 80, 80), font=small)
    ty = under + bar_h + 3
    for name in ("activity", "prob"):
        (lo, hi), px = P.limits[name], boxes[name][2]
        draw.text((px, ty), f"{lo:.3g}", fill=(0, 0, 0), font=small)
        draw.text((px + S - draw.textlength(f"{hi:.3g}", font=small), ty), f"{hi:.3g}", fill=(0, 0, 0), font=small)
        mid = "red: unoccluded"
        draw.text((px + (S - draw.textlength(mid, font=small)) / 2, ty), mid, fill=(200, 0, 0), font=small)
    px = boxes["top_class"][2]
    for k, (_, colour, _, label) in enumerate(P.legend):
        ly = under + 16 * k
        draw.rectangle([px, ly + 2, px + 11, ly + 13], fill=tuple(int(round(255 * v)) for v in colour),
                       outline=(0, 0, 0))
        draw.text((px + 16, ly + 1), fit_text(draw, label, small, S - 16), fill=(0, 0, 0), font=small)


def occlusion_sheet(P: OcclusionPanels, zoom: int = 1, pad: int = 10, header: int = 34,
                    font_size: int = 12) -> Tuple[np.ndarray, Dict[str, tuple]]:
    """Fig. 7's panels of :func:`occlusion_panels` side by side in one raster image, (f) the
    probability laid over the image (:func:`occlusion_overlay`); titles above, colour bars
    under (b) and (d) (a red tick at the unoccluded value), (e)'s legend under it.

    Returns:
        ``(image, boxes)``: (H', W', 3) uint8; ``boxes[name]`` (name in :data:`PANELS`) each
        panel's ``(y0, y1, x0, x1)`` in it, (H zoom) x (W zoom) pixels for an H x W image.
    """
    from PIL import Image, ImageDraw
    panels = sheet_panels(P, zoom)
    H, S = P.image.shape[0] * zoom, P.image.shape[1] * zoom
    bar_h = 10
    height = header + H + pad + max(bar_h + 4 + 16, 16 * len(P.legend) + 4) + pad
    canvas = np.full((height, len(PANELS) * (S + pad) + pad, 3), 255, np.uint8)
    boxes = {}
    for k, name in enumerate(PANELS):
        px = pad + k * (S + pad)
        canvas[header:header + H, px:px + S] = to_u8(panels[name])
        boxes[name] = (header, header + H, px, px + S)
    _sheet_bars(canvas, P, boxes, S, header + H + pad, bar_h)
    pil = Image.fromarray(canvas)
    _sheet_text(ImageDraw.Draw(pil), P, boxes, zoom, header + H + pad, font_size, bar_h)
    return np.asarray(pil), boxes


# --------------------------------------------------------------------------- the localization check

def localization_scatter(loc):
    """Per image of :func:`zfcore.occlusion.localization`: the share of the drop inside the box
    against the box's share of the image (chance), correct and misclassified images apart."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ok = loc.correct
    ax.scatter(loc.chance[ok], loc.share[ok], s=14, label="classified correctly")
    ax.scatter(loc.chance[~ok], loc.share[~ok], s=14, marker="x", label="misclassified")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    ax.set_xlabel("box's share of the image (chance)")
    ax.set_ylabel("share of the drop inside the box")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Where the probability drops", fontsize=10)
    return fig
