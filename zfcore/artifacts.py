"""The artifacts folder and everything that writes to it: cache keys, the atomic writer, caches.

Every file zfcore saves (checkpoints, caches, metrics, the command's outputs) goes through
:func:`atomic_write`; every cache entry is named by :func:`config_key` of what produced it
(settings, and the content of the files it read, by :func:`file_digest`), so that a changed
input never reuses a stale result; :func:`cached` is the one load-or-compute-and-save step.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, IO, List

import torch

from .presets import get_preset

__all__ = ["artifacts_dir", "config_key", "file_digest", "atomic_write", "remove_stale_temporaries",
           "cached", "save_tensors", "load_tensors", "write_json"]


def artifacts_dir(scale=None) -> Path:
    """``artifacts/<scale>/`` under the repository, or under ``$ZF_ARTIFACTS``."""
    root = os.environ.get("ZF_ARTIFACTS")
    base = Path(root) if root else Path(__file__).resolve().parent.parent / "artifacts"
    if scale is None:
        return base
    return base / get_preset(scale).name


def config_key(*parts, n: int = 12) -> str:
    """A short hash of JSON-able ``parts``: cache entries are keyed by what produced them."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def atomic_write(path, write: Callable[[IO[bytes]], object], fsync: bool = False) -> Path:
    """Write ``path`` so that no reader ever sees half a file and a failure keeps the old one.

    Calls ``write(f)`` on a binary temporary file beside ``path`` (its folder is created),
    then moves it onto ``path`` with ``os.replace``; on any error the temporary file is
    removed and ``path`` is left as it was. Every file zfcore saves (checkpoints, caches,
    metrics, the command's outputs) goes through here.

    Args:
        path: the file to write.
        write: writes the content to the open binary file it is given.
        fsync: flush the data to disk before the rename (checkpoints).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(_TEMPORARY.format(name=path.name, pid=os.getpid(), tid=threading.get_ident()))
    try:
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# atomic_write's temporary files: ``.<name>.<pid of the writer>.<thread id>.tmp``
_TEMPORARY = ".{name}.{pid}.{tid}.tmp"


_TEMPORARY_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<tid>\d+)\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True                           # not a pid we wrote: leave its file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True                           # a process of another user, or we cannot tell
    return True


def remove_stale_temporaries(folder) -> List[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` when its writer died.

    A process killed while writing (SIGKILL, a crash, the machine going down) cannot remove
    its ``.<name>.<pid>.<tid>.tmp``. Only files whose writer's process id is not alive on
    this machine are removed; a live writer's file is never touched (on a folder shared by
    several machines, call this only while holding the folder, e.g. under
    :func:`zfcore.runs.lock_run`). Returns the removed paths, sorted.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMPORARY_RE.match(p.name)
        if m is None or not p.is_file() or _pid_alive(int(m["pid"])):
            continue
        try:
            p.unlink()
        except FileNotFoundError:             # removed meanwhile by someone else
            continue
        removed.append(p)
    return sorted(removed)



def file_digest(path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes (a cache key's view of a file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_json(path, data) -> Path:
    """``data`` as indented JSON at ``path``, atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def save_tensors(value, path) -> None:
    """``torch.save`` of ``value`` to ``path``, atomically."""
    atomic_write(path, lambda f: torch.save(value, f))


def load_tensors(path):
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings, lists and dicts only."""
    return torch.load(path, map_location="cpu", weights_only=True)


def cached(path, compute: Callable[[], Any], *, load: Callable[[Path], Any] = load_tensors,
           save: Callable[[Any, Path], None] = save_tensors, refresh: bool = False) -> Any:
    """The value stored at ``path``, or ``compute()``'s, saved there first.

    ``path`` is a cache entry named by :func:`config_key` of everything that produced the value,
    so an existing entry is the right one. An entry that cannot be read (truncated by a kill, from
    another version) is computed again, with a warning naming it; ``refresh=True`` always computes.

    Args:
        path: the entry's file, usually ``artifacts_dir(scale) / kind / f"{key}.pt"``.
        compute: makes the value when there is no readable entry.
        load: reads an entry (default :func:`load_tensors`); raise ValueError, OSError or
            RuntimeError for an unreadable one.
        save: writes the value atomically (default :func:`save_tensors`).
    """
    path = Path(path)
    if path.exists() and not refresh:
        try:
            return load(path)
        except (ValueError, OSError, RuntimeError, EOFError, KeyError) as e:
            warnings.warn(f"the cache entry {path} is not readable ({e}); computing it again")
    value = compute()
    save(value, path)
    return value
