"""Training: the recipe's pieces, checkpoints, resume after a kill, torchrun."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.presets import get_preset
from zfcore.train import train_or_load, recipe_rows, renormalize_filters, train
from zfcore.runs import load_checkpoint, load_model, save_checkpoint
from tolerance import EPS32, double, f64_close, gamma

QUICK = get_preset("tiny").replace(epochs=3, evolution_epochs=(1, 3))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """One artifacts folder for the module, with the tiny scenes generated once."""
    root = tmp_path_factory.mktemp("artifacts")
    old = os.environ.get("ZF_ARTIFACTS")
    os.environ["ZF_ARTIFACTS"] = str(root)
    from zfcore.data.scenes import load_scenes
    for split in ("train", "val"):
        load_scenes("tiny", split, progress=False)
    yield root
    if old is None:
        del os.environ["ZF_ARTIFACTS"]
    else:
        os.environ["ZF_ARTIFACTS"] = old


@pytest.fixture(scope="module")
def quick_run(artifacts):
    return train(QUICK, out=artifacts / "runs" / "quick", progress=False, resume=False)


def _env(artifacts, **extra):
    env = dict(os.environ, ZF_ARTIFACTS=str(artifacts), OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _renorm_rel(n: int) -> float:
    """How far above the radius, relatively, the exact RMS of a filter of ``n`` weights can be
    after renormalize_filters' float32 arithmetic (u = EPS32 / 2): its RMS is computed within
    rho = gamma(n + 2) / 2 + u (the squares, their sum, the mean's factor 1/n; halved by the
    square root, plus u); the radius as a float32 (u), the quotient (u) and each product (u)
    scale the filter by radius / rms (1 + u)^3 / (1 - rho) at most."""
    u = EPS32 / 2
    return (1 + u) ** 3 / (1 - (gamma(n + 2) / 2 + u)) - 1


def test_renormalize_filters_caps_rms_at_radius():
    conv = nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight[0].fill_(0.5)          # RMS 0.5: rescaled
        conv.weight[1].fill_(0.05)         # RMS 0.05: untouched
        conv.weight[2].normal_(0, 1.0)     # large: rescaled
        conv.weight[3].zero_()             # dead: untouched, no division by zero
    before = conv.weight.detach().clone()
    n = renormalize_filters(nn.Sequential(conv), radius=0.1)
    rms = conv.weight.detach().double().pow(2).mean(dim=(1, 2, 3)).sqrt()        # exact enough, in float64
    assert n == 2
    assert torch.all((rms[[0, 2]] - 0.1).abs() <= 0.1 * _renorm_rel(27))   # 27 weights a filter: 1.1e-7
    assert torch.equal(conv.weight[1], before[1]) and torch.equal(conv.weight[3], before[3])
    # the direction of a rescaled filter is kept
    cos = nn.functional.cosine_similarity(conv.weight[2].flatten(), before[2].flatten(), dim=0)
    assert cos > 0.9999


def test_training_writes_metrics_and_checkpoints(quick_run):
    run = quick_run
    summary = run.summary
    assert summary["complete"] and len(run.metrics) == 3
    for row in run.metrics:
        for key in ("train_loss", "train_top1_err", "train_top5_err", "val_loss", "val_top1_err",
                    "val_top5_err", "lr", "seconds"):
            assert key in row and row[key] == row[key]  # present and not NaN
    assert run.saved_epochs == [1, 3]
    assert set(summary["final"]) >= {"val_10crop_top1_err", "val_10crop_top5_err"}
    model = run.load()
    assert isinstance(model, models.ZFNet) and not model.training
    # the renormalisation held: no conv filter above the radius
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            rms = m.weight.detach().double().pow(2).mean(dim=(1, 2, 3)).sqrt()
            assert rms.max() <= 0.1 * (1 + _renorm_rel(m.weight[0].numel()))
    # the in-memory model is the saved one: the same weights bit for bit, in eval mode, and the
    # same function (compared in float64, whatever memory layout each is in)
    saved, live = model.state_dict(), run.model.state_dict()
    assert list(saved) == list(live) and all(torch.equal(saved[k], live[k]) for k in saved)
    assert not run.model.training
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64) * 50
    with torch.no_grad():
        f64_close(double(model)(x), double(run.model)(x))
    assert run.mean().shape == (3, 55, 55)


def test_get_run_reuses_a_finished_run(quick_run, monkeypatch):
    import zfcore.train as zt

    def boom(*a, **k):
        raise AssertionError("should not train again")
    monkeypatch.setattr(zt, "make_sources", boom)
    again = train_or_load(QUICK, out=quick_run.path, progress=False)
    assert again.path == quick_run.path


def test_resume_after_kill_matches_uninterrupted_run(artifacts, quick_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "zfcore.cli", "train", "--scale", "tiny", "--epochs", "3",
           "--out", str(out), "--quiet"]
    # evolution epochs of QUICK are (1, 3): the CLI uses the preset's (1, 2, 3), the run folder is
    # explicit, so compare weights and metrics, which do not depend on which epochs are kept.
    killed = subprocess.run(cmd, env=_env(artifacts, ZF_TEST_KILL_AT="2:5"), capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = load_checkpoint(out / "resume.pt")
    assert state["epoch"] == 1 and not (out / "final.pt").exists()
    resumed = subprocess.run(cmd, env=_env(artifacts), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = subprocess.run([*cmd[:-2], str(tmp_path / "whole"), "--quiet"], env=_env(artifacts),
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a, _ = load_model(out / "final.pt")
    b, _ = load_model(tmp_path / "whole" / "final.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    ma = json.loads((out / "metrics.json").read_text())
    mb = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(ma["epochs"]) == strip(mb["epochs"])
    assert ma["final"] == mb["final"]


def test_checkpoint_errors_are_clear(tmp_path, quick_run):
    good = quick_run.checkpoint()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pt.*not a readable checkpoint"):
        load_checkpoint(truncated)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save(models.zfnet(10, input_size=48, width=0.125, fc_units=16).state_dict(), foreign)
    with pytest.raises(ValueError, match="not a zfcore checkpoint"):
        load_checkpoint(foreign)


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"format": "zfcore-checkpoint", "value": torch.ones(3)})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": "zfcore-checkpoint", "value": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["value"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_unknown_scale_and_missing_folder_data(tmp_path):
    with pytest.raises(ValueError, match="valid scales: tiny, default, scenes224, imagenet"):
        get_preset("huge")
    with pytest.raises(ValueError, match="give its folder"):
        train("imagenet", out=tmp_path / "x", progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train("imagenet", data_root=tmp_path / "nowhere", out=tmp_path / "y", progress=False)


def test_recipe_rows_give_paper_and_preset():
    rows = {r[0]: r for r in recipe_rows("imagenet")}
    assert rows["mini-batch"][1:] == ("128", "128")
    assert rows["momentum"][2] == "0.9"
    assert rows["conv widths"][2] == "96, 256, 384, 384, 256 maps"


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    import zfcore.train as zt
    from zfcore.presets import get_preset
    rank = int(os.environ["RANK"])
    if rank != 0:
        def refuse(*a, **k):
            raise RuntimeError(f"rank {rank} tried to write")
        zt.save_checkpoint = refuse
        zt.write_json = refuse
    p = get_preset("tiny").replace(epochs=2, evolution_epochs=(1, 2))
    run = zt.train(p, out=sys.argv[1], progress=False, resume=False)
    torch.save(run.model.state_dict(), os.path.join(sys.argv[2], f"rank{rank}.pt"))
""")


