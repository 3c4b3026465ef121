"""Fig. 2 (Section 2.1; the top-9 of Section 4), interactively: a layer's maps one at a time."""
from __future__ import annotations

import html as _html
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..deconv import check_method
from ..mining import mined, patches, projections
from ..plots.features import trimmed_pairs
from ..plots.images import tile, to_u8
from .common import check_layers, gallery_block, ipywidgets, pick_examples, png_bytes, setup

__all__ = ["LayerExplorer", "layer_explorer"]


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
        check_method(method)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        p, view, ds = setup(run, split, scale, device)
        layers = check_layers(view.model, layers)
        self.preset, self.view, self.model, self.mean, self.scenes = p, view, view.model, view.mean, ds
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

        w = ipywidgets()
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
            tk = self.topk[layer]
            pr = projections(self.scenes.images, tk, self.model, self.mean, self.preset.image_size,
                             method=self.method, progress=self.progress)
            pa = patches(self.scenes.images, tk, self.model, self.preset.image_size)
            gap = np.ones((self.tile_height, self.gap, 3), np.float32)
            out = np.empty((tk.num_maps, self.tile_height, 2 * self.tile_width + self.gap, 3), np.uint8)
            for c, pairs in enumerate(trimmed_pairs(pr, pa, self.side)):
                left = tile([a for a, _ in pairs], cols=self.cols)
                right = tile([b for _, b in pairs], cols=self.cols)
                out[c] = to_u8(np.concatenate([left, gap, right], 1))
            self.panels[layer] = out
        return self.panels[layer]

    def panel(self, layer: Optional[str] = None, map: Optional[int] = None) -> np.ndarray:
        """The (t, 2 t + gap, 3) uint8 image of a map (default: the one shown)."""
        layer = self.layer if layer is None else layer
        if layer not in self.topk:
            raise ValueError(f"unknown layer {layer!r}; this explorer shows: {', '.join(self.layers)}")
        c = self.map if map is None else int(map)
        n = self.topk[layer].num_maps
        if not 0 <= c < n:
            raise ValueError(f"map {c} is out of range for layer {layer!r}, which has {n} maps: expected 0..{n - 1}")
        return self._ensure(layer)[c]

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
        self.title.value = self._title(layer, c)
        self.caption.value = self._caption(self.topk[layer], c)

    def _title(self, layer: str, c: int) -> str:
        tk = self.topk[layer]
        return (f"<b>{_html.escape(layer)}, map {c}</b> of {tk.num_maps}: its top {tk.k} "
                f"over the {_html.escape(self.split)} split &mdash; deconv projections "
                f"(left) and image patches (right), strongest first")

    def examples(self, per_layer: int = 1, exclude: Optional[Dict[str, Sequence[int]]] = None) -> List[tuple]:
        """``(layer, map)`` of the examples the static gallery shows by default: for each layer, the
        ``per_layer`` maps with the strongest top activation (ties to the lower map), leaving out
        ``exclude[layer]`` (maps the page's own figures show)."""
        out = []
        for layer in self.layers:
            peak = np.nan_to_num(np.asarray(self.topk[layer].values, np.float64)[:, 0], nan=-np.inf)
            order = np.argsort(-peak, kind="stable")
            out += [(layer, c) for c in pick_examples(order, per_layer, (exclude or {}).get(layer, ()))]
        return out

    def gallery_html(self, examples: Optional[Sequence[tuple]] = None, per_layer: int = 1,
                     exclude: Optional[Dict[str, Sequence[int]]] = None) -> str:
        """The explorer's static stand-in for the book: precomputed examples it would show, an
        HTML block (:func:`zfcore.widgets.common.gallery_block`) with, per ``(layer, map)``, the
        panel (inline PNG at the explorer's tile size, alt text in words) above its title and the
        caption naming each tile's image, class and activation.

        Args:
            examples: ``[(layer, map), ...]`` (default: :meth:`examples`, one map per layer).
        """
        if examples is None:
            examples = self.examples(per_layer, exclude)
        figures = []
        for layer, c in examples:
            panel = self.panel(layer, int(c))                  # ValueError for an unknown layer
            tk = self.topk[layer]
            alt = (f"{layer}, map {int(c)}: the deconv projections of its top {tk.k} activations over the "
                   f"{self.split} split (left) beside the image patches they see (right)")
            figures.append(([png_bytes(panel)], self._title(layer, int(c)) + self._caption(tk, int(c)), alt))
        return gallery_block(figures, "layer")

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
