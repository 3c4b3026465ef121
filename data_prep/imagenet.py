"""ImageNet 2012 (ILSVRC2012): the official archives to the folder layout zfcore reads.

    python -m data_prep.imagenet --train-tar ILSVRC2012_img_train.tar \\
        --val-tar ILSVRC2012_img_val.tar --devkit ILSVRC2012_devkit_t12.tar.gz --out ROOT

writes::

    ROOT/train/<wnid>/<name>.JPEG      1,281,167 images in 1,000 classes when complete
    ROOT/val/<wnid>/<name>.JPEG        50,000 images, filed by the devkit's ground truth
    ROOT/pixel_mean_256.pt             the (3, 256, 256) per-pixel training mean (Section 3)
    ROOT/synsets.json                  wnid, ILSVRC2012_ID and words of each class, in label order
    ROOT/imagenet_prep.json            counts, bad files skipped, files converted, warnings

Nothing is extracted twice. ``ILSVRC2012_img_train.tar`` is a tar of 1,000
per-class tars (``n01440764.tar``, ...): each inner tar is streamed straight from
the outer file (``tarfile.open(fileobj=..., mode="r|")`` over the member's byte
range), one class per worker process. The validation tar holds 50,000 flat
JPEGs; the devkit's ``data/ILSVRC2012_validation_ground_truth.txt`` gives each
one's ILSVRC2012_ID (1-based, one line per image in file-number order) and
``data/meta.mat`` maps an ID to its WordNet ID (read with ``scipy.io.loadmat``).
``--train-tar`` may also be a folder of the per-class tars (the outer tar
already unpacked), and ``--val-tar`` a folder of the validation JPEGs.

Each class, and the validation set as a whole, is a unit of work: written into
``ROOT/.data_prep/staging``, renamed into place, then marked done. A rerun
skips marked units and redoes a half-written one; see :mod:`data_prep.common`
for this, for how images are checked, and for the odd files (ImageNet has 22
CMYK JPEGs and one PNG named .JPEG in its training set: re-encoded as RGB JPEG
by default, ``--odd keep`` keeps their bytes).

The per-pixel mean is computed by :func:`zfcore.data.folders.pixel_mean` over
the readable training images at ``--stored-size`` (256, as the paper), saved to
``ROOT/pixel_mean_<S>.pt`` and, at S = 256, also where ``zf train --scale
imagenet --data ROOT`` looks for it (so training does not spend a pass on it).
It is deleted and recomputed whenever a training class is (re)written.
"""
from __future__ import annotations

import argparse
import io
import os
import posixpath
import re
import sys
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

if __package__ in (None, ""):  # run as a file: python data_prep/imagenet.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.common import (Archive, BoundedReader, Markers, PrepError, check_and_write,  # noqa: E402
                              commit_folder, default_workers, fmt_count, ordered_map, progress_bar,
                              remove_tree, run_main, write_bytes_atomic, write_json)

PROG = "python -m data_prep.imagenet"
EXPECTED_TRAIN = 1_281_167
EXPECTED_VAL = 50_000
EXPECTED_CLASSES = 1000
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
SUMMARY = "imagenet_prep.json"
_VAL_NUMBER = re.compile(r"(\d+)\.[^.]+$")


# --------------------------------------------------------------------------- devkit


