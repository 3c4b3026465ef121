"""The chapters' calls at a folder scale (the ``imagenet`` scale's data, at the size of a test):
mining, the explorers, occlusion, invariance, correspondence and the ablation helpers read the
user's prepared folders through zfcore.data.splits; what needs scene geometry says so."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zfcore.data.splits import PathSource, data_tag, has_boxes, load_split
from tolerance import EPS32, F64_REL, double, f32_repeat_tol, f32_within, f64_close

LAYERS = ["conv1", "conv5"]


@pytest.fixture(scope="module")
def env(folder_env):
    return folder_env


def test_mined_reads_the_folders_and_equals_mine_over_a_path_source(env):
    from zfcore.mining import mine, mined, mining_path
    p, run, roots = env
    got = mined(run, "val", layers=LAYERS, k=4, progress=False)
    ds = load_split(p, "val")
    assert not has_boxes(ds) and len(ds) == 40
    # the same float32 weights, images, batches and device as mined's own call of mine: the
    # same arithmetic, so the values agree bit for bit (as the images and positions do)
    want = mine(run.load(), PathSource(ds, mean=run.mean()), run.mean(), p.image_size, layers=LAYERS,
                k=4, progress=False, device=torch.device("cuda") if torch.cuda.is_available() else None)
    for layer in LAYERS:
        assert torch.equal(got[layer].images, want[layer].images)
        assert torch.equal(got[layer].positions, want[layer].positions)
        assert torch.equal(got[layer].values, want[layer].values.to(got[layer].values.device))
    path = mining_path(run, "val", LAYERS, 4)
    assert path.exists() and data_tag(p) != data_tag("tiny")
    # the key names the data: other folders, another entry
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZF_IMAGENET", str(roots.imagenet.parent / "elsewhere"))
        assert mining_path(run, "val", LAYERS, 4) != path
    # ... but not a folder the split is not read from: another Caltech keeps the mined top-k
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZF_CALTECH", str(roots.imagenet.parent / "elsewhere"))
        mp.setenv("ZF_VOC", str(roots.imagenet.parent / "elsewhere"))
        assert mining_path(run, "val", LAYERS, 4) == path
        assert data_tag(p, "target") != data_tag(p, "val") and data_tag(p) != data_tag(p, "val")


def test_scenes_cache_keys_name_the_scenes_folder_as_before():
    from zfcore.data.scenes import scenes_dir
    assert data_tag("tiny") == scenes_dir("tiny").name


def test_patches_and_projections_read_only_the_images_they_need(env):
    from zfcore.mining import mined, patches, projections
    p, run, _ = env
    tk = mined(run, "val", layers=LAYERS, k=4, progress=False)["conv1"]
    ds = load_split(p, "val")
    full = ds.images[:]
    model = run.load()
    assert np.array_equal(patches(ds.images, tk, model, p.image_size, maps=[0, 3]),
                          patches(full, tk, model, p.image_size, maps=[0, 3]))
    # in float64 (model and mean): the two agree to float64 rounding, each cast to float32 at
    # the end: at most one ulp apart
    model, mean = double(model, run.mean())
    a = projections(ds.images, tk, model, mean, p.image_size, maps=[1])
    b = projections(full, tk, model, mean, p.image_size, maps=[1])
    f32_within(a, b, EPS32 * np.abs(b))


def test_explorers_open_on_folder_splits(env):
    from zfcore.widgets import ImageExplorer, LayerExplorer, OcclusionExplorer, decode_png
    p, run, _ = env
    le = LayerExplorer(run, "val", layers=["conv1"], k=4, side=16, device="cpu")
    assert le.panels["conv1"].shape[0] == le.topk["conv1"].num_maps
    ie = ImageExplorer(run, "test", layers=["conv1", "conv2"], per_layer=2, zoom=1, device="cpu")
    ie.select(3)
    assert decode_png(ie.image_widget.value).ndim == 3
    oe = OcclusionExplorer(run, "test", images=[0, 5], sizes=[12], strides=[12], device="cpu")
    assert oe.box(0) is None                       # the folders carry no object boxes
    oe.select(image=5)
    assert oe.panel("input").shape[:2] == (p.image_size * oe.zoom,) * 2
    assert "image #0" in oe.gallery_html(images=[0])


def test_localization_needs_boxes_and_fig7_examples_do_not(env):
    from zfcore.occlusion import fig7_examples, localization
    p, run, _ = env
    with pytest.raises(ValueError, match="object box, which only the generated scenes carry"):
        localization(run, "test", n_images=2, progress=False)
    test = load_split(p, "test")
    chosen, good = fig7_examples(run.load(), test, run.mean(), p.image_size, n=3, seed=0)
    assert len(chosen) == 3 == len(set(chosen)) and set(good) <= set(range(len(test)))
    few, _ = fig7_examples(run.load(), test, run.mean(), p.image_size, n=2, seed=0, limit=5)
    assert len(few) == 2


def test_invariance_warps_the_folder_images(env):
    from zfcore import invariance as I
    from zfcore import invariance_report as R
    p, run, _ = env
    vals = {"translation": [-6, 0, 6], "scale": [1.0, 1.4], "rotation": [0, 90]}
    res = I.scene_invariance(run, "test", n_images=2, seed=0, values=vals, device="cpu")
    assert res.method == "warp" and np.isnan(res.room).all() and len(res.indices) == 2
    test = load_split(p, "test")
    assert res.class_names == [test.classes[int(test.labels[i])] for i in res.indices]
    # the identity returns the image unwarped: the float32 model's inputs are the originals',
    # run in another batch; apart by at most two float32 passes' rounding (f32_repeat_tol)
    from zfcore.data.transforms import center_crop
    from zfcore.data.transforms import preprocess
    x0 = center_crop(preprocess(torch.from_numpy(test.images[res.indices]).permute(0, 3, 1, 2), run.mean()),
                     p.image_size)
    for kind, v in vals.items():
        c = res.curves[kind]
        assert c.distance.shape == (2, 2, len(v)) and c.images.shape[:2] == (2, len(v))
        ident = list(v).index(0 if kind != "scale" else 1.0)
        dist, prob = f32_repeat_tol(run.load(), x0, c.layers)
        for k, layer in enumerate(c.layers):                         # the identity changes nothing
            assert np.all(c.distance[k, :, ident] <= dist[layer].numpy() + F64_REL * c.norm[k])
        assert np.all(np.abs(c.prob[:, ident] - c.original_prob) <= prob.numpy() + F64_REL)
    assert res.originals.shape == (2, p.image_size, p.image_size, 3)
    assert R.findings(res) and R.distance_rows(res)


def test_correspondence_needs_part_positions(env):
    from zfcore import correspondence as C
    from zfcore import correspondence_report as R
    p, run, _ = env
    assert not C.has_parts(p) and C.has_parts("tiny")
    with pytest.raises(ValueError, match="part's position in each image"):
        C.correspondence_table(run, "dog face", draws=1)
    assert [r[0] for r in R.paper_rows()] == list(C.PAPER_TABLE1)


def test_ablation_helpers_on_folder_splits(env):
    from zfcore import ablations as AB
    from zfcore import architecture as A
    p, run, _ = env
    val = load_split(p, "val")
    assert A.run_numbers(run)["n_val"] == len(val) == 40
    e = AB.ensemble_error([run], p)
    assert e["n"] == 40 and e["models"] == 1
    # lazy and decoded images, in float64 (model and mean): the same to float64 rounding
    model, mean = double(run.load(), run.mean())
    full = val.images[:12]
    lazy12 = load_split(p, "val").images
    lazy12.paths = lazy12.paths[:12]
    f64_close(AB.ten_crop_probs(model, lazy12, mean, p.image_size, batch_size=5),
              AB.ten_crop_probs(model, full, mean, p.image_size, batch_size=5))
    f64_close(A.conv1_responses(model, lazy12, mean, p.image_size, batch_size=5),
              A.conv1_responses(model, full, mean, p.image_size, batch_size=5))
    m = A.fig6_metrics(run, val.images, n_projections=4)
    assert m["projections"].shape[0] == 4


def test_split_rows_name_what_is_missing(env, monkeypatch):
    from zfcore.data.splits import SPLITS, split_rows
    p, _, _ = env
    rows, caption = split_rows(p)
    assert [r[0] for r in rows] == list(SPLITS) and rows[1][1:3] == (40, 10) and "ImageNet" in caption
    monkeypatch.delenv("ZF_CALTECH")
    rows, _ = split_rows(p)
    target = dict((r[0], r) for r in rows)["target"]
    assert target[1] == "not given" and "ZF_CALTECH" in target[3]
    assert "'ImageNet'" in split_rows("tiny", splits=["val"])[1]
