"""The ImageNet comparison and the ablations (Section 5.1, Tables 2 and 3).

Section 5 and Tables 2 and 3 train variants of both networks: layers removed,
fc6/fc7 narrower or wider, conv3-5 wider. :data:`TABLE3_VARIANTS` lists them in
the paper's row order (:data:`FIG6_VARIANTS` the three models of Fig. 6, which
:mod:`zfcore.architecture` measures), :func:`budget_run` trains (or loads) one at
the chapters' reduced budget (:func:`budget_preset`), :func:`ablation_rows` and
:func:`table2_rows` put our numbers beside the paper's (:data:`PAPER_TABLE2`,
:data:`PAPER_TABLE3`), and :func:`findings` computes which of the paper's
conclusions hold on given numbers (:class:`zfcore.findings.Finding`).
:func:`ensemble_error` averages several runs' 10-crop softmax (Table 2's "N
convnets" rows), computed by :func:`zfcore.train.evaluate` and cached by the
content of each run's final checkpoint.

This module trains (:func:`budget_run`, through :func:`zfcore.train.train`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .architecture import error_se, run_numbers
from .artifacts import artifacts_dir, cached, config_key, file_digest
from .data.splits import data_tag, split_source
from .findings import DOES_NOT_HOLD, HOLDS, Finding
from .presets import Preset, get_preset
from .train import evaluate, train

__all__ = [
    "PAPER_TABLE2", "PAPER_TABLE3", "BUDGET_EPOCHS", "BUDGET_CLASSES", "Variant", "TABLE3_VARIANTS", "FIG6_VARIANTS",
    "variant", "budget_preset", "budget_run", "budget_runs", "paper_numbers", "table3_numbers",
    "last_epoch_gain", "run_rows", "RUN_HEADER", "variant_rows", "VARIANT_HEADER",
    "ablation_rows", "ABLATION_HEADER", "ablation_figure", "table2_rows", "TABLE2_HEADER",
    "findings", "ensemble_finding",
    "ten_crop_probs", "ensemble_probs", "ensemble_error", "ensemble_row",
    "intro_text", "noise_text", "table2_caption", "ensemble_text", "findings_text", "convergence_text",
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
BUDGET_EPOCHS: Dict[str, Optional[int]] = {"tiny": 2, "default": 15, "imagenet": None}

#: Source classes the budget's models learn, per scale (``None``: all of the preset's). At the
#: default scale, 20 of the 100 classes (2,000 training images) for 15 epochs: the same 30,000
#: training images seen as 3 epochs of all 100 classes, and the same time, but past the plateau
#: near chance on which every model still sat after 3 epochs of the 100 (measured: 94-98%
#: validation error; with 20 classes for 15 epochs, the ZF base model reaches about 28%).
BUDGET_CLASSES: Dict[str, Optional[int]] = {"tiny": None, "default": 20, "imagenet": None}

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
    and always all of the user's folders), with no intermediate checkpoints kept (only the
    final one). Read the budget's data with this preset (``load_split(budget, "val")``).
    """
    p = get_preset(scale)
    if epochs is None:
        epochs = BUDGET_EPOCHS.get(p.name) or p.epochs
    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    changes = dict(epochs=epochs, evolution_epochs=())
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



def last_epoch_gain(run) -> float:
    """How many points the (centre-crop) validation top-1 error fell in the run's last epoch:
    well above 0 means the model was still learning when its budget ran out. NaN for a
    run of one epoch."""
    m = run.metrics
    if len(m) < 2:
        return float("nan")
    return float(m[-2]["val_top1_err"] - m[-1]["val_top1_err"])


def paper_numbers() -> Dict[str, dict]:
    """Table 3's numbers as ``{key: {"train_top1", "val_top1", "val_top5"}}`` (the form
    :func:`findings` reads)."""
    return {k: {"train_top1": a, "val_top1": b, "val_top5": c} for k, _, a, b, c in PAPER_TABLE3}



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
              "val top-1 (10 crops)", "val top-5 (10 crops)")


def run_rows(runs: Mapping[str, object], scale, labels: Optional[Mapping[str, str]] = None) -> List[tuple]:
    """One row per run (``{key: Run}``) for :data:`RUN_HEADER`: what it builds at ``scale``,
    its epochs and training time (as logged when it was trained), and its errors (%)."""
    rows = []
    for key, run in runs.items():
        n = run_numbers(run)
        v = variant(key)
        rows.append(((labels or {}).get(key, key), v.describe(scale), n["epochs"],
                     f"{n['train_seconds']:.0f} s", f"{n['train_top1']:.1f}%", f"{n['val_top1']:.1f}%",
                     f"{n['val_top5']:.1f}%"))
    return rows


