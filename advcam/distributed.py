"""torch.distributed for the passes, started by ``torchrun``: the rank, the device, exact shards, reductions.

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment, WORLD_SIZE > 1) :func:`init` joins the
process group once per process; every helper here is then collective where it says so, and a no-op or the
identity in a plain ``python`` run (world size 1), so a pass reads the same either way:

- inference passes: ``mine = shard(todo)``, where ``todo`` comes from :func:`todo_on_main` (rank 0 lists what
  is missing and sends it to every rank, so the shards are exact: no padding, no duplicates, and a restarted job
  shares out only what is left);
- training passes: :func:`wrap_ddp`, a :class:`torch.utils.data.DistributedSampler` with ``num_replicas`` =
  :func:`world_size`, per-rank batch :func:`local_batch`; rank 0 alone writes (:func:`is_main`);
- evaluation passes: :func:`all_reduce_sum` of the confusion matrices over exact shards.

Devices: every pass takes its device from :func:`local_device` (``advcam.utils.pick_device``): under torchrun each
rank's own GPU ``cuda:LOCAL_RANK`` (whatever CUDA ``--device`` says; see :func:`resolve_device`), made the current
CUDA device. Each rank starts its share of ``--num_workers`` (:func:`loader_workers`).

The backend is NCCL when each rank has a GPU of its own, else gloo (CPU ranks, or more ranks than GPUs on a
node). A rank waits for the others at each :func:`barrier` for up to ``ADVCAM_DIST_TIMEOUT_MIN`` minutes
(default 180): ranks of a resumed job can have unequal work left.
"""
from __future__ import annotations

import datetime
import logging
import os
import random
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from advcam.errors import BadInputError

log = logging.getLogger("advcam.distributed")

T = TypeVar("T")
_backend: str | None = None


def env_world() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) from the environment torchrun sets; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a plain run): the process that writes checkpoints, results and the log."""
    return rank() == 0


def local_world_size() -> int:
    """The ranks on this node under torchrun (LOCAL_WORLD_SIZE; WORLD_SIZE where it is unset); 1 in a plain run."""
    _, world, _ = env_world()
    if world <= 1:
        return 1
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def loader_workers(num_workers: int) -> int:
    """This process's share of ``--num_workers`` (data-loader workers or CPU processes): ``num_workers`` split over
    the ranks of this node under torchrun (at least 1 when ``num_workers`` > 0), so that a node runs about
    ``num_workers`` in all, not one set per rank; ``num_workers`` in a plain run."""
    n = max(0, int(num_workers or 0))
    return 0 if n == 0 else max(1, n // local_world_size())


_overridden: set[str] = set()


def resolve_device(name: str | None = None) -> torch.device:
    """The device this process computes on, with a concrete index for CUDA (no side effect).

    Under torchrun (WORLD_SIZE > 1) each rank has a GPU of its own: ``--device`` unset, ``cuda`` or ``cuda:N``
    all mean ``cuda:LOCAL_RANK`` (modulo the node's visible GPU count, so that ranks can share GPUs, and so that a
    launcher that shows each rank one GPU gives ``cuda:0``); an explicit ``cuda:N`` that differs is overridden, with
    a warning in the log (one ``cuda:N`` for every rank would put them all on one GPU, which NCCL refuses). Any
    other ``--device`` (``cpu``) is used as given. Without CUDA the unset device is the CPU.

    In a plain run: ``name`` as given, a bare ``cuda`` meaning the current CUDA device (``cuda:0`` unless the
    process chose another); unset: the current CUDA device when one is visible, else the CPU."""
    _, world, local = env_world()
    device = torch.device(name) if name else None
    if device is not None and device.type != "cuda":
        return device
    if device is None and not torch.cuda.is_available():
        return torch.device("cpu")
    if world > 1:
        if not torch.cuda.is_available():
            return device  # type: ignore[return-value]  # cuda asked for, none visible: torch says so on first use
        mine = torch.device("cuda", local % torch.cuda.device_count())
        if device is not None and device.index is not None and device != mine and name not in _overridden:
            _overridden.add(name)
            log.warning("--device %s under torchrun: rank %d (local rank %d) uses %s, its own GPU", name,
                        int(os.environ.get("RANK", "0")), local, mine)
        return mine
    if device is not None and device.index is not None:
        return device
    return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_initialized() else 0)


def local_device(name: str | None = None) -> torch.device:
    """:func:`resolve_device`, made this process's current CUDA device (``torch.cuda.set_device``) when it is one,
    so that no kernel or context lands on another GPU. Every pass picks its device through here."""
    device = resolve_device(name)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(device)
    return device


def init(device_name: str | None = None) -> bool:
    """Join the process group when started by torchrun with WORLD_SIZE > 1 (once; later calls do nothing).

    ``device_name``: the ``--device`` flag. Returns whether this process is distributed."""
    global _backend
    if is_distributed():
        return True
    _, world, local = env_world()
    if world <= 1:
        return False
    device = local_device(device_name)  # this rank's GPU, made current
    n_gpu = torch.cuda.device_count() if device.type == "cuda" else 0
    _backend = "nccl" if device.type == "cuda" and local_world_size() <= n_gpu else "gloo"
    timeout = datetime.timedelta(minutes=float(os.environ.get("ADVCAM_DIST_TIMEOUT_MIN", "180")))
    kw = {"device_id": device} if _backend == "nccl" else {}
    dist.init_process_group(backend=_backend, timeout=timeout, **kw)
    return True


def describe() -> str:
    """A line for the log: this process's place in the job."""
    if not is_distributed():
        return "one process (no torchrun)"
    _, _, local = env_world()
    return (f"torchrun job of {world_size()} ranks, backend {_backend}; this is rank {rank()} (local rank {local}) "
            f"on {resolve_device(None)}")


