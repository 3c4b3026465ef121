"""Section 5 (zfcore.features, generalization, scratch, feature_analysis) at a folder scale (the
imagenet scale's data, at the size of a test): features, Tables 4-7 and the from-scratch baseline
read the prepared Caltech folds and VOC lists."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zfcore import feature_analysis as FA
from zfcore import features as FT
from zfcore import generalization as G
from zfcore import scratch as S
from zfcore.data.splits import LazyImages, data_tag, load_split, prepared_folds
from zfcore.artifacts import artifacts_dir
from zfcore.data.transforms import center_crop
from tolerance import EPS32, double, f32_forward_tol_ad, f32_within


@pytest.fixture(scope="module")
def env(folder_env):
    return folder_env


def test_extract_reads_lazy_images_batch_by_batch(env):
    p, run, _ = env
    ds = load_split(p, "target")
    lazy = LazyImages(ds.paths[:23], p.stored_size, threads=2)
    reads = []
    getitem = LazyImages.__getitem__

    class Counting(LazyImages):
        def __getitem__(self, index):
            reads.append(index)
            return getitem(self, index)

    counting = Counting(lazy.paths, p.stored_size, threads=2)
    # in float64 (model and mean): the two agree to float64 rounding, and each is cast to
    # float32 at the end: at most one ulp apart
    model, mean = double(run.load(), run.mean())
    got = FT.extract(model, counting, mean, p.image_size, ["relu3", 7], batch_size=8)
    want = FT.extract(model, np.asarray(lazy), mean, p.image_size, ["relu3", 7], batch_size=8)
    assert reads == [slice(0, 8), slice(8, 16), slice(16, 24)]        # never the whole split
    for k in want:
        f32_within(got[k], want[k], EPS32 * np.abs(want[k]))


def test_features_equal_extract_on_the_decoded_images(env, monkeypatch):
    p, run, _ = env
    a = FT.features(run, "target", "relu7")
    ds = load_split(p, "target")
    assert a.shape == (len(ds), p.fc_units)
    # the run's float32 model on the CPU (a GPU's TF32 convolutions are not covered): the
    # cached features, on a few images spread over the split (the bound takes a backward pass
    # per feature), within the bound of their float32 rounding of the exact features of the
    # decoded images (uint8 minus the float32 mean rounds once: half an ulp)
    rows = np.arange(0, len(ds), 11)
    x = center_crop(torch.from_numpy(ds.images[rows]).permute(0, 3, 1, 2).double() - run.mean().double(),
                    p.image_size)
    exact, bound = f32_forward_tol_ad(run.load(), x, "relu7", x_err=EPS32 / 2 * x.abs())
    f32_within(a[rows], exact, bound)
    path = FT.features_path(run, "target", "relu7")
    assert path.exists() and path != FT.features_path(run, "target", "relu7", scale="tiny")
    assert data_tag(p) != data_tag("tiny")
    monkeypatch.setattr(FT, "extract", lambda *a, **k: pytest.fail("extract called although cached"))
    np.testing.assert_array_equal(FT.features(run, "target", 7), a)
    monkeypatch.setenv("ZF_VOC", str(env[2].caltech.parent / "elsewhere"))
    assert FT.features_path(run, "target", "relu7") == path          # a folder Caltech is not read from
    monkeypatch.setenv("ZF_CALTECH", str(env[2].caltech.parent / "elsewhere"))
    assert FT.features_path(run, "target", "relu7") != path          # another Caltech, another entry


def _spy(monkeypatch, name):
    """Record the training and test features that each classifier of ``name`` gets."""
    calls = []
    real = getattr(FT, name)

    def spy(X, y, *args, **kw):
        clf = real(X, y, *args, **kw)
        rec = {"train": np.asarray(X)}
        calls.append(rec)
        predict = clf.predict

        def recorded(Z):
            rec["test"] = np.asarray(Z)
            return predict(Z)
        clf.predict = recorded
        return clf
    for module in (FT, G, FA):         # each module that calls it holds its own name for it
        if hasattr(module, name):
            monkeypatch.setattr(module, name, spy)
    return calls


def test_tables_use_the_prepared_folds(env, monkeypatch):
    p, run, _ = env
    ds = load_split(p, "target")
    X = FT.features(run, "target", "relu7")
    for n in (5, 10):
        for (tr, te), (tr2, te2) in zip(FT.target_folds(p, ds, n), prepared_folds(ds, n, p.target_folds)):
            assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    soft = _spy(monkeypatch, "fit_softmax")
    res = G.caltech_table(run, scratch=S.train_scratch(run, steps=2, progress=False), progress=False)
    assert sorted(res.pretrained) == [5, 10] and res.dataset == "caltech256" and not res.earlier
    want = [f for n in (5, 10) for f in prepared_folds(ds, n, p.target_folds)]
    assert len(soft) == len(want)
    for rec, (tr, te) in zip(soft, want):
        np.testing.assert_array_equal(rec["train"], X[tr])
        np.testing.assert_array_equal(rec["test"], X[te])
    # the from-scratch networks test on the prepared folds' test images too
    assert sorted(res.scratch) == [5, 10] and all(len(v) == 2 for v in res.scratch.values())
    records = [json.loads(f.read_text()) for f in (artifacts_dir(p) / "transfer").glob("scratch-*.json")]
    assert sorted((r["n_train"], r["fold"], r["test_images"]) for r in records) == sorted(
        (n, f, len(prepared_folds(ds, n, 2)[f][1])) for n in (5, 10) for f in range(2))
    assert res.n_test_max == 7                      # 12 images a class, 5 train: the prepared folds' 7
    soft.clear()
    svm = _spy(monkeypatch, "linear_svm")
    lay = FA.layer_table(run, layers=[1, 7], progress=False)
    assert lay.ns == (10,) and lay.dataset == "caltech256" and lay.num_classes == len(ds.classes)
    feats = FT.features(run, "target", ["norm1", "relu7"])
    want = [f for _ in (1, 7) for f in prepared_folds(ds, 10, p.target_folds)]
    for calls in (soft, svm):
        assert len(calls) == len(want)
        for rec, (tr, te), layer in zip(calls, want, ["norm1"] * 2 + ["relu7"] * 2):
            np.testing.assert_array_equal(rec["train"], feats[layer][tr])
            np.testing.assert_array_equal(rec["test"], feats[layer][te])
    # the paper's column of the prepared data set only
    assert FA.layer_header(lay)[-1] == "paper, Cal-256 (60/class)" and len(FA.layer_header(lay)) == 3
    assert all(len(r) == 3 for r in FA.layer_rows(lay))
    # Fig. 9: sizes without prepared folds are left out with a warning, or refused when asked for
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="leaves out 1, 2, 3 training images per class"):
        curve = G.accuracy_curve(run, progress=False)
    assert sorted(curve.pretrained) == [5, 10] and curve.pretrained[10] == res.pretrained[10]
    with pytest.raises(FileNotFoundError, match="no folds for 3 training images per class"):
        G.accuracy_curve(run, ns=[3, 5], progress=False)
    import matplotlib.pyplot as plt
    res.dataset = "caltech101"
    fig = G.caltech_figure(res)
    assert fig.axes[1].get_title() == "the paper: Caltech-101 (Table 4)"
    plt.close(fig)


def test_pascal_replicate_works_and_largest_is_refused(env):
    p, run, _ = env
    pas = G.pascal_table(run, progress=False)
    tr, te = load_split(p, "multi_train"), load_split(p, "multi_test")
    assert pas.train_images == len(tr) and pas.test_images == len(te)
    assert pas.softmax_ap.shape == (len(tr.classes),) and 0 <= pas.softmax_map <= 100
    with pytest.raises(ValueError, match="rule='replicate'"):
        G.pascal_table(run, rule="largest", progress=False)


def test_missing_caltech_names_its_variable(env, monkeypatch):
    _, run, _ = env
    monkeypatch.delenv("ZF_CALTECH")
    with pytest.raises(ValueError, match="ZF_CALTECH"):
        G.caltech_table(run, progress=False)
    with pytest.raises(ValueError, match="ZF_CALTECH"):
        S.scratch_accuracy(env[0], 5, 0, steps=1)
