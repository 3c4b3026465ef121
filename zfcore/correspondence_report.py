"""Table 1 read (Zeiler & Fergus 2014, Section 4.3): the paper's table beside ours, the
finding checked, the chapter's sentences, and the figures.

:func:`findings` says, from a :class:`zfcore.correspondence.CorrespondenceTable`, whether
Table 1's finding holds here, as :class:`zfcore.findings.Finding` s: the parts (eyes, nose)
give a lower ``Delta`` than random regions at layer 5, in most draws, by a smaller gap at
layer 7; and, beyond the paper, against random squares on the object. :func:`gaps` gives the
numbers they rest on; :func:`run_text`, :func:`verdict_text`, :func:`unchanged_text`,
:func:`easier_text` (what the scenes make easier than the paper's photographs) the chapter's
sentences; :func:`figure` the occlusions of one draw (Fig. 8), :func:`delta_figure`
``Delta`` per draw.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .correspondence import (PAPER_LAYERS, PAPER_TABLE1, PROFILE_GLYPHS, RANDOM_OCCLUSIONS, CorrespondenceTable,
                             class_glyphs, face_object)
from .data.scenes import ObjectSpec
from .findings import HOLDS, NOT_TESTABLE, SE_MARGIN, Finding, all_of, decide, difference_verdict

__all__ = ["paper_rows", "comparison_rows", "table_caption", "gaps", "findings", "not_run_findings", "not_run_text", "run_text",
           "verdict_text", "unchanged_text", "easier_text", "figure", "delta_figure", "MOST_DRAWS"]

#: The share of draws in which every part must beat random regions for the finding to hold
#: "in most draws" (fixed before any run).
MOST_DRAWS = 0.8

_SOURCE = "Zeiler & Fergus 2014, Sec. 4.3, Table 1"


def paper_rows() -> List[Tuple[str, str, str]]:
    """Table 1 of the paper alone: rows ``(occlusion, layer 5, layer 7)``, "mean ± std"."""
    return [(o, *[f"{m:.3f} ± {s:.3f}" for m, s in v]) for o, v in PAPER_TABLE1.items()]


def comparison_rows(table: CorrespondenceTable, digits: int = 3) -> List[Tuple[str, ...]]:
    """Rows ``(occlusion, ours at each layer ..., the paper at layers 5 and 7)``.

    The paper's cells are "-" for rows it does not have (e.g. ``"random on object"``).
    """
    rows = []
    for r in table.rows(digits):
        paper = PAPER_TABLE1.get(r[0])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in paper] if paper else ["-"] * len(PAPER_LAYERS)
        rows.append((*r, *cells))
    return rows


def table_caption(table: CorrespondenceTable, scale_name: str) -> str:
    """The caption of :func:`comparison_rows`' table."""
    n = table.n_images
    return (f"Delta (mean over the {n * (n - 1)} ordered pairs of {n} images), {scale_name} scale, "
            f"{table.draws} draws")


def _parts(table: CorrespondenceTable) -> List[str]:
    return [o for o in table.occlusions if o not in RANDOM_OCCLUSIONS]


def gaps(table: CorrespondenceTable, random: str = "random") -> Dict[str, dict]:
    """The numbers Table 1's finding rests on, per layer of the table: a dict with ``"random"``
    (its mean ``Delta``), ``"gaps"`` (part -> mean of random minus part: positive when the part
    is lower), ``"lower"`` (part -> share of draws in which the part's ``Delta`` is below
    random's, same images), ``"all_lower"`` (every part's mean below random's), ``"mean_gap"``
    (the gaps' mean), and ``"paper_gaps"``, ``"paper_mean_gap"`` (the same in Table 1).

    Raises:
        ValueError: the table has no row ``random`` or no part rows.
    """
    if random not in table.occlusions:
        raise ValueError(f"the table has no row {random!r}; rows: {', '.join(table.occlusions)}")
    parts = _parts(table)
    if not parts:
        raise ValueError("the table has no part rows to compare with random regions")
    evidence = {}
    for j, l in enumerate(table.layers):
        r = table.values(random, l)
        g = {o: float(r.mean() - table.values(o, l).mean()) for o in parts}
        lower = {o: float((table.values(o, l) < r).mean()) for o in parts}
        pg = {}
        if j < len(PAPER_LAYERS):
            pg = {o: PAPER_TABLE1["random"][j][0] - PAPER_TABLE1[o][j][0] for o in parts if o in PAPER_TABLE1}
        evidence[l] = {"random": float(r.mean()), "gaps": g, "lower": lower,
                       "all_lower": all(v > 0 for v in g.values()),
                       "mean_gap": float(np.mean(list(g.values()))), "paper_gaps": pg,
                       "paper_mean_gap": float(np.mean(list(pg.values()))) if pg else float("nan")}
    return evidence


