"""The ``zf`` command.

    zf data  --scale default            generate (or check) the scenes of a scale
    zf train --scale default [--resume] train with the paper's recipe (torchrun-ready)
    zf book  --scale default            run every chapter with papermill, build the HTML
    zf mine    --arch zf|alexnet|vgg16 --weights FILE --images FOLDER --out DIR
                                        top-k of every map over your images (Fig. 2 sheets)
    zf project --arch ... --weights FILE --image FILE --layer L --out DIR
                                        project one image's strongest maps to pixels (Section 2.1)
    zf occlude IMAGE [IMAGE...] --arch ... --weights FILE --out DIR   (or --scale S: our run)
                                        occlusion sensitivity maps of each image (Fig. 7)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional

from .presets import PRESETS
from .artifacts import atomic_write, write_json


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


def _check_out_dir(path, flag: str = "--out"):
    """Check, before any work, that ``path`` can be the folder a command writes in.

    The folder need not exist (it is created when the results are written), but it must not
    be a file, nor lie under one, and it (or the nearest folder above it that exists) must be
    writable. Raises ValueError naming ``flag``, the path and what is wrong.
    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    from pathlib import Path
    p = Path(path).expanduser()
    q = p
    while not q.exists():
        if q.is_symlink():
            raise ValueError(f"{flag} {path}: {q} is a broken symbolic link; give a folder")
        if q == q.parent:
            break
        q = q.parent
    if not q.is_dir():
        what = f"{flag} {path} is a file" if q == p else f"{flag} {path} cannot be made: {q} is a file"
        raise ValueError(f"{what}, not a folder; give a folder to write the results in (it is "
                         f"created if missing)")
    if not os.access(q, os.W_OK | os.X_OK):
        where = "" if q == p else f" (it would be created in {q})"
        raise ValueError(f"{flag} {path} is not writable{where}: permission denied; give a folder "
                         f"you can write in")
    return p


def cmd_train(args) -> int:
    from .presets import get_preset
    from .train import train
    # arguments first: nothing is loaded, trained or written when one is wrong
    for flag, v, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                         ("--workers", args.workers, 0), ("--fc-units", args.fc_units, 1),
                         ("--seed", args.seed, 0)):
        if v is not None and v < low:
            raise ValueError(f"{flag} must be at least {low}, got {v}")
    if args.out is not None:
        _check_out_dir(args.out)
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
    if args.variant:
        # a model of the architecture chapters (Fig. 6, Table 3), keyed as they key it
        from .ablations import budget_run, variant
        v = variant(args.variant)
        clash = [f for f in ("remove", "fc_units", "conv345") if getattr(args, f)]
        clash += ["--family"] if args.family != "zf" and args.family != v.family else []
        clash += ["--no-renorm"] if args.no_renorm else []
        clash += ["--name"] if args.name != "zfnet" else []
        clash += ["--out"] if args.out else []
        if clash:
            raise ValueError(f"--variant {args.variant} sets the model itself; drop {', '.join(clash)}")
        run = budget_run(p, v, epochs=args.epochs, seed=args.seed, progress=not args.quiet,
                         data_root=args.data, exclude=args.exclude, resume=args.resume,
                         device=args.device)
    else:
        run = train(p, name=args.name, family=args.family, renorm=not args.no_renorm, resume=args.resume,
                    seed=args.seed, data_root=args.data, exclude=args.exclude, out=args.out,
                    progress=not args.quiet, device=args.device, **_variant(args))
    summary = run.summary
    if summary.get("final"):
        print(json.dumps({"run": str(run.path), **summary["final"],
                          "train_seconds": round(summary["train_seconds"], 1)}))
    return 0


