"""``prepare_cache``: decode every record of a manifest once into a cache (format in :mod:`moreclip.data.cache`).

Rows are processed in shards (default 256 rows). Each shard is preprocessed into memory, written into
the preallocated memory-mapped arrays, flushed (``msync``), and then marked done by an fsync'd JSON file
``shards/<k>.json`` holding the shard's presence flags and problems. Running again after an interruption
(Ctrl-C, SIGKILL, power loss) redoes only the shards without a marker; since preprocessing is
deterministic, the result is byte-for-byte the cache an uninterrupted run writes. ``meta.json`` gets
``"complete": true`` only after the index table and the problem report are written, so a crashed run
never reads as complete. An exclusive lock file stops two runs writing to one cache.

A record that fails (missing or corrupt file, wrong leads or duration, too many NaNs) is marked absent
for that modality and listed in ``problems.csv``; with ``strict=True`` the first failure aborts instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moreclip.data import cache as C
from moreclip.data.manifest import MODALITY_COLUMNS, Manifest, read_manifest
from moreclip.data.preprocess import PreprocessOptions, load_ecg, load_xray
from moreclip.errors import RecordError

log = logging.getLogger(__name__)

#: test hook: SIGKILL this process after that many shards were finished (deterministic interruption)
FAULT_ENV = "MORECLIP_FAULT_KILL_AFTER_SHARDS"
_OWN_FILES = (C.META_FILE, C.INDEX_FILE, C.PROBLEMS_FILE, *C.ARRAY_FILES.values(), ".lock")
PROBLEM_COLUMNS = ["row", "sample_id", "modality", "file", "problem", "action"]


@dataclass
class PrepareResult:
    path: Path
    n_rows: int
    counts: dict[str, int] = field(default_factory=dict)  # present per modality after preprocessing
    problems: list[dict[str, Any]] = field(default_factory=list)
    shards_total: int = 0
    shards_done_before: int = 0  # shards found finished when this run started (resume)
    up_to_date: bool = False  # the cache was already complete with these options: nothing was done


def _versions() -> dict[str, str]:
    import importlib

    from moreclip import __version__

    mods = {"numpy": "numpy", "scipy": "scipy", "opencv": "cv2", "pillow": "PIL", "wfdb": "wfdb"}
    out = {"moreclip": __version__, "python": sys.version.split()[0]}
    return out | {k: str(getattr(importlib.import_module(v), "__version__", "?")) for k, v in mods.items()}


def _source(m: Manifest) -> dict[str, Any]:
    table = pd.util.hash_pandas_object(m.df, index=False).to_numpy().tobytes()
    h = hashlib.sha256(table)
    h.update("|".join([*map(str, m.df.columns), str(m.xray_root), str(m.ecg_root)]).encode())
    file_sha = None
    if m.path is not None and Path(m.path).is_file():
        file_sha = hashlib.sha256(Path(m.path).read_bytes()).hexdigest()
    return {
        "manifest": None if m.path is None else str(Path(m.path).resolve()),
        "sha256": file_sha,
        "table_hash": h.hexdigest(),
        "xray_root": str(m.xray_root),
        "ecg_root": str(m.ecg_root),
    }


def _differences(meta: dict[str, Any], opts: PreprocessOptions, source: dict[str, Any]) -> list[str]:
    diffs = [
        f"{k} {meta['options'].get(k)!r} -> {v!r}"
        for k, v in opts.to_dict().items()
        if meta["options"].get(k) != v
    ]
    if meta.get("source", {}).get("table_hash") != source["table_hash"]:
        diffs.append("the source manifest (or its roots) changed")
    return diffs


# ------------------------------------------------------------------------------------------- shards
def _shard_marker(out: Path, k: int) -> Path:
    return out / C.SHARD_DIR / f"{k:06d}.json"


def _read_marker(out: Path, k: int, start: int, stop: int) -> dict[str, Any] | None:
    try:
        d = json.loads(_shard_marker(out, k).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ok = d.get("rows") == [start, stop] and all(len(d.get(m, [])) == stop - start for m in ("xray", "ecg"))
    return d if ok else None


def _problem(row: int, sid: str, modality: str, file: str, problem: str, action: str) -> dict[str, Any]:
    return dict(zip(PROBLEM_COLUMNS, (row, sid, modality, file, problem, action)))


def _run_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Preprocess rows ``[start, stop)``, write them into the arrays, flush, and write the done marker."""
    out, opts = Path(task["out"]), PreprocessOptions(**task["options"])
    start, stop = task["start"], task["stop"]
    n = stop - start
    blocks = {m: np.zeros((n, *C.array_shape(m, 1, opts)[1:]), C.ARRAY_DTYPES[m]) for m in task["arrays"]}
    present = {"xray": [False] * n, "ecg": [False] * n}
    problems: list[dict[str, Any]] = []
    for j, (row, sid, xray_file, ecg_rec) in enumerate(task["rows"]):
        for modality, src in (("xray", xray_file), ("ecg", ecg_rec)):
            if src is None:
                continue
            try:
                if modality == "xray":
                    blocks["xray"][j] = load_xray(src, opts)
                else:
                    sig, n_nan = load_ecg(src, opts)
                    blocks["ecg"][j] = sig
                    if n_nan:
                        problems.append(
                            _problem(
                                row,
                                sid,
                                modality,
                                f"{src}.hea",
                                f"{n_nan} NaN samples set to 0",
                                "nan_to_zero",
                            )
                        )
                present[modality][j] = True
            except Exception as e:  # one bad record must not stop a long run: report it (or abort if strict)
                err = e if isinstance(e, RecordError) else RecordError(src, f"{type(e).__name__}: {e}")
                if task["strict"]:
                    raise RecordError(
                        err.path, f"{err.problem} (row {row}, sample {sid}; --strict)"
                    ) from None
                problems.append(_problem(row, sid, modality, err.path or str(src), err.problem, "skipped"))
    for m, block in blocks.items():
        arr = np.load(out / C.ARRAY_FILES[m], mmap_mode="r+")
        arr[start:stop] = block
        arr.flush()
        del arr
    marker = {"shard": task["shard"], "rows": [start, stop], **present, "problems": problems}
    C.write_json(_shard_marker(out, task["shard"]), marker)
    return marker


