"""Data-set-wide top-k (Fig. 2): streaming equals all-at-once, across batch sizes and ranks."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.data.transforms import center_crop
from zfcore.fields import receptive_fields
from zfcore.mining import load_topk, mine, mined, mining_path, patches, save_topk

from tolerance import f32_cast_tol, f64_close

SIZE = 48


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def val(artifacts):
    from zfcore.data.scenes import SceneSource, load_scenes
    ds = load_scenes("tiny", "val", progress=False)
    return SceneSource(ds)


@pytest.fixture(scope="module")
def net():
    # float64 (tests/tolerance.py): which image is the k-th strongest must not hinge on float32
    # rounding, which differs between processors and batch sizes; mining runs in the model's dtype
    torch.manual_seed(0)
    return models.zfnet(10, input_size=SIZE, width=0.25, fc_units=32, init="matched").eval().double()


@pytest.fixture(scope="module")
def mined_32(net, val):
    return mine(net, val, val.mean(), SIZE, batch_size=32, progress=False)


def naive_topk(model, images_nhwc, mean, layers, k):
    """All activations of the whole set at once; per map, the k images with the
    largest maximum (ties: lower index), at the first arg-max in row-major order."""
    acts = {}
    mods = dict(model.named_modules())
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.detach().clone()))
             for n in layers]
    with torch.no_grad():
        model(center_crop(images_nhwc.permute(0, 3, 1, 2).float() - mean, SIZE).double())
    for h in hooks:
        h.remove()
    out = {}
    for n in layers:
        a = acts[n].numpy()
        nimg, c, h, w = a.shape
        flat = a.reshape(nimg, c, h * w)
        vmax, arg = flat.max(2), flat.argmax(2)       # numpy argmax: the first maximum
        vals, imgs, poss = [], [], []
        for ch in range(c):
            rows = sorted(range(nimg), key=lambda i: (-vmax[i, ch], i))[:k]
            vals.append([vmax[i, ch] for i in rows])
            imgs.append(rows)
            poss.append([divmod(int(arg[i, ch]), w) for i in rows])
        out[n] = (torch.tensor(np.array(vals)), torch.tensor(imgs), torch.tensor(poss))
    return out


def assert_same(a, b, exact_values=False):
    assert list(a) == list(b)
    for n in a:
        assert torch.equal(a[n].images, b[n].images), n
        assert torch.equal(a[n].positions, b[n].positions), n
        if exact_values:
            assert torch.equal(a[n].values, b[n].values), n
        else:
            # float64 maxima agreeing to float64 rounding, each cast to float32: one ulp apart
            torch.testing.assert_close(a[n].values, b[n].values, rtol=0, atol=f32_cast_tol(b[n].values))


def test_streaming_topk_equals_all_at_once(net, val, mined_32):
    result = mined_32
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert list(result) == layers
    ref = naive_topk(net, val.images, val.mean(), layers, 9)
    for n in layers:
        t = result[n]
        c = getattr(net, n).out_channels
        assert t.layer == n and t.values.shape == (c, 9) and t.images.shape == (c, 9)
        assert t.positions.shape == (c, 9, 2)
        assert t.values.dtype == torch.float32 and t.images.dtype == torch.int64
        vals, imgs, poss = ref[n]
        assert torch.equal(t.images, imgs), n
        assert torch.equal(t.positions, poss), n
        # the same float64 maxima (to float64 rounding), each cast to float32: one ulp apart
        torch.testing.assert_close(t.values, vals.float(), rtol=0, atol=f32_cast_tol(vals)), n
        # one entry per image, descending
        assert all(len(set(row.tolist())) == 9 for row in t.images)
        assert bool((t.values[:, :-1] >= t.values[:, 1:]).all())


def test_result_does_not_depend_on_batch_size(net, val, mined_32):
    for bs in (7, 100, 128):
        assert_same(mine(net, val, val.mean(), SIZE, batch_size=bs, progress=False), mined_32)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_tables_merged_many_times_in_either_layout_equal_all_at_once(net, val, monkeypatch, layout):
    """The running tables merged with a few batches' candidates at a time (every 2 batches of 7
    images: 5 merges, each between the table so far and new images), in both layouts: the
    channels-last one keeps one image index per column and looks up only the chosen, the
    contiguous one keeps each candidate's own. Duplicated images tie exactly across merges."""
    import zfcore.mining as zm
    monkeypatch.setattr(zm, "_MERGE_EVERY", 2)
    monkeypatch.setenv("ZF_LAYOUT", layout)
    layers = ["conv1", "conv3", "conv5"]
    # copies of images 5, 41 and 12 come late; 9 full batches, so that each copy is computed in a
    # batch of the same size as its original (another batch size may round it otherwise)
    order = list(range(59)) + [5, 41, 5, 12]
    got = mine(net, _Repeat(val, order), val.mean(), SIZE, layers=layers, batch_size=7, progress=False)
    ref = naive_topk(net, val.images[order], val.mean(), layers, 9)
    for n in layers:
        assert torch.equal(got[n].images, ref[n][1]), n
        assert torch.equal(got[n].positions, ref[n][2]), n
        torch.testing.assert_close(got[n].values, ref[n][0].float(), rtol=0, atol=f32_cast_tol(ref[n][0]))


