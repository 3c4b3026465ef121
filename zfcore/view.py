"""A model as the analyses see it: the network with its preprocessing, over stored images.

Every analysis of the book (top-9 mining, deconvnet projections, occlusion, invariance,
correspondence, sanity checks) turns stored images, uint8 at the scale's ``stored_size``,
into what the model was trained to see. :class:`ModelView` is that one step, for our
checkpoints (minus the per-pixel training mean, then the centre ``image_size`` crop:
Section 3's evaluation) and for torchvision's models (the centre crop, /255, then the
ImageNet mean and standard deviation: torchvision's own evaluation transform). A
:class:`zfcore.runs.Run` and a :class:`zfcore.usermodel.UserModel` each give one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .data.transforms import center_crop, preprocess

__all__ = ["ModelView", "as_batch"]


def as_batch(images) -> torch.Tensor:
    """Stored images (N, S, S, 3) uint8, an array or a tensor -> a (N, 3, S, S) uint8 tensor (a view)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected stored images of shape (N, S, S, 3), got {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2)


@dataclass
class ModelView:
    """A model with the preprocessing it was trained with.

    Attributes:
        model: the network (the analyses put it in eval mode while they run).
        image_size: side of the centre crop the model sees.
        mean: our checkpoints: the (3, S, S) per-pixel training mean (Section 3).
        std: torchvision's models: ``(mean, std)`` of the ImageNet channels, applied to
            [0, 1] pixels; then ``mean`` is None.
        classes: class names, or None.
    """
    model: nn.Module
    image_size: int
    mean: Optional[torch.Tensor] = None
    std: Optional[Tuple[Sequence[float], Sequence[float]]] = None
    classes: Optional[List[str]] = None

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def batch(self, x: torch.Tensor, device=None) -> torch.Tensor:
        """uint8 (N, 3, S, S) stored images -> float32 (N, 3, s, s) model inputs, on ``device``
        (default the model's).

        Ours: minus the per-pixel mean, then the centre crop (exactly what evaluation does).
        Torchvision: the centre crop, /255, then the channels' mean and standard deviation.
        """
        device = self.device if device is None else device
        x = x.to(device)
        if self.mean is not None:
            return center_crop(preprocess(x, self.mean.to(device)), self.image_size)
        if self.std is None:
            raise ValueError("a ModelView needs a per-pixel mean (ours) or channel statistics "
                             "(torchvision's models)")
        m = torch.tensor(self.std[0], device=device).view(1, 3, 1, 1)
        s = torch.tensor(self.std[1], device=device).view(1, 3, 1, 1)
        return (center_crop(x, self.image_size).float() / 255.0 - m) / s

    def inputs(self, images, device=None) -> torch.Tensor:
        """Stored images (N, S, S, 3) uint8 (an array or a tensor) -> (N, 3, s, s) float32 inputs."""
        return self.batch(as_batch(images), device)

    def display(self, images) -> np.ndarray:
        """Stored images (N, S, S, 3) uint8 -> the (N, s, s, 3) uint8 part the model sees."""
        return center_crop(as_batch(images), self.image_size).permute(0, 2, 3, 1).numpy()

    @torch.no_grad()
    def predictions(self, images, labels, *, seed: int = 0, limit: Optional[int] = None,
                    batch_size: int = 256):
        """Centre-crop predictions on a seeded sample of a split, to choose example images from.

        Args:
            images: (N, S, S, 3) uint8 stored images: an array or a folder split's lazy
                images (only the sampled ones are decoded, a batch at a time).
            labels: (N,) true classes.
            limit: sample size (None: every image).
        Returns:
            ``(order, pred, p_true)``: the image indices in an order drawn from ``seed``, cut
            to the first ``limit``; and, over all N images, the predicted class (-1 outside
            the sample) and the softmax probability of the true class (0 outside).
        """
        N = len(images)
        order = np.random.default_rng(seed).permutation(N)
        if limit is not None:
            order = order[:max(1, int(limit))]
        look = np.sort(order)
        labels = np.asarray(labels)
        pred = np.full(N, -1, np.int64)
        p_true = np.zeros(N)
        was = self.model.training
        self.model.eval()
        try:
            for b in range(0, len(look), batch_size):
                idx = look[b:b + batch_size]
                prob = torch.softmax(self.model(self.inputs(images[idx])), 1).cpu()
                pred[idx] = prob.argmax(1).numpy()
                p_true[idx] = prob[torch.arange(len(idx)), torch.from_numpy(labels[idx])].double().numpy()
        finally:
            self.model.train(was)
        return order, pred, p_true
