"""The imagenet scale's data: prepared folders as splits, the exclusion list, preset changes, zf book's folders."""
import json
import os

import nbformat
import numpy as np
import pytest
import torch

from zfcore import presets
from zfcore.data import splits
from zfcore.data.folders import BadImage, load_image
from zfcore.data.splits import (DataRoots, LazyImages, data_roots, load_split, prepared_folds,
                                read_exclude, split_source)
from zfcore.presets import get_preset, parse_overrides
from zfcore.artifacts import config_key

from folder_data import folder_preset

ROOT_VARS = tuple(splits.ROOT_VARIABLES.values())


@pytest.fixture(scope="module")
def roots(_folder_data):
    return _folder_data[0]


@pytest.fixture
def env(roots, monkeypatch, tmp_path):
    for k, v in roots.to_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path / "artifacts"))
    return roots


def _files(folder):
    return sorted(str(p) for p in folder.rglob("*.png"))


def test_splits_read_the_prepared_folders(env):
    p = folder_preset()
    train = load_split(p, "train")
    listed = read_exclude(env.exclude)
    assert len(listed) == 2
    all_train = _files(env.imagenet / "train")
    assert sorted(train.paths) == sorted(set(all_train) - {str(env.imagenet / r) for r in listed})
    val, test = load_split(p, "val"), load_split(p, "test")
    assert val.paths == test.paths == sorted(val.paths, key=lambda q: (q.split(os.sep)[-2], q))
    assert sorted(val.paths) == _files(env.imagenet / "val")
    # labels: the class folder's index among the sorted training class folders
    wnids = sorted(d.name for d in (env.imagenet / "train").iterdir())
    for q, y in zip(val.paths, val.labels):
        assert wnids[y] == q.split(os.sep)[-2]
    # class names from synsets.json's words (first comma-separated name)
    assert val.classes == [w.split("_", 1)[1] for w in wnids]
    assert np.array_equal(val.targets.argmax(1), val.labels) and val.targets.sum(1).max() == 1
    target = load_split(p, "target")
    assert sorted(target.paths) == _files(env.caltech / "images")
    mt = load_split(p, "multi_train")
    doc = json.loads((env.voc / "labels.json").read_text())
    rows = doc["splits"]["train"]
    assert len(mt) == len(rows)
    for i, r in enumerate(rows):
        assert sorted(np.array(doc["classes"])[mt.targets[i]]) == sorted(r["labels"])
    assert len(load_split(p, "multi_test")) == len(doc["splits"]["val"])
    # the scenes scales are untouched
    assert type(load_split("tiny", "val", progress=False)).__name__ == "SceneSet"
    assert not splits.has_boxes(val) and splits.has_boxes(load_split("tiny", "val", progress=False))
    with pytest.raises(ValueError, match="no object boxes"):
        val.object_box(0)


def test_lazy_images_decode_like_training(env, tmp_path):
    ds = load_split(folder_preset(), "val")
    imgs = ds.images
    assert imgs.shape == (len(ds), 55, 55, 3) and len(imgs) == len(ds)
    one = load_image(ds.paths[3], 55).permute(1, 2, 0).numpy()
    assert np.array_equal(imgs[3], one) and np.array_equal(imgs[-len(ds) + 3], one)
    block = imgs[2:6]
    assert block.shape == (4, 55, 55, 3) and np.array_equal(block[1], one)
    assert np.array_equal(imgs[np.array([3, 0])][0], one)
    mask = np.zeros(len(ds), bool)
    mask[3] = True
    assert np.array_equal(imgs[mask][0], one)
    assert np.array_equal(np.asarray(imgs), imgs[:])
    with pytest.raises(IndexError, match="out of range"):
        imgs[len(ds)]
    with pytest.raises(IndexError):
        imgs[np.array([0, len(ds)])]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(BadImage, match="bad.png"):
        LazyImages([str(bad)], 55)[0]


def test_missing_or_wrong_folders_are_named(env, monkeypatch, tmp_path):
    p = folder_preset()
    monkeypatch.delenv("ZF_CALTECH")
    with pytest.raises(ValueError, match="ZF_CALTECH") as e:
        load_split(p, "target")
    assert "--caltech" in str(e.value)
    monkeypatch.setenv("ZF_VOC", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="ZF_VOC is .*nowhere.*does not exist"):
        load_split(p, "multi_train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no folds_<N>.json"):
        load_split(p, "target", roots=DataRoots(caltech=tmp_path / "empty"))
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        load_split(p, "holdout")
    with pytest.raises(ValueError, match="unknown data folder"):
        data_roots(imagenet_root="/x")


