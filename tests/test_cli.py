"""``zf mine`` and ``zf project`` on a user's model and images (zfcore.usermodel, zfcore.cli).

A one-epoch tiny run stands for "your checkpoint", torchvision's AlexNet with random
weights (``weights=None``, never downloaded) for a torchvision state dict.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tolerance import EPS32
from zfcore.cli import main
from zfcore.data.folders import load_image

N_IMAGES = 12


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_checkpoint):
    """A tiny run (conftest's tiny_checkpoint) and a folder of 12 PNGs of varied sizes plus a corrupt one."""
    root = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root))
    mp.setenv("ZF_PROGRESS", "0")
    from zfcore.data.scenes import load_scenes
    (root / "run").mkdir()
    shutil.copy(tiny_checkpoint, root / "run" / "final.pt")
    ds = load_scenes("tiny", "val", progress=False)
    folder = root / "images"
    folder.mkdir()
    for i in range(N_IMAGES):
        im = Image.fromarray(ds.images[i])
        im.resize((55 + 9 * i, 55 + 5 * (i % 3))).save(folder / f"img{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (folder / "notes.txt").write_text("not an image, ignored")
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def alexnet_weights(tmp_path_factory):
    import torchvision
    d = tmp_path_factory.mktemp("alexnet")
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    path = d / "alexnet.pt"
    torch.save(state, path)
    # small fakes: only the features (10 MB), one with a wrong shape
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save(feats, d / "missing.pt")
    bad = dict(feats)
    bad["features.0.weight"] = torch.zeros(64, 3, 3, 3)        # VGG's first conv
    torch.save(bad, d / "wrong_shape.pt")
    (d / "corrupt.pt").write_bytes(path.read_bytes()[:5000])
    folder = d / "images"
    folder.mkdir()
    for i in range(3):
        a = np.random.default_rng(i).integers(0, 256, (300 + 20 * i, 260, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"noise{i}.png")
    return d


def _ours_images(work):
    """The readable images as zf mine loads them: sorted names, stored at 55 px."""
    names = sorted(p.name for p in (work / "images").glob("img*.png"))
    imgs = torch.stack([load_image(work / "images" / n, 55) for n in names])
    return names, imgs


class _Source:
    """A plain uint8 source, for mining directly."""

    skipped = 0

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def batches(self, batch_size, *, shuffle=False, rank=0, world=1, **_):
        for s in range(0, len(self.images), batch_size):
            xb = self.images[s:s + batch_size]
            yield xb, torch.zeros(len(xb), dtype=torch.int64)


# --------------------------------------------------------------------------- ours

def test_mine_ours_matches_direct_mining(work, capsys):
    from zfcore.fields import receptive_fields
    from zfcore.mining import mine
    from zfcore.runs import load_model
    out = work / "mined"
    rc = main(["mine", "--arch", "zf", "--weights", str(work / "run" / "final.pt"),
               "--images", str(work / "images"), "--out", str(out), "--maps", "3", "--quiet",
               "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "broken.png" in err
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    for layer in layers:
        png = out / f"{layer}.png"
        assert png.is_file() and Image.open(png).size[0] > 50
    skipped = json.loads((out / "skipped.json").read_text())
    assert [s["file"] for s in skipped] == ["broken.png"] and skipped[0]["reason"]
    report = json.loads((out / "topk.json").read_text())
    assert report["num_images"] == N_IMAGES and report["k"] == 9 and report["image_size"] == 48
    assert list(report["layers"]) == layers

    model, ckpt = load_model(work / "run" / "final.pt")
    names, imgs = _ours_images(work)
    # the same images in the same batches of 64 (zf mine's default): the same kernels, the same bits
    direct = mine(model, _Source(imgs), ckpt["mean"], 48, k=9, batch_size=64, progress=False)
    for layer in layers:
        rep, t = report["layers"][layer], direct[layer]
        assert rep["num_maps"] == t.num_maps == len(rep["maps"])
        assert rep["drawn"] == [0, 1, 2]
        for m, row in enumerate(rep["maps"]):
            assert row["map"] == m and len(row["entries"]) == 9
            assert [e["index"] for e in row["entries"]] == t.images[m].tolist()
            assert [e["image"] for e in row["entries"]] == [names[i] for i in t.images[m].tolist()]
            assert [e["position"] for e in row["entries"]] == t.positions[m].tolist()
            assert [e["value"] for e in row["entries"]] == t.values[m].tolist()
        boxes = receptive_fields(model, layer, t.positions.reshape(-1, 2), 48).view(t.num_maps, 9, 4)
        assert [e["box"] for e in rep["maps"][0]["entries"]] == boxes[0].tolist()
        for e in rep["maps"][-1]["entries"]:
            y0, y1, x0, x1 = e["box"]
            assert 0 <= y0 < y1 <= 48 and 0 <= x0 < x1 <= 48


def test_project_ours_agrees_with_layer_activations(work, capsys):
    from zfcore.data.transforms import center_crop
    from zfcore.activations import layer_activations
    from zfcore.runs import load_model
    out = work / "projected"
    weights = str(work / "run" / "final.pt")
    image = work / "images" / "img04.png"
    rc = main(["project", "--arch", "zf", "--weights", weights, "--image", str(image),
               "--layer", "conv5", "--top", "4", "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "img04_conv5.png").is_file()
    rep = json.loads((out / "img04_conv5.json").read_text())
    model, ckpt = load_model(weights)
    x = center_crop(load_image(image, 55)[None].float() - ckpt["mean"], 48)
    act = layer_activations(model, x, "conv5")["conv5"][0]
    strength = act.flatten(1).amax(1)
    expected = torch.sort(strength, descending=True, stable=True).indices[:4].tolist()
    assert rep["maps"] == expected
    # the values and positions come from one walk of the image repeated once per map (a batch of
    # 4, whose kernels may round otherwise than a batch of 1): the same walk here gives the same bits
    act4 = layer_activations(model, x.expand(4, -1, -1, -1), "conv5")["conv5"]
    assert rep["values"] == [float(act4[i, m].max()) for i, m in enumerate(expected)]
    for i, (m, (y, xx)) in enumerate(zip(rep["maps"], rep["positions"])):
        assert float(act4[i, m, y, xx]) == rep["values"][i]
    assert len(rep["boxes"]) == 4

    rc = main(["project", "--arch", "zf", "--weights", weights, "--image", str(image),
               "--layer", "conv2", "--feature", "5", "--method", "guided", "--out", str(out),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "img04_conv2.json").read_text())
    assert rep["maps"] == [5] and rep["method"] == "guided" and len(rep["values"]) == 1


def test_load_folder_and_preprocess(work):
    from zfcore.usermodel import load_folder, load_user_model
    um = load_user_model("ours", work / "run" / "final.pt")
    assert (um.name, um.image_size, um.stored_size) == ("zfnet checkpoint", 48, 55)
    with pytest.warns(UserWarning, match="broken.png"):
        images, names, skipped = load_folder(work / "images", um.stored_size)
    assert images.shape == (N_IMAGES, 55, 55, 3) and images.dtype == np.uint8
    assert names == [f"img{i:02d}.png" for i in range(N_IMAGES)]
    assert [s for s, _ in skipped] == ["broken.png"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert um.preprocess(x).shape == (N_IMAGES, 3, 48, 48)
    assert um.display_crop(x).dtype == torch.uint8 and um.display_crop(x).shape[-1] == 48


# --------------------------------------------------------------------------- torchvision

def test_torchvision_preprocess(alexnet_weights):
    from zfcore.usermodel import IMAGENET_MEAN, IMAGENET_STD, load_user_model
    um = load_user_model("alexnet", alexnet_weights / "alexnet.pt")
    assert (um.name, um.image_size, um.stored_size, um.classes) == ("alexnet", 224, 256, None)
    x = torch.full((1, 3, 256, 256), 51, dtype=torch.uint8)
    y = um.preprocess(x)
    assert y.shape == (1, 3, 224, 224)
    for c in range(3):
        # float32: 51 / 255, the mean and the std each rounded (half an ulp), then a subtraction
        # and a division (half an ulp each): relative to the result, the two operands' roundings
        # grow by (|x| + |m|) / |x - m|
        m, sd = IMAGENET_MEAN[c], IMAGENET_STD[c]
        rel = EPS32 / 2 * ((0.2 + m) / abs(0.2 - m) * 2 + 3)
        assert float(y[0, c, 0, 0]) == pytest.approx((0.2 - m) / sd, rel=rel, abs=0)


def test_project_alexnet(alexnet_weights, capsys):
    out = alexnet_weights / "projected"
    rc = main(["project", "--arch", "alexnet", "--weights", str(alexnet_weights / "alexnet.pt"),
               "--image", str(alexnet_weights / "images" / "noise0.png"), "--layer", "features.10",
               "--top", "3", "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "noise0_features.10.json").read_text())
    assert rep["image_size"] == 224 and len(rep["maps"]) == 3
    assert rep["values"] == sorted(rep["values"], reverse=True)
    assert Image.open(out / "noise0_features.10.png").size[1] >= 224


def test_mine_alexnet(alexnet_weights, capsys):
    out = alexnet_weights / "mined"
    rc = main(["mine", "--arch", "alexnet", "--weights", str(alexnet_weights / "alexnet.pt"),
               "--images", str(alexnet_weights / "images"), "--out", str(out), "--layers", "features.0",
               "--maps", "4", "--quiet", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "features.0.png").is_file() and not (out / "skipped.json").exists()
    rep = json.loads((out / "topk.json").read_text())
    layer = rep["layers"]["features.0"]
    assert rep["image_size"] == 224 and layer["num_maps"] == 64 and layer["drawn"] == [0, 1, 2, 3]
    for row in layer["maps"]:
        assert len(row["entries"]) == 3          # k = 9, but only 3 images
        assert sorted(e["image"] for e in row["entries"]) == ["noise0.png", "noise1.png", "noise2.png"]
        for e in row["entries"]:
            y0, y1, x0, x1 = e["box"]
            assert 0 <= y0 < y1 <= 224 and 0 <= x0 < x1 <= 224 and y1 - y0 <= 11


# --------------------------------------------------------------------------- errors

def _error(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"zf {argv[0]}: error: ")
    return err


def test_errors(work, alexnet_weights, capsys, tmp_path):
    w = str(work / "run" / "final.pt")
    a = alexnet_weights
    imgs = str(work / "images")
    mine = ["mine", "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu"]

    err = _error(mine + ["--arch", "resnet50x", "--weights", w, "--images", imgs], capsys)
    assert "resnet50x" in err and "alexnet" in err and "vgg16" in err
    err = _error(mine + ["--arch", "resnet18", "--weights", w, "--images", imgs], capsys)
    assert "BatchNorm2d" in err

    err = _error(mine + ["--arch", "alexnet", "--weights", str(a / "wrong_shape.pt"), "--images", imgs],
                 capsys)
    assert "wrong_shape.pt" in err and "alexnet" in err and "features.0.weight" in err
    err = _error(mine + ["--arch", "alexnet", "--weights", str(a / "missing.pt"), "--images", imgs], capsys)
    assert "missing.pt" in err and "missing keys" in err and "classifier.1.weight" in err
    err = _error(mine + ["--arch", "alexnet", "--weights", str(a / "corrupt.pt"), "--images", imgs], capsys)
    assert "corrupt.pt" in err and "not a readable" in err
    err = _error(mine + ["--arch", "alexnet", "--weights", str(a / "nope.pt"), "--images", imgs], capsys)
    assert "nope.pt" in err and "does not exist" in err
    err = _error(mine + ["--arch", "alexnet", "--weights", w, "--images", imgs], capsys)
    assert "zfcore checkpoint" in err and "--arch zf" in err
    err = _error(mine + ["--arch", "zf", "--weights", str(a / "alexnet.pt"), "--images", imgs], capsys)
    assert "alexnet.pt" in err and "not a zfcore checkpoint" in err

    err = _error(mine + ["--arch", "zf", "--weights", w, "--images", str(tmp_path / "absent")], capsys)
    assert "absent" in err and "does not exist" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    err = _error(mine + ["--arch", "zf", "--weights", w, "--images", str(tmp_path / "empty")], capsys)
    assert "empty" in err and "no images" in err

    err = _error(mine + ["--arch", "zf", "--weights", w, "--images", imgs, "--layers", "conv1,conv9"], capsys)
    assert "conv9" in err and "conv5" in err
    err = _error(mine + ["--arch", "zf", "--weights", w, "--images", imgs, "--layers", "fc6"], capsys)
    assert "fc6" in err and "feature maps" in err

    proj = ["project", "--arch", "zf", "--weights", w, "--out", str(tmp_path / "p"), "--device", "cpu"]
    err = _error(proj + ["--image", str(work / "images" / "img00.png"), "--layer", "conv7"], capsys)
    assert "conv7" in err and "conv5" in err
    err = _error(proj + ["--image", str(work / "images" / "img00.png"), "--layer", "conv1",
                         "--feature", "9999"], capsys)
    assert "9999" in err and "out of range" in err
    err = _error(proj + ["--image", str(work / "images" / "broken.png"), "--layer", "conv1"], capsys)
    assert "broken.png" in err
    err = _error(proj + ["--image", str(tmp_path / "gone.png"), "--layer", "conv1"], capsys)
    assert "gone.png" in err and "does not exist" in err


def test_console_script_exit_code(work, tmp_path):
    """The installed ``zf`` (or ``python -m zfcore.cli``) exits with 2 and a clear message."""
    env = dict(os.environ, ZF_ARTIFACTS=str(work), ZF_PROGRESS="0")
    exe = Path(sys.executable).parent / "zf"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "zfcore.cli"]
    r = subprocess.run(cmd + ["mine", "--arch", "zf", "--weights", str(work / "run" / "final.pt"),
                              "--images", str(tmp_path / "absent"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2
    assert "zf mine: error:" in r.stderr and "absent" in r.stderr


# --------------------------------------------------------------------------- zf occlude (Fig. 7)

def _check_npz(npz_path, model, x, **kw):
    """The npz ``zf occlude`` wrote equals zfcore.occlusion.sensitivity on the same input."""
    from zfcore.occlusion import sensitivity
    d = np.load(npz_path)
    r = sensitivity(model, x, int(d["size"]), int(d["stride"]), fill=float(d["fill"]), **kw)
    assert d["ys"].tolist() == r.ys and d["xs"].tolist() == r.xs
    assert (int(d["target"]), str(d["layer"]), int(d["feature"])) == (r.target, r.layer, r.feature)
    # the same model, input, batch size and engine: the same kernels, the same bits
    np.testing.assert_array_equal(d["prob"], r.prob.numpy())
    np.testing.assert_array_equal(d["activity"], r.activity.numpy())
    np.testing.assert_array_equal(d["top_class"], r.top_class.numpy())
    np.testing.assert_array_equal(d["projection"], r.projection.numpy())
    assert float(d["unoccluded_prob"]) == r.unoccluded_prob
    assert float(d["unoccluded_activity"]) == r.unoccluded_activity
    assert d["prob"].shape == d["activity"].shape == d["top_class"].shape == (len(r.ys), len(r.xs))
    return d


def _png_ok(path, min_width=400):
    with Image.open(path) as im:
        im.load()
        assert im.size[0] >= min_width


def test_occlude_ours_matches_sensitivity(work, capsys):
    from zfcore.data.transforms import center_crop
    from zfcore.runs import load_model
    weights = str(work / "run" / "final.pt")
    out = work / "occluded"
    images = [work / "images" / "img00.png", work / "images" / "img05.png"]
    rc = main(["occlude", *map(str, images), "--arch", "zf", "--weights", weights, "--out", str(out),
               "--size", "16", "--stride", "8", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    model, ckpt = load_model(weights)
    for image in images:
        x = center_crop(load_image(image, 55)[None].float() - ckpt["mean"], 48)
        d = _check_npz(out / f"{image.stem}_occlusion.npz", model, x)
        assert (int(d["size"]), int(d["stride"])) == (16, 8) and d["ys"].tolist() == [0, 8, 16, 24, 32]
        assert str(d["layer"]) == "conv5" and d["projection"].shape == (3, 48, 48)
        assert list(d["class_names"]) == ckpt["classes"]
        _png_ok(out / f"{image.stem}_occlusion.png")
        assert f"{image.name}: target {ckpt['classes'][int(d['target'])]}" in captured.out
    assert "lowest" in captured.out and not list(out.glob(".*tmp*"))

    # the defaults (a quarter of the 48 px crop, stride 48 / 28), a chosen target, layer and map
    rc = main(["occlude", str(images[0]), "--arch", "zf", "--weights", weights, "--out", str(out),
               "--target", "3", "--layer", "conv3", "--feature", "5", "--fill", "0.5", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    x = center_crop(load_image(images[0], 55)[None].float() - ckpt["mean"], 48)
    d = _check_npz(out / "img00_occlusion.npz", model, x, target=3, layer="conv3", feature=5)
    assert (int(d["size"]), int(d["stride"]), float(d["fill"])) == (12, 2, 0.5)
    assert (int(d["target"]), str(d["layer"]), int(d["feature"])) == (3, "conv3", 5)


def test_occlude_alexnet(alexnet_weights, capsys):
    from zfcore.usermodel import load_user_model
    a = alexnet_weights
    out = a / "occluded"
    image = a / "images" / "noise1.png"
    rc = main(["occlude", str(image), "--arch", "alexnet", "--weights", str(a / "alexnet.pt"),
               "--out", str(out), "--size", "112", "--stride", "56", "--layer", "features.3",
               "--target", "tabby", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    um = load_user_model("alexnet", a / "alexnet.pt")
    x = um.preprocess(load_image(image, 256)[None])
    d = _check_npz(out / "noise1_occlusion.npz", um.model, x, target=281, layer="features.3")
    assert d["ys"].tolist() == d["xs"].tolist() == [0, 56, 112]
    assert int(d["target"]) == 281 and str(d["class_names"][281]) == "tabby"
    assert d["projection"].shape == (3, 224, 224)
    _png_ok(out / "noise1_occlusion.png")
    assert "target tabby (class 281)" in captured.out


def test_atomic_write_keeps_the_old_file(tmp_path):
    from zfcore.artifacts import atomic_write
    path = tmp_path / "a.npz"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_occlude_errors(work, capsys, tmp_path):
    w = str(work / "run" / "final.pt")
    img = str(work / "images" / "img01.png")
    out = tmp_path / "o"
    out.mkdir()
    kept = out / "img01_occlusion.png"
    kept.write_bytes(b"an earlier result")
    occ = ["occlude", "--arch", "zf", "--weights", w, "--out", str(out), "--size", "16", "--stride", "8",
           "--device", "cpu"]

    err = _error(occ + [str(tmp_path / "gone.png")], capsys)
    assert "gone.png" in err and "does not exist" in err
    # a corrupt image alone: nothing is computed, nothing written (with good ones: tests/test_odd_files.py)
    err = _error(occ + [str(work / "images" / "broken.png")], capsys)
    assert "broken.png" in err and "cannot identify image file" in err
    err = _error(occ + [img, "--size", "49"], capsys)
    assert "--size 49" in err and "48x48" in err and "larger" in err
    err = _error(occ + [img, "--stride", "0"], capsys)
    assert "--stride must be at least 1, got 0" in err
    err = _error(occ + [img, "--size", "-3"], capsys)
    assert "--size must be at least 1" in err
    for bad in ("nan", "inf", "-inf"):              # refused before anything is loaded or written
        fresh = tmp_path / f"fill-{bad}"
        err = _error(occ[:6] + [str(fresh)] + occ[7:] + [img, f"--fill={bad}"], capsys)
        assert "--fill must be a finite number" in err and not fresh.exists()
    err = _error(occ + [img, "--target", "10"], capsys)
    assert "target 10" in err and "out of range" in err and "10 classes" in err
    err = _error(occ + [img, "--target", "zebra"], capsys)
    assert "zebra" in err and "not a class index" in err
    err = _error(occ + [img, "--layer", "conv9"], capsys)
    assert "conv9" in err and "conv5" in err
    err = _error(occ + [img, "--layer", "conv1", "--feature", "9999"], capsys)
    assert "9999" in err and "out of range" in err
    (tmp_path / "b").mkdir()
    Image.open(img).save(tmp_path / "b" / "img01.png")
    err = _error(occ + [img, str(tmp_path / "b" / "img01.png")], capsys)
    assert "img01_occlusion" in err
    err = _error(["occlude", img, "--out", str(out), "--scale", "tiny"], capsys)   # no run in the cache
    assert "no trained tiny run" in err and "zf train --scale tiny" in err
    err = _error(["occlude", img, "--out", str(out), "--arch", "alexnet"], capsys)
    assert "needs --weights" in err
    err = _error(["occlude", img, "--out", str(out)], capsys)
    assert "--weights" in err and "--scale" in err
    assert kept.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["img01_occlusion.png"]
