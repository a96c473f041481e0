"""Frozen embeddings of a dataset: every present modality of every sample, in one pass, in eval mode.

    cfg = data_config_for(model, manifest="cohort/manifest.parquet")   # image size / ECG rate from the model
    ds = eval_dataset(cfg, split=None)                                  # every split, no augmentation
    emb = embed_dataset(model, ds, modalities=["ecg", "ecg_report"])
    test = emb.subset(emb.splits == "test")
    x, ok = test.get("ecg")                                             # (N, D) float32, (N,) bool

Only the rows where a modality is present are encoded (``model(batch)`` skips absent rows); modalities
that no sample has are not run at all. The model runs under ``torch.inference_mode`` in eval mode (its
training flag is restored afterwards) and the dataset never augments outside the train split; pass a
dataset built with ``augment=False`` (as :func:`eval_dataset` does) to embed training rows unaugmented.

:func:`~moreclip.eval.data.data_config_for` (re-exported here) derives the data settings from the model
(image size, ECG rate and length), so 500 Hz records are resampled to the rate the ECG encoder takes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moreclip.errors import ConfigError
from moreclip.eval.data import check_inputs, data_config_for, eval_dataset

__all__ = ["Embeddings", "check_inputs", "data_config_for", "embed_dataset", "embed_texts", "ensure_embeddings",
           "eval_dataset", "fuse"]  # fmt: skip

log = logging.getLogger(__name__)

EMBED_MODALITIES = ("xray", "ecg", "xray_report", "ecg_report", "report")


@dataclass
class Embeddings:
    """Embeddings of the samples of a dataset (row ``i`` of every array is the same sample).

    Attributes:
        sample_ids: ``(N,)`` str.
        rows: ``(N,)`` int64 manifest rows.
        embeddings: modality -> ``(N, D)`` float32 L2-normalised embeddings; zero rows where absent.
        masks: modality -> ``(N,)`` bool presence (after decoding: a record that failed to load is absent).
        labels: ``(N, L)`` float32 label values (1 / 0 / -1 / class values), NaN unknown.
        label_names: the ``L`` label columns.
        subject_ids: ``(N,)`` str, or None when the source has none.
        splits: ``(N,)`` str (train / val / test), or None.
        meta: free-form provenance (model name, data source, ...).
    """

    sample_ids: np.ndarray
    rows: np.ndarray
    embeddings: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    labels: np.ndarray
    label_names: list[str]
    subject_ids: np.ndarray | None = None
    splits: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}: {int(self.masks[m].sum())}" for m in self.modalities)
        return f"Embeddings(n={len(self)}, dim={self.dim}, present={{{mods}}})"

    @property
    def modalities(self) -> list[str]:
        return list(self.embeddings)

    @property
    def dim(self) -> int | None:
        return next((e.shape[1] for e in self.embeddings.values()), None)

    def get(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(N, D)`` embeddings and ``(N,)`` presence of ``modality``, or of fused modalities ``"xray+ecg"``.

        A fused name (modalities joined by ``+``) is the normalised mean of the present parts' embeddings,
        present where any part is.
        """
        parts = modality.split("+")
        for p in parts:
            if p not in self.embeddings:
                raise ConfigError(f"no {p} embeddings (embedded: {', '.join(self.modalities) or 'none'})")
        if len(parts) == 1:
            return self.embeddings[modality], self.masks[modality]
        return fuse([self.embeddings[p] for p in parts], [self.masks[p] for p in parts])

    def frame(self):
        """The labels as a pandas DataFrame (columns ``label_names``), what :meth:`Task.targets` reads."""
        import pandas as pd

        return pd.DataFrame(self.labels.astype(np.float64), columns=list(self.label_names))

    def subset(self, select: np.ndarray | Sequence[int] | str) -> Embeddings:
        """The samples selected by a boolean mask, by positions, or by a split name."""
        if isinstance(select, str):
            if self.splits is None:
                raise ConfigError(f"these embeddings carry no split column; cannot select '{select}'")
            select = self.splits == select
        idx = np.asarray(select)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean selection of length {idx.size} for {len(self)} samples")
            idx = np.flatnonzero(idx)
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return Embeddings(
            sample_ids=self.sample_ids[idx],
            rows=self.rows[idx],
            embeddings={m: e[idx] for m, e in self.embeddings.items()},
            masks={m: k[idx] for m, k in self.masks.items()},
            labels=self.labels[idx],
            label_names=list(self.label_names),
            subject_ids=take(self.subject_ids),
            splits=take(self.splits),
            meta=dict(self.meta),
        )

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (no pickled objects; strings as unicode arrays), atomically."""
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "sample_ids": self.sample_ids.astype(str),
            "rows": self.rows,
            "labels": self.labels,
            "label_names": np.array(self.label_names, dtype=str),
            "meta": np.array(json.dumps(self.meta, default=str)),
        }
        for m in self.modalities:
            arrays[f"emb/{m}"], arrays[f"mask/{m}"] = self.embeddings[m], self.masks[m]
        if self.subject_ids is not None:
            arrays["subject_ids"] = self.subject_ids.astype(str)
        if self.splits is not None:
            arrays["splits"] = self.splits.astype(str)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Embeddings:
        """Read embeddings written by :meth:`save`."""
        import json

        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            mods = [k[4:] for k in z.files if k.startswith("emb/")]
            obj = lambda k: z[k].astype(object) if k in keys else None  # noqa: E731
            return cls(
                sample_ids=z["sample_ids"].astype(object),
                rows=z["rows"],
                embeddings={m: z[f"emb/{m}"] for m in mods},
                masks={m: z[f"mask/{m}"] for m in mods},
                labels=z["labels"],
                label_names=z["label_names"].tolist(),
                subject_ids=obj("subject_ids"),
                splits=obj("splits"),
                meta=json.loads(str(z["meta"])),
            )


def fuse(embs: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised mean of the present embeddings per row.

    Args:
        embs: ``K`` arrays ``(N, D)``.
        masks: ``K`` presence arrays ``(N,)``.

    Returns:
        ``(N, D)`` float32 (zeros where no part is present) and ``(N,)`` bool (any part present).
    """
    total = np.zeros_like(np.asarray(embs[0], dtype=np.float32))
    for e, m in zip(embs, masks):
        total += np.asarray(e, dtype=np.float32) * np.asarray(m, dtype=np.float32)[:, None]
    norm = np.linalg.norm(total, axis=1, keepdims=True)
    present = np.logical_or.reduce([np.asarray(m, bool) for m in masks])
    return np.where(norm > 0, total / np.maximum(norm, 1e-12), 0.0).astype(np.float32), present


