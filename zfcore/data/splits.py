"""The splits every chapter reads, at every scale: generated scenes, or the user's prepared folders.

At the ``tiny`` and ``default`` scales a split is a :class:`~zfcore.data.scenes.SceneSet`
(images in memory, with every object's box). At the ``imagenet`` scale (a preset whose
``data`` is ``"folders"``) the same split names map to the folders that ``data_prep/``
writes, found through :func:`data_roots`:

========================  ==========================================================
split                     at the ``imagenet`` scale
========================  ==========================================================
``train``                 ``IMAGENET/train/<wnid>/*``, minus the exclusion list
``val``                   ``IMAGENET/val/<wnid>/*``
``test``                  ``IMAGENET/val`` too: ImageNet's test labels are not public
``target``                ``CALTECH/images/<class>/*``, the classes of its ``folds_<N>.json``
``multi_train``           ``VOC/train.txt`` (multi-label)
``multi_test``            ``VOC/val.txt``: VOC 2012's test labels are not public
========================  ==========================================================

A :class:`FolderSplit` has the attributes of a ``SceneSet`` that do not need the
generator (``images``, ``labels``, ``targets``, ``classes``, ``split``, ``scale``,
``stored_size``, ``len()``); its ``images`` decode files when indexed
(:class:`LazyImages`), so a split of 50,000 images costs nothing until read.
Boxes and object parts exist only for the scenes: :func:`has_boxes` tells.

Where the folders are: the environment variables :data:`ROOT_VARIABLES`
(``ZF_IMAGENET``, ``ZF_EXCLUDE``, ``ZF_CALTECH``, ``ZF_VOC``); ``zf book --scale
imagenet --imagenet DIR --caltech DIR --voc DIR --exclude FILE`` sets them for the
chapters it runs. To run a chapter by hand in Jupyter, export them before starting it.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..artifacts import config_key
from ..presets import Preset, get_preset
from .folders import FolderDataset, find_images, load_image
from .scenes import SceneSource, load_scenes, scenes_dir

__all__ = ["ROOT_VARIABLES", "SPLITS", "DataRoots", "data_roots", "read_exclude", "LazyImages",
           "FolderSplit", "load_split", "has_boxes", "split_source", "prepared_folds", "data_tag",
           "split_rows", "SPLIT_ROOTS"]

SPLITS = ("train", "val", "test", "target", "multi_train", "multi_test")

#: Environment variable of each data folder the ``imagenet`` scale reads.
ROOT_VARIABLES = {"imagenet": "ZF_IMAGENET", "exclude": "ZF_EXCLUDE", "caltech": "ZF_CALTECH",
                  "voc": "ZF_VOC"}

_WHAT = {"imagenet": "the prepared ImageNet 2012 (python -m data_prep.imagenet ... --out DIR)",
         "exclude": "the exclusion list of python -m data_prep.overlap (OUT/exclude.txt)",
         "caltech": "a prepared Caltech-101 or Caltech-256 (python -m data_prep.caltech ... --out DIR)",
         "voc": "the prepared PASCAL VOC 2012 (python -m data_prep.pascal ... --out DIR)"}
_FLAG = {"imagenet": "--imagenet", "exclude": "--exclude", "caltech": "--caltech", "voc": "--voc"}


@dataclass(frozen=True)
class DataRoots:
    """The user's prepared data folders (``None``: not given)."""
    imagenet: Optional[Path] = None
    exclude: Optional[Path] = None
    caltech: Optional[Path] = None
    voc: Optional[Path] = None

    def require(self, name: str) -> Path:
        """The folder ``name``, or a ValueError that says how to give it."""
        path = getattr(self, name)
        if path is None:
            raise ValueError(f"this needs {_WHAT[name]}: set the environment variable "
                             f"{ROOT_VARIABLES[name]}=PATH, or pass {_FLAG[name]} PATH to zf book")
        if not path.exists():
            raise FileNotFoundError(f"{ROOT_VARIABLES[name]} is {path}, which does not exist; "
                                    f"it should be {_WHAT[name]}")
        return path

    def to_env(self) -> Dict[str, str]:
        """The environment variables that give these folders to a chapter's kernel."""
        return {ROOT_VARIABLES[k]: str(v) for k, v in vars(self).items() if v is not None}


