"""Builders of miniature copies of the public data sets, in the exact layouts their publishers ship
(MIMIC-CXR-JPG + reports, MIMIC-IV-ECG, PTB-XL, CheXpert, MIMIC-CXR edema severity). Real formats only:
JPEGs by Pillow, WFDB by wfdb (``write_ecg``), gzipped or plain CSVs by pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from moreclip.data.chexpert import CHEXPERT_OBSERVATIONS
from moreclip.data.ecg import write_ecg

#: MIMIC-IV-ECG's lead order (aVF before aVL), as in its WFDB headers
MIMIC_ECG_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
#: PTB-XL's lead names (upper case)
PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def make_jpeg(path: Path, seed: int = 0, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), mode="L").save(path, "JPEG")
    return path


def lead_signal(fs: int, seconds: float, leads=MIMIC_ECG_LEADS) -> np.ndarray:
    """(12, T) mV with each lead identifiable by its values: lead k (file order) = k/10 + small sine."""
    t = np.arange(int(fs * seconds)) / fs
    return np.stack([0.1 * k + 0.05 * np.sin(2 * np.pi * (k + 1) * t) for k in range(len(leads))])


# ------------------------------------------------------------------------------------------ MIMIC-CXR
def make_mimic_cxr(root: Path, studies: list[dict], gz: bool = True) -> Path:
    """MIMIC-CXR-JPG under ``root``. Each study: subject (8 digits), study (8 digits), date ``YYYYMMDD``,
    time (StudyTime text, e.g. ``"84334.0"``), images [(dicom_id, ViewPosition)], split
    (train/validate/test or None: absent from the split file), labels {observation: "1.0"/"0.0"/"-1.0"/""}.
    """
    meta, chex, split = [], [], []
    for k, s in enumerate(studies):
        subj, study = s["subject"], s["study"]
        for j, (dicom, view) in enumerate(s["images"]):
            if s.get("write_images", True):
                make_jpeg(
                    root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}" / f"{dicom}.jpg",
                    seed=k * 10 + j,
                )
            meta.append(
                {
                    "dicom_id": dicom,
                    "subject_id": subj,
                    "study_id": study,
                    "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                    "ViewPosition": view,
                    "Rows": 32,
                    "Columns": 32,
                    "StudyDate": s["date"],
                    "StudyTime": s["time"],
                    "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                    "ViewCodeSequence_CodeMeaning": "postero-anterior",
                    "PatientOrientationCodeSequence_CodeMeaning": "Erect",
                }
            )
            if s.get("split"):
                split.append({"dicom_id": dicom, "study_id": study, "subject_id": subj, "split": s["split"]})
        if "labels" in s:
            row = {"subject_id": subj, "study_id": study}
            row.update({o: s["labels"].get(o, "") for o in sorted(CHEXPERT_OBSERVATIONS)})
            chex.append(row)
    ext = ".csv.gz" if gz else ".csv"
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(meta).to_csv(root / f"mimic-cxr-2.0.0-metadata{ext}", index=False)
    pd.DataFrame(chex, columns=["subject_id", "study_id", *sorted(CHEXPERT_OBSERVATIONS)]).to_csv(
        root / f"mimic-cxr-2.0.0-chexpert{ext}", index=False
    )
    pd.DataFrame(split, columns=["dicom_id", "study_id", "subject_id", "split"]).to_csv(
        root / f"mimic-cxr-2.0.0-split{ext}", index=False
    )
    return root


def make_mimic_reports(root: Path, reports: dict[tuple[str, str], str]) -> Path:
    """MIMIC-CXR reports: ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` for {(subject, study): text}."""
    for (subj, study), text in reports.items():
        p = root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


# ------------------------------------------------------------------------------------------ MIMIC-IV-ECG
def mimic_ecg_relpath(subject: str, study: str) -> str:
    return f"files/p{subject[:4]}/p{subject}/s{study}/{study}"


def make_mimic_ecg(root: Path, ecgs: list[dict], fs: int = 500, seconds: float = 10.0) -> Path:
    """MIMIC-IV-ECG under ``root``. Each ECG: subject, study (8 digits), time ``YYYY-MM-DD HH:MM:SS``,
    statements (list of report_N texts, "" for an empty cell), write (False: listed but no files)."""
    records, mm = [], []
    sig = lead_signal(fs, seconds)
    for e in ecgs:
        rel = mimic_ecg_relpath(e["subject"], e["study"])
        if e.get("write", True):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            write_ecg(root / rel, sig, fs, MIMIC_ECG_LEADS)
        records.append(
            {
                "subject_id": e["subject"],
                "study_id": e["study"],
                "file_name": e["study"],
                "ecg_time": e["time"],
                "path": rel,
            }
        )
        row = {"subject_id": e["subject"], "study_id": e["study"], "cart_id": 6848296, "ecg_time": e["time"]}
        statements = list(e.get("statements", ["Sinus rhythm", "Normal ECG"]))
        row.update({f"report_{i}": (statements[i] if i < len(statements) else "") for i in range(18)})
        row.update(
            {
                "bandwidth": "0.005-150 Hz",
                "filtering": "60 Hz notch Baseline filter",
                "rr_interval": 659,
                "p_onset": 40,
                "p_end": 128,
                "qrs_onset": 170,
                "qrs_end": 258,
                "t_end": 518,
                "p_axis": 81,
                "qrs_axis": 77,
                "t_axis": 79,
            }
        )
        mm.append(row)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm).to_csv(root / "machine_measurements.csv", index=False)
    return root


# ------------------------------------------------------------------------------------------------ PTB-XL
PTBXL_STATEMENTS = [
    # code, description, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass
    ("NDT", "non-diagnostic T abnormalities", 1.0, 1.0, None, "STTC", "STTC"),
    ("NORM", "normal ECG", 1.0, None, None, "NORM", "NORM"),
    ("IMI", "inferior myocardial infarction", 1.0, None, None, "MI", "IMI"),
    ("LVH", "left ventricular hypertrophy", 1.0, None, None, "HYP", "LVH"),
    ("CLBBB", "complete left bundle branch block", 1.0, None, None, "CD", "CLBBB"),
    ("SR", "sinus rhythm", None, None, 1.0, None, None),
    ("PVC", "ventricular premature complex", None, 1.0, 1.0, None, None),
]


def make_ptbxl(root: Path, records: list[dict], write_500: bool = True, write_100: bool = True) -> Path:
    """PTB-XL under ``root``. Each record: ecg_id (int), patient_id (float, as shipped), report, scp_codes
    (the dict literal text), strat_fold, recording_date."""
    rows = []
    for r in records:
        eid = int(r["ecg_id"])
        folder = f"{(eid // 1000) * 1000:05d}"
        lr, hr = f"records100/{folder}/{eid:05d}_lr", f"records500/{folder}/{eid:05d}_hr"
        if r.get("write", True):
            if write_100:
                (root / lr).parent.mkdir(parents=True, exist_ok=True)
                write_ecg(root / lr, lead_signal(100, 10.0, PTBXL_LEADS), 100, PTBXL_LEADS)
            if write_500:
                (root / hr).parent.mkdir(parents=True, exist_ok=True)
                write_ecg(root / hr, lead_signal(500, 10.0, PTBXL_LEADS), 500, PTBXL_LEADS)
        rows.append(
            {
                "ecg_id": eid,
                "patient_id": float(r["patient_id"]),
                "age": 56.0,
                "sex": 1,
                "height": None,
                "weight": 63.0,
                "nurse": 2.0,
                "site": 0.0,
                "device": "CS-12   E",
                "recording_date": r.get("recording_date", "1984-11-09 09:17:34"),
                "report": r.get("report", ""),
                "scp_codes": r["scp_codes"],
                "heart_axis": None,
                "infarction_stadium1": None,
                "infarction_stadium2": None,
                "validated_by": None,
                "second_opinion": False,
                "initial_autogenerated_report": False,
                "validated_by_human": True,
                "baseline_drift": None,
                "static_noise": None,
                "burst_noise": None,
                "electrodes_problems": None,
                "extra_beats": None,
                "pacemaker": None,
                "strat_fold": r["strat_fold"],
                "filename_lr": lr,
                "filename_hr": hr,
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    st = pd.DataFrame(
        PTBXL_STATEMENTS,
        columns=[
            "",
            "description",
            "diagnostic",
            "form",
            "rhythm",
            "diagnostic_class",
            "diagnostic_subclass",
        ],
    )
    st["Statement Category"] = "x"
    st.to_csv(root / "scp_statements.csv", index=False)
    return root


# ---------------------------------------------------------------------------------------------- CheXpert
def make_chexpert(
    root: Path, train: list[dict], valid: list[dict], folder: str = "CheXpert-v1.0-small"
) -> Path:
    """CheXpert under ``root / folder``; rows: patient (int), study (int), view ("frontal"/"lateral"),
    labels {observation: "1.0"/"0.0"/"-1.0"/""}, write (False: listed but no image)."""
    base = root / folder
    for name, rows in (("train", train), ("valid", valid)):
        table = []
        for i, r in enumerate(rows):
            n = 1 if r["view"] == "frontal" else 2
            rel = f"{folder}/{name}/patient{r['patient']:05d}/study{r['study']}/view{n}_{r['view']}.jpg"
            if r.get("write", True):
                make_jpeg(root / rel, seed=i)
            row = {
                "Path": rel,
                "Sex": "Female",
                "Age": 68,
                "Frontal/Lateral": r["view"].capitalize(),
                "AP/PA": "AP" if r["view"] == "frontal" else "",
            }
            row.update({o: r.get("labels", {}).get(o, "") for o in CHEXPERT_OBSERVATIONS})
            table.append(row)
        base.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(table).to_csv(base / f"{name}.csv", index=False)
    return base
