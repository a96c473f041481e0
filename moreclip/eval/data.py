"""The data side of an evaluation: a DataConfig that fits the model, and unaugmented datasets.

:func:`data_config_for` derives the data settings from the model (``data.image_size`` from
``model.xray.img_size``, ``data.ecg_rate`` / ``data.ecg_seconds`` from ``model.ecg``), so 500 Hz records
are resampled to the rate the ECG encoder was built for; a checkpoint's ``config.yaml`` ``data:`` section
(written by the trainer) supplies the normalisation and preprocessing it was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from moreclip.config import DataConfig, from_dict, merge, parse_overrides, read_yaml, to_dict
from moreclip.errors import ConfigError

#: data settings a trainer's config must not impose on evaluation (paths and train-time behaviour)
_NOT_FROM_CHECKPOINT = ("manifest", "cache", "augment", "aug", "batch_size", "num_workers")


def data_config_for(
    model,
    *,
    manifest: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: DataConfig | dict | None = None,
) -> DataConfig:
    """The evaluation DataConfig of ``model``: input sizes from the model, no augmentation.

    Layers, later wins: DataConfig defaults; ``base``; the ``data:`` section of ``checkpoint``'s
    ``config.yaml`` (its preprocessing and normalisation, not its paths); ``image_size`` =
    ``model.xray.img_size``, ``ecg_rate`` = ``model.ecg.sample_rate``, ``ecg_seconds`` =
    ``model.ecg.seconds``; ``manifest`` / ``cache``; then ``key=value`` ``overrides`` (``ecg_norm=minmax``,
    a leading ``data.`` is accepted).

    Args:
        model: a MoRE model or its ModelConfig.
        manifest: manifest to read raw files from ...
        cache: ... or a cache written by ``moreclip prepare`` (preferred when both are given).
        checkpoint: the checkpoint directory the model came from (optional).
        overrides: ``key=value`` strings for DataConfig fields.
        base: a DataConfig (or dict) to start from.
    """
    mcfg = getattr(model, "config", model)
    data: dict = {}
    if base is not None:
        data = to_dict(base) if not isinstance(base, dict) else dict(base)
    if checkpoint is not None and (Path(checkpoint) / "config.yaml").is_file():
        saved = read_yaml(Path(checkpoint) / "config.yaml").get("data")
        if isinstance(saved, dict):
            data = merge(data, {k: v for k, v in saved.items() if k not in _NOT_FROM_CHECKPOINT})
    data.update(
        image_size=int(mcfg.xray.img_size),
        ecg_rate=int(mcfg.ecg.sample_rate),
        ecg_seconds=float(mcfg.ecg.seconds),
        augment=False,
    )
    if manifest is not None:
        data["manifest"] = os.fspath(manifest)
    if cache is not None:
        data["cache"] = os.fspath(cache)
    over = parse_overrides([o[len("data.") :] if o.startswith("data.") else o for o in overrides])
    return from_dict(DataConfig, merge(data, over))


def eval_dataset(cfg: DataConfig, split: str | None = None, strict: bool = False):
    """An unaugmented :class:`~moreclip.data.dataset.MoreDataset` of ``split`` (None: every row)."""
    from moreclip.data.dataset import build_dataset

    return build_dataset(cfg, split=split, augment=False, strict=strict)


def check_inputs(model, dataset, modalities: Sequence[str] = ("xray", "ecg")) -> None:
    """Raise ConfigError when ``dataset`` gives X-rays / ECGs of another size than ``model`` takes.

    Args:
        model: the model.
        dataset: a MoreDataset.
        modalities: the modalities that will be encoded (others are not checked).
    """
    mcfg = model.config
    want_t = int(round(mcfg.ecg.sample_rate * mcfg.ecg.seconds))
    if "ecg" in modalities and dataset.ecg_length != want_t:
        raise ConfigError(
            f"{dataset!r} gives ECGs of {dataset.ecg_length} samples but the model expects {want_t} "
            f"({mcfg.ecg.sample_rate} Hz x {mcfg.ecg.seconds:g} s): build the data config with "
            "moreclip.eval.data_config_for(model, ...) (or prepare the cache at the model's ECG rate)"
        )
    if "xray" in modalities and dataset.image_size != mcfg.xray.img_size:
        raise ConfigError(
            f"{dataset!r} gives {dataset.image_size} px X-rays but the model expects {mcfg.xray.img_size} px: "
            "build the data config with moreclip.eval.data_config_for(model, ...) (or prepare the cache "
            "at the model's image size)"
        )