def data_roots(**given) -> DataRoots:
    """The data folders: each from ``given`` (a path or None) or else its environment variable."""
    unknown = set(given) - set(ROOT_VARIABLES)
    if unknown:
        raise ValueError(f"unknown data folder(s) {sorted(unknown)}; valid: {', '.join(ROOT_VARIABLES)}")
    out = {}
    for k, var in ROOT_VARIABLES.items():
        v = given.get(k)
        if v is None:
            v = os.environ.get(var) or None
        out[k] = Path(v).expanduser().resolve() if v is not None else None
    return DataRoots(**out)


def read_exclude(path) -> List[str]:
    """The file paths (relative to the ImageNet root) listed one a line in ``path``.

    Blank lines and lines starting with ``#`` are skipped. The format of
    ``data_prep.overlap``'s ``exclude.txt`` and of :class:`~zfcore.data.folders.FolderDataset`'s
    ``exclude``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exclusion list {path} does not exist (expected a text file, one "
                                f"path relative to the ImageNet root a line, e.g. train/n01440764/x.JPEG)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"exclusion list {path} is not UTF-8 text ({e}); expected one path a line") from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


class LazyImages:
    """Images decoded from files when indexed, shaped like a ``(N, S, S, 3)`` uint8 array.

    ``images[i]`` is one (S, S, 3) array; ``images[a:b]``, ``images[[i, j]]`` or a boolean
    mask give (n, S, S, 3), decoded on ``threads`` threads (Pillow releases the GIL).
    Each file is read as training reads it (:func:`zfcore.data.folders.load_image`); an
    unreadable one raises :class:`~zfcore.data.folders.BadImage` naming the file.
    ``np.asarray(images)`` decodes everything: avoid it on a large split.
    """

    def __init__(self, paths: Sequence[str], stored_size: int, threads: int = 8):
        self.paths = list(paths)
        self.stored_size = int(stored_size)
        self.threads = max(1, int(threads))
        self.dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return (len(self.paths), self.stored_size, self.stored_size, 3)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.paths)

    def _one(self, i: int) -> np.ndarray:
        return load_image(self.paths[i], self.stored_size).permute(1, 2, 0).numpy()

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"image {i} out of range: the split has {len(self)} images")
            return self._one(i % len(self))
        if isinstance(index, slice):
            idx = range(*index.indices(len(self)))
        else:
            a = np.asarray(index)
            if a.dtype == bool:
                if a.shape != (len(self),):
                    raise IndexError(f"boolean mask of shape {a.shape} for {len(self)} images")
                a = np.flatnonzero(a)
            if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
                raise IndexError(f"index images with an int, a slice or a 1-d array of ints, not {index!r}")
            if a.size and (a.max() >= len(self) or a.min() < -len(self)):
                raise IndexError(f"image index out of range: the split has {len(self)} images")
            idx = [int(i) % len(self) for i in a]
        out = np.empty((len(idx), self.stored_size, self.stored_size, 3), np.uint8)
        if len(idx) <= 1 or self.threads == 1:
            for j, i in enumerate(idx):
                out[j] = self._one(i)
        else:
            with ThreadPoolExecutor(min(self.threads, len(idx))) as pool:
                for j, a in enumerate(pool.map(self._one, idx)):
                    out[j] = a
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a.astype(dtype) if dtype is not None else a

    def __repr__(self) -> str:
        return f"LazyImages({len(self)} files, {self.stored_size} px)"


@dataclass
class FolderSplit:
    """One split read from the user's prepared folders (see the module's table).

    Attributes:
        images: :class:`LazyImages`, (N, S, S, 3) uint8 when indexed.
        labels: (N,) int64 (for the multi-label split: the first listed class).
        targets: (N, C) bool, one-hot or multi-label.
        classes: class names, index = label.
        paths: the image files, in the split's order.
        split, scale: where it came from.
        root: the data folder it was read from.
        folds_dir: for ``target``, the folder holding ``folds_<N>.json``.
    """
    images: LazyImages
    labels: np.ndarray
    targets: np.ndarray
    classes: List[str]
    paths: List[str]
    split: str
    scale: str
    root: Path
    folds_dir: Optional[Path] = None
    boxes: None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def stored_size(self) -> int:
        return self.images.stored_size

    def object_box(self, i: int):
        raise ValueError(f"the {self.scale!r} scale's {self.split!r} split has no object boxes "
                         f"(only the generated scenes do)")


def has_boxes(ds) -> bool:
    """Whether a split knows where its objects are (the scenes do; folders do not)."""
    return getattr(ds, "boxes", None) is not None


def _one_hot(labels: np.ndarray, C: int) -> np.ndarray:
    t = np.zeros((len(labels), C), bool)
    t[np.arange(len(labels)), labels] = True
    return t


def _imagenet_classes(root: Path, wnids: List[str]) -> List[str]:
    """Readable class names from data_prep's synsets.json when there is one, else the folder names."""
    f = root / "synsets.json"
    try:
        doc = json.loads(f.read_text())
        rows = doc["synsets"] if isinstance(doc, dict) else doc
        words = {r["wnid"]: r.get("words", r["wnid"]) for r in rows}
        return [str(words.get(w, w)).split(",")[0] for w in wnids]
    except (OSError, ValueError, KeyError, TypeError):
        return list(wnids)


