"""Shared pieces of the ingest adapters: reading the publishers' CSV tables, checking their columns and ids,
stable hash splits, file-existence checks, and the :class:`IngestReport` every adapter fills in.

Ingest itself checks what a table can tell: the CSV files and their required columns exist, ids are present
and unique, timestamps and label values parse, and every file a row names exists. Decoding the files (JPEG
decodes, WFDB header/length/rate, truncated ``.dat``, NaN samples) is left to ``moreclip validate`` and
``moreclip prepare``, which read every record anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moreclip.errors import MoreclipError, RecordError

#: default fractions (train, val, test) of the deterministic hash split
HASH_FRACTIONS = (0.9, 0.05, 0.05)
_MAX_EXAMPLES = 5


class IngestError(MoreclipError):
    """The source data cannot be ingested (or, with ``strict``, has problems)."""


# ------------------------------------------------------------------------------------------ CSV tables
def find_table(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (file names or glob patterns, each also tried with ``.gz``) under ``root``.

    Args:
        root: the data set folder.
        names: candidates in order of preference; for a glob the lexically last match wins (newest version).
        what: how to name the table in the error message.

    Raises:
        IngestError: none exists; the message lists what was looked for.
    """
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"{root}: folder not found ({what})")
    for name in names:
        for pattern in (name, name + ".gz"):
            hits = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
            hits = [h for h in hits if h.is_file()]
            if hits:
                return hits[-1]
    tried = ", ".join(f"{n}[.gz]" for n in names)
    raise IngestError(f"{root}: {what} not found (looked for {tried})")


