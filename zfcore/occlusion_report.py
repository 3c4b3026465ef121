"""Chapter 06 read (Zeiler & Fergus 2014, Section 4.2, Fig. 7): its rows, its two readings
checked, its sentences and tables.

The paper reads Fig. 7 twice. (1) "The probability of the correct class drops significantly
when the object is occluded": the localization check (:func:`zfcore.occlusion.localization`,
:func:`findings`). (2) The layer-5 map that drives the maps, the strongest one in the
unoccluded image, "responds to" a part of the object (the dog's face, not the ball): checked
here by that map's data-set-wide top 9 (:func:`zfcore.mining.mined`), the share of them whose
class is the image's class against chance (:func:`driving_check`, :func:`driving_finding`).
The maps themselves come from :func:`zfcore.occlusion.sensitivity`; Fig. 7 (b) sums the
rectified map (after the ReLU), as the paper's "total activity in the feature map".
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .error_rates import error_se
from .data.splits import has_boxes
from .findings import NOT_TESTABLE, SE_MARGIN, Finding, difference_verdict, mean_se, HOLDS, DOES_NOT_HOLD
from .mining import TopK
from .occlusion import Localization, OcclusionMaps, driving_maps, sensitivity
from .tables import html_table
from .view import ModelView

__all__ = ["crop_box", "fig7_maps", "fig7_caption", "activity_words", "top9_caption", "intro_text", "NO_BOXES_TEXT", "skipped_text",
           "map_top9_title", "localization_table", "findings", "skipped_findings", "localization_text",
           "engine_table", "DrivingMaps", "driving_check", "driving_stats", "driving_finding", "driving_table",
           "driving_text", "MIN_PAIRS"]

_SOURCE = "Zeiler & Fergus 2014, Section 4.2, Fig. 7"

#: The fewest distinct (map, class) pairs on which the driving-map check decides: the nine images
#: of one map are one draw of its preferences, not nine (fixed before any run).
MIN_PAIRS = 3

_VERDICT_WORDS = {HOLDS: "The paper's finding holds here", DOES_NOT_HOLD: "The paper's finding does not hold here",
                  NOT_TESTABLE: "This run cannot decide the paper's finding"}


# --------------------------------------------------------------------------------------------
# Fig. 7's rows


def crop_box(ds, i: int, image_size: int) -> Optional[List[float]]:
    """Image ``i``'s object box ``(x0, y0, x1, y1)`` in the centre crop's pixels; None for a
    split without boxes (the user's folders)."""
    if not has_boxes(ds):
        return None
    return (ds.object_box(i) - (ds.stored_size - image_size) // 2).tolist()


def fig7_maps(view: ModelView, ds, images: Sequence[int], size: int, stride: int) -> dict:
    """``{i: OcclusionMaps}`` of Fig. 7's rows: each image of ``ds`` as the model sees it,
    the target its true class, (b) the rectified map's total."""
    return {i: sensitivity(view.model, view.inputs(ds.images[i:i + 1]), size, stride, target=int(ds.labels[i]))
            for i in images}


def activity_words(m: OcclusionMaps) -> str:
    """What Fig. 7 (b) sums, from the maps: the rectified map (and its range) or the raw output."""
    lo, hi = float(m.activity.min()), float(m.activity.max())
    if m.rectified:
        return (f"the total activity of {m.layer} map {m.feature} after its ReLU (the rectified map, as the "
                f"paper's \"total activity in the feature map\"; {lo:.3g} to {hi:.3g} here)")
    return (f"the sum of {m.layer} map {m.feature}'s raw output before its ReLU ({lo:.3g} to {hi:.3g} here), "
            "not the paper's total activity of a rectified map")


def fig7_caption(i: int, class_name: str, m: OcclusionMaps) -> str:
    """The caption of one Fig. 7 row."""
    return (f"Fig. 7, test image {i}, a {class_name}: (a) the input and the occluder where p drops most, "
            f"(b) {activity_words(m)}, (c) its projection, (d) p(true class) and (e) the most probable class "
            "per occluder position")


def intro_text(scale_name: str, image_size: int, classes: Sequence[str], size: int, stride: int) -> str:
    """The chapter's first sentence: the scale, the inputs and the occluder."""
    return (f"Run at the `{scale_name}` scale: {image_size}x{image_size} px inputs, {len(classes)} classes; "
            f"occluder {size}x{size} px at stride {stride}.")


NO_BOXES_TEXT = ("Your ImageNet images have no recorded object boxes, so no green box is drawn; the "
                 "examples come from a sample of the test images drawn with `seed`.")


def top9_caption(m: OcclusionMaps, i: int) -> str:
    """The caption of the mapped map's top 9 (Fig. 7 (c), the map in other images)."""
    return (f"The top 9 validation images of {m.layer} map {m.feature} (panels (b), (c) of test image {i}), "
            "projected by the deconvnet")


def map_top9_title(maps: OcclusionMaps, i: int, tk: TopK, names: Sequence[str], labels) -> str:
    """The title of the mapped feature map's top 9 over a split: the classes of its images, and how
    many are of the occluded image's class (``maps.target``)."""
    idx = [j for j in tk.images[maps.feature].tolist() if j >= 0]
    who = ", ".join(sorted({names[labels[j]] for j in idx}))
    same = sum(int(labels[j]) == maps.target for j in idx)
    return (f"{maps.layer} map {maps.feature} (image {i}): top {len(idx)} in val, {same} of them "
            f"{names[maps.target]}\n{who}")


# --------------------------------------------------------------------------------------------
# reading (1): the localization check


def skipped_text(scale_name: str) -> str:
    """Why the localization check is skipped at a folder scale."""
    return (f"**Skipped at the `{scale_name}` scale.** The check measures how much of the probability drop "
            "falls inside each image's object box, and only the generated scenes record where their object is; "
            "your prepared ImageNet folders give each image its class only. Fig. 7's rows above still show "
            "where the drop falls, by eye, as the paper reads them.")


def localization_table(loc: Localization, scale_name: str) -> str:
    """The localization check's table (HTML): this run's shares against chance."""
    sm = loc.summary()
    rows = [("share of the probability drop inside the object's box", f"{sm['share_inside']:.2f}",
             f"{sm['chance']:.2f}"),
            ("images whose share beats their chance level", f"{sm['images_above_chance']:.0%}", "50%"),
            ("largest drop with the occluder centred on the object", f"{sm['lowest_inside']:.0%}",
             f"{sm['lowest_inside_chance']:.0%}")]
    return html_table(rows, ["measure", "this run", "chance"],
                      caption=f"{sm['images']} test images at the {scale_name} scale, occluder {loc.size} px "
                              f"at stride {loc.stride} ({loc.seconds:.0f} s)")


_LOC_CLAIM = ("the model is localizing the objects within the scene: the probability of the correct "
              "class drops significantly when the object is occluded")
_LOC_CRITERION = (f"per image, the share of the drop inside the object's box minus the box's share of the image "
                  f"(chance); their mean above 0 by more than {SE_MARGIN:g} standard errors: holds; below 0 by "
                  f"more than {SE_MARGIN:g}: does not hold; else not testable")


def findings(loc: Localization) -> List[Finding]:
    """Section 4.2's first reading, checked by the localization check: per image, the share of the
    drop inside the box minus the box's share of the image; the mean of those differences decided
    against 0 with its standard error (:func:`zfcore.findings.difference_verdict`)."""
    sm = loc.summary()
    verdict, evidence = difference_verdict(np.asarray(loc.share) - np.asarray(loc.chance), 0.0)
    return [Finding(
        claim=_LOC_CLAIM, source=_SOURCE, published="read from Fig. 7 by eye",
        measured=f"{sm['share_inside']:.0%} of the drop on the box, which covers {sm['chance']:.0%} of the "
                 f"image; above chance in {sm['images_above_chance']:.0%} of the images",
        criterion=_LOC_CRITERION, verdict=verdict,
        evidence=f"share minus chance: {evidence}; occluder {loc.size} px at stride {loc.stride}")]


def skipped_findings(scale_name: str) -> List[Finding]:
    """Section 4.2's first reading where the localization check cannot run (no object boxes)."""
    return [Finding(claim=_LOC_CLAIM, source=_SOURCE, published="read from Fig. 7 by eye", measured="not run",
                    criterion=_LOC_CRITERION, verdict=NOT_TESTABLE,
                    evidence=f"the {scale_name} scale's images record no object boxes")]


def localization_text(loc: Localization, scale_name: str) -> str:
    """The chapter's verdict sentence (from :func:`findings`)."""
    sm = loc.summary()
    f = findings(loc)[0]
    return (f"**{_VERDICT_WORDS[f.verdict]}** "
            f"at the `{scale_name}` scale: on average {sm['share_inside']:.0%} of the drop in the true class's "
            f"probability falls on the object's box, which covers {sm['chance']:.0%} of the image; the share beats "
            f"chance in {sm['images_above_chance']:.0%} of the images ({f.evidence}).")


# --------------------------------------------------------------------------------------------
# reading (2): the driving layer-5 map responds to the object


@dataclass
class DrivingMaps:
    """The driving map of each checked image (Fig. 7 (b), (c)) and the classes of that map's top k.

    Attributes:
        layer: the mapped layer (``conv5``).
        images: (N,) the checked images' indices into their split (correctly classified ones).
        labels: (N,) their classes.
        maps: (N,) each image's strongest rectified map (:func:`zfcore.occlusion.driving_maps`).
        top_labels: (N, k) the classes of that map's top-k images in the mined split
            (:func:`zfcore.mining.mined`), -1 where the map has fewer than k.
        class_share: (C,) each class's share of the mined split: the chance that a top-k image
            drawn at random from it is of that class.
    """
    layer: str
    images: np.ndarray
    labels: np.ndarray
    maps: np.ndarray
    top_labels: np.ndarray
    class_share: np.ndarray

    @property
    def hits(self) -> np.ndarray:
        """(N,) how many of the map's top k are of the image's class."""
        return (self.top_labels == self.labels[:, None]).sum(axis=1)

    @property
    def checked(self) -> np.ndarray:
        """(N,) how many top-k images the map has (k, fewer in a split of fewer images)."""
        return (self.top_labels >= 0).sum(axis=1)

    @property
    def chance(self) -> np.ndarray:
        """(N,) the image's class's share of the mined split."""
        return self.class_share[self.labels]


def driving_check(view: ModelView, ds, topk: TopK, mined_labels, good: Sequence[int], shown: Sequence[int] = (),
                  n: int = 300, batch_size: int = 256) -> DrivingMaps:
    """Each of up to ``n`` correctly classified images' driving map of ``topk.layer`` and its top k's classes.

    Args:
        view: the model with its preprocessing; ds: the split the images come from (test).
        topk: the layer's data-set-wide top k over another split (:func:`zfcore.mining.mined`, val).
        mined_labels: the classes of that split's images.
        good: the correctly classified images of ``ds`` (:func:`zfcore.occlusion.fig7_examples`), in
            their seeded order; ``shown``: Fig. 7's rows, checked first where they are in ``good``.
    """
    good_set = {int(i) for i in good}
    sample = [int(i) for i in shown if int(i) in good_set]
    sample += [int(i) for i in good if int(i) not in set(sample)][:max(0, n - len(sample))]
    idx = np.asarray(sample, dtype=np.int64)
    maps = [driving_maps(view.model, view.inputs(ds.images[idx[s:s + batch_size]]), topk.layer)
            for s in range(0, len(idx), batch_size)]
    maps = torch.cat(maps).numpy().astype(np.int64) if maps else np.zeros(0, np.int64)
    mined_labels = np.asarray(mined_labels, dtype=np.int64)
    labels = np.asarray(ds.labels, dtype=np.int64)[idx]
    top = topk.images.numpy()[maps].astype(np.int64) if len(maps) else np.zeros((0, topk.k), np.int64)
    top_labels = np.where(top >= 0, mined_labels[np.clip(top, 0, None)], -1)
    n_cls = int(max(mined_labels.max(initial=-1), labels.max(initial=-1))) + 1
    share = np.bincount(mined_labels, minlength=n_cls) / max(1, len(mined_labels))
    return DrivingMaps(topk.layer, idx, labels, maps, top_labels, share)


def driving_stats(d: DrivingMaps) -> dict:
    """The pooled numbers the verdict rests on, over the distinct (map, class) pairs (an image whose
    driving map and class repeat another's adds nothing new: the same nine images, the same class).

    Returns ``{"images", "pairs", "maps", "checked", "hits", "share", "chance", "se", "top_map",
    "top_map_images"}``: ``share`` = hits / checked (the top-k images of the image's class),
    ``chance`` the classes' shares of the mined split weighted alike, ``se`` the larger of the
    standard error of a proportion over the ``checked`` images (at the share and at chance) and the
    standard error of the pairs' (share - chance) (the k images of one map are not independent draws);
    ``top_map`` the map that drives most images and ``top_map_images`` how many.
    """
    first: Dict[Tuple[int, int], int] = {}
    for r, key in enumerate(zip(d.maps.tolist(), d.labels.tolist())):
        first.setdefault(key, r)
    rows = np.asarray(list(first.values()), dtype=np.int64)
    hits, checked, chance = d.hits[rows], d.checked[rows], d.chance[rows]
    n, h = int(checked.sum()), int(hits.sum())
    share = h / n if n else float("nan")
    level = float((chance * checked).sum() / n) if n else float("nan")
    se = 0.0
    if n:
        se = max(error_se(100 * share, n), error_se(100 * level, n)) / 100
        _, se_pairs, _ = mean_se((hits / np.maximum(checked, 1) - chance)[checked > 0])
        se = max(se, se_pairs) if np.isfinite(se_pairs) else se
    counts = np.bincount(d.maps) if len(d.maps) else np.zeros(1, np.int64)
    return {"images": int(len(d.images)), "pairs": int(len(rows)), "maps": int(len(set(d.maps.tolist()))),
            "checked": n, "hits": h, "share": share, "chance": level, "se": float(se),
            "top_map": int(counts.argmax()), "top_map_images": int(counts.max())}


_DRIVE_CLAIM = ("the layer-5 feature map that drives the decision (the strongest one in the unoccluded image) "
                "responds to the object of the image's class, not to its surroundings")


def driving_finding(d: DrivingMaps, min_pairs: int = MIN_PAIRS) -> Finding:
    """Section 4.2's second reading of Fig. 7: the driving map's data-set-wide top k are of the
    image's class more often than chance. Holds when the share beats chance by more than
    :data:`~zfcore.findings.SE_MARGIN` standard errors (:func:`driving_stats`), does not hold when it
    falls below chance by as much, else not testable; not testable with fewer than ``min_pairs``
    distinct (map, class) pairs."""
    st = driving_stats(d)
    k = int(d.top_labels.shape[1])
    criterion = (f"over the correctly classified images checked, the share of their driving {d.layer} map's "
                 f"top-{k} images (data-set-wide, in the mined split) that are of the image's class, against "
                 f"chance (the class's share of that split): above chance by more than {SE_MARGIN:g} standard "
                 f"errors: holds; below by as much: does not hold; else, or with fewer than {min_pairs} distinct "
                 "(map, class) pairs, not testable")
    base = (f"{st['pairs']} distinct (map, class) pairs from {st['images']} images, {st['maps']} distinct maps "
            f"(map {st['top_map']} drives {st['top_map_images']})")
    if st["pairs"] < min_pairs or not st["checked"]:
        verdict, evidence = NOT_TESTABLE, f"{base}: at least {min_pairs} pairs needed"
    else:
        diff, se = st["share"] - st["chance"], st["se"]
        evidence = f"share - chance {diff:+.3f} ± {se:.3f} (SE) over {st['checked']} top-{k} images; {base}"
        z = diff / se if se > 0 else 0.0
        verdict = HOLDS if z > SE_MARGIN else DOES_NOT_HOLD if z < -SE_MARGIN else NOT_TESTABLE
        if verdict == NOT_TESTABLE:
            evidence += f": within {SE_MARGIN:g} SE" if se > 0 else ": no error to measure by"
    measured = (f"{st['hits']} of {st['checked']} ({st['share']:.1%}) of the driving maps' top-{k} images are "
                f"of the image's class; chance {st['chance']:.1%}" if st["checked"] else "no image checked")
    return Finding(claim=_DRIVE_CLAIM, source=_SOURCE + " (b)-(d)",
                   published="read from Fig. 7 by eye (e.g. the dog's face map, not the ball)",
                   measured=measured, criterion=criterion, verdict=verdict, evidence=evidence)


def _class_counts(top: np.ndarray, names: Sequence[str]) -> str:
    vals, counts = np.unique(top[top >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return ", ".join(f"{names[int(vals[o])]} {int(counts[o])}" for o in order)


def driving_table(d: DrivingMaps, names: Sequence[str], shown: Sequence[int]) -> str:
    """HTML: a line per Fig. 7 image checked (its driving map, its top-k's classes, the share of the
    image's class against chance) and one for all the images checked."""
    k = int(d.top_labels.shape[1])
    where = {int(i): r for r, i in enumerate(d.images.tolist())}
    rows = []
    for i in shown:
        r = where.get(int(i))
        if r is None:
            continue
        rows.append((f"test image {i}", names[d.labels[r]], f"{d.layer} map {d.maps[r]}",
                     _class_counts(d.top_labels[r], names), f"{d.hits[r]} of {d.checked[r]}", f"{d.chance[r]:.1%}"))
    st = driving_stats(d)
    rows.append((f"all {st['images']} images checked", "-", f"{st['maps']} maps", f"{st['pairs']} (map, class) pairs",
                 f"{st['hits']} of {st['checked']} ({st['share']:.1%})" if st["checked"] else "-",
                 f"{st['chance']:.1%}" if st["checked"] else "-"))
    return html_table(rows, ["image", "class", "driving map", f"classes of its top {k} (val)",
                             "of the image's class", "chance"],
                      caption="The strongest (driving) layer-5 map of each correctly classified test image and "
                              f"its top {k} in the validation set")


def driving_text(d: DrivingMaps) -> str:
    """The chapter's sentence on the second reading (from :func:`driving_finding`)."""
    f, st = driving_finding(d), driving_stats(d)
    if not st["checked"]:
        return f"**{_VERDICT_WORDS[f.verdict]}**: no correctly classified image to check ({f.evidence})."
    return (f"**{_VERDICT_WORDS[f.verdict]}** for the driving map: of the top-{d.top_labels.shape[1]} images of "
            f"the {d.layer} map that drives each of {st['images']} correctly classified test images, "
            f"{st['share']:.1%} are of that image's class, against {st['chance']:.1%} by chance; {st['maps']} "
            f"distinct maps drive them, map {st['top_map']} alone {st['top_map_images']} ({f.evidence}).")


# --------------------------------------------------------------------------------------------
# the engines compared


def engine_table(view: ModelView, ds, i: int, size: int, stride: int) -> str:
    """Both engines on image ``i`` of ``ds`` (its true class the target), timed, and how far apart
    their probabilities are (HTML)."""
    model, x, target = view.model, view.inputs(ds.images[i:i + 1]), int(ds.labels[i])
    times, maps = {}, {}
    for engine in ("full", "incremental"):
        t0 = time.perf_counter()
        maps[engine] = sensitivity(model, x, size, stride, target=target, engine=engine, projection=False)
        times[engine] = time.perf_counter() - t0
    diff = float((maps["full"].prob - maps["incremental"].prob).abs().max())
    n = len(maps["full"].ys) * len(maps["full"].xs)
    return html_table([(e, f"{times[e]:.2f} s", f"{n / times[e]:.0f}") for e in times],
                      ["engine", f"time for {n} positions", "positions per second"],
                      caption=f"largest difference in probability between the engines: {diff:.1e}")