def test_k_larger_than_the_set_pads_and_chosen_layers(net, val):
    small = mine(net, _Prefix(val, 5), val.mean(), SIZE, layers=["relu2", "pool1"], k=8,
                 batch_size=2, progress=False)
    assert list(small) == ["relu2", "pool1"]
    t = small["relu2"]
    assert t.images.shape == (t.num_maps, 8)
    assert bool((t.images[:, 5:] == -1).all()) and bool(torch.isinf(t.values[:, 5:]).all())
    assert sorted(t.images[0, :5].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        mine(net, val, val.mean(), SIZE, layers=["conv9"], progress=False)


class _Prefix:
    """The first n images of a source, with the same batches interface."""

    def __init__(self, src, n):
        self.src, self.n = src, n

    def __len__(self):
        return self.n

    def batches(self, batch_size, *, shuffle, rank=0, world=1):
        for s in range(0, self.n, batch_size):
            idx = torch.arange(s, min(self.n, s + batch_size))[rank::world]
            if len(idx):
                yield self.src.images[idx].permute(0, 3, 1, 2), self.src.labels[idx]


def test_ties_go_to_the_lower_image_index_and_inplace_relus_are_fine(val):
    """Equal images tie exactly: the lower index comes first. A model whose ReLU works
    in place (torchvision's style) is mined on the conv output, before the ReLU."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(inplace=True), nn.Conv2d(4, 3, 3),
                          nn.ReLU(inplace=True), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, SIZE, SIZE))
    model.double()                       # as the naive reference runs it (float64)
    with torch.no_grad():
        model[0].bias[0] = -1e4          # map 0 of the first conv is never positive
    dup = _Repeat(val, [3, 3, 7, 3, 7, 1])
    res = mine(model, dup, val.mean(), SIZE, k=6, batch_size=4, progress=False)
    ref = naive_topk(model, val.images[[3, 3, 7, 3, 7, 1]], val.mean(), ["0", "2"], 6)
    for n in ("0", "2"):
        assert torch.equal(res[n].images, ref[n][1]) and torch.equal(res[n].positions, ref[n][2])
        for row in res[n].images.tolist():
            # the copies of one image come out together, in index order
            for copies in ([0, 1, 3], [2, 4]):
                at = [row.index(i) for i in copies]
                assert at == list(range(at[0], at[0] + len(copies))), (n, row)
    assert bool((res["0"].values[0] < -1000).all())     # the conv output, not the rectified one


class _Repeat(_Prefix):
    def __init__(self, src, order):
        self.src, self.order = src, torch.tensor(order)

    def __len__(self):
        return len(self.order)

    def batches(self, batch_size, *, shuffle, rank=0, world=1):
        for s in range(0, len(self.order), batch_size):
            idx = self.order[s:s + batch_size][rank::world]
            yield self.src.images[idx].permute(0, 3, 1, 2), self.src.labels[idx]


def test_save_load_round_trip_and_corrupt_files(mined_32, tmp_path):
    path = tmp_path / "sub" / "top.pt"
    save_topk(mined_32, path)
    assert [p.name for p in path.parent.iterdir()] == ["top.pt"]
    assert_same(load_topk(path), mined_32, exact_values=True)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pt.*not a readable top-k"):
        load_topk(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"a": torch.ones(2)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt is not a zfcore top-k"):
        load_topk(foreign)
    with pytest.raises(FileNotFoundError):
        load_topk(tmp_path / "missing.pt")


def test_patches_are_the_receptive_fields_of_the_centre_crop(net, val, mined_32):
    s = val.stored_size
    off = (s - SIZE) // 2
    for layer in ("conv1", "conv2", "conv5"):
        t = mined_32[layer]
        p = patches(val.ds.images, t, net, SIZE, maps=[0, 2])
        boxes = receptive_fields(net, layer, t.positions[[0, 2]].reshape(-1, 2)).view(2, 9, 4)
        assert p.shape[:2] == (2, 9) and p.dtype == np.uint8
        for a, c in enumerate((0, 2)):
            for j in range(9):
                y0, y1, x0, x1 = boxes[a, j].tolist()
                cut = val.ds.images[int(t.images[c, j]), off + y0:off + y1, off + x0:off + x1]
                # the box appears in the patch, at its place in the unclipped field
                patch = p[a, j]
                hits = [(oy, ox) for oy in range(patch.shape[0] - (y1 - y0) + 1)
                        for ox in range(patch.shape[1] - (x1 - x0) + 1)
                        if np.array_equal(patch[oy:oy + y1 - y0, ox:ox + x1 - x0], cut)]
                assert hits, (layer, c, j)
                assert int(((patch != 0).any(2)).sum()) <= (y1 - y0) * (x1 - x0)


DIST_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from zfcore import models
    from zfcore.data.scenes import SceneSource, load_scenes
    from zfcore.mining import mine, save_topk
    from zfcore import dist
    rank, world, device = dist.init()
    assert world == 2
    net = models.zfnet(10, input_size=48, width=0.25, fc_units=32, init="matched").double()
    net.load_state_dict(torch.load(sys.argv[1], weights_only=True))
    src = SceneSource(load_scenes("tiny", "val", progress=False))
    mean = src.mean()
    save_topk(mine(net, src, mean, 48, batch_size=25, progress=False), os.path.join(sys.argv[2], f"r{rank}.pt"))
    # batch size 1: rank 1 gets every odd image; k larger than a rank's share
    save_topk(mine(net, src, mean, 48, layers=["conv2"], k=60, batch_size=1, progress=False),
              os.path.join(sys.argv[2], f"b1r{rank}.pt"))
""")


