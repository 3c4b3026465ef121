"""The generated scenes (zfcore.data.scenes), their cache, their sampling and the paper's crops."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings

import numpy as np
import pytest
import torch

from zfcore.data import scenes as S
from zfcore.data.scenes import (DISTRACTORS, SOURCE_CLASSES, SPLITS, TARGET_CLASSES, SceneSource, class_names,
                                generate_split, glyph, load_scenes, render_scene)
from zfcore.data.transforms import center_crop, random_crop_flip, ten_crop
from zfcore.presets import PRESETS, get_preset

TINY = get_preset("tiny")


@pytest.fixture(autouse=True)
def _artifacts(tmp_path, monkeypatch):
    """Every cache goes to a temporary folder, never to the repository's artifacts/."""
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path / "artifacts"))


def _gen(split, scale="tiny", **kw):
    kw.setdefault("workers", 1)
    return generate_split(scale, split, progress=False, **kw)


@pytest.fixture(scope="module")
def val():
    return _gen("val")


@pytest.fixture(scope="module")
def multi():
    return _gen("multi_test")


# --- determinism -------------------------------------------------------------------------------

def test_same_seed_same_bytes(val):
    again = _gen("val")
    assert again.images.tobytes() == val.images.tobytes()
    assert again.boxes.tobytes() == val.boxes.tobytes()
    assert np.array_equal(again.labels, val.labels)
    assert np.array_equal(again.targets, val.targets)
    assert np.array_equal(again.box_labels, val.box_labels)
    assert [s.to_dict() for s in again.specs] == [s.to_dict() for s in val.specs]


def test_other_seed_other_images(val):
    other = _gen("val", seed=TINY.seed + 1)
    assert other.images.shape == val.images.shape
    assert np.array_equal(other.labels, val.labels)          # the same balanced labels...
    same = [np.array_equal(a, b) for a, b in zip(other.images, val.images)]
    assert not any(same)                                        # ...on different images


def test_splits_differ(val):
    test = _gen("test")
    assert test.images.shape == val.images.shape
    assert not any(np.array_equal(a, b) for a, b in zip(test.images, val.images))


def test_workers_give_identical_bytes():
    # 300 images: two chunks of 256, so that two workers really render in parallel
    p = TINY.replace(val_per_class=30)
    one = generate_split(p, "val", workers=1, progress=False)
    two = generate_split(p, "val", workers=2, progress=False)
    assert len(one) == 300
    assert one.images.tobytes() == two.images.tobytes()
    assert one.boxes.tobytes() == two.boxes.tobytes()
    assert np.array_equal(one.labels, two.labels)
    assert np.array_equal(one.box_labels, two.box_labels)


def test_unknown_split_in_generate():
    with pytest.raises(ValueError, match="valid splits"):
        _gen("validation")


# --- shapes and labels -------------------------------------------------------------------------

def test_single_object_split_shapes(val):
    n = TINY.val_per_class * TINY.num_classes
    assert len(val) == n
    assert val.images.shape == (n, 55, 55, 3) == (n, TINY.stored_size, TINY.stored_size, 3)
    assert val.images.dtype == np.uint8
    assert val.stored_size == 55
    assert val.labels.shape == (n,) and val.labels.dtype == np.int64
    assert np.bincount(val.labels, minlength=10).tolist() == [TINY.val_per_class] * 10
    assert val.targets.shape == (n, 10) and val.targets.dtype == bool
    assert np.array_equal(val.targets, np.eye(10, dtype=bool)[val.labels])    # one-hot
    assert val.classes == class_names("source", 10)
    assert (val.split, val.scale) == ("val", "tiny")
    assert len(val.specs) == n
    # exactly one labelled object per image, of the image's class; the others are distractors
    for i, spec in enumerate(val.specs):
        labelled = [o for o in spec.objects if o.label >= 0]
        assert len(labelled) == 1 and labelled[0].label == val.labels[i]
        assert labelled[0].glyph == SOURCE_CLASSES[val.classes[val.labels[i]]]
        assert all(o.glyph in DISTRACTORS for o in spec.objects if o.label < 0)
        k = len(spec.objects)
        assert val.box_labels[i, :k].tolist() == [o.label for o in spec.objects]
        assert (val.box_labels[i, k:] == -2).all() and (val.boxes[i, k:] == 0).all()


