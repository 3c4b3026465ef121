"""Occlusion sensitivity (zfcore.occlusion, Fig. 7), checked against a naive loop and captum."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from zfcore.models import zfnet
from zfcore.occlusion import OcclusionMaps, occluder_grid, sensitivity

from captum_reference import Softmax
from naive import naive_occlusion
from tolerance import EPS32, double, f32_cast_tol, f64_close, gamma, softmax_f32_tol

captum_attr = pytest.importorskip("captum.attr")
torchvision = pytest.importorskip("torchvision")


# --- helpers -----------------------------------------------------------------------------------

def _small_zfnet():
    torch.manual_seed(0)
    return zfnet(10, input_size=64, width=0.25, fc_units=32, init="matched")


def _image(h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, h, w, generator=g)


def _occluded_logits(model, x, size, stride, fill):
    """The logits of every occluded copy of ``x`` (for softmax_f32_tol), one batch."""
    ys, xs = occluder_grid(x.shape[2], x.shape[3], size, stride)
    xb = x.repeat(len(ys) * len(xs), 1, 1, 1)
    for k, (yy, xx) in enumerate((a, b) for a in ys for b in xs):
        xb[k, :, yy:yy + size, xx:xx + size] = fill
    with torch.no_grad():
        return model.eval()(xb)


def _check_against_naive(model, x, size, stride, fill, layer_name, **kw):
    """``sensitivity`` against the naive loop, both in float64 (tests/tolerance.py): the
    probabilities then differ only by sensitivity's float32 softmax (softmax_f32_tol), the
    activities by their cast to float32 (one ulp), and the most probable class agrees wherever
    the top two probabilities are further apart than that."""
    model, x = double(model, x)
    module = dict(model.named_modules())[layer_name]
    r = sensitivity(model, x, size, stride, fill=fill, **kw)
    ys, xs, prob, top, act, logits, margin = naive_occlusion(model, x, size, stride, fill, r.target, module,
                                                    r.feature)
    assert (r.ys, r.xs) == (ys, xs)
    assert r.prob.shape == r.activity.shape == r.top_class.shape == (len(ys), len(xs))
    assert r.top_class.dtype == torch.long
    tol = softmax_f32_tol(logits)
    torch.testing.assert_close(r.prob.double(), prob, atol=tol, rtol=0)
    torch.testing.assert_close(r.activity.double(), act, atol=f32_cast_tol(act), rtol=0)
    clear = margin > 2 * tol
    assert clear.float().mean() >= 0.5                     # the comparison below has teeth
    assert torch.equal(r.top_class[clear], top[clear])
    return r


# --- grid --------------------------------------------------------------------------------------

def test_grid_divides():
    ys, xs = occluder_grid(64, 64, 16, 8)
    assert ys == xs == list(range(0, 49, 8))


def test_grid_border_added_and_non_square():
    assert occluder_grid(64, 64, 20, 12) == ([0, 12, 24, 36, 44], [0, 12, 24, 36, 44])
    ys, xs = occluder_grid(40, 56, 16, 16)
    assert ys == [0, 16, 24] and xs == [0, 16, 32, 40]
    assert occluder_grid(16, 16, 16, 5) == ([0], [0])


@pytest.mark.parametrize("size,stride,match", [(0, 8, "size"), (65, 8, "larger"), (16, 0, "stride")])
def test_grid_errors(size, stride, match):
    with pytest.raises(ValueError, match=match):
        occluder_grid(64, 64, size, stride)


# --- against a naive loop -----------------------------------------------------------------------

@pytest.mark.parametrize("size,stride", [(16, 8), (20, 12)])
def test_zfnet_matches_naive(size, stride):
    model = _small_zfnet()
    model.train()
    x = _image(64, 64)
    sensitivity(model, x, size, stride, batch_size=7)
    assert model.training and model.drop7.training       # train mode restored
    r = _check_against_naive(model, x, size, stride, 0.0, "conv5", batch_size=7)
    assert r.layer == "conv5"
    # default feature: the strongest conv5 map in the unoccluded image (in float64, as r was made)
    model, x = double(model.eval(), x)
    with torch.no_grad():
        seen = {}
        hk = model.conv5.register_forward_hook(lambda m, i, o: seen.__setitem__("o", o.clone()))
        logits = model(x)
        hk.remove()
    assert r.feature == int(seen["o"][0].flatten(1).max(1).values.argmax())
    assert r.target == int(logits.argmax())
    # unoccluded_prob: a float32 softmax of the float64 logits; unoccluded_activity: float64
    assert r.unoccluded_prob == pytest.approx(float(torch.softmax(logits, 1)[0, r.target]),
                                              abs=softmax_f32_tol(logits), rel=0)
    f64_close(r.unoccluded_activity, torch.relu(seen["o"][0, r.feature]).sum())


def test_zfnet_explicit_choices_and_batch_size_invariance():
    model = _small_zfnet()
    x = _image(64, 64, seed=3)
    r = _check_against_naive(model, x, 20, 12, 0.5, "conv3",
                             target=4, layer="conv3", feature=2, batch_size=64)
    assert (r.target, r.layer, r.feature) == (4, "conv3", 2)
    # one position per batch against 64: in float64 the two differ by rounding alone, which the
    # float32 outputs turn into at most softmax_f32_tol (prob) and one ulp (activity)
    model, x = double(model, x)
    r = sensitivity(model, x, 20, 12, fill=0.5, target=4, layer="conv3", feature=2, batch_size=64)
    r1 = sensitivity(model, x, 20, 12, fill=0.5, target=4, layer="conv3", feature=2, batch_size=1)
    tol = softmax_f32_tol(_occluded_logits(model, x, 20, 12, 0.5))
    torch.testing.assert_close(r1.prob, r.prob, atol=tol, rtol=0)
    torch.testing.assert_close(r1.activity, r.activity, atol=f32_cast_tol(r.activity), rtol=0)


def test_non_square_fully_convolutional_chain():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(6 * 10 * 14, 5))
    x = _image(40, 56, seed=2)
    r = _check_against_naive(model, x, 16, 12, 0.0, "3")
    assert r.layer == "3"
    assert r.prob.shape == (3, 5)                         # ys [0,12,24], xs [0,12,24,36,40]


def test_torchvision_alexnet_inplace_relu():
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None)
    x = _image(224, 224, seed=4)
    r = _check_against_naive(model, x, 80, 72, 0.0, "features.10", batch_size=4)
    assert r.layer == "features.10"
    assert r.prob.shape == (3, 3)
    # the activity is read before the in-place ReLU and rectified here: never negative
    assert torch.isfinite(r.activity).all() and bool((r.activity >= 0).all())


def test_torchvision_vgg11_and_non_square_alexnet():
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(weights=None)
    _check_against_naive(vgg, _image(224, 224, seed=6), 64, 80, 0.0, "features.18", batch_size=5)
    alex = torchvision.models.alexnet(weights=None)
    # 224 x 227: both sides give AlexNet's 6 x 6 at the adaptive pool, which then keeps the size
    r = _check_against_naive(alex, _image(224, 227, seed=7), 56, 50, 0.0, "features.10", batch_size=6)
    assert r.xs == [0, 50, 100, 150, 171] and r.ys == [0, 50, 100, 150, 168]


@pytest.mark.parametrize("h,w,size,stride", [(64, 64, 16, 8), (64, 64, 23, 9), (64, 64, 64, 3),
                                             (64, 64, 1, 13), (64, 64, 40, 40)])
def test_engines_agree_on_zfnet(h, w, size, stride):
    """The incremental engine equals batched full re-inference, layer totals included."""
    # both engines in float64: they then differ by float64 rounding, which the float32 outputs
    # turn into at most softmax_f32_tol (probabilities) and one float32 ulp (activities)
    model, x = double(_small_zfnet().eval(), _image(h, w, seed=8) * 2)
    tol = softmax_f32_tol(_occluded_logits(model, x, size, stride, 0.0))
    for layer in ("conv1", "norm2", "conv5", "fc6"):
        a = sensitivity(model, x, size, stride, layer=layer, projection=False, batch_size=9)
        b = sensitivity(model, x, size, stride, layer=layer, projection=False, engine="full", batch_size=9)
        torch.testing.assert_close(a.prob, b.prob, atol=tol, rtol=0)
        torch.testing.assert_close(a.activity, b.activity, atol=f32_cast_tol(b.activity), rtol=0)
        assert (a.top_class == b.top_class).float().mean() >= 0.95      # ties within tol aside


def test_uncovered_modules_fall_back_correctly():
    """A dilated convolution and a convolution with string padding are not in the incremental
    path: the engine lays the patch over full maps there and goes on with whole maps."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(6, 8, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding="same"), nn.LocalResponseNorm(3),
        nn.Flatten(), nn.Linear(8 * 24 * 20, 7))
    x = _image(48, 40, seed=9) * 3
    r = _check_against_naive(model, x, 12, 7, 0.2, "5", batch_size=4)
    assert r.layer == "5"
    r2 = _check_against_naive(model, x, 12, 7, 0.2, "0", layer="0", batch_size=4)
    assert r2.layer == "0"


