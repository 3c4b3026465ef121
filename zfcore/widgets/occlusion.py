"""Fig. 7 (Section 4.2), interactively: occlusion sensitivity of one image at a time. The
panels are drawn by :func:`zfcore.plots.occlusion.occlusion_sheet` (what they show by
:func:`zfcore.plots.occlusion.occlusion_panels`, as for the book's static figure); the explorer
keeps the controls and the cache.

For the chosen image of a split (the centre crop the model sees) and the chosen occluder
size and stride, :func:`zfcore.occlusion.sensitivity` slides a square of the mean grey
(``fill``: 0 in the mean-subtracted input) over the image, the target being the image's true
class (the paper's "correct class"), and the explorer shows the panels of Fig. 7 side by side
in one PNG: (a) the input, the object's box in green (where the split knows it: the scenes
do, the user's folders do not) and the occluder (grey, outlined) where it lowers the true
class's probability most; (b) the total activity of the feature map of ``layer`` (default:
the last conv, ``conv5``) strongest in the unoccluded image, per occluder position; (c) the
deconv projection of that map's strongest activation; (d) the probability of the true class
per occluder position; (e) the most probable class per occluder position (true class green,
the most frequent others named below it); (f) map (d) laid over the image. Each panel lines
up with (a); colour bars under (b) and (d) give their ranges, a red tick the unoccluded value.
"""
from __future__ import annotations

import html as _html
from collections import OrderedDict
from itertools import product
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..chain import chain, find_step
from ..data.splits import has_boxes
from ..occlusion import default_occluder, sensitivity
from ..plots.occlusion import PANELS, class_name, occlusion_panels, occlusion_sheet
from .common import decode_png, gallery_block, ipywidgets, pick_examples, png_bytes, setup

__all__ = ["OcclusionExplorer", "occlusion_explorer", "default_sizes", "default_strides"]


def default_sizes(image_size: int) -> List[int]:
    """Occluder sides offered by default: about 1/6, 1/4 and 1/3 of the image."""
    s = int(image_size)
    return sorted({max(1, min(s, int(round(s * f)))) for f in (1 / 6, 1 / 4, 1 / 3)})


def default_strides(image_size: int) -> List[int]:
    """Strides offered by default: about 1/28, 1/12 and 1/6 of the image."""
    s = int(image_size)
    return sorted({max(1, int(round(s * f))) for f in (1 / 28, 1 / 12, 1 / 6)})


def check_index(i, n: int, split: str) -> int:
    """Image ``i`` of a split of ``n`` images, checked."""
    if isinstance(i, bool) or int(i) != i or not 0 <= int(i) < n:
        raise ValueError(f"image {i} is out of range for the {split!r} split of {n} images: "
                         f"expected 0..{n - 1}")
    return int(i)


def check_size(v, image_size: int) -> int:
    """An occluder side, checked against the crop's side."""
    s = image_size
    if isinstance(v, bool) or int(v) != v or int(v) < 1:
        raise ValueError(f"occluder size must be an int >= 1, got {v!r}")
    if int(v) > s:
        raise ValueError(f"occluder size {v} is larger than the {s}x{s} images the model sees")
    return int(v)


def check_stride(v) -> int:
    """An occluder stride, checked."""
    if isinstance(v, bool) or int(v) != v or int(v) < 1:
        raise ValueError(f"occluder stride must be an int >= 1, got {v!r}")
    return int(v)


def occlusion_caption(i: int, d: dict, split: str, names: Sequence[str], fill: float) -> str:
    """The HTML caption of image ``i``'s panels (``d`` from :meth:`OcclusionExplorer.compute`)."""
    m = d["maps"]
    label, pred = class_name(m.target, names), class_name(d["pred"], names)
    pi, pj = np.unravel_index(int(np.argmin(m.prob.numpy())), m.prob.shape)
    e = _html.escape
    return (f"<b>image #{i}</b> of the {e(split)} split: <b>{e(label)}</b> "
            f"(predicted: {e(pred)}; p({e(label)}) = {m.unoccluded_prob:.3f} unoccluded). "
            f"A {d['size']}x{d['size']} px occluder (fill {fill:g}: the mean), stride "
            f"{d['stride']}: {len(m.ys)}x{len(m.xs)} positions; the lowest p({e(label)}), "
            f"{float(m.prob[pi, pj]):.3f}, with the occluder at (y, x) = ({m.ys[pi]}, {m.xs[pj]}). "
            f"(b), (c): {e(m.layer)} map {m.feature}, the strongest in the unoccluded image "
            f"(total activity {m.unoccluded_activity:.3g}).")


