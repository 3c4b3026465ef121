"""Caltech images that are also in ImageNet's training set, found by normalised correlation (Section 5.2).

    python -m data_prep.overlap --imagenet /data/imagenet \\
        --caltech /data/caltech101/images /data/caltech256/images --out /data/overlap

writes::

    OUT/exclude.txt        the ImageNet training files to leave out, one a line, relative to the
                           ImageNet root ("train/<wnid>/<file>"): the format of zfcore's
                           FolderDataset(..., exclude=...) / FolderSource(..., exclude=...)
    OUT/overlap.json       every pair above --report-threshold (Caltech file, ImageNet file, score),
                           matches per Caltech class, counts and settings
    OUT/thumbs/            cached thumbnails, one file per class folder (a rerun reuses them)

The paper: "Caltech images that also appear in ImageNet were found by
normalised correlation and removed from the ImageNet training set before
retraining": 44 of 9,144 Caltech-101 images (at most 10 per class), 243 of
30,607 Caltech-256 images (at most 18 per class). It does not say at what size
or threshold; here:

* Thumbnail: the whole image (EXIF ignored, alpha on grey, as zfcore reads it),
  decoded at reduced size when it is a JPEG (``draft``), then resized to
  ``--size`` x ``--size`` (32) with Pillow's antialiasing bilinear filter, in
  colour (3 x 32 x 32 = 3,072 values) or, with ``--grey``, luminance only. The
  aspect ratio is not kept, so a copy resized to other proportions still lines up.
* Normalised correlation: each thumbnail minus its own mean, divided by its
  norm; the correlation of two images is then a dot product, computed for a
  chunk of ``--chunk`` ImageNet thumbnails against every Caltech thumbnail at
  once (one matrix product, torch, on ``--device``). A constant thumbnail has
  no correlation and matches nothing.
* A pair at or above ``--threshold`` (0.95) is a duplicate; the ImageNet image
  goes on the exclusion list. Pairs down to ``--report-threshold`` (0.90) are
  kept in overlap.json, so the threshold can be checked by eye.

What it does not find: mirrored or strongly cropped copies (no flips or crops
are tried), and copies whose colours were changed (use ``--grey`` for those).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

if __package__ in (None, ""):  # run as a file: python data_prep/overlap.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from data_prep.common import (PrepError, default_workers, fmt_count, ordered_map,  # noqa: E402
                              progress_bar, run_main, write_bytes_atomic, write_json, write_text)

PROG = "python -m data_prep.overlap"
THUMB_VERSION = 1  # bump when the thumbnail recipe changes: old caches are then ignored


# --------------------------------------------------------------------------- thumbnails


def thumbnail(path, size: int = 32, grey: bool = False) -> np.ndarray:
    """The (size*size*C,) uint8 thumbnail of an image file (C = 1 if grey else 3).

    Raises:
        Exception (from PIL) if the file cannot be read.
    """
    from zfcore.data.folders import _to_rgb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as img:
            img.draft("RGB", (2 * size, 2 * size))  # JPEG: decode at 1/2..1/8 scale, no smaller than 2x size
            img.load()
            rgb = _to_rgb(img)
    if grey:
        rgb = rgb.convert("L")
    small = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(small, dtype=np.uint8).reshape(-1)


def _thumb_job(job) -> Tuple[Optional[np.ndarray], str]:
    path, size, grey = job
    try:
        return thumbnail(path, size, grey), ""
    except Exception as e:  # unreadable: reported, never matched
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        return None, f"{type(e).__name__}: {e}"


def _groups(root: Path) -> Dict[str, List[str]]:
    """Image files under ``root`` (relative, '/'-separated, hidden entries skipped), by folder, sorted.

    Walked by :func:`zfcore.data.folders.iter_images`: links are followed, but no folder twice (a
    link loop, or a link back into the tree, is left out with a warning naming it)."""
    from zfcore.data.folders import iter_images
    out: Dict[str, List[str]] = {}
    skipped = []
    for path, reason in iter_images(root):
        if reason is not None:
            skipped.append(f"{path} ({reason})")
            continue
        rel = Path(path).relative_to(root).as_posix()
        folder = rel.rsplit("/", 1)[0] if "/" in rel else "."
        out.setdefault(folder, []).append(rel)
    if skipped:
        warnings.warn(f"{len(skipped)} entries under {root} left out: " + "; ".join(skipped[:5])
                      + ("; ..." if len(skipped) > 5 else ""))
    return dict(sorted(out.items()))


class ThumbnailSet:
    """The thumbnails of every image under a folder, cached one file per subfolder.

    Args:
        root: the folder (ImageNet's ``ROOT/train``, or a Caltech ``images`` folder).
        cache: the cache folder for this set.
        size, grey: the thumbnail recipe.

    A subfolder's cache file is reused only if it lists exactly the subfolder's
    current files, so a re-prepared class is recomputed.
    """

    def __init__(self, root, cache, size: int, grey: bool):
        self.root, self.size, self.grey = Path(root), size, grey
        if not self.root.is_dir():
            raise PrepError(f"image folder not found: {self.root}")
        key = hashlib.sha256(f"{self.root.resolve()}|{size}|{grey}|{THUMB_VERSION}".encode()).hexdigest()[:12]
        self.cache = Path(cache) / key
        self.groups = _groups(self.root)
        if not self.groups:
            raise PrepError(f"no images under {self.root}")
        self.n = sum(len(v) for v in self.groups.values())

    def _file(self, group: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in group)
        return self.cache / f"{safe}-{hashlib.sha256(group.encode()).hexdigest()[:8]}.npz"

    def _load(self, group: str):
        try:
            with np.load(self._file(group), allow_pickle=False) as z:
                names, thumbs, bad = list(z["names"]), z["thumbs"], list(z["bad"])
        except (OSError, ValueError, KeyError):
            return None
        if sorted(names + bad) != sorted(self.groups[group]):
            return None
        return names, thumbs, bad

    def _save(self, group: str, names, thumbs, bad) -> None:
        buf = io.BytesIO()
        np.savez(buf, names=np.array(names, dtype=str), bad=np.array(bad, dtype=str), thumbs=thumbs)
        write_bytes_atomic(self._file(group), buf.getvalue(), fsync=False)

    def ensure(self, workers: int, progress: bool, desc: str) -> Tuple[int, List[List[str]]]:
        """Compute the missing groups' thumbnails. Returns (groups computed, [[file, why unreadable]])."""
        todo = [g for g in self.groups if self._load(g) is None]
        jobs = [(g, f) for g in todo for f in self.groups[g]]
        if not jobs:
            return 0, []
        d = self.size * self.size * (1 if self.grey else 3)
        bad_all: List[List[str]] = []
        left = {g: len(self.groups[g]) for g in todo}
        acc: Dict[str, tuple] = {g: ([], [], []) for g in todo}
        results = ordered_map(_thumb_job, ((str(self.root / f), self.size, self.grey) for _, f in jobs),
                              workers, chunk=64)
        for (g, f), (thumb, why) in progress_bar(zip(jobs, results), total=len(jobs), desc=desc, unit="img",
                                                 enabled=progress):
            names, thumbs, bad = acc[g]
            if thumb is None:
                bad.append(f)
                bad_all.append([f, why])
            else:
                names.append(f)
                thumbs.append(thumb)
            left[g] -= 1
            if left[g] == 0:
                self._save(g, names, np.stack(thumbs) if thumbs else np.zeros((0, d), np.uint8), bad)
                del acc[g]
        return len(todo), bad_all

    def chunks(self, rows: int):
        """(names, (n, d) uint8) in chunks of at most ``rows``, read from the cache group by group."""
        names_buf, thumbs_buf, n = [], [], 0
        for g in self.groups:
            loaded = self._load(g)
            if loaded is None:
                raise PrepError(f"thumbnail cache for {self.root / g} is missing: rerun")
            names, thumbs, _ = loaded
            start = 0
            while start < len(names):
                take = min(rows - n, len(names) - start)
                names_buf += names[start:start + take]
                thumbs_buf.append(thumbs[start:start + take])
                n += take
                start += take
                if n == rows:
                    yield names_buf, np.concatenate(thumbs_buf)
                    names_buf, thumbs_buf, n = [], [], 0
        if n:
            yield names_buf, np.concatenate(thumbs_buf)

    def bad(self) -> List[str]:
        return [f for g in self.groups for f in (self._load(g) or ([], None, []))[2]]


# --------------------------------------------------------------------------- correlation


def normalise(thumbs, device="cpu"):
    """(n, d) uint8 -> (n, d) float32 rows of zero mean and unit norm (constant rows -> 0)."""
    import torch
    x = torch.as_tensor(np.asarray(thumbs), device=device).to(torch.float32, copy=True)
    x -= x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    x /= norm.clamp_min(1e-3)
    x[norm.squeeze(1) < 1e-3] = 0
    return x


def correlate(queries, keys, threshold: float):
    """Pairs of rows with normalised correlation >= threshold, and each key's best score.

    Args:
        queries: (m, d) normalised rows (a chunk of ImageNet thumbnails).
        keys: (n, d) normalised rows (the Caltech thumbnails), on the same device.
    Returns:
        (query index (k,), key index (k,), score (k,), best score of each key over the queries (n,)).
    """
    import torch
    scores = queries @ keys.T  # (m, n) normalised correlations
    best = scores.max(dim=0).values
    if not bool((best >= threshold).any()):  # the usual case: no pair in this chunk
        none = torch.zeros(0, dtype=torch.long, device=scores.device)
        return none, none, scores.new_zeros(0), best
    qi, ki = torch.nonzero(scores >= threshold, as_tuple=True)
    return qi, ki, scores[qi, ki], best


# --------------------------------------------------------------------------- script


def find_overlap(args) -> dict:
    import torch
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    cache = out / "thumbs"
    progress = not args.quiet
    train = Path(args.imagenet) / "train"
    if not train.is_dir():
        raise PrepError(f"no ImageNet training split: {train} is not a folder (prepare it with data_prep.imagenet)")
    imnet = ThumbnailSet(train, cache, args.size, args.grey)
    cal_sets = [ThumbnailSet(c, cache, args.size, args.grey) for c in args.caltech]
    t0 = time.perf_counter()
    work, bad = {"groups_computed": 0}, []
    for i, s in enumerate(cal_sets):
        n, b = s.ensure(args.workers, progress, f"caltech {i + 1} thumbnails")
        work["groups_computed"] += n
        bad += [[f"{args.caltech[i]}/{f}", why] for f, why in b]
    n, b = imnet.ensure(args.workers, progress, "imagenet thumbnails")
    work["groups_computed"] += n
    bad += [[f"train/{f}", why] for f, why in b]
    work["thumbnail_seconds"] = time.perf_counter() - t0

    cal_names, cal_thumbs = [], []
    for i, s in enumerate(cal_sets):
        for names, thumbs in s.chunks(1 << 30):
            cal_names += [f"{args.caltech[i]}/{f}" for f in names]
            cal_thumbs.append(thumbs)
    if not cal_names:
        raise PrepError("no readable Caltech images")
    keys = normalise(np.concatenate(cal_thumbs), device)
    flat = int((keys.abs().sum(1) == 0).sum())

    pairs = []
    n_imnet = 0
    best = torch.full((len(cal_names),), -1.0, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    for names, thumbs in progress_bar(imnet.chunks(args.chunk), total=-(-imnet.n // args.chunk),
                                      desc="correlating", unit="chunk", enabled=progress):
        q = normalise(thumbs, device)
        flat += int((q.abs().sum(1) == 0).sum())
        qi, ki, sc, col_best = correlate(q, keys, args.report_threshold)
        best = torch.maximum(best, col_best)
        for a, b_, s in zip(qi.tolist(), ki.tolist(), sc.tolist()):
            pairs.append((cal_names[b_], f"train/{names[a]}", round(float(s), 4)))
        n_imnet += len(names)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t1
    comparisons = n_imnet * len(cal_names)
    work.update(match_seconds=seconds, comparisons=comparisons,
                comparisons_per_second=comparisons / max(seconds, 1e-9), device=str(device))

    unreadable = sorted([f"{args.caltech[i]}/{f}" for i, s in enumerate(cal_sets) for f in s.bad()] +
                        [f"train/{f}" for f in imnet.bad()])
    for path, why in bad:  # the reasons are known only when a thumbnail is first attempted
        print(f"{PROG}: unreadable, skipped: {path}: {why}", file=sys.stderr)
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    dup = [p for p in pairs if p[2] >= args.threshold]
    exclude = sorted({p[1] for p in dup})
    found = sorted({p[0] for p in dup})
    per_class: Dict[str, int] = {}
    for c in found:
        cls = c.rsplit("/", 2)[-2]
        per_class[cls] = per_class.get(cls, 0) + 1
    edges = [-1.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0001]
    hist = np.histogram(best.cpu().numpy(), bins=edges)[0].tolist()
    best_score_histogram = {f"{lo:g}..{hi:.2f}": n for lo, hi, n in zip(edges[:-1], edges[1:], hist)}
    report = {"threshold": args.threshold, "report_threshold": args.report_threshold, "size": args.size,
              "grey": args.grey, "imagenet": str(args.imagenet), "caltech": list(args.caltech),
              "imagenet_images": n_imnet, "caltech_images": len(cal_names), "comparisons": comparisons,
              "caltech_found": len(found), "imagenet_excluded": len(exclude),
              "per_caltech_class": dict(sorted(per_class.items())),
              "max_per_class": max(per_class.values()) if per_class else 0,
              "best_score_histogram": best_score_histogram,
              "pairs": [{"caltech": a, "imagenet": b_, "score": s} for a, b_, s in pairs],
              "unreadable": unreadable, "constant_thumbnails": flat}
    write_text(out / "exclude.txt", "".join(f"{p}\n" for p in exclude))
    write_json(out / "overlap.json", report)
    return {"report": report, "work": work, "exclude": exclude}


def read_exclude(path) -> List[str]:
    """The file paths of an exclusion list (relative to the ImageNet root), for ``FolderDataset(exclude=...)``."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find Caltech images that also appear in ImageNet's training set (normalised correlation "
                    "of small thumbnails, Section 5.2) and write the exclusion list ImageNet training uses. "
                    "Thumbnails are cached: a rerun only correlates.",
        epilog="example:\n  python -m data_prep.overlap --imagenet /data/imagenet \\\n"
               "      --caltech /data/caltech101/images /data/caltech256/images --out /data/overlap\n"
               "the list is in the format of zfcore.data.folders.FolderDataset(..., exclude=...);\n"
               "zf train --exclude FILE is planned (see book/reproducing_at_full_scale.md)")
    p.add_argument("--imagenet", required=True, help="the ImageNet root (its train/ is searched)")
    p.add_argument("--caltech", required=True, nargs="+",
                   help="folders of Caltech images (OUT/images of data_prep.caltech), one or more")
    p.add_argument("--out", required=True, help="output folder (exclude.txt, overlap.json, thumbs/)")
    p.add_argument("--threshold", type=float, default=0.95,
                   help="normalised correlation at or above which two images are the same (default 0.95)")
    p.add_argument("--report-threshold", type=float, default=0.90,
                   help="pairs at or above this are listed in overlap.json (default 0.90)")
    p.add_argument("--size", type=int, default=32, help="thumbnail side in pixels (default 32)")
    p.add_argument("--grey", action="store_true", help="grey thumbnails (colour by default)")
    p.add_argument("--chunk", type=int, default=8192, help="ImageNet thumbnails per matrix product (default 8192)")
    p.add_argument("--device", default=None, help="torch device for the products (default: cuda if available)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="processes that make thumbnails (default: CPUs, at most 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _work(args) -> int:
    if not 0 < args.report_threshold <= args.threshold <= 1:
        raise PrepError("need 0 < --report-threshold <= --threshold <= 1")
    if args.size < 2 or args.chunk < 1:
        raise PrepError("--size must be at least 2 and --chunk at least 1")
    for c in args.caltech:
        if not Path(c).is_dir():
            raise PrepError(f"Caltech image folder not found: {c}")
    result = find_overlap(args)
    r, w = result["report"], result["work"]
    print(f"caltech: {fmt_count(r['caltech_images'])} images; imagenet train: {fmt_count(r['imagenet_images'])}")
    print(f"found {r['caltech_found']} Caltech images in ImageNet (at most {r['max_per_class']} per class); "
          f"{r['imagenet_excluded']} ImageNet files to exclude -> {Path(args.out) / 'exclude.txt'}")
    print(f"thumbnails: {w['groups_computed']} folders computed in {w['thumbnail_seconds']:.1f} s "
          f"(the rest from the cache)")
    print(f"correlation: {fmt_count(w['comparisons'])} comparisons in {w['match_seconds']:.2f} s on {w['device']}: "
          f"{w['comparisons_per_second']:.3g} comparisons/s")
    if r["unreadable"]:
        print(f"unreadable images skipped: {len(r['unreadable'])}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_main(PROG, build_parser(), _work, argv)


if __name__ == "__main__":
    sys.exit(main())
