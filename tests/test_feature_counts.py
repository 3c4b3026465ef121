"""Table 7's feature counts (zfcore.feature_analysis): how many numbers each layer's classifiers see,
here and with Fig. 3's geometry, and the sentence that reads them."""
from __future__ import annotations

import pytest

from zfcore import feature_analysis as FA
from zfcore.findings import HOLDS


def _result(dims, grid=6):
    ls = sorted(dims)
    acc = {("SVM", l, 30): [10.0 * l, 10.0 * l + 1, 10.0 * l - 1] for l in ls}
    return FA.LayerResult(acc=acc, layers={l: f"l{l}" for l in ls}, dims=dims, ns=(30,), folds=3, grid=grid,
                          C=1e-3, weight_decay=1e-3, scale="x")


def test_feature_count_rule():
    assert FA.feature_count((96, 3, 3), 6) == 864               # small maps kept whole
    assert FA.feature_count((384, 13, 13), 6) == 384 * 36        # pooled to 6x6
    assert FA.feature_count((384, 13, 13), None) == 384 * 169
    assert FA.feature_count((256, 8, 4), 6) == 256 * 6 * 4       # each side on its own
    assert FA.feature_count((4096,), 6) == 4096


def test_paper_dims_are_fig3_at_224():
    # Fig. 3: conv3, conv4 384x13x13, pool5 256x6x6 (the 9216 inputs of fc6), fc6 and fc7 4096
    d = FA.paper_dims(6, range(1, 8))
    assert d[3] == ((384, 13, 13), 384 * 36) and d[4] == d[3]
    assert d[5] == ((256, 6, 6), 9216) and d[6][1] == d[7][1] == 4096
    assert d[1][0] == (96, 55, 55) and d[2][0] == (256, 13, 13)
    assert FA.paper_dims(None, [3, 5]) == {3: ((384, 13, 13), 64896), 5: ((256, 6, 6), 9216)}


def test_count_text_names_layer5_against_3_and_4():
    # the default scale: pool5 64x1x1 against conv3-4's 96x3x3; Fig. 3 (grid 6): 9216 against 13824.
    # 64/864 = 7.4%, 9216/13824 = 66.7%: layer 5 is 9.0 times more squeezed
    text = FA.feature_count_text(_result({1: 576, 2: 576, 3: 864, 4: 864, 5: 64, 6: 512, 7: 512}))
    assert "**64 numbers per image**" in text and "864 for layer 3" in text and "(7%" in text
    assert "9216 against 13824 and 13824 (67%)" in text
    assert "9.0 times more squeezed" in text and "cannot tell the two apart" in text
    # a layer 5 with the paper's share: no such warning
    text = FA.feature_count_text(_result({3: 1000, 4: 1000, 5: 700}))
    assert "squeezed" not in text and "does not bias" in text
    # without layers 3-5 there is nothing to compare
    assert "not compared" in FA.feature_count_text(_result({1: 10, 7: 20}))


def test_findings_carry_the_counts():
    f = FA.findings(_result({1: 576, 3: 864, 4: 864, 5: 64, 7: 512}))[0]
    assert f.verdict == HOLDS
    assert "layer 5 64" in f.evidence and "layer 3 864" in f.evidence


@pytest.mark.parametrize("grid", [6, 2, None])
def test_rows_match_the_extracted_dims(grid):
    import numpy as np
    import torch
    from zfcore.chain import block_layers
    from zfcore.features import extract
    from zfcore.models import feature_shapes, zfnet
    model = zfnet(10, input_size=64, width=0.25, fc_units=32, init="matched")
    blocks = block_layers(model)
    shapes = feature_shapes(model)
    dims = {l: FA.feature_count(shapes[blocks[l]], grid) for l in range(1, 8)}
    # the rule is the one the features are extracted by
    images = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    got = extract(model, images, torch.zeros(3, 64, 64), 64, layers=[blocks[l] for l in range(1, 8)], grid=grid)
    assert {l: got[blocks[l]].shape[1] for l in range(1, 8)} == dims
    run = type("R", (), {"load": lambda self: model})()
    rows = FA.feature_rows(run, FA.LayerResult(acc={}, layers={l: blocks[l] for l in range(1, 8)}, dims=dims,
                                               ns=(30,), folds=1, grid=grid, C=1e-3, weight_decay=1e-3, scale="x"))
    assert [r[0] for r in rows] == [f"{l} `{blocks[l]}`" for l in range(1, 8)]
    paper5 = 9216 if grid is None or grid >= 6 else 256 * grid * grid
    assert rows[4][1:5] == ("64x1x1", "64", "256x6x6", f"{paper5}")
    assert rows[4][5] == f"{64 / paper5:.1%}"
