"""The embedded synthetic tri-modal cohort: radiographs, 12-lead ECGs and both reports, in the real formats.

Each patient's latent truth is drawn first (:mod:`moreclip.data.synth_latent`), then rendered: a frontal
chest radiograph (:mod:`~moreclip.data.synth_xray`, 8-bit PNG), a 12-lead ECG
(:mod:`~moreclip.data.synth_ecg`, WFDB, 500 Hz, 10 s, mV) and a radiology and an ECG machine report
(:mod:`~moreclip.data.synth_reports`). :func:`generate_cohort` writes a cohort folder::

    DIR/manifest.parquet     one row per patient (see :data:`COLUMNS`)
    DIR/xray/<sample_id>.png
    DIR/ecg/<sample_id>.hea, .dat

Everything is a function of ``(seed, index)`` only (one :class:`numpy.random.SeedSequence` per patient and
purpose), so the same seed gives the same bytes in every file and the manifest whatever ``workers`` is, and
a patient does not change when ``n`` does (only the split and missing-modality draws depend on ``n``).

Manifest columns beyond the core ones (:data:`COLUMNS` is the reference; docs/data.md repeats it):
labels ``synthetic/<name>`` (0/1, edema 0-3) for every condition, and ``synth_<name>`` metadata saying
exactly what was drawn and where (sides, sizes, grades, measured rate and intervals, boxes in image
fractions). Labels describe the patient, so they are present even on rows that lack the modality showing
them (use the manifest's modality columns to select rows).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.config import CANONICAL_LEADS
from moreclip.data.synth_columns import COLUMNS, LABELS, patient_row
from moreclip.data.synth_latent import Patient, patient_rng, sample_patient, sample_patients
from moreclip.errors import ConfigError, ManifestError

__all__ = [
    "COLUMNS",
    "LABELS",
    "SyntheticSample",
    "generate_cohort",
    "patient_row",
    "render_patient",
    "sample_patients",
]

GENERATOR = "moreclip.synth"
GENERATOR_VERSION = 1


def _column_docs() -> str:
    lines = ["", "Label columns:", ""]
    lines += [f"    synthetic/{k:<26} {d}" for k, (_, d) in LABELS.items()]
    lines += ["", "Metadata columns:", ""]
    lines += [f"    {k:<32} {d}" for k, d in COLUMNS.items()]
    return "\n".join(lines) + "\n"


__doc__ = (__doc__ or "") + _column_docs()


@dataclass
class SyntheticSample:
    """One rendered patient, in memory."""

    index: int
    patient: Patient
    image: np.ndarray  # (H, W) uint8
    boxes: dict  # heart / effusion / pneumothorax / device -> [x0, y0, x1, y1] or None
    ecg: np.ndarray  # (12, 5000) float32 mV, canonical lead order, 500 Hz
    measurements: dict  # rate, pr, qrs, qt, qtc, axis (what the ECG machine prints)
    xray_report: str
    ecg_report: str


def render_patient(seed: int, index: int, image_size: int = 256, *, xray: bool = True) -> SyntheticSample:
    """Draw patient ``index`` of the cohort of ``seed`` entirely in memory (no files).

    Args:
        seed: the cohort seed.
        index: the patient's index (0-based).
        image_size: radiograph side in pixels.
        xray: False skips drawing the radiograph (``image`` is empty, ``boxes`` all None).
    """
    from moreclip.data.synth_ecg import render_ecg
    from moreclip.data.synth_reports import ecg_report, xray_report
    from moreclip.data.synth_xray import render_xray

    p = sample_patient(patient_rng(seed, index, "latent"))
    ecg, meas = render_ecg(p, patient_rng(seed, index, "ecg"))
    if xray:
        image, boxes = render_xray(p, patient_rng(seed, index, "xray"), image_size)
    else:
        image = np.zeros((0, 0), np.uint8)
        boxes = dict.fromkeys(("heart", "effusion", "pneumothorax", "device"))
    return SyntheticSample(
        index=index,
        patient=p,
        image=image,
        boxes=boxes,
        ecg=ecg,
        measurements=meas,
        xray_report=xray_report(p, patient_rng(seed, index, "xray_report")),
        ecg_report=ecg_report(p, meas, patient_rng(seed, index, "ecg_report")),
    )


def sample_id(index: int) -> str:
    return f"synth-{index:06d}"


def _make_one(task: tuple) -> dict:
    """Worker: render patient ``index``, write its files, return its manifest row (without split)."""
    from PIL import Image

    from moreclip.data.synth_ecg import FS
    from moreclip.data.synth_wfdb import write_wfdb16

    root, seed, index, image_size, has_xray, has_ecg = task
    s = render_patient(seed, index, image_size, xray=has_xray)
    sid = sample_id(index)
    row = {"sample_id": sid, "subject_id": f"p{index:06d}", "xray_path": None, "ecg_path": None,
           "xray_report": None, "ecg_report": None}  # fmt: skip
    if has_xray:
        rel = f"xray/{sid}.png"
        tmp = os.path.join(root, f"xray/.{sid}.png.tmp{os.getpid()}")
        Image.fromarray(s.image).save(tmp, format="PNG")
        os.replace(tmp, os.path.join(root, rel))
        row.update(xray_path=rel, xray_report=s.xray_report)
    if has_ecg:
        write_wfdb16(os.path.join(root, "ecg", sid), s.ecg, FS, CANONICAL_LEADS)
        row.update(ecg_path=f"ecg/{sid}", ecg_report=s.ecg_report)
    row.update(patient_row(s))
    return row


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only compete


def assign_splits(
    n: int, seed: int, split: tuple[float, float, float], missing_xray: float, missing_ecg: float
):
    """Exact-count split and missing-modality assignment, a function of ``(n, seed)`` and the fractions.

    Returns ``(splits (n,) str, has_xray (n,) bool, has_ecg (n,) bool)``; no patient misses both modalities.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    fr = np.asarray(split, dtype=np.float64)
    counts = np.floor(fr / fr.sum() * n).astype(int)
    counts[2] = n - counts[0] - counts[1]
    splits = np.array(["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2], dtype=object)
    splits = splits[rng.permutation(n)]
    order = rng.permutation(n)
    n_x, n_e = int(round(missing_xray * n)), int(round(missing_ecg * n))
    has_xray, has_ecg = np.ones(n, bool), np.ones(n, bool)
    has_xray[order[:n_x]] = False
    has_ecg[order[n_x : n_x + n_e]] = False
    return splits, has_xray, has_ecg


def generate_cohort(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    workers: int = 1,
    image_size: int = 256,
    missing_xray: float = 0.05,
    missing_ecg: float = 0.05,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate a synthetic cohort of ``n`` patients under ``out_dir`` and return its manifest path.

    Args:
        out_dir: cohort folder (created); holds ``manifest.parquet``, ``xray/`` and ``ecg/``.
        n: number of patients (one sample each).
        seed: cohort seed; the same seed gives byte-identical files and manifest.
        workers: processes rendering patients (the result does not depend on it).
        image_size: radiograph side in pixels (>= 64; 256 by default).
        missing_xray: fraction of samples without radiograph and radiology report.
        missing_ecg: fraction of samples without ECG and ECG report (never both missing).
        split: train / val / test fractions (normalised), assigned by subject with exact counts.
        overwrite: replace an existing cohort in ``out_dir`` (otherwise that is an error).
        progress: show a progress bar.

    Raises:
        ConfigError: invalid sizes or fractions. ManifestError: ``out_dir`` already holds a manifest.
    """
    from tqdm.auto import tqdm

    from moreclip.data.manifest import write_manifest

    _check_args(n, image_size, missing_xray, missing_ecg, split, workers)
    out = Path(out_dir)
    manifest = out / "manifest.parquet"
    if manifest.exists():
        if not overwrite:
            raise ManifestError(f"{manifest} already exists (choose another folder or overwrite it)")
        _remove_cohort(out)
    for sub in ("xray", "ecg"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    splits, has_xray, has_ecg = assign_splits(n, seed, split, missing_xray, missing_ecg)
    tasks = [(str(out), int(seed), i, int(image_size), bool(has_xray[i]), bool(has_ecg[i])) for i in range(n)]
    bar = tqdm(total=n, desc="synth", unit="patient", disable=not progress)
    rows = []
    if workers > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor

        from moreclip.workers import process_context

        ctx = process_context()
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, mp_context=ctx) as pool:
            for row in pool.map(_make_one, tasks, chunksize=max(1, min(16, n // (8 * workers)))):
                rows.append(row)
                bar.update()
    else:
        for t in tasks:
            rows.append(_make_one(t))
            bar.update()
    bar.close()
    df = pd.DataFrame(rows)
    df.insert(2, "split", splits)
    domains = {f"synthetic/{k}": [0.0, 1.0] for k in LABELS}
    domains["synthetic/edema"] = [0.0, 1.0, 2.0, 3.0]
    meta = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "ecg_fs": 500,
        "ecg_seconds": 10.0,
    }
    meta.update(cohort_settings(n, seed, image_size, missing_xray, missing_ecg, split))
    return write_manifest(df, manifest, label_domains=domains, meta=meta)


def cohort_settings(n, seed, image_size, missing_xray, missing_ecg, split) -> dict:
    """The settings a cohort's manifest records (``meta``); equal settings mean byte-identical cohorts."""
    return {
        "seed": int(seed),
        "n": int(n),
        "image_size": int(image_size),
        "missing_xray": float(missing_xray),
        "missing_ecg": float(missing_ecg),
        "split": [float(x) for x in split],
        "generator_version": GENERATOR_VERSION,
    }


def _remove_cohort(out: Path) -> None:
    """Delete a synthetic cohort's own files (refuses when the manifest was not written by this generator)."""
    import pyarrow.parquet as pq

    manifest = out / "manifest.parquet"
    try:
        raw = (pq.read_schema(manifest).metadata or {}).get(b"moreclip", b"{}")
        generator = json.loads(raw).get("meta", {}).get("generator")
    except Exception:
        generator = None
    if generator != GENERATOR:
        raise ManifestError(
            f"{manifest} is not a synthetic cohort written by moreclip synth; not overwriting it"
        )
    manifest.unlink()
    for sub, pattern in (("xray", "synth-*.png"), ("ecg", "synth-*.hea"), ("ecg", "synth-*.dat")):
        for f in (out / sub).glob(pattern):
            f.unlink()


def _check_args(n, image_size, missing_xray, missing_ecg, split, workers) -> None:
    if int(n) < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if int(image_size) < 64:
        raise ConfigError(f"image_size must be >= 64 pixels, got {image_size}")
    if int(workers) < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    for name, v in (("missing_xray", missing_xray), ("missing_ecg", missing_ecg)):
        if not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{name} must be a fraction in [0, 1], got {v}")
    if float(missing_xray) + float(missing_ecg) > 1.0:
        raise ConfigError("missing_xray + missing_ecg must be <= 1 (no sample may lack both modalities)")
    if len(split) != 3 or any(float(x) < 0 for x in split) or sum(float(x) for x in split) <= 0:
        raise ConfigError(f"split must be three non-negative train/val/test fractions, got {split}")