# Tables 2 and 3


#: Column names of :func:`ablation_rows`.
ABLATION_HEADER = ("family", "model (Table 3)", "this scale builds", "paper: train top-1",
                   "paper: val top-1", "paper: val top-5", "ours: train top-1", "ours: val top-1",
                   "ours: val top-5")


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def ablation_rows(numbers: Mapping[str, dict], scale="default") -> List[tuple]:
    """Table 3 with our numbers beside the paper's, in the paper's row order.

    Args:
        numbers: ``{key: run_numbers(run)}`` for the variants that were trained (keys of
            :data:`PAPER_TABLE3`, e.g. ``"zf:fc8192"``); rows without numbers show "-".
        scale: the scale the models were built at (for the "this scale builds" column).
    Returns:
        rows for :data:`ABLATION_HEADER`, error rates in %.
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
                     _fmt(ours.get("train_top1")), _fmt(ours.get("val_top1")), _fmt(ours.get("val_top5"))))
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
        rows.append((label, _fmt(v1), _fmt(v5), _fmt(t5), _fmt(ours.get("val_top1")),
                     _fmt(ours.get("val_top5"))))
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


def _depth_checks(numbers: Mapping[str, dict]) -> List[tuple]:
    """Table 3's conclusions on depth: ``(claim, criterion, holds, measured, evidence)``."""
    kb = "krizhevsky:base"
    _need(numbers, kb, "krizhevsky:rm3,4", "krizhevsky:rm6,7", "krizhevsky:rm3,4,6,7")
    c34, c67 = _cost(numbers, "krizhevsky:rm3,4", kb), _cost(numbers, "krizhevsky:rm6,7", kb)
    call = _cost(numbers, "krizhevsky:rm3,4,6,7", kb)
    little = max(0.0, call / 3)

    def lowers(c):
        return "; it lowers the error" if c < 0 else ""

    def costs_little(layers):
        return (f"the rise in val top-1 error when removing {layers} is at most a third of the rise when "
                "removing conv3, conv4, fc6 and fc7 together (or nothing)")

    return [
        ("removing fc6 and fc7 costs little", costs_little("fc6 and fc7"), c67 <= little,
         f"{c67:+.1f} points (removing 3,4,6,7: {call:+.1f})",
         f"{c67:+.1f} points of val top-1 (removing 3,4,6,7: {call:+.1f}; 'little' = at most a third of "
         f"that, or nothing{lowers(c67)})"),
        ("removing the middle conv layers (3, 4) costs little", costs_little("conv3 and conv4"), c34 <= little,
         f"{c34:+.1f} points (removing 3,4,6,7: {call:+.1f})",
         f"{c34:+.1f} points (removing 3,4,6,7: {call:+.1f}{lowers(c34)})"),
        ("removing both costs a lot (more than the two separately)",
         "removing conv3, conv4, fc6 and fc7 raises the val top-1 error, by more than the two separate "
         "rises added up", call > 0 and call > c34 + c67, f"{call:+.1f} vs {c34 + c67:+.1f} points",
         f"{call:+.1f} points vs {c34:+.1f} + {c67:+.1f} = {c34 + c67:+.1f}"),
    ]


def _width_checks(numbers: Mapping[str, dict]) -> List[tuple]:
    """Table 3's conclusions on width: ``(claim, criterion, holds, measured, evidence)``."""
    _need(numbers, "zf:base", "zf:conv345")
    b, w = numbers["zf:base"]["val_top1"], numbers["zf:conv345"]["val_top1"]
    out = [("wider conv3-5 (512, 1024, 512 maps) helps",
            "the ZF model's val top-1 error with conv3-5 of 512, 1024, 512 maps below the ZF model's as built",
            w < b, f"{w:.1f}% vs {b:.1f}%", f"ZF val top-1 {w:.1f}% with wide conv3-5 vs {b:.1f}%")]
    gaps, holds = [], True
    for fam in ("krizhevsky", "zf"):
        keys = [f"{fam}:fc2048", f"{fam}:base", f"{fam}:fc8192"]
        _need(numbers, *keys)
        g = [numbers[k]["val_top1"] - numbers[k]["train_top1"] for k in keys]
        grows = g[0] < g[1] < g[2]
        holds = holds and grows
        name = "Krizhevsky" if fam == "krizhevsky" else "ZF"
        gaps.append(f"{name} {g[0]:+.1f} / {g[1]:+.1f} / {g[2]:+.1f} ({'grows' if grows else 'does not grow'})")
    out.append(("wider fc layers overfit (the train-val gap grows with fc6/fc7 width)",
                "in each family, val top-1 minus train top-1 error grows with the width of fc6 and fc7 "
                "(2048 < as built < 8192 units)", holds, "; ".join(gaps),
                "val minus train top-1 at 2048 / as built / 8192 units: " + "; ".join(gaps)))
    return out


