"""The deconvnet of Section 2.1 (zfcore.deconv), checked against captum and by hand."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from zfcore.chain import UnsupportedModel
from zfcore.deconv import METHODS, project
from zfcore.activations import layer_activations, strongest
from zfcore.models import zfnet

from captum_reference import for_captum, reinit
from tolerance import f64_close, gamma

captum_attr = pytest.importorskip("captum.attr")
torchvision = pytest.importorskip("torchvision")


# --- helpers -----------------------------------------------------------------------------------

_CAPTUM = {"deconvnet": "NeuronDeconvolution", "gradient": "NeuronGradient",
           "guided": "NeuronGuidedBackprop"}


def _captum_times_value(model, x, layer, feature, method="deconvnet"):
    """captum's neuron attribution for the strongest activation of ``feature``, times its value (one image)."""
    values, pos = strongest(model, x, layer, feature)
    ref = for_captum(model, skip_lrn=(method == "deconvnet"))
    selector = (feature,) if pos is None else (feature, int(pos[0, 0]), int(pos[0, 1]))
    algo = getattr(captum_attr, _CAPTUM[method])(ref, ref.get_submodule(layer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = algo.attribute(x.clone(), neuron_selector=selector)
    return attr.detach() * values.reshape(-1, 1, 1, 1)


def _assert_matches(ours, expected):
    """Equal to float64 rounding (both sides are run in float64: tests/tolerance.py)."""
    assert ours.dtype == expected.dtype == torch.float64
    f64_close(ours, expected)
    assert float(ours.abs().max()) > 0, "projection is all zero: the comparison would be vacuous"


def _rel(ours, expected):
    return float((ours - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module")
def zf():
    torch.manual_seed(0)
    return reinit(zfnet(10, input_size=64, width=0.25, fc_units=64)).eval().double()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).eval().double()


@pytest.fixture(scope="module")
def image224():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


# --- 1. against captum -------------------------------------------------------------------------

@pytest.mark.parametrize("layer,feature", [("conv1", 3), ("conv2", 5), ("conv3", 2), ("conv5", 7),
                                           ("relu2", 1), ("pool5", 4), ("fc6", 4), ("fc8", 2)])
def test_deconvnet_matches_captum_zfnet(zf, images, layer, feature):
    x = images[:1]
    ours = project(zf, x, layer, feature)
    _assert_matches(ours, _captum_times_value(zf, x, layer, feature))


@pytest.mark.parametrize("method", ["gradient", "guided"])
@pytest.mark.parametrize("layer,feature", [("conv2", 5), ("conv5", 7), ("fc7", 3)])
def test_gradient_and_guided_match_captum_zfnet(zf, images, method, layer, feature):
    x = images[1:2]
    ours = project(zf, x, layer, feature, method=method)
    _assert_matches(ours, _captum_times_value(zf, x, layer, feature, method))


def test_deconvnet_skips_normalisation_and_rectifies_signal(zf, images):
    """The three methods differ on zfnet (LRN and the ReLU rule), as Section 2.1 says."""
    x = images[:1]
    d, g, gb = (project(zf, x, "conv5", 7, method=m) for m in METHODS)
    assert not torch.allclose(d, g, rtol=1e-3, atol=0)
    assert not torch.allclose(d, gb, rtol=1e-3, atol=0)
    # captum's deconvolution *through* LRN is not ours: normalisation is skipped on the way down
    values, pos = strongest(zf, x, "conv5", 7)
    through = for_captum(zf, skip_lrn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = captum_attr.NeuronDeconvolution(through, through.conv5).attribute(
            x.clone(), neuron_selector=(7, int(pos[0, 0]), int(pos[0, 1])))
    assert not torch.allclose(d, c * values.reshape(-1, 1, 1, 1), rtol=1e-3, atol=0)


@pytest.mark.parametrize("layer,feature", [("features.0", 11), ("features.10", 20), ("classifier.1", 5)])
def test_deconvnet_matches_captum_alexnet(alexnet, image224, layer, feature):
    relus_before = [m.inplace for m in alexnet.modules() if isinstance(m, nn.ReLU)]
    assert all(relus_before)                          # torchvision's ReLUs are in place
    ours = project(alexnet, image224, layer, feature)
    _assert_matches(ours, _captum_times_value(alexnet, image224, layer, feature))


def test_deconvnet_matches_captum_vgg11(image224):
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(weights=None).eval().double()
    ours = project(vgg, image224, "features.13", 30)
    _assert_matches(ours, _captum_times_value(vgg, image224, "features.13", 30))


def test_inplace_relus_do_not_corrupt_activations(alexnet, image224):
    """Our walk is non-in-place: features.3 (conv2) is the convolution's output, negative values kept."""
    acts = layer_activations(alexnet, image224, ["features.3", "features.4"])
    conv, relu = acts["features.3"], acts["features.4"]
    assert float(conv.min()) < 0
    assert torch.equal(relu, conv.clamp(min=0))                  # a ReLU is exact
    with torch.no_grad():
        direct = alexnet.features[:4](image224.clone())
    f64_close(conv, direct)


# --- 2. shared switches add up -----------------------------------------------------------------

def _tiny_net(conv2_weight):
    """conv (channel 0 passed through) -> ReLU -> 3x3/2 max pool -> 2x2 conv."""
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(1, 1, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 0, 0] = 1.0
        net[0].bias.zero_()
        net[3].weight.copy_(torch.as_tensor(conv2_weight, dtype=torch.float32).reshape(1, 1, 2, 2))
        net[3].bias.zero_()
    return net


def test_shared_switch_values_add_up():
    # 5x5 image; the 3x3/2 pooling windows (rows 0-2 | 2-4) x (cols 0-2 | 2-4) all contain (2, 2),
    # the maximum: all four pooled outputs have their switch at (2, 2).
    img = torch.arange(25, dtype=torch.float32).reshape(5, 5) / 100.0
    img[2, 2] = 10.0
    x = torch.zeros(1, 3, 5, 5)
    x[0, 0] = img
    x[0, 1] = -5.0                                    # other channels are ignored by conv1
    net = _tiny_net([[1.0, 2.0], [3.0, 4.0]])
    values, pos = strongest(net, x, "3", 0)
    assert pos.tolist() == [[0, 0]]
    assert values.item() == pytest.approx(10.0 * (1 + 2 + 3 + 4))       # 100
    for method in METHODS:
        out = project(net, x, "3", 0, method=method)
        expected = torch.zeros(1, 3, 5, 5)
        # unit gradient -> (1, 2, 3, 4) on the pooled map -> all unpooled to (2, 2): 1+2+3+4 = 10,
        # times the activation's value 100. max_unpool2d would keep only one of them.
        expected[0, 0, 2, 2] = 10.0 * 100.0
        # every weight is 0, 1 or an integer and the values are exact in binary: exact
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_two_windows_share_a_switch():
    # 3x5 image: pool output 1x2, windows cols 0-2 and 2-4 share column 2, the maximum is at (1, 2).
    img = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.1],
                        [0.4, 0.5, 7.0, 0.6, 0.2],
                        [0.3, 0.1, 0.2, 0.9, 0.8]])
    x = torch.zeros(1, 3, 3, 5)
    x[0, 0] = img
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(1, 1, (1, 2)))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 0, 0] = 1.0
        net[0].bias.zero_()
        net[3].weight.copy_(torch.tensor([[[[2.0, 5.0]]]]))
        net[3].bias.fill_(0.5)
    out = project(net, x, "3", 0)
    value = 2.0 * 7.0 + 5.0 * 7.0 + 0.5                 # 49.5, the bias included
    expected = torch.zeros(1, 3, 3, 5)
    expected[0, 0, 1, 2] = (2.0 + 5.0) * value
    # 7.0 and the weights are exact in binary, the value 49.5 too: exact
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_deconvnet_rectifies_the_signal_not_the_activation():
    """A negative weight above a ReLU: the deconvnet zeroes the negative signal; backprop lets it
    through where the forward input was positive; guided zeroes it too."""
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 0, 0] = 1.0
        net[0].bias.zero_()
        net[2].weight.fill_(-1.0)
        net[2].bias.fill_(3.0)
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    # conv2 output = 3 - relu(x): strongest at (0, 1) where x = -1 (value 3, ReLU input negative)
    # and at (0, 0) value 2 with positive ReLU input.
    pos = (0, 0)
    assert project(net, x, "2", 0, pos).abs().max() == 0
    assert project(net, x, "2", 0, pos, method="guided").abs().max() == 0
    g = project(net, x, "2", 0, pos, method="gradient")
    assert g[0, 0, 0, 0].item() == pytest.approx(-1.0 * 2.0)
    assert project(net, x, "2", 0, (0, 1), method="gradient").abs().max() == 0   # gated: input < 0


