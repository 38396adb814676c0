"""The CUDA branches, driven on a CPU-only machine: each network's forward on fake ``cuda`` tensors
(``FakeTensorMode``: shapes and devices without data, a device mismatch raises), and each entry point's device
selection with ``torch.cuda.is_available`` / ``device_count`` / ``set_device`` / ``is_bf16_supported`` stubbed."""
import argparse
import importlib
import logging
import os
import urllib.error
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torchvision
from conftest import TinyCAM, save_random_cam_weights
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from advcam import cam_loop, distributed, segmentation, utils
from advcam.errors import BadInputError, MissingInputError
from advcam.indexing import PathIndex

# ------------------------------------------------------------------------------------------------------------
# fake CUDA tensors
# ------------------------------------------------------------------------------------------------------------


def test_fake_tensor_mode_catches_a_device_mismatch():
    """What the forward tests rely on, on this torch: fake cuda tensors compute, and a CPU tensor made inside a
    forward (``torch.zeros`` without ``device=``) meeting one of them raises."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(2, 3, device="cuda")
        assert (x * 2).device == torch.device("cuda", 0)
        with pytest.raises(RuntimeError, match="device"):
            x + torch.zeros(2, 3)


def on_fake_cuda(model: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """``model`` with every parameter and buffer replaced by a fake ``cuda`` copy (in place)."""
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                fake = mode.from_tensor(p.detach())
                with mode:
                    module._parameters[name] = nn.Parameter(fake.to("cuda"), requires_grad=p.requires_grad)
        for name, b in list(module._buffers.items()):
            if b is not None:
                fake = mode.from_tensor(b)
                with mode:
                    module._buffers[name] = fake.to("cuda")
    return model


def _cuda(*shape):
    return torch.empty(*shape, device="cuda")


def _irn(module: str, cls: str, other_size: tuple[int, int] | None = None, **kw):
    mod = importlib.import_module(f"advcam.nets.{module}")

    def build():
        if other_size:  # the index tables of another grid, computed (on the CPU, as in training) before the forward
            kw["path_index"].get_src_dst(other_size)
            kw["path_index"].get_path_indices(other_size)
        return getattr(mod, cls)(**kw)
    return build


def _seg(module: str):
    return lambda: importlib.import_module(f"advcam.nets.{module}").build(21).eval()


PATHS = PathIndex(radius=5, default_size=(16, 16))  # 34 directions; sources (16 - 4) x (16 - 2 * 4) = 96
# name: (builder, forward on fake cuda inputs, expected output shapes)
FORWARDS = {
    "resnet50_cam.Net": (lambda: importlib.import_module("advcam.nets.resnet50_cam").Net(),
                         lambda m: m(_cuda(2, 3, 64, 64)), [(2, 20)]),
    "resnet50_cam.CAM": (lambda: importlib.import_module("advcam.nets.resnet50_cam").CAM().eval(),
                         lambda m: m(_cuda(2, 3, 64, 64)), [(20, 4, 4)]),
    "efficientnet_lite0_cam.CAM": (lambda: importlib.import_module("advcam.nets.efficientnet_lite0_cam").CAM().eval(),
                                   lambda m: m(_cuda(2, 3, 64, 64)), [(20, 4, 4)]),
    "resnet50_irn.AffinityDisplacementLoss": (_irn("resnet50_irn", "AffinityDisplacementLoss", path_index=PATHS),
                                              lambda m: m(_cuda(2, 3, 64, 64), True),
                                              [(2, 34, 96), (2, 34, 96), (2, 2, 34, 96), (2, 2, 34, 96)]),
    "resnet50_irn.AffinityDisplacementLoss (other size)": (
        _irn("resnet50_irn", "AffinityDisplacementLoss", path_index=PATHS, other_size=(20, 20)),
        lambda m: m(_cuda(1, 3, 80, 80), True),
        [(1, 34, 192), (1, 34, 192), (1, 2, 34, 192), (1, 2, 34, 192)]),  # sources (20 - 4) x (20 - 2 * 4)
    "resnet50_irn.EdgeDisplacement": (_irn("resnet50_irn", "EdgeDisplacement", crop_size=64),
                                      lambda m: m(_cuda(2, 3, 50, 60)), [(1, 1, 13, 15), (1, 2, 13, 15)]),
    "efficientnet_lite0_irn.AffinityDisplacementLoss": (
        _irn("efficientnet_lite0_irn", "AffinityDisplacementLoss", path_index=PATHS),
        lambda m: m(_cuda(2, 3, 64, 64), True), [(2, 34, 96), (2, 34, 96), (2, 2, 34, 96), (2, 2, 34, 96)]),
    "efficientnet_lite0_dilated_irn.EdgeDisplacement": (
        _irn("efficientnet_lite0_dilated_irn", "EdgeDisplacement", crop_size=64),
        lambda m: m(_cuda(2, 3, 50, 60)), [(1, 1, 13, 15), (1, 2, 13, 15)]),
    "efficientnet_lite0_seg": (_seg("efficientnet_lite0_seg"), lambda m: m(_cuda(2, 3, 64, 64)), [(2, 21, 16, 16)]),
    "deeplab_v2": (_seg("deeplab_v2"), lambda m: m(_cuda(2, 3, 65, 65)), [(2, 21, 9, 9)]),
    "deeplabv3_resnet50": (_seg("deeplabv3_resnet50"), lambda m: m(_cuda(1, 3, 64, 64)), [(1, 21, 64, 64)]),
    "deeplabv3_resnet101": (_seg("deeplabv3_resnet101"), lambda m: m(_cuda(1, 3, 64, 64)), [(1, 21, 64, 64)]),
}


@pytest.mark.parametrize("name", list(FORWARDS))
def test_network_forward_on_cuda(name, one_thread):
    build, forward, shapes = FORWARDS[name]
    torch.manual_seed(0)
    mode = FakeTensorMode(allow_non_fake_inputs=True)  # constants a forward builds on the CPU stay real CPU tensors
    model = on_fake_cuda(build(), mode)
    with mode, torch.no_grad():
        out = forward(model)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    assert [tuple(o.shape) for o in outs] == shapes
    assert all(o.device == torch.device("cuda", 0) for o in outs)


def test_make_cam_engine_on_cuda():
    """make_cam's per-image function (plain multi-scale CAM and the scale fusion) keeps everything on the GPU."""
    from advcam.steps.make_cam import _plain
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = on_fake_cuda(TinyCAM().eval(), mode)
    with mode:
        device = torch.device("cuda", 0)
        cam, high = _plain(model, [_cuda(2, 3, 64, 48), _cuda(2, 3, 32, 24)], (1.0, 0.5), [0, 2], (64, 48), device)
    assert cam.shape == (2, 16, 12) and high.shape == (2, 64, 48)
    assert cam.device == high.device == device


