"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _folder_data(tmp_path_factory):
    """Small prepared folders (tests/folder_data.py) and an artifacts folder for them, made once."""
    from folder_data import make_folders
    return make_folders(tmp_path_factory.mktemp("folders")), tmp_path_factory.mktemp("folder-artifacts")


@pytest.fixture(scope="module")
def folder_env(_folder_data):
    """``(preset, run, roots)``: the folders in the environment (ZF_IMAGENET ... and ZF_ARTIFACTS)
    for one test module, and a 1-epoch run trained on them (trained once a session, loaded after)."""
    from folder_data import folder_preset
    from zfcore.train import train
    roots, artifacts = _folder_data
    mp = pytest.MonkeyPatch()
    for k, v in roots.to_env().items():
        mp.setenv(k, v)
    mp.setenv("ZF_ARTIFACTS", str(artifacts))
    mp.setenv("ZF_PROGRESS", "0")
    p = folder_preset(epochs=1, evolution_epochs=(1,))
    run = train(p, progress=False)
    yield p, run, roots
    mp.undo()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The ``final.pt`` of a one-epoch tiny run (48 px crops of 55 px images, 10 classes),
    trained once a session: "your checkpoint" for the ``zf`` command tests (``--arch zf``).
    Treat it as read-only: copy it to change it."""
    from zfcore.presets import get_preset
    from zfcore.train import train
    root = tmp_path_factory.mktemp("tiny-run")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root))
    mp.setenv("ZF_PROGRESS", "0")
    try:
        train(get_preset("tiny").replace(epochs=1, evolution_epochs=(1,)), out=root / "run", progress=False)
    finally:
        mp.undo()
    return root / "run" / "final.pt"


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory):
    """``(root, index)``: the repository's book (``_config.yml``, ``_toc.yml``, ``book/``)
    copied to ``root``, executed at the tiny scale and built to HTML once a session;
    ``index`` is ``<stage>/_build/html/index.html``. Shared by the end-to-end build test
    (tests/test_book.py) and the browser tests (tests/test_browser.py). Read-only."""
    import shutil
    from zfcore.book import REPO_ROOT, run_book
    base = tmp_path_factory.mktemp("tiny-book")
    root = base / "repo"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / "book", root / "book")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(base / "artifacts"))
    try:
        index = run_book("tiny", root=root)
    finally:
        mp.undo()
    return root, index
