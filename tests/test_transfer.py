"""Classifiers on frozen features (Section 5.2, Tables 4-6, Fig. 9; Section 5.3, Table 7)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zfcore import models
from zfcore.chain import block_layers
from zfcore import feature_analysis as FA
from zfcore import features as FT
from zfcore import generalization as G
from zfcore import scratch as S
from zfcore.findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, decide
from zfcore.activations import layer_activations
from zfcore.presets import get_preset
from tolerance import EPS32, double, f32_forward_tol_ad, f32_within, gamma

TINY = get_preset("tiny").replace(epochs=1, evolution_epochs=(1,))


# --------------------------------------------------------------------------- folds and scores

def test_folds_counts_disjoint_deterministic():
    # unequal classes: 12, 30 and 8 images, interleaved
    y = np.array([0] * 12 + [1] * 30 + [2] * 8)
    y = y[np.random.default_rng(3).permutation(len(y))]
    fs = FT.folds(y, 5, n_test_max=10, folds=4, seed=1)
    assert len(fs) == 4
    for tr, te in fs:
        assert len(np.intersect1d(tr, te)) == 0
        assert np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)
        for c, count in ((0, 12), (1, 30), (2, 8)):
            assert (y[tr] == c).sum() == 5
            assert (y[te] == c).sum() == min(10, count - 5)     # capped, or the remainder
    again = FT.folds(y, 5, n_test_max=10, folds=4, seed=1)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(fs, again))
    other = FT.folds(y, 5, n_test_max=10, folds=4, seed=2)
    assert not np.array_equal(fs[0][0], other[0][0])
    assert not np.array_equal(fs[0][0], fs[1][0])               # folds differ
    # a fold does not depend on how many folds are drawn
    assert np.array_equal(FT.folds(y, 5, 10, folds=2, seed=1)[1][0], fs[1][0])


def test_folds_nested_and_fixed_test_set():
    y = np.repeat(np.arange(4), 20)
    small = FT.folds(y, 3, n_test_max=10, folds=2, seed=0)
    big = FT.folds(y, 8, n_test_max=10, folds=2, seed=0)
    for (tr_s, te_s), (tr_b, te_b) in zip(small, big):
        assert set(tr_s) <= set(tr_b)
        assert np.array_equal(te_s, te_b)         # 20 - 8 >= 10: the same test images


def test_folds_bad_inputs():
    y = np.repeat(np.arange(3), [10, 10, 6])
    with pytest.raises(ValueError, match="only 6 images"):
        FT.folds(y, 6)
    with pytest.raises(ValueError, match="positive"):
        FT.folds(y, 0)
    with pytest.raises(ValueError, match="positive"):
        FT.folds(y, 2, n_test_max=0)


def test_mean_class_accuracy_matches_naive_loop():
    from sklearn.metrics import balanced_accuracy_score
    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 7, 300))
    naive = []
    for c in sorted(set(t.tolist())):
        hits = [pi == ti for ti, pi in zip(t, p) if ti == c]
        naive.append(sum(hits) / len(hits))
    assert FT.mean_class_accuracy(t, p) == pytest.approx(sum(naive) / len(naive))
    assert FT.mean_class_accuracy(t, p) == pytest.approx(balanced_accuracy_score(t, p))
    # unbalanced: differs from the plain accuracy
    t2, p2 = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    assert FT.mean_class_accuracy(t2, p2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        FT.mean_class_accuracy([0, 1], [0])


def test_average_precision_by_hand():
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.9], [0.6, 0.3]])
    ap = FT.average_precision(targets, scores)
    # class 0 ranks 1,0,1,0: precision 1/1 at the first hit, 2/3 at the second
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    # class 1 ranks (0.9: hit), (0.3: miss), (0.2: hit), (0.1: miss): (1 + 2/3) / 2
    assert ap[1] == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(FT.average_precision(np.zeros((3, 1), bool), np.ones((3, 1))))[0]
    with pytest.raises(ValueError):
        FT.average_precision(targets, scores[:, :1])


# --------------------------------------------------------------------------- classifiers

def _clusters(n_per, classes=5, dim=20, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per)
    X = centres[y] + rng.normal(0, spread, (len(y), dim))
    return X.astype(np.float32) * 50 + 7, y      # far from standardised: the classifier must cope


def test_softmax_separable_and_shuffled():
    X, y = _clusters(40)
    Xt, yt = _clusters(40, seed=0)
    Xt = Xt + np.random.default_rng(9).normal(0, 0.3 * 50, Xt.shape).astype(np.float32)
    clf = FT.fit_softmax(X, y, 5)
    assert FT.mean_class_accuracy(yt, clf.predict(Xt)) > 0.98
    p = clf.predict_proba(Xt)
    # float32 softmax over 5 classes: each probability within 5 EPS32 + gamma(5) of its exact
    # value relatively (exp, at most 2 ulps, in the numerator and the sum; the sum; the
    # quotient: see tolerance.softmax_f32_err), and exact probabilities sum to 1; then
    # numpy's float32 sum of 5 terms (gamma(4))
    tol = (1 + 5 * EPS32 + gamma(5)) * (1 + gamma(4)) - 1
    assert p.shape == (200, 5) and p.dtype == np.float32 and np.all(np.abs(p.sum(1, dtype=np.float32) - 1) <= tol)
    # labels unrelated to the features: no better than chance on new images
    rng = np.random.default_rng(1)
    Xr = rng.normal(size=(400, 20)).astype(np.float32)
    yr = rng.integers(0, 5, 400)
    Xr_t = rng.normal(size=(2000, 20)).astype(np.float32)
    yr_t = rng.integers(0, 5, 2000)
    acc = FT.mean_class_accuracy(yr_t, FT.fit_softmax(Xr, yr, 5).predict(Xr_t))
    assert 0.12 < acc < 0.3             # chance 0.2; 2000 test images: sd sqrt(0.2 * 0.8 / 2000) = 0.009
    # and it fits the training set of shuffled labels less than perfectly with weight decay
    assert FT.mean_class_accuracy(yr, FT.fit_softmax(Xr, yr, 5).predict(Xr)) < 0.6


def test_softmax_multilabel_and_svm():
    X, y = _clusters(30, classes=4)
    multi = np.eye(4, dtype=np.float32)[y]
    multi[:, 0] = np.maximum(multi[:, 0], (y == 1))          # class 0 is also on class-1 images
    ovr = FT.fit_softmax(X, multi, multilabel=True)
    assert ovr.kind == "sigmoid"
    ap = FT.average_precision(multi.astype(bool), ovr.predict_proba(X))
    assert np.all(ap > 0.99)
    svm = FT.linear_svm(X, y)
    assert FT.mean_class_accuracy(y, svm.predict(X)) > 0.98
    with pytest.raises(ValueError):
        FT.fit_softmax(X, y[:-1])
    with pytest.raises(ValueError):
        FT.fit_softmax(X, y, 2)                                # labels beyond num_classes


# --------------------------------------------------------------------------- features

@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.zfnet(10, input_size=48, width=0.25, fc_units=32, init="matched").eval()


def test_block_layers(net):
    assert block_layers(net) == {1: "norm1", 2: "norm2", 3: "relu3", 4: "relu4", 5: "pool5",
                                   6: "relu6", 7: "relu7", 8: "fc8"}
    slim = models.zfnet(10, input_size=48, width=0.25, fc_units=32, remove=("conv3", "conv4", "fc7"))
    assert block_layers(slim) == {1: "norm1", 2: "norm2", 5: "pool5", 6: "relu6", 8: "fc8"}


def test_extract_matches_layer_activations(net):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 55, 55, 3), dtype=np.uint8)
    # in float64 (model and mean), in batches of 3 against one pass: the two agree to float64
    # rounding; extract casts its features to float32, half an ulp of each
    net, mean = double(net, torch.full((3, 55, 55), 100.0))
    got = FT.extract(net, images, mean, 48, layers=[1, "relu3", 7], grid=None, batch_size=3)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() - mean
    x = x[..., 3:51, 3:51]                                        # the centre 48x48 crop
    ref = layer_activations(net, x, ["norm1", "relu3", "relu7"])
    assert set(got) == {"norm1", "relu3", "relu7"}
    for k in got:
        assert got[k].dtype == np.float32
        want = ref[k].flatten(1)
        f32_within(got[k], want, EPS32 / 2 * want.abs())
    pooled = FT.extract(net, images, mean, 48, layers=["norm1"], grid=3)["norm1"]
    want = F.adaptive_max_pool2d(ref["norm1"], 3).flatten(1)
    f32_within(pooled, want, EPS32 / 2 * want.abs())
    assert pooled.shape == (7, ref["norm1"].shape[1] * 9)
    with pytest.raises(ValueError, match="relu7"):
        FT.extract(net, images, mean, 48, layers=["conv9"])       # lists the valid layers
    with pytest.raises(ValueError, match="no layer 9"):
        FT.extract(net, images, mean, 48, layers=[9])


# --------------------------------------------------------------------------- on a tiny run

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run folder holding a randomly initialised model (training is not what is tested)."""
    from zfcore.data.scenes import load_scenes
    from zfcore.runs import CHECKPOINT_FORMAT, Run, save_checkpoint
    root = tmp_path_factory.mktemp("transfer")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root / "artifacts"))
    mp.setenv("ZF_PROGRESS", "0")
    try:
        torch.manual_seed(0)
        m = models.zfnet(TINY.num_classes, input_size=TINY.image_size, width=TINY.width,
                         fc_units=TINY.fc_units, init=TINY.init).eval()
        images = load_scenes(TINY, "target", progress=False).images
        mean = torch.from_numpy(images).double().mean(0).permute(2, 0, 1).float()
        save_checkpoint(root / "run" / "final.pt", {
            "format": CHECKPOINT_FORMAT, "version": 1, "epoch": 1, "model": m.state_dict(),
            "model_config": models.model_config(m), "preset": TINY.to_dict(), "mean": mean,
            "classes": [str(i) for i in range(TINY.num_classes)], "complete": True})
        yield Run(root / "run")
    finally:
        mp.undo()


