"""The training Dataset over a cache (fast) or a manifest's raw files (slow), and its collate.

An item (``dataset[i]``)::

    {"index": int (manifest row), "sample_id": str,
     "xray": FloatTensor (1, S, S), (x / 255 - mean) / std, zeros when absent,
     "ecg": FloatTensor (12, T), per-lead normalised (DataConfig.ecg_norm), zeros when absent,
     "xray_report": str ("" when absent), "ecg_report": str ("" when absent),
     "mask": {"xray": bool, "ecg": bool, "xray_report": bool, "ecg_report": bool},
     "labels": FloatTensor (L,), NaN when unknown, in the order of ``dataset.label_names``}

and a batch (``collate(items)``) has the same keys with ``index`` LongTensor ``(B,)``, ``sample_id`` and
the reports as lists, ``xray`` ``(B, 1, S, S)``, ``ecg`` ``(B, 12, T)``, each mask a BoolTensor ``(B,)``,
``labels`` ``(B, L)``.

Speed: the DataLoader asks for a whole batch at once (``__getitems__``), which reads the memory maps with
one sorted fancy index, converts and normalises with a few vectorised ops, and augments the batch (see
:mod:`moreclip.data.augment`); that batch goes straight through :func:`collate`. Use :func:`collate` (as
:func:`make_dataloader` does), not torch's default collate. The raw path decodes each record with the same
:mod:`moreclip.data.preprocess` functions ``prepare`` uses and rounds ECGs to float16 like the cache, so
both paths give identical tensors.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from moreclip.config import MODALITIES, DataConfig
from moreclip.data import augment as A
from moreclip.data.cache import Cache, open_cache
from moreclip.data.manifest import SPLITS, Manifest, read_manifest
from moreclip.data.preprocess import PreprocessOptions, load_ecg, load_xray, normalize_leads
from moreclip.errors import ConfigError, RecordError

log = logging.getLogger(__name__)
_BAKED = ("xray_fit", "clahe", "clahe_clip", "clahe_tiles", "ecg_bandpass", "ecg_baseline")


def _alloc(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker it is created in shared memory (no copy on send)."""
    if torch.utils.data.get_worker_info() is not None:
        numel = int(np.prod(shape))
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
        return torch.empty(0, dtype=dtype).new(storage).view(shape)
    return torch.empty(shape, dtype=dtype)


