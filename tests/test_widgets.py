"""The explorers (zfcore.widgets): they show the data the library computes, and react to their controls."""
import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

from zfcore import activations, deconv, mining, plots  # noqa: E402
from zfcore.data.scenes import load_scenes  # noqa: E402
from zfcore.data.transforms import center_crop  # noqa: E402
from zfcore.presets import get_preset  # noqa: E402
from zfcore.widgets import ImageExplorer, LayerExplorer, OcclusionExplorer, decode_png  # noqa: E402

TINY = get_preset("tiny").replace(epochs=1, evolution_epochs=(1,))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from zfcore.train import train
    root = tmp_path_factory.mktemp("widgets")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root / "artifacts"))
    try:
        yield train(TINY, out=root / "run", progress=False)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def layer_ex(run):
    # two layers keep the test short (each layer's maps are all projected when first shown)
    return LayerExplorer(run, "val", scale=TINY, layers=["conv1", "conv2"], device="cpu")


@pytest.fixture(scope="module")
def image_ex(run):
    return ImageExplorer(run, "test", scale=TINY, per_layer=4, zoom=1, device="cpu")


def _close(a, b, what):
    """uint8 images equal up to rounding (a batched pass may differ in the last bits)."""
    assert a.shape == b.shape, (what, a.shape, b.shape)
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.mean() < 0.5 and d.max() <= 4, (what, d.mean(), d.max())


def _expected_halves(run, layer, c, side):
    """Map ``c``'s top-9 projections and patches, computed directly, tiled as Fig. 2 shows them."""
    model, mean = run.load(), run.mean()
    ds = load_scenes(TINY, "val", progress=False)
    tk = mining.mined(run, "val", scale=TINY, progress=False)[layer]
    pr = mining.projections(ds.images, tk, model, mean, TINY.image_size, maps=[c])
    pa = mining.patches(ds.images, tk, model, TINY.image_size, maps=[c])
    (pairs,) = plots.trimmed_pairs(pr, pa, side)
    left = plots.tile([p for p, _ in pairs], cols=3)
    right = plots.tile([q for _, q in pairs], cols=3)
    return (np.round(left * 255).astype(np.uint8), np.round(right * 255).astype(np.uint8))


def test_layer_explorer_shows_the_chosen_map(run, layer_ex):
    ex = layer_ex
    assert ex.layers == ["conv1", "conv2"]
    assert list(ex.layer_dropdown.options) == ex.layers
    assert ex.layer == "conv1" and ex.map == 0
    before = ex.image_widget.value
    assert before[:8] == b"\x89PNG\r\n\x1a\n"
    ex.map_slider.value = 5                       # as the browser does: the observer redraws
    assert ex.map == 5
    after = ex.image_widget.value
    assert after != before
    img = decode_png(after)
    t, g = ex.tile_width, ex.gap
    assert img.shape == (ex.tile_height, 2 * t + g, 3)
    left, right = _expected_halves(run, "conv1", 5, ex.side)
    _close(img[:, :t], left, "projections")
    _close(img[:, t + g:], right, "patches")
    assert "#%d" % int(ex.topk["conv1"].images[5, 0]) in ex.caption.value


def test_layer_explorer_switches_layer(run, layer_ex):
    ex = layer_ex
    ex.layer_dropdown.value = "conv2"
    n2 = ex.topk["conv2"].num_maps
    assert ex.map_slider.max == n2 - 1
    ex.map_slider.value = n2 - 1
    img = decode_png(ex.image_widget.value)
    left, right = _expected_halves(run, "conv2", n2 - 1, ex.side)
    _close(img[:, :ex.tile_width], left, "conv2 projections")
    _close(img[:, ex.tile_width + ex.gap:], right, "conv2 patches")
    # to a layer with fewer maps: the slider's range follows and its value is clamped
    ex.layer_dropdown.value = "conv1"
    n1 = ex.topk["conv1"].num_maps
    assert n1 < n2
    assert ex.map_slider.max == n1 - 1 and ex.map == n1 - 1
    assert np.array_equal(decode_png(ex.image_widget.value), ex.panel("conv1", n1 - 1))
    ex.select(layer="conv2", map=40)
    assert (ex.layer, ex.map, ex.map_slider.max) == ("conv2", 40, n2 - 1)
    assert np.array_equal(decode_png(ex.image_widget.value), ex.panel("conv2", 40))