def test_torchrun_two_gloo_ranks_agree_and_only_rank0_writes(artifacts, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out, dump = tmp_path / "run", tmp_path / "dump"
    dump.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(out), str(dump)]
    res = subprocess.run(cmd, env=_env(artifacts), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    a = torch.load(dump / "rank0.pt", weights_only=True)
    b = torch.load(dump / "rank1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["world_size"] == 2 and summary["complete"]
    # both ranks' examples were counted: the whole training set minus the dropped partial batch
    p = get_preset("tiny")
    n = p.num_classes * p.train_per_class
    assert summary["epochs"][0]["images"] == (n // p.batch_size) * p.batch_size
    saved = load_checkpoint(out / "final.pt")["model"]
    for k in a:
        assert torch.equal(a[k], saved[k]), k


def test_the_tiny_preset_learns(artifacts):
    """The preset's own run (the one the tiny book shows) learns: far better than chance."""
    run = train_or_load("tiny", progress=False)
    first, last = run.metrics[0], run.metrics[-1]
    assert last["train_loss"] < 0.8 * first["train_loss"]
    assert run.summary["final"]["val_10crop_top1_err"] < 75.0      # chance: 90%
    assert run.summary["final"]["val_10crop_top5_err"] < 25.0      # chance: 50%


def test_training_on_an_imagenet_layout_folder_skips_bad_files(artifacts, tmp_path):
    """Folder data with the paper's preprocessing: odd and broken files never stop an epoch."""
    import numpy as np
    from PIL import Image
    from zfcore.data.scenes import load_scenes
    scenes = load_scenes("tiny", "val", progress=False)
    root = tmp_path / "imagenet"
    for split, per in (("train", 6), ("val", 2)):
        for c in range(3):
            d = root / split / f"n0000{c}"
            d.mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(scenes.labels == c)[:per]):
                img = Image.fromarray(scenes.images[i]).resize((70, 60))
                (img.convert("L") if k == 0 else img).save(d / f"{k}.png")
    (root / "train" / "n00000" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    p = get_preset("tiny").replace(data="folders", batch_size=1, epochs=2, evolution_epochs=(2,))
    with pytest.warns(UserWarning, match="unreadable"):
        run = train(p, data_root=root, out=tmp_path / "run", progress=False, resume=False)
    assert run.complete and len(run.metrics) == 2
    assert [r["images"] for r in run.metrics] == [18, 18]     # 18 readable of 19
    assert run.classes == ["n00000", "n00001", "n00002"]
    assert run.mean().shape == (3, 55, 55)
