"""Correspondence analysis (zfcore.correspondence, Section 4.3, Table 1): the Delta measure,
the part locator, the occluders, and the table on a small model."""
import itertools

import numpy as np
import pytest
import torch

from zfcore import correspondence as C
from zfcore import correspondence_report as R
from zfcore.data.scenes import (SOURCE_CLASSES, _has_glyph, ObjectSpec, SceneSpec, glyph, object_point,
                                render_scene)
from zfcore.activations import layer_activations
from zfcore.models import zfnet
from zfcore.findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Finding
from zfcore.presets import get_preset

TINY = get_preset("tiny")
DOG = SOURCE_CLASSES["dog face"]


def _dark(rgb) -> bool:
    """The eyes and nose of the dog glyph are black (the face is orange, ~ (240, 170, 60))."""
    return int(np.max(rgb)) < 90


# ------------------------------------------------------------------------------ the measure

def _naive_delta(eps: np.ndarray) -> float:
    """Section 4.3 written out: sum over pairs i != j of the Hamming distance of the signs,
    normalised by the number of dimensions, divided by the number of ordered pairs."""
    n = len(eps)
    s = np.sign(eps.reshape(n, -1))
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += sum(1 for a, b in zip(s[i], s[j]) if a != b) / s.shape[1]
    return total / (n * (n - 1))


def test_delta_matches_a_double_loop_over_pairs():
    rng = np.random.default_rng(0)
    for n, shape in [(5, (37,)), (2, (4, 3, 3)), (7, (50,))]:
        eps = rng.normal(size=(n, *shape))
        eps[rng.random(eps.shape) < 0.3] = 0.0            # unchanged features: sign 0
        got = C.delta_measure(torch.from_numpy(eps))
        assert got == pytest.approx(_naive_delta(eps), abs=1e-12)
        # the matrix behind it: symmetric, zero diagonal
        h = C.hamming_matrix(torch.sign(torch.from_numpy(eps.reshape(n, -1))).to(torch.int8))
        assert torch.equal(h, h.T) and torch.all(h.diagonal() == 0)   # integer counts: exact


def test_delta_extremes_and_tolerance():
    e = torch.randn(1, 30)
    assert C.delta_measure(e.repeat(5, 1)) == 0.0              # identical changes: perfectly consistent
    assert C.delta_measure(torch.cat([e, -e])) == pytest.approx(
        float((e != 0).float().mean()))                        # opposite signs everywhere: 1
    small = torch.tensor([[1e-9, 1.0], [-1e-9, 1.0]])
    assert C.delta_measure(small) == pytest.approx(0.5)
    assert C.delta_measure(small, tol=1e-6) == 0.0             # rounding-sized changes count as 0
    with pytest.raises(ValueError, match="at least 2"):
        C.delta_measure(torch.randn(1, 5))


def test_delta_of_a_model_uses_the_layer_features():
    torch.manual_seed(0)
    model = zfnet(10, input_size=48, width=0.25, fc_units=32).eval()
    x = torch.randn(5, 3, 48, 48) * 50
    xt = C.occlude(x, [(10, 10, 20, 20)] * 5)
    for layer in ("pool5", "relu7"):
        acts = layer_activations(model, torch.cat([x, xt]), layer)[layer].double()
        eps = (acts[:5] - acts[5:]).reshape(5, -1).numpy()
        eps[np.abs(eps) <= 1e-5 * np.abs(acts[:5].numpy()).max()] = 0
        # the same float32 features on both sides (one pass of the same 10 images), so the same
        # signs; two float64 sums of 20 fractions differ by 1e-14, one sign by 1/(D 20) >= 8e-4
        assert C.delta(model, x, xt, layer) == pytest.approx(_naive_delta(eps), abs=1e-9)
        assert C.delta(model, x, x.clone(), layer) == 0.0      # nothing occluded: no change anywhere
    with pytest.raises(ValueError, match="no layer|layers"):
        C.delta(model, x, xt, "conv9")
    with pytest.raises(ValueError, match="at least 2"):
        C.delta(model, x[:1], xt[:1], "pool5")
    with pytest.raises(ValueError, match="shape"):
        C.delta(model, x, xt[:4], "pool5")


# ------------------------------------------------------------------------------ the parts

