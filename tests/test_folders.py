"""Folder data sets in the ImageNet layout (zfcore.data.folders), on a tiny fake tree."""
from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tolerance import EPS32
from zfcore.data import folders
from zfcore.data.folders import (BadImage, BadImageWarning, FolderDataset, FolderSource, check_layout,
                                 collate_skip_bad, load_image, pixel_mean)

S = 16  # stored size: small, so the tests are fast

BAD = ["train/cherry/truncated.jpg", "train/cherry/corrupt.jpg", "train/cherry/empty.png"]
N_GOOD_TRAIN = 13


def _noise(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _palette_with_transparency(w=40, h=40):
    """Left half index 0 (red, transparent), right half index 1 (opaque green)."""
    a = np.zeros((h, w), np.uint8)
    a[:, w // 2:] = 1
    img = Image.fromarray(a, "L").convert("P")
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    img.putdata(a.flatten().tolist())
    img.info["transparency"] = 0
    return img


def make_tree(root):
    """3 train classes (13 good images in varied sizes and modes, 3 bad files), 2 val classes."""
    d = {c: root / "train" / c for c in ("apple", "banana", "cherry")}
    for p in d.values():
        p.mkdir(parents=True)
    # apple: plain RGB of varied sizes, grey, CMYK, 1-bit
    _noise(300, 200, 1).save(d["apple"] / "rgb_300x200.jpg", quality=95)
    _noise(64, 90, 2).save(d["apple"] / "rgb_64x90.png")
    Image.new("L", (50, 40), 128).save(d["apple"] / "grey_L.png")
    Image.new("CMYK", (40, 30), (0, 0, 0, 0)).save(d["apple"] / "cmyk.jpg", quality=95)
    Image.new("1", (30, 20), 1).save(d["apple"] / "one_bit.png")
    # banana: palette with transparency, RGBA, 16-bit, odd extensions/case
    _palette_with_transparency().save(d["banana"] / "palette.png", transparency=0)
    Image.new("RGBA", (24, 36), (255, 0, 0, 0)).save(d["banana"] / "rgba.png")
    Image.fromarray(np.full((20, 30), 128 * 257, np.uint16)).save(d["banana"] / "i16.png")
    _noise(120, 40, 3).save(d["banana"] / "wide.BMP")
    _noise(33, 17, 4).save(d["banana"] / "small.JPEG", quality=95)
    # cherry: good ones, the bad ones, and files that are not images
    for i in range(3):
        _noise(40 + 10 * i, 70, 10 + i).save(d["cherry"] / f"good_{i}.png")
    _noise(200, 150, 5).save(root / "full.jpg", quality=95)
    data = (root / "full.jpg").read_bytes()
    (root / "full.jpg").unlink()
    (d["cherry"] / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d["cherry"] / "corrupt.jpg").write_bytes(np.random.default_rng(6).bytes(2000))
    (d["cherry"] / "empty.png").write_bytes(b"")
    (d["cherry"] / "notes.txt").write_text("not an image")
    (d["cherry"] / ".hidden.png").write_bytes(b"")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    # val: apple and cherry only (banana missing is fine)
    for c, n in (("apple", 2), ("cherry", 1)):
        (root / "val" / c).mkdir(parents=True)
        for i in range(n):
            _noise(50, 50, 100 + 10 * i + n).save(root / "val" / c / f"v{i}.png")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("imagenet"))


def _key(img, label):
    return (img.numpy().tobytes(), int(label))


def _collect(source, **kw):
    """All (image bytes, label) keys of a pass, batch by batch."""
    return [[_key(i, l) for i, l in zip(images, labels)] for images, labels in source.batches(**kw)]


# --------------------------------------------------------------------------- load_image


def test_odd_modes_load_as_rgb_uint8(tree):
    t = tree / "train"
    out = {}
    for p in ["apple/rgb_300x200.jpg", "apple/rgb_64x90.png", "apple/grey_L.png", "apple/cmyk.jpg",
              "apple/one_bit.png", "banana/palette.png", "banana/rgba.png", "banana/i16.png",
              "banana/wide.BMP", "banana/small.JPEG"]:
        x = load_image(t / p, S)
        assert x.shape == (3, S, S) and x.dtype == torch.uint8, p
        out[p] = x.int()
    with Image.open(t / "banana/i16.png") as im:
        assert im.mode.startswith("I")                             # really a 16-bit file
    assert (out["apple/grey_L.png"] == 128).all()                  # equal channels, value kept
    assert (out["apple/cmyk.jpg"] >= 250).all()                    # CMYK (0,0,0,0) is white
    assert (out["apple/one_bit.png"] == 255).all()
    assert (out["banana/rgba.png"] == 128).all()                   # fully transparent -> mid-grey
    assert (out["banana/i16.png"] == 128).all()                    # 16-bit scaled by 255/65535
    pal = out["banana/palette.png"]                                # transparent left, green right
    assert (pal[:, :, :6] == 128).all()
    assert (pal[:, :, 10:] == torch.tensor([0, 255, 0])[:, None, None]).all()


def test_partial_alpha_and_float_images(tmp_path):
    la = Image.new("LA", (20, 20), (0, 128))                       # black at alpha 128/255 over grey
    la.save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png", S).int() - 64).abs().max() <= 1
    f = Image.fromarray(np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1)), "F")
    f.save(tmp_path / "f.tif")
    x = load_image(tmp_path / "f.tif", S)                         # own range 0..1 -> 0..255
    assert x.shape == (3, S, S) and x.dtype == torch.uint8
    assert x[:, :, 0].max() < 40 and x[:, :, -1].min() > 215


