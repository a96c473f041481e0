"""MIMIC-CXR pulmonary edema severity (PhysioNet ``mimic-cxr-pe-severity``) -> manifest of X-ray rows.

The label files (``regex_report_edema_severity.csv`` and ``expert_report_edema_severity.csv``: subject_id,
study_id, edema_severity; ``consensus_image_edema_severity.csv``: ... dicom_id, edema_severity) grade
edema 0 none, 1 vascular congestion, 2 interstitial edema, 3 alveolar edema. Labels keyed by ``dicom_id``
give one row per labelled image; labels keyed by ``study_id`` give one row per study with its frontal
image chosen as in :func:`~moreclip.data.mimic_cxr.select_study_images`. Images, times and the official
split come from the MIMIC-CXR-JPG root. The label is ``edema/severity`` with domain [0, 1, 2, 3].
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from moreclip.data.mimic_cxr import (
    DEFAULT_VIEWS,
    assign_splits,
    find_reports_root,
    load_cxr_images,
    read_cxr_reports,
    select_study_images,
)
from moreclip.data.tables import (
    HASH_FRACTIONS,
    IngestError,
    IngestReport,
    IngestResult,
    clean_ids,
    drop_missing,
    finish,
    hash_split,
    label_values,
    read_table,
)

log = logging.getLogger(__name__)

LABEL_COLUMN = "edema/severity"
EDEMA_DOMAIN = (0.0, 1.0, 2.0, 3.0)
#: label column names tried in order when none is given
LABEL_CANDIDATES = ("edema_severity", "edeme_severity", "severity", "label")
SPLIT_MODES = ("official", "hash", "test")


def ingest_edema(
    labels: str | os.PathLike,
    cxr_root: str | os.PathLike,
    out: str | os.PathLike = "manifests/edema.parquet",
    *,
    id_column: str | None = None,
    id_kind: str | None = None,
    label_column: str | None = None,
    reports_root: str | os.PathLike | None = None,
    views: Sequence[str] | None = DEFAULT_VIEWS,
    split: str = "official",
    hash_fractions: Sequence[float] = HASH_FRACTIONS,
    strict: bool = False,
    check_files: bool = True,
    progress: bool = True,
) -> IngestResult:
    """Ingest an edema severity label CSV against MIMIC-CXR-JPG.

    Args:
        labels: the label CSV.
        cxr_root: MIMIC-CXR-JPG folder (``files/``, ``mimic-cxr-2.0.0-metadata.csv[.gz]``, split CSV).
        out: manifest path; the ingest report goes beside it as ``<name>.ingest.json``.
        id_column: the CSV column holding the ids (default: ``dicom_id`` when present, else ``study_id``).
        id_kind: what ``id_column`` holds, ``dicom_id`` or ``study_id`` (default: from its name).
        label_column: the severity column (default: the first of :data:`LABEL_CANDIDATES` present).
        reports_root: MIMIC-CXR reports folder; None: used when found under ``cxr_root``, else no reports.
        views: ViewPosition preference when choosing a study's image (study-keyed labels only).
        split: ``official`` (MIMIC-CXR split, else subject's, else hash), ``hash`` (stable hash of the
            subject id with ``hash_fractions``) or ``test`` (every row in test, e.g. the consensus set).
        strict: fail (no manifest) on any problem instead of skipping rows.
        check_files: check that every image exists.
        progress: show progress bars.
    """
    labels, cxr_root = Path(labels).expanduser(), Path(cxr_root).expanduser()
    if split not in SPLIT_MODES:
        raise IngestError(f"split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")
    if not labels.is_file():
        raise IngestError(f"{labels}: edema label CSV not found")
    t = read_table(labels, [])
    id_column = id_column or ("dicom_id" if "dicom_id" in t else "study_id")
    label_column = label_column or next((c for c in LABEL_CANDIDATES if c in t), None)
    has = ", ".join(t.columns)
    if id_column not in t:
        raise IngestError(f"{labels}: missing id column {id_column!r} (has: {has}; see --id-column)")
    if label_column is None or label_column not in t:
        want = repr(label_column) if label_column else f"one of {', '.join(LABEL_CANDIDATES)}"
        raise IngestError(f"{labels}: missing severity column {want} (has: {has}; see --label-column)")
    key = id_kind or (
        "dicom_id" if "dicom" in id_column.lower() else "study_id" if "study" in id_column.lower() else None
    )
    if key not in ("dicom_id", "study_id"):
        raise IngestError(f"cannot tell whether {id_column!r} holds dicom or study ids: pass --id-kind")
    t = t.drop(columns=[c for c in ("dicom_id", "study_id") if c != id_column and c in t])
    t = t.rename(columns={id_column: key})
    report = IngestReport("edema")
    report.count("label rows", len(t))
    t[key] = clean_ids(t[key])
    t = drop_missing(t, [key], report, labels)
    t = t.assign(_y=label_values(t[label_column], EDEMA_DOMAIN, report, labels, label_column, t[key]))
    blank = t["_y"].isna()
    if blank.any():
        report.add(
            "blank or invalid edema severity (row dropped)",
            files=[labels] * int(blank.sum()),
            ids=t.loc[blank, key],
        )
    t = t[~blank]
    n_values = t.groupby(key)["_y"].nunique()
    conflict = t[key].isin(n_values.index[n_values > 1])
    if conflict.any():
        report.add(
            f"conflicting severities for one {key} (all dropped)",
            files=[labels] * int(conflict.sum()),
            ids=t.loc[conflict, key],
        )
    dup = t[key].duplicated() & ~conflict
    if dup.any():
        report.add(
            f"duplicated {key} with the same severity (first kept)",
            files=[labels] * int(dup.sum()),
            ids=t.loc[dup, key],
        )
    t = t[~conflict & ~dup]
    y = pd.Series(t["_y"].to_numpy(), index=t[key].to_numpy())

    images, subject_split = load_cxr_images(
        cxr_root,
        report,
        views=None if key == "dicom_id" else views,
        restrict=(key, set(y.index)),
        check_files=check_files,
        progress=progress,
    )
    if key == "study_id":
        images = select_study_images(images, views)
    found = y.index.isin(images[key])
    if (~found).any():
        report.add(
            "dicom_id not in the MIMIC-CXR-JPG metadata, or its image is missing"
            if key == "dicom_id"
            else f"study has no image in views {','.join(views or ['any'])} in MIMIC-CXR-JPG (or it is missing)",
            files=[labels] * int((~found).sum()),
            ids=y.index[~found],
        )
    df = images[images[key].isin(y.index)].rename(columns={"study_id": "cxr_study_id"}).reset_index(drop=True)
    df["sample_id"] = "edema-" + df["dicom_id" if key == "dicom_id" else "cxr_study_id"]
    df[LABEL_COLUMN] = df["dicom_id" if key == "dicom_id" else "cxr_study_id"].map(y).astype("float32")
    if split == "official":
        df["split"] = assign_splits(df, subject_split, hash_fractions, report)
    elif split == "hash":
        subjects = df["subject_id"].unique()
        df["split"] = df["subject_id"].map(dict(zip(subjects, hash_split(subjects, hash_fractions))))
    else:
        df["split"] = "test"
    df["xray_report"] = None
    if reports_root is None and len(df):
        reports_root = find_reports_root(cxr_root, df["subject_id"], df["cxr_study_id"])
    if reports_root is not None and len(df):
        df["xray_report"] = read_cxr_reports(
            Path(reports_root).expanduser(), df["subject_id"], df["cxr_study_id"], report, progress=progress
        )
    for s in ("train", "val", "test"):
        report.count(f"{s} rows", int((df["split"] == s).sum()))
    report.count("rows", len(df))
    for g in range(4):
        report.count(f"severity {g}", int((df[LABEL_COLUMN] == g).sum()))
    cols = [
        "sample_id",
        "subject_id",
        "split",
        "xray_path",
        "xray_report",
        "xray_time",
        "cxr_study_id",
        "dicom_id",
        "view_position",
        LABEL_COLUMN,
    ]
    meta = {
        "source": "edema",
        "label_file": labels.name,
        "key": key,
        "id_column": id_column,
        "label_column": label_column,
        "split": split,
        "grades": {"0": "none", "1": "vascular congestion", "2": "interstitial edema", "3": "alveolar edema"},
    }
    return finish(
        df[cols] if len(df) else pd.DataFrame(columns=cols),
        report,
        Path(out),
        strict=strict,
        xray_root=cxr_root,
        ecg_root=None,
        label_domains={LABEL_COLUMN: list(EDEMA_DOMAIN)},
        meta=meta,
    )