def test_features_cached_and_invalidated(run, monkeypatch):
    from zfcore.data.scenes import load_scenes
    a = FT.features(run, "target", "relu7", scale=TINY)
    ds = load_scenes(TINY, "target", progress=False)
    assert a.shape == (len(ds), 256)
    path = FT.features_path(run, "target", "relu7", scale=TINY)
    assert path.exists()
    # the run's float32 model: the cached features, on a few images spread over the split (the
    # bound takes a backward pass per feature), within the bound of their float32 rounding of
    # the exact features (uint8 minus the float32 mean rounds once: half an ulp)
    rows = np.arange(0, len(ds), 12)
    x = torch.from_numpy(ds.images[rows]).permute(0, 3, 1, 2).double() - run.mean().double()
    x = x[..., 3:51, 3:51]                                        # the centre 48x48 crop
    exact, bound = f32_forward_tol_ad(run.load(), x, "relu7", x_err=EPS32 / 2 * x.abs())
    f32_within(a[rows], exact, bound)

    def boom(*args, **kw):
        raise AssertionError("extract called although cached")
    monkeypatch.setattr(FT, "extract", boom)
    np.testing.assert_array_equal(FT.features(run, "target", 7, scale=TINY), a)
    both = FT.features(run, "target", ["relu7", 7], scale=TINY)
    assert list(both) == ["relu7"]
    monkeypatch.undo()
    # other weights: a new cache entry
    from zfcore.runs import load_checkpoint, save_checkpoint
    state = load_checkpoint(run.checkpoint())
    backup = dict(state)
    state["model"] = {k: v * 1.01 if k == "fc7.weight" else v for k, v in state["model"].items()}
    save_checkpoint(run.checkpoint(), state)
    try:
        assert FT.features_path(run, "target", "relu7", scale=TINY) != path
        b = FT.features(run, "target", "relu7", scale=TINY)
        assert not np.allclose(a, b)
    finally:
        save_checkpoint(run.checkpoint(), backup)
    assert FT.features_path(run, "target", "relu7", scale=TINY) == path
    with pytest.raises(ValueError, match="unknown split"):
        FT.features(run, "caltech", scale=TINY)
    with pytest.raises(ValueError, match="unknown layer"):
        FT.features(run, "target", "fc9", scale=TINY)


