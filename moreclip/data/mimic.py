"""MIMIC-CXR-JPG (+ reports) and MIMIC-IV-ECG as shipped -> one manifest of X-ray/ECG pairs.

Each MIMIC-CXR study (one frontal image, see :func:`~moreclip.data.mimic_cxr.select_study_images`) is paired
with the ECG(s) of the same ``subject_id`` whose ``ecg_time`` lies within ``window`` of the study time
(``|ecg_time - study_time| <= window``, boundary included), nearest first; ties go to the earlier ECG.
The MoRE paper paired within 60 days (``window="60d"``); the default is 24 hours. An ECG may pair with
several studies unless ``unique_ecgs``. Unpaired studies and ECGs are dropped, or kept with the other
modality missing (``keep_unpaired``).

MIMIC-IV-ECG layout read (relative to its root): ``record_list.csv`` (subject_id, study_id, file_name,
ecg_time ``YYYY-MM-DD HH:MM:SS``, path ``files/pNNNN/pNNNNNNNN/sNNNNNNNN/NNNNNNNN`` without extension) and
``machine_measurements.csv`` (subject_id, study_id, report_0 ... report_17, ...). The ECG report is the
non-empty ``report_*`` statements in order, each ended with a full stop, joined by spaces. The records keep
MIMIC's lead order (aVF before aVL); every reader (:func:`moreclip.data.ecg.read_ecg`) reorders by
``sig_name``.

Splits: rows with an X-ray take the official MIMIC-CXR split of their image (``validate`` -> ``val``);
ECG-only rows take their subject's split when the subject is in the split file, else a stable hash split.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.data.chexpert import CHEXPERT_DOMAIN, chexpert_column
from moreclip.data.ecg import record_path
from moreclip.data.mimic_cxr import (
    DEFAULT_VIEWS,
    assign_splits,
    find_reports_root,
    load_cxr_images,
    load_cxr_labels,
    read_cxr_reports,
    select_study_images,
)
from moreclip.data.tables import (
    HASH_FRACTIONS,
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

#: the MIMIC label set MoRE fine-tunes on (CheXpert labels of MIMIC-CXR)
MORE_MIMIC_LABELS = ("Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion")


def parse_window(window: str | pd.Timedelta) -> pd.Timedelta:
    """``"24h"``, ``"60d"``, ``"90min"``, ``"1w"``, ``"3600s"`` (or any pandas Timedelta string) -> Timedelta."""
    units = {"s": "s", "sec": "s", "m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}
    if isinstance(window, pd.Timedelta):
        w = window
    else:
        s = str(window).strip().lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)", s)
        try:
            if m and m.group(2) in units:
                w = pd.Timedelta(float(m.group(1)), unit=units[m.group(2)])
            else:
                w = pd.Timedelta(s)
        except ValueError:
            raise IngestError(f"window {window!r}: expected a duration like 24h or 60d") from None
    if w < pd.Timedelta(0):
        raise IngestError(f"window {window!r} is negative")
    return w


# ------------------------------------------------------------------------------------------------ ECGs
def join_statements(table: pd.DataFrame) -> pd.Series:
    """The ``report_0 ... report_N`` statements of each row, in order, each ended with a full stop (unless
    it ends with ``.``, ``!`` or ``?``), joined by spaces; NaN when a row has none (vectorised, pyarrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from moreclip.data.tables import from_arrow, strip_text

    cols = sorted((c for c in table.columns if re.fullmatch(r"report_\d+", c)), key=lambda c: int(c[7:]))
    if not cols:
        return pd.Series(np.nan, index=table.index, dtype=object)
    parts = []
    for c in cols:
        a = pa.array(strip_text(table[c]).to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        ended = pc.match_substring_regex(a, r"[.!?]$")
        part = pc.if_else(ended, a, pc.binary_join_element_wise(a, pa.scalar("."), ""))
        parts.append(pc.fill_null(part, ""))
    # (join with null_handling="skip" drops all-null rows in some pyarrow versions: join "" and squeeze)
    joined = pc.binary_join_element_wise(*parts, " ")
    joined = pc.utf8_trim_whitespace(pc.replace_substring_regex(joined, pattern=r"\s{2,}", replacement=" "))
    return from_arrow(joined, table.index)


def load_ecg_records(
    ecg_root: Path, report: IngestReport, *, check_files: bool = True, progress: bool = True
) -> pd.DataFrame:
    """MIMIC-IV-ECG's record list with machine reports: columns ecg_study_id, subject_id, ecg_time,
    ecg_path (record path without extension, relative to ``ecg_root``), ecg_report."""
    rl_file = find_table(ecg_root, ["record_list.csv"], "MIMIC-IV-ECG record_list.csv")
    log.info("reading %s", rl_file)
    rl = read_table(rl_file, ["subject_id", "study_id", "ecg_time", "path"])
    report.count("ecg records in record_list", len(rl))
    rl["subject_id"], rl["study_id"] = clean_ids(rl["subject_id"]), clean_ids(rl["study_id"])
    rl = drop_missing(rl, ["subject_id", "study_id", "path"], report, rl_file, "study_id")
    rl = drop_duplicates(rl, "study_id", report, rl_file)
    times = pd.to_datetime(rl["ecg_time"], errors="coerce", format="mixed")
    bad = times.isna()
    if bad.any():
        report.add(
            "blank or unparseable ecg_time", files=[rl_file] * int(bad.sum()), ids=rl.loc[bad, "study_id"]
        )
    rl = rl.assign(ecg_time=times)[~bad]
    rel = rl["path"].map(lambda p: record_path(p.replace("\\", "/")).lstrip("/"))
    rl = rl.assign(ecg_path=rel)
    if check_files:
        ok = files_exist(
            ecg_root,
            rel.tolist(),
            suffix=".hea",
            progress=progress,
            desc="check ECG headers",
            root_flag="--ecg-root",
        )
        if (~ok).any():
            report.add(
                "ECG record not found (no .hea)",
                files=[str(ecg_root / (p + ".hea")) for p in rel[~ok]],
                ids=rl.loc[~ok, "study_id"],
            )
        rl = rl[ok]

    try:
        mm_file = find_table(ecg_root, ["machine_measurements.csv"], "MIMIC-IV-ECG machine_measurements.csv")
    except IngestError:
        report.notes.append("no machine_measurements.csv: ECG rows have no ecg_report")
        rl = rl.assign(ecg_report=np.nan)
    else:
        log.info("reading %s", mm_file)
        mm = read_table(
            mm_file,
            ["study_id", "report_0"],
            usecols=lambda c: c.strip() == "study_id" or re.fullmatch(r"report_\d+", c.strip()) is not None,
        )
        mm["study_id"] = clean_ids(mm["study_id"])
        mm = drop_duplicates(drop_missing(mm, ["study_id"], report, mm_file), "study_id", report, mm_file)
        text = pd.Series(join_statements(mm).to_numpy(), index=mm["study_id"].to_numpy())
        rl = rl.assign(ecg_report=rl["study_id"].map(text))
    report.count("ecg records usable", len(rl))
    out = rl.rename(columns={"study_id": "ecg_study_id"})
    return out[["ecg_study_id", "subject_id", "ecg_time", "ecg_path", "ecg_report"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- pairing
def pair_nearest(
    left_subject: pd.Series,
    left_time: pd.Series,
    right_subject: pd.Series,
    right_time: pd.Series,
    window: pd.Timedelta,
    *,
    k: int = 1,
    unique_right: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each left row, up to ``k`` right rows of the same subject with ``|t_right - t_left| <= window``.

    Vectorised with sorted searches (no loop over rows unless ``unique_right``). Candidates are ranked by
    ``|dt|``, then the earlier right time, then the right row index. With ``unique_right`` a right row is
    given to at most one left row: pairs are taken greedily in order of ``|dt|`` over the whole table.

    Returns:
        ``(left_index, right_index, dt)`` positional indices and ``dt = t_right - t_left`` (timedelta64[ns]),
        sorted by left index, nearest first.
    """
    lt = pd.to_datetime(left_time).to_numpy("datetime64[ns]").astype(np.int64)
    rt = pd.to_datetime(right_time).to_numpy("datetime64[ns]").astype(np.int64)
    nat = np.iinfo(np.int64).min
    codes, _ = pd.factorize(pd.concat([left_subject, right_subject], ignore_index=True).astype(str))
    lc, rc = codes[: len(lt)], codes[len(lt) :]
    lvalid, rvalid = (lt != nat) & (lc >= 0), (rt != nat) & (rc >= 0)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, "timedelta64[ns]"))
    if not lvalid.any() or not rvalid.any():
        return empty
    w_ns = int(window.value)
    sec = 10**9
    t0 = min(lt[lvalid].min(), rt[rvalid].min())
    w_s = w_ns // sec + 2
    span = (max(lt[lvalid].max(), rt[rvalid].max()) - t0) // sec + 2 * w_s + 1
    if (codes.max() + 1) * span >= 2**62:
        raise IngestError("time span x subjects too large for pairing (dates over millennia?)")
    rpos = np.flatnonzero(rvalid)
    rkey = rc[rpos] * span + (rt[rpos] - t0) // sec + w_s
    order = np.argsort(rkey, kind="stable")
    rpos, rkey = rpos[order], rkey[order]
    lpos = np.flatnonzero(lvalid)
    lkey = lc[lpos] * span + (lt[lpos] - t0) // sec + w_s
    lo = np.searchsorted(rkey, lkey - w_s, side="left")
    hi = np.searchsorted(rkey, lkey + w_s, side="right")
    n = hi - lo
    li = np.repeat(lpos, n)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    ri = rpos[starts + np.arange(int(n.sum()))]
    dt = rt[ri] - lt[li]
    keep = np.abs(dt) <= w_ns
    li, ri, dt = li[keep], ri[keep], dt[keep]
    if unique_right:
        rank = np.lexsort((ri, rt[ri], li, np.abs(dt)))
        taken = np.zeros(len(lt), dtype=np.int64)
        used = np.zeros(len(rt), dtype=bool)
        sel = []
        for j in rank:
            a, b = li[j], ri[j]
            if taken[a] < k and not used[b]:
                taken[a] += 1
                used[b] = True
                sel.append(j)
        sel = np.asarray(sel, dtype=np.int64)
        li, ri, dt = li[sel], ri[sel], dt[sel]
    order = np.lexsort((ri, rt[ri], np.abs(dt), li))
    li, ri, dt = li[order], ri[order], dt[order]
    first = np.r_[True, li[1:] != li[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(li)), 0))
    top = (np.arange(len(li)) - group_start) < k
    return li[top], ri[top], dt[top].astype("timedelta64[ns]")


# ----------------------------------------------------------------------------------------------- ingest
def ingest_mimic(
    cxr_root: str | os.PathLike,
    ecg_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    reports_root: str | os.PathLike | None = None,
    window: str | pd.Timedelta = "24h",
    views: Sequence[str] | None = DEFAULT_VIEWS,
    per_image: bool = False,
    ecgs_per_study: int = 1,
    unique_ecgs: bool = False,
    keep_unpaired: bool = False,
    hash_fractions: Sequence[float] = HASH_FRACTIONS,
    strict: bool = False,
    check_files: bool = True,
    progress: bool = True,
) -> IngestResult:
    """Pair MIMIC-CXR-JPG studies with MIMIC-IV-ECG records into a manifest.

    Args:
        cxr_root: MIMIC-CXR-JPG folder (``files/``, ``mimic-cxr-2.0.0-*.csv[.gz]``).
        ecg_root: MIMIC-IV-ECG folder (``files/``, ``record_list.csv``, ``machine_measurements.csv``).
        out: manifest path; the ingest report goes beside it as ``<name>.ingest.json``.
        reports_root: MIMIC-CXR reports folder (holding ``files/pXX/...txt``); None: ``cxr_root`` when
            the reports were unpacked there, else no X-ray reports.
        window: pairing window (``24h``, ``60d`` as in the MoRE paper, ...).
        views: ViewPosition values kept, in order of preference (None: all views).
        per_image: one row per image in ``views`` instead of one (chosen) image per study.
        ecgs_per_study: up to this many ECGs per study (one row each), nearest first.
        unique_ecgs: an ECG pairs with at most one study (greedy by time distance).
        keep_unpaired: also keep studies without an ECG in the window, and ECGs paired to no study.
        hash_fractions: (train, val, test) for subjects absent from the official split file.
        strict: fail (no manifest) on any problem instead of skipping rows.
        check_files: check every image and ECG header exists (missing ones skipped and listed).
        progress: show progress bars.
    """
    cxr_root, ecg_root = Path(cxr_root).expanduser(), Path(ecg_root).expanduser()
    w = parse_window(window)
    report = IngestReport("mimic")
    images, subject_split = load_cxr_images(
        cxr_root, report, views=views, check_files=check_files, progress=progress
    )
    cxr = images if per_image else select_study_images(images, views)
    report.count("cxr rows (images)" if per_image else "cxr studies", len(cxr))
    labels = load_cxr_labels(cxr_root, report)
    ecg = load_ecg_records(ecg_root, report, check_files=check_files, progress=progress)

    li, ri, dt = pair_nearest(
        cxr["subject_id"],
        cxr["xray_time"],
        ecg["subject_id"],
        ecg["ecg_time"],
        w,
        k=ecgs_per_study,
        unique_right=unique_ecgs,
    )
    key = "dicom_id" if per_image else "study_id"
    pairs = pd.concat(
        [cxr.iloc[li].reset_index(drop=True), ecg.iloc[ri].drop(columns="subject_id").reset_index(drop=True)],
        axis=1,
    )
    pairs["pair_dt_hours"] = dt.astype(np.int64) / 3.6e12
    pairs["sample_id"] = "cxr-" + pairs[key] + "_ecg-" + pairs["ecg_study_id"]
    unpaired_cxr = cxr.drop(index=np.unique(li))
    unpaired_ecg = ecg.drop(index=np.unique(ri))
    report.count("pairs", len(pairs))
    report.count("studies paired" if not per_image else "images paired", len(np.unique(li)))
    report.count("ecgs paired", len(np.unique(ri)))
    word = "kept" if keep_unpaired else "dropped"
    report.count(
        f"{'images' if per_image else 'studies'} without ECG in {window} ({word})", len(unpaired_cxr)
    )
    report.count(f"ecgs without study in {window} ({word})", len(unpaired_ecg))
    parts = [pairs]
    if keep_unpaired:
        parts.append(unpaired_cxr.assign(sample_id="cxr-" + unpaired_cxr[key]))
        parts.append(unpaired_ecg.assign(sample_id="ecg-" + unpaired_ecg["ecg_study_id"], split=np.nan))
    df = pd.concat(parts, ignore_index=True)
    df = df.rename(columns={"study_id": "cxr_study_id"})

    df["split"] = assign_splits(df, subject_split, hash_fractions, report)
    if labels is not None:
        lab = labels.reindex(df["cxr_study_id"].to_numpy())
        lab.index = df.index
        has_cxr = df["xray_path"].notna()
        no_label = has_cxr & lab.isna().all(axis=1) & ~df["cxr_study_id"].isin(labels.index)
        report.count("cxr rows without a CheXpert label row", int(no_label.sum()))
        df = pd.concat([df, lab], axis=1)
    has_cxr = df["xray_path"].notna().to_numpy()
    df["xray_report"] = None
    if reports_root is None and has_cxr.any():
        reports_root = find_reports_root(
            cxr_root, df.loc[has_cxr, "subject_id"], df.loc[has_cxr, "cxr_study_id"]
        )
        if reports_root is not None:
            report.notes.append(f"no --reports-root: reports found under {cxr_root} and used")
    if reports_root is not None and has_cxr.any():
        texts = read_cxr_reports(
            Path(reports_root).expanduser(),
            df.loc[has_cxr, "subject_id"],
            df.loc[has_cxr, "cxr_study_id"],
            report,
            progress=progress,
        )
        df.loc[has_cxr, "xray_report"] = pd.Series(texts, index=df.index[has_cxr], dtype=object)
    elif reports_root is None:
        report.notes.append("no --reports-root: rows have no xray_report")
    for s in ("train", "val", "test"):
        report.count(f"{s} rows", int((df["split"] == s).sum()))
    report.count("rows", len(df))
    cols = [
        "sample_id",
        "subject_id",
        "split",
        "xray_path",
        "ecg_path",
        "xray_report",
        "ecg_report",
        "xray_time",
        "ecg_time",
        "cxr_study_id",
        "dicom_id",
        "view_position",
        "ecg_study_id",
        "pair_dt_hours",
    ]
    label_cols = [c for c in df.columns if c.startswith("chexpert/")]
    meta = {
        "source": "mimic",
        "window": str(window),
        "window_seconds": w.total_seconds(),
        "views": list(views) if views else None,
        "per_image": per_image,
        "ecgs_per_study": ecgs_per_study,
        "unique_ecgs": unique_ecgs,
        "keep_unpaired": keep_unpaired,
        "more_finetune_labels": [chexpert_column(c) for c in MORE_MIMIC_LABELS],
    }
    return finish(
        df[cols + label_cols],
        report,
        Path(out),
        strict=strict,
        xray_root=cxr_root,
        ecg_root=ecg_root,
        label_domains={c: list(CHEXPERT_DOMAIN) for c in label_cols},
        meta=meta,
    )
