"""Equal-size images batched together (advcam_images, --images_per_batch) and the CUDA layout run on the CPU."""
import copy
import os

import numpy as np
import pytest
import torch
from conftest import TinyCAM, flip_pairs, save_random_cam_weights, square_images

from advcam import obtain_cam_masking
from advcam.advcam import advcam_image, advcam_images, climb_fast
from advcam.cam_loop import device_layout
from advcam.io import load_cam_npy
from advcam.steps import make_advcam

KW = dict(adv_iter=12, xi=0.08, lam=7.0, tau=0.5)  # adv_iter > 10: 6 steps and the x2 quirk at scale 0.5


@pytest.mark.parametrize("max_batch_pixels", [None, 2 * 48 * 64 * 3])  # whole batch; chunks of 3 across images
def test_advcam_images_equals_per_image(max_batch_pixels):
    torch.manual_seed(0)
    model = TinyCAM(5).eval()
    scales = (1.0, 0.5)
    imgs = [torch.randn(3, 48, 64) for _ in range(4)]
    images = [flip_pairs(im, scales) for im in imgs]
    keys = [[0, 3], [1], [], [2]]  # different class sets, one with 2 classes, one with none
    sizes = [(48, 64)] * 4
    batched = advcam_images(model, images, scales, keys, sizes, **KW, max_batch_pixels=max_batch_pixels)
    assert len(batched) == 4
    for pairs, k, size, (cam, high) in zip(images, keys, sizes, batched, strict=True):
        ref_cam, ref_high = advcam_image(model, pairs, scales, k, size, engine="fast", **KW,
                                         max_batch_pixels=max_batch_pixels)
        assert cam.dtype == high.dtype == torch.float32
        assert torch.equal(cam, ref_cam) and torch.equal(high, ref_high)
        assert cam.shape == (len(k), 12, 16) and high.shape == (len(k), 48, 64)
    assert batched[0][0].amax() > 0.99  # real maps, not an empty comparison


def test_advcam_images_refuses_mismatched_sizes():
    model = TinyCAM(5).eval()
    scales = (1.0, 0.5)
    images = [flip_pairs(torch.randn(3, 48, 64), scales), flip_pairs(torch.randn(3, 64, 48), scales)]
    with pytest.raises(ValueError, match="equal size"):
        advcam_images(model, images, scales, [[0], [1]], [(48, 64), (64, 48)], adv_iter=2)
    with pytest.raises(ValueError, match="key lists"):
        advcam_images(model, images[:1], scales, [[0], [1]], [(48, 64)], adv_iter=2)


@pytest.mark.slow
def test_images_per_batch_end_to_end_same_files(tmp_path, tiny_voc, monkeypatch):
    save_random_cam_weights(str(tmp_path / "sess" / "cam.pth"))
    # ids 1, 2, 4, 5, 7 are 48x64 and 0, 3, 6 are 64x48; 4 is unreadable and skipped without ending its group,
    # so with 3 per batch the groups are (1, 2, 5), (7) (a size change ends it) and (0, 3, 6).
    order = [1, 2, 4, 5, 7, 0, 3, 6]
    with open(os.path.join(tiny_voc, "ImageSets", "Segmentation", "grouped.txt"), "w") as f:
        f.write("\n".join(f"2100_{i:06d}" for i in order) + "\n")
    with open(os.path.join(tiny_voc, "JPEGImages", "2100_000004.jpg"), "wb") as f:
        f.write(b"not a jpeg")  # an unreadable image inside a group
    base = ["--voc12_root", tiny_voc, "--train_list", "grouped.txt", "--num_workers", "0", "--cam_weights_name",
            str(tmp_path / "sess" / "cam.pth"), "--adv_iter", "3", "--cam_scales", "1.0", "0.5",
            "--skip_bad_images", "True"]
    groups = []  # sizes of the groups the fast engine receives

    def spy(model, images, *a, **kw):
        groups.append(len(images))
        return advcam_images(model, images, *a, **kw)

    monkeypatch.setattr(make_advcam, "advcam_images", spy)
    stats, seen = {}, {}
    for k in (1, 3):
        groups.clear()
        stats[k] = obtain_cam_masking.main(base + ["--images_per_batch", str(k), "--cam_out_dir",
                                                   str(tmp_path / f"b{k}"), "--log_name", str(tmp_path / f"log{k}")])
        assert "skipping unreadable image 2100_000004" in open(tmp_path / f"log{k}.log").read()
        seen[k] = list(groups)
    assert seen == {1: [1] * 7, 3: [3, 1, 3]}
    assert stats[1]["images"] == stats[3]["images"] == 7 and stats[1]["bad"] == stats[3]["bad"] == 1
    assert stats[1]["classes"] == stats[3]["classes"]
    names = sorted(os.listdir(tmp_path / "b1"))
    assert len(names) == 7 and names == sorted(os.listdir(tmp_path / "b3"))
    for name in names:
        a, b = load_cam_npy(tmp_path / "b1" / name), load_cam_npy(tmp_path / "b3" / name)
        assert torch.equal(a["keys"], b["keys"]) and torch.equal(a["cam"], b["cam"])
        assert np.array_equal(a["high_res"], b["high_res"])