def _imagenet_split(p: Preset, roots: DataRoots, split: str) -> FolderSplit:
    root = roots.require("imagenet")
    exclude = read_exclude(roots.exclude) if (split == "train" and roots.exclude is not None) else None
    ds = FolderDataset(root, "train" if split == "train" else "val", p.stored_size, exclude=exclude)
    paths = [s[0] for s in ds.samples]
    labels = np.array([s[1] for s in ds.samples], np.int64)
    if not paths:
        raise ValueError(f"{root}/{'train' if split == 'train' else 'val'} holds no images")
    return FolderSplit(LazyImages(paths, p.stored_size, threads=max(1, p.workers)), labels,
                       _one_hot(labels, len(ds.classes)), _imagenet_classes(root, ds.classes), paths,
                       split, p.name, root)


def folds_files(root: Path) -> Dict[int, Path]:
    out = {}
    for f in root.glob("folds_*.json"):
        try:
            out[int(f.stem.split("_", 1)[1])] = f
        except ValueError:
            continue
    return dict(sorted(out.items()))


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not readable JSON ({type(e).__name__}: {e}); it should be {what}; "
                         f"rerun the data_prep script that wrote it") from None


def _caltech_split(p: Preset, roots: DataRoots) -> FolderSplit:
    root = roots.require("caltech")
    files = folds_files(root)
    if not files:
        raise FileNotFoundError(f"{root} has no folds_<N>.json: it should be the output folder of "
                                f"python -m data_prep.caltech")
    doc = read_json(next(iter(files.values())), "the folds of data_prep.caltech")
    classes = list(doc["classes"])
    images = root / doc.get("images", "images")
    paths, labels = [], []
    for label, c in enumerate(classes):
        d = images / c
        if not d.is_dir():
            raise FileNotFoundError(f"{d} does not exist, but {root}/folds_*.json lists class {c!r}; "
                                    f"rerun python -m data_prep.caltech")
        found = find_images(str(d))[0]
        paths += found
        labels += [label] * len(found)
    labels = np.array(labels, np.int64)
    return FolderSplit(LazyImages(paths, p.stored_size, threads=max(1, p.workers)), labels,
                       _one_hot(labels, len(classes)), classes, paths, "target", p.name, root, folds_dir=root)


