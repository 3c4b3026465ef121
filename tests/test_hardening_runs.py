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
from zfcore.train import train
from zfcore.runs import Run, load_checkpoint, load_model

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

def test_a_finished_run_refuses_other_settings(base, tmp_path, capsys):
    err = _error(["train", "--scale", "tiny", "--epochs", "2", "--out", base.path, "--fc-units", "64",
                  "--quiet"], capsys)
    assert str(base.path) in err and "fc_units 256 there, 64 asked" in err
    err = _error(["train", "--scale", "tiny", "--epochs", "3", "--out", base.path, "--quiet"], capsys)
    assert "epochs 2 there, 3 asked" in err
    err = _error(["train", "--scale", "tiny", "--epochs", "2", "--out", base.path, "--seed", "5",
                  "--quiet"], capsys)
    assert "seed 0 there, 5 asked" in err
    # --no-resume would overwrite it: refused all the same, the run kept
    before = base.path.joinpath("final.pt").read_bytes()
    with pytest.raises(ValueError, match="fc_units"):
        train(TWO, out=base.path, progress=False, resume=False, fc_units=64)
    assert base.path.joinpath("final.pt").read_bytes() == before
    # its own settings: the finished run, at once
    assert main(["train", "--scale", "tiny", "--epochs", "2", "--out", str(base.path), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == str(base.path)


def test_a_truncated_final_model_is_made_again(base, tmp_path):
    out = _copy(base, tmp_path / "run")
    final = out / "final.pt"
    final.write_bytes(final.read_bytes()[:final.stat().st_size // 3])
    with pytest.warns(UserWarning, match="final.pt.*not a readable checkpoint"):
        run = train(TWO, out=out, progress=False)
    _same_weights(load_model(final)[0], base.load())
    assert run.summary["final"] == base.summary["final"]


def test_a_resume_checkpoint_of_another_model_is_refused(base, artifacts, tmp_path, capsys):
    other = train(get_preset("tiny").replace(epochs=1), out=tmp_path / "other", progress=False,
                  fc_units=64)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(other.path / "resume.pt", out / "resume.pt")      # no metrics.json: only resume.pt says
    err = _error(["train", "--scale", "tiny", "--epochs", "2", "--out", out, "--quiet"], capsys)
    assert "resume.pt" in err and "fc_units" in err
    # a checkpoint written before runs recorded their settings: told by its weights
    state = load_checkpoint(other.path / "resume.pt")
    del state["settings"]
    state["preset"] = TWO.to_dict()
    torch.save(state, out / "resume.pt")
    err = _error(["train", "--scale", "tiny", "--epochs", "2", "--out", out, "--quiet"], capsys)
    assert "resume.pt" in err and "weights differ" in err and "fc6.weight" in err


# --------------------------------------------------------------------------- kills and truncated checkpoints

def test_a_kill_in_mid_write_resumes_from_the_saved_epoch(artifacts, tmp_path):
    out, whole = tmp_path / "killed", tmp_path / "whole"
    cmd = _zf("train", "--scale", "tiny", "--epochs", "2", "--out", out, "--quiet")
    # killed while epoch 1's resume.pt is in its temporary file (epoch_001.pt is already saved)
    killed = subprocess.run(cmd, env=_env(artifacts, ZF_TEST_KILL_AT="1:resume.pt"),
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = [p.name for p in out.glob(".resume.pt.*.tmp")]
    assert left and not (out / "resume.pt").exists() and (out / "checkpoints" / "epoch_001.pt").is_file()
    resumed = subprocess.run(cmd, env=_env(artifacts), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "epoch_001.pt" in resumed.stderr and "resume.pt" in resumed.stderr     # the warning
    assert left[0] in resumed.stderr                                             # what was removed
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*.tmp"))
    # epoch 1 was not trained again: the resumed run is the uninterrupted one
    assert subprocess.run([*cmd[:-2], str(whole), "--quiet"], env=_env(artifacts)).returncode == 0
    _same_weights(load_model(out / "final.pt")[0], load_model(whole / "final.pt")[0])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(Run(out).metrics) == strip(Run(whole).metrics)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_truncated_resume_checkpoint_falls_back_to_the_newest_readable(base, tmp_path):
    out = _copy(base, tmp_path / "run")
    resume = out / "resume.pt"
    resume.write_bytes(resume.read_bytes()[:1000])
    (out / "checkpoints" / "epoch_002.pt").unlink()
    (out / "final.pt").unlink()
    dead = out / f".resume.pt.{_dead_pid()}.1.tmp"
    live = out / f".resume.pt.{os.getppid()}.1.tmp"          # a live process's: never touched
    dead.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    with pytest.warns(UserWarning) as caught:
        run = train(TWO, out=out, progress=False)
    said = "\n".join(str(w.message) for w in caught)
    assert "checkpoints/epoch_001.pt (epoch 1)" in said and "skipped" in said and "resume.pt" in said
    assert dead.name in said and not dead.exists() and live.read_bytes() == b"being written"
    # epoch 2 trained again from epoch 1's checkpoint: the same run as the uninterrupted one
    _same_weights(run.load(), base.load())
    assert [r["val_loss"] for r in run.metrics] == [r["val_loss"] for r in base.metrics]
    assert load_checkpoint(resume)["epoch"] == 2


def test_no_readable_checkpoint_starts_afresh_and_says_so(base, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "resume.pt").write_bytes(os.urandom(500))
    with pytest.warns(UserWarning, match="no readable checkpoint.*starting from epoch 1"):
        run = train(TWO, out=out, progress=False)
    _same_weights(run.load(), base.load())


def test_a_truncated_metrics_file_is_named_and_rebuilt(base, tmp_path, capsys):
    out = _copy(base, tmp_path / "run")
    metrics = out / "metrics.json"
    metrics.write_text(metrics.read_text()[:200])
    with pytest.raises(ValueError, match=r"metrics\.json is not readable JSON"):
        Run(out).summary
    with pytest.raises(ValueError, match=re.escape(str(metrics))):
        Run(out).metrics
    with pytest.warns(UserWarning, match=r"metrics\.json"):
        run = train(TWO, out=out, progress=False)
    assert run.summary["final"] == base.summary["final"] and len(run.metrics) == 2


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


def test_out_folders_are_checked_before_any_work(base, tmp_path, capsys, read_only, monkeypatch):
    import zfcore.train as zt
    import zfcore.usermodel as zu
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    w = base.path / "final.pt"
    img = tmp_path / "img.png"
    from PIL import Image
    Image.new("RGB", (60, 60), (120, 30, 200)).save(img)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(img, images / "a.png")
    monkeypatch.setattr(zt, "make_sources", _loud)       # nothing is loaded before the check
    monkeypatch.setattr(zu, "load_folder", _loud)
    monkeypatch.setattr(zu, "load_user_model", _loud)
    commands = {
        "train": ["train", "--scale", "tiny", "--epochs", "1", "--quiet"],
        "mine": ["mine", "--arch", "zf", "--weights", w, "--images", images, "--quiet"],
        "project": ["project", "--arch", "zf", "--weights", w, "--image", img, "--layer", "conv1"],
        "occlude": ["occlude", img, "--arch", "zf", "--weights", w],
    }
    for argv in commands.values():
        err = _error(argv + ["--out", afile], capsys)
        assert str(afile) in err and "is a file, not a folder" in err
        err = _error(argv + ["--out", afile / "sub"], capsys)
        assert str(afile) in err and "is a file" in err
        err = _error(argv + ["--out", read_only], capsys)
        assert str(read_only) in err and "not writable" in err
        err = _error(argv + ["--out", read_only / "new"], capsys)
        assert str(read_only) in err and "not writable" in err
    assert sorted(p.name for p in read_only.iterdir()) == []


def test_bad_values_for_train_are_refused_before_any_work(artifacts, tmp_path, capsys, monkeypatch):
    import zfcore.train as zt
    monkeypatch.setattr(zt, "make_sources", _loud)
    out = tmp_path / "run"
    base_argv = ["train", "--scale", "tiny", "--out", out, "--quiet"]
    err = _error(base_argv + ["--batch-size", "0"], capsys)
    assert "--batch-size must be at least 1, got 0" in err
    err = _error(base_argv + ["--epochs", "-1"], capsys)
    assert "--epochs must be at least 1, got -1" in err
    err = _error(base_argv + ["--fc-units", "0"], capsys)
    assert "--fc-units" in err
    for env, words in ((({"tiny": {"epochs": 0}}), ("tiny", "epochs", "at least 1", "got 0")),
                       ({"huge": {"epochs": 3}}, ("huge", "unknown scale", "tiny, default, scenes224, imagenet")),
                       ({"tiny": {"epochs": "x"}}, ("epochs", "integer", "'x'")),
                       ({"default": {"batch_size": 0}}, ("default", "batch_size"))):
        monkeypatch.setenv(OVERRIDES_VARIABLE, json.dumps(env))
        err = _error(base_argv, capsys)
        assert OVERRIDES_VARIABLE in err and all(w in err for w in words), err
    assert not out.exists()


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


def test_book_settings_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import zfcore.book as zb
    from zfcore.book import run_book
    calls = []
    monkeypatch.setattr(zb, "run_book", lambda *a, **k: calls.append(k) or tmp_path)
    err = _error(["book", "--scale", "tiny", "--no-html", "--set", "epochs=0"], capsys)
    assert "epochs=0" in err and "at least 1" in err
    monkeypatch.setenv(OVERRIDES_VARIABLE, json.dumps({"huge": {"epochs": 3}}))
    err = _error(["book", "--scale", "tiny", "--no-html"], capsys)
    assert "huge" in err and OVERRIDES_VARIABLE in err
    assert calls == []
    with pytest.raises(ValueError, match="huge"):
        run_book("tiny", root=tmp_path, build_dir=tmp_path / "stage")
    monkeypatch.delenv(OVERRIDES_VARIABLE)
    with pytest.raises(ValueError, match="epochs"):
        run_book("tiny", root=tmp_path, build_dir=tmp_path / "stage", overrides={"epochs": "x"})
    assert not (tmp_path / "stage").exists()


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


def test_bad_checkpoints_get_a_clear_message(base, tmp_path, capsys):
    d = _bad_checkpoints(base, tmp_path / "bad")
    img = tmp_path / "img.png"
    from PIL import Image
    Image.new("RGB", (60, 60), (10, 200, 90)).save(img)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(img, images / "a.png")
    out = tmp_path / "out"
    runs = {
        "mine": lambda w: ["mine", "--arch", "zf", "--weights", w, "--images", images, "--out", out, "--quiet"],
        "project": lambda w: ["project", "--arch", "zf", "--weights", w, "--image", img, "--layer", "conv1",
                              "--out", out],
        "occlude": lambda w: ["occlude", img, "--arch", "zf", "--weights", w, "--out", out],
    }
    for make in runs.values():
        err = _error(make(d / "no_config.pt"), capsys)
        assert "no_config.pt" in err and "model_config" in err and "KeyError" not in err
        err = _error(make(d / "shapes.pt"), capsys)
        assert "shapes.pt" in err and "fc6.weight" in err and "Error(s) in loading" not in err
        err = _error(make(d / "random.pt"), capsys)
        assert "random.pt" in err and "not a readable checkpoint" in err and "weights_only" not in err
        err = _error(make(d / "pickled.pt"), capsys)
        assert "pickled.pt" in err and "state_dict" in err and "weights_only" not in err
    err = _error(["mine", "--arch", "alexnet", "--weights", d / "random.pt", "--images", images,
                  "--out", out, "--quiet"], capsys)
    assert "random.pt" in err and "weights_only" not in err
    err = _error(["mine", "--arch", "alexnet", "--weights", d / "pickled.pt", "--images", images,
                  "--out", out, "--quiet"], capsys)
    assert "pickled.pt" in err and "weights_only" not in err and "state_dict" in err
    assert not out.exists()


def test_a_failing_chapter_is_one_message(tmp_path, capsys, monkeypatch):
    import zfcore.book as zb
    from zfcore.book import ChapterFailed

    def fail(*a, **k):
        raise ChapterFailed("book/01_model_and_training.ipynb", 4, "ZeroDivisionError",
                            "division by zero", tmp_path / "01.ipynb", "x = 1 / 0")
    monkeypatch.setattr(zb, "run_book", fail)
    err = _error(["book", "--scale", "tiny", "--no-html"], capsys)
    assert "chapter book/01_model_and_training.ipynb failed in cell 4: ZeroDivisionError" in err
    assert "x = 1 / 0" in err and str(tmp_path / "01.ipynb") in err


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

def test_a_second_trainer_waits_for_the_first(artifacts, tmp_path):
    from zfcore.runs import lock_run
    out = tmp_path / "run"
    cmd = _zf("train", "--scale", "tiny", "--epochs", "1", "--out", out, "--quiet")
    with lock_run(out):                       # the first trainer holds the folder
        proc = subprocess.Popen(cmd, env=_env(artifacts), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        said = []
        for line in proc.stderr:
            said.append(line)
            if "waiting" in line:
                break
        assert said and "waiting" in said[-1] and str(out) in said[-1], "".join(said)
        time.sleep(0.5)
        assert proc.poll() is None and not (out / "metrics.json").exists()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert Run(out).complete and json.loads(stdout)["run"] == str(out)


def test_a_killed_trainer_leaves_no_stale_lock(tmp_path):
    from zfcore.runs import RunBusy, lock_run
    out = tmp_path / "run"
    holder = ("import os, sys; from zfcore.runs import lock_run\n"
              "with lock_run(sys.argv[1]):\n    os.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", holder, str(out)], env=_env(tmp_path))
    assert r.returncode == -9
    with lock_run(out, wait=False):
        with pytest.raises(RunBusy, match=str(out)):
            with lock_run(out, wait=False):
                pass
    with lock_run(out, wait=False):
        pass
