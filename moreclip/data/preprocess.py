"""Deterministic preprocessing of one record: the code path shared by ``moreclip prepare`` and the raw Dataset.

ECG, ``(12, T_in)`` millivolts at ``fs`` (from :func:`moreclip.data.ecg.read_ecg`):

1. NaN / inf samples -> 0 (MoRE); counted, and the record is bad when more than ``ecg_nan_max`` of its
   samples are missing;
2. optional zero-phase Butterworth band-pass 0.5-100 Hz at the source rate (the upper edge is dropped when
   it is above 0.45 ``fs``, leaving a high-pass);
3. polyphase resampling to ``ecg_rate`` (``scipy.signal.resample_poly``, Kaiser-windowed FIR);
4. optional baseline removal: the baseline is a 0.2 s then a 0.6 s running median (MoRE, after de Chazal
   et al. 2004), subtracted; edges are reflected, not zero-padded.

The result is ``float32 (12, ecg_rate * ecg_seconds)`` in mV. Per-lead normalisation (z-score, or MoRE's
min-max to [-1, 1]) is *not* baked in: the Dataset applies :func:`normalize_leads` to every batch.

X-ray, 8-bit grey ``(H, W)`` (from :func:`moreclip.data.image.read_image`): resized to ``image_size``
square by ``xray_fit`` (``pad``: keep the aspect ratio, centre on black; ``crop``: cover the square and
take its centre; ``stretch``: ignore the aspect ratio, as MoRE does), then optional CLAHE (OpenCV,
applied to the image content before padding, so black borders do not skew the tile histograms).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from moreclip.errors import RecordError

BANDPASS_HZ = (0.5, 100.0)
BASELINE_WINDOWS_S = (0.2, 0.6)


@dataclass(frozen=True)
class PreprocessOptions:
    """What ``prepare`` bakes into a cache (and the raw Dataset applies per record); see DataConfig."""

    image_size: int = 224
    xray_fit: str = "pad"
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    ecg_rate: int = 100
    ecg_seconds: float = 10.0
    ecg_bandpass: bool = False
    ecg_baseline: str = "median"
    ecg_nan_max: float = 0.05

    @classmethod
    def from_config(cls, cfg: Any = None, **overrides: Any) -> PreprocessOptions:
        """The options named in a :class:`~moreclip.config.DataConfig` (default: its defaults)."""
        from moreclip.config import DataConfig

        cfg = cfg if cfg is not None else DataConfig()
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).checked()

    def checked(self) -> PreprocessOptions:
        from moreclip.errors import ConfigError

        if self.image_size < 8:
            raise ConfigError(f"image_size must be >= 8, got {self.image_size}")
        if self.xray_fit not in ("pad", "crop", "stretch"):
            raise ConfigError(f"xray_fit must be pad, crop or stretch, got {self.xray_fit!r}")
        if self.ecg_rate <= 0 or self.ecg_seconds <= 0:
            raise ConfigError(
                f"ecg_rate and ecg_seconds must be > 0, got {self.ecg_rate}, {self.ecg_seconds}"
            )
        if self.ecg_baseline not in ("none", "median"):
            raise ConfigError(f"ecg_baseline must be none or median, got {self.ecg_baseline!r}")
        if not 0 <= self.ecg_nan_max <= 1:
            raise ConfigError(f"ecg_nan_max must be a fraction in [0, 1], got {self.ecg_nan_max}")
        return self

    @property
    def ecg_length(self) -> int:
        """Samples per lead after resampling, ``T``."""
        return int(round(self.ecg_rate * self.ecg_seconds))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ ECG
def fill_nan(signal: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/inf samples by 0 (MoRE). Returns ``(signal, number replaced)``; copies only when needed."""
    bad = ~np.isfinite(signal)
    count = int(bad.sum())
    if count:
        signal = np.where(bad, 0, signal).astype(signal.dtype, copy=False)
    return signal, count


