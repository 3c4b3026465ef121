"""The tiny book read in a real browser: Debian's Chromium, driven by Playwright.

Every HTML page of the book (the front page, every chapter, the index and search
pages) is served from 127.0.0.1 and loaded as a reader would load it. On each:
no console error and no uncaught page error; every ``<img>`` loaded
(``naturalWidth > 0``); no request for anything outside 127.0.0.1 (or ``data:``,
``blob:``, ``about:``): the book must read without a network; every formula typeset by
the book's own MathJax. The collapsed image galleries ("sheets", ``<details>`` written
by :func:`zfcore.tables.image_details_html`) open when their summary is clicked.

The book is the one tests/conftest.py's ``tiny_book`` fixture builds once a session
(tests/test_book.py checks the same build); set ``ZF_TEST_BOOK_HTML`` to the folder of
an already built book (``.../_build/html``) to test that one instead.

The browser is never downloaded: Playwright launches the system's Chromium
(``ZF_CHROMIUM``, else ``/usr/lib/chromium/chromium``, ``chromium`` or
``chromium-browser`` on the PATH; ``.ci/run`` installs Debian's package). The browser
tests skip, saying why, only when no Chromium executable or no ``playwright`` module
can be found.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import importlib.util
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest


def _chromium() -> str | None:
    for candidate in (os.environ.get("ZF_CHROMIUM"), "/usr/lib/chromium/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = _chromium()
_why_not = []
if CHROMIUM is None:
    _why_not.append("no Chromium executable (ZF_CHROMIUM, /usr/lib/chromium/chromium, "
                    "chromium on the PATH); `apt-get install chromium` (.ci/run does)")
if importlib.util.find_spec("playwright") is None:
    _why_not.append("no playwright module (the 'test' extra: pip install playwright)")
needs_browser = pytest.mark.skipif(bool(_why_not), reason="; ".join(_why_not))

_BOOK_EXTRA_MISSING = os.environ.get("ZF_TEST_BOOK_HTML") is None and any(
    importlib.util.find_spec(m) is None for m in ("papermill", "ipykernel", "jupyter_book"))
needs_book = pytest.mark.skipif(
    _BOOK_EXTRA_MISSING,
    reason="papermill, ipykernel and jupyter-book (the 'book' extra) are needed to build the book")

pytestmark = needs_book

# schemes a page may load from besides the book's own server
_LOCAL_SCHEMES = {"data", "blob", "about"}
# the chapters whose collapsed image galleries (sheets) must be there and open (chapter 06's
# occlusion gallery is shown open: its images are checked with every other image)
_SHEET_CHAPTERS = ("book/03_feature_visualization.html",)


@pytest.fixture(scope="module")
def site(request) -> Path:
    """The built book's HTML folder."""
    given = os.environ.get("ZF_TEST_BOOK_HTML")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"ZF_TEST_BOOK_HTML={given} holds no index.html"
        return path
    _root, index = request.getfixturevalue("tiny_book")
    return index.parent


