"""Any input size, any dtype, no NaN (issue 14, items 2 and 4).

torchvision's AlexNet and VGG16 take any input from their minimum up; at sizes other
than 224 px their ``avgpool`` (an ``AdaptiveAvgPool2d`` to 6x6 or 7x7) resizes the maps,
with bins of different sizes. Checked here at non-square sizes whose strides do not
divide them, against things we did not write: captum's neuron attributions (the
deconvnet, the gradient, guided backprop), a naive occlude-and-forward loop, and the
gradient's support (receptive fields). Average pooling (``AvgPool2d`` with its options)
in every walk; NaN and infinite inputs refused; images of another dtype cast; half
precision models walked.

The comparisons with captum, the naive loop and the gradient run in float64, with the
tolerances of tests/tolerance.py: F64_REL of the compared quantity's magnitude between two
float64 walks; for occlusion, whose maps come back in float32, the float32 softmax's bound
and one float32 ulp for the totals.
"""
from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch
from torch import nn

from zfcore import deconv
from zfcore.chain import chain, local_response_norm, max_pool2d
from zfcore.deconv import METHODS, project
from zfcore.activations import layer_activations, strongest
from zfcore.fields import Field, average_window, field_geometry, receptive_fields
from zfcore.models import zfnet
from zfcore.occlusion import sensitivity

from captum_reference import reinit
from naive import gradient_support, naive_occlusion
from tolerance import F64_REL, f32_cast_tol, softmax_f32_tol

captum_attr = pytest.importorskip("captum.attr")
torchvision = pytest.importorskip("torchvision")

ALEX_SIZES = [(200, 248), (200, 264)]       # avgpool: 5x6 -> 6x6, 5x7 -> 6x6
VGG_SIZE = (64, 80)                         # avgpool: 2x2 -> 7x7 (80 px: the last pool drops a column)


# --- helpers -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _out_of_place(model):
    """captum's ReLU hooks need non-in-place ReLUs (torchvision's are in place): for a while."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    was = [m.inplace for m in relus]
    for m in relus:
        m.inplace = False
    try:
        yield model
    finally:
        for m, w in zip(relus, was):
            m.inplace = w


_CAPTUM = {"deconvnet": "NeuronDeconvolution", "gradient": "NeuronGradient", "guided": "NeuronGuidedBackprop"}


def _captum_times_value(model, x, layer, feature, method):
    """captum's attribution of the strongest activation of ``feature`` (one image), times its value.
    The models here have no normalisation layer, so captum needs no other change."""
    values, pos = strongest(model, x, layer, feature)
    selector = (feature,) if pos is None else (feature, int(pos[0, 0]), int(pos[0, 1]))
    with _out_of_place(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        algo = getattr(captum_attr, _CAPTUM[method])(model, model.get_submodule(layer))
        attr = algo.attribute(x.clone(), neuron_selector=selector)
    return attr.detach() * values.reshape(-1, 1, 1, 1)


def _assert_f64_close(ours, ref):
    """Two float64 walks: within F64_REL of the reference's largest magnitude (not floored at 1:
    these projections are small with torchvision's initialisation)."""
    scale = float(ref.abs().max())
    assert scale > 0, "the reference is all zero: the comparison would be vacuous"
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == torch.float64
    err = float((ours - ref).abs().max())
    assert err <= F64_REL * scale, (err, F64_REL * scale)


@pytest.fixture(scope="module")
def alexnet():
    """torchvision's AlexNet (random weights, O(1) signals, nonzero biases), in float64."""
    torch.manual_seed(0)
    return reinit(torchvision.models.alexnet(weights=None)).eval().double()


@pytest.fixture(scope="module")
def vgg16():
    """torchvision's VGG16 with its own random initialisation (seeded), in float64."""
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval().double()