def test_image_explorer_shows_the_strongest_maps(run, image_ex):
    ex = image_ex
    before = ex.image_widget.value
    ex.image_slider.value = 3
    assert ex.index == 3
    assert ex.image_widget.value != before
    ds = load_scenes(TINY, "test", progress=False)
    assert ds.classes[int(ds.labels[3])] in ex.caption.value
    model, mean = run.load(), run.mean()
    x = center_crop(torch.from_numpy(ds.images[3:4]).permute(0, 3, 1, 2).float() - mean, TINY.image_size)
    img = decode_png(ex.image_widget.value)
    for layer in ("conv2", "conv5"):
        act = activations.layer_activations(model, x, layer)[layer][0]
        peak = act.flatten(1).amax(1).numpy()
        maps = np.argsort(-peak, kind="stable")[:4]
        assert ex.maps[layer] == maps.tolist()
        proj = deconv.project(model, x.expand(4, -1, -1, -1), layer, torch.from_numpy(maps))
        s, pad = TINY.image_size, ex.pad
        row = np.full((s, 4 * (s + pad) - pad, 3), 255, np.uint8)
        for j, p in enumerate(proj):
            row[:, j * (s + pad): j * (s + pad) + s] = np.round(plots.normalize_projection(p) * 255)
        y0, y1, x0, x1 = ex.row_boxes[layer]
        _close(img[y0:y1, x0:x1], row, layer)
        _close(ex.row(layer), row, layer)
    # back to an image seen before: the cached drawing
    ex.image_slider.value = 0
    assert ex.image_widget.value == before


def test_bad_input(run, layer_ex, image_ex):
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        LayerExplorer(run, "nope", scale=TINY)
    with pytest.raises(ValueError, match="unknown split"):
        ImageExplorer(run, "validation", scale=TINY)
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1"):
        LayerExplorer(run, "val", scale=TINY, layers=["conv9"])
    with pytest.raises(ValueError, match="unknown layer 'conv5'"):      # not among this explorer's
        layer_ex.select(layer="conv5")
    with pytest.raises(ValueError, match="unknown layer 'fc6'"):
        layer_ex.select(layer="fc6")
    with pytest.raises(ValueError, match="out of range"):
        layer_ex.select(map=10_000)
    with pytest.raises(ValueError, match="unknown layer"):
        ImageExplorer(run, "test", scale=TINY, layers=["pool1"])
    with pytest.raises(ValueError, match="out of range"):
        image_ex.select(10_000)


# --------------------------------------------------------------------------- occlusion explorer (Fig. 7)

OCC_IMAGES = [0, 3, 7]


@pytest.fixture(scope="module")
def occ_ex(run):
    # coarse grids keep it short: 16 px or 12 px occluders, stride 8 or 12
    return OcclusionExplorer(run, "test", scale=TINY, images=OCC_IMAGES, sizes=[12, 16], strides=[8, 12],
                             zoom=2, device="cpu")


def _direct(run, i, size, stride):
    from zfcore.occlusion import sensitivity
    ds = load_scenes(TINY, "test", progress=False)
    x = center_crop(torch.from_numpy(ds.images[i:i + 1]).permute(0, 3, 1, 2).float() - run.mean(),
                    TINY.image_size)
    return sensitivity(run.load(), x, size, stride, target=int(ds.labels[i])), ds


def test_occlusion_explorer_controls_redraw(occ_ex):
    ex = occ_ex
    assert (ex.index, ex.size, ex.stride) == (0, 12, 8)          # the default 12 px occluder (48 / 4)
    assert list(ex.size_dropdown.options) == [12, 16] and list(ex.stride_dropdown.options) == [8, 12]
    first = ex.image_widget.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    seen = {first}
    ex.image_slider.value = 1                                   # as the browser does
    assert ex.index == 3 and ex.image_widget.value not in seen
    seen.add(ex.image_widget.value)
    ex.size_dropdown.value = 16
    assert ex.size == 16 and ex.image_widget.value not in seen
    seen.add(ex.image_widget.value)
    ex.stride_dropdown.value = 12
    assert ex.stride == 12 and ex.image_widget.value not in seen
    assert ex.maps.ys == [0, 12, 24, 32]
    assert "image #3" in ex.caption.value and "16x16" in ex.caption.value
    img = decode_png(ex.image_widget.value)
    side = TINY.image_size * ex.zoom
    for name in ex.PANELS:
        y0, y1, x0, x1 = ex.panel_boxes[name]
        assert (y1 - y0, x1 - x0) == (side, side) and y1 <= img.shape[0] and x1 <= img.shape[1]
    # select() changes several controls with one redraw; back to the start: the cached drawing
    ex.select(image=0, size=12, stride=8)
    assert ex.image_widget.value == first
    # a size not offered yet joins the dropdown
    ex.select(size=20)
    assert ex.size == 20 and 20 in ex.size_dropdown.options and ex.maps.ys[-1] == 28


