"""Training with the paper's recipe (Section 3).

SGD with momentum 0.9 on mini-batches (128 at full scale), learning rate 1e-2,
dropout 0.5 in fc6 and fc7, weights drawn with standard deviation 1e-2 and biases
0, random crops and flips of the mean-subtracted images. Two settings the paper
leaves open, and our choices:

* "annealed by hand when the validation error plateaus": the learning rate is
  divided by 10 (``lr_factor``) whenever the centre-crop validation top-1 error
  has not improved by at least 0.1 percentage point for ``lr_patience``
  consecutive epochs;
* weight decay: not stated; we use Krizhevsky et al.'s 5e-4.

After every SGD step each conv filter whose RMS exceeds the radius 1e-1 is
scaled back to that radius (:func:`renormalize_filters`); ``renorm=False``
turns this off (Fig. 6a).

A run writes ``metrics.json`` (one row per epoch: train and validation top-1
and top-5 error, loss, learning rate, seconds), a checkpoint at every epoch of
the preset's ``evolution_epochs`` and at the last (Fig. 4 reads them), and
``resume.pt`` after every epoch; all written atomically, by rank 0 only.
``resume=True`` continues a killed run from its last finished epoch to the
same final weights and metrics as an uninterrupted run: every epoch draws its
randomness from (seed, epoch) alone. It resumes from the newest readable
checkpoint (``resume.pt``, else the newest of ``checkpoints/``), warning about
any it had to skip, and removes the temporary files of writers that were killed.

A run folder answers only for its own settings: training into a folder that
holds a run of other settings (another preset, model, seed, data) is refused,
naming the settings that differ. One process at a time trains in a folder
(:func:`lock_run`; under torchrun, rank 0 holds it for all): a second one waits.

Under ``torchrun --nproc_per_node=N`` the same code runs DistributedDataParallel
(NCCL on GPUs, gloo on CPUs); each global mini-batch is shared among the ranks.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import models as zfmodels
from .data.transforms import center_crop, random_crop_flip, ten_crop
from .presets import (Preset, artifacts_dir, atomic_write, config_key, get_preset,
                      remove_stale_temporaries)
from .progress import progress_bar

__all__ = ["train", "get_run", "Run", "evaluate", "renormalize_filters", "save_checkpoint",
           "load_checkpoint", "load_model", "load_error_reason", "lock_run", "RunBusy",
           "CHECKPOINT_FORMAT", "make_sources", "preprocess", "train_on_arrays", "sample_predictions"]

CHECKPOINT_FORMAT = "zfcore-checkpoint"
# in a run folder: the final model's 10-crop validation softmax, {"probs": (N, C), "n": N}
VAL_PROBS = "probs-val-10crop.pt"
CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------- recipe pieces

@torch.no_grad()
def renormalize_filters(model: nn.Module, radius: float = 0.1) -> int:
    """Section 3: rescale every conv filter whose RMS exceeds ``radius`` to that radius.

    A filter is one output channel's weights (in_channels x k x k); its RMS is
    ``sqrt(mean(w^2))``. Returns how many filters were rescaled.
    """
    count = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            rms = w.pow(2).mean(dim=(1, 2, 3)).sqrt()
            scale = (radius / rms.clamp_min(1e-12)).clamp(max=1.0)
            count += int((scale < 1).sum())
            w.mul_(scale.view(-1, 1, 1, 1))
    return count


def preprocess(images: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) minus the (3, S, S) per-pixel mean -> float32 (Section 3)."""
    return images.float() - mean


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, 1).indices == y[:, None]).any(1).sum())