def findings(numbers: Mapping[str, dict]) -> List[Finding]:
    """The paper's conclusions from Table 3, computed on ``numbers`` (``{key: {"train_top1",
    "val_top1", "val_top5"}}``, ours from :func:`table3_numbers` or the paper's from
    :func:`paper_numbers`). Each finding's ``published`` is the same measure on the paper's
    numbers, which meet every criterion.

    "Cost" is the rise in validation top-1 error over the model's unmodified row. The
    criteria, which the paper's own numbers meet:

    * removing fc6 and fc7 costs little, and so does removing conv3 and conv4: each costs
      at most a third of what removing all four costs (or nothing);
    * removing both costs a lot: more than the two separate costs added up (depth
      matters beyond either part);
    * wider conv3-5 (512, 1024, 512) helps: the ZF model's validation error falls;
    * wider fc layers overfit: in each family, the train-validation gap (val top-1 minus
      train top-1) grows with the width of fc6 and fc7 (2048 < as built < 8192 units).
    """
    ours = _depth_checks(numbers) + _width_checks(numbers)
    paper = paper_numbers()
    published = _depth_checks(paper) + _width_checks(paper)
    return [Finding(claim=claim, source="Section 5.1, Table 3", published=pub[3], measured=measured,
                    criterion=criterion, verdict=HOLDS if holds else DOES_NOT_HOLD, evidence=evidence)
            for (claim, criterion, holds, measured, evidence), pub in zip(ours, published)]


def ensemble_finding(ensemble: dict, numbers: Mapping[str, dict], family: str = "zf") -> Finding:
    """Table 2's ensembles, computed: does ``ensemble`` (:func:`ensemble_error`) of ``family``'s
    models have a lower top-1 error than its best member (``numbers``: :func:`table3_numbers`)?"""
    members = [k for k in numbers if k.startswith(family + ":")]
    if not members:
        raise ValueError(f"no numbers of the {family!r} family to compare the ensemble with")
    best, err = min(numbers[k]["val_top1"] for k in members), ensemble["val_top1"]
    return Finding(
        claim="averaging the softmax of several models lowers the error below the best single model's",
        source="Section 5.1, Table 2",
        published="5 convnets as per Fig. 3: 36.7% val top-1, against 37.5% for the best single model",
        measured=f"{err:.1f}% vs {best:.1f}%", criterion="the ensemble's val top-1 error below that of its best member",
        verdict=HOLDS if err < best else DOES_NOT_HOLD,
        evidence=f"The ensemble's top-1 error, {err:.1f}%, is {'below' if err < best else 'not below'} "
                 f"that of its best member ({best:.1f}%).")


# --------------------------------------------------------------------------------------------
# ensembles (Table 2): the 10-crop softmax of zfcore.train.evaluate


class _StoredImages:
    """Stored (N, S, S, 3) uint8 images (an array, a tensor, or a folder split's lazy images,
    decoded a batch at a time) as the batch source :func:`zfcore.train.evaluate` reads: in
    order, with placeholder labels (only the probabilities are read)."""

    def __init__(self, images):
        if not torch.is_tensor(images) and not hasattr(images, "shape"):
            images = np.asarray(images)
        if len(images.shape) != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected stored images of shape (N, S, S, 3), got {tuple(images.shape)}")
        self.images = images

    def batches(self, batch_size: int, *, shuffle: bool = False, rank: int = 0, world: int = 1):
        if shuffle or world != 1:
            raise ValueError("stored images are read in order, by one process")
        for s in range(0, len(self.images), batch_size):
            part = self.images[s:s + batch_size]
            part = part if torch.is_tensor(part) else torch.from_numpy(np.ascontiguousarray(part))
            yield part.permute(0, 3, 1, 2), torch.zeros(len(part), dtype=torch.long)


def ten_crop_probs(model: nn.Module, images, mean: torch.Tensor, image_size: int,
                   batch_size: int = 16) -> torch.Tensor:
    """The softmax averaged over the paper's 10 crops (Section 3), per image, as
    :func:`zfcore.train.evaluate` computes it (``ten_crops=True``).

    Args:
        images: (N, S, S, 3) uint8 stored images (an array, a tensor, or a folder split's
            lazy images, decoded a batch at a time); mean: (3, S, S) the model's training mean.
        batch_size: images per forward pass (10 crops each).
    Returns:
        (N, C) float probabilities (rows sum to 1).
    """
    probs: list = []
    evaluate(model, _StoredImages(images), mean, image_size, ten_crops=True, batch_size=batch_size,
             probs_out=probs)
    return torch.cat(probs)


