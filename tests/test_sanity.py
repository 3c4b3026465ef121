"""The sanity checks of the visualizations (zfcore.sanity) and the Finding type (zfcore.findings)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from zfcore import faithfulness, localization_checks, randomization, saliency, sanity
from zfcore.deconv import project
from zfcore.activations import strongest
from zfcore.findings import (DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Finding, difference_verdict,
                             equivalence_verdict, findings_html, findings_markdown, mean_se)
from zfcore.models import zfnet

from tolerance import EPS32

S = 48                                        # the smallest input our models take


def _model(seed=0, classes=5):
    torch.manual_seed(seed)
    return zfnet(classes, input_size=S, width=0.125, fc_units=16, init="matched").eval()


def _images(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, S, S, generator=g) * 40


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


COARSE = (24, 24)                             # a 2x2 occluder grid: occlusion maps in a few passes


# --------------------------------------------------------------------------------------------
# metrics


def test_spearman_matches_scipy_with_ties():
    g = np.random.default_rng(0)
    a = g.integers(0, 5, size=(6, 7, 8)).astype(float)     # many ties
    b = a + g.normal(size=a.shape)
    b[0] = -a[0]
    got = saliency.spearman(a, b)
    want = [spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(6)]
    # both are the Pearson correlation of the same (average) ranks in float64: sums of 56
    # terms of magnitude <= 56^2 round by far less than 1e-12 of the result's scale (1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_spearman_hand_cases():
    a = torch.tensor([[1.0, 2, 3, 4], [1.0, 2, 3, 4], [1.0, 2, 3, 4], [5.0, 5, 5, 5]])
    b = torch.tensor([[1.0, 3, 2, 4], [4.0, 3, 2, 1], [10.0, 20, 30, 40], [1.0, 2, 3, 4]])
    got = saliency.spearman(a, b)
    # 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 12 / 60; centred ranks give 4 / 5 exactly
    assert got[0] == 0.8
    assert got[1] == -1.0 and got[2] == 1.0
    assert math.isnan(got[3])                                  # a constant map has no ranks
    with pytest.raises(ValueError, match="one shape"):
        saliency.spearman(a, b[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        saliency.spearman(a, b * float("nan"))


def test_normalize_map_and_ssim_match_skimage():
    g = np.random.default_rng(1)
    a = np.abs(g.normal(size=(3, 12, 12)))
    b = a + 0.3 * np.abs(g.normal(size=a.shape))
    na = saliency.normalize_map(torch.tensor(a))
    vmax = np.percentile(a[1], 99)
    np.testing.assert_array_equal(na[1], np.clip(a[1] / vmax, 0, 1))
    assert na.max() == 1.0 and na.min() >= 0
    assert (saliency.normalize_map(torch.zeros(1, 8, 8)) == 0).all()
    nb = saliency.normalize_map(torch.tensor(b))
    want = [structural_similarity(na[i], nb[i], data_range=1.0) for i in range(3)]
    np.testing.assert_array_equal(saliency.ssim(torch.tensor(a), torch.tensor(b)), want)
    assert (saliency.ssim(torch.tensor(a), torch.tensor(a)) == 1.0).all()
    with pytest.raises(ValueError, match="at least 7x7"):
        saliency.ssim(torch.ones(1, 5, 5), torch.ones(1, 5, 5))


def test_similarity_reads_absolute_and_signed_maps():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(2, 3, 10, 10, generator=g)
    sim = saliency.similarity(ref, -ref)             # the same magnitudes, every sign flipped
    assert (sim.spearman == 1.0).all() and (sim.spearman_signed == -1.0).all()
    assert (sim.ssim == 1.0).all()
    np.testing.assert_array_equal(saliency.grayscale(ref, True), ref.abs().sum(1))
    np.testing.assert_array_equal(saliency.grayscale(ref, False), ref.sum(1))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        saliency.grayscale(ref[0])


# --------------------------------------------------------------------------------------------
# maps


def test_class_maps_are_the_class_units_projection_with_its_sign():
    model = _model().double()
    x = _images(2).double()
    logits = model(x)
    t = logits.argmin(dim=1)                                   # a class with a low score
    assert (logits[torch.arange(2), t] < 0).all()              # ... a negative one here
    got = saliency.class_maps(model, x, "gradient", t).double()
    # independently: autograd's gradient of the class score times |score|
    xr = x.clone().requires_grad_(True)
    score = model(xr)[torch.arange(2), t]
    (grad,) = torch.autograd.grad(score.sum(), xr)
    want = grad * score.detach().abs().reshape(-1, 1, 1, 1)
    # float32 output of a float64 computation: one cast, half an ulp of each value
    assert torch.allclose(got, want, rtol=EPS32, atol=0)
    for m in ("deconvnet", "guided"):
        p = project(model, x, "fc8", t, method=m)
        v, _ = strongest(model, x, "fc8", t)
        assert torch.equal(saliency.class_maps(model, x, m, t), (p * v.sign().reshape(-1, 1, 1, 1)).float())


def test_class_maps_shapes_defaults_and_errors():
    model = _model()
    x = _images(2)
    assert saliency.class_maps(model, x, "guided").shape == (2, 3, S, S)
    occ = saliency.class_maps(model, x, "occlusion", 1, occluder=COARSE)
    assert occ.shape == (2, 1, S, S)
    # None: the model's prediction
    pred = model(x).argmax(1)
    assert torch.equal(saliency.class_maps(model, x, "gradient"), saliency.class_maps(model, x, "gradient", pred))
    with pytest.raises(ValueError, match="unknown method 'smoothgrad'"):
        saliency.class_maps(model, x, "smoothgrad", 0)
    with pytest.raises(ValueError, match="target 5 is out of range.*0..4"):
        saliency.class_maps(model, x, "gradient", 5)
    with pytest.raises(ValueError, match="one per image"):
        saliency.class_maps(model, x, "gradient", [0, 1, 2])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        saliency.class_maps(model, x[0], "gradient", 0)
    with pytest.raises(ValueError, match="occluder size must be an int"):
        saliency.class_maps(model, x, "occlusion", 0, occluder=(0, 2))


# --------------------------------------------------------------------------------------------
# randomization


def test_layers_listed_from_the_top():
    model = _model()
    want = ["fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1"]
    assert randomization.weighted_layers(model) == want
    res = randomization.cascading_randomization(model, _images(2), "gradient", progress=False)
    assert res.layers == [None] + want
    assert res.labels[0] == "none"


@pytest.mark.parametrize("method", ["deconvnet", "gradient", "guided", "occlusion"])
def test_nothing_randomized_gives_correlation_one_and_weights_untouched(method):
    model = _model()
    before = _state(model)
    x = _images(2)
    res = randomization.cascading_randomization(model, x, method, [0, 3], seed=4, occluder=COARSE,
                                         layers=["fc8", "conv1"], progress=False)
    # step 0 runs a copy of the trained network: the same maps bit for bit, so rho = 1 exactly
    assert torch.equal(res.maps[0], res.reference)
    assert (res.spearman[0] == 1.0).all() and (res.spearman_signed[0] == 1.0).all()
    assert (res.ssim[0] == 1.0).all()
    assert res.spearman.shape == res.spearman_signed.shape == res.ssim.shape == (3, 2)
    assert res.maps.shape == (3, 2, 1 if method == "occlusion" else 3, S, S)
    assert res.layers == [None, "fc8", "conv1"]
    assert _same_state(model, before)
    assert not torch.equal(res.maps[2], res.maps[0])


def test_randomization_never_touches_the_model():
    model = _model()
    model.train()                                   # its mode is left as it was, too
    before = _state(model)
    x = _images(2)
    randomization.cascading_randomization(model, x, "guided", progress=False)
    randomization.independent_randomization(model, x, "deconvnet", progress=False)
    randomization.architecture_level(model, x, "gradient")
    randomization.randomized_copy(model, 3)
    randomization.randomized_copy(model, 3, ["fc7"])
    assert _same_state(model, before)
    assert model.training and all(m.training for m in model.modules())


def test_cascading_and_independent_agree_on_the_top_layer_and_differ_below():
    model = _model()
    x = _images(3)
    casc = randomization.cascading_randomization(model, x, "gradient", seed=7, progress=False)
    ind = randomization.independent_randomization(model, x, "gradient", seed=7, progress=False)
    assert casc.layers == ind.layers
    # step 1 randomizes fc8 alone in both, with the same new weights
    assert torch.equal(casc.maps[1], ind.maps[1])
    np.testing.assert_array_equal(casc.spearman[1], ind.spearman[1])
    for k in range(2, len(casc.layers)):
        assert not torch.equal(casc.maps[k], ind.maps[k]), casc.layers[k]
    # the cascade's last step is the whole network re-drawn; independent step k is layer k alone
    fresh = randomization.randomized_copy(model, 7)
    assert torch.equal(casc.maps[-1], saliency.class_maps(fresh, x, "gradient", casc.target))
    only = randomization.randomized_copy(model, 7, ["conv3"])
    k = ind.layers.index("conv3")
    assert torch.equal(ind.maps[k], saliency.class_maps(only, x, "gradient", ind.target))
    # the same class at every step: the trained network's prediction
    assert torch.equal(casc.target, model(x).argmax(1))


def test_randomized_copy_uses_the_models_init_and_seed():
    model = _model()
    a, b, c = (randomization.randomized_copy(model, s) for s in (5, 5, 6))
    assert _same_state(a, _state(b))
    assert not torch.equal(a.conv2.weight, c.conv2.weight)
    for name in ("conv2", "conv3", "fc6"):
        w = getattr(a, name).weight.detach().double()
        assert not torch.equal(w, getattr(model, name).weight.detach().double())
        assert (getattr(a, name).bias == 0).all()                   # Section 3: biases 0
        # "matched": std 1e-2 * sqrt(Fig. 3 fan-in / fan-in); the sample std of n >= 4000 draws
        # has a relative sd of 1 / sqrt(2 n) <= 1.2%: 10% is over 8 sd
        full = {"conv2": 96 * 25, "conv3": 256 * 9, "fc6": 256 * 36}[name]
        want = 1e-2 * math.sqrt(full / w[0].numel())
        assert abs(float(w.std()) / want - 1) < 0.1, name
    # a layer keeps the weights the whole re-draw gives it, whichever others come with it
    part = randomization.randomized_copy(model, 5, ["fc7", "conv2"])
    assert torch.equal(part.conv2.weight, a.conv2.weight) and torch.equal(part.fc7.weight, a.fc7.weight)
    assert torch.equal(part.conv3.weight, model.conv3.weight)
    with pytest.raises(ValueError, match="cannot randomize 'relu1'"):
        randomization.randomized_copy(model, 0, ["relu1"])


def test_randomized_copy_of_another_model_uses_each_layers_default():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    a, b = randomization.randomized_copy(model, 1), randomization.randomized_copy(model, 1)
    assert _same_state(a, _state(b))
    assert not (a[0].weight == 0.5).any() and not (a[3].bias == 0.5).any()
    assert (model[0].weight == 0.5).all()
    bound = 1 / math.sqrt(3 * 9)                       # PyTorch's default: U(-1/sqrt(fan_in), ...)
    assert a[0].weight.abs().max() <= bound


def test_randomization_errors_are_named():
    model = _model()
    x = _images(1)
    with pytest.raises(ValueError, match="cannot randomize 'fc9'.*fc8, fc7"):
        randomization.cascading_randomization(model, x, "gradient", layers=["fc9"], progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        randomization.independent_randomization(model, x, "lrp", progress=False)
    res = randomization.cascading_randomization(model, x, "gradient", layers=["fc8"], progress=False)
    with pytest.raises(ValueError, match="no step randomized 'conv1'"):
        res.at("conv1")


def test_architecture_level_and_class_sensitivity():
    model = _model()
    x = _images(3)
    lvl = randomization.architecture_level(model, x, "gradient", seed=0)
    # two fresh networks: seeds 1 and 2
    a, b = randomization.randomized_copy(model, 1), randomization.randomized_copy(model, 2)
    t = model(x).argmax(1)
    want = saliency.similarity(saliency.class_maps(a, x, "gradient", t), saliency.class_maps(b, x, "gradient", t))
    np.testing.assert_array_equal(lvl.spearman, want.spearman)
    assert lvl.spearman.shape == lvl.ssim.shape == (3,)
    other = randomization.other_classes(t, 5, seed=3)
    assert (other != t).all() and ((other >= 0) & (other < 5)).all()
    cs = randomization.class_sensitivity(model, x, "gradient", t, other)
    assert cs.spearman.shape == (3,)
    assert not (cs.spearman == 1).all()
    with pytest.raises(ValueError, match="other\\[0\\] is image 0's target class"):
        randomization.class_sensitivity(model, x, "gradient", t, t)


# --------------------------------------------------------------------------------------------
# localization


def test_pointing_game_on_hand_made_maps():
    maps = torch.zeros(4, 8, 8)
    maps[0, 3, 3] = 1.0                      # inside the box (pixels 2..3 each way)
    maps[1, 3, 4] = 1.0                      # column 4: its centre 4.5 is past x1 = 4
    maps[2] = 1.0                            # a constant map: the first pixel (0, 0) counts
    maps[3, 0, 0], maps[3, 2, 2] = 1.0, 1.0  # a tie: the first in row-major order
    boxes = torch.tensor([[2.0, 2.0, 4.0, 4.0]] * 4)
    assert localization_checks.pointing_game(maps, boxes).tolist() == [True, False, False, False]
    # a box reaching the first pixel's centre (0.5, 0.5)
    assert localization_checks.pointing_game(maps[2:], torch.tensor([[0.0, 0.0, 0.6, 0.6]] * 2)).tolist() == [True, True]
    # tolerance: pixel (3, 4) is 0.5 px from the box (Euclidean, from its centre)
    assert bool(localization_checks.pointing_game(maps[1:2], boxes[:1], tolerance=0.5)[0])
    assert not bool(localization_checks.pointing_game(maps[1:2], boxes[:1], tolerance=0.4)[0])
    hits = localization_checks.pointing_game(maps.numpy(), boxes.numpy())
    assert hits.dtype == torch.bool and hits.shape == (4,)


def test_pointing_chance_and_energy_share_by_hand():
    boxes = torch.tensor([[2.0, 2.0, 4.0, 4.0], [-3.0, 0.0, 20.0, 4.0]])   # the second clipped
    np.testing.assert_array_equal(localization_checks.pointing_chance(boxes, (8, 8)), [4 / 64, 32 / 64])
    maps = torch.zeros(2, 8, 8)
    maps[0, 2, 2], maps[0, 3, 3], maps[0, 7, 7], maps[0, 0, 0] = 1.0, 2.0, 1.0, -5.0
    share = localization_checks.energy_share(maps, boxes)
    assert share[0] == 0.75                                  # 3 of the 4 positive units inside
    assert math.isnan(share[1])                              # no positive energy at all
    # the centre pixel (4, 4) has its centre at (4.5, 4.5): outside both boxes (x1 = 4; y1 = 4)
    assert localization_checks.centre_hits(boxes, (8, 8)).tolist() == [False, False]
    assert localization_checks.centre_hits(torch.tensor([[4.0, 4.0, 5.0, 5.0]]), (8, 8)).tolist() == [True]
    assert localization_checks.centre_hits(torch.tensor([[4.0, 4.0, 5.0, 5.0]]), (9, 9)).tolist() == [True]
    masks = localization_checks.box_masks(boxes, (8, 8))
    assert masks.shape == (2, 8, 8) and int(masks[0].sum()) == 4


def test_localization_errors_are_named():
    maps = torch.zeros(2, 8, 8)
    with pytest.raises(ValueError, match=r"boxes must have shape \(2, 4\)"):
        localization_checks.pointing_game(maps, torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"maps must have shape \(N, H, W\)"):
        localization_checks.pointing_game(maps[None], torch.zeros(1, 4))
    bad = maps.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite values \\(first in map 1\\)"):
        localization_checks.pointing_game(bad, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="box 0 .* x0 <= x1"):
        localization_checks.energy_share(maps, torch.tensor([[5.0, 0, 1, 1], [0, 0, 1, 1]]))


# --------------------------------------------------------------------------------------------
# faithfulness


SIDE = 8
A = 2.0 ** -3                                   # dyadic: every logit below is exact in float32


def _region_model():
    """Logits (A s, -A s), s the sum over the channels of the pixels in rows 0-1: the class-0
    probability depends only on that region (16 of the 64 pixels)."""
    mask = torch.zeros(3, SIDE, SIDE)
    mask[:, :2, :] = 1.0
    lin = nn.Linear(3 * SIDE * SIDE, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([A * mask.flatten(), -A * mask.flatten()]))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval(), mask[0]


def test_deletion_and_insertion_on_a_model_that_reads_one_region():
    model, region = _region_model()
    x = torch.ones(2, 3, SIDE, SIDE)
    good = region.expand(2, -1, -1)                       # the region first (ties at random)
    bad = 1 - good                                        # the region last
    steps = 8                                             # 8 pixels per step
    res = {k: faithfulness.deletion_insertion(model, x, m, 0, steps, start="mean", progress=False)
           for k, m in (("good", good), ("bad", bad), ("random", None))}
    # expected by hand: after deleting c pixels region-first, the region keeps 16 - min(c, 16)
    # pixels of 3 channels; p = 1 / (1 + exp(-2 A s)) computed in float64
    c = np.arange(steps + 1) * 8
    s = 3 * (16 - np.minimum(c, 16))
    want_del = 1 / (1 + np.exp(-2 * A * s))
    kept = 3 * np.minimum(c, 16)                          # insertion into the mean (0) image
    want_ins = 1 / (1 + np.exp(-2 * A * kept))
    # exact logits; float32 softmax: exp and a division, a few ulps of 1 (8 allowed)
    tol = 8 * EPS32
    for i in range(2):
        np.testing.assert_allclose(res["good"].deletion[i], want_del, rtol=0, atol=tol)
        np.testing.assert_allclose(res["good"].insertion[i], want_ins, rtol=0, atol=tol)
    np.testing.assert_array_equal(res["good"].fractions, c / 64)
    np.testing.assert_allclose(res["good"].deletion_auc, np.trapezoid(want_del, c / 64), rtol=0, atol=tol)
    for r in res.values():
        for auc in (r.deletion_auc, r.insertion_auc):
            assert auc.shape == (2,) and ((auc >= 0) & (auc <= 1)).all()
    assert (res["good"].deletion_auc < res["random"].deletion_auc).all()
    assert (res["random"].deletion_auc < res["bad"].deletion_auc).all()
    assert (res["good"].insertion_auc > res["random"].insertion_auc).all()
    assert (res["random"].insertion_auc > res["bad"].insertion_auc).all()
    # the intact image's probability, from the same float32 pass as the model's own
    np.testing.assert_array_equal(res["good"].intact, torch.softmax(model(x), 1)[:, 0].detach().double().numpy())
    assert res["good"].num_classes == 2


def test_insertion_starts_from_the_blurred_image_and_ends_at_the_image():
    from scipy.ndimage import gaussian_filter
    model, region = _region_model()
    model = model.double()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, SIDE, SIDE, generator=g, dtype=torch.float64) * 0.3)
    r = faithfulness.deletion_insertion(model, x, region[None], 0, 4, sigma=1.0, progress=False)
    p = torch.softmax(model(x).float(), 1)[0, 0].item()
    assert r.insertion[0, -1] == p and r.deletion[0, 0] == p       # the intact image, same pass
    assert r.deletion[0, -1] == 0.5                                 # every pixel the mean: logits 0
    # the start: a Gaussian blur (sigma 1, cut at 2 sigma, edges replicated), against scipy's
    blurred = gaussian_filter(x[0].numpy(), sigma=(0, 1.0, 1.0), mode="nearest", truncate=2.0)
    q = torch.softmax(model(torch.from_numpy(blurred)[None]).float(), 1)[0, 0].item()
    assert q != p
    # float64 blur and logits on both sides (1e-15); the float32 softmax rounds by a few ulps
    assert abs(r.insertion[0, 0] - q) <= 8 * EPS32


def test_deletion_insertion_errors_are_named():
    model, _ = _region_model()
    x = torch.ones(2, 3, SIDE, SIDE)
    with pytest.raises(ValueError, match=r"maps must have shape \(2, 8, 8\)"):
        faithfulness.deletion_insertion(model, x, torch.zeros(2, 4, 4), 0, progress=False)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        faithfulness.deletion_insertion(model, x, None, 0, 0, progress=False)
    with pytest.raises(ValueError, match="start must be 'blur' or 'mean'"):
        faithfulness.deletion_insertion(model, x, None, 0, start="noise", progress=False)
    with pytest.raises(ValueError, match="target 2 is out of range"):
        faithfulness.deletion_insertion(model, x, None, 2, progress=False)


# --------------------------------------------------------------------------------------------
# findings


def test_finding_verdicts_and_table():
    f = Finding(claim="a < b | c", source="Paper, Fig. 1", published="0.5", measured="0.6",
                criterion="above 0 by 2 SE", verdict=HOLDS, evidence="<n=3>")
    with pytest.raises(ValueError, match="verdict 'maybe' is not one of"):
        Finding("c", "s", "p", "m", "k", "maybe")
    html = findings_html([f], caption="t")
    assert '<tr class="zf-holds">' in html and "&lt;n=3&gt;" in html and "<caption>t</caption>" in html
    assert "a < b \\| c" in findings_markdown([f])


def test_difference_and_equivalence_verdicts_by_hand():
    assert mean_se([1.0, 2.0, 3.0]) == (2.0, 1 / math.sqrt(3), 3)
    assert difference_verdict([0.5, 0.6, 0.7])[0] == HOLDS                 # mean 0.6, SE 0.058
    assert difference_verdict([-0.5, -0.6, -0.7])[0] == DOES_NOT_HOLD
    assert difference_verdict([-1.0, 1.0, 0.1])[0] == NOT_TESTABLE         # within 2 SE
    assert difference_verdict([1.0, 1.0, 1.0])[0] == HOLDS                 # every image agrees
    assert difference_verdict([1.0, float("nan")])[0] == NOT_TESTABLE      # too few images
    assert difference_verdict([0.5, 0.6, 0.7], threshold=0.6)[0] == NOT_TESTABLE
    assert difference_verdict([-0.1, 0.0, 0.1], threshold=0.3, above=False)[0] == HOLDS     # 0 ± 0.058
    assert difference_verdict([0.5, 0.6, 0.7], threshold=0.3, above=False)[0] == DOES_NOT_HOLD
    assert difference_verdict([0.2, 0.3, 0.4], threshold=0.3, above=False)[0] == NOT_TESTABLE
    assert equivalence_verdict([0.01, -0.01, 0.0], 0.1)[0] == HOLDS
    assert equivalence_verdict([0.5, 0.6, 0.7], 0.1)[0] == DOES_NOT_HOLD
    assert equivalence_verdict([-0.2, 0.2, 0.05], 0.1)[0] == NOT_TESTABLE


def _fake_randomization(method, layers, per_layer, n=6, seed=0):
    g = np.random.default_rng(seed)
    rho = np.stack([np.full(n, v) + 0.01 * g.normal(size=n) for v in per_layer])
    dummy = torch.zeros(len(layers), n, 1, 8, 8)
    return randomization.Randomization(method, "cascading", layers, rho, rho, rho, dummy, dummy[0],
                                torch.zeros(n, dtype=torch.long))


def test_findings_read_the_checks():
    layers = ["fc8", "fc7", "fc6", "conv2", "conv1"]
    steps = [None] + layers
    n = 6
    casc = {"guided": _fake_randomization("guided", steps, [1, .95, .95, .9, .8, .7]),
            "gradient": _fake_randomization("gradient", steps, [1, .5, .4, .3, .25, .2], seed=1),
            "deconvnet": _fake_randomization("deconvnet", steps, [1, .9, .9, .9, .8, .8], seed=2)}
    sim = lambda v, s=0: saliency.Similarity(*(np.full(n, v) + 0.01 * np.random.default_rng(s).normal(size=n),) * 3)
    arch = {"guided": sim(0.6), "gradient": sim(0.21, 1), "deconvnet": sim(0.7, 2)}
    cls = {"guided": sim(0.97), "gradient": sim(0.3, 1), "deconvnet": sim(0.95, 2)}
    di = lambda d, i, p0=0.9: faithfulness.DeletionInsertion(
        np.linspace(0, 1, 3), np.full((n, 3), p0), np.full((n, 3), p0),
        np.full(n, d) + 0.01 * np.random.default_rng(0).normal(size=n),
        np.full(n, i) + 0.01 * np.random.default_rng(1).normal(size=n), torch.zeros(n), 10)
    faith = {"guided": di(0.3, 0.5), "gradient": di(0.2, 0.7), "deconvnet": di(0.5, 0.5),
             "random": di(0.5, 0.5)}
    hits = torch.tensor([True] * 5 + [False])
    some = torch.tensor([True] * 4 + [False] * 2)
    checks = sanity.SanityChecks(
        methods=("deconvnet", "gradient", "guided"), target=torch.zeros(n, dtype=torch.long),
        other=torch.ones(n, dtype=torch.long), maps={}, cascade=casc, independent=casc,
        architecture=arch, class_sensitivity=cls,
        pointing={"deconvnet": some, "gradient": hits, "guided": torch.zeros(n, dtype=torch.bool)},
        chance=torch.full((n,), 0.25, dtype=torch.float64),
        energy={m: torch.full((n,), 0.26, dtype=torch.float64) for m in ("deconvnet", "gradient", "guided")},
        faithfulness=faith, layers=layers, classifier=["fc8", "fc7", "fc6"], n_randomized=n, seed=0,
        occluder=(12, 4), steps=2, centre=torch.tensor([True] * 4 + [False] * 2))
    out = sanity.findings(checks)
    assert all(isinstance(f, Finding) for f in out)
    by = {f.claim: f.verdict for f in out}
    v = lambda start: [verdict for claim, verdict in by.items() if claim.startswith(start)]
    assert v("Randomizing the classifier") == [HOLDS]          # guided 0.9 vs gradient 0.3 after fc6
    assert v("After the classifier") == [HOLDS]                # 0.9 against 0.6
    assert v("Once every layer") == [HOLDS]                    # 0.2 against 0.21: not above it by 0.1
    assert v("The deconvnet's map barely changes") == [HOLDS]
    assert v("The deconvnet's map looks alike") == [HOLDS]     # 0.8 vs 0.2 after conv1
    assert v("The gradient's map points at the object more often than chance") == [HOLDS]   # 5/6 vs 0.25
    assert v("The deconvnet's map points at the object more often than chance") == [NOT_TESTABLE]  # 4/6
    assert v("Guided backpropagation's map points at the object more often than chance") == [DOES_NOT_HOLD]
    # against the centre (4 of 6): the gradient's 5 of 6 is one image ahead, not testable; never
    # pointing at the object is 4 images behind: (0 - 1) four times, 0 twice, -0.67 ± 0.21
    assert v("The gradient's map points at the object more often than the image's centre") == [NOT_TESTABLE]
    assert v("Guided backpropagation's map points at the object more often than the image's") == [DOES_NOT_HOLD]
    assert v("Deleting pixels in the order of the gradient") == [HOLDS]
    assert v("Deleting pixels in the order of the deconvnet") == [NOT_TESTABLE]
    # a model at chance on the intact images: nothing for the curves to test
    checks.faithfulness = {k: di(0.0, 1.0, p0=0.1) for k in faith}
    checks.faithfulness["random"] = di(0.5, 0.5, p0=0.1)
    out = sanity.findings(checks)
    faith_verdicts = [f.verdict for f in out if f.source.startswith("Petsiuk")]
    assert faith_verdicts and set(faith_verdicts) == {NOT_TESTABLE}
    # no boxes: the localization claims are not testable, and say why
    checks.pointing = checks.energy = checks.chance = None
    checks.centre = None
    loc = [f for f in sanity.findings(checks) if "pointing game" in f.source]
    assert loc and all(f.verdict == NOT_TESTABLE and "no object boxes" in f.evidence for f in loc)


def test_run_checks_end_to_end_on_a_small_model():
    model = _model()
    before = _state(model)
    x = _images(3)
    boxes = torch.tensor([[8.0, 8.0, 30.0, 30.0]] * 3)
    checks = sanity.run_checks(model, x, torch.tensor([0, 1, 2]), boxes, n_randomized=2, steps=4,
                               occluder=COARSE, progress=False)
    assert _same_state(model, before)
    assert set(checks.cascade) == set(saliency.METHODS)
    assert checks.cascade["occlusion"].spearman.shape == (9, 2)
    assert checks.pointing["gradient"].shape == (3,) and checks.chance.shape == (3,)
    assert checks.centre.tolist() == [True] * 3                  # pixel (24, 24) in [8, 30)
    assert checks.faithfulness["random"].deletion_auc.shape == (3,)
    assert (checks.other != checks.target).all()
    out = sanity.findings(checks)
    assert len(out) >= 14 and all(f.verdict in (HOLDS, DOES_NOT_HOLD, NOT_TESTABLE) for f in out)


def test_ranks_average_ties_as_scipy():
    from scipy.stats import rankdata
    g = np.random.default_rng(3)
    v = g.integers(0, 4, size=(5, 30)).astype(float)
    v[0] = 7.0                                                  # one run of ties: all equal
    v[1] = np.arange(30)[::-1]                                  # no ties
    # half-integers and integers below 2^53: exact in float64 on both sides
    np.testing.assert_array_equal(saliency._ranks(v), rankdata(v, axis=1))


def test_run_checks_step_zero_is_the_trained_networks_maps():
    model = _model()
    x = _images(4)
    threads = torch.get_num_threads()
    checks = sanity.run_checks(model, x, None, methods=["gradient", "occlusion"], n_randomized=2,
                               steps=2, occluder=COARSE, progress=False)
    assert torch.get_num_threads() == threads                  # one thread inside, restored after
    for m in ("gradient", "occlusion"):
        for res in (checks.cascade[m], checks.independent[m]):
            assert torch.equal(res.reference, checks.maps[m][:2])
            assert (res.spearman[0] == 1.0).all() and (res.ssim[0] == 1.0).all()
    assert checks.pointing is None and checks.chance is None
    assert torch.equal(checks.target, model(x).argmax(1))


def test_figures_render():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from zfcore import plots
    model = _model()
    x = _images(2)
    checks = sanity.run_checks(model, x, [0, 1], torch.tensor([[4.0, 4.0, 40.0, 40.0]] * 2), n_randomized=2,
                               steps=2, occluder=COARSE, progress=False)
    fig = plots.randomization_curves(checks.cascade, checks.architecture)
    assert len(fig.axes) == 3
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == checks.cascade["gradient"].labels
    assert len(ax.lines) >= 2 * len(saliency.METHODS)            # a curve and a dashed level each
    fig2 = plots.randomization_maps(np.zeros((S, S, 3), np.uint8), checks.cascade, box=[4, 4, 40, 40])
    assert len(fig2.axes) == len(saliency.METHODS) * (len(checks.layers) + 2)
    fig3 = plots.deletion_insertion_curves(checks.faithfulness)
    assert len(fig3.axes[0].lines) == len(saliency.METHODS) + 1
    header, rows = sanity.summary(checks)
    assert len(rows) == len(saliency.METHODS) + 1 and all(len(r) == len(header) for r in rows)
    plt.close("all")
