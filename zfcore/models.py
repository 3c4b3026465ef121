"""The ZF network (Fig. 3) and the Krizhevsky et al. baseline, with the variants of Table 3.

Both models are flat ``nn.Sequential`` modules whose layers read off the page,
like torchvision's ``alexnet.py``: ``model.conv1`` ... ``model.conv5`` are the
convolutions, each followed by ``relu<k>``, and after layers 1, 2 and 5 by
``pool<k>`` (3x3, stride 2); layers 1 and 2 end with ``norm<k>``, the contrast
normalisation across feature maps (Section 3: "a local contrast operation that
normalizes the responses across feature maps"). The classifier is ``fc6``,
``fc7`` (each with ``relu`` and ``dropout`` 0.5) and ``fc8``, the C-way layer
whose softmax is applied by the loss. A layer's module path is its paper name,
and ``model.named_children()`` is the order of the forward pass, so the
deconvnet and the occlusion engine can walk the model without knowing which of
the two it is.

Sizes at 224x224 input (Fig. 3, asserted by the tests)::

    conv1  96 x 7x7 / 2     -> 110x110, pool1 -> 55x55
    conv2 256 x 5x5 / 2     ->  26x26,  pool2 -> 13x13
    conv3 384 x 3x3 / 1     ->  13x13
    conv4 384 x 3x3 / 1     ->  13x13
    conv5 256 x 3x3 / 1     ->  13x13,  pool5 ->  6x6   (9216 inputs to fc6)

The paper does not give paddings. We use padding 1 on conv1 and conv3-5, none on
conv2, and pooling in "ceil mode" (as Caffe, which the authors' successors used,
does): these give exactly the sizes of Fig. 3, and the same pooling also gives
AlexNet's sizes (55 -> 27 -> 13 -> 6) for the Krizhevsky model.

Weights are drawn from N(0, 0.01^2) and biases set to 0 (Section 3).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["zfnet", "krizhevsky", "ZFNet", "CONV_LAYERS", "FC_LAYERS", "layer_names", "get_layer",
           "fig3_comparison",
           "feature_shapes", "architecture_table", "model_config", "build_model"]

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7", "fc8")

# Contrast normalisation across feature maps. The paper gives no constants;
# these are Krizhevsky et al.'s (n=5, alpha=1e-4, beta=0.75, k=2). PyTorch's
# LocalResponseNorm divides alpha by n, as Caffe does, so the effective
# per-map coefficient is 2e-5.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0

# (out_channels, kernel, stride, padding) per conv layer, at full width.
_ZF_CONV = {
    "conv1": (96, 7, 2, 1),
    "conv2": (256, 5, 2, 0),
    "conv3": (384, 3, 1, 1),
    "conv4": (384, 3, 1, 1),
    "conv5": (256, 3, 1, 1),
}
_KRIZHEVSKY_CONV = {
    "conv1": (96, 11, 4, 2),
    "conv2": (256, 5, 1, 2),
    "conv3": (384, 3, 1, 1),
    "conv4": (384, 3, 1, 1),
    "conv5": (256, 3, 1, 1),
}


# Fan-in of every weighted layer of the full-size models at 224 px (Fig. 3 and
# Krizhevsky et al.), the reference of the "matched" initialisation.
_REF_FAN_IN = {
    "zf": {"conv1": 3 * 7 * 7, "conv2": 96 * 5 * 5, "conv3": 256 * 3 * 3, "conv4": 384 * 3 * 3,
           "conv5": 384 * 3 * 3, "fc6": 256 * 6 * 6, "fc7": 4096, "fc8": 4096},
    "krizhevsky": {"conv1": 3 * 11 * 11, "conv2": 96 * 5 * 5, "conv3": 256 * 3 * 3,
                   "conv4": 384 * 3 * 3, "conv5": 384 * 3 * 3, "fc6": 256 * 6 * 6, "fc7": 4096,
                   "fc8": 4096},
}
INIT_MODES = ("paper", "matched")


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ZFNet(nn.Sequential):
    """A plain convnet in the shape of Fig. 3 (or of Krizhevsky et al.).

    A flat ``nn.Sequential``: every layer is a direct child named as the paper
    names it (``conv1``, ``relu1``, ``pool1``, ``norm1``, ..., ``flatten``,
    ``fc6``, ``relu6``, ``drop6``, ..., ``fc8``), so ``model.conv1`` works, the
    module path of a layer is its name, and ``named_children()`` is the order
    of the forward pass.

    Build it with :func:`zfnet` or :func:`krizhevsky` rather than directly.
    """

    def __init__(self, conv_spec: "OrderedDict[str, tuple]", fc_units: Sequence[int],
                 num_classes: int, input_size: int, lrn: bool = True,
                 dropout: float = 0.5, config: Optional[dict] = None, init_std: float = 1e-2):
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        in_ch = 3
        conv_names = list(conv_spec)
        for name, (out_ch, k, s, p) in conv_spec.items():
            i = name[-1]
            layers[name] = nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p)
            layers[f"relu{i}"] = nn.ReLU()
            # pool after layers 1 and 2 and after the last conv layer (pool5);
            # Table 3's "removed layers 3,4" keeps conv5 and its pooling.
            if name in ("conv1", "conv2") or name == conv_names[-1]:
                layers[f"pool{i}"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            if lrn and name in ("conv1", "conv2"):
                layers[f"norm{i}"] = nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)
            in_ch = out_ch
        with torch.no_grad():
            try:
                out = nn.Sequential(layers)(torch.zeros(1, 3, input_size, input_size))
            except RuntimeError as e:
                raise ValueError(f"input_size={input_size} is too small for this architecture "
                                 f"({e}); use at least 48 pixels") from None
        flat = int(out[0].numel())
        layers["flatten"] = nn.Flatten(1)
        prev = flat
        fc_present = (config or {}).get("fc_present", ("fc6", "fc7"))
        for name, units in zip(fc_present, fc_units):
            i = name[-1]
            layers[name] = nn.Linear(prev, units)
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"drop{i}"] = nn.Dropout(dropout)
            prev = units
        layers["fc8"] = nn.Linear(prev, num_classes)
        super().__init__(layers)
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.flat_features = flat
        self.config = dict(config or {})
        self.reset_parameters(init_std)

    def reset_parameters(self, std: float = 1e-2, init: Optional[str] = None) -> None:
        """Section 3: weights drawn from N(0, std^2), biases set to 0.

        With ``init="matched"`` (the small scales) each layer's standard deviation
        is ``std * sqrt(F_ref / F)``, F its fan-in and F_ref the fan-in of the same
        layer in the full-size model at 224 px: every layer then passes the signal
        on with the gain it has in the paper's model. A layer as wide as the
        paper's (conv1 at any width) keeps ``std`` exactly; with ``"paper"`` every
        layer does.
        """
        init = init or self.config.get("init", "paper")
        if init not in INIT_MODES:
            raise ValueError(f"unknown init {init!r}; valid: {', '.join(INIT_MODES)}")
        ref = _REF_FAN_IN[self.config.get("family", "zf")]
        for name, m in self.named_children():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                s = std
                if init == "matched":
                    s = std * math.sqrt(ref[name] / m.weight[0].numel())
                nn.init.normal_(m.weight, 0.0, s)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a batch of RGB images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"this model takes {self.input_size}x{self.input_size} images, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, num_classes={self.num_classes}"


def layer_names(model: nn.Module) -> list:
    """The names of the conv and fc layers of ``model`` in forward order."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module of ``model`` at path ``name`` (``"conv1"``, ``"features.3"`` ...).

    Raises ValueError listing the model's layer names if there is none.
    """
    modules = dict(model.named_modules())
    if not name or name not in modules:
        valid = [n for n, m in modules.items() if n and not list(m.children())]
        raise ValueError(f"the model has no layer {name!r}; its layers are: {', '.join(valid)}")
    return modules[name]


def _build(family: str, num_classes: int, input_size: int, width: float, fc_units: int,
           remove: Sequence[str], conv345: Optional[Sequence[int]], lrn: bool,
           dropout: float, conv1: Optional[tuple] = None, init_std: float = 1e-2,
           init: str = "paper") -> ZFNet:
    base = _ZF_CONV if family == "zf" else _KRIZHEVSKY_CONV
    remove = tuple(sorted(set(remove)))
    bad = [r for r in remove if r not in ("conv3", "conv4", "fc6", "fc7")]
    if bad:
        raise ValueError(f"cannot remove {bad}: Table 3 removes only conv3, conv4, fc6 and fc7")
    spec: "OrderedDict[str, tuple]" = OrderedDict()
    for name, (c, k, s, p) in base.items():
        if name in remove:
            continue
        if conv345 is not None and name in ("conv3", "conv4", "conv5"):
            c = conv345[("conv3", "conv4", "conv5").index(name)]
        if name == "conv1" and conv1 is not None:
            k, s, p = conv1
        spec[name] = (_scaled(c, width), k, s, p)
    fc_present = tuple(n for n in ("fc6", "fc7") if n not in remove)
    fc = [int(fc_units)] * len(fc_present)
    config = dict(family=family, num_classes=num_classes, input_size=input_size, width=width,
                  fc_units=int(fc_units), remove=list(remove),
                  conv345=list(conv345) if conv345 is not None else None, lrn=lrn,
                  dropout=dropout, conv1=list(conv1) if conv1 is not None else None,
                  fc_present=fc_present, init_std=init_std, init=init)
    return ZFNet(spec, fc, num_classes, input_size, lrn=lrn, dropout=dropout, config=config,
                 init_std=init_std)


def zfnet(num_classes: int = 1000, *, input_size: int = 224, width: float = 1.0,
          fc_units: int = 4096, remove: Sequence[str] = (), conv345: Optional[Sequence[int]] = None,
          lrn: bool = True, dropout: float = 0.5, conv1: Optional[tuple] = None,
          init_std: float = 1e-2, init: str = "paper") -> ZFNet:
    """The model of Fig. 3: 7x7 stride-2 first-layer filters, dense layers 3-5.

    Args:
        num_classes: C, the width of the softmax layer fc8.
        input_size: side of the square input the model is built for (224 in the
            paper); it fixes the number of inputs to fc6.
        width: multiplier on every conv layer's number of maps (1.0 is Fig. 3;
            the small scales use 1/4 and 1/8).
        fc_units: units in fc6 and fc7 (4096 in Fig. 3; Table 3 tries 2048 and 8192).
        remove: layers to remove, as in Table 3: any of ``"conv3"``, ``"conv4"``,
            ``"fc6"``, ``"fc7"``.
        conv345: maps in conv3, conv4, conv5 before the width multiplier (Table 3's
            "512, 1024, 512"); default 384, 384, 256.
        lrn: contrast normalisation after pool1 and pool2.
        dropout: dropout rate in fc6 and fc7 (0.5 in the paper).
        conv1: ``(kernel, stride, padding)`` to override the first layer
            (Section 4.1 compares 11x11/4 with 7x7/2).
        init_std: standard deviation of the initial weights (1e-2 in Section 3).
        init: ``"paper"`` (every layer ``init_std``) or ``"matched"`` (scaled per layer
            to keep the full-size model's signal gain; see :meth:`ZFNet.reset_parameters`).
    """
    return _build("zf", num_classes, input_size, width, fc_units, remove, conv345, lrn, dropout, conv1,
                  init_std, init)


def krizhevsky(num_classes: int = 1000, *, input_size: int = 224, width: float = 1.0,
               fc_units: int = 4096, remove: Sequence[str] = (), conv345: Optional[Sequence[int]] = None,
               lrn: bool = True, dropout: float = 0.5, conv1: Optional[tuple] = None,
               init_std: float = 1e-2, init: str = "paper") -> ZFNet:
    """Krizhevsky et al.'s architecture with dense connections (the paper's baseline).

    96 11x11 stride-4 filters in conv1, 256 5x5 in conv2, 384/384/256 3x3 in
    conv3-5, the same pooling, normalisation and fc layers as :func:`zfnet`.
    Arguments as for :func:`zfnet`.
    """
    return _build("krizhevsky", num_classes, input_size, width, fc_units, remove, conv345, lrn,
                  dropout, conv1, init_std, init)


def model_config(model: ZFNet) -> dict:
    """The keyword arguments that rebuild ``model`` with :func:`build_model`."""
    return {k: v for k, v in model.config.items() if k != "fc_present"}


def build_model(config: dict) -> ZFNet:
    """Rebuild a model from :func:`model_config` (as stored in checkpoints)."""
    cfg = dict(config)
    family = cfg.pop("family", "zf")
    if family not in ("zf", "krizhevsky"):
        raise ValueError(f"unknown model family {family!r}; expected 'zf' or 'krizhevsky'")
    fn = zfnet if family == "zf" else krizhevsky
    if cfg.get("conv1") is not None:
        cfg["conv1"] = tuple(cfg["conv1"])
    return fn(**cfg)


def feature_shapes(model: nn.Module, input_size: Optional[int] = None) -> "OrderedDict[str, tuple]":
    """Output shape (C, H, W) or (units,) of every named layer for one input image (a zero image
    of side ``input_size``, default the model's, in the model's device and dtype)."""
    size = input_size or getattr(model, "input_size", 224)
    shapes: "OrderedDict[str, tuple]" = OrderedDict()
    hooks = []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    p0 = next(model.parameters(), None)
    device = p0.device if p0 is not None else torch.device("cpu")
    dtype = p0.dtype if p0 is not None and p0.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def architecture_table(model: nn.Module, input_size: Optional[int] = None) -> list:
    """Rows ``(layer, operation, output shape, parameters)`` for the book's Fig. 3 table."""
    shapes = feature_shapes(model, input_size)
    rows = []
    for name, m in model.named_modules():
        if not name or name not in shapes:
            continue
        if isinstance(m, nn.Conv2d):
            op = (f"{m.out_channels} filters {m.kernel_size[0]}x{m.kernel_size[1]}, "
                  f"stride {m.stride[0]}, pad {m.padding[0]}")
        elif isinstance(m, nn.MaxPool2d):
            op = f"max-pool {m.kernel_size}x{m.kernel_size}, stride {m.stride}"
        elif isinstance(m, nn.LocalResponseNorm):
            op = f"contrast norm. across {m.size} maps"
        elif isinstance(m, nn.Linear):
            op = f"{m.out_features} units"
        elif isinstance(m, nn.ReLU):
            op = "ReLU"
        elif isinstance(m, nn.Dropout):
            op = f"dropout {m.p}"
        elif isinstance(m, nn.Flatten):
            op = "flatten"
        else:
            op = type(m).__name__
        params = sum(p.numel() for p in m.parameters(recurse=False))
        rows.append((name, op, shapes[name], params))
    return rows


def fig3_comparison(model: nn.Module, reference: Optional[nn.Module] = None) -> list:
    """Rows comparing Fig. 3 (``reference``, default :func:`zfnet` at 224 px) with ``model``.

    Each row: ``(layer, Fig. 3 operation, Fig. 3 output, this operation, this output,
    this layer's parameters)``, for the conv, pool, norm and fc layers of either.
    """
    reference = reference if reference is not None else zfnet()
    ref = {r[0]: r for r in architecture_table(reference)}
    ours = {r[0]: r for r in architecture_table(model)}
    keep = ("conv", "pool", "norm", "fc")
    names = [n for n in ref if n.startswith(keep)]
    names += [n for n in ours if n.startswith(keep) and n not in ref]

    def fmt(shape):
        return "x".join(str(s) for s in shape)

    rows = []
    for n in names:
        r, o = ref.get(n), ours.get(n)
        rows.append((n, r[1] if r else "-", fmt(r[2]) if r else "-", o[1] if o else "(removed)",
                     fmt(o[2]) if o else "-", f"{o[3]:,}" if o else "-"))
    return rows