class MoreDataset(torch.utils.data.Dataset):
    """Samples of one split of a cache (:class:`~moreclip.data.cache.Cache`) or a :class:`Manifest`.

    Args:
        source: an open cache (fast path) or a manifest (decodes raw files per batch).
        cfg: the data config (image size, ECG rate/length, normalisation, augmentation).
        split: ``train`` / ``val`` / ``test``, or None for every row.
        augment: train-time augmentation (see :mod:`moreclip.data.augment`).
        strict: raw path only: raise on a bad record instead of logging it and masking it out.

    Attributes:
        rows: manifest rows of the samples, ``(N,)`` int64. label_names: label columns, in order.
    """

    def __init__(
        self,
        source: Cache | Manifest,
        cfg: DataConfig | None = None,
        split: str | None = None,
        augment: bool = False,
        strict: bool = False,
    ):
        self.cfg = cfg or DataConfig()
        self.split, self.augment, self.strict = split, bool(augment), strict
        self._nan_logged: set[int] = set()
        if split is not None and split not in SPLITS:
            raise ConfigError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        wanted = PreprocessOptions.from_config(self.cfg)
        if isinstance(source, Cache):
            self.cache, self.manifest, self.options = source, None, source.options
            table, self.label_names = source.index, list(source.label_columns)
            present = {m: source.has(m) for m in MODALITIES}
            self._check_cache(wanted)
        else:
            self.cache, self.manifest, self.options = None, source, wanted
            table, self.label_names = source.df, list(source.label_columns)
            present = {m: source.has(m) for m in MODALITIES}
        sel = np.ones(len(table), bool) if split is None else (table["split"] == split).to_numpy()
        self.rows = np.flatnonzero(sel).astype(np.int64)
        self.sample_ids = table["sample_id"].to_numpy(dtype=object)[sel]
        self.present = {m: p[sel] for m, p in present.items()}
        self.reports = {
            m: np.array(
                ["" if v is None or v != v else str(v) for v in table[m].to_numpy()[sel]], dtype=object
            )
            for m in ("xray_report", "ecg_report")
        }
        labels = table[self.label_names].to_numpy(dtype=np.float32) if self.label_names else None
        self.labels = labels[sel] if labels is not None else np.zeros((len(self.rows), 0), np.float32)

    def _check_cache(self, wanted: PreprocessOptions) -> None:
        have = self.options
        if have.image_size != wanted.image_size or have.ecg_length != wanted.ecg_length:
            raise ConfigError(
                f"{self.cache.path}: the cache holds {have.image_size} px X-rays and ECGs of {have.ecg_length} "
                f"samples ({have.ecg_rate} Hz x {have.ecg_seconds:g} s), but data.image_size={wanted.image_size}, "
                f"data.ecg_rate={wanted.ecg_rate}, data.ecg_seconds={wanted.ecg_seconds:g}: re-run "
                f"moreclip prepare with matching --image-size/--ecg-rate or change the config"
            )
        diffs = [f"{k}={getattr(have, k)!r}" for k in _BAKED if getattr(have, k) != getattr(wanted, k)]
        if diffs:
            log.warning(
                "%s was prepared with %s; the cache's choice applies", self.cache.path, ", ".join(diffs)
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        src = f"cache={self.cache.path}" if self.cache else f"manifest={self.manifest.path}"
        return f"MoreDataset({src}, split={self.split}, n={len(self)}, augment={self.augment})"

    @property
    def image_size(self) -> int:
        return self.options.image_size

    @property
    def ecg_length(self) -> int:
        return self.options.ecg_length

    # ----------------------------------------------------------------------------------- reading
    def _read_cache(self, rows: np.ndarray, modality: str) -> np.ndarray | None:
        if modality not in self.cache.modalities:
            return None
        order = np.argsort(rows, kind="stable")
        data = self.cache.array(modality)[rows[order]]  # one sorted gather from the memory map
        out = np.empty_like(data)
        out[order] = data
        return out

    def _read_raw(self, rows: np.ndarray, mask: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        s, t = self.image_size, self.ecg_length
        xray = np.zeros((len(rows), s, s), np.uint8)
        ecg = np.zeros((len(rows), 12, t), np.float16)
        for j, row in enumerate(rows):
            for modality, path, load in (
                ("xray", self.manifest.xray_file(int(row)), load_xray),
                ("ecg", self.manifest.ecg_record(int(row)), load_ecg),
            ):
                if not mask[modality][j]:
                    continue
                try:
                    if path is None:
                        raise RecordError(None, f"no {modality} path")
                    value = load(path, self.options)
                except RecordError as e:
                    if self.strict:
                        raise
                    log.warning("row %d: %s absent for this sample: %s", row, modality, e)
                    mask[modality][j] = False
                    continue
                if modality == "xray":
                    xray[j] = value
                else:
                    ecg[j] = value[0]  # float16 like the cache
                    if value[1] and int(row) not in self._nan_logged:
                        self._nan_logged.add(int(row))
                        log.warning("row %d: %d NaN ECG samples set to 0 (%s)", row, value[1], path)
        return xray, ecg

    def _rng(self) -> np.random.Generator:
        # torch's RNG is seeded per worker and epoch by the DataLoader (and by torch.manual_seed in-process)
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    # ----------------------------------------------------------------------------------- batches
    def get_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The collated batch of dataset positions ``indices`` (see the module docstring)."""
        pos = np.asarray(indices, dtype=np.int64)
        rows = self.rows[pos]
        n, cfg, aug = len(pos), self.cfg, self.cfg.aug
        mask = {m: self.present[m][pos].copy() for m in MODALITIES}
        if self.cache is not None:
            xray_u8, ecg_f16 = self._read_cache(rows, "xray"), self._read_cache(rows, "ecg")
        else:
            xray_u8, ecg_f16 = self._read_raw(rows, mask)
        rng = self._rng() if self.augment else None

        s = self.image_size
        xray = _alloc((n, 1, s, s))
        xv = xray.numpy()[:, 0]
        if xray_u8 is None or not mask["xray"].any():
            xv.fill(0)
        else:
            if rng is not None:
                xray_u8 = A.xray_resized_crop(xray_u8, rng, aug.xray_crop, aug.xray_ratio)
            np.multiply(xray_u8, np.float32(1 / 255), out=xv)
            if rng is not None:
                A.xray_brightness_contrast(xv, rng, aug.xray_brightness, aug.xray_contrast)
            xv -= np.float32(cfg.xray_mean)
            xv *= np.float32(1 / cfg.xray_std)
            xv[~mask["xray"]] = 0

        ecg = _alloc((n, 12, self.ecg_length))
        if ecg_f16 is None or not mask["ecg"].any():
            ecg.zero_()
        else:
            ecg.copy_(torch.from_numpy(ecg_f16))
            if rng is not None:
                A.ecg_time_crop(ecg, rng, aug.ecg_crop)
            normalize_leads(ecg.numpy(), cfg.ecg_norm)
            if rng is not None:
                A.ecg_jitter(ecg, rng, aug.ecg_scale, aug.ecg_noise, aug.ecg_lead_dropout)
            ecg[torch.from_numpy(~mask["ecg"])] = 0

        reports = {}
        for m in ("xray_report", "ecg_report"):
            texts = self.reports[m][pos].tolist()
            if rng is not None:
                texts = [A.shuffle_sentences(t, rng, aug.text_shuffle, aug.text_drop) for t in texts]
            reports[m] = texts
        return {
            "index": torch.from_numpy(rows),
            "sample_id": self.sample_ids[pos].tolist(),
            "xray": xray,
            "ecg": ecg,
            **reports,
            "mask": {m: torch.from_numpy(mask[m]) for m in MODALITIES},
            "labels": torch.from_numpy(np.ascontiguousarray(self.labels[pos])),
        }

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        return self.get_batch(indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)}")
        b = self.get_batch([i % len(self)])
        return {
            "index": int(b["index"][0]),
            "sample_id": b["sample_id"][0],
            "xray": b["xray"][0],
            "ecg": b["ecg"][0],
            "xray_report": b["xray_report"][0],
            "ecg_report": b["ecg_report"][0],
            "mask": {m: bool(v[0]) for m, v in b["mask"].items()},
            "labels": b["labels"][0],
        }


def collate(items: Sequence[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """Stack items into a batch; a batch that :meth:`MoreDataset.get_batch` already built passes through."""
    if isinstance(items, dict):
        return items
    if not items:
        raise ValueError("collate() needs at least one item")
    return {
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "sample_id": [it["sample_id"] for it in items],
        "xray": torch.stack([it["xray"] for it in items]),
        "ecg": torch.stack([it["ecg"] for it in items]),
        "xray_report": [it["xray_report"] for it in items],
        "ecg_report": [it["ecg_report"] for it in items],
        "mask": {m: torch.tensor([bool(it["mask"][m]) for it in items]) for m in MODALITIES},
        "labels": torch.stack([it["labels"] for it in items]),
    }


def build_dataset(
    cfg: DataConfig, split: str | None = "train", augment: bool | None = None, strict: bool = False
) -> MoreDataset:
    """The Dataset for ``split`` from ``cfg.cache`` (preferred) or ``cfg.manifest``.

    Args:
        augment: default ``cfg.augment and split == "train"``; always off for other splits.
    """
    aug = (cfg.augment if augment is None else augment) and split == "train"
    if cfg.cache:
        return MoreDataset(open_cache(cfg.cache), cfg, split, aug)
    if cfg.manifest:
        return MoreDataset(read_manifest(cfg.manifest), cfg, split, aug, strict=strict)
    raise ConfigError("data.cache or data.manifest must be set")


def worker_init(worker_id: int) -> None:
    """DataLoader worker set-up: one thread per library (workers are the parallelism), seeded RNGs."""
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_dataloader(
    dataset: MoreDataset,
    batch_size: int | None = None,
    *,
    shuffle: bool | None = None,
    num_workers: int | None = None,
    seed: int = 0,
    drop_last: bool | None = None,
    distributed: bool | None = None,
    pin_memory: bool | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader that fetches whole batches (:meth:`MoreDataset.get_batch`) in seeded, persistent workers.

    Args:
        batch_size: default ``dataset.cfg.batch_size``.
        shuffle: default True for the train split; drop_last defaults to the same.
        num_workers: default ``dataset.cfg.num_workers``.
        seed: seeds the shuffling and every worker's augmentation RNG (reproducible runs).
        distributed: shard with a DistributedSampler (default: when torch.distributed is initialised);
            call ``loader.sampler.set_epoch(epoch)`` each epoch.
        pin_memory: default: when CUDA is available.
    """
    batch_size = batch_size or dataset.cfg.batch_size
    shuffle = dataset.split == "train" if shuffle is None else shuffle
    drop_last = shuffle if drop_last is None else drop_last
    workers = dataset.cfg.num_workers if num_workers is None else num_workers
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    sampler = None
    if distributed:
        sampler = torch.utils.data.DistributedSampler(
            dataset, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    if len(dataset) == 0:
        raise ConfigError(f"{dataset!r} has no samples")
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=worker_init if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
