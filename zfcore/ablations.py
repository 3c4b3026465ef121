"""The ImageNet comparison and the ablations (Section 5.1, Tables 2 and 3).

Section 5 and Tables 2 and 3 train variants of both networks: layers removed,
fc6/fc7 narrower or wider, conv3-5 wider. :data:`TABLE3_VARIANTS` lists them in
the paper's row order (:data:`FIG6_VARIANTS` the three models of Fig. 6, which
:mod:`zfcore.architecture` measures), :func:`budget_run` trains (or loads) one at
the chapters' reduced budget (:func:`budget_preset`), :func:`ablation_rows` and
:func:`table2_rows` put our numbers beside the paper's (:data:`PAPER_TABLE2`,
:data:`PAPER_TABLE3`), and :func:`findings` computes which of the paper's
conclusions hold on given numbers (:class:`zfcore.findings.Finding`).
:func:`ensemble_row` averages the 10-crop softmax of a family's models that trained
(Table 2's "N convnets" rows; :mod:`zfcore.ensembles`, re-exported here). The
verdicts compare error rates by :func:`zfcore.error_rates.contrast` (against their
standard errors and the models' last-epoch gains) and leave out models that did not
train (:func:`zfcore.error_rates.not_trained`).

This module trains (:func:`budget_run`, through :func:`zfcore.train.train`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .ensembles import ensemble_error, ensemble_probs, ten_crop_probs
from .error_rates import (contrast, error_cell, error_se, last_epoch_gain, not_trained, run_numbers,
                          untrained_note, untrained_text, with_paper_counts)
from .findings import HOLDS, NOT_TESTABLE, Finding, all_of
from .presets import Preset, get_preset
from .train import train

__all__ = [
    "PAPER_TABLE2", "PAPER_TABLE3", "BUDGET_EPOCHS", "BUDGET_CLASSES", "Variant", "TABLE3_VARIANTS", "FIG6_VARIANTS",
    "variant", "budget_preset", "budget_run", "budget_runs", "paper_numbers", "table3_numbers",
    "last_epoch_gain", "run_rows", "RUN_HEADER", "variant_rows", "VARIANT_HEADER",
    "ablation_rows", "ABLATION_HEADER", "ablation_figure", "table2_rows", "TABLE2_HEADER",
    "findings", "ensemble_finding",
    "ten_crop_probs", "ensemble_probs", "ensemble_error", "ensemble_row",
    "intro_text", "noise_text", "table2_caption", "ensemble_text", "findings_text", "convergence_text", "runs_text",
]

# --------------------------------------------------------------------------------------------
# the paper's numbers (arXiv v3; see PAPER.md)

#: Table 2: (model, val top-1, val top-5, test top-5) error %, ``None`` for "-".
PAPER_TABLE2: Tuple[Tuple[str, Optional[float], Optional[float], Optional[float]], ...] = (
    ("Gunji et al.", None, None, 26.2),
    ("Krizhevsky et al., 1 convnet", 40.7, 18.2, None),
    ("Krizhevsky et al., 5 convnets", 38.1, 16.4, 16.4),
    ("Krizhevsky et al.*, 1 convnet", 39.0, 16.6, None),
    ("Krizhevsky et al.*, 7 convnets", 36.7, 15.4, 15.3),
    ("Our replication of Krizhevsky et al., 1 convnet", 40.5, 18.1, None),
    ("1 convnet as per Fig. 3", 38.4, 16.5, None),
    ("5 convnets as per Fig. 3 (a)", 36.7, 15.3, 15.3),
    ("1 convnet as per Fig. 3 but with layers 3,4,5: 512,1024,512 maps (b)", 37.5, 16.0, 16.1),
    ("6 convnets, (a) & (b) combined", 36.0, 14.7, 14.8),
)

#: Table 3: (key, model, train top-1, val top-1, val top-5) error %, in the paper's row order.
#: ``key`` is ``"<family>:<tag>"``, the :class:`Variant` that reproduces the row.
PAPER_TABLE3: Tuple[Tuple[str, str, float, float, float], ...] = (
    ("krizhevsky:base", "Our replication of Krizhevsky et al.", 35.1, 40.5, 18.1),
    ("krizhevsky:rm3,4", "Removed layers 3,4", 41.8, 45.4, 22.1),
    ("krizhevsky:rm7", "Removed layer 7", 27.4, 40.0, 18.4),
    ("krizhevsky:rm6,7", "Removed layers 6,7", 27.4, 44.8, 22.4),
    ("krizhevsky:rm3,4,6,7", "Removed layers 3,4,6,7", 71.1, 71.3, 50.1),
    ("krizhevsky:fc2048", "Adjust layers 6,7: 2048 units", 40.3, 41.7, 18.8),
    ("krizhevsky:fc8192", "Adjust layers 6,7: 8192 units", 26.8, 40.0, 18.1),
    ("zf:base", "Our model (as per Fig. 3)", 33.1, 38.4, 16.5),
    ("zf:fc2048", "Adjust layers 6,7: 2048 units", 38.2, 40.2, 17.6),
    ("zf:fc8192", "Adjust layers 6,7: 8192 units", 22.0, 38.8, 17.0),
    ("zf:conv345", "Adjust layers 3,4,5: 512,1024,512 maps", 18.8, 37.5, 16.0),
    ("zf:fc8192+conv345", "Adjust layers 6,7: 8192 units and layers 3,4,5: 512,1024,512 maps",
     10.0, 38.3, 16.9),
)

#: Epochs of the one reduced budget that every model of the two chapters gets, per scale
#: (``None``: the preset's own, the paper's recipe at the ``imagenet`` scale).
BUDGET_EPOCHS: Dict[str, Optional[int]] = {"tiny": 2, "default": 15, "scenes224": 15, "imagenet": None}

#: Source classes the budget's models learn, per scale (``None``: all of the preset's). At the
#: default scale, 20 of the 100 classes (2,000 training images) for 15 epochs: the same 30,000
#: training images seen as 3 epochs of all 100 classes, and the same time, but past the plateau
#: near chance on which every model still sat after 3 epochs of the 100 (measured: 94-98%
#: validation error; with 20 classes for 15 epochs, the ZF base model reaches about 28%).
BUDGET_CLASSES: Dict[str, Optional[int]] = {"tiny": None, "default": 20, "scenes224": 20, "imagenet": None}

#: The learning-rate drops of the budget, per scale: after these epochs the rate is divided by
#: 10, a schedule fixed by hand as the main model's (``None``: the preset's own drops that fall
#: within the budget; none: the plateau rule). Without them the default budget's models were
#: still learning at its end (their last epochs gained -2 to +12 points, median +3.75) and every comparison of
#: Table 3 read "not testable"; the main model's schedule, 24 epochs dropped after 16 and 21,
#: scaled to 15 epochs, drops after 10 and 13 at no cost in time. Measured with them: last-epoch
#: gains from -1.0 to +1.8 points (median 0.0), every model at its plateau; the ZF base model
#: ends at 24.3% (19.0% without the drops, still learning).
BUDGET_DROPS: Dict[str, Optional[Tuple[int, ...]]] = {"tiny": (), "default": (10, 13), "scenes224": (10, 13),
                                                      "imagenet": None}

# --------------------------------------------------------------------------------------------
# the variants


@dataclass(frozen=True)
class Variant:
    """One model of Fig. 6 or Table 3.

    Attributes:
        family: ``"zf"`` (Fig. 3) or ``"krizhevsky"``.
        tag: ``"base"``, ``"rm3,4"``, ``"rm7"``, ``"rm6,7"``, ``"rm3,4,6,7"``, ``"fc2048"``,
            ``"fc8192"``, ``"conv345"``, ``"fc8192+conv345"`` or ``"norenorm"``.
        remove: layers removed (Table 3: conv3, conv4, fc6, fc7).
        fc: units of fc6 and fc7 at full scale (4096 in Fig. 3); a scale whose preset has
            ``fc_units`` U gets ``U * fc / 4096`` (the default preset's 512 makes 2048 -> 256).
        conv345: maps of conv3-5 at full width (Table 3's 512, 1024, 512); the preset's width
            multiplier applies to them as to every conv layer.
        renorm: the RMS renormalisation of Section 3 (off for Fig. 6(a)).
    """
    family: str
    tag: str
    remove: Tuple[str, ...] = ()
    fc: int = 4096
    conv345: Optional[Tuple[int, int, int]] = None
    renorm: bool = True

    @property
    def key(self) -> str:
        return f"{self.family}:{self.tag}"

    @property
    def run_name(self) -> str:
        """The run folder's prefix (``artifacts/<scale>/runs/<run_name>-<settings key>``)."""
        fam = "kriz" if self.family == "krizhevsky" else "zf"
        return f"{fam}-{self.tag.replace(',', '').replace('+', '-')}"

    def fc_units(self, preset: Preset) -> int:
        return max(1, int(round(preset.fc_units * self.fc / 4096)))

    def kwargs(self, scale) -> dict:
        """Keyword arguments of :func:`zfcore.train.train` beyond ``family`` and ``renorm``."""
        p = get_preset(scale)
        kw: dict = {}
        if self.remove:
            kw["remove"] = list(self.remove)
        if self.fc != 4096:
            kw["fc_units"] = self.fc_units(p)
        if self.conv345 is not None:
            kw["conv345"] = list(self.conv345)
        return kw

    def describe(self, scale) -> str:
        """What this scale builds, e.g. ``"fc6, fc7: 256 units"``."""
        p = get_preset(scale)
        parts = []
        conv1 = "11x11/4" if self.family == "krizhevsky" else "7x7/2"
        if self.remove:
            parts.append("without " + ", ".join(self.remove))
        if self.fc != 4096:
            parts.append(f"fc6, fc7: {self.fc_units(p)} units")
        if self.conv345 is not None:
            maps = [max(1, int(round(c * p.width))) for c in self.conv345]
            parts.append("conv3-5: " + ", ".join(str(m) for m in maps) + " maps")
        if not self.renorm:
            parts.append("no RMS renormalisation")
        return f"conv1 {conv1}" + ("; " + "; ".join(parts) if parts else
                                   f"; as built at this scale (fc6, fc7: {p.fc_units} units)")


_WIDE = (512, 1024, 512)

#: Table 3's models, in the paper's row order (the keys of :data:`PAPER_TABLE3`).
TABLE3_VARIANTS: Tuple[Variant, ...] = (
    Variant("krizhevsky", "base"),
    Variant("krizhevsky", "rm3,4", remove=("conv3", "conv4")),
    Variant("krizhevsky", "rm7", remove=("fc7",)),
    Variant("krizhevsky", "rm6,7", remove=("fc6", "fc7")),
    Variant("krizhevsky", "rm3,4,6,7", remove=("conv3", "conv4", "fc6", "fc7")),
    Variant("krizhevsky", "fc2048", fc=2048),
    Variant("krizhevsky", "fc8192", fc=8192),
    Variant("zf", "base"),
    Variant("zf", "fc2048", fc=2048),
    Variant("zf", "fc8192", fc=8192),
    Variant("zf", "conv345", conv345=_WIDE),
    Variant("zf", "fc8192+conv345", fc=8192, conv345=_WIDE),
)

#: Fig. 6's three models: (a) ZF without renormalisation, (b)/(d) Krizhevsky, (c)/(e) ZF.
FIG6_VARIANTS: Tuple[Variant, ...] = (
    Variant("zf", "norenorm", renorm=False),
    Variant("krizhevsky", "base"),
    Variant("zf", "base"),
)

_ALL = {v.key: v for v in TABLE3_VARIANTS + FIG6_VARIANTS}


def variant(key: str) -> Variant:
    """The :class:`Variant` of key ``"<family>:<tag>"`` (e.g. ``"krizhevsky:rm6,7"``)."""
    try:
        return _ALL[key]
    except KeyError:
        raise ValueError(f"unknown variant {key!r}; valid: {', '.join(_ALL)}") from None


# --------------------------------------------------------------------------------------------
# the budget and the runs


def budget_preset(scale, epochs: Optional[int] = None) -> Preset:
    """``scale``'s preset with the chapters' one reduced training budget.

    Every model of the architecture-selection and ablation chapters is trained with
    the paper's recipe at this scale for ``epochs`` epochs (default
    :data:`BUDGET_EPOCHS` of the scale; the preset's own where that is ``None``), on the
    first :data:`BUDGET_CLASSES` source classes of the scenes (all where that is ``None``,
    its learning rate dropped after the epochs of :data:`BUDGET_DROPS` within the budget,
    and always all of the user's folders), with no intermediate checkpoints kept (only the
    final one). Read the budget's data with this preset (``load_split(budget, "val")``).
    """
    p = get_preset(scale)
    if epochs is None:
        epochs = BUDGET_EPOCHS.get(p.name) or p.epochs
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    drops = BUDGET_DROPS.get(p.name)
    drops = p.lr_drops if drops is None else drops
    changes = dict(epochs=epochs, evolution_epochs=(), lr_drops=tuple(d for d in drops if d < epochs))
    classes = BUDGET_CLASSES.get(p.name)
    if classes is not None and p.data == "scenes":
        changes["num_classes"] = min(int(classes), p.num_classes)
    return p.replace(**changes)


def _as_variant(v) -> Variant:
    if isinstance(v, Variant):
        return v
    if isinstance(v, str):
        return variant(v)
    raise ValueError(f"expected a Variant or a key such as 'zf:base', got {v!r}")


def budget_run(scale, v, *, epochs: Optional[int] = None, seed: Optional[int] = None,
               progress: bool = True, **train_kwargs):
    """The run of variant ``v`` (a :class:`Variant` or its key) at ``scale``'s reduced
    budget (:func:`budget_preset`): loaded if it has finished before, else trained.

    The run folder is keyed by every setting (preset with the budget, family, variant,
    renormalisation, seed, data folder), so a chapter can run alone and a second run trains
    nothing; ``zf train --variant KEY`` trains the same run (under torchrun at full scale)
    for the chapters to find. ``train_kwargs`` go to :func:`zfcore.train.train`
    (``data_root``, ``exclude``, ``resume``, ``device``).
    Returns a :class:`zfcore.runs.Run`.
    """
    v = _as_variant(v)
    p = budget_preset(scale, epochs)
    train_kwargs.setdefault("resume", True)          # train_or_load's: load a finished run, resume a killed one
    return train(p, name=v.run_name, family=v.family, renorm=v.renorm, seed=seed,
                 progress=progress, **v.kwargs(p), **train_kwargs)


def budget_runs(scale, variants: Sequence, *, epochs: Optional[int] = None,
                seed: Optional[int] = None, progress: bool = True) -> Dict[str, object]:
    """``{key: Run}`` for several variants (see :func:`budget_run`), in the given order."""
    out = {}
    for v in variants:
        v = _as_variant(v)
        out[v.key] = budget_run(scale, v, epochs=epochs, seed=seed, progress=progress)
    return out



def paper_numbers() -> Dict[str, dict]:
    """Table 3's numbers as ``{key: {"train_top1", "val_top1", "val_top5", "n_val", "n_train",
    "classes", "last_gain"}}`` (the form :func:`findings` reads): the counts those of ImageNet
    2012's validation set and classes, the models converged
    (:func:`zfcore.error_rates.with_paper_counts`)."""
    return with_paper_counts({k: {"train_top1": a, "val_top1": b, "val_top5": c} for k, _, a, b, c in PAPER_TABLE3})



def table3_numbers(runs: Mapping[str, object]) -> Dict[str, dict]:
    """``{key: run_numbers(run)}`` (:func:`zfcore.architecture.run_numbers`) for ``{key: Run}``."""
    return {key: run_numbers(run) for key, run in runs.items()}


#: Column names of :func:`variant_rows`.
VARIANT_HEADER = ("variant", "this scale builds")


def variant_rows(scale, variants: Optional[Sequence] = None) -> List[tuple]:
    """``(key, what scale builds)`` for each variant (default :data:`TABLE3_VARIANTS`)."""
    return [(v.key, v.describe(scale)) for v in (TABLE3_VARIANTS if variants is None else variants)]


#: Column names of :func:`run_rows`.
RUN_HEADER = ("model", "this scale builds", "epochs", "training time", "train top-1",
              "val top-1 (10 crops)", "val top-5 (10 crops)", "last epoch's gain (val top-1)")


def _gain_cell(entry: Mapping[str, float]) -> str:
    g = entry.get("last_gain")
    return "-" if g is None or math.isnan(g) else f"{g:+.1f} points"


def run_rows(runs: Mapping[str, object], scale, labels: Optional[Mapping[str, str]] = None) -> List[tuple]:
    """One row per run (``{key: Run}``) for :data:`RUN_HEADER`: what it builds at ``scale``,
    its epochs and training time (as logged when it was trained), its errors (%; a model that did
    not train marked, :func:`zfcore.error_rates.not_trained`) and how far it was from its plateau
    (the fall of its centre-crop val top-1 error in its last epoch)."""
    rows = []
    for key, run in runs.items():
        n = run_numbers(run)
        v = variant(key)
        rows.append(((labels or {}).get(key, key), v.describe(scale), n["epochs"],
                     f"{n['train_seconds']:.0f} s", f"{n['train_top1']:.1f}%", error_cell(n, "val_top1", "%"),
                     f"{n['val_top5']:.1f}%", _gain_cell(n)))
    return rows


# Tables 2 and 3


#: Column names of :func:`ablation_rows`.
ABLATION_HEADER = ("family", "model (Table 3)", "this scale builds", "paper: train top-1",
                   "paper: val top-1", "paper: val top-5", "ours: train top-1", "ours: val top-1",
                   "ours: val top-5", "ours: last epoch's gain")


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def ablation_rows(numbers: Mapping[str, dict], scale="default") -> List[tuple]:
    """Table 3 with our numbers beside the paper's, in the paper's row order.

    Args:
        numbers: ``{key: run_numbers(run)}`` for the variants that were trained (keys of
            :data:`PAPER_TABLE3`, e.g. ``"zf:fc8192"``); rows without numbers show "-".
        scale: the scale the models were built at (for the "this scale builds" column).
    Returns:
        rows for :data:`ABLATION_HEADER`, error rates in %; a model that did not train is
        marked (:func:`zfcore.error_rates.not_trained`), and the last column is how far each
        model was from its plateau (the fall of its val top-1 error in its last epoch).
    """
    unknown = set(numbers) - {k for k, *_ in PAPER_TABLE3}
    if unknown:
        raise ValueError(f"not rows of Table 3: {sorted(unknown)}")
    rows = []
    for key, label, tr, v1, v5 in PAPER_TABLE3:
        v = variant(key)
        ours = numbers.get(key, {})
        fam = "Krizhevsky et al." if v.family == "krizhevsky" else "ZF (Fig. 3)"
        rows.append((fam, label, v.describe(scale), _fmt(tr), _fmt(v1), _fmt(v5),
                     _fmt(ours.get("train_top1")), error_cell(ours), _fmt(ours.get("val_top5")),
                     _gain_cell(ours)))
    return rows


def ablation_figure(numbers: Mapping[str, dict], title: str = ""):
    """Table 3 as a picture: each variant's change in validation top-1 error against its
    family's base model, in percentage points, the paper's beside ours (negative: better).

    Args:
        numbers: ``{key: run_numbers(run)}`` as for :func:`ablation_rows`; each family's
            ``"<family>:base"`` must be there for its variants to be drawn.
    Returns:
        A matplotlib Figure, one panel per family.
    """
    import matplotlib.pyplot as plt
    paper = paper_numbers()
    fams = [f for f in ("krizhevsky", "zf") if f"{f}:base" in numbers]
    if not fams:
        raise ValueError("no base model among the numbers: need 'krizhevsky:base' or 'zf:base'")
    fig, axes = plt.subplots(1, len(fams), figsize=(6.2 * len(fams), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        rows = [(label, key) for key, label, *_ in PAPER_TABLE3
                if key.startswith(fam + ":") and key != f"{fam}:base" and key in numbers]
        y = np.arange(len(rows))
        d_paper = [paper[k]["val_top1"] - paper[f"{fam}:base"]["val_top1"] for _, k in rows]
        d_ours = [numbers[k]["val_top1"] - numbers[f"{fam}:base"]["val_top1"] for _, k in rows]
        ax.barh(y - 0.2, d_paper, height=0.38, color="#999999", label="paper (ImageNet, 70 epochs)")
        ax.barh(y + 0.2, d_ours, height=0.38, color="#1f77b4", label="this run")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([label.replace("Adjust layers ", "layers ").replace("Removed ", "removed ")
                            .replace(" units and ", " units,\n") for label, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("change in val top-1 error vs the base model (points)", fontsize=9)
        ax.set_title("Krizhevsky et al." if fam == "krizhevsky" else "ZF (Fig. 3)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


#: Column names of :func:`table2_rows`.
TABLE2_HEADER = ("model", "paper: val top-1", "paper: val top-5", "paper: test top-5",
                 "ours: val top-1", "ours: val top-5")

_TABLE2_OURS = {
    "Our replication of Krizhevsky et al., 1 convnet": "krizhevsky:base",
    "1 convnet as per Fig. 3": "zf:base",
    "1 convnet as per Fig. 3 but with layers 3,4,5: 512,1024,512 maps (b)": "zf:conv345",
}


def table2_rows(numbers: Mapping[str, dict], ensemble: Optional[Tuple[str, dict]] = None) -> List[tuple]:
    """Table 2 (ImageNet 2012 error %) with our single models beside the paper's rows they
    reproduce (Krizhevsky replication, Fig. 3, Fig. 3 with wide conv3-5), and, if given,
    ``ensemble = (label, {"val_top1", "val_top5"})`` as a last row of our own."""
    rows = []
    for label, v1, v5, t5 in PAPER_TABLE2:
        ours = numbers.get(_TABLE2_OURS.get(label, ""), {})
        rows.append((label, _fmt(v1), _fmt(v5), _fmt(t5), error_cell(ours), _fmt(ours.get("val_top5"))))
    if ensemble is not None:
        label, e = ensemble
        rows.append((label, "-", "-", "-", _fmt(e.get("val_top1")), _fmt(e.get("val_top5"))))
    return rows


def _need(numbers: Mapping[str, dict], *keys: str) -> None:
    missing = [k for k in keys if k not in numbers]
    if missing:
        raise ValueError(f"findings needs the numbers of {missing}")


def _cost(numbers, key, base) -> float:
    return numbers[key]["val_top1"] - numbers[base]["val_top1"]


_V, _T = "val_top1", "train_top1"
_KB, _K34, _K67, _KALL = "krizhevsky:base", "krizhevsky:rm3,4", "krizhevsky:rm6,7", "krizhevsky:rm3,4,6,7"


def _below_capacity(numbers: Mapping[str, dict], reduced: Sequence[str], full: str = _KB) -> str:
    """Why a cost over ``full`` says nothing: a reduced model beats it beyond the standard error
    of the difference (``""`` when none does)."""
    beat = [f"{k} {ev}" for k in reduced
            for verdict, _, ev in [contrast(numbers, [(full, _V, 1.0), (k, _V, -1.0)], plateau=False)]
            if verdict == HOLDS]
    return ("a reduced model beats the full one beyond its standard error: the full model is below its "
            f"capacity at this budget (full minus reduced: {'; '.join(beat)})") if beat else ""


def _depth_checks(numbers: Mapping[str, dict]) -> List[tuple]:
    """Table 3's conclusions on depth: ``(claim, criterion, verdict, measured, evidence)``."""
    _need(numbers, _KB, _K34, _K67, _KALL)
    c34, c67, call = (_cost(numbers, k, _KB) for k in (_K34, _K67, _KALL))
    rule = (" Decided beyond 2 standard errors (binomial, on the validation images) and beyond the models' "
            "last-epoch gains, else not testable; not testable too when a model did not train, or when a "
            "reduced model of Table 3 (layers 3,4; 7; 6,7; 3,4,6,7 removed) beats the full one beyond its "
            "standard error (the full model is then below its capacity, and its costs say nothing)")
    blocked = _below_capacity(numbers, [k for k in (_K34, "krizhevsky:rm7", _K67, _KALL) if k in numbers])

    def little(key, layers, cost):
        # a third of the cost of removing all four, minus this cost: above 0 when it costs little
        verdict, d, ev = contrast(numbers, [(_KALL, _V, 1 / 3), (_KB, _V, 2 / 3), (key, _V, -1.0)])
        return (f"removing {layers} costs little",
                f"the rise in val top-1 error when removing {layers} is below a third of the rise when removing "
                "conv3, conv4, fc6 and fc7 together." + rule,
                NOT_TESTABLE if blocked else verdict, f"{cost:+.1f} points (removing 3,4,6,7: {call:+.1f})",
                f"{cost:+.1f} points of val top-1 (removing 3,4,6,7: {call:+.1f}); a third of that minus it: {ev}"
                + (f"; {blocked}" if blocked else ""))

    v_all, _, ev_all = contrast(numbers, [(_KALL, _V, 1.0), (_KB, _V, -1.0)])
    v_sum, _, ev_sum = contrast(numbers, [(_KALL, _V, 1.0), (_K34, _V, -1.0), (_K67, _V, -1.0), (_KB, _V, 1.0)])
    return [
        little(_K67, "fc6 and fc7", c67),
        little(_K34, "conv3 and conv4", c34),
        ("removing both costs a lot (more than the two separately)",
         "removing conv3, conv4, fc6 and fc7 raises the val top-1 error, by more than the two separate "
         "rises added up." + rule, NOT_TESTABLE if blocked else all_of([v_all, v_sum]),
         f"{call:+.1f} vs {c34 + c67:+.1f} points",
         f"{call:+.1f} points vs {c34:+.1f} + {c67:+.1f} = {c34 + c67:+.1f}; the rise: {ev_all}; the rise minus "
         f"the two: {ev_sum}" + (f"; {blocked}" if blocked else "")),
    ]


def _gap_steps(numbers: Mapping[str, dict], fam: str) -> Tuple[str, str, str]:
    """One family's train-val gap at 2048 / as built / 8192 units: ``(verdict, measured,
    evidence)``; each
    step of the ordering decided by :func:`zfcore.error_rates.contrast` (a tie does not pass)."""
    keys = [f"{fam}:fc2048", f"{fam}:base", f"{fam}:fc8192"]
    _need(numbers, *keys)
    g = [numbers[k][_V] - numbers[k][_T] for k in keys]
    steps = [contrast(numbers, [(b, _V, 1.0), (b, _T, -1.0), (a, _V, -1.0), (a, _T, 1.0)])
             for a, b in zip(keys, keys[1:])]
    verdict = all_of([v for v, _, _ in steps])
    word = {HOLDS: "grows", NOT_TESTABLE: "cannot tell"}.get(verdict, "does not grow")
    name = "Krizhevsky" if fam == "krizhevsky" else "ZF"
    short = f"{name} {g[0]:+.1f} / {g[1]:+.1f} / {g[2]:+.1f} ({word})"
    return verdict, short, f"{short[:-1]}; steps " + ", ".join(ev for _, _, ev in steps) + ")"


def _width_checks(numbers: Mapping[str, dict]) -> List[tuple]:
    """Table 3's conclusions on width: ``(claim, criterion, verdict, measured, evidence)``."""
    _need(numbers, "zf:base", "zf:conv345")
    b, w = numbers["zf:base"][_V], numbers["zf:conv345"][_V]
    verdict, _, ev = contrast(numbers, [("zf:base", _V, 1.0), ("zf:conv345", _V, -1.0)])
    out = [("wider conv3-5 (512, 1024, 512 maps) helps",
            "the ZF model's val top-1 error with conv3-5 of 512, 1024, 512 maps below the ZF model's as built, "
            "by more than 2 standard errors of the difference and more than the two models' last-epoch gains",
            verdict, f"{w:.1f}% vs {b:.1f}%", f"ZF val top-1 {w:.1f}% with wide conv3-5 vs {b:.1f}%: {ev}")]
    fams = [_gap_steps(numbers, fam) for fam in ("krizhevsky", "zf")]
    out.append(("wider fc layers overfit (the train-val gap grows with fc6/fc7 width)",
                "in each family, val top-1 minus train top-1 error grows with the width of fc6 and fc7 "
                "(2048 < as built < 8192 units), each step by more than 2 standard errors (binomial, the "
                "training error's on the last epoch's training images) and more than the two models' last-epoch "
                "gains; a tie does not grow; not testable when a model did not train",
                all_of([v for v, _, _ in fams]), "; ".join(m for _, m, _ in fams),
                "val minus train top-1 at 2048 / as built / 8192 units: " + "; ".join(e for _, _, e in fams)))
    return out


def findings(numbers: Mapping[str, dict]) -> List[Finding]:
    """The paper's conclusions from Table 3, computed on ``numbers`` (``{key: {"train_top1",
    "val_top1", "val_top5", "n_val", "n_train", "classes", "last_gain"}}``, ours from
    :func:`table3_numbers` or the paper's from :func:`paper_numbers`). Each finding's
    ``published`` is the same measure on the paper's numbers, which meet every criterion.

    "Cost" is the rise in validation top-1 error over the model's unmodified row. The
    criteria, which the paper's own numbers meet (their standard errors on ImageNet's 50,000
    validation images):

    * removing fc6 and fc7 costs little, and so does removing conv3 and conv4: each costs
      less than a third of what removing all four costs;
    * removing both costs a lot: it raises the error, by more than the two separate costs
      added up (depth matters beyond either part);
    * the three depth findings are "not testable", not "holds", when a reduced Krizhevsky model
      of Table 3 (layers 3,4; 7; 6,7 or 3,4,6,7 removed) beats the full one beyond the standard
      error of their difference: the full model is below its capacity at this budget, and a
      cost measured against it says nothing;
    * wider conv3-5 (512, 1024, 512) helps: the ZF model's validation error falls;
    * wider fc layers overfit: in each family, the train-validation gap (val top-1 minus
      train top-1) grows with the width of fc6 and fc7 (2048 < as built < 8192 units), step
      by step.

    Every comparison is decided by :func:`zfcore.error_rates.contrast`: "not testable" within
    2 standard errors of the compared quantity or within the largest last-epoch gain of the
    models it reads, or when one of them did not train (named in the evidence).
    """
    ours = _depth_checks(numbers) + _width_checks(numbers)
    paper = paper_numbers()
    published = _depth_checks(paper) + _width_checks(paper)
    return [Finding(claim=claim, source="Section 5.1, Table 3", published=pub[3], measured=measured,
                    criterion=criterion, verdict=verdict, evidence=evidence)
            for (claim, criterion, verdict, measured, evidence), pub in zip(ours, published)]


def ensemble_finding(ensemble: dict, numbers: Mapping[str, dict], family: str = "zf") -> Finding:
    """Table 2's ensembles, computed: does ``ensemble`` (:func:`ensemble_error`) of ``family``'s
    models have a lower top-1 error than its best member (``numbers``: :func:`table3_numbers`)?

    Its members are the family's models that trained (``ensemble["members"]`` where given);
    "not testable" with fewer than two, with an untrained member, or when the difference lies
    within 2 standard errors (binomial, each error on its validation images) or within the
    members' largest last-epoch gain (:func:`zfcore.error_rates.contrast`)."""
    family_keys = [k for k in numbers if k.startswith(family + ":")]
    if not family_keys:
        raise ValueError(f"no numbers of the {family!r} family to compare the ensemble with")
    members = list(ensemble.get("members") or [k for k in family_keys if not not_trained(numbers[k])])
    criterion = ("the ensemble's val top-1 error below that of its best member, by more than 2 standard errors "
                 "of the difference and more than the members' largest last-epoch gain; members that did not "
                 "train are left out")
    claim, source = "averaging the softmax of several models lowers the error below the best single model's", \
        "Section 5.1, Table 2"
    published = "5 convnets as per Fig. 3: 36.7% val top-1, against 37.5% for the best single model"
    left_out = [k for k in family_keys if k not in members]
    note = f" ({untrained_note(numbers, left_out)}: left out)" if left_out else ""
    bad = [k for k in members if not_trained(numbers[k])]
    err = ensemble["val_top1"]
    if len(members) < 2 or bad or not math.isfinite(err):
        why = untrained_note(numbers, bad) if bad else f"{len(members)} trained member(s): an ensemble needs two"
        return Finding(claim=claim, source=source, published=published, measured=f"{err:.1f}%",
                       criterion=criterion, verdict=NOT_TESTABLE, evidence=why + note)
    best = min(members, key=lambda k: numbers[k][_V])
    gains = [numbers[k].get("last_gain", 0.0) for k in members]
    both = {best: numbers[best], "ensemble": {_V: err, "n_val": ensemble.get("n", numbers[best]["n_val"]),
                                              "last_gain": max(gains)}}
    verdict, _, ev = contrast(both, [(best, _V, 1.0), ("ensemble", _V, -1.0)])
    return Finding(
        claim=claim, source=source, published=published, measured=f"{err:.1f}% vs {numbers[best][_V]:.1f}%",
        criterion=criterion, verdict=verdict,
        evidence=f"The ensemble of {len(members)} models: {err:.1f}% top-1 error, against {numbers[best][_V]:.1f}% "
                 f"for its best member ({best}); best minus ensemble {ev}{note}.")


# --------------------------------------------------------------------------------------------
# Table 2's row of our own (the ensemble: zfcore.ensembles)


def ensemble_row(runs: Mapping[str, object], scale, family: str = "zf",
                 numbers: Optional[Mapping[str, dict]] = None) -> Tuple[str, dict]:
    """Table 2's row of our own: ``(label, ensemble_error(...))`` of the ``family`` models among
    ``runs`` (``{key: Run}``) that trained (by ``numbers``, :func:`table3_numbers`, where given:
    :func:`zfcore.error_rates.not_trained`); the dict adds ``"members"``, their keys."""
    keys = [k for k in runs if k.startswith(family + ":")]
    members = [k for k in keys if numbers is None or not not_trained(numbers[k])]
    if members:
        e = dict(ensemble_error([runs[k] for k in members], scale), members=members)
    else:
        e = {"val_top1": float("nan"), "val_top5": float("nan"), "n": 0, "models": 0, "members": []}
    name = "the Fig. 3 family" if family == "zf" else "Krizhevsky et al.'s family"
    out = [k for k in keys if k not in members]
    return (f"Ours: {e['models']} convnets of {name} of Table 3, softmax averaged"
            + (f" ({', '.join(out)} left out: not trained)" if out else "")), e


# --------------------------------------------------------------------------------------------
# the chapter's sentences


def intro_text(preset: Preset, budget: Preset) -> str:
    """The chapter's opening note (markdown): this scale, its data, and the budget."""
    data = ((f"the first {budget.num_classes} of the {preset.num_classes} classes of scenes"
             if budget.num_classes != preset.num_classes else f"{preset.num_classes} classes of scenes")
            + f" ({budget.num_classes * budget.train_per_class} training and "
            f"{budget.num_classes * budget.val_per_class} validation images)" if preset.data == "scenes"
            else "your prepared ImageNet folders")
    return (
        f"**This page was run at the `{preset.name}` scale**: {preset.image_size}x{preset.image_size}-pixel crops of "
        f"{data}, the models at {preset.width:g} of the "
        f"paper's width. **Every model is trained for {budget.epochs} epochs** with the recipe of Section 3 (the paper: "
        f"70 epochs on 1.3 million ImageNet images; this book's main model: {preset.epochs} epochs). "
        + ("These are not ImageNet numbers; the question is whether the paper's comparisons come out the same way."
           if preset.data == "scenes" else "The question is whether the paper's comparisons come out the same way."))


def noise_text(numbers: Mapping[str, dict]) -> str:
    """The training time of the models together, and the noise of their validation errors."""
    n_val = next(iter(numbers.values()))["n_val"]
    mid = sum(n["val_top1"] for n in numbers.values()) / len(numbers)
    total = sum(n["train_seconds"] for n in numbers.values())
    return (f"Training took {total:.0f} s for the {len(numbers)} models together (as logged when each was trained). "
            f"On {n_val} validation images, an error rate of {mid:.0f}% has a standard error of "
            f"{error_se(mid, n_val):.1f} points from the sampling of the validation set alone; the difference of "
            f"two such rates, about {2 ** 0.5 * error_se(mid, n_val):.1f}. Seed-to-seed variation, not measured "
            "here, adds to that. " + untrained_text(numbers))


def table2_caption(preset: Preset, budget: Preset) -> str:
    return (f"Table 2 beside this run ({preset.name} scale, {budget.epochs} epochs per model); "
            + ("the scenes have no separate test server, so our test column is left out" if preset.data == "scenes"
               else "ImageNet's test labels are not public, so our test column is left out"))


def ensemble_text(ensemble: Tuple[str, dict], numbers: Mapping[str, dict], family: str = "zf") -> str:
    """The ensemble against its best member, in a sentence (:func:`ensemble_finding`)."""
    return ensemble_finding(ensemble[1], numbers, family).evidence


def findings_text(found: Sequence[Finding], preset: Preset, budget: Preset) -> str:
    """How many of the paper's conclusions hold here, and which (markdown)."""
    held = [f.claim for f in found if f.verdict == HOLDS]
    open_ = [f.claim for f in found if f.verdict == NOT_TESTABLE]
    failed = [f.claim for f in found if f.verdict not in (HOLDS, NOT_TESTABLE)]
    return (f"**At the {preset.name} scale with {budget.epochs} epochs per model, {len(held)} of the paper's "
            f"{len(found)} conclusions hold{f', {len(open_)} cannot be tested' if open_ else ''}.**"
            + (" Holding: " + "; ".join(held) + "." if held else "")
            + (" Not holding: " + "; ".join(failed) + "." if failed else "")
            + (" Not testable at this budget: " + "; ".join(open_) + "." if open_ else ""))


def runs_text(runs: Mapping[str, object]) -> str:
    """How far from their plateau the runs were (:func:`convergence_text`) and which did not
    train (:func:`zfcore.error_rates.untrained_text`), in two sentences (markdown)."""
    return convergence_text(runs) + " " + untrained_text(table3_numbers(runs))


def convergence_text(runs: Mapping[str, object]) -> str:
    """How far from their plateau the runs were: how much their last epoch lowered the error,
    and what that does to the comparisons (:func:`zfcore.error_rates.contrast`)."""
    gains = {k: last_epoch_gain(run) for k, run in runs.items()}
    g = np.array(list(gains.values()))
    if not np.isfinite(g).any():
        return ("Each model was trained for one epoch only: how far each is from its plateau is unknown, and no "
                "comparison of their errors can be tested.")
    top = max((k for k in gains if np.isfinite(gains[k])), key=gains.get)
    return (f"In their last epoch the validation top-1 error of the {len(g)} models fell by a median of "
            f"{np.nanmedian(g):.1f} points (from {np.nanmin(g):+.1f} to {np.nanmax(g):+.1f}, the most {top}'s; centre "
            "crop; each model's in the table's last column). One more epoch could move a comparison by as much, so a "
            "difference smaller than the last-epoch gain of the models it compares is counted as not testable.")
