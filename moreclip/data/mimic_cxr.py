"""MIMIC-CXR-JPG and MIMIC-CXR reports as shipped: image table, CheXpert labels, official split, report
sections. Used by :mod:`moreclip.data.mimic` (pairing with ECGs) and :mod:`moreclip.data.edema`.

Layout read (relative to the MIMIC-CXR-JPG root):

- ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` (``pXX``: the first two digits of the subject id);
- ``mimic-cxr-2.0.0-metadata.csv[.gz]``: dicom_id, subject_id, study_id, ViewPosition, StudyDate
  (``YYYYMMDD``), StudyTime (``HHMMSS.fff`` without zero padding, e.g. ``84334.0`` is 08:43:34);
- ``mimic-cxr-2.0.0-chexpert.csv[.gz]``: subject_id, study_id and the 14 CheXpert observations;
- ``mimic-cxr-2.0.0-split.csv[.gz]``: dicom_id, study_id, subject_id, split (train / validate / test).

Reports (MIMIC-CXR, ``mimic-cxr-reports.zip`` unpacked): ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.data.chexpert import CHEXPERT_OBSERVATIONS, chexpert_labels
from moreclip.data.tables import (
    IngestError,
    IngestReport,
    clean_ids,
    drop_duplicates,
    drop_missing,
    files_exist,
    find_table,
    hash_split,
    majority,
    read_table,
)

log = logging.getLogger(__name__)

METADATA_NAMES = ("mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-*-metadata.csv")
CHEXPERT_NAMES = ("mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-*-chexpert.csv")
SPLIT_NAMES = ("mimic-cxr-2.0.0-split.csv", "mimic-cxr-*-split.csv")
SPLIT_MAP = {"train": "train", "validate": "val", "val": "val", "valid": "val", "test": "test"}
DEFAULT_VIEWS = ("PA", "AP")


# --------------------------------------------------------------------------------------------- paths
def image_relpath(subject: pd.Series, study: pd.Series, dicom: pd.Series) -> pd.Series:
    """``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` for string id columns."""
    return "files/p" + subject.str[:2] + "/p" + subject + "/s" + study + "/" + dicom + ".jpg"


def report_relpath(subject: pd.Series, study: pd.Series) -> pd.Series:
    """``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` for string id columns."""
    return "files/p" + subject.str[:2] + "/p" + subject + "/s" + study + ".txt"


def parse_study_time(date: pd.Series, time: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Combine StudyDate (``YYYYMMDD``) and StudyTime (``HHMMSS[.fff]``, zero padding optional).

    Returns:
        ``(timestamps, time_missing)``: NaT where the date does not parse; where only the time is
        blank or invalid the timestamp is the date at 00:00 and ``time_missing`` is True.
    """
    d = pd.to_datetime(date.str.replace(r"\.0+$", "", regex=True), format="%Y%m%d", errors="coerce")
    t = pd.to_numeric(time, errors="coerce")
    whole = np.floor(t)
    hh, mm, ss = whole // 10000, (whole // 100) % 100, whole % 100
    ok = t.notna() & (t >= 0) & (hh < 24) & (mm < 60) & (ss < 60)
    seconds = (hh * 3600 + mm * 60 + ss + (t - whole).round(3)).where(ok, 0.0)
    return d + pd.to_timedelta(seconds, unit="s"), d.notna() & ~ok