def test_train_on_arrays_repeatable():
    from zfcore.train import train_on_arrays
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 55, 55, 3), dtype=np.uint8)
    labels = np.arange(20) % 3
    mean = torch.full((3, 55, 55), 128.0)

    def once():
        torch.manual_seed(5)
        m = models.zfnet(3, input_size=48, width=0.25, fc_units=16, init="matched")
        return train_on_arrays(m, images, labels, mean, 48, steps=3, batch_size=8, seed=2)

    state = torch.random.get_rng_state()
    a, b = once(), once()
    torch.manual_seed(5)
    fresh = models.zfnet(3, input_size=48, width=0.25, fc_units=16, init="matched")
    assert not a.training
    for (k, va), vb, vf in zip(a.state_dict().items(), b.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.conv1.weight, fresh.conv1.weight)
    torch.random.set_rng_state(state)
    with pytest.raises(ValueError):
        train_on_arrays(fresh, images, labels[:-1], mean, 48, steps=1)


def test_tables_end_to_end(run):
    scratch = S.train_scratch(run, steps=2, scale=TINY, progress=False)
    res = G.caltech_table(run, scratch=scratch, scale=TINY, progress=False)
    assert sorted(res.pretrained) == [5, 10] and sorted(res.scratch) == [5, 10]
    assert all(len(v) == TINY.target_folds for v in res.pretrained.values())
    assert all(len(v) == S.SCRATCH_BUDGET["tiny"]["folds"] for v in res.scratch.values())
    assert all(0 <= a <= 100 for v in res.pretrained.values() for a in v)
    # the scratch result is cached: a second call gives the same numbers at once
    again = G.caltech_table(run, scratch=S.train_scratch(run, steps=2, scale=TINY, progress=False),
                            scale=TINY, progress=False)
    assert again.scratch == res.scratch and again.pretrained == res.pretrained
    rows = G.table_rows(res, paper=G.PAPER_TABLE4)
    assert rows[0][0].startswith("paper:") and rows[-1][0].startswith("ours: pretrained")
    assert rows[-2][0] == f"ours: {G.EARLIER_NAME}" and rows[-2][1] == "-"      # measured at 10/class only
    curve = G.accuracy_curve(run, scale=TINY, progress=False)
    assert sorted(curve.pretrained) == [1, 2, 3, 5, 10] and not curve.scratch
    assert curve.pretrained[10] == res.pretrained[10]          # same folds, same classifier
    fig = G.caltech_figure(res)
    import matplotlib.pyplot as plt
    plt.close(fig)
    fs = G.findings(res)
    assert [f.claim.split()[0] for f in fs][:2] == ["Pretrained", "A"]
    # the stand-in for an earlier method: HOG + softmax on the same folds at the largest n
    assert sorted(res.earlier) == [10] and len(res.earlier[10]) == TINY.target_folds
    assert all(0 <= a <= 100 for a in res.earlier[10])
    assert G.EARLIER_NAME in fs[1].measured

    pas = G.pascal_table(run, scale=TINY, progress=False)
    assert pas.softmax_ap.shape == (TINY.multi_classes,) and pas.ovr_ap.shape == (TINY.multi_classes,)
    assert 0 <= pas.softmax_map <= 100 and 0 <= pas.ovr_map <= 100
    assert set(pas.prob_by_count) <= {2, 3, 4} and set(pas.prob_se_by_count) == set(pas.prob_by_count)
    assert all(se >= 0 for se in pas.prob_se_by_count.values())
    assert G.pascal_rows(pas)[-1][0] == "mean"
    largest = G.pascal_table(run, scale=TINY, rule="largest", progress=False)
    assert largest.rule == "largest"
    assert G.findings(pascal=pas)[0].claim.startswith("A single-label softmax")
    with pytest.raises(ValueError, match="unknown rule"):
        G.pascal_table(run, scale=TINY, rule="first")

    lay = FA.layer_table(run, scale=TINY, progress=False)
    assert list(lay.layers) == [1, 2, 3, 4, 5, 6, 7] and lay.ns == (10,)
    assert lay.dims[7] == 256 and lay.dims[5] == 64
    assert len(lay.acc[("SVM", 1, 10)]) == TINY.target_folds
    assert len(FA.layer_rows(lay)) == 14
    lf = FA.findings(lay)
    # the tiny scale has 2 folds: too few to measure the folds' spread, so never decided
    assert len(lf) == 2 and all(f.verdict == NOT_TESTABLE for f in lf)
    plt.close(FA.layer_figure(lay))
    with pytest.raises(ValueError, match="no layer 9"):
        FA.layer_table(run, layers=[9], scale=TINY)
    with pytest.raises(ValueError, match="unknown classifier"):
        FA.layer_table(run, classifiers=["kNN"], scale=TINY)
    with pytest.raises(ValueError, match="only 20 images"):
        G.caltech_table(run, ns=[20], scale=TINY)


