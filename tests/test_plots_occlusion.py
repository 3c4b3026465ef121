"""Drawing Fig. 7 (zfcore.plots.occlusion_*): maps made by hand, no model, so the geometry is known."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from zfcore import plots  # noqa: E402
from zfcore.occlusion import OcclusionMaps, default_occluder, occluder_grid  # noqa: E402


def _maps(h=20, w=24, size=8, stride=4, target=2):
    """Maps whose entries say where the occluder was: prob = row corner / h, activity = column corner."""
    ys, xs = occluder_grid(h, w, size, stride)
    yy, xx = np.meshgrid(np.asarray(ys, np.float32), np.asarray(xs, np.float32), indexing="ij")
    top = np.where(xx < w / 2, target, 5).astype(np.int64)
    top[0, 0] = 7
    return OcclusionMaps(ys=ys, xs=xs, target=target, layer="conv5", feature=3,
                         prob=torch.from_numpy(yy / h), top_class=torch.from_numpy(top),
                         activity=torch.from_numpy(xx), unoccluded_prob=0.9, unoccluded_activity=3.0,
                         projection=torch.randn(3, h, w), position=(1, 2))


def test_default_occluder():
    assert default_occluder(224) == (56, 8)
    assert default_occluder(48) == (12, 2)
    assert default_occluder(64) == (16, 2)
    assert default_occluder(3) == (1, 1)


def test_edges_centre_cells_on_the_occluders():
    # corners 0, 4, 8, 12 (+ the border corner 12 already there) for an 8 px occluder on 20 px
    e = plots.occlusion_edges([0, 4, 8, 12], 8, 20)
    np.testing.assert_allclose(e, [2, 6, 10, 14, 18])
    centres = (e[1:] + e[:-1]) / 2
    np.testing.assert_allclose(centres, np.array([0, 4, 8, 12]) + 4)
    # an uneven last step (the border corner): the edge is half-way between the centres
    np.testing.assert_allclose(plots.occlusion_edges([0, 5, 7], 5, 12), [0, 5, 8.5, 10.5])
    # one position covering everything
    np.testing.assert_allclose(plots.occlusion_edges([0], 16, 16), [0, 16])


def test_pixels_line_up_with_the_image():
    m = _maps()
    px = plots.occlusion_pixels(m.prob, m.ys, m.xs, 8, 20, 24)
    assert px.shape == (20, 24)
    # inside: the value of the occluder whose centre is nearest; outside the centres' reach: NaN
    for i, y0 in enumerate(m.ys):
        for j, x0 in enumerate(m.xs):
            assert px[y0 + 4, x0 + 4] == pytest.approx(float(m.prob[i, j]))
    assert np.isnan(px[0, 0]) and np.isnan(px[19, 23]) and np.isnan(px[1, 10])
    assert not np.isnan(px[2, 4])
    z = plots.occlusion_pixels(m.top_class, m.ys, m.xs, 8, 20, 24, zoom=3)
    assert z.shape == (60, 72) and z.dtype == np.int64 and z[0, 0] == -1
    assert z[3 * 4 + 1, 3 * 4 + 1] == 7


def test_size_read_off_the_grid():
    m = _maps(size=8)
    assert plots.occluder_size_of(m, 20, 24) == 8
    assert plots.occluder_size_of(m, 20, 24, size=8) == 8
    with pytest.raises(ValueError, match="do not fit"):
        plots.occluder_size_of(m, 20, 24, size=6)
    with pytest.raises(ValueError, match="do not fit"):
        plots.occluder_size_of(m, 32, 32)
    assert plots.occluder_stride_of(m) == 4


def test_top_class_colours_target_first():
    m = _maps()
    legend, lut = plots.top_class_colours(m.top_class, m.target, top=1)
    assert legend[0][0] == m.target and legend[0][1] == plots.TARGET_COLOUR
    assert legend[1][0] == 5                            # the most frequent other class
    assert legend[-1][0] is None and lut[7] == plots.OTHER_COLOUR      # the rest: "other"
    assert sum(n for _, _, n in legend) == m.top_class.numel()


def test_display_image_forms():
    u8 = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    a = plots.display_image(u8)
    np.testing.assert_allclose(a, u8 / 255.0)
    np.testing.assert_allclose(plots.display_image(torch.from_numpy(u8).permute(2, 0, 1)), a)
    f = plots.display_image(torch.randn(3, 6, 5))
    assert f.shape == (6, 5, 3) and f.min() == 0 and f.max() == 1
    with pytest.raises(ValueError, match="expected an image"):
        plots.display_image(np.zeros((6, 5)))


def test_overlay_only_where_occluders_centre():
    m = _maps()
    img = np.full((20, 24, 3), 255, np.uint8)
    ov = plots.occlusion_overlay(img, m, alpha=0.5)
    assert ov.shape == (20, 24, 3)
    np.testing.assert_allclose(ov[0, 0], 1.0)                    # the border: the image alone
    assert not np.allclose(ov[10, 12], 1.0)
    assert plots.occlusion_overlay(img, m, which="top_class", zoom=2).shape == (40, 48, 3)
    with pytest.raises(ValueError, match="which"):
        plots.occlusion_overlay(img, m, which="nope")


def test_occlusion_figure():
    m = _maps()
    img = np.zeros((20, 24, 3), np.uint8)
    fig = plots.occlusion_figure(img, m, class_names=[f"c{i}" for i in range(10)], title="an image",
                                 box=(2, 3, 10, 12))
    try:
        titles = " | ".join(ax.get_title() for ax in fig.axes)
        for part in ("(a)", "(b)", "conv5, map 3", "(c)", "(d) p(c2)", "(e)", "8x8 occluder"):
            assert part in titles, (part, titles)
        assert len(fig.axes) == 7                       # 5 panels and 2 colour bars
        legend = fig.axes[4].get_legend()
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels[0].startswith("c2 (target)") and any(t.startswith("c5") for t in labels)
        # (d) is drawn over the occluders' centres: its mesh spans the centres' cells
        mesh = fig.axes[3].collections[0]
        np.testing.assert_allclose(mesh.get_array().reshape(m.prob.shape), m.prob.numpy())
        assert fig.axes[3].get_xlim() == (0, 24)
        fig.canvas.draw()
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="do not fit"):
        plots.occlusion_figure(np.zeros((30, 30, 3), np.uint8), m)


def test_occlusion_sheet_draws_the_panels():
    """The raster sheet (the explorer's) draws the same description as the figure."""
    m = _maps()
    img = np.zeros((20, 24, 3), np.uint8)
    P = plots.occlusion_panels(img, m, [f"c{i}" for i in range(10)], box=(2, 3, 10, 12))
    assert P.size == 8 and P.stride == 4 and P.lowest == (0, 0)
    assert P.legend[0][3].startswith("c2 (target)")
    sheet, boxes = plots.occlusion_sheet(P, zoom=2)
    assert sheet.dtype == np.uint8
    y0, y1, x0, x1 = boxes["prob"]
    want = np.round(plots.colorize(plots.occlusion_pixels(m.prob, m.ys, m.xs, 8, 20, 24, 2), plots.PROB_CMAP,
                                   *plots.prob_limits(m)) * 255).astype(np.uint8)
    assert (y1 - y0, x1 - x0) == (40, 48)
    np.testing.assert_array_equal(sheet[y0:y1, x0:x1], want)


# --- the book's figures: no text over text; numbered captions ---------------------------------

def _overlaps(a, b) -> bool:
    """Two display-space boxes intersect (by more than half a pixel)."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5


def _text_clashes(fig):
    """Pairs of texts (suptitle, axes titles) that overlap each other or another axes' image."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
    if fig._suptitle is not None:
        texts.append(fig._suptitle)
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts]
    clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if _overlaps(ba, bb)]
    for name, bt in boxes:                       # a title over the image of an axes it does not belong to
        for ax in fig.axes:
            if ax.images and name not in (ax.get_title(), ax.get_title(loc="left")) and \
                    _overlaps(bt, ax.get_window_extent(r)):
                clashes.append((name, "axes " + ax.get_title()))
    return clashes


