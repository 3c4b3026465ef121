"""Tolerances that follow from the arithmetic, so that a comparison holds on any x86 processor.

Two computations of the same mathematics in floating point differ by rounding, and how they
round depends on the kernels (AVX2 on one machine, AVX-512 or AMX on another, a different
blocking for another batch size). A tolerance must therefore be an upper bound of that
rounding, worked out from the operations and the magnitudes involved, never a number that
happened to pass on one machine. The tests use three kinds of comparison:

* **exact**: integer or exactly representable arithmetic (counts, indices, sums of a few
  dyadic numbers, the same kernel on the same data): ``==`` or ``rtol=0, atol=0``.
* **float64**: the mathematics under test is computed in float64 on both sides (the model
  and the images cast with :func:`double`). A sum of ``n`` terms evaluated in any order is
  within ``gamma(n) * sum |terms|`` of the exact sum (Higham, *Accuracy and Stability of
  Numerical Algorithms*, 2nd ed., eq. 4.4: ``gamma(n) = n u / (1 - n u)``, ``u = eps / 2``).
  With the fan-ins of the test networks (below 10^4) each layer rounds by at most
  ``gamma(10^4) ~ 1.1e-12`` of the magnitudes that flow through it; ReLU, max pooling and
  dropout at test time are non-expansive, and the test networks' initialisations keep the
  activations' scale from layer to layer (gain about 1). ``F64_REL = 1e-8`` of the compared
  quantity's magnitude is 500 times what 20 such layers round (2e-11), room for cancellation
  and growth, and is still many orders below what a real bug (a wrong switch, a missing term,
  a shifted window) changes: a sizeable fraction of the magnitude itself. :func:`f64_close`.
* **float32 by a bound**: where a comparison must stay in float32 (a command that writes
  float32 files, a cast the library itself makes), the tolerance is computed from ``EPS32``
  and the magnitudes at hand, as each test says where it does it.
"""
from __future__ import annotations

import copy
import math

import torch

EPS32 = torch.finfo(torch.float32).eps      # 2**-23: one ulp at 1.0; rounding is at most half of it
EPS64 = torch.finfo(torch.float64).eps      # 2**-52

# float64: see the module docstring (20 layers x gamma(10^4) ~ 2e-11, 500 times over).
F64_REL = 1e-8


def gamma(n: int, eps: float = EPS32) -> float:
    """Higham's gamma_n with unit roundoff ``eps / 2``: a float sum of ``n`` terms, in any
    order, is within ``gamma(n) * sum |terms|`` of the exact sum."""
    u = eps / 2
    if n * u >= 1:
        raise ValueError(f"gamma({n}) is unbounded at eps={eps}")
    return n * u / (1 - n * u)


def double(*things):
    """float64 copies of models (deep copies: the original keeps its dtype) and tensors."""
    out = []
    for t in things:
        if isinstance(t, torch.nn.Module):
            out.append(copy.deepcopy(t).double())
        elif isinstance(t, torch.Tensor) and t.is_floating_point():
            out.append(t.double())
        else:
            out.append(t)
    return out[0] if len(out) == 1 else tuple(out)


def f64_close(actual, expected, scale=None):
    """``actual`` equals ``expected`` to float64 rounding: within ``F64_REL`` of the larger of
    1 and the compared quantity's largest magnitude (or of ``scale``)."""
    a = torch.as_tensor(actual).double()
    e = torch.as_tensor(expected).double()
    m = float(e.abs().max()) if scale is None and e.numel() else float(scale or 0.0)
    torch.testing.assert_close(a, e, rtol=0, atol=F64_REL * max(1.0, m))


def softmax_f32_tol(logits: torch.Tensor) -> float:
    """Bound on the difference between two float32 softmax probabilities computed from logits
    that agree to float64 rounding (as two float64 runs of one network give), each cast to
    float32 before the softmax (as :func:`zfcore.occlusion.sensitivity` does).

    A probability moves with the logits by ``|dp_t| <= 2 p_t (1 - p_t) max|dz| <= 2 p max|dz|``.
    Casting moves each logit by at most half an ulp, ``EPS32 / 2 * max|z|``. The float32
    softmax rounds ``z - max`` (half an ulp of the range), each ``exp`` (one ulp, relative),
    the sum of ``C`` terms (``gamma(C)``, relative) and the division (half an ulp, relative).
    So one side is within ``p (EPS32 max|z| + EPS32 range + 2.5 EPS32 + gamma(C))`` of the
    exact probability, ``p`` the largest probability of ``logits``' rows; two sides, twice that.
    """
    z = logits.double().reshape(-1, logits.shape[-1])
    c = z.shape[-1]
    p = float(torch.softmax(z, -1).max())
    zmax = float(z.abs().max())
    zrange = float((z.max(-1).values - z.min(-1).values).max())
    one_side = p * (EPS32 * zmax + EPS32 * zrange + 2.5 * EPS32 + gamma(c))
    return 2 * one_side


def f32_cast_tol(values) -> float:
    """Two float64 results that agree to float64 rounding, each cast to float32: at most one
    float32 ulp apart (each is rounded to the nearest, half an ulp), i.e. ``EPS32 * max|v|``."""
    v = torch.as_tensor(values).double()
    return EPS32 * max(float(v.abs().max()) if v.numel() else 0.0, math.ulp(0.0))