def test_cam_checkpoint_is_saved_with_cpu_tensors():
    """train_cam writes its weights through cpu_state_dict: a model on the GPU gives a checkpoint of CPU tensors."""
    from advcam.steps.train_cam import cpu_state_dict
    mode = FakeTensorMode()
    model = on_fake_cuda(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), mode)
    assert {v.device.type for v in model.state_dict().values()} == {"cuda"}
    with mode:
        state = cpu_state_dict(model)
    assert state.keys() == model.state_dict().keys()
    assert {v.device.type for v in state.values()} == {"cpu"}
    assert not any(v.requires_grad for v in state.values())


# ------------------------------------------------------------------------------------------------------------
# stubbed GPUs: device selection
# ------------------------------------------------------------------------------------------------------------


class FakeGPUs:
    """``n`` stubbed CUDA devices: ``set_device`` checks its argument as torch does (an index is required) and
    records it."""

    def __init__(self, monkeypatch, n: int, bf16: bool = True):
        self.n, self.current = n, []
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(distributed, "_overridden", set())

    def set_device(self, device) -> None:
        index = torch.cuda._utils._get_device_index(device)  # ValueError for a torch.device("cuda") without index
        assert 0 <= index < self.n, f"set_device({device}) with {self.n} GPUs"
        self.current.append(index)


def _torchrun_env(monkeypatch, rank: int, world: int, local_rank: int, local_world: int) -> None:
    for k, v in (("RANK", rank), ("WORLD_SIZE", world), ("LOCAL_RANK", local_rank), ("LOCAL_WORLD_SIZE", local_world)):
        monkeypatch.setenv(k, str(v))


