"""The book's frame: committed notebooks, the table of contents, and the chapter runner."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from zfcore.book import REPO_ROOT, ChapterFailed, chapters, run_book

needs_papermill = pytest.mark.skipif(
    importlib.util.find_spec("papermill") is None
    or importlib.util.find_spec("ipykernel") is None,
    reason="papermill and ipykernel (the 'book' extra) are needed to run chapters")
needs_jupyter_book = pytest.mark.skipif(
    importlib.util.find_spec("jupyter_book") is None,
    reason="jupyter-book (the 'book' extra) is needed to build the HTML")

CONFIG = """\
title: mini book
author: tests
only_build_toc_files: true
exclude_patterns: [_build, "**.ipynb_checkpoints"]
execute:
  execute_notebooks: "off"
sphinx:
  config:
    intersphinx_mapping: {}
"""

TOC = """\
format: jb-book
root: book/index
chapters:
  - file: book/a
  - file: book/b.ipynb
"""


def _notebook(*cells):
    """A notebook whose first code cell is the tagged parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell('scale = "tiny"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Chapter"), params]
    for cell in cells:
        if cell.startswith("md:"):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[3:]))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    return nb


def _mini_book(root: Path, b_cells):
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text(CONFIG)
    (root / "_toc.yml").write_text(TOC)
    (root / "book" / "index.md").write_text("# Mini book\n\n```{tableofcontents}\n```\n")
    nbformat.write(_notebook("import sys\nprint(sys.executable)",
                             "md:Some prose.",
                             "x = 2 * 21\nx"),
                   str(root / "book" / "a.ipynb"))
    nbformat.write(_notebook(*b_cells), str(root / "book" / "b.ipynb"))


def _book_notebooks():
    book = REPO_ROOT / "book"
    if not book.is_dir():
        return []
    return sorted(p for p in book.rglob("*.ipynb")
                  if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("path", _book_notebooks(),
                         ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path} has no code cells"
    for i, cell in enumerate(code):
        assert not cell.get("outputs"), f"{path}: code cell {i} has outputs"
        assert cell.get("execution_count") is None, f"{path}: code cell {i} has a count"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), \
        f"{path}: the first code cell is not tagged 'parameters'"
    assert re.search(r"^\s*scale\s*(:[^=]*)?=(?!=)", first.source, re.M), \
        f"{path}: the parameters cell does not assign scale"


def test_chapters_follow_toc(tmp_path):
    (tmp_path / "book" / "part").mkdir(parents=True)
    for name in ("index.md", "intro.md", "02_b.ipynb", "01_a.ipynb", "part/03_c.ipynb",
                 "part/04_d.ipynb", "unlisted.ipynb"):
        (tmp_path / "book" / name).write_text("{}")
    (tmp_path / "_toc.yml").write_text("""\
format: jb-book
root: book/index
parts:
  - caption: One
    chapters:
      - file: book/intro
      - file: book/02_b
        sections:
          - file: book/part/04_d.ipynb
  - caption: Two
    chapters:
      - file: book/01_a
        sections:
          - file: book/part/03_c
""")
    found = chapters(tmp_path)
    assert [p.relative_to(tmp_path.resolve()).as_posix() for p in found] == [
        "book/02_b.ipynb", "book/part/04_d.ipynb", "book/01_a.ipynb",
        "book/part/03_c.ipynb"]
    assert all(p.is_file() for p in found)

    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\n"
                                       "chapters:\n  - file: book/missing\n")
    with pytest.raises(FileNotFoundError, match="book/missing"):
        chapters(tmp_path)


def test_the_repository_toc_lists_notebooks_under_book():
    names = [p.relative_to(REPO_ROOT).as_posix() for p in chapters(REPO_ROOT)]
    assert names and all(n.startswith("book/") and n.endswith(".ipynb") for n in names)


def test_unknown_scale_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="tiny"):
        run_book("huge", root=tmp_path, build_dir=tmp_path / "stage")
    assert not (tmp_path / "stage").exists()


