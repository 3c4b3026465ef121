"""Classifiers on frozen features: feature generalization (Section 5.2) and feature analysis (Section 5.3).

Section 5.2 keeps layers 1-7 of the ImageNet-trained model fixed and trains a new
softmax on top of its layer-7 features, with the training images of another data
set: Caltech-101 and Caltech-256 (Tables 4, 5 and Fig. 9: 15, 30, 45 or 60
training images per class, 5 random folds, up to 50 test images per class, mean
per-class accuracy), and PASCAL VOC 2012 (Table 6: several objects per image, a
20-way softmax nonetheless). The baseline is the same network trained from
scratch on the target training images alone. Section 5.3 trains a linear SVM or
a softmax on the features of each layer in turn (Table 7): the deeper the layer,
the more discriminative its features.

At the ``tiny`` and ``default`` scales the "Caltech" is the ``target`` split of the
generated scenes (classes the model never saw) and the "PASCAL" the ``multi_train``
/ ``multi_test`` splits. At the ``imagenet`` scale (preset ``data="folders"``) the same
split names read the user's prepared folders (:mod:`zfcore.data.splits`): the
Caltech-101 or -256 that ``data_prep.caltech`` wrote (``ZF_CALTECH``) and PASCAL VOC
2012's train and val lists from ``data_prep.pascal`` (``ZF_VOC``).
Choices where the paper is silent (all of them arguments):

* Features: the centre ``image_size`` crop of each stored image, minus the run's
  per-pixel training mean, through the frozen model in eval mode (dropout off);
  one pass per image, cached (:func:`features`). Layer k is the output of the
  k-th block (:func:`block_layers`): ``norm1``, ``norm2``, ``relu3``, ``relu4``,
  ``pool5``, ``relu6``, ``relu7`` for our models (rectified, pooled and
  normalised where the block does so). Conv maps larger than ``grid`` x ``grid``
  are max-pooled to that grid (adaptive max pooling; 6, the size of Fig. 3's
  pool5), which keeps the linear classifiers of Table 7 small at any scale;
  ``grid=None`` keeps every position.
* Classifiers: every feature is standardised with the training images'
  mean and standard deviation. The softmax (:func:`fit_softmax`) is multinomial
  logistic regression with an L2 penalty ``weight_decay`` on the weights, fitted
  by full-batch L-BFGS (a convex problem: one answer, no seed). The SVM
  (:func:`linear_svm`) is scikit-learn's ``LinearSVC`` (one-vs-rest,
  squared hinge) with cost ``C``.
* Folds (:func:`target_folds`): at the scenes scales :func:`folds`, per class a
  seeded random order of its images; the first ``n_train`` train, the last
  ``min(n_test_max, count - n_train)`` test. Within a fold the training sets of
  different ``n_train`` are nested and the test set is the same whenever
  ``count - n_train >= n_test_max``. At the folder scale, the folds that
  ``data_prep.caltech`` wrote (``folds_<n>.json``, read by
  :func:`zfcore.data.splits.prepared_folds`): they fix the train and test images,
  so ``n_test_max`` and ``seed`` do not apply there, and a training-set size
  without its file is a FileNotFoundError naming the command that writes it.
* From scratch (:func:`scratch_accuracy`): the same architecture (the preset's
  widths, a C-way fc8) trained on the fold's training images only, with the
  paper's recipe (:func:`zfcore.train.train_on_arrays`) for a fixed number of
  SGD steps, the learning rate divided by 10 after three quarters of them; its
  mean is that of its own training images; tested on the centre crop. The step
  budget is small at the small scales (:data:`SCRATCH_BUDGET`), and said so.
* Multi-object images (:func:`pascal_table`): the single-label softmax is trained
  with each image repeated once per class it holds (``rule="replicate"``) or with
  the class of its largest object (``rule="largest"``, the scenes only: the VOC
  lists of ``data_prep.pascal`` carry no object sizes); its class probabilities
  are the scores. Per-class average precision (scikit-learn's
  ``average_precision_score``) on the test images with their full label sets.
  Beside it, for contrast, one-vs-rest logistic regressions (a sigmoid per class,
  multi-label).
"""
from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.transforms import center_crop
from .layout import Threads
from .presets import Preset, get_preset
from .artifacts import artifacts_dir, atomic_write, config_key, file_digest
from .runs import preset_of
from .progress import progress_bar

__all__ = ["features", "extract", "features_path", "block_layers", "folds", "mean_class_accuracy",
           "fit_softmax", "LinearClassifier", "linear_svm", "average_precision", "scratch_accuracy",
           "CaltechResult", "caltech_table", "accuracy_curve", "PascalResult", "pascal_table",
           "LayerResult", "layer_table", "Finding", "findings", "layer_findings",
           "caltech_figure", "layer_figure", "table_rows", "pascal_rows", "layer_rows",
           "target_folds", "prepared_ns", "target_dataset", "layer_header", "TABLE7_COLUMNS",
           "SCRATCH_BUDGET", "FIG9_NS", "PAPER_TABLE4", "PAPER_TABLE5", "PAPER_TABLE6", "PAPER_TABLE6_MEAN",
           "PAPER_TABLE7", "FEATURES_VERSION"]

FEATURES_VERSION = 1
SCRATCH_VERSION = 1
FEATURE_SPLITS = ("train", "val", "test", "target", "multi_train", "multi_test")

# Fig. 9's x axis: training images per class (the paper plots 0-60).
FIG9_NS = (1, 2, 3, 5, 10, 15, 30, 45, 60)

# The from-scratch budget per scale: folds trained, SGD steps per network and their
# mini-batch (None: the preset's epochs over the training images and its batch
# size, the full recipe). Every scale trains on each of its folds (the paper's 5;
# the tiny preset has 2), so the table gives a standard deviation. The small
# scales' budget fits the book's time on 2 CPU cores: far from convergence, which
# the chapter says. Early in training progress is limited by the number of steps,
# so the small scales take mini-batches smaller than the preset's. Measured at the
# default scale on one CPU thread (30 classes, chance 3.3%), mean +- std over the 5
# folds at 15/30/45/60 images per class: 100 steps of 16, about 3 s a network, end
# near chance (4.2-4.9%); 200 steps of 16, about 6 s a network (2 min for the
# table's 20), reach 6.0-8.1%; 200 steps of 32, about 12 s a network, 9.4-11.8%.
# The default takes the middle one.
SCRATCH_BUDGET: Dict[str, Dict[str, Optional[int]]] = {
    "tiny": {"folds": 2, "steps": 10, "batch_size": 16},
    "default": {"folds": 5, "steps": 200, "batch_size": 16},
    "imagenet": {"folds": 5, "steps": None, "batch_size": None},
}

# --------------------------------------------------------------------------- the paper's numbers