def read_devkit(path) -> Tuple[Dict[int, Tuple[str, str]], List[int]]:
    """The devkit's class table and validation ground truth.

    Args:
        path: ``ILSVRC2012_devkit_t12.tar.gz`` (or its extracted folder).
    Returns:
        (synsets, ground_truth): ``synsets[id] = (wnid, words)`` for the 1,000
        leaf classes (``num_children == 0``), ``ground_truth[i]`` the
        ILSVRC2012_ID of validation image i + 1.
    Raises:
        PrepError: the devkit, meta.mat or the ground truth is missing or
            malformed, or the ground truth names an ID that is not a leaf class.
    """
    arc = Archive(path, "the ImageNet devkit (ILSVRC2012_devkit_t12.tar.gz)")
    names = arc.names()

    def find(suffix: str) -> str:
        hits = [n for n in names if n == suffix or n.endswith("/" + suffix)]
        if not hits:
            raise PrepError(f"the ImageNet devkit has no {suffix}: {arc.path}")
        return hits[0]

    meta_bytes = arc.read(find(META))
    gt_text = arc.read(find(GROUND_TRUTH)).decode("ascii", "replace")
    arc.close()
    try:
        import scipy.io
        mat = scipy.io.loadmat(io.BytesIO(meta_bytes), squeeze_me=True)
        table = mat["synsets"]
        synsets = {}
        for s in table.reshape(-1):
            if int(s["num_children"]) == 0:
                synsets[int(s["ILSVRC2012_ID"])] = (str(s["WNID"]), str(s["words"]))
    except Exception as e:
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        raise PrepError(f"the devkit's {META} is unreadable or not the ILSVRC2012 one "
                        f"({type(e).__name__}: {e}): {path}") from e
    if not synsets:
        raise PrepError(f"the devkit's {META} lists no leaf classes: {path}")
    try:
        ground_truth = [int(line) for line in gt_text.split()]
    except ValueError as e:
        raise PrepError(f"the devkit's {GROUND_TRUTH} is malformed ({e}): {path}") from e
    unknown = sorted(set(ground_truth) - set(synsets))
    if unknown:
        raise PrepError(f"the devkit's ground truth names IDs that are not leaf classes in {META} "
                        f"(e.g. {unknown[:5]}): {path}")
    return synsets, ground_truth


# --------------------------------------------------------------------------- train


def train_jobs(path) -> Tuple[List[Tuple[str, str, int, int]], List[List[str]]]:
    """The per-class tars of the training archive: (wnid, file, offset, size) each, and ignored entries.

    ``path`` is ``ILSVRC2012_img_train.tar`` (offsets of the inner tars in it: the
    headers are read, the data skipped) or a folder of the per-class tars.
    """
    arc = Archive(path, "the ImageNet training archive (ILSVRC2012_img_train.tar)")
    jobs, ignored = [], []
    if arc.is_dir:
        for name in sorted(os.listdir(arc.path)):
            p = arc.path / name
            if name.endswith(".tar") and p.is_file():
                jobs.append((name[:-4], str(p), 0, p.stat().st_size))
            elif not name.startswith("."):
                ignored.append([name, "not a per-class .tar"])
    else:
        try:
            with tarfile.open(arc.path, "r:") as outer:  # uncompressed: headers only, data skipped
                for m in outer:
                    base = posixpath.basename(m.name)
                    if m.isfile() and base.endswith(".tar") and not base.startswith("."):
                        jobs.append((base[:-4], str(arc.path), m.offset_data, m.size))
                    elif m.isfile():
                        ignored.append([m.name, "not a per-class .tar"])
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PrepError(f"the ImageNet training archive cannot be read as an uncompressed tar "
                            f"({e}): {arc.path}") from e
    return jobs, ignored


def prepare_class(job) -> dict:
    """Worker: stream one per-class tar into ``ROOT/train/<wnid>`` and mark the class done.

    ``job = (wnid, file, offset, size, root, odd)``. Returns the class's record
    (see :func:`_new_record`), or ``{"wnid", "error"}`` if the inner tar is damaged
    (the class is then left unmarked, so a rerun tries it again).
    """
    wnid, source, offset, size, root, odd = job
    markers = Markers(root)
    unit = f"train/{wnid}"
    staging = markers.staging(unit)
    rec = _new_record()
    try:
        with open(source, "rb") as f, \
                tarfile.open(fileobj=BoundedReader(f, offset, size), mode="r|") as inner:
            for m in inner:
                if not m.isfile():
                    continue
                rel = f"{unit}/{posixpath.basename(m.name)}"
                if posixpath.basename(m.name).startswith("."):
                    rec["ignored"].append([rel, "hidden file"])
                    continue
                data = inner.extractfile(m).read()
                _, status, note, fname = check_and_write((m.name, data, str(staging), odd))
                _count(rec, status, note, rel if fname is None else f"{unit}/{fname}")
    except (tarfile.TarError, OSError, EOFError) as e:
        remove_tree(staging)
        return {"wnid": wnid, "error": f"{type(e).__name__}: {e}"}
    commit_folder(staging, Path(root) / "train" / wnid)
    markers.mark(unit, rec)
    return {"wnid": wnid, **rec}


def _new_record() -> dict:
    return {"images": 0, "bad": [], "converted": [], "odd": [], "ignored": []}


def _count(rec: dict, status: str, note: str, rel: str) -> None:
    if status == "bad":
        rec["bad"].append([rel, note])
    else:
        rec["images"] += 1
        if status in ("converted", "odd"):
            rec[status].append([rel, note])


