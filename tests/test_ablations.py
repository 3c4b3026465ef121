"""The ImageNet comparison and the ablations (Section 5.1, Tables 2 and 3): the tables' order
and scaling, the findings on constructed numbers, the ensemble against a hand computation,
the budget's runs and their content-keyed 10-crop cache."""
import os

import numpy as np
import pytest
import torch

from zfcore import ablations as AB
from zfcore import architecture as A
from zfcore import models
from zfcore.findings import HOLDS
from zfcore.presets import get_preset
from tolerance import EPS32, double, f32_forward_tol_ad, f32_within, f64_close, gamma, softmax_f32_err


# ------------------------------------------------------------------------ Table 3 rows and findings

def test_table3_variants_follow_the_papers_row_order():
    assert [v.key for v in AB.TABLE3_VARIANTS] == [k for k, *_ in AB.PAPER_TABLE3]
    rows = AB.ablation_rows({}, "default")
    assert [r[1] for r in rows] == [label for _, label, *_ in AB.PAPER_TABLE3]
    assert rows[0][3:6] == ("35.1", "40.5", "18.1") and rows[0][6:] == ("-", "-", "-")
    assert rows[7][1] == "Our model (as per Fig. 3)"


def test_fc_units_and_conv345_are_scaled_to_the_preset():
    d, t = get_preset("default"), get_preset("tiny")
    assert AB.variant("zf:fc2048").kwargs(d) == {"fc_units": 256}
    assert AB.variant("krizhevsky:fc8192").kwargs(d) == {"fc_units": 1024}
    assert AB.variant("zf:fc8192").kwargs(t) == {"fc_units": 512}
    assert AB.variant("zf:fc2048").kwargs("imagenet") == {"fc_units": 2048}
    assert AB.variant("zf:base").kwargs(d) == {}
    assert AB.variant("krizhevsky:rm3,4,6,7").kwargs(d) == {"remove": ["conv3", "conv4", "fc6", "fc7"]}
    kw = AB.variant("zf:fc8192+conv345").kwargs(d)
    assert kw == {"fc_units": 1024, "conv345": [512, 1024, 512]}
    m = models.zfnet(100, input_size=64, width=d.width, **kw)
    assert [m.conv3.out_channels, m.conv4.out_channels, m.conv5.out_channels] == [128, 256, 128]
    assert m.fc6.out_features == 1024
    assert "128, 256, 128" in AB.variant("zf:conv345").describe(d)
    with pytest.raises(ValueError, match="unknown variant"):
        AB.variant("zf:huge")


def test_ablation_rows_reject_unknown_keys():
    with pytest.raises(ValueError, match="not rows of Table 3"):
        AB.ablation_rows({"zf:norenorm": {"val_top1": 1.0}})


def test_the_papers_numbers_meet_every_criterion():
    found = AB.findings(AB.paper_numbers())
    assert len(found) == 5 and all(f.verdict == HOLDS for f in found)
    assert all(f.published == f.measured for f in found)          # the paper's numbers are the published ones


def _set(numbers, key, **vals):
    out = {k: dict(v) for k, v in numbers.items()}
    out[key].update(vals)
    return out


def test_each_ablation_finding_can_fail():
    paper = AB.paper_numbers()
    held = lambda n: [f.verdict == HOLDS for f in AB.findings(n)]      # noqa: E731
    assert held(_set(paper, "krizhevsky:rm6,7", val_top1=60.0)) == [False, True, True, True, True]
    assert held(_set(paper, "krizhevsky:rm3,4", val_top1=60.0)) == [True, False, True, True, True]
    assert held(_set(paper, "krizhevsky:rm3,4", val_top1=70.0)) == [True, False, False, True, True]
    assert held(_set(paper, "krizhevsky:rm3,4,6,7", val_top1=48.0))[2] is False
    assert held(_set(paper, "zf:conv345", val_top1=39.0)) == [True, True, True, False, True]
    assert held(_set(paper, "zf:fc8192", train_top1=36.0)) == [True, True, True, True, False]
    with pytest.raises(ValueError, match="needs the numbers"):
        AB.findings({"krizhevsky:base": paper["krizhevsky:base"]})


def test_table2_rows_put_ours_beside_the_rows_they_reproduce():
    nums = {"krizhevsky:base": {"val_top1": 50.0, "val_top5": 20.0},
            "zf:base": {"val_top1": 45.0, "val_top5": 18.0}}
    rows = AB.table2_rows(nums, ensemble=("ensemble of 2", {"val_top1": 40.0, "val_top5": 15.0}))
    by = {r[0]: r for r in rows}
    assert by["Our replication of Krizhevsky et al., 1 convnet"][4:] == ("50.0", "20.0")
    assert by["1 convnet as per Fig. 3"][1:] == ("38.4", "16.5", "-", "45.0", "18.0")
    assert by["Gunji et al."][1:] == ("-", "-", "26.2", "-", "-")
    assert rows[-1] == ("ensemble of 2", "-", "-", "-", "40.0", "15.0")
    assert len(rows) == len(AB.PAPER_TABLE2) + 1


