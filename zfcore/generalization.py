"""Feature generalization (Section 5.2): Tables 4, 5 and 6 and Fig. 9.

Layers 1-7 of the ImageNet-trained model stay fixed and a new softmax is trained on its
layer-7 features with another data set's training images: Caltech-101 and -256 (Tables 4,
5 and Fig. 9: 15 to 60 training images per class, 5 folds, mean per-class accuracy) and
PASCAL VOC 2012 (Table 6: several objects per image, a 20-way softmax nonetheless). The
baseline is the same network trained from scratch on the target training images alone:
:func:`zfcore.scratch.train_scratch` trains it, and :func:`caltech_table` sets the
accuracies it is given beside the softmax's; nothing here trains a network. Features,
folds and classifiers, and the choices they make, are :mod:`zfcore.features`'.

Multi-object images (:func:`pascal_table`), where the paper is silent: the single-label
softmax is trained with each image once per class it holds (``rule="replicate"``) or with
its largest object's class (``rule="largest"``, the scenes only: VOC's lists carry no object
sizes); its probabilities are the scores of each class's average precision (scikit-learn's
``average_precision_score``) on the test images with their full label sets. Beside it, for
contrast, one-vs-rest logistic regressions (a sigmoid per class, multi-label).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data.splits import load_split
from .features import (accuracy_se, average_precision, features, hog_features, fit_softmax, mean_class_accuracy, mean_std_text,
                       prepared_ns, table_ns, target_dataset, target_folds)
from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, SE_MARGIN, Finding, all_of, decide, mean_se
from .presets import Preset
from .runs import preset_of
from .scratch import NOT_TRAINED_POINTS, ScratchResult, learned, learned_text, scratch_budget

__all__ = ["CaltechResult", "caltech_table", "accuracy_curve", "table_rows", "caltech_figure",
           "caltech_tables", "curve_table", "PascalResult", "pascal_table", "pascal_rows", "ap_gap",
           "paper_table6_rows", "count_table", "findings", "setting_text", "budget_text", "pascal_text",
           "count_text", "summary", "FIG9_NS", "PAPER_TABLE4", "PAPER_TABLE5", "PAPER_TABLE6",
           "PAPER_TABLE6_MEAN", "PASCAL_RULES", "EARLIER_NAME",
           "scratch_learned", "scratch_text"]

# Fig. 9's x axis: training images per class (the paper plots 0-60).
FIG9_NS = (1, 2, 3, 5, 10, 15, 30, 45, 60)

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
        earlier: at the scenes, the stand-in for an earlier method (:data:`EARLIER_NAME`) at the
            largest n, as ``pretrained``; empty at the folder scale (Bo et al. are published).
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
    earlier: Dict[int, List[float]] = field(default_factory=dict)

    def mean(self, method: str, n: int) -> float:
        return float(np.mean(getattr(self, method)[n]))

    def std(self, method: str, n: int) -> float:
        v = getattr(self, method)[n]
        return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


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
                  scratch: Optional[ScratchResult] = None, n_test_max: Optional[int] = None,
                  layer: str = "relu7", weight_decay: float = 1e-3, seed: int = 0, scale=None,
                  progress: bool = True) -> CaltechResult:
    """Tables 4 and 5 (Section 5.2): a softmax on the frozen layer-7 features of ``run``
    against the same network trained from scratch, on the target classes.

    Args:
        run: the trained :class:`zfcore.runs.Run` (its classes are the "ImageNet").
        ns: training images per class (default: the preset's ``target_train``,
            15/30/45/60 at the default scale; at the folder scale those of them with
            prepared folds, e.g. 15/30 for Caltech-101).
        n_folds: folds (default: the preset's, 5).
        scratch: the from-scratch baseline to set beside it (:func:`zfcore.scratch.train_scratch`,
            which trains it); None: the pretrained softmax alone.
        n_test_max: most test images per class (default: the preset's, 50; at the
            folder scale the prepared folds fix the test images and this is unused).
        layer: the frozen features (``"relu7"``: layer 7).
        weight_decay: the softmax's L2 penalty (:func:`zfcore.features.fit_softmax`).
    The folds are :func:`zfcore.features.target_folds`': drawn at the scenes scales,
    ``data_prep.caltech``'s at the folder scale (an ``n`` without its ``folds_<n>.json`` is a
    FileNotFoundError).
    Returns:
        a :class:`CaltechResult` (accuracies in %).
    """
    p = preset_of(run, scale)
    ds = load_split(p, "target", progress=progress)
    ns = tuple(int(n) for n in (ns if ns is not None else table_ns(p, ds)))
    n_folds = p.target_folds if n_folds is None else int(n_folds)
    n_test_max = p.target_test if n_test_max is None else int(n_test_max)
    y = ds.labels
    fold_sets = {n: target_folds(p, ds, n, n_folds, n_test_max, seed) for n in ns}   # fail before the features
    X = features(run, "target", layer, scale=p, progress=progress)
    C = len(ds.classes)
    pre: Dict[int, List[float]] = {}
    earlier: Dict[int, List[float]] = {}
    test_images = 0
    hog = {max(ns): hog_features(ds.images, p.image_size)} if p.data == "scenes" and ns else {}
    for acc, feats, sizes in ((pre, X, ns), (earlier, hog.get(max(ns, default=0)), list(hog))):
        for n in sizes:
            acc[n] = []
            for tr, te in fold_sets[n]:
                clf = fit_softmax(feats[tr], y[tr], C, weight_decay=weight_decay)
                acc[n].append(100 * mean_class_accuracy(y[te], clf.predict(feats[te])))
                test_images = len(te)
    if p.data != "scenes" and ns:         # the most test images per class the prepared folds hold
        n_test_max = max(int(np.bincount(y[te]).max()) for n in ns for _, te in fold_sets[n])
    if scratch is None:
        sfolds, ssteps, sbatch = scratch_budget(p)
        scratch = ScratchResult({}, min(sfolds, n_folds), ssteps, sbatch)
    return CaltechResult(pre, dict(scratch.acc), layer if isinstance(layer, str) else str(layer), n_test_max,
                         n_folds, scratch.folds, scratch.steps, scratch.batch, test_images, list(ds.classes),
                         p.name, weight_decay, target_dataset(ds), earlier)


def accuracy_curve(run, ns: Optional[Sequence[int]] = None, **kwargs) -> CaltechResult:
    """Fig. 9: the pretrained softmax's accuracy against training images per class
    (default 1, 2, 3, 5, 10, 15, 30, 45, 60, up to the preset's largest). Keyword
    arguments are those of :func:`caltech_table` (give ``scratch``, from :func:`zfcore.scratch.train_scratch`,
    for the from-scratch points).

    At the folder scale each size needs its prepared folds: a size given in ``ns``
    without its ``folds_<n>.json`` is a FileNotFoundError naming the command that
    writes it; by default the curve takes the sizes that were prepared, and warns
    (:class:`UserWarning`) naming the Fig. 9 sizes left out and that command.
    """
    if ns is None:
        p = preset_of(run, kwargs.get("scale"))
        if p.data == "scenes":
            ns = _curve_ns(p)
        else:
            ns = _curve_ns(p, load_split(p, "target", progress=kwargs.get("progress", True)))
    return caltech_table(run, ns, **kwargs)


def table_rows(result: CaltechResult, ns: Optional[Sequence[int]] = None,
               paper: Optional[Dict[str, Dict[int, Tuple[float, Optional[float]]]]] = None) -> List[tuple]:
    """Rows ``(method, accuracy per n)`` as Tables 4 and 5 print them: the paper's rows
    (``paper``: :data:`PAPER_TABLE4` or :data:`PAPER_TABLE5`), then ours."""
    ns = tuple(ns) if ns is not None else tuple(sorted(set(result.scratch) | set(result.pretrained)))
    rows = []
    for method, vals in (paper or {}).items():
        rows.append((f"paper: {method}", *[mean_std_text(*vals[n]) if n in vals else "-" for n in ns]))
    for label, method in (("ours: trained from scratch", "scratch"), (f"ours: {EARLIER_NAME}", "earlier"),
                          (f"ours: pretrained, softmax on {result.layer}", "pretrained")):
        d = getattr(result, method)
        if d:
            rows.append((label, *[mean_std_text(result.mean(method, n), result.std(method, n)) if n in d else "-"
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
    ref = _reference(result)
    if ref is not None:                  # the (best) earlier method, as Fig. 9 compares with it
        name, n_ref, m_ref, s_ref = ref
        ax.axhspan(m_ref - 2 * s_ref, m_ref + 2 * s_ref, color="C3", alpha=0.15, lw=0)
        ax.axhline(m_ref, color="C3", lw=1.2, ls="-.", label=f"{name}, {n_ref}/class")
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
        prob_se_by_count: ``{k: its SE}`` over the images holding k classes (one value each).
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
    prob_se_by_count: Dict[int, float] = field(default_factory=dict)

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
    by_se = {int(c): mean_se((ps[k == c] * t[k == c]).sum(1) / c)[1] for c in np.unique(k)}  # one per image
    top1 = float(t[np.arange(len(t)), ps.argmax(1)].mean())
    return PascalResult(list(tr_ds.classes), 100 * average_precision(t, ps), 100 * average_precision(t, po),
                        rule, by, oby, top1, len(tr_ds), len(te_ds), float(tr_ds.targets.sum(1).mean()),
                        layer, p.name, by_se)


def pascal_rows(result: PascalResult) -> List[tuple]:
    """``(class, softmax AP %, one-vs-rest AP %)`` per class, then the mean."""
    rows = [(c, f"{a:.1f}", f"{b:.1f}") for c, a, b in zip(result.classes, result.softmax_ap, result.ovr_ap)]
    rows.append(("mean", f"{result.softmax_map:.1f}", f"{result.ovr_map:.1f}"))
    return rows


# --------------------------------------------------------------------------- the paper's findings

def _se(result: CaltechResult, method: str, n: int) -> Tuple[float, float]:
    m, se, _ = accuracy_se(getattr(result, method)[n], result.test_images)
    return m, se


def scratch_learned(result: CaltechResult) -> Dict[int, Tuple[bool, float, float]]:
    """:func:`zfcore.scratch.learned` of ``result``'s from-scratch accuracies."""
    return learned(result.scratch, len(result.classes), result.test_images)


def scratch_text(result: CaltechResult) -> str:
    """:func:`zfcore.scratch.learned_text` of ``result``'s from-scratch accuracies."""
    return learned_text(result.scratch, len(result.classes), result.test_images)


#: The stand-in for "the best earlier method" at the scenes scales, which have no published one.
EARLIER_NAME = "HOG + softmax"


def _reference(result: CaltechResult) -> Optional[Tuple[str, int, float, float]]:
    """The earlier method Fig. 9 compares with: ``(name, n, mean %, SE %)``: Bo et al. (Table 5 at
    60/class on Caltech-256, Table 4 at 30/class on Caltech-101; their std over 5 folds / sqrt(5)),
    or at the scenes :data:`EARLIER_NAME` at its n (None when not measured)."""
    for name, table, n in (("caltech256", PAPER_TABLE5, 60), ("caltech101", PAPER_TABLE4, 30)):
        if result.dataset == name:
            m, s = table["Bo et al."][n]
            return "Bo et al.", n, m, s / math.sqrt(5)
    if not result.earlier:
        return None
    n = max(result.earlier)
    m, se, _ = accuracy_se(result.earlier[n], result.test_images)
    return EARLIER_NAME, n, m, se


def _scratch_findings(caltech: CaltechResult) -> List[Finding]:
    t4, t5 = PAPER_TABLE4, PAPER_TABLE5
    chance = 100 / len(caltech.classes)
    st = scratch_learned(caltech)
    ns = [n for n in sorted(caltech.scratch) if n in caltech.pretrained]
    used = [n for n in ns if st[n][0]]
    parts, verdicts = [], []
    for n in ns:
        a, sa = _se(caltech, "pretrained", n)
        b, sb = st[n][1], st[n][2]
        se = math.hypot(sa, sb)
        parts.append(f"{n}/class: {a:.1f}% against {b:.1f}% ({a - b:+.1f} ± {se:.1f} points, SE)"
                     + ("" if st[n][0] else " (baseline not trained)"))
        if st[n][0]:
            verdicts.append(decide(a - b, se))
    if not used:
        verdict = NOT_TESTABLE
        ev = ("the from-scratch baseline did not learn at this budget: "
              + ", ".join(f"{st[n][1]:.1f}%" for n in ns) + f" against chance {chance:.1f}%")
    else:
        verdict = all_of(verdicts)
        left = [n for n in ns if n not in used]
        ev = (f"decided at {', '.join(map(str, used))}/class"
              + (f"; left out {', '.join(map(str, left))}/class, where the baseline is not shown to have learned"
                  if left else ""))
    return [Finding("Pretrained features beat training from scratch on small training sets",
                    "Section 5.2, Tables 4 and 5",
                    f"Caltech-101, 30/class: {t4['ImageNet-pretrained convnet'][30][0]:.1f}% against "
                    f"{t4['Non-pretrained convnet'][30][0]:.1f}%; Caltech-256, 60/class: "
                    f"{t5['ImageNet-pretrained convnet'][60][0]:.1f}% against {t5['Non-pretrained convnet'][60][0]:.1f}%",
                    "; ".join(parts),
                    f"at every size where the from-scratch network learned (above chance + {NOT_TRAINED_POINTS:g} "
                    f"points by {SE_MARGIN:g} SE), the pretrained softmax's mean accuracy is above it by more than "
                    f"{SE_MARGIN:g} standard errors of the difference; not testable where no size has a baseline "
                    "that learned", verdict, ev)]


def _few_finding(caltech: CaltechResult, few: int) -> Optional[Finding]:
    """Fig. 9: with ``few`` images per class the pretrained features beat the best earlier method's 60."""
    small = [n for n in caltech.pretrained if n <= few]
    if not small:
        return None
    n0 = max(small)
    a, sa = _se(caltech, "pretrained", n0)
    bo = PAPER_TABLE5["Bo et al."][60]
    ref = _reference(caltech) if caltech.dataset != "caltech101" else None
    claim = (f"A handful of images per class suffice with pretrained features (Fig. 9: {few} per class beat "
             f"the best earlier method's 60)")
    crit = (f"the pretrained mean accuracy at the largest measured n <= {few} is above the earlier method's "
            f"at 60/class by more than {SE_MARGIN:g} standard errors: on Caltech-256 Bo et al.'s {bo[0]:.1f}% "
            f"(SE: their std over 5 folds / sqrt(5)), at the scenes {EARLIER_NAME} on the same folds at the "
            "largest n (a hand-made-feature stand-in); not testable on Caltech-101 (no 60/class number)")
    measured = f"{a:.1f}% ± {sa:.1f} (SE) with {n0}/class"
    published = f"Caltech-256: Bo et al. with 60/class, {bo[0]:.1f}% ± {bo[1]:.1f}"
    if ref is None:
        why = ("the claim is about Caltech-256; Caltech-101's earlier methods were not published at 60/class"
               if caltech.dataset == "caltech101" else "no earlier method was measured on these classes")
        return Finding(claim, "Section 5.2, Fig. 9", published, measured, crit, NOT_TESTABLE, why)
    name, n_ref, m_ref, s_ref = ref
    se = math.hypot(sa, s_ref)
    return Finding(claim, "Section 5.2, Fig. 9", published, measured + f" against {name} {m_ref:.1f}% ± "
                   f"{s_ref:.1f} with {n_ref}/class", crit, decide(a - m_ref, se),
                   f"{a - m_ref:+.1f} ± {se:.1f} points (SE) against {name} at {n_ref}/class")


def _gains_finding(caltech: CaltechResult) -> Optional[Finding]:
    """Table 5: accuracy rises with n at every step, the first step gaining more than the last."""
    ns = sorted(n for n in caltech.pretrained if n >= 15) or sorted(caltech.pretrained)
    if len(ns) < 3:
        return None
    ms = [_se(caltech, "pretrained", n) for n in ns]
    steps = [(b[0] - a[0], math.hypot(a[1], b[1])) for a, b in zip(ms, ms[1:])]
    rises = [decide(d, se) for d, se in steps]
    (d0, s0), (d1, s1) = steps[0], steps[-1]
    shrink = decide(d0 - d1, math.hypot(s0, s1))
    paper = PAPER_TABLE5["ImageNet-pretrained convnet"]
    return Finding("Accuracy rises with the training images per class, with diminishing "
                   "gains (Table 5: +4.9, +2.1, +1.5 points)", "Section 5.2, Table 5",
                   "Caltech-256: " + ", ".join(f"{n}: {v[0]:.1f}%" for n, v in paper.items()),
                   ", ".join(f"{n}: {m:.1f}%" for n, (m, _) in zip(ns, ms))
                   + " (steps " + ", ".join(f"{d:+.1f} ± {se:.1f}" for d, se in steps) + ", SE)",
                   f"every step of n raises the pretrained mean by more than {SE_MARGIN:g} standard errors, and "
                   f"the first step gains more than the last by more than {SE_MARGIN:g} standard errors; a step "
                   "within its SE is not testable",
                   all_of(rises + [shrink]),
                   "steps: " + ", ".join(rises) + f"; first step minus last: {d0 - d1:+.1f} ± "
                   f"{math.hypot(s0, s1):.1f}: {shrink}")


def findings(caltech: Optional[CaltechResult] = None, pascal: Optional[PascalResult] = None,
             few: int = 6) -> List[Finding]:
    """Section 5.2's conclusions checked against this run's numbers (:class:`zfcore.findings.Finding`).

    A difference counts when it is more than ``SE_MARGIN`` standard errors from zero
    (:func:`decide`; the SE of a mean accuracy is :func:`accuracy_se`'s); a tie or a difference
    within its SE is "not testable".

    1. Pretrained features beat training from scratch on small training sets: at every size
       where the from-scratch network learned (:func:`scratch_learned`: above chance +
       :data:`NOT_TRAINED_POINTS` by ``SE_MARGIN`` SE), the pretrained mean is above it beyond
       the SE of the difference; not testable when the baseline learned at no size.
    2. With pretrained features a few images per class go a long way (Fig. 9: with 6 per class
       they beat the best earlier method's 60): on Caltech-256, the pretrained mean at the
       largest measured n <= ``few`` is above Bo et al.'s 55.2% at 60/class (Table 5) beyond the
       SE; not testable on another data set (the scenes, Caltech-101), which has no such number.
    3. Accuracy rises with the training images per class, with diminishing gains (Table 5:
       +4.9, +2.1, +1.5): every step of the table's n rises beyond its SE, and the first step
       gains more than the last beyond the SE of their difference.
    4. A single-label softmax fits multi-object images badly (the paper's reason for
       trailing the best PASCAL entry): the one-vs-rest logistic regressions reach a
       higher mean AP than the softmax on the same features, and the softmax
       probability of a class present in an image falls as the image holds more
       classes (:func:`_pascal_finding`: each beyond its SE).
    """
    out: List[Finding] = []
    if caltech is not None and caltech.scratch:
        out += _scratch_findings(caltech)
    if caltech is not None:
        out += [f for f in (_few_finding(caltech, few), _gains_finding(caltech)) if f is not None]
    return out + ([_pascal_finding(pascal)] if pascal is not None else [])


def ap_gap(pascal: PascalResult) -> Tuple[float, float, int]:
    """``(mean, SE, n)`` of the classes' AP differences, one-vs-rest minus softmax, in points."""
    return mean_se(np.asarray(pascal.ovr_ap, float) - np.asarray(pascal.softmax_ap, float))


def _pascal_finding(pascal: PascalResult) -> Finding:
    """Table 6's reading (criterion in the Finding), each part by :func:`zfcore.findings.decide`:
    the mean AP is a mean over classes scored on the same images, so its gap is paired by class;
    images holding k classes and those holding k + 1 are separate, so their SEs add."""
    d, d_se, n_cls = ap_gap(pascal)
    ks = sorted(pascal.prob_by_count)
    se = {c: pascal.prob_se_by_count.get(c, float("nan")) for c in ks}
    falls = [(a, b, pascal.prob_by_count[a] - pascal.prob_by_count[b], math.hypot(se[a], se[b]))
             for a, b in zip(ks, ks[1:])]
    parts = [decide(d, d_se)] + [decide(f, s) for _, _, f, s in falls]
    evidence = "; ".join([f"mean AP {d:+.1f} ± {d_se:.1f}: {parts[0]}"] + [
        f"{a} to {b} classes {f:+.2f} ± {s:.2f}: {v}" for (a, b, f, s), v in zip(falls, parts[1:])])
    return Finding("A single-label softmax fits multi-object images badly", "Section 5.2, Table 6",
                   f"mean AP {PAPER_TABLE6_MEAN[2]:.1f}%, below the best entry's {PAPER_TABLE6_MEAN[1]:.1f}%",
                   f"mean AP {pascal.softmax_map:.1f}% (softmax) against {pascal.ovr_map:.1f}% (one-vs-rest), "
                   f"difference {d:+.1f} ± {d_se:.1f} points (SE over the {n_cls} classes); softmax "
                   "probability of a present class with "
                   + ", ".join(f"{k} classes: {pascal.prob_by_count[k]:.2f} ± {se[k]:.2f} (1/{k} = {1 / k:.2f})"
                               for k in ks),
                   f"one-vs-rest logistic regressions reach a higher mean AP than the softmax by more than "
                   f"{SE_MARGIN:g} SE of the classes' paired differences, and the softmax probability of a present "
                   f"class falls from each count of classes per image to the next by more than {SE_MARGIN:g} SE "
                   "of the difference; a difference within its SE is not testable", all_of(parts), evidence)


# --------------------------------------------------------------------------- what the chapter says

def _caltech_name(result: CaltechResult) -> str:
    return {"caltech101": "Caltech-101", "caltech256": "Caltech-256"}.get(result.dataset, "Caltech")


def setting_text(preset: Preset, run, result: CaltechResult) -> str:
    """Markdown: what this run's model, "Caltech" and folds are, against the paper's."""
    model = run.load()
    n_cls = len(result.classes)
    widths = ", ".join(str(getattr(model, f"conv{i}").out_channels) for i in range(1, 6))
    if preset.data == "scenes":
        per_class = max(preset.target_train) + preset.target_test
        return (f"Run at the `{preset.name}` scale, **not** on ImageNet, Caltech or PASCAL: the model was trained "
                f"on {preset.num_classes} source classes of generated scenes "
                f"({preset.num_classes * preset.train_per_class} training images, {preset.image_size}x"
                f"{preset.image_size} inputs, conv widths {widths} and {preset.fc_units}-unit fc layers, against "
                f"Fig. 3's 96-384 maps and 4096 units). Its \"Caltech\" is {n_cls} held-out classes with "
                f"{per_class} images each (chance: {100 / n_cls:.1f}%); every fold tests on {result.test_images} "
                f"images ({result.test_images // n_cls} per class). The numbers below are not comparable with "
                f"the paper's; what can be compared is whether its findings hold.")
    return (f"Run at the `{preset.name}` scale, on your prepared folders: the model was trained on "
            f"{len(run.classes) or preset.num_classes} ImageNet classes ({preset.image_size}x{preset.image_size} "
            f"inputs, conv widths {widths} and {preset.fc_units}-unit fc layers; Fig. 3 has 96-384 maps and 4096 "
            f"units). The target is the prepared {_caltech_name(result)}: {n_cls} classes (chance: "
            f"{100 / n_cls:.1f}%), with the folds of `data_prep.caltech`, which test on up to "
            f"{result.n_test_max} images per class. The paper's own numbers stand beside ours.")


def caltech_tables(result: CaltechResult, preset: Preset) -> List[Tuple[List[tuple], List[str], str]]:
    """Tables 4 and 5 beside ours, as ``(rows, header, caption)`` for :func:`zfcore.plots.html_table`:
    the prepared Caltech's table at the folder scale, both at the scenes scales."""
    tables = {"caltech101": [("4", "Caltech-101", PAPER_TABLE4, [15, 30])],
              "caltech256": [("5", "Caltech-256", PAPER_TABLE5, [15, 30, 45, 60])]}.get(result.dataset)
    if tables is None:          # the scenes: both tables beside ours
        tables = [("4", "Caltech-101", PAPER_TABLE4, sorted({15, 30} | set(preset.target_train[:2]))),
                  ("5", "Caltech-256", PAPER_TABLE5, sorted({15, 30, 45, 60} | set(preset.target_train)))]
    ours = (f"{preset.name} scale, {len(result.classes)} target classes" if preset.data == "scenes"
            else f"{preset.name} scale, {_caltech_name(result)}")
    return [(table_rows(result, ns, paper=paper), ["method"] + [f"{n}/class" for n in ns],
             f"Table {number} (the paper: {name}) beside ours ({ours})")
            for number, name, paper, ns in tables]


def curve_table(result: CaltechResult) -> Tuple[List[tuple], List[str], str]:
    """Fig. 9's pretrained curve as ``(rows, header, caption)``."""
    ns = sorted(result.pretrained)
    return (table_rows(result, ns)[-1:], ["method"] + [f"{n}" for n in ns],
            "The pretrained curve: mean per-class accuracy (%) per training images per class")


def budget_text(preset: Preset, run, result: CaltechResult) -> str:
    """Markdown: the from-scratch networks' training budget, against the source model's."""
    steps, batch, n_cls = result.scratch_steps, result.scratch_batch, len(result.classes)
    if steps is None:
        return (f"**The from-scratch budget.** Each from-scratch network trains with the scale's full schedule "
                f"({preset.epochs} epochs over its fold's training images, mini-batches of {batch}), on "
                f"{result.scratch_folds} of the {result.folds} folds. " + scratch_text(result))
    passes = {n: steps * batch / (n * n_cls) for n in sorted(result.scratch)}
    src_images = preset.num_classes * preset.train_per_class
    src_steps = math.ceil(src_images / preset.batch_size)
    first = next((r["epoch"] for r in run.metrics if r["val_top1_err"] < 90), None)
    text = (f"**The from-scratch budget.** Each from-scratch network trains for {steps} SGD steps of {batch} "
            f"images ({steps * batch} images seen, i.e. "
            + ", ".join(f"{v:.1f} passes at {n}/class" for n, v in passes.items())
            + f"), on {result.scratch_folds} of the {result.folds} folds"
            + (" (so no standard deviation)" if result.scratch_folds == 1 else "") + ". ")
    if first is not None:
        text += (f"For scale: the source model, trained from scratch with the same recipe on {src_images} images, "
                 f"stayed above 90% validation error for its first "
                 f"{'epoch' if first == 2 else f'{first - 1} epochs'} ({(first - 1) * src_steps} steps of "
                 f"{preset.batch_size} images, {(first - 1) * src_steps * preset.batch_size} images seen). ")
    return text + ("These networks are stopped at a fixed budget, not at a plateau as the paper's were, so "
                   "the size of the gap is not the paper's; `scratch_steps` raises the budget. "
                   + scratch_text(result))


def paper_table6_rows() -> List[tuple]:
    """Table 6 as the paper prints it: ``(class, [A], [B], the paper)`` per class, then the mean."""
    rows = [(c, *[f"{v:.1f}" for v in vals]) for c, vals in PAPER_TABLE6.items()]
    return rows + [("mean", *[f"{v:.1f}" for v in PAPER_TABLE6_MEAN])]


def pascal_text(pas: PascalResult) -> str:
    """Markdown: what the softmax of Table 6 was trained on, and the two mean APs."""
    return (f"The softmax was trained on {pas.train_images} images holding {pas.labels_per_image:.1f} classes on "
            f"average (rule `{pas.rule}`), on the {pas.layer} features; the test images hold "
            f"{min(pas.prob_by_count)} to {max(pas.prob_by_count)} classes each. Mean average precision: "
            f"**{pas.softmax_map:.1f}%** for the single-label softmax, **{pas.ovr_map:.1f}%** for the "
            f"one-vs-rest logistic regressions (the paper's softmax: "
            f"{PAPER_TABLE6_MEAN[2]:.1f}% on PASCAL).")


def count_table(pas: PascalResult) -> Tuple[List[tuple], List[str], str]:
    """How the two classifiers score the classes an image holds, by how many: ``(rows, header, caption)``."""
    se = pas.prob_se_by_count
    rows = [(k, f"{1 / k:.2f}", f"{pas.prob_by_count[k]:.2f}" + (f" ± {se[k]:.2f}" if k in se else ""),
             f"{pas.ovr_prob_by_count[k]:.2f}") for k in sorted(pas.prob_by_count)]
    return (rows, ["classes in the test image", "1/k", "softmax probability of a present class (mean ± SE)",
                   "one-vs-rest probability of a present class (mean)"],
            "How the classifiers score the classes an image holds, by how many it holds")


def count_text(pas: PascalResult) -> str:
    """Markdown: how far the softmax probability of a present class falls, and the APs' difference."""
    ks, (better, se, _) = sorted(pas.prob_by_count), ap_gap(pas)
    drop = pas.prob_by_count[ks[0]] - pas.prob_by_count[ks[-1]]
    return (f"Here the softmax probability of a class that is present falls from {pas.prob_by_count[ks[0]]:.2f} "
            f"with {ks[0]} classes in the image to {pas.prob_by_count[ks[-1]]:.2f} with {ks[-1]} "
            f"({'a fall' if drop > 0 else 'no fall'} of {abs(drop):.2f}); its top class is one the image "
            f"holds in {pas.top1_in_labels:.0%} of the test images. The one-vs-rest classifiers reach a mean AP "
            f"{abs(better):.1f} ± {se:.1f} points (SE over the classes) {'higher' if better > 0 else 'lower'} than "
            "the softmax on the same features" + {
                HOLDS: ": the constraint costs the softmax ranking quality.",
                DOES_NOT_HOLD: ": on this run the constraint costs the softmax no ranking quality.",
                NOT_TESTABLE: f", within {SE_MARGIN:g} SE of no difference: this run cannot tell whether the "
                              "constraint costs the softmax ranking quality."}[decide(better, se)])


def summary(found: Sequence[Finding], preset: Preset, result: CaltechResult) -> str:
    """Markdown: how many of the findings hold, which do not, and what this run's transfer is."""
    by = {v: [f.claim for f in found if f.verdict == v] for v in (HOLDS, DOES_NOT_HOLD, NOT_TESTABLE)}
    main = found[0] if found and found[0].claim.startswith("Pretrained") else None
    text = (f"**At the `{preset.name}` scale, {len(by[HOLDS])} of the {len(found)} checks hold, "
            f"{len(by[DOES_NOT_HOLD])} do not, {len(by[NOT_TESTABLE])} not testable.** "
            + ("Contradicted here: " + "; ".join(by[DOES_NOT_HOLD]) + ". " if by[DOES_NOT_HOLD] else "")
            + ("Not testable here: " + "; ".join(by[NOT_TESTABLE]) + ". " if by[NOT_TESTABLE] else ""))
    if main is not None:
        text += {HOLDS: "Pretrained features beat training from scratch beyond the standard error at every "
                        "size where the from-scratch network learned",
                 DOES_NOT_HOLD: "Pretrained features fall below training from scratch at some size where the "
                                "from-scratch network learned",
                 NOT_TESTABLE: "Whether pretrained features beat training from scratch is not testable here ("
                               + main.evidence + ")"}[main.verdict]
        text += ", with the from-scratch networks at the budget stated above. "
    if preset.data == "scenes":
        return text + (f"The features come from a small model trained on {preset.num_classes} classes of "
                       "generated scenes, and the held-out classes are other glyphs on the same kind of "
                       "backgrounds, a much closer transfer than ImageNet to Caltech.")
    return text + (f"The features come from this run's ImageNet model and the targets are the prepared "
                   f"{_caltech_name(result)} and PASCAL VOC 2012, the paper's setting.")
