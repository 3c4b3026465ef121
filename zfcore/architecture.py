"""Architecture selection (Section 4.1, Fig. 6) and the ImageNet ablations (Tables 2 and 3).

Section 4.1 of the paper reads the first layers of Krizhevsky et al.'s network
by eye (Fig. 6): its 11x11, stride-4 layer-1 filters are "a mix of extremely
high and low frequency information, with little coverage of the mid
frequencies", many of them are dead, and its layer-2 features show "aliasing
artifacts caused by the large stride 4 used in the 1st layer convolutions".
The 7x7, stride-2 first layer of Fig. 3 fixes both. Fig. 6(a) shows what the
RMS renormalisation of Section 3 prevents: without it, "one feature
dominates". This module puts a number on each of these:

* :func:`dead_filters`: layer-1 filters with (almost) no weight energy, or
  (almost) no rectified response, relative to the layer's median filter;
* :func:`band_shares` and :func:`mid_frequency_share`: the share of each
  filter's spectral energy in the low, middle and high radial bands;
* :func:`grid_energy_share` on :func:`layer2_projections`: the spectral energy
  of the layer-2 deconv projections at the harmonics of the first layer's
  stride, against the energy around them (aliasing);
* :func:`dominance`: the RMS of the strongest layer-1 filter over the median.

Section 5 and Tables 2 and 3 train variants of both networks: layers removed,
fc6/fc7 narrower or wider, conv3-5 wider. :data:`TABLE3_VARIANTS` lists them in
the paper's row order, :func:`budget_run` trains (or loads) one at a chosen
budget, :func:`ablation_rows` and :func:`table2_rows` put our numbers beside
the paper's (:data:`PAPER_TABLE2`, :data:`PAPER_TABLE3`), and
:func:`ablation_findings` and :func:`fig6_findings` compute which of the
paper's conclusions hold on given numbers. :func:`ensemble_error` averages
several models' 10-crop softmax (Table 2's "N convnets" rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .presets import Preset, get_preset

__all__ = [
    "PAPER_TABLE2", "PAPER_TABLE3", "BUDGET_EPOCHS", "BUDGET_CLASSES", "Variant", "TABLE3_VARIANTS", "FIG6_VARIANTS",
    "variant", "budget_preset", "budget_run", "budget_runs", "run_numbers", "paper_numbers",
    "filter_rms", "dominance", "dead_filters", "conv1_responses", "band_shares",
    "mid_frequency_share", "power_spectrum", "grid_energy_share", "layer2_projections",
    "fig6_metrics", "fig6_table", "FIG6_HEADER", "fig6_findings", "fig6_figure", "spectra_figure",
    "ablation_rows", "ABLATION_HEADER", "table2_rows", "TABLE2_HEADER", "ablation_findings",
    "ten_crop_probs", "ensemble_probs", "ensemble_error", "error_se", "filters_at_radius",
    "run_rows", "RUN_HEADER", "projection_tile", "last_epoch_gain",
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
    Returns a :class:`zfcore.train.Run`.
    """
    from .train import train
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


def run_numbers(run) -> dict:
    """Table 3's numbers of a finished run: ``train_top1`` (the running top-1 error over the
    last epoch's training batches: random crops, dropout on), ``val_top1`` and ``val_top5``
    (10-crop validation error, Section 3), ``n_val`` and ``epochs``, ``train_seconds``."""
    s = run.summary
    if not s.get("complete") or "final" not in s:
        raise ValueError(f"run {run.path} has not finished: train it first (budget_run)")
    last = s["epochs"][-1]
    p = s.get("preset", {})
    # the count training recorded (a folder split has as many images as its files); runs
    # trained before it was recorded: the scenes' count per class
    n_val = s["final"].get("val_10crop_n") or p.get("val_per_class", 0) * len(s.get("classes", []))
    return {"train_top1": float(last["train_top1_err"]),
            "val_top1": float(s["final"]["val_10crop_top1_err"]),
            "val_top5": float(s["final"]["val_10crop_top5_err"]),
            "n_val": int(n_val), "epochs": len(s["epochs"]),
            "train_seconds": float(s.get("train_seconds", 0.0))}


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
    :func:`ablation_findings` reads)."""
    return {k: {"train_top1": a, "val_top1": b, "val_top5": c} for k, _, a, b, c in PAPER_TABLE3}


def error_se(err_percent: float, n: int) -> float:
    """The binomial standard error (in points) of an error rate measured on ``n`` images:
    the sampling noise of the validation set alone (not the seed-to-seed noise)."""
    if n <= 0:
        return float("nan")
    p = min(max(err_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n)


def filters_at_radius(model: nn.Module, radius: float = 0.1, tol: float = 1e-3) -> Dict[str, int]:
    """How many filters of each conv layer sit at the RMS radius of Section 3 (RMS >=
    ``radius * (1 - tol)``): the filters the renormalisation has been holding back. With
    none anywhere, training with and without it has been the same so far."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            rms = m.weight.detach().pow(2).mean(dim=(1, 2, 3)).sqrt()
            out[name] = int((rms >= radius * (1 - tol)).sum())
    return out


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