# --- 3. batched equals one by one --------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_one_by_one(zf, images, method):
    feats = torch.tensor([3, 0, 7])
    for layer, position in [("conv2", torch.tensor([[1, 2], [0, 0], [5, 3]])), ("conv5", None)]:
        batched = project(zf, images, layer, feats, position, method=method)
        assert batched.shape == images.shape
        for i in range(len(images)):
            pos_i = None if position is None else tuple(position[i].tolist())
            single = project(zf, images[i:i + 1], layer, int(feats[i]), pos_i, method=method)
            f64_close(batched[i:i + 1], single)
    batched = project(zf, images, "fc6", feats, method=method)
    for i in range(len(images)):
        single = project(zf, images[i:i + 1], "fc6", int(feats[i]), method=method)
        f64_close(batched[i:i + 1], single)


def test_feature_int_broadcasts_and_list_accepted(zf, images):
    a = project(zf, images, "conv3", 4)
    b = project(zf, images, "conv3", [4, 4, 4])
    assert torch.equal(a, b)                                      # the same call, the same bits


# --- 4. positions, strongest, fc ---------------------------------------------------------------

def test_explicit_argmax_position_equals_default(zf, images):
    values, pos = strongest(zf, images, "conv4", 6)
    assert values.shape == (3,) and pos.shape == (3, 2) and pos.dtype == torch.long
    acts = layer_activations(zf, images, "conv4")["conv4"]
    assert torch.equal(values, acts[:, 6].flatten(1).max(dim=1).values)     # one walk, one max
    for i in range(3):
        assert acts[i, 6, pos[i, 0], pos[i, 1]] == values[i]
    f64_close(project(zf, images, "conv4", 6, pos), project(zf, images, "conv4", 6))


