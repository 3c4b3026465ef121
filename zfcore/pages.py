"""What the book shows around each chapter's own cells, and the page of every claim.

:func:`zfcore.book.run_book` executes the chapters with papermill; before the HTML is built,
this module finishes each executed copy in the stage (never the source notebooks):

* the code is one click away: every code cell is tagged ``hide-input`` (the book shows a
  "show code" toggle); the parameters cells (the chapter's defaults and papermill's values)
  and the bare widget cells are left out of the static page (``remove-cell``), and live
  widgets' outputs, which a static page cannot show, are dropped (their static galleries stay);
* a box under the chapter's title lists the chapter's own verdicts (:func:`verdict_box`);
* a footer gives the provenance: the commit, the versions of torch, torchvision and zfcore,
  the processor, the scale, the seed, the date and the time the chapter took (:func:`footer`).

Every verdict comes from the findings the chapter computed: each findings table that
:func:`zfcore.findings.findings_html` draws carries its findings as JSON
(:func:`zfcore.findings.embed`), read back here with :func:`zfcore.findings.from_html`.
:func:`write_claims_page` gathers them into ``book/claims.md``, "The paper's claims, checked",
and fails (:class:`MissingFindings`) when a chapter whose code draws findings has none.
"""
from __future__ import annotations

import datetime as _dt
import html as _html
import platform
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import nbformat

from . import geometry
from .findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, VERDICT_CLASSES, Finding, from_html
from .layout import machine_name

__all__ = ["finish_chapter", "chapter_findings", "chapter_title", "verdict_box", "footer", "provenance",
           "write_claims_page", "write_front_page", "MissingFindings", "CLAIMS_PAGE", "FRONT_PAGE",
           "GEOMETRY_MARKER", "WIDGET_MIME"]

#: The page of every claim, relative to the book's root.
CLAIMS_PAGE = "book/claims.md"
#: The front page, and the line of it that :func:`write_front_page` replaces with the table of
#: every scale's geometry (:func:`zfcore.geometry.scales_table`).
FRONT_PAGE = "book/index.md"
GEOMETRY_MARKER = "<!-- zf: the geometry of every scale -->"
#: The output type of a live ipywidget, which a static page cannot show.
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_INJECTED_TAG = "injected-parameters"
_BOX_TAG = "zf-verdict-box"
_FOOTER_TAG = "zf-provenance"
_BADGE = {HOLDS: "holds", DOES_NOT_HOLD: "does not hold", NOT_TESTABLE: "not testable"}


class MissingFindings(RuntimeError):
    """A chapter whose code draws a findings table left none in its executed copy."""


# --------------------------------------------------------------------------- reading a chapter

def _html_outputs(cell) -> List[str]:
    out = []
    for o in cell.get("outputs", []):
        data = o.get("data", {}) if isinstance(o, dict) else {}
        if "text/html" in data:
            t = data["text/html"]
            out.append("".join(t) if isinstance(t, list) else t)
    return out


def chapter_findings(nb) -> List[Finding]:
    """Every :class:`~zfcore.findings.Finding` the executed notebook ``nb`` shows, in page order."""
    found: List[Finding] = []
    for c in nb.cells:
        if c.cell_type == "code":
            for text in _html_outputs(c):
                found += from_html(text)
    return found


def draws_findings(nb) -> bool:
    """Whether the notebook's code draws a findings table (calls ``findings_html`` or ``show_findings``)."""
    return any(c.cell_type == "code" and ("findings_html(" in c.source or "show_findings(" in c.source)
               for c in nb.cells)


def chapter_title(nb, default: str = "") -> str:
    """The text of the notebook's first ``# `` heading."""
    for c in nb.cells:
        if c.cell_type == "markdown":
            for line in c.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return default


# --------------------------------------------------------------------------- what is added