def bandpass_ecg(
    signal: np.ndarray, fs: float, low: float = BANDPASS_HZ[0], high: float = BANDPASS_HZ[1], order: int = 2
) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis (``sosfiltfilt``; effective order ``2*order``).

    The upper edge is dropped (high-pass only) when it is not below 0.45 ``fs``.
    """
    from scipy.signal import butter, sosfiltfilt

    if high < 0.45 * fs:
        sos = butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    else:
        sos = butter(order, low, btype="highpass", fs=fs, output="sos")
    return sosfiltfilt(sos, signal, axis=-1).astype(np.float32)


def resample_ecg(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis: ``(..., T)`` -> ``(..., ceil(T * fs_out / fs_in))``."""
    from scipy.signal import resample_poly

    if abs(fs_in - fs_out) < 1e-9:
        return np.asarray(signal, dtype=np.float32)
    ratio = Fraction(fs_out / fs_in).limit_denominator(10_000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


def remove_baseline(
    signal: np.ndarray, fs: float, windows: tuple[float, ...] = BASELINE_WINDOWS_S
) -> np.ndarray:
    """Subtract the baseline estimated by successive running medians of ``windows`` seconds.

    Args:
        signal: ``(L, T)`` leads.
        fs: sampling rate of ``signal`` in Hz.
        windows: median window lengths in seconds; each becomes ``round(w * fs) + 1`` samples, made odd.

    Returns:
        ``(L, T)`` float32, ``signal - baseline``.
    """
    from scipy.signal import medfilt

    base = np.asarray(signal, dtype=np.float64)
    for w in windows:
        k = int(round(w * fs)) + 1
        k += 1 - k % 2  # odd
        half = min(k // 2, base.shape[-1] - 1)
        padded = np.pad(base, ((0, 0), (half, half)), mode="reflect")
        # scipy's 1-D medfilt is far faster than a 2-D kernel; reflecting the edges avoids its zero padding
        base = np.stack([medfilt(row, k)[half : half + base.shape[-1]] for row in padded])
    return (np.asarray(signal, dtype=np.float64) - base).astype(np.float32)


def normalize_leads(x: np.ndarray, mode: str, eps: float = 1e-6) -> np.ndarray:
    """Per-lead normalisation along the last axis, in place on float arrays ``(..., 12, T)``.

    ``zscore``: zero mean, unit std; ``minmax``: MoRE's ``2 (x - min) / (max - min) - 1`` into [-1, 1];
    ``none``: unchanged. A flat lead becomes 0 (``zscore``) or -1 (``minmax``) instead of NaN.
    """
    if mode == "none":
        return x
    if mode == "zscore":
        t = x.shape[-1]
        x -= np.add.reduce(x, axis=-1, keepdims=True) / t
        var = np.einsum("...t,...t->...", x, x)[..., None] / t  # no temporary of x's size
        x *= 1.0 / (np.sqrt(var) + eps)
        return x
    if mode == "minmax":
        lo = x.min(axis=-1, keepdims=True)
        hi = x.max(axis=-1, keepdims=True)
        x -= lo
        x *= 2.0 / (hi - lo + eps)
        x -= 1.0
        return x
    raise ValueError(f"unknown ECG normalisation {mode!r} (expected zscore, minmax or none)")


def preprocess_ecg(
    signal: np.ndarray, fs: float, opts: PreprocessOptions, path: str | os.PathLike | None = None
) -> tuple[np.ndarray, int]:
    """Steps 1-4 of the module docstring on one record.

    Args:
        signal: ``(12, T_in)`` millivolts at ``fs`` Hz, ``T_in == fs * opts.ecg_seconds``.
        path: named in the error when the record has too many NaNs.

    Returns:
        ``(float32 (12, opts.ecg_length), number of NaN samples replaced by 0)``.
    """
    signal, n_nan = fill_nan(np.asarray(signal, dtype=np.float32))
    if n_nan > opts.ecg_nan_max * signal.size:
        raise RecordError(
            path,
            f"{n_nan} of {signal.size} samples are NaN ({100 * n_nan / signal.size:.1f}%, "
            f"more than the limit of {100 * opts.ecg_nan_max:g}%)",
        )
    if opts.ecg_bandpass:
        signal = bandpass_ecg(signal, fs)
    signal = resample_ecg(signal, fs, opts.ecg_rate)
    if opts.ecg_baseline == "median":
        signal = remove_baseline(signal, opts.ecg_rate)
    t = opts.ecg_length
    if signal.shape[-1] != t:  # odd rate ratios can leave one sample more or less
        signal = np.pad(signal[:, :t], ((0, 0), (0, max(0, t - signal.shape[-1]))), mode="edge")
    return np.ascontiguousarray(signal, dtype=np.float32), n_nan


def load_ecg(record: str | os.PathLike, opts: PreprocessOptions) -> tuple[np.ndarray, int]:
    """Read a WFDB record (:func:`~moreclip.data.ecg.read_ecg`, which checks leads and length) and preprocess it.

    Raises:
        RecordError: missing/corrupt file, wrong leads, wrong duration, too many NaNs.
    """
    from moreclip.data.ecg import read_ecg

    rec = read_ecg(record, expected_seconds=opts.ecg_seconds)
    return preprocess_ecg(rec.signal, rec.fs, opts, path=f"{rec.path}.hea")


# --------------------------------------------------------------------------------------------- X-ray
def fit_geometry(h: int, w: int, size: int, fit: str) -> tuple[int, int, int, int]:
    """Where an ``(h, w)`` image goes in a ``size`` square: ``(new_h, new_w, top, left)``.

    ``pad``: scaled so the longer side is ``size``, ``top``/``left`` >= 0 are the black margins before it.
    ``crop``: scaled so the shorter side is ``size``, ``top``/``left`` >= 0 are the offsets of the centre
    crop inside the scaled image. ``stretch``: ``(size, size, 0, 0)``.
    """
    if fit == "stretch":
        return size, size, 0, 0
    if fit == "pad":
        s = size / max(h, w)
        nh, nw = min(size, max(1, round(h * s))), min(size, max(1, round(w * s)))
        return nh, nw, (size - nh) // 2, (size - nw) // 2
    if fit == "crop":
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        return nh, nw, (nh - size) // 2, (nw - size) // 2
    raise ValueError(f"unknown fit {fit!r} (expected pad, crop or stretch)")


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """OpenCV resize of a uint8 image to ``(h, w)``: area averaging when shrinking, bilinear when growing."""
    import cv2

    if img.shape == (h, w):
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def apply_clahe(img: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (``cv2.createCLAHE``) of a uint8 image."""
    import cv2

    return cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles))).apply(img)


def preprocess_xray(img: np.ndarray, opts: PreprocessOptions) -> np.ndarray:
    """Grey uint8 ``(H, W)`` -> uint8 ``(S, S)``, ``S = opts.image_size``: fit, then optional CLAHE."""
    size = opts.image_size
    nh, nw, top, left = fit_geometry(*img.shape[:2], size, opts.xray_fit)
    content = resize(img, nh, nw)
    if opts.xray_fit == "crop":
        content = content[top : top + size, left : left + size]
    if opts.clahe:
        content = apply_clahe(np.ascontiguousarray(content), opts.clahe_clip, opts.clahe_tiles)
    if opts.xray_fit != "pad":
        return np.ascontiguousarray(content)
    out = np.zeros((size, size), dtype=np.uint8)
    out[top : top + nh, left : left + nw] = content
    return out


def load_xray(path: str | os.PathLike, opts: PreprocessOptions) -> np.ndarray:
    """Decode an image file (:func:`~moreclip.data.image.read_image`) and preprocess it to ``(S, S)`` uint8.

    Raises:
        RecordError: missing or undecodable file.
    """
    from moreclip.data.image import read_image

    return preprocess_xray(read_image(path, max_side=opts.image_size), opts)
