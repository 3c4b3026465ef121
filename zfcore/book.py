"""The chapter runner: execute the book's notebooks with papermill, then build the HTML.

The book (Jupyter Book 1.x, configured by ``_config.yml`` and ``_toc.yml`` at the
repository's root) never executes anything itself (``execute_notebooks: 'off'``): it
shows exactly what papermill executed. :func:`run_book` does that work for one scale:

1. it stages a copy of ``_config.yml``, ``_toc.yml`` and ``book/`` under
   ``_build/stage-<scale>/``;
2. it executes each chapter listed in ``_toc.yml``, in order, with papermill, injecting
   ``scale`` into the cell tagged ``parameters``; the first failure stops the run with a
   :class:`ChapterFailed` that names the chapter and the cell, and the failed executed
   notebook stays in the stage to be opened;
3. it runs ``jupyter-book build`` on the stage; the pages land in
   ``_build/stage-<scale>/_build/html/``.

The last good book stays where it is until a new one is built: the stage's ``_build/``
(the HTML of the previous build) is kept through the chapters, the new HTML is built
beside it (``_build/.next/``) and only then takes its place. A chapter or a build that
fails leaves the previous book readable.

``zf book --scale S`` and ``make book`` call :func:`run_book`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from . import pages
from .presets import OVERRIDES_VARIABLE, get_preset

__all__ = ["REPO_ROOT", "ChapterFailed", "BuildFailed", "chapters", "run_book"]

REPO_ROOT = Path(__file__).resolve().parent.parent

# A file written into every stage: run_book only ever wipes folders that carry it.
_STAGE_MARK = ".zfcore-stage"
# The stage's built book: kept when the stage is wiped, replaced only by a newer build.
_BUILT = "_build"
# Where the next build is made, inside _BUILT (which the book's exclude_patterns leave out).
_NEXT = ".next"
# Cell tags papermill adds to the notebooks it executes.
_INJECTED_TAG = "injected-parameters"
_ERROR_MARKER_TAG = "papermill-error-cell-tag"
# Keys of _toc.yml (jb-book, jb-article and the generic sphinx-external-toc format)
# whose values are lists of further entries, in document order.
_TOC_CHILDREN = ("parts", "chapters", "sections", "subtrees", "entries")
_DOC_SUFFIXES = (".ipynb", ".md", ".myst", ".rst")


class ChapterFailed(RuntimeError):
    """A chapter raised while papermill executed it.

    Attributes:
        chapter: the notebook's path relative to the book's root, e.g.
            ``"book/01_model_and_training.ipynb"``.
        cell: 0-based index of the failing cell among the code cells of the chapter's
            source notebook (the cell papermill injects is not counted), or ``None``
            when it cannot be told (e.g. the kernel could not start).
        ename, evalue: the exception's class name and message, as the kernel reported.
        executed: path of the executed notebook, outputs and error included, kept in the
            stage so that it can be opened; ``None`` if papermill wrote none.
        source: the failing cell's source, or ``None``.
    """

    def __init__(self, chapter: str, cell: Optional[int], ename: str, evalue: str,
                 executed: Optional[Path] = None, source: Optional[str] = None):
        self.chapter = chapter
        self.cell = cell
        self.ename = ename
        self.evalue = evalue
        self.executed = executed
        self.source = source
        where = f" in cell {cell}" if cell is not None else ""
        msg = f"chapter {chapter} failed{where}: {ename}: {evalue}"
        if source:
            lines = source.strip().splitlines()
            excerpt = "\n".join("    " + line for line in lines[:6])
            if len(lines) > 6:
                excerpt += "\n    ..."
            msg += f"\n  the cell (code cells counted from 0):\n{excerpt}"
        if executed is not None:
            msg += f"\n  the executed notebook, with the error, is kept at {executed}"
        super().__init__(msg)

    def __reduce__(self):  # keep the attributes across pickling (multiprocessing)
        return (type(self), (self.chapter, self.cell, self.ename, self.evalue,
                             self.executed, self.source))


class BuildFailed(RuntimeError):
    """``jupyter-book build`` failed, or wrote no ``index.html``; the message holds the end of
    its output. The previous HTML book of the stage is kept."""


# ----------------------------------------------------------------------------------
# The table of contents


def _toc_files(entry) -> Iterable[str]:
    """The ``root``/``file``/``glob`` names of a _toc.yml node, in document order."""
    if isinstance(entry, list):
        for item in entry:
            yield from _toc_files(item)
        return
    if not isinstance(entry, dict):
        return
    for key in ("root", "file"):
        if isinstance(entry.get(key), str):
            yield entry[key]
    if isinstance(entry.get("glob"), str):
        yield "glob:" + entry["glob"]
    for key in _TOC_CHILDREN:
        if key in entry:
            yield from _toc_files(entry[key])


def _toc_names(root: Path) -> List[str]:
    """The names ``root/_toc.yml`` lists, in document order (``glob:PATTERN`` for a glob entry)."""
    import yaml  # comes with papermill and jupyter-book
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise FileNotFoundError(f"no _toc.yml under {root}")
    return list(_toc_files(yaml.safe_load(toc_path.read_text(encoding="utf-8")) or {}))


def _resolve(root: Path, name: str) -> Optional[Path]:
    """The notebook a _toc.yml entry names, ``None`` for another kind of page."""
    path = root / name
    if path.suffix in _DOC_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"_toc.yml lists {name!r}, but {path} does not exist")
        return path if path.suffix == ".ipynb" else None
    for suffix in _DOC_SUFFIXES:
        candidate = Path(str(path) + suffix)
        if candidate.is_file():
            return candidate if suffix == ".ipynb" else None
    raise FileNotFoundError(
        f"_toc.yml lists {name!r}, but there is no {name}{{{','.join(_DOC_SUFFIXES)}}} "
        f"under {root}")


def chapters(root: Union[str, Path] = REPO_ROOT) -> List[Path]:
    """The notebooks ``root/_toc.yml`` lists, in the book's order.

    Walks the root, parts, chapters and sections (recursively; ``glob`` entries are
    expanded in sorted order) and keeps the ``.ipynb`` files; an entry may omit the
    suffix. Markdown pages are skipped.

    Returns:
        absolute paths of existing notebooks, each once.

    Raises:
        FileNotFoundError: ``_toc.yml`` is missing or lists a page that does not exist.
    """
    root = Path(root).resolve()
    found: List[Path] = []
    for name in _toc_names(root):
        if name.startswith("glob:"):
            pattern = name[len("glob:"):]
            paths = sorted(p for p in root.glob(pattern) if p.suffix == ".ipynb")
            paths += sorted(p for p in root.glob(pattern + ".ipynb"))
        else:
            path = _resolve(root, name)
            paths = [path] if path is not None else []
        for path in paths:
            if ".ipynb_checkpoints" not in path.parts and path not in found:
                found.append(path)
    return found


# ----------------------------------------------------------------------------------
# Staging


def _copy_book(root: Path, stage: Path) -> None:
    for name in ("_config.yml", "_toc.yml"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"no {name} under {root}")
        shutil.copy2(root / name, stage / name)
    if (root / "book").is_dir():
        shutil.copytree(root / "book", stage / "book",
                        ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints",
                                                      "__pycache__"))


def _executed_ok(path: Path, scale: str) -> bool:
    """Whether ``path`` is a notebook papermill ran through, at ``scale``, without error."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return False
    pm = meta.get("papermill") or {}
    return (pm.get("end_time") is not None and not pm.get("exception")
            and (pm.get("parameters") or {}).get("scale") == scale)