def test_parts_lie_on_the_dark_eyes_and_nose_of_the_sprite():
    sprite = np.asarray(glyph(DOG))                     # (H, W, 4)
    h, w = sprite.shape[:2]
    parts = C.FACE_PARTS["dog face"]
    assert set(parts) == {"left eye", "right eye", "nose"}
    for name, (u, v) in parts.items():
        px = sprite[int(v * h), int(u * w)]
        assert px[3] > 128 and _dark(px[:3]), (name, px)
        # the whole 3x3 neighbourhood is part of the blob, not its outline's edge
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):
            q = sprite[int(v * h) + dy, int(u * w) + dx]
            assert q[3] > 128 and _dark(q[:3]), (name, dy, dx)
    # left and right as seen in the image; the nose between and below the eyes
    (lu, lv), (ru, rv), (nu, nv) = parts["left eye"], parts["right eye"], parts["nose"]
    assert lu < nu < ru and nv > max(lv, rv) and abs(lv - rv) < 0.02


@pytest.mark.parametrize("angle,size,cx,cy", [(0.0, 0.6, 0.5, 0.5), (17.5, 0.8, 0.42, 0.6),
                                              (-24.0, 0.5, 0.68, 0.33), (90.0, 0.55, 0.45, 0.55),
                                              (-160.0, 0.7, 0.5, 0.45)])
def test_part_points_follow_the_object_in_rendered_scenes(angle, size, cx, cy):
    obj = ObjectSpec(glyph=DOG, label=0, size=size, cx=cx, cy=cy, angle=angle, brightness=0.9)
    spec = SceneSpec(photo=3, x0=0.3, y0=0.6, crop=0.5, flip=False, gray=False, hue=0,
                     brightness=1.0, objects=[obj])
    S = 192
    img, boxes = render_scene(spec, S)
    for name, (u, v) in C.FACE_PARTS["dog face"].items():
        x, y = object_point(obj, S, u, v)
        assert _dark(img[int(y), int(x)]), (name, angle, img[int(y), int(x)])
        # ... and part_point is the same point in the centre crop the model sees
        px, py = C.part_point(spec, name, S, 160)
        assert (px, py) == pytest.approx((x - 16, y - 16))
    # the sprite's corners land on the corners of the object's box (unrotated)
    if angle == 0.0:
        x0, y0 = object_point(obj, S, 0, 0)
        x1, y1 = object_point(obj, S, 1, 1)
        assert np.allclose([x0, y0, x1, y1], boxes[0], atol=1.01)    # a whole-pixel ink box: a pixel
    # a point outside the eyes (the forehead) is the orange face, not dark
    fx, fy = object_point(obj, S, 0.5, 0.25)
    assert not _dark(img[int(fy), int(fx)])


def test_part_box_is_centred_on_the_part_and_sized_to_the_object():
    obj = ObjectSpec(glyph=DOG, label=0, size=0.6, cx=0.5, cy=0.5, angle=10.0)
    spec = SceneSpec(photo=0, x0=0, y0=0, crop=1, flip=False, gray=False, hue=0, brightness=1,
                     objects=[ObjectSpec(glyph="2764", label=-1, size=0.2, cx=0.2, cy=0.2), obj])
    x0, y0, x1, y1 = C.part_box(spec, "nose", 73, 64, part_size=0.2)
    side = round(0.2 * 0.6 * 73)
    assert (x1 - x0, y1 - y0) == (side, side)
    px, py = C.part_point(spec, "nose", 73, 64)
    assert abs((x0 + x1) / 2 - px) <= 0.5 and abs((y0 + y1) / 2 - py) <= 0.5
    assert C.face_object(spec) is obj                   # the distractor is skipped
    with pytest.raises(ValueError, match="unknown part 'tail'.*left eye"):
        C.part_box(spec, "tail", 73, 64)
    with pytest.raises(ValueError, match="face classes with parts: dog face"):
        C.part_point(spec, "nose", 73, 64, cls="car")
    with pytest.raises(ValueError, match="no 'dog face' object"):
        C.face_object(SceneSpec(photo=0, x0=0, y0=0, crop=1, flip=False, gray=False, hue=0,
                                brightness=1, objects=[]))


