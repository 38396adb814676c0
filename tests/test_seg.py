"""Stage 3, the final segmentation network: heads, losses, training and resumption, inference, CRF, export."""
import json
import math
import os
import tarfile
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from advcam import run_sample, segmentation
from advcam.crf import crf_inference_probs
from advcam.errors import BadInputError, MissingInputError
from advcam.nets import deeplab_v2
from advcam.segmentation import (
    SegTrainDataset,
    balanced_cross_entropy,
    param_groups,
    plain_cross_entropy,
    poly_scheduler,
    predict_probs,
    save_submission_png,
    submission_path,
    train_segmentation,
    write_submission_tarball,
)
from advcam.voc12 import VOC_PALETTE

# --------------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------------


def test_aspp_v2_branches_rates_and_sum():
    head = deeplab_v2.ASPPv2(16, 21)
    assert [b.dilation for b in head.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert [b.padding for b in head.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(b.kernel_size == (3, 3) and b.bias is not None for b in head.branches)
    x = torch.randn(2, 16, 41, 41)
    y = head(x)
    assert y.shape == (2, 21, 41, 41)
    torch.testing.assert_close(y, sum(b(x) for b in head.branches))  # summed, no projection
    assert sum(p.numel() for p in deeplab_v2.ASPPv2(2048, 21).parameters()) == 4 * (2048 * 9 * 21 + 21)


def test_deeplab_v2_resnet101_dilations_stride_and_frozen_bn():
    model = deeplab_v2.build(21)
    layer3, layer4 = model.backbone[6], model.backbone[7]
    assert len(layer3) == 23 and all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in layer3)
    assert all(b.conv2.dilation == (4, 4) and b.conv2.padding == (4, 4) for b in layer4)
    model.load_backbone(torchvision.models.resnet101().state_dict())  # torchvision keys load (fc ignored)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training or m.weight.requires_grad for m in bns)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 65, 65)).shape == (1, 21, 9, 9)  # output stride 8
    with pytest.raises(ValueError, match="ResNet"):
        model.load_backbone(torchvision.models.resnet50().state_dict())


def test_deeplabv3_builders_are_offline_and_take_torchvision_weights():
    from advcam.nets import deeplabv3_resnet50
    model = deeplabv3_resnet50.build(21)
    model.load_backbone(torchvision.models.resnet50().state_dict())
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 40, 56)).shape == (1, 21, 40, 56)


def test_pretrained_offline_message_and_none(monkeypatch):
    def offline(self, *a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(MissingInputError, match="--seg_pretrained PATH.*--seg_pretrained none"):
        segmentation.build_seg_network("deeplab_v2", "torchvision")
    model, init = segmentation.build_seg_network("deeplabv3_resnet50", "none")
    assert "none" in init
    with pytest.raises(MissingInputError, match="resnet101.pth not found: give such a file, or .none."):
        segmentation.build_seg_network("deeplab_v2", "/nonexistent/resnet101.pth")
    with pytest.raises(BadInputError, match="choose one of"):
        segmentation.build_seg_network("resnet50_cam", "none")


def test_pretrained_from_a_file(tmp_path):
    ref = torchvision.models.resnet50()
    torch.save(ref.state_dict(), tmp_path / "r50.pth")
    model, init = segmentation.build_seg_network("deeplabv3_resnet50", str(tmp_path / "r50.pth"))
    assert str(tmp_path / "r50.pth") in init
    torch.testing.assert_close(model.backbone.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)


# --------------------------------------------------------------------------------------------------
# losses, optimiser
# --------------------------------------------------------------------------------------------------


def test_balanced_cross_entropy_hand_computed():
    # two classes; logits (0, ln 3) give p = (1/4, 3/4), logits (ln 3, 0) give (3/4, 1/4)
    a, b = [0.0, math.log(3)], [math.log(3), 0.0]
    logits = torch.tensor([[a, a, b, a], [b, b, a, b]]).permute(0, 2, 1)[:, :, None, :]  # [2, 2, 1, 4]
    labels = torch.tensor([[[0, 1, 1, 255]], [[0, 0, 0, 255]]])
    # image 1: background pixel 0 has p(0) = 1/4; foreground pixels 1, 2 have p(1) = 3/4, 1/4
    img1 = -math.log(1 / 4) + (-math.log(3 / 4) - math.log(1 / 4)) / 2
    # image 2: background only: p(0) = 3/4, 3/4, 1/4; no foreground term
    img2 = (-2 * math.log(3 / 4) - math.log(1 / 4)) / 3
    assert balanced_cross_entropy(logits, labels).item() == pytest.approx((img1 + img2) / 2, rel=1e-6)
    plain = (-math.log(1 / 4) - math.log(3 / 4) - math.log(1 / 4) - 2 * math.log(3 / 4) - math.log(1 / 4)) / 6
    assert plain_cross_entropy(logits, labels).item() == pytest.approx(plain, rel=1e-6)
    assert balanced_cross_entropy(logits, torch.full_like(labels, 255)).item() == 0.0


def test_param_groups_and_poly_schedule():
    model = nn.Module()
    model.backbone = nn.Conv2d(3, 4, 3)
    model.head = nn.Conv2d(4, 2, 1)
    groups = param_groups(model, 1e-3, 5e-4)
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in groups] == [
        (1e-3, 5e-4, 2), (1e-2, 5e-4, 1), (2e-2, 0.0, 1)]
    assert groups[1]["params"][0] is model.head.weight and groups[2]["params"][0] is model.head.bias
    opt = torch.optim.SGD(groups, lr=1e-3, momentum=0.9)
    sched = poly_scheduler(opt, 10, 0.9)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-2 * (1 - 4 / 10) ** 0.9)


