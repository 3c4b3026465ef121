"""What a scale's image size does to the paper's geometry (Fig. 3): map sizes and receptive fields.

The paper's readings rest on its geometry at 224 px. Fig. 2 shows "the corresponding image
patch" of a strong activation, a *part* of the image as long as the layer's receptive field is
smaller than the image; Fig. 7's layer-5 map has 13x13 positions to localize with; fc6 reads
6x6x256 = 9,216 numbers from pool5. A smaller image keeps every kernel and stride of Fig. 3
and so every receptive field in pixels, but the maps shrink and the fields grow against the
image: at 64 px, conv3-5 maps are 3x3, pool5 is 1x1 and the fields of conv4 (107 px) and
conv5 (139 px) are larger than the image, so their "patches" are whole images.

:func:`layer_geometry` reads the sizes off a model (:func:`zfcore.chain.chain` for the maps,
:func:`zfcore.fields.field_geometry` for the fields), :func:`scale_geometry` off a scale's model
built on PyTorch's ``meta`` device (no memory, no weights), and :func:`box` writes the short
box that a chapter whose reading depends on them shows: this scale against the paper's, and
what it does to that chapter's finding, every sentence computed from the numbers.
:func:`scales_table` is the front page's table, one row per scale.
"""
from __future__ import annotations

import html as _html
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from torch import nn

from . import models
from .chain import chain
from .fields import field_geometry
from .presets import PRESETS, Preset, get_preset

__all__ = ["PAPER_SIZE", "LAYERS", "LayerGeometry", "layer_geometry", "scale_geometry", "paper_geometry",
           "whole_image_layers", "rows", "ROW_HEADER", "READINGS", "box", "scales_table"]

#: The paper's crop side (Fig. 3).
PAPER_SIZE = 224

#: The layers whose maps the chapters read (Fig. 3's conv layers and pool5, which feeds fc6).
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5")


@dataclass(frozen=True)
class LayerGeometry:
    """One layer at one image size.

    Attributes:
        layer: the layer's name (``"conv5"``).
        maps: its number of feature maps.
        side: the side of each map (positions per axis).
        field: the side of one unit's receptive field in input pixels, before clipping to the
            image (:func:`zfcore.fields.field_geometry`).
        image_size: the side of the input.
    """
    layer: str
    maps: int
    side: int
    field: int
    image_size: int

    @property
    def share(self) -> float:
        """The field's side against the image's (1 or more: a unit sees the whole image)."""
        return self.field / self.image_size

    @property
    def numbers(self) -> int:
        """Numbers the layer hands on per image (maps x side x side)."""
        return self.maps * self.side * self.side


def layer_geometry(model: nn.Module, image_size: int, layers: Sequence[str] = LAYERS) -> List[LayerGeometry]:
    """The geometry of ``layers`` of ``model`` (a chain of layers, :mod:`zfcore.chain`) on
    ``image_size`` x ``image_size`` inputs, in forward order."""
    shapes = {st.name: st.out_shape for st in chain(model, image_size)}
    fields = field_geometry(model, image_size)
    missing = [name for name in layers if name not in fields]
    if missing:
        raise ValueError(f"layers {missing} have no spatial output in this model; "
                         f"spatial layers: {list(fields)}")
    return [LayerGeometry(name, int(shapes[name][0]), int(shapes[name][1]), int(fields[name][0].size), image_size)
            for name in layers]


def _meta_zfnet(p: Preset) -> nn.Module:
    with torch.device("meta"):
        return models.zfnet(p.num_classes, input_size=p.image_size, width=p.width, fc_units=p.fc_units)


def scale_geometry(scale) -> List[LayerGeometry]:
    """:func:`layer_geometry` of a scale's main model (Fig. 3 at the preset's width and size)."""
    p = get_preset(scale)
    return layer_geometry(_meta_zfnet(p), p.image_size)


def paper_geometry() -> List[LayerGeometry]:
    """Fig. 3 itself: the full-width model on 224 px crops."""
    return scale_geometry(get_preset("imagenet").replace(name="paper", data="scenes"))


def whole_image_layers(geo: Sequence[LayerGeometry]) -> List[str]:
    """The conv layers whose receptive field is at least the image's side (their "patches" are
    whole images)."""
    return [g.layer for g in geo if g.layer.startswith("conv") and g.share >= 1]


#: Column names of :func:`rows`.
ROW_HEADER = ("layer", "maps", "map side", "receptive field (px)", "field against the image side")


def rows(scale) -> List[tuple]:
    """``ROW_HEADER`` rows: each layer of :data:`LAYERS` at ``scale`` against Fig. 3."""
    return _rows(scale_geometry(scale), paper_geometry())


def _rows(ours: Sequence[LayerGeometry], paper: Sequence[LayerGeometry]) -> List[tuple]:
    return [(g.layer, f"{g.maps} / {q.maps}", f"{g.side} / {q.side}", f"{g.field} / {q.field}",
             f"{100 * g.share:.0f}% / {100 * q.share:.0f}%") for g, q in zip(ours, paper)]


def _by_layer(geo: Sequence[LayerGeometry]) -> Dict[str, LayerGeometry]:
    return {g.layer: g for g in geo}


