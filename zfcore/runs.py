"""Run folders and checkpoints: what a training run leaves, and how it is read back.

A run folder (``artifacts/<scale>/runs/<name>-<key>/``, :func:`run_dir`) holds
``metrics.json`` (the settings, one row per epoch, the final evaluation), ``final.pt``,
``checkpoints/epoch_NNN.pt`` and ``resume.pt``. :class:`Run` reads them; its
:attr:`Run.preset` is the preset it was trained at and :meth:`Run.view` the model as the
analyses use it (:class:`zfcore.view.ModelView`). Checkpoints are written atomically and
read with ``weights_only=True`` (:func:`save_checkpoint`, :func:`load_checkpoint`); one process
at a time trains in a folder (:func:`lock_run`). Training itself is :mod:`zfcore.train`.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from . import models as zfmodels
from .artifacts import artifacts_dir, atomic_write, config_key
from .data.splits import data_roots, read_exclude
from .presets import get_preset, Preset
from .view import ModelView

__all__ = ["Run", "run_dir", "preset_of", "model_kwargs", "data_of", "save_checkpoint", "load_checkpoint",
           "load_model", "load_error_reason", "lock_run", "RunBusy", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION", "LOCK_NAME", "maybe_test_kill", "run_settings", "refuse_other",
           "newest_state", "folder_state"]

CHECKPOINT_FORMAT = "zfcore-checkpoint"


CHECKPOINT_VERSION = 1


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then rename."""
    path = Path(path)

    def write(f):
        torch.save(state, f)
        f.flush()
        maybe_test_kill(state.get("epoch"), path.name)     # test hook: a kill in mid-write
    atomic_write(path, write, fsync=True)


def load_error_reason(e: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a line, from the exception it raised.

    PyTorch's own messages advise retrying with ``weights_only=False`` (which runs any code
    the file holds) even for a file of random bytes; this says what the file is instead.
    """
    text = str(e).strip()
    if "Unsupported global" in text:
        m = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({m.group(1)})" if m else ""
        return (f"it holds pickled Python objects{what}, not only tensors: a whole model or "
                f"another program's objects, which are not loaded (save model.state_dict())")
    if "Weights only load failed" in text or type(e).__name__ == "UnpicklingError" or \
            isinstance(e, (KeyError, EOFError)):
        return "it is not a file written by torch.save (empty, truncated, corrupt, or another format)"
    if "central directory" in text or "zip archive" in text:
        return "its zip archive is truncated or corrupt (an interrupted copy or download?)"
    return text.splitlines()[0] if text else type(e).__name__


def load_checkpoint(path, map_location="cpu", *, mmap: bool = False) -> dict:
    """Load a zfcore checkpoint with ``weights_only=True``.

    ``mmap=True`` maps the tensors from the file instead of reading them (a cheap check of
    a large checkpoint's structure: a truncated file fails all the same).
    Raises FileNotFoundError for a missing file and ValueError, naming the file,
    for a truncated, corrupt or foreign one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True,
                           **({"mmap": True} if mmap else {}))
    except Exception as e:  # truncated, corrupt or foreign: torch.load raises many kinds
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        raise ValueError(f"{path} is not a readable checkpoint: {load_error_reason(e)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        keys = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a zfcore checkpoint (found {keys}); expected a file "
                         f"written by zfcore.train")
    return state


def shape_problems(expected: Dict[str, tuple], weights) -> Optional[str]:
    """What keeps the state dict ``weights`` from fitting a model whose state dict has the
    ``expected`` shapes (missing, unexpected and differently shaped entries), or None."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return f"its weights are not a state dict (found {type(weights).__name__})"
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]

    def few(keys, fmt=str):
        return ", ".join(fmt(k) for k in keys[:3]) + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")
    parts = []
    if wrong:
        parts.append("shapes differ: " + few(wrong, lambda k: f"{k} {tuple(weights[k].shape)} in the file, "
                                                        f"{expected[k]} in the model"))
    if missing:
        parts.append(f"missing: {few(missing)}")
    if unexpected:
        parts.append(f"unexpected: {few(unexpected)}")
    return "; ".join(parts) or None


def fit_problems(config, weights) -> Optional[str]:
    """What keeps a checkpoint's ``model`` weights from fitting its ``model_config``, or None."""
    try:
        with torch.device("meta"):              # shapes only: no memory, no initialisation
            model = zfmodels.build_model(config)
    except Exception as e:
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        return f"its model_config {config!r} does not describe a model zfcore builds: {e}"
    problems = shape_problems({k: tuple(v.shape) for k, v in model.state_dict().items()}, weights)
    return f"its weights do not fit the model its model_config describes ({problems})" if problems else None