def prepare_train(args, markers: Markers, out: Path) -> dict:
    jobs, ignored = train_jobs(args.train_tar)
    if not jobs:
        raise PrepError(f"the ImageNet training archive holds no per-class .tar files: {args.train_tar}")
    todo = [j for j in jobs if markers.done(f"train/{j[0]}") is None or not (out / "train" / j[0]).is_dir()]
    if todo:  # the mean of the old training set is stale now
        remove_tree(_mean_file(args, out))
        cache = zfcore_mean_cache(out, args.stored_size)
        if cache is not None:
            remove_tree(cache)
    markers.mark("train_archive", {"classes": len(jobs), "ignored": ignored})
    failed = []
    work = [(w, src, off, size, str(out), args.odd) for w, src, off, size in todo]
    for rec in progress_bar(ordered_map(prepare_class, work, args.workers, chunk=1, ahead=1),
                            total=len(work), desc="train classes", unit="class", enabled=not args.quiet):
        if "error" in rec:
            failed.append([rec["wnid"], rec["error"]])
            print(f"{PROG}: class {rec['wnid']} failed ({rec['error']}); rerun to retry", file=sys.stderr)
    return {"classes_in_archive": len(jobs), "prepared": len(todo) - len(failed),
            "already_done": len(jobs) - len(todo), "failed": failed, "ignored": ignored}


# --------------------------------------------------------------------------- val


def prepare_val(args, markers: Markers, out: Path, devkit) -> dict:
    if markers.done("val") is not None and (out / "val").is_dir():
        return {"prepared": False}
    if devkit is None:
        raise PrepError("--val-tar needs --devkit (ILSVRC2012_devkit_t12.tar.gz): the validation labels are in it")
    synsets, truth = devkit
    arc = Archive(args.val_tar, "the ImageNet validation archive (ILSVRC2012_img_val.tar)")
    staging = markers.staging("val")
    rec = _new_record()
    rec["per_class"] = {}
    labels: Dict[str, str] = {}

    def jobs():
        for name, data in arc.files():
            base = posixpath.basename(name)
            m = _VAL_NUMBER.search(base)
            if base.startswith(".") or m is None or not 1 <= int(m.group(1)) <= len(truth):
                rec["ignored"].append([f"val/{base}", "no ground-truth line for this file name"])
                continue
            wnid = synsets[truth[int(m.group(1)) - 1]][0]
            labels[base] = wnid
            yield base, data, str(staging / wnid), args.odd

    total = None if arc.is_dir else len(arc.names())
    for base, status, note, fname in progress_bar(ordered_map(check_and_write, jobs(), args.workers, chunk=64),
                                                  total=total, desc="val images", unit="img",
                                                  enabled=not args.quiet):
        wnid = labels.pop(base)
        _count(rec, status, note, f"val/{wnid}/{fname or base}")
        if fname is not None:
            rec["per_class"][wnid] = rec["per_class"].get(wnid, 0) + 1
    arc.close()
    commit_folder(staging, out / "val")
    markers.mark("val", rec)
    return {"prepared": True}


# --------------------------------------------------------------------------- mean


def _mean_file(args, out: Path) -> Path:
    return Path(args.mean_file) if args.mean_file else out / f"pixel_mean_{args.stored_size}.pt"


def zfcore_mean_cache(root, stored_size: int) -> Optional[Path]:
    """Where ``zf train --scale imagenet --data ROOT`` caches the mean (as zfcore.train.make_sources names it).

    None when ``stored_size`` is not the imagenet preset's (then training computes its own).
    """
    from zfcore.presets import get_preset
    from zfcore.artifacts import artifacts_dir, config_key
    p = get_preset("imagenet")
    if stored_size != p.stored_size:
        return None
    return artifacts_dir(p) / "data" / f"mean-{config_key(str(Path(root).resolve()), p.stored_size)}.pt"


def _valid_mean(path: Path, s: int) -> bool:
    import torch
    try:
        m = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(m, torch.Tensor) and tuple(m.shape) == (3, s, s) and m.is_floating_point()


