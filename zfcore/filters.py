"""What the first layer's filters look like: oriented edges and colour blobs, or noise.

The paper's trained layer-1 filters (Fig. 3's conv1, shown in Fig. 5 and Fig. 6 (c)) are
oriented edge and grating detectors and smooth colour blobs; filters drawn at random, as
training starts, are noise. Two numbers per filter tell these apart, both read off its power
spectrum ``P(f)`` (the 7x7 filter zero-padded to 32x32, the power summed over the three
colour channels; ``f`` in cycles per pixel):

* **orientation**: ``|sum P(f) exp(2i theta_f)| / sum P(f)`` over ``f != 0`` (the Nyquist
  row and column left out, where a frequency and its mirror are one bin; the standard
  orientation selectivity index: 0 when the power is spread evenly over the directions, 1
  when it lies along one; an edge or a grating scores high);
* **low-frequency share**: the share of the power, the filter's mean (DC) left out, at
  ``|f| <= LOW_BAND`` (a smooth blob, of one colour or colour-opponent, scores high; a
  noisy filter with a colour cast does not: its mean is left out, and its noise is white).

A filter counts as *structured* when either number exceeds what :data:`NOISE_QUANTILE` of
white-noise filters of the same shape reach (:func:`noise_thresholds`: i.i.d. Gaussian
weights, the distribution every initial filter of ``zfcore.models`` is drawn from, whatever
its standard deviation, since both numbers ignore the scale). By construction about
``2 * (1 - NOISE_QUANTILE)`` of random filters pass one of the two tests; a layer of
edges and blobs passes nearly whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

import numpy as np
import torch

__all__ = ["initial", "LOW_BAND", "NOISE_QUANTILE", "FFT_SIZE", "orientation", "low_share", "noise_thresholds",
           "FilterReading", "read_filters", "filters_text"]

#: Radius (cycles per pixel) of the low band; the Nyquist frequency is 0.5.
LOW_BAND = 0.125
#: Quantile of white-noise filters a structured filter must exceed on one of the two numbers.
NOISE_QUANTILE = 0.95
#: Side the filters are zero-padded to before the Fourier transform.
FFT_SIZE = 32


def initial(model, seed: int):
    """A model of ``model``'s configuration drawn with ``seed``: the initial weights of a run of
    that seed (:func:`zfcore.train.train` seeds torch with it right before building the model)."""
    from .models import build_model, model_config
    torch.manual_seed(seed)
    return build_model(model_config(model))


def _spectra(weight) -> np.ndarray:
    w = weight.detach().cpu().double().numpy() if torch.is_tensor(weight) else np.asarray(weight, np.float64)
    if w.ndim != 4:
        raise ValueError(f"expected conv filters of shape (O, C, k, k), got {w.shape}")
    return (np.abs(np.fft.fft2(w, s=(FFT_SIZE, FFT_SIZE))) ** 2).sum(axis=1)     # (O, n, n)


def _grid() -> Tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(FFT_SIZE)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    return np.hypot(fy, fx), np.arctan2(fy, fx)


def orientation(weight) -> np.ndarray:
    """(O,) the orientation selectivity index of each filter of ``weight`` (O, C, k, k), in [0, 1]."""
    p = _spectra(weight)
    r, theta = _grid()
    f = np.fft.fftfreq(FFT_SIZE)
    # neither DC nor the Nyquist row and column (-1/2 is also +1/2 there: no direction of its own)
    keep = (r > 0) & (np.abs(f)[:, None] < 0.5) & (np.abs(f)[None, :] < 0.5)
    p = p * keep
    total = p.sum(axis=(1, 2))
    z = (p * np.exp(2j * theta)).sum(axis=(1, 2))
    return np.where(total > 0, np.abs(z) / np.where(total > 0, total, 1), 0.0)


def low_share(weight) -> np.ndarray:
    """(O,) the share of each filter's power, its mean (DC) left out, at ``0 < |f| <= LOW_BAND``."""
    p = _spectra(weight)
    r, _ = _grid()
    p = p * (r > 0)
    total = p.sum(axis=(1, 2))
    return np.where(total > 0, (p * (r <= LOW_BAND)).sum(axis=(1, 2)) / np.where(total > 0, total, 1), 0.0)


@lru_cache(maxsize=8)
def noise_thresholds(channels: int = 3, k: int = 7, n: int = 4000, seed: int = 0) -> Tuple[float, float]:
    """``(orientation, low share)`` that :data:`NOISE_QUANTILE` of ``n`` white-noise filters of
    shape (channels, k, k) stay below (a fixed seed: the same thresholds on every run)."""
    w = np.random.default_rng(seed).standard_normal((n, channels, k, k))
    return (float(np.quantile(orientation(w), NOISE_QUANTILE)), float(np.quantile(low_share(w), NOISE_QUANTILE)))


@dataclass(frozen=True)
class FilterReading:
    """How many filters of a layer look structured (:func:`read_filters`)."""
    n: int
    oriented: int
    low: int
    structured: int
    thresholds: Tuple[float, float]

    @property
    def share(self) -> float:
        return self.structured / self.n if self.n else float("nan")


def read_filters(weight) -> FilterReading:
    """Count the filters of ``weight`` (O, C, k, k) above the white-noise thresholds."""
    shape = tuple(weight.shape)
    t = noise_thresholds(shape[1], shape[2])
    o, lo = orientation(weight) > t[0], low_share(weight) > t[1]
    return FilterReading(shape[0], int(o.sum()), int(lo.sum()), int((o | lo).sum()), t)


def filters_text(trained, initial, epochs: int) -> str:
    """The chapter's sentence (markdown): the trained layer-1 filters against the initial ones
    and the paper's, with the numbers of :func:`read_filters`."""
    a, b = read_filters(trained), read_filters(initial)
    low = 1 - NOISE_QUANTILE
    return (f"**What the filters are.** A filter counts as structured, not noise, when its spectrum's "
            f"orientation index exceeds {a.thresholds[0]:.2f} (its power lies along one direction: an edge or a "
            f"grating) or when more than {100 * a.thresholds[1]:.0f}% of its power, its mean colour left out, lies "
            f"below {LOW_BAND:g} cycles per pixel (a smooth blob): thresholds only "
            f"{100 * low:.0f}% of white-noise filters reach on each. After {epochs} epochs "
            f"**{a.structured} of the {a.n} filters ({100 * a.share:.0f}%) pass** ({a.oriented} oriented, "
            f"{a.low} low-frequency, some both), against {b.structured} ({100 * b.share:.0f}%) of the same "
            f"layer's initial filters, about what chance gives ({100 * (1 - NOISE_QUANTILE ** 2):.0f}% for two "
            f"independent tests). The paper's trained filters (Fig. 6 (c)) are, by eye, nearly all edges, "
            f"gratings and colour blobs; "
            + ("these are too, by this measure." if a.share >= 0.9 else
               "by this measure these are " + ("mostly" if a.share >= 0.5 else "not yet") + " such filters, "
               f"and {a.n - a.structured} still look like noise."))