# --------------------------------------------------------------------------------------------
# layer-1 filters (Fig. 6 a-c)


def _weights(weight) -> np.ndarray:
    w = weight.detach().cpu().double().numpy() if torch.is_tensor(weight) else np.asarray(weight, np.float64)
    if w.ndim != 4 or w.shape[0] < 1 or w.shape[2] < 1 or w.shape[3] < 1:
        raise ValueError(f"expected conv filters of shape (O, C, k, k), got shape {tuple(w.shape)}")
    return w


def filter_rms(weight) -> np.ndarray:
    """Each filter's RMS value ``sqrt(mean(w^2))`` (the quantity Section 3 caps at 0.1).

    Args:
        weight: (O, C, k, k) conv weights (tensor or array).
    Returns:
        (O,) float64.
    """
    w = _weights(weight)
    return np.sqrt((w ** 2).mean(axis=(1, 2, 3)))


def dominance(weight) -> float:
    """Fig. 6(a), "one feature dominates": the RMS of the strongest filter over the median
    RMS of the layer's filters (1 when all are alike; with the renormalisation of Section 3
    trained filters crowd at the 0.1 radius)."""
    r = filter_rms(weight)
    med = float(np.median(r))
    return float(r.max() / med) if med > 0 else float("inf")


def dead_filters(weight, responses=None, rel: float = 0.1) -> np.ndarray:
    """Which layer-1 filters are dead (Fig. 6(b): the Krizhevsky layer 1 has "dead" features).

    A filter is dead if it has almost no energy, judged two ways against the layer's
    median filter (the layer's typical filter, so the measure does not depend on the
    absolute scale of the weights or of the input):

    * its weights: RMS below ``rel`` times the median RMS of the layer's filters;
    * its responses (when ``responses`` is given): its mean rectified response on the
      validation images (see :func:`conv1_responses`) below ``rel`` times the median
      of the filters' mean responses. This also catches a filter with normal weights
      whose bias keeps it below zero: it never fires.

    Args:
        weight: (O, C, k, k) weights.
        responses: optional (O,) mean rectified responses, one per filter.
        rel: the fraction of the median below which a filter counts as dead (0.1).
    Returns:
        (O,) bool, True for a dead filter (either criterion).
    """
    dead = _dead_by_weights(weight, rel)
    if responses is not None:
        dead = dead | _dead_by_responses(responses, rel, len(dead))
    return dead


def _check_rel(rel: float) -> None:
    if not 0 < rel < 1:
        raise ValueError(f"rel must lie in (0, 1), got {rel}")


def _dead_by_weights(weight, rel: float) -> np.ndarray:
    _check_rel(rel)
    r = filter_rms(weight)
    return r < rel * np.median(r)


def _dead_by_responses(responses, rel: float, n: int) -> np.ndarray:
    _check_rel(rel)
    a = responses.detach().cpu().double().numpy() if torch.is_tensor(responses) else np.asarray(
        responses, np.float64)
    if a.shape != (n,):
        raise ValueError(f"responses must have one value per filter, shape ({n},), got {a.shape}")
    return (a < rel * np.median(a)) | (a <= 0)