def _check_stage(stage: Path, root: Path) -> None:
    """ValueError, before any work, when ``stage`` is not a folder run_book may wipe."""
    if stage == root or stage in root.parents:
        raise ValueError(f"refusing to wipe {stage}: it holds the book's root {root}")
    if stage == root / "book" or root / "book" in stage.parents:
        raise ValueError(f"build_dir {stage} must not lie inside {root / 'book'}")
    if stage.exists():
        if not stage.is_dir():
            raise ValueError(f"build_dir {stage} is not a folder")
        if any(stage.iterdir()) and not (stage / _STAGE_MARK).exists():
            raise ValueError(f"refusing to wipe {stage}: not empty and not a stage made "
                             f"by zfcore.book.run_book (no {_STAGE_MARK} in it)")


def _wipe(stage: Path, root: Path) -> None:
    """Empty the stage for a new run, all but its built book (``_build/``, the last good HTML),
    which only a new build replaces (:func:`_build_html`)."""
    stage = stage.resolve()
    _check_stage(stage, root)
    if stage.exists():
        for entry in stage.iterdir():
            if entry.name in (_BUILT, _STAGE_MARK):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    stage.mkdir(parents=True, exist_ok=True)
    (stage / _STAGE_MARK).write_text("staging copy made by zfcore.book.run_book; "
                                     "wiped on every run but its _build/ (the last good book)\n")