@pytest.mark.parametrize("vertical", [False, True])
def test_shortest_side_resize_and_center_crop(tmp_path, vertical):
    # 400x100, red for x < 175: resized to 128x32 (S=32), the centre crop starts at x=48 of the
    # resized image, so the red/blue boundary (at 56) falls at crop column 8.
    a = np.zeros((100, 400, 3), np.uint8)
    a[:, :175] = (255, 0, 0)
    a[:, 175:] = (0, 0, 255)
    if vertical:
        a = a.transpose(1, 0, 2).copy()
    Image.fromarray(a).save(tmp_path / "two.png")
    x = load_image(tmp_path / "two.png", 32)
    if vertical:
        x = x.transpose(1, 2)
    red, blue = torch.tensor([255, 0, 0]), torch.tensor([0, 0, 255])
    assert ((x[:, :, :7].int() - red[:, None, None]).abs() <= 2).all()
    assert ((x[:, :, 10:].int() - blue[:, None, None]).abs() <= 2).all()
    assert x[0, :, 7].float().mean() > x[0, :, 9].float().mean()  # the boundary is at column 8


def test_bad_files_raise_bad_image(tree):
    for p in BAD:
        with pytest.raises(BadImage) as e:
            load_image(tree / p, S)
        assert isinstance(e.value, ValueError)
        assert e.value.path == str(tree / p) and e.value.reason and str(tree / p) in str(e.value)
    with pytest.raises(BadImage, match="empty"):
        load_image(tree / BAD[2], S)
    err = pickle.loads(pickle.dumps(BadImage("a.jpg", "broken")))  # survives DataLoader workers
    assert (err.path, err.reason) == ("a.jpg", "broken")


# --------------------------------------------------------------------------- layout and data set