def shutdown() -> None:
    """Leave the process group (after a last barrier), if joined."""
    global _backend
    if is_distributed():
        barrier()
        dist.destroy_process_group()
        _backend = None


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _backend == "nccl" else torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (collective); nothing in a plain run."""
    if is_distributed():
        if _backend == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's exact share of ``items``: every ``world_size()``-th item from position ``rank()``."""
    return list(items[rank()::world_size()])


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (collective)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def todo_on_main(compute) -> list:
    """``compute()`` evaluated on rank 0 only and sent to every rank (collective): the list of what is still to do,
    taken before any rank writes, so that every rank shards the same list."""
    return broadcast_object(compute() if is_main() else None)


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of ``array`` over the ranks (collective, after a barrier); ``array`` in a plain run.

    Integer arrays are summed as int64, floating ones as float64."""
    if not is_distributed():
        return array
    dtype = torch.int64 if np.issubdtype(np.asarray(array).dtype, np.integer) else torch.float64
    t = torch.as_tensor(np.asarray(array), dtype=dtype).to(_comm_device())
    barrier()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy().astype(np.asarray(array).dtype)


def all_reduce_tensor(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of a (detached) tensor over the ranks, on ``t``'s device (collective); ``t`` in a plain
    run."""
    if not is_distributed():
        return t
    out = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def all_gather_objects(obj: T) -> list[T]:
    """[obj of rank 0, obj of rank 1, ...] on every rank (collective); [obj] in a plain run."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def sum_counts(counts: dict[str, int | float]) -> dict[str, int | float]:
    """``counts`` summed key by key over the ranks (collective; every rank gives the same keys)."""
    if not is_distributed():
        return counts
    keys = list(counts)
    total = all_reduce_sum(np.array([float(counts[k]) for k in keys], np.float64))
    return {k: type(counts[k])(v) for k, v in zip(keys, total.tolist(), strict=True)}


def shared_seed(seed: int | None) -> int:
    """``seed``, or (None) a random seed drawn on rank 0 and sent to every rank, so that the ranks of a job shuffle
    alike."""
    if seed is not None:
        return int(seed)
    return int(broadcast_object(random.randrange(2**31)))


def local_batch(batch_size: int, flag: str, world: int | None = None) -> int:
    """The per-rank batch: ``batch_size`` / ``world`` (default: this job's world size); refused, naming ``flag``,
    when the world size does not divide it."""
    world = world_size() if world is None else world
    if batch_size % world:
        raise BadInputError(f"{flag} {batch_size} is not divisible by the {world} ranks of this torchrun job: give "
                            f"a multiple of {world} (the global batch is split evenly over the ranks)")
    return batch_size // world


def _sync_training_bn(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with each batch norm that normalises with batch statistics (in training mode, not a frozen
    ``fixed`` one) replaced by SyncBatchNorm; frozen ones stay as they are."""
    for name, child in module.named_children():
        bn = isinstance(child, torch.nn.modules.batchnorm._BatchNorm)
        if bn and child.training and not getattr(child, "fixed", False):
            setattr(module, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
        elif not bn:
            _sync_training_bn(child)
    return module


def constant_buffers(model: torch.nn.Module) -> list[str]:
    """The full names of ``model``'s non-persistent buffers: constants every rank builds alike (IRN's index
    tables), which DistributedDataParallel need not send."""
    return [f"{prefix}.{name}" if prefix else name for prefix, module in model.named_modules()
            for name in getattr(module, "_non_persistent_buffers_set", ())]


def wrap_ddp(model: torch.nn.Module, device: torch.device, broadcast_buffers: bool = True) -> torch.nn.Module:
    """``model`` (already in training mode, its frozen parameters set) in DistributedDataParallel when distributed
    (``device_ids`` = its GPU), else ``model``.

    On CUDA, batch norms that train are converted to SyncBatchNorm first, so that they normalise over the global
    batch as one process would; frozen ones stay. (SyncBatchNorm does not run on the CPU, where each rank then
    normalises over its own share of the batch.) The non-persistent buffers (:func:`constant_buffers`) are left out
    of DDP's broadcasts, at the start and at every step; ``broadcast_buffers=False``: no buffer is re-broadcast at
    each step, only once at the start (for a model whose buffers never change while it trains, as IRN's frozen
    statistics)."""
    if not is_distributed():
        return model
    if device.type == "cuda":
        model = _sync_training_bn(model)
    ddp = torch.nn.parallel.DistributedDataParallel
    ddp._set_params_and_buffers_to_ignore_for_model(model, constant_buffers(model))
    ids = [device.index] if device.type == "cuda" else None
    return ddp(model, device_ids=ids, forward_sync_buffers=broadcast_buffers)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (its state dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train_loader(dataset, batch_size: int, flag: str, seed: int, num_workers: int = 0, pin_memory: bool = False,
                 replica: tuple[int, int] | None = None) -> DataLoader:
    """The shuffled training loader of a pass: ``batch_size`` is the global batch, split evenly over the ranks.

    A :class:`~torch.utils.data.DistributedSampler` with ``drop_last=True`` (no padding) and the rank count as its
    replicas, in a plain run too: the permutation of an epoch depends on (``seed``, epoch) only, and the ranks'
    batches of step k together are the k-th ``batch_size`` slice of it, which is the single-process batch of step k.
    ``replica``: (rank, world size) instead of this process's. ``num_workers``: the pass's ``--num_workers``, of
    which this rank starts its share (:func:`loader_workers`). Call :func:`set_epoch` before each epoch."""
    r, world = replica if replica is not None else (rank(), world_size())
    per_rank = local_batch(batch_size, flag, world)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=r, shuffle=True, seed=seed, drop_last=True)
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=loader_workers(num_workers),
                      pin_memory=pin_memory, drop_last=True)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Start ``epoch`` of a :func:`train_loader`: its permutation, and the dataset's augmentation seed (an
    ``epoch`` attribute, where it has one)."""
    loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "epoch"):
        loader.dataset.epoch = epoch
