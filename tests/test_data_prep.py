"""data_prep: the full scale's archives to what zfcore reads, on small fake archives built here.

Each fake archive carries bad files (truncated, empty, not an image) that must be
reported and skipped, and odd ones (CMYK JPEG, greyscale PNG named .JPEG) that
must be re-encoded as RGB JPEGs. Every script must be resumable (a rerun does no
work and changes no file; a unit left half-done is redone to the same bytes)
and must fail clearly on a missing or unreadable archive.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # data_prep lives at the repository root, beside zfcore
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from data_prep import caltech, common, imagenet, overlap, pascal  # noqa: E402
from tolerance import EPS32, gamma  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_and_private(monkeypatch, tmp_path):
    monkeypatch.setenv("ZF_PROGRESS", "0")
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path / "artifacts"))


# --------------------------------------------------------------------------- fake images and archives


def photo(seed: int, w: int = 64, h: int = 48) -> Image.Image:
    """A distinct, photo-like RGB image: smooth colour fields at two scales and a bright disc."""
    rng = np.random.default_rng(seed)
    coarse = np.asarray(Image.fromarray(np.uint8(rng.integers(0, 256, (4, 4, 3)))).resize((w, h), Image.BICUBIC),
                        np.float32)
    fine = np.asarray(Image.fromarray(np.uint8(rng.integers(0, 256, (12, 12, 3)))).resize((w, h), Image.BICUBIC),
                      np.float32)
    a = 0.6 * coarse + 0.4 * fine
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.3) * min(w, h)
    a[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    return Image.fromarray(np.uint8(np.clip(a, 0, 255)), "RGB")


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" and not kw else kw))
    return buf.getvalue()


def truncated(seed: int) -> bytes:
    data = encode(photo(seed))
    return data[: len(data) // 2]


def tar_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    write_tar(buf, files)
    return buf.getvalue()


def write_tar(target, files: dict, mode: str = "w") -> None:
    """A tar of {name: bytes} (target a path or a file object)."""
    kw = {"fileobj": target} if hasattr(target, "write") else {"name": str(target)}
    with tarfile.open(mode=mode, **kw) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))


def tree(root: Path, mtimes: bool = False) -> dict:
    """{relative path: sha256 (and mtime)} of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256(p.read_bytes()).hexdigest()
            out[p.relative_to(root).as_posix()] = (h, p.stat().st_mtime_ns) if mtimes else h
    return out


WNIDS = ["n01440764", "n01443537", "n01484850"]
#: ILSVRC2012_ID -> wnid of the fake devkit: on purpose not in wnid order, as in the real one.
IDS = {1: "n01484850", 2: "n01440764", 3: "n01443537"}
GROUND_TRUTH = [2, 3, 1, 2, 1, 3]  # val image i+1 -> ILSVRC2012_ID


def meta_mat(ids: dict) -> bytes:
    """A devkit meta.mat with the real one's structure: a 'synsets' struct array."""
    import scipy.io
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i, w, f"class {w}", 0, []) for i, w in ids.items()] + [(1001, "n00001740", "entity", 3, [1, 2, 3])]
    table = np.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
    for k, (i, w, words, nc, children) in enumerate(rows):
        table[k, 0] = (np.array([[float(i)]]), w, words, "a gloss", np.array([[float(nc)]]),
                       np.array(children, dtype=float).reshape(1, -1), np.array([[0.0]]), np.array([[1300.0]]))
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": table})
    return buf.getvalue()


