"""IRN network: reference key layout, frozen backbone, loss terms, relation labels, inference pair."""
import pytest
import torch

from advcam.indexing import PathIndex, edge_to_affinity
from advcam.nets.resnet50_irn import (
    AffinityDisplacementLoss,
    EdgeDisplacement,
    MeanShift,
    Net,
    compute_irn_loss,
    load_irn_weights,
    relation_labels,
)


@pytest.fixture(scope="module")
def path_index():
    return PathIndex(radius=3, default_size=(16, 16))


@pytest.fixture(scope="module")
def loss_net(path_index):
    torch.manual_seed(0)
    return AffinityDisplacementLoss(path_index)


def test_output_shapes(loss_net):
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        edge, dp = Net.forward(loss_net, x)
    assert edge.shape == (2, 1, 16, 12) and dp.shape == (2, 2, 16, 12)


def test_state_dict_has_the_reference_layout(loss_net):
    sd = loss_net.state_dict()
    for key in ("mean_shift.running_mean", "fc_dp7.4.running_mean", "fc_edge6.bias", "fc_edge6.weight",
                "stage5.0.0.conv1.weight", "backbone.4.0.0.conv1.weight", "edge_layers.5.weight",
                "stage1.0.weight", "stage2.0.0.conv1.weight", "resnet50.layer4.2.bn3.running_var",
                "fc_edge3.1.weight", "fc_dp6.0.weight", "dp_layers.6.3.weight", "fc_dp7.3.weight"):
        assert key in sd, key
    assert sd["mean_shift.running_mean"].shape == (2,)
    assert sd["fc_edge6.weight"].shape == (1, 160, 1, 1) and sd["fc_dp7.0.weight"].shape == (256, 448, 1, 1)
    assert sd["fc_dp1.1.weight"].shape == (64,) and loss_net.fc_dp1[1].num_groups == 8
    assert isinstance(loss_net.fc_edge4[2], torch.nn.Upsample) and loss_net.fc_edge4[2].scale_factor == 4
    assert not any(k.startswith(("path_indices", "disp_target", "src_indices", "dst_indices")) for k in sd)
    assert not any(k.startswith(("resnet50.fc", "resnet50.avgpool")) for k in sd)


@pytest.mark.slow
def test_loss_checkpoint_loads_into_inference_net(loss_net, tmp_path):
    loss_net.mean_shift.running_mean.copy_(torch.tensor([0.5, -0.25]))
    path = tmp_path / "irn.pth"
    torch.save(loss_net.state_dict(), path)
    torch.manual_seed(1)
    infer = EdgeDisplacement()
    infer.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert torch.equal(infer.fc_edge6.weight, loss_net.fc_edge6.weight)
    assert torch.equal(infer.mean_shift.running_mean, torch.tensor([0.5, -0.25]))
    # a reference checkpoint also carries the loss buffers: load_irn_weights drops them
    ref = dict(loss_net.state_dict())
    ref["path_indices0"] = torch.zeros(2, 2, 5, dtype=torch.long)
    ref["disp_target"] = torch.zeros(1, 2, 34, 1)
    torch.save(ref, path)
    load_irn_weights(infer, str(path))
    with pytest.raises(FileNotFoundError, match="train_irn"):
        load_irn_weights(infer, str(tmp_path / "nope.pth"))
    loss_net.mean_shift.running_mean.zero_()


