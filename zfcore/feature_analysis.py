"""Feature analysis (Section 5.3): Table 7, how discriminative each layer's features are.

The paper trains a linear SVM, or a softmax, on the frozen features of one layer of the
ImageNet model at a time, with Caltech-101's (30 per class) and Caltech-256's (60 per
class) training images, and finds that accuracy climbs with depth. :func:`layer_table`
does the same on the scale's target classes, with the features, folds and classifiers of
:mod:`zfcore.features` (the choices it makes where the paper is silent are listed there):
layer k is :func:`zfcore.chain.block_layers`' k-th block, conv maps max-pooled to a
``grid``; the SVM is scikit-learn's ``LinearSVC``, the softmax full-batch L-BFGS, both on
standardised features, on the folds of Section 5.2. Nothing here trains a network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data.splits import load_split
from .chain import block_layers
from .features import (features, fit_softmax, linear_svm, mean_class_accuracy, mean_std_text,
                       prepared_ns, resolve_layer, target_dataset, target_folds)
from .findings import DOES_NOT_HOLD, HOLDS, SE_MARGIN, Finding, difference_verdict
from .models import feature_shapes, zfnet
from .presets import Preset
from .progress import progress_bar
from .runs import preset_of

__all__ = ["LayerResult", "layer_table", "layer_rows", "layer_header", "layer_figure", "findings",
           "setting_text", "table_caption", "summary", "TABLE7_COLUMNS", "PAPER_TABLE7", "feature_count",
           "paper_dims", "feature_rows", "FEATURE_HEADER", "feature_count_text"]

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
        layers: Section 5.3 layer numbers (default 1-7; see :func:`zfcore.chain.block_layers`).
        ns: training images per class (default: the preset's second
            ``target_train``, 30 at the default scale, as the paper's Caltech-101
            column; add the last, 60, for its Caltech-256 column; at the folder
            scale the paper's column for the prepared data set, 30 for Caltech-101
            and 60 for Caltech-256, when its folds were prepared).
        n_folds: folds (default: the preset's, 5); the same folds as
            :func:`zfcore.generalization.caltech_table` (:func:`zfcore.features.target_folds`).
        classifiers: any of ``"SVM"`` (:func:`zfcore.features.linear_svm`, cost ``C``) and
            ``"Softmax"`` (:func:`zfcore.features.fit_softmax`, ``weight_decay``).
        grid: see :func:`zfcore.features.extract`.
    Returns:
        a :class:`LayerResult` (accuracies in %).
    """
    p = preset_of(run, scale)
    model = run.load()
    blocks = block_layers(model)
    layers = tuple(int(l) for l in (layers if layers is not None else [k for k in range(1, 8) if k in blocks]))
    for l in layers:
        resolve_layer(model, l)
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
            ours = [mean_std_text(result.mean(c, l, n), result.std(c, l, n)) for n in result.ns]
            pp = PAPER_TABLE7.get((c, l))
            paper = [mean_std_text(*pp[j]) if pp else "-" for j in cols]
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




# --------------------------------------------------------------------------- how many numbers each layer gives

def feature_count(shape: Sequence[int], grid: Optional[int]) -> int:
    """The features a layer of output ``shape`` ((C, H, W) or (J,)) gives under the chapter's rule
    (:func:`zfcore.features.extract`: a conv map larger than ``grid`` x ``grid`` max-pooled to it)."""
    if len(shape) == 3:
        c, h, w = (int(v) for v in shape)
        return c * (min(h, grid) * min(w, grid) if grid is not None else h * w)
    return int(np.prod(shape))


def _paper_model():
    """Fig. 3's model at 224 px, built on the meta device (shapes only, no weights in memory)."""
    with torch.device("meta"):
        return zfnet(1000, input_size=224)


def paper_dims(grid: Optional[int], layers: Sequence[int]) -> Dict[int, Tuple[tuple, int]]:
    """``{layer: (output shape, features)}`` of Fig. 3's model at 224 px, computed from the model
    under the same rule as ours (:func:`feature_count`): what the paper's classifiers would get."""
    m = _paper_model()
    shapes, blocks = feature_shapes(m), block_layers(m)
    return {l: (shapes[blocks[l]], feature_count(shapes[blocks[l]], grid)) for l in layers if l in blocks}


FEATURE_HEADER = ["layer", "this run: output", "features", "Fig. 3 at 224 px: output", "features",
                  "ours / Fig. 3"]


def feature_rows(run, result: LayerResult) -> List[tuple]:
    """Per layer: this run's output and the number of features its classifiers see per image, beside
    Fig. 3's at 224 px under the same rule (:func:`paper_dims`)."""
    shapes = feature_shapes(run.load())
    paper = paper_dims(result.grid, list(result.layers))
    rows = []
    for l, name in result.layers.items():
        ps, pd = paper.get(l, ((), 0))
        rows.append((f"{l} `{name}`", "x".join(map(str, shapes[name])), f"{result.dims[l]}",
                     "x".join(map(str, ps)) or "-", f"{pd}" if pd else "-",
                     f"{result.dims[l] / pd:.1%}" if pd else "-"))
    return rows


