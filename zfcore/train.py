"""Training with the paper's recipe (Section 3).

SGD with momentum 0.9 on mini-batches (128 at full scale), learning rate 1e-2,
dropout 0.5 in fc6 and fc7, weights drawn with standard deviation 1e-2 and biases
0, random crops and flips of the mean-subtracted images. Two settings the paper
leaves open, and our choices:

* "annealed by hand when the validation error plateaus": the learning rate is
  divided by 10 (``lr_factor``) whenever the centre-crop validation top-1 error
  has not improved by at least 0.1 percentage point for ``lr_patience``
  consecutive epochs; or, where the preset fixes a schedule by hand
  (``lr_drops``), after each of the epochs it names;
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
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import dist as zdist, models as zfmodels
from .artifacts import artifacts_dir, config_key, remove_stale_temporaries, write_json
from .data.folders import FolderSource
from .data.scenes import load_scenes, SceneSource
from .data.transforms import center_crop, preprocess, random_crop_flip, ten_crop
from .presets import get_preset, Preset
from .progress import progress_bar
from .runs import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, data_of, folder_state, lock_run, maybe_test_kill,
                   model_kwargs, newest_state, refuse_other, Run, run_dir, run_settings, save_checkpoint,
                   shape_problems)

__all__ = ["train", "train_or_load", "sgd_step", "evaluate", "renormalize_filters", "make_sources", "train_on_arrays",
           "recipe_rows", "PAPER_RECIPE", "VAL_PROBS"]

# in a run folder: the final model's 10-crop validation softmax, {"probs": (N, C), "n": N}
VAL_PROBS = "probs-val-10crop.pt"


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


def _topk_hits(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among their ``k`` largest logits (a tensor on their device)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, 1).indices == y[:, None]).any(1).sum()


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    return int(_topk_hits(logits, y, k))


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
            logits = model(center_crop(x, image_size))
            logp = F.log_softmax(logits, 1)
            probs = F.softmax(logits, 1) if probs_out is not None else None
        if probs_out is not None:
            probs_out.append(probs.cpu())                         # the softmax itself, not exp(log p)
        sums += torch.tensor([float(F.nll_loss(logp, y, reduction="sum")), _topk_correct(logp, y, 1),
                              _topk_correct(logp, y, 5), len(y)], dtype=torch.float64)
    model.train(was)
    sums = zdist.all_reduce(sums)
    n = max(1.0, float(sums[3]))
    return {"loss": float(sums[0]) / n, "top1_err": 100 * (1 - float(sums[1]) / n),
            "top5_err": 100 * (1 - float(sums[2]) / n), "n": int(sums[3])}


def make_sources(p: Preset, data_root=None, progress: bool = True, exclude=None):
    """(train source, val source) of the preset's data: scenes, or folders at ``data_root``.

    ``exclude``: training files to leave out (a file with one path a line, relative to
    ``data_root``, such as ``data_prep.overlap``'s ``exclude.txt``, or a list of them).
    """
    if p.data == "scenes" and data_root is None:
        if exclude is not None:
            raise ValueError("exclude applies to folder data (--data ROOT); the generated scenes "
                             "share no images with their target classes")
        tr = SceneSource(load_scenes(p, "train", progress=progress))
        va = SceneSource(load_scenes(p, "val", progress=progress), mean=tr.mean())
        return tr, va
    data_root, excluded = data_of(p, data_root, exclude)
    if data_root is None:
        raise ValueError(f"the {p.name!r} scale trains on your own data: give its folder "
                         f"(zf train --data ROOT, or the environment variable ZF_IMAGENET, laid out as "
                         f"ROOT/train/<class>/<image>, ROOT/val/<class>/<image>)")
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
    rank, world, dev = zdist.init()
    device = torch.device(device) if device is not None else dev
    data_root, exclude = data_of(p, data_root, exclude)
    kw = model_kwargs(p, family, variant)
    out = Path(out) if out is not None else run_dir(p, name, family, renorm, seed, data_root, exclude,
                                                    **variant)
    run = Run(out)
    asked = run_settings(p, family, kw, renorm, seed, data_root, exclude)
    if resume and folder_state(run, asked, resume, report=False):
        return run                # finished: nothing is written, the folder may be read-only
    if p.batch_size % world:
        raise ValueError(f"batch size {p.batch_size} does not split over {world} processes")
    # one process at a time trains in a folder; under torchrun rank 0 holds it for all ranks
    with lock_run(out) if rank == 0 else contextlib.nullcontext():
        zdist.barrier()
        return _train_in(run, p, asked, kw, family=family, renorm=renorm, resume=resume, seed=seed,
                         data_root=data_root, exclude=exclude, progress=progress, rank=rank,
                         world=world, device=device)


def sgd_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
             filter_radius: Optional[float], forward: Optional[nn.Module] = None,
             precision: str = "float32"):
    """One step of the paper's recipe: cross-entropy, SGD, then the filters renormalised.

    ``forward`` is what computes the logits (a DistributedDataParallel wrapper of ``model``;
    default ``model``); ``filter_radius=None`` skips the renormalisation (Fig. 6a);
    ``precision="bfloat16"`` runs the forward pass under ``torch.autocast`` (the loss, the
    weights and the update stay float32; :class:`zfcore.presets.Preset`'s ``precision``).
    Returns ``(logits, loss)`` of the step, the loss not yet read back from the device.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        logits = (forward or model)(x)
    logits = logits.float()
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if filter_radius is not None:
        renormalize_filters(model, filter_radius)
    return logits, loss


def _remove_stale(out: Path) -> None:
    removed = remove_stale_temporaries(out) + remove_stale_temporaries(out / "checkpoints")
    if removed:
        files = "file" if len(removed) == 1 else "files"
        warnings.warn(f"removed {len(removed)} temporary {files} that killed writers left in {out}: "
                      f"{', '.join(str(r.relative_to(out)) for r in removed)}")


def _warn_resume(out: Path, found, path, skipped) -> None:
    """Say which checkpoint a resumed run starts from when it is not ``resume.pt``, and what was skipped."""
    resume_path = out / "resume.pt"
    if not (skipped or (found is not None and path != resume_path)):
        return
    notes = [f"skipped as unreadable: {why}" for _, why in skipped]
    if found is not None and resume_path not in [q for q, _ in skipped]:
        notes.insert(0, f"{resume_path.name} holds an older epoch" if resume_path.exists()
                     else f"there is no {resume_path.name}")
    if found is None:
        warnings.warn(f"no readable checkpoint in {out} ({'; '.join(notes)}): starting from epoch 1")
    else:
        warnings.warn(f"resuming {out} from {path.relative_to(out)} (epoch {found['epoch']}): "
                      f"{'; '.join(notes)}")


def _restore(out: Path, model: nn.Module, opt, found, path):
    """Load a resume state into ``model`` and ``opt``: (plateau, history, first epoch to run).

    A state whose weights or optimizer do not fit the model is refused, naming the file."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problem = shape_problems(expected, found["model"])
    if problem:
        refuse_other(out, path, [f"the model's weights differ ({problem})"])
    model.load_state_dict(found["model"])
    try:
        opt.load_state_dict(found["optimizer"])
    except (ValueError, KeyError, TypeError) as e:
        refuse_other(out, path, [f"the optimizer state does not fit the model ({e})"])
    return dict(found["plateau"]), list(found["metrics"]), int(found["epoch"]) + 1


def _anneal(plateau: dict, err: float, opt, p: Preset, epoch: int) -> None:
    """The plateau rule: divide the learning rate by ``1/lr_factor`` after ``lr_patience`` epochs
    without a 0.1-point gain in validation top-1 error; with ``p.lr_drops``, after each of
    those epochs instead."""
    if p.lr_drops:
        if epoch in p.lr_drops:
            for g in opt.param_groups:
                g["lr"] *= p.lr_factor
        return
    if err < plateau["best"] - 0.1:
        plateau["best"], plateau["bad"] = err, 0
        return
    plateau["bad"] += 1
    if plateau["bad"] >= p.lr_patience:
        for g in opt.param_groups:
            g["lr"] *= p.lr_factor
        plateau["bad"] = 0


@dataclass
class _Job:
    """What one training run holds while it trains (see :func:`_train_in`)."""
    run: Run
    p: Preset
    asked: dict
    seed: int
    renorm: bool
    rank: int
    world: int
    device: torch.device
    progress: bool
    model: nn.Module
    opt: torch.optim.Optimizer
    forward: nn.Module
    mean: torch.Tensor
    classes: list
    family: str
    kw: dict
    plateau: dict = field(default_factory=lambda: {"best": math.inf, "bad": 0})
    history: List[dict] = field(default_factory=list)

    def snapshot(self, epoch: int, complete: bool = False) -> dict:
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                "model": self.model.state_dict(), "model_config": zfmodels.model_config(self.model),
                "optimizer": self.opt.state_dict(), "plateau": dict(self.plateau), "metrics": self.history,
                "preset": self.p.to_dict(), "seed": self.seed, "renorm": self.renorm, "mean": self.mean.cpu(),
                "classes": self.classes, "complete": complete, "settings": self.asked}

    def summary(self, complete: bool) -> dict:
        return _summary(self.p, self.history, self.classes, self.family, self.kw, self.renorm, self.seed,
                        self.world, self.asked, complete=complete)


def _train_epoch(job: _Job, train_src, epoch: int) -> torch.Tensor:
    """One epoch of SGD steps: the summed (loss, top-1 correct, top-5 correct, images) of this rank."""
    p, seed, rank = job.p, job.seed, job.rank
    # all randomness of an epoch comes from (seed, epoch, rank): resumable and repeatable
    torch.manual_seed(seed * 7919 + epoch * 104729 + rank)
    crop_gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 31 + rank)
    job.model.train()
    # summed where the steps run: no read back from an accelerator at every step
    sums = torch.zeros(4, dtype=torch.float64, device=job.device)
    nb = train_src.num_batches(p.batch_size, shuffle=True) if hasattr(train_src, "num_batches") else None
    bar = progress_bar(total=nb, desc=f"{job.run.path.name[:24]} epoch {epoch}/{p.epochs}", leave=False,
                       enabled=job.progress and rank == 0, unit="batch")
    for step, (xb, yb) in enumerate(train_src.batches(p.batch_size, shuffle=True, seed=seed,
                                                      epoch=epoch, rank=rank, world=job.world)):
        maybe_test_kill(epoch, step)
        x = random_crop_flip(xb.to(job.device, non_blocking=True), p.image_size, crop_gen, mean=job.mean)
        y = yb.to(job.device, non_blocking=True)
        logits, loss = sgd_step(job.model, job.opt, x, y, forward=job.forward,
                                filter_radius=p.filter_radius if job.renorm else None, precision=p.precision)
        with torch.no_grad():
            sums += torch.stack([loss.detach().double() * len(y), _topk_hits(logits, y, 1).double(),
                                 _topk_hits(logits, y, 5).double(), sums.new_tensor(len(y))])
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    sums = sums.cpu()
    if not math.isfinite(float(sums[0])):
        raise FloatingPointError(f"training diverged in epoch {epoch} (loss is not finite); "
                                 f"try a smaller learning rate")
    return zdist.all_reduce(sums)


def _end_epoch(job: _Job, epoch: int, lr: float, sums: torch.Tensor, val: dict, seconds: float) -> None:
    """Record an epoch's row; rank 0 writes its checkpoints and metrics and prints the line."""
    n = max(1.0, float(sums[3]))
    row = {"epoch": epoch, "lr": lr, "train_loss": float(sums[0]) / n,
           "train_top1_err": 100 * (1 - float(sums[1]) / n),
           "train_top5_err": 100 * (1 - float(sums[2]) / n),
           "val_loss": val["loss"], "val_top1_err": val["top1_err"], "val_top5_err": val["top5_err"],
           "seconds": seconds, "images": int(sums[3])}
    job.history.append(row)
    if job.rank != 0:
        return
    state = job.snapshot(epoch)
    if epoch in job.p.evolution_epochs or epoch == job.p.epochs:
        save_checkpoint(job.run.checkpoint(epoch), state)
    save_checkpoint(job.run.path / "resume.pt", state)
    write_json(job.run.path / "metrics.json", job.summary(complete=False))
    if job.progress:
        print(f"epoch {epoch:3d}  lr {lr:.0e}  train loss {row['train_loss']:.3f} "
              f"top-1 err {row['train_top1_err']:.1f}%  val top-1 {val['top1_err']:.1f}% "
              f"top-5 {row['val_top5_err']:.1f}%  ({row['seconds']:.1f} s)", flush=True)


def _finish(job: _Job, train_src, val_src) -> None:
    """The final 10-crop evaluation; rank 0 writes ``final.pt``, the validation softmax and the metrics."""
    p, out = job.p, job.run.path
    per_rank = p.batch_size // job.world
    val_probs: Optional[list] = [] if job.world == 1 else None
    final = evaluate(job.model, val_src, job.mean, p.image_size, ten_crops=True, batch_size=per_rank,
                     rank=job.rank, world=job.world, probs_out=val_probs)
    if getattr(train_src, "skipped", 0) and job.rank == 0:
        warnings.warn(f"{train_src.skipped} unreadable training images were skipped")
    if job.rank != 0:
        return
    save_checkpoint(job.run.checkpoint(), job.snapshot(p.epochs, complete=True))
    if val_probs:
        # the final model's 10-crop softmax on the validation images, for ensembles (Table 2)
        save_checkpoint(out / VAL_PROBS, {"probs": torch.cat(val_probs), "n": final["n"]})
    summary = job.summary(complete=True)
    summary["final"] = {"val_10crop_top1_err": final["top1_err"],
                        "val_10crop_top5_err": final["top5_err"], "val_10crop_loss": final["loss"],
                        "val_10crop_n": int(final["n"])}
    write_json(out / "metrics.json", summary)
    if job.progress:
        print(f"done: val 10-crop top-1 error {final['top1_err']:.1f}%, top-5 "
              f"{final['top5_err']:.1f}%; run folder {out}", flush=True)


def _train_in(run: Run, p: Preset, asked: dict, kw: dict, *, family, renorm, resume, seed, data_root,
              exclude, progress, rank, world, device) -> Run:
    """:func:`train`'s work, in the run folder this process holds."""
    out = run.path
    if rank == 0:
        _remove_stale(out)
    if folder_state(run, asked, resume, report=rank == 0):
        return run                # another process finished it while this one waited
    resume_path = out / "resume.pt"
    # the checkpoint to resume from, before the data are read (a foreign one is refused now)
    found, path, skipped = newest_state(run, asked) if resume else (None, None, [])
    train_src, val_src = make_sources(p, data_root, progress=progress and rank == 0, exclude=exclude)
    if device.type == "cuda":
        # the scenes' uint8 images held on the GPU: each batch, its crops and flips made there
        for src in (train_src, val_src):
            if hasattr(src, "to_device"):
                src.to_device(device)
    if rank == 0:
        train_src.mean()          # computed (and cached, for folders) once, by rank 0
    zdist.barrier()
    mean = train_src.mean().to(device)
    kw = dict(kw, num_classes=train_src.num_classes)
    torch.manual_seed(seed)
    build = zfmodels.zfnet if family == "zf" else zfmodels.krizhevsky
    # channels-last layout: the convolutions run about 20% faster on the CPU, and on GPUs
    model = build(**kw).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    forward = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    job = _Job(run, p, asked, seed, renorm, rank, world, device, progress, model, opt, forward, mean,
               list(train_src.classes), family, kw)
    start = 1
    if resume:
        if rank == 0:
            _warn_resume(out, found, path, skipped)
        if found is not None:
            job.plateau, job.history, start = _restore(out, model, opt, found, path)
            if rank == 0 and progress:
                print(f"resuming {out.name} after epoch {start - 1}")
    per_rank = p.batch_size // world
    for epoch in range(start, p.epochs + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        sums = _train_epoch(job, train_src, epoch)
        val = evaluate(model, val_src, mean, p.image_size, batch_size=2 * per_rank, rank=rank, world=world)
        _anneal(job.plateau, val["top1_err"], opt, p, epoch)
        _end_epoch(job, epoch, lr, sums, val, time.perf_counter() - t0)
        zdist.barrier()
    if rank == 0 and start > p.epochs and found is not None and path != resume_path:
        save_checkpoint(resume_path, job.snapshot(p.epochs))     # in place of the unreadable or missing one
    _finish(job, train_src, val_src)
    zdist.barrier()
    run.model = model.eval()
    return run


def _summary(p, history, classes, family, kw, renorm, seed, world, asked, complete) -> dict:
    return {"scale": p.name, "preset": p.to_dict(), "family": family, "model": kw, "renorm": renorm,
            "seed": seed, "world_size": world, "classes": classes, "epochs": history,
            "train_seconds": sum(r["seconds"] for r in history), "complete": complete,
            "settings": asked}


def train_or_load(scale="default", *, progress: bool = True, **kwargs) -> Run:
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
        "learning rate": (f"{p.lr:g}, divided by {1 / p.lr_factor:g} after epochs "
                          f"{', '.join(map(str, p.lr_drops))} (a schedule fixed by hand before the run)"
                          if p.lr_drops else
                          f"{p.lr:g}, divided by {1 / p.lr_factor:g} after {p.lr_patience} epochs "
                          f"without a 0.1-point gain in validation top-1 error"),
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
            _, loss = sgd_step(model, opt, xb, y[idx].to(device), filter_radius=filter_radius)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step} (loss is not finite); "
                                         f"try a smaller learning rate")
    return model.eval()
