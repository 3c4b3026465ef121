"""Bad input to runs, presets, checkpoints and the book: a clear message, the good work kept.

Issue 14, item 4: a run folder answers only for its own settings; a kill in mid-write or a
truncated checkpoint never costs the epochs that were saved; user mistakes get one message
and exit status 2 from ``zf``; a failed book rebuild keeps the last good book; two trainers
never share a folder.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zfcore import models
from zfcore.cli import main
from zfcore.presets import OVERRIDES_VARIABLE, get_preset, parse_overrides
from zfcore.train import Run, load_checkpoint, load_model, train

REPO = Path(__file__).resolve().parents[1]
TWO = get_preset("tiny").replace(epochs=2)          # what `zf train --scale tiny --epochs 2` trains


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An artifacts folder for the module, with the tiny scenes generated once."""
    root = tmp_path_factory.mktemp("artifacts")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root))
    mp.setenv("ZF_PROGRESS", "0")
    mp.delenv(OVERRIDES_VARIABLE, raising=False)
    from zfcore.data.scenes import load_scenes
    for split in ("train", "val"):
        load_scenes("tiny", split, progress=False)
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def base(artifacts):
    """A finished two-epoch tiny run (checkpoints of epochs 1 and 2, resume.pt, final.pt)."""
    return train(TWO, out=artifacts / "runs" / "base", progress=False, resume=False)


def _copy(run, dst) -> Path:
    shutil.copytree(run.path, dst)
    return Path(dst)


def _env(artifacts, **extra):
    env = dict(os.environ, ZF_ARTIFACTS=str(artifacts), OMP_NUM_THREADS="1", ZF_PROGRESS="0",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(OVERRIDES_VARIABLE, None)
    env.update(extra)
    return env


def _zf(*args):
    return [sys.executable, "-m", "zfcore.cli", *map(str, args)]


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _error(argv, capsys):
    """``zf ARGV`` in this process: exit status 2 and one ``zf CMD: error:`` message, no traceback."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"zf {argv[0]}: error: ") and "Traceback" not in err
    return err


# --------------------------------------------------------------------------- a run folder answers for its own settings

# --------------------------------------------------------------------------- kills and truncated checkpoints

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- zf: bad paths and values

@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder this process cannot write in (as root, where the mode bits do not bind,
    os.access answers as it would for anyone else)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access

        def access(path, mode, *a, **k):
            if mode & os.W_OK and Path(path).resolve() == d.resolve():
                return False
            return real(path, mode, *a, **k)
        monkeypatch.setattr(os, "access", access)
    yield d
    d.chmod(0o755)


def _loud(*a, **k):
    raise AssertionError("work started before the arguments were checked")


def test_preset_values_are_checked():
    p = get_preset("tiny")
    for field, bad in (("epochs", 0), ("epochs", -1), ("epochs", "x"), ("epochs", 2.5), ("epochs", True),
                       ("batch_size", 0), ("lr", 0.0), ("lr", float("nan")), ("momentum", 1.0),
                       ("dropout", -0.1), ("width", 0), ("workers", -1), ("init", "xavier"),
                       ("data", "web"), ("evolution_epochs", (0, 2)), ("target_train", ("a",))):
        with pytest.raises(ValueError, match=field):
            p.replace(**{field: bad})
    with pytest.raises(ValueError, match="stored_size"):
        p.replace(image_size=p.stored_size + 1)
    assert p.replace(workers=0, evolution_epochs=[1, 2]).evolution_epochs == (1, 2)
    assert p.replace(evolution_epochs=()).evolution_epochs == ()
    assert parse_overrides(["epochs=30", "lr=0.02"]) == {"epochs": 30, "lr": 0.02}
    for item in ("epochs=0", "batch_size=-4", "lr=-1", "init=foo", "evolution_epochs=0,3"):
        with pytest.raises(ValueError, match=item.split("=")[0]):
            parse_overrides([item])


def _bad_checkpoints(base, d: Path):
    d.mkdir()
    state = load_checkpoint(base.checkpoint())
    no_config = {k: v for k, v in state.items() if k != "model_config"}
    torch.save(no_config, d / "no_config.pt")
    shapes = dict(state, model_config=dict(state["model_config"], fc_units=64))
    torch.save(shapes, d / "shapes.pt")
    (d / "random.pt").write_bytes(os.urandom(4000))
    torch.save(models.zfnet(10, input_size=48, width=0.25), d / "pickled.pt")     # a whole model
    return d


# --------------------------------------------------------------------------- the book: keep the last good one

MINI_TOC = "format: jb-book\nroot: book/index\nchapters:\n  - file: book/a\n"


def _mini_root(root: Path) -> Path:
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: mini\nexclude_patterns: [_build]\n")
    (root / "_toc.yml").write_text(MINI_TOC)
    (root / "book" / "index.md").write_text("# Mini\n")
    (root / "book" / "a.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                       "nbformat_minor": 5}))
    return root


def _old_book(stage: Path) -> Path:
    """A stage with a built book in it, as an earlier run_book leaves it."""
    html = stage / "_build" / "html"
    html.mkdir(parents=True)
    (stage / ".zfcore-stage").write_text("stage")
    (html / "index.html").write_text("the last good book")
    return html / "index.html"


FAKE_BUILD = """
import sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--path-output") + 1]) / "_build" / "html"
out.mkdir(parents=True)
(out / "index.html").write_text("the new book")
"""


def test_a_failed_rebuild_keeps_the_last_good_book(tmp_path, monkeypatch):
    import zfcore.book as zb
    from zfcore.book import ChapterFailed, run_book
    root = _mini_root(tmp_path / "src")
    stage = tmp_path / "stage"
    index = _old_book(stage)

    def chapter_fails(src, dst, chapter, parameters, kernel):
        raise ChapterFailed(chapter, 1, "ZeroDivisionError", "division by zero")
    monkeypatch.setattr(zb, "_execute", chapter_fails)
    with pytest.raises(ChapterFailed):
        run_book("tiny", root=root, build_dir=stage, progress=False)
    assert index.read_text() == "the last good book"

    from zfcore.book import BuildFailed
    monkeypatch.setattr(zb, "_execute", lambda src, dst, *a: shutil.copy(src, dst))
    monkeypatch.setattr(zb, "_jupyter_book_command",
                        lambda: [sys.executable, "-c", "import sys; print('bad page'); sys.exit(3)"])
    with pytest.raises(BuildFailed, match="bad page"):
        run_book("tiny", root=root, build_dir=stage, progress=False)
    assert index.read_text() == "the last good book"

    script = tmp_path / "fake_build.py"
    script.write_text(FAKE_BUILD)
    monkeypatch.setattr(zb, "_jupyter_book_command", lambda: [sys.executable, str(script)])
    assert run_book("tiny", root=root, build_dir=stage, progress=False) == stage / "_build" / "html" / "index.html"
    assert index.read_text() == "the new book"
    assert sorted(p.name for p in (stage / "_build").iterdir()) == ["html", "jupyter-book.log"]


# --------------------------------------------------------------------------- one trainer a folder

