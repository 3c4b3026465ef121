"""The ZF network of Fig. 3, the Krizhevsky baseline and the variants of Table 3 (zfcore.models)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from zfcore.models import (CONV_LAYERS, FC_LAYERS, ZFNet, architecture_table, build_model, feature_shapes,
                           krizhevsky, layer_names, model_config, zfnet)

SMALL = dict(width=0.125, fc_units=256)   # light models for forward passes at 224


def _batch(n=2, size=224, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=g)


# --- full-width models, built (and forwarded once, by feature_shapes) once per module ----------

@pytest.fixture(scope="module")
def zf_full():
    torch.manual_seed(0)
    model = zfnet()
    return model, feature_shapes(model)


@pytest.fixture(scope="module")
def kr_full():
    torch.manual_seed(0)
    model = krizhevsky()
    return model, feature_shapes(model)


# --- Fig. 3 sizes ------------------------------------------------------------------------------

def test_zfnet_feature_sizes_fig3(zf_full):
    model, s = zf_full
    assert s["conv1"] == (96, 110, 110)
    assert s["relu1"] == (96, 110, 110)
    assert s["pool1"] == (96, 55, 55)
    assert s["norm1"] == (96, 55, 55)
    assert s["conv2"] == (256, 26, 26)
    assert s["pool2"] == (256, 13, 13)
    assert s["norm2"] == (256, 13, 13)
    assert s["conv3"] == (384, 13, 13)
    assert s["conv4"] == (384, 13, 13)
    assert s["conv5"] == (256, 13, 13)
    assert s["pool5"] == (256, 6, 6)
    assert s["flatten"] == (9216,)
    assert model.fc6.in_features == 9216 == model.flat_features
    assert s["fc6"] == (4096,)
    assert s["fc7"] == (4096,)
    assert s["fc8"] == (1000,)
    assert model.fc8.out_features == 1000


def test_zfnet_layer_hyperparameters(zf_full):
    model, _ = zf_full
    expect = {"conv1": (96, 7, 2), "conv2": (256, 5, 2), "conv3": (384, 3, 1),
              "conv4": (384, 3, 1), "conv5": (256, 3, 1)}
    in_ch = 3
    for name, (c, k, st) in expect.items():
        m = getattr(model, name)
        assert isinstance(m, nn.Conv2d)
        assert (m.in_channels, m.out_channels) == (in_ch, c), name
        assert m.kernel_size == (k, k) and m.stride == (st, st), name
        in_ch = c
    for name in ("pool1", "pool2", "pool5"):
        p = getattr(model, name)
        assert isinstance(p, nn.MaxPool2d)
        assert p.kernel_size == 3 and p.stride == 2
    assert (model.fc6.out_features, model.fc7.in_features, model.fc7.out_features) == (4096, 4096, 4096)
    assert model.fc8.in_features == 4096


def test_krizhevsky_feature_sizes(kr_full):
    model, s = kr_full
    assert model.conv1.kernel_size == (11, 11) and model.conv1.stride == (4, 4)
    assert model.conv1.out_channels == 96
    assert model.conv2.kernel_size == (5, 5) and model.conv2.out_channels == 256
    assert s["conv1"] == (96, 55, 55)
    assert s["pool1"] == (96, 27, 27)
    assert s["conv2"] == (256, 27, 27)
    assert s["pool2"] == (256, 13, 13)
    assert s["conv3"] == (384, 13, 13)
    assert s["conv4"] == (384, 13, 13)
    assert s["conv5"] == (256, 13, 13)
    assert s["pool5"] == (256, 6, 6)
    assert s["flatten"] == (9216,)
    assert s["fc6"] == s["fc7"] == (4096,)
    assert s["fc8"] == (1000,)
    assert model.config["family"] == "krizhevsky"


@pytest.mark.parametrize("fixture", ["zf_full", "kr_full"])
def test_lrn_only_after_pool1_and_pool2(fixture, request):
    model, _ = request.getfixturevalue(fixture)
    lrn = [n for n, m in model.named_children() if isinstance(m, nn.LocalResponseNorm)]
    assert lrn == ["norm1", "norm2"]
    names = [n for n, _ in model.named_children()]
    assert names.index("norm1") == names.index("pool1") + 1
    assert names.index("norm2") == names.index("pool2") + 1
    # no normalisation after layers 3-5
    assert not any(n.startswith("norm") and n not in ("norm1", "norm2") for n in names)


def test_no_lrn_option():
    model = zfnet(lrn=False, **SMALL)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    assert model(_batch(1)).shape == (1, 1000)


@pytest.mark.parametrize("fixture", ["zf_full", "kr_full"])
def test_layers_reachable_by_paper_names(fixture, request):
    model, _ = request.getfixturevalue(fixture)
    paths = dict(model.named_modules())
    for name in CONV_LAYERS:
        assert isinstance(getattr(model, name), nn.Conv2d)
        assert paths[name] is getattr(model, name)
    for name in FC_LAYERS:
        assert isinstance(getattr(model, name), nn.Linear)
        assert paths[name] is getattr(model, name)
    assert layer_names(model) == list(CONV_LAYERS) + list(FC_LAYERS)


def test_forward_order_is_named_children_order():
    torch.manual_seed(0)
    model = zfnet(num_classes=10, **SMALL).eval()
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2",
                     "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "flatten",
                     "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    called = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: called.append(n))
             for n, m in model.named_children()]
    x = _batch(2)
    with torch.no_grad():
        out = model(x)
        # walking the children by hand gives the same result
        h = x
        for _, m in model.named_children():
            h = m(h)
    for hk in hooks:
        hk.remove()
    assert called[:len(names)] == names
    torch.testing.assert_close(h, out, rtol=0, atol=0)        # the same modules, in order, on the same data


# --- initialisation (Section 3) ----------------------------------------------------------------

def test_init_std_1e2_and_zero_biases(zf_full):
    model, _ = zf_full
    for name in CONV_LAYERS + FC_LAYERS:
        m = getattr(model, name)
        w = m.weight.detach().double()            # float64 sums: exact enough over 37M weights
        assert torch.all(m.bias == 0), name
        assert w.numel() >= 10_000, name          # every layer is big at full width
        # statistical: the sample std of n >= 10^4 draws has sd 1e-2 / sqrt(2 n) <= 7e-5: 7 sigma
        assert abs(w.std().item() - 1e-2) < 0.05e-2, (name, w.std().item())
        assert abs(w.mean().item()) < 5 * 1e-2 / w.numel() ** 0.5, name   # 5 sigma


def test_init_std_argument():
    torch.manual_seed(1)
    model = zfnet(num_classes=10, init_std=0.05, **SMALL)
    for name in ("conv1", "conv2", "fc6", "fc7"):
        w = getattr(model, name).weight.detach().double()
        # statistical, seeded: the sample std's relative sd is 1 / sqrt(2 n): 1.7% for conv1's 1764
        # weights (5% is 3 sigma), 0.7% and less for the others
        assert abs(w.std().item() - 0.05) < 0.05 * 0.05, name
        assert torch.all(getattr(model, name).bias == 0)
    model.reset_parameters(1e-3)
    assert abs(model.fc6.weight.detach().double().std().item() - 1e-3) < 0.05e-3
    assert model.config["init_std"] == 0.05


# --- Table 3 variants --------------------------------------------------------------------------

def _conv_names(model):
    return [n for n, m in model.named_children() if isinstance(m, nn.Conv2d)]


def _fc_names(model):
    return [n for n, m in model.named_children() if isinstance(m, nn.Linear)]


def _full(family=zfnet, **kw):
    """A full-width model at 224 px, built on the meta device: its structure and
    feature sizes without the cost of drawing ~100M initial weights."""
    with torch.device("meta"):
        model = family(**kw)
        return model, feature_shapes(model)


def test_meta_helper_agrees_with_real_model(zf_full):
    model, shapes = zf_full
    meta, meta_shapes = _full()
    assert meta_shapes == shapes
    assert str(meta) == str(model)


@pytest.mark.parametrize("family", [zfnet, krizhevsky], ids=["zf", "krizhevsky"])
def test_remove_conv3_conv4_full_width(family):
    model, s = _full(family, remove=("conv3", "conv4"))
    assert _conv_names(model) == ["conv1", "conv2", "conv5"]
    assert not hasattr(model, "conv3") and not hasattr(model, "conv4")
    assert not hasattr(model, "relu3") and not hasattr(model, "relu4")
    assert "conv3" not in dict(model.named_modules())
    # conv5 takes conv2's maps
    assert model.conv5.in_channels == model.conv2.out_channels == 256
    assert model.conv5.out_channels == 256
    assert s["conv5"] == (256, 13, 13)
    # conv5 keeps its pooling: still 256x6x6 into fc6
    assert s["pool5"] == (256, 6, 6)
    assert model.fc6.in_features == 9216
    assert _fc_names(model) == ["fc6", "fc7", "fc8"]


def test_remove_fc7_full_width():
    model, s = _full(remove=("fc7",))
    assert _fc_names(model) == ["fc6", "fc8"]
    assert model.fc6.in_features == 9216
    assert model.fc8.in_features == 4096
    assert isinstance(model.drop6, nn.Dropout)
    assert not hasattr(model, "drop7") and not hasattr(model, "relu7")
    assert s["fc6"] == (4096,) and s["fc8"] == (1000,)


@pytest.mark.parametrize("family", [zfnet, krizhevsky], ids=["zf", "krizhevsky"])
def test_remove_fc6_fc7_full_width(family):
    model, s = _full(family, remove=("fc6", "fc7"))
    assert _fc_names(model) == ["fc8"]
    assert model.fc8.in_features == 9216           # the flat pool5 features
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    names = [n for n, _ in model.named_children()]
    assert names[-3:] == ["pool5", "flatten", "fc8"]
    assert s["fc8"] == (1000,)


def test_remove_conv34_fc67_full_width():
    model, s = _full(krizhevsky, remove=("conv3", "conv4", "fc6", "fc7"))
    assert _conv_names(model) == ["conv1", "conv2", "conv5"]
    assert _fc_names(model) == ["fc8"]
    assert model.conv5.in_channels == 256
    assert model.fc8.in_features == 9216
    assert s["pool5"] == (256, 6, 6)


def test_remove_order_and_duplicates_do_not_matter():
    a, _ = _full(remove=("fc7", "conv4", "conv3", "fc7"))
    b, _ = _full(remove=("conv3", "conv4", "fc7"))
    assert str(a) == str(b)


@pytest.mark.parametrize("units", [2048, 8192])
@pytest.mark.parametrize("family", [zfnet, krizhevsky], ids=["zf", "krizhevsky"])
def test_fc_units_full_width(family, units):
    model, s = _full(family, fc_units=units)
    assert model.fc6.in_features == 9216
    assert model.fc6.out_features == model.fc7.in_features == model.fc7.out_features == units
    assert model.fc8.in_features == units
    assert s["fc6"] == s["fc7"] == (units,)


@pytest.mark.parametrize("fc_units", [4096, 8192])
def test_conv345_512_1024_512_full_width(fc_units):
    model, s = _full(conv345=(512, 1024, 512), fc_units=fc_units)
    assert (model.conv3.in_channels, model.conv3.out_channels) == (256, 512)
    assert (model.conv4.in_channels, model.conv4.out_channels) == (512, 1024)
    assert (model.conv5.in_channels, model.conv5.out_channels) == (1024, 512)
    assert s["conv3"] == (512, 13, 13) and s["conv4"] == (1024, 13, 13)
    assert s["pool5"] == (512, 6, 6)
    assert model.fc6.in_features == 512 * 6 * 6
    assert model.fc6.out_features == fc_units


VARIANTS = [
    dict(),
    dict(remove=("conv3", "conv4")),
    dict(remove=("fc7",)),
    dict(remove=("fc6", "fc7")),
    dict(remove=("conv3", "conv4", "fc6", "fc7")),
    dict(fc_units=2048),
    dict(fc_units=8192),
    dict(conv345=(512, 1024, 512)),
    dict(fc_units=8192, conv345=(512, 1024, 512)),
]


def _variant_id(kw):
    return ",".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, tuple) else v}"
                    for k, v in kw.items()) or "base"


# the 8192-unit classifiers are the same for both families and slow to build: run them once (zf)
FORWARD_CASES = [pytest.param(f, kw, id=f"{name}-{_variant_id(kw)}")
                 for name, f in (("zf", zfnet), ("krizhevsky", krizhevsky)) for kw in VARIANTS
                 if not (f is krizhevsky and kw.get("fc_units") == 8192)]


@pytest.mark.parametrize("family,kw", FORWARD_CASES)
def test_every_variant_forwards(family, kw):
    """Every Table 3 variant (at 1/8 of the maps) runs on a (2, 3, 224, 224) batch."""
    torch.manual_seed(0)
    kw = {**SMALL, **kw}                    # 256 fc units unless the variant sets them
    model = family(num_classes=7, **kw).eval()
    with torch.no_grad():
        out = model(_batch(2))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    for r in kw.get("remove", ()):
        assert not hasattr(model, r)
    assert model.fc8.in_features == (model.flat_features if {"fc6", "fc7"} <= set(kw.get("remove", ()))
                                     else kw["fc_units"])


@pytest.mark.parametrize("bad", [("conv1",), ("conv2",), ("conv5",), ("fc8",), ("conv3", "conv1"), ("pool1",)])
def test_remove_unsupported_layers_raises(bad):
    with pytest.raises(ValueError, match="cannot remove"):
        zfnet(remove=bad, **SMALL)


# --- width and input size ----------------------------------------------------------------------

def test_tiny_model_builds_and_runs():
    torch.manual_seed(0)
    model = zfnet(num_classes=10, input_size=48, width=0.125, fc_units=128)
    assert model.conv1.out_channels == 12 and model.conv2.out_channels == 32
    assert model.conv3.out_channels == 48 and model.conv5.out_channels == 32
    assert model.fc6.out_features == 128 and model.fc8.out_features == 10
    out = model(_batch(4, 48))
    assert out.shape == (4, 10)
    model.train()
    shapes = feature_shapes(model)
    assert shapes["fc8"] == (10,) and shapes["conv1"][0] == 12
    assert model.training                      # feature_shapes leaves the mode as it was
    assert model.eval() and feature_shapes(model) == shapes and not model.training


def test_default_scale_model_builds_and_runs():
    torch.manual_seed(0)
    model = zfnet(num_classes=100, input_size=64, width=0.25, fc_units=512)
    assert model.conv1.out_channels == 24 and model.conv2.out_channels == 64
    out = model(_batch(3, 64))
    assert out.shape == (3, 100)


@pytest.mark.parametrize("family", [zfnet, krizhevsky], ids=["zf", "krizhevsky"])
def test_too_small_input_raises(family):
    with pytest.raises(ValueError, match="32"):
        family(num_classes=10, input_size=32, width=0.125, fc_units=128)


def test_forward_wrong_image_size_raises():
    model = zfnet(num_classes=10, input_size=48, width=0.125, fc_units=128)
    with pytest.raises(ValueError, match="48x48"):
        model(_batch(2, 64))


@pytest.mark.parametrize("shape", [(2, 1, 48, 48), (2, 4, 48, 48), (3, 48, 48), (2, 48, 48, 3)])
def test_forward_wrong_channels_raises(shape):
    model = zfnet(num_classes=10, input_size=48, width=0.125, fc_units=128)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.zeros(shape))


# --- config round trip -------------------------------------------------------------------------

@pytest.mark.parametrize("family,kw", [
    (zfnet, dict(num_classes=10, input_size=48, width=0.125, fc_units=128)),
    (zfnet, dict(num_classes=5, input_size=64, width=0.125, fc_units=64, remove=("conv3", "conv4", "fc7"),
                 conv345=(64, 128, 64), lrn=False, dropout=0.3, init_std=0.02)),
    (krizhevsky, dict(num_classes=3, width=0.125, fc_units=32, remove=("fc6",))),
    (zfnet, dict(num_classes=4, width=0.125, fc_units=32, conv1=(11, 4, 2))),
], ids=["tiny", "ablation", "krizhevsky", "conv1-override"])
def test_model_config_round_trip(family, kw):
    import json
    torch.manual_seed(0)
    a = family(**kw).eval()
    cfg = model_config(a)
    cfg = json.loads(json.dumps(cfg))       # as stored in a checkpoint
    b = build_model(cfg).eval()
    assert type(b) is ZFNet
    assert str(a) == str(b)
    assert [(n, tuple(p.shape)) for n, p in a.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in b.named_parameters()]
    assert model_config(b) == cfg
    b.load_state_dict(a.state_dict())
    x = _batch(2, a.input_size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_build_model_unknown_family():
    with pytest.raises(ValueError, match="family"):
        build_model({"family": "vgg", "num_classes": 10})


# --- architecture table, dropout ---------------------------------------------------------------

def test_architecture_table(zf_full):
    model, _ = zf_full
    rows = architecture_table(model)
    by_name = {r[0]: r for r in rows}
    name, op, shape, params = by_name["conv1"]
    assert shape == (96, 110, 110)
    assert params == 96 * 3 * 7 * 7 + 96
    assert "7x7" in op and "stride 2" in op
    assert by_name["pool5"][2] == (256, 6, 6)
    assert by_name["fc6"][3] == 9216 * 4096 + 4096
    assert by_name["fc8"][2] == (1000,)
    assert by_name["relu1"][3] == 0
    assert [r[0] for r in rows] == [n for n, _ in model.named_children()]
    assert sum(r[3] for r in rows) == sum(p.numel() for p in model.parameters())


def test_dropout_half_in_fc6_fc7(zf_full):
    model, _ = zf_full
    assert isinstance(model.drop6, nn.Dropout) and model.drop6.p == 0.5
    assert isinstance(model.drop7, nn.Dropout) and model.drop7.p == 0.5
    names = [n for n, _ in model.named_children()]
    assert names[names.index("fc6"):] == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert zfnet(dropout=0.3, **SMALL).drop6.p == 0.3


def test_dropout_active_in_train_only():
    torch.manual_seed(0)
    model = zfnet(num_classes=10, input_size=48, width=0.125, fc_units=128)
    x = _batch(2, 48)
    model.eval()
    with torch.no_grad():
        e1, e2 = model(x), model(x)
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        t1, t2 = model(x), model(x)
    assert not torch.equal(t1, t2)


def test_get_layer_by_path_and_clear_error_for_unknown_names():
    from zfcore import models
    m = models.zfnet(10, input_size=48, width=0.125, fc_units=16)
    assert models.get_layer(m, "conv3") is m.conv3
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*conv1, relu1, pool1"):
        models.get_layer(m, "conv9")
    import torchvision
    alex = torchvision.models.alexnet(weights=None)
    assert isinstance(models.get_layer(alex, "features.0"), torch.nn.Conv2d)
    with pytest.raises(ValueError, match="features.0"):
        models.get_layer(alex, "conv1")


def test_matched_init_keeps_the_full_models_per_layer_gain():
    """init="matched": std 1e-2 * sqrt(Fig. 3 fan-in / fan-in); conv1 keeps exactly 1e-2."""
    import math
    from zfcore import models
    torch.manual_seed(0)
    m = models.zfnet(100, input_size=64, width=0.25, fc_units=512, init="matched")
    ref = {"conv1": 147, "conv2": 2400, "conv3": 2304, "conv4": 3456, "conv5": 3456,
           "fc6": 9216, "fc7": 4096, "fc8": 4096}
    for name, full in ref.items():
        w = getattr(m, name).weight.detach().double()
        want = 1e-2 * math.sqrt(full / w[0].numel())
        # statistical: the smallest layer (conv1, 3528 weights) has a relative sd of 1.2%: 8 sigma
        assert abs(float(w.std()) / want - 1) < 0.1, (name, float(w.std()), want)
    assert abs(float(m.conv1.weight.detach().double().std()) / 1e-2 - 1) < 0.1
    # at full size "matched" is the paper's init: the same draws
    torch.manual_seed(1)
    a = models.zfnet(10, width=1.0, fc_units=4096, init="matched")
    torch.manual_seed(1)
    b = models.zfnet(10, width=1.0, fc_units=4096, init="paper")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    with pytest.raises(ValueError, match="unknown init"):
        models.zfnet(10, input_size=48, width=0.125, init="xavier")