def test_backbone_frozen_and_only_branches_learn(loss_net, path_index):
    loss_net.train()
    assert loss_net.training and loss_net.fc_edge1.training
    assert not loss_net.backbone.training and not loss_net.resnet50.layer3.training
    assert not any(p.requires_grad for p in loss_net.backbone.parameters())
    edge_params, dp_params = loss_net.trainable_parameters()
    assert len(edge_params) == 5 * 3 + 2 and len(dp_params) == 6 * 3 + 4
    assert all(p.requires_grad for p in edge_params + dp_params)
    bn_mean = loss_net.resnet50.bn1.running_mean.clone()

    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    pos, neg, dp_fg, dp_bg = loss_net(x, True)
    n_src = path_index.src_indices.numel()
    assert n_src == (16 - 2) * (16 - 4)  # radius 3: radius_floor 2
    assert path_index.n_directions == 12  # radius 3: 2 + 5 + 5
    assert pos.shape == neg.shape == (2, 12, n_src) and dp_fg.shape == dp_bg.shape == (2, 2, 12, n_src)
    label = torch.zeros(16, 16, dtype=torch.long)
    label[4:12, 4:12] = 7
    label[3, :] = 255
    bg, fg, ng = (t.unsqueeze(0).expand(2, -1, -1) for t in relation_labels(label, path_index))
    total, parts = compute_irn_loss(pos, neg, dp_fg, dp_bg, bg, fg, ng)
    assert set(parts) == {"pos_aff", "neg_aff", "dp_fg", "dp_bg"} and torch.isfinite(total)
    loss_net.zero_grad()
    total.backward()
    assert all(p.grad is None for p in loss_net.backbone.parameters())
    assert all(p.grad is not None for p in (*edge_params, *dp_params))
    assert torch.equal(loss_net.resnet50.bn1.running_mean, bn_mean)
    loss_net.zero_grad()
    loss_net.eval()


def test_loss_terms_match_their_definitions(loss_net, path_index):
    loss_net.eval()
    x = torch.randn(1, 3, 64, 48)  # 16 x 12 grid: not the default size, indices are built on the fly
    with torch.no_grad():
        pos, neg, dp_fg, dp_bg = loss_net(x, True)
        edge, dp = loss_net(x, return_loss=False)
    aff = edge_to_affinity(torch.sigmoid(edge), path_index.get_path_indices((16, 12)))
    assert torch.allclose(pos, -torch.log(aff + 1e-5)) and torch.allclose(neg, -torch.log(1 + 1e-5 - aff))
    src, dst = path_index.get_src_dst((16, 12))
    d = dp.flatten(2)
    pair = d[:, :, src].unsqueeze(2) - d[:, :, dst]
    target = path_index.search_dst.float().t().reshape(1, 2, -1, 1)
    assert torch.allclose(dp_bg, pair.abs()) and torch.allclose(dp_fg, (pair - target).abs())


def test_mean_shift_only_in_eval():
    m = MeanShift(2)
    m.running_mean.copy_(torch.tensor([1.0, -2.0]))
    x = torch.zeros(1, 2, 3, 3)
    assert torch.equal(m.train()(x), x)
    out = m.eval()(x)
    assert torch.equal(out[0, 0], torch.full((3, 3), -1.0)) and torch.equal(out[0, 1], torch.full((3, 3), 2.0))


def test_relation_labels_by_hand():
    pi = PathIndex(radius=2, default_size=(3, 4))
    # radius 2: directions (0,1), (1,0) (paths of 2 points), then (1,-1), (1,1) (paths of 4 points)
    assert pi.search_dst.tolist() == [[0, 1], [1, 0], [1, -1], [1, 1]]
    label = torch.tensor([[0, 0, 1, 1],
                          [0, 255, 1, 1],
                          [2, 2, 2, 1]])
    # radius_floor 1: sources are rows 0-1, columns 1-2: (0,1)=0, (0,2)=1, (1,1)=255, (1,2)=1
    # destinations per direction:  (0,1)  (1,0)  (1,-1)  (1,1)
    #   src (0,1), label 0:          1     255      0      1
    #   src (0,2), label 1:          1      1      255     1
    #   src (1,1), label 255:       (all invalid)
    #   src (1,2), label 1:          1      2       2      1
    bg, fg, neg = relation_labels(label.numpy().astype("uint8"), pi)
    assert bg.dtype == torch.float32 and bg.shape == (4, 4)
    assert bg.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert fg.tolist() == [[0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]]
    assert neg.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]]
    assert (bg.sum(), fg.sum(), neg.sum()) == (1, 5, 4)


