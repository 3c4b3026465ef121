"""PASCAL VOC 2012: the trainval archive to checked images and multi-label train and val lists (Table 6).

    python -m data_prep.pascal --archive VOCtrainval_11-May-2012.tar --out /data/voc2012

writes::

    OUT/JPEGImages/<id>.jpg         the images of the classification train and val sets, checked
    OUT/labels.json                 {"classes": the 20 classes, "splits": {"train": [...], "val": [...]}},
                                    each image {"id", "image", "labels", "difficult"}
    OUT/train.txt, OUT/val.txt      one image a line: "JPEGImages/<id>.jpg<TAB>label,label,..."
    OUT/voc_prep.json               counts per split and class, bad files, checks

The labels come from the classification lists of the devkit,
``VOCdevkit/VOC2012/ImageSets/Main/<class>_<split>.txt``, where each image is
marked 1 (the class is present), -1 (absent) or 0 (only "difficult" objects of
the class). They are cross-checked against ``Annotations/<id>.xml`` (objects
and their ``difficult`` flags); a disagreement is reported.

Difficult objects: an image whose only objects of a class are difficult has
that class under ``difficult``, not under ``labels``. VOC's own classification
scoring ignores such (image, class) pairs, neither positive nor negative; a
consumer that can mask them should. ``--difficult positive`` counts them as
present instead (``labels`` then includes them; ``difficult`` is still listed).
The text lists carry ``labels`` only.

The paper (Table 6) trains a 20-way softmax on the frozen features of the
train+val images and reports the VOC 2012 *test* set, whose labels are not
public (VOC's evaluation server scores it); here val stands in for test.
"""
from __future__ import annotations

import argparse
import posixpath
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run as a file: python data_prep/pascal.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.common import (Archive, Markers, PrepError, check_and_write, commit_folder,  # noqa: E402
                              default_workers, fmt_count, ordered_map, print_report, progress_bar,
                              run_main, write_json,
                              write_text)

PROG = "python -m data_prep.pascal"
SUMMARY = "voc_prep.json"
CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor")
#: Images in VOC 2012's classification lists (ImageSets/Main/train.txt, val.txt).
EXPECTED = {"train": 5717, "val": 5823}
_MAIN = "ImageSets/Main/"


def _find_prefix(names: List[str], split: str) -> str:
    """The path prefix of the VOC2012 folder inside the archive (e.g. 'VOCdevkit/VOC2012/')."""
    target = f"{_MAIN}{split}.txt"
    for n in names:
        if n == target or n.endswith("/" + target):
            return n[:-len(target)]
    raise PrepError(f"the VOC archive has no {target} (is it VOCtrainval_11-May-2012.tar?)")


def read_lists(arc: Archive, prefix: str, split: str) -> Dict[str, Dict[str, int]]:
    """{image id: {class: 1, 0 or -1}} of one split, from the per-class lists."""
    ids = arc.read(f"{prefix}{_MAIN}{split}.txt").decode().split()
    flags: Dict[str, Dict[str, int]] = {i: {} for i in ids}
    for c in CLASSES:
        text = arc.read(f"{prefix}{_MAIN}{c}_{split}.txt").decode()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 2:
                continue
            if parts[0] not in flags:
                raise PrepError(f"{_MAIN}{c}_{split}.txt names {parts[0]}, which {split}.txt lacks")
            flags[parts[0]][c] = int(parts[1])
    return flags


