"""The geometry of each scale against Fig. 3 (zfcore.geometry), and the front page's table of it."""
from __future__ import annotations

import re

import pytest
import torch

from zfcore import geometry, models, pages
from zfcore.presets import PRESETS, get_preset


def _hooked_sides(model, size):
    """Each named layer's output side, from a real forward pass (hooks, not zfcore.chain)."""
    sides = {}

    def record(name, out):
        out = out[0] if isinstance(out, tuple) else out      # max-pools may also return their switches
        sides.setdefault(name, tuple(out.shape[1:]))
    for name, mod in model.named_children():
        mod.register_forward_hook(lambda m, i, o, name=name: record(name, o))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return sides


def test_paper_geometry_is_fig3():
    # PAPER.md, Fig. 3: 110x110 before pool1, 55x55 after; 26x26 before pool2, 13x13 after;
    # conv3-5 13x13; pool5 6x6x256 = 9216 inputs to fc6
    g = {x.layer: x for x in geometry.paper_geometry()}
    assert [(n, g[n].side) for n in geometry.LAYERS] == [
        ("conv1", 110), ("conv2", 26), ("conv3", 13), ("conv4", 13), ("conv5", 13), ("pool5", 6)]
    assert [g[n].maps for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [96, 256, 384, 384, 256]
    assert g["pool5"].numbers == 9216
    # the fields by the recurrence size' = size + (k - 1) * jump, by hand: conv1 7x7/2, pool 3x3/2,
    # conv2 5x5/2, pool 3x3/2, conv3-5 3x3/1, pool 3x3/2
    size, jump, fields = 1, 1, {}
    for name, k, s in [("conv1", 7, 2), ("pool1", 3, 2), ("conv2", 5, 2), ("pool2", 3, 2), ("conv3", 3, 1),
                       ("conv4", 3, 1), ("conv5", 3, 1), ("pool5", 3, 2)]:
        size, jump = size + (k - 1) * jump, jump * s
        fields[name] = size
    assert {n: g[n].field for n in geometry.LAYERS} == {n: fields[n] for n in geometry.LAYERS}
    assert geometry.whole_image_layers(geometry.paper_geometry()) == []


@pytest.mark.parametrize("scale", ["tiny", "default", "scenes224"])
def test_scale_geometry_matches_a_real_forward_pass(scale):
    p = get_preset(scale)
    model = models.zfnet(p.num_classes, input_size=p.image_size, width=p.width, fc_units=p.fc_units)
    sides = _hooked_sides(model, p.image_size)
    for g in geometry.scale_geometry(scale):
        c, h, w = sides[g.layer]
        assert (g.maps, g.side) == (c, h) and h == w
        assert g.share == g.field / p.image_size


def test_scenes224_has_fig3_geometry_and_default_does_not():
    ours = [(g.layer, g.side, g.field) for g in geometry.scale_geometry("scenes224")]
    assert ours == [(g.layer, g.side, g.field) for g in geometry.paper_geometry()]
    assert geometry.whole_image_layers(geometry.scale_geometry("default")) == ["conv3", "conv4", "conv5"]


def test_box_states_the_scale_against_the_paper():
    html = geometry.box("default", "top9")
    # computed, not typed: the numbers in the sentence are this scale's
    d = {g.layer: g for g in geometry.scale_geometry("default")}
    assert f"{100 * d['conv2'].share:.0f}%" in html and "conv3, conv4 and conv5" in html
    assert "whole images" in html
    assert "whole images" not in geometry.box("scenes224", "top9")
    occl = geometry.box("default", "occlusion")
    assert f"{d['conv5'].side}x{d['conv5'].side} = {d['conv5'].side ** 2} positions" in occl
    assert f"fc6 reads {d['pool5'].numbers:,} numbers" in occl
    with pytest.raises(ValueError, match="unknown reading 'nope'"):
        geometry.box("default", "nope")


def test_front_page_table(tmp_path):
    table = geometry.scales_table()
    lines = [ln for ln in table.splitlines() if ln.startswith("| `") or ln.startswith("| paper")]
    assert len(lines) == len(PRESETS) + 1
    row = next(ln for ln in lines if ln.startswith("| `default`"))
    assert re.search(r"\| 30 / 6 / 3 / 1 \|", row) and row.rstrip().endswith("| 64 |")
    page = tmp_path / pages.FRONT_PAGE
    page.parent.mkdir(parents=True)
    page.write_text(f"# Front\n\n{pages.GEOMETRY_MARKER}\n\nafter\n", encoding="utf-8")
    pages.write_front_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    assert pages.GEOMETRY_MARKER not in text and table in text and text.endswith("after\n")


#: The chapters whose reading depends on the maps' sizes or the fields, with their box.
BOXED = ("02_deconvnet", "03_feature_visualization", "04_feature_evolution", "05_feature_invariance",
         "06_occlusion_sensitivity", "07_correspondence_analysis", "08_architecture_selection",
         "09_imagenet_and_ablations", "10_feature_generalization", "11_feature_analysis")


def test_the_book_shows_the_geometry(tiny_book):
    root, index = tiny_book
    stage = index.parents[2]
    front = (stage / pages.FRONT_PAGE).read_text(encoding="utf-8")
    assert pages.GEOMETRY_MARKER not in front and geometry.scales_table() in front
    html = (index.parent / "book" / "index.html").read_text(encoding="utf-8")
    # the table rendered: a row per scale, the fc6 inputs of the default scale (64) and the paper's
    assert html.count('<span class="pre">scenes224</span>') >= 2 and "9,216" in html
    for name in BOXED:
        page = (index.parent / "book" / f"{name}.html").read_text(encoding="utf-8")
        assert "zf-geometry" in page and "The geometry at the tiny scale: 48 px crops" in page, name
