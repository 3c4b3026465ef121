"""Chapter 03's figures and verdict (Section 4, Fig. 2): a layer's top 9, drawn, and how
class-specific each layer's maps are.

The top 9 themselves come from :func:`zfcore.mining.mined`; here they are turned into the
chapter's figures (:func:`layer_figures`), its purity table (:func:`purity_rows`) and its one
claim (:func:`findings`, :func:`purity_text`).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .findings import DOES_NOT_HOLD, HOLDS, Finding
from .mining import TopK, chance_purity, class_purity, patches, projections
from .plots.features import feature_grid, feature_sheet
from .tables import html_table, image_details_html
from .view import ModelView

__all__ = ["layer_figures", "purity_rows", "purity_table", "findings", "purity_text", "PURITY_HEADER"]

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


def purity_rows(top9: Dict[str, TopK], labels) -> List[Tuple[str, int, str, str]]:
    """Per layer: its maps, the mean class purity of their top 9 (:func:`zfcore.mining.class_purity`)
    and the share of maps with 5 or more of one class, as the table shows them."""
    rows = []
    for layer, tk in top9.items():
        pur = class_purity(tk, labels)
        rows.append((layer, tk.num_maps, f"{pur.mean():.2f}", f"{(pur >= 5 / 9).mean():.0%}"))
    return rows


def purity_table(rows: Sequence[tuple], labels) -> Tuple[str, float]:
    """``(html, chance)``: the purity table, captioned with the purity of 9 random images."""
    chance = chance_purity(labels, k=9)
    return html_table(rows, PURITY_HEADER, caption=f"9 random validation images: purity {chance:.2f}"), chance


def findings(rows: Sequence[tuple], chance: float) -> List[Finding]:
    """The claim: the higher the layer, the more class-specific its maps. It holds when the mean
    purity (as shown, two decimals) never falls by more than 0.02 from a layer to the next and
    the last layer's is above the first's."""
    purity = [float(r[2]) for r in rows]
    holds = all(b >= a - 0.02 for a, b in zip(purity, purity[1:])) and purity[-1] > purity[0]
    return [Finding(
        claim="the higher the layer, the more its maps respond to one kind of object",
        source="Zeiler & Fergus 2014, Section 4, Fig. 2 (read by eye)",
        published="no number: the figures, read by eye",
        measured=" → ".join(r[2] for r in rows),
        criterion="mean top-9 class purity never falls by more than 0.02 from a layer to the next, "
                  "and the last layer's is above the first's",
        verdict=HOLDS if holds else DOES_NOT_HOLD,
        evidence=f"chance {chance:.2f}")]


def purity_text(finding: Finding) -> str:
    """The sentence the chapter states (from :func:`findings`)."""
    rises = "rises" if finding.verdict == HOLDS else "does not rise steadily"
    return f"On this run the top-9 purity {rises} with depth ({finding.measured}; {finding.evidence})."