@torch.no_grad()
def evaluate(model: nn.Module, source, mean: torch.Tensor, image_size: int, *,
             ten_crops: bool = False, batch_size: int = 128, rank: int = 0, world: int = 1,
             device=None, progress: bool = False, probs_out: Optional[list] = None) -> Dict[str, float]:
    """Top-1 and top-5 error (%) and loss of ``model`` on ``source``.

    ``ten_crops=False`` uses the centre crop; ``True`` averages the softmax over
    the paper's 10 crops (4 corners and centre, each flipped). Under
    torch.distributed the ranks share the work and the counts are summed.
    ``probs_out``: a list to which each batch's (n, C) probabilities (the 10-crop
    average, or the centre crop's softmax) are appended on the CPU, in the source's
    order (this rank's share of it under torch.distributed).
    """
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    mean = mean.to(device)
    sums = torch.zeros(4, dtype=torch.float64)
    it = source.batches(batch_size, shuffle=False, rank=rank, world=world)
    for xb, yb in progress_bar(it, enabled=progress, desc="evaluate", leave=False):
        x = preprocess(xb.to(device), mean).contiguous(memory_format=torch.channels_last)
        y = yb.to(device)
        if ten_crops:
            crops = ten_crop(x, image_size)                       # (n, 10, 3, s, s)
            n = crops.shape[0]
            probs = F.softmax(model(crops.flatten(0, 1)), 1).view(n, 10, -1).mean(1)
            logp = probs.clamp_min(1e-12).log()
        else:
            logp = F.log_softmax(model(center_crop(x, image_size)), 1)
        if probs_out is not None:
            probs_out.append(logp.exp().cpu())
        sums += torch.tensor([float(F.nll_loss(logp, y, reduction="sum")), _topk_correct(logp, y, 1),
                              _topk_correct(logp, y, 5), len(y)], dtype=torch.float64)
    model.train(was)
    sums = _all_reduce(sums)
    n = max(1.0, float(sums[3]))
    return {"loss": float(sums[0]) / n, "top1_err": 100 * (1 - float(sums[1]) / n),
            "top5_err": 100 * (1 - float(sums[2]) / n), "n": int(sums[3])}


@torch.no_grad()
def sample_predictions(model: nn.Module, images, labels, mean: torch.Tensor, image_size: int, *,
                       seed: int = 0, limit: Optional[int] = None, batch_size: int = 256):
    """Centre-crop predictions on a seeded sample of a split, to choose example images from.

    Args:
        images: (N, S, S, 3) uint8 stored images: an array or a folder split's lazy
            images (only the sampled ones are decoded, a batch at a time).
        labels: (N,) true classes; mean: the model's (3, S, S) training mean.
        limit: sample size (None: every image).
    Returns:
        ``(order, pred, p_true)``: the image indices in an order drawn from ``seed``, cut
        to the first ``limit``; and, over all N images, the predicted class (-1 outside
        the sample) and the softmax probability of the true class (0 outside).
    """
    import numpy as np
    from .data.transforms import center_crop
    N = len(images)
    order = np.random.default_rng(seed).permutation(N)
    if limit is not None:
        order = order[:max(1, int(limit))]
    look = np.sort(order)
    labels = np.asarray(labels)
    pred = np.full(N, -1, np.int64)
    p_true = np.zeros(N)
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        for b in range(0, len(look), batch_size):
            idx = look[b:b + batch_size]
            x = preprocess(torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2), mean)
            prob = torch.softmax(model(center_crop(x, image_size).to(dev)), 1).cpu()
            pred[idx] = prob.argmax(1).numpy()
            p_true[idx] = prob[torch.arange(len(idx)), torch.from_numpy(labels[idx])].double().numpy()
    finally:
        model.train(was)
    return order, pred, p_true


# --------------------------------------------------------------------------- distribution

def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    dist = _dist()
    if dist is None:
        return t
    backend = dist.get_backend()
    dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t2 = t.to(dev)
    dist.all_reduce(t2)
    return t2.cpu()


def _init_distributed():
    """(rank, world, device); starts torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if not dist.is_initialized():
        # a long timeout: rank 0 may compute the per-pixel mean of a large training set
        # while the others wait at a barrier
        from datetime import timedelta
        dist.init_process_group(backend, timeout=timedelta(hours=3))
    return dist.get_rank(), dist.get_world_size(), device


def _barrier():
    dist = _dist()
    if dist is not None:
        dist.barrier()


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then rename."""
    path = Path(path)

    def write(f):
        torch.save(state, f)
        f.flush()
        _maybe_test_kill(state.get("epoch"), path.name)     # test hook: a kill in mid-write
    atomic_write(path, write, fsync=True)


