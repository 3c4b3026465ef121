"""Chapter 06's readings of Fig. 7 (zfcore.occlusion_report): the rectified total activity of (b),
the driving layer-5 map's top 9 against chance, and the localization verdict with its standard error."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from zfcore import occlusion_report as R
from zfcore.findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, SE_MARGIN
from zfcore.mining import TopK
from zfcore.models import zfnet
from zfcore.occlusion import Localization, driving_maps, occluder_grid, sensitivity
from zfcore.view import ModelView

from tolerance import double, f32_cast_tol


def _small_zfnet():
    torch.manual_seed(0)
    return zfnet(10, input_size=64, width=0.25, fc_units=32, init="matched").eval()


def _image(seed=1):
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _relu5_totals(model, x, size, stride, feature):
    """The network's own relu5 output of map ``feature``, summed, per occluder position (a hook on
    the model's forward: not the chain walk sensitivity uses), and the raw conv5 sum beside it."""
    ys, xs = occluder_grid(64, 64, size, stride)
    seen = {}
    hooks = [model.relu5.register_forward_hook(lambda m, i, o: seen.__setitem__("relu", o.detach().clone())),
             model.conv5.register_forward_hook(lambda m, i, o: seen.__setitem__("conv", o.detach().clone()))]
    rect, raw = torch.zeros(len(ys), len(xs), dtype=x.dtype), torch.zeros(len(ys), len(xs), dtype=x.dtype)
    try:
        with torch.no_grad():
            for a, yy in enumerate(ys):
                for b, xx in enumerate(xs):
                    xo = x.clone()
                    xo[:, :, yy:yy + size, xx:xx + size] = 0.0
                    model(xo)
                    rect[a, b], raw[a, b] = seen["relu"][0, feature].sum(), seen["conv"][0, feature].sum()
    finally:
        for h in hooks:
            h.remove()
    return rect, raw


# --- Fig. 7 (b): the rectified map ---------------------------------------------------------------

@pytest.mark.parametrize("engine", ["incremental", "full"])
def test_total_activity_is_the_rectified_map(engine):
    model, x = double(_small_zfnet(), _image(3) * 2)
    r = sensitivity(model, x, 16, 8, engine=engine, projection=False)
    assert r.rectified and bool((r.activity >= 0).all())
    rect, raw = _relu5_totals(model, x, 16, 8, r.feature)
    # both in float64: the totals differ by float64 rounding, which the float32 cast turns into an ulp
    torch.testing.assert_close(r.activity.double(), rect, atol=f32_cast_tol(rect), rtol=0)
    # the old total (conv5 before its ReLU) is another number here: the test tells them apart
    assert float((rect - raw).abs().max()) > 100 * float(f32_cast_tol(rect))
    raw_maps = sensitivity(model, x, 16, 8, engine=engine, projection=False, rectify=False)
    assert not raw_maps.rectified
    torch.testing.assert_close(raw_maps.activity.double(), raw, atol=f32_cast_tol(raw), rtol=0)
    # the driving map: the largest rectified activation of the unoccluded image
    with torch.no_grad():
        seen = {}
        h = model.relu5.register_forward_hook(lambda m, i, o: seen.__setitem__("o", o.detach().clone()))
        model(x)
        h.remove()
    assert r.feature == int(seen["o"][0].flatten(1).amax(1).argmax())
    assert int(driving_maps(model, x)[0]) == r.feature


def test_caption_says_what_b_sums():
    model = _small_zfnet()
    r = sensitivity(model, _image(), 32, 32, projection=False)
    assert "after its ReLU" in R.fig7_caption(0, "tram", r) and f"map {r.feature}" in R.fig7_caption(0, "tram", r)
    raw = sensitivity(model, _image(), 32, 32, projection=False, rectify=False)
    assert "before its ReLU" in R.activity_words(raw)


# --- the driving map's top 9 against chance ------------------------------------------------------

def _driving(hits_per_image, classes=10, k=9, maps=None, labels=None):
    """DrivingMaps with image r of class labels[r] (default r % classes), driving map maps[r] (default r),
    whose top k hold hits_per_image[r] images of its class and the rest of the next class."""
    n = len(hits_per_image)
    labels = np.arange(n) % classes if labels is None else np.asarray(labels)
    maps = np.arange(n) if maps is None else np.asarray(maps)
    top = np.empty((n, k), np.int64)
    for r, h in enumerate(hits_per_image):
        top[r] = [labels[r]] * h + [(labels[r] + 1) % classes] * (k - h)
    return R.DrivingMaps("conv5", np.arange(n), labels, maps, top, np.full(classes, 1.0 / classes))


def test_driving_share_at_chance_is_not_testable():
    d = _driving([1] * 30)                            # 1 of 9 = 11.1% against 10%: well within 2 SE
    st = R.driving_stats(d)
    assert (st["hits"], st["checked"], st["pairs"]) == (30, 270, 30)
    assert st["share"] == pytest.approx(1 / 9) and st["chance"] == pytest.approx(0.1)
    # the SE of a proportion over 270 images, at the share (the larger of it and chance's)
    assert st["se"] == pytest.approx(np.sqrt((1 / 9) * (8 / 9) / 270))
    f = R.driving_finding(d)
    assert f.verdict == NOT_TESTABLE and "within 2 SE" in f.evidence


