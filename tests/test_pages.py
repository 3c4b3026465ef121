"""What the book adds around each executed chapter (zfcore.pages), and the page of every claim."""
import json
import re

import nbformat
import pytest

from zfcore import pages
from zfcore.book import _label, _last_times
from zfcore.findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Finding, embed, findings_html, from_html

F1 = Finding("lower layers converge first", "Section 4.1, Fig. 4", "a few epochs", "epochs 1, 2, 5",
             "each layer settles no later than the one above", HOLDS, "3 saved epochs")
F2 = Finding("a </script> & <b>tricky</b> | claim_with *marks*", "Table 3", "+4.3 points", "-19.0 points",
             "at most a third", DOES_NOT_HOLD, "")
F3 = Finding("wider fc layers overfit", "Table 3", "grows", "does not grow", "grows with width", NOT_TESTABLE)
INFO = {"commit": "abc123", "zfcore": "0.1.0", "torch": "2.x", "torchvision": "0.x", "python": "3.11",
        "processor": "Some CPU", "scale": "tiny", "seed": "0", "date": "2026-12-01 12:00 UTC", "time": "1.5 s"}
WIDGET = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
          "text/plain": "LayerExplorer(...)"}


def test_findings_travel_in_the_html_exactly():
    html = findings_html([F1, F2, F3], caption="a caption")
    assert from_html(html) == [F1, F2, F3]
    assert "</script> &" not in html.split('class="zf-findings-data">', 1)[1].split("</script>", 1)[0]
    assert from_html(embed([]) + "<p>no table</p>") == []
    assert from_html(findings_html([F1]) + findings_html([F3])) == [F1, F3]


