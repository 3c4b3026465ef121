"""Caltech-101 and Caltech-256: the archives to checked images and 5 train/test folds (Tables 4, 5; Fig. 9).

    python -m data_prep.caltech --archive 101_ObjectCategories.tar.gz --out /data/caltech101
    python -m data_prep.caltech --archive 256_ObjectCategories.tar --out /data/caltech256

writes::

    OUT/images/<class>/<file>       every readable image, checked (see data_prep.common)
    OUT/folds_<N>.json              for N training images per class: 5 folds, each a train and a test list
    OUT/caltech_prep.json           counts, bad files skipped, files converted, fold settings

The paper (Section 5.2, Tables 4 and 5) follows Bo et al.: "generating 5
train/test splits" with 15 or 30 (Caltech-101) or 15, 30, 45, 60 (Caltech-256)
training images per class, "testing on up to 50 images per class", and reports
the mean of the per-class accuracies. Here, for each fold f and class c, the
class's images (sorted by name) are permuted by a generator seeded with
(seed, f, crc32(c)); the first N are the training images and the last
min(50, count - N) the test images (the rule zfcore.features.folds follows on
the small scales). So within a fold the training sets are nested (the 15 are
among the 30), the test set is the same for every N while count - N >= 50, a
class's draw does not depend on which other classes are included, and a class
with N or fewer images keeps one image for testing (it is listed under
``short_classes``; Caltech-101 has classes of 31 images, so N = 45, 60 only
make sense for Caltech-256).

Background and clutter. Caltech-101's ``BACKGROUND_Google`` and Caltech-256's
``257.clutter`` are not objects. The image counts the paper gives (9,144
Caltech-101 images, 30,607 Caltech-256 images) include them, and Bo et al.
report on 102 and 257 classes; so by default they are kept as one more class,
in training and test alike (``--background include``). ``--background
exclude`` leaves them out of the folds (the images are still written),
giving the 101 / 256 object classes that e.g. torchvision's Caltech101 uses.
``Faces`` and ``Faces_easy`` are kept as two classes, as is common practice.

Only image files directly inside a class folder count; anything else (files at
the top, nested folders, hidden files) is listed as ignored.
"""
from __future__ import annotations

import argparse
import re
import sys
import zlib
from pathlib import Path
from typing import Dict, List

if __package__ in (None, ""):  # run as a file: python data_prep/caltech.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from data_prep.common import (Archive, Markers, PrepError, check_and_write, commit_folder,  # noqa: E402
                              default_workers, fmt_count, ordered_map, print_report, progress_bar,
                              run_main, write_json)

PROG = "python -m data_prep.caltech"
SUMMARY = "caltech_prep.json"

#: What each data set looks like, and the paper's image counts (background/clutter included).
DATASETS = {
    "caltech101": {"top": "101_ObjectCategories", "background": "BACKGROUND_Google", "images": 9144,
                   "train_per_class": (15, 30)},
    "caltech256": {"top": "256_ObjectCategories", "background": "257.clutter", "images": 30607,
                   "train_per_class": (15, 30, 45, 60)},
}
_TOPS = {v["top"]: k for k, v in DATASETS.items()}
_C256 = re.compile(r"^\d{3}\.")


def _split_name(name: str):
    """(class, file) of an archive path, or (None, why it is ignored)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if parts and parts[0] in _TOPS:
        parts = parts[1:]
    if any(p.startswith(".") for p in parts):
        return None, "hidden file"
    if len(parts) == 1:
        return None, "not inside a class folder"
    if len(parts) > 2:
        return None, "inside a nested folder"
    return parts[0], parts[1]


def detect_dataset(names: List[str], classes: List[str]) -> str:
    """'caltech101' or 'caltech256' from the archive's top folder or its class names."""
    for n in names[:1]:
        top = n.split("/")[0]
        if top in _TOPS:
            return _TOPS[top]
    if "BACKGROUND_Google" in classes:
        return "caltech101"
    if classes and all(_C256.match(c) for c in classes):
        return "caltech256"
    raise PrepError("cannot tell Caltech-101 from Caltech-256 by the archive's folders: give --dataset")


