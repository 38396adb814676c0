"""CAM network: reference key layout, checkpoint loading, shapes, batch-norm modes."""
import pytest
import torch
import torchvision

from advcam.nets.resnet50 import FixedBatchNorm
from advcam.nets.resnet50_cam import CAM, Net, build_cam_net, load_cam_weights


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return CAM().eval()


def test_state_dict_has_the_reference_layout(net):
    sd = net.state_dict()
    assert len(sd) == 956 and len({v.data_ptr() for v in sd.values()}) == 319
    for key in ("stage1.0.weight", "stage1.1.running_mean", "stage1.4.0.conv1.weight", "stage2.0.0.downsample.0.weight",
                "stage4.0.2.bn3.num_batches_tracked", "backbone.3.0.0.conv2.weight", "resnet50.layer4.0.conv2.weight",
                "classifier.weight", "newly_added.0.weight"):
        assert key in sd
    assert sd["classifier.weight"].shape == (20, 2048, 1, 1)
    assert not any(k.startswith(("resnet50.fc", "resnet50.avgpool")) for k in sd)


@pytest.mark.slow
def test_reference_checkpoint_loads_and_aliases_are_completed(net, tmp_path):
    torch.manual_seed(1)
    other = Net()
    full = other.state_dict()
    path = tmp_path / "res50_cam.pth"
    torch.save(full, path)  # a reference-layout checkpoint
    load_cam_weights(net, str(path))
    assert torch.equal(net.classifier.weight, other.classifier.weight)
    # a checkpoint with only one name per tensor is completed from the aliases
    slim = {k: v for k, v in full.items() if k.startswith(("stage", "classifier"))}
    torch.save(slim, path)
    torch.manual_seed(2)
    fresh = CAM()
    load_cam_weights(fresh, str(path))
    assert torch.equal(fresh.resnet50.layer3[2].conv1.weight, other.stage3[0][2].conv1.weight)


def test_wrong_checkpoint_names_the_keys(net, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3), "classifier.weight": torch.zeros(20, 2048, 1, 1)}, path)
    with pytest.raises(ValueError, match=r"missing keys .*unexpected keys .*fc\.weight"):
        load_cam_weights(net, str(path))
    with pytest.raises(FileNotFoundError, match="train_cam"):
        build_cam_net(str(tmp_path / "nope.pth"))


def test_shapes_and_logits(net):
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        s = net(x, separate=True)
        cam = net(x)
        train_logits = Net.forward(net, x)
    assert s.shape == (2, 20, 4, 3) and cam.shape == (20, 4, 3)
    assert torch.allclose(cam, torch.relu(s[0]) + torch.relu(s[1]).flip(-1))
    assert torch.allclose(train_logits, s.mean((2, 3)), atol=1e-5)  # logits = spatial mean of S


@pytest.mark.slow
def test_batch_norm_modes(tmp_path):
    tv = torchvision.models.resnet50()
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(tv.state_dict(), path)
    pre = Net(pretrained=str(path)).train()
    assert all(m.fixed for m in pre.modules() if isinstance(m, FixedBatchNorm))
    assert not pre.resnet50.conv1.weight.requires_grad  # the ImageNet stem stays fixed
    assert torch.equal(pre.resnet50.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)
    before = pre.resnet50.bn1.running_mean.clone()
    pre(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, pre.resnet50.bn1.running_mean)
    scratch = Net().train()
    assert scratch.resnet50.conv1.weight.requires_grad
    before = scratch.resnet50.bn1.running_mean.clone()
    scratch(torch.randn(2, 3, 32, 32))
    assert not torch.equal(before, scratch.resnet50.bn1.running_mean)  # batch norm learns from scratch


@pytest.mark.slow
def test_scratch_residual_branches_start_at_zero(tmp_path):
    """From scratch every bottleneck starts as its shortcut (last BN scale 0); ImageNet weights are kept."""
    scratch = Net()
    blocks = [b for layer in (scratch.resnet50.layer1, scratch.resnet50.layer2, scratch.resnet50.layer3,
                              scratch.resnet50.layer4) for b in layer]
    assert len(blocks) == 16
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in blocks)
    assert all(torch.all(b.bn2.weight == 1) for b in blocks)
    tv = torchvision.models.resnet50()
    torch.nn.init.constant_(tv.layer2[1].bn3.weight, 0.5)
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(tv.state_dict(), path)
    pre = Net(pretrained=str(path))
    assert torch.all(pre.resnet50.layer2[1].bn3.weight == 0.5)


def test_pretrained_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--pretrained"):
        Net(pretrained=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(ValueError, match="not a ResNet-50"):
        Net(pretrained=str(bad))
