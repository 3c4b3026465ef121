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
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Step", "chain", "block_layers", "blocks", "forward", "step_forward", "check_images", "SUPPORTED", "UnsupportedModel", "find_step", "input_size_of",
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


# --------------------------------------------------------------------------------------------
# the walk's forward pass: every step's input kept, the max-pool switches recorded

def check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a tensor of images of shape (N, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch of RGB images of shape (N, 3, H, W), got shape "
                         f"{tuple(x.shape)}; for one image use x.unsqueeze(0)")
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point images of shape (N, 3, H, W), got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("expected at least one image: got a batch of shape "
                         f"{tuple(x.shape)}, (N, 3, H, W) with N >= 1 expected")
    if bool(torch.isfinite(x.sum())):     # a NaN or an infinity makes the sum one too
        return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        i, c, y, xx = (int(v) for v in bad.nonzero()[0])
        n_nan = int(torch.isnan(x).sum())
        raise ValueError(f"the images hold {n_nan} NaN and {int(bad.sum()) - n_nan} infinite pixel values "
                         f"(the first at image {i}, channel {c}, row {y}, column {xx}: "
                         f"{float(x[i, c, y, xx])}); expected finite values")


def step_forward(step: Step, h: torch.Tensor, switches: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One step on ``h`` with non-in-place ops: (output, max-pool switches or None)."""
    m = step.module
    sw = None
    if isinstance(m, nn.Conv2d):
        h = m(h)
    elif isinstance(m, nn.ReLU):
        h = F.relu(h)
    elif isinstance(m, nn.MaxPool2d):
        out = max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                         return_indices=switches)
        h, sw = out if switches else (out, None)
    elif isinstance(m, nn.LocalResponseNorm):
        h = local_response_norm(m, h)
    elif isinstance(m, (nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        h = m(h)
    elif isinstance(m, nn.Flatten):
        h = h.reshape(h.shape[0], *step.out_shape)
    elif isinstance(m, (nn.Dropout, nn.Identity)):
        pass                                           # eval mode: dropout is the identity
    else:                                              # chain() admits nothing else
        raise UnsupportedModel(f"cannot handle module {step.name!r} ({type(m).__name__})")
    if tuple(h.shape[1:]) != tuple(step.out_shape):
        raise UnsupportedModel(
            f"module {step.name!r} ({type(m).__name__}) gave shape {tuple(h.shape[1:])}, expected "
            f"{tuple(step.out_shape)}")
    return h, sw


def forward(steps: List[Step], x: torch.Tensor, last: int, switches: bool = True
             ) -> Tuple[List[torch.Tensor], List]:
    """Run steps 0..last on ``x`` with non-in-place ops.

    Returns the input of every step run plus the last output (``acts[k]`` is
    step k's input, ``acts[last + 1]`` the output of step ``last``), and the
    max-pool switches (``None`` for steps that are not max pools, and for all
    with ``switches=False``).
    """
    acts = [x]
    switch_list: List = []
    h = x
    for step in steps[: last + 1]:
        h, sw = step_forward(step, h, switches)
        acts.append(h)
        switch_list.append(sw)
    return acts, switch_list


# --------------------------------------------------------------------------------------------
# the paper's layer names

def blocks(model: nn.Module) -> Dict[int, Tuple[str, str]]:
    """Layer k of the paper -> (its weighted module, the last module of its block): see
    :func:`block_layers`."""
    names = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    out: Dict[int, Tuple[str, str]] = {}
    k = 0
    current = None
    for n, m in names:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            digits = "".join(ch for ch in n if ch.isdigit())
            named = n.startswith(("conv", "fc")) and digits
            k = int(digits) if named else k + 1
            current = k
            out[k] = (n, n)
        elif current is not None and not isinstance(m, (nn.Dropout, nn.Flatten)):
            out[current] = (out[current][0], n)
    return out


def block_layers(model: nn.Module) -> Dict[int, str]:
    """Layer k of Section 5.3 -> the module path of the last module of the k-th block.

    A block is a conv layer with what follows it up to the next weighted layer
    (its ReLU, pooling, normalisation), or an fc layer with its ReLU (dropout is
    off in eval mode, so it is left out). For our models: ``{1: "norm1", 2:
    "norm2", 3: "relu3", 4: "relu4", 5: "pool5", 6: "relu6", 7: "relu7", 8:
    "fc8"}``; a model with removed layers (Table 3) numbers its blocks by their
    names (``conv5`` stays layer 5). Works on any flat chain of modules; a
    torchvision model's blocks are numbered in order.
    """
    return {k: last for k, (_, last) in blocks(model).items()}