def prepare_images(args, markers: Markers, out: Path) -> dict:
    """Check and write every image of the archive into OUT/images (one unit of work)."""
    arc = Archive(args.archive, "the Caltech archive")  # checked even when the work is done
    rec = markers.done("images")
    if rec is not None and (out / "images").is_dir():
        return {"prepared": False, "record": rec}
    staging = markers.staging("images")
    rec = {"images": 0, "per_class": {}, "bad": [], "converted": [], "odd": [], "ignored": [], "first": None}

    def jobs():
        for name, data in arc.files():
            if rec["first"] is None:
                rec["first"] = name
            cls, f = _split_name(name)
            if cls is None:
                rec["ignored"].append([name, f])
                continue
            yield f"{cls}/{f}", data, str(staging / cls), args.odd

    for name, status, note, fname in progress_bar(ordered_map(check_and_write, jobs(), args.workers, chunk=32),
                                                  desc="caltech images", unit="img", enabled=not args.quiet):
        cls = name.split("/")[0]
        if status == "bad":
            rec["bad"].append([name, note])
            continue
        rec["images"] += 1
        rec["per_class"].setdefault(cls, []).append(fname)
        if status in ("converted", "odd"):
            rec[status].append([f"{cls}/{fname}", note])
    arc.close()
    if not rec["per_class"]:
        raise PrepError(f"the Caltech archive holds no readable images in class folders: {args.archive}")
    for files in rec["per_class"].values():
        files.sort()
    rec["dataset"] = args.dataset if args.dataset != "auto" else \
        detect_dataset([rec["first"] or ""], sorted(rec["per_class"]))
    del rec["first"]
    commit_folder(staging, out / "images")
    markers.mark("images", rec)
    return {"prepared": True, "record": rec}


def make_folds(per_class: Dict[str, List[str]], classes: List[str], n_train: int, n_test: int,
               folds: int, seed: int) -> dict:
    """The train/test folds for ``n_train`` images per class (see the module's docstring).

    Returns a dict with ``folds`` (each {"train": [[path, label], ...], "test": [...]},
    paths relative to OUT/images, labels indexing ``classes``) and ``short_classes``.
    """
    out = {"folds": [], "short_classes": []}
    for f in range(folds):
        train, test = [], []
        for label, c in enumerate(classes):
            files = per_class[c]
            rng = np.random.default_rng([seed, f, zlib.crc32(c.encode())])
            perm = rng.permutation(len(files))
            k = min(n_train, len(files) - 1)
            train += [[f"{c}/{files[i]}", label] for i in sorted(perm[:k])]
            test += [[f"{c}/{files[i]}", label] for i in sorted(perm[len(files) - min(n_test, len(files) - k):])]
            if f == 0 and k < n_train:
                out["short_classes"].append([c, len(files)])
        out["folds"].append({"train": train, "test": test})
    return out