def _pages(site: Path):
    """Every HTML page of the book, as paths relative to the site (assets' folders left out)."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not set(p.relative_to(site).parts[:-1]) & {"_static", "_sources", "_images"})


class _Loads(html.parser.HTMLParser):
    """The URLs a page makes the browser fetch: scripts, styles, images, frames, media."""
    ATTRS = {"script": "src", "img": "src", "iframe": "src", "frame": "src", "embed": "src",
             "source": "src", "video": "src", "audio": "src", "track": "src",
             "input": "src", "object": "data"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])
        elif tag in self.ATTRS and a.get(self.ATTRS[tag]):
            self.urls.append(a[self.ATTRS[tag]])
        if a.get("srcset"):
            self.urls += [part.split()[0] for part in a["srcset"].split(",") if part.strip()]


def _leaves_the_book(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) or parts.scheme not in ("", *_LOCAL_SCHEMES)


def test_no_page_points_outside_the_book(site):
    """The built HTML itself, no browser needed: no <script>, <link>, <img>, <iframe> ...
    names anything outside the book's own files (a CDN, a font service, a badge)."""
    pages = _pages(site)
    assert "index.html" in pages and any(p.startswith("book/") for p in pages), pages
    outside = {}
    for page in pages:
        parser = _Loads()
        parser.feed((site / page).read_text(encoding="utf-8"))
        bad = sorted({u for u in parser.urls if _leaves_the_book(u)})
        if bad:
            outside[page] = bad
    assert not outside, f"pages that load from outside the book: {outside}"
    # the formulas' renderer is the book's own copy
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    """The book served over HTTP on 127.0.0.1 (an ephemeral port): its base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


class _Reader:
    """One browser context on the served book that records what every page does."""

    def __init__(self, browser, base: str):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                           service_workers="block")
        self.context.set_default_timeout(20_000)
        # record every request; let only the book's own through (nothing else is reachable)
        self.context.route("**/*", self._route)

    def _local(self, url: str) -> bool:
        return url.startswith(self.base) or urlsplit(url).scheme in _LOCAL_SCHEMES

    def _route(self, route):
        if self._local(route.request.url):
            route.continue_()
        else:
            route.abort()

    def open(self, path: str):
        """Load one page and wait until it has settled (MathJax typeset, images in).
        Returns ``(page, problems)``: ``problems`` a list of sentences, empty when clean."""
        problems = []
        page = self.context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text} ({m.location.get('url')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

        def on_request(req):
            if not self._local(req.url):
                problems.append(f"request outside 127.0.0.1: {req.url}")
        page.on("request", on_request)
        page.on("requestfailed", lambda r: None if not self._local(r.url) else
                problems.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400 else None)
        page.goto(self.base + path, wait_until="load")
        page.wait_for_load_state("networkidle")
        typeset = page.evaluate("""() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
                                   ? MathJax.startup.promise.then(() => true) : false""")
        unrendered = page.evaluate("""() => [...document.querySelectorAll('.math')]
                                      .filter(e => !e.querySelector('mjx-container')).length""")
        if unrendered:
            problems.append(f"{unrendered} formula(s) not typeset (MathJax loaded: {typeset})")
        problems += [f"image not loaded: {src}" for src in _broken_images(page)]
        return page, problems

    def close(self):
        self.context.close()


_WAIT_IMAGES = """els => Promise.all(els.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); })))"""


def _broken_images(page, scope: str = "img"):
    """The src (cut short) of every image in ``scope`` that did not load (naturalWidth 0)."""
    page.locator(scope).evaluate_all(_WAIT_IMAGES)
    return page.locator(scope).evaluate_all(
        "els => els.filter(i => !(i.naturalWidth > 0)).map(i => (i.currentSrc || i.src).slice(0, 120))")


@pytest.fixture()
def reader(browser, served):
    r = _Reader(browser, served)
    yield r
    r.close()


@needs_browser
def test_every_page_reads_offline_without_errors(site, reader):
    """Each page: no console error or page error, every image loaded, no request leaves
    127.0.0.1, every formula typeset (by the book's own MathJax: nothing else is reachable)."""
    pages = _pages(site)
    failures = {}
    typeset = 0
    for path in pages:
        page, problems = reader.open(path)
        typeset += page.locator("mjx-container").count()
        page.close()
        if problems:
            failures[path] = problems
    assert not failures, "\n".join(f"{p}:\n  " + "\n  ".join(v) for p, v in failures.items())
    # the book has formulas (chapter 07): they were found and typeset, not left as TeX
    assert typeset, "no formula typeset on any page"


@needs_browser
def test_sheets_open_when_clicked(site, reader):
    """The collapsed galleries in the chapters' text (chapter 03 has some): closed
    at first, open on a click on their summary, their images loaded and shown."""
    pages = _pages(site)
    missing = [p for p in _SHEET_CHAPTERS if p not in pages]
    assert not missing, f"chapters missing from the book: {missing}"
    failures = {}
    for path in pages:
        text = (site / path).read_text(encoding="utf-8")
        if "<details" not in text or "<img" not in text:
            if path in _SHEET_CHAPTERS:
                failures[path] = ["no collapsed image gallery (<details> holding an <img>)"]
            continue
        page, _ = reader.open(path)
        sheets = page.locator("article details:has(img)")
        n = sheets.count()
        if path in _SHEET_CHAPTERS and n == 0:
            failures[path] = ["no collapsed image gallery (<details> holding an <img>) in the text"]
        problems = []
        for i in range(n):
            sheet = sheets.nth(i)
            summary = sheet.locator("summary").first
            label = summary.inner_text().strip()[:60]
            if sheet.evaluate("d => d.open"):
                problems.append(f"sheet {label!r} is open before any click: it should start collapsed")
                continue
            summary.click()
            page.wait_for_function("d => d.open", arg=sheet.element_handle(), timeout=5_000)
            shown = sheet.locator("img").evaluate_all(
                "els => els.map(i => i.getBoundingClientRect()).map(r => r.width > 0 && r.height > 0)")
            if not shown or not all(shown):
                problems.append(f"sheet {label!r}: an image takes no room once opened")
        if n:
            problems += [f"opened sheet: image not loaded: {s}"
                         for s in _broken_images(page, "article details:has(img) img")]
        page.close()
        if problems:
            failures.setdefault(path, []).extend(problems)
    assert not failures, "\n".join(f"{p}:\n  " + "\n  ".join(v) for p, v in failures.items())