def test_non_maximal_position_is_scaled_by_its_value(zf, images):
    x = images[:1]
    acts = layer_activations(zf, x, "conv1")["conv1"]
    y, xx = 4, 9
    value = acts[0, 2, y, xx]
    unit = project(zf, x, "conv1", 2, (y, xx)) / value
    # conv1 is the first layer: the unit projection is the filter itself, placed at the window
    # (a transposed convolution of one 1: each output is one product, exact), times the value
    # project computed and divided by the value layer_activations computed: two roundings, plus
    # the two values' own difference, each a sum of 147 products (gamma(147) * sum |w x|)
    w = zf.conv1.weight[2].detach()
    top, left = 2 * y - 1, 2 * xx - 1
    eps = torch.finfo(w.dtype).eps
    window = x[0, :, top:top + 7, left:left + 7]
    rel = eps + 2 * gamma(147 + 1, eps) * float((w.abs() * window.abs()).sum() + zf.conv1.bias[2].detach().abs()) / abs(float(value))
    torch.testing.assert_close(unit[0, :, top:top + 7, left:left + 7], w, rtol=rel, atol=0)


def test_fc_strongest_and_projection(zf, images):
    values, pos = strongest(zf, images, "fc6", 5)
    assert pos is None
    acts = layer_activations(zf, images, ["fc6", "conv1"])
    assert set(acts) == {"fc6", "conv1"}
    assert torch.equal(values, acts["fc6"][:, 5])                 # the same walk to fc6
    out = project(zf, images, "fc6", 5)
    assert out.shape == images.shape and torch.isfinite(out).all()


def test_mode_restored_no_grads_input_untouched(zf, images):
    model = copy.deepcopy(zf).train()
    x = images.clone()
    eval_out = project(copy.deepcopy(zf).eval(), x, "fc7", 1)
    out = project(model, x, "fc7", 1)                 # dropout must be off inside
    assert torch.equal(out, eval_out)                 # eval mode inside: the same computation
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not out.requires_grad
    assert torch.equal(x, images)


# --- 5. errors -----------------------------------------------------------------------------------

