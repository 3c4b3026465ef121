"""Sanity checks of the visualizations: can the pictures be trusted? (beyond the paper)

Zeiler & Fergus read their deconvnet projections (Figs. 1-2) and occlusion maps (Fig. 7)
by eye. Later work learned to test such pictures with numbers; this module asks those
questions of the deconvnet, the plain gradient, guided backpropagation
(:func:`zfcore.deconv.project`) and occlusion (:func:`zfcore.occlusion.sensitivity`), each
in its *class-specific* form (:func:`zfcore.saliency.class_maps`). The checks live in a
module each; this one runs them together on a sample of test images and checks the
literature's predictions on the result:

* **Model-parameter randomization** (Adebayo et al., "Sanity Checks for Saliency Maps",
  NeurIPS 2018, Section 3.1 and Fig. 2) and **class sensitivity** (Nie, Zhang & Patel,
  ICML 2018): :mod:`zfcore.randomization`;
* **Localization** against the scenes' object boxes (the pointing game of Zhang et al.,
  ECCV 2016, its centre baseline, the positive energy inside the box, each against its
  chance level): :mod:`zfcore.localization_checks`;
* **Faithfulness** (Petsiuk, Das & Saenko, "RISE", BMVC 2018: deletion and insertion
  curves against a random order): :mod:`zfcore.faithfulness`;
* the maps themselves and how alike two maps are (Spearman's rank correlation of the
  absolute and signed grey maps, SSIM): :mod:`zfcore.saliency`.

:func:`test_sample` prepares the images, :func:`run_checks` runs every check on them,
:func:`summary` gives the table of numbers and :func:`findings` turns the result into
:class:`zfcore.findings.Finding` verdicts on each published prediction; :func:`run_text`
and :func:`verdict_text` give the chapter's sentences. Nothing changes the model given:
the randomized networks are deep copies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .chain import check_images
from .data.splits import has_boxes, load_split
from .faithfulness import DeletionInsertion, deletion_insertion
from .findings import HOLDS, NOT_TESTABLE, SE_MARGIN, Finding, difference_verdict, mean_se
from .layout import Threads
from .localization_checks import as_boxes, centre_hits, energy_share, pointing_chance, pointing_game
from .plots import SANITY_NAMES
from .presets import get_preset
from .progress import progress_bar
from .randomization import (Randomization, architecture_level, class_sensitivity, other_classes, randomize,
                            weighted_layers)
from .saliency import (METHODS, Similarity, Target, check_method, class_logits, class_maps, class_targets,
                       importance, occluder_size, positive_int)
from .view import ModelView

__all__ = ["Sample", "test_sample", "SanityChecks", "run_checks", "summary", "findings",
           "EQUIVALENCE_TOLERANCE"]

#: How far (in Spearman's rho) a mean similarity may exceed the architecture-alone level and
#: still count as "no more alike than two random networks" (fixed before any run).
EQUIVALENCE_TOLERANCE = 0.1


# --------------------------------------------------------------------------------------------
# a sample of test images, and every check at once


@dataclass
class Sample:
    """Test images prepared for the model.

    Attributes:
        indices: (N,) the images' indices in the split.
        x: (N, 3, s, s) float32, the mean-subtracted centre crops the model sees.
        crops: (N, s, s, 3) uint8, the same crops for display.
        labels: (N,) long, the true classes.
        boxes: (N, 4) float64, the labelled object's box ``(x0, y0, x1, y1)`` in the crop's
            pixels, or None where the data records no boxes (the user's folders).
        classes: the class names.
    """
    indices: np.ndarray
    x: torch.Tensor
    crops: np.ndarray
    labels: torch.Tensor
    boxes: Optional[torch.Tensor]
    classes: List[str]


def test_sample(scale, view: ModelView, n_images: int, split: str = "test", seed: int = 0) -> Sample:
    """``n_images`` images of a split of ``scale``'s data (a seeded random sample, in index
    order), as the model sees them (``view``, e.g. ``run.view()``: the centre crop minus the
    run's training mean), on the CPU, with each scene's object box moved into the crop."""
    p = get_preset(scale)
    n_images = positive_int(n_images, "n_images")
    ds = load_split(p, split, progress=False)
    if len(ds) == 0:
        raise ValueError(f"the {split!r} split of the {p.name!r} scale has no images")
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n_images])
    images = np.asarray(ds.images[idx])
    x = view.inputs(images, device="cpu")
    boxes = None
    if has_boxes(ds):
        off = (ds.stored_size - view.image_size) // 2
        boxes = torch.tensor(np.stack([ds.object_box(int(i)) for i in idx]), dtype=torch.float64) - off
    return Sample(indices=idx, x=x.contiguous(), crops=np.ascontiguousarray(view.display(images)),
                  labels=torch.as_tensor(np.asarray(ds.labels)[idx], dtype=torch.long), boxes=boxes,
                  classes=list(ds.classes))


@dataclass
class SanityChecks:
    """Every check of this module on one batch of images (see :func:`run_checks`).

    Attributes (dicts are keyed by method):
        methods: the methods checked.
        target, other: (N,) the true classes and, per image, another class.
        maps: the trained network's maps for ``target`` ((N, C, H, W) each).
        cascade, independent: :class:`Randomization` per method, on the first
            ``n_randomized`` images.
        architecture: :class:`Similarity` of two independently initialized networks' maps.
        class_sensitivity: :class:`Similarity` of the maps for ``target`` and ``other``.
        centre: the centre baseline's hits ((N,) bool, :func:`centre_hits`; None without boxes).
        pointing, chance, energy: the pointing game's hits ((N,) bool), its chance level and
            the positive energy inside the box, per method (None without boxes).
        faithfulness: :class:`DeletionInsertion` per method, and under ``"random"`` the
            random order.
        classifier: the weighted layers that map features to classes (the fully connected
            ones), from the top; ``layers``: every weighted layer from the top.
    """
    methods: Tuple[str, ...]
    target: torch.Tensor
    other: torch.Tensor
    maps: Dict[str, torch.Tensor]
    cascade: Dict[str, Randomization]
    independent: Dict[str, Randomization]
    architecture: Dict[str, Similarity]
    class_sensitivity: Dict[str, Similarity]
    pointing: Optional[Dict[str, torch.Tensor]]
    chance: Optional[torch.Tensor]
    energy: Optional[Dict[str, torch.Tensor]]
    faithfulness: Dict[str, DeletionInsertion]
    layers: List[str]
    classifier: List[str]
    n_randomized: int
    seed: int
    occluder: Tuple[int, int]
    steps: int
    centre: Optional[torch.Tensor] = None


def run_checks(model: nn.Module, x: torch.Tensor, target: Target, boxes=None, *,
               methods: Sequence[str] = METHODS, n_randomized: Optional[int] = None, seed: int = 0,
               steps: int = 16, occluder: Optional[Tuple[int, int]] = None, batch_size: int = 128,
               threads: Optional[int] = 1, progress: bool = True) -> SanityChecks:
    """Every check on one batch of prepared images: the randomizations (cascading, independent,
    the architecture-alone level), the class sensitivity, the localization (with ``boxes``) and
    the faithfulness of each method's maps for the images' classes.

    Args:
        model: the trained network (never changed).
        x: prepared images, (N, 3, H, W).
        target: the true class of each image (N ints); None: the model's predictions.
        boxes: (N, 4) object boxes ``(x0, y0, x1, y1)`` in the images' pixels, or None.
        methods: any of :data:`METHODS`.
        n_randomized: randomize on the first this many images only (the randomizations cost
            one set of maps per layer); default all.
        seed: the randomization's seed (the architecture level uses ``seed + 1`` and
            ``seed + 2``), the other classes' and the deletion's ties'.
        steps: deletion and insertion increments.
        occluder: ``(size, stride)`` for occlusion (see :func:`zfcore.saliency.class_maps`).
        threads: torch CPU threads while the checks run (at most the current count; restored
            after); None leaves the count. One by default: the checks are many passes of a few
            images, which go faster on one thread, and on a busy machine many times faster
            (OpenMP threads spin waiting for each other at every operation: 2.7 s against 29 s
            for the tiny chapter's checks on a loaded 2-core machine).
    """
    with Threads(threads):
        return _run_checks(model, x, target, boxes, methods, n_randomized, seed, steps, occluder,
                           batch_size, progress)


def _run_checks(model, x, target, boxes, methods, n_randomized, seed, steps, occluder, batch_size,
                progress) -> SanityChecks:
    check_images(x)
    for m in methods:
        check_method(m)
    n = x.shape[0]
    nr = n if n_randomized is None else min(positive_int(n_randomized, "n_randomized"), n)
    t = class_targets(model, x, target)
    num_classes = class_logits(model, x[:1]).shape[1]
    other = other_classes(t, num_classes, seed)
    h, w = int(x.shape[2]), int(x.shape[3])
    occ = occluder_size(h, w, occluder)
    kw = dict(occluder=occ, batch_size=batch_size)
    layers = weighted_layers(model, (h, w))
    mods = dict(model.named_modules())
    classifier = [name for name in layers if isinstance(mods[name], nn.Linear)]
    b = None if boxes is None else as_boxes(boxes, n)
    maps, cascade, independent, arch, cls, point, energy, faith = {}, {}, {}, {}, {}, {}, {}, {}
    for method in progress_bar(methods, desc="sanity checks", enabled=progress):
        # the first nr images as one batch, as the randomizations see them: their step 0 is then
        # the same computation on a copy, bit for bit
        maps[method] = torch.cat([class_maps(model, part, method, t[sl], **kw)
                                  for sl in (slice(0, nr), slice(nr, n)) for part in (x[sl],) if len(part)])
        for mode, out in (("cascading", cascade), ("independent", independent)):
            out[method] = randomize(model, x[:nr], method, t[:nr], seed, mode, None, occ, batch_size,
                                    False, None, reference=maps[method][:nr])
        arch[method] = architecture_level(model, x[:nr], method, t[:nr], seed, **kw)
        cls[method] = class_sensitivity(model, x, method, t, other, maps=maps[method], **kw)
        imp = importance(maps[method], method)
        if b is not None:
            point[method] = pointing_game(imp, b)
            energy[method] = energy_share(imp, b)
        faith[method] = deletion_insertion(model, x, imp, t, steps, seed=seed, batch_size=batch_size,
                                           progress=False)
    faith["random"] = deletion_insertion(model, x, None, t, steps, seed=seed, batch_size=batch_size,
                                         progress=False)
    return SanityChecks(methods=tuple(methods), target=t, other=other, maps=maps, cascade=cascade,
                        independent=independent, architecture=arch, class_sensitivity=cls,
                        pointing=point if b is not None else None,
                        chance=pointing_chance(b, (h, w)) if b is not None else None,
                        energy=energy if b is not None else None, faithfulness=faith, layers=layers,
                        classifier=classifier, n_randomized=nr, seed=int(seed), occluder=occ,
                        steps=int(steps), centre=centre_hits(b, (h, w)) if b is not None else None)


# --------------------------------------------------------------------------------------------
# the literature's predictions, checked

_ADEBAYO = "Adebayo et al. 2018"
_NIE = "Nie et al. 2018"
_NAMES = {"deconvnet": "the deconvnet", "gradient": "the gradient", "guided": "guided backpropagation",
          "occlusion": "occlusion"}


def _untestable(claim, source, published, criterion, why) -> Finding:
    return Finding(claim=claim, source=source, published=published, measured="-", criterion=criterion,
                   verdict=NOT_TESTABLE, evidence=why)


def _fmt(values) -> str:
    m, se, n = mean_se(values)
    return "n/a" if n == 0 else (f"{m:.2f}" if not math.isfinite(se) else f"{m:.2f} ± {se:.2f}")


def summary(checks: SanityChecks) -> Tuple[List[str], List[Tuple[str, ...]]]:
    """``(header, rows)``: one row per method (and one for the random order) of the numbers the
    checks give, each a mean ± its standard error over the images, for
    :func:`zfcore.plots.html_table`: the rank correlation with the trained network's map after
    the classifier's and after every layer's randomization, the architecture-alone level, the
    class sensitivity, the pointing game's hit rate and its chance level, the positive energy in
    the box, and the deletion and insertion areas."""
    top_fc = checks.classifier[-1] if checks.classifier else None
    bottom = checks.layers[-1]
    header = ["method", f"Spearman |map| after {top_fc} randomized" if top_fc else "-",
              f"after all ({bottom})", "two random networks", "true vs another class",
              "pointing game: hits", "chance", "the image centre", "positive energy in the box",
              "deletion AUC",
              "insertion AUC"]
    rows = []
    for m in checks.methods:
        casc, f = checks.cascade[m], checks.faithfulness[m]
        centre = "-" if checks.centre is None else f"{checks.centre.double().mean():.0%}"
        loc = (("-",) * 4 if checks.pointing is None else
               (f"{checks.pointing[m].double().mean():.0%}", f"{checks.chance.mean():.0%}", centre,
                _fmt(checks.energy[m].numpy())))
        rows.append((_NAMES[m], _fmt(casc.at(top_fc)) if top_fc else "-", _fmt(casc.at(bottom)),
                     _fmt(checks.architecture[m].spearman), _fmt(checks.class_sensitivity[m].spearman),
                     *loc, _fmt(f.deletion_auc), _fmt(f.insertion_auc)))
    rnd = checks.faithfulness["random"]
    rows.append(("a random order", *[""] * (len(header) - 3), _fmt(rnd.deletion_auc), _fmt(rnd.insertion_auc)))
    return header, rows


def findings(checks: SanityChecks) -> List[Finding]:
    """The predictions of Adebayo et al. (2018) and Nie et al. (2018), and the localization and
    faithfulness checks, as :class:`zfcore.findings.Finding` verdicts on ``checks``.

    Each criterion is fixed here, from the claim, before any run: a claimed ordering holds when
    the per-image difference is more than :data:`zfcore.findings.SE_MARGIN` standard errors in
    the claimed direction, does not hold when it is that far the other way, and is "not
    testable" in between; the claim that the gradient after full randomization is no more like
    the trained map than the architecture alone makes it allows the margin
    :data:`EQUIVALENCE_TOLERANCE` above that level. Similarities are Spearman's rho of the absolute maps
    (Adebayo et al.'s main measure). Claims about a method that was not run are left out.
    """
    return (_adebayo_findings(checks) + _nie_findings(checks) + _pointing_findings(checks)
            + _energy_findings(checks) + _faithfulness_findings(checks))


_SE = f"{SE_MARGIN:g} SE"


def _adebayo_findings(checks: SanityChecks) -> List[Finding]:
    """Adebayo et al.: guided backpropagation is insensitive to the top layers, the gradient is not."""
    out: List[Finding] = []
    have = set(checks.methods)
    top_fc = checks.classifier[-1] if checks.classifier else None     # the lowest fc layer
    bottom = checks.layers[-1]
    casc, ind, arch = checks.cascade, checks.independent, checks.architecture
    if {"guided", "gradient"} <= have and top_fc is not None:
        g, d = casc["guided"].at(top_fc), casc["gradient"].at(top_fc)
        v, ev = difference_verdict(g - d)
        out.append(Finding(
            claim=f"Randomizing the classifier (the fc layers, down to {top_fc}) changes guided "
                  f"backpropagation's map less than the gradient's",
            source=f"{_ADEBAYO}, Sec. 3.1, Fig. 2 (cascading randomization)",
            published="guided backprop stays visually and numerically similar through randomization of "
                      "the higher layers; the gradient's rank correlation falls as layers are randomized",
            measured=f"Spearman |map| after {top_fc}: guided {_fmt(g)}, gradient {_fmt(d)}",
            criterion=f"per-image difference (guided - gradient) above 0 by more than {_SE}",
            verdict=v, evidence=ev))
        ga, gc = arch["guided"].spearman, g
        v, ev = difference_verdict(gc[: len(ga)] - ga)
        out.append(Finding(
            claim="After the classifier's randomization guided backpropagation's map is still closer to "
                  "the trained network's than two random networks' maps are to each other",
            source=f"{_ADEBAYO}, Sec. 3.1, Fig. 2",
            published="guided backprop's maps stay similar to the trained model's while the higher layers "
                      "are randomized",
            measured=f"Spearman |map|: after {top_fc} {_fmt(gc)}; two random networks {_fmt(ga)}",
            criterion=f"per-image difference (after {top_fc} - architecture alone) above 0 by more than {_SE}",
            verdict=v, evidence=ev))
    if "gradient" in have:
        full, a = casc["gradient"].at(bottom), arch["gradient"].spearman
        v, ev = difference_verdict(full - a, EQUIVALENCE_TOLERANCE, above=False)
        out.append(Finding(
            claim="Once every layer is randomized, the gradient's map is no more like the trained one than "
                  "two random networks' maps are like each other",
            source=f"{_ADEBAYO}, Sec. 3.1, Fig. 2",
            published="the gradient is sensitive to the model's parameters: its maps change under "
                      "randomization (the test it passes)",
            measured=f"Spearman |map|: trained vs fully random {_fmt(full)}; two random networks {_fmt(a)}",
            criterion=f"per-image difference (trained vs random - architecture alone) below "
                      f"+{EQUIVALENCE_TOLERANCE:g} by more than {_SE}",
            verdict=v, evidence=ev))
    if {"guided", "gradient"} <= have and len(checks.layers) > 1:
        topl = checks.layers[0]
        g, d = ind["guided"].at(topl), ind["gradient"].at(topl)
        v, ev = difference_verdict(g - d)
        out.append(Finding(
            claim=f"Randomizing the top layer ({topl}) alone changes guided backpropagation's map less "
                  f"than the gradient's",
            source=f"{_ADEBAYO}, Sec. 3.1 (independent randomization)",
            published="the independent test shows the same: guided backprop insensitive to the top "
                      "layers' weights",
            measured=f"Spearman |map| with {topl} random: guided {_fmt(g)}, gradient {_fmt(d)}",
            criterion=f"per-image difference (guided - gradient) above 0 by more than {_SE}",
            verdict=v, evidence=ev))
    return out


def _nie_findings(checks: SanityChecks) -> List[Finding]:
    """Nie et al.: the deconvnet and guided backpropagation recover the image, whatever the class."""
    out: List[Finding] = []
    have = set(checks.methods)
    bottom = checks.layers[-1]
    casc, cls = checks.cascade, checks.class_sensitivity
    for m in ("deconvnet", "guided"):
        if not {m, "gradient"} <= have:
            continue
        a, d = cls[m].spearman, cls["gradient"].spearman
        v, ev = difference_verdict(a - d)
        out.append(Finding(
            claim=f"{_NAMES[m].capitalize()}'s map barely changes with the class asked about; the "
                  f"gradient's does",
            source=f"{_NIE} (class insensitivity)",
            published=f"{_NAMES[m]}'s pictures hardly change with the class chosen; the plain gradient's do",
            measured=f"Spearman |map|, true vs another class: {m} {_fmt(a)}, gradient {_fmt(d)}",
            criterion=f"per-image difference ({m} - gradient) above 0 by more than {_SE}",
            verdict=v, evidence=ev))
    for m in ("deconvnet", "guided"):
        if not {m, "gradient"} <= have:
            continue
        a, d = casc[m].at(bottom), casc["gradient"].at(bottom)
        v, ev = difference_verdict(a - d)
        out.append(Finding(
            claim=f"{_NAMES[m].capitalize()}'s map looks alike for the trained and a fully random "
                  f"network (image recovery), more than the gradient's does",
            source=f"{_NIE} (partial image recovery)",
            published=f"{_NAMES[m]} does (partial) image recovery: its pictures look alike for trained "
                      f"and randomly weighted networks; the gradient's do not",
            measured=f"Spearman |map|, trained vs fully random: {m} {_fmt(a)}, gradient {_fmt(d)}",
            criterion=f"per-image difference ({m} - gradient) above 0 by more than {_SE}",
            verdict=v, evidence=ev))
    return out


_ZF = "Zeiler & Fergus 2014, Sec. 4.2 (read by eye)"
_NO_BOXES = "the data records no object boxes"


def _pointing_findings(checks: SanityChecks) -> List[Finding]:
    """The pointing game on the scenes' boxes: against chance and against the image's centre."""
    out: List[Finding] = []
    for m in checks.methods:
        claim = f"{_NAMES[m].capitalize()}'s map points at the object more often than chance"
        crit = f"per-image (hit - box's share of the image) above 0 by more than {_SE}"
        src = f"Zhang et al. 2016 (the pointing game); {_ZF}"
        pub = ("the maps highlight the object that drives the class (the occluded object matters, "
               "Fig. 7)" if m == "occlusion" else "the projections show the object's parts (Figs. 2, 7 (c))")
        if checks.pointing is None:
            out.append(_untestable(claim, src, pub, crit, _NO_BOXES))
            continue
        hits = checks.pointing[m].double().numpy()
        chance = checks.chance.numpy()
        v, ev = difference_verdict(hits - chance)
        out.append(Finding(claim=claim, source=src, published=pub,
                           measured=f"hit rate {hits.mean():.0%}, chance {chance.mean():.0%}",
                           criterion=crit, verdict=v, evidence=ev))
        claim = f"{_NAMES[m].capitalize()}'s map points at the object more often than the image's centre does"
        crit = f"per-image (hit - the centre pixel's hit) above 0 by more than {_SE}"
        src = "Zhang et al. 2016 (the pointing game and its centre baseline)"
        if checks.centre is None:
            out.append(_untestable(claim, src, pub, crit, _NO_BOXES))
            continue
        centre = checks.centre.double().numpy()
        v, ev = difference_verdict(hits - centre)
        out.append(Finding(claim=claim, source=src, published=pub + "; a map should beat the centre prior",
                           measured=f"hit rate {hits.mean():.0%}, the centre {centre.mean():.0%}",
                           criterion=crit, verdict=v, evidence=ev))
    return out


def _energy_findings(checks: SanityChecks) -> List[Finding]:
    """The share of each map's positive energy inside the object's box, against chance."""
    out: List[Finding] = []
    for m in checks.methods:
        claim = f"More of {_NAMES[m]}'s positive map energy falls inside the object's box than chance"
        crit = f"per-image (share inside - box's share of the image) above 0 by more than {_SE}"
        src = f"the energy-based pointing game (Wang et al. 2020, Score-CAM); {_ZF}"
        pub = "the object drives the class: the map's mass should sit on it"
        if checks.energy is None:
            out.append(_untestable(claim, src, pub, crit, _NO_BOXES))
            continue
        share = checks.energy[m].numpy()
        chance = checks.chance.numpy()
        v, ev = difference_verdict(share - chance)
        out.append(Finding(claim=claim, source=src, published=pub,
                           measured=f"share inside {_fmt(share)}, chance {chance.mean():.2f}",
                           criterion=crit, verdict=v, evidence=ev))
    return out


def _faithfulness_findings(checks: SanityChecks) -> List[Finding]:
    """Deletion and insertion against a random order: only where the model recognizes the intact
    images above chance."""
    out: List[Finding] = []
    rnd = checks.faithfulness["random"]
    chance_v, chance_ev = difference_verdict(rnd.intact, 1.0 / max(rnd.num_classes, 1))
    at_chance = chance_v != HOLDS
    why = (f"the model's probability of the class on the intact images is not above chance "
           f"(1/{rnd.num_classes}): {chance_ev}")
    for m in checks.methods:
        f = checks.faithfulness[m]
        v, ev = difference_verdict(rnd.deletion_auc - f.deletion_auc)
        if at_chance:
            v, ev = NOT_TESTABLE, why
        out.append(Finding(
            claim=f"Deleting pixels in the order of {_NAMES[m]}'s map lowers the class's probability "
                  f"faster than a random order",
            source="Petsiuk et al. 2018 (RISE), deletion",
            published="a map that explains the decision has a lower deletion area than a random order",
            measured=f"deletion AUC {_fmt(f.deletion_auc)}, random order {_fmt(rnd.deletion_auc)}",
            criterion=f"per-image (random - map) deletion AUC above 0 by more than {_SE}",
            verdict=v, evidence=ev))
        v, ev = difference_verdict(f.insertion_auc - rnd.insertion_auc)
        if at_chance:
            v, ev = NOT_TESTABLE, why
        out.append(Finding(
            claim=f"Inserting pixels in the order of {_NAMES[m]}'s map raises the class's probability "
                  f"faster than a random order",
            source="Petsiuk et al. 2018 (RISE), insertion",
            published="a map that explains the decision has a higher insertion area than a random order",
            measured=f"insertion AUC {_fmt(f.insertion_auc)}, random order {_fmt(rnd.insertion_auc)}",
            criterion=f"per-image (map - random) insertion AUC above 0 by more than {_SE}",
            verdict=v, evidence=ev))
    return out


# --------------------------------------------------------------------------------------------
# the chapter's sentences

def run_text(scale_name: str, sample: Sample, checks: SanityChecks, seed: int, elapsed: float) -> str:
    """What was run: the sample, the randomized images, the occluder and the time taken."""
    s = int(sample.x.shape[-1])
    return (f"Run at the `{scale_name}` scale: {len(sample.indices)} test images of {s}x{s} px "
            f"(a sample drawn with seed {seed}), the first {checks.n_randomized} of them randomized layer by "
            f"layer; the occluder is {checks.occluder[0]} px at stride {checks.occluder[1]}. The checks took "
            f"{elapsed:.0f} s.")


def verdict_text(scale_name: str, checks: SanityChecks, found: Sequence[Finding]) -> str:
    """The verdicts counted, the rank correlations after full randomization beside the
    architecture-alone level, and the insertion's start against the intact images."""
    counts = {v: sum(f.verdict == v for f in found) for v in dict.fromkeys(f.verdict for f in found)}
    casc, bottom = checks.cascade, checks.layers[-1]
    rnd = checks.faithfulness["random"]
    return (f"Verdicts of the {len(found)} checks at the `{scale_name}` scale: "
            + ", ".join(f"*{v}* {k}" for v, k in counts.items())
            + ". With every layer randomized, the rank correlation with the trained network's map is "
            + ", ".join(f"{mean_se(casc[m].at(bottom))[0]:.2f} for {SANITY_NAMES[m]} (two random networks: "
                        f"{checks.architecture[m].mean():.2f})" for m in checks.methods)
            + f". The insertion curves start from the blurred image, which alone gives the true class a "
            f"mean probability of {rnd.insertion[:, 0].mean():.2f} (the intact image: {rnd.intact.mean():.2f}).")