def test_driving_share_well_above_chance_holds():
    d = _driving([6] * 10)                            # 6 of 9 against 10%
    f = R.driving_finding(d)
    assert f.verdict == HOLDS
    assert "60 of 90" in f.measured


def test_driving_share_below_chance_does_not_hold():
    d = _driving([0] * 60)                            # none of 540 against 10%: 0.1 / sqrt(.09 / 540) = 7.7 SE below
    st = R.driving_stats(d)
    assert st["se"] == pytest.approx(np.sqrt(0.1 * 0.9 / 540))
    assert (st["share"] - st["chance"]) / st["se"] < -SE_MARGIN
    assert R.driving_finding(d).verdict == DOES_NOT_HOLD


def test_driving_repeated_pairs_count_once():
    # one map drives ten images of one class: one draw of nine images, not ninety; pooled as ninety
    # images it would be 90 of 90 against 10%, "holds"
    d = _driving([9] * 10, maps=[4] * 10, labels=[2] * 10)
    st = R.driving_stats(d)
    assert (st["pairs"], st["checked"], st["maps"], st["top_map"], st["top_map_images"]) == (1, 9, 1, 4, 10)
    f = R.driving_finding(d)
    assert f.verdict == NOT_TESTABLE and f"at least {R.MIN_PAIRS} pairs" in f.evidence
    assert R.driving_finding(_driving([9, 9])).verdict == NOT_TESTABLE          # two pairs: too few
    assert R.driving_finding(_driving([9, 9, 9])).verdict == HOLDS


def test_driving_se_follows_the_pairs_when_they_disagree():
    # half the pairs all of their class, half none: the pooled share 50% is far above 10% by the SE of a
    # proportion over 180 images (0.037) but not by the pairs' own spread (0.5 / sqrt(20) * sqrt(20/19) ~ 0.115)
    d = _driving([9, 0] * 10)
    st = R.driving_stats(d)
    se_pairs = np.std([0.9, -0.1] * 10, ddof=1) / np.sqrt(20)
    assert st["se"] == pytest.approx(se_pairs)
    assert R.driving_finding(d).verdict == HOLDS                  # 0.4 / 0.115 = 3.5 SE
    d = _driving([9] + [0] * 7)                                    # one pair in eight: 1/8 - 0.1 within 2 SE
    assert R.driving_finding(d).verdict == NOT_TESTABLE


def test_driving_check_reads_the_top9_of_each_images_strongest_map():
    model = _small_zfnet()
    g = np.random.default_rng(0)
    images = g.integers(0, 256, size=(12, 64, 64, 3), dtype=np.uint8)
    ds = SimpleNamespace(images=images, labels=np.arange(12) % 3)
    view = ModelView(model, 64, mean=torch.full((3, 64, 64), 128.0))
    c = int(model.conv5.out_channels)
    top_images = torch.from_numpy(g.integers(0, 20, size=(c, 9))).long()
    top_images[:, -1] = -1                                         # every map has only 8
    tk = TopK("conv5", torch.zeros(c, 9), top_images, torch.zeros(c, 9, 2, dtype=torch.long))
    val_labels = np.arange(20) % 4                                 # 4 classes in val, 5 images each
    good = [5, 1, 7, 3, 9]
    d = R.driving_check(view, ds, tk, val_labels, good, shown=[3, 11], n=4)
    assert d.images.tolist() == [3, 5, 1, 7]                       # shown ones in good first, then good
    want = [sensitivity(model, view.inputs(images[i:i + 1]), 32, 32, projection=False).feature for i in d.images]
    assert d.maps.tolist() == want
    np.testing.assert_array_equal(d.top_labels[:, :8], val_labels[top_images[d.maps, :8].numpy()])
    assert (d.top_labels[:, 8] == -1).all() and (d.checked == 8).all()
    np.testing.assert_allclose(d.chance, 0.25)
    html = R.driving_table(d, ["a", "b", "c", "d"], shown=[3, 11])
    assert "test image 3" in html and "test image 11" not in html and "all 4 images checked" in html


# --- the localization verdict -------------------------------------------------------------------

def _loc(share, chance):
    n = len(share)
    return Localization(indices=np.arange(n), share=np.asarray(share, float), chance=np.asarray(chance, float),
                        min_inside=np.zeros(n, bool), min_inside_chance=np.full(n, 0.2),
                        unoccluded_prob=np.full(n, 0.9), correct=np.ones(n, bool), size=12, stride=4)


def test_localization_within_its_se_is_not_testable():
    # mean share 0.258 against chance 0.2, 4 of 6 above: the old rule (mean above chance, more than half
    # above) said "holds"; the differences' mean 0.058 is 1.15 of its SEs (0.051) from 0
    loc = _loc([0.5, 0.15, 0.25, 0.22, 0.19, 0.24], [0.2] * 6)
    f = R.findings(loc)[0]
    assert f.verdict == NOT_TESTABLE and "within 2 SE" in f.evidence
    assert R.findings(_loc([0.6, 0.55, 0.7, 0.65, 0.5], [0.2] * 5))[0].verdict == HOLDS
    assert R.findings(_loc([0.05, 0.02, 0.0, 0.04, 0.01], [0.2] * 5))[0].verdict == DOES_NOT_HOLD
    assert "cannot decide" in R.localization_text(loc, "tiny")
