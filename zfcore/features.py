"""Frozen features and the linear classifiers on them: what Sections 5.2 and 5.3 share.

Section 5.2 (:mod:`zfcore.generalization`) and Section 5.3 (:mod:`zfcore.feature_analysis`)
both keep the ImageNet-trained model fixed, read its features at some layer for every
image of a data set, and train a linear classifier on them, fold by fold. This module
holds those common parts; it trains no network.

Choices where the paper is silent (all of them arguments):

* Features: the centre ``image_size`` crop of each stored image, minus the run's
  per-pixel training mean, through the frozen model in eval mode (dropout off);
  one pass per image, cached (:func:`features`). Layer k is the output of the
  k-th block (:func:`zfcore.chain.block_layers`, "the paper's layer k"): ``norm1``, ``norm2``,
  ``relu3``, ``relu4``, ``pool5``, ``relu6``, ``relu7`` for our models (rectified,
  pooled and normalised where the block does so). Conv maps larger than ``grid`` x
  ``grid`` are max-pooled to that grid (adaptive max pooling; 6, the size of Fig. 3's
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

At the ``tiny`` and ``default`` scales the "Caltech" is the ``target`` split of the
generated scenes (classes the model never saw) and the "PASCAL" the ``multi_train``
/ ``multi_test`` splits. At the ``imagenet`` scale (preset ``data="folders"``) the same
split names read the user's prepared folders (:mod:`zfcore.data.splits`): the
Caltech-101 or -256 that ``data_prep.caltech`` wrote (``ZF_CALTECH``) and PASCAL VOC
2012's train and val lists from ``data_prep.pascal`` (``ZF_VOC``).
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .artifacts import artifacts_dir, atomic_write, cached, config_key, file_digest
from .chain import block_layers
from .data.splits import data_tag, folds_files, load_split, prepared_folds, read_json
from .activations import layer_activations
from .error_rates import error_se
from .findings import mean_se
from .layout import Threads
from .presets import Preset, get_preset
from .progress import progress_bar
from .runs import preset_of
from .view import ModelView

__all__ = ["features", "extract", "features_path", "resolve_layer", "default_device",
           "folds", "target_folds", "prepared_ns", "table_ns", "target_dataset", "mean_class_accuracy",
           "accuracy_se", "hog_features",
           "average_precision", "fit_softmax", "LinearClassifier", "linear_svm", "mean_std_text",
           "CACHE_DIR", "FEATURES_VERSION", "FEATURE_SPLITS"]

FEATURES_VERSION = 1
FEATURE_SPLITS = ("train", "val", "test", "target", "multi_train", "multi_test")
# The folder of Section 5's caches under ``artifacts/<scale>/`` (features here, the
# from-scratch networks' accuracies in zfcore.generalization): the name they had when both
# sections lived in one module, kept so that existing caches stay valid.
CACHE_DIR = "transfer"


# --------------------------------------------------------------------------- features


def resolve_layer(model: nn.Module, layer: Union[str, int]) -> str:
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
            Dropout, Flatten (see :func:`zfcore.activations.layer_activations`).
        images: (N, S, S, 3) or (N, 3, S, S) uint8, numpy or torch; or anything with
            ``shape`` and slicing that gives such arrays (a
            :class:`~zfcore.data.splits.LazyImages`): it is read one batch at a time,
            the next batch decoded while the model runs on this one, so a large
            split never sits in memory whole.
        mean: (3, S, S) per-pixel mean, subtracted before the centre crop.
        image_size: the side of the centre crop the model takes.
        layers: module paths or Section 5.3 layer numbers (see :func:`zfcore.chain.block_layers`).
        grid: conv maps larger than grid x grid are max-pooled to it (None: keep all).
        threads: torch CPU threads to use (None: torch's setting).
    Returns:
        ``{layer name: (N, D) float32}``, D = C*h*w for a conv layer, J for an fc one.
    """
    names = [resolve_layer(model, l) for l in layers]
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
    view = ModelView(model, image_size, mean=mean.to(device))
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
                xb = view.batch(xb, device)            # minus the mean, the centre crop
                acts = layer_activations(model, xb.contiguous(), list(dict.fromkeys(names)))
                for n in names:
                    out[n].append(_pool(acts[n], grid).float().cpu().numpy())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return {n: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for n, v in out.items()}


def default_device(p: Preset, device) -> Optional[torch.device]:
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
    p = preset_of(run, scale)
    key = config_key("features", FEATURES_VERSION, Path(run.path).name, file_digest(run.checkpoint()),
                     split, layer, grid, p.image_size, data_tag(p, split))
    return artifacts_dir(p) / CACHE_DIR / f"features-{key}.npy"