def feature_count_text(result: LayerResult) -> str:
    """Markdown: layer 5's feature count against layers 3 and 4, here and in Fig. 3's geometry, and
    what that does to "deeper layers are more discriminative"."""
    dims = result.dims
    if not all(l in dims for l in (3, 4, 5)):
        return ("Each layer's feature count is in the table above (layers 3, 4 and 5 are not all in this "
                "run's table, so layer 5 is not compared with them).")
    paper = {l: v[1] for l, v in paper_dims(result.grid, [3, 4, 5]).items()}
    ours_r, paper_r = dims[5] / max(dims[3], dims[4]), paper[5] / max(paper[3], paper[4])
    rule = f"maps larger than {result.grid}x{result.grid} max-pooled to it" if result.grid else "every position kept"
    text = (f"The classifiers on layer 5 see **{dims[5]} numbers per image** here, against {dims[3]} for layer 3 "
            f"and {dims[4]} for layer 4 ({ours_r:.0%} of the larger); with Fig. 3's geometry at 224 px and the "
            f"same rule ({rule}) layer 5 gives {paper[5]} against {paper[3]} and {paper[4]} ({paper_r:.0%}).")
    if ours_r < paper_r / 2:
        return text + (f" So layer 5 is {paper_r / ours_r:.1f} times more squeezed against layers 3 and 4 than in "
                       "the paper: a linear classifier on it has far fewer numbers to separate the classes with. "
                       "That works against \"deeper layers are more discriminative\" at layer 5: a rise at layer 5 "
                       "here holds despite it, and a fall may come from the feature count as much as from what the "
                       "layer learned; the table cannot tell the two apart.")
    return text + (" Against layers 3 and 4, layer 5 has about the paper's share of the numbers (or more), so the "
                   "feature count does not bias the comparison at layer 5 more than in the paper.")


# --------------------------------------------------------------------------- the paper's findings

def _best_layer(result: LayerResult, c: str, n: int) -> int:
    """The layer where classifier ``c`` is most accurate (the deepest, if several tie)."""
    ls = list(result.layers)
    m = [result.mean(c, l, n) for l in ls]
    return ls[len(m) - 1 - int(np.argmax(m[::-1]))]


def _paper_text(result: LayerResult, c: str) -> str:
    """The paper's Table 7 accuracies of classifier ``c``, in the columns :func:`layer_rows` shows."""
    parts = []
    for j in _table7_columns(result):
        pts = sorted((l, v[j][0]) for (cc, l), v in PAPER_TABLE7.items() if cc == c)
        parts.append(f"{TABLE7_COLUMNS[j][2].split(', ', 1)[1]}: "
                     + ", ".join(f"layer {l}: {v:.1f}%" for l, v in pts))
    return "; ".join(parts)


