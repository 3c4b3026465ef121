"""One image through every layer: the deconv projections of its strongest maps (Section 2.1)."""
from __future__ import annotations

import html as _html
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..deconv import check_method, project
from ..activations import top_maps
from ..plots.images import enlarge, normalize_projection, to_u8
from .common import check_layers, decode_png, gallery_block, ipywidgets, pick_examples, png_bytes, setup

__all__ = ["ImageExplorer", "image_explorer"]


class ImageExplorer:
    """One image through every layer: the deconv projections of its strongest maps.

    For the chosen image of ``split`` (the centre crop the model sees), for each
    conv layer the ``per_layer`` maps whose strongest activation in this image is
    largest (descending; ties by lower map index), each projected alone down to
    pixel space by the deconvnet (Section 2.1, as in Fig. 2 but over the whole
    image rather than cut to the receptive field): one row per layer, shown as
    :func:`zfcore.plots.normalize_projection` does (grey is zero). One batched
    :func:`zfcore.deconv.project` per layer; results cached per image.

    Args:
        run: a complete :class:`zfcore.train.Run`.
        split: the split (default ``"test"``), of the scenes or of the user's folders.
        scale: the preset whose data to use (default: the run's).
        layers: the conv layers (default: all).
        per_layer: maps shown per layer.
        zoom: each pixel drawn as zoom x zoom (nearest neighbour; default: the least that makes
            tiles 96 px or more: 2 at 48 px, 1 at 224 px).
        method, device: as for :class:`LayerExplorer`.

    Attributes:
        image_slider: ``ipywidgets.IntSlider`` over the split's images.
        image_widget: ``ipywidgets.Image``, PNG of the rows: (L (S + pad), label +
            n (S + pad), 3) pixels for S = image_size x zoom; ``row_boxes[layer]``
            gives each row's tiles as ``(y0, y1, x0, x1)`` in that image.
        input_widget: ``ipywidgets.Image`` of the crop the model sees.
        caption: ``ipywidgets.HTML`` (class, prediction, the maps and activations).
        maps, values: ``{layer: [...]}`` of the image shown: the maps and their activations.
    """

    pad = 2
    label_width = 44

    def __init__(self, run, split: str = "test", scale=None, layers: Optional[Sequence[str]] = None,
                 per_layer: int = 6, zoom: Optional[int] = None, method: str = "deconvnet", device=None,
                 cache_size: int = 256):
        check_method(method)
        if per_layer < 1:
            raise ValueError(f"per_layer must be at least 1, got {per_layer}")
        if zoom is not None and zoom < 1:
            raise ValueError(f"zoom must be at least 1, got {zoom}")
        p, view, ds = setup(run, split, scale, device)
        zoom = zoom if zoom is not None else max(1, -(-96 // int(p.image_size)))   # tiles of 96 px or more
        self.layers = check_layers(view.model, layers)
        self.preset, self.view, self.model, self.mean, self.scenes = p, view, view.model, view.mean, ds
        if len(ds) == 0:
            raise ValueError(f"the {split!r} split has no images")
        self.split, self.per_layer, self.zoom, self.method = split, int(per_layer), int(zoom), method
        self.device = view.device
        self._cache: "OrderedDict[int, dict]" = OrderedDict()
        self.cache_size = int(cache_size)
        self.row_boxes: Dict[str, tuple] = {}
        self.maps: Dict[str, List[int]] = {}
        self.values: Dict[str, List[float]] = {}

        w = ipywidgets()
        self.image_slider = w.IntSlider(value=0, min=0, max=len(ds) - 1, description="image",
                                        continuous_update=False)
        self.image_widget = w.Image(format="png")
        self.input_widget = w.Image(format="png")
        self.caption = w.HTML()
        self.widget = w.VBox([self.image_slider, self.caption,
                              w.HBox([self.input_widget, self.image_widget],       # not stretched
                                     layout=w.Layout(align_items="flex-start"))])
        self.image_slider.observe(lambda ch: self.render(), names="value")
        self.render()

    @property
    def index(self) -> int:
        """The image shown (index in the split); set it to switch."""
        return int(self.image_slider.value)

    @index.setter
    def index(self, i: int) -> None:
        self.select(i)

    def select(self, i: int) -> None:
        """Show image ``i``; ValueError when it is out of range."""
        n = len(self.scenes)
        if not 0 <= int(i) < n:
            raise ValueError(f"image {i} is out of range for the {self.split!r} split of {n} images: "
                             f"expected 0..{n - 1}")
        if int(i) == self.index:
            self.render()
        else:
            self.image_slider.value = int(i)

    def input(self, i: int) -> torch.Tensor:
        """The (1, 3, s, s) mean-subtracted centre crop of image ``i``, on the model's device."""
        return self.view.inputs(self.scenes.images[i:i + 1]).contiguous()

    def compute(self, i: int) -> dict:
        """Everything shown for image ``i`` (cached): ``{"maps": {layer: [...]}, "values":
        {layer: [...]}, "projections": {layer: (n, 3, s, s) float32}, "png", "input_png",
        "pred"}``."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        x = self.input(i)
        with torch.no_grad():
            pred = int(self.model(x).argmax(1)[0])
        maps, values, projs = {}, {}, {}
        for name in self.layers:
            order, peak = top_maps(self.model, x, name, self.per_layer)     # ties to the lower map
            order, n = order[0], order.shape[1]
            pr = project(self.model, x.expand(n, -1, -1, -1), name, order.to(self.device), method=self.method)
            maps[name] = order.tolist()
            values[name] = peak[0].tolist()
            projs[name] = pr.float().cpu().numpy()
        out = {"maps": maps, "values": values, "projections": projs, "pred": pred}
        out["png"], out["boxes"] = self._draw(projs)
        out["input_png"] = png_bytes(enlarge(self.view.display(self.scenes.images[i:i + 1])[0], self.zoom))
        self._cache[i] = out
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _draw(self, projs: Dict[str, np.ndarray]):
        from PIL import Image, ImageDraw
        s, pad = self.preset.image_size * self.zoom, self.pad
        n_max = max(p.shape[0] for p in projs.values())
        h = len(self.layers) * (s + pad) - pad
        wd = self.label_width + n_max * (s + pad) - pad
        img = np.full((h, wd, 3), 255, np.uint8)
        boxes = {}
        for r, name in enumerate(self.layers):
            y0 = r * (s + pad)
            for j, p in enumerate(projs[name]):
                x0 = self.label_width + j * (s + pad)
                img[y0:y0 + s, x0:x0 + s] = enlarge(to_u8(normalize_projection(p)), self.zoom)
            boxes[name] = (y0, y0 + s, self.label_width, self.label_width + len(projs[name]) * (s + pad) - pad)
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        for r, name in enumerate(self.layers):
            draw.text((2, r * (s + pad) + s // 2 - 6), name, fill=(0, 0, 0))
        return png_bytes(np.asarray(pil)), boxes

    def row(self, layer: str, i: Optional[int] = None) -> np.ndarray:
        """The (S, n (S + pad) - pad, 3) uint8 row of ``layer``'s tiles for image ``i`` (default:
        the one shown), as drawn in ``image_widget``."""
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; this explorer shows: {', '.join(self.layers)}")
        d = self.compute(self.index if i is None else int(i))
        y0, y1, x0, x1 = d["boxes"][layer]
        return decode_png(d["png"])[y0:y1, x0:x1]

    def render(self) -> None:
        """Redraw for the current image."""
        i = self.index
        d = self.compute(i)
        self.maps, self.values = d["maps"], d["values"]
        self.row_boxes = d["boxes"]
        self.image_widget.value = d["png"]
        self.input_widget.value = d["input_png"]
        self.caption.value = self._caption(i, d)

    def _caption(self, i: int, d: dict) -> str:
        names = self.scenes.classes
        label = names[int(self.scenes.labels[i])]
        pred = names[d["pred"]] if d["pred"] < len(names) else str(d["pred"])
        rows = "".join(
            f"<tr><td>{_html.escape(name)}</td><td>" + ", ".join(
                f"{m} <small>({v:.3g})</small>" for m, v in zip(d["maps"][name], d["values"][name]))
            + "</td></tr>" for name in self.layers)
        return (f"<b>image #{i}</b> of the {_html.escape(self.split)} split: "
                f"<b>{_html.escape(label)}</b> (predicted: {_html.escape(pred)}). "
                f"Per layer, its {self.per_layer} strongest maps (peak activation), "
                f"each projected alone by the deconvnet:"
                f'<table style="font-size:11px">{rows}</table>')

    def gallery_html(self, images: Optional[Sequence[int]] = None, n: int = 3,
                     exclude: Sequence[int] = ()) -> str:
        """The explorer's static stand-in for the book: precomputed examples it would show, an
        HTML block (:func:`zfcore.widgets.common.gallery_block`) with, per image, the crop the
        model sees and the rows of projections (inline PNGs, alt text in words) above the caption.

        Args:
            images: split indices (default: ``n`` of the split not in ``exclude``, of classes not
                shown yet first: :func:`~zfcore.widgets.common.pick_examples`).
            exclude: images not to repeat (the one the page's figures show).
        """
        if images is None:
            images = pick_examples(range(len(self.scenes)), n, exclude, labels=self.scenes.labels)
        figures = []
        for i in images:
            i = int(i)
            if not 0 <= i < len(self.scenes):
                raise ValueError(f"image {i} is out of range for the {self.split!r} split of "
                                 f"{len(self.scenes)} images: expected 0..{len(self.scenes) - 1}")
            d = self.compute(i)
            label = self.scenes.classes[int(self.scenes.labels[i])]
            alt = (f"Image {i} of the {self.split} split, a {label}, and for each of "
                   f"{', '.join(self.layers)} the deconv projections of its {self.per_layer} strongest maps")
            figures.append(([d["input_png"], d["png"]], self._caption(i, d), alt))
        return gallery_block(figures, "image")

    def _ipython_display_(self):    # pragma: no cover - notebook only
        from IPython.display import display
        display(self.widget)


def image_explorer(run, split: str = "test", **kwargs) -> ImageExplorer:
    """An :class:`ImageExplorer` (display it, or its ``.widget``)."""
    return ImageExplorer(run, split, **kwargs)