def _signed(d: dict, parts: Sequence[str]) -> str:
    return ", ".join(f"{d[p]:+.3f}" for p in parts)


def _shares(d: dict, parts: Sequence[str]) -> str:
    return ", ".join(f"{d[p]:.0%}" for p in parts)


def _below(table: CorrespondenceTable, layer: str, parts: Sequence[str], than: str) -> Tuple[str, str]:
    """Every part's Delta below ``than``'s: per part, the draws' paired differences (``than`` minus
    the part, same images) above 0 by more than SE_MARGIN standard errors of their mean; one
    verdict for all (:func:`zfcore.findings.all_of`) and the evidence per part."""
    r = table.values(than, layer)
    vs = {p: difference_verdict(r - table.values(p, layer), min_n=3) for p in parts}
    return all_of([v for v, _ in vs.values()]), "; ".join(f"{p}: {e.replace('images', 'draws')} ({v})"
                                                          for p, (v, e) in vs.items())


def findings(table: CorrespondenceTable, random: str = "random") -> List[Finding]:
    """Table 1's finding, checked: (1) at the table's first layer (layer 5) every part's mean
    ``Delta`` is below that of ``random`` (the paper: below by 0.03-0.04, well outside the
    standard deviations); (2) there, every part's ``Delta`` is the lower in more than
    :data:`MOST_DRAWS` of the draws (the same images); (3) with a second layer (layer 7), the
    parts' mean gap to random is smaller there than at layer 5 (the paper: "only slightly
    below"); (4) beyond the paper, with a ``"random on object"`` row, every part's mean ``Delta``
    at layer 5 is below that of random squares inside the object's box.

    Every comparison is decided beyond :data:`zfcore.findings.SE_MARGIN` standard errors, never
    on a tie: (1), (3) and (4) on the draws' paired differences (each draw's images occluded
    both ways; fewer than 3 draws cannot be decided); (2) on the share of draws against
    :data:`MOST_DRAWS`, with the binomial standard error of a share of ``draws`` at that rate.
    A part that passes and one that cannot be told make the whole "not testable"; one that
    fails makes it "does not hold".

    Raises:
        ValueError: the table has no row ``random`` or no part rows.
    """
    ev, parts = gaps(table, random), _parts(table)
    l5 = table.layers[0]
    e5 = ev[l5]
    v1, ev1 = _below(table, l5, parts, random)
    se2 = math.sqrt(MOST_DRAWS * (1 - MOST_DRAWS) / table.draws)
    v2 = all_of([decide(e5["lower"][p] - MOST_DRAWS, se2) for p in parts])
    out = [Finding(
        claim=f"At layer 5 ({l5}) every part gives a lower Delta than random regions",
        source=_SOURCE, published=f"random minus part: {_signed(e5['paper_gaps'], parts)}",
        measured=f"random minus part ({', '.join(parts)}): {_signed(e5['gaps'], parts)}",
        criterion=f"for every part, random regions' Delta minus the part's, draw by draw (same images), above 0 by "
                  f"more than {SE_MARGIN:g} standard errors of its mean",
        verdict=v1, evidence=ev1),
        Finding(
        claim=f"At layer 5 ({l5}) every part gives a lower Delta than random regions in most draws",
        source=_SOURCE, published="below by 0.03-0.04, well outside the standard deviations",
        measured=f"the part's Delta is the lower in {_shares(e5['lower'], parts)} of the {table.draws} draws",
        criterion=f"every part's Delta below random's in more than {MOST_DRAWS:.0%} of the draws (same images), by "
                  f"more than {SE_MARGIN:g} binomial standard errors of a share of {table.draws} draws "
                  f"({SE_MARGIN * se2:.0%})",
        verdict=v2, evidence=f"{SE_MARGIN:g} SE = {SE_MARGIN * se2:.0%} of the draws")]
    if len(table.layers) > 1:
        l7 = table.layers[1]
        e7 = ev[l7]
        gap5, gap7 = (np.mean([table.values(random, l) - table.values(p, l) for p in parts], axis=0) for l in (l5, l7))
        v3, ev3 = difference_verdict(gap5 - gap7, min_n=3)
        out.append(Finding(
            claim=f"The parts' advantage over random regions is smaller at layer 7 ({l7}) than at layer 5",
            source=_SOURCE, published=f"mean gap {e7['paper_mean_gap']:+.3f} at layer 7 against "
                                      f"{e5['paper_mean_gap']:+.3f} at layer 5",
            measured=f"mean gap {e7['mean_gap']:+.3f} at layer 7 against {e5['mean_gap']:+.3f} at layer 5",
            criterion=f"the parts' mean gap to random regions at layer 5 minus that at layer 7, draw by draw, "
                      f"above 0 by more than {SE_MARGIN:g} standard errors of its mean",
            verdict=v3, evidence=ev3.replace("images", "draws")))
    if "random on object" in table.occlusions:
        strict = sum(table.mean(p, l5) < table.mean("random on object", l5) for p in parts)
        v4, ev4 = _below(table, l5, parts, "random on object")
        out.append(Finding(
            claim="At layer 5 every part gives a lower Delta than random squares on the object",
            source="beyond the paper (a stricter control of Table 1)", published="-",
            measured=f"{strict} of {len(parts)} parts have a lower mean layer-5 Delta",
            criterion=f"for every part, the Delta of random squares inside the object's box minus the part's, draw "
                      f"by draw, above 0 by more than {SE_MARGIN:g} standard errors of its mean",
            verdict=v4, evidence=ev4))
    return out


