"""Verdicts on published claims: one :class:`Finding` type, its statistics and its table.

Every chapter that checks a claim of a paper against this run states, for each claim,
what was claimed and where, the paper's number or published reading, this run's
number, the criterion (fixed from the claim before the run, never chosen from this
run's numbers), the verdict and what it rests on. The verdict is one of
:data:`VERDICTS`:

* ``"holds"``: the run supports the claim by the criterion;
* ``"does not hold"``: the run contradicts it by the criterion;
* ``"not testable at this scale or budget"``: the run cannot tell (a difference within
  its standard error, a baseline at chance, too few images, a measure the scale lacks).

Statistics: the claims are about means over images, so the verdict helpers take the
per-image values and use the standard error of their mean (``std / sqrt(n)``, ``ddof=1``);
a difference is decided when it lies more than :data:`SE_MARGIN` standard errors from
its threshold (about 95% two-sided for a normal mean), and is "not testable" otherwise.

The table renders as plain HTML (``IPython.display.HTML``) or markdown; it needs no
pandas.
"""
from __future__ import annotations

import html as _html
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Finding", "VERDICTS", "HOLDS", "DOES_NOT_HOLD", "NOT_TESTABLE", "SE_MARGIN", "mean_se",
           "difference_verdict", "equivalence_verdict", "decide", "all_of", "findings_html", "findings_markdown",
           "show_findings", "embed", "from_html", "DATA_CLASS", "VERDICT_CLASSES"]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_TESTABLE = "not testable at this scale or budget"
VERDICTS = (HOLDS, DOES_NOT_HOLD, NOT_TESTABLE)

#: The HTML class of a table row of each verdict (the book's stylesheet colours them).
VERDICT_CLASSES = {HOLDS: "zf-holds", DOES_NOT_HOLD: "zf-does-not-hold", NOT_TESTABLE: "zf-not-testable"}

#: A difference counts when it is more than this many standard errors from its threshold.
SE_MARGIN = 2.0


@dataclass(frozen=True)
class Finding:
    """One claim of a paper checked against this run.

    Attributes:
        claim: what the paper says, in a sentence (``"guided backpropagation barely changes
            when the top layers are randomized"``).
        source: where: paper, section, figure or table (``"Adebayo et al. 2018, Fig. 2"``).
        published: the paper's number, or its reading where it gives none.
        measured: this run's number(s), as text.
        criterion: the test, stated before the run (from the claim, not from this run).
        verdict: one of :data:`VERDICTS`.
        evidence: what the verdict rests on (the difference and its standard error, the
            number of images, why it cannot be tested).
    """
    claim: str
    source: str
    published: str
    measured: str
    criterion: str
    verdict: str
    evidence: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"Finding verdict {self.verdict!r} is not one of: "
                             f"{', '.join(repr(v) for v in VERDICTS)}")

    def as_dict(self) -> dict:
        return asdict(self)


