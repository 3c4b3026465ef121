"""Training throughput: ``zfcore.train`` against a plain, minimal PyTorch loop.

Same model (the preset's ZF network), same data (the scenes' training split), same
batch size and optimiser, in one process, one after the other. The plain loop is
what one writes from the PyTorch tutorials: a Dataset that crops, flips and
subtracts the mean per image, a DataLoader, and SGD steps. ``zfcore.train`` does
more per step (the filter renormalisation, running metrics) and more per epoch
(validation, a checkpoint): its time is measured end to end, all of that included.

Prints images per second of each and their ratio (target: at least 1.0): ``ratio``
counts zfcore's epochs (training plus each epoch's validation and checkpoint);
``end_to_end_ratio`` also counts the start and the final 10-crop evaluation.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from zfcore import models
from zfcore.data.scenes import SceneSource, load_scenes
from zfcore.presets import get_preset
from zfcore.train import train


class PlainScenes(torch.utils.data.Dataset):
    """Per-image random crop, flip and mean subtraction, as a tutorial would write it."""

    def __init__(self, images, labels, mean, size):
        self.images, self.labels, self.mean, self.size = images, labels, mean, size

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float() - self.mean
        s = x.shape[-1]
        top, left = torch.randint(0, s - self.size + 1, (2,)).tolist()
        x = x[:, top:top + self.size, left:left + self.size]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, int(self.labels[i])


def plain_loop(p, ds, mean, epochs: int) -> float:
    torch.manual_seed(0)
    model = models.zfnet(p.num_classes, input_size=p.image_size, width=p.width, fc_units=p.fc_units,
                         init_std=p.init_std, init=p.init)
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    loader = torch.utils.data.DataLoader(PlainScenes(ds.images, ds.labels, mean, p.image_size),
                                         batch_size=p.batch_size, shuffle=True, drop_last=True)
    model.train()
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
    return n / (time.perf_counter() - t0)


def zfcore_loop(p, epochs: int):
    """(images/s over the epochs, images/s end to end) of ``zfcore.train``.

    An epoch's time includes its validation pass and checkpoint writes; end to end
    adds the start (model, data in memory) and the final 10-crop evaluation."""
    with tempfile.TemporaryDirectory() as tmp:
        q = p.replace(epochs=epochs, evolution_epochs=(epochs,))
        t0 = time.perf_counter()
        run = train(q, out=Path(tmp) / "run", progress=False, resume=False)
        seconds = time.perf_counter() - t0
        images = sum(r["images"] for r in run.metrics)
        epoch_seconds = sum(r["seconds"] for r in run.metrics)
    return images / epoch_seconds, images / seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="default")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="alternate runs of each; the best counts")
    args = ap.parse_args(argv)
    p = get_preset(args.scale)
    ds = load_scenes(p, "train", progress=False)
    load_scenes(p, "val", progress=False)
    mean = SceneSource(ds).mean()
    plain_loop(p.replace(train_per_class=2), ds, mean, 1)      # warm-up
    # alternate the two, best of --repeats each: the machine's load varies between runs
    base, ours, ours_total = 0.0, 0.0, 0.0
    for _ in range(args.repeats):
        base = max(base, plain_loop(p, ds, mean, args.epochs))
        o, t = zfcore_loop(p, args.epochs)
        ours, ours_total = max(ours, o), max(ours_total, t)
    result = {"benchmark": "train", "scale": p.name, "epochs": args.epochs, "repeats": args.repeats,
              "batch_size": p.batch_size,
              "threads": torch.get_num_threads(), "plain_images_per_s": round(base, 1),
              "zfcore_images_per_s": round(ours, 1), "ratio": round(ours / base, 3),
              "zfcore_end_to_end_images_per_s": round(ours_total, 1),
              "end_to_end_ratio": round(ours_total / base, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
