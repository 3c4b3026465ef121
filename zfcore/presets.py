"""The three scales, in one place: ``tiny``, ``default`` and ``imagenet``.

Notebooks, the ``zf`` command and the tests all read these presets; a chapter's
parameters cell names its scale and nothing else changes between scales.

The ``imagenet`` preset is the paper's recipe (Section 3): 224x224 crops of
256x256 images, the model of Fig. 3 at full width, mini-batches of 128, a
learning rate of 1e-2 annealed by hand (here: divided by 10 when the
validation error has not improved for ``lr_patience`` epochs), 70 epochs.
The two small presets keep the recipe and shrink the sizes: images of
``stored_size`` pixels cropped to ``image_size`` (the ratio 256/224 kept),
``width`` times the maps, fewer epochs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
import threading
from typing import Callable, IO, Tuple

__all__ = ["Preset", "PRESETS", "get_preset", "artifacts_dir", "config_key", "atomic_write",
           "OVERRIDES_VARIABLE", "parse_overrides"]

#: Environment variable with changes to the named presets, as JSON:
#: ``{"imagenet": {"epochs": 30, "workers": 16}}``. ``zf book --set epochs=30`` sets it for
#: the chapters it runs. The run keys include every field but ``workers`` and ``name``, so a
#: changed field that affects results never reuses a run computed without it.
OVERRIDES_VARIABLE = "ZF_PRESET_OVERRIDES"


@dataclass(frozen=True)
class Preset:
    """Every size and setting of one scale.

    Data (the generated scenes, or the user's folders at ``imagenet`` scale):
        image_size: side of the crops the model sees (224 in the paper).
        stored_size: side of the stored images the crops are taken from (256).
        num_classes: source classes (the scale's "ImageNet").
        train_per_class, val_per_class, test_per_class: source images per class.
        target_classes: held-out classes for transfer (the scale's "Caltech").
        target_train: training images per class drawn for transfer (15/30/45/60).
        target_test: test images per class (up to 50 in the paper).
        target_folds: train/test folds for transfer (5).
        multi_classes, multi_train, multi_test: the multi-object, multi-label
            split (the scale's "PASCAL").

    Model (see :func:`zfcore.models.zfnet`):
        width: multiplier on the conv layers' maps; fc_units: units in fc6 and fc7.

    Training (Section 3):
        epochs, batch_size, lr, momentum, weight_decay, dropout; init_std, the
        standard deviation of the initial weights, and init: ``"paper"`` (every
        layer ``init_std``) or ``"matched"`` (each layer's std scaled by
        sqrt(full-size fan-in / fan-in), so the narrow models keep the paper's
        per-layer signal gain; see :meth:`zfcore.models.ZFNet.reset_parameters`);
        lr_patience and
        lr_factor say how the learning rate is annealed; filter_radius is the
        RMS radius of the conv filters (0.1); evolution_epochs are the epochs
        whose checkpoints are kept for feature evolution (Fig. 4).
    """

    name: str
    image_size: int
    stored_size: int
    num_classes: int
    train_per_class: int
    val_per_class: int
    test_per_class: int
    target_classes: int
    target_train: Tuple[int, ...]
    target_test: int
    target_folds: int
    multi_classes: int
    multi_train: int
    multi_test: int
    width: float
    fc_units: int
    epochs: int
    batch_size: int
    evolution_epochs: Tuple[int, ...]
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    init_std: float = 1e-2
    init: str = "paper"
    lr_patience: int = 2
    lr_factor: float = 0.1
    filter_radius: float = 0.1
    seed: int = 0
    workers: int = 0
    data: str = "scenes"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed (e.g. fewer epochs for a quick run)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}; valid: "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


PRESETS = {
    "tiny": Preset(
        name="tiny", image_size=48, stored_size=55,
        num_classes=10, train_per_class=100, val_per_class=10, test_per_class=10,
        target_classes=5, target_train=(5, 10), target_test=10, target_folds=2,
        multi_classes=5, multi_train=60, multi_test=30,
        width=0.25, fc_units=256, init="matched",
        epochs=10, batch_size=32, evolution_epochs=(1, 2, 5, 10), lr_patience=2,
    ),
    "default": Preset(
        name="default", image_size=64, stored_size=73,
        num_classes=100, train_per_class=100, val_per_class=20, test_per_class=20,
        target_classes=30, target_train=(15, 30, 45, 60), target_test=50, target_folds=5,
        multi_classes=20, multi_train=1000, multi_test=500,
        width=0.25, fc_units=512, init="matched",
        epochs=15, batch_size=64, evolution_epochs=(1, 2, 3, 5, 8, 11, 15), lr_patience=2,
    ),
    "imagenet": Preset(
        name="imagenet", image_size=224, stored_size=256,
        num_classes=1000, train_per_class=1300, val_per_class=50, test_per_class=100,
        target_classes=256, target_train=(15, 30, 45, 60), target_test=50, target_folds=5,
        multi_classes=20, multi_train=5717, multi_test=5823,
        width=1.0, fc_units=4096,
        epochs=70, batch_size=128, evolution_epochs=(1, 2, 5, 10, 20, 30, 40, 64, 70),
        lr_patience=3, workers=8, data="folders",
    ),
}


def _field_types() -> dict:
    return {f.name: type(getattr(PRESETS["tiny"], f.name)) for f in dataclasses.fields(Preset)}


def parse_overrides(items) -> dict:
    """``["epochs=30", "workers=16"]`` -> ``{"epochs": 30, "workers": 16}``, typed as the preset's fields.

    A tuple field takes comma-separated values (``evolution_epochs=1,2,5``). Raises a
    ValueError naming the bad item and the valid fields.
    """
    types = _field_types()
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ValueError(f"bad preset setting {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(types))}")
        t = types[key]
        try:
            if t is tuple:
                out[key] = tuple(int(v) for v in value.split(",") if v.strip())
            elif t is bool:
                out[key] = value.strip().lower() in ("1", "true", "yes")
            else:
                out[key] = t(value.strip())
        except ValueError:
            raise ValueError(f"bad preset setting {item!r}: {key} takes a {t.__name__}") from None
    return out


def _env_overrides(name: str) -> dict:
    raw = os.environ.get(OVERRIDES_VARIABLE, "").strip()
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{OVERRIDES_VARIABLE} is not JSON ({e}); expected e.g. "
                         f'{{"imagenet": {{"epochs": 30}}}}') from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError(f"{OVERRIDES_VARIABLE} must map scale names to {{field: value}} objects, "
                         f"e.g. {{\"imagenet\": {{\"epochs\": 30}}}}; got {raw[:80]!r}")
    ch = dict(doc.get(name, {}))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in ch.items()}


def get_preset(scale) -> Preset:
    """The preset named ``scale`` (a :class:`Preset` passes through).

    A named preset takes the changes that :data:`OVERRIDES_VARIABLE` holds for it.
    """
    if isinstance(scale, Preset):
        return scale
    try:
        p = PRESETS[scale]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(PRESETS)}") from None
    ch = _env_overrides(p.name)
    return p.replace(**ch) if ch else p


def artifacts_dir(scale=None) -> Path:
    """``artifacts/<scale>/`` under the repository, or under ``$ZF_ARTIFACTS``."""
    root = os.environ.get("ZF_ARTIFACTS")
    base = Path(root) if root else Path(__file__).resolve().parent.parent / "artifacts"
    if scale is None:
        return base
    return base / get_preset(scale).name


def config_key(*parts, n: int = 12) -> str:
    """A short hash of JSON-able ``parts``: cache entries are keyed by what produced them."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def atomic_write(path, write: Callable[[IO[bytes]], object], fsync: bool = False) -> Path:
    """Write ``path`` so that no reader ever sees half a file and a failure keeps the old one.

    Calls ``write(f)`` on a binary temporary file beside ``path`` (its folder is created),
    then moves it onto ``path`` with ``os.replace``; on any error the temporary file is
    removed and ``path`` is left as it was. Every file zfcore saves (checkpoints, caches,
    metrics, the command's outputs) goes through here.

    Args:
        path: the file to write.
        write: writes the content to the open binary file it is given.
        fsync: flush the data to disk before the rename (checkpoints).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