def _occluders(s: int, sizes, strides, size, stride):
    """``(sizes, strides, size, stride)`` offered and shown first for an s-pixel crop: the given or
    default sizes and strides, checked, and the given or default occluder among them."""
    sizes = sorted({check_size(v, s) for v in (sizes or default_sizes(s))})
    strides = sorted({check_stride(v) for v in (strides or default_strides(s))})
    d_size, d_stride = default_occluder(s)
    size = check_size(size, s) if size is not None else (d_size if d_size in sizes else sizes[0])
    stride = check_stride(stride) if stride is not None else d_stride if d_stride in strides else strides[0]
    return sorted(set(sizes) | {size}), sorted(set(strides) | {stride}), size, stride


def _offer(dropdown, offered: List[int], value: int) -> List[int]:
    """Select ``value`` in ``dropdown``, added to its ``offered`` options first if missing; the options."""
    if value not in offered:
        offered = sorted(offered + [value])
        dropdown.options = offered
    dropdown.value = value
    return offered


class OcclusionExplorer:
    """Fig. 7 (Section 4.2), interactively: occlusion sensitivity of one image at a time.

    For the chosen image of ``split`` and occluder, :func:`zfcore.occlusion.sensitivity` with
    the image's true class as the target, drawn as the module says; each (image, size,
    stride) is computed once and kept (``cache_size`` of them).

    Args:
        run: a complete :class:`zfcore.runs.Run`.
        split: the split (default ``"test"``), of the scenes or of the user's folders.
        images: indices of the split's images offered (default: all of them).
        sizes: occluder sides offered, in pixels of the crop (default: about 1/6, 1/4,
            1/3 of it; 8, 12, 16 at 48 px).
        strides: strides offered (default: about 1/28, 1/12, 1/6 of the crop).
        precompute: compute every (image, size, stride) up front.
        size, stride: the occluder shown first (default
            :func:`zfcore.occlusion.default_occluder` when offered, else the first).
        layer: the layer of (b) and (c) (default: the last conv).
        fill: the occluder's value in the model's input.
        zoom: each pixel drawn as zoom x zoom (default: images about 190 px wide).
        scale, device: as for :class:`~zfcore.widgets.LayerExplorer`.
        batch_size: occluded images per forward pass.

    Attributes:
        image_slider: ``ipywidgets.IntSlider`` over positions in ``images``.
        size_dropdown, stride_dropdown: ``ipywidgets.Dropdown`` of sizes and strides.
        image_widget: ``ipywidgets.Image``; its ``value`` is the PNG of the panels;
            ``panel_boxes[name]`` (name in :attr:`PANELS`) is each panel's
            ``(y0, y1, x0, x1)`` in it, (image_size zoom) pixels square.
        caption: ``ipywidgets.HTML`` (class, prediction, occluder, lowest probability).
        maps: the :class:`zfcore.occlusion.OcclusionMaps` shown.
    """

    #: The panels, left to right.
    PANELS = PANELS
    pad = 10
    header = 34
    font_size = 12

    def __init__(self, run, split: str = "test", images: Optional[Sequence[int]] = None,
                 sizes: Optional[Sequence[int]] = None, strides: Optional[Sequence[int]] = None,
                 precompute: bool = False, size: Optional[int] = None, stride: Optional[int] = None,
                 layer: Optional[str] = None, fill: float = 0.0, zoom: Optional[int] = None,
                 scale=None, device=None, batch_size: int = 64, cache_size: int = 256):
        p, view, ds = setup(run, split, scale, device)
        self.preset, self.view, self.model, self.mean, self.scenes = p, view, view.model, view.mean, ds
        self.split, self.fill, self.batch_size = split, float(fill), int(batch_size)
        s = self.image_size = int(p.image_size)
        if len(ds) == 0:
            raise ValueError(f"the {split!r} split has no images")
        self.images = list(range(len(ds))) if images is None else [int(i) for i in images]
        if not self.images:
            raise ValueError("no images given")
        for i in self.images:
            check_index(i, len(ds), split)
        self.sizes, self.strides, size, stride = _occluders(s, sizes, strides, size, stride)
        if layer is not None:
            find_step(chain(view.model, s), layer)          # ValueError listing the layers
        self.layer = layer
        self.zoom = int(zoom) if zoom is not None else max(1, -(-190 // s))
        if self.zoom < 1:
            raise ValueError(f"zoom must be at least 1, got {zoom}")
        self.device = view.device
        self._cache: "OrderedDict[tuple, dict]" = OrderedDict()
        self.cache_size = int(cache_size)
        if precompute:
            self.cache_size = max(self.cache_size, len(self.images) * len(self.sizes) * len(self.strides))
            for i, sz, st in product(self.images, self.sizes, self.strides):
                self.compute(i, sz, st)
        self.maps = None
        self.panel_boxes: Dict[str, tuple] = {}
        self._rendering = False
        self._controls(size, stride)
        self.render()

    def _controls(self, size: int, stride: int) -> None:
        w = ipywidgets()
        self.image_slider = w.IntSlider(value=0, min=0, max=len(self.images) - 1, description="image",
                                        continuous_update=False)
        self.size_dropdown = w.Dropdown(options=self.sizes, value=size, description="occluder")
        self.stride_dropdown = w.Dropdown(options=self.strides, value=stride, description="stride")
        self.image_widget = w.Image(format="png")
        self.caption = w.HTML()
        self.widget = w.VBox([w.HBox([self.image_slider, self.size_dropdown, self.stride_dropdown]),
                              self.caption, self.image_widget])
        for c in (self.image_slider, self.size_dropdown, self.stride_dropdown):
            c.observe(self._on_change, names="value")

    # -- state
    @property
    def index(self) -> int:
        """The image shown (its index in the split); set it to switch."""
        return self.images[int(self.image_slider.value)]

    @index.setter
    def index(self, i: int) -> None:
        self.select(image=i)

    @property
    def size(self) -> int:
        """The occluder's side shown; set it to switch."""
        return int(self.size_dropdown.value)

    @size.setter
    def size(self, v: int) -> None:
        self.select(size=v)

    @property
    def stride(self) -> int:
        """The stride shown; set it to switch."""
        return int(self.stride_dropdown.value)

    @stride.setter
    def stride(self, v: int) -> None:
        self.select(stride=v)

    def select(self, image: Optional[int] = None, size: Optional[int] = None,
               stride: Optional[int] = None) -> None:
        """Show split image ``image``, occluder ``size`` and ``stride`` (each default: the
        current), redrawing once. A size or stride not offered yet is added to its dropdown.

        Raises:
            ValueError: an image out of the split's range or not among ``images``; a size
                below 1 or larger than the image; a stride below 1.
        """
        pos = None
        if image is not None:
            i = check_index(image, len(self.scenes), self.split)
            if i not in self.images:
                raise ValueError(f"image {i} is not among this explorer's images: "
                                 f"{', '.join(map(str, self.images[:12]))}"
                                 + (" ..." if len(self.images) > 12 else ""))
            pos = self.images.index(i)
        size = None if size is None else check_size(size, self.image_size)
        stride = None if stride is None else check_stride(stride)
        self._rendering = True              # one redraw for all the changes
        try:
            if pos is not None:
                self.image_slider.value = pos
            if size is not None:
                self.sizes = _offer(self.size_dropdown, self.sizes, size)
            if stride is not None:
                self.strides = _offer(self.stride_dropdown, self.strides, stride)
        finally:
            self._rendering = False
        self.render()

    def _on_change(self, change) -> None:
        if not self._rendering:
            self.render()

    # -- computing
    def input(self, i: int) -> torch.Tensor:
        """The (1, 3, s, s) mean-subtracted centre crop of image ``i``, on the model's device."""
        return self.view.inputs(self.scenes.images[i:i + 1]).contiguous()

    def crop(self, i: int) -> np.ndarray:
        """The (s, s, 3) uint8 centre crop of image ``i`` (what the model sees)."""
        return self.view.display(self.scenes.images[i:i + 1])[0]

    def box(self, i: int) -> Optional[np.ndarray]:
        """The labelled object's box ``(x0, y0, x1, y1)`` in the crop's pixels; None for a
        split without boxes (the user's folders: :func:`zfcore.data.splits.has_boxes`)."""
        if not has_boxes(self.scenes):
            return None
        t = (self.scenes.images.shape[1] - self.image_size) // 2
        return self.scenes.object_box(i) - t

    def compute(self, i: int, size: Optional[int] = None, stride: Optional[int] = None) -> dict:
        """Everything shown for image ``i`` with this occluder (cached): ``{"maps"
        (OcclusionMaps), "pred", "png", "boxes", "size", "stride"}``."""
        i = check_index(i, len(self.scenes), self.split)
        size = self.size if size is None else check_size(size, self.image_size)
        stride = self.stride if stride is None else check_stride(stride)
        key = (i, size, stride)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        x = self.input(i)
        with torch.no_grad():
            pred = int(self.model(x).argmax(1)[0])
        maps = sensitivity(self.model, x, size, stride, fill=self.fill, target=int(self.scenes.labels[i]),
                           layer=self.layer, batch_size=self.batch_size)
        panels = occlusion_panels(self.crop(i), maps, self.scenes.classes, size=size, box=self.box(i),
                                  target_word="true class")
        img, boxes = occlusion_sheet(panels, self.zoom, self.pad, self.header, self.font_size)
        out = {"maps": maps, "pred": pred, "png": png_bytes(img), "boxes": boxes, "size": size, "stride": stride}
        self._cache[key] = out
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    # -- drawing
    def panel(self, name: str, i: Optional[int] = None, size: Optional[int] = None,
              stride: Optional[int] = None) -> np.ndarray:
        """Panel ``name`` (one of :attr:`PANELS`) as drawn: (s zoom, s zoom, 3) uint8
        (default: the image and occluder shown)."""
        if name not in self.PANELS:
            raise ValueError(f"unknown panel {name!r}; panels: {', '.join(self.PANELS)}")
        d = self.compute(self.index if i is None else i, size, stride)
        y0, y1, x0, x1 = d["boxes"][name]
        return decode_png(d["png"])[y0:y1, x0:x1]

    def render(self) -> None:
        """Redraw for the current image, size and stride."""
        i = self.index
        d = self.compute(i)
        self.maps, self.panel_boxes = d["maps"], d["boxes"]
        self.image_widget.value = d["png"]
        self.caption.value = occlusion_caption(i, d, self.split, self.scenes.classes, self.fill)

    def examples(self, n: int = 3, exclude: Sequence[int] = ()) -> List[tuple]:
        """``(image, size, stride)`` of the static gallery's default examples: ``n`` of the explorer's
        images not in ``exclude`` (the page's own figures), of classes not shown yet first
        (:func:`~zfcore.widgets.common.pick_examples`), the k-th at the k-th occluder size offered
        (cycling), so the gallery shows what the image and size controls do; the stride shown."""
        skip = {int(i) for i in exclude}
        sizes = self.sizes
        if all(int(i) in skip for i in self.images):
            # the page already shows every image the explorer holds (a small split of the user's
            # folders): show them again, at the occluder sizes other than the one shown
            skip = set()
            sizes = [v for v in self.sizes if v != self.size_dropdown.value] or self.sizes
        chosen = pick_examples(self.images, n, sorted(skip), labels=self.scenes.labels)
        return [(i, sizes[k % len(sizes)], self.stride) for k, i in enumerate(chosen)]

    def gallery_html(self, images: Optional[Sequence[int]] = None, size: Optional[int] = None,
                     stride: Optional[int] = None, n: int = 3, exclude: Sequence[int] = ()) -> str:
        """The explorer's static stand-in for the book: an HTML block
        (:func:`zfcore.widgets.common.gallery_block`) of precomputed examples, each the panels' PNG
        (inline, alt text in words) and the caption: split ``images`` (default :meth:`examples`,
        ``n`` not in ``exclude``, the page's Fig. 7 rows), each with occluder ``size`` and
        ``stride`` (default: as :meth:`examples` says, or with ``images`` given, the one shown)."""
        if images is None:
            cases = [(i, size or sz, stride or st) for i, sz, st in self.examples(n, exclude)]
        else:
            cases = [(int(i), size, stride) for i in images]
        figures = []
        for i, sz, st in cases:
            d = self.compute(i, sz, st)
            label = class_name(d["maps"].target, self.scenes.classes)
            alt = (f"Occlusion sensitivity of image {i} of the {self.split} split, a {label}: panels (a) to "
                   f"(f) of Fig. 7 for a {d['size']} px occluder moved in steps of {d['stride']} px")
            figures.append(([d["png"]], occlusion_caption(i, d, self.split, self.scenes.classes, self.fill), alt))
        return gallery_block(figures, "occlusion")

    def _ipython_display_(self):    # pragma: no cover - notebook only
        from IPython.display import display
        display(self.widget)


def occlusion_explorer(run, split: str = "test", **kwargs) -> OcclusionExplorer:
    """An :class:`OcclusionExplorer` (display it, or its ``.widget``)."""
    return OcclusionExplorer(run, split, **kwargs)