def test_target_split_uses_held_out_classes():
    ds = _gen("target")
    n = max(TINY.target_train) + TINY.target_test
    assert len(ds) == n * TINY.target_classes
    assert ds.classes == class_names("target", TINY.target_classes)
    assert np.bincount(ds.labels).tolist() == [n] * TINY.target_classes
    codes = {s.objects[-1].glyph for s in ds.specs}
    assert codes <= set(TARGET_CLASSES.values())
    assert not codes & set(SOURCE_CLASSES.values())


def test_multi_split(multi):
    n = TINY.multi_test
    assert multi.images.shape == (n, 55, 55, 3) and multi.images.dtype == np.uint8
    assert multi.classes == class_names("source", TINY.multi_classes)
    assert multi.targets.shape == (n, TINY.multi_classes)
    counts = multi.targets.sum(1)
    assert counts.min() >= 2 and counts.max() <= 4
    for i, spec in enumerate(multi.specs):
        labs = [o.label for o in spec.objects if o.label >= 0]
        assert 2 <= len(labs) <= 4
        assert len(set(labs)) == len(labs)
        assert all(0 <= l < TINY.multi_classes for l in labs)
        assert sorted(np.flatnonzero(multi.targets[i]).tolist()) == sorted(labs)
        assert int((multi.box_labels[i] >= 0).sum()) == len(labs) == counts[i]
        # the image's label is the class of its largest object
        big = max((o for o in spec.objects if o.label >= 0), key=lambda o: o.size)
        assert multi.labels[i] == big.label
    assert set(multi.labels.tolist()) <= set(range(TINY.multi_classes))


# --- boxes -------------------------------------------------------------------------------------

def _check_boxes_inside(ds):
    size = ds.stored_size
    for i in range(len(ds)):
        b = ds.object_box(i)
        x0, y0, x1, y1 = b.tolist()
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size, (i, b)
        for k, lab in enumerate(ds.box_labels[i]):
            if lab >= -1:
                bx = ds.boxes[i, k]
                assert (bx >= 0).all() and (bx <= size).all(), (i, k, bx)
                assert bx[2] > bx[0] and bx[3] > bx[1], (i, k, bx)


def test_boxes_inside_image(val, multi):
    _check_boxes_inside(val)
    _check_boxes_inside(multi)


def test_object_box_is_labelled_object(val):
    for i in range(len(val)):
        k = [j for j, o in enumerate(val.specs[i].objects) if o.label >= 0][0]
        assert np.array_equal(val.object_box(i), val.boxes[i, k])


def test_rerender_reproduces_images(val, multi):
    for ds in (val, multi):
        for i in range(0, len(ds), 3):
            img, boxes = render_scene(ds.specs[i], ds.stored_size)
            assert img.dtype == np.uint8 and img.shape == (55, 55, 3)
            assert np.array_equal(img, ds.images[i]), i
            k = len(ds.specs[i].objects)
            assert np.array_equal(boxes, ds.boxes[i, :k]), i


def _changed_only_inside_box(ds, i, k, margin=2):
    """Render image ``i`` without object ``k``: pixels may change only in its box (+margin)."""
    spec = copy.deepcopy(ds.specs[i])
    spec.objects = [o for j, o in enumerate(spec.objects) if j != k]
    img, _ = render_scene(spec, ds.stored_size)
    changed = (img != ds.images[i]).any(-1)
    assert changed.any(), (i, k)                    # the object is visible at all
    x0, y0, x1, y1 = ds.boxes[i, k]
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x0 - margin and xs.max() <= x1 - 1 + margin, (i, k, ds.boxes[i, k], xs.min(), xs.max())
    assert ys.min() >= y0 - margin and ys.max() <= y1 - 1 + margin, (i, k, ds.boxes[i, k], ys.min(), ys.max())
    # and the box is tight: the object changes pixels near each of its four sides
    assert xs.min() <= x0 + margin and xs.max() >= x1 - 1 - margin, (i, k)
    assert ys.min() <= y0 + margin and ys.max() >= y1 - 1 - margin, (i, k)