def make_imagenet(d: Path) -> dict:
    """ILSVRC2012_img_train.tar (3 per-class tars), ILSVRC2012_img_val.tar (6 JPEGs), the devkit."""
    d.mkdir(parents=True, exist_ok=True)
    src = {}
    inner = {}
    for k, w in enumerate(WNIDS):
        files = {f"{w}_{i}.JPEG": encode(photo(100 * k + i, 60 + 7 * i, 45 + 5 * k)) for i in range(3)}
        src.update({f"train/{w}/{n}": b for n, b in files.items()})
        inner[w] = files
    inner[WNIDS[0]][f"{WNIDS[0]}_9.JPEG"] = truncated(9)                              # bad
    inner[WNIDS[1]][f"{WNIDS[1]}_8.JPEG"] = b""                                       # bad: empty
    inner[WNIDS[1]][f"{WNIDS[1]}_7.JPEG"] = encode(photo(7).convert("CMYK"))          # odd: CMYK
    inner[WNIDS[2]][f"{WNIDS[2]}_6.JPEG"] = encode(photo(6).convert("L"), "PNG")      # odd: PNG named .JPEG
    grey = encode(photo(5).convert("L"))
    inner[WNIDS[2]][f"{WNIDS[2]}_5.JPEG"] = grey                                      # grey JPEG: kept
    src[f"train/{WNIDS[2]}/{WNIDS[2]}_5.JPEG"] = grey
    inner[WNIDS[2]]["README.txt"] = b"not an image\n"                                 # bad: not an image
    outer = {f"{w}.tar": tar_bytes(files) for w, files in inner.items()}
    outer["LICENSE.txt"] = b"a stray file in the outer tar\n"                          # ignored
    write_tar(d / "ILSVRC2012_img_train.tar", outer)
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": encode(photo(1000 + i, 50, 40)) for i in range(1, 7)}
    val["ILSVRC2012_val_00000004.JPEG"] = truncated(4)                               # bad
    write_tar(d / "ILSVRC2012_img_val.tar", val)
    write_tar(d / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": meta_mat(IDS),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
            "".join(f"{i}\n" for i in GROUND_TRUTH).encode(),
        "ILSVRC2012_devkit_t12/readme.txt": b"devkit\n"}, mode="w:gz")
    return {"train": d / "ILSVRC2012_img_train.tar", "val": d / "ILSVRC2012_img_val.tar",
            "devkit": d / "ILSVRC2012_devkit_t12.tar.gz", "src": src}


@pytest.fixture
def inet(tmp_path):
    return make_imagenet(tmp_path / "archives")


def inet_args(a: dict, out: Path, *extra) -> list:
    return ["--train-tar", str(a["train"]), "--val-tar", str(a["val"]), "--devkit", str(a["devkit"]),
            "--out", str(out), "--workers", "0", *extra]


# --------------------------------------------------------------------------- ImageNet


