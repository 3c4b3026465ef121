"""What the data_prep scripts share: archives, image checks, atomic writes, markers, workers.

Every script follows the same rules:

* **Resumable.** Work is cut into units (an ImageNet class, the validation set,
  the images of a Caltech archive). A unit is written into a hidden staging
  folder ``OUT/.data_prep/staging/...``, moved into place with one rename, and
  only then marked done by a small JSON file under ``OUT/.data_prep/done/``
  that also records what the unit found (images written, bad files, converted
  files). A rerun skips marked units; a unit without a marker (killed half-way)
  is deleted and redone from the archive.
* **Idempotent.** The outputs (images, lists, summaries) hold no times or other
  run-dependent values, and a list or summary is rewritten only when its
  content changes, so a second run leaves every file as it was.
* **Images are checked.** Each file is decoded in full with Pillow
  (:func:`check_image`). Empty, truncated or corrupt files and files that are
  not images are reported and skipped. Odd files, i.e. anything but a JPEG in
  RGB or greyscale (CMYK or YCCK JPEGs, a PNG named ``.JPEG``, ...), are by
  default re-encoded as RGB JPEGs (quality 95) with
  :func:`zfcore.data.folders._to_rgb`, the rule zfcore itself reads images
  with; ``--odd keep`` keeps their bytes as they are (zfcore reads them either
  way). Greyscale JPEGs are kept unchanged: every decoder reads them, and
  zfcore turns them into RGB when it loads them.
* **Clear failures.** A missing, unreadable or non-tar archive stops the
  script with exit status 2 and a message naming the file (:class:`PrepError`).
"""
from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import warnings
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # zfcore from this checkout, even when it is not installed
    sys.path.insert(0, str(REPO))

from PIL import Image, UnidentifiedImageError  # noqa: E402

from zfcore.progress import progress_bar  # noqa: E402,F401  (re-exported for the scripts)

__all__ = ["PrepError", "run_main", "print_report", "Archive", "check_image", "write_bytes_atomic", "write_json",
           "read_json", "Markers", "ordered_map", "progress_bar", "JPEG_QUALITY", "remove_tree"]

_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")

#: JPEG quality of re-encoded odd images.
JPEG_QUALITY = 95
JPEG_EXTENSIONS = (".jpg", ".jpeg")


class PrepError(Exception):
    """A problem the user has to fix (a missing or unreadable archive, a wrong layout).

    :func:`run_main` prints ``<prog>: error: <message>`` and exits with status 2.
    """