def test_layout_errors_name_the_path(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="expected") as e:
        check_layout(root)
    assert str(root) in str(e.value)
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="expected") as e:
        FolderDataset(root)
    assert str(root / "train") in str(e.value)
    (root / "train").mkdir()
    with pytest.raises(ValueError, match="expected") as e:
        check_layout(root)
    assert str(root / "train") in str(e.value) and "no class subfolders" in str(e.value)
    (root / "train" / "a").mkdir()
    (root / "train" / "a" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images") as e:
        check_layout(root)
    assert str(root / "train") in str(e.value) and "expected" in str(e.value)


def test_dataset_classes_samples_and_splits(tree):
    ds = FolderDataset(tree, "train", S)
    assert ds.classes == ["apple", "banana", "cherry"]
    assert len(ds) == N_GOOD_TRAIN + len(BAD)                      # .txt and hidden files ignored
    assert collections.Counter(l for _, l in ds.samples) == {0: 5, 1: 5, 2: 6}
    val = FolderDataset(tree, "val", S)
    assert val.classes == ds.classes and sorted(l for _, l in val.samples) == [0, 0, 2]
    x, label = val[2]
    assert x.shape == (3, S, S) and x.dtype == torch.uint8 and label == 2
    with pytest.raises(FileNotFoundError, match="expected") as e:
        FolderDataset(tree, "test", S)
    assert str(tree / "test") in str(e.value)


def test_val_class_missing_from_train_is_an_error(tmp_path):
    root = make_tree(tmp_path / "d")
    (root / "val" / "durian").mkdir()
    _noise(20, 20, 0).save(root / "val" / "durian" / "x.png")
    with pytest.raises(ValueError, match="durian"):
        FolderDataset(root, "val", S)


def test_exclude_drops_the_files_named(tree):
    drop = ["train/apple/grey_L.png", os.path.join("train", "banana", "wide.BMP"), "train/none/x.png"]
    ds = FolderDataset(tree, "train", S, exclude=drop)
    paths = {os.path.relpath(p, tree).replace(os.sep, "/") for p, _ in ds.samples}
    assert len(ds) == N_GOOD_TRAIN + len(BAD) - 2 and ds.excluded == 2
    assert "train/apple/grey_L.png" not in paths and "train/banana/wide.BMP" not in paths
    assert "train/apple/cmyk.jpg" in paths


def test_getitem_warns_and_returns_none_for_bad_images(tree):
    ds = FolderDataset(tree, "train", S)
    i = next(i for i, (p, _) in enumerate(ds.samples) if p.endswith("corrupt.jpg"))
    with pytest.warns(BadImageWarning, match="corrupt.jpg"):
        img, label = ds[i]
    assert img is None and label == 2
    images, labels, skipped = collate_skip_bad([(None, 1), (torch.zeros(3, S, S, dtype=torch.uint8), 2)])
    assert images.shape == (1, 3, S, S) and labels.tolist() == [2] and labels.dtype == torch.int64
    assert skipped == 1
    images, labels, skipped = collate_skip_bad([(None, 1), (None, 0)])
    assert images is None and labels.shape == (0,) and skipped == 2


# --------------------------------------------------------------------------- pixel mean


def test_pixel_mean_matches_naive_mean_and_is_cached(tree, tmp_path, monkeypatch):
    ds = FolderDataset(tree, "train", S)
    good = []
    for p, _ in ds.samples:
        try:
            good.append(load_image(p, S).double())
        except BadImage:
            pass
    assert len(good) == N_GOOD_TRAIN
    naive = torch.stack(good).mean(0)
    cache = tmp_path / "cache" / "mean.pt"
    with pytest.warns(BadImageWarning):
        mean = pixel_mean(ds, cache, batch_size=4, progress=False)
    assert mean.shape == (3, S, S) and mean.dtype == torch.float32
    # integer sums are exact in float64 on both sides, the division rounds alike; the cast to
    # float32 rounds to nearest: within half an ulp, EPS32 / 2 relative
    torch.testing.assert_close(mean.double(), naive, rtol=EPS32 / 2, atol=0)
    assert os.listdir(cache.parent) == ["mean.pt"]                 # no temp file left behind
    mtime = cache.stat().st_mtime_ns

    def no_decoding(*a, **k):
        raise AssertionError("the cached mean should not read images")
    monkeypatch.setattr(folders, "load_image", no_decoding)
    again = pixel_mean(ds, cache, progress=False)
    assert torch.equal(again, mean) and cache.stat().st_mtime_ns == mtime


def test_corrupt_or_wrong_mean_cache_is_a_clear_error(tree, tmp_path):
    ds = FolderDataset(tree, "val", S)
    bad = tmp_path / "mean.pt"
    bad.write_bytes(b"this is not a tensor")
    with pytest.raises(ValueError, match="delete") as e:
        pixel_mean(ds, bad, progress=False)
    assert str(bad) in str(e.value)
    torch.save(torch.zeros(3, S + 1, S + 1), bad)
    with pytest.raises(ValueError, match="shape") as e:
        pixel_mean(ds, bad, progress=False)
    assert str(bad) in str(e.value) and "delete" in str(e.value)


def test_source_mean_comes_from_train_split(tree, tmp_path):
    cache = tmp_path / "m.pt"
    val = FolderSource(tree, "val", S, exclude=BAD, mean_cache=cache)
    m = val.mean()
    assert cache.exists() and m.shape == (3, S, S) and m.dtype == torch.float32
    train = FolderDataset(tree, "train", S, exclude=BAD)
    assert torch.equal(m, pixel_mean(train, progress=False))          # the same sums, the same bits
    given = FolderSource(tree, "val", S, mean=m)
    assert given.mean() is not None and torch.equal(given.mean(), m)
    with pytest.raises(ValueError, match="shape"):
        FolderSource(tree, "val", S, mean=torch.zeros(3, 4, 4))


# --------------------------------------------------------------------------- batches


def test_batches_skip_and_count_bad_images(tree):
    src = FolderSource(tree, "train", S, mean=torch.zeros(3, S, S))
    assert len(src) == N_GOOD_TRAIN + 3 and src.num_classes == 3 and src.stored_size == S
    with pytest.warns(BadImageWarning) as record:
        got = list(src.batches(4, shuffle=False))
    assert src.skipped == 3
    assert sum(len(l) for _, l in got) == N_GOOD_TRAIN
    for images, labels in got:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, S, S)
        assert labels.dtype == torch.int64 and labels.shape == (images.shape[0],)
    messages = [str(w.message) for w in record]
    assert "skipped 3 unreadable images of 16" in messages
    assert any("truncated.jpg" in m for m in messages)
    # batches of 2 in order: corrupt.jpg and empty.png share one, which is left out entirely
    with pytest.warns(BadImageWarning):
        got = list(src.batches(2, shuffle=False))
    assert sum(len(l) for _, l in got) == N_GOOD_TRAIN and len(got) == 7 and src.skipped == 6


