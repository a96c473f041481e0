"""Compact batches -> model-ready batches, and the DataLoader that ships compact batches from its workers.

DataLoader workers return *compact* batches: numpy arrays with the X-rays as ``uint8 (B, 1, S, S)`` and
the ECGs as ``float16 (B, 12, T)`` -- the cache's own dtypes, after the geometric augmentations -- plus
the random parameters of the intensity augmentations. That is 2.5x fewer bytes to move between processes
than float32 batches; moving bytes (page faults on fresh shared memory with torch tensors, or pipe
copies with numpy arrays, which measured cheaper) rather than arithmetic is what limits a worker at
these sizes. The float conversion, per-lead normalisation and intensity augmentations then run in
:func:`finalize_batch` in the consuming process, on ``device`` when one is given (a GPU does them for
free, after a smaller copy).

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
from moreclip.data.preprocess import normalize_leads
from moreclip.errors import ConfigError
from moreclip.workers import die_with, process_context


def normalize_leads_(x: torch.Tensor, mode: str, eps: float = 1e-6) -> torch.Tensor:
    """Per-lead normalisation of ``(..., 12, T)`` in place (:func:`moreclip.data.preprocess.normalize_leads`
    on CPU tensors, the same formulas in torch elsewhere)."""
    if mode == "none":
        return x
    if x.device.type == "cpu":
        normalize_leads(x.numpy(), mode, eps)
        return x
    if mode == "zscore":
        x.sub_(x.mean(dim=-1, keepdim=True))
        return x.div_(x.square().mean(dim=-1, keepdim=True).sqrt_().add_(eps))
    if mode == "minmax":
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
        return x.sub_(lo).mul_(2.0 / (hi - lo + eps)).sub_(1.0)
    raise ValueError(f"unknown ECG normalisation {mode!r} (expected zscore, minmax or none)")


def is_compact(batch: Any) -> bool:
    return isinstance(batch, dict) and "xray_u8" in batch


def finalize_batch(
    batch: dict[str, Any], device: torch.device | str | None = None, non_blocking: bool = False
) -> dict[str, Any]:
    """A model-ready batch (see :mod:`moreclip.data.dataset`) from a compact one, computed on ``device``.

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

    u8 = move(batch["xray_u8"])
    if aug is None:  # (x / 255 - mean) / std in two passes
        xray = torch.mul(u8, 1 / (255 * norm["xray_std"])).sub_(norm["xray_mean"] / norm["xray_std"])
    else:
        xray = A.apply_brightness_contrast(torch.mul(u8, 1 / 255), aug["xray"])
        xray.sub_(norm["xray_mean"]).mul_(1 / norm["xray_std"])
    if not mask["xray"].all():
        xray[~mask["xray"]] = 0.0  # writes only the absent rows

    ecg = normalize_leads_(move(batch["ecg_f16"]).float(), norm["ecg"])
    if aug is not None:
        A.apply_ecg_jitter(ecg, aug["ecg"])
    if not mask["ecg"].all():
        ecg[~mask["ecg"]] = 0.0
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


def _keep_compact(batch: Any) -> Any:
    """The workers' collate_fn: compact batches travel as they are; a list of items is stacked."""
    if isinstance(batch, dict):
        return batch
    from moreclip.data.dataset import collate

    return collate(batch)


def worker_options(workers: int) -> dict:
    """DataLoader keyword arguments for ``workers`` worker processes (none for 0): persistent workers,
    started by the fork server (:func:`moreclip.workers.process_context`), set up by :func:`worker_init`
    (exiting when this process is gone: a SIGKILLed run must not leave them behind, holding its stdout)."""
    if workers <= 0:
        return {"num_workers": 0}
    return {
        "num_workers": workers,
        "worker_init_fn": partial(worker_init, parent=os.getpid()),
        "persistent_workers": True,
        "multiprocessing_context": process_context(),
        "prefetch_factor": 4,
    }


def worker_init(worker_id: int, parent: int | None = None) -> None:
    """DataLoader worker set-up: one thread per library (workers are the parallelism), seeded RNGs, and
    (``parent`` given) exit when that process is gone (:func:`moreclip.workers.die_with`)."""
    if parent is not None:
        die_with(parent)
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

    def __init__(self, loader: torch.utils.data.DataLoader, device=None, non_blocking: bool = False):
        self.loader, self.device, self.non_blocking = loader, device, non_blocking

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
        **worker_options(workers),
    )
    return MoreLoader(loader, device)
