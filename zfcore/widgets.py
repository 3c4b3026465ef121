"""Interactive explorers for the notebooks (ipywidgets): Fig. 2 one map at a time.

Two widgets, both drawn as PNG images (:class:`ipywidgets.Image`, encoded with
Pillow) rather than matplotlib figures, so that a change redraws in a few
milliseconds:

* :class:`LayerExplorer` -- Fig. 2 (Section 2.1; the top-9 of Section 4): pick a
  layer and a feature map, see the map's 9 strongest activations over a split
  projected to pixel space by the deconvnet, cut to their receptive fields (a
  3x3 tile, left), beside the image patches those activations see (a 3x3 tile,
  right), with the images' indices and classes as a caption. The top 9 come
  from :func:`zfcore.mining.mined` (cached); the projections and patches of a
  layer are computed once, for all of its maps, the first time the layer is
  shown, and kept as ready uint8 tiles: a change of map only indexes them.
* :class:`ImageExplorer` -- the other way round: pick an image, see for every
  conv layer the deconv projections of that image's strongest maps (Section 2.1:
  each activation projected alone, all other activations of the layer zero),
  one row of tiles per layer. Computed once per image (a few batched deconv
  passes) and cached.

Both can be driven from Python without a browser: their controls are attributes
(``layer_dropdown``, ``map_slider``, ``image_slider``); setting a control's
``value`` redraws synchronously (ipywidgets observers run when the trait is
set), and :meth:`render` redraws by hand. ``image_widget.value`` holds the PNG.
Display one with ``display(explorer)`` (or ``explorer.widget``) in a notebook.
"""
from __future__ import annotations

import html as _html
import io
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["LayerExplorer", "ImageExplorer", "layer_explorer", "image_explorer", "png_bytes",
           "decode_png"]


# --------------------------------------------------------------------------- helpers

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


