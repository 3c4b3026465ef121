"""The ``zf`` command.

    zf data  --scale default            generate (or check) the scenes of a scale
    zf train --scale default [--resume] train with the paper's recipe (torchrun-ready)
    zf book  --scale default            run every chapter with papermill, build the HTML
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from .presets import PRESETS


def _variant(args) -> dict:
    v = {}
    if args.remove:
        v["remove"] = [s.strip() for s in args.remove.split(",") if s.strip()]
    if args.fc_units is not None:
        v["fc_units"] = args.fc_units
    if args.conv345:
        v["conv345"] = [int(s) for s in args.conv345.split(",")]
        if len(v["conv345"]) != 3:
            raise SystemExit("zf train: --conv345 takes three numbers, e.g. 512,1024,512")
    return v


def cmd_data(args) -> int:
    from .data.scenes import SPLITS, load_scenes, scenes_dir
    total, t0 = 0, time.perf_counter()
    for split in SPLITS:
        t = time.perf_counter()
        ds = load_scenes(args.scale, split, progress=not args.quiet)
        total += len(ds)
        print(f"{split:12s} {len(ds):6d} images  {ds.images.shape[1]} px  {time.perf_counter() - t:6.1f} s")
    print(f"{total} images in {time.perf_counter() - t0:.1f} s; cached under {scenes_dir(args.scale)}")
    return 0


def cmd_train(args) -> int:
    from .presets import get_preset
    from .train import train
    p = get_preset(args.scale)
    changes = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.workers is not None:
        changes["workers"] = args.workers
    if changes:
        p = p.replace(**changes)
    run = train(p, name=args.name, family=args.family, renorm=not args.no_renorm, resume=args.resume,
                seed=args.seed, data_root=args.data, out=args.out, progress=not args.quiet,
                device=args.device, **_variant(args))
    summary = run.summary
    if summary.get("final"):
        print(json.dumps({"run": str(run.path), **summary["final"],
                          "train_seconds": round(summary["train_seconds"], 1)}))
    return 0


def cmd_book(args) -> int:
    from .book import run_book
    html = run_book(args.scale, only=args.only or None, html=not args.no_html)
    print(f"book: {html}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zf", description="Zeiler & Fergus (2014), reproduced: "
                                 "train, analyse and build the book.")
    sub = ap.add_subparsers(dest="command", required=True)
    scales = list(PRESETS)

    d = sub.add_parser("data", help="generate the scenes of a scale (cached)")
    d.add_argument("--scale", default="default", choices=scales)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train with the paper's recipe (Section 3); runs under torchrun too")
    t.add_argument("--scale", default="default", choices=scales)
    t.add_argument("--data", default=None, help="ImageNet-layout folder (ROOT/train/<class>/*, ROOT/val/<class>/*); "
                   "the tiny and default scales use the generated scenes when omitted")
    t.add_argument("--name", default="zfnet", help="name of the run (its folder under artifacts/<scale>/runs)")
    t.add_argument("--family", default="zf", choices=["zf", "krizhevsky"])
    t.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue the run from its last finished epoch (default); --no-resume starts afresh")
    t.add_argument("--no-renorm", action="store_true", help="no RMS renormalisation of conv filters (Fig. 6a)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--workers", type=int, default=None, help="data loading processes (folder data)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--out", default=None, help="run folder (default: keyed by the settings)")
    t.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    t.add_argument("--remove", default=None, help="Table 3 variants: comma-separated of conv3,conv4,fc6,fc7")
    t.add_argument("--fc-units", type=int, default=None, help="units in fc6 and fc7")
    t.add_argument("--conv345", default=None, help="maps of conv3,conv4,conv5 at full width, e.g. 512,1024,512")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("book", help="execute every chapter with papermill and build the HTML book")
    b.add_argument("--scale", default="default", choices=scales)
    b.add_argument("--only", action="append", help="run only this chapter (repeatable)")
    b.add_argument("--no-html", action="store_true", help="execute the chapters, skip the HTML build")
    b.set_defaults(func=cmd_book)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"zf {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