def test_plain_run_devices(monkeypatch):
    gpus = FakeGPUs(monkeypatch, 2)
    resolve = distributed.resolve_device
    assert resolve(None) == resolve("cuda") == torch.device("cuda", 0)  # a bare cuda gets an index
    assert resolve("cuda:1") == torch.device("cuda", 1) and resolve("cpu") == torch.device("cpu")
    assert utils.pick_device("cuda") == torch.device("cuda", 0) and gpus.current == [0]  # made current, indexed
    assert utils.pick_device("cuda:1") == torch.device("cuda", 1) and gpus.current == [0, 1]
    assert utils.pick_device("cpu") == torch.device("cpu") and gpus.current == [0, 1]
    FakeGPUs(monkeypatch, 0)
    assert utils.pick_device(None) == torch.device("cpu")


def test_torchrun_gives_each_rank_its_own_gpu(monkeypatch, caplog):
    gpus = FakeGPUs(monkeypatch, 4)
    _torchrun_env(monkeypatch, rank=5, world=8, local_rank=1, local_world=4)
    mine = torch.device("cuda", 1)
    for name in (None, "cuda", "cuda:1"):
        assert distributed.resolve_device(name) == mine, name
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="advcam.distributed"):
        assert distributed.resolve_device("cuda:0") == mine  # every rank on GPU 0: overridden, and said so
    assert "--device cuda:0 under torchrun: rank 5 (local rank 1) uses cuda:1" in caplog.text
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    assert utils.pick_device("cuda:3") == mine and gpus.current == [1]  # every pass: this rank's GPU, made current
    FakeGPUs(monkeypatch, 1)  # a launcher that shows each rank only its own GPU
    _torchrun_env(monkeypatch, rank=5, world=8, local_rank=1, local_world=4)
    assert distributed.resolve_device(None) == torch.device("cuda", 0)


def test_init_joins_with_this_ranks_gpu(monkeypatch):
    gpus = FakeGPUs(monkeypatch, 2)
    _torchrun_env(monkeypatch, rank=1, world=2, local_rank=1, local_world=2)
    calls = []
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(distributed, "_backend", None)
    assert distributed.init("cuda:0")
    assert gpus.current == [1]
    assert calls[0]["backend"] == "nccl" and calls[0]["device_id"] == torch.device("cuda", 1)
    FakeGPUs(monkeypatch, 1)  # 2 ranks, 1 GPU: they share it, over gloo
    _torchrun_env(monkeypatch, rank=1, world=2, local_rank=1, local_world=2)
    assert distributed.init(None) and calls[1]["backend"] == "gloo" and "device_id" not in calls[1]
    monkeypatch.setattr(distributed, "_backend", None)