def prepare(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markers = Markers(out)
    done = prepare_images(args, markers, out)
    rec = done["record"]
    dataset = rec["dataset"] if args.dataset == "auto" else args.dataset
    info = DATASETS[dataset]
    background = info["background"]
    classes = sorted(rec["per_class"])
    if args.background == "exclude":
        classes = [c for c in classes if c != background]
    ns = args.train_per_class or info["train_per_class"]
    written, short = {}, {}
    for n in ns:
        folds = make_folds(rec["per_class"], classes, n, args.test_per_class, args.folds, args.seed)
        short[n] = folds["short_classes"]
        doc = {"dataset": dataset, "images": "images", "classes": classes, "background": args.background,
               "background_class": background, "train_per_class": n, "test_per_class": args.test_per_class,
               "seed": args.seed, **folds}
        name = f"folds_{n}.json"
        written[name] = write_json(out / name, doc)
    expected = args.expect_images if args.expect_images is not None else info["images"]
    summary = {"dataset": dataset, "classes": len(rec["per_class"]), "classes_in_folds": len(classes),
               "background": args.background, "background_class": background,
               "background_present": background in rec["per_class"],
               "images": rec["images"], "expected_images": expected, "complete": rec["images"] == expected,
               "bad": rec["bad"], "converted": rec["converted"], "odd": rec["odd"], "ignored": rec["ignored"],
               "folds": sorted(written), "warnings": []}
    if rec["images"] != expected:
        summary["warnings"].append(f"found {fmt_count(rec['images'])} images, the paper counts "
                                   f"{fmt_count(expected)}" + (" (bad files were skipped)" if rec["bad"] else ""))
    for n, s in short.items():
        if s:
            summary["warnings"].append(f"{len(s)} classes have {n} or fewer images, so fewer than {n} "
                                       f"train at N={n} (e.g. {s[0][0]}: {s[0][1]})")
    write_json(out / SUMMARY, summary)
    return {"summary": summary, "work": {"images_prepared": done["prepared"], "folds_written": written}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Caltech-101 / Caltech-256 archive -> OUT/images/<class>/* (checked) and "
                    "OUT/folds_<N>.json: 5 seeded train/test folds, N training and up to 50 test images "
                    "per class (Tables 4 and 5). Resumable: rerun the same command after an interruption.",
        epilog="examples:\n  python -m data_prep.caltech --archive 101_ObjectCategories.tar.gz --out /data/caltech101\n"
               "  python -m data_prep.caltech --archive 256_ObjectCategories.tar --out /data/caltech256 \\\n"
               "      --train-per-class 15,30,45,60 --background exclude")
    p.add_argument("--archive", required=True,
                   help="101_ObjectCategories.tar.gz or 256_ObjectCategories.tar (or the extracted folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", choices=("auto", "caltech101", "caltech256"), default="auto",
                   help="which data set (default: told by the archive's folders)")
    p.add_argument("--train-per-class", type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                   help="comma-separated N (default 15,30 for Caltech-101; 15,30,45,60 for Caltech-256)")
    p.add_argument("--test-per-class", type=int, default=50, help="test images per class, at most (default 50)")
    p.add_argument("--folds", type=int, default=5, help="train/test folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds (default 0)")
    p.add_argument("--background", choices=("include", "exclude"), default="include",
                   help="BACKGROUND_Google (101) / 257.clutter (256) as one more class in the folds "
                        "(default include, as the paper's counts do), or left out")
    p.add_argument("--expect-images", type=int, default=None,
                   help="images expected (default: the paper's 9,144 or 30,607); a mismatch is a warning")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes that decode and write images (default: CPUs, at most 8)")
    p.add_argument("--odd", choices=("convert", "keep"), default="convert",
                   help="non-JPEG or CMYK files: re-encode as RGB JPEG (default) or keep their bytes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _work(args) -> int:
    if args.folds < 1 or args.test_per_class < 0 or (args.train_per_class and min(args.train_per_class) < 1):
        raise PrepError("--folds and --train-per-class must be at least 1, --test-per-class at least 0")
    result = prepare(args)
    s, w = result["summary"], result["work"]
    print(f"{s['dataset']}: {fmt_count(s['images'])} images in {s['classes']} classes "
          f"(the paper: {fmt_count(s['expected_images'])}); "
          + ("prepared this run" if w["images_prepared"] else "images already done"))
    print(f"folds: {s['classes_in_folds']} classes ({s['background_class']} {s['background']}d); "
          + ", ".join(f"{n} ({'written' if c else 'unchanged'})" for n, c in w["folds_written"].items()))
    print_report(s, Path(args.out) / SUMMARY)
    return 0


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), _work, argv)


if __name__ == "__main__":
    sys.exit(main())
