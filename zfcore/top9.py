"""Chapter 03's figures and verdict (Section 4, Fig. 2): a layer's top 9, drawn, and how
class-specific each layer's maps are.

The top 9 themselves come from :func:`zfcore.mining.mined`; here they are turned into the
chapter's figures (:func:`layer_figures`), its purity table (:func:`purity_rows`) and its one
claim (:func:`findings`, :func:`purity_text`).
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, SE_MARGIN, Finding, decide, mean_se
from .mining import TopK, chance_purity, class_purity, patches, projections
from .plots.features import feature_grid, feature_sheet
from .tables import html_table, image_details_html
from .view import ModelView

__all__ = ["layer_figures", "figure_caption", "sheet_caption", "purity_rows", "purity_table", "findings", "purity_text", "PURITY_HEADER"]

PURITY_HEADER = ["layer", "maps", "mean class purity of the top 9", "maps with 5 or more of one class"]


def layer_figures(tk: TopK, images, view: ModelView, maps_shown: int, rng: np.random.Generator):
    """Fig. 2 for one layer: ``(figure, html)``, the top 9 of ``maps_shown`` maps drawn at
    random from ``rng`` (projections beside patches, :func:`zfcore.plots.feature_grid`), and a
    collapsed sheet of every map of the layer (:func:`zfcore.plots.feature_sheet`)."""
    shown = sorted(rng.choice(tk.num_maps, size=min(maps_shown, tk.num_maps), replace=False).tolist())
    pr = projections(images, tk, view.model, view.mean, view.image_size)
    pa = patches(images, tk, view.model, view.image_size)
    fig = feature_grid(pr[shown], pa[shown], shown, title=f"{tk.layer}: top 9 of {len(shown)} random maps "
                       f"(receptive field {pa.shape[2]}x{pa.shape[3]} px)", cols=2)
    sheet = feature_sheet(pr, pa, list(range(tk.num_maps)))
    return fig, image_details_html(sheet, f"All {tk.num_maps} maps of {tk.layer} (click to open)")


def figure_caption(layer: str, maps_shown: int) -> str:
    """The caption of :func:`layer_figures`' figure for ``layer``."""
    return (f"{layer}: the top 9 activations over the validation set of {maps_shown} random maps, deconv "
            "projections (left) beside the image patches they see (right), as in Fig. 2")


def sheet_caption(layer: str) -> str:
    """The caption of :func:`layer_figures`' sheet of every map of ``layer``."""
    return f"{layer}: the same for every map of the layer, in one sheet (open it above; click it for full size)"


def purity_rows(top9: Dict[str, TopK], labels) -> List[Tuple[str, int, str, str]]:
    """Per layer: its maps, the mean class purity of their top 9 (:func:`zfcore.mining.class_purity`)
    with its standard error over the maps, and the share of maps with 5 or more of one class, as
    the table shows them."""
    rows = []
    for layer, tk in top9.items():
        pur = class_purity(tk, labels)
        m, se, _ = mean_se(pur)
        rows.append((layer, tk.num_maps, f"{m:.2f} ± {se:.2f}", f"{(pur >= 5 / 9).mean():.0%}"))
    return rows


def purity_table(rows: Sequence[tuple], labels) -> Tuple[str, float]:
    """``(html, chance)``: the purity table, captioned with the purity of 9 random images."""
    chance = chance_purity(labels, k=9)
    return html_table(rows, PURITY_HEADER, caption=f"9 random validation images: purity {chance:.2f}"), chance


def findings(top9: Dict[str, TopK], labels, chance: float) -> List[Finding]:
    """The claim: the higher the layer, the more class-specific its maps. Each layer's maps give
    one purity each (:func:`zfcore.mining.class_purity`); with :func:`zfcore.findings.decide` on
    the means and their SEs over the maps (the layers' maps are different maps, so the SEs add),
    it holds when the last layer's mean is above the first's beyond 2 SE and no step from a layer
    to the next falls beyond 2 SE; it does not hold when a step falls, or the last is below the
    first, beyond 2 SE; otherwise (a rise within its SE) it is not testable."""
    stats = [mean_se(class_purity(tk, labels))[:2] for tk in top9.values()]
    (m0, s0), (m1, s1) = stats[0], stats[-1]
    rise = decide(m1 - m0, math.hypot(s0, s1))
    falls = [(b[0] - a[0], math.hypot(a[1], b[1])) for a, b in zip(stats, stats[1:])]
    fell = [decide(d, se) == DOES_NOT_HOLD for d, se in falls]
    verdict = DOES_NOT_HOLD if any(fell) else rise
    return [Finding(
        claim="the higher the layer, the more its maps respond to one kind of object",
        source="Zeiler & Fergus 2014, Section 4, Fig. 2 (read by eye)",
        published="no number: the figures, read by eye",
        measured=" → ".join(f"{m:.2f}" for m, _ in stats),
        criterion=f"mean top-9 class purity over a layer's maps: the last layer's above the first's by more than "
                  f"{SE_MARGIN:g} standard errors of the difference, and no step from a layer to the next falling by "
                  f"more than {SE_MARGIN:g} SE; a rise within its SE is not testable",
        verdict=verdict,
        evidence=f"last minus first {m1 - m0:+.2f} ± {math.hypot(s0, s1):.2f} (SE); steps "
                 + ", ".join(f"{d:+.2f} ± {se:.2f}" for d, se in falls) + f"; chance {chance:.2f}")]


def purity_text(finding: Finding) -> str:
    """The sentence the chapter states (from :func:`findings`)."""
    rises = {HOLDS: "rises", DOES_NOT_HOLD: "does not rise steadily",
             NOT_TESTABLE: "rises too little against its standard error to tell"}[finding.verdict]
    return f"On this run the top-9 purity {rises} with depth ({finding.measured}; {finding.evidence})."