# Table 4, Caltech-101, mean per-class accuracy % (mean, std or None): 15 and 30 per class.
PAPER_TABLE4: Dict[str, Dict[int, Tuple[float, Optional[float]]]] = {
    "Bo et al.": {30: (81.4, 0.33)},
    "Jianchao et al.": {15: (73.2, None), 30: (84.3, None)},
    "Non-pretrained convnet": {15: (22.8, 1.5), 30: (46.5, 1.7)},
    "ImageNet-pretrained convnet": {15: (83.8, 0.5), 30: (86.5, 0.5)},
}
# Table 5, Caltech-256: 15, 30, 45, 60 per class.
PAPER_TABLE5: Dict[str, Dict[int, Tuple[float, Optional[float]]]] = {
    "Sohn et al.": {15: (35.1, None), 30: (42.1, None), 45: (45.7, None), 60: (47.9, None)},
    "Bo et al.": {15: (40.5, 0.4), 30: (48.0, 0.2), 45: (51.9, 0.2), 60: (55.2, 0.3)},
    "Non-pretrained convnet": {15: (9.0, 1.4), 30: (22.5, 0.7), 45: (31.2, 0.5), 60: (38.8, 1.4)},
    "ImageNet-pretrained convnet": {15: (65.7, 0.2), 30: (70.6, 0.2), 45: (72.7, 0.4), 60: (74.2, 0.3)},
}
# Table 6, PASCAL VOC 2012 test, per class: ([A] Sande et al., [B] Yan et al., ours).
PAPER_TABLE6: Dict[str, Tuple[float, float, float]] = {
    "airplane": (92.0, 97.3, 96.0), "bicycle": (74.2, 84.2, 77.1), "bird": (73.0, 80.8, 88.4),
    "boat": (77.5, 85.3, 85.5), "bottle": (54.3, 60.8, 55.8), "bus": (85.2, 89.9, 85.8),
    "car": (81.9, 86.8, 78.6), "cat": (76.4, 89.3, 91.2), "chair": (65.2, 75.4, 65.0),
    "cow": (63.2, 77.8, 74.4), "dining table": (63.2, 77.8, 67.7), "dog": (68.9, 83.0, 87.8),
    "horse": (78.2, 87.5, 86.0), "motorbike": (81.0, 90.1, 85.1), "person": (91.6, 95.0, 90.9),
    "potted plant": (55.9, 57.8, 52.2), "sheep": (69.4, 79.2, 83.6), "sofa": (65.4, 73.4, 61.1),
    "train": (86.7, 94.5, 91.8), "tv": (77.4, 80.7, 76.1),
}
PAPER_TABLE6_MEAN = (74.3, 82.2, 79.0)
# Table 7: (classifier, layer) -> (Cal-101 at 30/class, Cal-256 at 60/class), (mean, std).
PAPER_TABLE7: Dict[Tuple[str, int], Tuple[Tuple[float, float], Tuple[float, float]]] = {
    ("SVM", 1): ((44.8, 0.7), (24.6, 0.4)),
    ("SVM", 2): ((66.2, 0.5), (39.6, 0.3)),
    ("SVM", 3): ((72.3, 0.4), (46.0, 0.3)),
    ("SVM", 4): ((76.6, 0.4), (51.3, 0.1)),
    ("SVM", 5): ((86.2, 0.8), (65.6, 0.3)),
    ("SVM", 7): ((85.5, 0.4), (71.7, 0.2)),
    ("Softmax", 5): ((82.9, 0.4), (65.7, 0.5)),
    ("Softmax", 7): ((85.4, 0.4), (72.6, 0.1)),
}


# --------------------------------------------------------------------------- features

def block_layers(model: nn.Module) -> Dict[int, str]:
    """Layer k of Section 5.3 -> the module path of the last module of the k-th block.

    A block is a conv layer with what follows it up to the next weighted layer
    (its ReLU, pooling, normalisation), or an fc layer with its ReLU (dropout is
    off in eval mode, so it is left out). For our models: ``{1: "norm1", 2:
    "norm2", 3: "relu3", 4: "relu4", 5: "pool5", 6: "relu6", 7: "relu7", 8:
    "fc8"}``; a model with removed layers (Table 3) numbers its blocks by their
    names (``conv5`` stays layer 5). Works on any flat chain of modules; a
    torchvision model's blocks are numbered in order.
    """
    names = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    out: Dict[int, str] = {}
    k = 0
    current = None
    for n, m in names:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            digits = "".join(ch for ch in n if ch.isdigit())
            named = n.startswith(("conv", "fc")) and digits
            k = int(digits) if named else k + 1
            current = k
            out[k] = n
        elif current is not None and not isinstance(m, (nn.Dropout, nn.Flatten)):
            out[current] = n
    return out


def _resolve_layer(model: nn.Module, layer: Union[str, int]) -> str:
    """A module path from a name or a Section 5.3 layer number; ValueError listing the valid ones."""
    blocks = block_layers(model)
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if int(layer) not in blocks:
            raise ValueError(f"the model has no layer {int(layer)}; its layers are "
                             + ", ".join(f"{k} ({v})" for k, v in blocks.items()))
        return blocks[int(layer)]
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or not layer or layer not in modules or list(modules[layer].children()):
        valid = [n for n, m in modules.items() if n and not list(m.children())]
        raise ValueError(f"unknown layer {layer!r}; valid layers: {', '.join(valid)} "
                         f"(or a number 1-{max(blocks) if blocks else 0}: "
                         + ", ".join(f"{k}={v}" for k, v in blocks.items()) + ")")
    return layer


def _pool(a: torch.Tensor, grid: Optional[int]) -> torch.Tensor:
    """(n, C, H, W) -> (n, C * min(H, grid) * min(W, grid)); (n, J) passes through."""
    if a.dim() == 4:
        if grid is not None and (a.shape[2] > grid or a.shape[3] > grid):
            a = F.adaptive_max_pool2d(a, (min(grid, a.shape[2]), min(grid, a.shape[3])))
        a = a.flatten(1)
    return a


@torch.no_grad()
def extract(model: nn.Module, images, mean: torch.Tensor, image_size: int,
            layers: Sequence[Union[str, int]] = ("relu7",), grid: Optional[int] = 6,
            batch_size: int = 256, device=None, threads: Optional[int] = None,
            progress: bool = False) -> Dict[str, np.ndarray]:
    """The frozen features of ``images`` at ``layers`` (Section 5.2): one pass, no cache.

    Args:
        model: a chain of Conv2d, ReLU, MaxPool2d, LocalResponseNorm, Linear,
            Dropout, Flatten (see :func:`zfcore.deconv.layer_activations`).
        images: (N, S, S, 3) or (N, 3, S, S) uint8, numpy or torch; or anything with
            ``shape`` and slicing that gives such arrays (a
            :class:`~zfcore.data.splits.LazyImages`): it is read one batch at a time,
            the next batch decoded while the model runs on this one, so a large
            split never sits in memory whole.
        mean: (3, S, S) per-pixel mean, subtracted before the centre crop.
        image_size: the side of the centre crop the model takes.
        layers: module paths or Section 5.3 layer numbers (see :func:`block_layers`).
        grid: conv maps larger than grid x grid are max-pooled to it (None: keep all).
        threads: torch CPU threads to use (None: torch's setting).
    Returns:
        ``{layer name: (N, D) float32}``, D = C*h*w for a conv layer, J for an fc one.
    """
    from .deconv import layer_activations
    names = [_resolve_layer(model, l) for l in layers]
    lazy = not (torch.is_tensor(images) or isinstance(images, np.ndarray)) and hasattr(images, "shape")
    if lazy:
        shape = tuple(int(d) for d in images.shape)

        def get(s: int) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size]))
    else:
        x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
        shape = tuple(x.shape)

        def get(s: int) -> torch.Tensor:
            return x[s:s + batch_size]
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ValueError(f"expected (N, S, S, 3) or (N, 3, S, S) images, got shape {shape}")
    channels_last = shape[1] != 3
    device = torch.device(device) if device is not None else next(model.parameters()).device
    mean = mean.to(device)
    out: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    starts = list(range(0, shape[0], batch_size))
    # decoding files (LazyImages) overlaps with the model: the next batch is read on a thread
    pool = ThreadPoolExecutor(1) if lazy and len(starts) > 1 else None
    try:
        ahead = pool.submit(get, starts[0]) if pool is not None else None
        with Threads(threads):
            for i, s in enumerate(progress_bar(starts, enabled=progress, desc="features", leave=False)):
                if pool is not None:
                    xb = ahead.result()
                    if i + 1 < len(starts):
                        ahead = pool.submit(get, starts[i + 1])
                else:
                    xb = get(s)
                if channels_last:
                    xb = xb.permute(0, 3, 1, 2)
                xb = center_crop(xb.to(device).float() - mean, image_size)
                acts = layer_activations(model, xb.contiguous(), list(dict.fromkeys(names)))
                for n in names:
                    out[n].append(_pool(acts[n], grid).float().cpu().numpy())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return {n: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for n, v in out.items()}


def _device(p: Preset, device) -> Optional[torch.device]:
    """``device``; else at the folder scale a GPU when there is one; else None (the model's, the CPU)."""
    if device is not None:
        return torch.device(device)
    if p.data != "scenes" and torch.cuda.is_available():
        return torch.device("cuda")
    return None


