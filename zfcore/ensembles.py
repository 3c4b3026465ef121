"""Ensembles (Table 2's "N convnets" rows): the softmax of several models, each averaged over
the paper's 10 crops (Section 3), then over the models.

:func:`ten_crop_probs` and :func:`ensemble_probs` take models and stored images;
:func:`ensemble_error` takes finished runs and a split, and caches each run's 10-crop softmax
by the content of its final checkpoint. :mod:`zfcore.ablations` picks the members (the
models that trained) and states the verdict.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from .artifacts import artifacts_dir, cached, config_key, file_digest
from .data.splits import data_tag, split_source
from .presets import Preset, get_preset
from .train import evaluate

__all__ = ["ten_crop_probs", "ensemble_probs", "ensemble_error"]


class _StoredImages:
    """Stored (N, S, S, 3) uint8 images (an array, a tensor, or a folder split's lazy images,
    decoded a batch at a time) as the batch source :func:`zfcore.train.evaluate` reads: in
    order, with placeholder labels (only the probabilities are read)."""

    def __init__(self, images):
        if not torch.is_tensor(images) and not hasattr(images, "shape"):
            images = np.asarray(images)
        if len(images.shape) != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected stored images of shape (N, S, S, 3), got {tuple(images.shape)}")
        self.images = images

    def batches(self, batch_size: int, *, shuffle: bool = False, rank: int = 0, world: int = 1):
        if shuffle or world != 1:
            raise ValueError("stored images are read in order, by one process")
        for s in range(0, len(self.images), batch_size):
            part = self.images[s:s + batch_size]
            part = part if torch.is_tensor(part) else torch.from_numpy(np.ascontiguousarray(part))
            yield part.permute(0, 3, 1, 2), torch.zeros(len(part), dtype=torch.long)


def ten_crop_probs(model: nn.Module, images, mean: torch.Tensor, image_size: int,
                   batch_size: int = 16) -> torch.Tensor:
    """The softmax averaged over the paper's 10 crops (Section 3), per image, as
    :func:`zfcore.train.evaluate` computes it (``ten_crops=True``).

    Args:
        images: (N, S, S, 3) uint8 stored images (an array, a tensor, or a folder split's
            lazy images, decoded a batch at a time); mean: (3, S, S) the model's training mean.
        batch_size: images per forward pass (10 crops each).
    Returns:
        (N, C) float probabilities (rows sum to 1).
    """
    probs: list = []
    evaluate(model, _StoredImages(images), mean, image_size, ten_crops=True, batch_size=batch_size,
             probs_out=probs)
    return torch.cat(probs)


def ensemble_probs(models: Sequence[nn.Module], images, means: Sequence[torch.Tensor],
                   image_size: int, batch_size: int = 128) -> torch.Tensor:
    """Several models' softmax, each averaged over the 10 crops, then over the models
    (Table 2's "N convnets" rows). (N, C)."""
    if len(models) == 0:
        raise ValueError("an ensemble needs at least one model")
    if len(means) != len(models):
        raise ValueError(f"{len(models)} models but {len(means)} means: give one mean per model")
    probs = [ten_crop_probs(m, images, mu, image_size, batch_size) for m, mu in zip(models, means)]
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"the models disagree on the number of classes: {sorted(shapes)}")
    return torch.stack(probs).mean(0)


def _run_probs(run, source, p: Preset, split: str, batch_size: Optional[int]) -> torch.Tensor:
    """The 10-crop softmax of a run's final model on a split's source, cached under
    ``artifacts/<scale>/probs/`` by the run folder's name, the content of its final checkpoint
    and the split's data (so a retrained run, or other data, is computed anew)."""
    ck = run.checkpoint()
    key = config_key("10crop-probs", run.path.name, file_digest(ck), split, data_tag(p, split),
                     p.image_size, len(source))

    def compute():
        out: list = []
        evaluate(run.load(), source, run.mean(), p.image_size, ten_crops=True,
                 batch_size=batch_size or run.preset.batch_size, probs_out=out)
        return torch.cat(out)
    return cached(artifacts_dir(p) / "probs" / f"{key}.pt", compute)


def ensemble_error(runs: Sequence, scale, split: str = "val", batch_size: Optional[int] = None) -> dict:
    """Top-1 and top-5 error (%) of the averaged 10-crop softmax of several finished runs
    (Table 2's "N convnets" rows) on a split (:func:`zfcore.data.splits.split_source`: the
    scenes, or the user's folders at a folder scale): ``{"val_top1", "val_top5", "n",
    "models"}``. Each run's (N, C) probabilities come from :func:`zfcore.train.evaluate`
    (``batch_size`` images at a time; default the run's training batch, as its final
    evaluation) and are cached by content (:func:`zfcore.artifacts.cached`)."""
    runs = list(runs)
    if not runs:
        raise ValueError("an ensemble needs at least one run")
    p = get_preset(scale)
    source = split_source(p, split, progress=False)
    probs = [_run_probs(r, source, p, split, batch_size) for r in runs]
    if len({tuple(q.shape) for q in probs}) != 1:
        raise ValueError("the runs disagree on the number of classes")
    probs = torch.stack(probs).mean(0)
    y = torch.as_tensor(source.labels)
    top = probs.topk(min(5, probs.shape[1]), 1).indices
    top1 = float((top[:, 0] == y).double().mean())
    top5 = float((top == y[:, None]).any(1).double().mean())
    return {"val_top1": 100 * (1 - top1), "val_top5": 100 * (1 - top5), "n": len(y), "models": len(runs)}