def test_errors(zf, images):
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*conv1.*fc8"):
        project(zf, images, "conv9", 0)
    with pytest.raises(ValueError, match=r"feature 24 is out of range for layer 'conv1'.*24 maps.*0\.\.23"):
        project(zf, images, "conv1", 24)          # width 0.25: 96 / 4 maps
    with pytest.raises(ValueError, match=r"feature -1 is out of range"):
        project(zf, images, "conv2", torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match=r"out of range for layer 'fc6'.*64 units.*0\.\.63"):
        project(zf, images, "fc6", 64)
    with pytest.raises(ValueError, match=r"one per image"):
        project(zf, images, "conv2", torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"position \(y=6, x=0\) is out of range.*6x6.*0\.\.5"):
        project(zf, images, "conv2", 0, (6, 0))
    with pytest.raises(ValueError, match=r"position \(y=0, x=-1\)"):
        project(zf, images, "conv2", 0, torch.tensor([[0, 0], [0, -1], [1, 1]]))
    with pytest.raises(ValueError, match=r"fully connected.*position=None"):
        project(zf, images, "fc6", 0, (0, 0))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        project(zf, images[0], "conv1", 0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        project(zf, images[:, :1], "conv1", 0)
    with pytest.raises(ValueError, match=r"unknown method 'backprop'.*deconvnet, gradient, guided"):
        project(zf, images, "conv1", 0, method="backprop")
    odd = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    with pytest.raises(UnsupportedModel, match=r"'1' \(BatchNorm2d\)"):
        project(odd, torch.zeros(1, 3, 8, 8), "0", 0)
    with pytest.raises(ValueError, match=r"no layer 'conv9'"):
        strongest(zf, images, "conv9", 0)


# --- 6. receptive field --------------------------------------------------------------------------

def _outside_box_is_zero(out, rows, cols):
    inside = torch.zeros(out.shape[-2:], dtype=torch.bool)
    inside[max(rows[0], 0):rows[1] + 1, max(cols[0], 0):cols[1] + 1] = True
    assert float(out[..., ~inside].abs().max()) == 0.0
    assert float(out[..., inside].abs().max()) > 0.0


def test_projection_inside_receptive_field(zf, images):
    x = images[:1]
    # conv1: 7x7, stride 2, padding 1 -> unit (y, x) sees input rows 2y-1 .. 2y+5
    for y, xx in [(0, 0), (5, 11), (29, 29)]:
        out = project(zf, x, "conv1", 1, (y, xx))
        _outside_box_is_zero(out, (2 * y - 1, 2 * y + 5), (2 * xx - 1, 2 * xx + 5))
    # conv2: 5x5/2 on pool1 (3x3/2) on conv1: rows 4y..4y+10 of conv1 -> input rows 8y-1 .. 8y+25
    for method in METHODS:
        out = project(zf, x, "conv2", 3, (2, 1), method=method)
        _outside_box_is_zero(out, (8 * 2 - 1, 8 * 2 + 25), (8 * 1 - 1, 8 * 1 + 25))


def test_project_steps_ends_with_the_projection():
    from zfcore import deconv, models
    torch.manual_seed(0)
    m = models.zfnet(10, input_size=64, width=0.25, fc_units=32, init="matched").double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64) * 50
    trace = deconv.project_steps(m, x, "conv2", feature=3)
    names = [n for n, _ in trace]
    assert names[0] == "conv2" and names[1:] == ["conv2", "norm1", "pool1", "relu1", "conv1"]
    assert trace[0][1].shape == (2, m.conv2.out_channels, 6, 6)
    f64_close(trace[-1][1], deconv.project(m, x, "conv2", 3))   # the full walk against the cropped one
    # the isolated activation is one non-zero value per image: the strongest one
    values, _ = strongest(m, x, "conv2", 3)
    top = trace[0][1].flatten(1)
    assert torch.equal((top != 0).sum(1), torch.ones(2, dtype=torch.long))
    assert torch.equal(top.sum(1), values)        # one value times 1, plus zeros: exact


# --- 7. on the receptive field only --------------------------------------------------------------
#
# project() walks a unit's receptive field only (crops, unpadded ops, the network's borders
# reproduced), where the field is small against the image. The cropped walk must give the
# uncropped projection: checked in float64 (where max-pool near-ties cannot flip between two
# summation orders) at corner, border and centre units of every spatial layer.

