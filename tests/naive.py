"""Naive references the tests hold zfcore against: one occluded image at a time through the
model's own forward (Fig. 7), and a receptive field's ground truth, the gradient's support."""
import copy

import torch
from torch import nn

from zfcore.occlusion import occluder_grid


def naive_occlusion(model, x, size, stride, fill, target, module, feature, rectify=True):
    """One occluded copy of ``x`` (1, 3, H, W) at a time through ``model``; ``module``'s output
    read by a hook (cloned: torchvision's ReLUs are in place), and rectified (``max(0, .)``, the
    paper's total activity of a rectified map) unless ``rectify=False``.

    Returns ``(ys, xs, prob, top, act, logits, gap)``: the grid, the target's probability, the
    most probable class, the total activity of map ``feature`` (each (len(ys), len(xs)), float64
    where the model is), every occluded image's logits (P, C) for the tolerance, and the gap
    between the two most probable classes."""
    ys, xs = occluder_grid(x.shape[2], x.shape[3], size, stride)
    seen = {}
    hook = module.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.detach().clone()))
    shape = (len(ys), len(xs))
    prob, act, gap = (torch.zeros(shape, dtype=torch.float64) for _ in range(3))
    top = torch.zeros(shape, dtype=torch.long)
    logits = []
    model.eval()
    try:
        with torch.no_grad():
            for i, yy in enumerate(ys):
                for j, xx in enumerate(xs):
                    xo = x.clone()
                    xo[:, :, yy:yy + size, xx:xx + size] = fill
                    z = model(xo)[0]
                    p = torch.softmax(z, 0)
                    prob[i, j], top[i, j] = p[target], p.argmax()
                    two = p.topk(2).values
                    gap[i, j] = two[0] - two[1]
                    logits.append(z)
                    a = seen["out"][0, feature]
                    act[i, j] = (torch.relu(a) if rectify else a).sum()
    finally:
        hook.remove()
    return ys, xs, prob, top, act, torch.stack(logits), gap


def positive_copy(model: nn.Module) -> nn.Module:
    """A float64 copy in which every unit is active and no weight is zero: max pooling becomes
    average pooling of the same window (the same geometry; max pooling passes gradient to the
    arg-max only), conv weights and biases positive, so with a positive input every ReLU passes
    its gradient on."""
    m = copy.deepcopy(model).double().eval()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nn.MaxPool2d):
            parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
            setattr(parent, name.rpartition(".")[2],
                    nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, ceil_mode=mod.ceil_mode))
        if isinstance(mod, nn.Conv2d):      # (the forward stops before the fc layers)
            with torch.no_grad():
                mod.weight.copy_((mod.weight.abs() + 0.5) / mod.weight[0].numel())
                mod.bias.fill_(0.01)
    return m


class _Stop(Exception):
    pass


def gradient_support(model, layer, positions, size):
    """(N, H, W) bool: the input pixels with a nonzero gradient for channel 0 of ``layer`` at
    each of the N ``positions`` (y, x), one image per position, on :func:`positive_copy`;
    ``size`` is the image's side or (H, W)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    m = positive_copy(model)
    got = {}

    def hook(mod, inp, out):
        got["out"] = out
        raise _Stop
    h = m.get_submodule(layer).register_forward_hook(hook)
    n = len(positions)
    x = (torch.rand(n, 3, *hw, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
         + 0.5).requires_grad_()
    try:
        m(x)
    except _Stop:
        pass
    finally:
        h.remove()
    pos = torch.as_tensor(positions)
    got["out"][torch.arange(n), 0, pos[:, 0], pos[:, 1]].sum().backward()
    return x.grad.abs().sum(1) > 0