def test_batch_order_is_seeded_and_split_across_ranks(tree):
    src = FolderSource(tree, "train", S, exclude=BAD, mean=torch.zeros(3, S, S))
    assert len(src) == N_GOOD_TRAIN
    kw = dict(batch_size=4, shuffle=True, seed=3, epoch=1)
    whole = _collect(src, **kw)
    assert [len(b) for b in whole] == [4, 4, 4]                    # drop_last when shuffling
    ranks = [_collect(src, **kw, rank=r, world=2) for r in range(2)]
    assert [len(b) for b in ranks[0]] == [2, 2, 2] and [len(b) for b in ranks[1]] == [2, 2, 2]
    for g, r0, r1 in zip(whole, *ranks):
        assert not set(r0) & set(r1)
        assert collections.Counter(r0 + r1) == collections.Counter(g)
    assert _collect(src, **kw) == whole                            # same seed and epoch, same order
    assert _collect(src, **{**kw, "epoch": 2}) != whole
    plain = _collect(src, batch_size=4, shuffle=False)             # no shuffle: all, in order
    assert [len(b) for b in plain] == [4, 4, 4, 1]
    labels = [l for b in plain for _, l in b]
    assert labels == sorted(labels)
    assert src.skipped == 0


def test_batch_indices():
    idx = folders._batch_indices(10, 4, shuffle=True, seed=0, epoch=0)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(10, generator=g).tolist()
    assert idx == [order[0:4], order[4:8]]
    assert folders._batch_indices(10, 4, shuffle=False, rank=1, world=3) == [[1], [5], [9]]
    assert folders._batch_indices(10, 4, shuffle=True, seed=1, epoch=0) != \
        folders._batch_indices(10, 4, shuffle=True, seed=0, epoch=1)
    with pytest.raises(ValueError):
        folders._batch_indices(10, 4, shuffle=False, rank=2, world=2)


def test_batches_with_workers_match(tree):
    one = FolderSource(tree, "val", S, mean=torch.zeros(3, S, S))
    two = FolderSource(tree, "val", S, workers=2, mean=torch.zeros(3, S, S))
    assert _collect(two, batch_size=2, shuffle=False) == _collect(one, batch_size=2, shuffle=False)


# --------------------------------------------------------------------------- symbolic links


