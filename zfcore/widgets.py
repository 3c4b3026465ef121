"""Interactive explorers for the notebooks (ipywidgets): Fig. 2 one map at a time,
Fig. 7 one image at a time.

Three widgets, all drawn as PNG images (:class:`ipywidgets.Image`, encoded with
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
* :class:`OcclusionExplorer` -- Fig. 7 (Section 4.2): pick an image, an occluder
  size and a stride, see the occlusion sensitivity panels (the input, the total
  activity of the strongest last-conv map, its deconv projection, the probability
  of the true class, the most probable class); cached per (image, size, stride).
  :meth:`OcclusionExplorer.gallery_html` gives precomputed cases for the static book.

All can be driven from Python without a browser: their controls are attributes
(``layer_dropdown``, ``map_slider``, ``image_slider``, ``size_dropdown``,
``stride_dropdown``); setting a control's ``value`` redraws synchronously
(ipywidgets observers run when the trait is set), and :meth:`render` redraws by
hand. ``image_widget.value`` holds the PNG.
Display one with ``display(explorer)`` (or ``explorer.widget``) in a notebook.
"""
from __future__ import annotations

import html as _html
import io
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["LayerExplorer", "ImageExplorer", "OcclusionExplorer", "layer_explorer", "image_explorer",
           "occlusion_explorer", "png_bytes", "decode_png"]


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
    from .data.splits import SPLITS
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
    """(preset, model on device, mean, split) of ``run`` over ``split``: a scenes
    ``SceneSet``, or at a folder scale a :class:`~zfcore.data.splits.FolderSplit`
    (:func:`zfcore.data.splits.load_split`)."""
    from .data.splits import load_split
    from .runs import preset_of
    _check_split(split)
    p = preset_of(run, scale)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = run.load().to(device).eval()
    mean = run.mean()
    ds = load_split(p, split, progress=False)
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
        split: the split whose images are ranked (``"val"`` in Fig. 2): of the scenes,
            or of the user's folders at a folder scale.
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
        from .deconv import check_method
        from .mining import mined
        check_method(method)
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
        split: the split (default ``"test"``), of the scenes or of the user's folders.
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
        from .deconv import check_method
        check_method(method)
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
        from .data.transforms import preprocess
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


# --------------------------------------------------------------------------- occlusion explorer