def test_prepared_folds_are_data_preps(env):
    ds = load_split(folder_preset(), "target")
    doc = json.loads((env.caltech / "folds_5.json").read_text())
    folds = prepared_folds(ds, 5, 5)
    assert len(folds) == 5
    for (tr, te), f in zip(folds, doc["folds"]):
        assert sorted(ds.paths[i] for i in tr) == sorted(str(env.caltech / "images" / r) for r, _ in f["train"])
        assert sorted(ds.paths[i] for i in te) == sorted(str(env.caltech / "images" / r) for r, _ in f["test"])
        assert len(set(tr) & set(te)) == 0
        assert all(ds.labels[i] == lab for (r, lab), i in zip(sorted(f["train"]), sorted(
            tr, key=lambda i: ds.paths[i])))
    with pytest.raises(FileNotFoundError, match="--train-per-class 5,7,10"):
        prepared_folds(ds, 7, 5)
    with pytest.raises(ValueError, match="holds 5 folds, 6 asked"):
        prepared_folds(ds, 5, 6)


def test_read_exclude(tmp_path):
    f = tmp_path / "exclude.txt"
    f.write_text("# copies of Caltech images\ntrain/a/x.JPEG\n\n  train/b/y.JPEG  \n")
    assert read_exclude(f) == ["train/a/x.JPEG", "train/b/y.JPEG"]
    with pytest.raises(FileNotFoundError, match="exclusion list .*missing.txt"):
        read_exclude(tmp_path / "missing.txt")
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_exclude(f)


def test_preset_overrides(monkeypatch):
    assert parse_overrides(["epochs=30", "lr=0.005", "evolution_epochs=1,2,5", "init=paper"]) == {
        "epochs": 30, "lr": 0.005, "evolution_epochs": (1, 2, 5), "init": "paper"}
    with pytest.raises(ValueError, match="bad preset setting 'epoch=3'.*epochs"):
        parse_overrides(["epoch=3"])
    with pytest.raises(ValueError, match="epochs takes a int"):
        parse_overrides(["epochs=many"])
    base = get_preset("imagenet")
    monkeypatch.setenv(presets.OVERRIDES_VARIABLE, json.dumps({"imagenet": {"epochs": 30,
                                                                            "evolution_epochs": [1, 30]}}))
    p = get_preset("imagenet")
    assert p.epochs == 30 and p.evolution_epochs == (1, 30) and p.image_size == base.image_size
    assert get_preset("tiny") == presets.PRESETS["tiny"]        # other scales untouched
    monkeypatch.setenv(presets.OVERRIDES_VARIABLE, "{not json")
    with pytest.raises(ValueError, match="ZF_PRESET_OVERRIDES is not JSON"):
        get_preset("imagenet")
    monkeypatch.setenv(presets.OVERRIDES_VARIABLE, json.dumps({"imagenet": {"epoch": 3}}))
    with pytest.raises(ValueError, match="unknown preset fields"):
        get_preset("imagenet")


def test_exclusion_list_in_training(env, monkeypatch):
    from zfcore import runs, train as zt
    p = folder_preset()
    # the key of a run without an exclusion list is what it always was
    kw = runs.model_kwargs(p, "zf", {})
    recipe = {k: v for k, v in p.to_dict().items() if k not in ("workers", "name")}
    old = config_key("train", 1, "zf", kw, recipe, True, p.seed, str(env.imagenet))
    assert runs.run_dir(p, data_root=env.imagenet).name == f"zfnet-{old}"
    # ... and the list (by content) makes another run
    listed = read_exclude(env.exclude)
    with_list = runs.run_dir(p, data_root=env.imagenet, exclude=env.exclude)
    assert with_list.name != f"zfnet-{old}"
    assert runs.run_dir(p, data_root=env.imagenet, exclude=list(reversed(listed))) == with_list
    assert runs.run_dir(p) == with_list          # at a folder scale the environment's folders
    monkeypatch.chdir(env.imagenet.parent)      # zf train --data ./imagenet: the same run
    assert runs.run_dir(p, data_root="imagenet", exclude=str(env.exclude)) == with_list
    tr, va = zt.make_sources(p, progress=False)
    assert tr.dataset.excluded == 2 and len(tr) == len(load_split(p, "train"))
    assert len(va) == len(load_split(p, "val"))
    with pytest.raises(ValueError, match="exclude applies to folder data"):
        zt.make_sources(get_preset("tiny"), exclude=env.exclude)