def test_torchrun_two_gloo_ranks_equal_one_process(artifacts, net, val, mined_32, tmp_path):
    script = tmp_path / "mine.py"
    script.write_text(DIST_SCRIPT)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    env = dict(os.environ, ZF_ARTIFACTS=str(artifacts), OMP_NUM_THREADS="1", ZF_PROGRESS="0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path / "net.pt"), str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    r0, r1 = load_topk(tmp_path / "r0.pt"), load_topk(tmp_path / "r1.pt")
    assert_same(r0, mined_32)
    assert_same(r1, r0, exact_values=True)
    one = mine(net, val, val.mean(), SIZE, layers=["conv2"], k=60, batch_size=1, progress=False)
    b0, b1 = load_topk(tmp_path / "b1r0.pt"), load_topk(tmp_path / "b1r1.pt")
    assert_same(b0, one)
    assert_same(b1, b0, exact_values=True)


def test_mined_is_cached(artifacts, monkeypatch):
    from zfcore.presets import get_preset
    from zfcore.train import train
    import zfcore.mining as zm
    run = train(get_preset("tiny").replace(epochs=1, evolution_epochs=(1,)), out=artifacts / "runs" / "m",
                progress=False, resume=False)
    first = mined(run, progress=False, layers=["conv1", "conv5"], k=4)
    path = mining_path(run, "val", ["conv1", "conv5"], 4)
    assert path.is_file() and path.parent == artifacts / "tiny" / "mining"
    # what mined() computed is the top-k of the run's final model on the val split
    from zfcore.data.scenes import SceneSource, load_scenes
    src = SceneSource(load_scenes("tiny", "val", progress=False), mean=run.mean())
    assert_same(first, mine(run.load(), src, run.mean(), SIZE, layers=["conv1", "conv5"], k=4,
                            progress=False), exact_values=True)

    def boom(*a, **k):
        raise AssertionError("mined() mined again")
    monkeypatch.setattr(zm, "mine", boom)
    assert_same(mined(run, progress=False, layers=["conv1", "conv5"], k=4), first, exact_values=True)
    # other settings are other entries
    assert mining_path(run, "val", ["conv1", "conv5"], 9) != path
    assert mining_path(run, "test", ["conv1", "conv5"], 4) != path
    with pytest.raises(AssertionError, match="mined again"):
        mined(run, progress=False, k=4)
    # a damaged entry is mined again, with a warning
    path.write_bytes(b"junk")
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="not a readable top-k"):
        again = mined(run, progress=False, layers=["conv1", "conv5"], k=4)
    assert_same(again, first, exact_values=True)