# --------------------------------------------------------------------------------------------------
# training and resumption
# --------------------------------------------------------------------------------------------------


class TinySeg(nn.Module):
    """A two-layer segmentation network with the backbone/head split of the real ones (logits at stride 2)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout2d(0.2), nn.Conv2d(8, 21, 1))

    def forward(self, x):
        return self.head(self.backbone(x))


def _train(tmp_path, voc, ckpt, num_iters=8, every=4):
    torch.manual_seed(0)
    model = TinySeg()
    names = open(os.path.join(voc, "ImageSets/Segmentation/train_aug.txt")).read().split()
    ds = SegTrainDataset(names, voc, os.path.join(voc, "SegmentationClass"), 40, (0.75, 1.0, 1.5), seed=3)
    out = train_segmentation(model, ds, batch_size=3, iter_size=2, num_iters=num_iters, lr=0.02, momentum=0.9,
                             weight_decay=5e-4, power=0.9, loss="balanced", checkpoint_path=str(ckpt),
                             checkpoint_every=every, device=torch.device("cpu"))
    return model, out


def test_training_lowers_the_loss_and_resume_continues_the_same_run(tmp_path, tiny_voc, monkeypatch):
    whole, out = _train(tmp_path, tiny_voc, tmp_path / "whole.ckpt", num_iters=30, every=10)
    losses = out["losses"]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    saved = torch.load(tmp_path / "whole.ckpt", weights_only=False)
    assert saved["iteration"] == 30 and {"model", "optimizer", "scheduler"} <= set(saved)

    # the same run interrupted during iteration 13 (after the checkpoint of iteration 10), then started again
    real = segmentation.seg_loss
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * 12 + 1:  # two accumulation steps per iteration
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(segmentation, "seg_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, tiny_voc, tmp_path / "part.ckpt", num_iters=30, every=10)
    monkeypatch.setattr(segmentation, "seg_loss", real)
    assert torch.load(tmp_path / "part.ckpt", weights_only=False)["iteration"] == 10
    resumed, out2 = _train(tmp_path, tiny_voc, tmp_path / "part.ckpt", num_iters=30, every=10)
    assert out2["start_iteration"] == 10 and len(out2["losses"]) == 20
    np.testing.assert_allclose(out2["losses"], losses[10:], rtol=1e-5)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)

    # a checkpoint of another configuration is refused, not silently resumed
    with pytest.raises(BadInputError, match="another run"):
        _train(tmp_path, tiny_voc, tmp_path / "part.ckpt", num_iters=40, every=10)


def test_training_crops_scales_flip_and_padding(tiny_voc):
    names = open(os.path.join(tiny_voc, "ImageSets/Segmentation/train_aug.txt")).read().split()
    ds = SegTrainDataset(names, tiny_voc, os.path.join(tiny_voc, "SegmentationClass"), 96, (2.0,), seed=0)
    item = ds[(0, 5)]
    assert item["img"].shape == (3, 96, 96) and item["label"].shape == (96, 96)
    again = ds[(0, 5)]
    assert torch.equal(item["img"], again["img"]) and torch.equal(item["label"], again["label"])
    small = SegTrainDataset(names, tiny_voc, os.path.join(tiny_voc, "SegmentationClass"), 96, (0.5,), seed=0)[(0, 5)]
    # image 0 is 64 x 48, so 32 x 24 at scale 0.5: the rows below are padding (image at the mean, label ignored)
    assert torch.all(small["label"][32:] == 255) and torch.all(small["img"][:, 32:] == 0)
    assert (small["label"][:32] != 255).float().mean() > 0.2
    values = set(torch.unique(item["label"]).tolist())
    assert values <= {0, 1, 8, 15, 255}


# --------------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------------


def test_flip_averaging_of_a_flip_exact_network_is_the_single_pass():
    torch.manual_seed(0)
    sym = nn.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        sym.weight.copy_((sym.weight + sym.weight.flip(-1)) / 2)  # mirror-symmetric kernels: exact under flips
    img = torch.randn(3, 24, 31)
    single = predict_probs(sym.eval(), img, (1.0,), flip=False)
    torch.testing.assert_close(predict_probs(sym, img, (1.0,), flip=True), single, rtol=0, atol=1e-6)
    skew = nn.Conv2d(3, 5, 3, padding=1)  # not symmetric: the flip pass does change the answer
    assert not torch.allclose(predict_probs(skew.eval(), img, (1.0,), True), predict_probs(skew, img, (1.0,), False),
                              atol=1e-3)


def test_multi_scale_flip_of_a_scale_and_flip_exact_network_is_the_single_scale_answer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 5, 1)).eval()  # per pixel: exact under flips and, on flat regions, scales
    img = torch.zeros(3, 64, 64)
    colours = torch.randn(4, 3)
    for k, (y, x) in enumerate(((0, 0), (0, 32), (32, 0), (32, 32))):
        img[:, y:y + 32, x:x + 32] = colours[k][:, None, None]
    single = predict_probs(net, img, (1.0,), flip=False)
    multi = predict_probs(net, img, (0.5, 0.75, 1.0, 1.25, 1.5), flip=True)
    interior = torch.ones(64, 64, dtype=torch.bool)
    interior[28:36] = False
    interior[:, 28:36] = False
    torch.testing.assert_close(multi[:, interior], single[:, interior], rtol=0, atol=1e-6)
    assert (multi.argmax(0) == single.argmax(0)).float().mean() > 0.95  # only the block edges mix
    torch.testing.assert_close(multi.sum(0), torch.ones(64, 64))


def test_crf_improves_a_noisy_mask_on_a_synthetic_image():
    rng = np.random.default_rng(0)
    h, w = 60, 80
    gt = np.zeros((h, w), np.int64)
    gt[15:45, 20:50] = 1
    gt[5:25, 55:75] = 2
    img = np.array([[90, 90, 90], [220, 40, 40], [40, 60, 220]], np.uint8)[gt]
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    probs = np.full((3, h, w), 0.2, np.float32)
    noisy = gt.copy()
    flip = rng.random((h, w)) < 0.25
    noisy[flip] = (gt[flip] + rng.integers(1, 3, flip.sum())) % 3
    probs[noisy, np.arange(h)[:, None], np.arange(w)] = 0.6
    before = (probs.argmax(0) == gt).mean()
    after_probs = crf_inference_probs(img, probs)
    after = (after_probs.argmax(0) == gt).mean()
    assert before < 0.8 and after > 0.98
    np.testing.assert_allclose(after_probs.sum(0), 1, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# VOC test-server export
# --------------------------------------------------------------------------------------------------


def test_test_server_export_layout_and_palette(tmp_path):
    labels = {"2008_000006": np.array([[0, 1, 20], [15, 15, 0]], np.uint8),
              "2008_000011": np.zeros((3, 2), np.uint8)}
    for name, lab in labels.items():
        save_submission_png(str(tmp_path), name, lab)
    path = submission_path(str(tmp_path), "2008_000006")
    assert path == str(tmp_path / "results/VOC2012/Segmentation/comp6_test_cls/2008_000006.png")
    im = Image.open(path)
    assert im.mode == "P" and im.getpalette()[:63] == VOC_PALETTE[:63]
    pal = im.getpalette()
    assert pal[3:6] == [128, 0, 0] and pal[45:48] == [192, 128, 128] and pal[60:63] == [0, 64, 128]  # plane/person/tv
    np.testing.assert_array_equal(np.asarray(im), labels["2008_000006"])
    tgz = write_submission_tarball(str(tmp_path), list(labels))
    assert tgz == str(tmp_path / "results.tgz")
    with tarfile.open(tgz) as tar:
        names = sorted(tar.getnames())
    assert names == [f"results/VOC2012/Segmentation/comp6_test_cls/{n}.png" for n in sorted(labels)]
    with pytest.raises(ValueError, match="labels 0-20"):
        save_submission_png(str(tmp_path), "bad", np.full((2, 2), 255, np.uint8))


# --------------------------------------------------------------------------------------------------
# the three passes
# --------------------------------------------------------------------------------------------------


def test_seg_passes_end_to_end_with_test_export(tmp_path, tiny_voc):
    lists = os.path.join(tiny_voc, "ImageSets/Segmentation")
    with open(os.path.join(lists, "test.txt"), "w") as f:
        f.write("2100_000000\n2100_000001\n")
    common = ["--voc12_root", tiny_voc, "--num_workers", "0", "--log_name", str(tmp_path / "log"), "--seed", "0",
              "--results_json", str(tmp_path / "results.json"), "--seg_network", "efficientnet_lite0_seg",
              "--seg_label_dir", os.path.join(tiny_voc, "SegmentationClass"), "--seg_train_list", "train_aug.txt",
              "--seg_infer_list", "val.txt", "--seg_weights_name", str(tmp_path / "sess/seg.pth"),
              "--seg_out_dir", str(tmp_path / "seg"), "--seg_crf_out_dir", str(tmp_path / "seg_crf")]
    out = run_sample.main(common + [
        "--seg_batch_size", "2", "--seg_num_iters", "3", "--seg_crop_size", "48", "--seg_learning_rate", "0.01",
        "--seg_infer_scales", "1.0", "0.75", "--seg_export_test", str(tmp_path / "export"),
        "--seg_test_list", "test.txt",
        "--train_seg_pass", "True", "--make_seg_pass", "True", "--eval_seg_pass", "True"])
    assert os.path.isfile(tmp_path / "sess/seg.pth") and os.path.isfile(tmp_path / "sess/seg.pth.ckpt")
    val = open(os.path.join(lists, "val.txt")).read().split()
    for name in val:
        for d in ("seg", "seg_crf"):
            lab = np.asarray(Image.open(tmp_path / d / f"{name}.png"))
            assert lab.shape == np.asarray(Image.open(os.path.join(tiny_voc, "SegmentationClass", name + ".png"))).shape
            assert Image.open(tmp_path / d / f"{name}_palette.png").mode == "P"
    ev = out["eval_seg"]
    assert 0 <= ev["miou"] <= 1 and 0 <= ev["crf"]["miou"] <= 1 and len(ev["iou"]) == 21 and ev["images"] == len(val)
    recorded = json.load(open(tmp_path / "results.json"))
    assert recorded[f"eval_seg:{tmp_path / 'seg'}"]["crf"]["miou"] == pytest.approx(ev["crf"]["miou"])
    with tarfile.open(tmp_path / "export/results.tgz") as tar:
        assert len(tar.getnames()) == 2

    # a rerun skips everything; a missing prediction is named
    again = run_sample.main(common + ["--train_seg_pass", "True", "--make_seg_pass", "True"])
    assert again["train_seg"]["skipped"] and again["make_seg"]["images"] == 0
    os.remove(tmp_path / "seg" / f"{val[0]}.png")
    with pytest.raises(MissingInputError, match=f"{val[0]}.png.*make_seg"):
        run_sample.main(common + ["--eval_seg_pass", "True"])


def test_train_seg_names_missing_labels(tmp_path, tiny_voc):
    with pytest.raises(MissingInputError, match="training labels missing.*--seg_label_dir"):
        run_sample.main(["--voc12_root", tiny_voc, "--log_name", str(tmp_path / "log"), "--seg_train_list",
                         "train_aug.txt", "--sem_seg_out_dir", str(tmp_path / "none"), "--seg_network",
                         "deeplabv3_resnet50", "--seg_pretrained", "none", "--seg_weights_name",
                         str(tmp_path / "s.pth"), "--train_seg_pass", "True"])


def test_seg_flags_are_checked(tmp_path, tiny_voc):
    with pytest.raises(SystemExit):
        run_sample.main(["--voc12_root", tiny_voc, "--seg_learning_rate", "-1", "--train_seg_pass", "True"])


def test_lite0_seg_network_shapes():
    from advcam.nets import efficientnet_lite0_seg
    model = efficientnet_lite0_seg.build(21).train()
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    y = model(torch.randn(2, 3, 64, 48))
    assert y.shape == (2, 21, 16, 12)  # stride 4
    F.cross_entropy(y, torch.zeros(2, 16, 12, dtype=torch.long)).backward()


def test_corrupt_segmentation_weights_are_named(tmp_path):
    from advcam.segmentation import load_seg_weights
    bad = tmp_path / "seg.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(BadInputError, match="seg.pth: not a torch checkpoint"):
        load_seg_weights(torch.nn.Conv2d(1, 1, 1), str(bad))