def test_num_workers_are_split_over_the_ranks_of_a_node(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.loader_workers(8) == 8 and distributed.loader_workers(0) == 0
    _torchrun_env(monkeypatch, rank=9, world=16, local_rank=1, local_world=8)
    assert [distributed.loader_workers(n) for n in (0, 3, 8, 32)] == [0, 1, 1, 4]
    loader = distributed.train_loader(list(range(8)), 4, "--cam_batch_size", seed=0, num_workers=16, replica=(1, 2))
    assert loader.num_workers == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    args = argparse.Namespace(voc12_root="unused", num_workers=6)
    assert cam_loop_workers(args) == 3


def cam_loop_workers(args) -> int:
    """The loader workers the CAM loop and IRN loop start for ``args`` (read off the DataLoaders they build)."""
    from advcam.irn_loop import pair_loader
    return pair_loader([], args, torch.device("cpu")).num_workers


# ------------------------------------------------------------------------------------------------------------
# the CAM passes on stubbed GPUs
# ------------------------------------------------------------------------------------------------------------


class _Built(Exception):
    """Raised where a worker builds its network: the device was set up without error."""


@pytest.fixture
def cam_job(tmp_path, tiny_voc, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the folders run_sample.py makes for its default outputs
    weights = tmp_path / "cam.pth"
    weights.write_bytes(b"not read: the network build is stubbed")

    class NoNet:
        @staticmethod
        def build_cam_net(path, **kw):
            raise _Built(path)

    monkeypatch.setattr(cam_loop, "cam_network", lambda args: NoNet)
    return {"voc": tiny_voc, "weights": str(weights), "out": str(tmp_path / "cam"), "log": str(tmp_path / "log")}


def _obtain_argv(job, *extra):
    return ["--voc12_root", job["voc"], "--train_list", "train.txt", "--cam_weights_name", job["weights"],
            "--cam_out_dir", job["out"], "--num_workers", "0", *extra]


def test_obtain_cam_masking_device_cuda_sets_an_indexed_device(monkeypatch, cam_job):
    """Item 1: ``--device cuda`` used to reach ``torch.cuda.set_device(torch.device("cuda"))`` (ValueError)."""
    from advcam import obtain_cam_masking
    gpus = FakeGPUs(monkeypatch, 1)
    with pytest.raises(_Built):
        obtain_cam_masking.main(_obtain_argv(cam_job, "--device", "cuda"))
    assert gpus.current == [0]


def test_run_sample_make_cam_device_cuda_sets_an_indexed_device(monkeypatch, cam_job):
    from advcam import run_sample
    gpus = FakeGPUs(monkeypatch, 1)
    with pytest.raises(_Built):
        run_sample.main(["--voc12_root", cam_job["voc"], "--train_list", "train.txt", "--cam_weights_name",
                         cam_job["weights"], "--cam_out_dir", cam_job["out"], "--num_workers", "0", "--log_name",
                         cam_job["log"], "--device", "cuda", "--make_cam_pass", "True"])
    assert gpus.current == [0]


class _SpawnRecorder:
    """Stands in for ``torch.multiprocessing.start_processes``: pickles the workers' arguments as the spawn start
    method does (the queue aside, which only a spawning process may pickle) and answers for each worker."""

    def __init__(self):
        self.calls = []

    def __call__(self, fn, args=(), nprocs=1, start_method="spawn", **kw):
        *payload, q = args
        blob = bytes(ForkingPickler.dumps((fn, *payload)))  # what each spawned worker is sent
        self.calls.append({"nprocs": nprocs, "start_method": start_method, "devices": payload[1], "bytes": len(blob)})
        for _ in range(nprocs):
            q.put((0, 0, 0))


@pytest.mark.parametrize("entry", ["make_cam", "obtain_CAM_masking"])
def test_per_gpu_workers_get_arguments_that_pickle(monkeypatch, cam_job, entry):
    """Item 2: without ``--device`` on 2 GPUs, one spawned worker per GPU; the group function used to be a local
    closure (``Can't pickle local object 'per_image_group.<locals>.group_fn'``)."""
    from advcam import obtain_cam_masking, run_sample
    FakeGPUs(monkeypatch, 2)
    spawn = _SpawnRecorder()
    monkeypatch.setattr(torch.multiprocessing, "start_processes", spawn)
    if entry == "make_cam":
        run_sample.main(["--voc12_root", cam_job["voc"], "--train_list", "train.txt", "--cam_weights_name",
                         cam_job["weights"], "--cam_out_dir", cam_job["out"], "--num_workers", "0", "--log_name",
                         cam_job["log"], "--make_cam_pass", "True"])
    else:
        obtain_cam_masking.main(_obtain_argv(cam_job))
    assert spawn.calls == [{"nprocs": 2, "start_method": "spawn", "devices": ["cuda:0", "cuda:1"],
                            "bytes": spawn.calls[0]["bytes"]}]


def test_group_function_pickles_and_computes_the_same():
    import pickle

    from advcam.steps.make_cam import _plain
    fn = cam_loop.per_image_group(_plain)
    again = pickle.loads(pickle.dumps(fn))
    model = TinyCAM().eval()
    pairs = [torch.randn(2, 3, 32, 32)]
    a = fn(model, [pairs], (1.0,), [[1]], [(32, 32)], torch.device("cpu"))
    b = again(model, [pairs], (1.0,), [[1]], [(32, 32)], torch.device("cpu"))
    assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[0][1], b[0][1])


def test_save_steps_before_per_gpu_workers_climbs_in_a_child_process(monkeypatch):
    """Item 5: with several GPUs the parent must not build (and keep) a CUDA model on GPU 0 for ``--save_steps``:
    the climb runs in a process of its own, on the first GPU, and the parent builds nothing."""
    from advcam.steps import make_advcam
    FakeGPUs(monkeypatch, 2)
    sent = []
    monkeypatch.setattr(make_advcam, "_in_spawned_process", lambda fn, *a: sent.append((fn, a)) or {"images": 1})
    monkeypatch.setattr(make_advcam, "run_cam_pass", lambda args, fn, desc: {"images": 0})
    monkeypatch.setattr(make_advcam, "pick_device", lambda *a: pytest.fail("the parent picked a device"))
    args = argparse.Namespace(engine="fast", adv_iter=2, AD_stepsize=0.08, AD_coeff=7.0, score_th=0.5,
                              cam_scales=(1.0,), target_layer="stage4", cam_weights_name="w.pth", train_list="t.txt",
                              cam_out_dir="out", save_steps=["a,b"], device=None)
    stats = make_advcam.run(args)
    assert stats["steps"] == {"images": 1}
    assert sent == [(make_advcam.save_climbing_steps, (args, ["a", "b"], "cuda:0"))]
    FakeGPUs(monkeypatch, 1)  # one device: in this process, as before
    calls = []
    monkeypatch.setattr(make_advcam, "save_climbing_steps", lambda a, ids: calls.append(ids) or {"images": 2})
    assert make_advcam.run(args)["steps"] == {"images": 2} and calls == [["a", "b"]] and len(sent) == 1


def test_a_spawned_process_returns_its_result_and_raises_its_error(tiny_voc, tmp_path):
    from advcam.steps import make_advcam
    assert make_advcam._in_spawned_process(os.path.join, "a", "b") == os.path.join("a", "b")
    args = argparse.Namespace(train_list="train.txt", voc12_root=tiny_voc, cam_out_dir=str(tmp_path))
    with pytest.raises(BadInputError, match="--save_steps: nope not in --train_list"):
        make_advcam._in_spawned_process(make_advcam.save_climbing_steps, args, ["nope"])


@pytest.mark.slow
def test_per_device_workers_really_spawn_and_write_what_one_process_writes(monkeypatch, tmp_path, tiny_voc, one_thread):
    """The spawn itself, with the device list mapped to two CPU workers: the same files as one process (both with one
    torch thread, so that the kernels, and with them the float results, are the same)."""
    from advcam import run_sample
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned workers' thread count
    save_random_cam_weights(str(tmp_path / "cam.pth"))
    common = ["--voc12_root", tiny_voc, "--train_list", "train_aug.txt", "--cam_weights_name",
              str(tmp_path / "cam.pth"), "--num_workers", "0", "--cam_scales", "1.0", "--make_cam_pass", "True"]
    run_sample.main(common + ["--cam_out_dir", str(tmp_path / "one"), "--log_name", str(tmp_path / "one")])
    monkeypatch.setattr(cam_loop, "cam_devices", lambda args: ["cpu", "cpu"])
    run_sample.main(common + ["--cam_out_dir", str(tmp_path / "two"), "--log_name", str(tmp_path / "two")])
    names = sorted(os.listdir(tmp_path / "one"))
    assert len(names) == 8 and names == sorted(os.listdir(tmp_path / "two"))
    for n in names:
        a = np.load(tmp_path / "one" / n, allow_pickle=True).item()
        b = np.load(tmp_path / "two" / n, allow_pickle=True).item()
        assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in ("keys", "cam", "high_res")), n


