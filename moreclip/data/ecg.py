"""12-lead ECG records in WFDB format: reading with canonical lead order, and the checks every reader shares.

Data sets order their leads differently (MIMIC-IV-ECG puts aVF before aVL), so every record is reordered
by its ``sig_name`` to :data:`~moreclip.config.CANONICAL_LEADS` (I, II, III, aVR, aVL, aVF, V1-V6),
case-insensitively. Signals come back in millivolts as ``float32`` arrays of shape ``(12, T)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from moreclip.config import CANONICAL_LEADS
from moreclip.errors import RecordError

_CANON_BY_KEY = {name.lower(): i for i, name in enumerate(CANONICAL_LEADS)}
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


@dataclass
class EcgRecord:
    signal: np.ndarray  # (12, T) float32, millivolts, canonical lead order
    fs: float  # sampling rate in Hz
    path: str  # record path without extension

    @property
    def seconds(self) -> float:
        return self.signal.shape[1] / self.fs


def record_path(path: str | os.PathLike) -> str:
    """A WFDB record path without extension (``x/rec.hea`` and ``x/rec.dat`` both give ``x/rec``)."""
    p = os.fspath(path)
    for ext in (".hea", ".dat", ".mat"):
        if p.endswith(ext):
            return p[: -len(ext)]
    return p


def lead_order(sig_name: list[str], path: str | os.PathLike | None = None) -> list[int]:
    """Indices that reorder ``sig_name`` to the canonical 12 leads; a clear error when leads are missing."""
    keys = [str(n).strip().lower() for n in sig_name]
    missing = [lead for lead in CANONICAL_LEADS if lead.lower() not in keys]
    if len(keys) != len(CANONICAL_LEADS) or missing:
        extra = sorted({n for n, k in zip(sig_name, keys) if k not in _CANON_BY_KEY})
        parts = [f"{len(keys)} leads, expected the 12 standard leads"]
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(map(str, extra))}")
        if len(set(keys)) != len(keys):
            parts.append("duplicated lead names")
        raise RecordError(path, "; ".join(parts))
    if len(set(keys)) != len(keys):
        raise RecordError(path, f"duplicated lead names in {sig_name}")
    return [keys.index(lead.lower()) for lead in CANONICAL_LEADS]


def _check_header(
    header, hea: Path, expected_fs, expected_seconds
) -> tuple[list[int], float, int, list[str]]:
    """``(lead order, fs, samples, signal files)`` of a parsed header (or record); raises on a bad rate or
    length."""
    order = lead_order(list(header.sig_name or []), hea)
    fs = float(header.fs or 0)
    if fs <= 0:
        raise RecordError(hea, f"invalid sampling rate {header.fs!r}")
    if expected_fs is not None and abs(fs - expected_fs) > 1e-6:
        raise RecordError(hea, f"sampling rate {fs:g} Hz, expected {expected_fs:g} Hz")
    n = int(header.sig_len or 0)
    if expected_seconds is not None and n != round(fs * expected_seconds):
        raise RecordError(
            hea,
            f"{n} samples at {fs:g} Hz is {n / fs:g} s, expected {expected_seconds:g} s "
            f"({round(fs * expected_seconds)} samples)",
        )
    return order, fs, n, sorted({str(f) for f in (header.file_name or [])})


def _diagnose(rec: str, hea: Path, error: Exception, expected_fs, expected_seconds) -> NoReturn:
    """Raise the :class:`RecordError` that says why ``wfdb.rdrecord`` failed with ``error``: an unreadable
    header, a bad rate or length, a missing signal file, else an unreadable or truncated one."""
    import wfdb

    try:
        header = wfdb.rdheader(rec)
    except Exception as e:  # wfdb raises bare ValueError/IndexError on malformed headers
        raise RecordError(hea, f"unreadable WFDB header ({type(e).__name__}: {e})") from None
    *_, files = _check_header(header, hea, expected_fs, expected_seconds)
    for f in files:
        if not (hea.parent / f).is_file():
            raise RecordError(hea.parent / f, "signal file named by the header not found")
    where = hea.parent / files[0] if files else hea
    raise RecordError(
        where, f"signal file unreadable or truncated ({type(error).__name__}: {error})"
    ) from None


def read_ecg(
    record: str | os.PathLike,
    *,
    expected_fs: float | None = None,
    expected_seconds: float | None = None,
    allow_nan: bool = True,
) -> EcgRecord:
    """Read a 12-lead WFDB record (path with or without ``.hea``) and check it.

    Args:
        record: the record path; its ``.hea`` header names the signal file(s).
        expected_fs: raise when the header's sampling rate differs.
        expected_seconds: raise when the number of samples is not ``fs * expected_seconds``.
        allow_nan: when False, raise on NaN samples (WFDB stores gaps as NaN).

    Returns:
        An :class:`EcgRecord` with ``signal`` of shape ``(12, T)``, millivolts, canonical lead order.

    Raises:
        RecordError: naming the file and the problem (missing, truncated, wrong shape or rate, NaN).
    """
    import wfdb  # imported here: wfdb pulls in pandas/matplotlib helpers on import

    rec = record_path(record)
    hea = Path(rec + ".hea")
    if not hea.is_file():
        raise RecordError(hea, "WFDB header not found")
    # the header is parsed once on the happy path (wfdb's parser costs ~5 ms a record); only a record
    # that does not read is taken apart again, to say what is wrong with it
    try:
        r = wfdb.rdrecord(rec, physical=True)
    except Exception as e:
        _diagnose(rec, hea, e, expected_fs, expected_seconds)
    order, fs, n, _ = _check_header(r, hea, expected_fs, expected_seconds)
    sig = r.p_signal
    if sig is None or sig.ndim != 2 or sig.shape[0] != n:
        raise RecordError(
            hea, f"decoded signal has shape {None if sig is None else sig.shape}, header says {n}"
        )
    sig = np.asarray(sig, dtype=np.float64)[:, order].T  # (12, T)
    units = [str(u).strip().lower() for u in (r.units or ["mV"] * len(order))]
    scale = np.array([_UNIT_TO_MV.get(units[i], 1.0) for i in order])[:, None]
    sig = (sig * scale).astype(np.float32)
    if not allow_nan:
        bad = np.isnan(sig).any(axis=1)
        if bad.any():
            leads = [CANONICAL_LEADS[i] for i in np.flatnonzero(bad)]
            count = int(np.isnan(sig).sum())
            raise RecordError(hea, f"{count} NaN samples in lead(s) {', '.join(leads)}")
    return EcgRecord(signal=sig, fs=fs, path=rec)


def write_ecg(
    record: str | os.PathLike, signal: np.ndarray, fs: float, leads: tuple[str, ...] = CANONICAL_LEADS
) -> None:
    """Write ``signal`` ``(len(leads), T)`` in mV as a WFDB record (16-bit, 1 µV resolution)."""
    import wfdb

    rec = record_path(record)
    directory, name = os.path.split(rec)
    sig = np.asarray(signal, dtype=np.float64).T  # (T, L)
    n_sig = sig.shape[1]
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * n_sig,
        sig_name=list(leads),
        p_signal=sig,
        fmt=["16"] * n_sig,
        adc_gain=[1000.0] * n_sig,
        baseline=[0] * n_sig,
        write_dir=directory or ".",
    )
