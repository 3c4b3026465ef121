"""Folder data sets in the ImageNet layout, prepared as in the paper (Section 3).

The expected layout is::

    ROOT/train/<class>/<image>
    ROOT/val/<class>/<image>        (optional; same class folders as train, or fewer)

A class is a subfolder of ``ROOT/train``; classes are sorted by name and labelled
0..C-1 in that order, and every split takes its labels from the train split (a
val class folder that train lacks is an error, a train class that val lacks is
fine). Images are found by extension (:data:`IMAGE_EXTENSIONS`, any case), in
the class folder and its subfolders.

Preprocessing, following Section 3 of Zeiler & Fergus (2014): "Each RGB image
was preprocessed by resizing the smallest dimension to 256, cropping the center
256x256 region, subtracting the per-pixel mean (across all images) and then
using 10 different sub-crops of size 224x224 (corners + center with(out)
horizontal flips)." Here the data sets do the first two steps only and return
uint8 tensors of shape (3, S, S), S = ``stored_size`` (256 in the paper);
:func:`pixel_mean` computes the (3, S, S) per-pixel training mean (cached on
disk), and the training loop subtracts it and takes the random 224 crops and
flips, or the 10 crops, on whole uint8 batches (:mod:`zfcore.data.transforms`).

Unreadable files (truncated, corrupt, empty, not an image) never stop a run:
:func:`load_image` raises :class:`BadImage`, the data set turns that into a
warning and a ``None`` image, and :func:`collate_skip_bad` and
:meth:`FolderSource.batches` leave such images out and count them.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..presets import atomic_write
from ..progress import progress_bar
from .sampling import global_batches, rank_share
from .transforms import shortest_side_center_crop

__all__ = ["IMAGE_EXTENSIONS", "BadImage", "BadImageWarning", "check_layout", "load_image",
           "FolderDataset", "collate_skip_bad", "pixel_mean", "FolderSource"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

LAYOUT = ("expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> "
          "(one subfolder per class; the val split is optional)")

#: Colour that transparent pixels are composited onto (mid-grey, so that after
#: mean subtraction they sit near zero rather than at an extreme).
ALPHA_BACKGROUND = (128, 128, 128)


class BadImage(ValueError):
    """A file that cannot be read as an image (truncated, corrupt, empty, not an image).

    Attributes:
        path: the file.
        reason: why it could not be read.
    """

    def __init__(self, path, reason: str):
        super().__init__(str(path), str(reason))  # both in args, so it pickles
        self.path = str(path)
        self.reason = str(reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class BadImageWarning(UserWarning):
    """Warned when an unreadable image is skipped (filter it with ``warnings``)."""


# --------------------------------------------------------------------------- layout


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_dirs(split_dir: str) -> List[str]:
    """Sorted names of the (non-hidden) subfolders of ``split_dir``."""
    with os.scandir(split_dir) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _iter_images(class_dir: str) -> Iterator[str]:
    """Image files under ``class_dir`` (recursively, hidden entries skipped), sorted."""
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if _is_image(f):
                yield os.path.join(dirpath, f)


def check_layout(root) -> None:
    """Check that ``root`` holds an ImageNet-layout training split.

    Raises:
        FileNotFoundError: ``root`` or ``root/train`` does not exist.
        NotADirectoryError: ``root`` or ``root/train`` is a file.
        ValueError: ``root/train`` has no class subfolders, or no images in them.
    Every message names the path and shows the expected layout.
    """
    root = os.fspath(root)
    if not os.path.exists(root):
        raise FileNotFoundError(f"data root {root} does not exist; {LAYOUT}")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"data root {root} is not a folder; {LAYOUT}")
    train = os.path.join(root, "train")
    if not os.path.exists(train):
        raise FileNotFoundError(f"no training split: {train} does not exist; {LAYOUT}")
    if not os.path.isdir(train):
        raise NotADirectoryError(f"training split {train} is not a folder; {LAYOUT}")
    classes = _class_dirs(train)
    if not classes:
        flat = any(_is_image(f) for f in os.listdir(train))
        hint = " (images lie directly in it: put them in one subfolder per class)" if flat else ""
        raise ValueError(f"training split {train} has no class subfolders{hint}; {LAYOUT}")
    for c in classes:
        if next(_iter_images(os.path.join(train, c)), None) is not None:
            return
    raise ValueError(f"training split {train} has {len(classes)} class subfolders but no images "
                     f"(extensions {', '.join(IMAGE_EXTENSIONS)}); {LAYOUT}")


# --------------------------------------------------------------------------- decoding


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 'RGB'.

    * 16-bit integer modes ('I;16', 'I;16B', 'I;16L', 'I;16N') are scaled by the
      full 16-bit range: v * 255 / 65535. So is mode 'I' when its values lie in
      0..65535 (older Pillow decodes 16-bit PNGs as 'I'), which keeps absolute
      brightness: a dark 16-bit image stays dark.
    * Mode 'F' (float), and 'I' with values outside 0..65535, are rescaled by
      the image's own range, min..max -> 0..255 (NaN/inf ignored; a constant
      image keeps its value, clipped to 0..255).
    * Alpha (RGBA, LA, PA, premultiplied RGBa/La, or a 'transparency' entry in a
      P/L/RGB/1 image) is composited onto mid-grey :data:`ALPHA_BACKGROUND`.
    * Everything else (L, 1, P, CMYK, YCbCr, RGBX, ...) goes through PIL's convert.
    """
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img).astype(np.float64)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
            a = a * (255.0 / 65535.0)
        elif hi > lo:
            a = (a - lo) * (255.0 / (hi - lo))
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or \
        img.info.get("transparency") is not None
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", img.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_image(path, stored_size: int) -> torch.Tensor:
    """Read an image file as the paper stores it (Section 3).

    The file is decoded with PIL, converted to RGB (see :func:`_to_rgb` for the
    rules on grey, palette, alpha, CMYK, 16-bit and float images: alpha is
    composited onto mid-grey (128, 128, 128), 16-bit images are scaled by
    255/65535, float images by their own min..max), its shortest side resized
    to ``stored_size`` and its centre ``stored_size`` x ``stored_size`` cropped
    (:func:`zfcore.data.transforms.shortest_side_center_crop`). For multi-frame
    files (GIF, TIFF) the first frame is used; EXIF orientation is ignored.

    Args:
        path: the image file.
        stored_size: S, the side of the stored image (256 in the paper).
    Returns:
        (3, S, S) uint8 tensor.
    Raises:
        BadImage: the file is empty, truncated, corrupt, or not an image PIL reads.
            (Truncation is detected as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
            is False, PIL's default; this module never sets it.)
    """
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise BadImage(path, "empty file (0 bytes)")
        with Image.open(path) as img:
            img.load()  # decodes now, so truncation and corruption surface here
            rgb = _to_rgb(img)
        rgb = shortest_side_center_crop(rgb, stored_size)
        a = np.array(rgb, dtype=np.uint8)  # (S, S, 3), a writable copy
    except BadImage:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise BadImage(path, f"{type(e).__name__}: {e}") from e
    if a.shape != (stored_size, stored_size, 3):
        raise BadImage(path, f"decoded to shape {a.shape}, expected ({stored_size}, {stored_size}, 3)")
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------- data set