# ------------------------------------------------------------------------ ensembles

def _ten_crops_by_hand(img, size):
    s = img.shape[-1]
    m = s - size
    c = m // 2
    crops = [img[:, t:t + size, l:l + size] for t, l in ((0, 0), (0, m), (m, 0), (m, m), (c, c))]
    return crops + [torch.flip(x, dims=[2]) for x in crops]


def test_the_ensemble_is_the_averaged_softmax_of_its_models():
    torch.manual_seed(1)
    m1 = models.zfnet(10, input_size=48, width=0.25, fc_units=32, init="matched", dropout=0.5)
    m2 = models.krizhevsky(10, input_size=48, width=0.25, fc_units=32, init="matched")
    for m in (m1, m2):
        for p in m.parameters():
            p.data.normal_(0, 0.05)                 # make the outputs differ from uniform
    # in float64 (models and means): the batched ensemble and the hand computation agree to
    # float64 rounding, whatever order their sums take
    m1, m2 = double(m1, m2)
    m1.train()                                      # dropout must be off during evaluation
    m2.train()
    imgs = torch.randint(0, 256, (4, 55, 55, 3), dtype=torch.uint8)
    mean1, mean2 = double(torch.full((3, 55, 55), 100.0), torch.full((3, 55, 55), 130.0))
    got = AB.ensemble_probs([m1, m2], imgs, [mean1, mean2], 48, batch_size=3)
    assert m1.training and m2.training              # modes restored
    m1.eval()
    m2.eval()
    want = []
    with torch.no_grad():
        for img in imgs.permute(0, 3, 1, 2).double():
            per_model = []
            for m, mu in ((m1, mean1), (m2, mean2)):
                crops = torch.stack(_ten_crops_by_hand(img - mu, 48))
                per_model.append(torch.softmax(m(crops), 1).mean(0))
            want.append((per_model[0] + per_model[1]) / 2)
    want = torch.stack(want)
    assert got.dtype == torch.float64
    f64_close(got, want)
    f64_close(got.sum(1), torch.ones(4))
    assert not torch.allclose(got, AB.ten_crop_probs(m1, imgs, mean1, 48), atol=1e-4)   # both models count


def test_ensemble_rejects_bad_inputs():
    m = models.zfnet(10, input_size=48, width=0.25, fc_units=32)
    imgs = torch.zeros(2, 55, 55, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="at least one model"):
        AB.ensemble_probs([], imgs, [], 48)
    with pytest.raises(ValueError, match="one mean per model"):
        AB.ensemble_probs([m, m], imgs, [torch.zeros(3, 55, 55)], 48)
    with pytest.raises(ValueError, match="classes"):
        AB.ensemble_probs([m, models.zfnet(7, input_size=48, width=0.25, fc_units=32)], imgs,
                         [torch.zeros(3, 55, 55)] * 2, 48)
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\)"):
        AB.ten_crop_probs(m, torch.zeros(2, 3, 55, 55), torch.zeros(3, 55, 55), 48)


# ------------------------------------------------------------------------ the budget and the runs

def _ten_crop_softmax_and_bound(model, images, mean, size):
    """The exact 10-crop softmax of a float32 ``model`` (in float64, (N, C)) and a bound, per
    image, on a float32 computation of it: uint8 images minus the float32 mean round once
    (half an ulp); each crop's logits, to first order (f32_forward_tol_ad); each crop's
    softmax (softmax_f32_err); the mean of 10 probabilities, at most 1 (gamma(11))."""
    from zfcore.data.transforms import ten_crop
    x = ten_crop(torch.as_tensor(images).permute(0, 3, 1, 2).double() - mean.double(), size).flatten(0, 1)
    last = [n for n, _ in model.named_children()][-1]
    z, z_err = f32_forward_tol_ad(model, x, last, x_err=EPS32 / 2 * x.abs())
    p = torch.softmax(z, 1).view(-1, 10, z.shape[1]).mean(1)
    return p, softmax_f32_err(z, z_err).view(-1, 10, 1).mean(1) + gamma(11)