def cmd_book(args) -> int:
    from .book import run_book
    from .data.splits import data_roots
    from .presets import get_preset, parse_overrides
    # settings first: a bad --set or ZF_PRESET_OVERRIDES fails before any chapter runs
    overrides = parse_overrides(args.set or [])
    get_preset(args.scale).replace(**overrides)
    if args.build_dir is not None:
        _check_out_dir(args.build_dir, "--build-dir")
    roots = data_roots(imagenet=args.imagenet, exclude=args.exclude, caltech=args.caltech, voc=args.voc)
    for name in ("imagenet", "caltech", "voc", "exclude"):
        path = getattr(roots, name)
        if getattr(args, name) is not None and not path.exists():
            raise FileNotFoundError(f"--{name} {getattr(args, name)}: {path} does not exist")
    html = run_book(args.scale, only=args.only or None, html=not args.no_html, build_dir=args.build_dir,
                    environment=roots.to_env(), overrides=overrides)
    print(f"book: {html}")
    return 0


def _device(name):
    import torch
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _layer_file(layer: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in layer)


def _shown(path) -> str:
    """A path for stdout and figure titles: bytes of a file name that are not UTF-8 (held by
    Python as surrogates, which a strict stream or a font cannot encode) shown as \\xNN."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def cmd_mine(args) -> int:
    from pathlib import Path
    from .mining import default_layers, mine
    from .progress import progress_enabled
    from .usermodel import check_layers, load_folder, load_user_model, topk_entries, topk_figures
    progress = progress_enabled(not args.quiet)
    _check_out_dir(args.out)
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    if args.maps is not None and args.maps < 1:
        raise ValueError(f"--maps must be at least 1, got {args.maps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    um = load_user_model(args.arch, args.weights, device=_device(args.device))
    layers = ([s.strip() for s in args.layers.split(",") if s.strip()] if args.layers
              else default_layers(um.model))
    if not layers:
        raise ValueError("no layers to mine: name them with --layers")
    check_layers(um, layers)
    import warnings
    from .data.folders import BadImageWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)       # reported below, once
        images, names, skipped = load_folder(args.images, um.stored_size, progress=progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if skipped:
        for name, reason in skipped:
            print(f"zf mine: skipped {name}: {reason}", file=sys.stderr)
        write_json(out / "skipped.json", [{"file": n, "reason": r} for n, r in skipped])
    elif (out / "skipped.json").exists():
        (out / "skipped.json").unlink()            # a stale report from an earlier run
    k = min(args.k, len(names))        # fewer images than k: no empty entries in the sheets
    result = mine(um.model, um.source(images), um.zero_mean(), um.image_size, layers=layers,
                  k=k, batch_size=args.batch_size, progress=progress)
    n_maps = args.maps if args.maps is not None else (None if not um.torchvision else 16)
    report = {"arch": um.name, "weights": str(args.weights), "images": str(args.images),
              "num_images": len(names), "files": list(names),      # entries' "index" counts in it
              "image_size": um.image_size, "stored_size": um.stored_size,
              "k": k, "method": args.method,
              "box": "[y0, y1, x0, x1], half-open, in pixels of the centre crop the model sees",
              "layers": {}}
    from .plots import feature_sheet
    for layer, topk in result.items():
        maps = list(range(topk.num_maps if n_maps is None else min(n_maps, topk.num_maps)))
        pr, pa = topk_figures(um, images, topk, maps, method=args.method, progress=progress,
                              batch_size=args.batch_size)
        png = out / f"{_layer_file(layer)}.png"
        feature_sheet(pr, pa, maps).save(png)
        report["layers"][layer] = {"png": png.name, "num_maps": topk.num_maps, "drawn": maps,
                                   "maps": topk_entries(um, topk, names)}
        print(f"{layer}: {topk.num_maps} maps, {len(maps)} drawn -> {_shown(png)}")
    write_json(out / "topk.json", report)
    print(f"{len(names)} images mined ({len(skipped)} skipped); top-{k} in {_shown(out / 'topk.json')}")
    return 0


def cmd_project(args) -> int:
    from pathlib import Path
    from .data.folders import BadImage, file_problem, load_image
    from .usermodel import load_user_model, project_image, projection_sheet
    _check_out_dir(args.out)
    image = Path(args.image)
    problem = file_problem(image)       # missing, a folder, a symlink loop, a broken link ...
    if problem == "does not exist":
        raise FileNotFoundError(f"image file {image} does not exist")
    if problem is not None:
        raise ValueError(f"image file {image}: {problem}")
    um = load_user_model(args.arch, args.weights, device=_device(args.device))
    try:
        img = load_image(image, um.stored_size)
    except BadImage as e:               # empty, truncated, not an image, too large ...
        raise ValueError(f"image file {image}: {e.reason}") from None
    r = project_image(um, img, args.layer, feature=args.feature, top=args.top, method=args.method)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{image.stem}_{_layer_file(args.layer)}"
    labels = [f"{'map' if r['positions'] is not None else 'unit'} {m}: {v:.3g}"
              for m, v in zip(r["maps"], r["values"])]
    projection_sheet(r["display"], r["projections"], labels).save(out / f"{stem}.png")
    write_json(out / f"{stem}.json", {
        "image": str(image), "arch": um.name, "weights": str(args.weights), "layer": args.layer,
        "method": args.method, "image_size": um.image_size,
        "chosen": "feature" if args.feature is not None else f"top {args.top}",
        "maps": r["maps"], "values": r["values"], "positions": r["positions"], "boxes": r["boxes"],
        "box": "[y0, y1, x0, x1], half-open, in pixels of the centre crop the model sees"})
    print(f"{args.layer}: maps {r['maps']} -> {_shown(out / (stem + '.png'))}")
    return 0


def _p(p: float) -> str:
    """A probability for the summary line: 3 decimals, or 3 digits when below 0.001."""
    return f"{p:.3f}" if p >= 1e-3 or p == 0 else f"{p:.2e}"


def _class_names(um) -> Optional[List[str]]:
    """The model's class names: a checkpoint's own; torchvision's ImageNet names for its
    1000-way chains (their state dicts have torchvision's exact shapes); else None."""
    if um.classes:
        return list(um.classes)
    if um.torchvision:
        try:
            import torchvision.models as tvm
            names = list(tvm.get_model_weights(um.name).DEFAULT.meta["categories"])
        except Exception:
            return None
        return names
    return None


def _parse_target(text: Optional[str], names: Optional[List[str]]) -> Optional[int]:
    """``--target``: a class index, or a class name (exact, any case)."""
    if text is None:
        return None
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    if names:
        low = [n.lower() for n in names]
        if t.lower() in low:
            return low.index(t.lower())
        close = [n for n in names if t.lower() in n.lower()][:8]
        hint = f"; names containing it: {', '.join(close)}" if close else ""
        raise ValueError(f"--target {text!r} is not a class index nor one of the model's "
                         f"{len(names)} class names{hint}")
    raise ValueError(f"--target {text!r} is not a class index (the model's class names are not known)")


def _occlude_model(args):
    """(UserModel, weights path) for ``zf occlude``: ``--arch``/``--weights`` as for ``zf project``,
    or, with ``--arch zf`` and no ``--weights``, the trained run of ``--scale``."""
    from pathlib import Path
    from .usermodel import load_user_model
    weights = args.weights
    if weights is not None and args.scale is not None:
        raise ValueError("give --weights (a checkpoint or state dict) or --scale (our run), not both")
    if weights is None:
        if str(args.arch).strip().lower() not in ("zf", "ours"):
            raise ValueError(f"--arch {args.arch} needs --weights FILE (a state dict saved with "
                             f"torch.save(model.state_dict(), FILE))")
        if args.scale is None:
            raise ValueError("which model? give --weights RUN/final.pt (a zfcore checkpoint) or --scale S "
                             "(our trained run of that scale), or --arch alexnet|vgg16 --weights FILE")
        from .runs import run_dir
        weights = Path(run_dir(args.scale)) / "final.pt"
        if not weights.is_file():
            raise FileNotFoundError(f"no trained {args.scale} run at {weights.parent}: train it with "
                                    f"`zf train --scale {args.scale}`, or give --weights")
    return load_user_model(args.arch, weights, device=_device(args.device)), str(weights)


def _check_occlude_args(args) -> list:
    """``zf occlude``'s arguments, checked before anything is loaded or written: the image paths."""
    from pathlib import Path
    import numpy as np
    _check_out_dir(args.out)
    for flag, v in (("--size", args.size), ("--stride", args.stride), ("--batch-size", args.batch_size)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} must be at least 1, got {v}")
    if not np.isfinite(args.fill):
        raise ValueError(f"--fill must be a finite number (the occluder's value in the model's input), "
                         f"got {args.fill}")
    images = [Path(p) for p in args.images]
    stems = {}
    for image in images:
        if image.stem in stems:
            raise ValueError(f"{stems[image.stem]} and {image} would both write {image.stem}_occlusion.*: "
                             f"give them different names, or occlude them into different --out folders")
        stems[image.stem] = image
    return images


def _nothing_readable(images, skipped) -> ValueError:
    if len(images) == 1:
        why = skipped[0][1]
        return ValueError(f"image file {images[0]} does not exist" if why == "does not exist"
                          else f"image file {images[0]}: {why}")
    for image, why in skipped:
        print(f"zf occlude: skipped {image}: {why}", file=sys.stderr)
    return ValueError(f"none of the {len(images)} images can be read (each is listed above); "
                      f"nothing was written")


def _read_images(images, skipped, stored_size: int):
    """(readable paths, their stored images); the unreadable ones are added to ``skipped``."""
    from .data.folders import BadImage, load_image
    bad = {image for image, _ in skipped}
    good, stored = [], []
    for image in images:
        if image in bad:
            continue
        try:
            stored.append(load_image(image, stored_size))
            good.append(image)
        except BadImage as e:
            skipped.append((image, e.reason))
    skipped.sort(key=lambda t: images.index(t[0]))
    return good, stored


def _report_skipped(out, skipped) -> None:
    if skipped:
        for image, why in skipped:
            print(f"zf occlude: skipped {image}: {why}", file=sys.stderr)
        write_json(out / "skipped.json", [{"file": str(i), "reason": r} for i, r in skipped])
    elif (out / "skipped.json").exists():
        (out / "skipped.json").unlink()            # a stale report from an earlier run


def _save_occlusion(out, image, img, r, um, names, size, stride, fill, weights):
    """Write ``<stem>_occlusion.png`` (Fig. 7's panels) and ``.npz`` (the maps) for one image."""
    import warnings
    import matplotlib.pyplot as plt
    import numpy as np
    from .plots import class_name, occlusion_figure
    s = um.image_size
    tname = class_name(r.target, names)
    fig = occlusion_figure(um.display_crop(img[None])[0], r, names, size=size,
                           title=f"{_shown(image.name)}: occlusion sensitivity ({um.name}), target {tname}")
    png, npz = out / f"{image.stem}_occlusion.png", out / f"{image.stem}_occlusion.npz"
    try:
        with warnings.catch_warnings():     # a name in a script the font lacks: boxes in the title
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
            atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
    prob = r.prob.numpy()
    proj = r.projection.numpy() if r.projection is not None else np.zeros((3, s, s), np.float32)
    data = {
        "ys": np.asarray(r.ys, np.int64), "xs": np.asarray(r.xs, np.int64),
        "size": np.int64(size), "stride": np.int64(stride), "fill": np.float64(fill),
        "target": np.int64(r.target), "layer": np.str_(r.layer), "feature": np.int64(r.feature),
        "prob": prob.astype(np.float32), "top_class": r.top_class.numpy().astype(np.int64),
        "activity": r.activity.numpy().astype(np.float32), "projection": proj.astype(np.float32),
        "position": np.asarray(r.position if r.position is not None else (-1, -1), np.int64),
        "unoccluded_prob": np.float64(r.unoccluded_prob),
        "unoccluded_activity": np.float64(r.unoccluded_activity),
        "image_size": np.int64(s), "arch": np.str_(um.name), "weights": np.str_(weights),
        "image": np.str_(str(image))}
    if names:
        data["class_names"] = np.asarray(names, dtype=np.str_)
    atomic_write(npz, lambda f: np.savez(f, **data))
    i, j = np.unravel_index(int(prob.argmin()), prob.shape)
    print(f"{_shown(image.name)}: target {tname} (class {r.target}): p = {_p(r.unoccluded_prob)} unoccluded, "
          f"lowest {_p(float(prob[i, j]))} with the {size}x{size} occluder at (y, x) = "
          f"({r.ys[i]}, {r.xs[j]}) -> {_shown(png)}")


def cmd_occlude(args) -> int:
    """``zf occlude``: Fig. 7 (Section 4.2) for each image; see :func:`build_parser`."""
    from pathlib import Path
    from .data.folders import file_problem
    from .occlusion import default_occluder, sensitivity
    images = _check_occlude_args(args)       # nothing is loaded or written when one is wrong
    # an image that cannot be read is skipped (listed on stderr and in skipped.json);
    # status 2 only when none can be
    skipped = [(image, why) for image, why in ((i, file_problem(i)) for i in images) if why is not None]
    if len(skipped) == len(images):
        raise _nothing_readable(images, skipped)
    um, weights = _occlude_model(args)
    s = um.image_size
    d_size, d_stride = default_occluder(s)
    size = d_size if args.size is None else args.size
    stride = d_stride if args.stride is None else args.stride
    if size > s:
        raise ValueError(f"the occluder (--size {size}) is larger than the {s}x{s} crop the model "
                         f"({um.name}) sees: give --size {s} or less")
    names = _class_names(um)
    target = _parse_target(args.target, names)
    good, stored = _read_images(images, skipped, um.stored_size)
    if not good:
        raise _nothing_readable(images, skipped)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _report_skipped(out, skipped)
    for image, img in zip(good, stored):
        x = um.preprocess(img[None]).to(um.device)
        r = sensitivity(um.model, x, size, stride, fill=args.fill, target=target, layer=args.layer,
                        feature=args.feature, batch_size=args.batch_size)
        _save_occlusion(out, image, img, r, um, names, size, stride, args.fill, weights)
    if skipped:
        print(f"{len(good)} images occluded, {len(skipped)} skipped (listed in {_shown(out / 'skipped.json')})")
    return 0


_SCALES = list(PRESETS)
_ARCH_HELP = ("zf (a zfcore checkpoint), or a torchvision plain chain: alexnet, vgg11, vgg13, "
              "vgg16, vgg19 (a state dict saved with torch.save(model.state_dict(), FILE))")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zf", description="Zeiler & Fergus (2014), reproduced: "
                                 "train, analyse and build the book.")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_data(sub)
    _add_train(sub)
    _add_book(sub)
    _add_mine(sub)
    _add_project(sub)
    _add_occlude(sub)
    return ap