def _norm_rel(p) -> str:
    """A path relative to the root, normalised for comparison ('/' separators)."""
    return os.path.normpath(os.fspath(p).replace("\\", "/")).replace(os.sep, "/")


class FolderDataset(Dataset):
    """One split of an ImageNet-layout folder, as (3, S, S) uint8 images (Section 3).

    Args:
        root: the data root (``ROOT`` in ``ROOT/train/<class>/<image>``).
        split: the subfolder to read ('train', 'val', ...). Labels always come
            from the train split's class folders, so the train split must exist.
        stored_size: S, side of the stored images (256 in the paper).
        exclude: optional iterable of file paths relative to ``root`` (e.g.
            ``"train/n01440764/x.JPEG"``) to leave out, such as the images that
            overlap a transfer data set.

    Attributes:
        root, split, stored_size.
        classes: the class folder names of the train split, sorted; label i is classes[i].
        samples: (path, label) pairs, sorted by class then path.
        excluded: how many files ``exclude`` removed from this split.

    Raises:
        FileNotFoundError: no root, no train split, or no ``split`` folder.
        ValueError: no classes or images in train, or class folders in ``split``
            that train does not have.
    """

    def __init__(self, root, split: str = "train", stored_size: int = 256,
                 exclude: Optional[Iterable] = None):
        root = os.fspath(root)
        check_layout(root)
        if stored_size < 1:
            raise ValueError(f"stored_size must be positive, got {stored_size}")
        self.root, self.split, self.stored_size = root, split, int(stored_size)
        train_dir = os.path.join(root, "train")
        split_dir = os.path.join(root, split)
        self.classes: List[str] = _class_dirs(train_dir)
        if split != "train":
            if not os.path.isdir(split_dir):
                raise FileNotFoundError(f"split {split!r} not found: {split_dir} is not a folder; {LAYOUT}")
            extra = sorted(set(_class_dirs(split_dir)) - set(self.classes))
            if extra:
                shown = ", ".join(extra[:10]) + (", ..." if len(extra) > 10 else "")
                raise ValueError(f"{split_dir} has {len(extra)} class folder(s) that {train_dir} lacks "
                                 f"({shown}); every {split} class must also be a train class; {LAYOUT}")
        excluded = {_norm_rel(p) for p in exclude} if exclude is not None else set()
        self.samples: List[Tuple[str, int]] = []
        self.excluded = 0
        empty = []
        for label, c in enumerate(self.classes):
            class_dir = os.path.join(split_dir, c)
            if not os.path.isdir(class_dir):
                continue  # a class missing from val is fine
            n = 0
            for p in _iter_images(class_dir):
                if excluded and _norm_rel(os.path.relpath(p, root)) in excluded:
                    self.excluded += 1
                    continue
                self.samples.append((p, label))
                n += 1
            if n == 0:
                empty.append(c)
        if split == "train" and empty:
            warnings.warn(f"{len(empty)} class folder(s) of {train_dir} have no images "
                          f"(e.g. {', '.join(empty[:5])}); their labels are kept but never seen",
                          stacklevel=2)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[Optional[torch.Tensor], int]:
        """(image (3, S, S) uint8, label); (None, label) with a warning if the file is unreadable."""
        path, label = self.samples[i]
        try:
            return load_image(path, self.stored_size), label
        except BadImage as e:
            warnings.warn(f"skipping unreadable image {e.path}: {e.reason}", BadImageWarning, stacklevel=2)
            return None, label

    def __repr__(self) -> str:
        return (f"FolderDataset(root={self.root!r}, split={self.split!r}, stored_size={self.stored_size}, "
                f"{len(self)} images, {self.num_classes} classes)")