# ----------------------------------------------------------------------------------
# Execution


@contextlib.contextmanager
def _kernel_environment(pin_python3: bool, extra: Optional[Dict[str, str]] = None):
    """Environment for the kernels papermill starts.

    With ``pin_python3``, the kernel spec ``python3`` is pinned to this interpreter:
    a spec written in a temporary folder put first on ``JUPYTER_PATH`` shadows any other
    (a user's ``~/.local/share/jupyter/kernels/python3`` pointing at another Python, say).
    ``MPLBACKEND`` is set to the inline backend, so that figures become outputs even
    when the caller runs with e.g. ``MPLBACKEND=Agg`` (the kernel inherits it otherwise).
    ``ZF_PROGRESS=0`` turns zfcore's progress bars off: in the static book they would be
    dead widgets (the per-epoch lines of training are still printed). ``extra``: more
    variables (the data folders and preset changes of :func:`run_book`).
    """
    extra = dict(extra or {})
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLBACKEND", "ZF_PROGRESS", *extra)}
    with tempfile.TemporaryDirectory(prefix="zfcore-kernels-") as tmp:
        try:
            if pin_python3:
                spec_dir = Path(tmp) / "kernels" / "python3"
                spec_dir.mkdir(parents=True)
                try:  # ipykernel's own spec (argv on sys.executable, its metadata)
                    from ipykernel.kernelspec import get_kernel_dict
                    spec = dict(get_kernel_dict())
                except ImportError:
                    spec = {"display_name": "Python 3 (ipykernel)", "language": "python"}
                spec["argv"] = [sys.executable, "-m", "ipykernel_launcher", "-f",
                                "{connection_file}"]
                (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
                paths = [tmp] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else [])
                os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
            os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
            os.environ["ZF_PROGRESS"] = "0"
            os.environ.update(extra)
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _failed_cell(executed: Path, cell_index: Optional[int]):
    """(index among the source's code cells, source) of the failing cell.

    Papermill's ``PapermillExecutionError.cell_index`` counts *all* cells (markdown
    included) of the executed notebook, which holds the injected-parameters cell but not
    the error banners papermill adds when it writes the notebook out. With no index
    (the kernel died, say), the last code cell that started is the one.
    """
    try:
        import nbformat
        nb = nbformat.read(str(executed), as_version=4)
    except Exception:
        return None, None
    cells = [c for c in nb.cells if _ERROR_MARKER_TAG not in c.metadata.get("tags", [])]
    if cell_index is None:
        started = [i for i, c in enumerate(cells) if c.cell_type == "code"
                   and (c.metadata.get("papermill") or {}).get("start_time")]
        if not started:
            return None, None
        cell_index = started[-1]
    if not 0 <= cell_index < len(cells):
        return None, None
    target = cells[cell_index]
    if _INJECTED_TAG in target.metadata.get("tags", []):
        return None, target.source
    code = [c for c in cells[:cell_index]
            if c.cell_type == "code" and _INJECTED_TAG not in c.metadata.get("tags", [])]
    return len(code), target.source


