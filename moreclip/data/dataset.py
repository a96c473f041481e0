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

Speed: the DataLoader asks for whole batches (``__getitems__`` -> :meth:`MoreDataset.compact_batch`): one
gather from each memory map into a shared slot (:mod:`moreclip.data.slots`), geometric augmentation on
the ``uint8``/``float16`` arrays, and the random parameters of the rest;
:func:`~moreclip.data.batch.finalize_batch` then converts, normalises and augments the batch in the
consuming process or on the GPU. Use :func:`make_dataloader` (or a DataLoader with
``collate_fn=collate``), not torch's default collate. The raw path decodes each record with the
:mod:`moreclip.data.preprocess` functions ``prepare`` uses and rounds ECGs to float16 like the cache, so
both paths give identical tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from moreclip.config import MODALITIES, DataConfig
from moreclip.data import augment as A
from moreclip.data import slots
from moreclip.data.batch import finalize_batch, make_dataloader
from moreclip.data.cache import Cache, open_cache
from moreclip.data.manifest import SPLITS, Manifest, read_manifest
from moreclip.data.preprocess import PreprocessOptions, load_ecg, load_xray
from moreclip.errors import ConfigError, RecordError

__all__ = ["MoreDataset", "build_dataset", "collate", "finalize_batch", "make_dataloader"]
log = logging.getLogger(__name__)
_BAKED = ("xray_fit", "clahe", "clahe_clip", "clahe_tiles", "ecg_bandpass", "ecg_baseline")


class MoreDataset(torch.utils.data.Dataset):
    """Samples of one split of a cache (:class:`~moreclip.data.cache.Cache`) or a :class:`Manifest`.

    Args:
        source: an open cache (fast path) or a manifest (decodes raw files per batch).
        cfg: the data config (image size, ECG rate/length, normalisation, augmentation).
        split: ``train`` / ``val`` / ``test``, or None for every row.
        augment: train-time augmentation (see :mod:`moreclip.data.augment`); ignored for val/test.
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
        self.split, self.strict = split, strict
        self.augment = bool(augment) and split in (None, "train")  # never on val/test
        self._nan_logged: set[int] = set()
        if split is not None and split not in SPLITS:
            raise ConfigError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")
        wanted = PreprocessOptions.from_config(self.cfg)
        if isinstance(source, Cache):
            self.cache, self.manifest, self.options = source, None, source.options
            table, self.label_names = source.index, list(source.label_columns)
            self._check_cache(wanted)
        else:
            self.cache, self.manifest, self.options = None, source, wanted
            table, self.label_names = source.df, list(source.label_columns)
        present = {m: source.has(m) for m in MODALITIES}  # the cache's: after preprocessing
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
    def _read_cache(self, rows: np.ndarray, modality: str, out: np.ndarray) -> None:
        if modality in self.cache.modalities:
            np.take(self.cache.array(modality), rows, axis=0, out=out)  # one gather from the memory map
        else:
            out.fill(0)

    def _read_raw(
        self, rows: np.ndarray, mask: dict[str, np.ndarray], xray: np.ndarray, ecg: np.ndarray
    ) -> None:
        xray.fill(0)
        ecg.fill(0)
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
                    ecg[j] = value[0]  # float16, like the cache
                    if value[1] and int(row) not in self._nan_logged:
                        self._nan_logged.add(int(row))
                        log.warning("row %d: %d NaN ECG samples set to 0 (%s)", row, value[1], path)

    def _rng(self) -> np.random.Generator:
        # torch's RNG is seeded per worker and epoch by the DataLoader (and by torch.manual_seed in-process)
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    # ----------------------------------------------------------------------------------- batches
    def compact_batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The batch of dataset positions ``indices`` in compact form (what DataLoader workers ship).

        Holds numpy ``xray_u8`` uint8 ``(B, 1, S, S)`` and ``ecg_f16`` float16 ``(B, 12, T)`` after the geometric
        augmentations, the drawn intensity-augmentation parameters (``aug``) and the normalisation
        (``norm``); :func:`~moreclip.data.batch.finalize_batch` turns it into the batch contract.
        """
        pos = np.asarray(indices, dtype=np.int64)
        rows = self.rows[pos]
        n, cfg, aug = len(pos), self.cfg, self.cfg.aug
        mask = {m: self.present[m][pos].copy() for m in MODALITIES}
        xray, ecg, slot = slots.batch_arrays(n, self.image_size, self.ecg_length)  # shared, in a worker
        if self.cache is not None:
            self._read_cache(rows, "xray", xray[:, 0])
            self._read_cache(rows, "ecg", ecg)
        else:
            self._read_raw(rows, mask, xray[:, 0], ecg)
        reports = {m: self.reports[m][pos].tolist() for m in ("xray_report", "ecg_report")}
        params = None
        if self.augment:
            rng = self._rng()
            A.xray_resized_crop(xray[:, 0], rng, aug.xray_crop, aug.xray_ratio)
            A.ecg_time_crop(torch.from_numpy(ecg), rng, aug.ecg_crop)
            params = {
                "xray": {
                    **A.sample_brightness_contrast(rng, n, aug.xray_brightness, aug.xray_contrast),
                    "mean": xray.reshape(n, -1).sum(axis=1, dtype=np.uint64) / np.float32(255 * xray[0].size),
                },
                "ecg": A.sample_ecg_jitter(rng, n, 12, aug.ecg_scale, aug.ecg_noise, aug.ecg_lead_dropout),
            }
            for m, texts in reports.items():
                reports[m] = [A.shuffle_sentences(t, rng, aug.text_shuffle, aug.text_drop) for t in texts]
        # from a worker, the arrays travel in their shared slot (moreclip.data.slots), or pickled
        return slots.CompactBatch(
            {
                "index": rows,
                "sample_id": self.sample_ids[pos].tolist(),
                "xray_u8": xray,
                "ecg_f16": ecg,
                **reports,
                "mask": mask,
                "labels": np.ascontiguousarray(self.labels[pos]),
                "aug": params,
                "norm": {"ecg": cfg.ecg_norm, "xray_mean": cfg.xray_mean, "xray_std": cfg.xray_std},
                "slot": slot,
            }
        )

    def get_batch(self, indices: Sequence[int], device: torch.device | str | None = None) -> dict[str, Any]:
        """The finished batch of dataset positions ``indices`` (see the module docstring)."""
        return finalize_batch(self.compact_batch(indices), device)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        return self.compact_batch(indices)

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
    """Stack items into a batch; a compact batch (from ``__getitems__``) is finished, a finished one passes."""
    if isinstance(items, dict):
        return finalize_batch(items)
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