def verdict_box(found: Sequence[Finding], claims_link: str = "claims.md") -> str:
    """A MyST admonition (markdown) listing a chapter's verdicts, with their counts."""
    counts = {v: sum(f.verdict == v for f in found) for v in _BADGE}
    head = ", ".join(f"{n} {_BADGE[v]}" for v, n in counts.items() if n)
    lines = ["```{admonition} This chapter's verdicts", ":class: zf-verdicts", "",
             f"{len(found)} claim{'s' if len(found) != 1 else ''} checked on this run: {head}. "
             f"Each is shown with its criterion, fixed before the run, where the chapter checks it; "
             f"every chapter's are gathered on [The paper's claims, checked]({claims_link}).", ""]
    for f in found:
        lines.append(f"- **{_BADGE[f.verdict]}**: {_md(f.claim)} ({_md(f.source)}; this run: {_md(f.measured)})")
    lines.append("```")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text for a markdown line: no line breaks, markdown's special characters escaped."""
    out = " ".join(str(text).split())
    for ch in "\\`*_[]<>|":
        out = out.replace(ch, "\\" + ch)
    return out


def provenance(root: Path, scale: str, seed: int, seconds: Optional[float]) -> Dict[str, str]:
    """What a chapter's footer states: commit, versions, processor, scale, seed, date, time taken."""
    import torch
    import torchvision

    from . import __version__
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit = (commit + (" with uncommitted changes" if dirty else "")) if commit else "not a git checkout"
    except (OSError, subprocess.SubprocessError):
        commit = "not a git checkout"
    return {"commit": commit, "zfcore": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "processor": machine_name(), "scale": scale, "seed": str(seed),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "time": f"{seconds:.1f} s" if seconds is not None else "not recorded"}


def footer(info: Dict[str, str]) -> str:
    """The provenance footer (markdown) of :func:`provenance`'s facts."""
    return ("---\n\n"
            f"<p class=\"zf-provenance\">This page was computed at the <code>{_html.escape(info['scale'])}</code> "
            f"scale with seed {_html.escape(info['seed'])}, in {_html.escape(info['time'])}, on "
            f"{_html.escape(info['date'])}; commit {_html.escape(info['commit'])}; zfcore {_html.escape(info['zfcore'])}, "
            f"torch {_html.escape(info['torch'])}, torchvision {_html.escape(info['torchvision'])}, Python "
            f"{_html.escape(info['python'])}; processor: {_html.escape(info['processor'])}.</p>")


def _is_widget_output(o) -> bool:
    return isinstance(o, dict) and WIDGET_MIME in o.get("data", {})


def _tag(cell, tag: str) -> None:
    tags = list(cell.metadata.get("tags", []))
    if tag not in tags:
        cell.metadata["tags"] = tags + [tag]


def finish_chapter(executed: Path, info: Dict[str, str]) -> List[Finding]:
    """Finish the executed copy of a chapter for the static book (see the module docstring):
    code hidden, parameters and bare widget cells removed, the verdict box under the title, the
    provenance footer at the end. Idempotent. Returns the chapter's findings."""
    nb = nbformat.read(str(executed), as_version=4)
    nb.cells = [c for c in nb.cells if not set(c.metadata.get("tags", [])) & {_BOX_TAG, _FOOTER_TAG}]
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        tags = set(c.metadata.get("tags", []))
        if "remove-cell" in tags:
            continue
        if tags & {"parameters", _INJECTED_TAG}:
            _tag(c, "remove-cell")
            continue
        if any(_is_widget_output(o) for o in c.get("outputs", [])):
            c.outputs = [o for o in c.outputs if not _is_widget_output(o)]
            if not c.outputs:
                _tag(c, "remove-cell")             # a bare widget cell: nothing for a static page
                continue
        _tag(c, "hide-input")
    found = chapter_findings(nb)
    if found:
        title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
        box = nbformat.v4.new_markdown_cell(verdict_box(found))
        box.id, box.metadata["tags"] = _BOX_TAG, [_BOX_TAG]
        nb.cells.insert(title + 1, box)
    end = nbformat.v4.new_markdown_cell(footer(info))
    end.id, end.metadata["tags"] = _FOOTER_TAG, [_FOOTER_TAG]
    nb.cells.append(end)
    nbformat.write(nb, str(executed))
    return found