def _chapter(tmp_path, with_findings=True):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('scale = "default"')
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('scale = "tiny"')
    injected.metadata["tags"] = ["injected-parameters"]
    work = nbformat.v4.new_code_cell("x = 1\nprint(x)")
    work.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    table = nbformat.v4.new_code_cell("display(HTML(findings_html(found)))")
    if with_findings:
        table.outputs = [nbformat.v4.new_output("display_data", data={"text/html": findings_html([F1, F2, F3])})]
    bare_widget = nbformat.v4.new_code_cell("LayerExplorer(run)")
    bare_widget.outputs = [nbformat.v4.new_output("execute_result", data=WIDGET, execution_count=5)]
    gallery = nbformat.v4.new_code_cell("e = OcclusionExplorer(run)\ndisplay(e)\ndisplay(HTML(e.gallery_html()))")
    gallery.outputs = [nbformat.v4.new_output("display_data", data=WIDGET),
                       nbformat.v4.new_output("display_data", data={"text/html": "<p>gallery</p>"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Feature evolution\n\nIntro."), params, injected, work,
                nbformat.v4.new_markdown_cell("Prose."), table, bare_widget, gallery]
    path = tmp_path / "04_feature_evolution.ipynb"
    nbformat.write(nb, str(path))
    return path


def _tags(cell):
    return set(cell.metadata.get("tags", []))


def test_finish_chapter_hides_code_adds_the_box_and_the_footer(tmp_path):
    path = _chapter(tmp_path)
    assert pages.finish_chapter(path, INFO) == [F1, F2, F3]
    nb = nbformat.read(str(path), as_version=4)
    kinds = [c.cell_type for c in nb.cells]
    # the box right under the title, the footer last
    assert kinds[0] == "markdown" and "zf-verdict-box" in _tags(nb.cells[1])
    assert "zf-provenance" in _tags(nb.cells[-1])
    box = nb.cells[1].source
    assert box.startswith("```{admonition} This chapter's verdicts") and box.rstrip().endswith("```")
    assert "3 claims checked on this run: 1 holds, 1 does not hold, 1 not testable" in box
    assert "claims.md" in box
    bullets = [l for l in box.splitlines() if l.startswith("- ")]
    assert len(bullets) == 3 and bullets[0].startswith("- **holds**: lower layers converge first")
    # markdown's own characters in a claim are escaped, so they print as typed
    assert r"\<b\>tricky\</b\>" in bullets[1] and r"claim\_with \*marks\*" in bullets[1]
    foot = nb.cells[-1].source
    for value in INFO.values():
        assert value in foot
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {c.source.split("\n")[0]: c for c in code}
    assert "remove-cell" in _tags(by_source['scale = "default"'])
    assert "remove-cell" in _tags(by_source['scale = "tiny"'])
    assert "remove-cell" in _tags(by_source["LayerExplorer(run)"])           # a bare widget cell
    gallery = by_source["e = OcclusionExplorer(run)"]
    assert "hide-input" in _tags(gallery) and "remove-cell" not in _tags(gallery)
    assert [list(o["data"]) for o in gallery.outputs] == [["text/html"]]     # the live widget dropped
    for c in (by_source["x = 1"], by_source["display(HTML(findings_html(found)))"]):
        assert _tags(c) == {"hide-input"}
    # finishing again changes nothing (a carried chapter is finished once more on a later build)
    before = path.read_text()
    pages.finish_chapter(path, INFO)
    assert path.read_text() == before


def test_a_chapter_without_findings_gets_no_box(tmp_path):
    path = _chapter(tmp_path, with_findings=False)
    assert pages.finish_chapter(path, INFO) == []
    nb = nbformat.read(str(path), as_version=4)
    assert not any("zf-verdict-box" in _tags(c) for c in nb.cells)
    assert "zf-provenance" in _tags(nb.cells[-1])


def test_the_claims_page_gathers_every_chapter_and_fails_on_a_missing_one(tmp_path):
    stage = tmp_path / "stage"
    (stage / "book").mkdir(parents=True)
    good = _chapter(stage / "book")
    other = nbformat.v4.new_notebook()
    other.cells = [nbformat.v4.new_markdown_cell("# No claims here"), nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(other, str(stage / "book" / "01_model.ipynb"))
    names = ["book/01_model.ipynb", "book/" + good.name, "book/missing.ipynb"]
    path = pages.write_claims_page(stage, names, "tiny")
    text = path.read_text()
    assert text.startswith("# The paper's claims, checked")
    assert "3 claims, 1 holds, 1 does not hold, 1 not testable" in text
    rows = re.findall(r"<tr class=\"(zf-[a-z-]+)\">(.*?)</tr>", text)
    assert [r[0] for r in rows] == ["zf-holds", "zf-does-not-hold", "zf-not-testable"]
    assert all('<a href="04_feature_evolution.html">Feature evolution</a>' in r[1] for r in rows)
    assert "&lt;/script&gt;" in rows[1][1] and "</script>" not in rows[1][1]
    # a chapter whose code draws findings but whose executed copy has none fails the page
    (tmp_path / "x").mkdir()
    broken = _chapter(tmp_path / "x", with_findings=False)
    (stage / "book" / "05_broken.ipynb").write_bytes(broken.read_bytes())
    with pytest.raises(pages.MissingFindings, match=r"book/05_broken.ipynb: the chapter's code draws"):
        pages.write_claims_page(stage, names + ["book/05_broken.ipynb"], "tiny")
    pages.write_claims_page(stage, names + ["book/05_broken.ipynb"], "tiny", strict=False)
    assert "3 claims" in path.read_text()


def test_progress_lines_estimate_each_chapter_and_the_rest(tmp_path):
    todo = ["book/a.ipynb", "book/b.ipynb", "book/c.ipynb"]
    assert _label(1, todo, todo[0], {}, None) == "[1/3] book/a.ipynb"
    assert _label(2, todo, todo[1], {}, 12.0) == (
        "[2/3] book/b.ipynb (about 12 s, first build, estimated; the book about 24 s more)")
    line = _label(1, todo, todo[0], {todo[0]: 100.0, todo[1]: 50.0}, 12.0)
    assert line == "[1/3] book/a.ipynb (about 2 min, last build; the book about 3 min more)"
    # the last build's times: papermill's record in each executed chapter of the stage, at this scale
    (tmp_path / "book").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 42.5, "end_time": "x", "exception": None,
                                "parameters": {"scale": "tiny"}}
    nbformat.write(nb, str(tmp_path / "book" / "a.ipynb"))
    nb.metadata["papermill"]["parameters"] = {"scale": "default"}
    nbformat.write(nb, str(tmp_path / "book" / "b.ipynb"))
    assert _last_times(tmp_path, todo, "tiny") == {"book/a.ipynb": 42.5}


def test_provenance_names_what_the_footer_needs(tmp_path):
    info = pages.provenance(tmp_path, "tiny", 3, 2.25)
    assert info["scale"] == "tiny" and info["seed"] == "3" and info["time"] == "2.2 s"
    assert info["commit"] == "not a git checkout"          # tmp_path is no git checkout
    assert all(info[k] for k in ("torch", "torchvision", "zfcore", "processor", "date", "python"))
    assert json.dumps(info)
