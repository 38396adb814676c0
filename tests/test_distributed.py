"""torchrun scale-out: the helpers in a plain run, the sharding and batch-splitting rules, and real 2-process
``torchrun --standalone --nproc_per_node 2`` jobs (gloo, CPU) against one process on the same inputs."""
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, save_random_cam_weights, write_tiny_voc
from PIL import Image
from scipy import ndimage

from advcam import distributed, imutils
from advcam.errors import BadInputError
from advcam.io import load_cam_npy, save_png
from advcam.nets.resnet50_irn import compute_irn_loss
from advcam.segmentation import StreamBatchSampler, seg_loss
from advcam.voc12 import VOC_PALETTE

# ------------------------------------------------------------------------------------------------------------
# plain run: the helpers are the identity, and the rules that make N ranks equal one process
# ------------------------------------------------------------------------------------------------------------


def test_helpers_are_the_identity_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.env_world() == (0, 1, 0) and not distributed.init()
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(["a", "b", "c"]) == ["a", "b", "c"]
    conf = np.arange(9, dtype=np.int64).reshape(3, 3)
    assert distributed.all_reduce_sum(conf) is conf
    assert distributed.all_gather_objects({"x": 1}) == [{"x": 1}]
    assert distributed.todo_on_main(lambda: [3, 1]) == [3, 1]
    assert distributed.shared_seed(7) == 7 and isinstance(distributed.shared_seed(None), int)
    assert distributed.local_batch(5, "--cam_batch_size") == 5
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_ddp(model, torch.device("cpu")) is model and distributed.unwrap(model) is model