def _model_input(images, mean: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, S, S, 3) uint8 stored images -> centre crops minus the mean, (N, 3, s, s) float."""
    from .data.transforms import center_crop
    from .data.transforms import preprocess
    imgs = images if torch.is_tensor(images) else torch.from_numpy(np.asarray(images))
    if imgs.dim() != 4 or imgs.shape[-1] != 3:
        raise ValueError(f"expected stored images of shape (N, S, S, 3), got {tuple(imgs.shape)}")
    if imgs.shape[1] < image_size:
        raise ValueError(f"images of {imgs.shape[1]} px are smaller than the crop of {image_size} px")
    return center_crop(preprocess(imgs.permute(0, 3, 1, 2), mean), image_size)


@torch.no_grad()
def conv1_responses(model: nn.Module, images, mean: torch.Tensor, image_size: int,
                    layer: str = "conv1", batch_size: int = 256) -> torch.Tensor:
    """Each first-layer filter's mean rectified response over images.

    Args:
        model: the network; images: (N, S, S, 3) uint8 stored images (their centre
            ``image_size`` crop, minus ``mean``, (3, S, S), is what the model sees): an
            array, a tensor or a folder split's lazy images, read a batch at a time.
    Returns:
        (O,) float: the mean over images and positions of ReLU(conv1 output).
    """
    from .deconv import layer_activations
    total = None
    n = len(images)
    for s in range(0, n, batch_size):
        # a batch at a time: a folder split's lazy images are decoded as they are used
        x = _model_input(images[s:s + batch_size], mean, image_size)
        a = layer_activations(model, x, layer)[layer].clamp_min(0)
        part = a.sum(dim=(0, 2, 3)) / (a.shape[2] * a.shape[3])
        total = part if total is None else total + part
    if total is None:
        raise ValueError("no images to measure the conv1 responses on")
    return total / n


def _radius(size: int) -> np.ndarray:
    """Radial frequency of each bin of a (size, size) FFT, in units of the Nyquist frequency."""
    f = np.fft.fftfreq(size)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / 0.5


def band_shares(weight, size: int = 32, bands: Tuple[float, float] = (0.25, 0.75)) -> np.ndarray:
    """Share of each filter's spectral energy in the low, middle and high radial bands.

    Section 4.1 / Fig. 6(b): the Krizhevsky layer-1 filters are "a mix of extremely high
    and low frequency information, with little coverage of the mid frequencies". Each
    filter (all its colour channels) is zero-padded to ``size`` x ``size`` pixels (the
    same for every kernel size, so 7x7 and 11x11 filters are measured in the same
    cycles per pixel) and its power spectrum is summed over the channels; the DC bin is
    left out. Radial frequency r is in units of the Nyquist frequency (0.5 cycles/pixel):
    low is r < ``bands[0]``, middle ``bands[0]`` <= r < ``bands[1]``, high r >= ``bands[1]``
    (up to sqrt(2) in the corners).

    Args:
        weight: (O, C, k, k), k <= size.
    Returns:
        (O, 3) shares (each row sums to 1); NaN for a filter with no energy outside DC.
    """
    w = _weights(weight)
    if w.shape[-1] > size or w.shape[-2] > size:
        raise ValueError(f"filters of {w.shape[-2]}x{w.shape[-1]} do not fit a {size}-point FFT")
    lo, hi = bands
    if not 0 < lo < hi:
        raise ValueError(f"bands must be 0 < low < high, got {bands}")
    p = (np.abs(np.fft.fft2(w, s=(size, size))) ** 2).sum(axis=1)     # (O, size, size)
    p[:, 0, 0] = 0.0
    r = _radius(size)
    parts = np.stack([p[:, r < lo].sum(1), p[:, (r >= lo) & (r < hi)].sum(1), p[:, r >= hi].sum(1)], 1)
    total = parts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, parts / np.where(total > 0, total, 1), np.nan)


def mid_frequency_share(weight, size: int = 32, bands: Tuple[float, float] = (0.25, 0.75),
                        mask=None) -> float:
    """The mean over filters of the middle band's share of :func:`band_shares`
    (filters with no energy, or those where ``mask`` (O,) is False, left out)."""
    s = band_shares(weight, size, bands)[:, 1]
    if mask is not None:
        s = s[np.asarray(mask, bool)]
    s = s[~np.isnan(s)]
    return float(s.mean()) if s.size else float("nan")


# --------------------------------------------------------------------------------------------
# aliasing in layer-2 projections (Fig. 6 d, e)


def _images(images) -> np.ndarray:
    x = images.detach().cpu().double().numpy() if torch.is_tensor(images) else np.asarray(images, np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"expected images of shape (N, C, H, W) or (N, H, W), N >= 1, got {x.shape}")
    return x


def power_spectrum(images, size: int) -> np.ndarray:
    """The mean power spectrum of images, each zero-padded to ``size`` x ``size``, summed
    over channels and normalised to total 1 (DC excluded) before averaging, so that every
    image counts alike. (size, size), unshifted (``np.fft.fftfreq`` order); images with no
    energy are skipped."""
    x = _images(images)
    if size < max(x.shape[-2:]):
        raise ValueError(f"size {size} is smaller than the images ({x.shape[-2]}x{x.shape[-1]})")
    p = (np.abs(np.fft.fft2(x, s=(size, size))) ** 2).sum(axis=1)
    p[:, 0, 0] = 0.0
    tot = p.sum(axis=(1, 2))
    keep = tot > 0
    if not keep.any():
        raise ValueError("the images have no energy outside DC: there is no spectrum to measure")
    return (p[keep] / tot[keep, None, None]).mean(0)


def _torus_dist(f: np.ndarray, c: float) -> np.ndarray:
    d = np.abs(f - c) % 1.0
    return np.minimum(d, 1.0 - d)


def grid_energy_share(images, period: int, *, size: Optional[int] = None, peak: float = 1.5,
                      ring: Tuple[float, float] = (3.0, 5.0)) -> float:
    """Aliasing at the first layer's stride (Section 4.1, Fig. 6(d)): the share of the
    images' spectral energy that stands out at the harmonics of the period ``period``,
    above the band just around each harmonic.

    A stride-s first layer puts its filters down on an s-pixel grid. The deconvnet's last
    step, a stride-s transposed convolution of the unpooled layer-1 signal u with the
    filters k, gives an image whose spectrum is U(s f) K(f): U(s f) repeats with period
    1/s, so the strong low frequencies of u reappear around the grid's harmonics
    c = (m/s, n/s) cycles/pixel (m, n integers, not both 0), as strongly as the filters
    pass those frequencies: a grid pattern of period s over the image. Those replicas are
    the aliasing; filters that pass little at the harmonics (smooth, mid-frequency ones)
    keep them faint.

    With ``P`` the mean power spectrum of the images, each normalised to total 1 with the
    DC bin left out (:func:`power_spectrum`; zero-padded to ``size``, by default the
    smallest multiple of ``period`` at least twice the image side H, so the harmonics fall
    on bins), and for each harmonic c the disk D_c of the bins within ``peak`` / H of c and
    the ring R_c of those between ``ring[0]`` / H and ``ring[1]`` / H (distances on the
    frequency torus, where +1/2 and -1/2 are one; radii in units of the spectrum's
    resolution 1/H, so that a pattern periodic over the whole image makes a peak about as
    wide as the disk)::

        share = sum over c of  |D_c| * (mean of P over D_c - mean of P over R_c)

    the energy in the peaks above their surroundings, as a fraction of the total. About 0
    (it can be slightly negative) when the spectrum is smooth across the harmonics; a
    pattern of period s carrying a fraction e of the energy adds about e.

    Args:
        images: (N, C, H, W) or (N, H, W), e.g. deconv projections.
        period: the grid's period in pixels (the first layer's stride), from 2 to about
            H / 10 (the rings of neighbouring harmonics must not meet).
        peak, ring: radii in units of 1/H.
    Returns:
        the share (float, a fraction of 1).
    """
    period = int(period)
    if period < 2:
        raise ValueError(f"period must be at least 2 pixels, got {period}")
    if not 0 < peak < ring[0] < ring[1]:
        raise ValueError(f"need 0 < peak < ring[0] < ring[1], got peak={peak}, ring={ring}")
    x = _images(images)
    side = max(x.shape[-2:])
    if ring[1] / side >= 0.5 / period:
        raise ValueError(f"period {period} is too long for {side}-pixel images: the rings around its "
                         f"harmonics (radius {ring[1]}/{side}) would meet; use a period below "
                         f"{side / (2 * ring[1]):.1f} or larger images")
    if size is None:
        size = period * math.ceil(2 * side / period)
    p = power_spectrum(x, size)
    f = np.fft.fftfreq(size)
    fy, fx = f[:, None], f[None, :]
    share = 0.0
    for m in range(period):
        for n in range(period):
            if m == 0 and n == 0:
                continue
            dist = np.sqrt(_torus_dist(fy, m / period) ** 2 + _torus_dist(fx, n / period) ** 2)
            disk = dist <= peak / side
            band = (dist > ring[0] / side) & (dist <= ring[1] / side)
            if not disk.any() or not band.any():
                raise ValueError(f"a {size}-point spectrum is too coarse; give a larger size")
            share += disk.sum() * (p[disk].mean() - p[band].mean())
    return float(share)


@torch.no_grad()
def layer2_projections(model: nn.Module, images, mean: torch.Tensor, image_size: int,
                       layer: str = "conv2", batch_size: int = 64) -> Tuple[torch.Tensor, torch.Tensor]:
    """For each image, the deconv projection (Section 2.1) of its strongest ``layer``
    activation, over all maps and positions (Fig. 6(d), (e) show layer-2 features).

    Args:
        images: (N, S, S, 3) uint8 stored images (centre ``image_size`` crop minus ``mean``).
    Returns:
        ``(projections, boxes)``: (N, 3, s, s) float projections
        (:func:`zfcore.deconv.project`), and (N, 4) int64 ``(y0, y1, x0, x1)``, the
        receptive field of each projected activation (:func:`zfcore.fields.receptive_fields`).
    """
    from .deconv import layer_activations, project
    from .fields import receptive_fields
    x = _model_input(images, mean, image_size)
    projs, poss = [], []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        a = layer_activations(model, xb, layer)[layer]                 # (n, C, H, W)
        n, c, h, w = a.shape
        flat = a.reshape(n, -1).argmax(1)
        feat = flat // (h * w)
        pos = torch.stack([(flat % (h * w)) // w, flat % w], 1)
        projs.append(project(model, xb, layer, feat, pos).cpu())
        poss.append(pos.cpu())
    pos = torch.cat(poss)
    return torch.cat(projs), receptive_fields(model, layer, pos, image_size)


# --------------------------------------------------------------------------------------------
# Fig. 6 numbers, table, findings and figures


def _conv1(model: nn.Module) -> nn.Conv2d:
    m = getattr(model, "conv1", None)
    if not isinstance(m, nn.Conv2d):
        raise ValueError("the model has no Conv2d named conv1 (Fig. 6 reads our zfnet/krizhevsky models)")
    return m


def fig6_metrics(run_or_model, images, mean: Optional[torch.Tensor] = None,
                 image_size: Optional[int] = None, *, rel: float = 0.1, n_projections: int = 64,
                 fft_size: int = 32) -> dict:
    """Fig. 6's numbers for one model.

    Args:
        run_or_model: a finished :class:`zfcore.train.Run` (model, mean and validation
            error read from it) or a model (then ``mean`` is required).
        images: (N, S, S, 3) uint8 validation images (an array, or a folder split's lazy
            images, read a batch at a time).
        image_size: the crop the model sees (default: the model's input size).
        rel: the dead-filter threshold (:func:`dead_filters`).
        n_projections: how many of ``images`` give a layer-2 projection.
    Returns:
        a dict: ``conv1`` ("7x7/2"), ``stride``, ``filters`` (O), ``dead_weights``,
        ``dead_responses``, ``dead`` (counts), ``dominance``, ``low``, ``mid``, ``high``
        (mean band shares over the filters), ``alias_own`` (:func:`grid_energy_share` of the
        layer-2 projections at the model's conv1 stride), ``alias_2``, ``alias_4`` (at periods
        2 and 4), and, for a run, the keys of :func:`run_numbers`; plus the arrays
        ``weight`` (O, 3, k, k), ``projections`` (n, 3, s, s) and ``boxes`` (n, 4) for the figure.
    """
    from .runs import Run
    out: dict = {}
    if isinstance(run_or_model, Run):
        run = run_or_model
        model = run.load()
        mean = run.mean() if mean is None else mean
        out.update(run_numbers(run))
    else:
        model = run_or_model
        if mean is None:
            raise ValueError("give the model's training mean (3, S, S) with a bare model")
    image_size = int(image_size or getattr(model, "input_size"))
    model.eval()
    conv1 = _conv1(model)
    k, s = conv1.kernel_size[0], conv1.stride[0]
    w = conv1.weight.detach()
    resp = conv1_responses(model, images, mean, image_size)
    dw = _dead_by_weights(w, rel)
    dr = _dead_by_responses(resp, rel, len(dw))
    shares = band_shares(w, fft_size)
    n = min(int(n_projections), len(images))
    if n < 1:
        raise ValueError("need at least one image for the layer-2 projections")
    proj, boxes = layer2_projections(model, images[:n], mean, image_size)
    out.update({
        "conv1": f"{k}x{k}/{s}", "stride": s, "filters": int(w.shape[0]),
        "dead_weights": int(dw.sum()), "dead_responses": int(dr.sum()),
        "dead": int((dw | dr).sum()), "dominance": dominance(w),
        "low": float(np.nanmean(shares[:, 0])), "mid": float(np.nanmean(shares[:, 1])),
        "high": float(np.nanmean(shares[:, 2])),
        "alias_own": grid_energy_share(proj, s) if s >= 2 else float("nan"),
        "alias_2": grid_energy_share(proj, 2), "alias_4": grid_energy_share(proj, 4),
        "weight": w.cpu(), "projections": proj, "boxes": boxes,
    })
    return out


#: Column names of :func:`fig6_table`.
FIG6_HEADER = ("model", "conv1", "dead layer-1 filters (weights / responses)",
               "strongest / median filter RMS", "layer-1 spectrum: low / mid / high",
               "layer-2 grid energy at its stride (at 2 / at 4)", "val top-1 (10 crops)",
               "val top-5 (10 crops)")


def fig6_table(metrics: Mapping[str, dict]) -> List[tuple]:
    """Rows of Fig. 6's numbers, one per model (``{label: fig6_metrics(...)}``), for
    :func:`zfcore.plots.html_table` with :data:`FIG6_HEADER`."""
    rows = []
    for label, m in metrics.items():
        dead = f"{m['dead']} of {m['filters']} ({m['dead_weights']} / {m['dead_responses']})"
        val1 = f"{m['val_top1']:.1f}%" if "val_top1" in m else "-"
        val5 = f"{m['val_top5']:.1f}%" if "val_top5" in m else "-"
        rows.append((label, m["conv1"], dead, f"{m['dominance']:.1f}",
                     f"{m['low']:.2f} / {m['mid']:.2f} / {m['high']:.2f}",
                     f"{100 * m['alias_own']:.2f}% ({100 * m['alias_2']:.2f}% / {100 * m['alias_4']:.2f}%)",
                     val1, val5))
    return rows


def fig6_findings(krizhevsky: dict, zf: dict, no_renorm: Optional[dict] = None) -> List[tuple]:
    """Section 4.1's readings of Fig. 6, computed: ``[(claim, holds, evidence), ...]`` from
    :func:`fig6_metrics` of the Krizhevsky model, the ZF model, and (optional) the ZF model
    trained without renormalisation. Each claim compares the two numbers named in its evidence."""
    out = []
    kd, zd = krizhevsky["dead"], zf["dead"]
    out.append(("the 7x7/2 first layer has fewer dead filters than the 11x11/4 one", zd < kd,
                f"dead: {zd} of {zf['filters']} (7x7/2) vs {kd} of {krizhevsky['filters']} (11x11/4)"))
    km, zm = krizhevsky["mid"], zf["mid"]
    out.append(("the 7x7/2 filters cover the mid frequencies more", zm > km,
                f"mean mid-band share {zm:.3f} (7x7/2) vs {km:.3f} (11x11/4)"))
    ka, za = krizhevsky["alias_own"], zf["alias_own"]
    out.append(("the layer-2 projections of the 11x11/4 model show more energy at their "
                "first layer's grid (aliasing) than those of the 7x7/2 model", ka > za,
                f"share of the energy at the grid's harmonics: {100 * ka:.2f}% (period "
                f"{krizhevsky['stride']}) vs {100 * za:.2f}% (period {zf['stride']})"))
    if "val_top1" in krizhevsky and "val_top1" in zf:
        kv, zv = krizhevsky["val_top1"], zf["val_top1"]
        se = math.hypot(error_se(kv, krizhevsky.get("n_val", 0)), error_se(zv, zf.get("n_val", 0)))
        out.append(("the 7x7/2 model has the lower validation error", zv < kv,
                    f"val top-1 (10 crops) {zv:.1f}% vs {kv:.1f}% (difference {kv - zv:+.1f} points; "
                    f"s.e. of the difference from the validation set's size {se:.1f})"))
    if no_renorm is not None:
        a, b = no_renorm["dominance"], zf["dominance"]
        out.append(("without renormalisation one layer-1 filter dominates", a > b,
                    f"strongest / median filter RMS {a:.1f} without vs {b:.1f} with renormalisation"))
    return out


def _fit(img: np.ndarray, side: int) -> np.ndarray:
    """Resize an (h, w, 3) float image to side x side (nearest neighbour, aspect kept, grey pad)."""
    from PIL import Image
    h, w = img.shape[:2]
    scale = side / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    chans = [np.asarray(Image.fromarray(img[..., c].astype(np.float32)).resize((nw, nh), Image.NEAREST))
             for c in range(3)]
    small = np.stack(chans, -1)
    out = np.full((side, side, 3), 0.5, np.float32)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def projection_tile(projections, boxes, cols: int = 4, side: int = 48, count: int = 16) -> np.ndarray:
    """Tile the first ``count`` projections, each cut to its receptive field box and scaled
    to ``side`` pixels (grey is zero, as :func:`zfcore.plots.normalize_projection`)."""
    from .plots import normalize_projection, tile
    ims = []
    for p, (y0, y1, x0, x1) in list(zip(projections, boxes.tolist()))[:count]:
        ims.append(_fit(normalize_projection(p[:, y0:y1, x0:x1]), side))
    return tile(ims, cols=cols)


def fig6_figure(no_renorm: dict, krizhevsky: dict, zf: dict, *, count: int = 16, title: str = ""):
    """Fig. 6's layout from three :func:`fig6_metrics` dicts: (a) layer-1 filters without
    renormalisation, (b) Krizhevsky layer 1, (c) ZF layer 1 (:func:`zfcore.plots.filters_to_image`,
    each filter contrast-stretched on its own), (d) Krizhevsky and (e) ZF layer-2 projections
    (the strongest layer-2 activation of each of ``count`` validation images, cut to its field)."""
    import matplotlib.pyplot as plt
    from .plots import filters_to_image
    fig = plt.figure(figsize=(12, 7.4))
    gs = fig.add_gridspec(2, 6, height_ratios=[1, 1.15])
    top = [(no_renorm, "(a) no renormalisation"), (krizhevsky, "(b) Krizhevsky layer 1"),
           (zf, "(c) ZF layer 1")]
    for i, (m, name) in enumerate(top):
        ax = fig.add_subplot(gs[0, 2 * i:2 * i + 2])
        ax.imshow(filters_to_image(m["weight"]), interpolation="nearest")
        ax.set_title(f"{name}: {m['conv1']}", fontsize=10)
        ax.axis("off")
    for i, (m, name) in enumerate([(krizhevsky, "(d) Krizhevsky layer 2"), (zf, "(e) ZF layer 2")]):
        ax = fig.add_subplot(gs[1, 3 * i:3 * i + 3])
        ax.imshow(projection_tile(m["projections"], m["boxes"], count=count), interpolation="nearest")
        ax.set_title(f"{name}: strongest activation of {min(count, len(m['projections']))} images", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def spectra_figure(metrics: Mapping[str, dict], title: str = ""):
    """The mean power spectrum (log scale, DC at the centre) of each model's layer-2
    projections, its first layer's grid harmonics marked: where aliasing shows."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2), squeeze=False)
    for ax, (label, m) in zip(axes[0], metrics.items()):
        proj = m["projections"]
        s = m["stride"]
        size = s * math.ceil(2 * max(proj.shape[-2:]) / s)
        p = np.fft.fftshift(power_spectrum(proj, size))
        ext = (-0.5, 0.5 - 1 / size, 0.5 - 1 / size, -0.5)
        ax.imshow(np.log10(p + p[p > 0].min()), cmap="magma", extent=ext)
        h = [k / s for k in range(-(s // 2), s // 2 + 1)]
        for a in h:
            for b in h:
                if a or b:
                    ax.add_patch(plt.Circle((b, a), 3.0 / max(proj.shape[-2:]), fill=False, color="cyan", lw=0.6))
        ax.set_title(f"{label}\nharmonics of period {s}: {100 * m['alias_own']:.2f}% of the energy", fontsize=9)
        ax.set_xlabel("cycles / pixel")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
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
        raise ValueError(f"ablation_findings needs the numbers of {missing}")


def _cost(numbers, key, base) -> float:
    return numbers[key]["val_top1"] - numbers[base]["val_top1"]


def ablation_findings(numbers: Mapping[str, dict]) -> List[tuple]:
    """The paper's conclusions from Table 3, computed on ``numbers`` (``{key: {"train_top1",
    "val_top1", "val_top5"}}``, ours from :func:`run_numbers` or the paper's from
    :func:`paper_numbers`). Returns ``[(claim, holds, evidence), ...]``.

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
    kb = "krizhevsky:base"
    _need(numbers, kb, "krizhevsky:rm3,4", "krizhevsky:rm6,7", "krizhevsky:rm3,4,6,7")
    c34, c67 = _cost(numbers, "krizhevsky:rm3,4", kb), _cost(numbers, "krizhevsky:rm6,7", kb)
    call = _cost(numbers, "krizhevsky:rm3,4,6,7", kb)
    little = max(0.0, call / 3)

    def lowers(c):
        return "; it lowers the error" if c < 0 else ""

    out = [
        ("removing fc6 and fc7 costs little", c67 <= little,
         f"{c67:+.1f} points of val top-1 (removing 3,4,6,7: {call:+.1f}; 'little' = at most a third of "
         f"that, or nothing{lowers(c67)})"),
        ("removing the middle conv layers (3, 4) costs little", c34 <= little,
         f"{c34:+.1f} points (removing 3,4,6,7: {call:+.1f}{lowers(c34)})"),
        ("removing both costs a lot (more than the two separately)", call > 0 and call > c34 + c67,
         f"{call:+.1f} points vs {c34:+.1f} + {c67:+.1f} = {c34 + c67:+.1f}"),
    ]
    _need(numbers, "zf:base", "zf:conv345")
    b, w = numbers["zf:base"]["val_top1"], numbers["zf:conv345"]["val_top1"]
    out.append(("wider conv3-5 (512, 1024, 512 maps) helps", w < b,
                f"ZF val top-1 {w:.1f}% with wide conv3-5 vs {b:.1f}%"))
    gaps, holds = [], True
    for fam in ("krizhevsky", "zf"):
        keys = [f"{fam}:fc2048", f"{fam}:base", f"{fam}:fc8192"]
        _need(numbers, *keys)
        g = [numbers[k]["val_top1"] - numbers[k]["train_top1"] for k in keys]
        grows = g[0] < g[1] < g[2]
        holds = holds and grows
        name = "Krizhevsky" if fam == "krizhevsky" else "ZF"
        gaps.append(f"{name} {g[0]:+.1f} / {g[1]:+.1f} / {g[2]:+.1f} ({'grows' if grows else 'does not grow'})")
    out.append(("wider fc layers overfit (the train-val gap grows with fc6/fc7 width)", holds,
                "val minus train top-1 at 2048 / as built / 8192 units: " + "; ".join(gaps)))
    return out


# --------------------------------------------------------------------------------------------
# ensembles (Table 2)


@torch.no_grad()
def ten_crop_probs(model: nn.Module, images, mean: torch.Tensor, image_size: int,
                   batch_size: int = 16) -> torch.Tensor:
    """The softmax averaged over the paper's 10 crops (Section 3), per image.

    Args:
        images: (N, S, S, 3) uint8 stored images (an array, a tensor, or a folder split's
            lazy images, decoded a batch at a time); mean: (3, S, S) the model's training mean.
        batch_size: images per forward pass (10 crops each). The model is put in the
            channels-last memory layout, as training does (faster convolutions on the CPU).
    Returns:
        (N, C) float probabilities (rows sum to 1).
    """
    from .data.transforms import ten_crop
    from .data.transforms import preprocess
    lazy = not (torch.is_tensor(images) or isinstance(images, np.ndarray)) and hasattr(images, "shape")
    imgs = images if torch.is_tensor(images) or lazy else torch.from_numpy(np.asarray(images))
    if len(imgs.shape) != 4 or imgs.shape[-1] != 3:
        raise ValueError(f"expected stored images of shape (N, S, S, 3), got {tuple(imgs.shape)}")
    was = model.training
    model.eval()
    model.to(memory_format=torch.channels_last)
    dev = next(model.parameters()).device
    out = []
    try:
        for s in range(0, len(imgs), batch_size):
            part = imgs[s:s + batch_size]
            part = torch.from_numpy(part) if lazy else part      # a folder split: decoded per batch
            x = preprocess(part.permute(0, 3, 1, 2).to(dev), mean.to(dev))
            crops = ten_crop(x, image_size)                             # (n, 10, 3, s, s)
            n = crops.shape[0]
            batch = crops.flatten(0, 1).contiguous(memory_format=torch.channels_last)
            out.append(F.softmax(model(batch), 1).view(n, 10, -1).mean(1).cpu())
    finally:
        model.train(was)
    return torch.cat(out)


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


def _cached_probs(run, images, image_size: int, split: str, batch_size: int) -> torch.Tensor:
    """:func:`ten_crop_probs` of a run's final model on a split, read from the run's folder
    when there (:func:`zfcore.train.train` leaves the validation split's there, as
    ``probs-val-10crop.pt``), else computed and left there. A file older than the final
    checkpoint, or for another number of images, is computed again."""
    ck = run.checkpoint()
    path = run.path / f"probs-{split}-10crop.pt"
    if path.exists() and path.stat().st_mtime_ns >= ck.stat().st_mtime_ns:
        try:
            saved = torch.load(path, weights_only=True)
            if int(saved["n"]) == len(images) and saved["probs"].shape[0] == len(images):
                return saved["probs"]
        except Exception:               # a damaged cache: compute again
            pass
    probs = ten_crop_probs(run.load(), images, run.mean(), image_size, batch_size)
    from .runs import save_checkpoint
    save_checkpoint(path, {"probs": probs, "n": len(images)})
    return probs


def ensemble_error(runs: Sequence, scale, split: str = "val", batch_size: int = 16) -> dict:
    """Top-1 and top-5 error (%) of the averaged 10-crop softmax of several finished runs
    (Table 2's "N convnets" rows) on a split (:func:`zfcore.data.splits.load_split`: the
    scenes, or the user's folders at a folder scale): ``{"val_top1", "val_top5", "n",
    "models"}``. Each run's (N, C) probabilities are cached in its folder."""
    from .data.splits import load_split
    runs = list(runs)
    if not runs:
        raise ValueError("an ensemble needs at least one run")
    p = get_preset(scale)
    ds = load_split(p, split, progress=False)
    probs = [_cached_probs(r, ds.images, p.image_size, split, batch_size) for r in runs]
    if len({tuple(q.shape) for q in probs}) != 1:
        raise ValueError("the runs disagree on the number of classes")
    probs = torch.stack(probs).mean(0)
    y = torch.as_tensor(ds.labels)
    top = probs.topk(min(5, probs.shape[1]), 1).indices
    top1 = float((top[:, 0] == y).double().mean())
    top5 = float((top == y[:, None]).any(1).double().mean())
    return {"val_top1": 100 * (1 - top1), "val_top5": 100 * (1 - top5), "n": len(y), "models": len(runs)}