def _client_config() -> dict:
    """Extra keyword arguments for papermill's notebook client.

    jupyter_client 8.10 can encrypt the kernel's sockets (CurveZMQ) when the kernel spec
    declares support, but does so only if asked; otherwise ipykernel 7 warns, once per
    chapter, that it runs "over TCP without encryption". Ask, where it is possible.
    """
    try:
        import zmq
        from jupyter_client.manager import KernelManager
        from traitlets.config import Config
    except ImportError:
        return {}
    if not KernelManager.class_traits().get("transport_encryption") or not zmq.has("curve"):
        return {}
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def _execute(src: Path, dst: Path, chapter: str, parameters: dict, kernel_name: str):
    import papermill as pm

    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, cwd=str(dst.parent),
                            kernel_name=kernel_name, progress_bar=False, log_output=False,
                            **_client_config())
    except pm.PapermillExecutionError as err:
        cell, source = _failed_cell(dst, err.cell_index)
        raise ChapterFailed(chapter, cell, err.ename, err.evalue,
                            dst if dst.exists() else None, source) from err
    except Exception as err:  # the kernel died or would not start, a timeout, ...
        cell, source = _failed_cell(dst, None) if dst.exists() else (None, None)
        raise ChapterFailed(chapter, cell, type(err).__name__, str(err).strip(),
                            dst if dst.exists() else None, source) from err


def _select(names: List[str], only) -> List[str]:
    if only is None:
        return names
    if isinstance(only, (str, os.PathLike)):
        only = [only]
    wanted = []
    for item in only:
        key = Path(str(item)).as_posix()
        key = key[:-len(".ipynb")] if key.endswith(".ipynb") else key
        hits = [n for n in names if key in (n[:-len(".ipynb")], Path(n).stem)]
        if not hits:
            stems = ", ".join(Path(n).stem for n in names)
            raise ValueError(f"no chapter named {str(item)!r}; chapters: {stems}")
        wanted += hits
    return [n for n in names if n in wanted]