def _image(h, w, seed=1, dtype=torch.float64):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- the chain ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size,pooled", [((200, 248), (5, 6)), ((200, 264), (5, 7))])
def test_chain_takes_alexnet_at_any_size(alexnet, size, pooled):
    steps = chain(alexnet, size)
    pool = next(s for s in steps if s.name == "avgpool")
    assert pool.in_shape == (256, *pooled) and pool.out_shape == (256, 6, 6)
    assert steps[-1].out_shape == (1000,)


def test_chain_takes_vgg16_below_its_pool_size(vgg16):
    pool = next(s for s in chain(vgg16, VGG_SIZE) if s.name == "avgpool")
    assert pool.in_shape == (512, 2, 2) and pool.out_shape == (512, 7, 7)


def test_chain_takes_avg_pools():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AvgPool2d(3, 2, padding=1, ceil_mode=True,
                                                         count_include_pad=False), nn.Flatten())
    steps = chain(net, (11, 14))
    assert [type(s.module) for s in steps] == [nn.Conv2d, nn.AvgPool2d, nn.Flatten]
    assert steps[1].out_shape == (4, 5, 7)


# --- 1. the deconvnet, the gradient and guided backprop against captum ------------------------

@pytest.mark.parametrize("size", ALEX_SIZES)
@pytest.mark.parametrize("layer,feature", [("features.10", 20), ("features.12", 3), ("avgpool", 7),
                                           ("classifier.4", 5)])
def test_alexnet_any_size_matches_captum(alexnet, size, layer, feature):
    x = _image(*size, seed=2)
    for method in METHODS:
        ours = project(alexnet, x, layer, feature, method=method)
        _assert_f64_close(ours, _captum_times_value(alexnet, x, layer, feature, method))


@pytest.mark.parametrize("layer,feature", [("features.28", 30), ("avgpool", 11)])
def test_vgg16_small_non_square_matches_captum(vgg16, layer, feature):
    x = _image(*VGG_SIZE, seed=3)
    for method in METHODS:
        ours = project(vgg16, x, layer, feature, method=method)
        _assert_f64_close(ours, _captum_times_value(vgg16, x, layer, feature, method))


def _avg_net():
    """A chain with every kind of average pooling: uniform windows (cropped walk), windows that
    count only the inputs inside them and adaptive bins of different sizes (full walk)."""
    torch.manual_seed(0)
    return reinit(nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(3, 2, padding=1),                                    # counts the padding
        nn.Conv2d(6, 6, 2), nn.ReLU(),
        nn.AvgPool2d(2, divisor_override=3, ceil_mode=True),              # one divisor, past the end
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d((3, 4)),                                     # 12x16 -> 3x4: one window
        nn.Conv2d(8, 8, 1), nn.ReLU(),
        nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(8, 8, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d((3, 5)),                                     # 2x3 -> 3x5: bins differ
        nn.Flatten(), nn.Linear(8 * 15, 5))).eval().double()


def test_average_window():
    net = _avg_net()
    steps = chain(net, (48, 64))
    kinds = {s.name: average_window(s) for s in steps}
    assert kinds["2"] == ((3, 3), (2, 2), (1, 1), 9)
    assert kinds["5"] == ((2, 2), (2, 2), (0, 0), 3)
    assert kinds["8"] == ((4, 4), (4, 4), (0, 0), 16)
    assert kinds["11"] is None and kinds["14"] is None and kinds["0"] is None
    # a ceil-mode window past the end of the input is divided by less: not one divisor
    assert average_window(chain(nn.Sequential(nn.AvgPool2d(2, ceil_mode=True)), 5)[0]) is None
    assert average_window(chain(nn.Sequential(nn.AvgPool2d(2, ceil_mode=True)), 6)[0]) is not None