def test_deconv_steps_suptitle_clears_the_panel_titles():
    """Chapter 02's 'the way down': the suptitle above the two-line panel titles, rows apart."""
    trace = [("conv3", torch.randn(8, 3, 3))] + [
        (n, torch.randn(4, 6, 6)) for n in ("conv3", "norm2", "pool2", "relu2", "conv2", "norm1", "pool1",
                                            "relu1")] + [("conv1", torch.randn(3, 24, 24))]
    kinds = {"conv3": "filter", "norm2": "skip (no normalisation)", "pool2": "unpool", "relu2": "rectify",
             "conv2": "filter", "norm1": "skip (no normalisation)", "pool1": "unpool", "relu1": "rectify",
             "conv1": "filter"}
    fig = plots.deconv_steps(trace, kinds, title="conv3, map 34: the way down")
    try:
        assert fig._suptitle.get_text() == "conv3, map 34: the way down"
        assert _text_clashes(fig) == []
    finally:
        plt.close(fig)


def test_feature_grid_suptitle_clears_the_map_titles():
    pr = torch.rand(4, 9, 3, 7, 7)
    pa = np.full((4, 9, 7, 7, 3), 128, np.uint8)
    fig = plots.feature_grid(pr, pa, [3, 5, 8, 13], title="conv2: top 9 of 4 random maps")
    try:
        assert _text_clashes(fig) == []
    finally:
        plt.close(fig)


def test_the_clash_check_can_fail():
    """The check above finds a suptitle drawn over the titles (what chapter 02 showed)."""
    fig, axes = plt.subplots(1, 3, figsize=(6, 2))
    for ax in axes:
        ax.imshow(np.zeros((4, 4)))
        ax.set_title("a title\non two lines", fontsize=8)
    fig.tight_layout(pad=0.4)
    fig.subplots_adjust(top=0.8)
    fig.suptitle("a suptitle over the titles", y=0.86)
    try:
        assert _text_clashes(fig)
    finally:
        plt.close(fig)


