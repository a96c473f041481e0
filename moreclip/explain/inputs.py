"""Single inputs for explanations, preprocessed exactly as the model's training data was.

The preprocessing choices live in a :class:`~moreclip.config.DataConfig`: a checkpoint folder written by
the trainer keeps it as the ``data:`` section of its ``config.yaml``, which
``moreclip.eval.data_config_for(model, checkpoint=DIR)`` reads (a bare model checkpoint has none and gets
the defaults); pass that as ``data_cfg``. The sizes always come from the model itself
(``model.xray.img_size``, ``model.ecg.sample_rate * seconds``), since those are what its encoders accept. The steps are the ones
``moreclip prepare`` and the Dataset apply (:mod:`moreclip.data.preprocess`, then the batch's
normalisation): X-ray fit/CLAHE then ``(x / 255 - mean) / std``; ECG NaN fill, optional band-pass,
resampling, baseline removal, float16 rounding (as the cache stores it), per-lead normalisation.

For display, :func:`ecg_input` also keeps the signal in millivolts after the same filtering but at the
source rate when that is higher than the model's (a 500 Hz trace reads better than its 100 Hz copy);
attributions are interpolated onto that time axis by the renderer.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch

from moreclip.config import DataConfig


@dataclass
class XrayInput:
    """A radiograph ready for the model and for display."""

    tensor: torch.Tensor  # (1, 1, S, S) normalised, what the encoder sees
    image: np.ndarray  # (S, S) uint8 after fit / CLAHE, what the maps are drawn over
    path: str | None = None


@dataclass
class EcgInput:
    """A 12-lead ECG ready for the model and for display."""

    tensor: torch.Tensor  # (1, 12, T) per-lead normalised at the model's rate
    signal: np.ndarray  # (12, T_display) float32 mV, filtered, at ``fs`` (for plotting)
    fs: float  # sampling rate of ``signal``
    model_fs: float  # sampling rate of ``tensor``
    path: str | None = None


def _options(model, data_cfg: DataConfig | None):
    from moreclip.data.preprocess import PreprocessOptions
    from moreclip.eval.data import data_config_for

    cfg = data_config_for(model, base=data_cfg)  # sizes from the model, the rest from data_cfg
    return cfg, PreprocessOptions.from_config(cfg)


def xray_input(image, model, data_cfg: DataConfig | None = None) -> XrayInput:
    """Read and preprocess one radiograph for ``model``.

    Args:
        image: an image file path, a grey ``(H, W)`` uint8 array (any size; fitted like the data), or an
            :class:`XrayInput` (returned as is).
        model: the model (its ``xray.img_size``).
        data_cfg: the training preprocessing (fit, CLAHE, mean/std); default DataConfig() (see the
            module docstring).

    Raises:
        RecordError: missing or undecodable image file.
    """
    from moreclip.data.preprocess import load_xray, preprocess_xray

    if isinstance(image, XrayInput):
        return image
    cfg, opts = _options(model, data_cfg)
    path = None
    if isinstance(image, str | os.PathLike):
        path = os.fspath(image)
        img = load_xray(path, opts)
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # RGB(A) -> grey like Pillow's "L"
            arr = (arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round()
        if arr.ndim != 2:
            raise ValueError(f"expected a grey (H, W) image, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = preprocess_xray(arr, opts)
    x = torch.from_numpy(img.astype(np.float32) / 255.0)
    x = (x - cfg.xray_mean) / cfg.xray_std
    return XrayInput(tensor=x[None, None], image=img, path=path)


def ecg_input(signal, model, data_cfg: DataConfig | None = None, fs: float | None = None) -> EcgInput:
    """Read and preprocess one 12-lead ECG for ``model``.

    Args:
        signal: a WFDB record path (with or without ``.hea``), a ``(12, T)`` array in mV at ``fs`` Hz
            (canonical lead order, ``T = fs * seconds``), or an :class:`EcgInput` (returned as is).
        model: the model (its ECG rate and length).
        data_cfg: the training preprocessing (band-pass, baseline, normalisation); default DataConfig().
        fs: sampling rate of an array ``signal`` (required then).

    Raises:
        RecordError: missing/corrupt record, wrong leads or duration, too many NaNs.
    """
    from moreclip.data.ecg import read_ecg
    from moreclip.data.preprocess import normalize_leads, preprocess_ecg

    if isinstance(signal, EcgInput):
        return signal
    cfg, opts = _options(model, data_cfg)
    path = None
    if isinstance(signal, str | os.PathLike):
        rec = read_ecg(signal, expected_seconds=opts.ecg_seconds)
        raw, fs, path = rec.signal, rec.fs, rec.path
        where = f"{rec.path}.hea"
    else:
        if fs is None:
            raise ValueError("give the sampling rate fs of an ECG array")
        raw = np.asarray(signal, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[0] != 12 or raw.shape[1] != round(fs * opts.ecg_seconds):
            raise ValueError(
                f"ECG array of shape {raw.shape}; expected (12, {round(fs * opts.ecg_seconds)}) "
                f"({opts.ecg_seconds:g} s at {fs:g} Hz)"
            )
        where = None
    model_sig, _ = preprocess_ecg(raw, fs, opts, path=where)
    x = model_sig.astype(np.float16).astype(np.float32)  # the cache's precision
    x = normalize_leads(np.ascontiguousarray(x), cfg.ecg_norm)
    if fs > opts.ecg_rate:  # same filtering, no downsampling, for a finer trace
        display_opts = dataclasses.replace(opts, ecg_rate=int(round(fs)))
        display, _ = preprocess_ecg(raw, fs, display_opts, path=where)
        display_fs = float(round(fs))
    else:
        display, display_fs = model_sig, float(opts.ecg_rate)
    return EcgInput(
        tensor=torch.from_numpy(x)[None],
        signal=display,
        fs=display_fs,
        model_fs=float(opts.ecg_rate),
        path=path,
    )