@pytest.mark.parametrize("layer", ["0", "2", "3", "5", "6", "8", "9", "11", "12", "14", "16"])
def test_average_pools_match_captum_cropped_or_not(layer):
    """Through every kind of average pooling, the walk on the receptive field (where it is taken)
    and the full walk equal captum."""
    net = _avg_net()
    steps = chain(net, (48, 64))
    top = [s.name for s in steps].index(layer)
    croppable = deconv._crop_geometry(steps, top) is not None
    assert croppable == (int(layer) < 11), layer        # up to the uniform pools only
    x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = layer_activations(net, x, layer)[layer]
    feats = (a if a.dim() == 2 else a.flatten(2).max(2).values).argmax(1)   # per image, the strongest map
    for method in METHODS:
        full = deconv._project(net, x, layer, feats, None, method, None, crop=False)
        cropped = deconv._project(net, x, layer, feats, None, method, None, crop=True)
        public = project(net, x, layer, feats, method=method)
        for i in range(2):
            ref = _captum_times_value(net, x[i:i + 1], layer, int(feats[i]), method)
            for got in (full, cropped, public):
                _assert_f64_close(got[i:i + 1], ref)


def test_inverse_kinds_name_the_transposed_averaging(alexnet):
    kinds = deconv.inverse_kinds(alexnet, (200, 248))
    assert kinds["avgpool"].startswith("spread")
    assert deconv.inverse_kinds(alexnet, 224)["avgpool"] == "pass"        # keeps 6x6 at 224 px


# --- 2. occlusion against a naive occlude-and-forward loop --------------------------------------

def _check_occlusion(model, x, size, stride, fill, module, **kw):
    """Both engines against the naive loop, all in float64: the probabilities then differ only by
    sensitivity's float32 softmax (softmax_f32_tol), the totals by their cast to float32 (one
    ulp), and the most probable class agrees wherever the top two are further apart than that."""
    results = [sensitivity(model, x, size, stride, fill=fill, engine=e, projection=False, **kw)
               for e in ("incremental", "full")]
    r = results[0]
    ys, xs, prob, top, act, logits, gap = naive_occlusion(model, x, size, stride, fill, r.target, module, r.feature)
    tol = softmax_f32_tol(logits)
    for res in results:
        assert (res.ys, res.xs) == (ys, xs) and res.prob.shape == (len(ys), len(xs))
        torch.testing.assert_close(res.prob.double(), prob, atol=tol, rtol=0)
        torch.testing.assert_close(res.activity.double(), act, atol=f32_cast_tol(act), rtol=0)
        clear = gap > 2 * tol
        assert bool(clear.any())                           # the comparison below has teeth
        assert torch.equal(res.top_class[clear], top[clear])
    return r


@pytest.mark.parametrize("size", ALEX_SIZES)
def test_alexnet_any_size_occlusion_matches_naive(alexnet, size):
    r = _check_occlusion(alexnet, _image(*size, seed=5), 64, 68, 0.3, alexnet.features[10], batch_size=5)
    assert r.layer == "features.10"


def test_alexnet_any_size_occlusion_of_the_pooled_maps(alexnet):
    """The layer mapped is the adaptive pooling itself (where the incremental engine goes over
    to whole maps)."""
    r = _check_occlusion(alexnet, _image(200, 264, seed=6), 70, 65, 0.0, alexnet.avgpool,
                         layer="avgpool", batch_size=5)
    assert r.layer == "avgpool"


def test_vgg16_small_non_square_occlusion_matches_naive(vgg16):
    _check_occlusion(vgg16, _image(*VGG_SIZE, seed=7), 32, 48, 0.0, vgg16.features[28], batch_size=3)


@pytest.mark.parametrize("layer", ["3", "9", "12", "16"])
def test_occlusion_through_average_pools_matches_naive(layer):
    """Patches grown through uniform average poolings (a padded one, one with a divisor, an
    adaptive one that is one window); whole maps from the others on."""
    net = _avg_net()
    _check_occlusion(net, _image(48, 64, seed=8), 12, 9, 0.5, net.get_submodule(layer), layer=layer,
                     batch_size=7)


# --- 3. receptive fields are the gradient's support ---------------------------------------------

