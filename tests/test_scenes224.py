"""The scenes224 scale (Fig. 3's geometry on the scenes) at reduced size on the CPU, and the
fast paths it brings: bfloat16 autocast as a preset option, the scenes held on the device."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from zfcore import geometry, models
from zfcore.data.scenes import SceneSource, load_scenes
from zfcore.presets import get_preset
from zfcore.train import sgd_step, train

#: scenes224 with few images and classes: the paper's sizes (256 stored, 224 crops), little data.
REDUCED = dict(num_classes=3, train_per_class=6, val_per_class=2, test_per_class=2, target_classes=2,
               target_train=(2,), target_test=2, target_folds=1, multi_classes=2, multi_train=4, multi_test=4,
               fc_units=32, epochs=2, batch_size=6, evolution_epochs=(1, 2))


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("s224")
    mp = pytest.MonkeyPatch()
    mp.setenv("ZF_ARTIFACTS", str(root))
    mp.setenv("ZF_PROGRESS", "0")
    mp.setenv("ZF_PRESET_OVERRIDES", json.dumps({"scenes224": REDUCED}))
    try:
        yield train("scenes224", progress=False), get_preset("scenes224")
    finally:
        mp.undo()


def test_scenes224_is_fig3_at_reduced_size(reduced_run):
    run, p = reduced_run
    assert (p.image_size, p.stored_size) == (224, 256)
    val = load_scenes(p, "val", progress=False)
    assert val.images.shape[1:] == (256, 256, 3) and val.images.dtype == np.uint8
    ours = geometry.layer_geometry(run.load(), p.image_size)
    assert [(g.side, g.field) for g in ours] == [(g.side, g.field) for g in geometry.paper_geometry()]
    m = run.metrics
    assert [e["epoch"] for e in m] == [1, 2] and all(math.isfinite(e["train_loss"]) for e in m)


def test_scenes224_mines_projects_and_occludes(reduced_run):
    from zfcore import activations, deconv, occlusion
    from zfcore.mining import mined
    run, p = reduced_run
    top = mined(run, progress=False, layers=["conv5"], k=2)["conv5"]
    assert top.values.shape == (geometry.scale_geometry(p)[4].maps, 2)
    view = run.view()
    val = load_scenes(p, "val", progress=False)
    x = view.inputs(val.images[:1])
    assert x.shape == (1, 3, 224, 224)
    feature = int(activations.top_maps(view.model, x, "conv5", 1)[0][0][0])
    proj = deconv.project(view.model, x, "conv5", feature)
    assert proj.shape == (1, 3, 224, 224) and torch.isfinite(proj).all() and proj.abs().sum() > 0
    sens = occlusion.sensitivity(view.model, x, target=0, size=56, stride=56)
    assert torch.as_tensor(sens.prob).shape == (4, 4) and torch.isfinite(torch.as_tensor(sens.prob)).all()
    assert sens.projection.shape == (3, 224, 224)


def test_bfloat16_autocast_runs_the_forward_in_bfloat16_and_keeps_float32_weights():
    torch.manual_seed(0)
    model = models.zfnet(3, input_size=48, width=0.25, fc_units=16)
    seen = []
    model.conv2.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    x, y = torch.randn(4, 3, 48, 48), torch.tensor([0, 1, 2, 0])
    logits, loss = sgd_step(model, opt, x, y, filter_radius=0.1, precision="bfloat16")
    assert seen == [torch.bfloat16] and logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert all(q.dtype == torch.float32 for q in model.parameters())
    seen.clear()
    sgd_step(model, opt, x, y, filter_radius=0.1)
    assert seen == [torch.float32]


def test_precision_is_a_checked_preset_field():
    assert get_preset("tiny").precision == "float32"
    assert get_preset("tiny").replace(precision="bfloat16").precision == "bfloat16"
    with pytest.raises(ValueError, match="precision"):
        get_preset("tiny").replace(precision="float16")


def test_bfloat16_tiny_run_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_ARTIFACTS", str(tmp_path))
    p = get_preset("tiny").replace(epochs=2, evolution_epochs=(2,), precision="bfloat16")
    run = train(p, out=tmp_path / "bf16", progress=False)
    m = run.metrics
    assert all(math.isfinite(e["train_loss"]) for e in m)
    # it learns: the training loss falls below that of a uniform guess over the 10 classes
    assert m[-1]["train_loss"] < math.log(10)
    assert all(q.dtype == torch.float32 for q in run.load().parameters())


def test_scenes_on_a_device_give_the_same_batches():
    ds = load_scenes("tiny", "val", progress=False)
    a, b = SceneSource(ds), SceneSource(ds).to_device(torch.device("cpu"))
    for (xa, ya), (xb, yb) in zip(a.batches(7, shuffle=True, seed=3, epoch=2),
                                  b.batches(7, shuffle=True, seed=3, epoch=2)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(a.mean(), b.mean())
