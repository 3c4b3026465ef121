"""Which activations to look at: a layer's maps over a batch, the strongest of a map, an image's top maps.

The forward side of every visualization: :func:`layer_activations` runs the chain walk
(:func:`zfcore.chain.forward`, non-in-place, in eval mode, without gradients) and keeps the
named layers' outputs; :func:`strongest` finds, per image, the position of a map's largest
activation; :func:`top_maps` an image's strongest maps, in a stable order. The deconvnet
(:mod:`zfcore.deconv`) projects what these choose; :func:`select` and :func:`check_selection`
are the argument checks both share (``feature``: an int or one per image; ``position``:
``(y, x)`` or one per image).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .chain import EvalMode, Step, chain, check_images, device_of, dtype_of, find_step, step_forward

__all__ = ["layer_activations", "strongest", "top_maps", "select", "check_selection", "prepare", "outputs",
           "FeatureArg", "PositionArg", "CHUNK_ELEMENTS"]


FeatureArg = Union[int, Sequence[int], torch.Tensor]


PositionArg = Optional[Union[Tuple[int, int], Sequence[int], torch.Tensor]]


def _as_index_vector(value: FeatureArg, n: int, what: str) -> torch.Tensor:
    """``value`` (an int, a sequence or tensor of ints) as a LongTensor of ``n`` entries."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an int or {n} ints, got a bool")
    if isinstance(value, int):
        return torch.full((n,), value, dtype=torch.long)
    t = torch.as_tensor(value)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} must hold integers, got dtype {t.dtype}")
    t = t.to(torch.long).cpu()
    if t.dim() == 0:
        return t.expand(n).clone()
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{what} must be an int or {n} ints (one per image), got shape {tuple(t.shape)}")
    return t


def _as_positions(position: PositionArg, n: int) -> torch.Tensor:
    """``position`` ((y, x) or (N, 2)) as an (n, 2) LongTensor."""
    t = torch.as_tensor(position)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"position must hold integers (y, x), got dtype {t.dtype}")
    t = t.to(torch.long).cpu()
    if t.shape == (2,):
        return t.unsqueeze(0).expand(n, 2).clone()
    if t.shape != (n, 2):
        raise ValueError(f"position must be (y, x) or an ({n}, 2) tensor (one (y, x) per image), "
                         f"got shape {tuple(t.shape)}")
    return t


# Images per chunk of a forward pass that keeps only some outputs: about this many
# floats in its largest level (memory-bound layers are much faster on a batch that
# stays small).
CHUNK_ELEMENTS = 1 << 22


