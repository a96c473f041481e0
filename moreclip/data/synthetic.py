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
from moreclip.data.synth_latent import Patient, patient_rng, sample_patient, sample_patients
from moreclip.errors import ConfigError, ManifestError

__all__ = ["COLUMNS", "LABELS", "SyntheticSample", "generate_cohort", "render_patient", "sample_patients"]

GENERATOR = "moreclip.synth"
GENERATOR_VERSION = 1

#: label column (without the ``synthetic/`` prefix) -> (function of a Patient, description)
LABELS = {
    # radiograph
    "cardiomegaly": (lambda p: p.cardiomegaly, "cardiothoracic ratio > 0.5 (X-ray)"),
    "pleural_effusion": (lambda p: p.effusion_side != "none", "pleural effusion, any side or size (X-ray)"),
    "edema": (lambda p: p.edema, "pulmonary edema severity 0-3: none, mild, moderate, severe (X-ray)"),
    "edema_any": (lambda p: p.edema > 0, "pulmonary edema of any severity (X-ray)"),
    "pneumothorax": (lambda p: p.pneumothorax_side != "none", "pneumothorax, any side or size (X-ray)"),
    "atelectasis": (lambda p: p.atelectasis_side != "none", "basal plate-like atelectasis (X-ray)"),
    "pacemaker": (lambda p: p.device != "none", "pacemaker or ICD generator with leads (X-ray)"),
    "sternotomy": (lambda p: p.sternotomy, "median sternotomy wires (X-ray)"),
    "central_line": (lambda p: p.line != "none", "central venous catheter or PICC (X-ray)"),
    "endotracheal_tube": (lambda p: p.ett_cm > 0, "endotracheal tube (X-ray)"),
    "enteric_tube": (lambda p: p.ngt, "nasogastric / enteric tube (X-ray)"),
    "granuloma": (lambda p: p.granuloma != "none", "calcified granuloma (X-ray)"),
    "low_lung_volumes": (lambda p: p.lung_volumes == "low", "low lung volumes (X-ray)"),
    "hyperinflation": (lambda p: p.lung_volumes == "hyperinflated", "hyperinflated lungs (X-ray)"),
    "aortic_calcification": (lambda p: p.aortic_calcification, "calcified aortic knob (X-ray)"),
    "scoliosis": (lambda p: p.scoliosis != "none", "thoracic scoliosis (X-ray)"),
    "elevated_hemidiaphragm": (
        lambda p: p.elevated_hemidiaphragm != "none",
        "elevated hemidiaphragm (X-ray)",
    ),
    "nodule": (lambda p: p.nodule != "none", "non-calcified pulmonary nodule, 8-25 mm (X-ray)"),
    "rib_fracture": (lambda p: p.rib_fracture != "none", "healed lateral rib fracture (X-ray)"),
    "spine_degeneration": (lambda p: p.spine_degeneration, "degenerative thoracic spine (X-ray)"),
    "shoulder_arthroplasty": (lambda p: p.shoulder_arthroplasty != "none", "shoulder prosthesis (X-ray)"),
    "hiatal_hernia": (lambda p: p.hiatal_hernia, "retrocardiac hiatal hernia (X-ray)"),
    # ECG
    "sinus_rhythm": (lambda p: p.rhythm == "sinus", "sinus rhythm at 60-100 bpm (ECG)"),
    "sinus_tachycardia": (lambda p: p.rhythm == "sinus_tachycardia", "sinus rhythm > 100 bpm (ECG)"),
    "sinus_bradycardia": (lambda p: p.rhythm == "sinus_bradycardia", "sinus rhythm < 60 bpm (ECG)"),
    "atrial_fibrillation": (lambda p: p.rhythm == "atrial_fibrillation", "irregular RR, no P waves (ECG)"),
    "paced_rhythm": (lambda p: p.rhythm == "paced", "ventricular paced rhythm (ECG)"),
    "lvh": (lambda p: p.lvh, "left ventricular hypertrophy: S V1 + R V5/V6 >= 4 mV (ECG)"),
    "st_elevation": (lambda p: p.ste_territory != "none", "ST elevation in one territory (ECG)"),
    "first_degree_av_block": (lambda p: p.av_block1, "PR interval > 200 ms (ECG)"),
    "rbbb": (lambda p: p.bbb == "rbbb", "right bundle branch block (ECG)"),
    "lbbb": (lambda p: p.bbb == "lbbb", "left bundle branch block (ECG)"),
    "pvc": (lambda p: p.pvc > 0, "premature ventricular complexes (ECG)"),
    "left_axis_deviation": (lambda p: p.axis == "left", "frontal QRS axis < -30 degrees (ECG)"),
    "right_axis_deviation": (lambda p: p.axis == "right", "frontal QRS axis > 90 degrees (ECG)"),
    "low_qrs_voltage": (lambda p: p.low_voltage, "limb-lead QRS < 0.5 mV peak to peak (ECG)"),
    "t_wave_inversion": (lambda p: p.twi_territory != "none", "T-wave inversion in one territory (ECG)"),
    "old_infarct": (lambda p: p.q_territory != "none", "pathological Q waves in one territory (ECG)"),
    "prolonged_qt": (lambda p: p.long_qt, "QTc > 470 ms (ECG)"),
    "pac": (lambda p: p.pac > 0, "premature atrial complexes (ECG)"),
    "left_atrial_enlargement": (lambda p: p.lae, "broad notched P in II, deep terminal P in V1 (ECG)"),
    "nonspecific_t_wave": (lambda p: p.flat_t, "flat, low-amplitude T waves (ECG)"),
    "poor_r_wave_progression": (lambda p: p.prwp, "small R waves in V1-V4 (ECG)"),
    "sinus_arrhythmia": (
        lambda p: p.sinus_arrhythmia,
        "marked respiratory RR variation in sinus rhythm (ECG)",
    ),
}