def findings(result: LayerResult, rank: float = 0.8) -> List[Finding]:
    """Section 5.3's conclusion, "deeper layers are more discriminative" (Table 7), checked
    against this run (:class:`zfcore.findings.Finding`, one per classifier and n).

    For each classifier and n, first the deepest layer's accuracy against the lowest's, fold by
    fold (the folds share their images, so the differences are paired): above by more than
    :data:`zfcore.findings.SE_MARGIN` standard errors of their mean, or "not testable" (within
    it, or fewer than 3 folds to measure it by); below by as much, "does not hold". Where it is
    above, the claim holds when the Spearman rank correlation between the layer number and
    the mean accuracy is at least ``rank`` and the best layer (the deepest of any that tie) is
    one of the top two. Measured: the accuracies, the correlation, how many steps from one
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
            best = _best_layer(result, c, n)
            ups = int((np.diff(m) > 0).sum())
            lo, hi = result.acc[(c, ls[0], n)], result.acc[(c, ls[-1], n)]
            gain, gain_text = difference_verdict(np.subtract(hi, lo) if len(lo) == len(hi) else [], min_n=3)
            verdict = gain if gain != HOLDS else (HOLDS if rho >= rank and best in ls[-2:] else DOES_NOT_HOLD)
            out.append(Finding(f"Deeper layers are more discriminative ({c}, {n}/class)", "Section 5.3, Table 7",
                               _paper_text(result, c),
                               ", ".join(f"layer {l}: {v:.1f}%" for l, v in zip(ls, m))
                               + f"; correlation {rho:.2f}; {ups} of {len(ls) - 1} steps up; best: layer {best}",
                               f"layer {ls[-1]} above layer {ls[0]} by more than {SE_MARGIN:g} standard errors of "
                               f"their per-fold difference (at least 3 folds), then a Spearman correlation of "
                               f"layer and accuracy >= {rank} and the best layer among the top two", verdict,
                               f"layer {ls[-1]} minus layer {ls[0]}, per fold: " + gain_text.replace("images", "folds")
                               + ". Features per image: " + ", ".join(f"layer {l} {result.dims[l]}" for l in ls)
                               + " (the classifiers on the layers do not see equally many numbers)"))
    return out


# --------------------------------------------------------------------------- what the chapter says

def _caltech_name(result: LayerResult) -> str:
    return {"caltech101": "Caltech-101", "caltech256": "Caltech-256"}.get(result.dataset, "Caltech")


def setting_text(preset: Preset, run, result: LayerResult) -> str:
    """Markdown: this run's model and target classes (the layers' feature counts: :func:`feature_rows`)."""
    n_cls = result.num_classes or preset.target_classes
    if preset.data == "scenes":
        text = (f"Run at the `{preset.name}` scale, **not** on ImageNet or Caltech: the model was trained on "
                f"{preset.num_classes} source classes of generated scenes ({preset.image_size}x{preset.image_size} "
                f"inputs); the classifiers learn {n_cls} held-out classes (chance: {100 / n_cls:.1f}%) from ")
    else:
        text = (f"Run at the `{preset.name}` scale, on your prepared folders: the model was trained on ImageNet "
                f"({preset.image_size}x{preset.image_size} inputs); the classifiers learn the {n_cls} classes of "
                f"the prepared {_caltech_name(result)} (chance: {100 / n_cls:.1f}%) from ")
    return (text + " and ".join(f"{n}" for n in result.ns) + f" images per class, over {result.folds} folds. "
            "Each layer's output and the features the classifiers get are in the next table.")


def table_caption(preset: Preset, result: LayerResult) -> str:
    """The caption of Table 7 beside ours."""
    n_cls = result.num_classes or preset.target_classes
    return (f"Table 7 beside ours ({preset.name} scale, "
            + (f"{n_cls} target classes" if preset.data == "scenes" else _caltech_name(result))
            + f", SVM cost C={result.C:g}, softmax weight decay {result.weight_decay:g})")


def _departure_text(preset: Preset, run, result: LayerResult, off: List[str], best: Dict[str, int],
                    top: Dict[str, float], last: Dict[str, float]) -> str:
    """Where the best layer is not one of the top two: by how much, and what may explain it."""
    name = {"SVM": "SVM", "Softmax": "softmax"}
    ls = list(result.layers)
    text = (" Where this run departs from the paper: the best layer is "
            + " and ".join(f"layer {best[c]} for the {name[c]}" for c in off)
            + f", not one of the top two, and from there to layer {ls[-1]} the accuracy falls by "
            + " and ".join(f"{top[c] - last[c]:.1f} points" for c in off) + ".")
    epochs = len(run.metrics)
    if preset.data != "scenes":
        return text + (f" This run's model was trained for {epochs} epoch{'s' if epochs != 1 else ''} (the "
                       "paper's: 70), with the preset's settings; how it differs from the paper's is listed in "
                       "*Reproducing at full scale*.")
    text += " Two properties of this run may explain it, neither tested here: the model is narrow"
    d5, dims = result.dims.get(5), result.dims
    if d5 is not None:
        shapes = feature_shapes(run.load())
        text += (f" (layer 5 has {d5} features, {'x'.join(map(str, shapes[result.layers[5]]))}, against "
                 f"Fig. 3's 256x6x6 = 9216"
                 + (f", and fewer than layers 3 and 4's {dims[3]} and {dims[4]}"
                    if 3 in dims and 4 in dims and d5 < min(dims[3], dims[4]) else "") + ")")
    return text + (f", and its upper layers were trained for {epochs} epochs on {preset.num_classes} "
                   "classes of glyphs, so they may have specialised to those classes more than ImageNet's 1000 "
                   "classes let the paper's layers do.")


def summary(found: Sequence[Finding], preset: Preset, run, result: LayerResult) -> str:
    """Markdown: whether this run agrees with the paper, each classifier's path through the
    layers, and where and perhaps why it departs."""
    ls = list(result.layers)
    n0 = result.ns[0]
    classes = ("SVM", "Softmax")
    name = {"SVM": "SVM", "Softmax": "softmax"}
    best = {c: _best_layer(result, c, n0) for c in classes}
    first = {c: result.mean(c, ls[0], n0) for c in classes}
    top = {c: result.mean(c, best[c], n0) for c in classes}
    last = {c: result.mean(c, ls[-1], n0) for c in classes}
    held = sum(f.verdict == HOLDS for f in found)
    if held == len(found):
        text = "**Yes: this run agrees with the paper.** Accuracy rises with depth for both classifiers."
    elif held == 0:
        text = "**No: this run does not agree with the paper.** Accuracy does not keep rising with depth."
    else:
        text = f"**Partly: {held} of the {len(found)} checks agree with the paper.**"
    text += " " + " ".join(
        f"The {name[c]} goes from {first[c]:.1f}% on layer 1 to {top[c]:.1f}% at its best, layer {best[c]} "
        f"(`{result.layers[best[c]]}`), and ends at {last[c]:.1f}% on layer {ls[-1]}." for c in classes)
    lowest = {c: ls[int(np.argmin([result.mean(c, l, n0) for l in ls]))] for c in classes}
    if all(lowest[c] == ls[0] for c in classes):
        text += " As in the paper, layer 1 is the least discriminative layer for both classifiers."
    off = [c for c in classes if best[c] not in ls[-2:]]
    if off:
        text += _departure_text(preset, run, result, off, best, top, last)
    return text