def test_occlude_sets_exactly_the_boxes():
    x = torch.randn(3, 3, 20, 20)
    before = x.clone()
    boxes = [(2, 3, 7, 9), (0, 0, 20, 1), (15, 12, 20, 20)]
    out = C.occlude(x, boxes, fill=0.25)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        mask = torch.zeros(20, 20, dtype=torch.bool)
        mask[y0:y1, x0:x1] = True
        assert torch.all(out[i][:, mask] == 0.25)
        assert torch.equal(out[i][:, ~mask], x[i][:, ~mask])
    assert torch.equal(x, before)                        # the input is not modified
    assert torch.equal(C.occlude(x, boxes)[0, :, 3:9, 2:7], torch.zeros(3, 6, 5))
    with pytest.raises(ValueError, match="2 boxes for 3 images"):
        C.occlude(x, boxes[:2])


def test_random_boxes_stay_inside():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        x0, y0, x1, y1 = C.random_box(rng, 7, 48)
        assert 0 <= x0 and x1 <= 48 and 0 <= y0 and y1 <= 48 and x1 - x0 == 7 == y1 - y0
        seen.add((x0, y0))
        x0, y0, x1, y1 = C.random_box(rng, 7, 48, within=(10.2, 20, 30, 40.7))
        assert 11 <= x0 and x1 <= 30 and 20 <= y0 and y1 <= 40
    assert len(seen) > 100


# ------------------------------------------------------------------------------ Table 1

@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(tmp_path_factory.mktemp("corr") / "artifacts"))
    torch.manual_seed(0)
    model = zfnet(TINY.num_classes, input_size=TINY.image_size, width=0.25, fc_units=32).eval()
    mean = torch.full((3, TINY.stored_size, TINY.stored_size), 110.0)
    try:
        yield model, mean
    finally:
        mp.undo()


def _table(setup, **kw):
    model, mean = setup
    kw.setdefault("draws", 4)
    return C.correspondence_table(None, scale=TINY, model=model, mean=mean, **kw)


def test_table_shapes_values_and_reproducibility(tiny_setup):
    occ = ("right eye", "left eye", "nose", "random", "random on object")
    t = _table(tiny_setup, occlusions=occ, seed=3)
    assert t.deltas.shape == (5, 2, 4) and t.layers == ("pool5", "relu7")
    assert np.all((t.deltas >= 0) & (t.deltas <= 1)) and np.all(t.deltas > 0)
    assert t.chosen.shape == (4, 5) and all(len(set(r)) == 5 for r in t.chosen.tolist())
    # the part occluders are the part boxes of the chosen images, the random ones the same size
    from zfcore.data.scenes import load_scenes
    ds = load_scenes(TINY, "test", progress=False)
    assert np.all(ds.labels[t.pool] == ds.classes.index("dog face"))
    for d, k in [(0, 0), (3, 4)]:
        spec = ds.specs[int(t.pool[t.chosen[d, k]])]
        for part in ("left eye", "nose"):
            assert tuple(t.boxes[part][d, k]) == C.part_box(spec, part, TINY.stored_size, TINY.image_size)
        side = t.boxes["nose"][d, k][2] - t.boxes["nose"][d, k][0]
        for o in ("random", "random on object"):
            b = t.boxes[o][d, k]
            assert b[2] - b[0] == side and b[3] - b[1] == side
    # the Delta of one cell, recomputed from scratch
    model, mean = tiny_setup
    from zfcore.data.transforms import center_crop
    from zfcore.data.transforms import preprocess
    idx = t.pool[t.chosen[2]]
    x = center_crop(preprocess(torch.from_numpy(ds.images[idx]).permute(0, 3, 1, 2), mean),
                    TINY.image_size)
    xt = C.occlude(x, t.boxes["random"][2])
    # Delta counts signs: the table's pass and this one round differently (other batches) at
    # the 1e-7 level of the activations, far below rtol = 1e-5 of them, and every change that
    # is not exactly 0 is over 4 times that here: the same signs; float64 sums of 20 fractions
    # then differ by 1e-14, one sign would move Delta by 1/(64 * 20) = 8e-4
    assert t.values("random", "pool5")[2] == pytest.approx(C.delta(model, x, xt, "pool5"), abs=1e-9)
    # same seed, same numbers; another seed, other draws
    again = _table(tiny_setup, occlusions=occ, seed=3)
    assert np.array_equal(again.deltas, t.deltas) and np.array_equal(again.chosen, t.chosen)
    assert all(np.array_equal(again.boxes[o], t.boxes[o]) for o in occ)
    other = _table(tiny_setup, occlusions=occ, seed=4)
    assert not np.array_equal(other.deltas, t.deltas)
    # rows, the paper beside them, the finding
    rows = R.comparison_rows(t)
    assert [r[0] for r in rows] == list(occ)
    assert rows[0][3:] == ("0.067 ± 0.007", "0.069 ± 0.015") and rows[4][3:] == ("-", "-")
    assert rows[1][1] == f"{t.mean('left eye', 'pool5'):.3f} ± {t.std('left eye', 'pool5'):.3f}"
    found = R.findings(t)
    assert all(isinstance(f, Finding) for f in found) and len(found) == 4
    assert [s.to_dict() for s in t.specs] == [ds.specs[int(i)].to_dict() for i in t.pool]
    assert f"with one glyph (OpenMoji {DOG})" in R.easier_text(t) and f"The {len(t.pool)} eligible" in R.easier_text(t)
    ev = R.gaps(t)
    assert set(ev) == {"pool5", "relu7"}
    holds = all(t.mean(p, "pool5") < t.mean("random", "pool5") for p in occ[:3])
    assert ev["pool5"]["all_lower"] == holds
    # the verdict: each part's paired draw-by-draw gap against 2 SE of its mean, by hand
    r = t.values("random", "pool5")
    per = []
    for p in occ[:3]:
        g = r - t.values(p, "pool5")
        se = g.std(ddof=1) / np.sqrt(len(g))
        per.append(HOLDS if g.mean() > 2 * se else DOES_NOT_HOLD if g.mean() < -2 * se else NOT_TESTABLE)
    expect = DOES_NOT_HOLD if DOES_NOT_HOLD in per else HOLDS if all(v == HOLDS for v in per) else NOT_TESTABLE
    assert found[0].verdict == expect
    assert ev["pool5"]["paper_gaps"]["right eye"] == pytest.approx(0.107 - 0.067)
    import matplotlib
    matplotlib.use("Agg")
    fig = R.figure(t, draw=1)
    assert len(fig.axes) == 5 * 6


