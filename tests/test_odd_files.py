"""A folder of odd files given to ``zf mine``, ``zf project`` and ``zf occlude`` (issue 14, item 4).

Everything is made here, in tmp_path, with Pillow and numpy. What counts as good:

* converted to RGB and processed, by :func:`zfcore.data.folders.load_image`'s rules
  (``_to_rgb``): grey (L), CMYK, palette with a transparent entry (P + transparency:
  composited onto mid-grey), RGBA (likewise), 16-bit grey (I;16: scaled by 255/65535),
  1-bit, GIF (the first frame, animated or not), WebP, TIFF, an upper-case ``.JPG``,
  names with spaces, accents, CJK characters or bytes that are not UTF-8, and a link
  to a good file;
* resized like any other: a 6000x4000 image (shortest side down to the stored size)
  and a 5x5 one (up to it);

and bad, skipped with its reason: a text file named ``.jpg`` ("cannot identify"), an
empty file ("empty"), a truncated JPEG and PNG ("truncated"), a PNG whose header claims
20000x20000 pixels, past Pillow's decompression-bomb limit ("decompression bomb"), a
symlink loop ``loop_a.jpg -> loop_b.jpg -> loop_a.jpg`` and a broken link ("symlink
loop", "broken symlink"), a FIFO named ``.png`` ("not a regular file": reading it would
block). A link from the folder to itself (``self -> .``) is a
folder: ``zf mine`` reads only the files directly in its folder, so it is not listed;
given to ``zf occlude`` as an image it is skipped ("is a folder"); a folder data set
leaves it out as a loop.

Exit statuses (``zf <command> --help``): 0 when at least one image was processed (the
skipped ones named on stderr and in OUT/skipped.json); 2 when none could be.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from zfcore.cli import main
from zfcore.data.folders import BadImageWarning, FolderDataset

REPO = Path(__file__).resolve().parents[1]
NOT_UTF8 = b"caf\xe9 latin-1.png"          # a name as an old archive may write it


def _noise(w, h, seed=0, mode="RGB"):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a, "RGB").convert(mode)


def _palette_with_transparency():
    img = Image.new("P", (40, 30), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    img.paste(1, (20, 0, 40, 30))
    return img


def _bomb_png() -> bytes:
    """A PNG header claiming 20000x20000 grey pixels (400 M, past 2 * PIL.Image.MAX_IMAGE_PIXELS):
    Pillow refuses it when opening, before any pixel is decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _truncated(img, fmt) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt)
    return b.getvalue()[: len(b.getvalue()) // 2]


def make_odd_folder(d: Path):
    """Write the odd files into ``d``; return (good names, {bad name: reason fragment})."""
    d.mkdir(parents=True)
    Image.new("L", (50, 40), 90).save(d / "grey.png")
    Image.new("CMYK", (40, 30), (0, 128, 200, 10)).save(d / "cmyk.jpg", quality=95)
    _palette_with_transparency().save(d / "palette transparent.png", transparency=0)
    Image.new("RGBA", (24, 36), (255, 0, 0, 100)).save(d / "rgba.png")
    Image.fromarray(np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).save(d / "sixteen_bit.png")
    assert Image.open(d / "sixteen_bit.png").mode in ("I;16", "I")
    Image.fromarray(np.indices((20, 30)).sum(0) % 2 == 0).save(d / "one_bit.png")
    assert Image.open(d / "one_bit.png").mode == "1"
    Image.new("RGB", (6000, 4000), (10, 120, 200)).save(d / "huge.png")     # flat: a small file
    _noise(5, 5, 1).save(d / "tiny_5x5.png")
    _noise(30, 20, 2, "P").save(d / "still.gif")
    frames = [_noise(30, 20, s, "P") for s in (3, 4, 5)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(d / "animated.gif"), "n_frames", 1) == 3
    if features.check("webp"):
        _noise(30, 30, 6).save(d / "image.webp")
    _noise(30, 30, 7).save(d / "image.tiff")
    _noise(30, 30, 8).save(d / "UPPER.JPG", quality=95)
    _noise(30, 30, 9).save(d / "chat noir é.png")
    _noise(30, 30, 10).save(d / "猫.jpg", quality=95)
    try:
        with open(os.path.join(os.fsencode(d), NOT_UTF8), "wb") as f:
            _noise(30, 30, 11).save(f, format="PNG")
    except OSError:                 # a file system that holds only UTF-8 names
        pass
    os.symlink("grey.png", d / "link to grey.png")
    good = sorted(e.name for e in os.scandir(d))

    bad = {"text.jpg": "cannot identify image file", "empty.png": "empty file",
           "truncated.jpg": "truncated", "truncated.png": "truncated",
           "bomb.png": "decompression bomb", "loop_a.jpg": "symlink loop", "loop_b.jpg": "symlink loop",
           "broken.png": "broken symlink"}
    (d / "text.jpg").write_text("this is a text file, not a JPEG\n")
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(_truncated(_noise(80, 60, 12), "JPEG"))
    (d / "truncated.png").write_bytes(_truncated(_noise(80, 60, 13), "PNG"))
    (d / "bomb.png").write_bytes(_bomb_png())
    os.symlink("loop_b.jpg", d / "loop_a.jpg")
    os.symlink("loop_a.jpg", d / "loop_b.jpg")
    os.symlink("no such file.png", d / "broken.png")
    os.symlink(".", d / "self")                                  # a folder loop
    if hasattr(os, "mkfifo"):                   # reading it would block: refused by its kind
        os.mkfifo(d / "pipe.png")
        bad["pipe.png"] = "not a regular file"
    (d / "notes.txt").write_text("not an image by its name: passed over")
    return good, bad


@pytest.fixture(scope="module")
def odd(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("odd")
    good, bad = make_odd_folder(root / "odd")
    return root, good, bad, str(tiny_checkpoint)


def _zf(*argv, cwd=REPO):
    """``python -m zfcore.cli ...`` in a subprocess: a traceback would show on its stderr."""
    env = dict(os.environ, ZF_PROGRESS="0", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "zfcore.cli", *map(str, argv)], capture_output=True,
                       env=env, cwd=cwd)
    out, err = (s.decode("utf-8", "backslashreplace") for s in (r.stdout, r.stderr))
    assert "Traceback" not in err, err
    return r.returncode, out, err


def _shown(name: str) -> str:
    """A file name as it shows on a UTF-8 stream written with 'backslashreplace'."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _by_walk(bad):
    """The bad entries that the walk itself leaves out (the others are found, then fail to decode)."""
    return sorted(n for n in bad if n.startswith(("loop", "broken", "pipe")))


def test_the_walk_lists_good_files_and_says_why_it_skips_links(odd):
    from zfcore.data.folders import iter_images
    root, good, bad, _ = odd
    listed = list(iter_images(root / "odd", recursive=False))
    assert [os.path.basename(p) for p, why in listed if why is None] == \
        sorted(good + [n for n in bad if n not in _by_walk(bad)])
    left = {os.path.basename(p): why for p, why in listed if why is not None}
    assert sorted(left) == _by_walk(bad)
    assert all(bad[n] in why for n, why in left.items())
    assert "no such file.png" in left["broken.png"]


def test_a_folder_data_set_of_odd_files(odd):
    """As one class of an ImageNet-layout folder: the walk lists the files (the undecodable ones
    are skipped when read), leaves out the links it cannot follow and the folder loop."""
    root, good, bad, _ = odd
    data = root / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "odd").symlink_to(root / "odd")
    with pytest.warns(BadImageWarning, match="left out"):
        ds = FolderDataset(data, "train", 16)
    undecodable = [n for n in bad if n not in _by_walk(bad)]
    assert sorted(os.path.basename(p) for p, _ in ds.samples) == sorted(good + undecodable)
    assert sorted(os.path.basename(p) for p, _ in ds.left_out) == sorted(_by_walk(bad) + ["self"])
    with pytest.warns(BadImageWarning):
        read = {os.path.basename(p): ds[i][0] for i, (p, _) in enumerate(ds.samples)}
    assert sorted(n for n, x in read.items() if x is None) == sorted(undecodable)
    assert all(x.shape == (3, 16, 16) for x in read.values() if x is not None)


def test_mine_odd_folder(odd, tmp_path):
    root, good, bad, weights = odd
    out = tmp_path / "mined"
    rc, stdout, err = _zf("mine", "--arch", "zf", "--weights", weights, "--images", root / "odd",
                          "--out", out, "--layers", "conv1,conv5", "--k", "50", "--maps", "2",
                          "--device", "cpu", "--quiet")
    assert rc == 0, err
    report = json.loads((out / "topk.json").read_text())
    assert report["files"] == good and report["num_images"] == len(good) and report["k"] == len(good)
    for layer in ("conv1", "conv5"):
        for row in report["layers"][layer]["maps"]:       # k = every image: each map ranks them all
            assert sorted(e["image"] for e in row["entries"]) == good
        assert (out / f"{layer}.png").is_file()
    skipped = json.loads((out / "skipped.json").read_text())
    assert [s["file"] for s in skipped] == sorted(bad)
    for s in skipped:
        assert bad[s["file"]] in s["reason"], s
        assert f"zf mine: skipped {s['file']}: " in err
    assert f"{len(good)} images mined ({len(bad)} skipped)" in stdout


def test_occlude_odd_files(odd, tmp_path):
    root, good, bad, weights = odd
    out = tmp_path / "occluded"
    d = root / "odd"
    given = [d / n for n in good + sorted(bad)] + [d / "self", d / "never written.png"]
    # one stem per output (two would be refused): of the two "grey" files keep the link, of
    # image.* the TIFF, of truncated.* the JPEG
    given = [p for p in given if p.name not in ("grey.png", "image.webp", "truncated.png")]
    reasons = {**{d / n: r for n, r in bad.items() if n != "truncated.png"}, d / "self": "is a folder",
               d / "never written.png": "does not exist"}
    rc, stdout, err = _zf("occlude", *given, "--arch", "zf", "--weights", weights, "--out", out,
                          "--size", "24", "--stride", "24", "--device", "cpu")
    assert rc == 0, err
    processed = [p for p in given if p not in reasons]
    assert len(processed) == len(good) - 2
    for p in processed:
        for ext in ("png", "npz"):
            assert (out / f"{p.stem}_occlusion.{ext}").is_file(), p
        assert np.load(out / f"{p.stem}_occlusion.npz")["prob"].shape == (2, 2)
    skipped = json.loads((out / "skipped.json").read_text())
    assert [s["file"] for s in skipped] == [str(p) for p in given if p in reasons]
    for s in skipped:
        assert reasons[Path(s["file"])] in s["reason"], s
        assert f"zf occlude: skipped {_shown(s['file'])}: " in err
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([f"{p.stem}_occlusion.{e}" for p in processed for e in ("png", "npz")]
                             + ["skipped.json"])
    assert f"{len(processed)} images occluded, {len(skipped)} skipped" in stdout
    assert "猫.jpg: target" in stdout
    assert "caf\\xe9 latin-1.png: target" in stdout or os.fsdecode(NOT_UTF8) not in good
    assert "missing from font" not in err         # 猫 in a title: a box, without a warning


def test_occlude_nothing_readable_is_status_2_and_writes_nothing(odd, tmp_path, capsys):
    root, _, bad, weights = odd
    occ = ["occlude", "--arch", "zf", "--weights", weights, "--size", "24", "--stride", "24",
           "--device", "cpu"]
    out = tmp_path / "none"
    bads = [str(root / "odd" / n) for n in sorted(bad) if n != "truncated.png"]   # one stem each
    assert main(occ + bads + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"none of the {len(bads)} images can be read" in err and not out.exists()
    for p in bads:
        assert f"zf occlude: skipped {p}: " in err
    for n, why in bad.items():      # one image: one line naming it and why
        assert main(occ + [str(root / "odd" / n), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"zf occlude: error: image file {root / 'odd' / n}: ") and why in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
    rc, _, err = _zf(*occ, root / "odd" / "loop_a.jpg", "--out", out)
    assert rc == 2 and "symlink loop" in err and not out.exists()


def test_occlude_help_gives_the_exit_status():
    rc, stdout, _ = _zf("occlude", "--help")
    assert rc == 0 and "Exit status" in stdout and "2 when none" in stdout


def test_project_odd_files(odd, tmp_path, capsys):
    root, good, bad, weights = odd
    d = root / "odd"
    proj = ["project", "--arch", "zf", "--weights", weights, "--layer", "conv2", "--top", "2",
            "--device", "cpu"]
    out = tmp_path / "projected"
    for n in good:
        assert main(proj + ["--image", str(d / n), "--out", str(out)]) == 0, capsys.readouterr().err
        stem = f"{Path(n).stem}_conv2"
        rep = json.loads((out / f"{stem}.json").read_text())
        assert rep["image"] == str(d / n) and len(rep["maps"]) == 2
        with Image.open(out / f"{stem}.png") as im:
            im.load()
    capsys.readouterr()
    written = sorted(p.name for p in out.iterdir())
    for n, why in {**bad, "self": "is a folder"}.items():
        assert main(proj + ["--image", str(d / n), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"zf project: error: image file {d / n}: ") and why in err, err
        assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == written
    rc, _, err = _zf(*proj, "--image", d / "bomb.png", "--out", tmp_path / "p2")
    assert rc == 2 and "decompression bomb" in err and not (tmp_path / "p2").exists()
