"""What the layer-1 filters look like (zfcore.filters) and whether a run's curve is flat
(zfcore.error_rates.plateau): the checks chapter 01 states with numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zfcore import filters
from zfcore.error_rates import error_se, plateau
from zfcore.findings import SE_MARGIN


def _gabors(n=8, freq=0.25):
    y, x = np.mgrid[-3:4, -3:4]
    out = []
    for t in np.linspace(0, np.pi, n, endpoint=False):
        g = np.cos(2 * np.pi * freq * (x * np.cos(t) + y * np.sin(t))) * np.exp(-(x ** 2 + y ** 2) / 8)
        out.append(np.stack([g, 0.5 * g, -g]))
    return np.stack(out)


def _blobs(n=6):
    y, x = np.mgrid[-3:4, -3:4]
    b = np.exp(-(x ** 2 + y ** 2) / 6)
    colours = np.random.default_rng(1).standard_normal((n, 3))
    return colours[:, :, None, None] * b[None, None]


def test_edges_and_blobs_pass_and_noise_passes_at_its_rate():
    g, b = filters.read_filters(_gabors()), filters.read_filters(_blobs())
    assert (g.oriented, g.structured) == (g.n, g.n)
    assert (b.low, b.structured) == (b.n, b.n)
    # white noise (another seed than the thresholds'): each test passes about 1 - q of the filters;
    # binomial bounds at 4 standard errors
    n, q = 3000, filters.NOISE_QUANTILE
    w = np.random.default_rng(7).standard_normal((n, 3, 7, 7))
    t = filters.noise_thresholds()
    for share in ((filters.orientation(w) > t[0]).mean(), (filters.low_share(w) > t[1]).mean()):
        assert abs(share - (1 - q)) < 4 * math.sqrt(q * (1 - q) / n)


def test_the_numbers_ignore_scale_and_follow_symmetry():
    w = np.random.default_rng(3).standard_normal((5, 3, 7, 7))
    for f in (filters.orientation, filters.low_share):
        np.testing.assert_allclose(f(w), f(1e-3 * w), rtol=1e-9)
        # a transposed (90 degrees) or mirrored filter has the same spectrum up to a reflection
        np.testing.assert_allclose(f(w), f(w.transpose(0, 1, 3, 2)), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(f(w), f(w[:, :, :, ::-1]), rtol=1e-9, atol=1e-12)
    o = filters.orientation(w)
    assert ((o >= 0) & (o <= 1)).all()
    assert filters.noise_thresholds() == filters.noise_thresholds(3, 7)
    with pytest.raises(ValueError, match=r"\(O, C, k, k\)"):
        filters.orientation(np.zeros((3, 7, 7)))


def test_filters_text_states_the_counts():
    text = filters.filters_text(torch.from_numpy(_gabors()), torch.randn(8, 3, 7, 7), 24)
    assert "After 24 epochs **8 of the 8 filters (100%) pass**" in text and "these are too" in text
    noisy = filters.filters_text(torch.randn(40, 3, 7, 7), torch.randn(40, 3, 7, 7), 3)
    assert "still look like noise" in noisy


def test_initial_draws_the_runs_starting_weights(tmp_path, monkeypatch):
    import zfcore.models as zm
    from zfcore.presets import get_preset
    from zfcore.train import train
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path))
    seen = {}
    real = zm.zfnet

    def spy(*a, **k):
        m = real(*a, **k)
        seen.setdefault("conv1", m.conv1.weight.detach().clone())
        return m
    monkeypatch.setattr(zm, "zfnet", spy)
    run = train(get_preset("tiny").replace(epochs=1, evolution_epochs=(1,), seed=5), out=tmp_path / "r",
                progress=False)
    monkeypatch.undo()
    start = filters.initial(run.load(), 5)
    assert torch.equal(start.conv1.weight, seen["conv1"])
    assert not torch.equal(run.load().conv1.weight, seen["conv1"])


def _rows(errs, lr=1e-2):
    return [{"epoch": i + 1, "val_top1_err": e, "lr": lr} for i, e in enumerate(errs)]


def test_plateau_rule():
    n = 2000
    se = math.sqrt(2) * error_se(30.0, n)
    flat = plateau(_rows([50, 40, 31.0, 30.5, 30.2, 30.0]), n)
    assert flat["flat"] and flat["gain"] == pytest.approx(1.0) and flat["se"] == pytest.approx(se)
    falling = plateau(_rows([60, 50, 40, 30]), n)
    assert not falling["flat"] and falling["gain"] == pytest.approx(30.0)
    # the boundary: a gain of exactly SE_MARGIN standard errors is still flat, a little more is not
    edge = SE_MARGIN * se
    assert plateau(_rows([0, 30.0 + edge * (1 - 1e-9), 31, 31, 30.0]), n)["flat"]
    assert not plateau(_rows([0, 30.0 + edge * (1 + 1e-6), 31, 31, 30.0]), n)["flat"]
    assert plateau(_rows([50, 40, 30]), n) is None
