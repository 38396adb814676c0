"""Why AdvCAM's map floor rises on a classifier with global average pooling and a linear head (issue 13,
docs/advcam_any_network.md section 3f): the Grad-CAM weights of such a head are the same constants at every climbing
step, so each step map is the ReLU of the per-cell target map W_c . F(x_t), scaled by 1 / (#{W_c > 0} h' w')."""
import pytest
import torch
from torch import nn

from advcam.advcam import AdvCAM

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for this module


class GapLinear(nn.Module):
    """conv body -> global average pooling -> linear head with a bias, as an ImageNet classifier."""

    def __init__(self, classes: int = 6):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


@pytest.mark.parametrize("others", ["logodds", "sum", "none"])
def test_step_maps_are_relu_of_the_per_cell_target_map(others):
    torch.manual_seed(3)
    model = GapLinear().eval()
    with torch.no_grad():
        model.fc.bias.normal_()  # the bias does not enter Grad-CAM
    x = torch.randn(2, 3, 40, 48)
    targets = [1, 4]
    feats = []
    handle = model.body.register_forward_hook(lambda m, i, o: feats.append(o.detach()))
    steps = []
    try:
        with AdvCAM(model, "body", adv_iter=6, others=others) as cam:
            out = cam(x, targets, step_maps=steps)
    finally:
        handle.remove()
    assert len(feats) == len(steps) == 6 and torch.equal(steps[-1], out)
    W = model.fc.weight.detach()
    h, w = out.shape[-2:]
    prev = torch.zeros_like(out)
    moved = 0.0
    for t, (acc, feat) in enumerate(zip(steps, feats, strict=True)):
        R = acc - prev  # the step map R(x_t)
        prev = acc
        for i, c in enumerate(targets):
            S_c = torch.einsum("k,khw->hw", W[c], feat[i])  # the head applied to each cell, bias-free
            expect = torch.relu(S_c) / (float((W[c] > 0).sum()) * h * w)
            assert torch.allclose(R[i], expect, rtol=1e-4, atol=1e-6 * float(expect.max())), (t, c)
            if t:
                moved = max(moved, float((feat[i] - feats[0][i]).abs().max()))
    assert moved > 1e-3  # the climb did change the features, so the maps above are of different images