from zfcore import deconv as _deconv  # noqa: E402
from zfcore.chain import chain as _chain  # noqa: E402
from zfcore.fields import field_geometry  # noqa: E402


def _test_positions(h, w):
    ps = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w // 2),
          (h // 2, w - 1), (h - 1, w // 3), (1, 1), (h - 2, w - 2)]
    return torch.tensor(sorted({p for p in ps if 0 <= p[0] < h and 0 <= p[1] < w}))


def _check_cropped_equals_full(model, size, layers, dtype=torch.float64, tol=1e-10):
    model = copy.deepcopy(model).to(dtype).eval()
    steps = _chain(model, size)
    x1 = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(5), dtype=dtype)
    nonzero = 0
    for layer in layers:
        _, h, w = next(s.out_shape for s in steps if s.name == layer)
        pos = _test_positions(h, w)
        n = len(pos)
        x = x1.expand(n, -1, -1, -1) + 0.1 * torch.randn(n, 3, size, size, dtype=dtype,
                                                         generator=torch.Generator().manual_seed(6))
        feats = torch.arange(n) % 3
        for method in METHODS:
            full = _deconv._project(model, x, layer, feats, pos, method, None, crop=False)
            cropped = _deconv._project(model, x, layer, feats, pos, method, None, crop=True)
            scale = full.flatten(1).abs().max(1).values
            assert cropped.shape == full.shape and cropped.dtype == full.dtype
            diff = (cropped - full).flatten(1).abs().max(1).values
            assert bool((diff <= tol * scale.clamp_min(1e-30)).all()), (layer, method, diff, scale)
            nonzero += int((scale > 0).sum())
    assert nonzero > 0


def test_cropped_equals_full_zfnet_64():
    torch.manual_seed(0)
    m = reinit(zfnet(10, input_size=64, width=0.25, fc_units=16))
    _check_cropped_equals_full(m, 64, ["conv1", "relu1", "pool1", "norm1", "conv2", "pool2", "conv3",
                                       "conv4", "conv5", "relu5", "pool5"])


def test_cropped_equals_full_zfnet_224():
    torch.manual_seed(0)
    m = reinit(zfnet(10, input_size=224, width=0.125, fc_units=16))
    _check_cropped_equals_full(m, 224, ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5",
                                        "pool5"])


def test_cropped_equals_full_alexnet(alexnet):
    _check_cropped_equals_full(alexnet, 224, ["features.0", "features.2", "features.3", "features.5",
                                              "features.8", "features.10", "features.12", "avgpool"])


