"""The manifest: one Parquet row per sample, the contract between every data source and the rest.

Columns (docs/data.md has the full description):

=============  ======  =====================================================================
sample_id      str     unique per row
subject_id     str     patient; a subject belongs to exactly one split
split          str     ``train`` / ``val`` / ``test``
xray_path      str     image file, relative to the X-ray root (null: no X-ray)
ecg_path       str     WFDB record without extension, relative to the ECG root (null: no ECG)
xray_report    str     radiology report text (null: none)
ecg_report     str     ECG (machine / cardiology) report text (null: none)
xray_time      time    optional acquisition times
ecg_time       time
<task>/<name>  float   labels, e.g. ``chexpert/Cardiomegaly`` (1, 0, -1 uncertain, null unmentioned)
=============  ======  =====================================================================

The roots and per-column label domains are kept in the Parquet file's metadata (key ``moreclip``). A
root inside the manifest's folder is stored relative to it, so a cohort folder can be moved as a whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moreclip.errors import ManifestError

FORMAT_VERSION = 1
META_KEY = b"moreclip"
SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("sample_id", "subject_id", "split")
PATH_COLUMNS = ("xray_path", "ecg_path")
TEXT_COLUMNS = ("xray_report", "ecg_report")
TIME_COLUMNS = ("xray_time", "ecg_time")
CORE_COLUMNS = REQUIRED_COLUMNS + PATH_COLUMNS + TEXT_COLUMNS + TIME_COLUMNS
#: the modality -> manifest column that says whether a sample has it
MODALITY_COLUMNS = {
    "xray": "xray_path",
    "ecg": "ecg_path",
    "xray_report": "xray_report",
    "ecg_report": "ecg_report",
}
#: values a label column may hold unless its domain is declared: positive, negative, uncertain (null allowed)
DEFAULT_LABEL_DOMAIN = (-1.0, 0.0, 1.0)


def is_label_column(name: str) -> bool:
    return "/" in name and name not in CORE_COLUMNS


@dataclass
class Manifest:
    """A loaded manifest: the table plus where its files live and what its labels may hold."""

    df: pd.DataFrame
    xray_root: Path
    ecg_root: Path
    path: Path | None = None
    label_domains: dict[str, list[float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def label_columns(self) -> list[str]:
        return [c for c in self.df.columns if is_label_column(c)]

    @property
    def tasks(self) -> list[str]:
        return sorted({c.split("/", 1)[0] for c in self.label_columns})

    def label_domain(self, column: str) -> tuple[float, ...]:
        return tuple(self.label_domains.get(column, DEFAULT_LABEL_DOMAIN))

    def has(self, modality: str) -> np.ndarray:
        """Boolean presence of ``modality`` (xray, ecg, xray_report, ecg_report) per row."""
        col = MODALITY_COLUMNS[modality]
        if col not in self.df:
            return np.zeros(len(self.df), dtype=bool)
        values = self.df[col]
        present = values.notna()
        if col in TEXT_COLUMNS:
            present &= values.fillna("").astype(str).str.strip().ne("")
        # a copy: pandas 3 (copy-on-write) hands out read-only views, and callers combine masks in place
        return present.to_numpy(dtype=bool, copy=True)

    def xray_file(self, i: int) -> Path | None:
        """Absolute path of row ``i``'s image, or None when it has none."""
        v = self.df["xray_path"].iat[i] if "xray_path" in self.df else None
        return None if _missing(v) else self.xray_root / str(v)

    def ecg_record(self, i: int) -> Path | None:
        """Absolute WFDB record path (no extension) of row ``i``, or None when it has none."""
        v = self.df["ecg_path"].iat[i] if "ecg_path" in self.df else None
        return None if _missing(v) else self.ecg_root / str(v)

    def subset(self, mask: np.ndarray | pd.Series | str) -> Manifest:
        """Rows selected by a boolean mask, or by a split name."""
        if isinstance(mask, str):
            if mask not in SPLITS:
                raise ManifestError(f"unknown split '{mask}' (expected one of {', '.join(SPLITS)})")
            mask = self.df["split"].to_numpy() == mask
        df = self.df[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        return Manifest(
            df, self.xray_root, self.ecg_root, self.path, dict(self.label_domains), dict(self.meta)
        )


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


def _store_root(root: Path, manifest_dir: Path) -> str:
    root = root.resolve()
    try:
        return root.relative_to(manifest_dir.resolve()).as_posix() or "."
    except ValueError:
        return str(root)


def normalise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Core columns in canonical order with canonical dtypes (missing optional ones added as null)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest lacks required column(s): {', '.join(missing)}")
    out = df.copy()
    for c in PATH_COLUMNS + TEXT_COLUMNS:
        if c not in out:
            out[c] = None
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    for c in TIME_COLUMNS:
        if c not in out:
            out[c] = pd.NaT
        out[c] = pd.to_datetime(out[c], errors="coerce")
    for c in ("sample_id", "subject_id", "split"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
        out[c] = out[c].map(lambda v: None if v is None else str(v))
    labels = [c for c in out.columns if is_label_column(c)]
    for c in labels:
        try:
            out[c] = pd.to_numeric(out[c], errors="raise").astype("float32")
        except (ValueError, TypeError):
            raise ManifestError(f"label column '{c}' holds non-numeric values") from None
    others = [c for c in out.columns if c not in CORE_COLUMNS and c not in labels]
    return out[list(CORE_COLUMNS) + others + labels]


def write_manifest(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    xray_root: str | os.PathLike | None = None,
    ecg_root: str | os.PathLike | None = None,
    label_domains: dict[str, list[float]] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``df`` as a manifest Parquet file, atomically. Roots default to the manifest's folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(normalise_frame(df), preserve_index=False)
    info = {
        "format_version": FORMAT_VERSION,
        "xray_root": _store_root(Path(xray_root or path.parent), path.parent),
        "ecg_root": _store_root(Path(ecg_root or path.parent), path.parent),
        "label_domains": {k: [float(x) for x in v] for k, v in (label_domains or {}).items()},
        "meta": meta or {},
    }
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[META_KEY] = json.dumps(info).encode()
    table = table.replace_schema_metadata(schema_meta)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Load a manifest written by :func:`write_manifest` (or any Parquet/CSV with the core columns).

    A CSV manifest is accepted for hand-made data sets; its roots are its own folder.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    info: dict[str, Any] = {}
    if path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path)
        except Exception as e:
            raise ManifestError(f"{path}: not a readable CSV ({e})") from None
    else:
        try:
            table = pq.read_table(path)
        except Exception as e:
            raise ManifestError(f"{path}: not a readable Parquet file ({e})") from None
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw:
            try:
                info = json.loads(raw)
            except json.JSONDecodeError:
                raise ManifestError(f"{path}: corrupt moreclip metadata") from None
        df = table.to_pandas()
    if int(info.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
        raise ManifestError(f"{path}: manifest format {info['format_version']} is newer than this moreclip")
    try:
        df = normalise_frame(df)
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from None
    base = path.parent

    def root(key: str) -> Path:
        value = info.get(key) or "."
        return (base / value).resolve() if not os.path.isabs(value) else Path(value)

    return Manifest(
        df=df,
        xray_root=root("xray_root"),
        ecg_root=root("ecg_root"),
        path=path,
        label_domains={k: list(v) for k, v in (info.get("label_domains") or {}).items()},
        meta=dict(info.get("meta") or {}),
    )
