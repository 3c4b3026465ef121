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
