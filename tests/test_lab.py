"""The Jupyter path, live (issue 12, items 6 and 7b): ``make lab``'s JupyterLab, in a real browser.

The server is started with the command ``make lab`` runs (read from ``make -n``), on 127.0.0.1 and a
free port; the test opens the address it prints, with the random token it made. Its notebook folder a temporary copy of chapter 03 with its
parameters cell switched from ``scale = "default"`` to ``"tiny"`` (``ZF_ARTIFACTS`` a temporary
folder, the tiny model trained for one epoch by the chapter itself), plus a small notebook of
the occlusion explorer. Debian's Chromium, driven by Playwright (``executable_path``: no browser
is downloaded), opens chapter 03 in JupyterLab, runs all its cells from the Run menu, then
changes the layer explorer's layer and map and checks that the PNG it shows changes; then a
notebook of the two other explorers: the occlusion explorer's picture must be recomputed when the
occluder's size changes, the image explorer's when its image does. No request may leave
127.0.0.1, no error may be thrown in the page.

Skips, saying why, only when Playwright or Chromium cannot be found. The server, its kernels
and the browser are stopped however the test ends.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "03_feature_visualization.ipynb"
EXPLORERS = "explorers.ipynb"    # the occlusion explorer (chapter 06) and the image explorer (02)
RUN_ALL_TIMEOUT = 150          # seconds for chapter 03 at the tiny scale (training included)


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(port: int, notebook_dir: Path) -> list:
    """The command ``make lab`` runs (``make -n``), on ``port`` and ``notebook_dir``, with this
    interpreter's jupyter in place of the venv's."""
    if shutil.which("make") is None:
        pytest.fail("make is needed to read the lab target's command (make -n lab)")
    out = subprocess.run(["make", "-s", "-n", "-o", ".venv/.installed", "lab", "VENV=.venv",
                          f"LAB_PORT={port}"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = [ln for ln in out.stdout.splitlines() if "jupyter" in ln and " lab" in ln]
    assert len(lines) == 1, f"expected one jupyter lab command from 'make -n lab', got:\n{out.stdout}"
    argv = shlex.split(lines[0])
    assert argv[0] == ".venv/bin/jupyter" and argv[1] == "lab", argv
    # what item 6 asks of `make lab`: this machine only, the book's chapters, no browser of its own
    assert argv[argv.index("--ip") + 1] == "127.0.0.1" and "0.0.0.0" not in lines[0], argv
    assert argv[argv.index("--notebook-dir") + 1] == "book", argv
    assert "--no-browser" in argv, argv
    argv[argv.index("--notebook-dir") + 1] = str(notebook_dir)
    return [sys.executable, "-m", "jupyter", *argv[1:], "--ServerApp.port_retries=0"]


def _tiny_chapter(dst: Path) -> None:
    """Chapter 03, its parameters cell at the tiny scale."""
    nb = json.loads((ROOT / "book" / CHAPTER).read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "chapter 03 must have one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert re.search(r'^scale = "default"', src, re.M), f"chapter 03's parameters cell:\n{src}"
    params[0]["source"] = re.sub(r'^scale = "default"', 'scale = "tiny"', src, flags=re.M)
    dst.write_text(json.dumps(nb))


def _explorers_notebook(dst: Path) -> None:
    """The occlusion explorer as chapter 06 builds it (fewer images), the image explorer as
    chapter 02 does, on the tiny model chapter 03 trained."""
    cells = ['from zfcore.train import train_or_load\n'
             'from zfcore.widgets import ImageExplorer, OcclusionExplorer\n'
             'run = train_or_load("tiny")',
             'explorer = OcclusionExplorer(run, "test", images=[0, 1, 2])\n'
             'explorer',
             'ImageExplorer(run, "test")']
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": s} for i, s in enumerate(cells)]}
    dst.write_text(json.dumps(nb))


def _environment(tmp: Path) -> dict:
    """The server's (and so its kernels') environment: everything it writes under ``tmp``, the
    kernel ``python3`` pinned to this interpreter, zfcore from this tree, a one-epoch tiny model."""
    spec = tmp / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    settings = tmp / "lab-settings"
    for plugin, values in {
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = dict(os.environ)
    env.update({
        "JUPYTER_PATH": os.pathsep.join([str(tmp / "jupyter")] + ([env["JUPYTER_PATH"]] if env.get("JUPYTER_PATH") else [])),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "IPYTHONDIR": str(tmp / "ipython"),
        "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "ZF_ARTIFACTS": str(tmp / "artifacts"),
        "ZF_PROGRESS": "0",
        "ZF_PRESET_OVERRIDES": json.dumps({"tiny": {"epochs": 1, "evolution_epochs": [1]}}),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    })
    return env


def _kernel_pids(runtime: Path) -> list:
    """Processes whose command line names a connection file of ``runtime`` (the server's kernels)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(runtime) in cmd and "ipykernel" in cmd:
            pids.append(int(d.name))
    return pids


def _stop(proc: subprocess.Popen, base: str, token: str, runtime: Path) -> None:
    """Shut the server down (its kernels with it), then make sure: SIGTERM, SIGKILL."""
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=5).read()
        except (OSError, urllib.error.URLError):
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and proc.poll() is None:
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
    for pid in _kernel_pids(runtime):        # a kernel the server left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``(base URL, token, notebook folder)`` of a JupyterLab started as ``make lab`` starts it."""
    tmp = tmp_path_factory.mktemp("lab")
    nbdir = tmp / "notebooks"
    nbdir.mkdir()
    _tiny_chapter(nbdir / CHAPTER)
    _explorers_notebook(nbdir / EXPLORERS)
    port, token = _free_port(), None
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "w+")
    proc = subprocess.Popen(lab_command(port, nbdir), cwd=nbdir, env=_environment(tmp),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # the address a reader opens, with the random token the server made, as `make lab` prints it
        address = re.compile(rf"^\s*(?:\[.*?\] )?(http://127\.0\.0\.1:{port}/lab\?token=([0-9a-f]{{32,}}))\s*$", re.M)
        deadline = time.monotonic() + 60
        while True:
            log.seek(0)
            printed = log.read()
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{printed[-3000:]}")
            found = address.search(printed)
            if found:
                token = found.group(2)
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                        if r.status == 200:
                            break
                except (OSError, urllib.error.URLError):
                    pass
            if time.monotonic() > deadline:
                pytest.fail("jupyter lab printed no address with a token, or did not answer on it, "
                            f"within 60 s:\n{printed[-3000:]}")
            time.sleep(0.3)
        # no token, or a wrong one: refused
        for query in ("", f"?token=not-{token}"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{base}/api/contents{query}", timeout=5)
        yield base, token, nbdir
    finally:
        _stop(proc, base, token or "", tmp / "runtime")
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium found on PATH (Debian: apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


class Page:
    """A JupyterLab tab, watching what leaves 127.0.0.1 and what the page throws."""

    def __init__(self, browser, base, token, shots: Path):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.base, self.token, self.shots = base, token, shots
        self.outside, self.errors = [], []
        local = re.compile(r"^(https?|wss?)://127\.0\.0\.1(:\d+)?/|^(blob|data|about):")
        self.page.on("request", lambda r: None if local.match(r.url) else self.outside.append(r.url))
        self.page.on("websocket", lambda ws: None if local.match(ws.url) else self.outside.append(ws.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name):
        path = self.shots / f"{name}.png"
        try:
            self.page.screenshot(path=str(path), full_page=False)
        except Exception:       # noqa: BLE001 - a screenshot is only a help
            return "(no screenshot)"
        return str(path)

    def open(self, notebook: str):
        self.page.goto(f"{self.base}/lab/tree/{notebook}?token={self.token}")
        # the notebook's tab is the current one (the page restores the other tabs opened before)
        self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current",
                          has_text=notebook).wait_for()
        self.page.locator(".jp-StatusBar-Widget", has_text=notebook).first.wait_for()
        self.panel().locator(".jp-Cell").first.wait_for()
        self.kernel_idle()

    def panel(self):
        """The notebook shown (the other tabs' panels stay in the page, hidden)."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def kernel_idle(self, timeout: float = 60):
        """Wait until the status bar says the notebook's kernel is idle (the toolbar's indicator
        says idle before a kernel is connected). When JupyterLab asks which kernel to start (it
        sometimes does, for a notebook opened while another runs), take the one it offers, the
        notebook's own: Python 3 (ipykernel), as a reader would."""
        idle = self.page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle"))
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dialog.count():
                choice = dialog.locator("select").first
                offered = choice.locator("option:checked").inner_text().strip()
                assert offered == "Python 3 (ipykernel)", f"JupyterLab offers the kernel {offered!r}"
                dialog.get_by_role("button", name="Select", exact=True).click()
            elif idle.count():
                return
            self.page.wait_for_timeout(250)
        pytest.fail(f"the notebook's kernel was not idle within {timeout:.0f} s; screenshot: {self.shot('kernel')}")

    def no_dialog(self):
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count():
            pytest.fail(f"JupyterLab shows a dialog: {dialog.first.inner_text()!r}; "
                        f"screenshot: {self.shot('dialog')}")

    def run_all(self):
        """Run > Run All Cells, as a reader does; once more (three tries) when the first code cell
        has not started within 15 s (a click while the kernel's session is still connecting)."""
        first = self.panel().locator(".jp-CodeCell .jp-InputPrompt").first
        for attempt in range(3):
            self.no_dialog()
            self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if re.search(r"\[(\*|\d+)\]", first.inner_text()):
                    return
                self.page.wait_for_timeout(250)
            self.page.keyboard.press("Escape")
        pytest.fail(f"Run All Cells did not start the notebook; screenshot: {self.shot('run-all')}")

    def wait_for_explorers(self, n: int, timeout: float, name: str):
        """The ``n`` output areas holding an explorer (an ipywidgets image), once all are shown;
        fails at once on an error output."""
        outputs = self.panel().locator(".jp-OutputArea-output:has(img.widget-image)")
        error = self.panel().locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if error.count():
                pytest.fail(f"{name}: a cell failed in JupyterLab:\n{error.first.inner_text()[-3000:]}\n"
                            f"screenshot: {self.shot(name + '-error')}")
            if outputs.count() >= n:
                self.kernel_idle()
                return [outputs.nth(i) for i in range(n)]
            self.page.wait_for_timeout(500)
        pytest.fail(f"{name}: {n} explorer(s) not shown within {timeout:.0f} s; "
                    f"screenshot: {self.shot(name + '-timeout')}")

    def image(self, out):
        """``(src, PNG bytes)`` of the explorer's picture (its last image) as the browser holds it."""
        out.scroll_into_view_if_needed()
        img = out.locator("img.widget-image").last
        self.page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle())
        src = img.get_attribute("src")
        data_url = img.evaluate("""async el => {
            const blob = await (await fetch(el.src)).blob();
            return await new Promise(ok => { const r = new FileReader(); r.onload = () => ok(r.result);
                                             r.readAsDataURL(blob); }); }""")
        return src, base64.b64decode(data_url.split(",", 1)[1])

    def undistorted(self, out, name):
        """Every image of the explorer drawn at its own aspect ratio (not stretched by its box)."""
        sizes = out.locator("img.widget-image").evaluate_all(
            "es => es.map(e => [e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight])")
        for nw, nh, cw, ch in sizes:
            assert nw > 0 and cw > 0 and ch > 0, (name, sizes)
            assert abs(cw / ch - nw / nh) <= 0.02 * nw / nh, \
                (f"{name}: a {nw}x{nh} picture is drawn {cw}x{ch}, stretched; "
                 f"screenshot: {self.shot('stretched')}")

    def changed(self, out, before_src, what):
        """The picture's PNG once its src has changed from ``before_src``."""
        img = out.locator("img.widget-image").last
        try:
            self.page.wait_for_function("([el, src]) => el.src !== src",
                                        arg=[img.element_handle(), before_src], timeout=30_000)
        except Exception as e:  # noqa: BLE001 - say what was waited for
            pytest.fail(f"the picture did not change after {what} ({type(e).__name__}); "
                        f"screenshot: {self.shot('unchanged')}")
        return self.image(out)


def _type_into_slider(page, out, value: int) -> None:
    """Type ``value`` into the explorer's slider's readout, as a reader can."""
    readout = out.locator(".widget-slider .widget-readout").first
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def _png_size(data: bytes):
    from PIL import Image
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.size


def test_make_lab_runs_chapter_03_and_the_explorers_live(browser, lab, tmp_path):
    base, token, nbdir = lab
    t0 = time.monotonic()
    tab = Page(browser, base, token, tmp_path)
    try:
        # -- chapter 03 at the tiny scale: run all, then the layer explorer
        tab.open(CHAPTER)
        tab.run_all()
        (out,) = tab.wait_for_explorers(1, RUN_ALL_TIMEOUT, "chapter 03")
        select = out.locator(".widget-dropdown select").first
        layers = [o.strip() for o in select.locator("option").all_inner_texts()]
        assert layers[:2] == ["conv1", "conv2"] and len(layers) == 5, layers
        assert select.input_value() == "conv1"
        assert "conv1, map 0" in out.inner_text()
        src0, png0 = tab.image(out)
        size0 = _png_size(png0)

        select.select_option("conv3")                        # the layer
        src1, png1 = tab.changed(out, src0, "choosing layer conv3")
        assert png1 != png0, "layer conv3 shows the same picture as conv1"
        _png_size(png1)
        out.get_by_text("conv3, map 0").wait_for()

        _type_into_slider(tab.page, out, 5)                  # the map
        src2, png2 = tab.changed(out, src1, "typing map 5")
        assert png2 != png1, "map 5 of conv3 shows the same picture as map 0"
        assert _png_size(png2) == _png_size(png1) == size0    # the same layout, another map
        out.get_by_text("conv3, map 5").wait_for()
        tab.undistorted(out, "the layer explorer")
        tab.shot("layer-explorer")
        t_chapter = time.monotonic() - t0

        # -- the occlusion explorer: a new occluder size is recomputed and shown
        tab.open(EXPLORERS)
        tab.run_all()
        occ, images = tab.wait_for_explorers(2, 60, "the explorers' notebook")
        size_select = occ.locator(".widget-dropdown", has_text="occluder").locator("select")
        sizes = [int(o) for o in size_select.locator("option").all_inner_texts()]
        current = int(size_select.input_value())
        assert len(sizes) >= 2, sizes
        new = next(s for s in reversed(sizes) if s != current)
        caption = occ.locator(".widget-html", has_text="px occluder")
        assert f"A {current}x{current} px occluder" in caption.inner_text()
        osrc0, opng0 = tab.image(occ)
        size_select.select_option(str(new))
        osrc1, opng1 = tab.changed(occ, osrc0, f"choosing occluder size {new}")
        assert opng1 != opng0, f"occluder {new} shows the same panels as occluder {current}"
        assert _png_size(opng1) == _png_size(opng0)
        occ.get_by_text(f"A {new}x{new} px occluder").wait_for()
        tab.undistorted(occ, "the occlusion explorer")

        # -- the image explorer: another image, other projections
        assert "image #0" in images.inner_text()
        isrc0, ipng0 = tab.image(images)
        _type_into_slider(tab.page, images, 3)
        isrc1, ipng1 = tab.changed(images, isrc0, "typing image 3")
        assert ipng1 != ipng0, "image 3 shows the same projections as image 0"
        assert _png_size(ipng1) == _png_size(ipng0)
        images.get_by_text("image #3").wait_for()
        tab.undistorted(images, "the image explorer")
        tab.shot("explorers")

        assert not tab.outside, f"requests left 127.0.0.1: {tab.outside[:10]}"
        assert not tab.errors, f"errors thrown in the page: {tab.errors[:5]}"
        print(f"chapter 03 run and explored in {t_chapter:.0f} s; all in {time.monotonic() - t0:.0f} s")
    finally:
        tab.context.close()
