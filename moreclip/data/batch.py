"""Compact batches -> model-ready batches, and the DataLoader that ships compact batches from its workers.

DataLoader workers return *compact* batches: the X-rays as ``uint8 (B, 1, S, S)`` and the ECGs as
``float16 (B, 12, T)`` -- the cache's own dtypes, after the geometric augmentations -- plus the random
parameters of the intensity augmentations. That is 2.5x fewer bytes than float32 batches, and the
arrays do not travel at all: workers write them into shared-memory slots that the consuming process
allocated once (:mod:`moreclip.data.slots`); pickling them through the pipe cost more CPU than building
them. The float conversion, per-lead normalisation and intensity augmentations then run in
:func:`finalize_batch` in the consuming process (one copy and a few in-place passes), on ``device`` when
one is given (a GPU does them for free, after a smaller copy).

    loader = make_dataloader(build_dataset(cfg.data, "train"), seed=cfg.train.seed, device="cuda")
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:  # the batch contract of moreclip.data.dataset, on the device
            ...
"""

from __future__ import annotations

import os
import random
from functools import partial
from typing import Any

import numpy as np
import torch

from moreclip.config import MODALITIES
from moreclip.data import augment as A
from moreclip.data import slots
from moreclip.data.slots import BatchSlots
from moreclip.errors import ConfigError
from moreclip.workers import die_with, process_context