def test_table_rejects_bad_inputs(tiny_setup):
    with pytest.raises(ValueError, match="face classes with parts: dog face"):
        _table(tiny_setup, cls="cat face")
    with pytest.raises(ValueError, match="unknown occlusion 'tail'"):
        _table(tiny_setup, occlusions=("tail",))
    with pytest.raises(ValueError, match="no layer 'fc9'|fc9"):
        _table(tiny_setup, layers=("pool5", "fc9"))
    with pytest.raises(ValueError, match="n_images must be an int >= 2"):
        _table(tiny_setup, n_images=1)
    with pytest.raises(ValueError, match="draws"):
        _table(tiny_setup, draws=0)
    with pytest.raises(ValueError, match=r"only \d+ test images of 'dog face'"):
        _table(tiny_setup, n_images=50)
    t = _table(tiny_setup, occlusions=("nose", "random"), draws=2)
    with pytest.raises(ValueError, match="no row 'left eye'"):
        t.mean("left eye", "pool5")
    with pytest.raises(ValueError, match="no row 'random on object'"):
        R.findings(t, random="random on object")
    with pytest.raises(ValueError, match="no part rows"):
        R.findings(_table(tiny_setup, occlusions=("random",), draws=2))


# ------------------------------------------------------------------ what the scenes make easier

def _dogs(sizes, angles, photos, glyphs=None, distractor=()):
    specs = []
    for k, (size, angle, photo) in enumerate(zip(sizes, angles, photos)):
        objs = [ObjectSpec("2764", -1, 0.2, 0.2, 0.2)] if k in distractor else []
        objs.append(ObjectSpec(glyphs[k] if glyphs else DOG, 0, size, 0.5 + 0.01 * k, 0.5, angle,
                               brightness=1.0 + 0.1 * k))
        specs.append(SceneSpec(photo, 0.0, 0.0, 1.0, False, False, 0, 1.0, objs))
    from types import SimpleNamespace
    return SimpleNamespace(cls="dog face", split="test", n_images=2, specs=specs)


