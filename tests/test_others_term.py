"""The other-class term of the climbing objective on the hooked path (``others=``, :func:`class_objective`):
hand-computed values, the log-odds' invariance to a term common to all logits, and the defaults."""
import math

import pytest
import torch
from conftest import TinyCAM
from torch import nn

from advcam.advcam import AdvCAM, class_objective

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for this module


def test_class_objective_hand_values():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    target = torch.tensor([0, 2])
    assert torch.allclose(class_objective(logits, target, "sum"), torch.tensor([1 - 5.0, 0.0 - (-0.5)]))
    assert torch.allclose(class_objective(logits, target, "none"), torch.tensor([1.0, 0.0]))
    hand = torch.tensor([1 - math.log(math.exp(2) + math.exp(3)), 0 - math.log(math.exp(0.5) + math.exp(-1))])
    assert torch.allclose(class_objective(logits, target, "logodds"), hand)
    with pytest.raises(ValueError, match="unknown others"):
        class_objective(logits, target, "mean")


def test_logodds_is_the_log_odds_of_the_softmax_probability():
    torch.manual_seed(0)
    logits = 3 * torch.randn(4, 2, 1000)
    target = torch.randint(0, 1000, (4, 2))
    p = torch.softmax(logits.double(), -1).gather(-1, target[..., None])[..., 0]
    assert torch.allclose(class_objective(logits, target, "logodds").double(), torch.log(p / (1 - p)), atol=1e-4)


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(16, 7)


class Shifted(nn.Module):
    """A softmax classifier's logits plus ``a`` times a term g(x) common to all classes, which depends on the input
    but not on the target layer ``body`` (so Grad-CAM at ``body`` and every prediction are the same for every a)."""

    def __init__(self, base: Body, a: float):
        super().__init__()
        self.body, self.fc, self.a = base.body, base.fc, a
        torch.manual_seed(9)
        self.v = torch.randn(3, 32, 32)

    def forward(self, x):
        g = (x * self.v).sum((1, 2, 3)) / 100  # [B]
        return self.fc(self.body(x).mean((2, 3))) + self.a * g[:, None]


def test_logodds_climb_ignores_a_term_common_to_all_logits():
    """Adding a g(x) to every logit changes no prediction: the log-odds climb gives the same maps, the paper's sum
    (which weighs g C - 2 times) and the target logit alone (once) do not."""
    torch.manual_seed(1)
    base = Body().eval()
    x = torch.randn(2, 3, 32, 32)
    out = {}
    for others in ("logodds", "sum", "none"):
        for a in (0.0, 5.0):
            with AdvCAM(Shifted(base, a).eval(), "body", adv_iter=6, others=others) as cam:
                out[others, a] = cam(x, [1, 4])
    assert out["logodds", 0.0].amax((1, 2)).min() > 0
    assert torch.allclose(out["logodds", 0.0], out["logodds", 5.0], rtol=1e-4, atol=1e-7)
    for others in ("sum", "none"):
        assert not torch.allclose(out[others, 0.0], out[others, 5.0], rtol=1e-2, atol=1e-5)


def test_defaults_logodds_on_hooked_models_and_the_reference_on_cam_networks():
    torch.manual_seed(2)
    with AdvCAM(Shifted(Body(), 0.0).eval(), "body", adv_iter=1) as cam:
        assert not cam.closed_form and cam.others == "logodds"
    tiny = TinyCAM(4).eval()
    with AdvCAM(tiny, "stage4", adv_iter=1) as cam:
        assert cam.closed_form and cam.others == "sum"
    with pytest.raises(ValueError, match="hooked path only"):
        AdvCAM(tiny, "stage4", others="logodds")
    with pytest.raises(ValueError, match="unknown others"):
        AdvCAM(tiny, "stage4", others="top5")