def test_cropped_float32_zfnet_224_and_captum():
    """In float32 the two walks sum in different orders: equal to rounding; and equal to captum."""
    torch.manual_seed(0)
    m = reinit(zfnet(10, input_size=224, width=0.25, fc_units=16)).eval()
    # each walk goes up through conv1..conv5 and down through their transposes: 10 weighted
    # layers, each a sum of at most n terms (the largest fan-in, either way), so each walk is
    # within 10 * gamma(n) of the exact result, relative to the magnitudes in play; two walks,
    # twice that. (A max-pool near-tie closer than that could flip a switch; none does at this
    # seed, and the float64 checks above cover the geometry.)
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    n = max(max(c.in_channels, c.out_channels) * c.kernel_size[0] * c.kernel_size[1] for c in convs)
    _check_cropped_equals_full(m, 224, ["conv2", "conv5"], dtype=torch.float32, tol=2 * 10 * gamma(n))
    # against captum in float64 (its walk and ours then agree to float64 rounding)
    m = m.double()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    steps = _chain(m, 224)
    geo = _deconv._crop_geometry(steps, [s.name for s in steps].index("conv5"))
    assert geo[0][0][2] ** 2 <= _deconv._CROP_MAX_AREA * 224 * 224     # project() crops conv5 here
    acts = layer_activations(m, x, "conv5")["conv5"]
    border = (0, int(acts[0, 4, 0].argmax()))                  # the strongest unit on the top row
    centre = tuple(int(v) for v in strongest(m, x, "conv5", 4)[1][0])
    for pos in [border, centre]:
        value = acts[0, 4, pos[0], pos[1]]
        assert value > 0
        ref = for_captum(m, skip_lrn=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = captum_attr.NeuronDeconvolution(ref, ref.conv5).attribute(
                x.clone(), neuron_selector=(4, *pos))
        _assert_matches(project(m, x, "conv5", 4, pos), c * value)


def test_cropped_strongest_position_and_errors():
    torch.manual_seed(0)
    m = reinit(zfnet(10, input_size=224, width=0.125, fc_units=16)).eval().double()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    full = _deconv._project(m, x, "conv3", 5, None, "deconvnet", None, crop=False)
    cropped = _deconv._project(m, x, "conv3", 5, None, "deconvnet", None, crop=True)
    torch.testing.assert_close(cropped, full, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"position \(y=13, x=0\) is out of range.*13x13"):
        project(m, x, "conv3", 0, (13, 0))
    with pytest.raises(ValueError, match=r"feature 48 is out of range for layer 'conv3'"):
        project(m, x, "conv3", 48, (0, 0))


def test_whole_pass_computes_only_the_maps_asked_for(monkeypatch):
    """Without positions the maxima need whole maps: at a convolution only the maps asked for are
    computed (a subset of its filters), with the same values as the whole layer's."""
    torch.manual_seed(0)
    m = reinit(zfnet(10, input_size=64, width=0.25, fc_units=16)).eval().double()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    steps = _chain(m, 64)
    names = [s.name for s in steps]
    calls = []
    real = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda h, w, *a, **k: calls.append(w.shape[0]) or real(h, w, *a, **k))
    rows, feats = torch.tensor([0, 1, 3, 3]), torch.tensor([5, 2, 5, 7])
    for layer in ["conv1", "conv3", "conv5", "relu5"]:
        top = names.index(layer)
        calls.clear()
        with torch.no_grad():
            acts, maps = _deconv._whole_pass(steps, top, x, rows, feats)
            last = calls[-1]
            full, _ = _deconv.forward(steps, x, top, switches=False)
        f64_close(maps, full[top + 1][rows, feats])
        for k in range(top + 1):
            f64_close(acts[k], full[k])
        if layer.startswith("conv"):
            assert last == 3                         # maps 2, 5 and 7 of the layer's
        else:
            assert last == steps[names.index("conv5")].module.out_channels
    # asked for most maps, the whole layer is computed
    many = torch.arange(steps[names.index("conv5")].module.out_channels)
    calls.clear()
    with torch.no_grad():
        _deconv._whole_pass(steps, names.index("conv5"), x, torch.zeros_like(many), many)
    assert calls[-1] == len(many)


def test_projections_are_the_same_in_either_memory_layout(monkeypatch):
    """The whole-image pass runs in this machine's faster layout (zfcore.layout): the layout
    changes how the sums are ordered, nothing else."""
    torch.manual_seed(0)
    m = reinit(zfnet(10, input_size=224, width=0.125, fc_units=16)).eval().double()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    out = {}
    for fmt in ("contiguous", "channels_last"):
        monkeypatch.setenv("ZF_LAYOUT", fmt)
        out[fmt] = project(m, x, "conv4", torch.tensor([1, 2, 3]))
    f64_close(out["channels_last"], out["contiguous"])
    assert out["contiguous"].abs().max() > 0


@pytest.mark.parametrize("factory,size", [(lambda: zfnet(10, input_size=224, width=0.125, fc_units=16), 224),
                                          (lambda: zfnet(10, input_size=64, width=0.125, fc_units=16), 64),
                                          (lambda: torchvision.models.alexnet(weights=None), 224)])
def test_crop_windows_are_the_receptive_fields(factory, size):
    """The window at the image is the unclipped field of zfcore.fields: start + i*jump, size."""
    model = factory().eval()
    steps = _chain(model, size)
    for layer, (fy, fx) in field_geometry(model, size).items():
        top = [s.name for s in steps].index(layer)
        geo = _deconv._crop_geometry(steps, top)
        assert geo[0] == [(fy.jump, fy.start, fy.size), (fx.jump, fx.start, fx.size)]
        assert geo[top + 1] == [(1, 0, 1), (1, 0, 1)]