def test_boxes_bound_the_labelled_object(val):
    for i in range(len(val)):
        k = [j for j, o in enumerate(val.specs[i].objects) if o.label >= 0][0]
        _changed_only_inside_box(val, i, k)


def test_boxes_bound_every_object_of_multi(multi):
    for i in range(len(multi)):
        for k in range(len(multi.specs[i].objects)):
            _changed_only_inside_box(multi, i, k)


# --- classes and glyphs ------------------------------------------------------------------------

def test_source_and_target_classes_disjoint():
    assert not set(SOURCE_CLASSES) & set(TARGET_CLASSES)
    assert not set(SOURCE_CLASSES.values()) & set(TARGET_CLASSES.values())
    # every class has its own glyph, and no distractor is a class
    assert len(set(SOURCE_CLASSES.values())) == len(SOURCE_CLASSES)
    assert len(set(TARGET_CLASSES.values())) == len(TARGET_CLASSES)
    assert not set(DISTRACTORS) & (set(SOURCE_CLASSES.values()) | set(TARGET_CLASSES.values()))
    # the largest preset's class counts exist
    assert max(p.num_classes for p in PRESETS.values() if p.data == "scenes") <= len(SOURCE_CLASSES)
    assert max(p.target_classes for p in PRESETS.values() if p.data == "scenes") <= len(TARGET_CLASSES)


def test_class_names():
    assert class_names("source", 10) == list(SOURCE_CLASSES)[:10]
    assert class_names("target", 5) == list(TARGET_CLASSES)[:5]
    assert class_names("source") == list(SOURCE_CLASSES)
    with pytest.raises(ValueError, match="classes exist"):
        class_names("source", len(SOURCE_CLASSES) + 1)
    with pytest.raises(ValueError, match="classes exist"):
        class_names("target", len(TARGET_CLASSES) + 1)


def test_too_many_classes_in_preset_raises():
    with pytest.raises(ValueError):
        generate_split(TINY.replace(target_classes=len(TARGET_CLASSES) + 1), "target", progress=False)


def _sprite_ok(code):
    """A non-empty sprite of real ink (a few OpenMoji glyphs, e.g. the snowflake, are black line art)."""
    sprite = glyph(code)
    assert sprite.mode == "RGBA"
    assert max(sprite.size) == 128 and min(sprite.size) >= 8
    a = np.asarray(sprite)[..., 3]
    return a.max() > 200 and a.mean() > 20 and (a > 64).sum() > 500


def test_tiny_glyphs_render():
    codes = ([SOURCE_CLASSES[c] for c in class_names("source", TINY.num_classes)]
             + [TARGET_CLASSES[c] for c in class_names("target", TINY.target_classes)] + list(DISTRACTORS))
    for code in codes:
        assert _sprite_ok(code), code


def test_every_glyph_renders_and_differs():
    codes = list(itertools.chain(SOURCE_CLASSES.values(), TARGET_CLASSES.values(), DISTRACTORS))
    for code in codes:
        assert _sprite_ok(code), code
    # no two codes fall back to the same drawing (e.g. the font's "missing glyph" box)
    assert len({glyph(c).tobytes() for c in codes}) == len(codes)


def test_every_glyph_is_in_the_font():
    ttlib = pytest.importorskip("fontTools.ttLib")
    cmap = ttlib.TTFont(str(S._font_path())).getBestCmap()
    for code in itertools.chain(SOURCE_CLASSES.values(), TARGET_CLASSES.values(), DISTRACTORS):
        assert "-" not in code and int(code, 16) in cmap, code


# --- the cache ---------------------------------------------------------------------------------

def _same(a, b):
    for f in ("images", "labels", "targets", "boxes", "box_labels"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    assert a.classes == b.classes and a.split == b.split and a.scale == b.scale
    assert [s.to_dict() for s in a.specs] == [s.to_dict() for s in b.specs]


def _no_generation(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("generate_split called: the cache was not used")
    monkeypatch.setattr(S, "generate_split", boom)


def test_load_scenes_caches(monkeypatch, tmp_path, val):
    first = load_scenes("tiny", "val", progress=False, workers=1)
    _same(first, val)
    path = S.scenes_dir("tiny") / "val.npz"
    assert path.exists() and path.with_suffix(".json").exists()
    assert str(path).startswith(str(tmp_path / "artifacts"))
    assert not [f.name for f in path.parent.iterdir() if ".tmp" in f.name]    # no temporary leftovers
    _no_generation(monkeypatch)
    second = load_scenes("tiny", "val", progress=False)
    _same(second, first)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "json"])