def _voc_split(p: Preset, roots: DataRoots, split: str) -> FolderSplit:
    root = roots.require("voc")
    doc = read_json(root / "labels.json", "the labels of data_prep.pascal")
    classes = list(doc["classes"])
    which = "train" if split == "multi_train" else "val"
    rows = doc["splits"][which]
    paths = [str(root / r["image"]) for r in rows]
    targets = np.zeros((len(rows), len(classes)), bool)
    labels = np.zeros(len(rows), np.int64)
    index = {c: i for i, c in enumerate(classes)}
    for i, r in enumerate(rows):
        ks = [index[c] if isinstance(c, str) else int(c) for c in r["labels"]]
        targets[i, ks] = True
        labels[i] = ks[0] if ks else -1
    keep = targets.any(1)   # an image whose only objects are difficult carries no label
    paths = [q for q, k in zip(paths, keep) if k]
    return FolderSplit(LazyImages(paths, p.stored_size, threads=max(1, p.workers)), labels[keep],
                       targets[keep], classes, paths, split, p.name, root)


def load_split(scale, split: str, progress: bool = True, roots: Optional[DataRoots] = None):
    """One split of ``scale``'s data: a ``SceneSet`` (scenes) or a :class:`FolderSplit` (folders).

    Args:
        scale: a preset name or :class:`~zfcore.presets.Preset`.
        split: one of :data:`SPLITS`.
        roots: the data folders (default: :func:`data_roots`, from the environment).
    """
    p = get_preset(scale)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if p.data == "scenes":
        return load_scenes(p, split, progress=progress)
    roots = roots if roots is not None else data_roots()
    if split in ("train", "val", "test"):
        return _imagenet_split(p, roots, split)
    if split == "target":
        return _caltech_split(p, roots)
    return _voc_split(p, roots, split)


_SCENES_CAPTION = ("train/val/test: the source classes ('ImageNet'); target: held-out classes ('Caltech'); "
                   "multi_*: several objects per image ('PASCAL')")
_FOLDERS_CAPTION = ("train: ImageNet 2012 train (less the exclusion list, if given); val and test: ImageNet "
                    "val (the test labels are not public); target: Caltech, the classes of its prepared "
                    "folds; multi_train / multi_test: PASCAL VOC 2012 train / val")


def split_rows(scale, splits: Sequence[str] = SPLITS, roots: Optional[DataRoots] = None,
               progress: bool = False) -> Tuple[List[tuple], str]:
    """The splits of ``scale`` for a table: ``(rows, caption)``, a row ``(split, images,
    classes, stored size)`` each.

    At a folder scale a split whose folder is not given (or not readable) gets the row
    ``(split, "not given", "", why)`` instead of raising, so a chapter can show what it has.
    """
    p = get_preset(scale)
    rows = []
    for split in splits:
        try:
            ds = load_split(p, split, progress=progress, roots=roots)
        except (ValueError, FileNotFoundError) as e:
            if p.data == "scenes":
                raise
            rows.append((split, "not given", "", str(e)))
            continue
        rows.append((split, len(ds), len(ds.classes), f"{ds.stored_size} px"))
    return rows, (_SCENES_CAPTION if p.data == "scenes" else _FOLDERS_CAPTION)


#: The data folders each split is read from (see the module's table).
SPLIT_ROOTS = {"train": ("imagenet", "exclude"), "val": ("imagenet",), "test": ("imagenet",),
               "target": ("caltech",), "multi_train": ("voc",), "multi_test": ("voc",)}