def test_projections_are_the_deconv_projections_cut_to_the_patch_boxes(tmp_path, monkeypatch):
    """mining.projections: each entry is deconv.project of that image/map/position, cut to
    the receptive field and placed exactly where patches() places the image pixels."""
    import numpy as np
    from zfcore import deconv, models
    from zfcore.data.scenes import SceneSource, load_scenes
    from zfcore.data.transforms import center_crop
    from zfcore.fields import field_geometry, receptive_fields
    from zfcore.mining import class_purity, chance_purity, mine, patches, projections
    from zfcore.data.transforms import preprocess
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path))
    torch.manual_seed(0)
    model = models.zfnet(10, input_size=48, width=0.25, fc_units=32, init="matched").eval().double()
    ds = load_scenes("tiny", "val", progress=False)
    src = SceneSource(ds)
    mean = src.mean()
    top = mine(model, src, mean, 48, layers=["conv2"], k=3, progress=False)["conv2"]
    pr = projections(ds.images, top, model, mean, 48, maps=[0, 5])
    pa = patches(ds.images, top, model, 48, maps=[0, 5])
    assert pr.shape[:2] == (2, 3) and pr.shape[3:] == pa.shape[2:4]
    for a, c in enumerate([0, 5]):
        for j in range(3):
            i = int(top.images[c, j])
            x = center_crop(preprocess(torch.from_numpy(ds.images[i:i + 1]).permute(0, 3, 1, 2), mean), 48).double()
            full = deconv.project(model, x, "conv2", c, top.positions[c, j][None])[0].numpy()
            y0, y1, x0, x1 = receptive_fields(model, "conv2", top.positions[c, j][None], 48)[0].tolist()
            # float64 both ways (f64_close): the same projection, walked as a batch and alone
            f64_close(pr[a, j].sum(), full[:, y0:y1, x0:x1].sum(), scale=np.abs(full).sum())
            # nothing of the projection outside the box: it lies inside the receptive field
            beyond = np.ones(full.shape[1:], bool)
            beyond[y0:y1, x0:x1] = False
            assert np.abs(full[:, beyond]).max(initial=0.0) == 0.0
            # placed where patches() puts the image pixels of the same box, nothing elsewhere
            fy, fx = field_geometry(model, 48)["conv2"]
            y, xx = top.positions[c, j].tolist()
            oy, ox = y0 - (fy.start + y * fy.jump), x0 - (fx.start + xx * fx.jump)
            f64_close(pr[a, j][:, oy:oy + y1 - y0, ox:ox + x1 - x0], full[:, y0:y1, x0:x1])
            assert np.array_equal(pa[a, j][oy:oy + y1 - y0, ox:ox + x1 - x0],
                                  ds.images[i, 3 + y0:3 + y1, 3 + x0:3 + x1])
            outside = np.ones(pr.shape[3:], bool)
            outside[oy:oy + y1 - y0, ox:ox + x1 - x0] = False
            assert not np.abs(pr[a, j]).sum(0)[outside].any()
    purity = class_purity(top, ds.labels)
    assert purity.shape == (top.num_maps,) and ((purity >= 1 / 3) & (purity <= 1)).all()
    assert 0.1 <= chance_purity(ds.labels, k=3) <= 0.5