def test_split_source_batches(env):
    p = folder_preset()
    ds = load_split(p, "val")
    mean = torch.zeros(3, 55, 55)
    src = split_source(p, "val", mean=mean)
    got = list(src.batches(16, shuffle=False))
    x = torch.cat([g[0] for g in got])
    y = torch.cat([g[1] for g in got])
    assert x.shape == (len(ds), 3, 55, 55) and torch.equal(y, torch.from_numpy(ds.labels))
    assert torch.equal(x[5], torch.from_numpy(ds.images[5]).permute(2, 0, 1))
    assert src.num_batches(16, shuffle=False) == len(got)
    assert torch.equal(src.mean(), mean)
    with pytest.raises(ValueError, match="training mean"):
        split_source(p, "val").mean()


def test_zf_train_and_book_flags(env, capsys, tmp_path):
    from zfcore.cli import build_parser, main
    args = build_parser().parse_args(["train", "--scale", "imagenet", "--exclude", "x.txt"])
    assert args.exclude == "x.txt"
    assert main(["book", "--scale", "tiny", "--set", "epochs=x"]) == 2
    assert "epochs takes a int" in capsys.readouterr().err
    assert main(["book", "--scale", "tiny", "--caltech", str(tmp_path / "nope")]) == 2
    assert "--caltech" in capsys.readouterr().err
    assert main(["train", "--scale", "tiny", "--exclude", str(env.exclude), "--epochs", "1"]) == 2
    assert "exclude applies to folder data" in capsys.readouterr().err


def test_run_book_passes_folders_and_preset_changes(tmp_path, monkeypatch):
    pytest.importorskip("papermill")
    from zfcore.book import run_book
    from test_book import CONFIG, TOC
    root = tmp_path / "src"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text(CONFIG)
    (root / "_toc.yml").write_text(TOC)
    (root / "book" / "index.md").write_text("# Mini\n")
    for name, code in (("a", "x = 1"), ("b", "import os, json\nfrom zfcore.presets import get_preset\n"
                                         "print(json.dumps([os.environ.get('ZF_CALTECH'), "
                                         "get_preset(scale).epochs, get_preset('tiny').epochs]))")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbformat.v4.new_code_cell('scale = "default"')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), params, nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, str(root / "book" / f"{name}.ipynb"))
    monkeypatch.delenv("ZF_CALTECH", raising=False)
    stage = run_book("imagenet", root=root, build_dir=tmp_path / "stage", html=False, progress=False,
                     environment=DataRoots(caltech=tmp_path / "cal").to_env(), overrides={"epochs": 3})
    out = nbformat.read(str(stage / "book" / "b.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert json.loads(text.strip().splitlines()[-1]) == [str(tmp_path / "cal"), 3, get_preset("tiny").epochs]
    assert "ZF_CALTECH" not in os.environ          # the caller's environment is left as it was
    with pytest.raises(ValueError, match="unknown preset fields"):
        run_book("imagenet", root=root, build_dir=tmp_path / "stage", html=False, progress=False,
                 overrides={"epoch": 3})


def test_zf_train_variant_is_the_chapters_run(env, monkeypatch, capsys):
    """zf train --variant trains the very run the architecture chapters look for (torchrun-ready)."""
    from folder_data import folder_overrides
    from zfcore.ablations import budget_run
    from zfcore.cli import main
    monkeypatch.setenv(presets.OVERRIDES_VARIABLE, json.dumps({"imagenet": {
        k: list(v) if isinstance(v, tuple) else v for k, v in folder_overrides().items()}}))
    assert main(["train", "--scale", "imagenet", "--variant", "krizhevsky:rm6,7", "--epochs", "1",
                 "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = budget_run("imagenet", "krizhevsky:rm6,7", epochs=1, progress=False)
    assert str(run.path) == printed["run"] and run.complete
    assert run.path.name.startswith("kriz-rm67-")
    names = [n for n, _ in run.load().named_children()]
    assert names[0] == "conv1" and "fc8" in names and "fc6" not in names and "fc7" not in names
    assert main(["train", "--scale", "imagenet", "--variant", "zf:base", "--remove", "fc7"]) == 2
    assert "sets the model itself; drop remove" in capsys.readouterr().err
    assert main(["train", "--scale", "imagenet", "--variant", "zf:nothing"]) == 2
    assert "unknown variant 'zf:nothing'" in capsys.readouterr().err