def collate_skip_bad(batch: Sequence[Tuple[Optional[torch.Tensor], int]]
                     ) -> Tuple[Optional[torch.Tensor], torch.Tensor, int]:
    """Stack the readable items of a batch of ``FolderDataset`` items.

    Returns:
        images: (N, 3, S, S) uint8 of the N good items, or None if every item is bad
            (S cannot be known then).
        labels: (N,) int64 (empty if every item is bad).
        skipped: how many items were bad (image None).
    """
    good = [(img, label) for img, label in batch if img is not None]
    skipped = len(batch) - len(good)
    if not good:
        return None, torch.empty(0, dtype=torch.int64), skipped
    images = torch.stack([img for img, _ in good])
    labels = torch.tensor([label for _, label in good], dtype=torch.int64)
    return images, labels, skipped


# --------------------------------------------------------------------------- pixel mean


def _load_mean(cache_path: str, stored_size: int) -> torch.Tensor:
    try:
        mean = torch.load(cache_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"pixel-mean cache {cache_path} is unreadable or corrupt "
                         f"({type(e).__name__}: {e}); delete it to recompute the mean") from e
    shape = (3, stored_size, stored_size)
    if not isinstance(mean, torch.Tensor) or tuple(mean.shape) != shape or not mean.is_floating_point():
        got = (f"a {tuple(mean.shape)} {mean.dtype} tensor" if isinstance(mean, torch.Tensor)
               else type(mean).__name__)
        raise ValueError(f"pixel-mean cache {cache_path} holds {got}, expected a float tensor of shape "
                         f"{shape}; delete it to recompute the mean")
    return mean.float()


def pixel_mean(dataset: FolderDataset, cache_path=None, batch_size: int = 64, workers: int = 0,
               progress: bool = True) -> torch.Tensor:
    """The per-pixel mean over the readable images of ``dataset`` (Section 3).

    The paper subtracts "the per-pixel mean (across all images)" of the training
    set; pass the train split. Sums are accumulated in float64.

    Args:
        dataset: a :class:`FolderDataset` (normally the train split).
        cache_path: optional file. If it exists the mean is loaded from it (no
            image is read); else the mean is computed and saved there atomically.
            The cache is not keyed by the data: delete it when the data change.
        batch_size, workers: of the DataLoader that decodes the images.
        progress: show a tqdm progress bar.
    Returns:
        (3, S, S) float32, in pixel units (0..255).
    Raises:
        ValueError: the cache file is corrupt or of the wrong shape (the message
            names it and says to delete it), or no image could be read.
    """
    s = dataset.stored_size
    if cache_path is not None:
        cache_path = os.fspath(cache_path)
        if os.path.exists(cache_path):
            return _load_mean(cache_path, s)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skip_bad)
    total = torch.zeros(3, s, s, dtype=torch.float64)
    count = 0
    for images, _, _ in progress_bar(loader, desc="pixel mean", unit="batch", enabled=progress):
        if images is None:
            continue
        total += images.sum(0, dtype=torch.float64)
        count += images.shape[0]
    if count == 0:
        raise ValueError(f"no readable images in {dataset.root}/{dataset.split} to compute the pixel mean")
    mean = (total / count).float()
    if cache_path is not None:
        atomic_write(cache_path, lambda f: torch.save(mean, f))
    return mean