def _caltech(pretrained, scratch, classes=30, test_images=1500, dataset=None):
    """A hand-made CaltechResult: accuracies in % per fold, ``classes`` target classes."""
    return G.CaltechResult(pretrained=pretrained, scratch=scratch, layer="relu7", n_test_max=50, folds=5,
                           scratch_folds=5, scratch_steps=200, scratch_batch=16, test_images=test_images,
                           classes=[f"c{i}" for i in range(classes)], scale="x", weight_decay=1e-3,
                           dataset=dataset)


def _by_claim(res):
    return {x.claim.split()[0]: x for x in G.findings(res)}


FOLDS5 = [-2.0, 2.0, 0.0, -4.0, 4.0]      # deviations over 5 folds: std sqrt(10), SE sqrt(2)


def test_findings_logic():
    pre = {n: [m + d for d in FOLDS5] for n, m in ((1, 40.0), (5, 52.0), (15, 60.0), (30, 75.0), (45, 83.0),
                                                   (60, 88.0))}
    res = _caltech(pre, {15: [30.0, 32.0], 30: [40.0, 41.0], 60: [50.0, 52.0]})
    f = _by_claim(res)
    assert f["Pretrained"].verdict == f["Accuracy"].verdict == HOLDS
    # a baseline above the pretrained softmax by more than 2 SE at one size: does not hold
    res.scratch[30] = [90.0, 91.0]
    assert _by_claim(res)["Pretrained"].verdict == DOES_NOT_HOLD
    # a step that falls by more than 2 SE: the rise does not hold
    res.pretrained[60] = [73.0 + d for d in FOLDS5]
    assert _by_claim(res)["Accuracy"].verdict == DOES_NOT_HOLD