def _source_table(dataset):
    return dataset.cache.index if dataset.cache is not None else dataset.manifest.df


# ----------------------------------------------------------------------------------------- embed
def embed_dataset(
    model,
    dataset,
    modalities: Sequence[str] | None = None,
    batch_size: int = 64,
    progress: bool = True,
    num_workers: int | None = None,
    device=None,
) -> Embeddings:
    """Embed every present modality of every sample of ``dataset`` with the frozen ``model``.

    Args:
        model: a MoRE model (its device is used unless ``device`` is given).
        dataset: a :class:`~moreclip.data.dataset.MoreDataset` (any split; build it with
            :func:`data_config_for` so sizes match the model).
        modalities: any of ``xray``, ``ecg``, ``xray_report``, ``ecg_report`` (and ``report``, the two
            reports joined, with a shared text encoder); default: the first four, those the data has.
            A requested modality no sample has gets an all-absent entry.
        batch_size: samples per forward pass.
        progress: show a tqdm bar.
        num_workers: DataLoader workers (default: 0 over a cache, ``dataset.cfg.num_workers`` over raw
            files, which are decoded per batch).
        device: where to run the model (default: where it is).

    Returns:
        :class:`Embeddings` in dataset order.
    """
    import torch
    from tqdm.auto import tqdm

    from moreclip.data.batch import make_dataloader

    mods = list(modalities) if modalities is not None else list(EMBED_MODALITIES[:4])
    bad = [m for m in mods if m not in EMBED_MODALITIES]
    if bad:
        raise ConfigError(f"unknown modalities {bad} (expected any of {', '.join(EMBED_MODALITIES)})")
    present = dict(dataset.present)
    present["report"] = present["xray_report"] | present["ecg_report"]
    run = [m for m in mods if present[m].any()]
    if modalities is None:
        mods = run
    check_inputs(model, dataset, run)
    n, dim = len(dataset), model.embed_dim
    out = {m: np.zeros((n, dim), np.float32) for m in mods}
    masks = {m: np.zeros(n, bool) for m in mods}
    if device is not None:
        model.to(device)
    was_training = model.training
    model.eval()
    if num_workers is None:
        num_workers = 0 if dataset.cache is not None else int(dataset.cfg.num_workers)
    try:
        if run and n:
            dev = model.device
            loader = make_dataloader(  # on a GPU, batches are converted and normalised there
                dataset,
                batch_size,
                shuffle=False,
                drop_last=False,
                num_workers=num_workers,
                device=dev if dev.type == "cuda" else None,
            )
            pos = 0
            bar = tqdm(total=n, desc=f"embed {'+'.join(run)}", unit="sample", disable=not progress)
            with torch.inference_mode(), bar:
                for batch in loader:
                    b = len(batch["sample_id"])
                    emb = model(batch, modalities=run)
                    for m in run:
                        out[m][pos : pos + b] = emb[m].float().cpu().numpy()
                        mk = _report_mask(batch) if m == "report" else batch["mask"][m]
                        masks[m][pos : pos + b] = mk.cpu().numpy()
                    pos += b
                    bar.update(b)
            if pos != n:  # pragma: no cover - a DataLoader never drops rows with drop_last=False
                raise RuntimeError(f"embedded {pos} of {n} samples")
    finally:
        model.train(was_training)
    table = _source_table(dataset)
    sel = dataset.rows
    subject = table["subject_id"].to_numpy(dtype=object)[sel] if "subject_id" in table else None
    splits = table["split"].to_numpy(dtype=object)[sel] if "split" in table else None
    src = dataset.cache.path if dataset.cache is not None else dataset.manifest.path
    meta = {
        "model": getattr(model.config, "name", None),
        "source": None if src is None else str(src),
        "source_kind": "cache" if dataset.cache is not None else "manifest",
        "split": dataset.split,
    }
    return Embeddings(
        sample_ids=np.asarray(dataset.sample_ids, dtype=object),
        rows=np.asarray(dataset.rows, dtype=np.int64),
        embeddings=out,
        masks=masks,
        labels=np.asarray(dataset.labels, dtype=np.float32),
        label_names=list(dataset.label_names),
        subject_ids=subject,
        splits=splits,
        meta=meta,
    )


