"""bfloat16 autocast against float32 training: its speed and its effect on the results.

``Preset.precision = "bfloat16"`` trains under ``torch.autocast`` (the weights, the SGD update and
every evaluation stay float32). This trains the same small model (the ``--scale`` preset, default
``tiny`` with 50 validation images a class) with ``--seeds`` seeds in each precision, in fresh run
folders under ``artifacts/bench/precision``, and compares the final validation top-1 error (10
crops): the difference of the two precisions' means with its standard error, against the spread
from seed to seed. Prints one JSON line; ``bf16_over_f32_time`` is the ratio of the mean training
times (above 1 on a CPU without bfloat16 kernels; the point of the option is a GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil

import numpy as np

from zfcore.artifacts import artifacts_dir
from zfcore.findings import mean_se
from zfcore.presets import get_preset
from zfcore.train import train


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    base = get_preset(args.scale).replace(val_per_class=args.val_per_class)
    root = artifacts_dir() / "bench" / "precision"
    shutil.rmtree(root, ignore_errors=True)             # measured afresh, never read from a cache
    err, secs = {}, {}
    for prec in ("float32", "bfloat16"):
        for seed in range(args.seeds):
            run = train(base.replace(precision=prec), seed=seed, progress=False, resume=False,
                        out=root / f"{prec}-{seed}")
            err.setdefault(prec, []).append(run.summary["final"]["val_10crop_top1_err"])
            secs.setdefault(prec, []).append(run.summary["train_seconds"])
    f, b = np.array(err["float32"]), np.array(err["bfloat16"])
    se = math.hypot(mean_se(f)[1], mean_se(b)[1])          # two independent sets of runs
    result = {"benchmark": "precision", "scale": base.name, "val_images": base.num_classes * base.val_per_class,
              "seeds": args.seeds, "val_top1_err_float32": [round(v, 2) for v in f],
              "val_top1_err_bfloat16": [round(v, 2) for v in b],
              "mean_difference_bf16_minus_f32": round(float(b.mean() - f.mean()), 2),
              "se_of_difference": round(se, 2),
              "seed_spread_float32": round(float(f.max() - f.min()), 2),
              "bf16_over_f32_time": round(float(np.mean(secs["bfloat16"]) / np.mean(secs["float32"])), 2)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