def _font(size: int = 12):
    """Pillow's built-in font at ``size`` px (its small bitmap font where FreeType is missing)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:        # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _default_sizes(image_size: int) -> List[int]:
    """Occluder sides offered by default: about 1/6, 1/4 and 1/3 of the image."""
    s = int(image_size)
    return sorted({max(1, min(s, int(round(s * f)))) for f in (1 / 6, 1 / 4, 1 / 3)})


def _default_strides(image_size: int) -> List[int]:
    """Strides offered by default: about 1/28, 1/12 and 1/6 of the image."""
    s = int(image_size)
    return sorted({max(1, int(round(s * f))) for f in (1 / 28, 1 / 12, 1 / 6)})


class OcclusionExplorer:
    """Fig. 7 (Section 4.2), interactively: occlusion sensitivity of one image at a time.

    For the chosen image of ``split`` (the centre crop the model sees) and the chosen
    occluder size and stride, :func:`zfcore.occlusion.sensitivity` slides a square of
    the mean grey (``fill``: 0 in the mean-subtracted input) over the image, the
    target being the image's true class (the paper's "correct class"), and the
    explorer draws the panels of Fig. 7 side by side in one PNG:

    * (a) the input, the object's box in green (where the split knows it: the
      scenes do, the user's folders do not) and the occluder (grey, outlined)
      where it lowers the true class's probability most;
    * (b) the total activity of the feature map of ``layer`` (default: the last conv,
      ``conv5``) strongest in the unoccluded image, per occluder position;
    * (c) the deconv projection of that map's strongest activation;
    * (d) the probability of the true class per occluder position;
    * (e) the most probable class per occluder position (true class green, the
      most frequent others named below it);
    * (f) map (d) laid over the image (:func:`zfcore.plots.occlusion_overlay`).

    The maps are drawn at the occluders' centres over the image
    (:func:`zfcore.plots.occlusion_pixels`), so each panel lines up with (a); colour
    bars under (b) and (d) give their ranges, a red tick the unoccluded value. Drawn
    with numpy and Pillow (no matplotlib figure); each (image, size, stride) is
    computed once and kept (``cache_size`` of them).

    Args:
        run: a complete :class:`zfcore.train.Run`.
        split: the split (default ``"test"``), of the scenes or of the user's folders.
        images: indices of the split's images offered (default: all of them).
        sizes: occluder sides offered, in pixels of the crop (default: about 1/6, 1/4,
            1/3 of it; 8, 12, 16 at 48 px).
        strides: strides offered (default: about 1/28, 1/12, 1/6 of the crop).
        precompute: compute every (image, size, stride) up front (then each change is
            only a lookup).
        size, stride: the occluder shown first (default
            :func:`zfcore.occlusion.default_occluder` when offered, else the first).
        layer: the layer of (b) and (c) (default: the last conv).
        fill: the occluder's value in the model's input.
        zoom: each pixel drawn as zoom x zoom (default: images about 190 px wide).
        scale, device: as for :class:`LayerExplorer`.
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
    PANELS = ("input", "activity", "projection", "prob", "top_class", "overlay")
    pad = 10
    header = 34
    font_size = 12

    def __init__(self, run, split: str = "test", images: Optional[Sequence[int]] = None,
                 sizes: Optional[Sequence[int]] = None, strides: Optional[Sequence[int]] = None,
                 precompute: bool = False, size: Optional[int] = None, stride: Optional[int] = None,
                 layer: Optional[str] = None, fill: float = 0.0, zoom: Optional[int] = None,
                 scale=None, device=None, batch_size: int = 64, cache_size: int = 256):
        from .occlusion import default_occluder
        p, model, mean, ds = _setup(run, split, scale, device)
        self.preset, self.model, self.mean, self.scenes = p, model, mean, ds
        self.split, self.fill, self.batch_size = split, float(fill), int(batch_size)
        s = self.image_size = int(p.image_size)
        n = len(ds)
        if n == 0:
            raise ValueError(f"the {split!r} split has no images")
        self.images = list(range(n)) if images is None else [int(i) for i in images]
        if not self.images:
            raise ValueError("no images given")
        for i in self.images:
            self._check_index(i)
        self.sizes = sorted({self._check_size(v) for v in (sizes or _default_sizes(s))})
        self.strides = sorted({self._check_stride(v) for v in (strides or _default_strides(s))})
        d_size, d_stride = default_occluder(s)
        size = self._check_size(size) if size is not None else (d_size if d_size in self.sizes else self.sizes[0])
        stride = (self._check_stride(stride) if stride is not None
                  else d_stride if d_stride in self.strides else self.strides[0])
        self.sizes = sorted(set(self.sizes) | {size})
        self.strides = sorted(set(self.strides) | {stride})
        if layer is not None:
            from .chain import chain, find_step
            find_step(chain(model, s), layer)          # ValueError listing the layers
        self.layer = layer
        self.zoom = int(zoom) if zoom is not None else max(1, -(-190 // s))
        if self.zoom < 1:
            raise ValueError(f"zoom must be at least 1, got {zoom}")
        self.device = next(model.parameters()).device
        self._mean_dev = mean.to(self.device)
        self._cache: "OrderedDict[tuple, dict]" = OrderedDict()
        self.cache_size = int(cache_size)
        if precompute:
            self.cache_size = max(self.cache_size, len(self.images) * len(self.sizes) * len(self.strides))
            for i in self.images:
                for sz in self.sizes:
                    for st in self.strides:
                        self.compute(i, sz, st)
        self.maps = None
        self.panel_boxes: Dict[str, tuple] = {}
        self._rendering = False

        w = _widgets()
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
        self.render()

    # -- checks
    def _check_index(self, i) -> int:
        n = len(self.scenes)
        if isinstance(i, bool) or int(i) != i or not 0 <= int(i) < n:
            raise ValueError(f"image {i} is out of range for the {self.split!r} split of {n} images: "
                             f"expected 0..{n - 1}")
        return int(i)

    def _check_size(self, v) -> int:
        s = self.image_size
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise ValueError(f"occluder size must be an int >= 1, got {v!r}")
        if int(v) > s:
            raise ValueError(f"occluder size {v} is larger than the {s}x{s} images the model sees")
        return int(v)

    @staticmethod
    def _check_stride(v) -> int:
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise ValueError(f"occluder stride must be an int >= 1, got {v!r}")
        return int(v)

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
            i = self._check_index(image)
            if i not in self.images:
                raise ValueError(f"image {i} is not among this explorer's images: "
                                 f"{', '.join(map(str, self.images[:12]))}"
                                 + (" ..." if len(self.images) > 12 else ""))
            pos = self.images.index(i)
        if size is not None:
            size = self._check_size(size)
        if stride is not None:
            stride = self._check_stride(stride)
        self._rendering = True              # one redraw for all the changes
        try:
            if pos is not None:
                self.image_slider.value = pos
            if size is not None:
                if size not in self.sizes:
                    self.sizes = sorted(self.sizes + [size])
                    self.size_dropdown.options = self.sizes
                self.size_dropdown.value = size
            if stride is not None:
                if stride not in self.strides:
                    self.strides = sorted(self.strides + [stride])
                    self.stride_dropdown.options = self.strides
                self.stride_dropdown.value = stride
        finally:
            self._rendering = False
        self.render()

    def _on_change(self, change) -> None:
        if not self._rendering:
            self.render()

    # -- computing
    def input(self, i: int) -> torch.Tensor:
        """The (1, 3, s, s) mean-subtracted centre crop of image ``i``, on the model's device."""
        from .data.transforms import center_crop
        from .data.transforms import preprocess
        x = torch.from_numpy(self.scenes.images[i:i + 1]).permute(0, 3, 1, 2).to(self.device)
        return center_crop(preprocess(x, self._mean_dev), self.image_size).contiguous()

    def crop(self, i: int) -> np.ndarray:
        """The (s, s, 3) uint8 centre crop of image ``i`` (what the model sees)."""
        img = self.scenes.images[i]
        t = (img.shape[0] - self.image_size) // 2
        return img[t:t + self.image_size, t:t + self.image_size]

    def box(self, i: int) -> Optional[np.ndarray]:
        """The labelled object's box ``(x0, y0, x1, y1)`` in the crop's pixels; None for a
        split without boxes (the user's folders: :func:`zfcore.data.splits.has_boxes`)."""
        from .data.splits import has_boxes
        if not has_boxes(self.scenes):
            return None
        t = (self.scenes.images.shape[1] - self.image_size) // 2
        return self.scenes.object_box(i) - t

    def compute(self, i: int, size: Optional[int] = None, stride: Optional[int] = None) -> dict:
        """Everything shown for image ``i`` with this occluder (cached): ``{"maps"
        (OcclusionMaps), "pred", "png", "boxes"}``."""
        from .occlusion import sensitivity
        i = self._check_index(i)
        size = self.size if size is None else self._check_size(size)
        stride = self.stride if stride is None else self._check_stride(stride)
        key = (i, size, stride)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        x = self.input(i)
        with torch.no_grad():
            pred = int(self.model(x).argmax(1)[0])
        maps = sensitivity(self.model, x, size, stride, fill=self.fill, target=int(self.scenes.labels[i]),
                           layer=self.layer, batch_size=self.batch_size)
        png, boxes = self._draw(i, maps, size)
        out = {"maps": maps, "pred": pred, "png": png, "boxes": boxes, "size": size, "stride": stride}
        self._cache[key] = out
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    # -- drawing
    def _draw(self, i: int, maps, size: int):
        from PIL import Image, ImageDraw
        from . import plots
        s, z, pad, head = self.image_size, self.zoom, self.pad, self.header
        S = s * z
        font, small = _font(self.font_size), _font(self.font_size - 1)
        names = self.scenes.classes
        crop = self.crop(i)
        ys, xs = maps.ys, maps.xs

        # (a) input, object box, occluder where p is lowest
        a = _zoom(crop, z).astype(np.float64) / 255.0
        pi, pj = np.unravel_index(int(np.argmin(maps.prob.numpy())), maps.prob.shape)
        y0, x0 = ys[pi] * z, xs[pj] * z
        a[y0:y0 + size * z, x0:x0 + size * z] = 0.45 * a[y0:y0 + size * z, x0:x0 + size * z] + 0.55 * 0.5
        # (b) activity, (d) probability, (e) most probable class, (f) overlay
        act = maps.activity.numpy()
        a_lo, a_hi = float(act.min()), float(act.max())
        b = plots.colorize(plots.occlusion_pixels(act, ys, xs, size, s, s, z), plots.ACTIVITY_CMAP, a_lo, a_hi)
        c = (plots.normalize_projection(maps.projection) if maps.projection is not None
             else np.full((s, s, 3), 0.5))
        c = _zoom(c, z)
        p_lo, p_hi = plots.prob_limits(maps)
        d = plots.colorize(plots.occlusion_pixels(maps.prob, ys, xs, size, s, s, z), plots.PROB_CMAP, p_lo, p_hi)
        legend, lut = plots.top_class_colours(maps.top_class, maps.target)
        e = plots.top_class_rgb(plots.occlusion_pixels(maps.top_class, ys, xs, size, s, s, z), lut)
        f = plots.occlusion_overlay(crop, maps, size, "prob", zoom=z)
        panels = [a, b, c, d, e, f]

        # under the panels: colour bars (b, d), legend (e)
        bar_h = 10
        under = max(bar_h + 4 + 16, 16 * len(legend) + 4)
        width = len(panels) * (S + pad) + pad
        height = head + S + pad + under + pad
        canvas = np.full((height, width, 3), 255, np.uint8)
        boxes = {}
        for k, (name, img) in enumerate(zip(self.PANELS, panels)):
            px = pad + k * (S + pad)
            canvas[head:head + S, px:px + S] = _to_u8(img)
            boxes[name] = (head, head + S, px, px + S)
        ramp = np.linspace(0.0, 1.0, S)[None, :].repeat(bar_h, 0)
        for name, cmap, lo, hi, v0 in (("activity", plots.ACTIVITY_CMAP, a_lo, a_hi, maps.unoccluded_activity),
                                       ("prob", plots.PROB_CMAP, p_lo, p_hi, maps.unoccluded_prob)):
            _, _, px, _ = boxes[name]
            by = head + S + pad
            canvas[by:by + bar_h, px:px + S] = _to_u8(plots.colorize(ramp, cmap, 0.0, 1.0))
            if hi > lo and lo <= v0 <= hi:             # the unoccluded value: a red tick
                tx = px + min(S - 2, int(round((v0 - lo) / (hi - lo) * (S - 1))))
                canvas[by - 3:by + bar_h + 3, max(px, tx - 1):tx + 2] = (220, 0, 0)
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        # the occluder's outline and the object's box on (a)
        _, _, ax0, _ = boxes["input"]
        draw.rectangle([ax0 + x0, head + y0, ax0 + x0 + size * z - 1, head + y0 + size * z - 1],
                       outline=(255, 255, 255), width=max(1, z // 2))
        obj = self.box(i)
        if obj is not None:
            bx0, by0, bx1, by1 = [float(v) * z for v in obj]
            draw.rectangle([ax0 + max(0.0, bx0), head + max(0.0, by0), ax0 + min(S - 1.0, bx1),
                            head + min(S - 1.0, by1)], outline=(0, 230, 0), width=1)
        target = plots.class_name(maps.target, names)
        titles = {
            "input": (f"(a) input, {size}x{size} occluder", "grey: where p is lowest"),
            "activity": ("(b) total activity", f"{maps.layer}, map {maps.feature}"),
            "projection": ("(c) deconv projection", f"{maps.layer}, map {maps.feature}"),
            "prob": (f"(d) p({target})", f"min {float(maps.prob.min()):.3g}"),
            "top_class": ("(e) most probable class", f"{len(ys)}x{len(xs)} positions"),
            "overlay": ("(f) (d) over the image", ""),
        }
        for name, (t1, t2) in titles.items():
            _, _, px, _ = boxes[name]
            draw.text((px, 2), _fit(draw, t1, font, S), fill=(0, 0, 0), font=font)
            draw.text((px, 2 + self.font_size + 3), _fit(draw, t2, small, S), fill=(80, 80, 80), font=small)
        for name, lo, hi, fmt in (("activity", a_lo, a_hi, ".3g"), ("prob", p_lo, p_hi, ".3g")):
            _, _, px, _ = boxes[name]
            ty = head + S + pad + bar_h + 3
            draw.text((px, ty), f"{lo:{fmt}}", fill=(0, 0, 0), font=small)
            hi_s = f"{hi:{fmt}}"
            draw.text((px + S - draw.textlength(hi_s, font=small), ty), hi_s, fill=(0, 0, 0), font=small)
            mid = "red: unoccluded"
            draw.text((px + (S - draw.textlength(mid, font=small)) / 2, ty), mid, fill=(200, 0, 0), font=small)
        _, _, px, _ = boxes["top_class"]
        n = maps.top_class.numel()
        for k, (cls, colour, cnt) in enumerate(legend):
            ly = head + S + pad + 16 * k
            draw.rectangle([px, ly + 2, px + 11, ly + 13], fill=tuple(int(round(255 * v)) for v in colour),
                           outline=(0, 0, 0))
            label = "other classes" if cls is None else plots.class_name(cls, names)
            label += (" (true class)" if cls == maps.target else "") + f": {100 * cnt / n:.0f}%"
            draw.text((px + 16, ly + 1), _fit(draw, label, small, S - 16), fill=(0, 0, 0), font=small)
        return png_bytes(np.asarray(pil)), boxes

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
        self.caption.value = self._caption(i, d)

    def _caption(self, i: int, d: dict) -> str:
        from .plots import class_name
        m, names = d["maps"], self.scenes.classes
        label, pred = class_name(m.target, names), class_name(d["pred"], names)
        pi, pj = np.unravel_index(int(np.argmin(m.prob.numpy())), m.prob.shape)
        e = _html.escape
        return (f"<b>image #{i}</b> of the {e(self.split)} split: <b>{e(label)}</b> "
                f"(predicted: {e(pred)}; p({e(label)}) = {m.unoccluded_prob:.3f} unoccluded). "
                f"A {d['size']}x{d['size']} px occluder (fill {self.fill:g}: the mean), stride "
                f"{d['stride']}: {len(m.ys)}x{len(m.xs)} positions; the lowest p({e(label)}), "
                f"{float(m.prob[pi, pj]):.3f}, with the occluder at (y, x) = ({m.ys[pi]}, {m.xs[pj]}). "
                f"(b), (c): {e(m.layer)} map {m.feature}, the strongest in the unoccluded image "
                f"(total activity {m.unoccluded_activity:.3g}).")

    def gallery_html(self, images: Optional[Sequence[int]] = None, size: Optional[int] = None,
                     stride: Optional[int] = None, n: int = 4) -> str:
        """Precomputed examples for the static book: an HTML block with, per image, the
        panels' PNG (inline) and the caption.

        Args:
            images: split indices (default: the first ``n`` of ``images``).
            size, stride: the occluder (default: the one shown).
        """
        import base64
        if images is None:
            images = self.images[:max(1, int(n))]
        parts = ['<div class="zf-occlusion-gallery">']
        for i in images:
            d = self.compute(int(i), size, stride)
            data = base64.b64encode(d["png"]).decode()
            parts.append(f'<figure style="margin:0 0 1em 0"><img style="max-width:none" '
                         f'src="data:image/png;base64,{data}"/>'
                         f'<figcaption style="font-size:12px">{self._caption(int(i), d)}</figcaption></figure>')
        parts.append("</div>")
        return "\n".join(parts)

    def _ipython_display_(self):    # pragma: no cover - notebook only
        from IPython.display import display
        display(self.widget)


def _fit(draw, text: str, font, width: float) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels in ``font``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > width:
        text = text[:-1]
    return text + "\u2026"


def occlusion_explorer(run, split: str = "test", **kwargs) -> OcclusionExplorer:
    """An :class:`OcclusionExplorer` (display it, or its ``.widget``)."""
    return OcclusionExplorer(run, split, **kwargs)
