"""Architecture selection (Section 4.1, Fig. 6) and the ablations (Tables 2 and 3):
each measure on inputs whose answer is known, the tables' order and scaling, the
findings on constructed numbers, the ensemble against a hand computation."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from zfcore import architecture as A
from zfcore import models
from zfcore.presets import get_preset
from tolerance import EPS32, double, f32_forward_tol_ad, f32_within, f64_close, gamma, softmax_f32_err

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------ dead filters, dominance

def test_a_filter_without_energy_is_dead_and_the_others_are_not():
    w = torch.randn(8, 3, 7, 7) * 0.05
    w[3] *= 0.01                        # RMS 1% of the others
    dead = A.dead_filters(w)
    assert dead.tolist() == [i == 3 for i in range(8)]
    assert A.dead_filters(w * 1000).tolist() == dead.tolist()     # relative to the layer


def test_a_filter_that_never_fires_is_dead_by_its_responses():
    w = torch.randn(6, 3, 7, 7)
    resp = np.array([1.0, 0.8, 1.2, 0.0, 0.05, 0.9])              # filter 3 silent, 4 nearly
    assert A.dead_filters(w).sum() == 0
    assert A.dead_filters(w, resp).tolist() == [False, False, False, True, True, False]


def test_dead_filters_rejects_bad_inputs():
    with pytest.raises(ValueError, match="rel"):
        A.dead_filters(torch.randn(4, 3, 5, 5), rel=1.5)
    with pytest.raises(ValueError, match="one value per filter"):
        A.dead_filters(torch.randn(4, 3, 5, 5), np.ones(3))
    with pytest.raises(ValueError, match=r"\(O, C, k, k\)"):
        A.dead_filters(torch.randn(4, 5, 5))


def test_dominance_is_strongest_over_median_rms():
    w = torch.ones(5, 3, 3, 3)
    w[2] *= 10
    assert A.dominance(w) == pytest.approx(10.0)
    assert A.dominance(torch.ones(4, 3, 3, 3)) == pytest.approx(1.0)


def test_conv1_responses_are_the_mean_rectified_conv1_output():
    # in float64 (model and mean): the two sums agree to float64 rounding, whatever their order
    model, mean = double(models.zfnet(10, input_size=48, width=0.25, fc_units=32), torch.full((3, 55, 55), 120.0))
    imgs = torch.randint(0, 256, (3, 55, 55, 3), dtype=torch.uint8)
    got = A.conv1_responses(model, imgs, mean, 48, batch_size=2)
    x = (imgs.permute(0, 3, 1, 2).double() - mean)[:, :, 3:51, 3:51]
    with torch.no_grad():
        want = F.relu(model.conv1(x)).mean(dim=(0, 2, 3))
    assert got.dtype == torch.float64
    f64_close(got, want)


# ------------------------------------------------------------------------ layer-1 spectra

def _grid(k):
    return np.mgrid[:k, :k].astype(float)


@pytest.mark.parametrize("k", [7, 11])
def test_a_pure_mid_frequency_filter_is_mid_and_pure_low_and_high_ones_are_not(k):
    y, x = _grid(k)
    mid = np.cos(2 * np.pi * 0.25 * (x + y) / np.sqrt(2))          # 0.25 cycles/px = Nyquist / 2
    low = np.exp(-((x - k // 2) ** 2 + (y - k // 2) ** 2) / (2 * (k / 4) ** 2))
    high = (-1.0) ** (x + y)                                     # checkerboard: (1/2, 1/2)
    w = np.stack([np.stack([f] * 3) for f in (mid, low, high)])
    s = A.band_shares(w)
    f64_close(s.sum(1), np.ones(3))              # float64 FFT energies: the shares sum to 1 to rounding
    assert s[0, 1] > 0.8                      # mid
    assert s[1, 0] > 0.7 and s[1, 1] < 0.3 and s[1, 2] < 0.05    # low
    assert s[2, 2] > 0.95 and s[2, 1] < 0.05  # high
    assert A.mid_frequency_share(w) == pytest.approx(s[:, 1].mean())
    assert A.mid_frequency_share(w, mask=[True, False, False]) == pytest.approx(s[0, 1])


def test_white_noise_filters_fill_the_bands_by_area_and_zero_filters_are_left_out():
    w = RNG.normal(size=(200, 3, 7, 7))
    s = A.band_shares(w).mean(0)
    area_mid = np.pi * (0.375 ** 2 - 0.125 ** 2)          # the mid annulus in the unit square
    # statistical: white noise has a flat expected spectrum, so the share is the annulus'
    # fraction of the 32x32 FFT's bins (0.383 against the area's 0.393), and the mean over
    # 200 filters varies by a standard deviation of 0.003 between draws: 0.03 is 0.01 + 7 sd
    assert s[1] == pytest.approx(area_mid, abs=0.03)
    w[0] = 0
    assert np.isnan(A.band_shares(w)[0]).all()
    assert not np.isnan(A.mid_frequency_share(w))


def test_band_shares_rejects_filters_larger_than_the_fft():
    with pytest.raises(ValueError, match="do not fit"):
        A.band_shares(np.ones((2, 3, 11, 11)), size=8)
    with pytest.raises(ValueError, match="bands"):
        A.band_shares(np.ones((2, 3, 5, 5)), bands=(0.8, 0.2))


# ------------------------------------------------------------------------ aliasing

H = 64


def _smooth(n=24, sigma=1.5):
    yy, xx = np.mgrid[:H, :H]
    win = np.exp(-((yy - H / 2) ** 2 + (xx - H / 2) ** 2) / (2 * 12 ** 2))
    return np.stack([gaussian_filter(RNG.normal(size=(3, H, H)), (0, sigma, sigma)) * win
                     for _ in range(n)])


def test_no_grid_energy_in_smooth_white_or_edge_images():
    # statistical: a spectrum smooth across the harmonics leaves only the periodogram's noise;
    # over 40 draws of these images |share| stays below 0.002 (sd 0.0003), 0.005 is the bound
    for imgs in (_smooth(), RNG.normal(size=(16, 3, H, H))):
        for period in (2, 3, 4):
            assert abs(A.grid_energy_share(imgs, period)) < 0.005
    edges = np.zeros((8, 1, H, H))
    for i in range(8):                                   # axis-aligned steps: ridges on the axes
        edges[i, 0, :, 20 + 3 * i:] = 1.0 if i % 2 else 0.0
        edges[i, 0, 20 + 3 * i:, :] += 0.0 if i % 2 else 1.0
    # no randomness: 0.004, the steps' sinc ridges crossing the rings; 0.01, an eighth of the planted 0.08 below
    assert abs(A.grid_energy_share(edges, 4)) < 0.01


def test_a_planted_period_is_found_at_its_harmonics_only():
    imgs = _smooth(sigma=1.0)
    imgs = imgs / imgs.std(axis=(1, 2, 3), keepdims=True)
    xx = np.mgrid[:H, :H][1]
    planted = imgs + np.sqrt(2 * 0.1) * np.cos(2 * np.pi * xx / 4)   # ~10% of the energy
    # statistical, over 40 draws: s4 0.077 (sd 0.001), the period 3 -0.004, the images alone -0.002 (sd 0.0005)
    s4 = A.grid_energy_share(planted, 4)
    assert 0.05 < s4 < 0.15
    assert abs(A.grid_energy_share(planted, 3)) < 0.01
    assert abs(A.grid_energy_share(imgs, 4)) < 0.005


def test_a_stride_4_transposed_conv_aliases_with_noisy_filters_not_smooth_ones():
    """The deconvnet's last step (Fig. 6(d)): a smooth layer-1 signal, put back through
    11x11 filters at stride 4: replicas at the harmonics of 1/4 unless the filters are smooth."""
    u = torch.tensor(np.stack([gaussian_filter(RNG.normal(size=(1, 16, 16)), (0, 1.5, 1.5))
                               for _ in range(24)]), dtype=torch.float32)
    noisy = torch.tensor(RNG.normal(size=(1, 3, 11, 11)), dtype=torch.float32)
    y, x = _grid(11)
    g = np.exp(-((x - 5) ** 2 + (y - 5) ** 2) / 8.0)
    smooth = torch.tensor(np.stack([g] * 3)[None], dtype=torch.float32)
    a_noisy = A.grid_energy_share(F.conv_transpose2d(u, noisy, stride=4)[..., :H, :H], 4)
    a_smooth = A.grid_energy_share(F.conv_transpose2d(u, smooth, stride=4)[..., :H, :H], 4)
    # statistical, over 40 draws: noisy 0.36 (sd 0.03, at least 0.28), smooth 0.001 (sd 0.0001)
    assert a_noisy > 0.1
    assert abs(a_smooth) < 0.005


def test_grid_energy_share_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        A.grid_energy_share(_smooth(2), 1)
    with pytest.raises(ValueError, match="too long"):
        A.grid_energy_share(_smooth(2), 9)
    with pytest.raises(ValueError, match="no energy"):
        A.grid_energy_share(np.zeros((2, 3, H, H)), 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        A.grid_energy_share(np.ones((H, H)), 4)


def test_layer2_projections_and_fig6_metrics_on_an_untrained_model():
    torch.manual_seed(0)
    model = models.krizhevsky(10, input_size=48, width=0.25, fc_units=32, init="matched")
    imgs = torch.randint(0, 256, (5, 55, 55, 3), dtype=torch.uint8)
    mean = imgs.permute(0, 3, 1, 2).float().mean(0)
    proj, boxes = A.layer2_projections(model, imgs, mean, 48)
    assert proj.shape == (5, 3, 48, 48) and boxes.shape == (5, 4)
    for p, (y0, y1, x0, x1) in zip(proj, boxes.tolist()):
        outside = p.clone()
        outside[:, y0:y1, x0:x1] = 0
        assert outside.abs().max() == 0 and p.abs().max() > 0     # only inside the field
    m = A.fig6_metrics(model, imgs, mean, n_projections=4)
    assert m["conv1"] == "11x11/4" and m["stride"] == 4 and m["filters"] == 24
    assert m["low"] + m["mid"] + m["high"] == pytest.approx(1.0)
    assert m["projections"].shape[0] == 4
    with pytest.raises(ValueError, match="mean"):
        A.fig6_metrics(model, imgs)


# ------------------------------------------------------------------------ Fig. 6 findings

def _m(dead, mid, alias, val, stride, dom=1.5):
    return {"dead": dead, "filters": 24, "mid": mid, "alias_own": alias, "stride": stride,
            "val_top1": val, "n_val": 2000, "dominance": dom}


def test_fig6_findings_hold_and_fail_on_constructed_numbers():
    good = A.fig6_findings(_m(6, 0.3, 0.02, 45.0, 4), _m(1, 0.5, 0.001, 40.0, 2),
                           _m(0, 0.4, 0.0, 50.0, 2, dom=8.0))
    assert [h for _, h, _ in good] == [True] * 5
    bad = A.fig6_findings(_m(1, 0.5, 0.001, 40.0, 4), _m(6, 0.3, 0.02, 45.0, 2),
                          _m(0, 0.4, 0.0, 50.0, 2, dom=1.0))
    assert [h for _, h, _ in bad] == [False] * 5
    assert all(isinstance(e, str) and e for _, _, e in bad)


# ------------------------------------------------------------------------ Table 3 rows and findings

def test_table3_variants_follow_the_papers_row_order():
    assert [v.key for v in A.TABLE3_VARIANTS] == [k for k, *_ in A.PAPER_TABLE3]
    rows = A.ablation_rows({}, "default")
    assert [r[1] for r in rows] == [label for _, label, *_ in A.PAPER_TABLE3]
    assert rows[0][3:6] == ("35.1", "40.5", "18.1") and rows[0][6:] == ("-", "-", "-")
    assert rows[7][1] == "Our model (as per Fig. 3)"


def test_fc_units_and_conv345_are_scaled_to_the_preset():
    d, t = get_preset("default"), get_preset("tiny")
    assert A.variant("zf:fc2048").kwargs(d) == {"fc_units": 256}
    assert A.variant("krizhevsky:fc8192").kwargs(d) == {"fc_units": 1024}
    assert A.variant("zf:fc8192").kwargs(t) == {"fc_units": 512}
    assert A.variant("zf:fc2048").kwargs("imagenet") == {"fc_units": 2048}
    assert A.variant("zf:base").kwargs(d) == {}
    assert A.variant("krizhevsky:rm3,4,6,7").kwargs(d) == {"remove": ["conv3", "conv4", "fc6", "fc7"]}
    kw = A.variant("zf:fc8192+conv345").kwargs(d)
    assert kw == {"fc_units": 1024, "conv345": [512, 1024, 512]}
    m = models.zfnet(100, input_size=64, width=d.width, **kw)
    assert [m.conv3.out_channels, m.conv4.out_channels, m.conv5.out_channels] == [128, 256, 128]
    assert m.fc6.out_features == 1024
    assert "128, 256, 128" in A.variant("zf:conv345").describe(d)
    with pytest.raises(ValueError, match="unknown variant"):
        A.variant("zf:huge")


def test_ablation_rows_reject_unknown_keys():
    with pytest.raises(ValueError, match="not rows of Table 3"):
        A.ablation_rows({"zf:norenorm": {"val_top1": 1.0}})


def test_the_papers_numbers_meet_every_criterion():
    assert all(h for _, h, _ in A.ablation_findings(A.paper_numbers()))


def _set(numbers, key, **vals):
    out = {k: dict(v) for k, v in numbers.items()}
    out[key].update(vals)
    return out


def test_each_ablation_finding_can_fail():
    paper = A.paper_numbers()
    held = lambda n: [h for _, h, _ in A.ablation_findings(n)]         # noqa: E731
    assert held(_set(paper, "krizhevsky:rm6,7", val_top1=60.0)) == [False, True, True, True, True]
    assert held(_set(paper, "krizhevsky:rm3,4", val_top1=60.0)) == [True, False, True, True, True]
    assert held(_set(paper, "krizhevsky:rm3,4", val_top1=70.0)) == [True, False, False, True, True]
    assert held(_set(paper, "krizhevsky:rm3,4,6,7", val_top1=48.0))[2] is False
    assert held(_set(paper, "zf:conv345", val_top1=39.0)) == [True, True, True, False, True]
    assert held(_set(paper, "zf:fc8192", train_top1=36.0)) == [True, True, True, True, False]
    with pytest.raises(ValueError, match="needs the numbers"):
        A.ablation_findings({"krizhevsky:base": paper["krizhevsky:base"]})


def test_table2_rows_put_ours_beside_the_rows_they_reproduce():
    nums = {"krizhevsky:base": {"val_top1": 50.0, "val_top5": 20.0},
            "zf:base": {"val_top1": 45.0, "val_top5": 18.0}}
    rows = A.table2_rows(nums, ensemble=("ensemble of 2", {"val_top1": 40.0, "val_top5": 15.0}))
    by = {r[0]: r for r in rows}
    assert by["Our replication of Krizhevsky et al., 1 convnet"][4:] == ("50.0", "20.0")
    assert by["1 convnet as per Fig. 3"][1:] == ("38.4", "16.5", "-", "45.0", "18.0")
    assert by["Gunji et al."][1:] == ("-", "-", "26.2", "-", "-")
    assert rows[-1] == ("ensemble of 2", "-", "-", "-", "40.0", "15.0")
    assert len(rows) == len(A.PAPER_TABLE2) + 1


def test_error_se():
    assert A.error_se(50.0, 100) == pytest.approx(5.0)
    assert np.isnan(A.error_se(10.0, 0))


# ------------------------------------------------------------------------ ensembles

def _ten_crops_by_hand(img, size):
    s = img.shape[-1]
    m = s - size
    c = m // 2
    crops = [img[:, t:t + size, l:l + size] for t, l in ((0, 0), (0, m), (m, 0), (m, m), (c, c))]
    return crops + [torch.flip(x, dims=[2]) for x in crops]


def test_the_ensemble_is_the_averaged_softmax_of_its_models():
    torch.manual_seed(1)
    m1 = models.zfnet(10, input_size=48, width=0.25, fc_units=32, init="matched", dropout=0.5)
    m2 = models.krizhevsky(10, input_size=48, width=0.25, fc_units=32, init="matched")
    for m in (m1, m2):
        for p in m.parameters():
            p.data.normal_(0, 0.05)                 # make the outputs differ from uniform
    # in float64 (models and means): the batched ensemble and the hand computation agree to
    # float64 rounding, whatever order their sums take
    m1, m2 = double(m1, m2)
    m1.train()                                      # dropout must be off during evaluation
    m2.train()
    imgs = torch.randint(0, 256, (4, 55, 55, 3), dtype=torch.uint8)
    mean1, mean2 = double(torch.full((3, 55, 55), 100.0), torch.full((3, 55, 55), 130.0))
    got = A.ensemble_probs([m1, m2], imgs, [mean1, mean2], 48, batch_size=3)
    assert m1.training and m2.training              # modes restored
    m1.eval()
    m2.eval()
    want = []
    with torch.no_grad():
        for img in imgs.permute(0, 3, 1, 2).double():
            per_model = []
            for m, mu in ((m1, mean1), (m2, mean2)):
                crops = torch.stack(_ten_crops_by_hand(img - mu, 48))
                per_model.append(torch.softmax(m(crops), 1).mean(0))
            want.append((per_model[0] + per_model[1]) / 2)
    want = torch.stack(want)
    assert got.dtype == torch.float64
    f64_close(got, want)
    f64_close(got.sum(1), torch.ones(4))
    assert not torch.allclose(got, A.ten_crop_probs(m1, imgs, mean1, 48), atol=1e-4)   # both models count


def test_ensemble_rejects_bad_inputs():
    m = models.zfnet(10, input_size=48, width=0.25, fc_units=32)
    imgs = torch.zeros(2, 55, 55, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="at least one model"):
        A.ensemble_probs([], imgs, [], 48)
    with pytest.raises(ValueError, match="one mean per model"):
        A.ensemble_probs([m, m], imgs, [torch.zeros(3, 55, 55)], 48)
    with pytest.raises(ValueError, match="classes"):
        A.ensemble_probs([m, models.zfnet(7, input_size=48, width=0.25, fc_units=32)], imgs,
                         [torch.zeros(3, 55, 55)] * 2, 48)
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\)"):
        A.ten_crop_probs(m, torch.zeros(2, 3, 55, 55), torch.zeros(3, 55, 55), 48)


# ------------------------------------------------------------------------ the budget and the runs

def _ten_crop_softmax_and_bound(model, images, mean, size):
    """The exact 10-crop softmax of a float32 ``model`` (in float64, (N, C)) and a bound, per
    image, on a float32 computation of it: uint8 images minus the float32 mean round once
    (half an ulp); each crop's logits, to first order (f32_forward_tol_ad); each crop's
    softmax (softmax_f32_err); the mean of 10 probabilities, at most 1 (gamma(11))."""
    from zfcore.data.transforms import ten_crop
    x = ten_crop(torch.as_tensor(images).permute(0, 3, 1, 2).double() - mean.double(), size).flatten(0, 1)
    last = [n for n, _ in model.named_children()][-1]
    z, z_err = f32_forward_tol_ad(model, x, last, x_err=EPS32 / 2 * x.abs())
    p = torch.softmax(z, 1).view(-1, 10, z.shape[1]).mean(1)
    return p, softmax_f32_err(z, z_err).view(-1, 10, 1).mean(1) + gamma(11)


def test_budget_preset():
    p = A.budget_preset("default")
    assert p.epochs == A.BUDGET_EPOCHS["default"] and p.evolution_epochs == ()
    # the default budget's models learn a subset of the classes; the others all of them
    assert p.num_classes == A.BUDGET_CLASSES["default"] < get_preset("default").num_classes
    assert A.budget_preset("tiny").num_classes == get_preset("tiny").num_classes
    assert A.budget_preset("imagenet").num_classes == get_preset("imagenet").num_classes
    folders = get_preset("default").replace(data="folders")        # never a subset of your folders
    assert A.budget_preset(folders).num_classes == folders.num_classes
    assert A.budget_preset(p) == p                                  # idempotent
    assert A.budget_preset("tiny", 5).epochs == 5
    assert A.budget_preset("imagenet").epochs == get_preset("imagenet").epochs
    with pytest.raises(ValueError, match="at least 1"):
        A.budget_preset("tiny", 0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    old = os.environ.get("ZF_ARTIFACTS")
    os.environ["ZF_ARTIFACTS"] = str(root)
    yield root
    if old is None:
        del os.environ["ZF_ARTIFACTS"]
    else:
        os.environ["ZF_ARTIFACTS"] = old


def test_budget_runs_are_cached_by_their_settings_and_ensembled(artifacts):
    keys = ["krizhevsky:rm3,4,6,7", "krizhevsky:rm3,4"]
    runs = A.budget_runs("tiny", keys, epochs=1, progress=False)
    assert list(runs) == keys
    paths = {k: r.path for k, r in runs.items()}
    assert len(set(paths.values())) == 2
    assert all(p.parent == artifacts / "tiny" / "runs" for p in paths.values())
    nums = A.run_numbers(runs[keys[0]])
    assert nums["epochs"] == 1 and nums["n_val"] == 100 and 0 <= nums["val_top1"] <= 100
    model = runs[keys[0]].load()
    assert not hasattr(model, "conv3") and not hasattr(model, "fc6")

    stamps = {k: (p / "final.pt").stat().st_mtime_ns for k, p in paths.items()}
    again = A.budget_runs("tiny", keys, epochs=1, progress=False)      # loaded, not retrained
    assert {k: r.path for k, r in again.items()} == paths
    assert {k: (p / "final.pt").stat().st_mtime_ns for k, p in paths.items()} == stamps
    other = A.budget_run("tiny", keys[0], epochs=2, progress=False).path   # another budget
    assert other != paths[keys[0]]

    # train() leaves the final model's 10-crop validation softmax in the run folder ...
    from zfcore.data.scenes import load_scenes
    val = load_scenes("tiny", "val", progress=False)
    saved = torch.load(paths[keys[0]] / "probs-val-10crop.pt", weights_only=True)
    model, mean = runs[keys[0]].load(), runs[keys[0]].mean()
    # both float32 (training's evaluate, and ten_crop_probs here), in other batches: each within
    # its rounding's bound of the exact softmax, on every 5th image (the bound takes a backward
    # pass per class); training saves exp(log(max(p, 1e-12))): log and exp add at most
    # p (|log p| + 2) EPS32 <= (1/e + 2) EPS32, and the clamp 1e-12
    rows = np.arange(0, len(val.images), 5)
    exact, bound = _ten_crop_softmax_and_bound(model, val.images[rows], mean, 48)
    assert saved["n"] == 100 and saved["probs"].shape == (100, 10)
    f32_within(saved["probs"][rows], exact, bound + (1 / np.e + 2) * EPS32 * (1 + 1e-6) + 1e-12)
    f32_within(A.ten_crop_probs(model, val.images, mean, 48)[rows], exact, bound)
    single = A.ensemble_error([runs[keys[0]]], "tiny")
    assert single["val_top1"] == pytest.approx(nums["val_top1"], abs=1e-6)
    e = A.ensemble_error(list(runs.values()), "tiny")
    assert e["n"] == 100 and e["models"] == 2 and 0 <= e["val_top1"] <= 100
    # ... and without it the ensemble computes the same and leaves it there
    for p in paths.values():
        (p / "probs-val-10crop.pt").unlink()
    again = A.ensemble_error(list(runs.values()), "tiny")
    assert again == pytest.approx(e)
    assert all((p / "probs-val-10crop.pt").exists() for p in paths.values())


def test_last_epoch_gain():
    class Fake:
        def __init__(self, errs):
            self.metrics = [{"val_top1_err": e} for e in errs]
    assert A.last_epoch_gain(Fake([90.0, 80.0, 75.5])) == pytest.approx(4.5)
    assert np.isnan(A.last_epoch_gain(Fake([90.0])))


def test_ablation_figure_draws_changes_against_the_base():
    import matplotlib
    matplotlib.use("Agg")
    from zfcore import architecture as A
    nums = {k: dict(v) for k, v in A.paper_numbers().items()}
    fig = A.ablation_figure(nums)
    assert len(fig.axes) == 2
    kriz = fig.axes[0]
    widths = sorted(round(p.get_width(), 6) for p in kriz.patches)
    # the paper's own changes appear, e.g. removing 3,4,6,7 costs 71.3 - 40.5 = 30.8 points
    assert round(71.3 - 40.5, 6) in widths
    with pytest.raises(ValueError, match="base"):
        A.ablation_figure({"zf:fc2048": nums["zf:fc2048"]})