def read_table(
    path: Path, required: Iterable[str], *, usecols: Any = None, numeric: Iterable[str] = ()
) -> pd.DataFrame:
    """Read a CSV (plain or gzipped) with every column as text, after checking its header.

    Args:
        path: the CSV file.
        required: columns that must be present; a missing one raises naming the file and the column.
        usecols: optional pandas ``usecols`` (names or a callable) to read fewer columns of big tables.
        numeric: columns converted to float (blank -> NaN); a non-number raises naming the column.

    Returns:
        The table; blank cells are NaN, other cells stripped strings. Column names are stripped.
    """
    path = Path(path)
    try:
        header = [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
    except Exception as e:
        raise RecordError(path, f"not a readable CSV table ({type(e).__name__}: {e})") from None
    missing = [c for c in required if c not in header]
    if missing:
        shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
        raise RecordError(path, f"missing column(s) {', '.join(map(repr, missing))} (has: {shown})")
    try:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], usecols=usecols, low_memory=False
        )
    except Exception as e:
        raise RecordError(path, f"not a readable CSV table ({type(e).__name__}: {e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = strip_text(df[c])
    for c in numeric:
        values = pd.to_numeric(df[c], errors="coerce")
        bad = values.isna() & df[c].notna()
        if bad.any():
            examples = ", ".join(map(repr, df.loc[bad, c].unique()[:3]))
            raise RecordError(path, f"column {c!r} holds non-numeric values ({examples})")
        df[c] = values.astype("float64")
    return df


def _to_arrow(values: pd.Series):
    import pyarrow as pa

    v = values.to_numpy(dtype=object)
    if any(not isinstance(x, str) for x in v[pd.notna(v)][:1000]):  # ids read as numbers by a caller
        v = np.array([None if pd.isna(x) else str(x) for x in v], dtype=object)
    return pa.array(v, type=pa.string(), from_pandas=True)


def from_arrow(arr, index: pd.Index) -> pd.Series:
    import pyarrow.compute as pc

    arr = pc.if_else(pc.equal(arr, ""), None, arr)
    v = arr.to_numpy(zero_copy_only=False)
    if len(v) != len(index):  # pragma: no cover - guards against pyarrow kernels dropping rows
        raise RuntimeError(f"internal error: text column of {len(v)} values for {len(index)} rows")
    return pd.Series(np.where(pd.isna(v), np.nan, v), index=index, dtype=object)


def strip_text(values: pd.Series) -> pd.Series:
    """Text stripped of surrounding whitespace; blank -> NaN (vectorised with pyarrow)."""
    import pyarrow.compute as pc

    return from_arrow(pc.utf8_trim_whitespace(_to_arrow(values)), values.index)


def clean_ids(values: pd.Series) -> pd.Series:
    """Ids as canonical strings: stripped, a float-ified ``'15709.0'`` becomes ``'15709'``; blank -> NaN."""
    import pyarrow.compute as pc

    arr = pc.utf8_trim_whitespace(_to_arrow(values))
    arr = pc.replace_substring_regex(arr, pattern=r"^(\d+)\.0+$", replacement=r"\1")
    return from_arrow(arr, values.index)


# ------------------------------------------------------------------------------------------- splits
def hash_split(keys: Iterable[Any], fractions: Sequence[float] = HASH_FRACTIONS, salt: str = "moreclip"):
    """A deterministic train/val/test split of ``keys`` (usually subject ids), stable across runs/machines.

    Each key's SHA-1 (with ``salt``) gives a uniform number in [0, 1) compared with the cumulative
    ``fractions`` (train, val, test). Returns an object array of split names.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1) > 1e-6:
        raise IngestError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    keys = list(keys)
    u = np.array(
        [int.from_bytes(hashlib.sha1(f"{salt}:{k}".encode()).digest()[:8], "big") / 2**64 for k in keys]
    )
    out = np.full(len(keys), "test", dtype=object)
    out[u < f[0] + f[1]] = "val"
    out[u < f[0]] = "train"
    return out


def majority(keys: pd.Series, values: pd.Series) -> pd.Series:
    """The most frequent value per key (ties: the smallest value), vectorised; indexed by key."""
    counts = pd.DataFrame({"k": keys.to_numpy(), "v": values.to_numpy()}).value_counts().reset_index(name="n")
    counts = counts.sort_values(["k", "n", "v"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("k").set_index("k")["v"]


# ------------------------------------------------------------------------------------------- files
def files_exist(
    root: Path,
    relpaths: Sequence[str],
    *,
    suffix: str = "",
    progress: bool = True,
    desc: str = "check files",
    root_flag: str | None = None,
) -> np.ndarray:
    """Boolean array: does ``root / relpath + suffix`` exist as a file, for every path (threads, for NFS).

    With ``root_flag`` (e.g. ``--ecg-root``), raise when two or more paths are given and none exists: the
    root is wrong, which is clearer than skipping every row.
    """
    from tqdm.auto import tqdm

    root_s = os.fspath(root)
    paths = [os.path.join(root_s, p + suffix) for p in relpaths]
    out = np.zeros(len(paths), dtype=bool)
    chunk = 2048
    starts = range(0, len(paths), chunk)

    def check(start: int) -> tuple[int, list[bool]]:
        return start, [os.path.isfile(p) for p in paths[start : start + chunk]]

    with (
        tqdm(total=len(paths), desc=desc, unit="file", disable=not progress or len(paths) < 5000) as bar,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        for start, flags in pool.map(check, starts):
            out[start : start + len(flags)] = flags
            bar.update(len(flags))
    if root_flag and len(paths) >= 2 and not out.any():
        raise IngestError(
            f"{root}: none of the {len(paths)} files named by the tables exists (e.g. {paths[0]}); "
            f"is {root_flag} the folder the data set was unpacked to?"
        )
    return out


# ------------------------------------------------------------------------------------------- report
@dataclass
class Issue:
    reason: str
    file: str | None
    id: str | None
    skipped: bool  # True: the row was dropped; False: kept with the named part missing


@dataclass
class IngestReport:
    """What an ingest did: counts, every problem (file + reason), notes about choices made."""

    source: str
    counts: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, key: str, n: int) -> None:
        self.counts[key] = int(n)

    def add(
        self,
        reason: str,
        *,
        files: Iterable[Any] | None = None,
        ids: Iterable[Any] | None = None,
        skipped: bool = True,
    ) -> int:
        """Record one problem per item of ``files``/``ids`` (same length, either may be None)."""
        files = None if files is None else [None if _na(f) else str(f) for f in files]
        ids = None if ids is None else [None if _na(i) else str(i) for i in ids]
        n = len(files) if files is not None else len(ids) if ids is not None else 0
        for j in range(n):
            self.issues.append(Issue(reason, files[j] if files else None, ids[j] if ids else None, skipped))
        return n

    @property
    def n_skipped(self) -> int:
        return sum(i.skipped for i in self.issues)

    def by_reason(self) -> Counter:
        return Counter((i.reason, i.skipped) for i in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts,
            "issues_by_reason": [
                {"reason": r, "skipped": s, "n": n} for (r, s), n in self.by_reason().most_common()
            ],
            "notes": self.notes,
            "issues": [i.__dict__ for i in self.issues],
        }

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    def format(self) -> str:
        """A short summary: counts, then problems grouped by reason with a few example files (no texts)."""
        lines = [f"ingest {self.source}:"]
        width = max([len(k) for k in self.counts] + [8])
        lines += [f"  {k.replace('_', ' ').ljust(width)}  {v}" for k, v in self.counts.items()]
        if self.issues:
            lines.append(f"  problems ({self.n_skipped} rows skipped):")
            for (reason, skipped), n in self.by_reason().most_common():
                group = [i for i in self.issues if i.reason == reason and i.skipped == skipped]
                files = list(dict.fromkeys(i.file for i in group if i.file))
                ids = [i.id for i in group if i.id]
                if len(files) <= 1 and ids and not all(i.id in (i.file or "") for i in group):
                    # problems inside one table: name the table once, then the ids
                    shown = (f"{files[0]}: " if files else "") + ", ".join(ids[:_MAX_EXAMPLES])
                    extra = len(ids) - _MAX_EXAMPLES
                else:
                    shown = ", ".join(files[:_MAX_EXAMPLES])
                    extra = len(files) - _MAX_EXAMPLES
                shown += f", ... (+{extra})" if extra > 0 else ""
                action = "skipped" if skipped else "kept"
                lines.append(f"    {n:>7} {action}: {reason}" + (f" [{shown}]" if shown else ""))
        else:
            lines.append("  problems: none")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _na(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


@dataclass
class IngestResult:
    """What an ``ingest_*`` function returns: the manifest it wrote, its table, and the report."""

    manifest: Path
    df: pd.DataFrame
    report: IngestReport
    report_path: Path


def finish(
    df: pd.DataFrame,
    report: IngestReport,
    out: Path,
    *,
    strict: bool,
    xray_root: Path | None,
    ecg_root: Path | None,
    label_domains: dict[str, list[float]],
    meta: dict[str, Any],
) -> IngestResult:
    """Write the report beside ``out`` (``<name>.ingest.json``), then, unless ``strict`` and problems were
    found, the manifest. Rows are sorted by ``sample_id``; duplicated sample ids are an internal error."""
    from moreclip.data.manifest import write_manifest

    out = Path(out)
    report_path = report.write(out.with_name(out.stem + ".ingest.json"))
    if strict and report.issues:
        reasons = "; ".join(f"{n} x {r}" for (r, _), n in report.by_reason().most_common())
        raise IngestError(
            f"--strict: {len(report.issues)} problem(s) in the source data ({reasons}); "
            f"every one is listed in {report_path}; no manifest written"
        )
    if df.empty:
        raise IngestError(f"no rows left to write for {report.source} (see {report_path})")
    df = df.sort_values("sample_id", kind="stable").reset_index(drop=True)
    dup = df["sample_id"].duplicated()
    if dup.any():  # pragma: no cover - the adapters build unique ids
        raise IngestError(
            f"internal error: duplicated sample ids {df.loc[dup, 'sample_id'].head(3).tolist()}"
        )
    path = write_manifest(
        df, out, xray_root=xray_root, ecg_root=ecg_root, label_domains=label_domains, meta=meta
    )
    return IngestResult(manifest=path, df=df, report=report, report_path=report_path)


def drop_duplicates(
    df: pd.DataFrame, key: str, report: IngestReport, file: Path, what: str | None = None
) -> pd.DataFrame:
    """Keep the first row of each ``key`` value; every later duplicate is reported as skipped."""
    dup = df[key].duplicated(keep="first") & df[key].notna()
    if dup.any():
        report.add(
            f"duplicated {what or key} in {Path(file).name} (first kept)",
            files=[file] * int(dup.sum()),
            ids=df.loc[dup, key],
        )
    return df[~dup]


def drop_missing(
    df: pd.DataFrame, columns: Sequence[str], report: IngestReport, file: Path, id_column: str | None = None
) -> pd.DataFrame:
    """Drop rows with a blank value in any of ``columns``, reporting each (under its first blank column)."""
    dropped = pd.Series(False, index=df.index)
    for c in columns:
        sel = df[c].isna() & ~dropped
        if sel.any():
            report.add(
                f"blank {c} in {Path(file).name}",
                files=[file] * int(sel.sum()),
                ids=df.loc[sel, id_column] if id_column else None,
            )
            dropped |= sel
    return df[~dropped]


def label_values(
    values: pd.Series, domain: Sequence[float], report: IngestReport, file: Path, column: str, ids: pd.Series
) -> pd.Series:
    """Label text -> float; blank -> NaN. Values outside ``domain`` are reported and set to NaN."""
    v = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & ~v.isin(list(domain))
    if bad.any():
        shown = ", ".join(map(repr, values[bad].unique()[:3]))
        report.add(
            f"label {column!r} outside {list(domain)} ({shown}) set to unknown",
            files=[file] * int(bad.sum()),
            ids=ids[bad],
            skipped=False,
        )
        v = v.where(~bad, np.nan)
    return v.astype("float32")