def mean_se(values) -> Tuple[float, float, int]:
    """``(mean, standard error of the mean, n)`` of the finite entries of ``values``.

    The standard error is ``std(ddof=1) / sqrt(n)``; NaN when n < 2 (mean NaN when n = 0)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")
    return m, se, n


def decide(diff: float, se: float, margin: float = SE_MARGIN) -> str:
    """The verdict on "``diff`` is above 0" given its standard error: "holds" when it is above 0
    by more than ``margin`` SE, "does not hold" when below by as much, else (a tie, a difference
    within its SE, or no SE) "not testable"."""
    if not math.isfinite(se) or not math.isfinite(diff):
        return NOT_TESTABLE
    if diff > margin * se:
        return HOLDS
    if diff < -margin * se:
        return DOES_NOT_HOLD
    return NOT_TESTABLE


def all_of(verdicts: Sequence[str]) -> str:
    """The verdict on claims that must all hold: "does not hold" if one does not, "holds" if
    all do (and there is at least one), else "not testable"."""
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else NOT_TESTABLE


def difference_verdict(values, threshold: float = 0.0, margin: float = SE_MARGIN,
                       min_n: int = 3, above: bool = True) -> Tuple[str, str]:
    """The verdict on "the mean of ``values`` is above ``threshold``" (or below it, ``above=False``).

    ``values`` are per-image values of the claimed difference (e.g. the guided map's
    similarity minus the gradient's, image by image). "holds" when the mean lies on the
    claimed side of the threshold by more than ``margin`` standard errors, "does not hold"
    when it lies that far on the other side, else "not testable" (also with fewer than
    ``min_n`` finite values).

    Returns:
        ``(verdict, evidence)``, the evidence a sentence such as
        ``"mean +0.210 ± 0.050 (SE) over 16 images"``.
    """
    m, se, n = mean_se(values)
    if n < min_n:
        return NOT_TESTABLE, f"{n} usable images (at least {min_n} needed)"
    text = f"mean {m:+.3f} ± {se:.3f} (SE) over {n} images"
    if threshold:
        text += f", against {threshold:+.3f}"
    side = 1.0 if above else -1.0
    if not se > 0:                       # every value equal: no error to measure by
        if side * (m - threshold) > 0:
            return HOLDS, text + " (every image agrees)"
        if side * (m - threshold) < 0:
            return DOES_NOT_HOLD, text + " (every image agrees)"
        return NOT_TESTABLE, text
    z = side * (m - threshold) / se
    if z > margin:
        return HOLDS, text
    if z < -margin:
        return DOES_NOT_HOLD, text
    return NOT_TESTABLE, text + f": within {margin:g} SE"


def equivalence_verdict(values, tolerance: float, margin: float = SE_MARGIN,
                        min_n: int = 3) -> Tuple[str, str]:
    """The verdict on "the mean of ``values`` is zero, to within ``tolerance``".

    An equivalence test (two one-sided tests): "holds" when the whole interval
    ``mean ± margin * SE`` lies inside ``(-tolerance, tolerance)``, "does not hold" when it
    lies wholly outside that band, else "not testable". The tolerance belongs to the
    claim and is fixed before the run.
    """
    m, se, n = mean_se(values)
    if n < min_n or not math.isfinite(se):
        return NOT_TESTABLE, f"{n} usable images (at least {min_n} needed)"
    text = f"mean {m:+.3f} ± {se:.3f} (SE) over {n} images, tolerance ±{tolerance:g}"
    lo, hi = m - margin * se, m + margin * se
    if -tolerance < lo and hi < tolerance:
        return HOLDS, text
    if lo > tolerance or hi < -tolerance:
        return DOES_NOT_HOLD, text
    return NOT_TESTABLE, text + f": the {margin:g}-SE interval [{lo:+.3f}, {hi:+.3f}] crosses the band's edge"


_COLUMNS = ("claim", "source", "published", "this run", "criterion", "verdict", "evidence")


def _rows(findings: Iterable[Finding]) -> List[Tuple[str, ...]]:
    rows = []
    for f in findings:
        if not isinstance(f, Finding):
            raise ValueError(f"expected Finding objects, got {type(f).__name__}")
        rows.append((f.claim, f.source, f.published, f.measured, f.criterion, f.verdict, f.evidence))
    return rows


def findings_html(findings: Sequence[Finding], caption: Optional[str] = None) -> str:
    """The findings as an HTML table (for ``IPython.display.HTML``); every cell escaped.

    Each row carries the class ``zf-holds``, ``zf-does-not-hold`` or ``zf-not-testable``."""
    out = ['<table class="zf-table zf-findings">']
    if caption:
        out.append(f"<caption>{_html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{c}</th>" for c in _COLUMNS) + "</tr></thead><tbody>")
    for f, row in zip(findings, _rows(findings)):
        cells = "".join(f"<td>{_html.escape(c)}</td>" for c in row)
        out.append(f'<tr class="{VERDICT_CLASSES[f.verdict]}">{cells}</tr>')
    out.append("</tbody></table>")
    out.append(embed(findings))
    return "\n".join(out)


#: The class of the inert ``<script type="application/json">`` block that carries a table's
#: findings in the page (:func:`embed`), for the book's page of every claim (:mod:`zfcore.pages`).
DATA_CLASS = "zf-findings-data"
_DATA_RE = re.compile(r'<script type="application/json" class="%s">(.*?)</script>' % DATA_CLASS, re.S)


def embed(findings: Sequence[Finding]) -> str:
    """The findings as JSON in an inert ``<script type="application/json">`` block: what a built
    chapter carries so that :func:`from_html` reads them back exactly."""
    # "</" cannot stand inside a script element; "<\\/" is the same JSON string
    data = json.dumps([f.as_dict() for f in findings], ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/json" class="{DATA_CLASS}">{data}</script>'


def from_html(text: str) -> List[Finding]:
    """Every :class:`Finding` that :func:`embed` put into ``text`` (an HTML output), in order."""
    out = []
    for block in _DATA_RE.findall(text):
        out += [Finding(**d) for d in json.loads(block)]
    return out


def findings_markdown(findings: Sequence[Finding]) -> str:
    """The findings as a markdown table (pipes in cells escaped)."""
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + " --- |" * len(_COLUMNS)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in _rows(findings)]
    return "\n".join(lines)


def show_findings(findings: Sequence[Finding], caption: Optional[str] = None) -> None:
    """Display the findings table in a notebook (IPython's ``display``)."""
    from IPython.display import HTML, display
    display(HTML(findings_html(findings, caption)))