def prepare_mean(args, out: Path) -> dict:
    """Compute (or keep) the per-pixel mean with zfcore's own :func:`pixel_mean`."""
    from zfcore.data.folders import FolderDataset, pixel_mean
    path = _mean_file(args, out)
    computed = False
    if not (path.is_file() and _valid_mean(path, args.stored_size)):
        remove_tree(path)
        ds = FolderDataset(out, "train", stored_size=args.stored_size)
        pixel_mean(ds, cache_path=path, workers=args.workers, progress=not args.quiet)
        computed = True
    info = {"file": str(path), "stored_size": args.stored_size, "computed": computed, "zf_cache": None}
    cache = None if args.no_zf_cache else zfcore_mean_cache(out, args.stored_size)
    if cache is not None:
        data = path.read_bytes()
        if not (cache.is_file() and cache.read_bytes() == data):
            write_bytes_atomic(cache, data)
        info["zf_cache"] = str(cache)
    return info


# --------------------------------------------------------------------------- summary


def summarize(args, markers: Markers, out: Path) -> dict:
    """The summary of what ``out`` holds, from the markers (the same however many runs made it)."""
    s = {"train": None, "val": None, "warnings": []}
    units = markers.units("train")
    if units:
        agg = _new_record()
        for u in units:
            rec = markers.done(u) or _new_record()
            agg["images"] += rec.get("images", 0)
            for k in ("bad", "converted", "odd", "ignored"):
                agg[k].extend(rec.get(k, []))
        agg.update(classes=len(units), expected_images=args.expect_train, expected_classes=args.expect_classes)
        agg["complete"] = agg["images"] == args.expect_train and len(units) == args.expect_classes
        s["train"] = agg
        if agg["images"] != args.expect_train or len(units) != args.expect_classes:
            s["warnings"].append(
                f"train: found {fmt_count(agg['images'])} images in {fmt_count(len(units))} classes, "
                f"expected {fmt_count(args.expect_train)} in {fmt_count(args.expect_classes)}"
                + (" (bad files were skipped)" if agg["bad"] else "")
                + ("; is the archive complete?" if agg["images"] < args.expect_train else ""))
    val = markers.done("val")
    if val is not None:
        val = dict(val)
        val.update(expected_images=args.expect_val, classes=len(val.get("per_class", {})))
        val["complete"] = val["images"] == args.expect_val
        s["val"] = val
        if not val["complete"]:
            s["warnings"].append(f"val: found {fmt_count(val['images'])} images, "
                                 f"expected {fmt_count(args.expect_val)}")
        if units:
            extra = sorted(set(val.get("per_class", {})) - {u.split("/", 1)[1] for u in units})
            if extra:
                s["warnings"].append(f"val: {len(extra)} classes have no training folder (e.g. {extra[:3]}); "
                                     f"zfcore needs every val class in train")
    return s


def prepare(args) -> dict:
    """Do the work ``args`` asks for; returns {"summary", "work"} (also written and printed by main)."""
    out = Path(args.out)
    if not (args.train_tar or args.val_tar or (out / "train").is_dir()):
        raise PrepError("nothing to do: give --train-tar and/or --val-tar (and --devkit), "
                        f"or --out a folder that already holds train/ to compute its mean ({out} has none)")
    out.mkdir(parents=True, exist_ok=True)
    markers = Markers(out)
    work = {"train": None, "val": None, "mean": None}
    devkit = read_devkit(args.devkit) if args.devkit else None
    if args.train_tar:
        work["train"] = prepare_train(args, markers, out)
    if args.val_tar:
        work["val"] = prepare_val(args, markers, out, devkit)
    if devkit is not None:  # class names, in zfcore's label order (sorted wnids)
        write_json(out / "synsets.json", [{"wnid": w, "ILSVRC2012_ID": i, "words": words}
                                          for i, (w, words) in sorted(devkit[0].items(), key=lambda kv: kv[1][0])])
    summary = summarize(args, markers, out)
    if summary["train"] is not None:
        outer = markers.done("train_archive") or {}
        summary["train"]["ignored"] = outer.get("ignored", []) + summary["train"]["ignored"]
        if work["train"] and work["train"]["failed"]:
            summary["train"]["failed"] = work["train"]["failed"]
    if not args.no_mean and (out / "train").is_dir() and markers.units("train"):
        work["mean"] = prepare_mean(args, out)
        summary["pixel_mean"] = {"file": os.path.relpath(work["mean"]["file"], out)
                                 if Path(work["mean"]["file"]).is_relative_to(out) else work["mean"]["file"],
                                 "stored_size": args.stored_size}
    write_json(out / SUMMARY, summary)
    return {"summary": summary, "work": work}


