"""The library API refuses what the command line refuses: one clear ValueError per bad parameter or target."""
import math

import pytest
import torch
from conftest import TinyCAM
from torch import nn

from advcam import AdvCAM
from advcam.advcam import advcam_image, advcam_images, climb_fast, climb_reference


class Hooked(nn.Module):
    """A pooled classifier without the CAM layout (Grad-CAM through hooks), 5 classes."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


@pytest.fixture(scope="module")
def cam_model():
    torch.manual_seed(0)
    return TinyCAM().eval()  # 4 classes, closed-form path


@pytest.fixture(scope="module")
def images():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kw,needle", [
    ({"adv_iter": 0}, "adv_iter"),
    ({"adv_iter": 2.5}, "adv_iter"),
    ({"xi": -0.08}, "xi"),
    ({"xi": 0.0}, "xi"),
    ({"xi": math.inf}, "xi"),
    ({"lam": math.nan}, "lam"),
    ({"lam": -1.0}, "lam"),
    ({"tau": 1.5}, "tau"),
    ({"tau": -0.1}, "tau"),
    ({"tau": math.nan}, "tau"),
])
def test_bad_climbing_parameters_are_refused(cam_model, kw, needle):
    with pytest.raises(ValueError, match=f"^{needle} "):
        AdvCAM(cam_model, "stage4", **kw)
    with pytest.raises(ValueError, match=f"^{needle} "):
        AdvCAM(Hooked(), "body", **kw)
    params = {"adv_iter": 2, "xi": 0.08, "lam": 7.0, "tau": 0.5, **kw}
    pair = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match=f"^{needle} "):
        advcam_image(cam_model, [pair], (1.0,), [0], (32, 32), **params)
    with pytest.raises(ValueError, match=f"^{needle} "):
        advcam_images(cam_model, [[pair]], (1.0,), [[0]], [(32, 32)], **params)
    with pytest.raises(ValueError, match=f"^{needle} "):
        climb_fast(cam_model, pair[None], [0], params["adv_iter"], params["xi"], params["lam"], params["tau"])
    with pytest.raises(ValueError, match=f"^{needle} "):
        climb_reference(cam_model, pair, 0, params["adv_iter"], params["xi"], params["lam"], params["tau"])


@pytest.mark.parametrize("target", [-1, 4, 1.7, math.nan, True])
def test_bad_targets_are_refused_on_cam_networks(cam_model, images, target):
    """-1 used to return the last class's maps, 4 raised a raw IndexError, 1.7 ran class 1."""
    with AdvCAM(cam_model, "stage4", adv_iter=2) as advcam:
        with pytest.raises(ValueError, match="target"):
            advcam(images, [target])
    with pytest.raises(ValueError, match="target"):
        advcam_image(cam_model, [torch.zeros(2, 3, 32, 32)], (1.0,), [target], (32, 32), adv_iter=2)


@pytest.mark.parametrize("target", [-1, 5, 2.5])
def test_bad_targets_are_refused_on_hooked_models(images, target):
    with AdvCAM(Hooked(), "body", adv_iter=2) as advcam:
        with pytest.raises(ValueError, match="target"):
            advcam(images, [target])


def test_out_of_range_message_names_the_class_count(cam_model, images):
    with AdvCAM(cam_model, "stage4", adv_iter=2) as advcam:
        with pytest.raises(ValueError, match=r"target class 4 is out of range: class indices are \[0, 4\)"):
            advcam(images, torch.tensor([4]))


def test_integral_targets_of_any_type_give_the_same_maps(cam_model, images):
    """An integral float (2.0), a tensor and an int name the same class; the last valid index is accepted."""
    with AdvCAM(cam_model, "stage4", adv_iter=3) as advcam:
        ref = advcam(images, [2])
        assert torch.equal(advcam(images, [2.0]), ref)
        assert torch.equal(advcam(images, torch.tensor([2])), ref)
        assert not torch.equal(advcam(images, [3]), ref)
    with AdvCAM(Hooked(), "body", adv_iter=2) as advcam:
        assert advcam(images, [4]).shape == (1, 16, 16)