def test_easier_text_reads_the_class_table_and_the_recipes(monkeypatch):
    """The old chapter said nothing of it: the five 'dogs' were one glyph, unsaid."""
    t = _dogs([0.5, 0.7, 0.6], [-10.0, 0.0, 20.0], [1, 1, 4], distractor=(2,))
    text = R.easier_text(t)
    assert f"with one glyph (OpenMoji {DOG})" in text and "show one drawing" in text
    assert "The 3 eligible images of the test split, from which each draw takes 2" in text
    # what differs is read from the recipes: size, position (cx only), rotation, colour (brightness
    # only); contrast, saturation and cy are equal in all and left out
    assert ("differing only in size (0.50 to 0.70 of the image's side), position (centre at 0.50 to 0.52 "
            "across), rotation (-10 to +20 degrees) and colour (brightness x1.00 to 1.20), on crops of 2 different "
            "background photographs (a distractor glyph beside it in 1)") in text
    assert "contrast" not in text and "down" not in text
    # why one glyph: OpenMoji's other dogs, which its font holds, are in profile
    assert "the poodle 1F429" in text and "in profile" in text
    assert all(_has_glyph(code) for code in C.PROFILE_GLYPHS["dog face"])
    assert "up to its size, position, rotation and colour" in text and "breed, pose" in text
    # equal sizes: size is no longer among the differences
    same = R.easier_text(_dogs([0.6, 0.6], [0.0, 5.0], [0, 0]))
    assert "size (" not in same and "on crops of 1 different background" in same
    # a class table with several glyphs of the class: the count comes from it
    monkeypatch.setitem(SOURCE_CLASSES, "dog face", (DOG, "1F415", "1F429", DOG))
    assert C.class_glyphs("dog face") == (DOG, "1F415", "1F429")
    text = R.easier_text(t)
    assert "with 3 glyphs (OpenMoji 1F436, 1F415, 1F429)" in text and "show one drawing" in text
    assert "in profile" not in text
    two = R.easier_text(_dogs([0.5, 0.7], [0.0, 0.0], [1, 2], glyphs=[DOG, "1F415"]))
    assert "show 2 drawings" in two and "the pixels of one of 2 sprites" in two and "rotation" not in two
    assert C.class_glyphs("car", {"car": "1F697"}) == ("1F697",)


def test_findings_decide_beyond_the_standard_error(tiny_setup):
    """Table 1's verdicts on hand-made Deltas: a clear gap holds, a gap within its SE is not
    testable (the old rule, a mean below, passed it), a share of draws above 80% by less than 2 SE
    does not pass."""
    import dataclasses
    # 30 draws: "more than 80% of the draws" by 2 binomial SE (14.6 points) needs more than 94.6%
    t = _table(tiny_setup, occlusions=("right eye", "left eye", "nose", "random", "random on object"), draws=30)
    rng = np.random.default_rng(0)
    d = np.zeros_like(t.deltas)                          # (occlusions, layers, draws)
    d[3] = 0.10 + 0.001 * rng.standard_normal(d[3].shape)    # random regions
    d[4] = 0.09                                              # random on the object
    d[:3, 0] = 0.06 + 0.001 * rng.standard_normal((3, 30))   # parts, layer 5: clearly below random
    d[:3, 1] = 0.095                                         # layer 7: a smaller gap
    clear = R.findings(dataclasses.replace(t, deltas=d))
    assert [f.verdict for f in clear] == [HOLDS, HOLDS, HOLDS, HOLDS]
    # the nose below random on average (by 0.002), but draw by draw +0.03, -0.03, ...: within its SE
    noisy = d.copy()
    noisy[2, 0] = 0.098 + 0.03 * np.resize([1.0, -1.0], 30)
    f = R.findings(dataclasses.replace(t, deltas=noisy))
    assert t.occlusions[2] == "nose" and f[0].verdict == NOT_TESTABLE and "nose" in f[0].evidence
    # the nose lower in 28 of the 30 draws (93%): above 80%, but not by 2 SE: not "most draws"
    tie = d.copy()
    tie[2, 0, :2] = 0.2
    assert R.findings(dataclasses.replace(t, deltas=tie))[1].verdict != HOLDS
    # the nose above random beyond its SE: does not hold
    worse = d.copy()
    worse[2, 0] = 0.14 + 0.001 * rng.standard_normal(30)
    assert R.findings(dataclasses.replace(t, deltas=worse))[0].verdict == DOES_NOT_HOLD