@needs_papermill
def test_failure_names_chapter_and_cell(tmp_path, monkeypatch):
    # a stray kernel spec named python3 that cannot run: chapters must not use it
    stray = tmp_path / "stray" / "kernels" / "python3"
    stray.mkdir(parents=True)
    (stray / "kernel.json").write_text(json.dumps(
        {"argv": [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"],
         "display_name": "stray", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "stray"))
    root = tmp_path / "src"
    _mini_book(root, ["y = 1", "md:Between.", "z = 2", "1 / 0", "print('never')"])
    stage = tmp_path / "stage"
    with pytest.raises(ChapterFailed) as info:
        run_book("tiny", root=root, build_dir=stage, html=False, progress=False)
    err = info.value
    # code cells of b: 0 parameters, 1 "y = 1", 2 "z = 2", 3 "1 / 0"
    assert err.chapter == "book/b.ipynb"
    assert err.cell == 3
    assert err.ename == "ZeroDivisionError"
    assert "book/b.ipynb" in str(err) and "cell 3" in str(err)
    assert "ZeroDivisionError" in str(err)
    # the executed notebook stays in the stage, error included
    assert err.executed == stage / "book" / "b.ipynb"
    executed = nbformat.read(str(err.executed), as_version=4)
    assert any(o.get("output_type") == "error"
               for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    # chapter a ran before it, in this very interpreter, with scale injected
    a = nbformat.read(str(stage / "book" / "a.ipynb"), as_version=4)
    assert a.metadata.papermill.parameters == {"scale": "tiny"}
    printed = "".join(o.get("text", "") for c in a.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert str(Path(sys.executable)) in printed

    # only=: run b's fixed version alone; a keeps its executed copy from the old stage
    _mini_book(tmp_path / "fixed", ["y = 1"])
    (root / "book" / "b.ipynb").write_text((tmp_path / "fixed/book/b.ipynb").read_text())
    run_book("tiny", root=root, build_dir=stage, html=False, progress=False, only="b")
    a2 = json.loads((stage / "book" / "a.ipynb").read_text())
    assert a2["metadata"]["papermill"]["parameters"] == {"scale": "tiny"}
    with pytest.raises(ValueError, match="no chapter named"):
        run_book("tiny", root=root, build_dir=stage, html=False, only="zz")


@needs_papermill
@needs_jupyter_book
def test_mini_book_builds_html(tmp_path, monkeypatch):
    # the kernel inherits the environment; figures must still become outputs
    monkeypatch.setenv("MPLBACKEND", "Agg")
    root = tmp_path / "src"
    _mini_book(root, [
        "import matplotlib.pyplot as plt\nplt.plot([0, 1, 2], [0, 1, 4])\nplt.show()",
        "md:After the figure.",
    ])
    index = run_book("tiny", root=root, build_dir=tmp_path / "stage", progress=False)
    html_dir = tmp_path / "stage" / "_build" / "html"
    assert index == html_dir / "index.html" and index.is_file()
    page = html_dir / "book" / "b.html"
    assert page.is_file()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page.read_text(encoding="utf-8"))
    images = [s for s in srcs if "_images/" in s]
    assert images, f"no figure in {page}"
    for src in images:
        assert (page.parent / src).resolve().is_file()
        assert (page.parent / src).resolve().parent == (html_dir / "_images").resolve()


@needs_papermill
@needs_jupyter_book
def test_tiny_book_builds_end_to_end(tiny_book):
    """The real book at the tiny scale: every chapter executes, every page and figure exists."""
    root, html = tiny_book  # built once a session (tests/conftest.py), the browser tests reuse it
    assert html.exists()
    site = html.parent
    for nb in chapters(root):
        page = site / nb.relative_to(root).with_suffix(".html")
        assert page.exists(), page
        text = page.read_text()
        imgs = [src for src in re.findall(r'<img[^>]+src="([^"]+)"', text) if not src.startswith("data:")]
        assert imgs, f"{page.name} shows no figure"
        for src in imgs:
            assert (page.parent / src).resolve().exists(), src
        assert "Traceback" not in text, f"{page.name} shows a traceback"
    # the first chapter shows the run's numbers, not placeholders
    ch1 = (site / "book" / "01_model_and_training.html").read_text()
    assert "validation top-1 error, 10 crops" in ch1
    assert "tiny" in ch1


@needs_papermill
def test_imagenet_scale_book_runs_on_prepared_folders(tmp_path, monkeypatch):
    """zf book --scale imagenet on small prepared folders: every chapter executes and shows figures."""
    import shutil
    from folder_data import folder_overrides, make_folders
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path / "artifacts"))
    roots = make_folders(tmp_path / "data")
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "book", root / "book")
    # the tiny sizes, and 2 epochs: the architecture chapters train 15 models
    stage = run_book("imagenet", root=root, html=False, progress=True, environment=roots.to_env(),
                     overrides={**folder_overrides(), "epochs": 2, "evolution_epochs": (1, 2)})
    for nb in chapters(root):
        done = nbformat.read(str(stage / nb.relative_to(root)), as_version=4)
        outputs = [o for c in done.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], nb.name
        if nb.stem.startswith("07_"):
            # no part positions in ImageNet: the chapter says so and shows the paper's Table 1
            shown = "".join(str(o.get("data", {})) for o in outputs)
            assert "part" in shown and "<table" in shown, shown[:500]
            continue
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb.name} shows no figure"
        text = "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                       for o in outputs)
        assert "Traceback" not in text, nb.name
    # the chapters read the folders: the trained run is keyed by the ImageNet folder and the list
    runs = list((tmp_path / "artifacts" / "imagenet" / "runs").glob("zfnet-*"))
    assert runs, "no run trained at the imagenet scale"
    summary = json.loads((runs[0] / "metrics.json").read_text())
    assert summary["preset"]["data"] == "folders"