def ensemble_probs(models: Sequence[nn.Module], images, means: Sequence[torch.Tensor],
                   image_size: int, batch_size: int = 128) -> torch.Tensor:
    """Several models' softmax, each averaged over the 10 crops, then over the models
    (Table 2's "N convnets" rows). (N, C)."""
    if len(models) == 0:
        raise ValueError("an ensemble needs at least one model")
    if len(means) != len(models):
        raise ValueError(f"{len(models)} models but {len(means)} means: give one mean per model")
    probs = [ten_crop_probs(m, images, mu, image_size, batch_size) for m, mu in zip(models, means)]
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"the models disagree on the number of classes: {sorted(shapes)}")
    return torch.stack(probs).mean(0)


def _run_probs(run, source, p: Preset, split: str, batch_size: Optional[int]) -> torch.Tensor:
    """The 10-crop softmax of a run's final model on a split's source, cached under
    ``artifacts/<scale>/probs/`` by the run folder's name, the content of its final checkpoint
    and the split's data (so a retrained run, or other data, is computed anew)."""
    ck = run.checkpoint()
    key = config_key("10crop-probs", run.path.name, file_digest(ck), split, data_tag(p, split),
                     p.image_size, len(source))

    def compute():
        out: list = []
        evaluate(run.load(), source, run.mean(), p.image_size, ten_crops=True,
                 batch_size=batch_size or run.preset.batch_size, probs_out=out)
        return torch.cat(out)
    return cached(artifacts_dir(p) / "probs" / f"{key}.pt", compute)


def ensemble_error(runs: Sequence, scale, split: str = "val", batch_size: Optional[int] = None) -> dict:
    """Top-1 and top-5 error (%) of the averaged 10-crop softmax of several finished runs
    (Table 2's "N convnets" rows) on a split (:func:`zfcore.data.splits.split_source`: the
    scenes, or the user's folders at a folder scale): ``{"val_top1", "val_top5", "n",
    "models"}``. Each run's (N, C) probabilities come from :func:`zfcore.train.evaluate`
    (``batch_size`` images at a time; default the run's training batch, as its final
    evaluation) and are cached by content (:func:`zfcore.artifacts.cached`)."""
    runs = list(runs)
    if not runs:
        raise ValueError("an ensemble needs at least one run")
    p = get_preset(scale)
    source = split_source(p, split, progress=False)
    probs = [_run_probs(r, source, p, split, batch_size) for r in runs]
    if len({tuple(q.shape) for q in probs}) != 1:
        raise ValueError("the runs disagree on the number of classes")
    probs = torch.stack(probs).mean(0)
    y = torch.as_tensor(source.labels)
    top = probs.topk(min(5, probs.shape[1]), 1).indices
    top1 = float((top[:, 0] == y).double().mean())
    top5 = float((top == y[:, None]).any(1).double().mean())
    return {"val_top1": 100 * (1 - top1), "val_top5": 100 * (1 - top5), "n": len(y), "models": len(runs)}


def ensemble_row(runs: Mapping[str, object], scale, family: str = "zf") -> Tuple[str, dict]:
    """Table 2's row of our own: ``(label, ensemble_error(...))`` of the ``family`` models among
    ``runs`` (``{key: Run}``)."""
    members = [k for k in runs if k.startswith(family + ":")]
    e = ensemble_error([runs[k] for k in members], scale)
    name = "the Fig. 3 family" if family == "zf" else "Krizhevsky et al.'s family"
    return f"Ours: {e['models']} convnets of {name} of Table 3, softmax averaged", e


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
            "here, adds to that.")


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
    failed = [f.claim for f in found if f.verdict != HOLDS]
    return (f"**At the {preset.name} scale with {budget.epochs} epochs per model, {len(held)} of the paper's "
            f"{len(found)} conclusions hold.**"
            + (" Holding: " + "; ".join(held) + "." if held else "")
            + (" Not holding: " + "; ".join(failed) + "." if failed else ""))


def convergence_text(runs: Mapping[str, object]) -> str:
    """How far from converged the runs were: how much their last epoch lowered the error."""
    gains = np.array([last_epoch_gain(run) for run in runs.values()])
    if not np.isfinite(gains).any():
        return "Each model was trained for one epoch only."
    return (f"In their last epoch the validation top-1 error of the {len(gains)} models fell by a median of "
            f"{np.nanmedian(gains):.1f} points (from {np.nanmin(gains):+.1f} to {np.nanmax(gains):+.1f}; centre crop).")