def _add_data(sub) -> None:
    d = sub.add_parser("data", help="generate the scenes of a scale (cached)")
    d.add_argument("--scale", default="default", choices=_SCALES)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_data)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train with the paper's recipe (Section 3); runs under torchrun too")
    t.add_argument("--scale", default="default", choices=_SCALES)
    t.add_argument("--data", default=None, help="ImageNet-layout folder (ROOT/train/<class>/*, ROOT/val/<class>/*); "
                   "the tiny and default scales use the generated scenes when omitted")
    t.add_argument("--exclude", default=None, metavar="FILE",
                   help="training images to leave out, one path a line relative to --data (e.g. "
                        "train/n01440764/x.JPEG): the exclude.txt of python -m data_prep.overlap")
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
    t.add_argument("--variant", default=None, metavar="KEY",
                   help="a model of the architecture chapters, trained as they train it (their budget "
                        "of epochs, their run folder), e.g. zf:base, zf:norenorm, krizhevsky:rm6,7, "
                        "zf:fc8192+conv345 (zfcore.ablations.TABLE3_VARIANTS, FIG6_VARIANTS)")
    t.add_argument("--remove", default=None, help="Table 3 variants: comma-separated of conv3,conv4,fc6,fc7")
    t.add_argument("--fc-units", type=int, default=None, help="units in fc6 and fc7")
    t.add_argument("--conv345", default=None, help="maps of conv3,conv4,conv5 at full width, e.g. 512,1024,512")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)


