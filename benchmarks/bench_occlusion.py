"""Occlusion throughput (Fig. 7): ``zfcore.occlusion.sensitivity`` against captum's ``Occlusion``.

The case of the issue: the full-size ZF network (``zfnet()``, He-scaled random
weights as in tests/test_deconv.py, so that activations are O(1)) at 224 px, a
56-pixel grey occluder (0.0, the mean) at stride 8: 22 x 22 = 484 positions.

* captum: ``Occlusion`` on ``softmax(model(x))`` for the unoccluded prediction,
  ``sliding_window_shapes=(3, 56, 56)``, ``strides=(3, 8, 8)``, baseline 0, with
  each ``perturbations_per_eval`` of ``--captum-ppe``; the fastest is the baseline.
  It computes the probability map (d) only.
* ours, ``engine="full"``: each occluded image through the whole network,
  batched (plain batched forward passes).
* ours, ``engine="incremental"`` (the default): each layer recomputed only where
  the occluder reaches. It computes the maps (b), (d) and (e); (c) is off here.

Every timing is the best of ``--repeats`` runs, the runs of the three alternating
(the 2-core machine's load varies). The maps are checked to be the same: from our
probability map, captum's attribution is rebuilt (``zfcore.occlusion.pixel_drop``: each
pixel gets the mean, over the occluder positions covering it, of the drop in
probability) and compared.

Prints one JSON line; ``ratio`` is captum's best time over ours (target: at least 3x).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from zfcore.models import zfnet
from zfcore.occlusion import pixel_drop, sensitivity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from captum_reference import Softmax, reinit  # noqa: E402  (shared with the tests)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--captum-ppe", default="32,128", help="perturbations_per_eval values to try")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    from captum.attr import Occlusion

    torch.manual_seed(0)
    side = args.image_size
    model = reinit(zfnet(1000, input_size=side)).eval()
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    size, stride = args.size, args.stride
    ppes = [int(v) for v in args.captum_ppe.split(",")]

    def ours(engine):
        return sensitivity(model, x, size, stride, projection=False, engine=engine,
                           batch_size=args.batch_size)

    def captum(ppe, target):
        with torch.no_grad():
            return Occlusion(Softmax(model)).attribute(
                x, sliding_window_shapes=(3, size, size), strides=(3, stride, stride),
                baselines=0.0, target=target, perturbations_per_eval=ppe)

    sensitivity(model, x, size, max(size, 64), projection=False)        # warm-up
    times = {"incremental": [], "full": [], **{f"captum_ppe{p}": [] for p in ppes}}
    results = {}
    for _ in range(args.repeats):
        for engine in ("incremental", "full"):
            t0 = time.perf_counter()
            results[engine] = ours(engine)
            times[engine].append(time.perf_counter() - t0)
        target = results["incremental"].target
        for p in ppes:
            t0 = time.perf_counter()
            results[f"captum_ppe{p}"] = captum(p, target)
            times[f"captum_ppe{p}"].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    fastest = min((k for k in best if k.startswith("captum")), key=best.get)
    inc, full = results["incremental"], results["full"]
    rebuilt = pixel_drop(inc, size, x.shape[2:]).expand(1, 3, side, side)
    cap = results[fastest]
    result = {
        "benchmark": "occlusion",
        "case": f"zfnet() {side} px, He-scaled random weights, occluder {size} px stride {stride}, "
                f"{len(inc.ys) * len(inc.xs)} positions",
        "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "seconds_best": {k: round(v, 2) for k, v in best.items()},
        "seconds_all": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "captum_fastest": fastest,
        "ratio": round(best[fastest] / best["incremental"], 2),
        "ratio_full_vs_incremental": round(best["full"] / best["incremental"], 2),
        "ratio_captum_vs_full": round(best[fastest] / best["full"], 2),
        "max_abs_diff_prob_incremental_vs_full": float(f"{float((inc.prob - full.prob).abs().max()):.3g}"),
        "max_abs_diff_attribution_vs_captum": float(f"{float((rebuilt - cap).abs().max()):.3g}"),
        "max_rel_diff_activity_incremental_vs_full": float(
            f"{float((inc.activity - full.activity).abs().max() / full.activity.abs().max()):.3g}"),
        "unoccluded_prob": round(inc.unoccluded_prob, 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