def not_run_findings(scale_name: str) -> List[Finding]:
    """Table 1's finding where the analysis cannot run (the user's folders record no part positions):
    "not testable at this scale", so that the page of every claim still lists it."""
    return [Finding(
        claim="At layer 5 every part gives a lower Delta than random regions", source=_SOURCE,
        published="random minus part: 0.03-0.04 at layer 5 (Table 1)", measured="not run",
        criterion="every part's mean Delta over the draws below that of random regions",
        verdict=NOT_TESTABLE,
        evidence=f"the {scale_name} scale's images record no part positions (an eye, the nose) to occlude")]


def not_run_text(scale_name: str) -> str:
    """Why the analysis does not run on the user's folders."""
    return (f"**Not run at the `{scale_name}` scale.** The analysis occludes the *same part* (an eye, the "
            "nose) of every image, so it needs where each part is in each image. The generated scenes record "
            "it (each dog face's position, scale and rotation, carried through the glyph's geometry); "
            "ImageNet's images, as the prepared folders hold them, have a class label only, and no part "
            "positions. The paper's own 5 dog images were chosen and annotated by hand. Below: the paper's "
            "Table 1 alone.")


def _shape(table: CorrespondenceTable, layer: str, start: int = 0) -> str:
    return "x".join(map(str, table.shapes[layer][start:]))


def run_text(preset, table: CorrespondenceTable) -> str:
    """What was run: the scale, the draws, the eligible images and the layers' sizes."""
    l5, l7 = table.layers
    units = {l: int(np.prod(table.shapes[l])) for l in table.layers}
    return (f"Run at the `{preset.name}` scale ({preset.image_size}x{preset.image_size} inputs, "
            f"{preset.num_classes} classes; not ImageNet): {table.draws} draws of {table.n_images} of the "
            f"{len(table.pool)} eligible *{table.cls}* images of the {table.split} split. "
            f"Layer 5 (`{l5}`) has {units[l5]} features ({_shape(table, l5)}; the paper's "
            f"256x6x6 = 9216), layer 7 (`{l7}`) {units[l7]} (the paper's 4096).")