def _pascal(softmax_ap, ovr_ap, prob, prob_se):
    """A hand-made PascalResult: per-class APs in %, ``{k: mean}`` and ``{k: SE}`` of the softmax
    probability of a present class."""
    c = len(softmax_ap)
    return G.PascalResult([f"c{i}" for i in range(c)], np.array(softmax_ap, float), np.array(ovr_ap, float),
                          "replicate", prob, prob, 0.5, 100, 100, 2.0, "relu7", "x", prob_se)


def test_pascal_finding_needs_each_difference_beyond_its_se():
    # the classes' paired differences +1, +3, +1, +3: mean +2, SE sqrt(4/3)/2 = 0.58; falls 0.2 with SE hypot(0.03, 0.04)
    soft = [40.0, 50.0, 60.0, 70.0]
    ovr = [41.0, 53.0, 61.0, 73.0]
    f = G.findings(pascal=_pascal(soft, ovr, {2: 0.4, 3: 0.2}, {2: 0.03, 3: 0.04}))[0]
    assert f.verdict == HOLDS and "+2.0 ± 0.6" in f.measured
    # the same ordering (one-vs-rest higher, probability falling), each within 2 SE: the old rule
    # (an ordering) held; now not testable
    ovr_close = [41.0, 49.0, 61.0, 51.0 + 20.0]          # differences +1, -1, +1, +1: mean +0.5, SE 1/2
    assert G.findings(pascal=_pascal(soft, ovr_close, {2: 0.4, 3: 0.2}, {2: 0.03, 3: 0.04}))[0].verdict \
        == NOT_TESTABLE
    # the chapter's sentence follows the same rule (it said "does not lose ranking quality" on any gap below 0)
    assert "cannot tell" in G.count_text(_pascal(ovr_close, soft, {2: 0.4, 3: 0.2}, {2: 0.03, 3: 0.04}))
    assert ": the constraint costs the softmax ranking quality." in G.count_text(_pascal(soft, ovr, {2: 0.4, 3: 0.2}, {2: 0.03, 3: 0.04}))
    assert G.findings(pascal=_pascal(soft, ovr, {2: 0.4, 3: 0.35}, {2: 0.03, 3: 0.04}))[0].verdict \
        == NOT_TESTABLE
    # a rise of the probability beyond its SE, or a softmax better beyond its SE: does not hold
    assert G.findings(pascal=_pascal(soft, ovr, {2: 0.2, 3: 0.4}, {2: 0.03, 3: 0.04}))[0].verdict \
        == DOES_NOT_HOLD
    assert G.findings(pascal=_pascal(ovr, soft, {2: 0.4, 3: 0.2}, {2: 0.03, 3: 0.04}))[0].verdict \
        == DOES_NOT_HOLD