def test_evolution_and_convergence_on_a_short_run(tmp_path, monkeypatch):
    """Fig. 4's machinery: top-k per saved epoch, overlaps with the last epoch (1.0 at the
    last), filter similarities (1.0 at the last), projections with each epoch's model."""
    import numpy as np
    from zfcore.data.scenes import load_scenes
    from zfcore.evolution import convergence_table, evolution, evolution_projections, top_overlap
    from zfcore.presets import get_preset
    from zfcore.train import train
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path))
    run = train(get_preset("tiny").replace(epochs=2, evolution_epochs=(1, 2)), out=tmp_path / "run",
                progress=False)
    tops = evolution(run, "val", layers=["conv1", "conv3"], k=4, progress=False)
    assert sorted(tops) == [1, 2] and set(tops[1]) == {"conv1", "conv3"}
    tab = convergence_table(run, tops)
    for layer in ("conv1", "conv3"):
        assert tab["overlap"][layer][-1] == 1.0 and abs(tab["similarity"][layer][-1] - 1.0) < 1e-9
        assert 0.0 <= tab["overlap"][layer][0] <= 1.0
    assert top_overlap(tops[1]["conv1"], tops[1]["conv1"]).min() == 1.0
    images = load_scenes("tiny", "val", progress=False).images
    pr, pa = evolution_projections(run, tops, "conv3", [0, 2], images, 48)
    assert pr.shape[:3] == (2, 2, 3) and pa.shape[:2] == (2, 2) and np.abs(pr).sum() > 0


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_ties_within_a_map_give_the_first_position_in_either_layout(val, monkeypatch, layout):
    """A map whose maximum occurs at several positions is reported at the first one in row-major
    order, in both memory layouts (channels-last maps go through a max pooling's indices)."""
    monkeypatch.setenv("ZF_LAYOUT", layout)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([2.0, -1.0]))       # constant maps: every position ties
        conv.weight[1, 0, 1, 1] = 1.0                    # map 1 follows the first channel
    model = nn.Sequential(conv, nn.ReLU()).eval()
    src = _Prefix(val, 6)
    t = mine(model, src, val.mean(), SIZE, layers=["0"], k=3, batch_size=4, progress=False)["0"]
    assert t.positions[0].tolist() == [[0, 0]] * 3 and t.images[0].tolist() == [0, 1, 2]
    ref = naive_topk(model.double(), val.images[:6], val.mean(), ["0"], 3)
    assert torch.equal(t.images, ref["0"][1]) and torch.equal(t.positions, ref["0"][2])


def test_as_layout_takes_a_crop_of_channels_last_images_as_it_is():
    """Mining feeds the kernels the scenes' crops as they come (stored (N, H, W, C), so channels-last
    strides): a copy into channels-last would only cost time; other layouts are copied."""
    from zfcore.layout import as_layout
    stored = torch.randn(4, 9, 9, 3).permute(0, 3, 1, 2)              # (N, C, H, W) view of NHWC
    crop = stored[:, :, 1:8, 1:8]
    same = as_layout(crop, torch.channels_last)
    assert same.data_ptr() == crop.data_ptr() and torch.equal(same, crop)
    copied = as_layout(crop, torch.contiguous_format)
    assert copied.is_contiguous() and torch.equal(copied, crop)
    plain = torch.randn(2, 3, 5, 5)
    assert as_layout(plain, torch.contiguous_format) is plain
    cl = as_layout(plain, torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, plain)


def test_first_k_is_the_stable_sort_s_first_k_on_ties_at_the_boundary():
    """The k chosen by ``topk`` (asked for k + 1 to see a tie at the k-th value) are those of a
    stable descending sort: equal values by lower column, across the boundary too, with -inf
    padding; on few distinct values nearly every row ties at the boundary."""
    from zfcore.mining import _first_k
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        c, n, k = (int(torch.randint(1, hi, (), generator=g)) for hi in (12, 60, 12))
        if trial % 2:
            v = torch.randint(0, int(torch.randint(2, 6, (), generator=g)), (c, n), generator=g).float()
        else:
            v = torch.randn(c, n, generator=g)
        if trial % 5 == 0:
            v[:, : n // 2] = -float("inf")
        kk = min(k, n)
        want = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :kk]
        assert torch.equal(_first_k(v, kk), want), (trial, c, n, kk)


