"""CheXpert (Stanford; v1.0 or v1.0-small) as shipped -> manifest, plus the CheXpert label vocabulary that
MIMIC-CXR's ``mimic-cxr-2.0.0-chexpert.csv`` shares.

Layout read: ``train.csv`` and ``valid.csv`` with a ``Path`` column that starts with the data set folder
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``), ``Frontal/Lateral``, ``AP/PA`` and the
14 observations (1.0 positive, 0.0 negative, -1.0 uncertain, blank unmentioned). ``root`` may be the data set
folder itself or its parent; the image root is found by probing which reading of ``Path`` names real files.

Splits: ``valid.csv`` (234 images, 200 patients, labelled by radiologists) is the test split; a
subject-level val split (``val_fraction`` of the train patients, by a stable hash) is carved from
``train.csv``. Labels: ``chexpert/<Observation>`` with the official names; the 5 competition tasks are listed
in the manifest meta (``competition_tasks``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.data.tables import (
    IngestError,
    IngestReport,
    IngestResult,
    drop_duplicates,
    drop_missing,
    files_exist,
    finish,
    hash_split,
    label_values,
    read_table,
)

log = logging.getLogger(__name__)

#: the 14 CheXpert observations, official names and the order of CheXpert's train.csv
CHEXPERT_OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: the CheXpert competition tasks
COMPETITION_TASKS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
#: 1 positive, 0 negative, -1 uncertain (blank: unmentioned -> NaN)
CHEXPERT_DOMAIN = (-1.0, 0.0, 1.0)
LABEL_PREFIX = "chexpert/"


def chexpert_column(observation: str) -> str:
    """Manifest label column of a CheXpert observation, e.g. ``chexpert/Pleural Effusion``."""
    return LABEL_PREFIX + observation


def chexpert_labels(table: pd.DataFrame, file: Path, report: IngestReport, ids: pd.Series) -> pd.DataFrame:
    """The 14 observation columns of ``table`` as ``chexpert/<Observation>`` floats (blank -> NaN).

    Values other than 1, 0, -1 are reported (naming ``file``) and set to NaN.
    """
    out = {
        chexpert_column(obs): label_values(table[obs], CHEXPERT_DOMAIN, report, file, obs, ids)
        for obs in CHEXPERT_OBSERVATIONS
    }
    return pd.DataFrame(out, index=table.index)


def _find_csv_folder(root: Path) -> Path:
    if (root / "train.csv").is_file() or (root / "valid.csv").is_file():
        return root
    subs = (
        sorted(p for p in root.iterdir() if p.is_dir() and (p / "train.csv").is_file())
        if root.is_dir()
        else []
    )
    if len(subs) == 1:
        return subs[0]
    if not root.is_dir():
        raise IngestError(f"{root}: CheXpert folder not found")
    found = f" (several candidates: {', '.join(p.name for p in subs)})" if subs else ""
    raise IngestError(f"{root}: CheXpert train.csv / valid.csv not found here or in one sub-folder{found}")


def resolve_image_base(paths: pd.Series, root: Path, csv_dir: Path, n_probe: int = 64) -> tuple[Path, bool]:
    """Where CheXpert's ``Path`` values point: returns ``(base, strip_first)`` so that a file is
    ``base / path`` (``strip_first``: without its first component, the data set folder name).

    Tries the folder of the CSVs and ``root`` with the path as is and stripped, and their parents; the
    reading under which most of ``n_probe`` evenly spaced rows exist wins.
    """
    values = paths.dropna().tolist()
    if not values:
        raise IngestError(f"{csv_dir}: no image paths in train.csv / valid.csv")
    probe = [values[i] for i in np.linspace(0, len(values) - 1, min(n_probe, len(values))).astype(int)]
    candidates: list[tuple[Path, bool]] = []
    for base in dict.fromkeys([csv_dir, root, csv_dir.parent, root.parent]):
        candidates += [(base, True), (base, False)]
    best, best_hits = candidates[0], -1
    for base, strip in candidates:
        hits = sum(os.path.isfile(base / (_strip_first(p) if strip else p)) for p in probe)
        if hits > best_hits:
            best, best_hits = (base, strip), hits
    if best_hits == 0:
        raise IngestError(
            f"{root}: none of {len(probe)} sampled image files named in the CSVs' Path column exist "
            f"(e.g. {probe[0]!r}); pass the CheXpert folder or its parent as --root"
        )
    return best


def _strip_first(p: str) -> str:
    parts = p.replace("\\", "/").split("/", 1)
    return parts[1] if len(parts) == 2 else p


def ingest_chexpert(
    root: str | os.PathLike,
    out: str | os.PathLike = "manifests/chexpert.parquet",
    *,
    val_fraction: float = 0.05,
    frontal_only: bool = True,
    strict: bool = False,
    check_files: bool = True,
    progress: bool = True,
) -> IngestResult:
    """Ingest CheXpert into a manifest of X-ray-only rows (one per image) with CheXpert labels.

    Args:
        root: the CheXpert folder (holding ``train.csv``, ``valid.csv``, ``train/``, ``valid/``) or its parent.
        out: manifest path; the ingest report goes beside it as ``<name>.ingest.json``.
        val_fraction: fraction of train patients moved to the val split (stable hash of the patient id).
        frontal_only: keep only ``Frontal/Lateral == Frontal`` images (lateral views dropped, counted).
        strict: fail (no manifest) when any problem is found instead of skipping rows.
        check_files: check that every image exists (rows whose file is missing are skipped).
        progress: show progress bars.

    Returns:
        An :class:`~moreclip.data.tables.IngestResult`.
    """
    root = Path(root).expanduser()
    csv_dir = _find_csv_folder(root)
    report = IngestReport("chexpert")
    parts = []
    for name, split in (("train.csv", None), ("valid.csv", "test")):
        f = csv_dir / name
        if not f.is_file():
            report.notes.append(
                f"{name} not found in {csv_dir}; no {'train/val' if split is None else 'test'} rows"
            )
            continue
        t = read_table(f, ["Path", *CHEXPERT_OBSERVATIONS])
        report.count(f"{name} rows", len(t))
        t = drop_missing(t, ["Path"], report, f)
        t = drop_duplicates(t, "Path", report, f, "Path")
        t = t.assign(_file=str(f), _split=split)
        t = pd.concat([t, chexpert_labels(t, f, report, t["Path"])], axis=1)
        parts.append(t)
    if not parts:
        raise IngestError(f"{csv_dir}: neither train.csv nor valid.csv found")
    t = pd.concat(parts, ignore_index=True)

    subject = t["Path"].str.extract(r"(patient\d+)", expand=False)
    bad = subject.isna()
    if bad.any():
        report.add("no patientNNNNN folder in Path", files=t.loc[bad, "_file"], ids=t.loc[bad, "Path"])
    t = t.assign(subject_id=subject)[~bad]
    view = (
        t["Frontal/Lateral"] if "Frontal/Lateral" in t else t["Path"].str.extract(r"_(frontal|lateral)\.")[0]
    )
    view = view.fillna("").str.capitalize()
    if frontal_only:
        keep = view.eq("Frontal")
        report.count("lateral images dropped", int((~keep).sum()))
        t, view = t[keep], view[keep]

    base, strip = resolve_image_base(t["Path"], root, csv_dir)
    rel = t["Path"].map(_strip_first) if strip else t["Path"]
    if check_files:
        ok = files_exist(base, rel.tolist(), progress=progress, desc="check images", root_flag="--root")
        if (~ok).any():
            report.add(
                "image file not found", files=[str(base / r) for r in rel[~ok]], ids=t.loc[~ok, "Path"]
            )
        t, rel, view = t[ok], rel[ok], view[ok]

    in_train = t["_split"].isna()
    split = t["_split"].to_numpy(dtype=object).copy()
    split[in_train.to_numpy()] = hash_split(
        t.loc[in_train, "subject_id"], (1 - val_fraction, val_fraction, 0.0)
    )
    labels = [chexpert_column(o) for o in CHEXPERT_OBSERVATIONS]
    df = pd.DataFrame(
        {
            "sample_id": t["Path"]
            .str.replace(r"^.*?(?=(?:train|valid|test)/patient)", "", regex=True)
            .str.replace(r"\.(jpe?g|png)$", "", regex=True, case=False),
            "subject_id": t["subject_id"],
            "split": split,
            "xray_path": rel,
            "view": view,
            "view_position": t.get("AP/PA"),
        }
    )
    df = pd.concat([df, t[labels]], axis=1)
    for s in ("train", "val", "test"):
        report.count(f"{s} rows", int((df["split"] == s).sum()))
    report.count("rows", len(df))
    report.notes.append(
        f"splits: valid.csv -> test; {val_fraction:g} of train patients -> val (stable hash of the patient id)"
    )
    meta = {
        "source": "chexpert",
        "competition_tasks": [chexpert_column(c) for c in COMPETITION_TASKS],
        "uncertain_value": -1,
        "frontal_only": frontal_only,
        "val_fraction": val_fraction,
    }
    return finish(
        df,
        report,
        Path(out),
        strict=strict,
        xray_root=base,
        ecg_root=None,
        label_domains={c: list(CHEXPERT_DOMAIN) for c in labels},
        meta=meta,
    )