def _check_split(split: str) -> None:
    if split not in FEATURE_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(FEATURE_SPLITS)}")


def features_path(run, split: str, layer: str, grid: Optional[int] = 6, scale=None) -> Path:
    """Where :func:`features` keeps one layer's features: keyed by the run's folder and
    final weights, the split and its data (:func:`zfcore.data.splits.data_tag`: the
    scenes' folder, or the paths of the data folders), the layer, the grid and the crop size."""
    from .data.splits import data_tag
    p = preset_of(run, scale)
    key = config_key("features", FEATURES_VERSION, Path(run.path).name, file_digest(run.checkpoint()),
                     split, layer, grid, p.image_size, data_tag(p, split))
    return artifacts_dir(p) / "transfer" / f"features-{key}.npy"


def _save_npy(path: Path, a: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, a))


def features(run, split: str = "target", layer: Union[str, int, Sequence] = "relu7", *,
             grid: Optional[int] = 6, scale=None, batch_size: int = 256, device=None,
             progress: bool = True):
    """The frozen features of every image of a split, cached (Section 5.2).

    Args:
        run: a complete :class:`zfcore.train.Run` (its final model and mean are used).
        split: ``"target"`` (the scale's Caltech), ``"multi_train"``, ``"multi_test"``
            (its PASCAL), or a source split.
        layer: a module path (``"relu7"``), a Section 5.3 layer number (1-7), or a
            list of them (one pass computes every layer not yet cached).
        grid: see :func:`extract`.
        scale: the preset whose data and artifacts folder to use (default: the run's).
        device: where the model runs (default: the CPU for the scenes; for the
            folders, a GPU when there is one).
    Returns:
        (N, D) float32 in the split's order (:func:`zfcore.data.splits.load_split`'s);
        a dict ``{name: (N, D)}`` for a list.
    The split is read with :func:`zfcore.data.splits.load_split`: the scenes, or at the
    folder scale the prepared folders, decoded a batch at a time. The cache is
    ``artifacts/<scale>/transfer/features-<key>.npy`` per layer (:func:`features_path`):
    new weights, data, layer or grid make a new entry. (A folder re-prepared in place
    keeps its paths, hence its key: delete the cache after preparing it again.)
    """
    _check_split(split)
    many = not isinstance(layer, (str, int, np.integer))
    asked = list(layer) if many else [layer]
    p = preset_of(run, scale)
    model = run.load()
    names = [_resolve_layer(model, l) for l in asked]
    result: Dict[str, np.ndarray] = {}
    missing = []
    for n in dict.fromkeys(names):
        path = features_path(run, split, n, grid, p)
        if path.exists():
            try:
                result[n] = np.load(path, allow_pickle=False)
                continue
            except (ValueError, OSError):
                pass
        missing.append(n)
    if missing:
        from .data.splits import load_split
        ds = load_split(p, split, progress=progress)
        # scenes: one thread, the scenes are small, and a busy machine's spinning OpenMP
        # threads can make two several times slower than one; folders: torch's threads
        scenes = p.data == "scenes"
        new = extract(model, ds.images, run.mean(), p.image_size, missing, grid=grid,
                      batch_size=batch_size, threads=1 if scenes else None,
                      device=_device(p, device), progress=progress)
        for n, a in new.items():
            _save_npy(features_path(run, split, n, grid, p), a)
            result[n] = a
    if many:
        return {n: result[n] for n in names}
    return result[names[0]]


# --------------------------------------------------------------------------- folds and scores

def folds(labels, n_train: int, n_test_max: int = 50, folds: int = 5,
          seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Random train/test folds with ``n_train`` training images per class (Section 5.2).

    Per fold and class, the class's images are put in a random order (seeded by
    ``seed``, the fold and the class, not by ``n_train``): the first ``n_train``
    train, the last ``min(n_test_max, count - n_train)`` test. So within a fold
    the training sets of larger ``n_train`` contain those of smaller ones, and the
    test set does not change while ``count - n_train >= n_test_max``.

    Args:
        labels: (N,) class indices.
        n_train: training images per class (15, 30, 45, 60 in Tables 4 and 5).
        n_test_max: most test images per class (50).
        folds: how many folds (5).
    Returns:
        ``folds`` pairs ``(train indices, test indices)``, each sorted, int64.
    Raises:
        ValueError: if a class has no more than ``n_train`` images (it says how many it has).
    """
    y = np.asarray(labels).reshape(-1)
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    if int(n_test_max) != n_test_max or n_test_max < 1:
        raise ValueError(f"n_test_max must be a positive integer, got {n_test_max!r}")
    if int(folds) != folds or folds < 1:
        raise ValueError(f"folds must be a positive integer, got {folds!r}")
    classes, counts = np.unique(y, return_counts=True)
    short = counts <= n_train
    if short.any():
        c = int(classes[np.argmax(short)])
        raise ValueError(f"n_train={n_train} is too many: class {c} has only {int(counts[short][0])} "
                         f"images (the smallest class has {int(counts.min())}), and at least one must "
                         f"be left to test; use n_train <= {int(counts.min()) - 1}")
    out = []
    for f in range(int(folds)):
        tr, te = [], []
        for c in classes:
            idx = np.flatnonzero(y == c)
            idx = idx[np.random.default_rng([int(seed), f, int(c)]).permutation(len(idx))]
            tr.append(idx[:n_train])
            te.append(idx[len(idx) - min(int(n_test_max), len(idx) - int(n_train)):])
        out.append((np.sort(np.concatenate(tr)).astype(np.int64),
                     np.sort(np.concatenate(te)).astype(np.int64)))
    return out


def target_folds(scale, ds, n_train: int, n_folds: Optional[int] = None, n_test_max: Optional[int] = None,
                 seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The first ``n_folds`` train/test folds of the target split ``ds`` with ``n_train``
    training images per class: what every table of this module trains and tests on.

    At the scenes scales :func:`folds` (``n_test_max``, default the preset's
    ``target_test``, and ``seed`` apply). At the folder scale the folds that
    ``data_prep.caltech`` wrote (:func:`zfcore.data.splits.prepared_folds`): the
    file ``folds_<n_train>.json`` decides the images, and a missing one is a
    FileNotFoundError that names the command to write it.
    """
    p = get_preset(scale)
    n_folds = p.target_folds if n_folds is None else int(n_folds)
    if p.data == "scenes":
        n_test_max = p.target_test if n_test_max is None else int(n_test_max)
        return folds(ds.labels, n_train, n_test_max, n_folds, seed)
    from .data.splits import prepared_folds
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    return prepared_folds(ds, int(n_train), n_folds)


def prepared_ns(ds) -> Tuple[int, ...]:
    """The training-set sizes whose folds ``data_prep.caltech`` wrote for a folder split (``()``
    for the scenes, whose folds are drawn for any size)."""
    from .data.splits import folds_files
    d = getattr(ds, "folds_dir", None)
    return tuple(folds_files(Path(d))) if d is not None else ()


def target_dataset(ds) -> Optional[str]:
    """``"caltech101"`` or ``"caltech256"``: the ``"dataset"`` of a folder split's prepared
    folds (None for the scenes, or when the files do not say)."""
    from .data.splits import folds_files, read_json
    d = getattr(ds, "folds_dir", None)
    files = folds_files(Path(d)) if d is not None else {}
    if not files:
        return None
    name = read_json(next(iter(files.values())), "the folds of data_prep.caltech").get("dataset")
    return str(name) if name else None


def mean_class_accuracy(y_true, y_pred) -> float:
    """Mean over the classes present in ``y_true`` of the share of its images predicted
    right (the measure of Tables 4, 5 and 7), in [0, 1]."""
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if len(t) != len(p) or len(t) == 0:
        raise ValueError(f"{len(t)} true labels and {len(p)} predictions: expected as many, at least one")
    accs = [float(np.mean(p[t == c] == c)) for c in np.unique(t)]
    return float(np.mean(accs))


