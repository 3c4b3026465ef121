"""The data and the training run (chapter 01): a gallery of scenes, the training curves."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

__all__ = ["scene_gallery", "training_curves"]


def scene_gallery(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], per_class: int = 1,
                  max_classes: Optional[int] = None, cols: int = 10, boxes: Optional[np.ndarray] = None,
                  size: float = 1.0, fontsize: float = 8):
    """A grid of scenes, ``per_class`` examples of each class, titled with the class name.

    Args:
        images: (N, S, S, 3) uint8.
        labels: (N,) class indices.
        boxes: optional (N, 4) boxes ``(x0, y0, x1, y1)`` drawn over the images.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    n_cls = len(classes) if max_classes is None else min(max_classes, len(classes))
    picks = []
    for c in range(n_cls):
        idx = np.flatnonzero(labels == c)[:per_class]
        picks.extend((c, int(i)) for i in idx)
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + fontsize / 40)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (c, i) in zip(axes.flat, picks):
        ax.imshow(images[i])
        ax.set_title(classes[c], fontsize=fontsize)
        if boxes is not None:
            x0, y0, x1, y1 = boxes[i]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
    fig.tight_layout(pad=0.3)
    return fig


def training_curves(metrics: List[dict], title: str = ""):
    """Loss, top-1 and top-5 error per epoch, train and validation; learning-rate drops marked."""
    import matplotlib.pyplot as plt
    ep = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    panels = [("loss", "train_loss", "val_loss", "cross-entropy"),
              ("top-1 error", "train_top1_err", "val_top1_err", "%"),
              ("top-5 error", "train_top5_err", "val_top5_err", "%")]
    drops = [m["epoch"] for a, m in zip(metrics, metrics[1:]) if m["lr"] < a["lr"]]
    for ax, (name, tr, va, unit) in zip(axes, panels):
        ax.plot(ep, [m[tr] for m in metrics], "o-", ms=3, label="train (random crops, dropout on)")
        ax.plot(ep, [m[va] for m in metrics], "s-", ms=3, label="validation (centre crop)")
        for d in drops:
            ax.axvline(d - 0.5, color="grey", ls=":", lw=1)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if drops:
        axes[1].text(0.98, 0.95, "dotted: learning rate / 10", transform=axes[1].transAxes,
                     ha="right", va="top", fontsize=7, color="grey")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