# ------------------------------------------------------------------------------------------- main
def _lock(out: Path):
    f = open(out / ".lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - not POSIX: no lock
        pass
    except OSError:
        f.close()
        raise C.CacheError(f"{out}: another moreclip prepare is writing this cache") from None
    return f


def _clear(out: Path) -> None:
    for name in _OWN_FILES:
        if name != ".lock":
            (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / C.SHARD_DIR, ignore_errors=True)


def _allocate(out: Path, meta: dict[str, Any]) -> bool:
    """Create the arrays named in ``meta`` unless they exist with the right shape; True when (re)created."""
    created = False
    for spec in meta["arrays"].values():
        file = out / spec["file"]
        try:
            arr = np.load(file, mmap_mode="r")
            ok = list(arr.shape) == spec["shape"] and arr.dtype == np.dtype(spec["dtype"])
            del arr
        except (OSError, ValueError):
            ok = False
        if not ok:
            tmp = file.with_name(f".{file.name}.tmp")
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=spec["dtype"], shape=tuple(spec["shape"]))
            arr.flush()
            del arr
            os.replace(tmp, file)
            created = True
    if created:  # shards written into an old array are gone
        shutil.rmtree(out / C.SHARD_DIR, ignore_errors=True)
    (out / C.SHARD_DIR).mkdir(exist_ok=True)
    C.fsync_dir(out)
    return created