def test_compute_irn_loss_by_hand():
    pos = torch.tensor([[[1.0, 2, 3], [4, 5, 6]]])
    neg = torch.tensor([[[10.0, 10, 10], [2, 4, 99]]])
    bg = torch.tensor([[[1.0, 0, 0], [0, 0, 0]]])
    fg = torch.tensor([[[0.0, 1, 1], [0, 0, 0]]])
    ng = torch.tensor([[[0.0, 0, 0], [1, 1, 0]]])
    dp_fg = torch.full((1, 2, 2, 3), 9.0)
    dp_fg[0, 0, 0, 1:] = torch.tensor([1.0, 3.0])
    dp_fg[0, 1, 0, 1:] = torch.tensor([1.0, 1.0])
    dp_bg = torch.full((1, 2, 2, 3), 9.0)
    dp_bg[0, :, 0, 0] = torch.tensor([2.0, 4.0])
    total, parts = compute_irn_loss(pos, neg, dp_fg, dp_bg, bg, fg, ng)
    # pos = (1/1 + (2+3)/2) / 2 = 1.75; neg = (2+4)/2 = 3; dp_fg = (1+3+1+1)/(2*2) = 1.5;
    # dp_bg = (2+4)/(2*1) = 3; total = (1.75 + 3)/2 + (1.5 + 3)/2 = 4.625 (up to the 1e-5 guards)
    assert parts["pos_aff"] == pytest.approx(1.75, rel=1e-4) and parts["neg_aff"] == pytest.approx(3, rel=1e-4)
    assert parts["dp_fg"] == pytest.approx(1.5, rel=1e-4) and parts["dp_bg"] == pytest.approx(3, rel=1e-4)
    assert total.item() == pytest.approx(4.625, rel=1e-4)
    # all affinities 1 and only positive pairs: the affinity loss is -log(1 + 1e-5), the neg term 0
    aff = torch.ones(1, 2, 3)
    ones = torch.ones(1, 2, 3)
    zero = torch.zeros(1, 2, 3)
    total, parts = compute_irn_loss(-torch.log(aff + 1e-5), -torch.log(1 + 1e-5 - aff), torch.zeros(1, 2, 2, 3),
                                    torch.zeros(1, 2, 2, 3), ones, ones, zero)
    assert parts["pos_aff"] == pytest.approx(-torch.log(torch.tensor(1 + 1e-5)).item() * 6 / (6 + 1e-5), rel=1e-3)
    assert parts["neg_aff"] == 0 and total.item() == pytest.approx(parts["pos_aff"] / 2, rel=1e-6)


@pytest.fixture(scope="module")
def infer_net():
    torch.manual_seed(3)
    net = EdgeDisplacement().eval()
    net.mean_shift.running_mean.copy_(torch.tensor([0.1, 0.2]))
    return net


def test_edge_displacement_flip_pair(infer_net):
    torch.manual_seed(4)
    img = torch.randn(1, 3, 64, 48)
    sym = torch.cat([img, img.flip(-1)], dim=-1)  # 64 x 96, left-right symmetric
    with torch.no_grad():
        edge, dp = infer_net(torch.cat([sym, sym.flip(-1)]))
        raw_edge, raw_dp = Net.forward(infer_net, torch.cat([sym, sym.flip(-1)]))
        e2, _ = infer_net(torch.cat([img, img.flip(-1)]))
        e3, _ = infer_net(torch.cat([img.flip(-1), img]))
    assert edge.shape == (1, 1, 16, 24) and dp.shape == (1, 2, 16, 24)
    assert torch.allclose(edge, torch.sigmoid(raw_edge[0:1] / 2 + raw_edge[1:2].flip(-1) / 2))
    assert torch.allclose(dp, raw_dp[0:1])  # eval mode: mean shift applied, first copy only
    assert torch.allclose(edge, edge.flip(-1), atol=1e-6)  # symmetric image -> symmetric boundaries
    assert not torch.allclose(raw_edge[0], raw_edge[0].flip(-1), atol=1e-3)  # the net itself is not
    assert torch.allclose(e2, e3.flip(-1), atol=1e-6)  # swapping the pair mirrors the result