#: metadata column -> description (what was drawn; not labels: names carry no "/")
COLUMNS = {
    "synth_index": "patient index in the cohort (with the seed, all that the patient depends on)",
    "synth_age": "age in years (drives risk; not drawn)",
    "synth_sex": "F / M (female patients have breast shadows; not reported)",
    "synth_view": "PA / AP (portable AP radiographs carry an 'AP PORTABLE' marker)",
    "synth_ctr": "cardiothoracic ratio drawn",
    "synth_cardiomegaly_grade": "0 none, 1 mild (CTR <= 0.57), 2 moderate (<= 0.63), 3 severe",
    "synth_effusion_side": "none / left / right / bilateral (patient's side; left is drawn on the image's right)",
    "synth_effusion_size": "none / small / moderate / large",
    "synth_pneumothorax_side": "none / left / right",
    "synth_pneumothorax_size": "none / small / large",
    "synth_atelectasis_side": "none / left / right / bilateral",
    "synth_lung_volumes": "normal / low / hyperinflated",
    "synth_device": "none / pacemaker / icd",
    "synth_device_side": "none / left / right (generator pocket)",
    "synth_device_leads": "0, 1 (right ventricle) or 2 (right atrium + right ventricle)",
    "synth_cabg_clips": "mediastinal surgical clips beside sternotomy wires (bool)",
    "synth_line": "none / right_ij / left_ij / right_picc / left_picc",
    "synth_line_tip": "none / svc / cavoatrial / right_atrium",
    "synth_ett_cm": "endotracheal tube tip above the carina in cm (0: none)",
    "synth_abdominal_clips": "cholecystectomy clips in the right upper quadrant (bool)",
    "synth_granuloma": "none or the lobe of a calcified granuloma",
    "synth_scoliosis": "none / dextroconvex / levoconvex",
    "synth_elevated_hemidiaphragm": "none / left / right",
    "synth_nodule": "none or the lobe of a non-calcified nodule",
    "synth_nodule_mm": "nodule diameter in mm (0: none)",
    "synth_rib_fracture": "none / left / right (healed lateral rib fracture)",
    "synth_shoulder_arthroplasty": "none / left / right",
    "synth_rhythm": "sinus / sinus_tachycardia / sinus_bradycardia / atrial_fibrillation / paced",
    "synth_heart_rate": "mean ventricular rate of the drawn ECG in bpm (as the report quotes it)",
    "synth_pr_ms": "PR interval in ms (0: no conducted P waves)",
    "synth_qrs_ms": "QRS duration in ms",
    "synth_qt_ms": "QT interval in ms",
    "synth_qtc_ms": "Bazett-corrected QT in ms",
    "synth_qrs_axis": "measured frontal QRS axis in degrees",
    "synth_pvc_count": "premature ventricular complexes in the strip",
    "synth_pac_count": "premature atrial complexes in the strip",
    "synth_lvh_strain": "LVH with lateral repolarisation abnormality (bool)",
    "synth_ste_territory": "none / anterior (V1-V4) / inferior (II, III, aVF) / lateral (I, aVL, V5-V6)",
    "synth_twi_territory": "T-wave inversion territory, as above",
    "synth_q_territory": "old-infarct Q-wave territory, as above",
    "synth_heart_box": "x0,y0,x1,y1 of the heart silhouette in image fractions (null without X-ray)",
    "synth_effusion_box": "x0,y0,x1,y1 around the effusion(s) (null: none drawn)",
    "synth_pneumothorax_box": "x0,y0,x1,y1 of the pneumothorax rim (null: none drawn)",
    "synth_device_box": "x0,y0,x1,y1 of the pacemaker / ICD generator (null: none drawn)",
}


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


def _box_str(box) -> str | None:
    return None if box is None else ",".join(f"{v:.3f}" for v in box)


# Patient fields copied as ``synth_<field>`` (COLUMNS documents each); the rest is derived or measured
_PATIENT_META = (
    "age", "sex", "view", "effusion_side", "effusion_size", "pneumothorax_side", "pneumothorax_size",
    "atelectasis_side", "lung_volumes", "device", "device_side", "device_leads", "cabg_clips", "line",
    "line_tip", "ett_cm", "abdominal_clips", "granuloma", "scoliosis", "elevated_hemidiaphragm", "nodule",
    "nodule_mm", "rib_fracture", "shoulder_arthroplasty", "rhythm", "lvh_strain", "ste_territory",
    "twi_territory", "q_territory",
)  # fmt: skip


def patient_row(s: SyntheticSample) -> dict:
    """Labels and ``synth_*`` metadata of one rendered patient (no paths, split or reports)."""
    p, m = s.patient, s.measurements
    row = {f"synth_{f}": getattr(p, f) for f in _PATIENT_META}
    row.update(
        synth_index=s.index, synth_ctr=round(p.ctr, 4), synth_cardiomegaly_grade=p.cardiomegaly_grade,
        synth_heart_rate=m["rate"], synth_pr_ms=m["pr"] or 0, synth_qrs_ms=m["qrs"], synth_qt_ms=m["qt"],
        synth_qtc_ms=m["qtc"], synth_qrs_axis=m["axis"], synth_pvc_count=p.pvc, synth_pac_count=p.pac,
    )  # fmt: skip
    for k in ("heart", "effusion", "pneumothorax", "device"):
        row[f"synth_{k}_box"] = _box_str(s.boxes.get(k))
    for name, (fn, _) in LABELS.items():
        row[f"synthetic/{name}"] = float(fn(p))
    return row


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

        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
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
