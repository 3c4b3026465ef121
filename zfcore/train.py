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
randomness from (seed, epoch) alone.

Under ``torchrun --nproc_per_node=N`` the same code runs DistributedDataParallel
(NCCL on GPUs, gloo on CPUs); each global mini-batch is shared among the ranks.
"""
from __future__ import annotations

import json
import math
import os
import signal
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
from .presets import Preset, artifacts_dir, atomic_write, config_key, get_preset
from .progress import progress_bar

__all__ = ["train", "get_run", "Run", "evaluate", "renormalize_filters", "save_checkpoint",
           "load_checkpoint", "load_model", "CHECKPOINT_FORMAT", "make_sources", "preprocess",
           "train_on_arrays", "sample_predictions"]

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
    atomic_write(path, lambda f: torch.save(state, f), fsync=True)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a zfcore checkpoint with ``weights_only=True``.

    Raises FileNotFoundError for a missing file and ValueError, naming the file,
    for a truncated, corrupt or foreign one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt or foreign: torch.load raises many kinds
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a readable checkpoint (truncated, corrupt, or not saved "
                         f"by torch.save): {first}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a zfcore checkpoint (found {keys}); expected a file "
                         f"written by zfcore.train")
    return state


def load_model(path, map_location="cpu"):
    """(model in eval mode, checkpoint dict) from a zfcore checkpoint."""
    state = load_checkpoint(path, map_location)
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
        f = self.path / "metrics.json"
        return json.loads(f.read_text())["epochs"] if f.exists() else []

    @property
    def summary(self) -> dict:
        """The whole metrics file: config, per-epoch rows, final 10-crop evaluation."""
        f = self.path / "metrics.json"
        return json.loads(f.read_text()) if f.exists() else {}

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


def _maybe_test_kill(epoch: int, step: int) -> None:
    """Test hook: ``ZF_TEST_KILL_AT=epoch:step`` kills this process with SIGKILL there."""
    at = os.environ.get("ZF_TEST_KILL_AT")
    if at and at == f"{epoch}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


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
        resume: continue from the run folder's ``resume.pt`` if there is one (and
            return at once if the run is complete); ``False`` starts afresh.
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
    """
    p = get_preset(scale)
    seed = p.seed if seed is None else int(seed)
    rank, world, dev = _init_distributed()
    device = torch.device(device) if device is not None else dev
    data_root, exclude = _data_of(p, data_root, exclude)
    out = Path(out) if out is not None else run_dir(p, name, family, renorm, seed, data_root, exclude,
                                                    **variant)
    run = Run(out)
    if resume and run.complete and run.checkpoint().exists():
        return run
    if p.batch_size % world:
        raise ValueError(f"batch size {p.batch_size} does not split over {world} processes")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    train_src, val_src = make_sources(p, data_root, progress=progress and rank == 0, exclude=exclude)
    if rank == 0:
        train_src.mean()          # computed (and cached, for folders) once, by rank 0
    _barrier()
    mean = train_src.mean().to(device)
    kw = _model_kwargs(p, family, variant)
    kw["num_classes"] = train_src.num_classes
    torch.manual_seed(seed)
    build = zfmodels.zfnet if family == "zf" else zfmodels.krizhevsky
    # channels-last layout: the convolutions run about 20% faster on the CPU, and on GPUs
    model = build(**kw).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    plateau = {"best": math.inf, "bad": 0}
    history: List[dict] = []
    start = 1
    resume_path = out / "resume.pt"
    if resume and resume_path.exists():
        state = load_checkpoint(resume_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        plateau = dict(state["plateau"])
        history = list(state["metrics"])
        start = int(state["epoch"]) + 1
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
                "classes": classes, "complete": complete}

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
                                                       world, complete=False))
            if progress:
                print(f"epoch {epoch:3d}  lr {lr:.0e}  train loss {row['train_loss']:.3f} "
                      f"top-1 err {row['train_top1_err']:.1f}%  val top-1 {err:.1f}% "
                      f"top-5 {row['val_top5_err']:.1f}%  ({row['seconds']:.1f} s)", flush=True)
        _barrier()
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
        summary = _summary(p, history, classes, family, kw, renorm, seed, world, complete=True)
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


def _summary(p, history, classes, family, kw, renorm, seed, world, complete) -> dict:
    return {"scale": p.name, "preset": p.to_dict(), "family": family, "model": kw, "renorm": renorm,
            "seed": seed, "world_size": world, "classes": classes, "epochs": history,
            "train_seconds": sum(r["seconds"] for r in history), "complete": complete}


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