def _jupyter_book_command() -> List[str]:
    here = Path(sys.executable).parent
    for name in ("jupyter-book", "jupyter-book.exe"):
        if (here / name).is_file():
            return [str(here / name)]
    # Same interpreter, without relying on a script on PATH.
    return [sys.executable, "-c",
            "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


def _build_html(stage: Path, progress: bool) -> Path:
    """``jupyter-book build`` of the stage into ``_build/.next/``, then moved into ``_build/``.

    The previous build (``_build/html`` ...) is replaced only once the new one has succeeded;
    on failure it stays, and :class:`BuildFailed` holds the end of jupyter-book's output.
    """
    built = stage / _BUILT
    nxt = built / _NEXT
    if nxt.exists():
        shutil.rmtree(nxt)              # a build interrupted before
    nxt.mkdir(parents=True)
    cmd = _jupyter_book_command() + ["build", str(stage), "--path-output", str(nxt)]
    start = time.perf_counter()
    if progress:
        print(f"jupyter-book build {stage} ...", flush=True)
    proc = subprocess.run(cmd, cwd=str(stage), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    (built / "jupyter-book.log").write_text(proc.stdout, encoding="utf-8")
    tail = "\n".join(proc.stdout.strip().splitlines()[-40:])
    new = nxt / "_build"
    try:
        if proc.returncode != 0:
            raise BuildFailed(f"jupyter-book build {stage} failed (exit code {proc.returncode}); "
                              f"the previous book is kept; the end of its output:\n{tail}")
        if not (new / "html" / "index.html").is_file():
            raise BuildFailed(f"jupyter-book build finished but wrote no {new / 'html' / 'index.html'}; "
                              f"the previous book is kept; the end of its output:\n{tail}")
        # the new build takes the old one's place, entry by entry (html, .doctrees, ...)
        old = built / ".old"
        if old.exists():
            shutil.rmtree(old)
        old.mkdir()
        for entry in sorted(new.iterdir()):
            target = built / entry.name
            if target.exists():
                target.rename(old / entry.name)
            entry.rename(target)
        shutil.rmtree(old)
    finally:
        shutil.rmtree(nxt, ignore_errors=True)
    index = built / "html" / "index.html"
    if progress:
        print(f"HTML built in {time.perf_counter() - start:.1f} s: {index}", flush=True)
    return index


def _overrides_variable(preset, overrides: Dict) -> str:
    """``ZF_PRESET_OVERRIDES`` with ``overrides`` added for ``preset``'s scale (checked first)."""
    preset.replace(**overrides)        # ValueError naming an unknown field, before any work
    doc = json.loads(os.environ.get(OVERRIDES_VARIABLE) or "{}")
    doc[preset.name] = {**doc.get(preset.name, {}), **{k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in overrides.items()}}
    return json.dumps(doc)


def _restage(stage: Path, root: Path, rel_names: List[str], todo: List[str], scale: str) -> None:
    """Wipe the stage and copy the book in again; chapters not executed this time keep their
    last good run from the old stage."""
    carried = {}
    for name in rel_names:
        old = stage / name
        if name not in todo and old.is_file() and _executed_ok(old, scale):
            carried[name] = old.read_bytes()
    _wipe(stage, root)
    _copy_book(root, stage)
    for name, data in carried.items():
        (stage / name).write_bytes(data)


def _run_chapter(root: Path, stage: Path, name: str, parameters: Dict, kernel: str,
                 label: Optional[str], info: Dict[str, str]) -> float:
    """Execute one chapter into the stage and finish it for the static book
    (:func:`zfcore.pages.finish_chapter`); ``label`` (e.g. ``"[3/12] ... about 20 s"``): print
    its line. Returns the seconds it took."""
    if label:
        print(f"{label} ...", end="", flush=True)
    start = time.perf_counter()
    try:
        _execute(root / name, stage / name, name, parameters, kernel)
    except ChapterFailed:
        if label:
            print(f" FAILED ({time.perf_counter() - start:.1f} s)", flush=True)
        raise
    seconds = time.perf_counter() - start
    pages.finish_chapter(stage / name, {**info, "time": f"{seconds:.1f} s"})
    if label:
        print(f" ok ({seconds:.1f} s)", flush=True)
    return seconds


#: Seconds a chapter takes when no earlier build at its scale says: a stated estimate, from the
#: builds on a 2-core machine (its data, models and caches included the first time).
_FIRST_ESTIMATE = {"tiny": 12.0, "default": 90.0}


def _last_times(stage: Path, names: Sequence[str], scale: str) -> Dict[str, float]:
    """Each chapter's seconds in the stage's previous build at ``scale`` (papermill's record)."""
    out = {}
    for name in names:
        path = stage / name
        if not _executed_ok(path, scale):
            continue
        try:
            d = json.loads(path.read_text(encoding="utf-8"))["metadata"]["papermill"].get("duration")
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(d, (int, float)) and d > 0:
            out[name] = float(d)
    return out


def _label(i: int, todo: Sequence[str], name: str, estimate: Dict[str, float], default: Optional[float]) -> str:
    """``[3/12] book/03_x.ipynb (about 20 s; the book about 4 min more)``: the chapter's estimate,
    from the last build (or the stated first-build estimate), and what is left of the whole run."""
    def guess(n):
        return estimate.get(n, default)
    left = [guess(n) for n in todo[i - 1:]]
    text = f"[{i}/{len(todo)}] {name}"
    if guess(name) is None:
        return text
    source = "last build" if name in estimate else "first build, estimated"
    rest = f"; the book about {_duration(sum(left))} more" if None not in left else ""
    return f"{text} (about {_duration(guess(name))}, {source}{rest})"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _write_claims(stage: Path, root: Path, names: List[str], scale: str, strict: bool, progress: bool) -> None:
    """The stage's page of every claim (:func:`zfcore.pages.write_claims_page`), when the book's
    table of contents lists it. ``strict``: a chapter without its findings fails the build (the
    HTML would publish an incomplete page); else the page lists what there is, with a note."""
    if pages.CLAIMS_PAGE.rsplit(".", 1)[0] not in {n.rsplit(".", 1)[0] for n in _toc_names(root)
                                                    if not n.startswith("glob:")}:
        return
    try:
        pages.write_claims_page(stage, names, scale)
    except pages.MissingFindings as e:
        if strict:
            raise BuildFailed(f"the page of every claim cannot be made: {e}") from None
        if progress:
            print(f"note: {e}; {pages.CLAIMS_PAGE} lists the other chapters' claims", flush=True)
        pages.write_claims_page(stage, names, scale, strict=False)




def run_book(scale: str, root: Union[str, Path] = REPO_ROOT,
             build_dir: Union[str, Path, None] = None, only=None, html: bool = True,
             kernel_name: Optional[str] = None, progress: bool = True,
             extra_parameters: Optional[Dict] = None, environment: Optional[Dict[str, str]] = None,
             overrides: Optional[Dict] = None) -> Path:
    """Execute the book's chapters at one scale with papermill, then build the HTML.

    Args:
        scale: a preset name (see :mod:`zfcore.presets`), injected as ``scale`` into
            every chapter's ``parameters`` cell.
        root: the book's root, holding ``_config.yml``, ``_toc.yml`` and ``book/``.
        build_dir: the staging folder; default ``root/_build/stage-<scale>``. It is
            wiped on every run (only if it is empty or an earlier stage), all but its
            ``_build/``: the last good HTML book, replaced only by a new one that built.
        only: a chapter name or a list of them (a notebook's stem, e.g.
            ``"01_model_and_training"``, or its path relative to ``root``): execute only
            these. Every other chapter is staged as last executed in the previous stage
            at this scale, if it ran there without error, else as its source (no outputs).
        html: whether to run ``jupyter-book build`` on the stage afterwards.
        kernel_name: the Jupyter kernel to run the chapters; default ``python3``, pinned
            to this very interpreter (``sys.executable``).
        progress: print a line per chapter and where the HTML is.
        extra_parameters: more parameters for papermill to inject, e.g. a chapter knob.
        environment: environment variables for the chapters' kernels, e.g. the data
            folders of the ``imagenet`` scale (:meth:`zfcore.data.splits.DataRoots.to_env`).
        overrides: changes to the scale's preset for this build (``{"epochs": 30}``),
            passed to the kernels in ``ZF_PRESET_OVERRIDES`` (see :func:`zfcore.presets.get_preset`).

    Returns:
        ``<stage>/_build/html/index.html`` with ``html``, else the stage folder.

    Raises:
        ValueError: an unknown scale or chapter name, bad overrides or an unusable
            ``build_dir``, before any work is done.
        ChapterFailed: the first chapter that raised; later chapters are not run.
        BuildFailed: ``jupyter-book build`` failed (the end of its output is included).
        In both cases the stage's previous HTML book is kept.
    """
    preset = get_preset(scale)  # ValueError listing the valid scales
    scale = preset.name
    env = dict(environment or {})
    if overrides:
        env[OVERRIDES_VARIABLE] = _overrides_variable(preset, overrides)
    root = Path(root).resolve()
    stage = Path(build_dir) if build_dir is not None else root / "_build" / f"stage-{scale}"
    stage = stage.resolve()
    rel_names = [p.relative_to(root).as_posix() for p in chapters(root)]
    for name in rel_names:
        if not name.startswith("book/"):
            raise ValueError(f"chapter {name} lies outside book/, which is all that is staged")
    todo = _select(rel_names, only)
    parameters = {"scale": scale, **(extra_parameters or {})}
    _check_stage(stage, root)
    estimate = _last_times(stage, todo, scale)
    _restage(stage, root, rel_names, todo, scale)
    info = pages.provenance(root, scale, preset.seed, None)
    with _kernel_environment(pin_python3=kernel_name is None, extra=env):
        for i, name in enumerate(todo, 1):
            label = _label(i, todo, name, estimate, _FIRST_ESTIMATE.get(scale)) if progress else None
            _run_chapter(root, stage, name, parameters, kernel_name or "python3", label, info)
    _write_claims(stage, root, rel_names, scale, strict=html, progress=progress)
    if (stage / pages.FRONT_PAGE).is_file():
        pages.write_front_page(stage)

    if not html:
        return stage
    return _build_html(stage, progress)
