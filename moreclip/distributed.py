"""torchrun / DDP set-up and cross-rank feature gathering (open_clip's ``distributed.py`` and ``gather_features``).

One code path for one process and for ``torchrun``: :func:`init_distributed` reads the ``torchrun``
environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``); with ``WORLD_SIZE > 1`` it joins the process
group (NCCL on GPUs, gloo on CPU), otherwise it does nothing and every helper here is the identity.

Contrastive negatives span the global batch: :func:`gather_features` all-gathers ``(B, D)`` features
into ``(world * B, D)`` in rank order. With ``with_grad=True`` the gather is differentiable
(``torch.distributed.nn.functional.all_gather``: its backward sums every rank's gradient for this rank's
chunk); otherwise the other ranks' chunks are constants and this rank's own chunk is the local,
gradient-carrying tensor.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 1800.0  # collectives fail after this long instead of hanging (MORECLIP_DIST_TIMEOUT_S)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node, its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_info_from_env() -> tuple[int, int, int]:
    """``(local_rank, rank, world_size)`` from the torchrun / SLURM environment (``(0, 0, 1)`` when absent)."""
    local_rank = rank = 0
    world_size = 1
    for v in ("LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"):
        if v in os.environ:
            local_rank = int(os.environ[v])
            break
    for v in ("RANK", "PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
        if v in os.environ:
            rank = int(os.environ[v])
            break
    for v in ("WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if v in os.environ:
            world_size = int(os.environ[v])
            break
    return local_rank, rank, world_size


def pick_device(local_rank: int = 0, device: str = "auto") -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available (or asked for), else CPU.

    Args:
        local_rank: this process's GPU index on its node.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or an explicit device string.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun with more than one process.

    Args:
        device: ``"auto"`` (GPU if available), ``"cpu"`` or ``"cuda"``.

    Returns:
        The :class:`DistInfo` of this process (rank 0 of 1 outside torchrun).
    """
    local_rank, rank, world_size = world_info_from_env()
    dev = pick_device(local_rank, device)
    if world_size <= 1:
        return DistInfo(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        timeout = float(os.environ.get("MORECLIP_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout),
            device_id=dev if dev.type == "cuda" else None,
        )
    return DistInfo(rank, local_rank, world_size, dev, backend)


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 (and outside a process group)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` outside a process group)."""
    return (dist.get_rank(), dist.get_world_size()) if _active() else (0, 1)


def gather_features(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """All-gather ``(B, ...)`` from every rank into ``(world * B, ...)``, in rank order.

    Args:
        x: this rank's tensor; every rank must pass the same shape.
        with_grad: differentiable gather (gradients flow back to the rank that computed each chunk);
            otherwise only this rank's own chunk carries gradients.
    """
    if not _active():
        return x
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x), dim=0)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def gather_masks(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All-gather ``(B,)`` boolean presence masks into ``(world * B,)`` (no gradients)."""
    if not _active():
        return masks
    return {k: gather_features(v.to(torch.uint8), with_grad=False).bool() for k, v in masks.items()}


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over ranks (a copy; ``values`` itself is unchanged)."""
    if not _active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True when ``flag`` is True on any rank (e.g. a stop decision every rank must share)."""
    if not _active():
        return bool(flag)
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (pickled by torch.distributed; only for trusted peers)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a process group)."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if _active():
        dist.barrier()