def test_damaged_cache_is_regenerated(monkeypatch, val, damage):
    load_scenes("tiny", "val", progress=False, workers=1)
    path = S.scenes_dir("tiny") / "val.npz"
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:
        path.with_suffix(".json").write_text('{"classes": [')
    with pytest.warns(UserWarning, match="damaged"):
        again = load_scenes("tiny", "val", progress=False, workers=1)
    _same(again, val)
    # and the repaired entry is used from now on, silently
    _no_generation(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(load_scenes("tiny", "val", progress=False), val)


def test_changed_preset_uses_other_cache(monkeypatch):
    changed = get_preset("tiny").replace(val_per_class=3)
    assert S.scenes_dir(changed) != S.scenes_dir("tiny")
    assert S.scenes_dir("tiny", seed=1) != S.scenes_dir("tiny")
    # settings that do not shape the data share the cache
    assert S.scenes_dir(TINY.replace(epochs=7, lr=0.5)) == S.scenes_dir("tiny")
    ds = load_scenes(changed, "val", progress=False, workers=1)
    assert len(ds) == 3 * TINY.num_classes
    assert (S.scenes_dir(changed) / "val.npz").exists()
    assert not (S.scenes_dir("tiny") / "val.npz").exists()


def test_load_scenes_unknown_split():
    with pytest.raises(ValueError) as e:
        load_scenes("tiny", "validation", progress=False)
    for s in SPLITS:
        assert s in str(e.value)


def test_load_scenes_unknown_scale():
    with pytest.raises(ValueError) as e:
        load_scenes("huge", "val", progress=False)
    msg = str(e.value)
    assert "huge" in msg
    for name in PRESETS:
        assert name in msg


# --- SceneSource -------------------------------------------------------------------------------

def test_scene_source_mean(val):
    src = SceneSource(val)
    m = src.mean()
    naive = val.images.astype(np.float64).mean(0).transpose(2, 0, 1)
    assert m.shape == (3, 55, 55) and m.dtype == torch.float32
    # exact: sums of uint8 are integers below 2^53, exact in float64 in any order; one division
    # by the count (correctly rounded, as numpy's mean does it); one cast to float32
    np.testing.assert_array_equal(m.numpy(), naive.astype(np.float32))
    given = torch.zeros(3, 55, 55)
    assert SceneSource(val, mean=given).mean() is given


def _indexed(ds):
    """The same split with label i on image i, so that batches tell which images they hold."""
    return dataclasses.replace(ds, labels=np.arange(len(ds), dtype=np.int64))


def test_scene_source_batches_images_match_labels(val):
    src = SceneSource(_indexed(val))
    for imgs, idx in src.batches(32, shuffle=True, seed=3, epoch=1):
        assert imgs.dtype == torch.uint8 and imgs.shape[1:] == (3, 55, 55)
        assert np.array_equal(imgs.numpy(), val.images[idx.numpy()].transpose(0, 3, 1, 2))


@pytest.mark.parametrize("shuffle", [True, False])
def test_scene_source_world2_covers_world1(val, shuffle):
    src = SceneSource(_indexed(val))
    kw = dict(shuffle=shuffle, seed=5, epoch=2)
    one = [lab.tolist() for _, lab in src.batches(16, **kw)]
    r0 = [lab.tolist() for _, lab in src.batches(16, rank=0, world=2, **kw)]
    r1 = [lab.tolist() for _, lab in src.batches(16, rank=1, world=2, **kw)]
    assert len(one) == len(r0) == len(r1) == src.num_batches(16, shuffle)
    for g, a, b in zip(one, r0, r1):
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(g)
    flat = [i for g in one for i in g]
    assert len(flat) == len(set(flat))
    if shuffle:      # training drops the last partial batch
        assert len(flat) == (len(val) // 16) * 16
    else:
        assert flat == list(range(len(val)))


def test_scene_source_order_depends_on_epoch(val):
    src = SceneSource(_indexed(val))

    def order(epoch, seed=0):
        return [i for _, lab in src.batches(10, shuffle=True, seed=seed, epoch=epoch) for i in lab.tolist()]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert order(0) != order(0, seed=1)
    assert sorted(order(0)) == sorted(order(1)) == list(range(len(val)))   # 100 = 10 batches of 10
    assert order(0) != list(range(len(val)))


# --- transforms --------------------------------------------------------------------------------

def test_random_crop_flip_matches_some_crop():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 11, 11), dtype=torch.uint8, generator=g)
    size = 7
    out = random_crop_flip(images, size, generator=torch.Generator().manual_seed(1))
    assert out.shape == (16, 3, size, size) and out.dtype == torch.uint8
    flipped = 0
    for n in range(len(images)):
        matches = []
        for t in range(11 - size + 1):
            for l in range(11 - size + 1):
                crop = images[n, :, t:t + size, l:l + size]
                for f in (False, True):
                    c = crop.flip(-1) if f else crop
                    if torch.equal(out[n], c):
                        matches.append((t, l, f))
        assert matches, n              # random pixels: exactly one crop matches
        assert len(matches) == 1, matches
        flipped += matches[0][2]
    assert 0 < flipped < len(images)   # some flipped, some not