# ------------------------------------------------------------------------------------------------------------
# DDP: IRN's constant buffers are not broadcast
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_irn_index_buffers_are_not_broadcast_by_ddp(one_rank_group):
    from advcam.nets.resnet50_irn import LOSS_BUFFER_PREFIXES, AffinityDisplacementLoss
    net = AffinityDisplacementLoss(PathIndex(radius=3, default_size=(16, 16))).train()
    constants = distributed.constant_buffers(net)
    assert constants and all(n.startswith(LOSS_BUFFER_PREFIXES) for n in constants)
    assert len(constants) == len([n for n, _ in net.named_buffers() if n.startswith(LOSS_BUFFER_PREFIXES)])
    ddp = distributed.wrap_ddp(net, torch.device("cpu"))  # as train_cam: buffers broadcast, but not the constants
    sent = {id(b) for b in ddp.modules_buffers}
    assert sent and not sent & {id(b) for n, b in net.named_buffers() if n in constants}
    assert ddp.will_sync_module_buffers()
    ddp = distributed.wrap_ddp(net, torch.device("cpu"), broadcast_buffers=False)  # as train_irn
    assert not ddp.will_sync_module_buffers()  # nothing re-sent at each step


# ------------------------------------------------------------------------------------------------------------
# stage 3: bf16 where the GPU has it; ImageNet weights by default
# ------------------------------------------------------------------------------------------------------------