def test_occlusion_explorer_shows_sensitivity(run, occ_ex):
    from zfcore import plots as P
    ex = occ_ex
    ex.select(image=7, size=16, stride=8)
    r, ds = _direct(run, 7, 16, 8)
    m = ex.maps
    assert (m.ys, m.xs, m.target, m.layer, m.feature) == (r.ys, r.xs, int(ds.labels[7]), r.layer, r.feature)
    # the explorer calls sensitivity on the same crop with the same settings: the same bits
    assert torch.equal(m.prob, r.prob) and torch.equal(m.activity, r.activity)
    assert ds.classes[int(ds.labels[7])] in ex.caption.value
    # the probability panel as drawn: each occluder's colour at its centre, blank where no centre reaches
    z, s = ex.zoom, TINY.image_size
    shown = ex.panel("prob")
    lo, hi = P.prob_limits(r)
    expected = np.round(P.colorize(P.occlusion_pixels(r.prob, r.ys, r.xs, 16, s, s, z), P.PROB_CMAP,
                                   lo, hi) * 255).astype(np.uint8)
    _close(shown, expected, "prob panel")
    import matplotlib
    cmap = matplotlib.colormaps[P.PROB_CMAP]
    for i, yy in enumerate(r.ys):
        for j, xx in enumerate(r.xs):
            want = np.round(np.asarray(cmap((float(r.prob[i, j]) - lo) / (hi - lo))[:3]) * 255)
            got = shown[(yy + 8) * z, (xx + 8) * z].astype(int)
            assert np.abs(got - want).max() <= 2, (i, j, got, want)
    assert shown[0, 0].tolist() == [round(255 * v) for v in P.BLANK_COLOUR]
    # the input panel is the crop the model sees (outside the occluder and the box outlines)
    crop = ds.images[7][3:51, 3:51]
    assert np.array_equal(ex.panel("input")[-1, -1], crop[-1, -1])