def lead_affine_(x: torch.Tensor, mode: str, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-lead ``(gain, bias)``, each ``(..., 12, 1)``, such that ``x * gain + bias`` is ``x`` normalised as
    :func:`moreclip.data.preprocess.normalize_leads` does (``zscore``, ``minmax`` or ``none``); ``bias`` is
    None where it is 0.

    ``zscore`` centres ``x`` in place first. Built from ``mean``, ``vector_norm``, ``amax`` and ``amin``:
    torch's ``var_mean``/``std`` and ``aminmax`` along the last axis are 30-50x slower on CPU.
    """
    if mode == "zscore":
        x.sub_(x.mean(dim=-1, keepdim=True))
        rms = torch.linalg.vector_norm(x, dim=-1, keepdim=True).mul_(x.shape[-1] ** -0.5)
        return rms.add_(eps).reciprocal_(), None
    if mode == "minmax":
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
        gain = hi.sub_(lo).add_(eps).reciprocal_().mul_(2.0)
        return gain, lo.mul_(gain).neg_().sub_(1.0)
    if mode == "none":
        return torch.ones(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device), None
    raise ValueError(f"unknown ECG normalisation {mode!r} (expected zscore, minmax or none)")


def is_compact(batch: Any) -> bool:
    return isinstance(batch, dict) and "xray_u8" in batch


def finalize_batch(
    batch: dict[str, Any], device: torch.device | str | None = None, non_blocking: bool = False
) -> dict[str, Any]:
    """A model-ready batch (see :mod:`moreclip.data.dataset`) from a compact one, computed on ``device``.

    Each modality takes one copy into a new float32 tensor and a few in-place passes: the normalisation
    and the intensity augmentations are per-image / per-lead affine maps, folded into one gain and one
    bias (ECG noise is one more pass, the X-ray's clip to the [0, 1] grey range one more). A batch whose
    arrays arrived in a shared slot (:mod:`moreclip.data.slots`) frees it here.

    Args:
        batch: a compact batch from :meth:`MoreDataset.compact_batch`; a finished batch is returned as is
            (moved to ``device`` when given).
        device: where to convert and return the tensors (default: where they are).
        non_blocking: asynchronous host-to-device copies (with pinned memory).
    """
    dev = torch.device(device) if device is not None else None

    def move(t: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(t)
        return t if dev is None else t.to(dev, non_blocking=non_blocking)

    if not is_compact(batch):
        if dev is None:
            return batch
        out = {k: move(v) if torch.is_tensor(v) else v for k, v in batch.items()}
        out["mask"] = {m: move(v) for m, v in batch["mask"].items()}
        return out
    norm, aug = batch["norm"], batch["aug"]
    mask = {m: move(batch["mask"][m]) for m in MODALITIES}
    u8, f16 = slots.open_arrays(batch)
    try:
        xray = _finish_xray(move(u8), norm, None if aug is None else aug["xray"])
        ecg = _finish_ecg(move(f16), norm["ecg"], None if aug is None else aug["ecg"])
    finally:
        slots.release(batch)
    for x, present in ((xray, mask["xray"]), (ecg, mask["ecg"])):
        if not present.all():  # zero only the absent rows (a boolean-mask write costs a pass over x)
            x.index_fill_(0, (~present).nonzero().flatten(), 0.0)
    return {
        "index": move(batch["index"]),
        "sample_id": batch["sample_id"],
        "xray": xray,
        "ecg": ecg,
        "xray_report": batch["xray_report"],
        "ecg_report": batch["ecg_report"],
        "mask": mask,
        "labels": move(batch["labels"]),
    }


def _per_item(values, x: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(values, dtype=np.float32), device=x.device)
    return v.view(v.shape + (1,) * (x.dim() - v.dim()))


def _finish_xray(u8: torch.Tensor, norm: dict, params: dict | None) -> torch.Tensor:
    """``(x / 255 - mean) / std`` after brightness/contrast (:func:`augment.apply_brightness_contrast`),
    as ``clip(u8 * gain + bias)`` with the normalisation folded in."""
    mean, std = norm["xray_mean"], norm["xray_std"]
    x = torch.empty(u8.shape, dtype=torch.float32, device=u8.device).copy_(u8)
    if params is None:
        return x.mul_(1 / (255 * std)).sub_(mean / std)
    level = params.get("mean")
    if level is None:  # the mean grey value of each image, on [0, 1]
        level = x.view(len(x), -1).mean(dim=1).div_(255).cpu().numpy()
    gain, bias = A.brightness_contrast_coeffs(params, level)
    x.mul_(_per_item(gain / (255 * std), x)).add_(_per_item((bias - mean) / std, x))
    return x.clamp_(-mean / std, (1 - mean) / std)


def _finish_ecg(f16: torch.Tensor, mode: str, params: dict | None) -> torch.Tensor:
    """Per-lead normalisation, then amplitude scaling, lead dropout and noise
    (:func:`augment.apply_ecg_jitter`), as one ``x * gain + bias`` pass and one noise pass."""
    x = torch.empty(f16.shape, dtype=torch.float32, device=f16.device).copy_(f16)
    gain, bias = lead_affine_(x, mode)
    if params is not None:
        scale, std = A.ecg_jitter_coeffs(params)
        scale = _per_item(scale, x)
        gain.mul_(scale)
        if bias is not None:
            bias.mul_(scale)
    x.mul_(gain)
    if bias is not None:
        x.add_(bias)
    if params is not None:
        A.add_ecg_noise(x, params["noise_offset"], _per_item(std, x))
    return x


def _keep_compact(batch: Any) -> Any:
    """The workers' collate_fn: compact batches travel as they are; a list of items is stacked."""
    if isinstance(batch, dict):
        return batch
    from moreclip.data.dataset import collate

    return collate(batch)


PREFETCH = 4  # batches each worker builds ahead


def worker_options(workers: int, slots: BatchSlots | None = None) -> dict:
    """DataLoader keyword arguments for ``workers`` worker processes (none for 0): persistent workers,
    started by the fork server (:func:`moreclip.workers.process_context`), set up by :func:`worker_init`
    (exiting when this process is gone: a SIGKILLed run must not leave them behind, holding its stdout),
    and writing their batches into ``slots`` when given (see :func:`loader_slots`)."""
    if workers <= 0:
        return {"num_workers": 0}
    return {
        "num_workers": workers,
        "worker_init_fn": partial(worker_init, parent=os.getpid(), slots=slots),
        "persistent_workers": True,
        "multiprocessing_context": process_context(),
        "prefetch_factor": PREFETCH,
    }


def loader_slots(workers: int, batch_size: int, dataset) -> BatchSlots | None:
    """Shared-memory slots (:mod:`moreclip.data.slots`) for the compact batches of ``dataset`` built by
    ``workers`` workers of :func:`worker_options`; None without workers (or shared memory)."""
    return slots.slots_for(workers, PREFETCH, batch_size, dataset, process_context())


def worker_init(worker_id: int, parent: int | None = None, slots: BatchSlots | None = None) -> None:
    """DataLoader worker set-up: one thread per library (workers are the parallelism), seeded RNGs,
    (``parent`` given) exit when that process is gone (:func:`moreclip.workers.die_with`), and (``slots``
    given) compact batches built in this worker's shared slots."""
    if parent is not None:
        die_with(parent)
    if slots is not None:
        slots.attach(worker_id)
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class MoreLoader:
    """Iterates a torch DataLoader of compact batches and yields finished batches (on ``device``).

    Attributes:
        loader: the underlying ``torch.utils.data.DataLoader``; ``dataset``, ``sampler`` and
            ``batch_size`` are forwarded.
    """

    def __init__(
        self, loader: torch.utils.data.DataLoader, device=None, non_blocking: bool = False, slots=None
    ):
        self.loader, self.device, self.non_blocking = loader, device, non_blocking
        self.slots = slots  # the workers' shared batch slots: alive as long as the loader

    def __iter__(self):
        for batch in self.loader:
            yield finalize_batch(batch, self.device, self.non_blocking)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle a DistributedSampler for ``epoch`` (a plain shuffled loader reshuffles by itself)."""
        if hasattr(self.loader.sampler, "set_epoch"):
            self.loader.sampler.set_epoch(epoch)

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def sampler(self):
        return self.loader.sampler

    @property
    def batch_size(self) -> int | None:
        return self.loader.batch_size


def make_dataloader(
    dataset,
    batch_size: int | None = None,
    *,
    shuffle: bool | None = None,
    num_workers: int | None = None,
    seed: int = 0,
    drop_last: bool | None = None,
    distributed: bool | None = None,
    device: torch.device | str | None = None,
    pin_memory: bool = False,
) -> MoreLoader:
    """Batches of a :class:`~moreclip.data.dataset.MoreDataset`, built in seeded, persistent workers.

    Args:
        batch_size: default ``dataset.cfg.batch_size``.
        shuffle: default True for the train split; ``drop_last`` defaults to the same.
        num_workers: default ``dataset.cfg.num_workers`` (0: in this process).
        seed: seeds the shuffling and, through torch, every worker's augmentation RNG.
        distributed: shard with a DistributedSampler (default: when torch.distributed is initialised);
            call ``loader.set_epoch(epoch)`` every epoch.
        device: where batches are finished and returned (e.g. ``"cuda"``); default CPU. The compact
            batch (numpy) is copied there as is, which is 2.5x fewer bytes than the finished batch.
        pin_memory: forwarded to the DataLoader (default False: it pins tensors only, and compact
            batches are numpy arrays).
    """
    batch_size = batch_size or dataset.cfg.batch_size
    shuffle = dataset.split == "train" if shuffle is None else shuffle
    drop_last = shuffle if drop_last is None else drop_last
    workers = dataset.cfg.num_workers if num_workers is None else num_workers
    if len(dataset) == 0:
        raise ConfigError(f"{dataset!r} has no samples")
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    shared = loader_slots(workers, batch_size, dataset)
    sampler = None
    if distributed:
        sampler = torch.utils.data.DistributedSampler(
            dataset, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        collate_fn=_keep_compact,
        drop_last=drop_last,
        pin_memory=bool(pin_memory),
        generator=torch.Generator().manual_seed(seed),
        **worker_options(workers, shared),
    )
    return MoreLoader(loader, device, slots=shared)
