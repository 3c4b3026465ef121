"""Numbered captions for the book's figures and tables: "Figure 3.2 — what it shows (tiny scale)".

A chapter calls :func:`chapter` once (its number and the scale it runs at), then, right after
each figure or table, :func:`show` (``plt.show()`` and the figure's caption), :func:`table`
(an HTML table and its caption) or :func:`caption` (a caption alone, e.g. under an HTML image).
Figures and tables are numbered separately, per chapter: Figure 3.1, 3.2, ...; Table 3.1, ...
The caption is an HTML block of class ``zf-caption`` (styled by ``book/_static/zf.css``;
``book/_static/zf.js`` takes the alt text of the images above it from it).

A caption shown again with the same text (a cell run twice in Jupyter) keeps its number.
"""
from __future__ import annotations

import html as _html
import re
from typing import Dict, Iterable, Optional, Sequence, Tuple

from ..tables import html_table

__all__ = ["KINDS", "chapter", "caption_html", "caption", "show", "table", "numbering"]

#: The kinds of caption and their labels.
KINDS = {"figure": "Figure", "table": "Table"}

_state: Dict = {"chapter": None, "scale": None, "counts": {}, "seen": {}}


def chapter(number: Optional[int], scale: Optional[str] = None) -> None:
    """Start numbering the captions of chapter ``number`` (None: plain 1, 2, ...); ``scale``
    (a preset's name) is named at the end of every caption that does not name it already."""
    if number is not None and (isinstance(number, bool) or int(number) != number or int(number) < 0):
        raise ValueError(f"a chapter number must be an int >= 0, got {number!r}")
    _state.update(chapter=None if number is None else int(number), scale=scale, counts={}, seen={})


def numbering() -> Tuple[Optional[int], Dict[str, int]]:
    """``(chapter, {kind: captions so far})``: where the numbering stands."""
    return _state["chapter"], dict(_state["counts"])


def _kind(kind: str) -> str:
    k = str(kind).lower()
    if k not in KINDS:
        raise ValueError(f"unknown caption kind {kind!r}; kinds: {', '.join(KINDS)}")
    return k


def _number(kind: str, text: str) -> str:
    key = (kind, text)
    if key not in _state["seen"]:
        _state["counts"][kind] = _state["counts"].get(kind, 0) + 1
        _state["seen"][key] = _state["counts"][kind]
    n = _state["seen"][key]
    return f"{_state['chapter']}.{n}" if _state["chapter"] is not None else str(n)


def _with_scale(text: str, scale: Optional[str]) -> Tuple[str, str]:
    """``text`` without a final full stop, and the scale note to add ("" when the text names it)."""
    text = str(text).strip().rstrip(".")
    if not scale or re.search(rf"\b{re.escape(str(scale))} scale\b", text):
        return text, ""
    return text, f"{scale} scale"


def caption_html(text: str, kind: str = "figure", scale: Optional[str] = None) -> str:
    """The HTML of the next ``kind`` caption (it takes a number): a ``div.zf-caption`` with the
    label ("Figure 3.2"), the text (escaped) and, unless the text names it, the scale (default:
    the chapter's) in brackets; its ``id`` is ``figure-3-2`` (``table-...``) for links."""
    kind = _kind(kind)
    if not str(text).strip():
        raise ValueError("a caption needs a text saying what the figure or table shows")
    scale = _state["scale"] if scale is None else scale
    body, note = _with_scale(text, scale)
    number = _number(kind, body)
    label = f"{KINDS[kind]} {number}"
    anchor = f"{kind}-{number.replace('.', '-')}"
    e = _html.escape
    tail = f' <span class="zf-caption-scale">({e(note)})</span>' if note else ""
    return (f'<div class="zf-caption zf-caption-{kind}" id="{anchor}">'
            f'<span class="zf-caption-label">{e(label)}</span> &mdash; '
            f'<span class="zf-caption-text">{e(body)}</span>{tail}.</div>')


def caption(text: str, kind: str = "figure", scale: Optional[str] = None) -> None:
    """Display the next ``kind`` caption (:func:`caption_html`) in the notebook."""
    from IPython.display import HTML, display
    display(HTML(caption_html(text, kind, scale)))


def show(text: str, scale: Optional[str] = None) -> None:
    """``plt.show()`` the current figure, then its numbered caption."""
    import matplotlib.pyplot as plt
    plt.show()
    caption(text, "figure", scale)


def table(rows: Iterable[Sequence], header: Sequence[str], text: str, scale: Optional[str] = None) -> None:
    """Display an HTML table (:func:`zfcore.tables.html_table`) and its numbered caption."""
    from IPython.display import HTML, display
    display(HTML(html_table(rows, header)))
    caption(text, "table", scale)
