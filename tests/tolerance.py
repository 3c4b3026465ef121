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
    z = logits.detach().double().reshape(-1, logits.shape[-1])
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



# --------------------------------------------------------------------------------------------
# float32 forward passes of a network: bounds from each layer's rounding
#
# Where a comparison must stay in float32 (a function that loads a run's float32 model, warps
# images in float32, or a file written by training), the float32 result is compared with the
# exact one (computed in float64) within a bound that adds up each layer's rounding:
#
# * a Conv2d or Linear output with n products and a bias, in any order of summation (any
#   kernel, blocking, FMA or not), is within gamma(n + 1) (|W| |a| + |b|) of the exact sum of
#   its float32 input a (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5);
# * LocalResponseNorm b = a / (k + alpha mean_n(a^2))^beta (torch's F.local_response_norm)
#   rounds the squares, the mean of n terms, alpha and k (gamma(n + 4) of the denominator, all
#   its terms positive), pow (1 ulp: Sleef's u10 and libm) and the division (half an ulp):
#   relative to |b|;
# * an average over windows of at most m elements: gamma(m + 1) of the average of |a|;
# * ReLU, max pooling, Dropout (eval), Identity and Flatten do not round.
#
# How the roundings of the lower layers travel up, two ways:
#
# * f32_forward_tol: componentwise, a rigorous bound: |W| e for a layer's input error e, 1 for
#   ReLU and max pooling, the mean value theorem for LocalResponseNorm. |W| e adds up the
#   errors as if all had the worst sign, which grows about sqrt(n) times per layer; use it for
#   the first layers (conv1, norm1: within 1e-4 of the activations), not for deep ones.
# * f32_forward_tol_ad: to first order in the unit roundoff (Linnainmaa's running error
#   analysis by reverse-mode differentiation): each output's error is at most the sum over
#   every rounding of |d output / d rounding| times that rounding's bound, the derivatives
#   taken in float64 at the exact activations. The O(u^2) terms it leaves out are 1e-7 of it;
#   a unit whose exact input lies within rounding of a ReLU's kink or of a max pooling's tie
#   (where the derivative jumps) moves by its own rounding, of the order of the terms counted.
#   One backward pass per output element: for fc layers and logits.
#
# Both are worst cases, typically 10 to 10^4 times the actual error, and still far below what a
# real bug changes (a wrong layer, crop or weight: the order of the activations themselves).
# They assume IEEE float32 products (torch's default float32_matmul_precision "highest"; a
# GPU's TF32 or Winograd convolutions are not covered).