_FAULTS = """
import resource, sys
if sys.argv[1] == "zfcore":
    import zfcore
def blocks():                        # 64 blocks of 1 MiB, every page written
    return [b"\\x01" * (1 << 20) for _ in range(64)]
x = blocks(); del x
x = blocks(); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = blocks()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_importing_zfcore_keeps_freed_memory_for_the_next_batch():
    """glibc's default hands 64 freed blocks of 1 MiB back to the system, so the third round
    faults all 16,384 pages in again; after ``import zfcore`` they are reused (no fault);
    ``ZF_MALLOC=system`` keeps glibc's default."""
    import zfcore
    if not zfcore.keep_freed_memory():
        pytest.skip("no glibc mallopt on this system")

    def faults(what, **env):
        out = subprocess.run([sys.executable, "-c", _FAULTS, what], capture_output=True, text=True,
                             env={**os.environ, **env}, check=True)
        return int(out.stdout)
    pages = 64 * (1 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert faults("plain") >= pages // 2                       # the default: faulted in again
    assert faults("zfcore") < pages // 50
    assert faults("zfcore", ZF_MALLOC="system") >= pages // 2


def _spy_pooled(monkeypatch):
    """Read large maps after their ReLU and max pooling at every size, counting the batches."""
    import zfcore.mining as zm
    calls = {"pooled": 0, "declined": 0}
    real = zm._pooled_top

    def spy(*args):
        out = real(*args)
        calls["pooled" if out is not None else "declined"] += 1
        return out
    monkeypatch.setattr(zm, "_POOLED_NUMEL", 0)
    monkeypatch.setattr(zm, "_pooled_top", spy)
    return calls


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_maxima_read_after_relu_and_pooling_equal_the_maps_own(val, monkeypatch, layout):
    """Where a ReLU and a max pooling that covers the map follow, the maxima come from the pooled
    maps and positions only from maps that can still enter: the same images, positions and values
    as the naive reference, with duplicated images (ties across batches) and a map that is not
    positive in about a fifth of the images (those maxima are read from the maps themselves)."""
    monkeypatch.setenv("ZF_LAYOUT", layout)
    calls = _spy_pooled(monkeypatch)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                          nn.Conv2d(4, 3, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)).double().eval()
    order = list(range(100)) + [7, 7, 55, 3]
    x = center_crop(val.images[order].permute(0, 3, 1, 2).double() - val.mean(), SIZE)
    with torch.no_grad():
        peaks = model[0](x)[:, 1].amax(dim=(1, 2))
        model[0].bias[1] -= torch.quantile(peaks, 0.2)          # map 1: not positive in a fifth
        assert 0.1 < float((model[0](x)[:, 1].amax(dim=(1, 2)) <= 0).double().mean()) < 0.3
    res = mine(model, _Repeat(val, order), val.mean(), SIZE, layers=["0", "3"], k=3, batch_size=16,
               progress=False)
    ref = naive_topk(model, val.images[order], val.mean(), ["0", "3"], 3)
    for n in ("0", "3"):
        assert torch.equal(res[n].images, ref[n][1]), n
        assert torch.equal(res[n].positions, ref[n][2]), n
        assert torch.equal(res[n].values, ref[n][0].float()), n
    assert calls["pooled"] >= 6, calls                 # of 2 layers x 7 batches, the first whole


def test_maxima_are_read_from_the_maps_where_the_relu_works_in_place_or_the_pooling_skips(val, monkeypatch):
    """An in-place ReLU overwrites the layer's output, and a pooling whose stride is longer than its
    window leaves positions out: mining reads those maps whole, with the same result."""
    calls = _spy_pooled(monkeypatch)
    from zfcore.mining import _pools_every_position
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                          nn.Conv2d(4, 3, 3), nn.ReLU(), nn.MaxPool2d(2, 3)).double().eval()
    res = mine(model, _Prefix(val, 60), val.mean(), SIZE, layers=["0", "3"], k=3, batch_size=16,
               progress=False)
    ref = naive_topk(model, val.images[:60], val.mean(), ["0", "3"], 3)
    for n in ("0", "3"):
        assert torch.equal(res[n].images, ref[n][1]) and torch.equal(res[n].positions, ref[n][2]), n
    assert calls == {"pooled": 0, "declined": 0}
    # the ZF network's pool1 (3, stride 2, ceil) covers a 30-wide map; without ceil the last
    # column is left out; a stride longer than the window, or a dilation, leaves gaps
    assert _pools_every_position(nn.MaxPool2d(3, 2, ceil_mode=True), (30, 30), (15, 15))
    assert not _pools_every_position(nn.MaxPool2d(3, 2), (30, 30), (14, 14))
    assert not _pools_every_position(nn.MaxPool2d(2, 3), (9, 9), (3, 3))
    assert not _pools_every_position(nn.MaxPool2d(3, 1, dilation=2), (9, 9), (5, 5))