def load_error_reason(e: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a line, from the exception it raised.

    PyTorch's own messages advise retrying with ``weights_only=False`` (which runs any code
    the file holds) even for a file of random bytes; this says what the file is instead.
    """
    text = str(e).strip()
    if "Unsupported global" in text:
        import re
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


def _shape_problems(expected: Dict[str, tuple], weights) -> Optional[str]:
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


def _fit_problems(config, weights) -> Optional[str]:
    """What keeps a checkpoint's ``model`` weights from fitting its ``model_config``, or None."""
    try:
        with torch.device("meta"):              # shapes only: no memory, no initialisation
            model = zfmodels.build_model(config)
    except Exception as e:
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        return f"its model_config {config!r} does not describe a model zfcore builds: {e}"
    problems = _shape_problems({k: tuple(v.shape) for k, v in model.state_dict().items()}, weights)
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
    problem = _fit_problems(state["model_config"], state["model"])
    if problem:
        raise ValueError(f"{path}: {problem}")
    model = zfmodels.build_model(state["model_config"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


# --------------------------------------------------------------------------- runs

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


def _model_kwargs(p: Preset, family: str, variant: dict) -> dict:
    kw = dict(num_classes=p.num_classes, input_size=p.image_size, width=p.width,
              fc_units=p.fc_units, dropout=p.dropout, init_std=p.init_std,
              init=p.init)
    kw.update(variant)
    if family not in ("zf", "krizhevsky"):
        raise ValueError(f"unknown model family {family!r}; expected 'zf' or 'krizhevsky'")
    return kw


def _exclude_list(exclude) -> Optional[List[str]]:
    """The exclusion list: ``None``, a file (one path a line) or an iterable of paths; sorted."""
    if exclude is None:
        return None
    if isinstance(exclude, (str, os.PathLike)):
        from .data.splits import read_exclude
        exclude = read_exclude(exclude)
    return sorted(str(e) for e in exclude)


def _data_of(p: Preset, data_root, exclude):
    """(data root, exclusion list): at a folder scale, the environment's folders when not given."""
    if p.data != "scenes" and data_root is None:
        from .data.splits import data_roots
        roots = data_roots()
        data_root = roots.imagenet
        if exclude is None and roots.exclude is not None:
            exclude = roots.exclude
    return data_root, _exclude_list(exclude)


def run_dir(scale, name: str = "zfnet", family: str = "zf", renorm: bool = True, seed=None,
            data_root=None, exclude=None, **variant) -> Path:
    """The folder of the run these settings make (keyed by all of them).

    ``exclude`` (a file or a list of paths) enters the key only when given, by its content.
    """
    p = get_preset(scale)
    seed = p.seed if seed is None else seed
    data_root, excluded = _data_of(p, data_root, exclude)
    kw = _model_kwargs(p, family, variant)
    recipe = {k: v for k, v in p.to_dict().items() if k not in ("workers", "name")}
    # the folder by its absolute path: `zf train --data ./imagenet` and the book's ZF_IMAGENET
    # name the same run
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    parts = ["train", 1, family, kw, recipe, renorm, seed, root]
    if excluded is not None:
        parts.append({"exclude": config_key(excluded)})
    return artifacts_dir(p) / "runs" / f"{name}-{config_key(*parts)}"


def make_sources(p: Preset, data_root=None, progress: bool = True, exclude=None):
    """(train source, val source) of the preset's data: scenes, or folders at ``data_root``.

    ``exclude``: training files to leave out (a file with one path a line, relative to
    ``data_root``, such as ``data_prep.overlap``'s ``exclude.txt``, or a list of them).
    """
    if p.data == "scenes" and data_root is None:
        if exclude is not None:
            raise ValueError("exclude applies to folder data (--data ROOT); the generated scenes "
                             "share no images with their target classes")
        from .data.scenes import SceneSource, load_scenes
        tr = SceneSource(load_scenes(p, "train", progress=progress))
        va = SceneSource(load_scenes(p, "val", progress=progress), mean=tr.mean())
        return tr, va
    data_root, excluded = _data_of(p, data_root, exclude)
    if data_root is None:
        raise ValueError(f"the {p.name!r} scale trains on your own data: give its folder "
                         f"(zf train --data ROOT, or the environment variable ZF_IMAGENET, laid out as "
                         f"ROOT/train/<class>/<image>, ROOT/val/<class>/<image>)")
    from .data.folders import FolderSource
    root = Path(data_root)
    key = [str(root.resolve()), p.stored_size] + ([config_key(excluded)] if excluded else [])
    mean_cache = artifacts_dir(p) / "data" / f"mean-{config_key(*key)}.pt"
    tr = FolderSource(root, "train", stored_size=p.stored_size, workers=p.workers, mean_cache=mean_cache,
                      exclude=excluded)
    if excluded and progress:
        print(f"left out {tr.dataset.excluded} of the {len(excluded)} listed training images "
              f"(exclusion list)", flush=True)
    # the training loop normalises validation images with the train source's mean
    va = FolderSource(root, "val", stored_size=p.stored_size, workers=p.workers, mean_cache=mean_cache)
    return tr, va


def _write_json(path: Path, data) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def _maybe_test_kill(epoch, step) -> None:
    """Test hook: ``ZF_TEST_KILL_AT=epoch:step`` kills this process with SIGKILL there.

    ``step`` is a training step, or the name of a checkpoint being written
    (``ZF_TEST_KILL_AT=1:resume.pt``: killed after writing epoch 1's ``resume.pt`` to its
    temporary file, before the rename)."""
    at = os.environ.get("ZF_TEST_KILL_AT")
    if at and at == f"{epoch}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- holding a run folder

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
        import socket
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield folder
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)


# --------------------------------------------------------------------------- what a run folder holds

_RESUME_KEYS = ("epoch", "model", "optimizer", "plateau", "metrics")


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def _settings(p: Preset, family: str, kw: dict, renorm: bool, seed: int, data_root, exclude) -> dict:
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


def _refuse_other(folder: Path, source: Path, diffs: List[str]) -> None:
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
    _refuse_other(run.path, path, _differences(_recorded(state, True), asked))
    missing = [k for k in ("model", "model_config", "mean") if k not in state]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    problem = _fit_problems(state["model_config"], state["model"])
    return f"{path}: {problem}" if problem else None


def _newest_state(run: Run, asked: dict):
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
        _refuse_other(run.path, path, _differences(_recorded(state, True), asked))
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


def train(scale="default", *, name: str = "zfnet", family: str = "zf", renorm: bool = True,
          resume: bool = True, seed: Optional[int] = None, data_root=None, exclude=None,
          out: Optional[Path] = None,
          progress: bool = True, device=None, **variant) -> Run:
    """Train a model with the paper's recipe at ``scale`` (a preset name or Preset).

    Args:
        scale: ``"tiny"``, ``"default"``, ``"imagenet"`` or a :class:`~zfcore.presets.Preset`
            (``get_preset("tiny").replace(epochs=2)`` for a quick run).
        name: the run's name (its folder is ``artifacts/<scale>/runs/<name>-<key>``).
        family: ``"zf"`` (Fig. 3) or ``"krizhevsky"``.
        renorm: rescale conv filters to RMS radius ``preset.filter_radius`` after each step.
        resume: continue from the run folder's newest readable checkpoint (``resume.pt``,
            else the newest of ``checkpoints/``; unreadable ones are skipped with a warning),
            and return at once if the run is complete and its ``final.pt`` readable;
            ``False`` starts afresh.
        seed: defaults to the preset's.
        data_root: a folder in the ImageNet layout (at the imagenet scale, default: the
            environment variable ``ZF_IMAGENET``, see :mod:`zfcore.data.splits`).
        exclude: training images to leave out: a file with one path a line, relative to
            ``data_root`` (``data_prep.overlap``'s ``exclude.txt``), or a list of paths
            (at the imagenet scale, default: ``ZF_EXCLUDE``). Part of the run's key.
        out: the run folder (default: keyed by every setting, see :func:`run_dir`).
        variant: keyword arguments of :func:`zfcore.models.zfnet` (``remove``, ``conv345``,
            ``fc_units``, ``width``, ``conv1`` ...), the variants of Table 3.
    Returns:
        the :class:`Run`.
    Raises:
        ValueError: the run folder cannot be created or written in, or holds a run (or a
            checkpoint) of other settings: the message names the settings that differ.
    """
    p = get_preset(scale)
    seed = p.seed if seed is None else int(seed)
    rank, world, dev = _init_distributed()
    device = torch.device(device) if device is not None else dev
    data_root, exclude = _data_of(p, data_root, exclude)
    kw = _model_kwargs(p, family, variant)
    out = Path(out) if out is not None else run_dir(p, name, family, renorm, seed, data_root, exclude,
                                                    **variant)
    run = Run(out)
    asked = _settings(p, family, kw, renorm, seed, data_root, exclude)
    if resume and _folder_state(run, asked, resume, report=False):
        return run                # finished: nothing is written, the folder may be read-only
    if p.batch_size % world:
        raise ValueError(f"batch size {p.batch_size} does not split over {world} processes")
    # one process at a time trains in a folder; under torchrun rank 0 holds it for all ranks
    with lock_run(out) if rank == 0 else contextlib.nullcontext():
        _barrier()
        return _train_in(run, p, asked, kw, family=family, renorm=renorm, resume=resume, seed=seed,
                         data_root=data_root, exclude=exclude, progress=progress, rank=rank,
                         world=world, device=device)


def _folder_state(run: Run, asked: dict, resume: bool, report: bool) -> bool:
    """Whether the run in ``run.path`` is finished (with a readable final model of ``asked``).

    Refuses (ValueError) a folder whose metrics, or whose ``final.pt``, record other
    settings. ``report``: warn about an unreadable ``metrics.json`` or ``final.pt`` (both are
    made again from the run's checkpoints).
    """
    summary, problem = _read_summary(run)
    if problem and report:
        warnings.warn(f"{problem}; the run's checkpoints hold its history: it is written again")
    if summary:
        _refuse_other(run.path, run.path / "metrics.json", _differences(_recorded(summary, False), asked))
    elif not resume and report:
        # no metrics: a run killed before its first ones, whose resume.pt may still say what it is
        with contextlib.suppress(FileNotFoundError, ValueError):
            state = load_checkpoint(run.path / "resume.pt", mmap=True)
            _refuse_other(run.path, run.path / "resume.pt", _differences(_recorded(state, True), asked))
    if not (resume and summary.get("complete")):
        return False
    why = _final_problem(run, asked)
    if why is None:
        return True
    if report:
        warnings.warn(f"{why}: finishing the run again from its newest readable checkpoint")
    return False


def _train_in(run: Run, p: Preset, asked: dict, kw: dict, *, family, renorm, resume, seed, data_root,
              exclude, progress, rank, world, device) -> Run:
    """:func:`train`'s work, in the run folder this process holds."""
    out = run.path
    if rank == 0:
        removed = remove_stale_temporaries(out) + remove_stale_temporaries(out / "checkpoints")
        if removed:
            files = "file" if len(removed) == 1 else "files"
            warnings.warn(f"removed {len(removed)} temporary {files} that killed writers left in {out}: "
                          f"{', '.join(str(r.relative_to(out)) for r in removed)}")
    if _folder_state(run, asked, resume, report=rank == 0):
        return run                # another process finished it while this one waited
    resume_path = out / "resume.pt"
    # the checkpoint to resume from, before the data are read (a foreign one is refused now)
    found, path, skipped = _newest_state(run, asked) if resume else (None, None, [])
    train_src, val_src = make_sources(p, data_root, progress=progress and rank == 0, exclude=exclude)
    if rank == 0:
        train_src.mean()          # computed (and cached, for folders) once, by rank 0
    _barrier()
    mean = train_src.mean().to(device)
    kw = dict(kw, num_classes=train_src.num_classes)
    torch.manual_seed(seed)
    build = zfmodels.zfnet if family == "zf" else zfmodels.krizhevsky
    # channels-last layout: the convolutions run about 20% faster on the CPU, and on GPUs
    model = build(**kw).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    plateau = {"best": math.inf, "bad": 0}
    history: List[dict] = []
    start = 1
    if resume:
        if rank == 0 and (skipped or (found is not None and path != resume_path)):
            notes = [f"skipped as unreadable: {why}" for _, why in skipped]
            if found is not None and resume_path not in [q for q, _ in skipped]:
                notes.insert(0, f"{resume_path.name} holds an older epoch" if resume_path.exists()
                             else f"there is no {resume_path.name}")
            if found is None:
                warnings.warn(f"no readable checkpoint in {out} ({'; '.join(notes)}): "
                              f"starting from epoch 1")
            else:
                warnings.warn(f"resuming {out} from {path.relative_to(out)} (epoch {found['epoch']}): "
                              f"{'; '.join(notes)}")
        if found is not None:
            expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            problem = _shape_problems(expected, found["model"])
            if problem:
                _refuse_other(out, path, [f"the model's weights differ ({problem})"])
            model.load_state_dict(found["model"])
            try:
                opt.load_state_dict(found["optimizer"])
            except (ValueError, KeyError, TypeError) as e:
                _refuse_other(out, path, [f"the optimizer state does not fit the model ({e})"])
            plateau = dict(found["plateau"])
            history = list(found["metrics"])
            start = int(found["epoch"]) + 1
            if rank == 0 and progress:
                print(f"resuming {out.name} after epoch {start - 1}")
    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    per_rank = p.batch_size // world
    classes = list(train_src.classes)

    def snapshot(epoch: int, complete: bool = False) -> dict:
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                "model": model.state_dict(), "model_config": zfmodels.model_config(model),
                "optimizer": opt.state_dict(), "plateau": dict(plateau), "metrics": history,
                "preset": p.to_dict(), "seed": seed, "renorm": renorm, "mean": mean.cpu(),
                "classes": classes, "complete": complete, "settings": asked}

    for epoch in range(start, p.epochs + 1):
        t0 = time.perf_counter()
        # all randomness of an epoch comes from (seed, epoch, rank): resumable and repeatable
        torch.manual_seed(seed * 7919 + epoch * 104729 + rank)
        crop_gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 31 + rank)
        model.train()
        sums = torch.zeros(4, dtype=torch.float64)
        lr = opt.param_groups[0]["lr"]
        nb = train_src.num_batches(p.batch_size, shuffle=True) if hasattr(train_src, "num_batches") else None
        bar = progress_bar(total=nb, desc=f"{out.name[:24]} epoch {epoch}/{p.epochs}", leave=False,
                           enabled=progress and rank == 0, unit="batch")
        for step, (xb, yb) in enumerate(train_src.batches(p.batch_size, shuffle=True, seed=seed,
                                                          epoch=epoch, rank=rank, world=world)):
            _maybe_test_kill(epoch, step)
            x = random_crop_flip(xb.to(device, non_blocking=True), p.image_size, crop_gen, mean=mean)
            y = yb.to(device, non_blocking=True)
            logits = ddp(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if renorm:
                renormalize_filters(model, p.filter_radius)
            with torch.no_grad():
                sums += torch.tensor([loss.item() * len(y), _topk_correct(logits, y, 1),
                                      _topk_correct(logits, y, 5), len(y)], dtype=torch.float64)
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        if not math.isfinite(float(sums[0])):
            raise FloatingPointError(f"training diverged in epoch {epoch} (loss is not finite); "
                                     f"try a smaller learning rate")
        sums = _all_reduce(sums)
        n = max(1.0, float(sums[3]))
        val = evaluate(model, val_src, mean, p.image_size, batch_size=2 * per_rank, rank=rank, world=world)
        err = val["top1_err"]
        if err < plateau["best"] - 0.1:
            plateau["best"], plateau["bad"] = err, 0
        else:
            plateau["bad"] += 1
            if plateau["bad"] >= p.lr_patience:
                for g in opt.param_groups:
                    g["lr"] *= p.lr_factor
                plateau["bad"] = 0
        row = {"epoch": epoch, "lr": lr, "train_loss": float(sums[0]) / n,
               "train_top1_err": 100 * (1 - float(sums[1]) / n),
               "train_top5_err": 100 * (1 - float(sums[2]) / n),
               "val_loss": val["loss"], "val_top1_err": val["top1_err"], "val_top5_err": val["top5_err"],
               "seconds": time.perf_counter() - t0, "images": int(sums[3])}
        history.append(row)
        if rank == 0:
            state = snapshot(epoch)
            if epoch in p.evolution_epochs or epoch == p.epochs:
                save_checkpoint(run.checkpoint(epoch), state)
            save_checkpoint(resume_path, state)
            _write_json(out / "metrics.json", _summary(p, history, classes, family, kw, renorm, seed,
                                                       world, asked, complete=False))
            if progress:
                print(f"epoch {epoch:3d}  lr {lr:.0e}  train loss {row['train_loss']:.3f} "
                      f"top-1 err {row['train_top1_err']:.1f}%  val top-1 {err:.1f}% "
                      f"top-5 {row['val_top5_err']:.1f}%  ({row['seconds']:.1f} s)", flush=True)
        _barrier()
    if rank == 0 and start > p.epochs and found is not None and path != resume_path:
        save_checkpoint(resume_path, snapshot(p.epochs))     # in place of the unreadable or missing one
    val_probs: Optional[list] = [] if world == 1 else None
    final = evaluate(model, val_src, mean, p.image_size, ten_crops=True, batch_size=per_rank,
                     rank=rank, world=world, probs_out=val_probs)
    if getattr(train_src, "skipped", 0) and rank == 0:
        warnings.warn(f"{train_src.skipped} unreadable training images were skipped")
    if rank == 0:
        save_checkpoint(run.checkpoint(), snapshot(p.epochs, complete=True))
        if val_probs:
            # the final model's 10-crop softmax on the validation images, for ensembles (Table 2)
            save_checkpoint(out / VAL_PROBS, {"probs": torch.cat(val_probs), "n": final["n"]})
        summary = _summary(p, history, classes, family, kw, renorm, seed, world, asked, complete=True)
        summary["final"] = {"val_10crop_top1_err": final["top1_err"],
                            "val_10crop_top5_err": final["top5_err"], "val_10crop_loss": final["loss"],
                            "val_10crop_n": int(final["n"])}
        _write_json(out / "metrics.json", summary)
        if progress:
            print(f"done: val 10-crop top-1 error {final['top1_err']:.1f}%, top-5 "
                  f"{final['top5_err']:.1f}%; run folder {out}", flush=True)
    _barrier()
    run.model = model.eval()
    return run


def _summary(p, history, classes, family, kw, renorm, seed, world, asked, complete) -> dict:
    return {"scale": p.name, "preset": p.to_dict(), "family": family, "model": kw, "renorm": renorm,
            "seed": seed, "world_size": world, "classes": classes, "epochs": history,
            "train_seconds": sum(r["seconds"] for r in history), "complete": complete,
            "settings": asked}


def get_run(scale="default", *, progress: bool = True, **kwargs) -> Run:
    """The trained run for these settings: loaded if complete, else trained (or resumed).

    Chapters call this: every chapter can run alone, and a model is trained once.
    Keyword arguments are those of :func:`train`.
    """
    return train(scale, progress=progress, resume=True, **kwargs)


# The paper's recipe (Section 3), for the book's side-by-side table.
PAPER_RECIPE = {
    "input": "224x224 crops of 256x256 images",
    "classes": "1000 (ImageNet 2012, 1.3M training images)",
    "conv widths": "96, 256, 384, 384, 256 maps",
    "fc6, fc7": "4096 units",
    "mini-batch": "128",
    "learning rate": "1e-2, annealed by hand on plateaus",
    "momentum": "0.9",
    "weight decay": "not stated",
    "dropout (fc6, fc7)": "0.5",
    "initial weights": "std 1e-2, biases 0",
    "filter RMS radius": "1e-1 (conv layers)",
    "augmentation": "random crops and flips; 10-crop test",
    "epochs": "70 (12 days on a GTX580)",
}


def recipe_rows(scale) -> list:
    """Rows ``(setting, the paper, this scale)`` of the training recipe."""
    p = get_preset(scale)
    m = zfmodels.zfnet(p.num_classes, input_size=p.image_size, width=p.width, fc_units=p.fc_units)
    widths = ", ".join(str(getattr(m, f"conv{i}").out_channels) for i in range(1, 6))
    ours = {
        "input": f"{p.image_size}x{p.image_size} crops of {p.stored_size}x{p.stored_size} images",
        "classes": f"{p.num_classes} ({p.num_classes * p.train_per_class} training images)"
                   if p.data == "scenes" else "your data set's",
        "conv widths": f"{widths} maps",
        "fc6, fc7": f"{p.fc_units} units",
        "mini-batch": str(p.batch_size),
        "learning rate": f"{p.lr:g}, divided by {1 / p.lr_factor:g} after {p.lr_patience} epochs "
                         f"without a 0.1-point gain in validation top-1 error",
        "momentum": f"{p.momentum:g}",
        "weight decay": f"{p.weight_decay:g} (Krizhevsky et al.'s)",
        "dropout (fc6, fc7)": f"{p.dropout:g}",
        "initial weights": (f"std {p.init_std:g}, biases 0" if p.init == "paper" else
                            f"std {p.init_std:g} x sqrt(Fig. 3 fan-in / fan-in) per layer, biases 0"),
        "filter RMS radius": f"{p.filter_radius:g} (conv layers)",
        "augmentation": "random crops and flips; 10-crop test",
        "epochs": str(p.epochs),
    }
    return [(k, PAPER_RECIPE[k], ours[k]) for k in PAPER_RECIPE]


def train_on_arrays(model: nn.Module, images, labels, mean: torch.Tensor, image_size: int, *,
                    steps: int, batch_size: int = 128, lr: float = 1e-2, momentum: float = 0.9,
                    weight_decay: float = 5e-4, filter_radius: Optional[float] = 0.1,
                    anneal_at: Optional[float] = 0.75, lr_factor: float = 0.1, seed: int = 0,
                    device=None, progress: bool = False) -> nn.Module:
    """Train ``model`` on images held in memory with the paper's recipe, for a fixed number of steps.

    The recipe of :func:`train` (Section 3) without its run folder, validation and
    checkpoints: random ``image_size`` crops and horizontal flips of the
    mean-subtracted images, SGD with momentum, weight decay, dropout (the model's),
    and after each step the conv filters rescaled to RMS radius ``filter_radius``.
    With no validation set to watch, "annealed by hand" becomes a fixed schedule:
    the learning rate is multiplied by ``lr_factor`` once, after a fraction
    ``anneal_at`` of the steps (``None``: never). Used for the networks trained
    from scratch on the target classes (Section 5.2, Tables 4 and 5).

    Args:
        model: the network to train (in place), e.g. ``zfnet(num_classes=C, ...)``.
        images: (N, S, S, 3) or (N, 3, S, S) uint8 images (numpy or torch), S >= image_size.
        labels: (N,) class indices.
        mean: (3, S, S) per-pixel mean subtracted from every image.
        image_size: side of the random crops.
        steps: SGD steps; each takes ``min(batch_size, N)`` images, the data set
            being walked in a new random order every epoch (seeded).
        seed: all randomness (order, crops, flips, dropout) comes from it; the
            global RNG state is left as it was.
    Returns:
        ``model``, in eval mode.
    """
    import numpy as np
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    if x.dim() != 4:
        raise ValueError(f"expected (N, S, S, 3) or (N, 3, S, S) images, got shape {tuple(x.shape)}")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(y) != len(x) or len(x) == 0:
        raise ValueError(f"{len(x)} images and {len(y)} labels: give one label per image, at least one")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device, memory_format=torch.channels_last)
    mean = mean.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    bs = min(int(batch_size), len(x))
    order_gen = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    crop_gen = torch.Generator().manual_seed(seed * 1_000_003 + 29)
    drop_at = int(round(anneal_at * steps)) if anneal_at is not None else None
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        order, pos = torch.randperm(len(x), generator=order_gen), 0
        bar = progress_bar(range(steps), enabled=progress, desc="train", leave=False, unit="step")
        for step in bar:
            if step == drop_at:
                for g in opt.param_groups:
                    g["lr"] *= lr_factor
            if pos + bs > len(x):
                order, pos = torch.randperm(len(x), generator=order_gen), 0
            idx = order[pos:pos + bs]
            pos += bs
            xb = random_crop_flip(x[idx].to(device), image_size, crop_gen, mean=mean)
            loss = F.cross_entropy(model(xb), y[idx].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step} (loss is not finite); "
                                         f"try a smaller learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if filter_radius is not None:
                renormalize_filters(model, filter_radius)
    return model.eval()