def test_bf16_only_on_gpus_with_native_bf16(monkeypatch, caplog):
    FakeGPUs(monkeypatch, 1, bf16=True)
    cuda = torch.device("cuda", 0)
    assert segmentation.bf16_autocast(True, cuda) and not segmentation.bf16_autocast(False, cuda)
    assert not segmentation.bf16_autocast(True, torch.device("cpu"))
    FakeGPUs(monkeypatch, 1, bf16=False)  # a V100 or older
    monkeypatch.setattr(segmentation, "_FLOAT32_NOTED", set())
    with caplog.at_level(logging.INFO, logger="advcam.segmentation"):
        assert not segmentation.bf16_autocast(True, cuda)
        assert not segmentation.bf16_autocast(True, cuda)
    assert caplog.text.count("no native bf16") == 1


@pytest.mark.parametrize("native", [True, False])
def test_inference_autocast_follows_the_gpu(monkeypatch, native):
    FakeGPUs(monkeypatch, 1, bf16=native)
    asked = []
    real = torch.autocast

    def autocast(device_type, dtype=None, enabled=True, **kw):
        asked.append((device_type, enabled))
        return real("cpu", enabled=False)

    monkeypatch.setattr(torch, "autocast", autocast)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = on_fake_cuda(nn.Conv2d(3, 21, 1).eval(), mode)
    with mode:
        probs = segmentation.predict_probs(model, torch.zeros(3, 8, 8), scales=(1.0,), flip=True, amp=True)
    assert probs.shape == (21, 8, 8) and probs.device == torch.device("cuda", 0)
    assert asked == [("cuda", native)]


@pytest.fixture
def seg_job(tmp_path, tiny_voc, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the folders run_sample.py makes for its default outputs
    return ["--voc12_root", tiny_voc, "--num_workers", "0", "--log_name", str(tmp_path / "log"),
            "--seg_network", "deeplabv3_resnet50", "--seg_label_dir", os.path.join(tiny_voc, "SegmentationClass"),
            "--seg_train_list", "train_aug.txt", "--seg_weights_name", str(tmp_path / "seg.pth"),
            "--seg_batch_size", "2", "--seg_num_iters", "1", "--train_seg_pass", "True"]


def test_train_seg_starts_from_imagenet_weights_by_default(monkeypatch, seg_job):
    """Item 3: without ``--seg_pretrained``, train_seg loads torchvision's ImageNet weights (here a local state dict
    handed out by a stubbed download) instead of training from random weights."""
    from advcam import run_sample
    from advcam.steps import train_seg
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet50().state_dict()
    asked = []
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict",
                        lambda self, *a, **k: asked.append(self.url) or imagenet)
    trained = []

    def no_training(model, ds, **kw):
        trained.append(model)
        return {"losses": [], "start_iteration": 0, "iterations": 1, "seconds": 0.0}

    monkeypatch.setattr(train_seg, "train_segmentation", no_training)
    out = run_sample.main(seg_job)["train_seg"]
    assert asked == ["https://download.pytorch.org/models/resnet50-0676ba61.pth"]
    assert out["init"] == "ImageNet resnet50 (torchvision)"
    torch.testing.assert_close(trained[0].backbone.layer4[2].conv3.weight, imagenet["layer4.2.conv3.weight"])


def test_train_seg_offline_default_is_one_clear_error(monkeypatch, seg_job):
    from advcam import run_sample

    def offline(self, *a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(MissingInputError) as err:
        run_sample.main(seg_job)
    msg = str(err.value)
    assert "\n" not in msg and "--seg_pretrained PATH" in msg and "--seg_pretrained none" in msg
    assert "resnet50-0676ba61.pth" in msg  # the file to fetch elsewhere