def run_main(prog: str, parser, work: Callable, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` with ``parser``, call ``work(args)``, turn failures into exit statuses.

    Returns work's status (0 unless it says otherwise); 2 with a message on
    :class:`PrepError`; 130 on Ctrl-C, with a reminder that a rerun resumes.
    """
    args = parser.parse_args(argv)
    try:
        return int(work(args) or 0)
    except PrepError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- archives


class Archive:
    """A tar archive (plain or compressed) or an already extracted folder, read the same way.

    Args:
        path: the archive file, or a folder holding its extracted contents.
        what: what it is, for messages (e.g. "the ImageNet validation archive").

    Raises:
        PrepError: the path does not exist, cannot be read, or is neither a folder
            nor a tar archive.
    """

    def __init__(self, path, what: str):
        self.path = Path(path)
        self.what = what
        if not self.path.exists():
            raise PrepError(f"{what} not found: {self.path} does not exist")
        self.is_dir = self.path.is_dir()
        if not os.access(self.path, os.R_OK | (os.X_OK if self.is_dir else 0)):
            raise PrepError(f"{what} is not readable: {self.path} (check its permissions)")
        if not self.is_dir:
            try:
                with open(self.path, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise PrepError(f"{what} is not readable: {self.path} ({e})") from e
            try:
                ok = tarfile.is_tarfile(self.path)
            except OSError as e:
                raise PrepError(f"{what} is not readable: {self.path} ({e})") from e
            if not ok:
                raise PrepError(f"{what} is not a tar archive (or is damaged): {self.path}")
        self._tar: Optional[tarfile.TarFile] = None
        self._members = None

    # random access (uncompressed tars seek; compressed ones are re-read, so prefer files())
    def _open(self) -> tarfile.TarFile:
        if self._tar is None:
            try:
                self._tar = tarfile.open(self.path, "r:*")
            except (tarfile.TarError, OSError, EOFError) as e:
                raise PrepError(f"{self.what} cannot be opened as a tar archive: {self.path} ({e})") from e
        return self._tar

    def members(self) -> List[tarfile.TarInfo]:
        """The archive's regular-file members, in archive order (tar archives only)."""
        if self._members is None:
            try:
                self._members = [m for m in self._open().getmembers() if m.isfile()]
            except (tarfile.TarError, OSError, EOFError) as e:
                raise PrepError(f"{self.what} is damaged: {self.path} ({e})") from e
        return self._members

    def names(self) -> List[str]:
        """Paths of the regular files inside, '/'-separated, in archive (or sorted) order."""
        if self.is_dir:
            out = []
            for dirpath, dirnames, filenames in os.walk(self.path):
                dirnames.sort()
                rel = Path(dirpath).relative_to(self.path)
                out.extend((rel / f).as_posix() for f in sorted(filenames))
            return out
        return [m.name for m in self.members()]

    def read(self, name: str) -> bytes:
        """The bytes of one file inside."""
        if self.is_dir:
            return (self.path / name).read_bytes()
        tar = self._open()
        try:
            f = tar.extractfile(name)
            if f is None:
                raise KeyError(name)
            return f.read()
        except KeyError:
            raise PrepError(f"{self.what} has no file {name}: {self.path}") from None
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PrepError(f"{self.what} is damaged: {self.path} ({name}: {e})") from e

    def files(self, wanted: Optional[Callable[[str], bool]] = None) -> Iterator[Tuple[str, bytes]]:
        """(name, bytes) of every regular file, streamed in archive order.

        ``wanted(name)`` false skips a file without reading it. A compressed
        archive is decompressed once, front to back.
        """
        if self.is_dir:
            for name in self.names():
                if wanted is None or wanted(name):
                    yield name, (self.path / name).read_bytes()
            return
        try:
            with tarfile.open(self.path, "r|*") as tar:
                for m in tar:
                    if m.isfile() and (wanted is None or wanted(m.name)):
                        yield m.name, tar.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PrepError(f"{self.what} is damaged: {self.path} ({e})") from e

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


class BoundedReader(io.RawIOBase):
    """The ``size`` bytes of an open file from ``offset`` on, as a file object.

    Lets ``tarfile.open(fileobj=BoundedReader(...), mode="r|")`` stream a tar
    that is itself a member of an uncompressed tar, without copying it out.
    """

    def __init__(self, f, offset: int, size: int):
        super().__init__()
        self._f = f
        self._left = int(size)
        f.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = self._f.read(n)
        b[:len(data)] = data
        self._left -= len(data)
        return len(data)


# --------------------------------------------------------------------------- images


def check_image(data: bytes, odd: str = "convert") -> Tuple[str, Optional[bytes], str]:
    """Decode an image file's bytes in full and say what to do with it.

    Args:
        data: the file's bytes.
        odd: ``"convert"`` (re-encode anything but an RGB or greyscale JPEG as an
            RGB JPEG, quality :data:`JPEG_QUALITY`) or ``"keep"`` (keep its bytes).
    Returns:
        (status, bytes to write, note): status ``"ok"`` (data unchanged),
        ``"converted"`` (new JPEG bytes), ``"odd"`` (kept as is under
        ``odd="keep"``) or ``"bad"`` (bytes None; the note says why: empty,
        truncated, corrupt, not an image). The note of an odd file names its
        format and mode, e.g. ``"PNG L"`` or ``"JPEG CMYK"``.
    """
    if odd not in ("convert", "keep"):
        raise ValueError(f"odd must be 'convert' or 'keep', got {odd!r}")
    if len(data) == 0:
        return "bad", None, "empty file (0 bytes)"
    from zfcore.data.folders import _to_rgb  # zfcore's own rule (alpha, 16-bit, CMYK, ...); imports torch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. 'Possibly corrupt EXIF data': harmless
            with Image.open(io.BytesIO(data)) as img:
                fmt, mode = img.format, img.mode
                img.load()  # full decode: truncation and corruption surface here
                if fmt == "JPEG" and mode in ("RGB", "L"):
                    return "ok", data, ""
                note = f"{fmt} {mode}"
                if odd == "keep":
                    return "odd", data, note
                rgb = _to_rgb(img)
                out = io.BytesIO()
                rgb.save(out, "JPEG", quality=JPEG_QUALITY)
                return "converted", out.getvalue(), note
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        if isinstance(e, (KeyboardInterrupt, MemoryError)):
            raise
        if isinstance(e, UnidentifiedImageError):
            return "bad", None, "not an image (or not a format Pillow reads)"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = _ADDRESS.sub("", reason)  # no object addresses: the report is the same every run
        return "bad", None, f"{type(e).__name__}: {reason}" if reason else type(e).__name__


def output_name(name: str, status: str) -> str:
    """The file name to write: a converted file that was not named .jpg/.jpeg gets '.jpg'."""
    if status == "converted" and not name.lower().endswith(JPEG_EXTENSIONS):
        return os.path.splitext(name)[0] + ".jpg"
    return name


def check_and_write(job) -> Tuple[str, str, str, Optional[str]]:
    """Worker: ``job = (name, data, folder, odd)``; check the image and write it into ``folder``.

    Returns (name, status, note, written file name or None). The folder is a
    staging folder, so files need no atomic rename of their own.
    """
    name, data, folder, odd = job
    status, out, note = check_image(data, odd)
    if out is None:
        return name, status, note, None
    fname = output_name(os.path.basename(name), status)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, fname), "wb") as f:
        f.write(out)
    return name, status, note, fname


# --------------------------------------------------------------------------- files


def write_bytes_atomic(path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename
    (:func:`zfcore.presets.atomic_write`)."""
    from zfcore.artifacts import atomic_write
    atomic_write(path, lambda f: f.write(data), fsync=fsync)


def dumps(obj) -> str:
    """JSON text as every data_prep file writes it (sorted keys, one-space indent)."""
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def write_text(path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds exactly it. True if written."""
    path = Path(path)
    data = text.encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes_atomic(path, data)
    return True


def write_json(path, obj) -> bool:
    """:func:`write_text` of :func:`dumps`; True if the file changed."""
    return write_text(path, dumps(obj))


def read_json(path):
    """The JSON in ``path``, or None if it is missing or unreadable (a damaged file is redone)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def remove_tree(path) -> None:
    """Delete a file or folder if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class Markers:
    """Completion markers and staging folders of one output folder (``OUT/.data_prep``).

    Hidden, so zfcore's folder data sets never see them.
    """

    def __init__(self, out):
        self.base = Path(out) / ".data_prep"

    def _file(self, unit: str) -> Path:
        return self.base / "done" / f"{unit}.json"

    def done(self, unit: str) -> Optional[dict]:
        """The record of a finished unit, or None if it is not (or its marker is damaged)."""
        rec = read_json(self._file(unit))
        return rec if isinstance(rec, dict) else None

    def mark(self, unit: str, record: dict) -> None:
        write_json(self._file(unit), record)

    def clear(self, unit: str) -> None:
        remove_tree(self._file(unit))

    def units(self, prefix: str) -> List[str]:
        """Names of the finished units under ``prefix`` (e.g. 'train'), sorted."""
        folder = self.base / "done" / prefix
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}/{p.stem}" for p in folder.glob("*.json"))

    def staging(self, unit: str) -> Path:
        """A fresh, empty staging folder for ``unit`` (whatever a killed run left is deleted)."""
        path = self.base / "staging" / unit
        remove_tree(path)
        path.mkdir(parents=True)
        return path


def commit_folder(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place (whatever was at ``final`` is replaced)."""
    remove_tree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)


# --------------------------------------------------------------------------- workers


def _run_chunk(fn, chunk):
    return [fn(x) for x in chunk]


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    chunk = []
    for x in items:
        chunk.append(x)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ordered_map(fn, items: Iterable, workers: int = 0, chunk: int = 32, ahead: int = 2) -> Iterator:
    """``map(fn, items)`` over ``workers`` processes, in order, reading ``items`` lazily.

    Unlike ``Pool.imap``, at most ``workers * ahead`` chunks of ``chunk`` items
    are in flight, so streaming a 6 GB archive never holds it in memory.
    ``workers <= 1`` runs in this process. ``fn`` must be a module-level function.
    """
    if workers <= 1:
        for x in items:
            yield fn(x)
        return
    import zfcore.data.folders  # noqa: F401  (torch: imported once here, shared by the forked workers)
    with multiprocessing.get_context().Pool(workers) as pool:
        pending: deque = deque()
        for c in _chunks(items, chunk):
            pending.append(pool.apply_async(_run_chunk, (fn, c)))
            while len(pending) >= workers * ahead:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def print_report(summary: dict, summary_path, shown: int = 5) -> None:
    """The end of a script's run: the files skipped, re-encoded, kept or ignored (the first
    ``shown`` of each with the reason), the warnings (to stderr), and where the summary is."""
    for key, what in (("bad", "bad files skipped"), ("converted", "odd files re-encoded as RGB JPEG"),
                      ("odd", "odd files kept"), ("ignored", "entries ignored")):
        if summary.get(key):
            print(f"{what}: {len(summary[key])}"
                  + "".join(f"\n  {a}: {b}" for a, b in summary[key][:shown]))
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"summary: {summary_path}")


def fmt_count(n: int) -> str:
    return f"{n:,}"