def average_precision(targets, scores) -> np.ndarray:
    """Per-class average precision (scikit-learn's ``average_precision_score``).

    Args:
        targets: (N, C) bool, which classes each image holds.
        scores: (N, C), higher means more confident.
    Returns:
        (C,) in [0, 1]; NaN for a class with no positive image.
    """
    from sklearn.metrics import average_precision_score
    t = np.asarray(targets).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if t.shape != s.shape or t.ndim != 2:
        raise ValueError(f"targets {t.shape} and scores {s.shape}: expected the same (N, C) shape")
    return np.array([average_precision_score(t[:, c], s[:, c]) if t[:, c].any() else np.nan
                     for c in range(t.shape[1])])


# --------------------------------------------------------------------------- classifiers

@dataclass
class LinearClassifier:
    """A linear classifier on standardised features: ``scores = ((X - mu) / sigma) @ W + b``.

    Attributes:
        mu, sigma: (D,) the training features' mean and standard deviation.
        weight: (D, C); bias: (C,).
        kind: ``"softmax"`` (one exclusive class per image) or ``"sigmoid"``
            (one-vs-rest, multi-label).
    """
    mu: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    kind: str = "softmax"

    def decision_function(self, X) -> np.ndarray:
        """(N, D) -> (N, C) scores."""
        X = np.asarray(X, dtype=np.float32)
        return ((X - self.mu) / self.sigma) @ self.weight + self.bias

    def predict_proba(self, X) -> np.ndarray:
        """(N, C): softmax probabilities (rows sum to 1), or per-class sigmoids."""
        z = torch.from_numpy(self.decision_function(X))
        return (z.softmax(1) if self.kind == "softmax" else z.sigmoid()).numpy()

    def predict(self, X) -> np.ndarray:
        """(N,) the highest-scoring class."""
        return self.decision_function(X).argmax(1)


