"""The scales, in one place: ``tiny``, ``default``, ``scenes224`` and ``imagenet``.

Notebooks, the ``zf`` command and the tests all read these presets; a chapter's
parameters cell names its scale and nothing else changes between scales.

The ``imagenet`` preset is the paper's recipe (Section 3): 224x224 crops of
256x256 images, the model of Fig. 3 at full width, mini-batches of 128, a
learning rate of 1e-2 annealed by hand (here: divided by 10 when the
validation error has not improved for ``lr_patience`` epochs), 70 epochs.
The small presets keep the recipe and shrink the sizes: images of
``stored_size`` pixels cropped to ``image_size`` (the ratio 256/224 kept),
``width`` times the maps, fewer epochs. The ``default`` preset anneals on a
schedule fixed by hand before the run (``lr_drops``), which fits its epochs: the
plateau rule never fired within them (every epoch still gained), and a run stopped
while still learning cannot show what a trained model's features look like.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass
from typing import Tuple

__all__ = ["Preset", "PRESETS", "get_preset", "check_field", "OVERRIDES_VARIABLE", "parse_overrides"]

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
        lr_factor say how the learning rate is annealed (the plateau rule), unless
        lr_drops names the epochs after which it is multiplied by lr_factor (a
        schedule fixed by hand, the plateau rule off); filter_radius is the
        RMS radius of the conv filters (0.1); evolution_epochs are the epochs
        whose checkpoints are kept for feature evolution (Fig. 4); precision:
        ``"float32"`` (the paper's arithmetic) or ``"bfloat16"`` (training's forward
        and backward passes under ``torch.autocast``; the weights, the SGD update and
        every evaluation stay float32: faster on current GPUs, and the run's numbers
        differ from a float32 run's, as another seed's would, not bit for bit).
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
    lr_drops: Tuple[int, ...] = ()
    filter_radius: float = 0.1
    seed: int = 0
    workers: int = 0
    data: str = "scenes"
    precision: str = "float32"

    def __post_init__(self):
        # every field is checked when a preset is made or changed (replace, the overrides of
        # ZF_PRESET_OVERRIDES and `zf book --set`): a bad value fails here, naming the field,
        # before any work, not as a TypeError or ZeroDivisionError epochs later
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):           # JSON has no tuples
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            check_field(f.name, value)
        if self.stored_size < self.image_size:
            raise ValueError(f"stored_size ({self.stored_size}) must be at least image_size "
                             f"({self.image_size}): the crops are taken from the stored images")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed (e.g. fewer epochs for a quick run).

        Raises ValueError naming an unknown field or a bad value (see :func:`check_field`)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}; valid: "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


# What each field of a Preset takes: (kind, lowest, highest, lowest included, highest included).
# "int" counts and sizes, "real" numbers, "ints": a tuple of ints; "choice": one of the listed.
_ALL_INTS = ("image_size", "stored_size", "num_classes", "train_per_class", "val_per_class",
             "test_per_class", "target_classes", "target_test", "target_folds", "multi_classes",
             "multi_train", "multi_test", "fc_units", "epochs", "batch_size", "lr_patience")
_FIELD_RULES = {
    **{name: ("int", 1, None) for name in _ALL_INTS},
    "seed": ("int", 0, None),
    "workers": ("int", 0, None),
    "target_train": ("ints", 1, None),
    "evolution_epochs": ("ints", 1, None),
    "lr_drops": ("ints", 1, None),
    "width": ("real", 0, None, False),
    "lr": ("real", 0, None, False),
    "momentum": ("real", 0, 1, True, False),
    "weight_decay": ("real", 0, None, True),
    "dropout": ("real", 0, 1, True, False),
    "init_std": ("real", 0, None, False),
    "lr_factor": ("real", 0, 1, False, True),
    "filter_radius": ("real", 0, None, False),
    "init": ("choice", ("paper", "matched")),
    "data": ("choice", ("scenes", "folders")),
    "precision": ("choice", ("float32", "bfloat16")),
    "name": ("str",),
}


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_field(name: str, value) -> None:
    """Raise ValueError, naming the field, the value and what it takes, for a bad preset value.

    Counts and sizes are integers of at least 1 (``workers`` and ``seed`` at least 0), the
    tuples ``target_train`` and ``evolution_epochs`` hold such integers, rates and scales are
    finite numbers in their range (``lr`` > 0, 0 <= ``momentum`` < 1, ...), ``init`` and
    ``data`` one of their choices.
    """
    rule = _FIELD_RULES.get(name)
    if rule is None:
        raise ValueError(f"unknown preset field {name!r}; valid: {', '.join(sorted(_FIELD_RULES))}")
    kind = rule[0]
    if kind == "int":
        lo = rule[1]
        if not _is_int(value) or value < lo:
            raise ValueError(f"preset field {name} takes an integer of at least {lo}, got {value!r}")
    elif kind == "ints":
        lo = rule[1]
        if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= lo for v in value):
            raise ValueError(f"preset field {name} takes a list of integers of at least {lo}, "
                             f"got {value!r}")
    elif kind == "real":
        lo, hi = rule[1], rule[2]
        lo_in = rule[3] if len(rule) > 3 else True
        hi_in = rule[4] if len(rule) > 4 else True
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
              and math.isfinite(value)
              and (value >= lo if lo_in else value > lo)
              and (hi is None or (value <= hi if hi_in else value < hi)))
        if not ok:
            low = f"{'>=' if lo_in else '>'} {lo:g}"
            high = f" and {'<=' if hi_in else '<'} {hi:g}" if hi is not None else ""
            raise ValueError(f"preset field {name} takes a number {low}{high}, got {value!r}")
    elif kind == "choice":
        if value not in rule[1]:
            raise ValueError(f"preset field {name} takes one of {', '.join(map(repr, rule[1]))}, "
                             f"got {value!r}")
    elif not isinstance(value, str) or not value:
        raise ValueError(f"preset field {name} takes a non-empty string, got {value!r}")


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
        epochs=24, batch_size=64, evolution_epochs=(1, 2, 3, 5, 8, 12, 16, 20, 24), lr_drops=(16, 21),
    ),
    # Fig. 3's geometry exactly (256 px stored, 224 px crops: conv5 13x13, pool5 6x6) on the
    # scenes, at a quarter of the paper's width and with 50 source classes, so that the whole
    # book runs in minutes on one GPU and in a few hours on a CPU (training: 87 images/s on 2
    # CPU cores at 224 px, batch 64; the main model sees 5,000 images for 30 epochs).
    "scenes224": Preset(
        name="scenes224", image_size=224, stored_size=256,
        num_classes=50, train_per_class=100, val_per_class=20, test_per_class=20,
        target_classes=30, target_train=(15, 30, 45, 60), target_test=50, target_folds=5,
        multi_classes=20, multi_train=1000, multi_test=500,
        width=0.25, fc_units=512, init="matched",
        epochs=30, batch_size=64, evolution_epochs=(1, 2, 3, 5, 10, 20, 30), lr_patience=2,
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
        try:
            check_field(key, out[key])
        except ValueError as e:
            raise ValueError(f"bad preset setting {item!r}: {e}") from None
    return out


def _env_overrides(name: str) -> dict:
    """The changes :data:`OVERRIDES_VARIABLE` holds for the scale ``name``.

    The whole variable is checked whichever scale is asked for: a scale it names must be one
    of :data:`PRESETS`, and its changes must make a valid preset (:meth:`Preset.replace`);
    otherwise ValueError names the variable, the scale and the field.
    """
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
    unknown = [s for s in doc if s not in PRESETS]
    if unknown:
        raise ValueError(f"{OVERRIDES_VARIABLE} names unknown scales {', '.join(map(repr, unknown))}; "
                         f"valid scales: {', '.join(PRESETS)}")
    changes = {s: {k: tuple(v) if isinstance(v, list) else v for k, v in ch.items()}
               for s, ch in doc.items()}
    for s, ch in changes.items():
        try:
            PRESETS[s].replace(**ch)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{OVERRIDES_VARIABLE}, scale {s!r}: {e}") from None
    return changes.get(name, {})


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