def outputs(steps: List[Step], x: torch.Tensor, keep: Sequence[int]) -> Dict[int, torch.Tensor]:
    """``{k: output of step k}`` for the steps in ``keep``: the chain run up to the last of them
    in chunks of images, nothing else kept (no switches, no other activations)."""
    last = max(keep)
    per_image = max(math.prod(st.out_shape) for st in steps[: last + 1])
    chunk = max(1, CHUNK_ELEMENTS // per_image)
    parts: Dict[int, List[torch.Tensor]] = {k: [] for k in keep}
    for s0 in range(0, x.shape[0], chunk):
        h = x[s0:s0 + chunk]
        for k, step in enumerate(steps[: last + 1]):
            h, _ = step_forward(step, h, switches=False)
            if k in parts:
                parts[k].append(h)
    return {k: v[0] if len(v) == 1 else torch.cat(v) for k, v in parts.items()}


def prepare(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> Tuple[List[Step], List[int], torch.Tensor]:
    """The chain for ``x``'s size, the layers' indices, and ``x`` on the model's device in its dtype."""
    check_images(x)
    steps = chain(model, (int(x.shape[2]), int(x.shape[3])))
    idx = [find_step(steps, layer) for layer in layers]
    x = x.detach().to(device_of(model, x), dtype_of(model, x.dtype))
    return steps, idx, x


def layer_activations(model: nn.Module, x: torch.Tensor,
                      layers: Union[str, Sequence[str]]) -> Dict[str, torch.Tensor]:
    """The outputs of the chosen layers of ``model`` for the images ``x``.

    The model is walked as a chain (:func:`zfcore.chain.chain`) with non-in-place
    operations, in eval mode (dropout off), without gradients; it stops at the
    last layer asked for, in chunks of images, keeping only the outputs asked for.
    Unlike hooks on a torchvision model, whose ReLUs are in place, the output of a
    convolution is its output before the ReLU.

    Args:
        model: a supported chain (:mod:`zfcore.chain`: ours, torchvision's AlexNet
            and VGG at any input size).
        x: images, shape (N, 3, H, W), finite (cast to the model's dtype).
        layers: a module path (``"conv5"``, ``"features.10"``, ``"fc6"``) or a list of them.

    Returns:
        A dict from layer name to its output: (N, C, H', W') for spatial layers,
        (N, J) for fully connected ones.

    Raises:
        ValueError: on images of the wrong shape or an unknown layer (the message
            lists the valid names); :class:`zfcore.chain.UnsupportedModel` (a
            ValueError) for a model that is not a supported chain.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    steps, idx, x = prepare(model, x, names)
    if not idx:
        return {}
    with EvalMode(model), torch.no_grad():
        outs = outputs(steps, x, idx)
    return {name: outs[i] for name, i in zip(names, idx)}


def check_selection(shape: Tuple[int, ...], n: int, layer: str, feature: FeatureArg,
                     position: PositionArg) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Check ``feature`` and ``position`` against the layer's per-image output ``shape``.

    Returns (feature indices (N,), positions (N, 2), or None where none was given)."""
    feats = _as_index_vector(feature, n, "feature")
    c = shape[0]
    kind = "maps" if len(shape) == 3 else "units"
    bad = (feats < 0) | (feats >= c)
    if bool(bad.any()):
        raise ValueError(f"feature {feats[bad][0].item()} is out of range for layer {layer!r}, which has "
                         f"{c} {kind}: expected 0..{c - 1}")
    if len(shape) == 1:
        if position is not None:
            raise ValueError(f"layer {layer!r} is fully connected (output shape {tuple(shape)}): "
                             f"choose a neuron with feature and leave position=None")
        return feats, None
    if len(shape) != 3:
        raise ValueError(f"layer {layer!r} has output shape {tuple(shape)}; expected (C, H, W) or (J,)")
    if position is None:
        return feats, None
    hh, ww = shape[1], shape[2]
    pos = _as_positions(position, n)
    bad = (pos[:, 0] < 0) | (pos[:, 0] >= hh) | (pos[:, 1] < 0) | (pos[:, 1] >= ww)
    if bool(bad.any()):
        y, xx = pos[bad][0].tolist()
        raise ValueError(f"position (y={y}, x={xx}) is out of range for layer {layer!r}, whose maps are "
                         f"{hh}x{ww}: expected y in 0..{hh - 1} and x in 0..{ww - 1}")
    return feats, pos


def select(out: torch.Tensor, layer: str, feature: FeatureArg, position: PositionArg
            ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Pick one activation per image in ``out`` (the layer's output).

    Returns (values (N,), positions (N, 2) or None for fc layers, feature indices (N,)).
    """
    n = out.shape[0]
    feats, pos = check_selection(tuple(out.shape[1:]), n, layer, feature, position)
    rows_d = torch.arange(n, device=out.device)
    feats_d = feats.to(out.device)
    if out.dim() == 2:
        return out[rows_d, feats_d], None, feats
    ww = out.shape[3]
    maps = out[rows_d, feats_d]                               # (N, H, W)
    if pos is None:
        flat = maps.reshape(n, -1).argmax(dim=1).cpu()
        pos = torch.stack([flat // ww, flat % ww], dim=1)
    pos_d = pos.to(out.device)
    values = maps[rows_d, pos_d[:, 0], pos_d[:, 1]]
    return values, pos, feats


def strongest(model: nn.Module, x: torch.Tensor, layer: str, feature: FeatureArg
              ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The strongest activation of map ``feature`` in ``layer``, per image.

    The activation :func:`project` projects when it is given no ``position``
    (the first maximum in row-major order when there are ties).

    Args:
        model: a supported chain (see :func:`layer_activations`).
        x: images, shape (N, 3, H, W).
        layer: module path of the layer (``"conv5"``, ``"features.10"``); its
            output is the activation (for our models ``conv1``...``conv5`` are
            before the ReLU and the pooling).
        feature: the feature map, an int or N ints (a LongTensor of shape (N,)),
            one per image. For a fully connected layer, the neuron.

    Returns:
        ``(values, positions)``: ``values`` of shape (N,), the activations;
        ``positions`` a LongTensor of shape (N, 2) holding (y, x) in the layer's
        maps, or ``None`` for a fully connected layer.

    Raises:
        ValueError: as :func:`project`.
    """
    out = layer_activations(model, x, layer)[layer]
    values, pos, _ = select(out, layer, feature, None)
    return values, pos


def top_maps(model: nn.Module, x: torch.Tensor, layer: str, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each image's ``k`` strongest maps of ``layer``: those whose strongest activation
    (the maximum over positions; for a fully connected layer, the unit itself) is largest.

    In a stable order: descending by that activation, ties to the lower map index.

    Args:
        model: a supported chain (see :func:`layer_activations`).
        x: images, shape (N, 3, H, W).
        layer: module path of the layer.
        k: maps per image (at most the layer's maps).

    Returns:
        ``(maps, values)``: (N, k) LongTensor of map indices and (N, k) float64 activations, on the CPU.

    Raises:
        ValueError: ``k < 1``, or as :func:`layer_activations`.
    """
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    out = layer_activations(model, x, layer)[layer]
    peak = (out.flatten(2).amax(2) if out.dim() == 4 else out).detach().double().cpu()      # (N, C)
    order = torch.sort(peak, dim=1, descending=True, stable=True).indices[:, :min(int(k), peak.shape[1])]
    return order, torch.gather(peak, 1, order)