def _gallery_images(html):
    """The (alt, PNG bytes) of each inline image of a gallery block."""
    import base64
    import re
    return [(alt, base64.b64decode(data))
            for alt, data in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', html)]


def test_occlusion_gallery_html(occ_ex):
    html = occ_ex.gallery_html(images=[0, 3], size=12, stride=8)
    assert html.startswith('<div class="zf-gallery zf-gallery-occlusion">')
    imgs = _gallery_images(html)
    assert len(imgs) == 2 and html.count("<figure>") == 2
    assert "image #3" in html
    # the panels shown are the explorer's own, and the alt text says what they are in words
    assert imgs[1][1] == occ_ex.compute(3, 12, 8)["png"]
    assert imgs[1][0].startswith("Occlusion sensitivity of image 3 of the test split") and "12 px occluder" in imgs[1][0]


def test_occlusion_gallery_shows_what_the_page_does_not(occ_ex):
    """By default: images the page's Fig. 7 rows leave out, at each occluder size in turn."""
    cases = occ_ex.examples(n=3, exclude=[0])
    assert sorted(i for i, _, _ in cases) == [3, 7]           # 0 is on the page: not repeated
    assert [s for _, s, _ in cases] == occ_ex.sizes[:2] == [12, 16]   # what the size control does
    html = occ_ex.gallery_html(n=3, exclude=[0])
    assert "image #0" not in html and "image #3" in html and "image #7" in html
    assert "A 12x12 px occluder" in html and "A 16x16 px occluder" in html
    # every image on the page already (a small folder split): the same images, at the other sizes
    again = occ_ex.examples(n=3, exclude=OCC_IMAGES)
    assert sorted(i for i, _, _ in again) == sorted(OCC_IMAGES)
    assert occ_ex.size_dropdown.value not in [s for _, s, _ in again]


def test_image_gallery_html(image_ex):
    from zfcore.widgets.common import pick_examples
    labels = image_ex.scenes.labels
    html = image_ex.gallery_html(n=2, exclude=[0])
    a, b = pick_examples(range(len(labels)), 2, [0], labels)
    assert 0 not in (a, b) and len({int(labels[0]), int(labels[a]), int(labels[b])}) == 3   # classes not on the page
    imgs = _gallery_images(html)
    assert len(imgs) == 4                                     # per image: the crop and the rows
    assert f"image #{a}</b>" in html and f"image #{b}</b>" in html and "image #0</b>" not in html
    d = image_ex.compute(a)
    assert imgs[0][1] == d["input_png"] and imgs[1][1] == d["png"]
    assert imgs[0][0].startswith(f"Image {a} of the test split") and "conv1" in imgs[0][0]
    assert image_ex.index == 0                                # the gallery does not move the explorer
    with pytest.raises(ValueError, match="out of range"):
        image_ex.gallery_html(images=[10_000])


def test_layer_gallery_html(layer_ex):
    ex = layer_ex
    cases = ex.examples()
    assert [layer for layer, _ in cases] == ex.layers          # one map per layer
    for layer, c in cases:                                     # the map whose top activation is strongest
        assert float(ex.topk[layer].values[c, 0]) == float(np.nanmax(ex.topk[layer].values[:, 0]))
    other = ex.examples(exclude={"conv1": [cases[0][1]]})
    assert other[0][1] != cases[0][1]
    html = ex.gallery_html()
    imgs = _gallery_images(html)
    assert len(imgs) == len(ex.layers)
    np.testing.assert_array_equal(decode_png(imgs[0][1]), ex.panel(*cases[0]))
    assert f"<b>conv1, map {cases[0][1]}</b>" in html and imgs[0][0].startswith(f"conv1, map {cases[0][1]}:")
    with pytest.raises(ValueError, match="out of range"):
        ex.gallery_html(examples=[("conv1", 10_000)])


def test_occlusion_explorer_bad_input(run, occ_ex):
    ex = occ_ex
    with pytest.raises(ValueError, match="image 10000 is out of range.*100 images"):
        ex.select(image=10_000)
    with pytest.raises(ValueError, match="image 5 is not among this explorer's images"):
        ex.select(image=5)
    with pytest.raises(ValueError, match="occluder size 49 is larger than the 48x48"):
        ex.select(size=49)
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        ex.select(stride=0)
    with pytest.raises(ValueError, match="unknown panel"):
        ex.panel("nope")
    with pytest.raises(ValueError, match="occluder size 64 is larger than the 48x48"):
        OcclusionExplorer(run, "test", scale=TINY, images=[0], sizes=[64], device="cpu")
    with pytest.raises(ValueError, match="out of range"):
        OcclusionExplorer(run, "test", scale=TINY, images=[-1], device="cpu")
    with pytest.raises(ValueError, match="unknown split"):
        OcclusionExplorer(run, "nope", scale=TINY)
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        OcclusionExplorer(run, "test", scale=TINY, images=[0], layer="conv9", device="cpu")


def test_top_maps_stable_order():
    """activations.top_maps: descending by the map's peak, ties to the lower map index (ImageExplorer's order)."""
    from zfcore.models import zfnet
    torch.manual_seed(0)
    model = zfnet(10, input_size=64, width=0.25, fc_units=32, init="matched").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    maps, values = activations.top_maps(model, x, "conv2", 5)
    peak = activations.layer_activations(model, x, "conv2")["conv2"].flatten(2).amax(2).double()
    for n in range(2):
        want = np.argsort(-peak[n].numpy(), kind="stable")[:5]
        assert maps[n].tolist() == want.tolist()
        assert values[n].tolist() == peak[n, want].tolist()
    with torch.no_grad():                                  # every map of conv1 zero: all tie
        model.conv1.weight.zero_()
        model.conv1.bias.zero_()
    maps, values = activations.top_maps(model, x[:1], "conv1", 4)
    assert maps.tolist() == [[0, 1, 2, 3]] and values.tolist() == [[0.0] * 4]
    assert activations.top_maps(model, x[:1], "conv1", 10_000)[0].shape[1] == model.conv1.out_channels
    with pytest.raises(ValueError, match="k must be"):
        activations.top_maps(model, x, "conv1", 0)


def test_pick_examples_prefers_classes_not_shown():
    from zfcore.widgets.common import pick_examples
    labels = [0, 0, 1, 1, 2, 0]
    assert pick_examples(range(6), 3) == [0, 1, 2]                       # no labels: in order
    assert pick_examples(range(6), 3, labels=labels) == [0, 2, 4]        # a class each
    assert pick_examples(range(6), 3, exclude=[0], labels=labels) == [2, 4, 1]   # class 0 is on the page
    assert pick_examples(range(6), 10, labels=labels) == [0, 2, 4, 1, 3, 5]
    with pytest.raises(ValueError, match="at least one"):
        pick_examples(range(6), 0)


def test_gallery_block_inlines_a_large_image_as_jpeg():
    from zfcore.widgets.common import gallery_block, png_bytes
    rng = np.random.default_rng(0)
    small = png_bytes(np.zeros((8, 8, 3), np.uint8))
    noisy = png_bytes(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8))
    html = gallery_block([([small, noisy], "<b>c</b>", 'an "alt"')], "image", max_bytes=100_000)
    assert html.count('src="data:image/png;base64,') == 1 and html.count('src="data:image/jpeg;base64,') == 1
    assert html.count('alt="an &quot;alt&quot;"') == 2 and "<figcaption><b>c</b></figcaption>" in html
