"""Architecture selection (Section 4.1, Fig. 6): the first two layers, measured.

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

:func:`fig6_metrics` computes them all for one trained model (a finished run, or
a bare model with its mean), :func:`fig6_table` and :func:`zfcore.plots.fig6_figure` show them,
and :func:`findings` states which of the section's readings hold on them
(:class:`zfcore.findings.Finding`). Nothing here trains: the models of Fig. 6 are
variants of :mod:`zfcore.ablations`, trained there at the chapters' budget
(``ablations.budget_runs(scale, ablations.FIG6_VARIANTS)``).
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .activations import layer_activations
from .deconv import project
from .fields import receptive_fields
from .error_rates import contrast, error_cell, error_se, not_trained, run_numbers, untrained_note
from .findings import DOES_NOT_HOLD, Finding, HOLDS, NOT_TESTABLE, SE_MARGIN, decide, mean_se
from .presets import Preset
from .runs import Run
from .view import ModelView

__all__ = [
    "FIG6_LABELS", "run_numbers", "error_se", "filters_at_radius",
    "filter_rms", "dominance", "dominance_se", "dead_filters", "conv1_responses", "band_shares",
    "mid_frequency_share", "power_spectra", "power_spectrum", "grid_energy_share", "grid_energy_shares",
    "layer2_projections", "dead_share_se",
    "fig6_metrics", "fig6_table", "FIG6_HEADER", "findings", 
    "intro_text", "findings_text",
]

#: The chapter's names of Fig. 6's three models (keys of :data:`zfcore.ablations.FIG6_VARIANTS`).
FIG6_LABELS: Dict[str, str] = {"zf:norenorm": "ZF without renormalisation",
                               "krizhevsky:base": "Krizhevsky et al. (11x11/4)",
                               "zf:base": "ZF, Fig. 3 (7x7/2)"}


# --------------------------------------------------------------------------------------------
# a finished run's filters at the renormalisation radius


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


def dominance_se(weight, draws: int = 2000, seed: int = 0) -> float:
    """The standard error of :func:`dominance` over the layer's filters: the spread of the ratio
    over ``draws`` bootstrap resamples of the filters (with replacement, a fixed ``seed``)."""
    r = filter_rms(weight)
    idx = np.random.default_rng(seed).integers(0, len(r), size=(int(draws), len(r)))
    rs = r[idx]
    med = np.median(rs, axis=1)
    ratio = rs.max(1)[med > 0] / med[med > 0]           # resamples with a zero median have no ratio
    return float(ratio.std(ddof=1)) if len(ratio) > 1 else float("nan")


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
    view = ModelView(model, image_size, mean=mean)
    total = None
    n = len(images)
    for s in range(0, n, batch_size):
        # a batch at a time: a folder split's lazy images are decoded as they are used
        x = view.inputs(images[s:s + batch_size])
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


def power_spectra(images, size: int) -> np.ndarray:
    """Each image's power spectrum, zero-padded to ``size`` x ``size``, summed over channels and
    normalised to total 1 (DC excluded): (N', size, size), unshifted (``np.fft.fftfreq`` order),
    images with no energy outside DC left out (N' of the N)."""
    x = _images(images)
    if size < max(x.shape[-2:]):
        raise ValueError(f"size {size} is smaller than the images ({x.shape[-2]}x{x.shape[-1]})")
    p = (np.abs(np.fft.fft2(x, s=(size, size))) ** 2).sum(axis=1)
    p[:, 0, 0] = 0.0
    tot = p.sum(axis=(1, 2))
    keep = tot > 0
    if not keep.any():
        raise ValueError("the images have no energy outside DC: there is no spectrum to measure")
    return p[keep] / tot[keep, None, None]


def power_spectrum(images, size: int) -> np.ndarray:
    """The mean of :func:`power_spectra`, so that every image counts alike: (size, size)."""
    return power_spectra(images, size).mean(0)


def _torus_dist(f: np.ndarray, c: float) -> np.ndarray:
    d = np.abs(f - c) % 1.0
    return np.minimum(d, 1.0 - d)


def grid_energy_share(images, period: int, *, size: Optional[int] = None, peak: float = 1.5,
                      ring: Tuple[float, float] = (3.0, 5.0)) -> float:
    """The share of :func:`grid_energy_shares` for the images' mean spectrum: the mean of the
    images' own shares (the share is linear in the spectrum)."""
    return float(grid_energy_shares(images, period, size=size, peak=peak, ring=ring).mean())


def grid_energy_shares(images, period: int, *, size: Optional[int] = None, peak: float = 1.5,
                       ring: Tuple[float, float] = (3.0, 5.0)) -> np.ndarray:
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

    With ``P`` an image's power spectrum, normalised to total 1 with the DC bin left out
    (:func:`power_spectra`; zero-padded to ``size``, by default the
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
        (N',) each image's share (a fraction of 1; images with no energy outside DC left out),
        computed on its own spectrum P_i, so that their mean is the share of P.
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
    p = power_spectra(x, size)
    f = np.fft.fftfreq(size)
    fy, fx = f[:, None], f[None, :]
    share = np.zeros(len(p))
    for m in range(period):
        for n in range(period):
            if m == 0 and n == 0:
                continue
            dist = np.sqrt(_torus_dist(fy, m / period) ** 2 + _torus_dist(fx, n / period) ** 2)
            disk = dist <= peak / side
            band = (dist > ring[0] / side) & (dist <= ring[1] / side)
            if not disk.any() or not band.any():
                raise ValueError(f"a {size}-point spectrum is too coarse; give a larger size")
            share += disk.sum() * (p[:, disk].mean(1) - p[:, band].mean(1))
    return share


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
    x = ModelView(model, image_size, mean=mean).inputs(images)
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
        run_or_model: a finished :class:`zfcore.runs.Run` (model, mean and validation
            error read from it) or a model (then ``mean`` is required).
        images: (N, S, S, 3) uint8 validation images (an array, or a folder split's lazy
            images, read a batch at a time).
        image_size: the crop the model sees (default: the model's input size).
        rel: the dead-filter threshold (:func:`dead_filters`).
        n_projections: how many of ``images`` give a layer-2 projection.
    Returns:
        a dict: ``conv1`` ("7x7/2"), ``stride``, ``filters`` (O), ``dead_weights``,
        ``dead_responses``, ``dead`` (counts), ``dominance`` and ``dominance_se``
        (:func:`dominance_se`), ``low``, ``mid``, ``high`` (mean band shares over the filters)
        and ``mid_se`` (its SE over the filters), ``alias_own`` (:func:`grid_energy_share` of
        the layer-2 projections at the model's conv1 stride) and ``alias_se`` (the SE of the
        projections' own shares, :func:`grid_energy_shares`), ``alias_2``, ``alias_4`` (at periods
        2 and 4), ``at_radius`` (filters of the model held at the RMS radius of Section 3, the
        run's or 0.1: :func:`filters_at_radius`), and, for a run, the keys of :func:`run_numbers`; plus the arrays
        ``weight`` (O, 3, k, k), ``projections`` (n, 3, s, s) and ``boxes`` (n, 4) for the figure.
    """
    out: dict = {}
    radius = 0.1
    if isinstance(run_or_model, Run):
        run = run_or_model
        model = run.load()
        mean = run.mean() if mean is None else mean
        out.update(run_numbers(run))
        radius = run.preset.filter_radius
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
    own = grid_energy_shares(proj, s) if s >= 2 else None
    out.update({
        "conv1": f"{k}x{k}/{s}", "stride": s, "filters": int(w.shape[0]),
        "dead_weights": int(dw.sum()), "dead_responses": int(dr.sum()),
        "dead": int((dw | dr).sum()), "dominance": dominance(w), "dominance_se": dominance_se(w),
        "low": float(np.nanmean(shares[:, 0])), "mid": float(np.nanmean(shares[:, 1])),
        "high": float(np.nanmean(shares[:, 2])), "mid_se": mean_se(shares[:, 1])[1],
        "alias_own": float(own.mean()) if own is not None else float("nan"),
        "alias_se": mean_se(own)[1] if own is not None else float("nan"),
        "alias_2": grid_energy_share(proj, 2), "alias_4": grid_energy_share(proj, 4),
        "at_radius": sum(filters_at_radius(model, radius).values()),
        "weight": w.cpu(), "projections": proj, "boxes": boxes,
    })
    return out


#: Column names of :func:`fig6_table`.
FIG6_HEADER = ("model", "conv1", "dead layer-1 filters (weights / responses)",
               "strongest / median filter RMS", "layer-1 spectrum: low / mid / high",
               "layer-2 grid energy at its stride (at 2 / at 4)", "val top-1 (10 crops)",
               "val top-5 (10 crops)")


def fig6_table(metrics: Mapping[str, dict], labels: Optional[Mapping[str, str]] = None) -> List[tuple]:
    """Rows of Fig. 6's numbers, one per model (``{key: fig6_metrics(...)}``, each shown by its
    name in ``labels`` where given, e.g. :data:`FIG6_LABELS`), for
    :func:`zfcore.plots.html_table` with :data:`FIG6_HEADER`."""
    rows = []
    for key, m in metrics.items():
        dead = f"{m['dead']} of {m['filters']} ({m['dead_weights']} / {m['dead_responses']})"
        val1, val5 = error_cell(m, "val_top1", "%"), error_cell(m, "val_top5", "%")
        rows.append(((labels or {}).get(key, key), m["conv1"], dead, f"{m['dominance']:.1f}",
                     f"{m['low']:.2f} / {m['mid']:.2f} / {m['high']:.2f}",
                     f"{100 * m['alias_own']:.2f}% ({100 * m['alias_2']:.2f}% / {100 * m['alias_4']:.2f}%)",
                     val1, val5))
    return rows


def _finding(claim: str, source: str, published: str, measured: str, criterion: str, holds, evidence: str,
             blocked: str = "") -> Finding:
    """``holds``: a bool (an ordering; a tie is False) or a verdict; ``blocked``: why it cannot be tested."""
    verdict = holds if isinstance(holds, str) else HOLDS if holds else DOES_NOT_HOLD
    return Finding(claim=claim, source=source, published=published, measured=measured, criterion=criterion,
                   verdict=NOT_TESTABLE if blocked else verdict, evidence=f"{evidence}; {blocked}" if blocked else evidence)


def _blocked(models: Mapping[str, dict]) -> str:
    """Why the readings of ``models`` (``{key: fig6_metrics}``) say nothing: those that did not train."""
    bad = [k for k, m in models.items() if not_trained(m)]
    return untrained_note(models, bad) + ": its filters are those of an untrained model" if bad else ""


def dead_share_se(a: int, n_a: int, b: int, n_b: int) -> float:
    """The standard error of the difference of two shares of dead filters, ``a`` of ``n_a`` and
    ``b`` of ``n_b``, under the hypothesis that they are equal (the pooled binomial SE of the
    two-proportion test): ``sqrt(p (1 - p) (1/n_a + 1/n_b))`` with p = (a + b) / (n_a + n_b); 0
    when neither or both layers are all dead, where no difference can be told."""
    if n_a < 1 or n_b < 1:
        raise ValueError(f"need at least one filter in each layer, got {n_a} and {n_b}")
    p = (a + b) / (n_a + n_b)
    return math.sqrt(p * (1 - p) * (1 / n_a + 1 / n_b))


def findings(krizhevsky: dict, zf: dict, no_renorm: Optional[dict] = None) -> List[Finding]:
    """Section 4.1's readings of Fig. 6, computed on :func:`fig6_metrics` of the Krizhevsky
    model, the ZF model and (optional) the ZF model trained without renormalisation.

    Each reading compares the two numbers named in its evidence by :func:`zfcore.findings.decide`:
    "holds" when the 7x7/2 model (or the model without renormalisation) comes out on the paper's
    side by more than 2 standard errors of the difference (dead filters: :func:`dead_share_se`;
    mid-band shares: each mean's SE over the filters; grid energy: each mean's SE over the
    projections; dominance: :func:`dominance_se`), "does not hold" when it comes out that far on
    the other side, else (a tie, a difference within its SE, or numbers without their SE) "not
    testable". Every reading that reads a model that did not train
    (:func:`zfcore.error_rates.not_trained`) is "not testable", naming it. The validation
    errors (compared only when both are runs) are decided by :func:`zfcore.error_rates.contrast`:
    not testable within 2 standard errors of the difference (the binomial one of each error on
    the validation images) or within the larger last-epoch gain of the two models. "One filter
    dominates without renormalisation" is not testable when the renormalisation held no filter
    of the ZF model (``at_radius`` 0): the two models then had the same training.
    """
    k, z = krizhevsky, zf
    kz = _blocked({"krizhevsky:base": k, "zf:base": z})
    dead = k["dead"] / k["filters"] - z["dead"] / z["filters"]
    dead_se = dead_share_se(z["dead"], z["filters"], k["dead"], k["filters"])
    mid, mid_se = z["mid"] - k["mid"], math.hypot(z.get("mid_se", math.nan), k.get("mid_se", math.nan))
    alias, alias_se = (k["alias_own"] - z["alias_own"],
                       math.hypot(k.get("alias_se", math.nan), z.get("alias_se", math.nan)))
    beyond = (f"by more than {SE_MARGIN:g} standard errors of the difference ({{}}); a tie or a difference "
              "within them is not testable")
    out = [
        _finding("the 7x7/2 first layer has fewer dead filters than the 11x11/4 one", "Section 4.1, Fig. 6(b), (c)",
                 "fewer 'dead' features with the smaller stride and filter size (by eye)",
                 f"{z['dead']} vs {k['dead']} dead",
                 "share of dead layer-1 filters (weights or mean response below a tenth of the layer's median "
                 "filter's): 7x7/2 below 11x11/4 " + beyond.format("the pooled binomial SE of two shares"),
                 decide(dead, dead_se),
                 f"dead: {z['dead']} of {z['filters']} (7x7/2) vs {k['dead']} of {k['filters']} (11x11/4), "
                 f"difference of the shares {dead:+.3f} ± {dead_se:.3f} (SE)", kz),
        _finding("the 7x7/2 filters cover the mid frequencies more", "Section 4.1, Fig. 6(b), (c)",
                 "the 11x11/4 filters: 'extremely high and low frequency information, with little coverage "
                 "of the mid frequencies' (by eye)", f"{z['mid']:.3f} vs {k['mid']:.3f}",
                 "mean share of the layer-1 filters' spectral energy in the middle band: 7x7/2 above 11x11/4 "
                 + beyond.format("each mean's SE over its filters"), decide(mid, mid_se),
                 f"mean mid-band share {z['mid']:.3f} (7x7/2) vs {k['mid']:.3f} (11x11/4), difference "
                 f"{mid:+.3f} ± {mid_se:.3f} (SE)", kz),
        _finding("the layer-2 projections of the 11x11/4 model show more energy at their first layer's grid "
                 "(aliasing) than those of the 7x7/2 model", "Section 4.1, Fig. 6(d), (e)",
                 "'aliasing artifacts caused by the large stride 4' in the layer-2 features (by eye)",
                 f"{100 * k['alias_own']:.2f}% vs {100 * z['alias_own']:.2f}%",
                 "share of the layer-2 projections' spectral energy at the harmonics of the first layer's "
                 "stride (above the ring around each): 11x11/4 above 7x7/2 "
                 + beyond.format("each mean's SE over its projections"), decide(alias, alias_se),
                 f"share of the energy at the grid's harmonics: {100 * k['alias_own']:.2f}% (period "
                 f"{k['stride']}) vs {100 * z['alias_own']:.2f}% (period {z['stride']}), difference "
                 f"{100 * alias:+.2f} ± {100 * alias_se:.2f} points (SE)", kz),
    ]
    if "val_top1" in k and "val_top1" in z:
        kv, zv = k["val_top1"], z["val_top1"]
        verdict, _, ev = contrast({"krizhevsky:base": k, "zf:base": z},
                                  [("krizhevsky:base", "val_top1", 1.0), ("zf:base", "val_top1", -1.0)])
        out.append(_finding(
            "the 7x7/2 model has the lower validation error", "Section 4.1; Section 5.1, Table 3",
            "38.4% vs 40.5% val top-1 (ImageNet 2012, 70 epochs)", f"{zv:.1f}% vs {kv:.1f}%",
            "10-crop validation top-1 error: 7x7/2 below 11x11/4 by more than 2 standard errors of the "
            "difference (binomial, on the validation images) and by more than the larger last-epoch gain of "
            "the two models; else not testable", verdict,
            f"val top-1 (10 crops) {zv:.1f}% vs {kv:.1f}%: 11x11/4 minus 7x7/2 {ev}"))
    if no_renorm is not None:
        a, b = no_renorm["dominance"], z["dominance"]
        idle = ("the renormalisation held no filter of the ZF model at its radius within the budget, so both "
                "models had the same training" if z.get("at_radius", 1) == 0 else "")
        se = math.hypot(no_renorm.get("dominance_se", math.nan), z.get("dominance_se", math.nan))
        out.append(_finding(
            "without renormalisation one layer-1 filter dominates", "Section 3; Fig. 6(a)",
            "'one feature dominates' without the renormalisation (by eye)", f"{a:.1f} vs {b:.1f}",
            "strongest / median layer-1 filter RMS: without renormalisation above with it "
            + beyond.format("each ratio's bootstrap SE over its filters")
            + "; not testable either when the renormalisation never acted", decide(a - b, se),
            f"strongest / median filter RMS {a:.1f} without vs {b:.1f} with renormalisation, difference "
            f"{a - b:+.1f} ± {se:.1f} (SE)",
            _blocked({"zf:norenorm": no_renorm, "zf:base": z}) or idle))
    return out


def intro_text(preset: Preset, budget: Preset) -> str:
    """The chapter's opening note (markdown): this scale, and the budget every model gets
    (``budget``: :func:`zfcore.ablations.budget_preset` of ``preset``)."""
    subset = (f"the first {budget.num_classes} of its {preset.num_classes} classes "
              f"({budget.num_classes * budget.train_per_class} training and "
              f"{budget.num_classes * budget.val_per_class} validation images)"
              if budget.num_classes != preset.num_classes else f"all {preset.num_classes} classes")
    return (
        f"**This page was run at the `{preset.name}` scale**: {preset.image_size}x{preset.image_size}-pixel crops, "
        f"the models at {preset.width:g} of the paper's width. **Each model here is trained for {budget.epochs} "
        f"epochs on {subset}** with the recipe of Section 3 (the paper trained for 70 epochs on all of ImageNet; "
        f"this book's main model for {preset.epochs} on all its classes): the one budget that this chapter's three "
        "models and the next chapter's thirteen share, within the time the book allows. "
        + ("A subset of the classes, seen for more epochs, lets the models get past the first epochs' plateau near "
           "chance in the same time, so that they differ by more than noise. "
           if budget.num_classes != preset.num_classes else "")
        + ("The numbers are this run's, not the paper's ImageNet numbers." if preset.data == "scenes"
           else "The data are your prepared ImageNet folders."))


def _renorm_text(zf_run: Run, no_renorm_run: Run, budget: Preset) -> str:
    """Whether the renormalisation acted on the ZF model within the budget (panels (a), (c))."""
    zf_model, nr_model = zf_run.load(), no_renorm_run.load()
    held = filters_at_radius(zf_model, budget.filter_radius)
    if sum(held.values()) == 0:
        same = all(torch.equal(a, b) for a, b in zip(zf_model.state_dict().values(),
                                                     nr_model.state_dict().values()))
        return (f"Within {budget.epochs} epochs no filter of the renormalised ZF model reached the RMS radius "
                f"{budget.filter_radius:g}, so the renormalisation never acted: the models of panels (a) and (c) "
                f"had the same training, and their weights are {'identical' if same else 'not identical (they differ)'}. "
                "Panel (a) cannot show a dominating filter until training runs long enough for filters to grow "
                "past the radius.")
    return (f"The renormalisation held {sum(held.values())} filters of the ZF model at the radius "
            f"{budget.filter_radius:g} (" + ", ".join(f"{k}: {v}" for k, v in held.items() if v) + "); "
            "without it those filters grew freely.")


def findings_text(found: Sequence[Finding], metrics: Mapping[str, dict], zf_run: Run, no_renorm_run: Run,
                  budget: Preset) -> str:
    """What the chapter found (markdown): how many readings hold, whether the renormalisation
    acted within the budget, and the grid energy at period 4 (``metrics``: :func:`fig6_metrics`
    by variant key)."""
    mk, mz = metrics["krizhevsky:base"], metrics["zf:base"]
    grid4 = (f" At period 4, which is also the spacing of the ZF model's pool1 grid (stride 2 twice over), the "
             f"layer-2 projections carry {100 * mk['alias_4']:.2f}% (Krizhevsky) and {100 * mz['alias_4']:.2f}% (ZF) "
             "of their energy at the harmonics: the grid of a later strided layer shows too.")
    n_hold = sum(f.verdict == HOLDS for f in found)
    n_open = sum(f.verdict == NOT_TESTABLE for f in found)
    return (f"**{n_hold} of the {len(found)} readings {'holds' if n_hold == 1 else 'hold'} at this "
            f"scale and budget{f'; {n_open} cannot be tested' if n_open else ''}.** "
            + _renorm_text(zf_run, no_renorm_run, budget) + grid4)
