"""Error rates of trained models, and the verdicts on their differences (Section 4.1, Tables 2-3).

The architecture chapters compare models by their validation error. This module holds
what every such comparison reads:

* :func:`run_numbers`: a finished run's error rates, with the counts they were measured on,
  its number of classes and how far it was from its plateau (:func:`last_epoch_gain`);
* :func:`error_se`: the binomial standard error of an error rate on ``n`` images;
* :func:`not_trained`: a model whose validation error is within :func:`not_trained_bound` of
  chance (:func:`chance_error`) did not train, and is left out of what it would feed;
* :func:`contrast`: the verdict on a weighted sum of error rates (the difference of two, or
  of two train-val gaps) being above zero.

The rule of :func:`contrast`, stated before any run: the sum is decided only when it lies
more than :data:`zfcore.findings.SE_MARGIN` standard errors from zero, the standard error
combining the binomial one of each rate as if independent (rates measured on the same images
are positively correlated, which makes the true error of their difference smaller: the test is
conservative), **and** more than the largest last-epoch gain of the models it reads (one more
epoch of a model still learning could move the sum by that much). Otherwise it is "not
testable"; so is any sum that reads a model that did not train, or one whose distance from its
plateau is unknown (a run of one epoch). A tie is never decided.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Tuple

from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, SE_MARGIN

__all__ = ["run_numbers", "last_epoch_gain", "lr_drops", "plateau", "plateau_text", "PLATEAU_EPOCHS", "error_se", "chance_error", "NOT_TRAINED_SHARE",
           "not_trained_bound", "not_trained", "untrained", "untrained_note", "error_cell", "contrast",
           "PAPER_N", "PAPER_CLASSES", "untrained_text", "with_paper_counts"]

#: The images the paper's error rates are counted on for their standard error: ImageNet 2012's
#: validation set (the paper gives no standard errors; its training error is counted on as many,
#: which overstates that error's noise, so the paper's own numbers face the stricter test).
PAPER_N = 50_000
#: ImageNet 2012's classes (the paper's chance level: 99.9% error).
PAPER_CLASSES = 1000

#: "Not trained": a model that has covered less than this share of the way from chance to no
#: error (at 20 classes, chance 95%: an error above 85.5%) has learned next to nothing. A few
#: points at the paper's 1000 classes (10 of 99.9) and a fixed share at every scale, so the rule
#: does not depend on this run's numbers; :func:`not_trained_bound` widens it where the
#: validation set is so small that chance itself could read lower.
NOT_TRAINED_SHARE = 0.1


def last_epoch_gain(run) -> float:
    """How many points the (centre-crop) validation top-1 error fell in the run's last epoch:
    well above 0 means the model was still learning when its budget ran out. NaN for a
    run of one epoch."""
    m = run.metrics
    if len(m) < 2:
        return float("nan")
    return float(m[-2]["val_top1_err"] - m[-1]["val_top1_err"])


#: Epochs over which :func:`plateau` reads whether a run's validation curve is flat.
PLATEAU_EPOCHS = 3


def plateau(metrics: Sequence[Mapping[str, float]], n_val: int, epochs: int = PLATEAU_EPOCHS) -> dict:
    """Whether a run's (centre-crop) validation top-1 error is flat at its end.

    The rule, stated before any run: over the last ``epochs`` epochs the error fell by
    ``gain`` points; the curve is *flat* when ``gain`` is within :data:`SE_MARGIN` standard
    errors of the difference of two error rates on ``n_val`` images (``sqrt(2)`` times
    :func:`error_se` of the last rate), i.e. when the last epochs' change is what the
    validation set's sampling alone could give. ``None`` for a run shorter than ``epochs + 1``.

    Returns:
        ``{"gain", "se", "flat", "epochs", "from", "to"}`` (points, %), or None.
    """
    if len(metrics) < epochs + 1:
        return None
    a, b = float(metrics[-1 - epochs]["val_top1_err"]), float(metrics[-1]["val_top1_err"])
    se = math.sqrt(2) * error_se(b, n_val)
    return {"gain": a - b, "se": se, "flat": abs(a - b) <= SE_MARGIN * se, "epochs": epochs, "from": a, "to": b}


def lr_drops(metrics: Sequence[Mapping[str, float]]) -> List[int]:
    """The epochs at whose start the learning rate was lower than the epoch before (a run's metrics rows)."""
    return [r["epoch"] for p, r in zip(metrics, metrics[1:]) if r["lr"] < p["lr"]]


def plateau_text(run, epochs: int = PLATEAU_EPOCHS) -> str:
    """A sentence (markdown) on whether ``run``'s validation curve is flat at its end (:func:`plateau`),
    with the learning-rate drops its metrics record."""
    m = run.metrics
    n_val = run_numbers(run)["n_val"]
    r = plateau(m, n_val, epochs)
    drops = lr_drops(m)
    sched = (f"The learning rate was lowered {len(drops)} time{'s' if len(drops) != 1 else ''}"
             + (f", at the start of epoch{'s' if len(drops) > 1 else ''} {', '.join(map(str, drops))}" if drops else "")
             + f" (final rate {m[-1]['lr']:g}). ")
    if r is None:
        return sched + f"The run has {len(m)} epochs, too few to tell whether its curve is flat."
    return (sched + f"Over its last {epochs} epochs the validation top-1 error (centre crop) went from "
            f"{r['from']:.1f}% to {r['to']:.1f}% ({-r['gain']:+.1f} points), against {SE_MARGIN:g} standard errors "
            f"of {SE_MARGIN * r['se']:.1f} points for the difference of two error rates on {n_val} images: "
            + ("**the curve is flat at the end**, as far as the validation set's noise can tell."
               if r["flat"] else "**the curve is still moving**: the model had not reached its plateau."))


def run_numbers(run) -> dict:
    """Table 3's numbers of a finished run: ``train_top1`` (the running top-1 error over the
    last epoch's training batches: random crops, dropout on) and ``n_train`` (the images those
    batches held), ``val_top1`` and ``val_top5`` (10-crop validation error, Section 3),
    ``n_val``, ``classes``, ``epochs``, ``train_seconds`` and ``last_gain``
    (:func:`last_epoch_gain`)."""
    s = run.summary
    if not s.get("complete") or "final" not in s:
        raise ValueError(f"run {run.path} has not finished: train it first (zfcore.ablations.budget_run)")
    last = s["epochs"][-1]
    p = s.get("preset", {})
    classes = len(s.get("classes", [])) or int(p.get("num_classes", 0))
    # the count training recorded (a folder split has as many images as its files); runs
    # trained before it was recorded: the scenes' count per class
    n_val = s["final"].get("val_10crop_n") or p.get("val_per_class", 0) * classes
    n_train = last.get("images") or p.get("train_per_class", 0) * classes
    return {"train_top1": float(last["train_top1_err"]),
            "val_top1": float(s["final"]["val_10crop_top1_err"]),
            "val_top5": float(s["final"]["val_10crop_top5_err"]),
            "n_val": int(n_val), "n_train": int(n_train), "classes": int(classes),
            "epochs": len(s["epochs"]), "train_seconds": float(s.get("train_seconds", 0.0)),
            "last_gain": last_epoch_gain(run)}


def error_se(err_percent: float, n: int) -> float:
    """The binomial standard error (in points) of an error rate measured on ``n`` images:
    the sampling noise of the validation set alone (not the seed-to-seed noise)."""
    if n <= 0:
        return float("nan")
    p = min(max(err_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n)


def chance_error(classes: int) -> float:
    """The top-1 error (%) of a guess among ``classes`` balanced classes."""
    return 100.0 * (1.0 - 1.0 / classes)


def not_trained_bound(classes: int, n: int) -> float:
    """The val top-1 error (%) above which a model counts as not trained: chance minus the
    larger of :data:`NOT_TRAINED_SHARE` of chance and ``SE_MARGIN`` standard errors of an error
    rate at chance on ``n`` images."""
    c = chance_error(classes)
    return c - max(NOT_TRAINED_SHARE * c, SE_MARGIN * error_se(c, n))


def not_trained(entry: Mapping[str, float]) -> bool:
    """Whether the numbers of one model (``run_numbers``) are those of a model that did not
    train (:func:`not_trained_bound`); False when they do not say how many classes it had."""
    if not entry.get("classes") or "val_top1" not in entry:
        return False
    return entry["val_top1"] > not_trained_bound(entry["classes"], entry.get("n_val", 0))


def untrained(numbers: Mapping[str, Mapping[str, float]]) -> List[str]:
    """The keys of the models among ``numbers`` that did not train, in order."""
    return [k for k, e in numbers.items() if not_trained(e)]


def untrained_note(numbers: Mapping[str, Mapping[str, float]], keys: Sequence[str]) -> str:
    """``"zf:fc2048 did not train (89.8% val top-1, chance 95.0%, bound 85.5%)"``, for each key."""
    def one(k):
        e = numbers[k]
        return (f"{k} did not train ({e['val_top1']:.1f}% val top-1; chance {chance_error(e['classes']):.1f}%, "
                f"'not trained' above {not_trained_bound(e['classes'], e.get('n_val', 0)):.1f}%)")
    return "; ".join(one(k) for k in keys)


def untrained_text(numbers: Mapping[str, Mapping[str, float]]) -> str:
    """The rule "not trained" and the models it leaves out, in a sentence (markdown)."""
    e = next(iter(numbers.values()))
    if not e.get("classes"):
        return ""
    bound = not_trained_bound(e["classes"], e.get("n_val", 0))
    bad = untrained(numbers)
    return (f"Chance is {chance_error(e['classes']):.1f}% top-1 error ({e['classes']} classes); a model above "
            f"{bound:.1f}% (less than {NOT_TRAINED_SHARE:.0%} of the way from chance to no error) is marked "
            "*not trained* and left out of every finding and ensemble it would feed. "
            + (f"Here: {untrained_note(numbers, bad)}." if bad else "Every model here trained by that rule."))


def error_cell(entry: Mapping[str, float], measure: str = "val_top1", unit: str = "") -> str:
    """A table cell of one error rate; its top-1 error marked "(not trained)" for a model that
    did not train (:func:`not_trained`)."""
    v = entry.get(measure)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1f}{unit}" + (" (not trained)" if measure == "val_top1" and not_trained(entry) else "")


def _n(entry: Mapping[str, float], measure: str) -> int:
    key = "n_train" if measure.startswith("train") else "n_val"
    if key not in entry:
        raise ValueError(f"the numbers need {key!r} (the images {measure} was counted on) for its standard error")
    return int(entry[key])


def contrast(numbers: Mapping[str, Mapping[str, float]], terms: Sequence[Tuple[str, str, float]],
             plateau: bool = True, margin: float = SE_MARGIN) -> Tuple[str, float, str]:
    """The verdict on "sum of ``weight * numbers[key][measure]`` over ``terms`` is above 0"
    (the rule of the module docstring; ``plateau=False`` leaves the last-epoch gains out).

    Returns:
        ``(verdict, value, evidence)``, the evidence e.g. ``"+2.1 ± 0.3 (SE) points"`` with the
        reason when it is not testable.
    """
    keys = list(dict.fromkeys(k for k, _, _ in terms))
    value = sum(w * numbers[k][m] for k, m, w in terms)
    se = math.sqrt(sum((w * error_se(numbers[k][m], _n(numbers[k], m))) ** 2 for k, m, w in terms))
    text = f"{value:+.1f} ± {se:.1f} (SE) points"
    bad = [k for k in keys if not_trained(numbers[k])]
    if bad:
        return NOT_TESTABLE, value, f"{text}; {untrained_note(numbers, bad)}"
    gains = {k: float(numbers[k].get("last_gain", 0.0)) for k in keys} if plateau else {}
    unknown = [k for k, g in gains.items() if math.isnan(g)]
    if unknown:
        return NOT_TESTABLE, value, f"{text}; how far {', '.join(unknown)} is from its plateau is unknown (one epoch)"
    top = max(gains, key=gains.get) if gains else None
    gain = max(0.0, gains[top]) if top else 0.0
    bound = max(margin * se, gain)
    if value > bound:
        return HOLDS, value, text
    if value < -bound:
        return DOES_NOT_HOLD, value, text
    if gain > margin * se:
        return NOT_TESTABLE, value, (f"{text}: smaller than the last-epoch gain of {top} ({gain:.1f} points), "
                                     "which was still learning")
    return NOT_TESTABLE, value, f"{text}: within {margin:g} SE"


def with_paper_counts(numbers: Mapping[str, dict]) -> Dict[str, dict]:
    """``numbers`` with the paper's counts: its standard errors on :data:`PAPER_N` images, its
    :data:`PAPER_CLASSES` classes, its models taken as converged (70 epochs, annealed by hand)."""
    return {k: {**v, "n_val": PAPER_N, "n_train": PAPER_N, "classes": PAPER_CLASSES, "last_gain": 0.0}
            for k, v in numbers.items()}