def _report_mask(batch):
    import torch

    return torch.as_tensor(batch["mask"]["xray_report"]) | torch.as_tensor(batch["mask"]["ecg_report"])


def embed_texts(model, texts: Sequence[str], kind: str = "report", batch_size: int = 256) -> np.ndarray:
    """``(P, D)`` float32 embeddings of ``texts`` (prompts) in eval mode, ``batch_size`` at a time.

    Args:
        model: a MoRE model.
        texts: the texts.
        kind: the text stream (``xray_report`` / ``ecg_report`` / ``report``).
        batch_size: texts per forward pass.
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [
                model.encode_text(list(texts[i : i + batch_size]), kind=kind).float().cpu().numpy()
                for i in range(0, len(texts), batch_size)
            ]
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, model.embed_dim), np.float32)


def ensure_embeddings(
    model, data, modalities: Sequence[str], batch_size: int = 64, progress: bool = True
) -> Embeddings:
    """``data`` as :class:`Embeddings` holding ``modalities`` (fused names like ``xray+ecg`` allowed).

    Args:
        model: the model that embeds ``data`` when it is a dataset (unused for Embeddings).
        data: :class:`Embeddings` (checked) or a MoreDataset (embedded now).
        modalities: what the caller reads.
        batch_size: samples per forward pass.
        progress: show a progress bar.
    """
    parts = list(dict.fromkeys(p for m in modalities for p in m.split("+")))
    if isinstance(data, Embeddings):
        missing = [p for p in parts if p not in data.embeddings]
        if missing:
            raise ConfigError(f"the embeddings lack {', '.join(missing)} (have {', '.join(data.modalities)})")
        return data
    if model is None:
        raise ConfigError("a model is needed to embed a dataset (or pass precomputed Embeddings)")
    return embed_dataset(model, data, modalities=parts, batch_size=batch_size, progress=progress)