def test_images_per_batch_flag_is_checked(tiny_voc, capsys):
    with pytest.raises(SystemExit):
        obtain_cam_masking.main(["--voc12_root", tiny_voc, "--images_per_batch", "0"])
    assert "--images_per_batch must be >= 1" in capsys.readouterr().err


def _square_inputs(n=4, scales=(1.0, 0.5)):
    x, y = square_images(n, seed=11)
    return [flip_pairs(im, scales) for im in x], [torch.nonzero(lab)[:, 0].tolist() for lab in y], scales


def test_channels_last_layout_on_cpu_matches_reference(trained_tiny_cam):
    """The CUDA path's layout (device_layout, as obtain_CAM_masking applies on CUDA), run on the CPU."""
    images, keys, scales = _square_inputs()
    ref_model = copy.deepcopy(trained_tiny_cam)
    model, cl_images = device_layout(copy.deepcopy(trained_tiny_cam), images, channels_last=True)
    assert model.stage1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for pairs in cl_images for p in pairs)
    fast = advcam_images(model, cl_images, scales, keys, [(64, 64)] * len(images), **KW)
    for pairs, k, (cam, high) in zip(images, keys, fast, strict=True):
        ref_cam, ref_high = advcam_image(ref_model, pairs, scales, k, (64, 64), engine="reference", **KW)
        assert (cam - ref_cam).abs().max() <= 1e-4 and (high - ref_high).abs().max() <= 1e-4


def _objective_gradient(model, pair, c, amp: bool) -> torch.Tensor:
    """dL_cls/dx of one climbing step (y_c - sum_{k != c} y_k, logits = mean of ReLU maps), optionally in bf16."""
    x = pair.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        S = torch.nn.functional.conv2d(model.features(x), model.classifier.weight)
    y = torch.relu(S.float()).mean((2, 3))
    return torch.autograd.grad(2 * y[:, c].sum() - y.sum(), x)[0]


def test_bf16_one_step_agrees_with_float32_to_bf16_precision(trained_tiny_cam):
    """One forward/backward of the climb under bf16 autocast vs float32, measured in units of bf16's epsilon.

    The climb itself is chaotic (float-level differences grow over the steps, whatever the machine), so only one
    step is compared: the map R(x_0) within 2 eps of its maximum and the objective's input gradient within
    16 eps (relative L2), a few roundings per layer of the 3-layer network. The difference must not be zero
    (autocast really ran in bf16), and a whole climb in bf16 stays finite."""
    eps = torch.finfo(torch.bfloat16).eps
    model = copy.deepcopy(trained_tiny_cam)
    for p in model.parameters():
        p.requires_grad_(False)
    images, keys, scales = _square_inputs()
    checked = 0
    for pairs, k in zip(images, keys, strict=True):
        for c in k:
            x0 = pairs[0][None]
            f32 = climb_fast(model, x0, [c], 1, 0.08, 7.0, 0.5)
            bf16 = climb_fast(model, x0, [c], 1, 0.08, 7.0, 0.5, amp_dtype=torch.bfloat16)
            assert (f32 - bf16).abs().max() <= 2 * eps * f32.abs().max()
            g32, g16 = (_objective_gradient(model, pairs[0], c, amp) for amp in (False, True))
            rel = float((g32 - g16).norm() / g32.norm())
            assert 0 < rel <= 16 * eps, rel
            checked += 1
    assert checked >= 4
    model, cl_images = device_layout(copy.deepcopy(trained_tiny_cam), images, channels_last=True)
    out = advcam_images(model, cl_images, scales, keys, [(64, 64)] * len(images), **KW, amp_dtype=torch.bfloat16)
    assert all(torch.isfinite(m).all() for maps in out for m in maps)


@pytest.mark.slow
def test_bench_images_per_batch_row(capsys):
    import importlib
    bench = importlib.import_module("advcam.tools.bench_advcam")  # by name: its CPU child processes import it so
    out = bench.main(["--device", "cpu", "--size", "32x32", "--images", "3", "--classes", "1", "--adv_iter", "2",
                      "--scales", "1.0", "--engine", "fast", "--images_per_batch", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["engine", "s/image"])
    assert [line.split()[0] for line in lines[header + 2:header + 4]] == ["fast", "fast-b2"]
    assert any(line.startswith("fast-b2:") and line.endswith("cam 0.0e+00, high_res 0.0e+00") for line in lines)
    assert lines[-1] == "fast/reference speed ratio: n/a, max abs diff: n/a"
    assert out["speed_fast-b2_vs_fast"] > 0 and len(out["results"]["fast-b2"].seconds) == 3
