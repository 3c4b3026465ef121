"""A user's model and its preprocessing, for ``zf mine`` and ``zf project``.

Two kinds of model are understood:

* ``"zf"`` (or ``"ours"``): a zfcore checkpoint (:func:`zfcore.runs.load_model`);
  images are stored at the preset's ``stored_size``, the checkpoint's per-pixel
  training mean is subtracted and the centre ``image_size`` crop is taken, as
  evaluation does (Section 3);
* torchvision's plain chains, ``"alexnet"`` and ``"vgg11"``, ``"vgg13"``,
  ``"vgg16"``, ``"vgg19"`` (without batch norm): built with ``weights=None``
  and given the user's state dict (``torch.save(model.state_dict(), path)``);
  images are stored at 256 px (shortest side resized to 256, centre crop), the
  centre 224 crop is taken, scaled to [0, 1] and normalised with the ImageNet
  mean and standard deviation, as torchvision's own evaluation transform does.

:class:`UserModel` holds the model and does its preprocessing;
:class:`PreprocessedSource` wraps stored images as a source that
:func:`zfcore.mining.mine` reads: it yields the model's inputs already
preprocessed, so that ``mine`` is given a zero mean and the crop size as its
``image_size`` (its own mean subtraction and centre crop then change nothing).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .activations import layer_activations, strongest, top_maps
from .chain import chain, SUPPORTED, UnsupportedModel
from .data.folders import BadImage, BadImageWarning, IMAGE_EXTENSIONS, iter_images, load_image
from .data.transforms import center_crop
from .deconv import METHODS, project
from .fields import field_geometry, receptive_fields
from .mining import patches, projections, TopK
from .plots import normalize_projection
from .progress import progress_bar
from .runs import load_error_reason, load_model
from .view import ModelView

__all__ = ["UserModel", "load_user_model", "load_folder", "PreprocessedSource", "ARCHS",
           "TORCHVISION_ARCHS", "IMAGENET_MEAN", "IMAGENET_STD"]

#: torchvision architectures that are plain chains of supported layers (see zfcore.chain).
TORCHVISION_ARCHS = ("alexnet", "vgg11", "vgg13", "vgg16", "vgg19")
#: every accepted ``arch`` (``"ours"`` is an alias of ``"zf"``).
ARCHS = ("zf", "ours") + TORCHVISION_ARCHS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_chw_tensor(images) -> torch.Tensor:
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, S, S), got {tuple(x.shape)}")
    return x


@dataclass
class UserModel:
    """A model (in eval mode) with the preprocessing it was trained with.

    Attributes:
        model: the network, in eval mode.
        name: ``"zfnet checkpoint"``, ``"alexnet"``, ``"vgg16"`` ...
        image_size: side of the crop the model sees (224 for torchvision; the
            checkpoint preset's ``image_size`` for ours).
        stored_size: side images are stored at before the centre crop (256 for
            torchvision; the preset's ``stored_size`` for ours).
        classes: class names (ours), or None.
        mean: ours: the (3, S, S) per-pixel training mean; torchvision: None.
        weights: the file the weights came from (None for random weights).
    """
    model: nn.Module
    name: str
    image_size: int
    stored_size: int
    classes: Optional[List[str]] = None
    mean: Optional[torch.Tensor] = None
    weights: Optional[str] = None

    @property
    def torchvision(self) -> bool:
        return self.mean is None

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device) -> "UserModel":
        self.model.to(device)
        return self

    def preprocess(self, images) -> torch.Tensor:
        """uint8 (N, 3, S, S) stored images -> float32 (N, 3, image_size, image_size) model inputs.

        Ours: minus the checkpoint's per-pixel mean, then the centre crop
        (exactly what :func:`zfcore.mining.mine` and evaluation do). Torchvision:
        the centre crop, /255, then ImageNet mean and standard deviation.
        """
        x = _as_chw_tensor(images)
        if x.shape[-1] != self.stored_size or x.shape[-2] != self.stored_size:
            raise ValueError(f"expected images stored at {self.stored_size} px, got "
                             f"{tuple(x.shape[-2:])}")
        return self.view().batch(x, device=x.device)

    def view(self) -> ModelView:
        """The model with its preprocessing, as every analysis takes it."""
        return ModelView(self.model, self.image_size, mean=self.mean, classes=self.classes,
                         std=None if self.mean is not None else (IMAGENET_MEAN, IMAGENET_STD))

    def display_crop(self, images) -> torch.Tensor:
        """uint8 (N, 3, S, S) -> uint8 (N, 3, image_size, image_size): the part the model sees."""
        return center_crop(_as_chw_tensor(images), self.image_size).contiguous()

    def zero_mean(self) -> torch.Tensor:
        """The (3, image_size, image_size) zeros to give :func:`zfcore.mining.mine` and
        :func:`zfcore.mining.projections` with already preprocessed inputs."""
        return torch.zeros(3, self.image_size, self.image_size)

    def source(self, images_nhwc, batch_size_hint: Optional[int] = None) -> "PreprocessedSource":
        """A mining source over stored images (N, S, S, 3) uint8 (see :class:`PreprocessedSource`)."""
        return PreprocessedSource(self, images_nhwc)

    def inputs_nhwc(self, images_nhwc, indices: Sequence[int]) -> torch.Tensor:
        """The preprocessed model inputs of ``images_nhwc[indices]`` as (n, s, s, 3) float32:
        the layout :func:`zfcore.mining.projections` indexes (with :meth:`zero_mean`)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images_nhwc)[idx])).permute(0, 3, 1, 2)
        return self.preprocess(x).permute(0, 2, 3, 1).contiguous()

    def display_nhwc(self, images_nhwc, indices: Sequence[int]) -> np.ndarray:
        """The display crops of ``images_nhwc[indices]`` as (n, s, s, 3) uint8 (for
        :func:`zfcore.mining.patches`, whose centre crop then changes nothing)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        return self.view().display(np.asarray(images_nhwc)[idx])


class PreprocessedSource:
    """Stored images (N, S, S, 3) uint8 as a source for :func:`zfcore.mining.mine`.

    ``batches`` yields ``(float32 (n, 3, s, s) model inputs, zero labels)`` in
    data-set order, preprocessed by :meth:`UserModel.preprocess` batch by batch
    (only one batch of floats is held); give ``mine`` :meth:`UserModel.zero_mean`
    and ``image_size=um.image_size``.
    """

    skipped = 0

    def __init__(self, um: UserModel, images_nhwc):
        self.um = um
        self.images = np.asarray(images_nhwc)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, *, shuffle: bool = False, rank: int = 0, world: int = 1, **_):
        if shuffle:
            raise ValueError("a PreprocessedSource is read in order (shuffle=False)")
        n = len(self.images)
        for s in range(0, n, batch_size):
            idx = np.arange(s, min(n, s + batch_size))[rank::world]
            if len(idx) == 0:
                continue
            x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).permute(0, 3, 1, 2)
            yield self.um.preprocess(x), torch.zeros(len(idx), dtype=torch.int64)


# --------------------------------------------------------------------------- loading models

def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def _unknown_arch(arch) -> ValueError:
    return ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)} "
                      f"('zf' reads a zfcore checkpoint; the others a torchvision state dict)")


def _torchvision_builder(arch: str):
    import torchvision.models as tvm
    return getattr(tvm, arch)


def _check_other_torchvision(arch: str) -> None:
    """For a torchvision model name we do not list: say why it is not accepted
    (:class:`zfcore.chain.UnsupportedModel` naming the module when it is not a plain chain)."""
    try:
        import torchvision.models as tvm
        names = set(tvm.list_models(module=tvm))
    except Exception:
        return
    if arch not in names:
        return
    with torch.device("meta"):
        m = tvm.get_model(arch, weights=None)
    for name, mod in m.named_modules():
        if name and not list(mod.children()) and not isinstance(mod, SUPPORTED):
            raise UnsupportedModel(
                f"torchvision's {arch} cannot be walked: module {name!r} ({type(mod).__name__}) is not "
                f"one of {', '.join(t.__name__ for t in SUPPORTED)}; zfcore handles plain chains: "
                f"{', '.join(ARCHS)}")


def _expected_shapes(arch: str) -> Dict[str, Tuple[int, ...]]:
    with torch.device("meta"):
        m = _torchvision_builder(arch)(weights=None)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _read_state_dict(path: Path, arch: str) -> Dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        raise ValueError(f"{path} is not a readable weights file for {arch}: {load_error_reason(e)}; "
                         f"expected a state dict saved with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and state.get("format") == "zfcore-checkpoint":
        raise ValueError(f"{path} is a zfcore checkpoint, not {arch} weights: use --arch zf")
    # common wrappers: {"state_dict": {...}} or {"model": {...}}
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        what = (f"a dict with keys {sorted(map(str, state))[:6]}" if isinstance(state, dict)
                else type(state).__name__)
        raise ValueError(f"{path} does not hold a state dict for {arch} (found {what}); save the "
                         f"weights with torch.save(model.state_dict(), path)")
    if all(k.startswith("module.") for k in state):       # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _guess_arch(state: Dict[str, torch.Tensor], but: str) -> Optional[str]:
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for a in TORCHVISION_ARCHS:
        if a != but and _expected_shapes(a) == shapes:
            return a
    return None


def _check_fit(path: Path, arch: str, state: Dict[str, torch.Tensor]) -> None:
    expected = _expected_shapes(arch)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        parts.append("shape mismatches: " + "; ".join(
            f"{k}: file {tuple(state[k].shape)}, {arch} {expected[k]}" for k in wrong[:4])
            + (f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""))
    if missing:
        parts.append(f"missing keys: {', '.join(missing[:4])}"
                     + (f" (and {len(missing) - 4} more)" if len(missing) > 4 else ""))
    if unexpected:
        parts.append(f"unexpected keys: {', '.join(unexpected[:4])}"
                     + (f" (and {len(unexpected) - 4} more)" if len(unexpected) > 4 else ""))
    guess = _guess_arch(state, arch)
    hint = f"; the file looks like {guess} weights: use --arch {guess}" if guess else ""
    raise ValueError(f"{path} does not fit torchvision's {arch}: {'; '.join(parts)}{hint}")


def load_user_model(arch: str, weights=None, device=None) -> UserModel:
    """The model ``arch`` with the weights in file ``weights``.

    Args:
        arch: ``"zf"`` (or ``"ours"``): ``weights`` is a zfcore checkpoint;
            ``"alexnet"``, ``"vgg11"``, ``"vgg13"``, ``"vgg16"``, ``"vgg19"``: the
            torchvision model built with ``weights=None``, then given the state
            dict in ``weights`` (None: torchvision's random initialisation).
        device: where to put the model (default: the CPU).
    Raises:
        FileNotFoundError: ``weights`` does not exist (the message names it).
        ValueError: an unknown ``arch`` (the message lists the valid ones); a file
            that is not loadable, not a state dict, or whose keys or shapes do not
            fit the architecture (the message names the file, the architecture
            and the first mismatching keys); :class:`zfcore.chain.UnsupportedModel`
            for a model that is not a plain chain.
    """
    a = str(arch).strip().lower() if arch is not None else ""
    if a not in ARCHS:
        _check_other_torchvision(a)
        raise _unknown_arch(arch)
    path = Path(weights) if weights is not None else None
    if path is not None and not path.is_file():
        what = "is a folder, not a weights file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"weights file {path} {what}")
    if a in ("zf", "ours"):
        if path is None:
            raise ValueError("--arch zf needs the checkpoint of a zfcore run (--weights RUN/final.pt)")
        model, ckpt = load_model(path)
        preset = ckpt.get("preset") or {}
        if not isinstance(ckpt.get("mean"), torch.Tensor):
            raise ValueError(f"{path} is a zfcore checkpoint without the training mean its images "
                             f"need ('mean'): expected the final.pt or an epoch checkpoint of a run")
        mean = ckpt["mean"].float()
        image_size = int(preset.get("image_size", getattr(model, "input_size", mean.shape[-1])))
        stored_size = int(preset.get("stored_size", mean.shape[-1]))
        if tuple(mean.shape) != (3, stored_size, stored_size):
            raise ValueError(f"{path}: the checkpoint's mean has shape {tuple(mean.shape)}, expected "
                             f"(3, {stored_size}, {stored_size})")
        um = UserModel(model.eval(), "zfnet checkpoint", image_size, stored_size,
                       list(ckpt.get("classes") or []) or None, mean, str(path))
    else:
        build = _torchvision_builder(a)
        if path is None:
            model = build(weights=None)
        else:
            state = _read_state_dict(path, a)
            _check_fit(path, a, state)
            state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
            with torch.device("meta"):          # no random initialisation to throw away
                model = build(weights=None)
            model.load_state_dict(state, strict=True, assign=True)
        um = UserModel(model.eval(), a, 224, 256, None, None, str(path) if path else None)
    chain(um.model, um.image_size)          # UnsupportedModel (a ValueError) names the module
    if device is not None:
        um.to(device)
    return um


# --------------------------------------------------------------------------- images

def load_folder(folder, stored_size: int, progress: bool = False
                ) -> Tuple[np.ndarray, List[str], List[Tuple[str, str]]]:
    """Every image file directly in ``folder`` (sorted by name), stored as the model expects.

    The files are listed by :func:`zfcore.data.folders.iter_images` (not
    recursively: subfolders are not looked in; links to files are followed,
    while a symlink loop, a broken link or an image-named entry that is not a
    regular file is skipped, with its reason). Each file goes through
    :func:`zfcore.data.folders.load_image` (RGB, shortest side resized to
    ``stored_size``, centre crop). Unreadable files (empty, truncated, not an
    image, over Pillow's decompression-bomb limit ...) are skipped with a
    :class:`~zfcore.data.folders.BadImageWarning` and reported.

    Returns:
        ``(images (N, S, S, 3) uint8, names (N file names), skipped [(name, reason)]
        sorted by name)``.
    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: ``folder`` is not a folder, holds no image files, or none of
            them can be read. Every message names the folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; give a folder of images")
    files, skipped = [], []
    for path, reason in iter_images(folder, recursive=False):
        name = os.path.basename(path)
        if reason is None:
            files.append(name)
        else:
            warnings.warn(f"skipping {path}: {reason}", BadImageWarning, stacklevel=2)
            skipped.append((name, reason))
    if not files:
        if skipped:
            raise ValueError(f"none of the {len(skipped)} image entries in {folder} can be read "
                             f"(first: {skipped[0][0]}: {skipped[0][1]})")
        raise ValueError(f"no images in {folder} (looked for files ending in "
                         f"{', '.join(IMAGE_EXTENSIONS)}, directly in the folder)")
    images, names = [], []
    for name in progress_bar(files, enabled=progress, desc="images", leave=False, unit="image"):
        try:
            images.append(load_image(folder / name, stored_size).permute(1, 2, 0).numpy())
            names.append(name)
        except BadImage as e:
            warnings.warn(f"skipping {folder / name}: {e.reason}", BadImageWarning, stacklevel=2)
            skipped.append((name, e.reason))
    skipped.sort()
    if not images:
        raise ValueError(f"none of the {len(skipped)} image files in {folder} could be read "
                         f"(first: {skipped[0][0]}: {skipped[0][1]})")
    return np.stack(images), names, skipped


# --------------------------------------------------------------------------- mining and projecting

def spatial_layers(um: UserModel) -> List[str]:
    """The layers with (C, H, W) outputs, in forward order (those that can be mined)."""
    return list(field_geometry(um.model, um.image_size))


def check_layers(um: UserModel, layers: Sequence[str]) -> None:
    """ValueError naming an unknown layer, or one without feature maps, and listing the valid ones."""
    names = [s.name for s in chain(um.model, um.image_size) if not s.name.startswith("<")]
    spatial = spatial_layers(um)
    for layer in layers:
        if layer not in names:
            raise ValueError(f"the model ({um.name}) has no layer {layer!r}; layers with feature maps: "
                             f"{', '.join(spatial)}")
        if layer not in spatial:
            raise ValueError(f"layer {layer!r} of {um.name} has no feature maps (it is fully connected "
                             f"or after the flatten); layers with feature maps: {', '.join(spatial)}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers named twice: {', '.join(layers)}")


def topk_entries(um: UserModel, topk, names: Sequence[str]) -> List[dict]:
    """One layer's top-k as JSON-able rows: per map, its entries (image file name and
    index, ``(y, x)`` position in the map, value, and the receptive field box
    ``[y0, y1, x0, x1]`` (half-open) in the pixels of the displayed crop)."""
    c, k = topk.values.shape
    boxes = receptive_fields(um.model, topk.layer, topk.positions.reshape(-1, 2),
                             um.image_size).view(c, k, 4).tolist()
    values, images, positions = topk.values.tolist(), topk.images.tolist(), topk.positions.tolist()
    rows = []
    for m in range(c):
        entries = [{"image": names[i], "index": i, "position": positions[m][j], "value": values[m][j],
                    "box": boxes[m][j]}
                   for j, i in enumerate(images[m]) if i >= 0]
        rows.append({"map": m, "entries": entries})
    return rows


def topk_figures(um: UserModel, images_nhwc, topk, maps: Sequence[int], method: str = "deconvnet",
                 progress: bool = False, batch_size: int = 64):
    """(projections (M, k, 3, R, R'), patches (M, k, R, R', 3) uint8) of ``maps`` of one
    layer's top-k, as Fig. 2 shows them: :func:`zfcore.mining.projections` and
    :func:`zfcore.mining.patches` on the model's inputs and display crops of just the
    images these entries use (so a large folder is never held as floats)."""
    maps = [int(m) for m in maps]
    sub_images = topk.images[maps]
    used = sorted({int(i) for i in sub_images.flatten().tolist() if i >= 0})
    remap = {old: new for new, old in enumerate(used)}
    local = torch.tensor([[remap.get(int(i), -1) for i in row] for row in sub_images.tolist()],
                         dtype=torch.int64).view_as(sub_images)
    sub = TopK(topk.layer, topk.values[maps], local, topk.positions[maps])
    if not used:
        r = patches(np.zeros((1, um.image_size, um.image_size, 3), np.uint8), sub, um.model, um.image_size)
        return np.zeros((len(maps), topk.k, 3) + r.shape[2:4], np.float32), r
    inputs = um.inputs_nhwc(images_nhwc, used)
    shown = um.display_nhwc(images_nhwc, used)
    pr = projections(inputs, sub, um.model, um.zero_mean(), um.image_size, method=method,
                     batch_size=batch_size, progress=progress)
    pa = patches(shown, sub, um.model, um.image_size)
    return pr, pa


def project_image(um: UserModel, image, layer: str, feature: Optional[int] = None, top: int = 9,
                  method: str = "deconvnet") -> dict:
    """Project the strongest activations of one image in ``layer`` down to pixels.

    Args:
        image: the stored image, (3, S, S) uint8 (:func:`zfcore.data.folders.load_image`).
        feature: project this map (its strongest activation in the image); else
        top: the ``top`` maps whose strongest activation in the image is largest
            (descending; ties by lower map index).
        method: ``"deconvnet"``, ``"gradient"`` or ``"guided"`` (:func:`zfcore.deconv.project`).
    Returns:
        ``{"maps", "values", "positions" ((y, x) per map, None for a fully connected
        layer), "boxes" (receptive fields in the displayed crop, or None), "projections"
        ((M, 3, s, s) float32 tensor), "display" ((3, s, s) uint8)}``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    x = um.preprocess(_as_chw_tensor(image[None] if image.dim() == 3 else image)).to(um.device)
    out = layer_activations(um.model, x, layer)[layer][0]         # (C, H, W) or (J,)
    strength = out.flatten(1).amax(1) if out.dim() == 3 else out
    c = int(strength.shape[0])
    kind = "maps" if out.dim() == 3 else "units"
    if feature is not None:
        if not 0 <= int(feature) < c:
            raise ValueError(f"feature {feature} is out of range for layer {layer!r}, which has {c} "
                             f"{kind}: expected 0..{c - 1}")
        maps = [int(feature)]
    else:
        if top < 1:
            raise ValueError(f"--top must be at least 1, got {top}")
        maps = top_maps(um.model, x, layer, min(int(top), c))[0][0].tolist()
    n = len(maps)
    feats = torch.tensor(maps)
    xs = x.expand(n, -1, -1, -1)
    values, positions = strongest(um.model, xs, layer, feats)
    proj = project(um.model, xs, layer, feats, method=method).cpu()
    boxes = None
    if positions is not None:
        boxes = receptive_fields(um.model, layer, positions, um.image_size).tolist()
        positions = positions.tolist()
    return {"maps": maps, "values": values.cpu().tolist(), "positions": positions, "boxes": boxes,
            "projections": proj, "display": um.display_crop(_as_chw_tensor(image[None]))[0]}


def projection_sheet(display, projections, labels: Sequence[str], min_side: int = 128,
                     cols: Optional[int] = None):
    """The image beside its projections (each normalised with
    :func:`zfcore.plots.normalize_projection`), labelled: a PIL image."""
    from PIL import Image, ImageDraw
    s = int(display.shape[-1])
    scale = max(1, -(-min_side // s))
    side = s * scale

    def big(a01: np.ndarray) -> Image.Image:
        img = Image.fromarray((np.clip(a01, 0, 1) * 255).round().astype(np.uint8))
        return img.resize((side, side), Image.NEAREST) if scale > 1 else img

    tiles = [big(normalize_projection(p)) for p in projections]
    n = len(tiles)
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // cols)
    pad, label = 6, 14
    w = side + 3 * pad + cols * (side + pad)
    h = pad + max(1, rows) * (side + label + pad)
    sheet = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad), "image", fill=(0, 0, 0))
    sheet.paste(big(display.permute(1, 2, 0).numpy() / 255.0), (pad, pad + label))
    x0 = side + 3 * pad
    for i, (t, lab) in enumerate(zip(tiles, labels)):
        r, c = divmod(i, cols)
        x, y = x0 + c * (side + pad), pad + r * (side + label + pad)
        draw.text((x, y), lab, fill=(0, 0, 0))
        sheet.paste(t, (x, y + label))
    return sheet
