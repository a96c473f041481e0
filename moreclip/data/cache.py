"""The preprocessed cache: memory-mapped arrays plus an index table, and its reader.

A cache is a directory written by :func:`moreclip.data.prepare.prepare_cache` (``moreclip prepare``):

===================  ==========================================================================
``xray.npy``         ``uint8 [N, S, S]`` radiographs after :func:`~moreclip.data.preprocess.preprocess_xray`
``ecg.npy``          ``float16 [N, 12, T]`` ECGs (mV) after :func:`~moreclip.data.preprocess.preprocess_ecg`
``index.parquet``    one row per manifest row, in manifest order: ``sample_id``, ``row`` (the array
                     row), ``subject_id``, ``split``, the reports, ``has_<modality>`` (presence after
                     preprocessing: a record that failed is absent), source paths, times and labels;
                     the label domains are in the Parquet metadata (key ``moreclip``)
``problems.csv``     every record that was skipped or repaired: row, sample_id, modality, file, problem,
                     action (``skipped`` / ``nan_to_zero``)
``meta.json``        format version, preprocessing options, source manifest (path, SHA-256 of the file,
                     hash of its table, roots), array shapes, counts, library versions, and
                     ``"complete": true`` -- written last, atomically, so a crashed run never reads as done
===================  ==========================================================================

An array holds a row for every manifest row (absent records are zeros and cost no disk space: the files
are sparse), so ``row`` equals the manifest row. Only modalities that some row has get an array. Reading
needs none of the raw files; arrays are opened lazily (per process) with ``np.load(mmap_mode="r")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moreclip.data.preprocess import PreprocessOptions
from moreclip.errors import MoreclipError

FORMAT = "moreclip-cache"
FORMAT_VERSION = 1
META_FILE = "meta.json"
INDEX_FILE = "index.parquet"
PROBLEMS_FILE = "problems.csv"
SHARD_DIR = "shards"
ARRAY_FILES = {"xray": "xray.npy", "ecg": "ecg.npy"}
ARRAY_DTYPES = {"xray": np.uint8, "ecg": np.float16}
INDEX_META_KEY = b"moreclip"
INCOMPLETE = "incomplete cache: re-run moreclip prepare to resume"


class CacheError(MoreclipError):
    """A cache directory is missing, incomplete, from another format version, or does not fit the request."""


def array_shape(modality: str, n: int, opts: PreprocessOptions) -> tuple[int, ...]:
    """Shape of a cache array: xray ``(N, S, S)``, ecg ``(N, 12, T)``."""
    if modality == "xray":
        return (n, opts.image_size, opts.image_size)
    return (n, 12, opts.ecg_length)


# ---------------------------------------------------------------------------------- atomic writes
def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a fsync'd temporary file and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``meta.json`` of a cache directory, or None when there is none. Raises on a corrupt one."""
    p = Path(path) / META_FILE
    if not p.is_file():
        return None
    try:
        meta = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(f"{p}: unreadable cache metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CacheError(f"{p}: not a moreclip cache")
    return meta


# ------------------------------------------------------------------------------------------ reader
class Cache:
    """A complete cache directory, opened for reading.

    Attributes:
        path: the directory.
        meta: the parsed ``meta.json``.
        options: the :class:`PreprocessOptions` baked into the arrays.
        index: the index table (a DataFrame, one row per manifest row, in array-row order).
        label_columns: label column names, in table order.
        label_domains: declared value sets of label columns.

    Pickles without its memory maps (they reopen lazily in each DataLoader worker).
    """

    def __init__(self, path: str | os.PathLike):
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.is_dir():
            raise CacheError(f"cache not found: {self.path}")
        meta = read_meta(self.path)
        if meta is None:
            raise CacheError(
                f"{self.path}: no {META_FILE}; not a moreclip cache (write one with moreclip prepare)"
            )
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise CacheError(
                f"{self.path}: cache format {meta['format_version']} is newer than this moreclip"
            )
        if meta.get("complete") is not True:
            raise CacheError(f"{self.path}: {INCOMPLETE}")
        self.meta = meta
        self.options = PreprocessOptions(**meta["options"])
        try:
            table = pq.read_table(self.path / INDEX_FILE)
        except Exception as e:
            raise CacheError(f"{self.path / INDEX_FILE}: unreadable index table ({e})") from None
        info = json.loads((table.schema.metadata or {}).get(INDEX_META_KEY, b"{}"))
        self.index: pd.DataFrame = table.to_pandas()
        self.label_columns: list[str] = list(info.get("label_columns", []))
        self.label_domains: dict[str, list[float]] = dict(info.get("label_domains", {}))
        if len(self.index) != int(meta["n_rows"]):
            raise CacheError(
                f"{self.path}: index has {len(self.index)} rows, meta.json says {meta['n_rows']}"
            )
        self._arrays: dict[str, np.ndarray] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        mods = ", ".join(self.modalities) or "no arrays"
        return f"Cache({str(self.path)!r}, rows={len(self)}, {mods})"

    @property
    def modalities(self) -> list[str]:
        """Modalities with an array in this cache (``xray``, ``ecg``)."""
        return [m for m in ARRAY_FILES if m in self.meta.get("arrays", {})]

    def has(self, modality: str) -> np.ndarray:
        """Boolean presence per row (after preprocessing) of ``xray``, ``ecg``, ``xray_report``, ``ecg_report``."""
        return self.index[f"has_{modality}"].to_numpy(dtype=bool)

    def array(self, modality: str) -> np.ndarray:
        """The read-only memory map of ``modality`` (``xray`` ``(N, S, S)`` uint8, ``ecg`` ``(N, 12, T)`` float16)."""
        if self._pid != os.getpid():  # forked: maps are per process
            self._arrays, self._pid = {}, os.getpid()
        arr = self._arrays.get(modality)
        if arr is None:
            spec = self.meta.get("arrays", {}).get(modality)
            if spec is None:
                raise CacheError(f"{self.path}: the cache holds no {modality} array")
            file = self.path / spec["file"]
            try:
                arr = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CacheError(f"{file}: unreadable cache array ({e})") from None
            if list(arr.shape) != list(spec["shape"]) or arr.dtype != np.dtype(spec["dtype"]):
                raise CacheError(
                    f"{file}: array is {arr.dtype} {list(arr.shape)}, meta.json says {spec['dtype']} {spec['shape']}"
                )
            self._arrays[modality] = arr
        return arr

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state


def open_cache(path: str | os.PathLike) -> Cache:
    """Open a complete cache written by ``moreclip prepare``.

    Raises:
        CacheError: the directory is missing, not a cache, or incomplete ("re-run moreclip prepare to resume").
    """
    return Cache(path)
