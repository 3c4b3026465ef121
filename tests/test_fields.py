"""Receptive fields from the architecture, checked against gradients."""

import pytest
import torch

from zfcore import models
from zfcore.chain import chain
from zfcore.fields import Field, field_geometry, receptive_field, receptive_fields

from naive import gradient_support


def _check(model, layer, positions, size):
    support = gradient_support(model, layer, positions, size)
    boxes = receptive_fields(model, layer, torch.tensor(positions), size)
    for (y, x), box, sup in zip(positions, boxes.tolist(), support):
        y0, y1, x0, x1 = box
        expect = torch.zeros(size, size, dtype=torch.bool)
        expect[y0:y1, x0:x1] = True
        assert torch.equal(sup, expect), (layer, (y, x), box, sup.nonzero().min(0).values.tolist(),
                                          sup.nonzero().max(0).values.tolist())
        assert receptive_field(model, layer, (y, x), size) == tuple(box)


def _positions(model, layer, size):
    """Corners, edges' middles, the centre, and one off-centre unit of ``layer``'s output."""
    _, h, w = next(s for s in chain(model, size) if s.name == layer).out_shape
    ys, xs = sorted({0, h // 2, h - 1}), sorted({0, w // 2, w - 1})
    pts = [(y, x) for y in ys for x in xs]
    if h > 2 and w > 2:
        pts.append((1, w - 2))
    return pts


ZF64 = ["conv1", "pool1", "norm1", "conv2", "pool2", "conv3", "conv5", "pool5"]


@pytest.mark.parametrize("layer", ZF64)
def test_zfnet_64_fields_match_gradient_support(layer):
    m = models.zfnet(10, input_size=64, width=0.125, fc_units=16)
    _check(m, layer, _positions(m, layer, 64), 64)


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "pool2", "conv5", "pool5"])
def test_krizhevsky_64_fields_match_gradient_support(layer):
    m = models.krizhevsky(10, input_size=64, width=0.125, fc_units=16)
    _check(m, layer, _positions(m, layer, 64), 64)


@pytest.mark.parametrize("layer,positions", [("pool1", [(0, 0), (54, 54), (27, 0)]),
                                             ("conv5", [(0, 12), (6, 6), (12, 12)])])
def test_zfnet_224_fields_match_gradient_support(layer, positions):
    m = models.zfnet(10, input_size=224, width=0.0625, fc_units=16)
    _check(m, layer, positions, 224)


def test_zfnet_224_geometry_by_hand():
    g = field_geometry(models.zfnet(10, input_size=224, width=0.0625, fc_units=16))
    assert g["conv1"] == (Field(2, 7, -1), Field(2, 7, -1))
    assert g["pool1"][0] == Field(4, 11, -1)
    assert g["conv2"][0] == Field(8, 27, -1)
    assert g["pool2"][0] == Field(16, 43, -1)
    assert g["conv5"][0] == Field(16, 139, -49)
    assert g["pool5"][0] == Field(32, 171, -49)
    assert "fc6" not in g and "flatten" not in g
    m = models.zfnet(10, input_size=224, width=0.0625, fc_units=16)
    # the last pool1 unit (ceil mode) has a window past conv1's end: clipped to the image
    assert receptive_field(m, "pool1", (54, 0)) == (215, 224, 0, 10)


@pytest.mark.parametrize("family,size,layer", [("zfnet", 52, "pool2"), ("krizhevsky", 50, "conv2"),
                                                ("krizhevsky", 54, "pool1")])
def test_fields_clip_at_every_layer(family, size, layer):
    """Sizes where a ceil-mode window or a padding runs past a layer that dropped the
    image's last pixels: clipping only the final box would be one pixel too large."""
    m = getattr(models, family)(10, input_size=size, width=0.125, fc_units=16)
    _, h, w = next(s for s in chain(m, size) if s.name == layer).out_shape
    fy, fx = field_geometry(m)[layer]
    naive_end = min(size, fy.start + (h - 1) * fy.jump + fy.size)
    y0, y1, x0, x1 = receptive_field(m, layer, (h - 1, w - 1))
    assert y1 < naive_end and x1 < naive_end
    _check(m, layer, [(h - 1, w - 1), (0, w - 1), (h - 1, 0)], size)


@pytest.fixture(scope="module")
def alexnet():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.alexnet(weights=None)


@pytest.mark.parametrize("layer", ["features.0", "features.3", "features.10"])
def test_torchvision_alexnet_fields_match_gradient_support(alexnet, layer):
    m = alexnet
    pts = {"features.0": [(0, 0), (54, 54), (27, 13)], "features.3": [(0, 26), (26, 26), (13, 13)],
           "features.10": [(0, 0), (12, 12), (6, 3)]}[layer]
    _check(m, layer, pts, 224)


def test_errors_are_clear():
    m = models.zfnet(10, input_size=64, width=0.125, fc_units=16)
    with pytest.raises(ValueError, match="no layer 'conv9'.*conv1"):
        receptive_field(m, "conv9", (0, 0))
    with pytest.raises(ValueError, match="outside layer 'conv5'"):
        receptive_field(m, "conv5", (3, 0))
    with pytest.raises(ValueError, match="no spatial output"):
        receptive_field(m, "fc6", (0, 0))