def test_random_crop_flip_repeatable_and_no_flip():
    images = torch.arange(2 * 3 * 9 * 9, dtype=torch.float32).reshape(2, 3, 9, 9)
    a = random_crop_flip(images, 5, generator=torch.Generator().manual_seed(4))
    b = random_crop_flip(images, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.dtype == torch.float32
    c = random_crop_flip(images, 5, generator=torch.Generator().manual_seed(4), flip=False)
    # without flips, rows and columns increase left to right
    assert (c[..., 1:] > c[..., :-1]).all()
    full = random_crop_flip(images, 9, flip=False)
    assert torch.equal(full, images)
    with pytest.raises(ValueError, match="larger"):
        random_crop_flip(images, 10)


def test_ten_crop():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 55, 55), dtype=torch.uint8, generator=g)
    s = 48
    out = ten_crop(images, s)
    assert out.shape == (3, 10, 3, s, s)
    m = 55 - s
    corners = [(0, 0), (0, m), (m, 0), (m, m)]
    for k, (t, l) in enumerate(corners):
        assert torch.equal(out[:, k], images[..., t:t + s, l:l + s])
    assert torch.equal(out[:, 4], center_crop(images, s))
    assert torch.equal(out[:, 4], images[..., m // 2:m // 2 + s, m // 2:m // 2 + s])
    for k in range(5):
        assert torch.equal(out[:, k + 5], out[:, k].flip(-1))
    # the 5 unflipped crops are distinct
    assert len({out[0, k].numpy().tobytes() for k in range(5)}) == 5


def test_crop_paths_agree_with_crop_of_the_mean_subtracted_batch():
    """random_crop_flip(mean=...) on the CPU (numpy) and the gather path (used on GPUs)
    give exactly the crop of (images - mean), and the same crops for the same draws."""
    import torch
    from zfcore.data import transforms as T
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (6, 12, 12, 3), dtype=torch.uint8, generator=g).permute(0, 3, 1, 2)
    mean = torch.rand(3, 12, 12, generator=g) * 255
    a = T.random_crop_flip(images, 9, torch.Generator().manual_seed(7), mean=mean)
    b = T.random_crop_flip(images.float() - mean, 9, torch.Generator().manual_seed(7))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    gen = torch.Generator().manual_seed(7)
    top = torch.randint(0, 4, (6,), generator=gen)
    left = torch.randint(0, 4, (6,), generator=gen)
    flips = torch.rand(6, generator=gen) < 0.5
    assert torch.equal(T._crop_flip_gather(images, 9, top, left, flips, mean), a)
    assert torch.equal(T._crop_flip_gather(images, 9, top, left, flips, None),
                       T._crop_flip_numpy(images, 9, top, left, flips, None))