def test_single_rank_environment_is_a_plain_run(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert distributed.env_world() == (0, 1, 0) and not distributed.init()


def test_local_device_under_torchrun_without_a_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.env_world() == (3, 4, 1)
    assert distributed.local_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert distributed.local_device(None) == torch.device("cpu")


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 23

    def __getitem__(self, i):
        return i


@pytest.mark.parametrize("world", [2, 4])
def test_rank_batches_together_are_the_single_process_batch(world):
    single = distributed.train_loader(_Items(), 4, "--cam_batch_size", seed=3, replica=(0, 1))
    ranks = [distributed.train_loader(_Items(), 4, "--cam_batch_size", seed=3, replica=(r, world))
             for r in range(world)]
    for epoch in range(3):
        for loader in [single, *ranks]:
            distributed.set_epoch(loader, epoch)
        one = [sorted(b.tolist()) for b in single]
        many = [sorted(sum((b.tolist() for b in step), [])) for step in zip(*ranks, strict=True)]
        assert one == many and len(one) == 23 // 4  # the same steps, the same images, no padding
        assert len({i for b in one for i in b}) == 4 * (23 // 4)  # no image twice in an epoch
    distributed.set_epoch(single, 0)
    first = [b.tolist() for b in single]
    distributed.set_epoch(single, 1)
    assert [b.tolist() for b in single] != first  # each epoch its own permutation


def test_a_batch_the_ranks_do_not_divide_is_refused():
    with pytest.raises(BadInputError, match="--irn_batch_size 5 is not divisible by the 2 ranks"):
        distributed.train_loader(_Items(), 5, "--irn_batch_size", seed=0, replica=(0, 2))


def test_stream_sampler_rank_shares_make_the_single_process_batch():
    one = list(StreamBatchSampler(11, 6, seed=2, start_batch=3, num_batches=4))
    shares = [list(StreamBatchSampler(11, 6, seed=2, start_batch=3, num_batches=4, rank=r, world=3))
              for r in range(3)]
    for b, parts in zip(one, zip(*shares, strict=True), strict=True):
        assert b == [k for part in parts for k in part] and all(len(p) == 2 for p in parts)
    with pytest.raises(ValueError, match="not divisible"):
        StreamBatchSampler(11, 6, seed=2, start_batch=0, num_batches=1, rank=0, world=4)


def test_item_augmentation_depends_on_seed_epoch_and_index_only():
    draw = [imutils.item_rng(5, e, i).random() for e, i in ((0, 0), (0, 1), (1, 0))]
    assert draw == [imutils.item_rng(5, e, i).random() for e, i in ((0, 0), (0, 1), (1, 0))]
    assert len(set(draw)) == 3 and imutils.item_rng(6, 0, 0).random() != draw[0]
    assert imutils.item_rng(None, 0, 0) is random


def _split_counts(parts):
    """A fake all_reduce for two ranks: the sum of both ranks' counts, given the other rank's."""
    return lambda mine: mine + parts


def test_irn_loss_over_two_ranks_averages_to_the_global_batch_loss():
    g = torch.Generator().manual_seed(0)
    B, D, S = 4, 3, 5
    pos, neg = torch.rand(B, D, S, generator=g), torch.rand(B, D, S, generator=g)
    dp_fg, dp_bg = torch.rand(B, 2, D, S, generator=g), torch.rand(B, 2, D, S, generator=g)
    bg, fg = (torch.rand(B, D, S, generator=g) > 0.5).float(), (torch.rand(B, D, S, generator=g) > 0.7).float()
    ng = (torch.rand(B, D, S, generator=g) > 0.6).float()
    whole, _ = compute_irn_loss(pos, neg, dp_fg, dp_bg, bg, fg, ng)
    halves = [slice(0, 1), slice(1, 4)]  # unequal label counts per rank
    counts = [torch.stack([bg[h].sum(), fg[h].sum(), ng[h].sum()]) for h in halves]
    per_rank = [compute_irn_loss(pos[h], neg[h], dp_fg[h], dp_bg[h], bg[h], fg[h], ng[h],
                                 _split_counts(counts[1 - r]), world=2)[0] for r, h in enumerate(halves)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, whole, rtol=1e-6)
    naive = [compute_irn_loss(pos[h], neg[h], dp_fg[h], dp_bg[h], bg[h], fg[h], ng[h])[0] for h in halves]
    assert not torch.allclose((naive[0] + naive[1]) / 2, whole, rtol=1e-3)  # what per-rank means would give


def test_pixel_mean_cross_entropy_over_two_ranks():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 21, 6, 6, generator=g)
    labels = torch.randint(0, 21, (3, 6, 6), generator=g)
    labels[0, :4] = 255  # rank 0 has fewer labelled pixels
    whole = seg_loss(logits, labels, "ce")
    halves = [slice(0, 1), slice(1, 3)]
    counts = [(labels[h] != 255).sum().double() for h in halves]
    per_rank = [seg_loss(logits[h], labels[h], "ce", _split_counts(counts[1 - r]), world=2)
                for r, h in enumerate(halves)]
    assert torch.allclose((per_rank[0] + per_rank[1]) / 2, whole, rtol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# real torchrun jobs: 2 CPU processes (gloo) against 1 process, one thread each
# ------------------------------------------------------------------------------------------------------------

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
HANG_GUARD_S = 3600  # stops a hung job only: a slow or busy machine must not fail these tests


def _run(args: list[str], ranks: int, check: bool = True) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` (ranks = 1) or ``torchrun --standalone --nproc_per_node RANKS SCRIPT ARGS``."""
    launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(ranks)]
    out = subprocess.run(launcher + args, env=ENV, capture_output=True, text=True, timeout=HANG_GUARD_S,
                         cwd=ROOT)
    if check and out.returncode:
        raise AssertionError(f"{' '.join(launcher + args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-3000:]}")
    return out


def _assert_same_cam_files(a_dir, b_dir):
    names = sorted(os.listdir(a_dir))
    assert names and names == sorted(os.listdir(b_dir))
    for n in names:
        a, b = load_cam_npy(os.path.join(a_dir, n)), load_cam_npy(os.path.join(b_dir, n))
        assert torch.equal(a["keys"], b["keys"]) and torch.equal(a["cam"], b["cam"]), n
        assert np.array_equal(a["high_res"], b["high_res"]), n


def _assert_same_pngs(a_dir, b_dir):
    names = sorted(os.listdir(a_dir))
    assert names and names == sorted(os.listdir(b_dir))
    for n in names:
        assert np.array_equal(np.asarray(Image.open(os.path.join(a_dir, n))),
                              np.asarray(Image.open(os.path.join(b_dir, n)))), n


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny VOC root with instance ground truth, fixed random CAM and IRN weights, and a single-process AdvCAM
    run to compare with."""
    base = tmp_path_factory.mktemp("dist")
    voc = write_tiny_voc(str(base / "voc"))
    os.makedirs(os.path.join(voc, "SegmentationObject"))
    for f in os.listdir(os.path.join(voc, "SegmentationClass")):
        seg = np.asarray(Image.open(os.path.join(voc, "SegmentationClass", f)))
        inst, n = np.zeros_like(seg), 0
        for c in sorted(set(np.unique(seg).tolist()) - {0, 255}):
            comp, k = ndimage.label(seg == c)
            inst[comp > 0] = comp[comp > 0] + n
            n += k
        inst[seg == 255] = 255
        save_png(os.path.join(voc, "SegmentationObject", f), inst, palette=VOC_PALETTE)
    save_random_cam_weights(str(base / "cam.pth"))
    from advcam.nets.resnet50_irn import EdgeDisplacement
    torch.manual_seed(0)
    irn = EdgeDisplacement()
    irn.mean_shift.running_mean.copy_(torch.tensor([0.5, -0.25]))
    torch.save(irn.state_dict(), base / "irn.pth")
    adv = ["--voc12_root", voc, "--train_list", "train_aug.txt", "--num_workers", "0", "--cam_weights_name",
           str(base / "cam.pth"), "--adv_iter", "2", "--cam_scales", "1.0", "0.5"]
    _run(["obtain_CAM_masking.py", *adv, "--cam_out_dir", str(base / "single_adv")], 1)
    return {"base": base, "voc": voc, "adv": adv}


@pytest.mark.slow
def test_sharded_advcam_writes_the_files_of_one_process(job):
    out = job["base"] / "dist_adv"
    res = _run(["obtain_CAM_masking.py", *job["adv"], "--cam_out_dir", str(out)], 2)
    _assert_same_cam_files(job["base"] / "single_adv", out)
    assert "8 images (" in res.stdout  # rank 0 logs the total over both ranks
    assert "[rank 1]" not in res.stdout  # the other rank logs only its warnings, to stderr


@pytest.mark.slow
def test_killed_rank_then_restart_equals_an_uninterrupted_run(job, tmp_path):
    out = tmp_path / "adv"
    # rank 1 dies (as a killed process would) right after writing its first file
    killer = tmp_path / "die_on_rank1.py"
    killer.write_text(
        "import os, runpy, sys\n"
        "import advcam.cam_loop as loop\n"
        "if os.environ['RANK'] == '1':\n"
        "    real = loop.save_cam_npy\n"
        "    def save_then_die(*a, **k):\n"
        "        real(*a, **k)\n"
        "        os._exit(9)\n"
        "    loop.save_cam_npy = save_then_die\n"
        f"sys.argv = [{os.path.join(ROOT, 'obtain_CAM_masking.py')!r}] + sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    killed = _run([str(killer), *job["adv"], "--cam_out_dir", str(out)], 2, check=False)
    assert killed.returncode != 0
    # torchrun then stops rank 0 (SIGTERM), at whatever point of its work it has reached: if that is inside a
    # write, the write's hidden temporary file stays behind, never a partial <id>.npy
    files = os.listdir(out)
    written = sorted(n for n in files if not n.startswith("."))
    left = [n for n in files if n.startswith(".")]
    assert 1 <= len(written) < 8 and all(n.endswith(".npy") for n in written)
    ids = {n[:-len(".npy")] for n in os.listdir(job["base"] / "single_adv")}
    assert all((m := re.fullmatch(r"\.(.+)\.npy\.\w+\.tmp\.npy", n)) and m.group(1) in ids for n in left), left
    for n in written:  # each finished file is whole
        assert load_cam_npy(out / n)["high_res"].ndim == 3, n
    again = _run(["obtain_CAM_masking.py", *job["adv"], "--cam_out_dir", str(out)], 2)
    assert f"{len(written)} already in" in again.stdout
    for n in left:  # what the restart does not need
        os.remove(out / n)
    _assert_same_cam_files(job["base"] / "single_adv", out)


@pytest.mark.slow
def test_sharded_inference_and_evaluation_passes_equal_one_process(job):
    base = job["base"]
    common = ["--voc12_root", job["voc"], "--train_list", "train_aug.txt", "--infer_list", "train_aug.txt",
              "--chainer_eval_set", "train_aug", "--num_workers", "0", "--cam_weights_name", str(base / "cam.pth"),
              "--irn_weights_name", str(base / "irn.pth"), "--irn_infer_pad", "64", "--cam_scales", "1.0",
              "--conf_fg_thres", "0.05",
              "--conf_bg_thres", "0.02", "--sem_seg_bg_thres", "0.1", "--ins_seg_bg_thres", "0.1",
              "--make_cam_pass", "True", "--eval_cam_pass", "True", "--cam_to_ir_label_pass", "True",
              "--make_sem_seg_pass", "True", "--eval_sem_seg_pass", "True", "--make_ins_seg_pass", "True",
              "--eval_ins_seg_pass", "True"]
    results = {}
    for ranks in (1, 2):
        d = base / f"passes{ranks}"
        _run(["run_sample.py", *common, "--cam_out_dir", str(d / "cam"), "--ir_label_out_dir", str(d / "ir"),
              "--sem_seg_out_dir", str(d / "sem"), "--ins_seg_out_dir", str(d / "ins"), "--log_name", str(d / "log"),
              "--results_json", str(d / "results.json")], ranks)
        results[ranks] = {k.split(":")[0]: v for k, v in json.load(open(d / "results.json")).items()}
    one, two = base / "passes1", base / "passes2"
    _assert_same_cam_files(one / "cam", two / "cam")
    _assert_same_pngs(one / "ir", two / "ir")
    _assert_same_pngs(one / "sem", two / "sem")
    for n in sorted(os.listdir(one / "ins")):
        a = np.load(one / "ins" / n, allow_pickle=True).item()
        b = np.load(two / "ins" / n, allow_pickle=True).item()
        assert all(np.array_equal(a[k], b[k]) for k in ("score", "mask", "class")), n
    assert results[1] == results[2]  # every mIoU, per-class IoU and AP exactly
    assert results[1]["eval_sem_seg"]["images"] == 8 and 0 < results[1]["eval_cam"]["miou"] <= 1
    log = open(str(two / "log") + ".log").read()
    assert log.count("step.make_cam") == 1  # rank 0 alone writes the log


def _fake_imagenet_resnet50(path):
    """A random torchvision ResNet-50 whose BN statistics are calibrated on random images, as a stand-in for an
    ImageNet file: with ``--pretrained`` the CAM network keeps its BN frozen, so data parallelism is exact."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(8, 3, 64, 64))
    torch.save(net.state_dict(), path)


@pytest.mark.slow
def test_two_ddp_steps_equal_one_process_on_the_combined_batch(job):
    base = job["base"]
    _fake_imagenet_resnet50(base / "imagenet.pth")
    voc = job["voc"]
    ir = base / "ir_gt"  # IR labels = the ground truth, for train_irn
    for f in os.listdir(os.path.join(voc, "SegmentationClass")):
        save_png(ir / f, np.asarray(Image.open(os.path.join(voc, "SegmentationClass", f))).copy())
    common = ["--voc12_root", voc, "--train_list", "train_aug.txt", "--val_list", "val.txt", "--infer_list",
              "train_aug.txt", "--num_workers", "0", "--seed", "0", "--pretrained", str(base / "imagenet.pth"),
              "--cam_crop_size", "64", "--cam_resize_long", "48", "80", "--cam_batch_size", "4",
              "--cam_num_epoches", "1", "--cam_learning_rate", "1e-4", "--ir_label_out_dir", str(ir),
              "--irn_crop_size", "80", "--irn_batch_size", "4", "--irn_num_epoches", "1",
              "--train_cam_pass", "True", "--train_irn_pass", "True"]
    for ranks in (1, 2):
        d = base / f"train{ranks}"
        _run(["run_sample.py", *common, "--cam_weights_name", str(d / "cam.pth"), "--irn_weights_name",
              str(d / "irn.pth"), "--log_name", str(d / "log")], ranks)
    init = torch.load(base / "imagenet.pth", weights_only=True)
    for name in ("cam.pth", "irn.pth"):
        a = torch.load(base / "train1" / name, weights_only=True)
        b = torch.load(base / "train2" / name, weights_only=True)
        assert a.keys() == b.keys()
        diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
        if name == "cam.pth":  # 8 images, batch 4: two steps
            moved = max((a[k].double() - init[k[len("resnet50."):]].double()).abs().max().item()
                        for k in a if k.startswith("resnet50.") and k[len("resnet50."):] in init)
            assert moved > 1e-5 and diff < 1e-2 * moved  # float noise, against what two steps changed
        else:  # the branches start from the same seeded initialisation; compare with the change of the weights
            assert diff < 1e-4
            assert torch.allclose(a["mean_shift.running_mean"], b["mean_shift.running_mean"], atol=1e-5)
    assert "2 steps of batch 4 on cpu (2 rank(s))" in open(str(base / "train2" / "log") + ".log").read()


@pytest.mark.slow
def test_stage3_under_torchrun(job):
    """train_seg on 2 ranks (rank 0 writes), then make_seg and eval_seg: 2 ranks write what 1 process writes."""
    base, voc = job["base"], job["voc"]
    common = ["--voc12_root", voc, "--num_workers", "0", "--seed", "0", "--seg_train_list", "train_aug.txt",
              "--seg_infer_list", "val.txt", "--seg_label_dir", os.path.join(voc, "SegmentationClass"),
              "--seg_network", "efficientnet_lite0_seg", "--seg_train_backbone", "False", "--seg_num_iters", "2",
              "--seg_batch_size", "4", "--seg_iter_size", "2", "--seg_crop_size", "64", "--seg_scales", "1.0",
              "--seg_infer_scales", "1.0", "0.5", "--seg_weights_name", str(base / "seg" / "seg.pth")]
    refused = _run(["run_sample.py", *common, "--seg_batch_size", "3", "--train_seg_pass", "True"], 2, check=False)
    assert refused.returncode != 0 and "--seg_batch_size 3 is not divisible by the 2 ranks" in refused.stderr
    _run(["run_sample.py", *common, "--train_seg_pass", "True"], 2)
    ckpt = torch.load(str(base / "seg" / "seg.pth") + ".ckpt", weights_only=False)
    assert ckpt["iteration"] == 2 and os.path.isfile(base / "seg" / "seg.pth")
    results = {}
    for ranks in (1, 2):
        d = base / f"seg{ranks}"
        _run(["run_sample.py", *common, "--seg_out_dir", str(d / "out"), "--seg_crf_out_dir", str(d / "crf"),
              "--results_json", str(d / "results.json"), "--log_name", str(d / "log"), "--make_seg_pass", "True",
              "--eval_seg_pass", "True"], ranks)
        results[ranks] = list(json.load(open(d / "results.json")).values())
    for sub in ("out", "crf"):
        _assert_same_pngs(base / "seg1" / sub, base / "seg2" / sub)
    assert results[1] == results[2] and results[1][0]["images"] == 4


def test_only_batch_norms_that_train_become_sync_batch_norm():
    from advcam.nets.resnet50 import FixedBatchNorm
    frozen, learning = FixedBatchNorm(4), FixedBatchNorm(4)
    learning.fixed = False
    evaluated = torch.nn.BatchNorm2d(4)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.Sequential(frozen, learning), evaluated)
    model.train()
    evaluated.eval()  # as a network's train() override keeps a frozen backbone's BN in eval mode
    with torch.no_grad():
        model[0].running_mean.fill_(0.5)
    out = distributed._sync_training_bn(model)
    assert out is model and isinstance(model[0], torch.nn.SyncBatchNorm)
    assert torch.equal(model[0].running_mean, torch.full((4,), 0.5))  # statistics carried over
    assert model[1][0] is frozen and isinstance(model[1][1], torch.nn.SyncBatchNorm) and model[2] is evaluated


@pytest.mark.parametrize("network", ["advcam.nets.resnet50_irn", "advcam.nets.efficientnet_lite0_irn"])
def test_every_trained_irn_parameter_gets_a_gradient(network):
    """What DistributedDataParallel needs of train_irn's model: each parameter that requires a gradient gets one
    (the Lite0 network's unused classifier head included)."""
    import importlib

    from advcam.indexing import PathIndex
    from advcam.nets.resnet50_irn import relation_labels
    torch.manual_seed(0)
    net = importlib.import_module(network).AffinityDisplacementLoss(PathIndex(radius=3, default_size=(16, 16)))
    net.train()
    label = torch.zeros(16, 16, dtype=torch.long)
    label[4:12, 4:12] = 3
    label[0:3, :] = 255
    bg, fg, ng = (t.unsqueeze(0) for t in relation_labels(label, net.path_index))
    total, _ = compute_irn_loss(*net(torch.randn(1, 3, 64, 64), True), bg, fg, ng)
    total.backward()
    trained = [n for n, p in net.named_parameters() if p.requires_grad]
    edge, dp = net.trainable_parameters()
    assert len(trained) == len(edge) + len(dp) > 0
    assert [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None] == []