def test_budget_preset():
    p = AB.budget_preset("default")
    assert p.epochs == AB.BUDGET_EPOCHS["default"] and p.evolution_epochs == ()
    # the default budget's models learn a subset of the classes; the others all of them
    assert p.num_classes == AB.BUDGET_CLASSES["default"] < get_preset("default").num_classes
    assert AB.budget_preset("tiny").num_classes == get_preset("tiny").num_classes
    assert AB.budget_preset("imagenet").num_classes == get_preset("imagenet").num_classes
    folders = get_preset("default").replace(data="folders")        # never a subset of your folders
    assert AB.budget_preset(folders).num_classes == folders.num_classes
    assert AB.budget_preset(p) == p                                  # idempotent
    assert AB.budget_preset("tiny", 5).epochs == 5
    assert AB.budget_preset("imagenet").epochs == get_preset("imagenet").epochs
    with pytest.raises(ValueError, match="at least 1"):
        AB.budget_preset("tiny", 0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    old = os.environ.get("ZF_ARTIFACTS")
    os.environ["ZF_ARTIFACTS"] = str(root)
    yield root
    if old is None:
        del os.environ["ZF_ARTIFACTS"]
    else:
        os.environ["ZF_ARTIFACTS"] = old


def test_budget_runs_are_cached_by_their_settings_and_ensembled(artifacts):
    keys = ["krizhevsky:rm3,4,6,7", "krizhevsky:rm3,4"]
    runs = AB.budget_runs("tiny", keys, epochs=1, progress=False)
    assert list(runs) == keys
    paths = {k: r.path for k, r in runs.items()}
    assert len(set(paths.values())) == 2
    assert all(p.parent == artifacts / "tiny" / "runs" for p in paths.values())
    nums = A.run_numbers(runs[keys[0]])
    assert nums["epochs"] == 1 and nums["n_val"] == 100 and 0 <= nums["val_top1"] <= 100
    model = runs[keys[0]].load()
    assert not hasattr(model, "conv3") and not hasattr(model, "fc6")

    stamps = {k: (p / "final.pt").stat().st_mtime_ns for k, p in paths.items()}
    again = AB.budget_runs("tiny", keys, epochs=1, progress=False)      # loaded, not retrained
    assert {k: r.path for k, r in again.items()} == paths
    assert {k: (p / "final.pt").stat().st_mtime_ns for k, p in paths.items()} == stamps
    other = AB.budget_run("tiny", keys[0], epochs=2, progress=False).path   # another budget
    assert other != paths[keys[0]]

    # train() leaves the final model's 10-crop validation softmax in the run folder, and the
    # ensembles compute it with the same zfcore.train.evaluate (ten_crop_probs here, in other batches)
    from zfcore.data.scenes import load_scenes
    from zfcore.runs import load_checkpoint, save_checkpoint
    val = load_scenes("tiny", "val", progress=False)
    saved = torch.load(paths[keys[0]] / "probs-val-10crop.pt", weights_only=True)
    model, mean = runs[keys[0]].load(), runs[keys[0]].mean()
    # both float32, each within its rounding's bound of the exact softmax, on every 5th image
    # (the bound takes a backward pass per class); evaluate hands out the 10-crop mean itself
    rows = np.arange(0, len(val.images), 5)
    exact, bound = _ten_crop_softmax_and_bound(model, val.images[rows], mean, 48)
    assert saved["n"] == 100 and saved["probs"].shape == (100, 10)
    f32_within(saved["probs"][rows], exact, bound)
    f32_within(AB.ten_crop_probs(model, val.images, mean, 48)[rows], exact, bound)
    single = AB.ensemble_error([runs[keys[0]]], "tiny")
    assert single["val_top1"] == pytest.approx(nums["val_top1"], abs=1e-6)
    assert single["val_top5"] == pytest.approx(nums["val_top5"], abs=1e-6)
    e = AB.ensemble_error(list(runs.values()), "tiny")
    assert e["n"] == 100 and e["models"] == 2 and 0 <= e["val_top1"] <= 100
    # each run's softmax is cached once, by its folder and its checkpoint's content (not the file times)
    cache = artifacts / "tiny" / "probs"
    entries = {q: q.stat().st_mtime_ns for q in cache.glob("*.pt")}
    assert len(entries) == 2
    again = AB.ensemble_error(list(runs.values()), "tiny")
    assert again == pytest.approx(e)
    assert {q: q.stat().st_mtime_ns for q in cache.glob("*.pt")} == entries      # read, not recomputed
    # a final checkpoint whose content changed is a new entry: a stale softmax is never read
    ck = runs[keys[1]].checkpoint()
    state = load_checkpoint(ck)
    state["model"] = {k: v * 0 if k.startswith("fc8") else v for k, v in state["model"].items()}
    save_checkpoint(ck, state)
    changed = AB.ensemble_error([runs[keys[1]]], "tiny")
    assert len(list(cache.glob("*.pt"))) == 3
    assert set(entries) < set(cache.glob("*.pt"))
    assert changed["n"] == 100 and changed["models"] == 1


def test_last_epoch_gain():
    class Fake:
        def __init__(self, errs):
            self.metrics = [{"val_top1_err": e} for e in errs]
    assert AB.last_epoch_gain(Fake([90.0, 80.0, 75.5])) == pytest.approx(4.5)
    assert np.isnan(AB.last_epoch_gain(Fake([90.0])))


def test_ablation_figure_draws_changes_against_the_base():
    import matplotlib
    matplotlib.use("Agg")

    nums = {k: dict(v) for k, v in AB.paper_numbers().items()}
    fig = AB.ablation_figure(nums)
    assert len(fig.axes) == 2
    kriz = fig.axes[0]
    widths = sorted(round(p.get_width(), 6) for p in kriz.patches)
    # the paper's own changes appear, e.g. removing 3,4,6,7 costs 71.3 - 40.5 = 30.8 points
    assert round(71.3 - 40.5, 6) in widths
    with pytest.raises(ValueError, match="base"):
        AB.ablation_figure({"zf:fc2048": nums["zf:fc2048"]})