def _standardize(X: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    mu = X.mean(0)
    sigma = X.std(0)
    sigma = np.where(sigma > 1e-6 * max(1.0, float(sigma.max(initial=0.0))), sigma, 1.0)
    return mu.astype(np.float32), sigma.astype(np.float32)


def fit_softmax(X, y, num_classes: Optional[int] = None, *, weight_decay: float = 1e-3,
                steps: int = 50, multilabel: bool = False) -> LinearClassifier:
    """A softmax classifier on frozen features (Section 5.2), fitted by full-batch L-BFGS.

    Minimises the mean cross-entropy plus ``weight_decay / 2 * ||W||^2`` on
    standardised features (float32). Convex, started from zero: no seed is needed;
    ``steps`` L-BFGS iterations (each with a strong-Wolfe line search) bring the
    test accuracy to within a few tenths of a point of the optimum's.

    Args:
        X: (N, D) features.
        y: (N,) class indices, or with ``multilabel=True`` (N, C) 0/1 targets, each
            class then a separate sigmoid (one-vs-rest logistic regression).
        num_classes: C (default: the largest label + 1).
        steps: most L-BFGS iterations.
    Returns:
        a :class:`LinearClassifier`.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"expected (N, D) features with N >= 1, got shape {X.shape}")
    yv = np.asarray(y)
    if multilabel:
        if yv.shape != (len(X), yv.shape[-1]) or yv.ndim != 2:
            raise ValueError(f"multilabel targets must be (N, C) with N={len(X)}, got {yv.shape}")
        C = yv.shape[1]
    else:
        if yv.shape != (len(X),):
            raise ValueError(f"expected {len(X)} labels, got shape {yv.shape}")
        C = int(num_classes) if num_classes is not None else int(yv.max()) + 1
        if yv.min() < 0 or yv.max() >= C:
            raise ValueError(f"labels must lie in 0..{C - 1}, got {int(yv.min())}..{int(yv.max())}")
    mu, sigma = _standardize(X)
    with Threads(1):                     # small matrices: one thread is faster, and much
        Z = torch.from_numpy((X - mu) / sigma)      # faster on a busy machine
        T = torch.from_numpy(yv.astype(np.float32) if multilabel else yv.astype(np.int64))
        W = torch.zeros(X.shape[1], C, requires_grad=True)
        b = torch.zeros(C, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=int(steps), history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

        def closure():
            opt.zero_grad()
            z = Z @ W + b
            loss = (F.binary_cross_entropy_with_logits(z, T) * C if multilabel else F.cross_entropy(z, T))
            loss = loss + 0.5 * weight_decay * (W * W).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
    return LinearClassifier(mu, sigma, W.detach().float().numpy(), b.detach().float().numpy(),
                            "sigmoid" if multilabel else "softmax")


def linear_svm(X, y, C: float = 1e-3, tol: float = 1e-2, max_iter: int = 2000):
    """A linear SVM on standardised features (Section 5.3): scikit-learn's ``LinearSVC``
    (one-vs-rest, squared hinge loss, cost ``C``, solved in the dual) after a
    ``StandardScaler``. The paper gives no cost; a small one (strong regularisation)
    also makes liblinear converge in a few dozen passes. The stopping tolerance
    ``tol`` is looser than scikit-learn's 1e-4: on the default scale's layers it
    changed no test accuracy by 0.1 point and halves the time.

    Returns the fitted pipeline (``predict``, ``decision_function``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    X = np.asarray(X, dtype=np.float32)
    clf = make_pipeline(StandardScaler(), LinearSVC(C=C, dual=True, tol=tol, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, np.asarray(y))
    return clf


# --------------------------------------------------------------------------- from scratch

def _scratch_budget(p: Preset, folds_: Optional[int], steps: Optional[int],
                    batch: Optional[int]) -> Tuple[int, Optional[int], int]:
    b = SCRATCH_BUDGET.get(p.name, {"folds": p.target_folds, "steps": None, "batch_size": None})
    return (int(folds_) if folds_ is not None else min(int(b["folds"]), p.target_folds),
            int(steps) if steps is not None else b["steps"],
            int(batch) if batch is not None else int(b["batch_size"] or p.batch_size))


def scratch_accuracy(scale, n_train: int, fold: int, *, steps: Optional[int] = None,
                     batch_size: Optional[int] = None, n_test_max: Optional[int] = None, seed: int = 0,
                     lr: Optional[float] = None, threads: Union[int, str, None] = "auto",
                     progress: bool = False, device=None) -> float:
    """Mean per-class accuracy (in [0, 1]) of the network of Fig. 3 trained from scratch on
    one fold's target training images (the "non-pretrained convnet" of Tables 4 and 5).

    The preset's architecture with a C-way fc8 (C target classes) and the paper's
    recipe (:func:`zfcore.train.train_on_arrays`: crops, flips, SGD at ``lr`` (the
    preset's), momentum, weight decay, dropout, filter renormalisation) for
    ``steps`` SGD steps on mini-batches of ``batch_size`` (default: the preset's;
    ``steps=None``: the preset's epochs over the training images), the learning
    rate divided by 10 after three quarters; tested on the fold's test images,
    centre crop. The fold is fold ``fold`` of :func:`target_folds` (at the scenes
    scales :func:`folds`, which does not depend on how many folds are drawn; at the
    folder scale the prepared ``folds_<n_train>.json``). The target split is read
    with :func:`zfcore.data.splits.load_split`; at the folder scale only the fold's
    images are decoded. On the CPU it trains on ``threads`` threads (``"auto"``: one
    for the scenes, torch's setting for the folders; ``None``: torch's setting); at
    the folder scale on a GPU when there is one (``device``).
    Cached as JSON under ``artifacts/<scale>/transfer/`` keyed by every setting and
    the data (:func:`zfcore.data.splits.data_tag`).
    """
    from . import models as zfmodels
    from .data.splits import data_tag, load_split
    from .train import train_on_arrays
    p = get_preset(scale)
    scenes = p.data == "scenes"
    if threads == "auto":
        threads = 1 if scenes else None
    n_test_max = p.target_test if n_test_max is None else int(n_test_max)
    lr = p.lr if lr is None else float(lr)
    batch_size = p.batch_size if batch_size is None else int(batch_size)
    ds = load_split(p, "target", progress=progress)
    tr, te = target_folds(p, ds, n_train, int(fold) + 1, n_test_max, seed)[int(fold)]
    if steps is None:
        steps = p.epochs * -(-len(tr) // min(batch_size, len(tr)))
    model_kw = dict(input_size=p.image_size, width=p.width, fc_units=p.fc_units, dropout=p.dropout,
                    init_std=p.init_std, init=p.init)
    recipe = dict(steps=int(steps), batch_size=batch_size, lr=lr, momentum=p.momentum,
                  weight_decay=p.weight_decay, filter_radius=p.filter_radius)
    key = config_key("scratch", SCRATCH_VERSION, model_kw, recipe, int(n_train), int(fold), int(n_test_max),
                     int(seed), data_tag(p, "target"), threads)
    path = artifacts_dir(p) / "transfer" / f"scratch-{key}.json"
    if path.exists():
        try:
            return float(json.loads(path.read_text())["accuracy"])
        except (ValueError, KeyError):
            pass
    C = len(ds.classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 7919 + int(fold) * 104729 + int(n_train))
        model = zfmodels.zfnet(C, **model_kw)
    images = torch.from_numpy(ds.images[tr]).permute(0, 3, 1, 2)
    # summed a batch at a time (no float64 copy of every image); sums of uint8 values are
    # exact in float64, so this is the mean of the whole stack, bit for bit
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for s in range(0, len(images), 256):
        total += images[s:s + 256].double().sum(0)
    mean = (total / len(images)).float()
    # scenes: one CPU thread, a network this small gains little from more, and on a
    # busy machine two spinning OpenMP threads made each step about ten times slower
    with Threads(threads):
        train_on_arrays(model, images, ds.labels[tr], mean, p.image_size,
                        seed=seed * 7919 + int(fold) * 104729 + int(n_train) + 1,
                        progress=progress, device=_device(p, device), **recipe)
    del images
    preds = []
    dev = next(model.parameters()).device
    with torch.no_grad():
        for s in range(0, len(te), 256):
            x = torch.from_numpy(ds.images[te[s:s + 256]]).permute(0, 3, 1, 2)
            xb = center_crop(x.to(dev).float() - mean.to(dev), p.image_size)
            preds.append(model(xb.contiguous(memory_format=torch.channels_last)).argmax(1).cpu().numpy())
    acc = mean_class_accuracy(ds.labels[te], np.concatenate(preds))
    record = {"accuracy": acc, "n_train": int(n_train), "fold": int(fold), "recipe": recipe,
              "model": model_kw, "test_images": int(len(te))}
    atomic_write(path, lambda f: f.write(json.dumps(record).encode()))
    return acc


# --------------------------------------------------------------------------- Tables 4, 5 and Fig. 9

@dataclass
class CaltechResult:
    """Accuracies on the target classes (the scale's Caltech), per training-set size.

    Attributes:
        pretrained: ``{n_train: [mean per-class accuracy % per fold]}``, the softmax on
            the frozen ``layer`` features.
        scratch: the same for the network trained from scratch (its folds may be fewer).
        layer, n_test_max, folds: the settings; scratch_folds, scratch_steps,
            scratch_batch: the from-scratch budget.
        test_images: test images per fold; classes: the target classes.
        dataset: at the folder scale the prepared folds' data set (``"caltech101"`` or
            ``"caltech256"``), None for the scenes.
    """
    pretrained: Dict[int, List[float]]
    scratch: Dict[int, List[float]]
    layer: str
    n_test_max: int
    folds: int
    scratch_folds: int
    scratch_steps: Optional[int]
    scratch_batch: int
    test_images: int
    classes: List[str]
    scale: str
    weight_decay: float
    dataset: Optional[str] = None

    def mean(self, method: str, n: int) -> float:
        return float(np.mean(getattr(self, method)[n]))

    def std(self, method: str, n: int) -> float:
        v = getattr(self, method)[n]
        return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def _table_ns(p: Preset, ds=None) -> Tuple[int, ...]:
    """The table's training-set sizes: the preset's; at the folder scale those of them
    whose folds were prepared (else every prepared size)."""
    if p.data == "scenes" or ds is None:
        return tuple(p.target_train)
    have = prepared_ns(ds)
    return tuple(n for n in have if n in p.target_train) or have


def _curve_ns(p: Preset, ds=None) -> Tuple[int, ...]:
    """Fig. 9's sizes up to the preset's largest; at the folder scale the prepared ones among
    them (and any other prepared size), with a warning naming those left out."""
    if p.data == "scenes" or ds is None:
        top = max(p.target_train)
        return tuple(sorted({n for n in FIG9_NS if n <= top} | set(p.target_train)))
    have = prepared_ns(ds)
    top = max(have, default=0)
    want = {n for n in FIG9_NS if n <= top} | set(have)
    missing = sorted(want - set(have))
    if missing:
        warnings.warn(f"Fig. 9 leaves out {', '.join(map(str, missing))} training images per class: "
                      f"{ds.folds_dir} has folds for {', '.join(map(str, have))} only; to add them, run "
                      f"python -m data_prep.caltech --archive ... --out {ds.folds_dir} --train-per-class "
                      + ",".join(str(n) for n in sorted(want)), stacklevel=3)
    return tuple(sorted(set(have)))


def caltech_table(run, ns: Optional[Sequence[int]] = None, n_folds: Optional[int] = None, *,
                  scratch: bool = True, scratch_ns: Optional[Sequence[int]] = None,
                  scratch_folds: Optional[int] = None, scratch_steps: Optional[int] = None,
                  scratch_batch: Optional[int] = None, n_test_max: Optional[int] = None,
                  layer: str = "relu7", weight_decay: float = 1e-3, seed: int = 0, scale=None,
                  progress: bool = True) -> CaltechResult:
    """Tables 4 and 5 (Section 5.2): a softmax on the frozen layer-7 features of ``run``
    against the same network trained from scratch, on the target classes.

    Args:
        run: the trained :class:`zfcore.train.Run` (its classes are the "ImageNet").
        ns: training images per class (default: the preset's ``target_train``,
            15/30/45/60 at the default scale; at the folder scale those of them with
            prepared folds, e.g. 15/30 for Caltech-101).
        n_folds: folds (default: the preset's, 5).
        scratch: also train from scratch, at ``scratch_ns`` (default ``ns`` within the
            preset's ``target_train``), on the first ``scratch_folds`` folds, for
            ``scratch_steps`` steps of ``scratch_batch`` images each (defaults:
            :data:`SCRATCH_BUDGET`).
        n_test_max: most test images per class (default: the preset's, 50; at the
            folder scale the prepared folds fix the test images and this is unused).
        layer: the frozen features (``"relu7"``: layer 7).
        weight_decay: the softmax's L2 penalty (:func:`fit_softmax`).
    The folds are :func:`target_folds`': drawn at the scenes scales, ``data_prep.caltech``'s
    at the folder scale (an ``n`` without its ``folds_<n>.json`` is a FileNotFoundError).
    Returns:
        a :class:`CaltechResult` (accuracies in %).
    """
    from .data.splits import load_split
    p = preset_of(run, scale)
    ds = load_split(p, "target", progress=progress)
    ns = tuple(int(n) for n in (ns if ns is not None else _table_ns(p, ds)))
    n_folds = p.target_folds if n_folds is None else int(n_folds)
    n_test_max = p.target_test if n_test_max is None else int(n_test_max)
    y = ds.labels
    fold_sets = {n: target_folds(p, ds, n, n_folds, n_test_max, seed) for n in ns}   # fail before the features
    X = features(run, "target", layer, scale=p, progress=progress)
    C = len(ds.classes)
    pre: Dict[int, List[float]] = {}
    test_images = 0
    for n in ns:
        pre[n] = []
        for tr, te in fold_sets[n]:
            clf = fit_softmax(X[tr], y[tr], C, weight_decay=weight_decay)
            pre[n].append(100 * mean_class_accuracy(y[te], clf.predict(X[te])))
            test_images = len(te)
    if p.data != "scenes" and ns:         # the most test images per class the prepared folds hold
        n_test_max = max(int(np.bincount(y[te]).max()) for n in ns for _, te in fold_sets[n])
    sfolds, ssteps, sbatch = _scratch_budget(p, scratch_folds, scratch_steps, scratch_batch)
    sfolds = min(sfolds, n_folds)
    scr: Dict[int, List[float]] = {}
    if scratch:
        sns = tuple(int(n) for n in (scratch_ns if scratch_ns is not None else
                                     [n for n in ns if n in p.target_train]))
        jobs = [(n, f) for n in sns for f in range(sfolds)]
        bar = progress_bar(jobs, enabled=progress, desc="from scratch", leave=False)
        for n, f in bar:
            scr.setdefault(n, []).append(100 * scratch_accuracy(
                p, n, f, steps=ssteps, batch_size=sbatch, n_test_max=n_test_max if p.data == "scenes" else None,
                seed=seed))
    return CaltechResult(pre, scr, layer if isinstance(layer, str) else str(layer), n_test_max, n_folds,
                         sfolds, ssteps, sbatch, test_images, list(ds.classes), p.name, weight_decay,
                         target_dataset(ds))


def accuracy_curve(run, ns: Optional[Sequence[int]] = None, **kwargs) -> CaltechResult:
    """Fig. 9: the pretrained softmax's accuracy against training images per class
    (default 1, 2, 3, 5, 10, 15, 30, 45, 60, up to the preset's largest). Keyword
    arguments are those of :func:`caltech_table` (``scratch=False`` unless given).

    At the folder scale each size needs its prepared folds: a size given in ``ns``
    without its ``folds_<n>.json`` is a FileNotFoundError naming the command that
    writes it; by default the curve takes the sizes that were prepared, and warns
    (:class:`UserWarning`) naming the Fig. 9 sizes left out and that command.
    """
    kwargs.setdefault("scratch", False)
    if ns is None:
        p = preset_of(run, kwargs.get("scale"))
        if p.data == "scenes":
            ns = _curve_ns(p)
        else:
            from .data.splits import load_split
            ns = _curve_ns(p, load_split(p, "target", progress=kwargs.get("progress", True)))
    return caltech_table(run, ns, **kwargs)


def _fmt(m: Optional[float], s: Optional[float] = None, digits: int = 1) -> str:
    if m is None:
        return "-"
    if s is None or not np.isfinite(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def table_rows(result: CaltechResult, ns: Optional[Sequence[int]] = None,
               paper: Optional[Dict[str, Dict[int, Tuple[float, Optional[float]]]]] = None) -> List[tuple]:
    """Rows ``(method, accuracy per n)`` as Tables 4 and 5 print them: the paper's rows
    (``paper``: :data:`PAPER_TABLE4` or :data:`PAPER_TABLE5`), then ours."""
    ns = tuple(ns) if ns is not None else tuple(sorted(set(result.scratch) | set(result.pretrained)))
    rows = []
    for method, vals in (paper or {}).items():
        rows.append((f"paper: {method}", *[_fmt(*vals[n]) if n in vals else "-" for n in ns]))
    for label, method in (("ours: trained from scratch", "scratch"), ("ours: pretrained, softmax on "
                                                                     f"{result.layer}", "pretrained")):
        d = getattr(result, method)
        if d:
            rows.append((label, *[_fmt(result.mean(method, n), result.std(method, n)) if n in d else "-"
                                  for n in ns]))
    return rows


def caltech_figure(result: CaltechResult, paper: bool = True):
    """Fig. 9: mean per-class accuracy against training images per class, ours (left, with
    the standard deviation over folds) and the paper's (right): its Caltech-256 numbers
    (Table 5, which Fig. 9 plots), or its Caltech-101 ones (Table 4) when ours are on a
    prepared Caltech-101 (``result.dataset``)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2 if paper else 1, figsize=(10 if paper else 5.2, 3.6), squeeze=False)
    ax = axes[0, 0]
    for method, style, label in (("pretrained", "o-", f"pretrained + softmax ({result.layer})"),
                                 ("scratch", "s--", "trained from scratch")):
        d = getattr(result, method)
        if not d:
            continue
        ns = sorted(d)
        m = np.array([result.mean(method, n) for n in ns])
        s = np.array([result.std(method, n) for n in ns])
        ax.errorbar(ns, m, yerr=np.nan_to_num(s), fmt=style, capsize=3, ms=4, label=label)
    ax.axhline(100 / len(result.classes), color="gray", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("mean per-class accuracy (%)")
    ax.set_title(f"this run ({result.scale} scale, {len(result.classes)} target classes)", fontsize=10)
    ax.set_ylim(0, 109)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper center", ncol=3, handlelength=1.6, columnspacing=1)
    if paper:
        ax = axes[0, 1]
        c101 = result.dataset == "caltech101"
        table = PAPER_TABLE4 if c101 else PAPER_TABLE5
        for method, style in (("ImageNet-pretrained convnet", "o-"), ("Non-pretrained convnet", "s--"),
                              ("Bo et al.", "^:"), ("Sohn et al.", "v:"), ("Jianchao et al.", "v:")):
            vals = table.get(method)
            if not vals:
                continue
            ns = sorted(vals)
            ax.errorbar(ns, [vals[n][0] for n in ns], yerr=[vals[n][1] or 0 for n in ns], fmt=style,
                        capsize=3, ms=4, label=method)
        ax.set_xlabel("training images per class")
        ax.set_title("the paper: Caltech-101 (Table 4)" if c101 else "the paper: Caltech-256 (Table 5)",
                     fontsize=10)
        ax.set_ylim(0, 109)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper center", ncol=2, handlelength=1.6, columnspacing=1)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Table 6

@dataclass
class PascalResult:
    """Per-class average precision on the multi-object images (the scale's PASCAL, Table 6).

    Attributes:
        classes: the C class names.
        softmax_ap: (C,) AP % of the single-label softmax (the paper's classifier).
        ovr_ap: (C,) AP % of one-vs-rest logistic regressions (multi-label), for contrast.
        rule: how the softmax got one label per training example.
        prob_by_count: ``{k: mean softmax probability of a class present in a test image
            holding k classes}``; 1/k is what sharing the unit mass equally gives.
        top1_in_labels: share of test images whose most probable class is one they hold.
        train_images, test_images, labels_per_image: sizes.
    """
    classes: List[str]
    softmax_ap: np.ndarray
    ovr_ap: np.ndarray
    rule: str
    prob_by_count: Dict[int, float]
    ovr_prob_by_count: Dict[int, float]
    top1_in_labels: float
    train_images: int
    test_images: int
    labels_per_image: float
    layer: str
    scale: str

    @property
    def softmax_map(self) -> float:
        return float(np.nanmean(self.softmax_ap))

    @property
    def ovr_map(self) -> float:
        return float(np.nanmean(self.ovr_ap))


PASCAL_RULES = ("replicate", "largest")


def pascal_table(run, *, layer: str = "relu7", rule: str = "replicate", weight_decay: float = 1e-3,
                 scale=None, progress: bool = True) -> PascalResult:
    """Table 6 (Section 5.2): a softmax on frozen features for multi-object images.

    The paper trains a 20-way softmax on PASCAL's training images although they
    hold several objects. Ours gets one label per training example by ``rule``:
    ``"replicate"`` (each image once per class it holds) or ``"largest"`` (the class
    of its largest object). Scores are the softmax probabilities; each class's
    average precision is computed on ``multi_test`` with the full label sets.
    One-vs-rest logistic regressions on the same features are the multi-label
    contrast. At the folder scale the splits are PASCAL VOC 2012's train and val lists
    (:func:`zfcore.data.splits.load_split`); their labels carry no object sizes, so
    ``rule="largest"`` is a ValueError there: use ``"replicate"``.
    """
    from .data.splits import load_split
    if rule not in PASCAL_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(PASCAL_RULES)}")
    p = preset_of(run, scale)
    if rule == "largest" and p.data != "scenes":
        raise ValueError(f"rule='largest' needs each object's size, which the {p.name!r} scale's VOC "
                         f"lists (data_prep.pascal's labels.json) do not carry: use rule='replicate' "
                         f"(each training image once per class it holds)")
    tr_ds = load_split(p, "multi_train", progress=progress)
    te_ds = load_split(p, "multi_test", progress=progress)
    Xtr = features(run, "multi_train", layer, scale=p, progress=progress)
    Xte = features(run, "multi_test", layer, scale=p, progress=progress)
    C = tr_ds.targets.shape[1]
    if rule == "replicate":
        rows, labs = np.nonzero(tr_ds.targets)
        Xs, ys = Xtr[rows], labs
    else:
        Xs, ys = Xtr, tr_ds.labels
    soft = fit_softmax(Xs, ys, C, weight_decay=weight_decay)
    ovr = fit_softmax(Xtr, tr_ds.targets.astype(np.float32), weight_decay=weight_decay, multilabel=True)
    ps, po = soft.predict_proba(Xte), ovr.predict_proba(Xte)
    t = te_ds.targets
    k = t.sum(1)
    by = {int(c): float(ps[k == c][t[k == c]].mean()) for c in np.unique(k)}
    oby = {int(c): float(po[k == c][t[k == c]].mean()) for c in np.unique(k)}
    top1 = float(t[np.arange(len(t)), ps.argmax(1)].mean())
    return PascalResult(list(tr_ds.classes), 100 * average_precision(t, ps), 100 * average_precision(t, po),
                        rule, by, oby, top1, len(tr_ds), len(te_ds), float(tr_ds.targets.sum(1).mean()),
                        layer, p.name)


def pascal_rows(result: PascalResult) -> List[tuple]:
    """``(class, softmax AP %, one-vs-rest AP %)`` per class, then the mean."""
    rows = [(c, f"{a:.1f}", f"{b:.1f}") for c, a, b in zip(result.classes, result.softmax_ap, result.ovr_ap)]
    rows.append(("mean", f"{result.softmax_map:.1f}", f"{result.ovr_map:.1f}"))
    return rows


# --------------------------------------------------------------------------- Table 7

@dataclass
class LayerResult:
    """Table 7 (Section 5.3): accuracy of a classifier on each layer's features.

    Attributes:
        acc: ``{(classifier, layer number, n_train): [mean per-class accuracy % per fold]}``,
            classifier ``"SVM"`` or ``"Softmax"``.
        layers: ``{layer number: module path}``; dims: ``{layer number: feature dimension}``.
        dataset: at the folder scale the prepared folds' data set (``"caltech101"`` or
            ``"caltech256"``: the paper's column to compare with), None for the scenes.
        num_classes: the target classes.
    """
    acc: Dict[Tuple[str, int, int], List[float]]
    layers: Dict[int, str]
    dims: Dict[int, int]
    ns: Tuple[int, ...]
    folds: int
    grid: Optional[int]
    C: float
    weight_decay: float
    scale: str
    dataset: Optional[str] = None
    num_classes: Optional[int] = None

    def mean(self, clf: str, layer: int, n: int) -> float:
        return float(np.mean(self.acc[(clf, layer, n)]))

    def std(self, clf: str, layer: int, n: int) -> float:
        v = self.acc[(clf, layer, n)]
        return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


# Table 7's columns: (data set, training images per class, header); index into PAPER_TABLE7's pairs.
TABLE7_COLUMNS = (("caltech101", 30, "paper, Cal-101 (30/class)"), ("caltech256", 60, "paper, Cal-256 (60/class)"))


def _table7_ns(p: Preset, ds=None) -> Tuple[int, ...]:
    """The scenes: the preset's second training-set size. The folders: the paper's column for the
    prepared data set (30 for Caltech-101, 60 for Caltech-256) if its folds were prepared, else
    the largest prepared size."""
    t = tuple(p.target_train)
    if p.data == "scenes" or ds is None:
        return (t[1] if len(t) > 1 else t[0],)
    have = prepared_ns(ds)
    want = {d: n for d, n, _ in TABLE7_COLUMNS}.get(target_dataset(ds))
    if want in have or not have:
        return (want if want is not None else (t[1] if len(t) > 1 else t[0]),)
    return (max(have),)


def _table7_columns(result: "LayerResult") -> List[int]:
    """Which of the paper's Table 7 columns to show: the prepared data set's, else both."""
    cols = [j for j, (d, _, _) in enumerate(TABLE7_COLUMNS) if d == result.dataset]
    return cols or list(range(len(TABLE7_COLUMNS)))


def layer_header(result: "LayerResult") -> List[str]:
    """The column names of :func:`layer_rows`."""
    return (["classifier (layer: module, features)"] + [f"ours, {n}/class" for n in result.ns]
            + [TABLE7_COLUMNS[j][2] for j in _table7_columns(result)])


def layer_table(run, layers: Optional[Sequence[int]] = None, ns: Optional[Sequence[int]] = None,
                n_folds: Optional[int] = None, *, classifiers: Sequence[str] = ("SVM", "Softmax"),
                grid: Optional[int] = 6, C: float = 1e-3, weight_decay: float = 1e-3,
                n_test_max: Optional[int] = None, seed: int = 0, scale=None,
                progress: bool = True) -> LayerResult:
    """Table 7 (Section 5.3): a linear SVM and a softmax on the features of each layer.

    Args:
        layers: Section 5.3 layer numbers (default 1-7; see :func:`block_layers`).
        ns: training images per class (default: the preset's second
            ``target_train``, 30 at the default scale, as the paper's Caltech-101
            column; add the last, 60, for its Caltech-256 column; at the folder
            scale the paper's column for the prepared data set, 30 for Caltech-101
            and 60 for Caltech-256, when its folds were prepared).
        n_folds: folds (default: the preset's, 5); the same folds as :func:`caltech_table`
            (:func:`target_folds`).
        classifiers: any of ``"SVM"`` (:func:`linear_svm`, cost ``C``) and
            ``"Softmax"`` (:func:`fit_softmax`, ``weight_decay``).
        grid: see :func:`extract`.
    Returns:
        a :class:`LayerResult` (accuracies in %).
    """
    from .data.splits import load_split
    p = preset_of(run, scale)
    model = run.load()
    blocks = block_layers(model)
    layers = tuple(int(l) for l in (layers if layers is not None else [k for k in range(1, 8) if k in blocks]))
    for l in layers:
        _resolve_layer(model, l)
    bad = [c for c in classifiers if c not in ("SVM", "Softmax")]
    if bad:
        raise ValueError(f"unknown classifier {bad[0]!r}; valid: SVM, Softmax")
    ds = load_split(p, "target", progress=progress)
    ns = tuple(int(n) for n in (ns if ns is not None else _table7_ns(p, ds)))
    n_folds = p.target_folds if n_folds is None else int(n_folds)
    n_test_max = p.target_test if n_test_max is None else int(n_test_max)
    y = ds.labels
    C_cls = len(ds.classes)
    fold_sets = {n: target_folds(p, ds, n, n_folds, n_test_max, seed) for n in ns}   # fail before the features
    feats = features(run, "target", [blocks[l] for l in layers], grid=grid, scale=p, progress=progress)
    acc: Dict[Tuple[str, int, int], List[float]] = {}
    jobs = [(l, n) for l in layers for n in ns]
    for l, n in progress_bar(jobs, enabled=progress, desc="Table 7", leave=False):
        X = feats[blocks[l]]
        for tr, te in fold_sets[n]:
            for c in classifiers:
                if c == "SVM":
                    pred = linear_svm(X[tr], y[tr], C=C).predict(X[te])
                else:
                    pred = fit_softmax(X[tr], y[tr], C_cls, weight_decay=weight_decay).predict(X[te])
                acc.setdefault((c, l, n), []).append(100 * mean_class_accuracy(y[te], pred))
    return LayerResult(acc, {l: blocks[l] for l in layers}, {l: int(feats[blocks[l]].shape[1]) for l in layers},
                       ns, n_folds, grid, C, weight_decay, p.name, target_dataset(ds), C_cls)


def layer_rows(result: LayerResult) -> List[tuple]:
    """Rows ``(classifier (layer), ours per n ..., paper Cal-101, paper Cal-256)`` as Table 7
    (only the prepared data set's column of the paper's when ``result.dataset`` says which;
    :func:`layer_header` names the columns)."""
    rows = []
    cols = _table7_columns(result)
    for c in ("SVM", "Softmax"):
        for l in result.layers:
            if (c, l, result.ns[0]) not in result.acc:
                continue
            ours = [_fmt(result.mean(c, l, n), result.std(c, l, n)) for n in result.ns]
            pp = PAPER_TABLE7.get((c, l))
            paper = [_fmt(*pp[j]) if pp else "-" for j in cols]
            rows.append((f"{c} ({l}: {result.layers[l]}, {result.dims[l]} features)", *ours, *paper))
    return rows


def layer_figure(result: LayerResult):
    """Table 7 as a plot: accuracy against layer, ours (per classifier and n) and the paper's
    (the prepared data set's column when ``result.dataset`` says which, else both)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ls = list(result.layers)
    for c, style in (("SVM", "o-"), ("Softmax", "s--")):
        for n in result.ns:
            if (c, ls[0], n) not in result.acc:
                continue
            ax.errorbar(ls, [result.mean(c, l, n) for l in ls],
                        yerr=np.nan_to_num([result.std(c, l, n) for l in ls]), fmt=style, capsize=3, ms=4,
                        label=f"{c}, {n}/class")
    ax.set_xlabel("layer")
    ax.set_ylabel("mean per-class accuracy (%)")
    ax.set_title(f"this run ({result.scale} scale)", fontsize=10)
    ax.set_xticks(ls)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for c, style in (("SVM", "o-"), ("Softmax", "s--")):
        for j, name in enumerate(("Cal-101, 30/class", "Cal-256, 60/class")):
            if j not in _table7_columns(result):
                continue
            pts = sorted((l, v[j][0], v[j][1]) for (cc, l), v in PAPER_TABLE7.items() if cc == c)
            ax.errorbar([q[0] for q in pts], [q[1] for q in pts], yerr=[q[2] for q in pts], fmt=style,
                        capsize=3, ms=4, label=f"{c}, {name}")
    ax.set_xlabel("layer")
    ax.set_title("the paper (Table 7)", fontsize=10)
    ax.set_xticks(range(1, 8))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the paper's findings

@dataclass
class Finding:
    """One of the paper's conclusions, checked on the numbers.

    Attributes:
        claim: the conclusion; holds: whether the numbers bear it out, by
        ``criterion`` (fixed before looking); evidence: the numbers.
    """
    claim: str
    holds: bool
    criterion: str
    evidence: str


def findings(caltech: Optional[CaltechResult] = None, pascal: Optional[PascalResult] = None,
             few: int = 6) -> List[Finding]:
    """Check Section 5.2's conclusions against this run's numbers.

    1. Pretrained features beat training from scratch on small training sets: the
       pretrained softmax's mean accuracy is above the from-scratch network's at
       every training-set size where both were measured.
    2. With pretrained features a few images per class go a long way (Fig. 9: with
       6 per class they beat the best earlier method's 60): the pretrained accuracy
       at the largest measured n <= ``few`` is above the from-scratch accuracy at
       the largest n.
    3. Accuracy rises with the training images per class, with diminishing gains
       (Table 5: +4.9, +2.1, +1.5): the pretrained mean rises at every step of the
       table's n, and the first step gains more than the last.
    4. A single-label softmax fits multi-object images badly (the paper's reason for
       trailing the best PASCAL entry): the one-vs-rest logistic regressions reach a
       higher mean AP than the softmax on the same features, and the softmax
       probability of a class present in an image falls as the image holds more
       classes.
    """
    out: List[Finding] = []
    if caltech is not None and caltech.scratch:
        ns = [n for n in sorted(caltech.scratch) if n in caltech.pretrained]
        gaps = {n: caltech.mean("pretrained", n) - caltech.mean("scratch", n) for n in ns}
        ev = "; ".join(f"{n}/class: {caltech.mean('pretrained', n):.1f}% against "
                       f"{caltech.mean('scratch', n):.1f}% ({gaps[n]:+.1f} points)" for n in ns)
        out.append(Finding("Pretrained features beat training from scratch on small training sets",
                           bool(ns) and all(g > 0 for g in gaps.values()),
                           "the pretrained softmax's mean accuracy is above the from-scratch network's "
                           "at every training-set size measured", ev))
        small = [n for n in caltech.pretrained if n <= few]
        top = max(caltech.scratch)
        if small:
            n0 = max(small)
            a, b = caltech.mean("pretrained", n0), caltech.mean("scratch", top)
            out.append(Finding(f"A handful of images per class suffice with pretrained features (Fig. 9: "
                               f"{few} per class beat the best earlier method's 60)", bool(a > b),
                               f"pretrained at {n0}/class above from scratch at {top}/class",
                               f"{a:.1f}% with {n0}/class against {b:.1f}% from scratch with {top}/class"))
    if caltech is not None:
        ns = sorted(n for n in caltech.pretrained if n >= 15) or sorted(caltech.pretrained)
        if len(ns) >= 3:
            m = [caltech.mean("pretrained", n) for n in ns]
            steps = np.diff(m)
            out.append(Finding("Accuracy rises with the training images per class, with diminishing "
                               "gains (Table 5: +4.9, +2.1, +1.5 points)",
                               bool(np.all(steps > 0) and steps[0] > steps[-1]),
                               "the pretrained mean rises at every step of n, the first step gaining more "
                               "than the last",
                               ", ".join(f"{n}: {v:.1f}%" for n, v in zip(ns, m))
                               + " (steps " + ", ".join(f"{round(s, 1) + 0.0:+.1f}" for s in steps) + ")"))
    if pascal is not None:
        ks = sorted(pascal.prob_by_count)
        falls = all(pascal.prob_by_count[a] > pascal.prob_by_count[b] for a, b in zip(ks, ks[1:]))
        out.append(Finding("A single-label softmax fits multi-object images badly",
                           bool(pascal.ovr_map > pascal.softmax_map and falls),
                           "one-vs-rest logistic regressions reach a higher mean AP than the softmax, and "
                           "the softmax probability of a present class falls as images hold more classes",
                           f"mean AP {pascal.softmax_map:.1f}% (softmax) against {pascal.ovr_map:.1f}% "
                           f"(one-vs-rest); softmax probability of a present class with "
                           + ", ".join(f"{k} classes: {pascal.prob_by_count[k]:.2f} (1/{k} = {1 / k:.2f})"
                                       for k in ks)))
    return out


def layer_findings(result: LayerResult, rank: float = 0.8) -> List[Finding]:
    """Check Section 5.3's conclusion, "deeper layers are more discriminative" (Table 7).

    For each classifier and n: the Spearman rank correlation between the layer
    number and the mean accuracy is at least ``rank``, and the best layer (the
    deepest of any that tie) is one of the top two. Evidence: the accuracies, the correlation, how many steps from one
    layer to the next gain, and the best layer.
    """
    from scipy.stats import spearmanr
    out = []
    ls = list(result.layers)
    for c in ("SVM", "Softmax"):
        for n in result.ns:
            if (c, ls[0], n) not in result.acc or len(ls) < 2:
                continue
            m = np.array([result.mean(c, l, n) for l in ls])
            rho = float(spearmanr(ls, m)[0]) if np.ptp(m) > 0 else 0.0
            best = ls[len(m) - 1 - int(np.argmax(m[::-1]))]        # the deepest, if several tie
            ups = int((np.diff(m) > 0).sum())
            holds = bool(rho >= rank and best in ls[-2:])
            out.append(Finding(f"Deeper layers are more discriminative ({c}, {n}/class)", holds,
                               f"Spearman correlation of layer and accuracy >= {rank}, and the best layer "
                               f"among the top two",
                               ", ".join(f"layer {l}: {v:.1f}%" for l, v in zip(ls, m))
                               + f"; correlation {rho:.2f}; {ups} of {len(ls) - 1} steps up; best: layer {best}"))
    return out