def data_tag(scale, split: Optional[str] = None, roots: Optional[DataRoots] = None) -> str:
    """A name for the data a cache entry was computed from: the scenes' folder, or the paths
    of the folders that ``split`` is read from (all of them when ``split`` is None).

    So a cache entry over ImageNet's validation images (mined top 9, say) survives a change
    of the Caltech folder, and one over Caltech a change of the ImageNet folder.
    """
    p = get_preset(scale)
    if p.data == "scenes":
        return scenes_dir(p).name
    if split is not None and split not in SPLIT_ROOTS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")

    r = roots if roots is not None else data_roots()
    names = SPLIT_ROOTS[split] if split is not None else tuple(ROOT_VARIABLES)
    return "folders-" + config_key({k: str(getattr(r, k)) if getattr(r, k) is not None else None
                                    for k in names})


def split_source(scale, split: str, mean=None, progress: bool = True, roots: Optional[DataRoots] = None):
    """The batch source (``.batches()``, ``.mean()``) of a split, for mining and evaluation.

    ``mean``: the (3, S, S) training mean to normalise with (a run's: ``run.mean()``).
    """
    p = get_preset(scale)
    ds = load_split(p, split, progress=progress, roots=roots)
    if p.data == "scenes":
        return SceneSource(ds, mean=mean)
    return PathSource(ds, mean=mean, workers=p.workers)


class PathSource(SceneSource):
    """:class:`~zfcore.data.scenes.SceneSource`'s batches over a :class:`FolderSplit`: the same
    order and sharing among ranks, the images decoded a batch at a time."""

    def __init__(self, ds: FolderSplit, mean=None, workers: int = 0):
        import torch
        self.ds = ds
        self.images = ds.images                      # LazyImages: decoded in _take
        self.labels = torch.from_numpy(ds.labels)
        self.classes = list(ds.classes)
        self.num_classes = len(self.classes)
        self.stored_size = ds.stored_size
        self.skipped = 0
        self.workers = int(workers)
        self._mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)

    def mean(self):
        if self._mean is None:
            raise ValueError("give the training mean (e.g. run.mean()) to read a folder split")
        return self._mean

    def _take(self, idx):
        import torch
        return torch.from_numpy(self.images[np.asarray(idx)]).permute(0, 3, 1, 2)


def prepared_folds(ds: FolderSplit, n_train: int, n_folds: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The folds ``data_prep.caltech`` wrote for ``n_train`` images per class, as indices into ``ds``.

    Raises a ValueError naming the command to run when ``folds_<n_train>.json`` is missing
    or holds fewer than ``n_folds`` folds.
    """
    if ds.folds_dir is None:
        raise ValueError(f"the {ds.split!r} split has no prepared folds")
    files = folds_files(ds.folds_dir)
    if n_train not in files:
        have = ", ".join(str(n) for n in files) or "none"
        raise FileNotFoundError(f"{ds.folds_dir} has no folds for {n_train} training images per class "
                                f"(it has: {have}); run python -m data_prep.caltech --archive ... --out "
                                f"{ds.folds_dir} --train-per-class {','.join(str(n) for n in sorted(set(files) | {n_train}))}")
    doc = read_json(files[n_train], "the folds of data_prep.caltech")
    if len(doc["folds"]) < n_folds:
        raise ValueError(f"{files[n_train]} holds {len(doc['folds'])} folds, {n_folds} asked")
    images = ds.folds_dir / doc.get("images", "images")
    where = {os.path.normpath(q): i for i, q in enumerate(ds.paths)}
    out = []
    for f in doc["folds"][:n_folds]:
        pair = []
        for part in ("train", "test"):
            idx = []
            for rel, _label in f[part]:
                i = where.get(os.path.normpath(str(images / rel)))
                if i is None:
                    raise FileNotFoundError(f"{files[n_train]} lists {rel}, which is not under {images}; "
                                            f"rerun python -m data_prep.caltech")
                idx.append(i)
            pair.append(np.sort(np.array(idx, np.int64)))
        out.append(tuple(pair))
    return out
