"""PTB-XL (PhysioNet, v1.0.x) as shipped -> manifest of ECG-only rows with diagnostic labels.

Layout read (relative to the PTB-XL root): ``ptbxl_database.csv`` (ecg_id, patient_id, recording_date,
report, scp_codes as a Python dict literal, strat_fold, filename_lr, filename_hr, ...),
``scp_statements.csv`` (first column the SCP code; diagnostic, diagnostic_class, ...) and the WFDB records
``records100/`` (100 Hz) / ``records500/`` (500 Hz).

Labels:

- ``ptbxl/<SUPER>`` for the 5 diagnostic superclasses NORM, MI, STTC, CD, HYP: 1 when any of the record's
  scp_codes with ``diagnostic == 1`` in scp_statements.csv has that ``diagnostic_class`` (whatever its
  likelihood, as in the PTB-XL benchmark code), else 0. A record with no diagnostic statement at all gets
  NaN (unknown) in all five, as the PTB-XL benchmarks drop such records.
- ``ptbxl_code/<code>``: 1 when the code is in the record's scp_codes (any likelihood), else 0, for every
  code of scp_statements.csv (71 in v1.0.3).

Splits by ``strat_fold`` (patient-disjoint by construction): 1-8 train, 9 val, 10 test. The ECG report is
the ``report`` column as is (partly German). ``scp_codes`` is parsed with :func:`ast.literal_eval`, never
``eval``.
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.data.ecg import record_path
from moreclip.data.tables import (
    IngestError,
    IngestReport,
    IngestResult,
    clean_ids,
    drop_duplicates,
    drop_missing,
    files_exist,
    find_table,
    finish,
    read_table,
)

log = logging.getLogger(__name__)

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
SUPER_PREFIX = "ptbxl/"
CODE_PREFIX = "ptbxl_code/"
FOLD_SPLITS = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}


def parse_scp_codes(text: str) -> dict[str, float]:
    """``"{'NORM': 100.0, 'SR': 0.0}"`` -> dict, with :func:`ast.literal_eval`; ValueError when not a dict."""
    value = ast.literal_eval(text)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("not a dict of code -> likelihood")
    return {k.strip(): float(v) for k, v in value.items()}


def load_statements(root: Path) -> tuple[pd.DataFrame, Path]:
    """scp_statements.csv indexed by code, with ``diagnostic`` (bool) and ``diagnostic_class``."""
    f = find_table(root, ["scp_statements.csv"], "PTB-XL scp_statements.csv")
    t = read_table(f, ["diagnostic", "diagnostic_class"])
    code_col = t.columns[0]
    t = t.rename(columns={code_col: "code"}).dropna(subset=["code"]).drop_duplicates("code")
    t["diagnostic"] = pd.to_numeric(t["diagnostic"], errors="coerce").fillna(0).eq(1)
    return t.set_index("code"), f


def ingest_ptbxl(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    rate: int = 500,
    strict: bool = False,
    check_files: bool = True,
    progress: bool = True,
) -> IngestResult:
    """Ingest PTB-XL into a manifest (one row per ECG).

    Args:
        root: the PTB-XL folder (``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/``, ``records500/``).
        out: manifest path; the ingest report goes beside it as ``<name>.ingest.json``.
        rate: 500 (``filename_hr``, 5,000 samples) or 100 (``filename_lr``, 1,000 samples).
        strict: fail (no manifest) on any problem instead of skipping rows.
        check_files: check every record's ``.hea`` exists (missing ones skipped and listed).
        progress: show progress bars.
    """
    if rate not in (100, 500):
        raise IngestError(f"--rate must be 100 or 500, got {rate}")
    root = Path(root).expanduser()
    report = IngestReport("ptbxl")
    db_file = find_table(root, ["ptbxl_database.csv"], "PTB-XL ptbxl_database.csv")
    file_col = "filename_hr" if rate == 500 else "filename_lr"
    log.info("reading %s", db_file)
    db = read_table(db_file, ["ecg_id", "patient_id", "report", "scp_codes", "strat_fold", file_col])
    statements, st_file = load_statements(root)
    report.count("records in ptbxl_database.csv", len(db))
    db["ecg_id"], db["patient_id"] = clean_ids(db["ecg_id"]), clean_ids(db["patient_id"])
    db = drop_missing(db, ["ecg_id", "patient_id", "strat_fold", file_col], report, db_file, "ecg_id")
    db = drop_duplicates(db, "ecg_id", report, db_file)

    fold = pd.to_numeric(db["strat_fold"], errors="coerce")
    bad = ~fold.isin(list(FOLD_SPLITS))
    if bad.any():
        report.add("strat_fold not in 1-10", files=[db_file] * int(bad.sum()), ids=db.loc[bad, "ecg_id"])
    db, fold = db[~bad], fold[~bad].astype(int)

    codes, bad_ids = [], []
    for ecg_id, text in zip(db["ecg_id"], db["scp_codes"].fillna("{}")):
        try:
            codes.append(parse_scp_codes(text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            codes.append(None)
            bad_ids.append(ecg_id)
    if bad_ids:
        report.add("unparseable scp_codes", files=[db_file] * len(bad_ids), ids=bad_ids)
    ok = np.array([c is not None for c in codes], dtype=bool)
    db, fold, codes = db[ok], fold[ok], [c for c in codes if c is not None]

    all_codes = list(statements.index)
    unknown = sorted({c for d in codes for c in d} - set(all_codes))
    if unknown:
        report.add(
            f"scp code not in {st_file.name} (kept as a code column, no superclass)",
            files=[db_file] * len(unknown),
            ids=unknown,
            skipped=False,
        )
    code_matrix = pd.DataFrame(
        [{c: 1.0 for c in d} for d in codes], columns=all_codes + unknown, index=db.index, dtype="float32"
    ).fillna(0.0)
    diag = statements[statements["diagnostic"] & statements["diagnostic_class"].isin(SUPERCLASSES)]
    supers = {}
    for sc in SUPERCLASSES:
        members = [c for c in diag.index[diag["diagnostic_class"] == sc] if c in code_matrix]
        supers[SUPER_PREFIX + sc] = (code_matrix[members].sum(axis=1) > 0).astype("float32")
    supers = pd.DataFrame(supers)
    has_diag = code_matrix[[c for c in diag.index if c in code_matrix]].sum(axis=1) > 0
    supers.loc[~has_diag, :] = np.nan
    report.count("records without a diagnostic statement (superclasses unknown)", int((~has_diag).sum()))

    rel = db[file_col].map(lambda p: record_path(p.replace("\\", "/")).lstrip("/"))
    if check_files:
        exists = files_exist(
            root, rel.tolist(), suffix=".hea", progress=progress, desc="check ECG headers", root_flag="--root"
        )
        if (~exists).any():
            report.add(
                "ECG record not found (no .hea)",
                files=[str(root / (p + ".hea")) for p in rel[~exists]],
                ids=db.loc[~exists, "ecg_id"],
            )
        keep = pd.Series(exists, index=db.index)
    else:
        keep = pd.Series(True, index=db.index)
    df = pd.DataFrame(
        {
            "sample_id": "ptbxl-" + db["ecg_id"].str.zfill(5),
            "subject_id": db["patient_id"],
            "split": fold.map(FOLD_SPLITS),
            "ecg_path": rel,
            "ecg_report": db["report"],
            "ecg_time": pd.to_datetime(db.get("recording_date"), errors="coerce"),
            "ecg_id": db["ecg_id"],
            "strat_fold": fold,
        }
    )
    code_matrix.columns = [CODE_PREFIX + c for c in code_matrix.columns]
    df = pd.concat([df, supers, code_matrix], axis=1)[keep.to_numpy()]
    for s in ("train", "val", "test"):
        report.count(f"{s} rows", int((df["split"] == s).sum()))
    report.count("rows", len(df))
    report.notes.append("splits: strat_fold 1-8 train, 9 val, 10 test")
    label_cols = list(supers.columns) + list(code_matrix.columns)
    meta = {
        "source": "ptbxl",
        "rate": rate,
        "superclasses": [SUPER_PREFIX + s for s in SUPERCLASSES],
        "code_descriptions": {
            CODE_PREFIX + c: str(statements.at[c, "description"])
            for c in all_codes
            if "description" in statements and pd.notna(statements.at[c, "description"])
        },
    }
    return finish(
        df,
        report,
        Path(out),
        strict=strict,
        xray_root=None,
        ecg_root=root,
        label_domains={c: [0.0, 1.0] for c in label_cols},
        meta=meta,
    )
