"""zfcore.chain: our models and torchvision's AlexNet and VGG as chains; clear errors otherwise."""
import pytest
import torchvision
from torch import nn

from zfcore import models
from zfcore.chain import UnsupportedModel, chain, find_step


def test_our_model_is_its_own_chain():
    m = models.zfnet(10, input_size=64, width=0.25, fc_units=32)
    steps = chain(m)
    assert [s.name for s in steps] == [n for n, _ in m.named_children()]
    assert steps[0].in_shape == (3, 64, 64) and steps[0].out_shape == (24, 30, 30)
    assert steps[-1].out_shape == (10,)


@pytest.mark.parametrize("factory", [torchvision.models.alexnet, torchvision.models.vgg11])
def test_torchvision_flatten_in_forward_is_recognised(factory):
    steps = chain(factory(weights=None))
    names = [s.name for s in steps]
    i = names.index("<flatten>")
    assert names[i - 1] == "avgpool" and names[i + 1] == "classifier.0"
    assert steps[i].in_shape[0] * steps[i].in_shape[1] * steps[i].in_shape[2] == steps[i].out_shape[0]
    assert steps[-1].out_shape == (1000,)


def test_unsupported_modules_are_named():
    with pytest.raises(UnsupportedModel, match=r"'bn1' \(BatchNorm2d\)"):
        chain(torchvision.models.resnet18(weights=None))

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)
            self.b = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.b(x) + self.a(x)
    with pytest.raises(UnsupportedModel, match="simple chain"):
        chain(Skip(), 16)


def test_adaptive_pool_of_any_size_and_layer_names_are_checked():
    alex = torchvision.models.alexnet(weights=None)
    # at 256 px AlexNet's adaptive pool averages 7x7 maps down to 6x6: a step of the chain
    pool = next(s for s in chain(alex, 256) if s.name == "avgpool")
    assert pool.in_shape == (256, 7, 7) and pool.out_shape == (256, 6, 6)
    pool = next(s for s in chain(alex, (200, 248)) if s.name == "avgpool")
    assert pool.in_shape == (256, 5, 6) and pool.out_shape == (256, 6, 6)
    steps = chain(alex)
    assert find_step(steps, "features.0") == 0
    with pytest.raises(ValueError, match="no layer 'conv1'.*features.0"):
        find_step(steps, "conv1")
