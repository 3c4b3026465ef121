"""The sanity checks (zfcore.sanity; beyond the paper): randomization curves and maps,
deletion and insertion curves."""
from __future__ import annotations

from typing import List, Optional, Sequence
from ..saliency import grayscale, normalize_map

__all__ = ["SANITY_COLOURS", "SANITY_NAMES", "randomization_curves", "randomization_maps",
           "deletion_insertion_curves"]


#: One colour per method of :data:`zfcore.saliency.METHODS` (and the random order).
SANITY_COLOURS = {"deconvnet": "C0", "gradient": "C1", "guided": "C2", "occlusion": "C3", "random": "k"}
SANITY_NAMES = {"deconvnet": "deconvnet", "gradient": "gradient", "guided": "guided backprop",
                "occlusion": "occlusion", "random": "random order"}

_SIMILARITY_TITLES = {"spearman": "Spearman rank correlation, |map|", "spearman_signed": "Spearman, signed map",
                      "ssim": "SSIM, |map|"}


def randomization_curves(results: "dict", levels: Optional["dict"] = None,
                         metrics: Sequence[str] = ("spearman", "spearman_signed", "ssim"), title: str = ""):
    """Similarity to the trained network's maps as layers are randomized (Adebayo et al. 2018, Fig. 2).

    Args:
        results: method -> :class:`zfcore.sanity.Randomization` (cascading or independent).
        levels: method -> :class:`zfcore.sanity.Similarity`, the architecture-alone level,
            drawn as a dashed line of the method's colour; None draws none.
        metrics: one panel per similarity measure.

    Returns:
        A Figure: the mean over the images at each step, with one standard error as bars.
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.0), sharey=True, squeeze=False)
    labels: List[str] = []
    for ax, metric in zip(axes[0], metrics):
        for m, res in results.items():
            colour = SANITY_COLOURS.get(m)
            ax.errorbar(range(len(res.layers)), res.mean(metric), yerr=res.sem(metric), color=colour,
                        marker="o", ms=4, capsize=2, label=SANITY_NAMES.get(m, m))
            if levels is not None and m in levels:
                ax.axhline(levels[m].mean(metric), color=colour, ls="--", lw=1)
            labels = res.labels
        ax.set_xticks(range(len(labels)), labels, rotation=45)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(_SIMILARITY_TITLES.get(metric, metric), fontsize=10)
        mode = next(iter(results.values())).mode if results else "cascading"
        ax.set_xlabel("randomized from the top, down to" if mode == "cascading" else "the one layer randomized")
    axes[0, 0].set_ylabel("similarity to the trained network's map")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def randomization_maps(image, results: "dict", index: int = 0, box=None, title: str = "", panel: float = 1.45):
    """One image's maps at every step of a randomization, one row per method.

    Each map is shown as Adebayo et al. show them: the sum over the channels of its absolute
    values, divided by its 99th percentile (:func:`zfcore.saliency.normalize_map`).

    Args:
        image: (H, W, 3) uint8, the image the model saw.
        results: method -> :class:`zfcore.sanity.Randomization`.
        index: which image of the batch.
        box: optional object box ``(x0, y0, x1, y1)``, outlined in green on the image.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    methods = list(results)
    labels = results[methods[0]].labels
    fig, axes = plt.subplots(len(methods), len(labels) + 1, squeeze=False,
                             figsize=(panel * (len(labels) + 1), panel * 1.1 * len(methods) + (0.3 if title else 0)))
    for r, m in enumerate(methods):
        axes[r, 0].imshow(image)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            axes[r, 0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
        axes[r, 0].set_ylabel(SANITY_NAMES.get(m, m), fontsize=8)
        for c, g in enumerate(normalize_map(grayscale(results[m].maps[:, index], absolute=True))):
            axes[r, c + 1].imshow(g, cmap="gray", vmin=0, vmax=1)
    for c, lab in enumerate(labels):
        axes[0, c + 1].set_title(lab, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def deletion_insertion_curves(results: "dict", title: str = ""):
    """Mean deletion and insertion curves (Petsiuk et al. 2018), one line per method.

    Args:
        results: method (or ``"random"``, drawn dashed) -> :class:`zfcore.sanity.DeletionInsertion`.
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, curve in zip(axes, ("deletion", "insertion")):
        for m, res in results.items():
            ax.plot(res.fractions, getattr(res, curve).mean(0), color=SANITY_COLOURS.get(m),
                    ls="--" if m == "random" else "-", label=SANITY_NAMES.get(m, m))
        ax.set_xlabel(f"share of the pixels {'removed' if curve == 'deletion' else 'inserted'}")
        ax.set_title(curve.capitalize() + (" (a lower area is better)" if curve == "deletion"
                                           else " (a higher area is better)"), fontsize=10)
    axes[0].set_ylabel("probability of the class")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