def verdict_text(table: CorrespondenceTable, scale_name: str) -> str:
    """Whether the paper's finding holds here (:func:`findings`), with the numbers."""
    found = findings(table)
    parts = _parts(table)
    ev = gaps(table)
    e5, e7 = ev[table.layers[0]], ev[table.layers[1]]
    v1, v2, v3 = (f.verdict for f in found[:3])
    holds, most, smaller7 = v1 == HOLDS, v2 == HOLDS, v3 == HOLDS
    verdict = ("Yes" if holds and most else "Partly: on average, but not in most draws for every part" if holds
               else "Not testable on this run: a part's difference is within its standard error" if v1 == NOT_TESTABLE
               else "No")
    strict = sum(table.mean(p, table.layers[0]) < table.mean("random on object", table.layers[0]) for p in parts)
    return (f"**Does the paper's finding hold on this run ({scale_name} scale)?** {verdict}. "
            f"At layer 5, random regions minus each part ({', '.join(parts)}) gives {_signed(e5['gaps'], parts)} "
            f"(the paper: {_signed(e5['paper_gaps'], parts)}): "
            + ("every part is handled more consistently than a random region" if holds else
               "the draws cannot tell whether every part is handled more consistently than a random region"
               if v1 == NOT_TESTABLE else "not every part is handled more consistently than a random region")
            + f"; with the same images, the part's Delta is the lower in {_shares(e5['lower'], parts)} of the "
            f"{table.draws} draws. "
            f"At layer 7 the gaps are {_signed(e7['gaps'], parts)} (the paper: {_signed(e7['paper_gaps'], parts)}), "
            f"on average {e7['mean_gap']:+.3f} against {e5['mean_gap']:+.3f} at layer 5: "
            + ("smaller than at layer 5, as in the paper." if smaller7 else
               "within the draws' standard error of layer 5's." if v3 == NOT_TESTABLE else
               "not smaller than at layer 5, unlike the paper.")
            + f" Against random squares inside the dog's box (a control the paper does not have), "
            f"{strict} of {len(parts)} parts have a lower layer-5 Delta.")


def unchanged_text(table: CorrespondenceTable) -> str:
    """Why the absolute values are not the paper's: the share of features an occlusion leaves unchanged."""
    n = len(_parts(table))
    l5 = table.layers[0]
    return (f"The absolute values are not comparable with the paper's. $\\Delta$ counts sign disagreements "
            f"over all features, including those an occlusion leaves unchanged (sign 0 in every image, so "
            f"they always agree): here a part occlusion leaves "
            f"{table.unchanged[:n, 0].mean():.0%} of the layer-5 features and "
            f"{table.unchanged[:n, 1].mean():.0%} of the layer-7 features unchanged. The paper "
            f"does not give that share; its layer 5 is much larger (9216 features on a 6x6 grid, ours "
            f"{int(np.prod(table.shapes[l5]))} on {_shape(table, l5, 1)})"
            + (", and each of ours sees the whole input, so any occluder can change any of them."
               if tuple(table.shapes[l5][1:]) == (1, 1) else "."))


#: The words for the per-object fields of a scene's recipe (:class:`zfcore.data.scenes.ObjectSpec`)
#: that can differ between two images of one class; a field not named here is named as it is.
_FIELD_WORDS = {"size": "size", "cx": "position", "cy": "position", "angle": "rotation",
                "brightness": "colour", "contrast": "colour", "saturation": "colour"}


def _span(values, fmt: str) -> str:
    lo, hi = float(np.min(values)), float(np.max(values))
    return format(lo, fmt) if lo == hi else f"{format(lo, fmt)} to {format(hi, fmt)}"


def _object_ranges(objs: Sequence[ObjectSpec]) -> List[Tuple[str, str]]:
    """What the objects differ in: ``(word, range)`` per group of fields of the recipe (size,
    position, rotation, colour, and any other field by its name) that is not equal in all."""
    varied: Dict[str, List[str]] = {}
    for f in dataclasses.fields(ObjectSpec):
        if f.name in ("glyph", "label"):
            continue
        if np.ptp(np.array([getattr(o, f.name) for o in objs], np.float64)) > 0:
            varied.setdefault(_FIELD_WORDS.get(f.name, f.name), []).append(f.name)
    out = []
    for word, names in varied.items():
        v = {n: [getattr(o, n) for o in objs] for n in names}
        if word == "size":
            detail = f"{_span(v['size'], '.2f')} of the image's side"
        elif word == "rotation":
            detail = f"{_span(v['angle'], '+.0f')} degrees"
        elif word == "position":
            detail = "centre at " + ", ".join(f"{_span(v[n], '.2f')} {'across' if n == 'cx' else 'down'}"
                                              for n in names)
        else:
            detail = ", ".join(f"{n} x{_span(v[n], '.2f')}" for n in names)
        out.append((word, detail))
    return out