# -------------------------------------------------------------------------------------------- images
def load_cxr_images(
    cxr_root: Path,
    report: IngestReport,
    *,
    views: Sequence[str] | None = DEFAULT_VIEWS,
    restrict: tuple[str, Collection[str]] | None = None,
    check_files: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The image table of MIMIC-CXR-JPG, filtered to ``views``, with the official split.

    Returns:
        ``(images, subject_split)``. ``images`` has columns dicom_id, subject_id, study_id, view_position,
        xray_time, xray_path, split (``train``/``val``/``test``, NaN when the split file omits the image);
        ``subject_split`` maps every subject of the split file (all views) to its split.
        ``restrict=(column, values)`` keeps only images whose ``column`` (e.g. ``study_id``) is in ``values``
        (before checking files, so a small label set does not stat every image).
    """
    meta_file = find_table(cxr_root, METADATA_NAMES, "MIMIC-CXR-JPG metadata CSV")
    cols = ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"]
    log.info("reading %s", meta_file)
    m = read_table(meta_file, cols, usecols=lambda c: c.strip() in cols)
    report.count("cxr images in metadata", len(m))
    for c in ("dicom_id", "subject_id", "study_id"):
        m[c] = clean_ids(m[c])
    m = drop_missing(m, ["dicom_id", "subject_id", "study_id"], report, meta_file, "dicom_id")
    m = drop_duplicates(m, "dicom_id", report, meta_file)
    if restrict is not None:
        m = m[m[restrict[0]].isin(set(restrict[1]))]

    split, subject_split = _load_split(cxr_root, report)
    m = m.assign(split=m["dicom_id"].map(split) if split is not None else np.nan)
    m["view_position"] = m["ViewPosition"].fillna("").str.upper()
    if views:
        wanted = [v.strip().upper() for v in views]
        keep = m["view_position"].isin(wanted)
        report.count(f"cxr images in views {','.join(wanted)}", int(keep.sum()))
        m = m[keep]
    times, no_time = parse_study_time(m["StudyDate"], m["StudyTime"])
    bad = times.isna()
    if bad.any():
        report.add(
            "unparseable StudyDate (image cannot be paired by time)",
            files=[meta_file] * int(bad.sum()),
            ids=m.loc[bad, "dicom_id"],
            skipped=False,
        )
    if no_time.any():
        report.add(
            "blank or invalid StudyTime (study date at 00:00 used)",
            files=[meta_file] * int(no_time.sum()),
            ids=m.loc[no_time, "dicom_id"],
            skipped=False,
        )
    m = m.assign(xray_time=times, xray_path=image_relpath(m["subject_id"], m["study_id"], m["dicom_id"]))
    if check_files:
        ok = files_exist(
            cxr_root, m["xray_path"].tolist(), progress=progress, desc="check images", root_flag="--cxr-root"
        )
        if (~ok).any():
            report.add(
                "image file not found",
                files=[str(cxr_root / p) for p in m.loc[~ok, "xray_path"]],
                ids=m.loc[~ok, "dicom_id"],
            )
        m = m[ok]
    out = m[["dicom_id", "subject_id", "study_id", "view_position", "xray_time", "xray_path", "split"]]
    return out.reset_index(drop=True), subject_split


def _load_split(cxr_root: Path, report: IngestReport) -> tuple[pd.Series | None, dict[str, str]]:
    try:
        f = find_table(cxr_root, SPLIT_NAMES, "MIMIC-CXR-JPG split CSV")
    except IngestError:
        report.notes.append("no mimic-cxr-2.0.0-split.csv[.gz]: every subject gets a hash-based split")
        return None, {}
    s = read_table(
        f,
        ["dicom_id", "subject_id", "split"],
        usecols=lambda c: c.strip() in ("dicom_id", "subject_id", "split"),
    )
    s["dicom_id"], s["subject_id"] = clean_ids(s["dicom_id"]), clean_ids(s["subject_id"])
    mapped = s["split"].str.lower().map(SPLIT_MAP)
    bad = mapped.isna()
    if bad.any():
        shown = ", ".join(map(repr, s.loc[bad, "split"].unique()[:3]))
        report.add(
            f"unknown split value ({shown}) in {f.name} (split from the subject or hash)",
            files=[f] * int(bad.sum()),
            ids=s.loc[bad, "dicom_id"],
            skipped=False,
        )
    s = s.assign(split=mapped).dropna(subset=["dicom_id", "split"]).drop_duplicates("dicom_id")
    s_subj = s.dropna(subset=["subject_id"])
    n_splits = s_subj.groupby("subject_id")["split"].nunique()
    if (n_splits > 1).any():
        report.notes.append(
            f"{int((n_splits > 1).sum())} subjects in several splits of {f.name}; "
            "their rows all take the subject's most frequent split"
        )
    subject_split = majority(s_subj["subject_id"], s_subj["split"]).to_dict()
    return s.set_index("dicom_id")["split"], subject_split


def select_study_images(images: pd.DataFrame, views: Sequence[str] | None = DEFAULT_VIEWS) -> pd.DataFrame:
    """One image per study: the first view in ``views`` order (PA before AP by default), ties broken by the
    smallest ``dicom_id`` (deterministic)."""
    order = {v.strip().upper(): i for i, v in enumerate(views or ())}
    rank = images["view_position"].map(order).fillna(len(order))
    picked = images.assign(_rank=rank).sort_values(["study_id", "_rank", "dicom_id"], kind="stable")
    return picked.drop_duplicates("study_id").drop(columns="_rank").reset_index(drop=True)


def assign_splits(
    df: pd.DataFrame, subject_split: dict[str, str], fractions: Sequence[float], report: IngestReport
) -> np.ndarray:
    """The image's official split; else the subject's; else a stable hash of the subject id. Then every
    subject is forced into one split (its most frequent), so the manifest stays subject-disjoint."""
    split = df["split"].astype(object).where(df["split"].notna(), df["subject_id"].map(subject_split))
    unknown = split.isna()
    if unknown.any():
        subjects = df.loc[unknown, "subject_id"].unique()
        hashed = dict(zip(subjects, hash_split(subjects, fractions)))
        split[unknown] = df.loc[unknown, "subject_id"].map(hashed)
        report.count("rows with a hash-based split (subject not in the split file)", int(unknown.sum()))
    forced = df["subject_id"].map(majority(df["subject_id"], split))
    moved = forced.ne(split)
    if moved.any():
        report.notes.append(
            f"{int(moved.sum())} rows moved to their subject's majority split (subject-disjoint)"
        )
    return forced.to_numpy(dtype=object)


# -------------------------------------------------------------------------------------------- labels
def load_cxr_labels(cxr_root: Path, report: IngestReport) -> pd.DataFrame | None:
    """MIMIC-CXR's CheXpert labels per ``study_id`` as ``chexpert/<Observation>`` (None when absent)."""
    try:
        f = find_table(cxr_root, CHEXPERT_NAMES, "MIMIC-CXR-JPG CheXpert labels CSV")
    except IngestError:
        report.notes.append("no mimic-cxr-2.0.0-chexpert.csv[.gz]: no CheXpert label columns")
        return None
    t = read_table(f, ["study_id", *CHEXPERT_OBSERVATIONS])
    t["study_id"] = clean_ids(t["study_id"])
    t = drop_missing(t, ["study_id"], report, f)
    t = drop_duplicates(t, "study_id", report, f)
    labels = chexpert_labels(t, f, report, t["study_id"])
    labels.index = t["study_id"].to_numpy()
    return labels


# ------------------------------------------------------------------------------------------- reports
_ANY_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/,()\-]{1,60}?)[ \t]*:", re.M)
_WANTED = re.compile(
    r"^[ \t]*(findings and impressions?|impressions? and findings|findings|impressions?|conclusions?)[ \t]*:",
    re.M | re.I,
)
_PLACEHOLDER = re.compile(r"_{2,}")


