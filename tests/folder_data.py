"""Small prepared folders, as data_prep writes them, built from the tiny scenes: the imagenet scale's data in a test.

``make_folders(root)`` writes, from the ``tiny`` scenes:

    root/imagenet/train/<class>/*.png, root/imagenet/val/<class>/*.png, synsets.json
    root/imagenet/exclude.txt        two training files to leave out
    root/caltech/images/<class>/*.png and folds_<N>.json (data_prep.caltech's own make_folds)
    root/voc/JPEGImages/*.png, labels.json, train.txt, val.txt

and returns the :class:`zfcore.data.splits.DataRoots`. ``folder_preset()`` is the tiny preset
reading folders: what the imagenet scale does, at the size of a test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from zfcore.data.splits import DataRoots
from zfcore.presets import get_preset


def folder_preset(**changes):
    """The tiny preset, reading the user's folders instead of the scenes."""
    return get_preset("tiny").replace(data="folders", **changes)


def _write(path: Path, a: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path.name


def make_folders(root, train_per_class: int = 20, val_per_class: int = 4, target_per_class: int = 12,
                 multi: int = 24, caltech_ns=(5, 10)) -> DataRoots:
    """Write the three prepared data sets under ``root`` (idempotent: a second call reuses them)."""
    from data_prep.caltech import make_folds
    from zfcore.data.scenes import load_scenes
    root = Path(root)
    done = root / ".done"
    roots = DataRoots(imagenet=root / "imagenet", exclude=root / "imagenet" / "exclude.txt",
                      caltech=root / "caltech", voc=root / "voc")
    if done.exists():
        return roots
    p = get_preset("tiny")
    for split, per in (("train", train_per_class), ("val", val_per_class)):
        ds = load_scenes(p, split, progress=False)
        for c, name in enumerate(ds.classes):
            idx = np.flatnonzero(ds.labels == c)[:per]
            for j, i in enumerate(idx):
                _write(roots.imagenet / split / f"c{c:02d}_{name}" / f"{split}_{j:03d}.png", ds.images[i])
    classes = sorted(d.name for d in (roots.imagenet / "train").iterdir())
    (roots.imagenet / "synsets.json").write_text(json.dumps(
        [{"wnid": c, "ILSVRC2012_ID": i + 1, "words": c.split("_", 1)[1] + ", a test class"}
         for i, c in enumerate(classes)]))
    first = sorted((roots.imagenet / "train" / classes[0]).iterdir())[:2]
    roots.exclude.write_text("".join(f"train/{classes[0]}/{f.name}\n" for f in first))

    ds = load_scenes(p, "target", progress=False)
    per_class = {}
    for c, name in enumerate(ds.classes):
        idx = np.flatnonzero(ds.labels == c)[:target_per_class]
        cname = f"{c:03d}.{name}"
        per_class[cname] = [_write(roots.caltech / "images" / cname / f"img_{j:04d}.png", ds.images[i])
                            for j, i in enumerate(idx)]
    names = sorted(per_class)
    for n in caltech_ns:
        folds = make_folds(per_class, names, n, 50, 5, 0)
        (roots.caltech / f"folds_{n}.json").write_text(json.dumps(
            {"dataset": "caltech256", "images": "images", "classes": names, "train_per_class": n, **folds}))

    splits = {}
    for split, name in (("multi_train", "train"), ("multi_test", "val")):
        ds = load_scenes(p, split, progress=False)
        rows = []
        for i in range(min(multi, len(ds))):
            ident = f"{name}_{i:05d}"
            _write(roots.voc / "JPEGImages" / f"{ident}.png", ds.images[i])
            labels = [ds.classes[k] for k in np.flatnonzero(ds.targets[i])]
            rows.append({"id": ident, "image": f"JPEGImages/{ident}.png", "labels": labels, "difficult": []})
        splits[name] = rows
        (roots.voc / f"{name}.txt").write_text(
            "".join(f"{r['image']}\t{','.join(r['labels'])}\n" for r in rows))
    (roots.voc / "labels.json").write_text(json.dumps({"classes": list(load_scenes(p, "multi_train",
                                                                                   progress=False).classes),
                                                       "difficult": "ignore", "splits": splits}))
    done.write_text("ok\n")
    return roots


def folder_overrides() -> dict:
    """Changes that turn the ``imagenet`` preset into the tiny one's sizes (its data stays folders):
    for ``run_book("imagenet", overrides=...)`` in a test."""
    return {k: v for k, v in get_preset("tiny").to_dict().items() if k not in ("name", "data")}