def test_scratch_at_chance_makes_the_comparison_not_testable():
    # the default run: 6.7-7.8% from scratch on 30 classes (chance 3.3%), 1500 test images;
    # the old rule (every gap above 0) said "holds", +57 to +66 points
    pre = {n: [m + d for d in FOLDS5] for n, m in ((15, 64.0), (30, 68.0), (45, 70.0), (60, 72.0))}
    scr = {15: [6.7] * 5, 30: [7.8] * 5, 45: [7.0] * 5, 60: [6.9] * 5}
    res = _caltech(pre, scr)
    assert all(not ok for ok, _, _ in G.scratch_learned(res).values())
    f = _by_claim(res)["Pretrained"]
    assert f.verdict == NOT_TESTABLE and "did not learn at this budget" in f.evidence and "3.3%" in f.evidence
    assert "did not learn at this budget" in G.scratch_text(res) and "7.8%" in G.scratch_text(res)
    assert "0 of the 2 checks hold, 0 do not, 2 not testable" in G.summary(G.findings(res), get_preset("default"),
                                                                              res)
    # 7.8% is 4.5 points above chance, its binomial SE 0.69/sqrt(5) = 0.31: far above chance by the
    # SE alone, but within NOT_TRAINED_POINTS (5) of it; at 12% it clears 3.3 + 5 by more than 2 SE
    assert decide(7.8 - 100 / 30, 0.31) == HOLDS
    res.scratch[30] = [12.0] * 5
    st = G.scratch_learned(res)
    assert st[30][0] and not st[15][0]
    f = _by_claim(res)["Pretrained"]
    assert f.verdict == HOLDS and "decided at 30/class" in f.evidence and "left out 15, 45, 60" in f.evidence
    assert "learned at some sizes only" in G.scratch_text(res)
    # a baseline that learned but within 2 SE of the pretrained softmax: a tie, not testable
    res.scratch = {30: [69.0 + d for d in FOLDS5]}
    assert _by_claim(res)["Pretrained"].verdict == NOT_TESTABLE


def test_accuracy_se_has_the_binomial_floor():
    # two equal folds: their spread is 0, the floor is the binomial SE on 100 images over 2 folds
    m, se, k = FT.accuracy_se([50.0, 50.0], 100)
    assert (m, k) == (50.0, 2) and se == pytest.approx(100 * (0.25 / 100) ** 0.5 / 2 ** 0.5, rel=1e-12)
    # five spread folds: the spread's SE, sqrt(10 / 5), is above the floor sqrt(.5 * .5 / 1500 / 5)
    assert FT.accuracy_se([50.0 + d for d in FOLDS5], 1500)[1] == pytest.approx(2 ** 0.5, rel=1e-12)
    assert FT.accuracy_se([30.0], 100)[1] == pytest.approx(100 * (0.21 / 100) ** 0.5, rel=1e-12)


def test_gains_within_their_se_are_not_testable():
    # steps +1.0, +0.8, +0.5 with SE sqrt(2) per mean: the old rule (every step above 0, the
    # first above the last) said "holds"; each step's SE is 2, so none is decided
    pre = {n: [m + d for d in FOLDS5] for n, m in ((15, 62.0), (30, 63.0), (45, 63.8), (60, 64.3))}
    f = _by_claim(_caltech(pre, {}))["Accuracy"]
    assert f.verdict == NOT_TESTABLE and "± 2.0" in f.measured
    # a tie at one step does not pass the ordering either (the others clear 2 SE)
    pre = {n: [m + d for d in FOLDS5] for n, m in ((15, 50.0), (30, 70.0), (45, 70.0), (60, 76.0))}
    assert _by_claim(_caltech(pre, {}))["Accuracy"].verdict == NOT_TESTABLE