def test_edge_displacement_pads_and_crops(infer_net):
    x = torch.randn(2, 3, 50, 38)
    with torch.no_grad():
        edge, dp = infer_net(x)
        padded = torch.nn.functional.pad(x, [0, 48 - 38, 0, 64 - 50])  # to multiples of 16
        e_ref, d_ref = Net.forward(infer_net, padded)
    assert edge.shape == (1, 1, 13, 10) and dp.shape == (1, 2, 13, 10)
    assert torch.allclose(dp, d_ref[0:1, :, :13, :10])
    assert torch.allclose(edge, torch.sigmoid(e_ref[0:1, :, :13, :10] / 2 + e_ref[1:2, :, :13, :10].flip(-1) / 2))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_irn_optimizer_groups_and_adam_steps_lower_the_loss(path_index, kind):
    from argparse import Namespace

    from advcam.steps.train_irn import build_optimizer
    from advcam.utils import PolyAdamW, PolyOptimizer

    torch.manual_seed(0)
    net = AffinityDisplacementLoss(path_index)
    net.train()
    lr = 0.001 if kind == "adam" else 0.1
    opt = build_optimizer(net, Namespace(irn_learning_rate=lr, irn_weight_decay=1e-4, irn_optimizer=kind), 20)
    assert isinstance(opt, PolyAdamW if kind == "adam" else PolyOptimizer)
    edge_params, dp_params = net.trainable_parameters()
    assert [g["lr"] for g in opt.param_groups] == [lr, 10 * lr]
    assert [len(g["params"]) for g in opt.param_groups] == [len(edge_params), len(dp_params)]
    if kind == "sgd":
        return
    backbone = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    label = torch.zeros(16, 16, dtype=torch.long)
    label[4:12, 4:12] = 7
    bg, fg, ng = (t.unsqueeze(0).expand(2, -1, -1) for t in relation_labels(label, path_index))
    losses = []
    for _ in range(8):
        total, _ = compute_irn_loss(*net(x, True), bg, fg, ng)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert losses[-1] < losses[0]
    assert all(torch.equal(v, net.backbone.state_dict()[k]) for k, v in backbone.items())


def test_make_sem_seg_edge_lines_up_the_mirror_copy(monkeypatch):
    """make_sem_seg's boundary map of a flip pair narrower than the crop size: the mirror copy must land on the
    original's pixels. A stand-in network whose edge logit is the input's first channel, 4 x 4 average-pooled,
    gives exactly that channel's pooled map when the copies line up (and a shifted mixture when they do not)."""
    from advcam.irn_loop import edge_and_displacement

    def pooled(self, x):
        e = torch.nn.functional.avg_pool2d(x[:, :1], 4)
        return e, torch.cat([e, e], 1)

    monkeypatch.setattr(Net, "forward", pooled)
    net = EdgeDisplacement.__new__(EdgeDisplacement)
    torch.nn.Module.__init__(net)
    net.crop_size, net.stride = 128, 4
    img = torch.randn(3, 40, 72, generator=torch.Generator().manual_seed(0))
    pair = torch.stack([img, img.flip(-1)])
    edge, dp = edge_and_displacement(net, pair)  # padded to 128 x 128 inside the network
    expected = torch.nn.functional.avg_pool2d(img[None, :1], 4)[0, 0]
    assert edge.shape == dp.shape[1:] == (10, 18)
    assert torch.allclose(edge, torch.sigmoid(expected), atol=1e-6)
    assert torch.allclose(dp[0], expected, atol=1e-6)


@pytest.mark.slow
def test_irn_inference_pads_like_the_reference_by_default(monkeypatch):
    """make_sem_seg/make_ins_seg pad each image to 512 (the reference's constant), or to its size rounded up to 16."""
    from advcam import irn_loop, run_sample

    args = run_sample.build_parser().parse_args([])
    assert args.irn_infer_pad == 512 and args.irn_crop_size == 512
    args.irn_crop_size = 128  # a small training crop (the toy demo's) leaves the inference padding alone
    monkeypatch.setattr(irn_loop, "load_irn_weights", lambda model, path: None)
    model = irn_loop.build_irn(args, torch.device("cpu"))
    seen = []
    model.stage1.register_forward_pre_hook(lambda mod, inp: seen.append(tuple(inp[0].shape[-2:])))
    for size, padded in (((48, 64), (512, 512)), ((515, 100), (528, 512))):
        edge, dp = irn_loop.edge_and_displacement(model, torch.zeros(2, 3, *size))
        assert seen[-1] == padded
        assert edge.shape == ((size[0] + 3) // 4, (size[1] + 3) // 4) and dp.shape == (2, *edge.shape)
