"""Fig. 5 read (Zeiler & Fergus 2014, Section 4.4): the paper's observations checked, the
distance table, the chapter's sentences, and the figure.

:func:`findings` says, from the numbers of :func:`zfcore.invariance.scene_invariance`, whether
each of the paper's three observations holds, as :class:`zfcore.findings.Finding` s;
:func:`distance_rows` gives the table beside the figure; :func:`run_text`,
:func:`verdict_text` the chapter's sentences; :func:`figure` draws Fig. 5.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, SE_MARGIN, Finding, difference_verdict, mean_se
from .invariance import SceneInvariance, curves_of
from .invariance_transforms import KINDS, TRANSFORMS, magnitude

__all__ = ["findings", "kind_of", "line_deviation", "LINEAR_TOLERANCE", "LINEAR_KINDS", "criteria_text",
           "distance_rows", "distance_table", "run_text", "verdict_text", "figure"]

#: Claim 1's "small" transforms: at most this share of the range swept (rotation: of 180 degrees).
SMALL = 0.5
#: Claims 2 and 3: the share of transformed images whose top-1 class must stay the true one.
STABLE_SHARE = 0.8
#: Claim 3's "wide" rotations: at least this many degrees from 0.
WIDE_ANGLE = 90.0
#: "Quasi-linear": the largest mean distance of a curve's points from its straight line through the
#: origin, as a share of the line's value at the largest transform (:func:`line_deviation`). Fixed
#: from the word, not from a run: a power curve ``m ** p`` stays within it for p from about 0.55 to
#: 1.6; a square-root rise (0.11), half the rise at the first step then linear (0.14-0.17), a
#: saturating ``1 - exp(-5 m)`` (0.16-0.22) and a step (0.25-0.28) lie outside it, on grids of
#: 2 to 100 values a side.
LINEAR_TOLERANCE = 0.1
#: The transformations the paper calls quasi-linear ("for translation & scaling").
LINEAR_KINDS = ("translation", "scale")


def _fmt_value(kind: str, v: float) -> str:
    if kind == "translation":
        return f"{v:g} px"
    if kind == "rotation":
        return f"{v:g} deg"
    return f"x{v:g}"


#: Fig. 5's row of each transformation.
_ROWS = {"translation": "a", "scale": "b", "rotation": "c"}
#: The paper's words for each observation (Section 4.4).
_PUBLISHED = ("\"Small transformations have a dramatic effect in the first layer of the model, but a lesser "
              "impact at the top feature layer, being quasi-linear for translation & scaling\"",
              "\"The network output is stable to translations and scalings\"",
              "\"In general, the output is not invariant to rotation, except for object with rotational "
              "symmetry\"")


def _source(kind: str) -> str:
    """Where the paper makes the observation, and the transformation it is checked on (the
    part after the last ": ", :func:`kind_of`)."""
    return f"Zeiler & Fergus 2014, Sec. 4.4, Fig. 5 ({_ROWS[kind]}): {kind}"


def kind_of(finding: Finding) -> str:
    """The transformation a finding of :func:`findings` is checked on."""
    return finding.source.rsplit(": ", 1)[-1]


def _share_verdict(shares, threshold: float, above: bool) -> Tuple[str, str]:
    """The verdict and evidence on "the images' share of correct top-1 lies above (below) ``threshold``"."""
    verdict, evidence = difference_verdict(shares, threshold=threshold, above=above)
    return verdict, "share of each image's transforms with top-1 true: " + evidence


def findings(result, small: float = SMALL, stable_share: float = STABLE_SHARE,
             wide_angle: float = WIDE_ANGLE, tolerance: float = LINEAR_TOLERANCE) -> List[Finding]:
    """Check the paper's three observations on Fig. 5 (Section 4.4) against the numbers.

    1. "Small transformations have a dramatic effect in the first layer of the
       model, but a lesser impact at the top feature layer" -- for each kind: over
       the small transforms (not the identity, and at most ``small`` of the way
       to the largest; for rotation, at most ``small`` x 180 degrees from 0), the
       mean *relative* distance at the top layer is below that at the bottom layer
       (per image; their mean difference more than :data:`zfcore.findings.SE_MARGIN`
       standard errors above 0).
    1b. "... being quasi-linear for translation & scaling" -- for translation and for
       scale: layer 7's distance grows along a straight line through the origin, the
       mean of the images' :func:`line_deviation` below ``tolerance`` by more than
       :data:`zfcore.findings.SE_MARGIN` standard errors ("does not hold" when above it by
       as much, "not testable" in between). The sentence ties "quasi-linear" to the
       "top feature layer"; layer 1's deviation is given beside it, as the contrast.
    2. "The network output is stable to translations and scalings" -- for
       translation and for scale: the most probable class stays the true one for more
       than ``stable_share`` of each image's values (the images' mean share above it by
       more than ``SE_MARGIN`` standard errors; a tie does not pass).
    3. "In general, the output is not invariant to rotation" -- the most probable
       class stays the true one for less than ``stable_share`` of the values whose
       angle is at least ``wide_angle`` degrees from 0 (the same test, below).

    The criteria are fixed before looking; a finding that fails is reported as such, one
    that the values cannot test (no small transformation, no wide angle among them) as
    not testable. Each finding's ``source`` ends with the transformation (:func:`kind_of`);
    ``measured`` holds the numbers.

    Args:
        result: a :class:`zfcore.invariance.SceneInvariance`, or ``{kind: InvarianceCurves}``.

    Returns:
        a list of :class:`zfcore.findings.Finding`, claim 1 for each kind present, claim 1b for
        translation and scale, then claims 2 and 3.
    """
    curves = curves_of(result)
    out = [_small_change(kind, curves[kind], small) for kind in KINDS if kind in curves]
    out += [_quasi_linear(kind, curves[kind], tolerance) for kind in LINEAR_KINDS if kind in curves]
    out += [_stable(kind, curves[kind], stable_share) for kind in ("translation", "scale") if kind in curves]
    if "rotation" in curves:
        out.append(_not_rotation_invariant(curves["rotation"], stable_share, wide_angle))
    return out


def _small_change(kind: str, c, small: float) -> Finding:
    """Claim 1 on one transformation: layer 7 moves less than layer 1 under small transforms."""
    claim = ("Small transformations change layer 1 a lot and layer 7 less "
             "(\"a dramatic effect in the first layer ... a lesser impact at the top feature layer\")")
    m = magnitude(kind, c.values)
    sel = (m > 0) & (m <= small + 1e-9)
    lo, hi = c.layers[0], c.layers[-1]
    crit = (f"mean distance / norm of the original's features, over the transforms up to "
            f"{small:.0%} of the largest: {hi} below {lo}, per image, by more than {SE_MARGIN:g} SE of "
            f"the images' mean difference")
    if not sel.any():
        return Finding(claim, _source(kind), _PUBLISHED[0], "-", crit, NOT_TESTABLE,
                       "no small transformation among the values")
    r_lo = float(np.nanmean(c.relative[0][:, sel]))
    r_hi = float(np.nanmean(c.relative[-1][:, sel]))
    first = int(np.argmin(np.where(m > 0, m, np.inf)))
    full_lo = np.nanmax(c.relative[0], axis=1)
    full_hi = np.nanmax(c.relative[-1], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        on_lo = float(np.nanmean(c.relative[0][:, first] / full_lo))
        on_hi = float(np.nanmean(c.relative[-1][:, first] / full_hi))
    measured = (f"{lo}: {r_lo:.3f}, {hi}: {r_hi:.3f} (ratio {r_hi / r_lo:.2f}); at the smallest "
                f"transform ({_fmt_value(kind, c.values[first])}) {lo} has made {on_lo:.0%} of its "
                f"largest change over the range, {hi} {on_hi:.0%}") if r_lo > 0 else \
        f"{lo}: {r_lo:.3f}, {hi}: {r_hi:.3f}"
    per_image = np.nanmean(c.relative[0][:, sel], 1) - np.nanmean(c.relative[-1][:, sel], 1)
    verdict, evidence = difference_verdict(per_image)
    return Finding(claim, _source(kind), _PUBLISHED[0], measured, crit, verdict, f"{lo} minus {hi}: " + evidence)


def line_deviation(values, distance, identity: float = 0.0) -> np.ndarray:
    """How far each image's distance curve is from a straight line through the origin.

    The distance is 0 at the identity, so a curve that grows linearly is ``d = b * m``,
    ``m = |value - identity|``. On each side of the identity that holds at least two
    transformed values (translation has two sides, scale one), ``b`` is fitted by least
    squares through the origin; the deviation of a point is ``|d - b m|`` over the line's
    value at that side's largest ``m``. An image's deviation is the mean over the points of
    the usable sides: 0 for a straight line, about 0.11 for a square root, 0.25 or more for a
    step (a jump at the smallest transform, flat after it), whatever the grid.

    Args:
        values: (V,) the amounts.
        distance: (N, V) or (V,) the distances at one layer, a row per image.
        identity: the value that leaves the image unchanged.

    Returns:
        (N,) float64; NaN for an image whose distance is 0 at every transformed value of a
        usable side (no line to measure from), and for every image when no side has two
        transformed values.
    """
    v = np.asarray(values, np.float64)
    d = np.atleast_2d(np.asarray(distance, np.float64))
    if d.shape[1] != v.size:
        raise ValueError(f"distance has {d.shape[1]} values per image, values {v.size}")
    out = np.full(d.shape[0], np.nan)
    sides = [s for s in (v < identity, v > identity) if s.sum() >= 2]
    if not sides:
        return out
    dev = []
    for s in sides:
        m, y = np.abs(v[s] - identity), d[:, s]
        b = (y * m).sum(1) / (m * m).sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(y - b[:, None] * m) / (b[:, None] * m.max())
        r[~(b > 0)] = np.nan
        dev.append(r)
    return np.concatenate(dev, axis=1).mean(1)


def _shape_scores(values, identity: float) -> str:
    """The deviations of a square-root rise and of a step on ``values`` (the criterion's scale)."""
    v = np.asarray(values, np.float64)
    m = np.abs(v - identity)
    step = line_deviation(v, (m > 0).astype(float), identity)[0]
    root = line_deviation(v, np.sqrt(m), identity)[0]
    return f"on these values a square-root rise scores {root:.2f}, a step {step:.2f}, a straight line 0"


def _quasi_linear(kind: str, c, tolerance: float) -> Finding:
    """Claim 1b on translation or scale: layer 7's distance grows along a straight line."""
    lo, hi = c.layers[0], c.layers[-1]
    ident = TRANSFORMS[kind].identity
    claim = (f"Layer 7's distance grows quasi-linearly with the {kind} "
             "(\"being quasi-linear for translation & scaling\")")
    dev_hi = line_deviation(c.values, c.distance[-1], ident)
    dev_lo = line_deviation(c.values, c.distance[0], ident)
    crit = (f"per image, {hi}'s distance against |{kind} - identity| is fitted by a straight line through "
            f"the origin (each side of the identity); its points' mean distance from the line, over the "
            f"line's value at the largest {kind}, averaged over the images: below {tolerance:g} by more than "
            f"{SE_MARGIN:g} SE")
    if max(int((c.values < ident).sum()), int((c.values > ident).sum())) < 2:
        return Finding(claim, _source(kind), _PUBLISHED[0], "-", crit, NOT_TESTABLE,
                       "fewer than two transformed values on either side of the identity")
    crit += f" ({_shape_scores(c.values, ident)})"
    (m_hi, se_hi, _), (m_lo, se_lo, _) = mean_se(dev_hi), mean_se(dev_lo)
    measured = (f"deviation from a line: {hi} {m_hi:.3f} ± {se_hi:.3f} (SE), {lo} {m_lo:.3f} ± {se_lo:.3f}; "
                f"{hi} per image " + ", ".join(f"{x:.3f}" for x in dev_hi))
    verdict, evidence = difference_verdict(dev_hi, threshold=tolerance, above=False)
    flat = int(np.isnan(dev_hi).sum())
    if flat:
        evidence += f"; {flat} image(s) left out, their {hi} distance 0 throughout"
    return Finding(claim, _source(kind), _PUBLISHED[0], measured, crit, verdict, evidence)


def _stable(kind: str, c, stable_share: float) -> Finding:
    """Claim 2 on translation or scale: the top-1 class stays the true one."""
    share = float(c.correct.mean())
    crit = (f"top-1 stays the true class for more than {stable_share:.0%} of the transformed images: the "
            f"images' mean share above {stable_share:.0%} by more than {SE_MARGIN:g} SE")
    measured = (f"top-1 correct for {share:.0%} of {c.correct.size}; true-class probability "
                f"{np.mean(c.prob):.2f} on average (originals {np.mean(c.original_prob):.2f}), "
                f"lowest {np.min(c.prob):.2f}")
    return Finding("The output is stable to translation and scaling", _source(kind), _PUBLISHED[1],
                   measured, crit, *_share_verdict(c.correct.mean(1), stable_share, True))


def _not_rotation_invariant(c, stable_share: float, wide_angle: float) -> Finding:
    """Claim 3: wide rotations lose the top-1 class."""
    claim = "The output is not invariant to rotation"
    a = magnitude("rotation", c.values) * 180.0
    sel = a >= wide_angle - 1e-9
    crit = (f"top-1 stays the true class for less than {stable_share:.0%} of the images rotated "
            f"by {wide_angle:g} degrees or more: the images' mean share below it by more than {SE_MARGIN:g} SE")
    if not sel.any():
        return Finding(claim, _source("rotation"), _PUBLISHED[2], "-", crit, NOT_TESTABLE,
                       f"no angle of {wide_angle:g} degrees or more among the values")
    share = float(c.correct[:, sel].mean())
    measured = (f"top-1 correct for {share:.0%} of {c.correct[:, sel].size}; true-class probability "
                f"{np.mean(c.prob[:, sel]):.2f} on average there (originals "
                f"{np.mean(c.original_prob):.2f}); per image "
                + ", ".join(f"{x:.0%}" for x in c.correct[:, sel].mean(1)))
    return Finding(claim, _source("rotation"), _PUBLISHED[2], measured, crit,
                   *_share_verdict(c.correct[:, sel].mean(1), stable_share, False))




def criteria_text(small: float = SMALL, stable_share: float = STABLE_SHARE, wide_angle: float = WIDE_ANGLE,
                  tolerance: float = LINEAR_TOLERANCE) -> str:
    """The chapter's statement of the criteria of :func:`findings`, before the numbers."""
    return (f"Each observation is checked on the numbers above with a criterion fixed before looking "
            f"(`zfcore.invariance_report.findings`). Every criterion is a mean over the images, decided "
            f"only when it lies more than {SE_MARGIN:g} standard errors (across the images) on one side of "
            f"its threshold, and \"not testable\" otherwise; a tie passes nothing. (1) Over the small "
            f"transformations (up to {small:.0%} of the range; for rotation, up to {small * 180:g} degrees), "
            f"layer 7's relative distance is below layer 1's. (1b) For translation and scale, layer 7's "
            f"distance grows along a straight line through the origin: per image, the mean distance of its "
            f"points from the best such line, as a share of the line's value at the largest transformation, "
            f"is 0 for a line, about 0.11 for a square-root rise and 0.25 or more for a step; \"quasi-linear\" "
            f"needs the images' mean below {tolerance:g}. (2) For translation and scale, the most probable "
            f"class stays the true one for more than {stable_share:.0%} of each image's transformed versions, "
            f"on average. (3) For rotations of {wide_angle:g} degrees or more, it stays the true one for less "
            f"than {stable_share:.0%} of them.")


def verdict_text(scale_name: str, result, found: Sequence[Finding], epochs: int) -> str:
    """How many of the checks hold, those that do not, those the run cannot test, and what the run was."""
    held = [f for f in found if f.verdict == HOLDS]

    def names(verdict):
        return "; ".join(f"{f.claim.split(' (')[0].lower()} ({kind_of(f)})" for f in found if f.verdict == verdict)
    failed, untested = names(DOES_NOT_HOLD), names(NOT_TESTABLE)
    n = len(result.indices)
    return (f"**At the `{scale_name}` scale, {len(held)} of the {len(found)} checks hold.** "
            + (f"Not borne out here: {failed}. " if failed else "")
            + (f"Not testable on this run (within the standard error, or too few values): {untested}. "
               if untested else "")
            + ("Every one is borne out. " if len(held) == len(found) else "")
            + (f"These are {n} warped ImageNet images and this run's model, trained for "
               f"{epochs} epochs." if result.method == "warp" else
               f"These are {n} images of generated scenes and a small model trained for "
               f"{epochs} epochs, not the paper's ImageNet model; the scenes were drawn with objects "
               "turned by at most 25 degrees, so the model has never seen an object upside down."))


def run_text(preset, result, err: Optional[float] = None) -> str:
    """What was run: the scale, the images, how they are transformed, the layers and the ranges."""
    c0 = result.curves["translation"]
    warped = result.method == "warp"      # the user's folders: no recipe to re-render, the images are warped
    return (f"Run at the **`{preset.name}` scale**: {preset.image_size}-pixel crops of "
            + ("your ImageNet images" if warped else "generated scenes") + ", "
            f"{preset.num_classes} classes, a model of Fig. 3's shape at {preset.width:g} of its width"
            + (f" (validation top-1 error {err:.1f}%, 10 crops)" if err is not None else "") + ". "
            f"Images: test {'images' if warped else 'scenes'} "
            f"{', '.join(f'#{i} ({n})' for i, n in zip(result.indices, result.class_names))}. "
            + ("Each stored image, minus the training mean, is *warped* about its centre (bilinear; pixels "
               "from outside take the mean), then the centre crop is taken: there is no recipe to re-render "
               "an ImageNet photograph with only its object moved, so the whole picture moves, background "
               "included. " if warped else "")
            + f"Layers: layer 1 = `{c0.layers[0]}`, layer 7 = `{c0.layers[-1]}`. "
            f"Vertical shifts {c0.values.min():g} to {c0.values.max():g} px "
            f"(the paper's -60 to 60 at 224 px, times {preset.image_size}/224); "
            f"scales {result.curves['scale'].values.min():g} to {result.curves['scale'].values.max():g}; "
            f"rotations 0 to {result.curves['rotation'].values.max():g} degrees.")


def distance_rows(result) -> List[tuple]:
    """Rows ``(kind, layer, mean distance, mean relative distance, relative distance at the
    smallest transform, at the largest)`` over the images and the non-identity values,
    for the book's table beside Fig. 5 (the paper plots the raw distance)."""
    rows = []
    for kind, c in curves_of(result).items():
        m = magnitude(kind, c.values) if kind in TRANSFORMS else np.ones(len(c.values))
        moved = m > 0
        if not moved.any():
            continue
        first = int(np.argmin(np.where(moved, m, np.inf)))
        last = int(np.argmax(m))
        for k, layer in enumerate(c.layers):
            rows.append((kind, layer, float(np.mean(c.distance[k][:, moved])),
                         float(np.nanmean(c.relative[k][:, moved])),
                         float(np.nanmean(c.relative[k][:, first])),
                         float(np.nanmean(c.relative[k][:, last]))))
    return rows


def distance_table(result) -> Tuple[List[Tuple[str, ...]], List[str], str]:
    """``(rows, header, caption)`` of the chapter's table beside Fig. 5: :func:`distance_rows`
    with the distances to one decimal and the relative ones to three."""
    rows = [(k, l, f"{d:.1f}", f"{r:.3f}", f"{r0:.3f}", f"{r1:.3f}") for k, l, d, r, r0, r1 in distance_rows(result)]
    return (rows, ["transformation", "layer", "mean distance", "mean distance / norm",
                   "at the smallest transform", "at the largest"],
            "Euclidean distance to the original's features, averaged over the images and the "
            "transformed versions (the identity left out)")


# --------------------------------------------------------------------------------------------
# the figure


def _strip(images: np.ndarray, cols: Sequence[int], colors, pad: int = 2) -> np.ndarray:
    """(N, V, h, w, 3) uint8 -> one float image: a row per image (framed in its colour),
    a column per chosen value."""
    n, _, h, w, _ = images.shape
    k = len(cols)
    out = np.ones((n * (h + 2 * pad) + (n - 1), k * (w + 2 * pad) + (k - 1), 3), np.float32)
    for r in range(n):
        for j, c in enumerate(cols):
            y, x = r * (h + 2 * pad + 1), j * (w + 2 * pad + 1)
            out[y:y + h + 2 * pad, x:x + w + 2 * pad] = colors[r][:3]
            out[y + pad:y + pad + h, x + pad:x + pad + w] = images[r, c] / 255.0
    return out


def figure(result, relative: bool = True, examples: int = 5, names: Optional[Sequence[str]] = None,
           title: str = ""):
    """Fig. 5: a row per transformation (a: translation, b: scale, c: rotation) and four
    columns: 1, the images transformed (``examples`` values from the smallest to the
    largest, a row per image framed in its colour); 2, the layer-1 distance; 3, the
    layer-7 distance (the first and the last of ``layers``); 4, the probability of the
    true class; a line per image.

    Args:
        result: a :class:`SceneInvariance` or ``{kind: InvarianceCurves}``.
        relative: plot the distance over the norm of the original's features (so that
            (b) and (c) share a scale), else the raw Euclidean distance, as the paper does.
        examples: how many values column (a) shows.
        names: a label per image (default: the class names of a SceneInvariance).
        title: the figure's title.

    Returns:
        a matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    curves = curves_of(result)
    if names is None and isinstance(result, SceneInvariance):
        names = result.class_names
    kinds = [k for k in KINDS if k in curves] + [k for k in curves if k not in KINDS]
    fig, axes = plt.subplots(len(kinds), 4, figsize=(15, 3.3 * len(kinds)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.25, 1, 1, 1]})
    colors = plt.get_cmap("tab10").colors
    for r, kind in enumerate(kinds):
        c = curves[kind]
        n = c.prob.shape[0]
        labels = [names[i] if names is not None else f"image {i}" for i in range(n)]
        axis = TRANSFORMS[kind].axis if kind in TRANSFORMS else kind
        row = 'abc'[r] if r < 3 else r
        _images_panel(axes[r, 0], c, examples, labels, colors, axis)
        axes[r, 0].set_title(f"({row}1) {kind}: the images", fontsize=10)
        _distance_panels(axes[r, 1:3], c, relative, colors, axis, row)
        _probability_panel(axes[r, 3], c, labels, colors, axis, row)
        if kind == "rotation":
            for a in axes[r, 1:]:
                a.set_xticks(np.arange(0, 361, 90))
    handles, labels = axes[0, 3].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    return fig


def _images_panel(ax, c, examples: int, labels: Sequence[str], colors, axis: str) -> None:
    """Column 1: the images transformed, ``examples`` values from the smallest to the largest."""
    if c.images is None:
        ax.axis("off")
        return
    n = c.prob.shape[0]
    k = min(examples, len(c.values))
    cols = np.unique(np.round(np.linspace(0, len(c.values) - 1, k)).astype(int))
    ax.imshow(_strip(c.images, cols, [colors[i % 10] for i in range(n)]))
    w = c.images.shape[3] + 5
    ax.set_xticks([(j + 0.5) * w - 0.5 for j in range(len(cols))])
    ax.set_xticklabels([f"{c.values[j]:g}" for j in cols], fontsize=8)
    h = c.images.shape[2] + 5
    ax.set_yticks([(i + 0.5) * h - 0.5 for i in range(n)])
    ax.set_yticklabels(labels, fontsize=8)
    for i, t in enumerate(ax.get_yticklabels()):
        t.set_color(colors[i % 10])
    ax.tick_params(length=0)
    ax.set_xlabel(axis, fontsize=9)


def _distance_panels(axes, c, relative: bool, colors, axis: str, row) -> None:
    """Columns 2 and 3: the layer-1 and layer-7 distances, a line per image."""
    n = c.prob.shape[0]
    data = c.relative if relative else c.distance
    ylab = "||f(x') - f(x)|| / ||f(x)||" if relative else "||f(x') - f(x)||"
    ymax = float(np.nanmax(data[[0, -1]])) * 1.05 if np.isfinite(np.nanmax(data)) else 1.0
    for ax, col, li, name in ((axes[0], 1, 0, "layer 1"), (axes[1], 2, len(c.layers) - 1, "layer 7")):
        for i in range(n):
            ax.plot(c.values, data[li, i], "o-", ms=2.5, lw=1.2, color=colors[i % 10])
        ax.set_title(f"({row}{col + 1}) {name} ({c.layers[li]}): distance", fontsize=10)
        ax.set_xlabel(axis, fontsize=9)
        ax.set_ylabel(ylab, fontsize=9)
        if relative:
            ax.set_ylim(0, ymax or 1.0)
        ax.grid(alpha=0.3)


def _probability_panel(ax, c, labels: Sequence[str], colors, axis: str, row) -> None:
    """Column 4: the probability of the true class, a line per image."""
    for i in range(c.prob.shape[0]):
        ax.plot(c.values, c.prob[i], "o-", ms=2.5, lw=1.2, color=colors[i % 10], label=labels[i])
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"({row}4) probability of the true class", fontsize=10)
    ax.set_xlabel(axis, fontsize=9)
    ax.set_ylabel("P(true class)", fontsize=9)
    ax.grid(alpha=0.3)