def _print_report(result: dict, out: Path) -> None:
    s, w = result["summary"], result["work"]
    t = s["train"]
    if t:
        line = (f"train: {fmt_count(t['classes'])} classes, {fmt_count(t['images'])} images "
                f"(expected {fmt_count(t['expected_images'])}): {'complete' if t['complete'] else 'INCOMPLETE'}")
        if w["train"]:
            line += f"; this run prepared {w['train']['prepared']} classes, {w['train']['already_done']} were done"
        print(line)
        _print_files(t)
    v = s["val"]
    if v:
        print(f"val:   {fmt_count(v['images'])} images in {fmt_count(v['classes'])} classes "
              f"(expected {fmt_count(v['expected_images'])}): {'complete' if v['complete'] else 'INCOMPLETE'}"
              + ("" if not w["val"] else "; prepared this run" if w["val"]["prepared"] else "; already done"))
        _print_files(v)
    m = w["mean"]
    if m:
        print(f"mean:  {m['file']} ({'computed' if m['computed'] else 'kept'})"
              + (f"; copied for zf train to {m['zf_cache']}" if m["zf_cache"] else ""))
    for warning in s["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"summary: {out / SUMMARY}")


def _print_files(rec: dict, shown: int = 5) -> None:
    for key, what in (("bad", "bad files skipped"), ("converted", "odd files re-encoded as RGB JPEG"),
                      ("odd", "odd files kept as they are"), ("ignored", "entries ignored")):
        items = rec.get(key) or []
        if items:
            print(f"       {what}: {len(items)}")
            for path, why in items[:shown]:
                print(f"         {path}: {why}")
            if len(items) > shown:
                print("         ... (all in the summary file)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ImageNet 2012 archives -> ROOT/train/<wnid>/*, ROOT/val/<wnid>/* (what zfcore reads), "
                    "checked image by image, and the per-pixel training mean. Resumable: rerun the same "
                    "command after an interruption.",
        epilog="example:\n  python -m data_prep.imagenet --train-tar ILSVRC2012_img_train.tar \\\n"
               "      --val-tar ILSVRC2012_img_val.tar --devkit ILSVRC2012_devkit_t12.tar.gz \\\n"
               "      --out /data/imagenet --workers 16")
    p.add_argument("--out", required=True, help="the data root ROOT to write (train/, val/, the mean, the summary)")
    p.add_argument("--train-tar", help="ILSVRC2012_img_train.tar (a tar of per-class tars), or a folder of the "
                                       "per-class tars")
    p.add_argument("--val-tar", help="ILSVRC2012_img_val.tar (50,000 JPEGs), or a folder of them")
    p.add_argument("--devkit", help="ILSVRC2012_devkit_t12.tar.gz: the validation ground truth and meta.mat")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes that decode and write images (default: CPUs, at most 8)")
    p.add_argument("--odd", choices=("convert", "keep"), default="convert",
                   help="files that are not RGB/grey JPEGs (CMYK, PNG named .JPEG): re-encode as RGB JPEG "
                        "quality 95 (default) or keep their bytes")
    p.add_argument("--stored-size", type=int, default=256,
                   help="side S of the stored images the mean is computed at (256, as the paper)")
    p.add_argument("--mean-file", help="where to save the mean (default ROOT/pixel_mean_<S>.pt)")
    p.add_argument("--no-mean", action="store_true", help="do not compute the per-pixel mean")
    p.add_argument("--no-zf-cache", action="store_true",
                   help="do not copy the mean to where zf train --scale imagenet looks for it")
    p.add_argument("--expect-train", type=int, default=EXPECTED_TRAIN,
                   help=f"training images expected (default {EXPECTED_TRAIN:,}); a mismatch is a warning")
    p.add_argument("--expect-val", type=int, default=EXPECTED_VAL,
                   help=f"validation images expected (default {EXPECTED_VAL:,})")
    p.add_argument("--expect-classes", type=int, default=EXPECTED_CLASSES,
                   help=f"training classes expected (default {EXPECTED_CLASSES:,})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _work(args) -> int:
    if args.workers < 0:
        raise PrepError(f"--workers must be 0 or more, got {args.workers}")
    result = prepare(args)
    _print_report(result, Path(args.out))
    failed = (result["work"]["train"] or {}).get("failed")
    return 1 if failed else 0


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), _work, argv)


if __name__ == "__main__":
    sys.exit(main())