def test_unknown_engine():
    with pytest.raises(ValueError, match="incremental"):
        sensitivity(_small_zfnet(), _image(64, 64), 16, 8, engine="fast")


def test_projection_is_deconv_of_strongest_activation():
    from zfcore.deconv import project
    from zfcore.activations import strongest
    model = _small_zfnet().eval()
    x = _image(64, 64, seed=10)
    r = sensitivity(model, x, 16, 16)
    # the same call on the same image: the same kernels, the same bits
    assert torch.equal(r.projection, project(model, x, "conv5", r.feature)[0])
    _, pos = strongest(model, x, "conv5", r.feature)
    assert r.position == tuple(pos[0].tolist())
    assert sensitivity(model, x, 16, 16, projection=False).projection is None


# --- against captum -----------------------------------------------------------------------------

@pytest.mark.parametrize("fill", [0.0, 0.3])
def test_matches_captum_occlusion_non_overlapping(fill):
    # both in float64; captum's drop is then exact to float64 rounding, ours is a float32
    # softmax of the float64 logits (the unoccluded and the occluded one): softmax_f32_tol
    model, x = double(_small_zfnet().eval(), _image(64, 64, seed=5))
    size = stride = 16
    r = sensitivity(model, x, size, stride, fill=fill)
    attr = captum_attr.Occlusion(Softmax(model)).attribute(
        x, sliding_window_shapes=(3, size, size), strides=(3, stride, stride),
        baselines=fill, target=r.target)
    assert attr.shape == x.shape
    tol = softmax_f32_tol(torch.cat([_occluded_logits(model, x, size, stride, fill), model(x)]))
    drop = r.unoccluded_prob - r.prob.double()             # (4, 4)
    for i, yy in enumerate(r.ys):
        for j, xx in enumerate(r.xs):
            patch = attr[0, :, yy:yy + size, xx:xx + size]
            torch.testing.assert_close(patch, torch.full_like(patch, float(drop[i, j])),
                                       atol=tol, rtol=0)