def _to_u8(img: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 (rounded: a float that came from uint8 / 255 goes back exactly)."""
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _zoom(img: np.ndarray, z: int) -> np.ndarray:
    return img if z == 1 else img.repeat(z, 0).repeat(z, 1)


def _check_split(split: str) -> None:
    from .data.scenes import SPLITS
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _check_layers(model, layers: Optional[Sequence[str]]) -> List[str]:
    from .mining import default_layers
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


def _setup(run, split: str, scale, device):
    """(preset, model on device, mean, scene set) of ``run`` over ``split``."""
    from .data.scenes import load_scenes
    from .mining import _run_preset
    from .presets import get_preset
    _check_split(split)
    p = get_preset(scale) if scale is not None else _run_preset(run)
    if p.data != "scenes":
        raise ValueError(f"the explorers read the generated scenes; the {p.name!r} scale uses folder data")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = run.load().to(device).eval()
    mean = run.mean()
    ds = load_scenes(p, split, progress=False)
    return p, model, mean, ds


def _widgets():
    try:
        import ipywidgets
    except ImportError as e:      # pragma: no cover - an install problem
        raise ImportError("the explorers need ipywidgets (pip install ipywidgets)") from e
    return ipywidgets


# --------------------------------------------------------------------------- layer explorer

class LayerExplorer:
    """Fig. 2, interactively: a layer's feature maps one at a time.

    For the chosen layer and map, the map's top-k activations over ``split``
    (:func:`zfcore.mining.mined`, k = 9 as in Fig. 2; cached on disk), each
    projected down to pixel space by the deconvnet (Section 2.1) in its own image
    and cut to its receptive field (:func:`zfcore.mining.projections`), tiled 3x3
    on the left; the image patches the same activations see
    (:func:`zfcore.mining.patches`) tiled 3x3 on the right, in the same order
    (row by row, strongest first). A field larger than the image is trimmed to the
    part inside the image and every tile is resized to ``side`` pixels, as
    :func:`zfcore.plots.feature_grid` does. The caption names each tile's image
    (index in the split, class) and activation.

    The first time a layer is shown, the projections and patches of *all* its maps
    are computed (one batched pass, a second or so at the default scale) and kept
    as uint8 panels; a change of map afterwards indexes that array and encodes one
    PNG (milliseconds). ``precompute=True`` does every layer up front.

    Args:
        run: a complete :class:`zfcore.train.Run`.
        split: the scenes split whose images are ranked (``"val"`` in Fig. 2).
        scale: the preset whose data to use (default: the run's).
        layers: the conv layers offered (default: all, ``conv1`` ... ``conv5``).
        k: activations per map (9: a 3x3 tile).
        side: pixels of each tile.
        method: ``"deconvnet"`` (Section 2.1), ``"gradient"`` or ``"guided"``.
        device: where the projections are computed (default: CUDA if available).

    Attributes:
        layer_dropdown: ``ipywidgets.Dropdown`` of the layers.
        map_slider: ``ipywidgets.IntSlider``, 0 .. (the layer's maps - 1).
        image_widget: ``ipywidgets.Image``; its ``value`` is the PNG of the panel,
            (t, 2 t + gap, 3) pixels with t = 3 side + 2 (``tile_width`` = t):
            projections in columns ``[0, t)``, patches in ``[t + gap, 2 t + gap)``.
        caption: ``ipywidgets.HTML`` with the images, classes and activations.
        widget: the whole ``ipywidgets.VBox`` (also shown by ``display(explorer)``).
        topk: ``{layer: TopK}`` from :func:`zfcore.mining.mined`.
        panels: ``{layer: (C, t, 2 t + gap, 3) uint8}`` for the layers computed so far.
    """

    gap = 8

    def __init__(self, run, split: str = "val", scale=None, layers: Optional[Sequence[str]] = None,
                 k: int = 9, side: int = 64, method: str = "deconvnet", device=None,
                 precompute: bool = False, progress: bool = False):
        from .deconv import _check_method
        from .mining import mined
        _check_method(method)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        p, model, mean, ds = _setup(run, split, scale, device)
        layers = _check_layers(model, layers)
        self.preset, self.model, self.mean, self.scenes = p, model, mean, ds
        self.split, self.k, self.side, self.method, self.progress = split, int(k), int(side), method, progress
        self.topk = mined(run, split, layers=layers, k=self.k, scale=p, progress=progress)
        self.layers = list(self.topk)
        self.cols = int(np.ceil(np.sqrt(self.k)))
        rows = -(-self.k // self.cols)
        self.tile_width = self.cols * (self.side + 1) - 1
        self.tile_height = rows * (self.side + 1) - 1
        self.panels: Dict[str, np.ndarray] = {}
        self._rendering = False
        if precompute:
            for name in self.layers:
                self._ensure(name)
        else:
            self._ensure(self.layers[0])

        w = _widgets()
        self.layer_dropdown = w.Dropdown(options=self.layers, value=self.layers[0], description="layer")
        self.map_slider = w.IntSlider(value=0, min=0, max=self.topk[self.layers[0]].num_maps - 1,
                                      description="map", continuous_update=True)
        self.image_widget = w.Image(format="png")
        self.title = w.HTML()
        self.caption = w.HTML()
        self.widget = w.VBox([w.HBox([self.layer_dropdown, self.map_slider]), self.title,
                              self.image_widget, self.caption])
        self.layer_dropdown.observe(self._on_layer, names="value")
        self.map_slider.observe(self._on_map, names="value")
        self.render()

    # -- state
    @property
    def layer(self) -> str:
        """The layer shown; set it (a name from ``layers``) to switch."""
        return self.layer_dropdown.value

    @layer.setter
    def layer(self, name: str) -> None:
        self.select(layer=name)

    @property
    def map(self) -> int:
        """The feature map shown; set it to switch."""
        return int(self.map_slider.value)

    @map.setter
    def map(self, c: int) -> None:
        self.select(map=c)

    def select(self, layer: Optional[str] = None, map: Optional[int] = None) -> None:
        """Show ``layer`` (default: the current) and its map ``map`` (default: the current,
        clamped to the layer's maps). Raises ValueError for an unknown layer or a map out of range."""
        if layer is not None and layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; this explorer shows: {', '.join(self.layers)}")
        target = layer if layer is not None else self.layer
        if map is not None:
            n = self.topk[target].num_maps
            if not 0 <= int(map) < n:
                raise ValueError(f"map {map} is out of range for layer {target!r}, which has {n} maps: "
                                 f"expected 0..{n - 1}")
        if layer is not None and layer != self.layer:
            self._rendering = True          # one redraw for both changes
            try:
                self.layer_dropdown.value = layer
            finally:
                self._rendering = False
        if map is not None:
            self._rendering = True
            try:
                self.map_slider.value = int(map)
            finally:
                self._rendering = False
        self.render()

    # -- computing
    def _ensure(self, layer: str) -> np.ndarray:
        """The uint8 panels of every map of ``layer`` (computed the first time)."""
        if layer not in self.panels:
            from .mining import patches, projections
            from .plots import trimmed_pairs, tile
            tk = self.topk[layer]
            pr = projections(self.scenes.images, tk, self.model, self.mean, self.preset.image_size,
                             method=self.method, progress=self.progress)
            pa = patches(self.scenes.images, tk, self.model, self.preset.image_size)
            gap = np.ones((self.tile_height, self.gap, 3), np.float32)
            out = np.empty((tk.num_maps, self.tile_height, 2 * self.tile_width + self.gap, 3), np.uint8)
            for c, pairs in enumerate(trimmed_pairs(pr, pa, self.side)):
                left = tile([a for a, _ in pairs], cols=self.cols)
                right = tile([b for _, b in pairs], cols=self.cols)
                out[c] = _to_u8(np.concatenate([left, gap, right], 1))
            self.panels[layer] = out
        return self.panels[layer]

    def panel(self, layer: Optional[str] = None, map: Optional[int] = None) -> np.ndarray:
        """The (t, 2 t + gap, 3) uint8 image of a map (default: the one shown)."""
        layer = self.layer if layer is None else layer
        if layer not in self.topk:
            raise ValueError(f"unknown layer {layer!r}; this explorer shows: {', '.join(self.layers)}")
        return self._ensure(layer)[self.map if map is None else int(map)]

    # -- drawing
    def _on_layer(self, change) -> None:
        layer = change["new"]
        self._ensure(layer)
        was = self._rendering
        self._rendering = True           # the clamp of value below must not redraw the old layer
        try:
            n = self.topk[layer].num_maps
            if self.map_slider.value > n - 1:
                self.map_slider.value = n - 1
            self.map_slider.max = n - 1
        finally:
            self._rendering = was
        if not was:
            self.render()

    def _on_map(self, change) -> None:
        if not self._rendering:
            self.render()

    def render(self) -> None:
        """Redraw the panel, title and caption for the current layer and map."""
        layer, c = self.layer, self.map
        self.image_widget.value = png_bytes(self.panel(layer, c))
        tk = self.topk[layer]
        self.title.value = (f"<b>{_html.escape(layer)}, map {c}</b> of {tk.num_maps}: its top {tk.k} "
                            f"over the {_html.escape(self.split)} split &mdash; deconv projections "
                            f"(left) and image patches (right), strongest first")
        self.caption.value = self._caption(tk, c)

    def _caption(self, tk, c: int) -> str:
        names, labels = self.scenes.classes, self.scenes.labels
        cells = []
        for j in range(tk.k):
            i = int(tk.images[c, j])
            if i < 0:
                cells.append("<td>&ndash;</td>")
                continue
            cells.append(f"<td>#{i} {_html.escape(names[int(labels[i])])}<br>"
                         f"<small>{float(tk.values[c, j]):.3g}</small></td>")
        rows = ["<tr>" + "".join(cells[r:r + self.cols]) + "</tr>" for r in range(0, len(cells), self.cols)]
        return '<table style="font-size:11px">' + "".join(rows) + "</table>"

    def _ipython_display_(self):    # pragma: no cover - notebook only
        from IPython.display import display
        display(self.widget)


def layer_explorer(run, split: str = "val", **kwargs) -> LayerExplorer:
    """A :class:`LayerExplorer` (display it, or its ``.widget``)."""
    return LayerExplorer(run, split, **kwargs)


# --------------------------------------------------------------------------- image explorer

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
        split: the scenes split (default ``"test"``).
        scale: the preset whose data to use (default: the run's).
        layers: the conv layers (default: all).
        per_layer: maps shown per layer.
        zoom: each pixel drawn as zoom x zoom (nearest neighbour).
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
                 per_layer: int = 6, zoom: int = 2, method: str = "deconvnet", device=None,
                 cache_size: int = 256):
        from .deconv import _check_method
        _check_method(method)
        if per_layer < 1:
            raise ValueError(f"per_layer must be at least 1, got {per_layer}")
        if zoom < 1:
            raise ValueError(f"zoom must be at least 1, got {zoom}")
        p, model, mean, ds = _setup(run, split, scale, device)
        self.layers = _check_layers(model, layers)
        self.preset, self.model, self.mean, self.scenes = p, model, mean, ds
        if len(ds) == 0:
            raise ValueError(f"the {split!r} split has no images")
        self.split, self.per_layer, self.zoom, self.method = split, int(per_layer), int(zoom), method
        self.device = next(model.parameters()).device
        self._mean_dev = mean.to(self.device)
        self._cache: "OrderedDict[int, dict]" = OrderedDict()
        self.cache_size = int(cache_size)
        self.row_boxes: Dict[str, tuple] = {}
        self.maps: Dict[str, List[int]] = {}
        self.values: Dict[str, List[float]] = {}

        w = _widgets()
        self.image_slider = w.IntSlider(value=0, min=0, max=len(ds) - 1, description="image",
                                        continuous_update=False)
        self.image_widget = w.Image(format="png")
        self.input_widget = w.Image(format="png")
        self.caption = w.HTML()
        self.widget = w.VBox([self.image_slider, self.caption,
                              w.HBox([self.input_widget, self.image_widget])])
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
        from .data.transforms import center_crop
        from .train import preprocess
        x = torch.from_numpy(self.scenes.images[i:i + 1]).permute(0, 3, 1, 2).to(self.device)
        return center_crop(preprocess(x, self._mean_dev), self.preset.image_size).contiguous()

    def compute(self, i: int) -> dict:
        """Everything shown for image ``i`` (cached): ``{"maps": {layer: [...]}, "values":
        {layer: [...]}, "projections": {layer: (n, 3, s, s) float32}, "png", "input_png",
        "pred"}``."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        from .deconv import layer_activations, project
        x = self.input(i)
        with torch.no_grad():
            acts = layer_activations(self.model, x, self.layers)
            pred = int(self.model(x).argmax(1)[0])
        maps, values, projs = {}, {}, {}
        for name in self.layers:
            peak = acts[name][0].flatten(1).amax(1).double().cpu()         # (C,)
            n = min(self.per_layer, peak.numel())
            # descending by value, ties by lower map index (stable sort of the negated values)
            order = torch.sort(-peak, stable=True).indices[:n]
            feats = order.to(self.device)
            pr = project(self.model, x.expand(n, -1, -1, -1), name, feats, method=self.method)
            maps[name] = order.tolist()
            values[name] = peak[order].tolist()
            projs[name] = pr.float().cpu().numpy()
        out = {"maps": maps, "values": values, "projections": projs, "pred": pred}
        out["png"], out["boxes"] = self._draw(projs)
        crop = self.scenes.images[i]
        t = (crop.shape[0] - self.preset.image_size) // 2
        crop = crop[t:t + self.preset.image_size, t:t + self.preset.image_size]
        out["input_png"] = png_bytes(_zoom(crop, self.zoom))
        self._cache[i] = out
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _draw(self, projs: Dict[str, np.ndarray]):
        from PIL import Image, ImageDraw
        from .plots import normalize_projection
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
                img[y0:y0 + s, x0:x0 + s] = _zoom(_to_u8(normalize_projection(p)), self.zoom)
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
        names = self.scenes.classes
        label = names[int(self.scenes.labels[i])]
        pred = names[d["pred"]] if d["pred"] < len(names) else str(d["pred"])
        rows = "".join(
            f"<tr><td>{_html.escape(name)}</td><td>" + ", ".join(
                f"{m} <small>({v:.3g})</small>" for m, v in zip(d["maps"][name], d["values"][name]))
            + "</td></tr>" for name in self.layers)
        self.caption.value = (f"<b>image #{i}</b> of the {_html.escape(self.split)} split: "
                              f"<b>{_html.escape(label)}</b> (predicted: {_html.escape(pred)}). "
                              f"Per layer, its {self.per_layer} strongest maps (peak activation), "
                              f"each projected alone by the deconvnet:"
                              f'<table style="font-size:11px">{rows}</table>')

    def _ipython_display_(self):    # pragma: no cover - notebook only
        from IPython.display import display
        display(self.widget)


def image_explorer(run, split: str = "test", **kwargs) -> ImageExplorer:
    """An :class:`ImageExplorer` (display it, or its ``.widget``)."""
    return ImageExplorer(run, split, **kwargs)