def _check_fields(model, layer, size, below=None):
    """The boxes of corner, border and centre units of ``layer`` against the gradient's support,
    taken on ``below`` (the part of the model up to the layer, named as in it; default the model)."""
    steps = chain(model, size)
    _, h, w = next(s for s in steps if s.name == layer).out_shape
    positions = sorted({(y, x) for y in (0, h // 2, h - 1) for x in (0, w // 2, w - 1)}
                       | {(min(1, h - 1), max(w - 2, 0)), (max(h - 2, 0), min(1, w - 1))})
    support = gradient_support(model if below is None else below, layer, positions, size)
    boxes = receptive_fields(model, layer, torch.tensor(positions), size)
    fy, fx = field_geometry(model, size)[layer]
    for (y, x), (y0, y1, x0, x1), sup in zip(positions, boxes.tolist(), support):
        expect = torch.zeros(size, dtype=torch.bool)
        expect[y0:y1, x0:x1] = True
        assert torch.equal(sup, expect), (layer, (y, x), (y0, y1, x0, x1))
        # field_geometry's window (exact or bounding) holds the box
        assert fy.start + y * fy.jump <= y0 and y1 <= fy.start + y * fy.jump + fy.size, (layer, y, fy)
        assert fx.start + x * fx.jump <= x0 and x1 <= fx.start + x * fx.jump + fx.size, (layer, x, fx)


@pytest.mark.parametrize("size", ALEX_SIZES)
@pytest.mark.parametrize("layer", ["features.12", "avgpool"])
def test_alexnet_any_size_fields_are_the_gradient_support(alexnet, size, layer):
    _check_fields(alexnet, layer, size, below=_Features(alexnet))


class _Features(nn.Module):
    """AlexNet's ``features`` and ``avgpool``, under their names (the gradient needs no more)."""

    def __init__(self, model):
        super().__init__()
        self.features, self.avgpool = model.features, model.avgpool

    def forward(self, x):
        return self.avgpool(self.features(x))


def test_fields_grow_through_adaptive_bins():
    """A window layer above adaptive bins of different sizes (11x14 -> 5x6 -> a 3x3 conv, a
    ceil-mode pool), and every kind of average pooling."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d((5, 6)),
                        nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True),
                        nn.Conv2d(4, 4, 2), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    for layer in ["0", "2", "3", "4", "5"]:
        _check_fields(net, layer, (25, 31))
    avg = _avg_net()
    for layer in ["2", "5", "8", "9", "11", "14"]:
        _check_fields(avg, layer, (48, 64))
    # conv "0": jump 2, size 5. Bins 11 -> 5: [0, 3), [2, 5), ... [8, 11): exactly a window of 3,
    # stride 2. Bins 14 -> 6: [0, 3), [2, 5), [4, 7), [7, 10), [9, 12), [11, 14): no one window;
    # the narrowest bounding one has stride 2 and size 4 (stride 3 would need 7)
    fy, fx = field_geometry(net, (25, 31))["2"]
    assert (fy, fx) == (Field(4, 5 + 2 * 2, 0), Field(4, 5 + 3 * 2, 0))




# --- 4. bad numbers, other dtypes ---------------------------------------------------------------

def _copy_in(model, dtype):
    return copy.deepcopy(model).to(dtype).eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return zfnet(10, input_size=64, width=0.25, fc_units=32, init="matched").eval()


@pytest.mark.parametrize("value,what", [(float("nan"), "1 NaN and 0 infinite"),
                                        (float("inf"), "0 NaN and 1 infinite"),
                                        (-float("inf"), "0 NaN and 1 infinite")])
def test_non_finite_pixels_are_refused(small, value, what):
    x = _image(64, 64, dtype=torch.float32).repeat(2, 1, 1, 1)
    x[1, 2, 5, 7] = value
    for image, call in ((1, lambda: project(small, x, "conv3", 0)),
                        (1, lambda: project(small, x, "conv3", 0, (1, 1))),
                        (1, lambda: project(small, x, "fc6", 0)), (1, lambda: strongest(small, x, "conv2", 0)),
                        (1, lambda: layer_activations(small, x, "conv1")),
                        (0, lambda: sensitivity(small, x[1:], 16, 16))):
        with pytest.raises(ValueError, match=rf"{what} pixel values \(the first at image {image}, "
                                             rf"channel 2, row 5, column 7"):
            call()


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), -float("inf"), "grey", None, True])
def test_bad_fill_is_refused(small, fill):
    with pytest.raises(ValueError, match=r"fill must be a (finite )?number.*got"):
        sensitivity(small, _image(64, 64, dtype=torch.float32), 16, 16, fill=fill)


def test_fill_must_be_finite_in_the_models_dtype(small):
    half = _copy_in(small, torch.float16)
    with pytest.raises(ValueError, match=r"fill 100000.0 is not finite in the model's dtype torch.float16"):
        sensitivity(half, _image(64, 64, dtype=torch.float32), 16, 16, fill=1e5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_are_cast_to_the_models_dtype(small, dtype):
    """A float32 model given images of another dtype computes on the images cast to float32: the
    same numbers, bit for bit, as the cast images give."""
    x = _image(64, 64, seed=9, dtype=torch.float32).repeat(2, 1, 1, 1).to(dtype)
    cast = x.float()
    for method in METHODS:
        got = project(small, x, "conv4", 3, method=method)
        assert got.dtype == torch.float32
        assert torch.equal(got, project(small, cast, "conv4", 3, method=method))
    a = layer_activations(small, x, ["conv2", "fc7"])
    b = layer_activations(small, cast, ["conv2", "fc7"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    r, s = (sensitivity(small, im[:1], 16, 12, fill=0.25) for im in (x, cast))
    assert torch.equal(r.prob, s.prob) and torch.equal(r.activity, s.activity)
    assert torch.equal(r.projection, s.projection) and r.feature == s.feature


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_are_walked(small, dtype):
    """zfnet in bfloat16 or float16 (its contrast normalisation has no CPU kernel in these
    dtypes: computed in float32 and rounded back): every walk runs, in the model's dtype."""
    half = _copy_in(small, dtype)
    x = _image(64, 64, seed=10, dtype=torch.float32).repeat(2, 1, 1, 1)
    assert [s.out_shape for s in chain(half, 64)] == [s.out_shape for s in chain(small, 64)]
    for method in METHODS:
        for layer in ("conv3", "fc6"):
            p = project(half, x, layer, 2, method=method)
            assert p.dtype == dtype and p.shape == x.shape and bool(torch.isfinite(p).all())
    r = sensitivity(half, x[:1], 16, 16)
    assert bool(torch.isfinite(r.prob).all()) and bool(torch.isfinite(r.activity).all())
    assert r.projection.dtype == torch.float32 and bool(torch.isfinite(r.projection).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_agrees_with_float32(dtype):
    """A chain with contrast normalisation and nothing that switches (no max pooling; the deconvnet
    rectifies the signal, no ReLU gates it): in half precision it gives the float32 results of the
    same weights to that precision's rounding. Each of the walk's at most 7 roundings to the
    dtype (conv, normalisation, pooling, conv, pooling, linear; their transposes on the way down)
    moves the result by at most the unit roundoff (eps / 2) of its size, so the relative error
    stays under 7 * eps / 2."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(3),
                        nn.AvgPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((3, 4)),
                        nn.Flatten(), nn.Linear(8 * 12, 6)).eval()
    net16 = _copy_in(net, dtype)
    net32 = _copy_in(net16, torch.float32)                    # the same (rounded) weights
    x = _image(20, 26, seed=11, dtype=torch.float32).to(dtype).float() * 4
    tol = 7 * torch.finfo(dtype).eps / 2

    def rel(a, b):
        return float((a.float() - b).norm() / b.norm())
    for layer in ("4", "6", "8"):
        assert rel(project(net16, x, layer, 1, (0, 0) if layer != "8" else None),
                   project(net32, x, layer, 1, (0, 0) if layer != "8" else None)) <= tol
    for engine in ("incremental", "full"):
        a = sensitivity(net16, x, 8, 6, engine=engine, projection=False)
        b = sensitivity(net32, x, 8, 6, engine=engine, projection=False, target=a.target, feature=a.feature)
        assert rel(a.prob, b.prob) <= tol and rel(a.activity, b.activity) <= tol


def test_local_response_norm_in_half_precision():
    m = nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)
    h = torch.randn(2, 9, 4, 5, generator=torch.Generator().manual_seed(12)).to(torch.bfloat16)
    out = local_response_norm(m, h)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, m(h.float()).to(torch.bfloat16))


# --- 5. the walks' own kernels and the public call's shortcuts ----------------------------------

@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
def test_local_response_norm_is_pytorchs(size):
    """Shifted slices instead of avg_pool3d: PyTorch's definition, to float64 rounding (a sum of
    ``size`` squares, one division, one power)."""
    m = nn.LocalResponseNorm(size, alpha=1e-2, beta=0.75, k=2.0)
    h = torch.randn(2, 9, 4, 5, generator=torch.Generator().manual_seed(13), dtype=torch.float64) * 3
    ref = m(h)
    assert float((local_response_norm(m, h) - ref).abs().max()) <= F64_REL * float(ref.abs().max())


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, dilation=2), dict(kernel_size=(2, 3), stride=(1, 2))])
def test_max_pool2d_channels_last_is_pytorchs(kw):
    """The same maxima and the same switches (exactly), in the input's layout."""
    h = torch.randn(3, 16, 11, 13, generator=torch.Generator().manual_seed(14))
    h[0, 3, 2:5, 2:5] = 1.5                                     # ties: the first one wins in both
    got, ref = max_pool2d(h, return_indices=True, **kw), nn.functional.max_pool2d(h, return_indices=True, **kw)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert got[0].is_contiguous() and got[1].is_contiguous()


def test_repeated_images_go_forward_once_and_apart_stay_apart():
    """``project`` without positions runs each distinct image forward once: repeated images (the
    top 9 of several maps share images) get their own maps' projections, and an image that differs
    from another in one pixel only is not taken for it."""
    torch.manual_seed(0)
    model = reinit(zfnet(10, input_size=64, width=0.25, fc_units=16)).eval().double()
    base = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    near = base[0].clone()
    near[0, 0, 1] += 5.0                                        # one pixel, off the key's sample
    x = torch.stack([base[0], base[1], base[0], near, base[2], base[1]])
    feats = torch.tensor([3, 0, 7, 3, 1, 5])
    for method in METHODS:
        got = deconv._project(model, x, "conv2", feats, None, method, None, crop=True)
        for i in range(len(x)):
            one = deconv._project(model, x[i:i + 1], "conv2", int(feats[i]), None, method, None, crop=False)
            _assert_f64_close(got[i:i + 1], one)
    first, copy = deconv._distinct(x)                           # the near copy is its own image
    assert first.tolist() == [0, 1, 3, 4] and copy.tolist() == [0, 1, 0, 2, 3, 1]


def test_first_layer_dilated_and_strided_matches_captum():
    """The transposed filters onto the image's 3 maps (a matrix product and a fold) with dilation
    and stride, cropped and not."""
    torch.manual_seed(0)
    net = reinit(nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, dilation=2, padding=1), nn.ReLU(),
                               nn.MaxPool2d(2), nn.Conv2d(6, 4, (2, 3), stride=(1, 2)))).eval().double()
    x = torch.randn(2, 3, 30, 41, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    for layer in ("0", "3"):
        for method in METHODS:
            for crop in (True, False):
                got = deconv._project(net, x, layer, 1, None, method, None, crop=crop)
                for i in range(2):
                    _assert_f64_close(got[i:i + 1], _captum_times_value(net, x[i:i + 1], layer, 1, method))
