"""Figures and tables for the book, one module per figure family. Every function returns a
matplotlib Figure, an image or an HTML string, and computes nothing the library does not
already give.

* :mod:`~zfcore.plots.captions`: numbered captions, "Figure 3.2 — ... (tiny scale)", per chapter.
* :mod:`~zfcore.plots.images`: filters, projections and inputs as RGB images; tiling, resizing.
* HTML tables and collapsed image galleries: :mod:`zfcore.tables` (re-exported here).
* :mod:`~zfcore.plots.training`: the scenes and the training curves (chapter 01).
* :mod:`~zfcore.plots.features`: Figs. 2-4 and 6: filters, top-k sheets, methods, the way down, evolution.
* :mod:`~zfcore.plots.occlusion`: Fig. 7, as a matplotlib figure and as a raster sheet (the explorer's).
* :mod:`~zfcore.plots.sanity`: the sanity checks (beyond the paper).

The names below are re-exported here, so ``from zfcore import plots; plots.tile(...)`` works.
"""
from .captions import caption, caption_html, chapter, show, table
from .features import (deconv_steps, evolution_grid, feature_grid, feature_sheet, fig6_figure, filter_grid,
                       method_comparison, projection_tile, projection_tiles, spectra_figure, trimmed_pairs)
from .images import as_rgb_image, enlarge, filters_to_image, normalize_projection, resize_tile, tile, to_u8
from .occlusion import (ACTIVITY_CMAP, BLANK_COLOUR, CLASS_COLOURS, OTHER_COLOUR, PROB_CMAP, TARGET_COLOUR,
                        OcclusionPanels, class_name, colorize, display_image, localization_scatter, occluder_size_of,
                        occluder_stride_of, occlusion_edges, occlusion_figure, occlusion_overlay, occlusion_panels,
                        occlusion_pixels, occlusion_sheet, prob_limits, top_class_colours, top_class_rgb)
from .sanity import (SANITY_COLOURS, SANITY_NAMES, deletion_insertion_curves, randomization_curves,
                     randomization_maps)
from ..tables import html_table, image_details_html
from .training import scene_gallery, training_curves

__all__ = ["chapter", "caption", "caption_html", "show", "table", "html_table", "image_details_html", "scene_gallery", "training_curves", "filters_to_image",
           "normalize_projection", "tile", "as_rgb_image", "resize_tile", "to_u8", "enlarge", "filter_grid", "trimmed_pairs",
           "feature_grid", "method_comparison", "projection_tiles", "deconv_steps", "feature_sheet", "evolution_grid",
           "projection_tile", "fig6_figure", "spectra_figure",
           "TARGET_COLOUR", "CLASS_COLOURS", "OTHER_COLOUR", "BLANK_COLOUR", "ACTIVITY_CMAP", "PROB_CMAP",
           "occlusion_edges", "occluder_size_of", "occluder_stride_of", "occlusion_pixels", "colorize",
           "prob_limits", "class_name", "top_class_colours", "top_class_rgb", "display_image",
           "occlusion_overlay", "occlusion_figure", "OcclusionPanels", "occlusion_panels", "occlusion_sheet",
           "localization_scatter", "SANITY_COLOURS", "SANITY_NAMES", "randomization_curves",
           "randomization_maps", "deletion_insertion_curves"]