def test_fig9_against_bo_et_al_at_caltech256():
    bo = G.PAPER_TABLE5["Bo et al."][60][0]
    # 62% at 5/class on Caltech-256, SE sqrt(2) over the folds: 6.8 points above Bo et al.'s 55.2%
    # with SE hypot(sqrt 2, 0.3 / sqrt 5) = 1.42: holds; the old rule compared with our own baseline
    pre = {n: [m + d for d in FOLDS5] for n, m in ((1, 30.0), (5, 62.0), (15, 70.0))}
    res = _caltech(pre, {15: [80.0] * 5}, classes=256, test_images=5000, dataset="caltech256")
    f = _by_claim(res)["A"]
    assert f.verdict == HOLDS and "with 5/class" in f.measured and f"{62 - bo:+.1f}" in f.evidence
    res.pretrained[5] = [52.0 + d for d in FOLDS5]        # 52%: below by 3.2 > 2 x 1.42
    assert _by_claim(res)["A"].verdict == DOES_NOT_HOLD
    res.pretrained[5] = [57.0 + d for d in FOLDS5]        # 57%: +1.8, within 2 x 1.42
    assert _by_claim(res)["A"].verdict == NOT_TESTABLE
    # Caltech-101 has no earlier method at 60/class: not testable, whatever the numbers
    res.dataset = "caltech101"
    assert _by_claim(res)["A"].verdict == NOT_TESTABLE
    # the scenes: no published method; without the stand-in not testable, with it decided by it
    res.dataset = None
    f = _by_claim(res)["A"]
    assert f.verdict == NOT_TESTABLE and "no earlier method was measured" in f.evidence
    res.earlier = {15: [50.0 + d for d in FOLDS5]}       # 57% against 50%: +7 ± 2 (hypot(sqrt 2, sqrt 2))
    f = _by_claim(res)["A"]
    assert f.verdict == HOLDS and G.EARLIER_NAME in f.measured and "+7.0 ± 2.0" in f.evidence
    res.earlier = {15: [56.0 + d for d in FOLDS5]}       # +1 ± 2: within 2 SE
    assert _by_claim(res)["A"].verdict == NOT_TESTABLE
    res.earlier = {}
    # Fig. 9 draws Bo et al. on our panel at Caltech-256, not at the scenes
    import matplotlib.pyplot as plt
    res.dataset = "caltech256"
    fig = G.caltech_figure(res)
    assert any(list(l.get_ydata()) == [bo, bo] for l in fig.axes[0].get_lines())
    plt.close(fig)
    res.dataset = None
    fig = G.caltech_figure(res)
    assert not any(list(l.get_ydata()) == [bo, bo] for l in fig.axes[0].get_lines())
    plt.close(fig)


def test_layer_findings_logic():
    # three folds, each rising with depth by 10 points a layer, the folds 1 point apart
    lay = FA.LayerResult(acc={("SVM", l, 30): [float(v), v + 1.0, v - 1.0]
                              for l, v in zip(range(1, 8), [10, 20, 30, 40, 50, 60, 70])},
                        layers={l: f"l{l}" for l in range(1, 8)}, dims={l: 1 for l in range(1, 8)}, ns=(30,),
                        folds=3, grid=6, C=1e-3, weight_decay=1e-3, scale="x")
    assert FA.findings(lay)[0].verdict == HOLDS
    # the top layer clearly above the lowest, but the best layer in the middle: the ordering fails
    lay.acc[("SVM", 4, 30)] = [90.0, 91.0, 89.0]
    assert FA.findings(lay)[0].verdict == DOES_NOT_HOLD
    lay.acc[("SVM", 4, 30)] = [40.0, 41.0, 39.0]
    # layer 1 above layer 7 beyond the folds' spread: does not hold
    lay.acc[("SVM", 1, 30)] = [90.0, 91.0, 92.0]
    assert FA.findings(lay)[0].verdict == DOES_NOT_HOLD
    # the old rule passed this: a near-perfect ranking (Spearman 0.96), but layer 7's edge over layer 1 (+1 point) is
    # within the folds' spread (per-fold differences +11, -9, +1): not testable
    lay.acc[("SVM", 1, 30)] = [59.0, 81.0, 68.0]
    lay.acc.update({("SVM", l, 30): [69.0 + 0.1 * l] * 3 for l in range(2, 7)})
    lay.acc[("SVM", 7, 30)] = [70.0, 72.0, 69.0]
    f = FA.findings(lay)[0]
    assert f.verdict == NOT_TESTABLE and "per fold" in f.evidence
    # one or two folds cannot measure the spread
    two = FA.LayerResult(acc={k: v[:2] for k, v in lay.acc.items()}, layers=lay.layers, dims=lay.dims, ns=(30,),
                         folds=2, grid=6, C=1e-3, weight_decay=1e-3, scale="x")
    assert FA.findings(two)[0].verdict == NOT_TESTABLE