def test_captions_are_numbered_per_chapter_and_kind():
    from zfcore.plots import captions
    plots.chapter(3, "tiny")
    a = plots.caption_html("conv1 filters")
    b = plots.caption_html("top 9 of 8 maps of conv2")
    t = plots.caption_html("purity per layer", "table")
    assert "Figure 3.1" in a and "Figure 3.2" in b and "Table 3.1" in t
    assert 'id="figure-3-2"' in b and 'class="zf-caption zf-caption-table"' in t
    assert a.endswith("</span> <span class=\"zf-caption-scale\">(tiny scale)</span>.</div>")   # the scale, named once
    assert "tiny scale" not in plots.caption_html("Fig. 5 at the tiny scale").split("</span>", 2)[-1]
    assert plots.caption_html("conv1 filters") == a                 # the same caption again: same number
    assert captions.numbering() == (3, {"figure": 3, "table": 1})
    assert "&lt;b&gt;" in plots.caption_html("<b>escaped</b>")
    plots.chapter(4)
    assert "Figure 4.1" in plots.caption_html("again") and "scale" not in plots.caption_html("other")
    with pytest.raises(ValueError, match="kinds: figure, table"):
        plots.caption_html("x", "plate")
    with pytest.raises(ValueError, match="needs a text"):
        plots.caption_html("  ")
    with pytest.raises(ValueError, match="chapter number"):
        plots.chapter(-1)
    plots.chapter(None)
    assert ">Figure 1<" in plots.caption_html("unnumbered chapter")


def _chromium():
    """Playwright and a Chromium to drive (Debian's, or Playwright's own); skip saying which is missing."""
    import shutil
    sync = pytest.importorskip("playwright.sync_api", reason="no Playwright: pip install playwright").sync_playwright
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no Chromium on PATH (apt-get install -y chromium)")
    return sync, exe


def test_zf_js_links_every_output_image_and_words_its_alt(tmp_path):
    """book/_static/zf.js in a real browser, on a page shaped as myst-nb writes a chapter: each
    output image is wrapped in a link to a full-size copy (its file; a blob: for a data: image), and
    an alt that is a path takes the text of the caption after it."""
    import base64
    import io
    from pathlib import Path
    from PIL import Image
    sync, exe = _chromium()
    buf = io.BytesIO()
    Image.new("RGB", (300, 20), (200, 0, 0)).save(buf, format="PNG")
    Image.new("RGB", (640, 40), (0, 0, 200)).save(tmp_path / "fig.png")
    data = base64.b64encode(buf.getvalue()).decode()
    plots.chapter(6, "tiny")
    js = (Path(__file__).resolve().parents[1] / "book" / "_static" / "zf.js").read_text()
    (tmp_path / "zf.js").write_text(js)
    (tmp_path / "page.html").write_text(f"""<html><body><main><article class="bd-article"><section><h2>Occlusion</h2>
      <div class="cell"><div class="cell_output"><img alt="fig.png" src="fig.png"/></div></div>
      <div class="cell"><div class="cell_output"><div class="output text_html">{plots.caption_html("Fig. 7 rows")}</div></div></div>
      <div class="cell"><div class="cell_output"><div class="output text_html"><details open><summary>sheet</summary>
        <img style="max-width:none" src="data:image/png;base64,{data}"/></details>
        {plots.caption_html("Every map of conv5 in one sheet")}</div></div></div>
      <div class="cell"><div class="cell_output"><img alt="../_images/x.png" src="fig.png"/></div></div>
    </section></article></main><script src="zf.js"></script></body></html>""")
    with sync() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = b.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((tmp_path / "page.html").as_uri())
            page.wait_for_load_state("load")
            got = page.evaluate("""() => [...document.querySelectorAll('.cell_output img')].map(i => ({
                alt: i.alt, href: i.closest('a.zf-full') ? i.closest('a.zf-full').href : null,
                target: i.closest('a') ? i.closest('a').target : null}))""")
            assert errors == []
            assert got[0]["alt"] == "Figure 6.1 — Fig. 7 rows (tiny scale)." and got[0]["href"].endswith("/fig.png")
            assert got[0]["target"] == "_blank"
            assert got[1]["alt"].startswith("Figure 6.2 — Every map of conv5") and got[1]["href"].startswith("blob:")
            # the blob holds the image itself, at its full size
            size = page.evaluate("""(u) => new Promise(r => { const i = new Image(); i.onload = () => r([i.naturalWidth,
                i.naturalHeight]); i.src = u; })""", got[1]["href"])
            assert size == [300, 20]
            assert got[2]["alt"] == "A figure of the section \u201cOcclusion\u201d"      # no caption after it
        finally:
            b.close()