# --- errors -------------------------------------------------------------------------------------

def test_bad_inputs():
    model = _small_zfnet()
    x = _image(64, 64)
    with pytest.raises(ValueError, match="3, H, W"):
        sensitivity(model, torch.zeros(1, 1, 64, 64), 16, 8)
    with pytest.raises(ValueError, match="one image"):
        sensitivity(model, torch.zeros(2, 3, 64, 64), 16, 8)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        sensitivity(model, x, 16, 8, target=10)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        sensitivity(model, x, 16, 8, target=-1)
    with pytest.raises(ValueError, match="conv5"):
        sensitivity(model, x, 16, 8, layer="conv9")
    with pytest.raises(ValueError, match="out of range"):
        sensitivity(model, x, 16, 8, feature=10_000)
    with pytest.raises(ValueError, match="larger"):
        sensitivity(model, x, 65, 8)
    with pytest.raises(ValueError, match="stride"):
        sensitivity(model, x, 16, 0)


def test_returns_dataclass_fields():
    model = _small_zfnet()
    r = sensitivity(model, _image(64, 64), 32, 32)
    assert isinstance(r, OcclusionMaps)
    assert r.ys == r.xs == [0, 32]
    assert 0.0 <= float(r.prob.min()) and float(r.prob.max()) <= 1.0


# --- the drop on the pixels, and the localization check -------------------------------------------

def test_pixel_drop_is_captums_attribution_with_overlap():
    model, x = double(_small_zfnet().eval(), _image(64, 64, seed=11))
    size, stride = 20, 11                                  # overlapping, and a border position
    r = sensitivity(model, x, size, stride, projection=False)
    from zfcore.occlusion import pixel_drop
    ours = pixel_drop(r, size, (64, 64)).double()
    # a naive loop over the positions, in float64, on the same float32 drops
    drop32 = (r.unoccluded_prob - r.prob).float().double()
    total = torch.zeros(64, 64, dtype=torch.float64)
    count = torch.zeros(64, 64, dtype=torch.float64)
    for i, yy in enumerate(r.ys):
        for j, xx in enumerate(r.xs):
            total[yy:yy + size, xx:xx + size] += drop32[i, j]
            count[yy:yy + size, xx:xx + size] += 1
    # pixel_drop sums, in float32, a corner map of 4 entries per position (+-drop) along each
    # axis in turn (an integral image): each entry of the cumulative sums is a sum of at most
    # 65 + 65 partial sums of those entries, so within gamma(130) * 4 * sum|drop| of the exact;
    # the division by the (exact, integer) count rounds by half an ulp
    bound = gamma(2 * 65) * 4 * float(drop32.abs().sum()) + EPS32 / 2 * float((total / count).abs().max())
    torch.testing.assert_close(ours, total / count, atol=bound, rtol=0)
    # captum covers the same grid when its steps reach the border (44 = 4 * 11): its attribution
    # is the float64 drop averaged over the windows in float32 (its own sum of at most 4 windows
    # per pixel, within another ``bound``); ours the float32 softmax's (softmax_f32_tol)
    attr = captum_attr.Occlusion(Softmax(model)).attribute(
        x, sliding_window_shapes=(3, size, size), strides=(3, stride, stride), baselines=0.0,
        target=r.target)
    tol = softmax_f32_tol(torch.cat([_occluded_logits(model, x, size, stride, 0.0), model(x)]))
    torch.testing.assert_close(ours, attr[0, 0].double(), atol=2 * bound + tol, rtol=0)


