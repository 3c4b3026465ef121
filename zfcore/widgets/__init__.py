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

One module per explorer (:mod:`~zfcore.widgets.layer`, :mod:`~zfcore.widgets.image`,
:mod:`~zfcore.widgets.occlusion`) and what they share (:mod:`~zfcore.widgets.common`); the
drawing itself is :mod:`zfcore.plots`'s. The names below are re-exported here.
"""

from .common import decode_png, png_bytes
from .image import ImageExplorer, image_explorer
from .layer import LayerExplorer, layer_explorer
from .occlusion import OcclusionExplorer, occlusion_explorer

__all__ = ["LayerExplorer", "ImageExplorer", "OcclusionExplorer", "layer_explorer", "image_explorer",
           "occlusion_explorer", "png_bytes", "decode_png"]