def _add_book(sub) -> None:
    b = sub.add_parser("book", help="execute every chapter with papermill and build the HTML book")
    b.add_argument("--scale", default="default", choices=_SCALES)
    b.add_argument("--only", action="append", help="run only this chapter (repeatable)")
    b.add_argument("--no-html", action="store_true", help="execute the chapters, skip the HTML build")
    b.add_argument("--build-dir", default=None, metavar="DIR",
                   help="the staging folder (default _build/stage-<scale>), e.g. to keep two builds")
    b.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="change a field of the scale's preset for this build, e.g. --set epochs=30 "
                        "(repeatable; see zfcore.presets.Preset)")
    b.add_argument("--imagenet", default=None, metavar="DIR",
                   help="imagenet scale: the prepared ImageNet (python -m data_prep.imagenet); "
                        "default $ZF_IMAGENET")
    b.add_argument("--exclude", default=None, metavar="FILE",
                   help="imagenet scale: training images to leave out (data_prep.overlap's exclude.txt); "
                        "default $ZF_EXCLUDE")
    b.add_argument("--caltech", default=None, metavar="DIR",
                   help="imagenet scale: a prepared Caltech-101 or -256 (python -m data_prep.caltech); "
                        "default $ZF_CALTECH")
    b.add_argument("--voc", default=None, metavar="DIR",
                   help="imagenet scale: the prepared PASCAL VOC 2012 (python -m data_prep.pascal); "
                        "default $ZF_VOC")
    b.set_defaults(func=cmd_book)



