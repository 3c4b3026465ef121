"""A plain convnet as a chain of layers, in forward order.

The deconvnet, the receptive-field geometry, the miner and the occluder all walk
a model layer by layer. They accept any model whose forward pass is a simple
chain of these modules: Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d
(of any output size), LocalResponseNorm, Linear, Dropout, Flatten, Identity.
That covers our models and torchvision's AlexNet and VGG at any input size they
take (their ``avgpool``, an ``AdaptiveAvgPool2d`` to 6x6 or 7x7, leaves the
size unchanged at 224 px and resizes the maps at other sizes); a flatten done
in ``forward`` (as torchvision does with ``torch.flatten``) is recognised.
Anything else gets a clear error naming the module.

Half-precision models (float16, bfloat16) are walked too: PyTorch has no CPU
kernel for their contrast normalisation, so :func:`local_response_norm` computes
it in float32 and rounds the result back (here and in every walk).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Step", "chain", "SUPPORTED", "UnsupportedModel", "find_step", "input_size_of",
           "local_response_norm", "max_pool2d", "dtype_of", "device_of", "EvalMode"]

SUPPORTED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.LocalResponseNorm,
             nn.Linear, nn.Dropout, nn.Flatten, nn.Identity)

_HALF = (torch.float16, torch.bfloat16)


def local_response_norm(m: nn.LocalResponseNorm, h: torch.Tensor) -> torch.Tensor:
    """``m`` (contrast normalisation across maps) applied to ``h`` without touching the module.

    PyTorch's definition, ``h / (k + alpha / size * sum of h^2 over the size maps around)^beta``
    (the window cut at the first and last maps), with the sum over maps taken as ``size``
    shifted slices: on (N, C, H, W) maps several times faster on the CPU than
    ``F.local_response_norm`` (an ``avg_pool3d``), the same to float rounding. Computed in
    float32 for float16 and bfloat16 inputs (PyTorch's CPU kernels have neither) and rounded
    back to ``h``'s dtype.
    """
    if h.dtype in _HALF:
        return local_response_norm(m, h.float()).to(h.dtype)
    if h.dim() != 4:
        return F.local_response_norm(h, m.size, m.alpha, m.beta, m.k)
    c = h.shape[1]
    sq = F.pad(h * h, (0, 0, 0, 0, m.size // 2, (m.size - 1) // 2))
    total = sq[:, 0:c]
    for j in range(1, m.size):
        total = total + sq[:, j:j + c]
    return h / (total * (m.alpha / m.size) + m.k) ** m.beta


def max_pool2d(h: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``F.max_pool2d``, run in the channels-last layout on the CPU, where PyTorch's kernel for
    (N, C, H, W) maps of many channels is several times slower; the same maxima and switches,
    handed back in ``h``'s layout."""
    if h.device.type != "cpu" or h.dim() != 4 or h.shape[1] < 8 or \
            h.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(h, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                            return_indices=return_indices)
    out = F.max_pool2d(h.contiguous(memory_format=torch.channels_last), kernel_size, stride, padding,
                       dilation, ceil_mode=ceil_mode, return_indices=return_indices)
    if return_indices:
        return out[0].contiguous(), out[1].contiguous()
    return out.contiguous()


class UnsupportedModel(ValueError):
    """The model is not a simple chain of the supported layers."""


@dataclass
class Step:
    """One layer of the chain.

    Attributes:
        name: the module's path in the model (``"conv1"``, ``"features.0"``), or
            ``"<flatten>"`` for a flatten done in ``forward``.
        module: the module (an ``nn.Flatten`` for an implicit flatten).
        in_shape, out_shape: per-image shapes, e.g. (3, 224, 224) -> (96, 110, 110).
    """
    name: str
    module: nn.Module
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]


def input_size_of(model: nn.Module, default: int = 224) -> int:
    """The side of the square images ``model`` was built for (ours record it; else ``default``)."""
    return int(getattr(model, "input_size", default))


def dtype_of(model: nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype ``model`` computes in: that of its first floating-point parameter, else ``default``."""
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else default


def device_of(model: nn.Module, x: torch.Tensor) -> torch.device:
    """The device ``model`` computes on: that of its first parameter, else ``x``'s."""
    p = next(model.parameters(), None)
    return p.device if p is not None else x.device


class EvalMode:
    """Put a model in eval mode for the duration of a ``with`` block (dropout off, as every walk
    of the chain needs), then restore every module's own mode."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode
        return False


def chain(model: nn.Module, input_size: Optional[Union[int, Tuple[int, int]]] = None) -> List[Step]:
    """The layers of ``model`` in forward order, with their per-image shapes.

    Runs one forward pass of a zero image of ``input_size`` (default: the
    model's own, else 224) with hooks on every leaf module, and checks that each
    layer's input is the previous layer's output.

    Raises:
        UnsupportedModel: naming the first module that is not supported, or that
            does not take the previous layer's output.
    """
    size = input_size if input_size is not None else input_size_of(model)
    h, w = (size, size) if isinstance(size, int) else size
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    for name, m in leaves:
        if not isinstance(m, SUPPORTED):
            raise UnsupportedModel(
                f"cannot handle module {name!r} ({type(m).__name__}): zfcore walks models made of "
                f"{', '.join(t.__name__ for t in SUPPORTED)}")
    calls: List[list] = []
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = dtype_of(model)

    def before(mod, args, name):
        calls.append([name, mod, args[0], None])
        if isinstance(mod, nn.LocalResponseNorm) and args[0].dtype in _HALF:
            return (args[0].float(),)                  # see local_response_norm

    def after(mod, args, out):
        if isinstance(mod, nn.LocalResponseNorm) and calls[-1][2].dtype in _HALF:
            out = out.to(calls[-1][2].dtype)
        calls[-1][3] = out
        return out
    hooks = []
    for name, m in leaves:
        hooks.append(m.register_forward_pre_hook(lambda mod, args, name=name: before(mod, args, name)))
        hooks.append(m.register_forward_hook(after))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w, device=dev, dtype=dtype))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    steps: List[Step] = []
    prev = None
    seen = set()
    for name, mod, inp, out in calls:
        if name in seen:
            raise UnsupportedModel(f"cannot handle module {name!r}: it runs twice in one forward pass")
        seen.add(name)
        if prev is not None and inp is not prev:
            same_data = (inp.data_ptr() == prev.data_ptr() and inp.numel() == prev.numel())
            if same_data and inp.dim() == 2 and prev.dim() == 4:
                steps.append(Step("<flatten>", nn.Flatten(1), tuple(prev.shape[1:]), tuple(inp.shape[1:])))
            elif not (same_data and inp.shape == prev.shape):
                raise UnsupportedModel(
                    f"cannot handle module {name!r} ({type(mod).__name__}): its input is not the output "
                    f"of the layer before it ({steps[-1].name if steps else 'the image'}); zfcore walks "
                    f"models whose forward pass is a simple chain")
        steps.append(Step(name, mod, tuple(inp.shape[1:]), tuple(out.shape[1:])))
        prev = out
    return steps


def find_step(steps: List[Step], layer: str) -> int:
    """Index of ``layer`` in ``steps``; ValueError listing the valid names if absent."""
    for i, s in enumerate(steps):
        if s.name == layer:
            return i
    valid = [s.name for s in steps if not s.name.startswith("<")]
    raise ValueError(f"the model has no layer {layer!r}; its layers are: {', '.join(valid)}")