def _index_table(m: Manifest, present: dict[str, np.ndarray]):
    import pyarrow as pa

    df = m.df.copy()
    df.insert(1, "row", np.arange(len(df), dtype=np.int64))
    for mod in MODALITY_COLUMNS:
        df[f"has_{mod}"] = present[mod] if mod in present else m.has(mod)
    table = pa.Table.from_pandas(df, preserve_index=False)
    info = {
        "label_columns": m.label_columns,
        "label_domains": {c: list(m.label_domain(c)) for c in m.label_columns},
    }
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), C.INDEX_META_KEY: json.dumps(info).encode()}
    )


def _new_meta(m: Manifest, opts: PreprocessOptions, source: dict, shard_size: int) -> dict[str, Any]:
    n = len(m)
    arrays = {
        mod: {
            "file": f,
            "dtype": np.dtype(C.ARRAY_DTYPES[mod]).name,
            "shape": list(C.array_shape(mod, n, opts)),
        }
        for mod, f in C.ARRAY_FILES.items()
        if m.has(mod).any()
    }
    return {
        "format": C.FORMAT,
        "format_version": C.FORMAT_VERSION,
        "complete": False,
        "n_rows": n,
        "options": opts.to_dict(),
        "source": source,
        "shard_size": shard_size,
        "n_shards": -(-n // shard_size),
        "arrays": arrays,
        "versions": _versions(),
    }


def prepare_cache(
    manifest: Manifest | str | os.PathLike,
    out: str | os.PathLike,
    options: PreprocessOptions | None = None,
    *,
    workers: int = 1,
    shard_size: int = 256,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Decode and preprocess every record of ``manifest`` into a cache directory ``out`` (resumable).

    Args:
        manifest: a :class:`Manifest` or the path of one.
        out: the cache directory (created).
        options: preprocessing; default :meth:`PreprocessOptions.from_config` of the default DataConfig.
        workers: processes; 1 runs in this process.
        shard_size: rows per shard (the unit of resumption; a resumed run keeps the first run's).
        strict: abort on the first bad record instead of reporting and skipping it.
        overwrite: rebuild a cache that was prepared with other options or from another manifest.
        progress: show a tqdm bar.

    Returns:
        A :class:`PrepareResult`; ``up_to_date`` when the cache was already complete with these options.

    Raises:
        CacheError: ``out`` is another directory, holds a different cache (without ``overwrite``), or is
            being written by another run. RecordError: a bad record under ``strict``.
    """
    from tqdm.auto import tqdm

    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    opts = (options or PreprocessOptions.from_config()).checked()
    out = Path(out)
    n = len(m)
    if n == 0:
        raise C.CacheError(f"{m.path}: the manifest has no rows")
    if shard_size < 1:
        raise C.CacheError(f"shard_size must be >= 1, got {shard_size}")
    source = _source(m)
    if out.exists() and not out.is_dir():
        raise C.CacheError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        meta = C.read_meta(out)
        if meta is None and any(p.name not in (*_OWN_FILES, C.SHARD_DIR) for p in out.iterdir()):
            raise C.CacheError(
                f"{out}: directory is not empty and not a moreclip cache; choose another --out"
            )
        if meta is not None:
            diffs = _differences(meta, opts, source)
            if diffs and not overwrite:
                raise C.CacheError(
                    f"{out}: cache was prepared differently ({'; '.join(diffs)}); pass --overwrite to rebuild it"
                )
            if diffs:
                log.info("rebuilding %s (%s)", out, "; ".join(diffs))
                _clear(out)
                meta = None
            elif meta.get("complete") is True:
                log.info("%s is complete and up to date; nothing to do", out)
                problems = pd.read_csv(out / C.PROBLEMS_FILE, dtype={"sample_id": str}).to_dict("records")
                return PrepareResult(
                    out, n, dict(meta["counts"]), problems, meta["n_shards"], meta["n_shards"], True
                )
        if meta is None:
            meta = _new_meta(m, opts, source, shard_size)
            shutil.rmtree(out / C.SHARD_DIR, ignore_errors=True)
            C.write_json(out / C.META_FILE, meta)
        _allocate(out, meta)
        return _run(m, out, opts, meta, workers, strict, progress, tqdm)
    finally:
        lock.close()


def _run(m, out, opts, meta, workers, strict, progress, tqdm) -> PrepareResult:
    n, size, n_shards = meta["n_rows"], meta["shard_size"], meta["n_shards"]
    bounds = [(k, k * size, min(n, (k + 1) * size)) for k in range(n_shards)]
    markers = {k: mk for k, a, b in bounds if (mk := _read_marker(out, k, a, b)) is not None}
    done_before = len(markers)
    ids = m.df["sample_id"].tolist()

    def source(i: int) -> tuple[int, str, str | None, str | None]:
        x, e = m.xray_file(i), m.ecg_record(i)
        return i, ids[i], None if x is None else str(x), None if e is None else str(e)

    base = {"out": str(out), "options": opts.to_dict(), "arrays": list(meta["arrays"]), "strict": strict}
    todo = [
        {**base, "shard": k, "start": a, "stop": b, "rows": [source(i) for i in range(a, b)]}
        for k, a, b in bounds
        if k not in markers
    ]
    if done_before:
        log.info("resuming %s: %d of %d shards already done", out, done_before, n_shards)
    kill_after = int(os.environ.get(FAULT_ENV, "0") or 0)
    bar = tqdm(
        total=n,
        initial=sum(b - a for k, a, b in bounds if k in markers),
        desc="prepare",
        unit="row",
        disable=not progress,
    )
    finished = 0

    def finish(marker: dict[str, Any]) -> None:
        nonlocal finished
        markers[marker["shard"]] = marker
        bar.update(marker["rows"][1] - marker["rows"][0])
        finished += 1
        if kill_after and finished >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        if workers <= 1 or len(todo) <= 1:
            for task in todo:
                finish(_run_shard(task))
        else:
            from moreclip.workers import process_context

            with ProcessPoolExecutor(
                max_workers=min(workers, len(todo)), mp_context=process_context()
            ) as pool:
                pending = {pool.submit(_run_shard, t) for t in todo}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        if fut.exception() is not None:
                            for p in pending:
                                p.cancel()
                            raise fut.exception()
                        finish(fut.result())
    finally:
        bar.close()
    return _finalise(m, out, meta, markers, done_before)


def _finalise(m: Manifest, out: Path, meta: dict[str, Any], markers: dict, done_before: int) -> PrepareResult:
    import pyarrow.parquet as pq

    n = meta["n_rows"]
    present = {mod: np.zeros(n, dtype=bool) for mod in C.ARRAY_FILES}
    problems: list[dict[str, Any]] = []
    for k in sorted(markers):
        a, b = markers[k]["rows"]
        for mod in present:
            present[mod][a:b] = markers[k][mod]
        problems += markers[k]["problems"]
    table = _index_table(m, present)
    tmp = out / f".{C.INDEX_FILE}.tmp"
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out / C.INDEX_FILE)
    C.write_atomic(out / C.PROBLEMS_FILE, pd.DataFrame(problems, columns=PROBLEM_COLUMNS).to_csv(index=False))
    for spec in meta["arrays"].values():
        with open(out / spec["file"], "rb+") as f:
            os.fsync(f.fileno())
    counts = {"rows": n, **{mod: int(present[mod].sum()) for mod in present}}
    counts.update({mod: int(m.has(mod).sum()) for mod in ("xray_report", "ecg_report")})
    counts["skipped"] = sum(p["action"] == "skipped" for p in problems)
    counts["repaired"] = sum(p["action"] == "nan_to_zero" for p in problems)
    C.write_json(out / C.META_FILE, {**meta, "complete": True, "counts": counts})
    shutil.rmtree(out / C.SHARD_DIR, ignore_errors=True)
    return PrepareResult(out, n, counts, problems, meta["n_shards"], done_before)