def load_model(path, map_location="cpu"):
    """(model in eval mode, checkpoint dict) from a zfcore checkpoint.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one
    that is unreadable, not a zfcore checkpoint, without a model, or whose weights do not
    fit the model its ``model_config`` describes.
    """
    state = load_checkpoint(path, map_location)
    missing = [k for k in ("model", "model_config") if k not in state]
    if missing:
        raise ValueError(f"{path} is a zfcore checkpoint without {' and '.join(missing)} (it has "
                         f"{', '.join(sorted(map(str, state))[:8])}): expected a model checkpoint "
                         f"(final.pt or checkpoints/epoch_*.pt of a run)")
    problem = fit_problems(state["model_config"], state["model"])
    if problem:
        raise ValueError(f"{path}: {problem}")
    model = zfmodels.build_model(state["model_config"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


@dataclass
class Run:
    """A training run's folder: metrics, checkpoints and the resume state.

    ``model`` holds the trained model in memory when :func:`train` just trained it
    (on every rank of a distributed run); otherwise use :meth:`load`."""
    path: Path
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)

    @property
    def metrics(self) -> List[dict]:
        """One dict per finished epoch (see the module docstring)."""
        return list(self.summary.get("epochs", []))

    @property
    def summary(self) -> dict:
        """The whole metrics file: config, per-epoch rows, final 10-crop evaluation.

        ``{}`` when there is none; ValueError naming the file when it is not readable JSON."""
        f = self.path / "metrics.json"
        if not f.exists():
            return {}
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{f} is not readable JSON (truncated or corrupt?): {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{f} holds {type(doc).__name__}, not a run's metrics object")
        return doc

    @property
    def complete(self) -> bool:
        return bool(self.summary.get("complete"))

    def checkpoint(self, epoch: Optional[int] = None) -> Path:
        """Path of the checkpoint of ``epoch`` (default: the last)."""
        if epoch is None:
            return self.path / "final.pt"
        return self.path / "checkpoints" / f"epoch_{epoch:03d}.pt"

    @property
    def saved_epochs(self) -> List[int]:
        d = self.path / "checkpoints"
        return sorted(int(p.stem.split("_")[1]) for p in d.glob("epoch_*.pt")) if d.exists() else []

    def load(self, epoch: Optional[int] = None, map_location="cpu"):
        """The model saved at ``epoch`` (default: the final model), in eval mode."""
        return load_model(self.checkpoint(epoch), map_location)[0]

    def mean(self) -> torch.Tensor:
        """The (3, S, S) per-pixel training mean the model was trained with."""
        return load_checkpoint(self.checkpoint())["mean"]

    @property
    def classes(self) -> List[str]:
        return list(self.summary.get("classes", []))

    @property
    def preset(self) -> Preset:
        """The preset the run was trained at (from ``metrics.json``, else from ``final.pt``)."""
        d = self.summary.get("preset")
        if not d:
            d = load_checkpoint(self.checkpoint())["preset"]
        return Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def view(self, epoch: Optional[int] = None, device=None) -> ModelView:
        """The final model (or the one saved at ``epoch``) with its training mean and crop."""
        model = self.load(epoch) if epoch is not None or self.model is None else self.model.eval()
        if device is not None:
            model = model.to(device)
        return ModelView(model, self.preset.image_size, mean=self.mean(), classes=self.classes or None)


def preset_of(run: Run, scale=None) -> Preset:
    """The preset ``scale`` names, or the run's own when ``scale`` is None."""
    return get_preset(scale) if scale is not None else run.preset


def model_kwargs(p: Preset, family: str, variant: dict) -> dict:
    kw = dict(num_classes=p.num_classes, input_size=p.image_size, width=p.width,
              fc_units=p.fc_units, dropout=p.dropout, init_std=p.init_std,
              init=p.init)
    kw.update(variant)
    if family not in ("zf", "krizhevsky"):
        raise ValueError(f"unknown model family {family!r}; expected 'zf' or 'krizhevsky'")
    return kw


def exclude_list(exclude) -> Optional[List[str]]:
    """The exclusion list: ``None``, a file (one path a line) or an iterable of paths; sorted."""
    if exclude is None:
        return None
    if isinstance(exclude, (str, os.PathLike)):
        exclude = read_exclude(exclude)
    return sorted(str(e) for e in exclude)


def data_of(p: Preset, data_root, exclude):
    """(data root, exclusion list): at a folder scale, the environment's folders when not given."""
    if p.data != "scenes" and data_root is None:
        roots = data_roots()
        data_root = roots.imagenet
        if exclude is None and roots.exclude is not None:
            exclude = roots.exclude
    return data_root, exclude_list(exclude)


def run_dir(scale, name: str = "zfnet", family: str = "zf", renorm: bool = True, seed=None,
            data_root=None, exclude=None, **variant) -> Path:
    """The folder of the run these settings make (keyed by all of them).

    ``exclude`` (a file or a list of paths) enters the key only when given, by its content.
    """
    p = get_preset(scale)
    seed = p.seed if seed is None else seed
    data_root, excluded = data_of(p, data_root, exclude)
    kw = model_kwargs(p, family, variant)
    recipe = {k: v for k, v in p.to_dict().items() if k not in ("workers", "name")}
    # the folder by its absolute path: `zf train --data ./imagenet` and the book's ZF_IMAGENET
    # name the same run
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    parts = ["train", 1, family, kw, recipe, renorm, seed, root]
    if excluded is not None:
        parts.append({"exclude": config_key(excluded)})
    return artifacts_dir(p) / "runs" / f"{name}-{config_key(*parts)}"


def maybe_test_kill(epoch, step) -> None:
    """Test hook: ``ZF_TEST_KILL_AT=epoch:step`` kills this process with SIGKILL there.

    ``step`` is a training step, or the name of a checkpoint being written
    (``ZF_TEST_KILL_AT=1:resume.pt``: killed after writing epoch 1's ``resume.pt`` to its
    temporary file, before the rename)."""
    at = os.environ.get("ZF_TEST_KILL_AT")
    if at and at == f"{epoch}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


#: the lock file in a run folder, held (``fcntl.flock``) by the process training there
LOCK_NAME = ".train.lock"


class RunBusy(RuntimeError):
    """Another process holds the run folder (:func:`lock_run` with ``wait=False``)."""


def _make_run_folder(folder: Path) -> None:
    """Create ``folder``; ValueError naming it when it is a file or cannot be written in."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"run folder {folder} is a file, not a folder; give a folder (it is "
                         f"created if missing)") from None
    except OSError as e:
        raise ValueError(f"cannot create run folder {folder}: {e.strerror or e}") from None
    if not folder.is_dir():
        raise ValueError(f"run folder {folder} is not a folder")


@contextlib.contextmanager
def lock_run(folder, *, wait: bool = True):
    """Hold the run folder ``folder`` (created if missing) for this process while in the block.

    The hold is an ``fcntl.flock`` on ``folder/.train.lock``: the operating system releases
    it when the process ends, however it ends, so a killed run never leaves a stale lock.
    While another process holds the folder, this waits for it, saying so on stderr
    (``wait=False``: raises :class:`RunBusy` instead). Without ``fcntl`` (Windows) nothing
    is locked. Raises ValueError naming the folder when it cannot be created or written in.
    """
    folder = Path(folder)
    _make_run_folder(folder)
    try:
        import fcntl
    except ImportError:                        # no flock on this system: no lock
        yield folder
        return
    path = folder / LOCK_NAME
    fd = None
    while fd is None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(f"cannot write in run folder {folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                os.close(fd)
                raise RunBusy(f"run folder {folder} is in use by {holder}") from None
            print(f"zfcore: run folder {folder} is in use by {holder}: waiting for it to finish",
                  file=sys.stderr, flush=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:              # interrupted while waiting (Ctrl-C)
                os.close(fd)
                raise
        # the holder before us removes the file as it lets go: hold the one that is there now
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            fd = None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield folder
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)


# --------------------------------------------------------------------------- what a run folder answers for

_RESUME_KEYS = ("epoch", "model", "optimizer", "plateau", "metrics")


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def run_settings(p: Preset, family: str, kw: dict, renorm: bool, seed: int, data_root, exclude) -> dict:
    """Every setting a run folder answers for (what :func:`run_dir` keys), JSON-able."""
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    return _jsonable({
        "recipe": {k: v for k, v in p.to_dict().items() if k not in ("workers", "name")},
        "family": family, "model": {k: v for k, v in kw.items() if k != "num_classes"},
        "renorm": bool(renorm), "seed": int(seed), "data": root,
        "exclude": config_key(exclude) if exclude is not None else None})


def _recorded(doc: dict, checkpoint: bool) -> dict:
    """The settings a metrics summary (or a checkpoint) records; older ones record fewer."""
    if isinstance(doc.get("settings"), dict):
        return doc["settings"]
    rec = {}
    if isinstance(doc.get("preset"), dict):
        rec["recipe"] = {k: v for k, v in doc["preset"].items() if k not in ("workers", "name")}
    for key in ("family", "renorm", "seed"):
        if key in doc:
            rec[key] = doc[key]
    if not checkpoint and isinstance(doc.get("model"), dict):     # a checkpoint's "model": weights
        rec["model"] = {k: v for k, v in doc["model"].items() if k != "num_classes"}
    return _jsonable(rec)


def _differences(recorded: dict, asked: dict) -> List[str]:
    """``"field: X there, Y asked"`` for each setting the two disagree on (those both know;
    a model argument one of them lacks counts as a difference)."""
    out = []

    def show(key, v):
        return "the generated scenes" if key == "data" and v is None else json.dumps(v)
    for key, a in asked.items():
        if key not in recorded:
            continue
        r = recorded[key]
        if isinstance(a, dict) and isinstance(r, dict):
            keys = sorted(set(a) | set(r)) if key == "model" else sorted(set(a) & set(r))
            prefix = "model " if key == "model" else ""
            for k in keys:
                if a.get(k, "(not set)") != r.get(k, "(not set)"):
                    out.append(f"{prefix}{k} {show(k, r.get(k, '(not set)'))} there, "
                               f"{show(k, a.get(k, '(not set)'))} asked")
        elif a != r:
            out.append(f"{key} {show(key, r)} there, {show(key, a)} asked")
    return out


def refuse_other(folder: Path, source: Path, diffs: List[str]) -> None:
    if diffs:
        raise ValueError(f"run folder {folder} holds a run of other settings ({source.name}: "
                         f"{'; '.join(diffs)}); a folder answers only for its own: give another "
                         f"folder (zf train --out), or remove {folder} to train there afresh")


def _read_summary(run: Run):
    """(the run's metrics summary or {}, why it could not be read or None)."""
    try:
        return run.summary, None
    except ValueError as e:
        return {}, str(e)


def _final_problem(run: Run, asked: dict) -> Optional[str]:
    """None when the finished run's ``final.pt`` is a readable model of these settings; else why
    not (missing, truncated, ...). Refuses (ValueError) a final model of other settings."""
    path = run.checkpoint()
    try:
        state = load_checkpoint(path, mmap=True)
    except FileNotFoundError:
        return f"{path} is missing"
    except ValueError as e:
        return str(e)
    refuse_other(run.path, path, _differences(_recorded(state, True), asked))
    missing = [k for k in ("model", "model_config", "mean") if k not in state]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    problem = fit_problems(state["model_config"], state["model"])
    return f"{path}: {problem}" if problem else None


def newest_state(run: Run, asked: dict):
    """``(state, path, skipped)``: the newest readable checkpoint of the run to resume from.

    ``resume.pt`` first, then the epoch checkpoints newer than it, newest first; ``skipped``
    lists ``(path, reason)`` of the unreadable ones passed over. ``(None, None, skipped)``
    when there is none. Refuses (ValueError) a checkpoint of other settings.
    """
    skipped = []

    def read(path: Path):
        try:
            state = load_checkpoint(path)
        except FileNotFoundError:
            return None
        except ValueError as e:
            skipped.append((path, str(e)))
            return None
        refuse_other(run.path, path, _differences(_recorded(state, True), asked))
        missing = [k for k in _RESUME_KEYS if k not in state]
        if missing:
            skipped.append((path, f"{path} lacks {', '.join(missing)}"))
            return None
        return state

    resume_path = run.path / "resume.pt"
    state = read(resume_path)
    if state is not None:
        newer = [e for e in run.saved_epochs if e > int(state["epoch"])]
        if not newer:
            return state, resume_path, skipped
    for epoch in sorted(run.saved_epochs, reverse=True):
        if state is not None and epoch <= int(state["epoch"]):
            break
        path = run.checkpoint(epoch)
        found = read(path)
        if found is not None:
            return found, path, skipped
    return (state, resume_path, skipped) if state is not None else (None, None, skipped)


def folder_state(run: Run, asked: dict, resume: bool, report: bool) -> bool:
    """Whether the run in ``run.path`` is finished (with a readable final model of ``asked``).

    Refuses (ValueError) a folder whose metrics, or whose ``final.pt``, record other
    settings. ``report``: warn about an unreadable ``metrics.json`` or ``final.pt`` (both are
    made again from the run's checkpoints).
    """
    summary, problem = _read_summary(run)
    if problem and report:
        warnings.warn(f"{problem}; the run's checkpoints hold its history: it is written again")
    if summary:
        refuse_other(run.path, run.path / "metrics.json", _differences(_recorded(summary, False), asked))
    elif not resume and report:
        # no metrics: a run killed before its first ones, whose resume.pt may still say what it is
        with contextlib.suppress(FileNotFoundError, ValueError):
            state = load_checkpoint(run.path / "resume.pt", mmap=True)
            refuse_other(run.path, run.path / "resume.pt", _differences(_recorded(state, True), asked))
    if not (resume and summary.get("complete")):
        return False
    why = _final_problem(run, asked)
    if why is None:
        return True
    if report:
        warnings.warn(f"{why}: finishing the run again from its newest readable checkpoint")
    return False
