"""Data-set-wide top-k activations (Fig. 2).

For every feature map of the chosen layers, the k images of a data set whose
strongest activation in that map is largest (one entry per image, as Fig. 2
shows 9 different images), with where in the map that activation is and its
value. One streaming pass: per batch, each image's maximum over the positions
of each map (and its first arg-max in row-major order) is merged with the
running ``(C, k)`` table; no more than one batch of activations is ever held. Large
maps that a ReLU and a max pooling follow (conv1 of the ZF network) have their maxima read from
the pooled maps, a quarter of the values, and positions searched only in maps that can still
enter the table: the same result, with what it relies on checked in every batch (``_Taps``).

Order: by value, descending; equal values by lower image index. The values are
those of the chosen layer's output (a conv layer's output is the one before its
ReLU: the ranking is the same as after it, unless a map is never positive).

Under torch.distributed every rank mines its share of each global batch and the
ranks' tables are merged: every rank returns the same result, the one a single
process gives.

:func:`mined` is the cached artifact the chapters ask for:
``artifacts/<scale>/mining/<key>.pt``, keyed by the run's weights, the split,
the layers and k. :func:`patches` cuts the image patches the activations see.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import dist as zdist
from .artifacts import artifacts_dir, cached, config_key, file_digest
from .data.splits import data_tag, split_source
from .deconv import project
from .fields import field_geometry, receptive_fields
from .layout import as_layout, preferred_layout
from .models import feature_shapes
from .progress import progress_bar
from .runs import preset_of, save_checkpoint
from .view import ModelView

__all__ = ["TopK", "mine", "mined", "mining_path", "save_topk", "load_topk", "patches",
           "default_layers", "TOPK_FORMAT"]

TOPK_FORMAT = "zfcore-topk"
TOPK_VERSION = 1


@dataclass
class TopK:
    """The top-k of one layer.

    Attributes:
        layer: the layer's name (module path).
        values: (C, k) float32, descending per map (``-inf`` where fewer than k images).
        images: (C, k) int64 data-set indices (-1 where fewer than k images).
        positions: (C, k, 2) int64 ``(y, x)`` of the image's strongest activation in the map.
    """
    layer: str
    values: torch.Tensor
    images: torch.Tensor
    positions: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @property
    def num_maps(self) -> int:
        return int(self.values.shape[0])

    def to_dict(self) -> dict:
        return {"layer": self.layer, "values": self.values, "images": self.images,
                "positions": self.positions}


def default_layers(model: nn.Module) -> List[str]:
    """Every Conv2d of ``model``, in module order (conv1 ... conv5 for ours)."""
    return [n for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d)]


class _Stop(Exception):
    """Raised by the last chosen layer's hook: the layers above are not needed."""


def _first_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """(C, n) -> (C, k) column indices of each row's k largest values, descending, equal values
    by lower index: what a stable descending sort gives, by ``topk`` (several times faster on
    many rows), sorted among themselves. ``topk`` is asked for k + 1: where a row's (k+1)-th
    value equals its k-th, that value also occurs outside the k chosen (duplicate images) and
    which of the equal ones are in is left to the stable sort; otherwise every value outside
    is smaller, and the k chosen are the k of the sort."""
    n = values.shape[1]
    vals, cand = torch.topk(values, min(k + 1, n), dim=1)
    if n > k:
        if bool((vals[:, k] == vals[:, k - 1]).any()):
            return torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
        vals, cand = vals[:, :k], cand[:, :k]
    by_index = torch.sort(cand, dim=1).indices
    cand, vals = cand.gather(1, by_index), vals.gather(1, by_index)
    return cand.gather(1, torch.sort(vals, dim=1, descending=True, stable=True).indices)