def _region_model(h, w, region):
    """A model whose output depends only on the pixels in ``region`` (y0, y1, x0, x1)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 1)
    lin = nn.Linear(2 * h * w, 4)
    mask = torch.zeros(2, h, w)
    y0, y1, x0, x1 = region
    mask[:, y0:y1, x0:x1] = 1
    with torch.no_grad():
        lin.weight.mul_(mask.flatten()[None] * 20)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin).eval()


def test_box_share_follows_what_the_model_sees():
    from zfcore.occlusion import box_share
    h, w, size = 40, 48, 8
    # In float64 an occluder that misses the region changes the logits by float64 rounding
    # alone (its pixels meet zero weights); the float32 softmax of sensitivity then moves each
    # such probability by at most softmax_f32_tol. In float32 the logits' own rounding (about
    # 1e-5 of the probability here, and different on AMD and Intel kernels) would leak into
    # the share outside the region.
    model, x = double(_region_model(h, w, (10, 20, 30, 40)), _image(h, w, seed=12) * 2)
    r = sensitivity(model, x, size, 4, layer="0", projection=False)
    assert float((r.unoccluded_prob - r.prob).abs().max()) > 1e-3          # it does react
    with torch.no_grad():
        noise = softmax_f32_tol(model(x))                  # per pixel, outside the grown region
    from zfcore.occlusion import pixel_drop
    total = float(pixel_drop(r, size, (h, w)).clamp(min=0).sum())
    leak = h * w * noise / total                           # the most the noise can take of the share
    # the drop lies within the occluders that meet the region: the region grown by size - 1
    grown = box_share(r, size, (30 - size + 1, 10 - size + 1, 40 + size - 1, 20 + size - 1), (h, w))
    assert 1 - leak <= grown["share"] <= 1
    far = box_share(r, size, (0, 30, 16, 40), (h, w))                     # bottom left, far away
    assert far["share"] <= leak and not far["lowest_inside"]
    whole = box_share(r, size, (0, 0, w, h), (h, w))
    # the whole image: all of it, up to the two float32 sums of its h * w non-negative terms
    assert whole["chance"] == 1.0 and whole["share"] == pytest.approx(1.0, rel=2 * gamma(h * w), abs=0)
    assert far["chance"] == pytest.approx(16 * 10 / (h * w))
    inside = box_share(r, size, (30, 10, 40, 20), (h, w))
    assert inside["share"] > inside["chance"]


def test_localization_on_a_tiny_run(tmp_path, monkeypatch):
    from zfcore.occlusion import localization
    from zfcore.presets import get_preset
    from zfcore.train import train
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path / "artifacts"))
    run = train(get_preset("tiny").replace(epochs=1, evolution_epochs=(1,)), out=tmp_path / "run",
                progress=False)
    a = localization(run, n_images=6, progress=False)
    b = localization(run, n_images=6, progress=False)
    assert a.indices.tolist() == b.indices.tolist() and len(a.indices) == 6
    np.testing.assert_array_equal(a.share, b.share)
    assert ((a.share >= 0) & (a.share <= 1)).all() and ((a.chance > 0) & (a.chance <= 1)).all()
    assert (a.size, a.stride) == (12, 4)                   # default occluder at 48 px, stride doubled
    s = a.summary()
    assert s["images"] == 6 and 0 <= s["images_above_chance"] <= 1
    with pytest.raises(ValueError, match="n_images"):
        localization(run, n_images=0, progress=False)
    with pytest.raises(ValueError, match="larger"):
        localization(run, size=100, progress=False)
