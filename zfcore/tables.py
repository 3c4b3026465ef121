"""HTML for the book: a plain HTML table, a collapsed image gallery (no plotting library needed)."""
from __future__ import annotations

import html as _html
from typing import Iterable, Optional, Sequence

__all__ = ["html_table", "image_details_html"]


def html_table(rows: Iterable[Sequence], header: Sequence[str], caption: Optional[str] = None) -> str:
    """A plain HTML table (for ``IPython.display.HTML``); cells are escaped."""
    out = ['<table class="zf-table">']
    if caption:
        out.append(f"<caption>{_html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_html.escape(str(h))}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_html.escape(str(c))}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def image_details_html(img, summary: str, quality: int = 75) -> str:
    """A collapsed HTML ``<details>`` holding ``img`` (a PIL image) inline as a JPEG:
    large galleries stay in the static page without weighing on it until opened."""
    import base64
    import io
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    data = base64.b64encode(buf.getvalue()).decode()
    return (f"<details><summary>{_html.escape(summary)}</summary>"
            f'<img style="max-width:none" src="data:image/jpeg;base64,{data}"/></details>')
