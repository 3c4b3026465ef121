"""What the tests and benchmarks/bench_deconv.py need to compare zfcore.deconv with captum:
a copy of a model that captum's neuron attributions handle as the paper's deconvnet, and
weights that keep the signal O(1) through random networks."""
import copy

import torch
import torch.nn.functional as F
from torch import nn


class _PassThroughLRN(torch.autograd.Function):
    """LRN forward, gradient straight through: "no contrast normalisation on the way down"."""

    @staticmethod
    def forward(ctx, a, size, alpha, beta, k):
        return F.local_response_norm(a, size, alpha, beta, k)

    @staticmethod
    def backward(ctx, g):
        return g, None, None, None, None


class LRNSkippedBackward(nn.Module):
    def __init__(self, lrn: nn.LocalResponseNorm):
        super().__init__()
        self.lrn = lrn

    def forward(self, a):
        return _PassThroughLRN.apply(a, self.lrn.size, self.lrn.alpha, self.lrn.beta, self.lrn.k)


def for_captum(model: nn.Module, skip_lrn: bool = True) -> nn.Module:
    """A copy with non-in-place ReLUs (captum's ReLU hooks need them) and, with ``skip_lrn``,
    LRN layers whose gradient passes straight through."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    if skip_lrn:
        for name, mod in list(m.named_modules()):
            if isinstance(mod, nn.LocalResponseNorm):
                parent_name, _, child = name.rpartition(".")
                parent = m.get_submodule(parent_name) if parent_name else m
                setattr(parent, child, LRNSkippedBackward(mod))
    return m


class Softmax(nn.Module):
    """The model's class probabilities: what captum's ``Occlusion`` maps (Fig. 7 d)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.softmax(self.model(x), dim=1)


def reinit(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights that keep the signal O(1) through the layers, and nonzero biases (so ReLUs gate)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model
