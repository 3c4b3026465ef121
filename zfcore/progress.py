"""Progress bars for long work (tqdm), which the environment can turn off.

``ZF_PROGRESS=0`` disables every bar zfcore draws: the book runner sets it, since a
progress bar in a static page is a dead widget.
"""
from __future__ import annotations

import os

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(requested: bool = True) -> bool:
    """``requested``, unless ``ZF_PROGRESS=0`` is set."""
    return bool(requested) and os.environ.get("ZF_PROGRESS", "1") != "0"


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` bar over ``iterable`` (shown in a terminal and in Jupyter)."""
    from tqdm.auto import tqdm
    return tqdm(iterable, disable=not progress_enabled(enabled), **kwargs)
