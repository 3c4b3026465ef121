"""Folder data sets in the ImageNet layout, prepared as in the paper (Section 3).

The expected layout is::

    ROOT/train/<class>/<image>
    ROOT/val/<class>/<image>        (optional; same class folders as train, or fewer)

A class is a subfolder of ``ROOT/train``; classes are sorted by name and labelled
0..C-1 in that order, and every split takes its labels from the train split (a
val class folder that train lacks is an error, a train class that val lacks is
fine). Images are found by extension (:data:`IMAGE_EXTENSIONS`, any case), in
the class folder and its subfolders, by :func:`iter_images`: symbolic links are
followed but no folder is walked twice, and what cannot be followed (a symlink
loop, a broken link) is left out with its reason (``FolderDataset.left_out``).

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

import errno
import os
import stat
import warnings
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..artifacts import atomic_write
from ..progress import progress_bar
from .sampling import global_batches, rank_share
from .transforms import shortest_side_center_crop

__all__ = ["IMAGE_EXTENSIONS", "BadImage", "BadImageWarning", "check_layout", "iter_images",
           "find_images", "file_problem", "load_image",
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


def _stat_problem(path: str, err: OSError) -> str:
    """Why the symbolic link ``path`` cannot be followed (``err``: what ``os.stat`` raised)."""
    if err.errno == errno.ELOOP:
        return "symlink loop (its chain of links never reaches a file or folder)"
    if err.errno == errno.ENOENT:
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symlink (its target {target} does not exist)"
    return f"unreadable symlink ({err.strerror or type(err).__name__})"


def file_problem(path) -> Optional[str]:
    """Why ``path``, given as one image file, is not a file to read; None if it is one.

    The reasons: it does not exist, is a folder, is a symlink loop or a broken
    link (naming its target), or is not a regular file (a FIFO, a socket ...,
    which would block or fail when read). Whether its content is an image is
    for :func:`load_image` to say.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as err:
        if os.path.islink(path):
            return _stat_problem(path, err)
        if err.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read ({err.strerror or type(err).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def iter_images(folder, *, recursive: bool = True) -> Iterator[Tuple[str, Optional[str]]]:
    """Walk ``folder`` for image files, following symbolic links safely.

    Order (what ``os.walk(folder, followlinks=True)`` gives with sorted names):
    a folder's image files sorted by name, then its subfolders, sorted, each
    walked in turn. Names starting with "." (hidden) and files whose extension
    is not one of :data:`IMAGE_EXTENSIONS` (any case) are passed over silently.

    Symbolic links are followed, but no folder is ever walked twice: a link to
    a folder already walked (its own folder or an ancestor: a loop), or to a
    folder inside a tree being walked (reached under its own name), is left
    out; a link out of the tree is followed once. Folders are told apart by
    their (st_dev, st_ino).

    Args:
        folder: the top folder.
        recursive: walk subfolders (and links to folders); else only the files
            directly in ``folder``.
    Yields:
        ``(path, None)`` for each image file (a regular file, or a link to one),
        and ``(path, reason)`` for each entry left out: a link loop, a broken
        link, a link to a folder already walked, an unreadable folder, an
        image-named entry that is not a regular file (a FIFO, a socket ...).
        A broken or looping link is reported when its name is an image's, or
        (``recursive``) whatever its name, since it may have meant a folder.
        Paths are ``folder`` joined with the names walked (links are not
        resolved in them).
    """
    top = os.fspath(folder)
    try:
        st = os.stat(top)
    except OSError as e:
        yield top, f"unreadable folder ({e.strerror or type(e).__name__})"
        return
    walked = {(st.st_dev, st.st_ino): top}          # real folders walked -> the path walked as
    roots = [os.path.realpath(top)]                 # real paths of the trees being walked
    yield from _walk(top, walked, roots, recursive)


def _walk(d: str, walked: dict, roots: List[str], recursive: bool) -> Iterator[Tuple[str, Optional[str]]]:
    try:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield d, f"unreadable folder ({e.strerror or type(e).__name__})"
        return
    subdirs = []
    for e in entries:
        if e.name.startswith("."):
            continue
        path = os.path.join(d, e.name)
        if e.is_symlink():
            try:
                st = os.stat(path)
            except OSError as err:
                if recursive or _is_image(e.name):
                    yield path, _stat_problem(path, err)
                continue
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    subdirs.append((path, st, True))
                continue
            regular = stat.S_ISREG(st.st_mode)
        elif e.is_dir(follow_symlinks=False):
            if recursive:
                subdirs.append((path, None, False))
            continue
        else:
            regular = e.is_file(follow_symlinks=False)
        if _is_image(e.name):
            yield (path, None) if regular else (path, "not a regular file")
    for path, st, link in subdirs:
        try:
            st = st if st is not None else os.stat(path)
        except OSError as err:
            yield path, f"unreadable folder ({err.strerror or type(err).__name__})"
            continue
        key = (st.st_dev, st.st_ino)
        if key in walked:
            first = walked[key]
            if _inside(path, first):
                yield path, f"symlink loop (it leads back to {first}, a folder that holds it)"
            else:
                yield path, f"{'symlink to ' if link else ''}a folder already walked as {first}"
            continue
        if link:
            real = os.path.realpath(path)
            holder = next((r for r in roots if _inside(r, real)), None)
            if holder is not None:
                yield path, f"symlink loop (it leads to {real}, a folder that holds {holder})"
                continue
            into = next((r for r in roots if _inside(real, r)), None)
            if into is not None and not any(
                    part.startswith(".") for part in os.path.relpath(real, into).split(os.sep)):
                yield path, f"symlink to {real}, inside the folder walked (its images are listed there)"
                continue
            roots.append(real)
        walked[key] = path
        yield from _walk(path, walked, roots, recursive)


def _iter_images(class_dir: str) -> Iterator[str]:
    """Image files under ``class_dir`` (recursively, hidden entries skipped), in
    :func:`iter_images` order; the entries it leaves out are not reported."""
    for path, reason in iter_images(class_dir):
        if reason is None:
            yield path


def find_images(folder, *, recursive: bool = True) -> Tuple[List[str], List[Tuple[str, str]]]:
    """``(image paths, [(path, reason) left out])`` of :func:`iter_images`."""
    found, left_out = [], []
    for path, reason in iter_images(folder, recursive=recursive):
        (found.append(path) if reason is None else left_out.append((path, reason)))
    return found, left_out


def _class_dirs(split_dir: str, left_out: Optional[List[Tuple[str, str]]] = None) -> List[str]:
    """Sorted names of the (non-hidden) subfolders of ``split_dir``, links to folders
    included. A link that cannot be followed (broken, a loop), or that leads back to
    ``split_dir`` or a folder above it, is not a class: it is added to ``left_out`` as
    ``(path, reason)`` when that list is given."""
    names = []
    real = os.path.realpath(split_dir)
    with os.scandir(split_dir) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith("."):
            continue
        path = os.path.join(split_dir, e.name)
        if not e.is_symlink():
            if e.is_dir(follow_symlinks=False):
                names.append(e.name)
            continue
        try:
            st = os.stat(path)
        except OSError as err:
            problem = _stat_problem(path, err)
        else:
            if not stat.S_ISDIR(st.st_mode):
                continue
            target = os.path.realpath(path)
            if not _inside(real, target):
                names.append(e.name)
                continue
            problem = f"symlink loop (it leads back to {target}, a folder that holds it)"
        if left_out is not None:
            left_out.append((path, problem))
    return names


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
        BadImage: the path is not a readable file (:func:`file_problem`: missing, a
            folder, a symlink loop, a broken link, a FIFO ...), or the file is empty,
            truncated, corrupt, not an image PIL reads, or larger than PIL's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, doubled).
            (Truncation is detected as long as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
            is False, PIL's default; this module never sets it.)
    """
    path = os.fspath(path)
    try:
        problem = file_problem(path)
        if problem is not None:
            raise BadImage(path, problem)
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
        samples: (path, label) pairs, sorted by class then path (in :func:`iter_images`
            order within a class).
        excluded: how many files ``exclude`` removed from this split.
        left_out: ``(path, reason)`` of the entries the walk could not or would not
            follow (symlink loops, broken links, links to folders already walked: see
            :func:`iter_images`; class folders of that kind too), warned about once
            with a :class:`BadImageWarning`.

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
        self.left_out: List[Tuple[str, str]] = []
        self.classes: List[str] = _class_dirs(train_dir, self.left_out if split == "train" else None)
        present = set(self.classes)
        if split != "train":
            if not os.path.isdir(split_dir):
                raise FileNotFoundError(f"split {split!r} not found: {split_dir} is not a folder; {LAYOUT}")
            present = set(_class_dirs(split_dir, self.left_out))
            extra = sorted(present - set(self.classes))
            if extra:
                shown = ", ".join(extra[:10]) + (", ..." if len(extra) > 10 else "")
                raise ValueError(f"{split_dir} has {len(extra)} class folder(s) that {train_dir} lacks "
                                 f"({shown}); every {split} class must also be a train class; {LAYOUT}")
        excluded = {_norm_rel(p) for p in exclude} if exclude is not None else set()
        self.samples: List[Tuple[str, int]] = []
        self.excluded = 0
        empty = []
        for label, c in enumerate(self.classes):
            if c not in present:
                continue  # a class missing from val is fine
            n = 0
            for p, reason in iter_images(os.path.join(split_dir, c)):
                if reason is not None:
                    self.left_out.append((p, reason))
                    continue
                if excluded and _norm_rel(os.path.relpath(p, root)) in excluded:
                    self.excluded += 1
                    continue
                self.samples.append((p, label))
                n += 1
            if n == 0:
                empty.append(c)
        if self.left_out:
            shown = "; ".join(f"{p}: {r}" for p, r in self.left_out[:3])
            more = f" (and {len(self.left_out) - 3} more)" if len(self.left_out) > 3 else ""
            warnings.warn(f"{len(self.left_out)} entries of {split_dir} left out: {shown}{more}",
                          BadImageWarning, stacklevel=2)
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