def test_imagenet_archives_to_zfcore_layout(inet, tmp_path, capsys):
    from zfcore.data.folders import FolderDataset, pixel_mean
    from zfcore.presets import get_preset
    from zfcore.train import make_sources
    out = tmp_path / "imagenet"
    assert imagenet.main(inet_args(inet, out)) == 0
    cap = capsys.readouterr()
    s = json.loads((out / "imagenet_prep.json").read_text())

    # train: 12 readable images; the 3 bad files reported and skipped; 2 odd ones re-encoded
    t = s["train"]
    assert (t["classes"], t["images"]) == (3, 12)
    assert {p for p, _ in t["bad"]} == {f"train/{WNIDS[0]}/{WNIDS[0]}_9.JPEG", f"train/{WNIDS[1]}/{WNIDS[1]}_8.JPEG",
                                         f"train/{WNIDS[2]}/README.txt"}
    assert dict(t["bad"])[f"train/{WNIDS[1]}/{WNIDS[1]}_8.JPEG"] == "empty file (0 bytes)"
    assert "truncated" in dict(t["bad"])[f"train/{WNIDS[0]}/{WNIDS[0]}_9.JPEG"]
    assert dict(t["converted"]) == {f"train/{WNIDS[1]}/{WNIDS[1]}_7.JPEG": "JPEG CMYK",
                                    f"train/{WNIDS[2]}/{WNIDS[2]}_6.JPEG": "PNG L"}
    assert [p for p, _ in t["ignored"]] == ["LICENSE.txt"]
    for w in WNIDS:
        names = sorted(os.listdir(out / "train" / w))
        assert all(n.endswith(".JPEG") for n in names) and "README.txt" not in names
    for rel, data in inet["src"].items():  # good files (the grey JPEG too) are copied byte for byte
        assert (out / rel).read_bytes() == data
    for rel, _ in t["converted"]:
        with Image.open(out / rel) as im:
            assert (im.format, im.mode) == ("JPEG", "RGB")

    # counts: found against expected; the real archive's counts are the defaults, so this is a warning
    assert t["expected_images"] == 1_281_167 and t["complete"] is False
    assert "found 12 images in 3 classes, expected 1,281,167 in 1,000" in cap.err
    assert "INCOMPLETE" in cap.out

    # val: filed by the devkit's ground truth (IDs -> wnids through meta.mat), the truncated one skipped
    v = s["val"]
    assert v["images"] == 5 and [p for p, _ in v["bad"]] == [f"val/{IDS[2]}/ILSVRC2012_val_00000004.JPEG"]
    for i, gid in enumerate(GROUND_TRUTH, start=1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        assert (out / "val" / IDS[gid] / name).is_file() == (i != 4)
    assert v["per_class"] == {"n01440764": 1, "n01443537": 2, "n01484850": 2}
    assert [x["wnid"] for x in json.loads((out / "synsets.json").read_text())] == sorted(WNIDS)

    # the layout is zfcore's: FolderDataset reads it, labels from sorted wnids
    train, val = FolderDataset(out, "train", 32), FolderDataset(out, "val", 32)
    assert (len(train), len(val), train.classes) == (12, 5, WNIDS)

    # the per-pixel mean is zfcore's pixel_mean, saved, and placed where `zf train --scale imagenet` reads it
    mean = torch.load(out / "pixel_mean_256.pt", weights_only=True)
    assert torch.equal(mean, pixel_mean(FolderDataset(out, "train", 256), progress=False))
    tr, _ = make_sources(get_preset("imagenet"), out)
    assert Path(tr.mean_cache) == imagenet.zfcore_mean_cache(out, 256)
    assert torch.equal(torch.load(tr.mean_cache, weights_only=True), mean)

    # matching expected counts: complete, no warning
    capsys.readouterr()
    assert imagenet.main(inet_args(inet, out, "--expect-train", "12", "--expect-val", "5",
                                   "--expect-classes", "3")) == 0
    s = json.loads((out / "imagenet_prep.json").read_text())
    assert s["train"]["complete"] and s["val"]["complete"] and s["warnings"] == []
    assert "warning" not in capsys.readouterr().err


def test_imagenet_resumes_and_is_idempotent(inet, tmp_path, capsys):
    out = tmp_path / "imagenet"
    assert imagenet.main(inet_args(inet, out)) == 0
    first = tree(out, mtimes=True)
    capsys.readouterr()

    # a second run does no work and touches no file
    assert imagenet.main(inet_args(inet, out)) == 0
    text = capsys.readouterr().out
    assert "this run prepared 0 classes, 3 were done" in text and "already done" in text and "(kept)" in text
    assert tree(out, mtimes=True) == first

    # an interrupted run: one class lost its marker and an image, a killed worker left a staging folder,
    # and the validation set was never marked done; the rerun redoes exactly those, to the same bytes
    victim = WNIDS[1]
    (out / ".data_prep" / "done" / "train" / f"{victim}.json").unlink()
    (out / "train" / victim / f"{victim}_0.JPEG").unlink()
    junk = out / ".data_prep" / "staging" / "train" / victim
    junk.mkdir(parents=True)
    (junk / "half_written.JPEG").write_bytes(b"\xff\xd8")
    (out / ".data_prep" / "done" / "val.json").unlink()
    assert imagenet.main(inet_args(inet, out)) == 0
    text = capsys.readouterr().out
    assert "this run prepared 1 classes, 2 were done" in text and "prepared this run" in text
    assert "(computed)" in text  # a redone class makes the mean stale: recomputed
    assert tree(out) == {k: h for k, (h, _) in first.items()}
    assert not any((out / ".data_prep" / "staging").rglob("*.JPEG"))

    # worker processes give the same bytes as one process
    out2 = tmp_path / "imagenet2"
    assert imagenet.main(inet_args(inet, out2)[:-2] + ["--workers", "2"]) == 0
    assert tree(out2) == tree(out)


def test_imagenet_fails_clearly(inet, tmp_path, capsys):
    out = tmp_path / "o"
    missing = tmp_path / "nowhere" / "ILSVRC2012_img_train.tar"
    assert imagenet.main(["--train-tar", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: the ImageNet training archive" in err and "not found" in err and str(missing) in err

    not_tar = tmp_path / "ILSVRC2012_img_val.tar"
    not_tar.write_bytes(b"this is not a tar archive" * 100)
    assert imagenet.main(["--val-tar", str(not_tar), "--devkit", str(inet["devkit"]), "--out", str(out)]) == 2
    assert "not a tar archive" in capsys.readouterr().err

    assert imagenet.main(["--val-tar", str(inet["val"]), "--out", str(out)]) == 2
    assert "needs --devkit" in capsys.readouterr().err

    no_meta = tmp_path / "devkit.tar.gz"
    write_tar(no_meta, {"ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": b"1\n"}, "w:gz")
    assert imagenet.main(["--val-tar", str(inet["val"]), "--devkit", str(no_meta), "--out", str(out)]) == 2
    assert "has no data/meta.mat" in capsys.readouterr().err

    unreadable = tmp_path / "locked.tar"
    unreadable.write_bytes(tar_bytes({"a.tar": b""}))
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):  # root reads anything
        assert imagenet.main(["--train-tar", str(unreadable), "--out", str(out)]) == 2
        assert "not readable" in capsys.readouterr().err

    # a damaged per-class tar fails that class only (exit 1, named; unmarked, so a rerun retries it)
    damaged = tmp_path / "damaged_train.tar"
    write_tar(damaged, {"n01440764.tar": tar_bytes({"n01440764_0.JPEG": encode(photo(1))}),
                        "n09999999.tar": b"garbage, not a tar" * 50})
    assert imagenet.main(["--train-tar", str(damaged), "--out", str(out), "--workers", "0", "--no-mean"]) == 1
    assert "class n09999999 failed" in capsys.readouterr().err
    assert (out / "train" / "n01440764" / "n01440764_0.JPEG").is_file()
    assert not (out / "train" / "n09999999").exists()


# --------------------------------------------------------------------------- Caltech


def make_caltech101(path: Path) -> dict:
    counts = {"accordion": 6, "airplanes": 8, "Faces": 5, "BACKGROUND_Google": 4}
    files, seed = {}, 0
    for c, n in counts.items():
        for i in range(n):
            seed += 1
            files[f"101_ObjectCategories/{c}/image_{i + 1:04d}.jpg"] = encode(photo(5000 + seed, 40, 30))
    files["101_ObjectCategories/airplanes/image_0009.jpg"] = truncated(3)            # bad
    files["101_ObjectCategories/Faces/image_0006.jpg"] = encode(photo(77).convert("CMYK"))  # odd
    files["101_ObjectCategories/BACKGROUND_Google/tmp"] = b"\x00\x01 not an image"  # bad: not an image
    files["101_ObjectCategories/airplanes/old/image_0001.jpg"] = encode(photo(78))  # ignored: nested
    files["101_ObjectCategories/accordion/._image_0001.jpg"] = b"mac resource fork"  # ignored: hidden
    write_tar(path, files, mode="w:gz")
    return counts


def test_caltech101_folds(tmp_path, capsys):
    archive = tmp_path / "101_ObjectCategories.tar.gz"
    make_caltech101(archive)
    out = tmp_path / "c101"
    argv = ["--archive", str(archive), "--out", str(out), "--workers", "0", "--train-per-class", "2,3",
            "--test-per-class", "2"]
    assert caltech.main(argv) == 0
    s = json.loads((out / "caltech_prep.json").read_text())
    assert (s["dataset"], s["classes"], s["images"]) == ("caltech101", 4, 6 + 8 + 6 + 4)
    assert {p for p, _ in s["bad"]} == {"airplanes/image_0009.jpg", "BACKGROUND_Google/tmp"}
    assert dict(s["converted"]) == {"Faces/image_0006.jpg": "JPEG CMYK"}
    assert dict(s["ignored"]) == {"101_ObjectCategories/airplanes/old/image_0001.jpg": "inside a nested folder",
                                  "101_ObjectCategories/accordion/._image_0001.jpg": "hidden file"}
    assert "the paper counts 9,144" in capsys.readouterr().err

    sizes = {"accordion": 6, "airplanes": 8, "Faces": 6, "BACKGROUND_Google": 4}  # readable images
    f2 = json.loads((out / "folds_2.json").read_text())
    f3 = json.loads((out / "folds_3.json").read_text())
    assert f2["classes"] == ["BACKGROUND_Google", "Faces", "accordion", "airplanes"]  # background included
    assert len(f2["folds"]) == len(f3["folds"]) == 5
    for fold2, fold3 in zip(f2["folds"], f3["folds"]):
        for fold, n in ((fold2, 2), (fold3, 3)):
            train = {p for p, _ in fold["train"]}
            test = {p for p, _ in fold["test"]}
            assert not train & test
            for label, c in enumerate(f2["classes"]):
                assert sum(1 for p, lab in fold["train"] if lab == label and p.startswith(c + "/")) == n
                assert sum(1 for _, lab in fold["test"] if lab == label) == min(2, sizes[c] - n)
            assert all((out / "images" / p).is_file() for p in train | test)
        assert {p for p, _ in fold2["train"]} < {p for p, _ in fold3["train"]}  # nested in N
        for c in ("accordion", "airplanes", "Faces"):  # count - N >= 2: the same test images for every N
            assert [p for p, _ in fold2["test"] if p.startswith(c)] == [p for p, _ in fold3["test"] if p.startswith(c)]
    assert len({json.dumps(f["train"]) for f in f2["folds"]}) > 1  # folds differ

    # rerun: no work, no file touched
    before = tree(out, mtimes=True)
    assert caltech.main(argv) == 0
    assert "images already done" in capsys.readouterr().out
    assert tree(out, mtimes=True) == before

    # background left out: the same images, folds over the 3 object classes, each class drawn the same
    assert caltech.main(argv + ["--background", "exclude"]) == 0
    g2 = json.loads((out / "folds_2.json").read_text())
    assert g2["classes"] == ["Faces", "accordion", "airplanes"]
    for a, b in zip(f2["folds"], g2["folds"]):
        assert [p for p, _ in a["train"] if not p.startswith("BACKGROUND")] == [p for p, _ in b["train"]]

    # interrupted: the images unit unmarked and a file lost; the rerun rebuilds the same bytes
    assert caltech.main(argv) == 0
    snapshot = tree(out)
    (out / ".data_prep" / "done" / "images.json").unlink()
    (out / "images" / "accordion" / "image_0002.jpg").unlink()
    assert caltech.main(argv) == 0
    assert "prepared this run" in capsys.readouterr().out
    assert tree(out) == snapshot


def test_caltech256_detected_clutter_and_missing(tmp_path, capsys):
    files = {}
    for k, c in enumerate(["001.ak47", "002.american-flag", "257.clutter"]):
        for i in range(4):
            files[f"256_ObjectCategories/{c}/{c[:3]}_{i + 1:04d}.jpg"] = encode(photo(7000 + 10 * k + i, 40, 30))
    archive = tmp_path / "256_ObjectCategories.tar"
    write_tar(archive, files)
    out = tmp_path / "c256"
    assert caltech.main(["--archive", str(archive), "--out", str(out), "--workers", "0"]) == 0
    s = json.loads((out / "caltech_prep.json").read_text())
    assert (s["dataset"], s["background_class"], s["background_present"]) == ("caltech256", "257.clutter", True)
    assert s["folds"] == ["folds_15.json", "folds_30.json", "folds_45.json", "folds_60.json"]
    f = json.loads((out / "folds_15.json").read_text())
    assert f["classes"][-1] == "257.clutter" and f["short_classes"][0] == ["001.ak47", 4]
    assert all(len(fold["test"]) == 3 for fold in f["folds"])  # a short class keeps one test image
    assert "3 classes have 15 or fewer images" in capsys.readouterr().err

    assert caltech.main(["--archive", str(tmp_path / "missing.tar"), "--out", str(out)]) == 2
    assert "the Caltech archive not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- PASCAL VOC


def voc_xml(objects) -> bytes:
    objs = "".join(f"<object><name>{n}</name><difficult>{int(d)}</difficult></object>" for n, d in objects)
    return f"<annotation><filename>x.jpg</filename>{objs}</annotation>".encode()


def make_voc(path: Path) -> None:
    """train: 001 dog+person, 002 cat (+ a difficult chair), 003 truncated; val: 004 bird, 005 sheep+dog."""
    objects = {"2008_000001": [("dog", 0), ("person", 0), ("person", 1)],
               "2008_000002": [("cat", 0), ("chair", 1)],
               "2008_000003": [("car", 0)],
               "2008_000004": [("bird", 0)],
               "2008_000005": [("sheep", 0), ("dog", 1), ("dog", 0)]}
    split = {"train": ["2008_000001", "2008_000002", "2008_000003"], "val": ["2008_000004", "2008_000005"]}
    base = "VOCdevkit/VOC2012/"
    files = {}
    for i, objs in objects.items():
        files[f"{base}Annotations/{i}.xml"] = voc_xml(objs)
        files[f"{base}JPEGImages/{i}.jpg"] = encode(photo(int(i[-3:]), 50, 40))
    files[f"{base}JPEGImages/2008_000003.jpg"] = truncated(33)                        # bad
    files[f"{base}JPEGImages/2008_000099.jpg"] = encode(photo(99))                    # not listed: not copied
    for s, ids in split.items():
        files[f"{base}ImageSets/Main/{s}.txt"] = "".join(f"{i}\n" for i in ids).encode()
        for c in pascal.CLASSES:
            lines = []
            for i in ids:
                flags = [d for n, d in objects[i] if n == c]
                v = -1 if not flags else (1 if not all(flags) else 0)
                lines.append(f"{i} {v:2d}\n")
            files[f"{base}ImageSets/Main/{c}_{s}.txt"] = "".join(lines).encode()
    write_tar(path, files)


def test_pascal_multilabel_lists(tmp_path, capsys):
    archive = tmp_path / "VOCtrainval_11-May-2012.tar"
    make_voc(archive)
    out = tmp_path / "voc"
    argv = ["--archive", str(archive), "--out", str(out), "--workers", "0"]
    assert pascal.main(argv) == 0
    labels = json.loads((out / "labels.json").read_text())
    assert labels["classes"] == list(pascal.CLASSES) and len(labels["classes"]) == 20
    train = {x["id"]: x for x in labels["splits"]["train"]}
    val = {x["id"]: x for x in labels["splits"]["val"]}
    assert set(train) == {"2008_000001", "2008_000002"}  # the truncated image is dropped
    assert train["2008_000001"]["labels"] == ["dog", "person"] and train["2008_000001"]["difficult"] == []
    assert train["2008_000002"]["labels"] == ["cat"] and train["2008_000002"]["difficult"] == ["chair"]
    assert val["2008_000005"]["labels"] == ["dog", "sheep"]  # a non-difficult dog beside a difficult one
    assert (out / "train.txt").read_text() == ("JPEGImages/2008_000001.jpg\tdog,person\n"
                                               "JPEGImages/2008_000002.jpg\tcat\n")
    assert sorted(os.listdir(out / "JPEGImages")) == ["2008_000001.jpg", "2008_000002.jpg", "2008_000004.jpg",
                                                      "2008_000005.jpg"]
    s = json.loads((out / "voc_prep.json").read_text())
    assert [p for p, _ in s["bad"]] == ["JPEGImages/2008_000003.jpg"]
    assert s["annotation_mismatches"] == [] and s["missing_images"] == []
    assert s["splits"]["train"]["expected"] == 5717 and "train: 2 images, expected 5,717" in capsys.readouterr().err

    before = tree(out, mtimes=True)
    assert pascal.main(argv) == 0 and "already done" in capsys.readouterr().out
    assert tree(out, mtimes=True) == before

    assert pascal.main(argv + ["--difficult", "positive"]) == 0
    labels = json.loads((out / "labels.json").read_text())
    assert labels["splits"]["train"][1]["labels"] == ["cat", "chair"]

    assert pascal.main(["--archive", str(tmp_path / "no.tar"), "--out", str(out)]) == 2
    assert "PASCAL VOC 2012 archive" in capsys.readouterr().err and "not found"


# --------------------------------------------------------------------------- overlap


def test_overlap_finds_planted_duplicates(tmp_path, capsys):
    from zfcore.data.folders import FolderDataset
    cal = tmp_path / "caltech" / "images"
    for k, c in enumerate(["accordion", "airplanes", "Faces"]):
        (cal / c).mkdir(parents=True)
        for i in range(6):
            photo(9000 + 10 * k + i, 80 + 4 * i, 60).save(cal / c / f"image_{i:04d}.jpg", quality=92)
    root = tmp_path / "imagenet"
    for k, w in enumerate(WNIDS):
        (root / "train" / w).mkdir(parents=True)
        for i in range(8):
            photo(20000 + 10 * k + i, 90, 70).save(root / "train" / w / f"{w}_{i}.JPEG", quality=90)
    (root / "train" / WNIDS[0] / "broken.JPEG").write_bytes(truncated(1))
    # planted copies of Caltech images: resized (other size and proportions) and recompressed
    planted = {}
    for (c, i), w, scale, q in [(("accordion", 1), WNIDS[0], (1.6, 1.5), 60),
                                (("airplanes", 4), WNIDS[1], (0.5, 0.6), 50),
                                (("Faces", 0), WNIDS[2], (2.0, 2.0), 75),
                                (("Faces", 5), WNIDS[2], (0.7, 0.9), 40)]:
        src = cal / c / f"image_{i:04d}.jpg"
        with Image.open(src) as im:
            copy = im.resize((int(im.width * scale[0]), int(im.height * scale[1])), Image.BICUBIC)
        name = f"{w}_dup{i}.JPEG"
        copy.save(root / "train" / w / name, quality=q)
        planted[f"{cal}/{c}/image_{i:04d}.jpg"] = f"train/{w}/{name}"
    # a near miss that is not a copy: the same image mirrored
    with Image.open(cal / "accordion" / "image_0002.jpg") as im:
        im.transpose(Image.FLIP_LEFT_RIGHT).save(root / "train" / WNIDS[1] / "mirrored.JPEG", quality=90)

    out = tmp_path / "overlap"
    argv = ["--imagenet", str(root), "--caltech", str(cal), "--out", str(out), "--workers", "0", "--chunk", "7"]
    assert overlap.main(argv) == 0
    text = capsys.readouterr()
    r = json.loads((out / "overlap.json").read_text())
    assert overlap.read_exclude(out / "exclude.txt") == sorted(planted.values())
    dups = {p["caltech"]: p["imagenet"] for p in r["pairs"] if p["score"] >= 0.95}
    assert dups == planted
    assert r["per_caltech_class"] == {"Faces": 2, "accordion": 1, "airplanes": 1} and r["max_per_class"] == 2
    assert r["imagenet_images"] == 3 * 8 + 4 + 1 and r["caltech_images"] == 18
    assert r["unreadable"] == [f"train/{WNIDS[0]}/broken.JPEG"] and "broken.JPEG" in text.err
    assert "comparisons/s" in text.out
    # distinct images are far below the threshold, the planted copies far above
    scores = sorted(p["score"] for p in r["pairs"])
    assert len(scores) == 4 and scores[0] > 0.96
    h = r["best_score_histogram"]  # each Caltech image's best ImageNet score: 4 copies, 14 far below 0.9
    assert sum(h.values()) == 18 and h["0.95..0.98"] + h["0.98..1.00"] == 4 and h["0.9..0.95"] == 0
    print(text.out)  # the measured throughput, for the record (pytest -s shows it)

    # the list is in zfcore's exclude format
    ds = FolderDataset(root, "train", 16, exclude=overlap.read_exclude(out / "exclude.txt"))
    assert ds.excluded == 4 and len(ds) == 3 * 8 + 1 + 1  # the broken file is still listed; it is skipped at load

    # rerun: thumbnails from the cache, the same outputs, untouched
    before = tree(out, mtimes=True)
    assert overlap.main(argv[:-2] + ["--chunk", "1000"]) == 0
    assert "thumbnails: 0 folders computed" in capsys.readouterr().out
    assert tree(out, mtimes=True) == before

    # the vectorised score is the normalised correlation of the thumbnails, computed naively
    a = overlap.thumbnail(cal / "Faces" / "image_0000.jpg").astype(np.float64)
    b = overlap.thumbnail(root / "train" / WNIDS[2] / f"{WNIDS[2]}_dup0.JPEG").astype(np.float64)
    naive = np.corrcoef(a, b)[0, 1]
    got = [p["score"] for p in r["pairs"] if p["imagenet"].endswith("_dup0.JPEG")][0]
    # the float32 score's rounding, and the report's 4 decimals (half a unit of the last)
    assert abs(naive - got) <= _ncc_f32_tol(a, b) + 0.5e-4 + 1e-12


def _ncc_f32_tol(a, b) -> float:
    """A bound on how far overlap's float32 normalised correlation (normalise, then a dot
    product) of two uint8 thumbnails of d values can be from the exact one (u = EPS32 / 2):
    the mean is an integer sum (exact, below 2^24) times 1/d: two roundings, 2 u 255 at most;
    each centred value one subtraction (u of it): the centred vector within
    r = u + sqrt(d) 2 u 255 (1 + u)^2 / ||c|| of the exact one c, relatively; the norm rounds
    the squares and their sum (gamma(d)), halved by the square root, plus u; the division u:
    a unit vector within e = 2 r + (gamma(d) / 2 + 2 u) / (1 - gamma(d) / 2 - u) of the exact
    one. Two such vectors' dot product is within e1 + e2 + e1 e2 of the exact correlation,
    and its own sum of d products rounds by gamma(d) (1 + e1) (1 + e2) (Cauchy-Schwarz)."""
    u, d = EPS32 / 2, a.size
    rho = gamma(d) / 2 + u

    def e(t):
        c = t.astype(np.float64) - t.mean()
        r = u + np.sqrt(d) * 2 * u * 255 * (1 + u) ** 2 / np.linalg.norm(c)
        return 2 * r + (rho + u) / (1 - rho)
    e1, e2 = e(a), e(b)
    return e1 + e2 + e1 * e2 + gamma(d) * (1 + e1) * (1 + e2)


def test_overlap_throughput_on_a_large_synthetic_set():
    """The correlation step alone, vectorised and chunked: 8,000 x 2,000 thumbnails of 3,072 values."""
    import time
    g = torch.Generator().manual_seed(0)
    keys = overlap.normalise(torch.randint(0, 256, (2000, 3072), generator=g, dtype=torch.uint8).numpy())
    queries = torch.randint(0, 256, (8000, 3072), generator=g, dtype=torch.uint8).numpy()
    queries[123] = (keys[7] * 100 + 128).clamp(0, 255).round().to(torch.uint8).numpy()  # one planted copy
    t = time.perf_counter()
    hits = []
    for s in range(0, len(queries), 4096):
        qi, ki, sc, _ = overlap.correlate(overlap.normalise(queries[s:s + 4096]), keys, 0.95)
        hits += [(s + a, b) for a, b in zip(qi.tolist(), ki.tolist())]
    rate = len(queries) * len(keys) / (time.perf_counter() - t)
    print(f"correlation throughput on this CPU: {rate:.3g} comparisons/s")
    assert hits == [(123, 7)]


# --------------------------------------------------------------------------- command lines


@pytest.mark.parametrize("module", [imagenet, caltech, pascal, overlap])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and "usage: python -m data_prep." in text


def test_scripts_run_from_the_repository_root(tmp_path):
    env = {**os.environ, "ZF_PROGRESS": "0"}
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "data_prep.caltech", "--help"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--background" in r.stdout
    r = subprocess.run([sys.executable, str(REPO / "data_prep" / "pascal.py"), "--archive", str(tmp_path / "x.tar"),
                        "--out", str(tmp_path / "o")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "not found" in r.stderr


def test_check_image_rules():
    assert common.check_image(b"")[0] == "bad"
    jpg = encode(photo(1))
    assert common.check_image(jpg) == ("ok", jpg, "")
    status, data, note = common.check_image(encode(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG"))
    assert (status, note) == ("converted", "PNG RGBA")
    with Image.open(io.BytesIO(data)) as im:  # alpha composited onto zfcore's mid-grey
        # a flat block through JPEG: the YCbCr conversion's and the DC quantisation's rounding, a level or two
        assert im.format == "JPEG" and max(abs(v - 128) for v in im.getpixel((4, 4))) <= 2
    cmyk = encode(photo(2).convert("CMYK"))
    assert common.check_image(cmyk, odd="keep") == ("odd", cmyk, "JPEG CMYK")
    assert common.output_name("x.png", "converted") == "x.jpg" and common.output_name("x.JPEG", "converted") == "x.JPEG"


def test_overlap_walk_follows_no_folder_twice(tmp_path):
    """The overlap check lists each image once: a link loop (a folder linking to itself) and a
    link back into the tree are left out, named in a warning (before: os.walk(followlinks=True)
    walked the looping folder again and again, and the linked one twice)."""
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "cat" / "a.jpg")
    Image.new("RGB", (8, 8), (30, 20, 10)).save(root / "dog" / "b.png")
    os.symlink(root / "cat", root / "cat" / "again")          # a loop
    os.symlink(root / "dog", root / "also_dog")               # back into the tree
    with pytest.warns(UserWarning, match="2 entries .* left out"):
        groups = overlap._groups(root)
    assert groups == {"cat": ["cat/a.jpg"], "dog": ["dog/b.png"]}