def _add_mine(sub) -> None:
    m = sub.add_parser(
        "mine", help="top-k activations of every map over a folder of your images (Fig. 2)",
        epilog="The image files directly in --images are read (subfolders are not; links to files are "
               "followed). Files that cannot be read (empty, truncated, not an image, a symlink loop, a "
               "broken link ...) are skipped: each is named on stderr with its reason and listed in "
               "OUT/skipped.json. Exit status: 0 when at least one image was mined; 2 when none could "
               "be read, or on a wrong argument or model file (nothing is written then).")
    m.add_argument("--arch", required=True, help=_ARCH_HELP)
    m.add_argument("--weights", required=True, help="the checkpoint (zf) or state dict file")
    m.add_argument("--images", required=True, help="a folder of images (files directly in it)")
    m.add_argument("--out", required=True, help="where to write <layer>.png, topk.json, skipped.json")
    m.add_argument("--layers", default=None,
                   help="comma-separated, e.g. conv1,conv5 or features.0,features.10 (default: every conv)")
    m.add_argument("--k", type=int, default=9, help="entries per map (default 9)")
    m.add_argument("--maps", type=int, default=None,
                   help="draw the first N maps of each layer (default: all for zf, 16 for torchvision)")
    m.add_argument("--method", default="deconvnet", choices=["deconvnet", "gradient", "guided"])
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cuda if available)")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=cmd_mine)