def _layers_text(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else ""


def _patches(ours, paper) -> str:
    whole = whole_image_layers(ours)
    o, q = _by_layer(ours), _by_layer(paper)
    if not whole:
        return ("Every conv layer's field is smaller than the image, as in the paper, so every patch is a part "
                f"of its image (conv5's field is {100 * o['conv5'].share:.0f}% of the side, "
                f"{100 * q['conv5'].share:.0f}% in the paper).")
    return (f"The fields of {_layers_text(whole)} are at least the image's side (in the paper, conv5's is "
            f"{100 * q['conv5'].share:.0f}% of it), so their patches are whole images: their top 9 show what "
            "a whole image holds, not which part of it drives the feature; conv2's field already covers "
            f"{100 * o['conv2'].share:.0f}% of the side ({100 * q['conv2'].share:.0f}% in the paper).")


def _layer5_map(ours, paper) -> str:
    o, q = _by_layer(ours)["conv5"], _by_layer(paper)["conv5"]
    return (f"Layer 5's maps have {o.side}x{o.side} = {o.side ** 2} positions ({q.side}x{q.side} = {q.side ** 2} "
            f"in the paper) and each unit sees {100 * o.share:.0f}% of the image's side "
            f"({100 * q.share:.0f}% in the paper): a layer-5 map can place what drives it only to one of "
            f"{o.side ** 2} positions, each seeing {'the whole image' if o.share >= 1 else 'most of it' if o.share > 0.5 else 'a part of it'}.")


def _fc_input(ours, paper) -> str:
    o, q = _by_layer(ours)["pool5"], _by_layer(paper)["pool5"]
    return (f"pool5 is {o.side}x{o.side} ({q.side}x{q.side} in the paper), so fc6 reads {o.numbers:,} numbers per "
            f"image ({q.numbers:,} in the paper)" + (": no spatial layout reaches the fc layers." if o.side == 1
                                                       else "."))


def _correspondence(ours, paper) -> str:
    o = _by_layer(ours)["conv5"]
    if o.share >= 1:
        return (f"Each layer-5 unit sees the whole image (field {o.field} px on {o.image_size} px), so occluding an "
                "eye changes every layer-5 position's input; in the paper a unit sees a part of the image.")
    return f"Each layer-5 unit sees {100 * o.share:.0f}% of the image's side."


def _early(ours, paper) -> str:
    o, q = _by_layer(ours), _by_layer(paper)
    return (f"conv1's maps are {o['conv1'].side}x{o['conv1'].side} and conv2's {o['conv2'].side}x{o['conv2'].side} "
            f"({q['conv1'].side}x{q['conv1'].side} and {q['conv2'].side}x{q['conv2'].side} in the paper): the "
            "filters are the paper's size, but each map holds fewer positions to show aliasing and dead units in.")


def _features(ours, paper) -> str:
    return ("Numbers per image each layer hands on: "
            + "; ".join(f"{g.layer} {g.numbers:,} ({q.numbers:,} in the paper)"
                        for g, q in zip(ours, paper) if g.layer in ("conv3", "conv4", "conv5", "pool5")) + ".")


#: What each chapter's reading depends on: ``{reading: [sentence makers]}`` (each takes this
#: scale's and the paper's geometry and returns a computed sentence).
READINGS = {
    "top9": [_patches],
    "evolution": [_patches],
    "invariance": [_fc_input],
    "occlusion": [_layer5_map, _fc_input],
    "correspondence": [_correspondence, _patches],
    "architecture": [_early],
    "ablations": [_fc_input],
    "transfer": [_fc_input],
    "feature_analysis": [_features, _patches],
}


def box(scale, reading: str) -> str:
    """An HTML box for a chapter: this scale's map sizes and fields against Fig. 3's at 224 px,
    and what they do to the chapter's ``reading`` (a key of :data:`READINGS`)."""
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; known: {', '.join(READINGS)}")
    p = get_preset(scale)
    ours, paper = scale_geometry(p), paper_geometry()
    head = "".join(f"<th>{_html.escape(h)}</th>" for h in ROW_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{_html.escape(str(c))}</td>" for c in r) + "</tr>" for r in _rows(ours, paper))
    said = " ".join(make(ours, paper) for make in READINGS[reading])
    return (f'<div class="admonition note zf-geometry"><p class="admonition-title">The geometry at the '
            f'{_html.escape(p.name)} scale: {p.image_size} px crops against the paper\'s {PAPER_SIZE}</p>'
            f"<p>{_html.escape(said)} (Each cell of the table: this scale / Fig. 3.)</p>"
            f'<table class="zf-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def scales_table() -> str:
    """The front page's table (markdown): per scale, the crop, the map sides of conv1, conv2,
    conv5 and pool5, the fields of conv2 and conv5 against the image, and fc6's input."""
    head = ("| scale | crop | map sides conv1 / conv2 / conv5 / pool5 | conv2 field | conv5 field | "
            "conv layers seeing the whole image | fc6 reads |\n| --- | --- | --- | --- | --- | --- | --- |\n")
    lines = []
    for name, geo in [*((n, scale_geometry(n)) for n in PRESETS), ("paper (Fig. 3)", paper_geometry())]:
        g = _by_layer(geo)
        whole = whole_image_layers(geo)
        lines.append(f"| `{name}` | {geo[0].image_size} px | " if not name.startswith("paper")
                     else f"| {name} | {geo[0].image_size} px | ")
        lines[-1] += (f"{g['conv1'].side} / {g['conv2'].side} / {g['conv5'].side} / {g['pool5'].side} | "
                      f"{g['conv2'].field} px ({100 * g['conv2'].share:.0f}%) | "
                      f"{g['conv5'].field} px ({100 * g['conv5'].share:.0f}%) | {', '.join(whole) or 'none'} | "
                      f"{g['pool5'].numbers:,} |")
    return head + "\n".join(lines) + "\n"