def _value_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the tables hold a layer's values in: its own, or float32 for a narrower one
    (bfloat16 and float16 values are float32 numbers, so ranks and ties are those of the maps)."""
    return torch.promote_types(dtype, torch.float32)


def _batch_top(out: torch.Tensor, k: int):
    """One batch's candidates for the top-k of each map: (n, C, H, W) -> (values (C, m), rows
    (C, m), or None for every row in order, flat positions (C, m)) on the CPU; values in the maps'
    dtype, at least float32 (:func:`_value_dtype`), equal values by lower row;
    each position the first arg-max of that image's map in row-major order.

    Channels-last maps: one max pooling over the whole map gives every image's maximum and where
    it first occurs (its window is scanned in row-major order and a later value must be strictly
    greater: the first maximum, as ``argmax``; the tests check it on ties), for all m = n images
    in row order; the choice among them waits for the next merge. Contiguous maps: ``amax`` for
    the maxima (no indices), then the m = min(k, n) largest, and ``argmax`` (documented: the
    first maximal index) only for them. Each is the faster way in its layout."""
    out = out.detach()
    n, c, h, w = out.shape
    if n == 0:                                                           # a rank's empty share
        return (torch.zeros(c, 0, dtype=_value_dtype(out.dtype)), torch.zeros(c, 0, dtype=torch.long),
                torch.zeros(c, 0, dtype=torch.long))
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        vmax, flat = F.max_pool2d(out, (h, w), return_indices=True)
        return (vmax.reshape(n, c).t().to(_value_dtype(out.dtype)).cpu(), None,
                flat.reshape(n, c).t().cpu())
    kk = min(k, n)
    vmax = out.amax(dim=(2, 3)).t().to(_value_dtype(out.dtype)).cpu()    # (C, n)
    rows = _first_k(vmax, kk)
    chans = torch.arange(c).unsqueeze(1).expand(-1, kk)
    maps = out[rows.reshape(-1).to(out.device), chans.reshape(-1).to(out.device)]     # (C*k', H, W)
    flat = maps.reshape(c * kk, -1).argmax(dim=1).reshape(c, kk).cpu()
    return vmax.gather(1, rows), rows, flat


# a layer's maps of one batch larger than this (in values; 4 MiB of float32, a core's L2 cache and
# more) are read again from memory by a pass over every map: where a ReLU and a max pooling follow,
# the pooled maps, a quarter as large and just written, are read instead (:func:`_pooled_top`)
_POOLED_NUMEL = 1 << 20


def _pools_every_position(pool: nn.MaxPool2d, size, pooled) -> bool:
    """Whether ``pool``, taking maps of ``size`` (h, w) to ``pooled`` (h', w'), has every position
    of the map in one of its windows (no dilation, no stride longer than the window, the last
    window reaching the map's end)."""
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    ks, st, pd, dl = (pair(getattr(pool, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
    return all(d == 1 and s <= k and (o - 1) * s - p + k >= n
               for k, s, p, d, n, o in zip(ks, st, pd, dl, size, pooled))


def _pooled_top(maps: torch.Tensor, pooled: torch.Tensor, floor: Optional[torch.Tensor]):
    """:func:`_batch_top`'s candidates of all n images, read from the max pooling of the maps'
    ReLU, or None where the whole-map pass is cheaper.

    Args:
        maps: (n, C, H, W) the layer's output, unchanged.
        pooled: (n, C, h, w) ``maxpool(relu(maps))`` by a pooling whose windows cover every
            position of the map (:func:`_pools_every_position`).
        floor: (1, C) on the maps' device: per map, a value that k images before this batch
            reach or pass (the k-th largest maximum so far; -inf before there are k), or None
            before the first batch.

    The largest pooled value of a map is ``max(0, max of the map)``: where it is positive it is
    the map's maximum, exactly. Positions are searched only in the maps that can still enter
    the top k: an image whose maximum does not pass ``floor`` ranks below k earlier images, all
    of lower index, so it is never chosen and its position is left 0. Maps whose pooled
    maximum is not positive (never positive, or NaN) are read from ``maps`` itself. Returns None
    when more maps than images are to be read (the first batch: every map): then one pass over
    every map (:func:`_batch_top`) is cheaper.
    """
    if floor is None:
        return None
    n, c, h, w = maps.shape
    if pooled.is_contiguous(memory_format=torch.channels_last) and not pooled.is_contiguous():
        vmax = F.max_pool2d(pooled, pooled.shape[2:]).reshape(n, c)
    else:
        vmax = pooled.amax(dim=(2, 3))
    read = ~((vmax > 0) & (vmax <= floor))                    # not positive, NaN, or above the floor
    ni, ci = read.nonzero(as_tuple=True)
    if len(ni) > n:
        return None
    flat = torch.zeros(n, c, dtype=torch.long, device=maps.device)
    if len(ni):
        some = maps.detach()[ni, ci].reshape(len(ni), h * w)
        vmax = vmax.clone()
        vmax[ni, ci] = some.amax(dim=1)
        flat[ni, ci] = some.argmax(dim=1)                     # documented: the first maximal index
    return vmax.t().to(_value_dtype(maps.dtype)).cpu(), None, flat.t().cpu()


def _merge(values, images, positions, k: int):
    """Top-k along dim 1 by value (descending), equal values by lower image index.

    Padding entries (image -1, value -inf) go last."""
    pad = images < 0
    key_img = torch.where(pad, torch.iinfo(torch.int64).max, images)
    o1 = torch.sort(key_img, dim=1, stable=True).indices
    v1 = values.gather(1, o1)
    o2 = torch.sort(v1, dim=1, descending=True, stable=True).indices
    order = o1.gather(1, o2)[:, :k]
    return (values.gather(1, order), images.gather(1, order),
            positions.gather(1, order.unsqueeze(2).expand(-1, -1, 2)))


# batches whose own top-k are merged into the tables at once (the merge's sorts cost about as
# much for 16 batches as for one: the fixed cost of its two dozen operations)
_MERGE_EVERY = 16


def _empty(c: int, k: int):
    return (torch.full((c, k), -float("inf"), dtype=torch.float64),
            torch.full((c, k), -1, dtype=torch.int64), torch.zeros(c, k, 2, dtype=torch.int64))


def _gather_ranks(tables: dict, k: int) -> dict:
    """Merge the per-rank tables (all_gather) so that every rank holds the global top-k."""
    if zdist.active() is None:
        return tables
    return {name: _merge(*(zdist.all_gather_cat(t, 1) for t in table), k)
            for name, table in tables.items()}


@torch.no_grad()
def mine(model: nn.Module, source, mean: torch.Tensor, image_size: int,
         layers: Optional[Sequence[str]] = None, k: int = 9, batch_size: int = 128,
         progress: bool = True, device=None) -> Dict[str, TopK]:
    """The k strongest activations of every map of ``layers`` over ``source``.

    Args:
        model: the network (put in eval mode for the pass, then restored).
        source: a :class:`~zfcore.data.scenes.SceneSource`-like object: ``len(source)``
            and ``batches(batch_size, shuffle=False, rank=, world=)`` yielding
            ``(uint8 (n, 3, S, S), labels)`` in data-set order.
        mean: the (3, S, S) per-pixel training mean; images are mean-subtracted and
            centre-cropped to ``image_size``, as evaluation does.
        layers: module names (default: every Conv2d, see :func:`default_layers`).
        k: entries per map (9 in Fig. 2).
        device: default: the model's.
    Returns:
        ``{layer: TopK}`` in the order of ``layers``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    layers = _check_layers(model, layers)
    rank, world = zdist.rank_world()
    p0 = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (p0.device if p0 is not None
                                                               else torch.device("cpu"))
    dtype = p0.dtype if p0 is not None and p0.is_floating_point() else torch.float32
    view = ModelView(model, image_size, mean=mean.to(device))
    n_total = len(source)
    taps = _Taps(model, layers, k)
    tables = _Tables(layers, k)
    was = model.training
    model.eval()
    try:
        # this machine's faster memory layout (zfcore.layout), decided before the first batch by
        # every rank alike (a rank may get no images), on a batch of the size the ranks run
        probe = torch.zeros(max(1, min(batch_size, -(-batch_size // world))), 3, image_size, image_size,
                            device=device, dtype=dtype)
        layout = preferred_layout(model, probe, forward=taps.run)
        it = source.batches(batch_size, shuffle=False, rank=rank, world=world)
        for b, (xb, _) in enumerate(progress_bar(it, enabled=progress and rank == 0,
                                                 desc="mining", leave=False, unit="batch")):
            glen = min(batch_size, n_total - b * batch_size)
            idx = (b * batch_size + torch.arange(max(glen, 0)))[rank::world]
            if len(idx) != len(xb):
                raise ValueError(f"batch {b} of the source holds {len(xb)} images where {len(idx)} "
                                 f"were expected: mining needs every image in data-set order "
                                 f"(a source that skips unreadable images cannot be mined)")
            taps.run(as_layout(view.batch(xb, device).to(dtype), layout))
            taps.passed()
            missing = [n for n in layers if n not in taps.current]
            if missing:
                raise ValueError(f"layers {missing} did not run in the model's forward pass")
            tables.keep(taps.current, idx)
        result = tables.finish()
    finally:
        taps.remove()
        model.train(was)
    if getattr(source, "skipped", 0):
        raise ValueError(f"the source skipped {source.skipped} unreadable images: the image indices "
                         f"of the result would be wrong; remove the unreadable files and mine again")
    if len(result) != len(layers):
        # a rank that got no images (or an empty source): learn the map counts from a dry run
        shapes = feature_shapes(model, image_size)
        for name in layers:
            result.setdefault(name, _empty(shapes[name][0], k))
    result = _gather_ranks(result, k)
    return {name: TopK(name, result[name][0].float(), result[name][1], result[name][2])
            for name in layers}


def _check_layers(model: nn.Module, layers: Optional[Sequence[str]]) -> List[str]:
    """``layers`` (default every Conv2d) as a list, each a module of ``model``, none twice."""
    modules = dict(model.named_modules())
    layers = list(layers) if layers is not None else default_layers(model)
    if not layers:
        raise ValueError("no layers to mine: the model has no Conv2d; name the layers")
    for name in layers:
        if not name or name not in modules:
            valid = [n for n, m in modules.items() if n and not list(m.children())]
            raise ValueError(f"the model has no layer {name!r}; its layers are: {', '.join(valid)}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers named twice: {layers}")
    return layers


class _Taps:
    """Forward hooks on the mined layers: each batch's own top-k per map, and a forward pass that
    stops after the last of them.

    A mined layer whose next two modules (in the model's order) are a ReLU that does not work in
    place and a :class:`~torch.nn.MaxPool2d` is read after them when its maps are large
    (:data:`_POOLED_NUMEL`): its output is held, and the pooling's hook takes the maxima from the
    pooled maps (:func:`_pooled_top`). Each batch checks that the ReLU took the layer's output and
    the pooling the ReLU's, that neither was changed in place since (tensor versions), and that
    the pooling's windows cover the map; otherwise, or where :func:`_pooled_top` declines, the
    held maps are read whole (:func:`_batch_top`): the result is the same either way.
    """

    def __init__(self, model: nn.Module, layers: List[str], k: int):
        self.model, self.layers, self.k = model, layers, k
        self.current: Dict[str, tuple] = {}
        self.held: Dict[str, list] = {}          # layer -> [maps, version, relu output, its version]
        self.floors: Dict[str, torch.Tensor] = {}  # layer -> (C, k) the k largest maxima so far
        self.floor_rows: Dict[str, torch.Tensor] = {}   # layer -> (1, C) their k-th, on its device
        self.device: Dict[str, torch.device] = {}  # layers held at least once -> their maps' device
        modules = dict(model.named_modules())
        self.hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: self._hook(o, n)) for n in layers]
        leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
        self.after: Dict[str, tuple] = {}
        for i, (n, m) in enumerate(leaves[:-2]):
            relu, pool = leaves[i + 1][1], leaves[i + 2][1]
            if n in layers and type(relu) is nn.ReLU and not relu.inplace and type(pool) is nn.MaxPool2d \
                    and not pool.return_indices:
                self.after[n] = (relu, pool)
                self.hooks.append(relu.register_forward_hook(lambda m, i, o, n=n: self._relu(i, o, n)))
                self.hooks.append(pool.register_forward_hook(lambda m, i, o, n=n: self._pool(m, i, o, n)))

    def _hook(self, out, name):
        if out.dim() != 4:
            raise ValueError(f"layer {name!r} has outputs of shape {tuple(out.shape)}; "
                             f"mining needs (N, C, H, W) feature maps")
        if name in self.after and out.numel() > _POOLED_NUMEL:
            self.held[name] = [out, out._version, None, None]
            self.device[name] = out.device
            return
        self._done(name, _batch_top(out, self.k), out)

    def _done(self, name, top, out):
        self.held.pop(name, None)
        self.current[name] = (top, out.shape[3])
        if len(self.current) == len(self.layers):
            raise _Stop

    def _relu(self, inputs, out, name):
        held = self.held.get(name)
        if held is not None and inputs[0] is held[0] and out is not held[0]:
            held[2], held[3] = out, out._version

    def _pool(self, pool, inputs, out, name):
        held = self.held.get(name)
        if held is None:
            return
        maps, version, relu_out, relu_version = held
        top = None
        if (inputs[0] is relu_out and relu_out._version == relu_version and maps._version == version
                and _pools_every_position(pool, maps.shape[2:], out.shape[2:])):
            top = _pooled_top(maps, out, self.floor_rows.get(name))
        self._done(name, top if top is not None else self._whole(name), maps)

    def _whole(self, name):
        maps, version = self.held[name][:2]
        if maps._version != version:
            raise RuntimeError(f"layer {name!r}'s output was changed in place before mining read it; "
                               f"mine a layer whose output the model leaves as it is")
        return _batch_top(maps, self.k)

    def run(self, x):
        """The forward pass up to the last chosen layer (its hook stops it), or up to the pooling
        after it (see the class)."""
        self.current.clear()
        self.held.clear()
        try:
            self.model(x)
        except _Stop:
            pass
        try:
            for name in list(self.held):        # held maps whose pooling did not run as expected
                self._done(name, self._whole(name), self.held[name][0])
        except _Stop:                           # the last of them: every layer is done
            pass

    def passed(self) -> None:
        """After a batch of the data set (not a probe): each held layer's k largest maxima so far,
        the floor below which later images cannot enter. (A NaN maximum ranks first in ``topk``:
        a NaN floor makes :func:`_pooled_top` read every map, so that it declines.)"""
        for name, device in self.device.items():
            if name not in self.current:
                continue
            values = self.current[name][0][0]
            floor = self.floors.get(name)
            if floor is None:
                floor = values.new_full((values.shape[0], self.k), -float("inf"))
            self.floors[name] = torch.topk(torch.cat([floor, values], 1), self.k, dim=1).values
            self.floor_rows[name] = self.floors[name][:, -1:].t().to(device)

    def remove(self):
        for h in self.hooks:
            h.remove()


class _Tables:
    """Per layer: the top-k so far (values, images, flat positions; (C, k) each) and the batches'
    candidates not merged yet, reduced every :data:`_MERGE_EVERY` batches."""

    def __init__(self, layers: List[str], k: int):
        self.layers, self.k = layers, k
        self.tables: Dict[str, tuple] = {}
        self.pending: Dict[str, list] = {}
        self.widths: Dict[str, int] = {}

    def keep(self, current: Dict[str, tuple], idx: torch.Tensor) -> None:
        """Hold each layer's batch candidates for the next merge, with their data-set indices:
        ``idx`` itself where every image is a candidate (one index per column for every map),
        else each candidate's own."""
        k = self.k
        for name in self.layers:
            (vb, rows, flat), w = current[name]
            if name not in self.tables:
                c = vb.shape[0]
                self.tables[name] = (torch.full((c, k), -float("inf"), dtype=vb.dtype),
                                     torch.full((c, k), -1, dtype=torch.int64),
                                     torch.zeros(c, k, dtype=torch.int64))
                self.pending[name], self.widths[name] = [], w
            self.pending[name].append((vb, idx if rows is None else idx[rows], flat))
            if len(self.pending[name]) >= _MERGE_EVERY:
                self._flush(name)

    def _flush(self, name):
        """The layer's table and its pending candidates, reduced to the k largest per map. The
        columns run in data-set order where values are equal (the table's earlier images first,
        ties among them by index), so :func:`_first_k`'s rule, lower column first, is the lower
        image first. Where the candidates' indices are one per column, only the chosen ones are
        looked up (no (C, images) table of indices is built)."""
        pending = self.pending[name]
        if not pending:
            return
        k = self.k
        tv, ti, tf = self.tables[name]
        # on every thread the process has: measured in the call, a merge took 6.1 ms a pass on
        # two threads against 7.9 ms on one (median of 24 passes, default scale)
        v = torch.cat([tv] + [part[0] for part in pending], 1)
        fl = torch.cat([tf] + [part[2] for part in pending], 1)
        sel = _first_k(v, k)
        if all(part[1].dim() == 1 for part in pending):
            cols = torch.cat([part[1] for part in pending])
            im = torch.where(sel < k, ti.gather(1, sel.clamp(max=k - 1)), cols[(sel - k).clamp(min=0)])
        else:
            im = torch.cat([ti] + [part[1].expand(ti.shape[0], -1) for part in pending], 1).gather(1, sel)
        self.tables[name] = (v.gather(1, sel), im, fl.gather(1, sel))
        self.pending[name] = []

    def finish(self) -> Dict[str, tuple]:
        """Every layer's table with its positions as (y, x): ``{layer: (values, images, positions)}``."""
        for name in self.pending:
            self._flush(name)
        out = {}
        for name, (v, im, fl) in self.tables.items():
            w = self.widths[name]
            # float64 as _empty()'s, for the ranks' merge (the values are exact in it)
            out[name] = (v.double(), im, torch.stack([fl // w, fl % w], 2))
        return out


# --------------------------------------------------------------------------- saving

def save_topk(result: Dict[str, TopK], path, meta: Optional[dict] = None) -> None:
    """Write ``{layer: TopK}`` to ``path`` atomically (a temporary file, then rename)."""
    state = {"format": TOPK_FORMAT, "version": TOPK_VERSION, "meta": dict(meta or {}),
             "layers": [t.to_dict() for t in result.values()]}
    save_checkpoint(path, state)


def load_topk(path) -> Dict[str, TopK]:
    """Read what :func:`save_topk` wrote.

    Raises FileNotFoundError for a missing file and ValueError, naming the file,
    for a truncated, corrupt or foreign one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no mined top-k at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:      # torch.load fails in many ways on a damaged file (struct.error too)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a readable top-k file (truncated, corrupt, or not saved "
                         f"by torch.save): {first}") from None
    if not isinstance(state, dict) or state.get("format") != TOPK_FORMAT:
        raise ValueError(f"{path} is not a zfcore top-k file; expected one written by "
                         f"zfcore.mining.save_topk")
    try:
        return {d["layer"]: TopK(d["layer"], d["values"], d["images"], d["positions"])
                for d in state["layers"]}
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is a damaged top-k file ({e!r})") from None


# --------------------------------------------------------------------------- the cached artifact


def mining_path(run, split: str = "val", layers: Optional[Sequence[str]] = None, k: int = 9,
                scale=None, model: Optional[nn.Module] = None, epoch: Optional[int] = None) -> Path:
    """Where :func:`mined` keeps its result for these settings.

    The key names the data by :func:`zfcore.data.splits.data_tag`: the scenes' folder
    (as it always has), or, at a folder scale, the data folders read.
    """
    p = preset_of(run, scale)
    if layers is None:
        layers = default_layers(model if model is not None else run.load(epoch))
    key = config_key("mining", TOPK_VERSION, Path(run.path).name, file_digest(run.checkpoint(epoch)),
                     split, list(layers), int(k), p.image_size, data_tag(p, split))
    return artifacts_dir(p) / "mining" / f"{key}.pt"


def mined(run, split: str = "val", layers: Optional[Sequence[str]] = None, k: int = 9,
          scale=None, progress: bool = True, batch_size: int = 128,
          epoch: Optional[int] = None) -> Dict[str, TopK]:
    """The top-k of ``run``'s final model (or of its checkpoint at ``epoch``) over a
    split: loaded if cached, else mined and saved.

    Args:
        run: a :class:`zfcore.runs.Run` (complete).
        split: the split (``"val"`` in Fig. 2): of the scenes, or at a folder scale of
            the user's folders (:func:`zfcore.data.splits.load_split`).
        layers: default every conv layer.
        scale: the preset whose data and artifacts folder to use (default: the run's).
    The cache is ``artifacts/<scale>/mining/<key>.pt``, keyed by the run's folder
    name and final weights, the split, the layers, k, the crop size and the data.
    Under torch.distributed the ranks mine together and rank 0 writes.
    """
    p = preset_of(run, scale)
    model = run.load(epoch)
    layers = list(layers) if layers is not None else default_layers(model)
    path = mining_path(run, split, layers, k, p, model=model, epoch=epoch)
    rank, _ = zdist.rank_world()
    meta = {"run": Path(run.path).name, "split": split, "k": int(k), "scale": p.name}

    def compute():
        device = zdist.compute_device()
        mean = run.mean()
        source = split_source(p, split, mean=mean, progress=progress and rank == 0)
        return mine(model.to(device), source, mean, p.image_size, layers=layers, k=k, batch_size=batch_size,
                    progress=progress, device=device)

    def save(result, path):
        if rank == 0:                          # the ranks mine together; rank 0 writes
            save_topk(result, path, meta=meta)
        zdist.barrier()
    return cached(path, compute, load=load_topk, save=save)


# --------------------------------------------------------------------------- patches

def patches(images, topk: TopK, model: nn.Module, image_size: int,
            maps: Optional[Sequence[int]] = None, fill: int = 0) -> np.ndarray:
    """The image patches that the top-k activations see (the right half of Fig. 2).

    Args:
        images: the data set's stored images, (N, S, S, 3) uint8 (numpy or tensor, or a
            folder split's lazy images, of which only those named are read), indexed by
            ``topk.images``; the model saw their centre ``image_size`` crop.
        topk: one layer's :class:`TopK`.
        model: the network (for the receptive-field geometry).
        maps: which maps (default: all).
        fill: the value of pixels outside the image (or of missing entries).
    Returns:
        (M, k, R, R', 3) uint8, R x R' the layer's full field size. Each patch is the
        exact receptive field box (:func:`zfcore.fields.receptive_fields`), placed where
        it lies in the unclipped field, so that a field cut by the image border keeps
        the activation at the same place in every patch.
    """
    maps = list(range(topk.num_maps)) if maps is None else [int(m) for m in maps]
    imgs, where = _needed(images, topk, maps)
    imgs = imgs.numpy() if isinstance(imgs, torch.Tensor) else np.asarray(imgs)
    s = imgs.shape[1]
    top = left = (s - image_size) // 2        # centre_crop's offset
    fy, fx = field_geometry(model, image_size)[topk.layer]
    out = np.full((len(maps), topk.k, fy.size, fx.size, 3), fill, dtype=np.uint8)
    pos = topk.positions[maps].reshape(-1, 2)
    boxes = receptive_fields(model, topk.layer, pos, image_size).view(len(maps), topk.k, 4)
    for a, c in enumerate(maps):
        for j in range(topk.k):
            i = int(topk.images[c, j])
            if i < 0:
                continue
            y, x = topk.positions[c, j].tolist()
            y0, y1, x0, x1 = boxes[a, j].tolist()
            oy, ox = y0 - (fy.start + y * fy.jump), x0 - (fx.start + x * fx.jump)
            out[a, j, oy:oy + y1 - y0, ox:ox + x1 - x0] = imgs[where(i), top + y0:top + y1, left + x0:left + x1]
    return out


def _needed(images, topk: TopK, maps: Sequence[int]):
    """(stored images, index map) for the images ``topk`` names in ``maps``.

    An array or tensor passes through (the identity map); anything else indexable like
    one, such as a folder split's :class:`~zfcore.data.splits.LazyImages`, has only the
    images named decoded, as one (n, S, S, 3) uint8 array, and the map takes a split
    index to its row there.
    """
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return images, int
    idx = topk.images[maps].reshape(-1).numpy() if len(maps) else np.zeros(0, np.int64)
    idx = np.unique(idx[idx >= 0])
    rows = {int(i): r for r, i in enumerate(idx.tolist())}
    sub = images[idx] if len(idx) else np.zeros((0,) + tuple(images.shape[1:]), np.uint8)
    return np.asarray(sub), rows.__getitem__


def projections(images, topk: TopK, model: nn.Module, mean: torch.Tensor, image_size: int,
                maps: Optional[Sequence[int]] = None, method: str = "deconvnet", batch_size: int = 256,
                progress: bool = False) -> np.ndarray:
    """The deconv projections of the top-k activations, cropped to their receptive
    fields (the left half of Fig. 2): each activation projected separately, in its
    own image, then cut to the box its patch shows (same placement as :func:`patches`).

    Args:
        images: the data set's stored images, (N, S, S, 3) uint8, indexed by ``topk.images``
            (as for :func:`patches`: a folder split's lazy images are read only where named).
        topk: one layer's :class:`TopK`.
        model: the network; mean: its (3, S, S) training mean.
        image_size: the crop the model sees (centre crop, as in :func:`mine`).
        maps: which maps (default: all); method: see :func:`zfcore.deconv.project`.
    Returns:
        (M, k, 3, R, R') float32, zero outside the image and for missing entries.
    """
    maps = list(range(topk.num_maps)) if maps is None else [int(m) for m in maps]
    imgs, where = _needed(images, topk, maps)
    imgs = imgs if isinstance(imgs, torch.Tensor) else torch.from_numpy(imgs)
    fy, fx = field_geometry(model, image_size)[topk.layer]
    out = np.zeros((len(maps), topk.k, 3, fy.size, fx.size), np.float32)
    jobs = [(a, c, j) for a, c in enumerate(maps) for j in range(topk.k) if int(topk.images[c, j]) >= 0]
    if not jobs:
        return out
    pos = torch.stack([topk.positions[c, j] for _, c, j in jobs])
    boxes = receptive_fields(model, topk.layer, pos, image_size)
    p0 = next(model.parameters())
    dev, dtype = p0.device, p0.dtype          # the images in the model's dtype, as mine() runs them
    view = ModelView(model, image_size, mean=mean.to(dev))
    for s in progress_bar(range(0, len(jobs), batch_size), enabled=progress, desc=f"project {topk.layer}"):
        part = jobs[s:s + batch_size]
        idx = torch.tensor([where(int(topk.images[c, j])) for _, c, j in part])
        x = view.inputs(imgs[idx], dev).to(dtype)
        feats = torch.tensor([c for _, c, _ in part])
        proj = project(model, x, topk.layer, feats, pos[s:s + batch_size], method=method).cpu().numpy()
        for t, (a, c, j) in enumerate(part):
            y, xx = topk.positions[c, j].tolist()
            y0, y1, x0, x1 = boxes[s + t].tolist()
            oy, ox = y0 - (fy.start + y * fy.jump), x0 - (fx.start + xx * fx.jump)
            out[a, j, :, oy:oy + y1 - y0, ox:ox + x1 - x0] = proj[t, :, y0:y1, x0:x1]
    return out


def class_purity(topk: TopK, labels) -> np.ndarray:
    """For each map, the share of its top-k images that belong to their most common
    class: how class-specific the map's strongest responses are. (C,) floats in [1/k, 1]."""
    labels = np.asarray(labels)
    out = np.zeros(topk.num_maps)
    for c in range(topk.num_maps):
        idx = topk.images[c].numpy()
        idx = idx[idx >= 0]
        if len(idx):
            out[c] = np.bincount(labels[idx]).max() / len(idx)
    return out


def chance_purity(labels, k: int = 9, draws: int = 2000, seed: int = 0) -> float:
    """The mean :func:`class_purity` of ``k`` images drawn at random from ``labels``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(len(labels), size=k, replace=False) for _ in range(draws)])
    return float(np.mean([np.bincount(labels[p]).max() / k for p in picks]))


# --------------------------------------------------------------------------- feature evolution (Fig. 4)