def _walk_reference(top):
    """The old listing, for trees without links: os.walk top-down with sorted names."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if folders._is_image(f)]
    return out


def _png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    _noise(8, 8, seed).save(path)


def test_walk_order_without_links_is_os_walk_order(tmp_path):
    # "z.png" after "sub/" in full-path order but before it in walk order: the order is the walk's
    top = tmp_path / "c"
    for i, rel in enumerate(["z.png", "a.PNG", "sub/y.jpg", "sub/deeper/x.png", "sub2/w.png", "b c é.png",
                             ".hidden/h.png", "sub/.h.png"]):
        _png(top / rel, i)
    (top / "notes.txt").write_text("not an image")
    found, left_out = folders.find_images(top)
    assert found == _walk_reference(str(top)) and len(found) == 6 and left_out == []
    assert folders.find_images(top, recursive=False) == ([str(top / "a.PNG"), str(top / "b c é.png"),
                                                          str(top / "z.png")], [])


def test_folder_link_to_its_own_folder_counts_each_image_once(tmp_path):
    c = tmp_path / "data" / "train" / "cls"
    _png(c / "x.png")
    (c / "self").symlink_to(".")                     # the old walk listed x.png 41 times
    with pytest.warns(BadImageWarning, match="symlink loop"):
        ds = FolderDataset(tmp_path / "data", "train", S)
    assert [p for p, _ in ds.samples] == [str(c / "x.png")]
    assert [p for p, _ in ds.left_out] == [str(c / "self")]


def test_links_never_walk_a_folder_twice(tmp_path):
    """A folder link to its own folder (the old walk counted one image 41 times), to an ancestor,
    to a folder inside the tree, links out of the tree (followed once), file loops, broken links."""
    root = tmp_path / "data"
    c = root / "train" / "cls"
    _png(c / "real" / "r.png", 1)
    _png(c / "x.png", 2)
    outside = tmp_path / "outside"
    _png(outside / "o.png", 3)
    (outside / "back").symlink_to(c)                 # from outside back into the tree
    (outside / "self").symlink_to(outside)
    (c / "self").symlink_to(".")
    (c / "up").symlink_to("..")
    (c / "alias").symlink_to("real")                 # sorts before real/: real/ still walked as itself
    (c / "out1").symlink_to(outside)
    (c / "out2").symlink_to(outside)                 # the same outside folder again
    (c / "a.jpg").symlink_to("b.jpg")
    (c / "b.jpg").symlink_to("a.jpg")
    (c / "gone.png").symlink_to("nothing-here.png")
    (c / "gone_dir").symlink_to("no-such-folder")
    (c / "link.png").symlink_to("x.png")             # a link to a file is followed
    with pytest.warns(BadImageWarning, match="left out"):
        ds = FolderDataset(root, "train", S)
    got = [p for p, _ in ds.samples]
    assert got == [str(c / "link.png"), str(c / "x.png"), str(c / "out1" / "o.png"),
                   str(c / "real" / "r.png")]
    reasons = dict(ds.left_out)
    assert "symlink loop" in reasons[str(c / "a.jpg")] and "symlink loop" in reasons[str(c / "b.jpg")]
    assert "broken symlink" in reasons[str(c / "gone.png")] and "nothing-here.png" in reasons[str(c / "gone.png")]
    assert "broken symlink" in reasons[str(c / "gone_dir")]
    assert "symlink loop" in reasons[str(c / "self")] and "symlink loop" in reasons[str(c / "up")]
    assert "symlink loop" in reasons[str(c / "out1" / "self")]
    assert "inside the folder walked" in reasons[str(c / "alias")]
    assert "symlink loop" in reasons[str(c / "out1" / "back")]
    assert "already walked as" in reasons[str(c / "out2")] and str(c / "out1") in reasons[str(c / "out2")]
    assert sorted(reasons) == sorted(str(c / n) for n in (
        "a.jpg", "b.jpg", "gone.png", "gone_dir", "self", "up", "alias", "out1/self", "out1/back", "out2"))
    assert len(ds.left_out) == len(reasons)
    assert ds[0][0] is not None and ds[3][0] is not None
    check_layout(root)


def test_class_folder_links_that_loop_are_not_classes(tmp_path):
    root = tmp_path / "data"
    _png(root / "train" / "a" / "1.png", 1)
    _png(root / "val" / "a" / "2.png", 2)
    (root / "train" / "b").symlink_to("a")           # a sibling: a class of its own, as before
    (root / "train" / "loop").symlink_to(".")        # the split itself: every image again
    (root / "train" / "up").symlink_to("..")
    (root / "train" / "x").symlink_to("y")
    (root / "train" / "y").symlink_to("x")
    (root / "val" / "loop").symlink_to(".")
    with pytest.warns(BadImageWarning, match="left out"):
        ds = FolderDataset(root, "train", S)
    assert ds.classes == ["a", "b"] and len(ds) == 2
    assert sorted(os.path.basename(p) for p, _ in ds.left_out) == ["loop", "up", "x", "y"]
    with pytest.warns(BadImageWarning, match="left out"):
        val = FolderDataset(root, "val", S)
    assert [(os.path.basename(p), label) for p, label in val.samples] == [("2.png", 0)]
    assert [os.path.basename(p) for p, _ in val.left_out] == ["loop"]
    check_layout(root)