# --------------------------------------------------------------------------- source


def _batch_indices(n: int, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                   rank: int = 0, world: int = 1, drop_last: Optional[bool] = None) -> List[List[int]]:
    """The index lists of :meth:`FolderSource.batches` for one rank (see there)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
    out = []
    for batch in global_batches(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                drop_last=drop_last):
        mine = rank_share(batch, rank, world).tolist()
        if mine:
            out.append(mine)
    return out


class FolderSource:
    """The training loop's view of one split of an ImageNet-layout folder (Section 3).

    Args:
        root: the data root.
        split: 'train', 'val', ...
        stored_size: S, side of the stored images (256 in the paper).
        workers: DataLoader worker processes that decode images.
        exclude: file paths relative to ``root`` to leave out (see :class:`FolderDataset`);
            also applied to the train split when the mean is computed.
        mean: the (3, S, S) per-pixel training mean, or None to compute it (on the
            first call of :meth:`mean`) from the train split of ``root`` with
            :func:`pixel_mean`, cached at ``mean_cache`` if given.
        mean_cache: file for the cached mean.

    Attributes:
        classes, num_classes, stored_size; dataset (the :class:`FolderDataset`);
        skipped: unreadable images met so far, over all passes.
    """

    def __init__(self, root, split: str = "train", stored_size: int = 256, workers: int = 0,
                 exclude: Optional[Iterable] = None, mean: Optional[torch.Tensor] = None,
                 mean_cache=None):
        exclude = list(exclude) if exclude is not None else None
        self.root, self.split, self.workers = os.fspath(root), split, int(workers)
        self._exclude = exclude
        self.dataset = FolderDataset(root, split, stored_size, exclude=exclude)
        self.classes: List[str] = self.dataset.classes
        self.num_classes: int = len(self.classes)
        self.stored_size: int = self.dataset.stored_size
        self.skipped: int = 0
        self.mean_cache = mean_cache
        if mean is not None:
            mean = torch.as_tensor(mean, dtype=torch.float32)
            shape = (3, self.stored_size, self.stored_size)
            if tuple(mean.shape) != shape:
                raise ValueError(f"mean has shape {tuple(mean.shape)}, expected {shape}")
        self._mean = mean

    def __len__(self) -> int:
        return len(self.dataset)

    def mean(self) -> torch.Tensor:
        """(3, S, S) float32: the per-pixel mean of the train split (computed once, then kept)."""
        if self._mean is None:
            train = self.dataset if self.split == "train" else \
                FolderDataset(self.root, "train", self.stored_size, exclude=self._exclude)
            self._mean = pixel_mean(train, self.mean_cache, workers=self.workers)
        return self._mean

    def batches(self, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, rank: int = 0,
                world: int = 1, drop_last: Optional[bool] = None, progress: bool = False
                ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the split, in mini-batches.

        Order: if ``shuffle``, a permutation of range(len(self)) drawn from a
        torch.Generator seeded with ``seed * 1_000_003 + epoch`` (the same for
        every rank), else range order. The global batches are consecutive
        slices of ``batch_size`` of that order; ``drop_last`` (default: equal to
        ``shuffle``) drops the last partial one. Rank ``rank`` of ``world`` takes
        ``global_batch[rank::world]``. Without drop_last, the last global batch
        may give some ranks fewer items, or none (that batch is then not
        yielded on those ranks).

        Yields:
            (images (n, 3, S, S) uint8, labels (n,) int64), unreadable images
            left out (counted in ``self.skipped``; a batch with none readable is
            not yielded). At the end of a pass with unreadable images, one
            summary warning "skipped K unreadable images of N".
        """
        index_lists = _batch_indices(len(self), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                     rank=rank, world=world, drop_last=drop_last)
        if not index_lists:
            return
        loader = DataLoader(self.dataset, batch_sampler=index_lists, num_workers=self.workers,
                            collate_fn=collate_skip_bad)
        seen = skipped = 0
        for images, labels, bad in progress_bar(loader, desc=f"{self.split} e{epoch}", unit="batch",
                                                enabled=progress):
            seen += labels.shape[0] + bad
            skipped += bad
            self.skipped += bad
            if images is not None:
                yield images, labels
        if skipped:
            warnings.warn(f"skipped {skipped} unreadable images of {seen}", BadImageWarning, stacklevel=2)

    def __repr__(self) -> str:
        return (f"FolderSource(root={self.root!r}, split={self.split!r}, stored_size={self.stored_size}, "
                f"{len(self)} images, {self.num_classes} classes)")