def _and(words: Sequence[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def easier_text(table: CorrespondenceTable) -> str:
    """What remains easier than the paper's five dog photographs: how many glyphs the generator
    draws the class with (its class table), which of them the eligible images use, and what those
    images differ in (their recipes, through which the parts' positions were carried)."""
    codes = class_glyphs(table.cls)
    objs = [face_object(s, table.cls) for s in table.specs]
    used = sorted({o.glyph for o in objs})
    head = (f"**What remains easier than photographs.** The scenes draw the *{table.cls}* class with "
            + (f"one glyph (OpenMoji {codes[0]})" if len(codes) == 1 else
               f"{len(codes)} glyphs (OpenMoji {', '.join(codes)})"))
    profiles = PROFILE_GLYPHS.get(table.cls, {})
    if len(codes) == 1 and profiles:
        head += ("; OpenMoji's other drawings of it, " + _and([f"the {n} {c}" for c, n in profiles.items()])
                 + ", are in profile, one eye showing, so the paper's two eyes and nose cannot be placed on them")
    if not objs:
        return head + "."
    ranges = _object_ranges(objs)
    words = [w for w, _ in ranges]
    photos = len({s.photo for s in table.specs})
    extra = sum(len(s.objects) > 1 for s in table.specs)
    drawing = "one drawing" if len(used) == 1 else f"{len(used)} drawings"
    return (head + f". The {len(objs)} eligible images of the {table.split} split, from which each draw takes "
            f"{table.n_images}, show {drawing}, differing only in "
            + (_and([f"{w} ({d})" for w, d in ranges]) if ranges else "nothing")
            + f", on crops of {photos} different background photographs"
            + (f" (a distractor glyph beside it in {extra})" if extra else "") + ". "
            "The paper's five dogs differ in breed, pose, viewpoint and lighting: their eyes and noses differ in "
            "shape, size and place on the face, and the rest of the head changes with them. Here an eye is "
            + ("the same pixels of the same sprite" if len(used) == 1 else f"the pixels of one of {len(used)} sprites")
            + " in every image, up to " + (f"its {_and(words)}" if words else "nothing") + ", so an occlusion of "
            "it changes the features consistently far more easily than across five photographs: a low Delta "
            "here is weaker evidence of an implicit correspondence of parts than the paper's, while a part not "
            "handled consistently even here would hardly be so across photographs.")


def figure(table: CorrespondenceTable, draw: int = 0, zoom: float = 1.3):
    """The images of one draw, unoccluded and with each occlusion (as in the paper's Fig. 8).

    One row per image, one column per occlusion after the original; the occluded
    square is shown with its fill (the per-pixel mean for ``fill=0``) and outlined.
    Returns a matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    if not 0 <= draw < table.draws:
        raise ValueError(f"draw must be in [0, {table.draws}), got {draw}")
    cols = ["original", *table.occlusions]
    n = table.n_images
    fig, axes = plt.subplots(n, len(cols), figsize=(zoom * len(cols), zoom * n + 0.3), squeeze=False)
    shown = np.clip(table.mean_crop + table.fill, 0, 255).astype(np.uint8)
    for r, j in enumerate(table.chosen[draw].tolist()):
        img = table.crops[j]
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.axis("off")
            if name == "original":
                ax.imshow(img)
            else:
                x0, y0, x1, y1 = table.boxes[name][draw, r].tolist()
                im = img.copy()
                im[y0:y1, x0:x1] = shown[y0:y1, x0:x1]
                ax.imshow(im)
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       color="red" if name in RANDOM_OCCLUSIONS else "lime", lw=1))
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def delta_figure(table: CorrespondenceTable):
    """``Delta`` per draw, a box per occlusion, one panel per layer (layer 5, layer 7).
    Returns a matplotlib Figure."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(table.layers), figsize=(5 * len(table.layers), 3.2), sharey=False,
                             squeeze=False)
    for ax, l, name in zip(axes[0], table.layers, ("layer 5", "layer 7")):
        ax.boxplot([table.values(o, l) for o in table.occlusions], showmeans=True)
        ax.set_xticks(range(1, len(table.occlusions) + 1), table.occlusions, rotation=20, fontsize=8)
        ax.set_title(f"{name} ({l}): Delta per draw")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