def _window_sum(t: torch.Tensor, size: int) -> torch.Tensor:
    """Each channel's sum over LocalResponseNorm's channel window (``size`` channels,
    ``size // 2`` before and ``(size - 1) // 2`` after, zeros beyond the ends), of (N, C, ...)."""
    import torch.nn.functional as F
    n, c = t.shape[:2]
    v = F.pad(t.reshape(n, 1, c, 1, -1), (0, 0, 0, 0, size // 2, (size - 1) // 2))
    return F.avg_pool3d(v, (size, 1, 1), stride=1).reshape(t.shape) * size


def _lrn_rel(m) -> float:
    """LocalResponseNorm's own rounding, relative to its output (see above)."""
    gd = gamma(m.size + 4)
    pw = max(abs((1 + gd) ** m.beta - 1), abs((1 - gd) ** m.beta - 1))
    return (1 + pw) * (1 + EPS32) * (1 + EPS32 / 2) - 1


def _affine(m):
    """A Conv2d's or Linear's float64 map ``op(t, weight, bias)``, weight, bias and gamma(n + 1)."""
    import torch.nn.functional as F
    from torch import nn
    w = m.weight.detach().double().cpu()
    b = m.bias.detach().double().cpu() if m.bias is not None else None
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise ValueError(f"padding mode {m.padding_mode!r} is not bounded here")

        def op(t, ww, bb):
            return F.conv2d(t, ww, bb, m.stride, m.padding, m.dilation, m.groups)
    else:
        op = F.linear
    return op, w, b, gamma(w[0].numel() + (b is not None))


def _avg_window(step) -> int:
    """The most elements an AdaptiveAvgPool2d step averages (1 where it keeps the size)."""
    (h, w), (oh, ow) = step.in_shape[-2:], step.out_shape[-2:]
    if (h, w) == (oh, ow):
        return 1
    return (-(-h // oh) + 1) * (-(-w // ow) + 1)


def _steps(model, x, layers):
    from zfcore.chain import chain, find_step
    if torch.get_float32_matmul_precision() != "highest":
        raise RuntimeError("the float32 bounds assume IEEE float32 products "
                           "(torch.set_float32_matmul_precision('highest'))")
    names = [layers] if isinstance(layers, str) else list(layers)
    steps = chain(model, (int(x.shape[2]), int(x.shape[3])))
    return steps, {name: find_step(steps, name) for name in names}


def f32_forward_tol(model, x, layers, x_err=0.0):
    """The exact outputs of ``layers`` of ``model`` (a :func:`zfcore.chain.chain`) on ``x``,
    and a rigorous bound, per element, on how far a float32 forward pass can be from them
    (componentwise; see above: for the first layers).

    Args:
        model: the float32 model (its weights, in float64, give the exact outputs).
        x: (N, 3, H, W) the exact value of the float32 input (any float dtype).
        layers: module paths as in the chain (``"norm1"``, ``"features.2"``).
        x_err: a bound on the float32 input's own error (a number, or a tensor of ``x``'s
            shape): ``EPS32 / 2 * |x|`` for uint8 images minus a float32 mean (one rounding),
            0 when the float32 side is given ``x`` itself.
    Returns:
        ``({layer: exact float64}, {layer: bound float64})``, each (N, ...).

    With ``a`` the exact input of a layer and ``e`` the bound on its float32 error: Conv2d and
    Linear give ``|W| (e + g (|a| + e)) + g |b|``, ``g = gamma(n + 1)``; ReLU and max pooling
    pass ``e`` on (the bound of a window's max is the max of the bounds); LocalResponseNorm
    moves ``b_c`` by at most ``D_lo^-beta e_c + 2 alpha beta / n A_c D_lo^(-beta-1)
    sum_window(A e)`` (mean value theorem, ``A = |a| + e``, ``D_lo = k + alpha
    mean_n(max(|a| - e, 0)^2)``), plus its own rounding relative to ``|b|`` and that move.
    """
    import torch.nn.functional as F
    from torch import nn
    steps, idx = _steps(model, x, layers)
    a = x.detach().double().cpu()
    e = torch.as_tensor(x_err, dtype=torch.float64).expand_as(a).clone()
    exact, bound = {}, {}
    with torch.no_grad():
        for i, step in enumerate(steps[: max(idx.values()) + 1]):
            m = step.module
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                op, w, b, g = _affine(m)
                a, e = op(a, w, b), op(e + g * (a.abs() + e), w.abs(), g * b.abs() if b is not None else None)
            elif isinstance(m, nn.LocalResponseNorm):
                if a.dim() != 4:
                    raise ValueError(f"{step.name}: LocalResponseNorm is bounded on (N, C, H, W) only")
                n, alpha, beta, k = m.size, m.alpha, m.beta, m.k
                big = a.abs() + e
                d_lo = k + alpha / n * _window_sum((a.abs() - e).clamp_min(0) ** 2, n)
                moved = d_lo ** -beta * e + (2 * alpha * beta / n) * big * d_lo ** (-beta - 1) * _window_sum(big * e, n)
                a = F.local_response_norm(a, n, alpha, beta, k)
                e = moved + _lrn_rel(m) * (a.abs() + moved)
            elif isinstance(m, nn.AdaptiveAvgPool2d) and _avg_window(step) > 1:
                win = _avg_window(step)
                a, e = m(a), m(e) + gamma(win + 1) * m(a.abs() + e)
            else:
                a, e = _exact_step(step, a, e)
            for name, j in idx.items():
                if j == i:
                    exact[name], bound[name] = a.clone(), e.clone()
    return exact, bound


def _exact_step(step, a, e):
    """The exact values ``a`` and their error bound ``e`` through a step that does not round:
    ReLU (1-Lipschitz: the bound stays), max pooling (the largest bound in the window covers
    the pooled value), flatten; dropout at test time, identities and an adaptive pool that keeps
    the size change nothing. ValueError for any other step (one that rounds has its own rule)."""
    import torch.nn.functional as F
    from torch import nn
    m = step.module
    if isinstance(m, nn.ReLU):
        return a.clamp_min(0), e
    if isinstance(m, nn.MaxPool2d):
        def pool(t):
            return F.max_pool2d(t, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
        return pool(a), pool(e)
    if isinstance(m, nn.Flatten):
        return a.reshape(a.shape[0], *step.out_shape), e.reshape(e.shape[0], *step.out_shape)
    if isinstance(m, (nn.Dropout, nn.Identity)) or (isinstance(m, nn.AdaptiveAvgPool2d)
                                                    and _avg_window(step) <= 1):
        return a, e
    raise ValueError(f"{step.name}: no float32 bound for {type(m).__name__}")


def _rounds(step) -> bool:
    from torch import nn
    m = step.module
    return isinstance(m, (nn.Conv2d, nn.Linear, nn.LocalResponseNorm)) or (
        isinstance(m, nn.AdaptiveAvgPool2d) and _avg_window(step) > 1)


def f32_forward_tol_ad(model, x, layer: str, x_err=0.0):
    """The exact output of ``layer`` of ``model`` (a :func:`zfcore.chain.chain`) on ``x``,
    and a bound, per element and to first order in the unit roundoff, on how far a float32
    forward pass can be from it (see above: for fc layers and logits; one backward pass per
    output element of an image). Arguments as for :func:`f32_forward_tol`; returns
    ``(exact float64, bound float64)``, each (N, ...).

    The layers above the last one that rounds (a ReLU, a max pooling, a flatten on top) pass
    its bound on as :func:`f32_forward_tol` does: rigorously, also at their kinks."""
    import torch.nn.functional as F
    from torch import nn
    steps, idx = _steps(model, x, layer)
    top = idx[layer]
    last = max([i for i in range(top + 1) if _rounds(steps[i])], default=-1)
    roundings = []                       # (zero tensor to differentiate by, its bound)

    def rounded(t, r):
        d = torch.zeros_like(t, requires_grad=True)
        roundings.append((d, r.detach()))
        return t + d

    a = rounded(x.detach().double().cpu(), torch.as_tensor(x_err, dtype=torch.float64).expand(x.shape))
    for step in steps[: last + 1]:
        m = step.module
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            op, w, b, g = _affine(m)
            with torch.no_grad():
                r = g * op(a.abs(), w.abs(), b.abs() if b is not None else None)
            a = rounded(op(a, w, b), r)
        elif isinstance(m, nn.ReLU):
            a = F.relu(a)
        elif isinstance(m, nn.MaxPool2d):
            a = F.max_pool2d(a, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
        elif isinstance(m, nn.LocalResponseNorm):
            a = F.local_response_norm(a, m.size, m.alpha, m.beta, m.k)
            a = rounded(a, _lrn_rel(m) * a.detach().abs())
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            if _avg_window(step) > 1:
                with torch.no_grad():
                    r = gamma(_avg_window(step) + 1) * m(a.abs())
                a = rounded(m(a), r)
        elif isinstance(m, nn.Flatten):
            a = a.reshape(a.shape[0], *step.out_shape)
        elif not isinstance(m, (nn.Dropout, nn.Identity)):
            raise ValueError(f"{step.name}: no float32 bound for {type(m).__name__}")
    flat = a.reshape(a.shape[0], -1)
    bound = torch.zeros(flat.shape, dtype=torch.float64)
    ds = [d for d, _ in roundings]
    for k in range(flat.shape[1]):
        # images do not interact (eval mode): the gradient of the sum over images is each one's
        grads = torch.autograd.grad(flat[:, k].sum(), ds, retain_graph=k + 1 < flat.shape[1])
        bound[:, k] = sum((g.abs() * r).flatten(1).sum(1) for g, (_, r) in zip(grads, roundings))
    a, e = a.detach(), bound.reshape(a.shape)
    with torch.no_grad():
        for step in steps[last + 1: top + 1]:            # none of these rounds
            a, e = _exact_step(step, a, e)
    return a, e


def softmax_f32_err(z: torch.Tensor, z_err: torch.Tensor) -> torch.Tensor:
    """A bound on the error of each float32 softmax probability (``F.softmax``) of logits whose
    float32 values lie within ``z_err`` (elementwise) of the exact logits ``z``, (N, C): (N, 1),
    the same for every class of a row.

    A probability is 1/2-Lipschitz in the logits' max-norm (``|dp_t| <= 2 p_t (1 - p_t)
    max|dz| <= max|dz| / 2``), so the logits' errors move it by at most ``max z_err / 2``. The
    float32 softmax then rounds ``z - max`` (half an ulp of the float32 logits' range, moving
    ``p`` by at most half of that), each ``exp`` (torch's kernel uses Sleef's ``expf_u10``,
    within 1 ulp; 2 are allowed here), in the numerator and in every term of the sum (4 ulps
    of ``p``), the sum of ``C`` terms (``gamma(C)``) and the quotient (a reciprocal of the sum
    and a product, or a division: 1 ulp): relative to ``p <= 1``.
    """
    z = z.double()
    m = z_err.double().amax(-1, keepdim=True)
    rng = (z.amax(-1, keepdim=True) - z.amin(-1, keepdim=True)) + 2 * m
    return m / 2 + EPS32 / 4 * rng + 5 * EPS32 + gamma(z.shape[-1])


def f32_within(actual, exact, bound) -> None:
    """Assert that a float32 result lies within ``bound`` (elementwise, or a number) of the
    exact value computed in float64 (``F64_REL`` of its largest magnitude covers that one's
    rounding)."""
    a = torch.as_tensor(actual).double()
    x = torch.as_tensor(exact).double()
    assert a.shape == x.shape, (tuple(a.shape), tuple(x.shape))
    slack = torch.as_tensor(bound, dtype=torch.float64) + F64_REL * (float(x.abs().max()) if x.numel() else 0.0)
    over = (a - x).abs() - slack
    if bool((over > 0).any()):
        k = int(over.flatten().argmax())
        raise AssertionError(f"{int((over > 0).sum())} of {over.numel()} elements beyond the float32 bound; "
                             f"the worst: |{float(a.flatten()[k])} - {float(x.flatten()[k])}| > "
                             f"{float(slack.expand_as(a).flatten()[k])}")


def f32_repeat_tol(model, x, layers):
    """How far apart two float32 forward passes of ``model`` on the same float32 input ``x``
    can be (in other batches, memory layouts or kernels), per image:
    ``({layer: (N,) bound on the Euclidean distance of the two passes' flattened outputs},
    (N,) bound on the difference of a softmax probability of their logits, taken in float64
    as zfcore.invariance does)``.

    Each pass is within the bound ``B`` of the exact output (:func:`f32_forward_tol` for a
    layer with maps, :func:`f32_forward_tol_ad` for a vector layer and the logits; ``x`` is
    given exactly, ``x_err = 0``): the distance is at most ``2 ||B||_2``, and a float64
    softmax, 1/2-Lipschitz in the logits' max-norm, moves by at most ``2 max B / 2``.
    """
    from zfcore.chain import chain, find_step
    names = [layers] if isinstance(layers, str) else list(layers)
    steps = chain(model, (int(x.shape[2]), int(x.shape[3])))
    maps = [n for n in names if len(steps[find_step(steps, n)].out_shape) > 1]
    bounds = f32_forward_tol(model, x, maps)[1] if maps else {}
    for n in names:
        if n not in bounds:
            bounds[n] = f32_forward_tol_ad(model, x, n)[1]
    logits = f32_forward_tol_ad(model, x, steps[-1].name)[1]
    return {n: 2 * bounds[n].flatten(1).norm(dim=1) for n in names}, logits.flatten(1).amax(1)