def parse_annotation(data: bytes) -> Optional[Dict[str, int]]:
    """{class: 1 if a non-difficult object, 0 if only difficult ones} of one Annotations XML, None if unreadable."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    out: Dict[str, int] = {}
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        out[name] = max(out.get(name, 0), 0 if difficult else 1)
    return out


def prepare_images(args, markers: Markers, out: Path, arc: Archive, prefix: str, ids: set) -> dict:
    rec = markers.done("images")
    if rec is not None and (out / "JPEGImages").is_dir():
        return {"prepared": False, "record": rec}
    staging = markers.staging("images")
    rec = {"images": [], "bad": [], "converted": [], "odd": [], "annotations": {}}
    img_dir, ann_dir = f"{prefix}JPEGImages/", f"{prefix}Annotations/"

    def wanted(name: str) -> bool:
        stem, ext = posixpath.splitext(posixpath.basename(name))
        return stem in ids and ((name.startswith(img_dir) and ext.lower() == ".jpg") or
                                (name.startswith(ann_dir) and ext == ".xml"))

    def jobs():
        for name, data in arc.files(wanted):
            stem = posixpath.splitext(posixpath.basename(name))[0]
            if name.startswith(ann_dir):
                rec["annotations"][stem] = parse_annotation(data)
            else:
                yield f"{stem}.jpg", data, str(staging), args.odd

    for name, status, note, fname in progress_bar(ordered_map(check_and_write, jobs(), args.workers, chunk=32),
                                                  total=len(ids), desc="voc images", unit="img",
                                                  enabled=not args.quiet):
        if status == "bad":
            rec["bad"].append([f"JPEGImages/{name}", note])
            continue
        rec["images"].append(posixpath.splitext(name)[0])  # the image id
        if status in ("converted", "odd"):
            rec[status].append([f"JPEGImages/{fname}", note])
    rec["images"].sort()
    commit_folder(staging, out / "JPEGImages")
    markers.mark("images", rec)
    return {"prepared": True, "record": rec}


def prepare(args) -> dict:
    out = Path(args.out)
    arc = Archive(args.archive, "the PASCAL VOC 2012 archive (VOCtrainval_11-May-2012.tar)")
    names = arc.names()
    prefix = _find_prefix(names, args.splits[0])
    lists = {s: read_lists(arc, prefix, s) for s in args.splits}
    ids = set().union(*lists.values())
    out.mkdir(parents=True, exist_ok=True)
    markers = Markers(out)
    done = prepare_images(args, markers, out, arc, prefix, ids)
    arc.close()
    rec = done["record"]
    present = set(rec["images"])
    bad = {posixpath.splitext(posixpath.basename(p))[0] for p, _ in rec["bad"]}
    missing = sorted(ids - present - bad)
    splits, counts, mismatches = {}, {}, []
    for split, flags in lists.items():
        items = []
        per_class = {c: 0 for c in CLASSES}
        for i in sorted(flags):
            if i not in present:
                continue
            labels = [c for c in CLASSES if flags[i].get(c, -1) == 1]
            difficult = [c for c in CLASSES if flags[i].get(c, -1) == 0]
            if args.difficult == "positive":
                labels = [c for c in CLASSES if c in labels or c in difficult]
            for c in labels:
                per_class[c] += 1
            items.append({"id": i, "image": f"JPEGImages/{i}.jpg", "labels": labels, "difficult": difficult})
            ann = rec["annotations"].get(i)
            if ann is not None:
                from_lists = {c: v for c, v in flags[i].items() if v >= 0}
                if ann != from_lists:
                    mismatches.append(i)
        splits[split] = items
        counts[split] = {"images": len(items), "expected": EXPECTED.get(split),
                         "no_label": sum(1 for x in items if not x["labels"]), "per_class": per_class}
        write_text(out / f"{split}.txt", "".join(f"{x['image']}\t{','.join(x['labels'])}\n" for x in items))
    write_json(out / "labels.json", {"classes": list(CLASSES), "difficult": args.difficult, "splits": splits})
    no_ann = sorted(i for i in present if rec["annotations"].get(i) is None)
    summary = {"splits": counts, "bad": rec["bad"], "converted": rec["converted"], "odd": rec["odd"],
               "missing_images": missing, "missing_or_unreadable_annotations": no_ann,
               "annotation_mismatches": sorted(mismatches), "difficult": args.difficult, "warnings": []}
    for split, c in counts.items():
        if c["expected"] is not None and c["images"] != c["expected"]:
            summary["warnings"].append(f"{split}: {fmt_count(c['images'])} images, expected {fmt_count(c['expected'])}")
    if missing:
        summary["warnings"].append(f"{len(missing)} listed images are not in the archive (e.g. {missing[0]})")
    if mismatches:
        summary["warnings"].append(f"{len(mismatches)} images' class lists disagree with their annotations "
                                   f"(e.g. {sorted(mismatches)[0]}); the class lists were used")
    write_json(out / SUMMARY, summary)
    return {"summary": summary, "work": {"images_prepared": done["prepared"]}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="PASCAL VOC 2012 trainval archive -> OUT/JPEGImages/* (checked) and multi-label lists "
                    "for train and val (OUT/labels.json, OUT/train.txt, OUT/val.txt), Table 6. Resumable: "
                    "rerun the same command after an interruption.",
        epilog="example:\n  python -m data_prep.pascal --archive VOCtrainval_11-May-2012.tar --out /data/voc2012")
    p.add_argument("--archive", required=True, help="VOCtrainval_11-May-2012.tar (or the extracted folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--splits", type=lambda s: [x for x in s.split(",") if x], default=["train", "val"],
                   help="comma-separated ImageSets/Main splits (default train,val)")
    p.add_argument("--difficult", choices=("ignore", "positive"), default="ignore",
                   help="a class with only difficult objects in an image: listed apart, neither positive nor "
                        "negative (default), or counted as present")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes that decode and write images (default: CPUs, at most 8)")
    p.add_argument("--odd", choices=("convert", "keep"), default="convert",
                   help="non-JPEG or CMYK files: re-encode as RGB JPEG (default) or keep their bytes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _work(args) -> int:
    if not args.splits:
        raise PrepError("--splits is empty")
    result = prepare(args)
    s = result["summary"]
    for split, c in s["splits"].items():
        exp = f" (expected {fmt_count(c['expected'])})" if c["expected"] is not None else ""
        print(f"{split}: {fmt_count(c['images'])} images{exp}, {c['no_label']} with no non-difficult label")
    print("images " + ("prepared this run" if result["work"]["images_prepared"] else "already done"))
    print_report(s, Path(args.out) / SUMMARY)
    return 0


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), _work, argv)


if __name__ == "__main__":
    sys.exit(main())
