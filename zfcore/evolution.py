"""Feature evolution during training (Zeiler & Fergus 2014, Section 4.1, Fig. 4).

"The lower layers of the model can be seen to converge within a few epochs. However, the
upper layers only develop after a considerable number of epochs (40-50)." Fig. 4 shows, for
a few maps of each layer, the strongest activation over the training set at each saved
epoch, projected down to pixels. :func:`evolution` mines the top 9 of every map at each
checkpoint of a run (:func:`zfcore.mining.mined`, cached); :func:`convergence_table` turns
the claim into numbers (how many of each map's top 9 images are already the final ones, and
how close its filters are to the final filters); :func:`findings` states the verdict.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .error_rates import lr_drops
from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Finding, decide, mean_se
from .mining import TopK, mined, patches, projections

__all__ = ["top_overlap", "filter_similarity", "evolution", "convergence_table", "evolution_projections",
           "findings", "verdict_text", "lr_drops", "CRITERION"]


def top_overlap(a: TopK, b: TopK) -> np.ndarray:
    """Per map, the share of ``a``'s top-k images that are also among ``b``'s: (C,) in [0, 1]."""
    out = np.zeros(a.num_maps)
    for c in range(a.num_maps):
        sa = {int(i) for i in a.images[c] if i >= 0}
        sb = {int(i) for i in b.images[c] if i >= 0}
        out[c] = len(sa & sb) / max(1, len(sa))
    return out


def filter_similarity(a: nn.Module, b: nn.Module, layer: str) -> np.ndarray:
    """Per filter of ``layer``, the cosine similarity of its weights in models ``a`` and ``b``."""
    wa = dict(a.named_modules())[layer].weight.detach().flatten(1).double()
    wb = dict(b.named_modules())[layer].weight.detach().flatten(1).double()
    return torch.nn.functional.cosine_similarity(wa, wb, dim=1).numpy()


def evolution(run, split: str = "train", layers: Optional[Sequence[str]] = None, k: int = 9,
              progress: bool = True) -> Dict[int, Dict[str, TopK]]:
    """Fig. 4: the top-k of every map at each saved epoch of ``run`` (each cached).

    Returns ``{epoch: {layer: TopK}}`` for the epochs of ``run.saved_epochs``; the
    paper uses the training set."""
    return {e: mined(run, split, layers=layers, k=k, progress=progress, epoch=e)
            for e in run.saved_epochs}


def convergence_table(run, tops: Dict[int, Dict[str, TopK]], threshold: float = 0.5) -> dict:
    """Numbers for the paper's claim that lower layers converge within a few epochs and
    upper layers later. For each layer and saved epoch: the mean :func:`top_overlap` of
    that epoch's top-k with the last epoch's, and the mean :func:`filter_similarity` of
    its filters with the final ones; and per layer the first epoch from which the
    overlap stays at or above ``threshold``.

    Returns ``{"epochs": [...], "overlap": {layer: [...]}, "overlap_se": {layer: [...]} (the
    SE of each mean over the layer's maps), "similarity": {layer: [...]}, "settled": {layer:
    epoch or None}}``.
    """
    epochs = sorted(tops)
    last = epochs[-1]
    final = run.load(last)
    overlap, overlap_se, similarity, settled = {}, {}, {}, {}
    for layer in tops[last]:
        per_map = [mean_se(top_overlap(tops[e][layer], tops[last][layer])) for e in epochs]
        ov = [m for m, _, _ in per_map]
        sim = [float(filter_similarity(run.load(e), final, layer).mean()) for e in epochs]
        overlap[layer], overlap_se[layer], similarity[layer] = ov, [se for _, se, _ in per_map], sim
        settled[layer] = next((e for i, e in enumerate(epochs) if all(v >= threshold for v in ov[i:])), None)
    return {"epochs": epochs, "overlap": overlap, "overlap_se": overlap_se, "similarity": similarity,
            "settled": settled}


def evolution_projections(run, tops: Dict[int, Dict[str, TopK]], layer: str, maps: Sequence[int],
                          images, image_size: int):
    """Fig. 4's rows: for each map, the strongest activation over the split at each saved
    epoch, projected with that epoch's model and cut to its receptive field.

    Returns ``(projections (M, E, 3, R, R'), patches (M, E, R, R', 3))``, epochs in
    ``sorted(tops)`` order."""
    epochs = sorted(tops)
    mean = run.mean()
    prs, pas = [], []
    for e in epochs:
        t = tops[e][layer]
        first = TopK(t.layer, t.values[:, :1], t.images[:, :1], t.positions[:, :1])
        model = run.load(e)
        prs.append(projections(images, first, model, mean, image_size, maps=maps)[:, 0])
        pas.append(patches(images, first, model, image_size, maps=maps)[:, 0])
    return np.stack(prs, 1), np.stack(pas, 1)



#: The claim, and the criterion fixed from it before the run.
CLAIM = "the lower layers converge within a few epochs, the upper layers only after many more"
CRITERION = ("an ordering, so a tie does not pass: the lowest layer settles (its top-9 overlap with the last "
             "epoch stays >= 0.5) strictly before the top layer, no layer settles before the layer below it, "
             "and at the middle saved epoch the lowest layer shares more of its top 9 with the last epoch than "
             "the top layer by more than 2 standard errors of the difference (over each layer's maps; within "
             "them not testable); not testable when no layer settles before the last saved epoch")


def _reading(tab: dict):
    """(settled epoch per layer, the last epoch standing in for 'never'; the middle saved epoch;
    each layer's overlap there; the SE of the lowest minus the top layer's there (NaN for a
    table without SEs); the verdict)."""
    epochs = tab["epochs"]
    settled = [tab["settled"][l] if tab["settled"][l] is not None else epochs[-1] for l in tab["settled"]]
    mid = epochs[len(epochs) // 2]
    order = [tab["overlap"][l][epochs.index(mid)] for l in tab["overlap"]]
    se = [tab.get("overlap_se", {}).get(l, [math.nan] * len(epochs))[epochs.index(mid)] for l in tab["overlap"]]
    gap_se = math.hypot(se[0], se[-1])
    if all(e >= epochs[-1] for e in settled):
        return settled, mid, order, gap_se, NOT_TESTABLE
    if not (settled[0] < settled[-1] and all(a <= b for a, b in zip(settled, settled[1:]))):
        return settled, mid, order, gap_se, DOES_NOT_HOLD
    return settled, mid, order, gap_se, decide(order[0] - order[-1], gap_se)


def findings(tab: dict) -> List[Finding]:
    """The verdict on Fig. 4's claim from :func:`convergence_table`'s numbers (:data:`CRITERION`)."""
    settled, mid, order, gap_se, verdict = _reading(tab)
    last = tab["epochs"][-1]
    evidence = (f"no layer's top 9 settles before the last saved epoch ({last}): the run is too short to order "
                f"the layers" if all(e >= last for e in settled) else
                f"{len(tab['epochs'])} saved epochs, threshold 0.5; at epoch {mid} lowest minus top layer "
                f"{order[0] - order[-1]:+.2f} ± {gap_se:.2f} (SE)")
    return [Finding(
        claim=CLAIM, source="Zeiler & Fergus 2014, Section 4.1, Fig. 4",
        published="lower layers converge within a few epochs; upper layers after 40-50 of 70",
        measured=(f"settled at epochs {', '.join(str(s) for s in settled)} (lowest layer first); at epoch {mid} "
                  f"{', '.join(f'{v:.0%}' for v in order)} of the top 9 are final"),
        criterion=CRITERION, verdict=verdict, evidence=evidence)]


def verdict_text(tab: dict, metrics: Sequence[dict]) -> str:
    """The chapter's sentence on the claim (markdown), with what the run's schedule did (``metrics``:
    the run's per-epoch rows, ``run.metrics``)."""
    settled, mid, order, _, verdict = _reading(tab)
    answer = {HOLDS: "Yes", DOES_NOT_HOLD: "No", NOT_TESTABLE: "Not testable on this run"}[verdict]
    drops = lr_drops(metrics)
    schedule = (f"the learning rate was lowered at the start of epoch{'s' if len(drops) > 1 else ''} "
                f"{', '.join(map(str, drops))}" if drops else "the learning rate was never lowered")
    return (f"**Does the paper's observation hold on this run?** {answer}: "
            f"the layers settle at epochs {', '.join(str(s) for s in settled)} (conv1 to conv5; the last saved "
            f"epoch stands for 'not before the end'), and at epoch {mid} "
            f"{', '.join(f'{v:.0%}' for v in order)} of their top-9 images are final ones. "
            f"The schedule of this scale compresses the paper's 70 epochs into {len(metrics)}, and {schedule}.")