def extract_sections(text: str) -> str:
    """FINDINGS and IMPRESSION of a MIMIC-CXR report (``"FINDINGS: ... IMPRESSION: ..."``).

    A combined ``FINDINGS AND IMPRESSION`` section counts as both; ``CONCLUSION`` counts as impression.
    Without either section the whole text is used (minus the ``FINAL REPORT`` banner). De-identification
    placeholders (``___``) are removed and whitespace collapsed. Returns ``""`` for an empty report.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    heads = sorted({m.start(): m for m in [*_ANY_HEADER.finditer(text), *_WANTED.finditer(text)]}.items())
    found: dict[str, list[str]] = {"FINDINGS": [], "IMPRESSION": []}
    for j, (_, m) in enumerate(heads):
        name = re.sub(r"\s+", " ", m.group(1).strip().upper())
        end = heads[j + 1][0] if j + 1 < len(heads) else len(text)
        body = _clean(text[m.end() : end])
        if not body:
            continue
        if name == "FINDINGS" or ("FINDINGS" in name and "IMPRESSION" in name):
            found["FINDINGS"].append(body)
        elif name.startswith(("IMPRESSION", "CONCLUSION")):
            found["IMPRESSION"].append(body)
    parts = [f"{k}: {' '.join(v)}" for k, v in found.items() if v]
    if parts:
        return " ".join(parts)
    return _clean(re.sub(r"^\s*FINAL REPORT\s*", "", text))


def _clean(s: str) -> str:
    s = _PLACEHOLDER.sub(" ", s)
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(r"\s+([.,;:])", r"\1", s)


def find_reports_root(cxr_root: Path, subject: pd.Series, study: pd.Series, n_probe: int = 20) -> Path | None:
    """``cxr_root`` when MIMIC-CXR reports were unpacked into it (any of ``n_probe`` report files exists)."""
    rel = report_relpath(subject.head(n_probe), study.head(n_probe))
    return cxr_root if any((cxr_root / p).is_file() for p in rel) else None


def read_cxr_reports(
    reports_root: Path,
    subject: pd.Series,
    study: pd.Series,
    report: IngestReport,
    *,
    progress: bool = True,
) -> list[str | None]:
    """Extracted report text per row (None when the file is missing, reported; or empty)."""
    from tqdm.auto import tqdm

    rel = report_relpath(subject, study).tolist()

    def read(p: str) -> str | None:
        try:
            return (reports_root / p).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError):
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        raw = list(
            tqdm(
                pool.map(read, rel, chunksize=256),
                total=len(rel),
                desc="read reports",
                unit="report",
                disable=not progress or len(rel) < 2000,
            )
        )
    missing = [i for i, r in enumerate(raw) if r is None]
    if missing:
        report.add(
            "report file not found (row kept without xray_report)",
            files=[str(reports_root / rel[i]) for i in missing],
            ids=[study.iloc[i] for i in missing],
            skipped=False,
        )
    texts = [None if r is None else (extract_sections(r) or None) for r in raw]
    report.count("xray reports found", sum(t is not None for t in texts))
    return texts
