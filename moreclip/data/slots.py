"""Shared-memory slots that carry compact batches from DataLoader workers to the consuming process.

A compact batch (:meth:`moreclip.data.dataset.MoreDataset.compact_batch`) is mostly two arrays, the
``uint8`` X-rays and ``float16`` ECGs (170 KB a sample at 224 px and 500 Hz). Pickled through the
DataLoader's pipe they cost more CPU than building the batch: a copy into the pickle, two copies through
the kernel, one out of the pickle, and page faults on fresh memory at both ends; torch's shared-memory
tensors avoid the copies but allocate (and fault in) a new segment for every batch. Here the consuming
process allocates, once, a few shared buffers ("slots") per worker before the workers start:

- a worker takes a free slot (a non-blocking semaphore), writes the batch's arrays straight into it and
  ships only the slot number (:class:`CompactBatch` leaves the arrays out of its pickle);
- the consumer reads the arrays in place while it finishes the batch
  (:func:`moreclip.data.batch.finalize_batch`, which copies them into new tensors) and frees the slot;
  a batch dropped unfinished (an epoch left early) frees it when garbage-collected (:class:`SlotLease`).

With ``prefetch_factor + 2`` slots per worker a worker never waits for one; when none is free (a consumer
that holds on to unfinished batches) the batch is built in ordinary memory and pickled as before, so the
slots change the speed, never the result. No slots are used without workers, in the consuming process, or
in workers that did not receive a :class:`BatchSlots` (a user's own DataLoader).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import weakref
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
#: the compact batch's arrays that travel in slots
ARRAYS = ("xray_u8", "ecg_f16")
_POOLS: weakref.WeakValueDictionary[str, BatchSlots] = weakref.WeakValueDictionary()
_ACTIVE: tuple[BatchSlots, int] | None = None  # (slots, worker id) in a DataLoader worker


class CompactBatch(dict):
    """A compact batch (a dict); when its arrays live in a slot (``batch["slot"]`` set), pickling leaves
    them out, and :func:`open_arrays` finds them again in the consuming process."""

    def __reduce__(self):
        state = dict(self)
        if state.get("slot") is not None:
            state.update(dict.fromkeys(ARRAYS))
        return CompactBatch, (state,)


class SlotLease:
    """A compact batch's claim on its slot (``batch["slot"]``), freed exactly once in the consuming process:
    by :func:`release` (from :func:`~moreclip.data.batch.finalize_batch`) or, for a batch dropped unfinished
    (an epoch left early: torch discards the batches in flight), when its last reference goes. Shallow
    copies of the batch (torch's pin-memory thread makes one) share the lease, so none frees it early.
    The lease a worker creates owns nothing; its pickled copy in the consuming process owns the slot."""

    __slots__ = ("pool_id", "worker", "slot", "n", "owned")

    def __init__(self, pool_id: str, worker: int, slot: int, n: int, owned: bool = False):
        self.pool_id, self.worker, self.slot, self.n, self.owned = pool_id, worker, slot, n, owned

    def __reduce__(self):
        return SlotLease, (self.pool_id, self.worker, self.slot, self.n, True)

    def release(self) -> None:
        if self.owned:
            self.owned = False
            pool = _POOLS.get(self.pool_id)
            if pool is not None:
                pool.release(self.worker, self.slot)

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.release()


class BatchSlots:
    """``per_worker`` shared buffers for each of ``workers`` DataLoader workers, each holding the arrays of
    one compact batch of up to ``batch_size`` samples.

    Create it in the consuming process before the workers start, hand it to them through the
    DataLoader's ``worker_init_fn`` (:func:`moreclip.data.batch.worker_init` calls :meth:`attach`), and
    keep a reference for as long as batches arrive.

    Args:
        workers: DataLoader worker processes.
        per_worker: slots per worker (``prefetch_factor + 2`` leaves one spare).
        batch_size: samples per batch (the largest batch; smaller ones use the slot's start).
        image_size: X-ray side ``S`` (``uint8 (B, 1, S, S)``).
        ecg_length: ECG samples ``T`` (``float16 (B, 12, T)``).
        ctx: the ``multiprocessing`` context the workers are started with (its semaphores).
    """

    def __init__(self, workers: int, per_worker: int, batch_size: int, image_size: int, ecg_length: int, ctx):
        self.id = uuid.uuid4().hex
        self.batch_size, self.image_size, self.ecg_length = batch_size, image_size, ecg_length
        self.xray_bytes = batch_size * image_size * image_size
        nbytes = self.xray_bytes + batch_size * 12 * ecg_length * 2
        self.buffers = [_shared_bytes(per_worker * nbytes) for _ in range(workers)]  # one segment per worker
        self.nbytes, self.per_worker = nbytes, per_worker
        self.free = [[ctx.Semaphore(1) for _ in range(per_worker)] for _ in range(workers)]
        self._next = 0
        _POOLS[self.id] = self

    def attach(self, worker_id: int) -> None:
        """In DataLoader worker ``worker_id``: build this worker's compact batches in its slots."""
        global _ACTIVE
        _ACTIVE = (self, int(worker_id))

    def arrays(self, worker: int, slot: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Views ``(xray uint8 (n, 1, S, S), ecg float16 (n, 12, T))`` of slot ``slot`` of ``worker``."""
        if not 0 < n <= self.batch_size:
            raise ValueError(f"a batch of {n} does not fit slots of {self.batch_size}")
        base = self.buffers[worker].numpy()[slot * self.nbytes : (slot + 1) * self.nbytes]
        s, t = self.image_size, self.ecg_length
        xray = base[: n * s * s].reshape(n, 1, s, s)
        ecg = base[self.xray_bytes : self.xray_bytes + n * 12 * t * 2].view(np.float16).reshape(n, 12, t)
        return xray, ecg

    def take(
        self, n: int, image_size: int, ecg_length: int
    ) -> tuple[np.ndarray, np.ndarray, SlotLease] | None:
        """In a worker: a free slot's arrays for a batch of ``n`` and its lease, or None (none free, or a
        batch these slots were not sized for)."""
        if _ACTIVE is None or _ACTIVE[0] is not self:
            return None
        if n > self.batch_size or image_size != self.image_size or ecg_length != self.ecg_length:
            return None
        worker = _ACTIVE[1]
        for k in range(self.per_worker):
            slot = (self._next + k) % self.per_worker
            if self.free[worker][slot].acquire(block=False):
                self._next = slot + 1
                return (*self.arrays(worker, slot, n), SlotLease(self.id, worker, slot, n))
        log.debug("worker %d: no free batch slot; this batch travels through the pipe", worker)
        return None

    def release(self, worker: int, slot: int) -> None:
        """In the consuming process: slot ``slot`` of ``worker`` may be written again."""
        self.free[worker][slot].release()


def _shared_bytes(n: int) -> torch.Tensor:
    """A ``uint8`` tensor of ``n`` bytes in shared memory, its pages backed only once written."""
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None:  # pragma: no cover - older torch: share_memory_() copies (and backs) the pages
        return torch.empty(n, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(new_shared(n))


def batch_arrays(n: int, image_size: int, ecg_length: int) -> tuple[np.ndarray, np.ndarray, SlotLease | None]:
    """Output arrays for a compact batch of ``n``: a slot's (in a worker with slots and one free) with its
    lease, else new arrays and None."""
    if _ACTIVE is not None:
        got = _ACTIVE[0].take(n, image_size, ecg_length)
        if got is not None:
            return got
    xray = np.empty((n, 1, image_size, image_size), np.uint8)
    ecg = np.empty((n, 12, ecg_length), np.float16)
    return xray, ecg, None


def open_arrays(batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The X-ray and ECG arrays of a compact batch: its own, or views of its slot (in the consuming process).

    Raises:
        RuntimeError: the batch's slot was already released (a batch from slots is finished once), or
            its :class:`BatchSlots` no longer exists.
    """
    lease = batch.get("slot")
    if lease is None or batch.get("xray_u8") is not None:
        return batch["xray_u8"], batch["ecg_f16"]
    if not lease.owned:
        raise RuntimeError("this compact batch was already finished; its shared slot has been reused")
    pool = _POOLS.get(lease.pool_id)
    if pool is None:
        raise RuntimeError("the batch slots of this compact batch are gone (its DataLoader was deleted)")
    return pool.arrays(lease.worker, lease.slot, lease.n)


def release(batch: dict[str, Any]) -> None:
    """Free the slot of a compact batch once its arrays have been copied (a no-op without a slot)."""
    lease = batch.get("slot")
    if lease is not None and batch.get("xray_u8") is None:
        lease.release()


def slots_for(workers: int, prefetch_factor: int, batch_size: int, dataset, ctx) -> BatchSlots | None:
    """Slots for ``workers`` workers of batches of ``batch_size`` from ``dataset`` (its ``image_size``
    and ``ecg_length``), or None when there are no workers or shared memory cannot be had."""
    if workers <= 0 or not batch_size:
        return None
    try:
        size, length = int(dataset.image_size), int(dataset.ecg_length)
    except AttributeError:
        return None
    per_worker = prefetch_factor + 2
    need = workers * per_worker * batch_size * (size * size + 24 * length)
    room = shm_room()
    if room is not None and need > room:
        log.warning(
            "%s has %.0f MB free, the batch slots of %d workers need %.0f MB: batches travel through pipes "
            "(slower; fewer workers, a smaller batch or a larger %s would fix it)",
            SHM_DIR, room / 2**20, workers, need / 2**20, SHM_DIR,
        )  # fmt: skip
        return None
    try:
        return BatchSlots(workers, per_worker, batch_size, size, length, ctx)
    except (OSError, RuntimeError) as e:
        log.warning(
            "no shared batch slots (%.0f MB): %s; batches travel through pipes (slower)", need / 2**20, e
        )
        return None


def shm_room() -> int | None:
    """Free bytes in :data:`SHM_DIR` (where shared memory lives on Linux), None where unknown. Checked before
    allocating: tmpfs pages are only backed when written, so a slot that does not fit would not fail at
    allocation but kill the worker that writes it (SIGBUS)."""
    try:
        st = os.statvfs(SHM_DIR)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


__all__ = [
    "BatchSlots",
    "CompactBatch",
    "SlotLease",
    "batch_arrays",
    "open_arrays",
    "release",
    "shm_room",
    "slots_for",
]
