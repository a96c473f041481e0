"""The training batch stream: data order and augmentation as pure functions of the seed, for exact resume.

- Order: epoch ``e`` visits the train samples in ``permutation(seed, e)``, cut into *global* batches of
  ``batch_size * world_size`` (the remainder is dropped); rank ``r`` takes rows
  ``[r * batch_size, (r + 1) * batch_size)`` of every global batch. So the global batch of a DDP run is
  exactly the batch of a one-process run with ``batch_size * world_size``.
- Position: ``(epoch, batch)`` of the next global batch; a resumed run restarts the stream there
  without reading the batches already consumed.
- Augmentation: every batch is built with torch's RNG seeded from ``(seed, epoch, batch, rank)``
  (the Dataset draws its augmentation from it), so a batch is the same whichever worker builds it,
  after a restart too.

``TrainStream.batches(epoch, batch)`` yields ``(epoch, batch, finished_batch)`` forever, built by one
DataLoader whose persistent workers serve every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from moreclip.data.batch import finalize_batch, loader_slots, worker_options

ORDER, AUGMENT, MODEL = 1, 2, 3  # purposes mixed into derived seeds


def mix_seed(*parts: int) -> int:
    """A 63-bit seed derived from non-negative integers (``numpy.random.SeedSequence``)."""
    a, b = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of ``n`` samples in ``epoch``: ``(n,)`` int64, a function of ``(seed, epoch)`` only."""
    return np.random.default_rng(mix_seed(seed, epoch, ORDER)).permutation(n)


class RankBatches(torch.utils.data.Sampler):
    """This rank's batch keys ``(epoch, batch, positions)`` for one epoch, from batch ``start`` on.

    Args:
        n: samples in the train split.
        batch_size: per-rank batch size.
        rank, world_size: this rank and the number of ranks.
        seed: seed of the order.
    """

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int):
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.global_batch = batch_size * world_size
        self.per_epoch = n // self.global_batch
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.per_epoch - self.start)

    def __iter__(self):
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        lo = self.rank * self.batch_size
        for b in range(self.start, self.per_epoch):
            rows = perm[b * self.global_batch : (b + 1) * self.global_batch]
            yield self.epoch, b, rows[lo : lo + self.batch_size]


class SeededBatches(torch.utils.data.Dataset):
    """Builds the compact batch of a key ``(epoch, batch, positions)`` with torch's RNG seeded from
    ``(seed, epoch, batch, rank)``; returns ``(epoch, batch, compact_batch)``."""

    def __init__(self, dataset, seed: int, rank: int):
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __getitem__(self, key):
        epoch, b, positions = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, b, self.rank, AUGMENT))
            return epoch, b, self.dataset.compact_batch(positions)


def _as_is(x):
    return x


class TrainStream:
    """The endless, resumable stream of this rank's finished train batches.

    Args:
        dataset: the train :class:`~moreclip.data.dataset.MoreDataset`.
        batch_size: per-rank batch size.
        rank, world_size: this rank and the number of ranks.
        seed: seed of order and augmentation.
        num_workers: DataLoader worker processes (0: build batches in this process).
        device: where batches are finished (:func:`~moreclip.data.batch.finalize_batch`).
    """

    def __init__(self, dataset, batch_size, rank=0, world_size=1, seed=0, num_workers=0, device=None):
        self.sampler = RankBatches(len(dataset), batch_size, rank, world_size, seed)
        self.device = device
        self.slots = loader_slots(num_workers, batch_size, dataset)  # alive as long as the stream
        self.loader = torch.utils.data.DataLoader(
            SeededBatches(dataset, seed, rank),
            batch_size=None,  # keys are whole batches
            sampler=self.sampler,
            collate_fn=_as_is,
            **worker_options(num_workers, self.slots),
        )

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.per_epoch

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, int, dict]]:
        """``(epoch, batch, finished_batch)`` from position ``(epoch, start)`` on, forever."""
        while True:
            self.sampler.set_epoch(epoch, start)
            for e, b, compact in self.loader:
                yield e, b, finalize_batch(compact, self.device)
            epoch, start = epoch + 1, 0