def _save_npy(a: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda f: np.save(f, a))


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def features(run, split: str = "target", layer: Union[str, int, Sequence] = "relu7", *,
             grid: Optional[int] = 6, scale=None, batch_size: int = 256, device=None,
             progress: bool = True):
    """The frozen features of every image of a split, cached (Section 5.2).

    Args:
        run: a complete :class:`zfcore.runs.Run` (its final model and mean are used).
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
    ``artifacts/<scale>/transfer/features-<key>.npy`` per layer (:func:`features_path`,
    through :func:`zfcore.artifacts.cached`):
    new weights, data, layer or grid make a new entry. (A folder re-prepared in place
    keeps its paths, hence its key: delete the cache after preparing it again.)
    """
    _check_split(split)
    many = not isinstance(layer, (str, int, np.integer))
    asked = list(layer) if many else [layer]
    p = preset_of(run, scale)
    model = run.load()
    names = [resolve_layer(model, l) for l in asked]
    paths = {n: features_path(run, split, n, grid, p) for n in dict.fromkeys(names)}
    result: Dict[str, np.ndarray] = {}
    fresh: Dict[str, np.ndarray] = {}

    def compute(n: str) -> np.ndarray:
        # the first layer the cache does not give: one pass over the split computes it and
        # every later layer without an entry
        if n not in fresh:
            todo = [n] + [m for m, path in paths.items() if m != n and m not in result and not path.exists()]
            ds = load_split(p, split, progress=progress)
            # scenes: one thread, the scenes are small, and a busy machine's spinning OpenMP
            # threads can make two several times slower than one; folders: torch's threads
            fresh.update(extract(model, ds.images, run.mean(), p.image_size, todo, grid=grid,
                                 batch_size=batch_size, threads=1 if p.data == "scenes" else None,
                                 device=default_device(p, device), progress=progress))
        return fresh[n]

    for n, path in paths.items():
        result[n] = cached(path, lambda n=n: compute(n), load=_load_npy, save=_save_npy)
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
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    return prepared_folds(ds, int(n_train), n_folds)


def prepared_ns(ds) -> Tuple[int, ...]:
    """The training-set sizes whose folds ``data_prep.caltech`` wrote for a folder split (``()``
    for the scenes, whose folds are drawn for any size)."""
    d = getattr(ds, "folds_dir", None)
    return tuple(folds_files(Path(d))) if d is not None else ()


def table_ns(p: Preset, ds=None) -> Tuple[int, ...]:
    """The table's training-set sizes: the preset's; at the folder scale those of them
    whose folds were prepared (else every prepared size)."""
    if p.data == "scenes" or ds is None:
        return tuple(p.target_train)
    have = prepared_ns(ds)
    return tuple(n for n in have if n in p.target_train) or have


def target_dataset(ds) -> Optional[str]:
    """``"caltech101"`` or ``"caltech256"``: the ``"dataset"`` of a folder split's prepared
    folds (None for the scenes, or when the files do not say)."""
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


def accuracy_se(values: Sequence[float], test_images: int) -> Tuple[float, float, int]:
    """``(mean, SE, folds)`` of per-fold accuracies (%): the SE of the mean over the folds
    (:func:`zfcore.findings.mean_se`), never below the binomial SE of an accuracy on ``test_images``
    images over that many folds (:func:`zfcore.architecture.error_se`): the test images' sampling
    noise, which two folds' spread can understate; with one fold the binomial SE alone."""
    m, se, k = mean_se(values)
    if k == 0:
        return m, float("nan"), 0
    floor = error_se(m, test_images) / math.sqrt(k) if test_images else float("nan")
    finite = [v for v in (se, floor) if math.isfinite(v)]
    return m, (max(finite) if finite else float("nan")), k


def hog_features(images, size: int, cell: int = 8) -> np.ndarray:
    """(N, D) float32 HOG descriptors (Dalal and Triggs 2005, scikit-image's ``hog``: 9
    orientations, ``cell``-pixel cells, 2x2-cell blocks, L2-Hys) of the grey centre ``size`` crops
    of (N, S, S, 3) uint8 ``images``: hand-made features, a stand-in for the "earlier methods" of
    Section 5.2 where the data set has no published one (the scenes)."""
    from skimage.feature import hog
    o = (images.shape[1] - size) // 2
    return np.stack([hog(im[o:o + size, o:o + size].astype(np.float32).mean(-1), orientations=9,
                         pixels_per_cell=(cell, cell), cells_per_block=(2, 2), feature_vector=True)
                     for im in images]).astype(np.float32)


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


def mean_std_text(m: Optional[float], s: Optional[float] = None, digits: int = 1) -> str:
    """``"63.0 ± 4.2"`` (a mean and standard deviation as the tables print them); the mean alone
    when the deviation is missing or NaN, ``"-"`` when the mean is."""
    if m is None:
        return "-"
    if s is None or not np.isfinite(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"