def _add_project(sub) -> None:
    pj = sub.add_parser(
        "project", help="project one image's strongest activations in a layer to pixels",
        epilog="Exit status: 0 when the projections were written; 2 when the image cannot be read "
               "(missing, empty, truncated, not an image, a symlink loop ...), or on a wrong argument or "
               "model file, with a message naming it (nothing is written then).")
    pj.add_argument("--arch", required=True, help=_ARCH_HELP)
    pj.add_argument("--weights", required=True, help="the checkpoint (zf) or state dict file")
    pj.add_argument("--image", required=True)
    pj.add_argument("--layer", required=True, help="e.g. conv5 or features.10")
    which = pj.add_mutually_exclusive_group()
    which.add_argument("--feature", type=int, default=None, help="project this map")
    which.add_argument("--top", type=int, default=9,
                       help="project the N maps strongest in this image (default 9)")
    pj.add_argument("--method", default="deconvnet", choices=["deconvnet", "gradient", "guided"])
    pj.add_argument("--out", required=True, help="where to write <image>_<layer>.png and .json")
    pj.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cuda if available)")
    pj.set_defaults(func=cmd_project)


def _add_occlude(sub) -> None:
    oc = sub.add_parser(
        "occlude", help="occlusion sensitivity of your images (Fig. 7, Section 4.2)",
        description="Slide a grey square over each image and map, per occluder position: the total "
                    "activity of one feature map (Fig. 7 b), the probability of the target class (d) and "
                    "the most probable class (e); with the deconv projection of that map (c). Writes "
                    "<image>_occlusion.png (the figure) and <image>_occlusion.npz (the numbers) per image.",
        epilog="Images that cannot be read (missing, empty, truncated, not an image, a symlink loop ...) "
               "are skipped: each is named on stderr with its reason and listed in OUT/skipped.json, and "
               "the others are processed. Exit status: 0 when at least one image was processed (some "
               "may have been skipped); 2 when none could be read, or on a wrong argument or model "
               "file (nothing is written then).")
    oc.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    oc.add_argument("--arch", default="zf", help=_ARCH_HELP + " (default zf)")
    oc.add_argument("--weights", default=None, help="the checkpoint (zf) or state dict file")
    oc.add_argument("--scale", default=None, choices=_SCALES,
                    help="with --arch zf and no --weights: our trained run of this scale")
    oc.add_argument("--out", required=True, help="where to write <image>_occlusion.png and .npz")
    oc.add_argument("--size", type=int, default=None,
                    help="occluder side in pixels of the crop the model sees (default: a quarter of it, "
                         "rounded: 56 at 224 px, 12 at 48 px)")
    oc.add_argument("--stride", type=int, default=None,
                    help="step between occluder positions (default: the crop / 28, rounded, at least 1: "
                         "8 at 224 px, 2 at 48 px); the last position always reaches the border")
    oc.add_argument("--fill", type=float, default=0.0,
                    help="value of the occluded pixels in the model's input (default 0: the mean, grey)")
    oc.add_argument("--target", default=None,
                    help="class whose probability is mapped: an index or a class name (default: the "
                         "class predicted for the unoccluded image)")
    oc.add_argument("--layer", default=None,
                    help="layer whose feature map's activity is mapped (default: the last conv, conv5 "
                         "or features.10)")
    oc.add_argument("--feature", type=int, default=None,
                    help="its feature map (default: the strongest in the unoccluded image)")
    oc.add_argument("--batch-size", type=int, default=64, help="occluded images per forward pass")
    oc.add_argument("--device", default=None, help="e.g. cpu, cuda (default: cuda if available)")
    oc.set_defaults(func=cmd_occlude)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``zf``; exit status 0, or 2 with a one-message error (no traceback) for bad input:
    a bad value, path or file (ValueError, FileNotFoundError), a chapter of ``zf book`` that
    fails (its :class:`~zfcore.book.ChapterFailed` names the chapter and the cell) or an HTML
    build that fails. Other exceptions are bugs and keep their traceback."""
    import warnings
    args = build_parser().parse_args(argv)
    from .book import BuildFailed, ChapterFailed
    plain = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        # zfcore's warnings (a skipped checkpoint, a removed temporary file) as one line each
        if issubclass(category, UserWarning) and str(filename).startswith(_PACKAGE_DIR):
            return f"zf {args.command}: warning: {message}\n"
        return plain(message, category, filename, lineno, line)
    warnings.formatwarning = one_line
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ChapterFailed, BuildFailed) as e:
        print(f"zf {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = plain


if __name__ == "__main__":
    sys.exit(main())