# --------------------------------------------------------------------------- the page of every claim

def gather(stage: Path, names: Sequence[str], strict: bool = True) -> List[Tuple[str, str, List[Finding]]]:
    """``(chapter, title, findings)`` of each executed chapter of the stage, in ``names``' order.

    Raises :class:`MissingFindings` naming every chapter whose code draws findings but whose
    executed copy holds none (it failed to compute them, or was never executed)."""
    out, missing = [], []
    for name in names:
        path = stage / name
        if not path.is_file() or path.suffix != ".ipynb":
            continue
        nb = nbformat.read(str(path), as_version=4)
        found = chapter_findings(nb)
        if draws_findings(nb) and not found:
            missing.append(name)
        if found:
            out.append((name, chapter_title(nb, Path(name).stem), found))
    if missing and strict:
        raise MissingFindings(f"{', '.join(missing)}: the chapter's code draws a findings table, but its "
                              f"executed copy in {stage} holds no findings; run it again "
                              f"(zf book --only {missing[0]})")
    return out


def claims_page(chapters: Sequence[Tuple[str, str, List[Finding]]], scale: str) -> str:
    """The markdown of "The paper's claims, checked": one row per claim, linked to its chapter."""
    total = sum(len(f) for _, _, f in chapters)
    counts = {v: sum(f.verdict == v for _, _, fs in chapters for f in fs) for v in _BADGE}
    rows = []
    for name, title, found in chapters:
        page = Path(name).stem + ".html"
        for f in found:
            rows.append(f'<tr class="{VERDICT_CLASSES[f.verdict]}"><td>{_html.escape(f.claim)}</td><td>{_html.escape(f.source)}</td>'
                        f'<td>{_html.escape(f.published)}</td><td>{_html.escape(f.measured)}</td>'
                        f'<td>{_html.escape(f.verdict)}</td>'
                        f'<td><a href="{page}">{_html.escape(title)}</a></td></tr>')
    table = ('<div class="zf-scroll"><table class="zf-table zf-findings zf-claims">\n'
             '<thead><tr><th>the paper\'s claim</th><th>where</th><th>the paper\'s number</th>'
             '<th>this run</th><th>verdict</th><th>shown in</th></tr></thead><tbody>\n'
             + "\n".join(rows) + "\n</tbody></table></div>")
    summary = ", ".join(f"{n} {_BADGE[v]}" for v, n in counts.items() if n)
    return ("# The paper's claims, checked\n\n"
            f"Every claim this book checks, gathered from the chapters as they ran at the `{scale}` scale: "
            f"{total} claims, {summary}. Each row gives the claim, where the paper makes it, the paper's "
            "number (or its reading where it gives none), this run's, and the verdict by a criterion fixed "
            "from the claim before the run; the chapter that shows it states the criterion and the evidence. "
            "\"Not testable\" means this scale or budget cannot tell: a difference within its standard error, "
            "a baseline at chance, or a measure the scale lacks.\n\n"
            "This page is generated by `zf book` from the findings the chapters computed "
            "(`zfcore.pages.write_claims_page`); none of it is typed by hand.\n\n"
            + table + "\n")


def write_claims_page(stage: Path, names: Sequence[str], scale: str, strict: bool = True) -> Path:
    """Write the stage's ``book/claims.md`` from its executed chapters (:func:`gather`)."""
    path = stage / CLAIMS_PAGE
    path.write_text(claims_page(gather(stage, names, strict), scale), encoding="utf-8")
    return path


def write_front_page(stage: Path) -> Path:
    """Put the table of every scale's geometry (:func:`zfcore.geometry.scales_table`) in the
    stage's front page, where its source has :data:`GEOMETRY_MARKER` (a page without the
    marker is left as it is)."""
    path = stage / FRONT_PAGE
    text = path.read_text(encoding="utf-8")
    if GEOMETRY_MARKER in text:
        path.write_text(text.replace(GEOMETRY_MARKER, geometry.scales_table()), encoding="utf-8")
    return path
