"""The :class:`VectorIndex`: per-modality FAISS indexes, metadata, search results, and the folder on disk."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moreclip import __version__
from moreclip.index.backend import (
    IndexParams,
    VectorIndexError,
    add_vectors,
    faiss_threads,
    new_faiss_index,
    normalise,
)

FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SearchResult:
    """Top-k hits of ``Q`` queries in one modality; a missing hit has row -1, id None, score NaN."""

    modality: str
    ids: np.ndarray  # (Q, k) object: sample ids
    scores: np.ndarray  # (Q, k) float32 cosine similarities, best first
    rows: np.ndarray  # (Q, k) int64 rows in the modality
    metadata: pd.DataFrame = field(repr=False)  # (Q * k) rows: query, rank, then the metadata of each hit

    def to_frame(self) -> pd.DataFrame:
        """One row per hit: ``query``, ``rank`` (1-based), ``sample_id``, ``score``, metadata columns."""
        return self.metadata.copy()

    def to_records(self) -> list[list[dict[str, Any]]]:
        """Per query, its hits as JSON-able dicts (NaN -> None, numpy scalars -> Python)."""
        df = self.metadata.drop(columns=["query"]).astype(object)
        df = df.where(pd.notna(df), None)
        recs = [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in df.to_dict("records")
        ]
        k = self.ids.shape[1]
        return [
            [r for r in recs[q * k : (q + 1) * k] if r["sample_id"] is not None] for q in range(len(self.ids))
        ]


class _Part:
    """One modality: its FAISS index, sample ids by row, and the kind in use / asked for."""

    def __init__(self, index, ids: list[str], kind: str, requested: str):
        self.index, self.ids, self.kind, self.requested = index, ids, kind, requested
        self.row = {s: i for i, s in enumerate(ids)}
        self.cache: dict[str, Any] = {}  # id array / metadata by row, rebuilt after an add

    @property
    def dim(self) -> int:
        return int(self.index.d)


class VectorIndex:
    """Embeddings of several modalities, each in its own FAISS index, plus per-sample metadata."""

    def __init__(self, params: IndexParams | None = None, model_info: Mapping[str, Any] | None = None):
        self.params = params or IndexParams()
        self.model_info = dict(model_info or {})
        self._parts: dict[str, _Part] = {}
        self._meta = pd.DataFrame({"modality": pd.Series(dtype=str), "row": pd.Series(dtype="int64"),
                                   "sample_id": pd.Series(dtype=str)})  # fmt: skip
        self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        embeddings: Mapping[str, tuple[Sequence[str], np.ndarray]],
        metadata: pd.DataFrame | None = None,
        *,
        params: IndexParams | None = None,
        model_info: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> VectorIndex:
        """A new index from ``{modality: (sample_ids (N,), vectors (N, D))}``.

        Args:
            embeddings: per modality, the sample ids and their embeddings (normalised here).
            metadata: optional per-sample table with a ``sample_id`` column (and optionally ``modality``)
                whose other columns are stored with every hit (split, report excerpt, labels, ...).
            params: index kind and parameters (:class:`IndexParams`).
            model_info: what produced the embeddings (checkpoint, config), kept in index.json.
            progress: show a progress bar while adding.
        """
        index = cls(params, model_info)
        for modality, (ids, vectors) in embeddings.items():
            index.add(modality, ids, vectors, metadata, progress=progress)
        return index

    def add(self, modality: str, ids: Sequence[str], vectors, metadata: pd.DataFrame | None = None,
            progress: bool = False) -> None:  # fmt: skip
        """Append vectors ``(N, D)`` of samples ``ids`` to ``modality`` (created when new).

        Raises:
            VectorIndexError: bad modality name, dimension mismatch, duplicate or already-present ids.
        """
        if not isinstance(modality, str) or not _NAME.match(modality):
            raise VectorIndexError(f"modality name {modality!r} must be letters, digits, '_', '.', '-'")
        part = self._parts.get(modality)
        x = normalise(vectors, f"'{modality}' vectors", part.dim if part else None)
        ids = [str(s) for s in ids]
        if len(ids) != len(x):
            raise VectorIndexError(f"'{modality}': {len(ids)} ids for {len(x)} vectors")
        dup = pd.Index(ids)[pd.Index(ids).duplicated()].tolist()
        dup += [s for s in ids if part and s in part.row]
        if dup:
            raise VectorIndexError(f"'{modality}': sample id(s) already present or repeated: {dup[:5]}")
        start = len(part.ids) if part else 0
        rows = pd.DataFrame(
            {"modality": modality, "row": np.arange(start, start + len(ids)), "sample_id": ids}
        )
        rows = self._join(rows, metadata, modality)  # checked before anything changes
        if not len(x):
            return
        with faiss_threads(self.params.threads):
            if part is None:
                kind = self.params.choose(len(x))
                index = new_faiss_index(kind, x, self.params)
                add_vectors(index, x, progress)
                part = self._parts[modality] = _Part(index, [], kind, self.params.kind)
            elif part.requested == "auto" and part.kind == "flat" and start + len(x) > self.params.exact_max:
                index = new_faiss_index("hnsw", x, self.params)  # exact -> HNSW past the threshold
                add_vectors(index, part.index.reconstruct_n(0, part.index.ntotal), progress)
                add_vectors(index, x, progress)
                part.index, part.kind = index, "hnsw"
            else:
                add_vectors(part.index, x, progress)
        part.ids.extend(ids)
        part.row.update({s: start + i for i, s in enumerate(ids)})
        part.cache.clear()
        self._meta = rows if self._meta.empty else pd.concat([self._meta, rows], ignore_index=True)

    @staticmethod
    def _join(rows: pd.DataFrame, metadata: pd.DataFrame | None, modality: str) -> pd.DataFrame:
        if metadata is None:
            return rows
        if "sample_id" not in metadata.columns:
            raise VectorIndexError("metadata needs a 'sample_id' column")
        reserved = [c for c in ("query", "rank", "score") if c in metadata.columns]
        if reserved:
            raise VectorIndexError(
                f"metadata column(s) {reserved} clash with search result columns; rename them"
            )
        meta = metadata.copy()
        meta["sample_id"] = meta["sample_id"].astype(str)
        if "modality" in meta.columns:
            meta = meta[meta["modality"] == modality].drop(columns="modality")
        meta = meta.drop(columns=[c for c in ("row",) if c in meta.columns])
        dup = meta["sample_id"][meta["sample_id"].duplicated()].unique().tolist()
        if dup:
            raise VectorIndexError(f"metadata has several rows for sample id(s) {dup[:5]} ('{modality}')")
        return rows.merge(meta, on="sample_id", how="left")

    # ----------------------------------------------------------------------------------- querying
    @property
    def modalities(self) -> list[str]:
        return list(self._parts)

    def __contains__(self, modality: str) -> bool:
        return modality in self._parts

    def __len__(self) -> int:
        return sum(len(p.ids) for p in self._parts.values())

    def count(self, modality: str) -> int:
        return len(self._part(modality).ids)

    def dim(self, modality: str) -> int:
        return self._part(modality).dim

    def kind(self, modality: str) -> str:
        return self._part(modality).kind

    def __repr__(self) -> str:
        parts = ", ".join(f"{m}: {len(p.ids)} x {p.dim} {p.kind}" for m, p in self._parts.items())
        return f"VectorIndex({parts or 'empty'})"

    def _part(self, modality: str) -> _Part:
        if modality not in self._parts:
            has = ", ".join(self._parts) or "nothing (empty index)"
            raise VectorIndexError(f"the index has no '{modality}' vectors; it holds: {has}")
        return self._parts[modality]

    def metadata(self, modality: str | None = None) -> pd.DataFrame:
        """The stored metadata (all modalities, or one), one row per vector."""
        return (
            self._meta
            if modality is None
            else self._meta[self._meta["modality"] == modality].reset_index(drop=True)
        )

    def vectors(self, modality: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Stored (normalised) vectors of ``ids`` (default: all, in row order): ``(n, D)`` float32."""
        import faiss

        part = self._part(modality)
        if part.kind == "ivf":
            faiss.extract_index_ivf(part.index).make_direct_map()
        if ids is None:
            return part.index.reconstruct_n(0, part.index.ntotal)
        missing = [s for s in ids if str(s) not in part.row]
        if missing:
            raise VectorIndexError(f"'{modality}' has no sample id(s) {missing[:5]}")
        return (
            np.stack([part.index.reconstruct(part.row[str(s)]) for s in ids])
            if len(ids)
            else np.zeros((0, part.dim), np.float32)
        )

    def search(self, queries, modality: str, k: int = 10, *, ef_search: int | None = None,
               nprobe: int | None = None) -> SearchResult:  # fmt: skip
        """The ``k`` stored vectors of ``modality`` most similar (cosine) to each query.

        Args:
            queries: ``(Q, D)`` query embeddings of any modality (normalised here).
            modality: the modality searched.
            k: hits per query (at most the modality's count).
            ef_search / nprobe: per-call override of the HNSW beam / IVF cells visited.
        """
        import faiss

        part = self._part(modality)
        q = normalise(queries, "query vectors", part.dim)
        k = int(min(k, len(part.ids)))
        if k < 1:
            raise VectorIndexError(f"k must be >= 1, got {k}")
        sp = None
        if part.kind == "hnsw":
            sp = faiss.SearchParametersHNSW(efSearch=max(int(ef_search or self.params.ef_search), k))
        elif part.kind == "ivf":
            sp = faiss.SearchParametersIVF(nprobe=int(nprobe or self.params.nprobe))
        with faiss_threads(self.params.threads):
            scores, rows = part.index.search(q, k, params=sp)  # (Q, k) each
        if "ids" not in part.cache:  # one extra slot, None, that rows == -1 (no hit) points at
            part.cache["ids"] = np.array(part.ids + [None], dtype=object)
            part.cache["meta"] = (
                self.metadata(modality).drop(columns=["modality", "sample_id"]).set_index("row")
            )
        ids = part.cache["ids"][np.where(rows >= 0, rows, len(part.ids))]
        scores = np.where(rows >= 0, scores, np.nan).astype(np.float32)
        hits = part.cache["meta"].reindex(rows.ravel()).reset_index(drop=True)
        table = pd.DataFrame({"query": np.repeat(np.arange(len(q)), k), "rank": np.tile(np.arange(1, k + 1), len(q)),
                              "sample_id": ids.ravel(), "score": scores.ravel()})  # fmt: skip
        return SearchResult(modality, ids, scores, rows, pd.concat([table, hits], axis=1))

    # ------------------------------------------------------------------------------- persistence
    def info(self) -> dict[str, Any]:
        """What index.json records."""
        import faiss

        params = {k: v for k, v in asdict(self.params).items() if k != "threads"}
        return {
            "format_version": FORMAT_VERSION,
            "moreclip_version": __version__,
            "faiss_version": faiss.__version__,
            "created": self.created,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metric": "inner_product",
            "normalized": True,
            "params": params,
            "model": self.model_info,
            "modalities": {
                m: {
                    "dim": p.dim,
                    "count": len(p.ids),
                    "kind": p.kind,
                    "requested": p.requested,
                    "file": f"vectors/{m}.faiss",
                }  # fmt: skip
                for m, p in self._parts.items()
            },
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index folder atomically (an existing index there is replaced, anything else refused)."""
        import faiss

        path = Path(path)
        if (
            path.exists()
            and not (path / "index.json").is_file()
            and (not path.is_dir() or any(path.iterdir()))
        ):
            raise VectorIndexError(
                f"{path} exists and is not a moreclip vector index; refusing to overwrite it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            (tmp / "vectors").mkdir(parents=True)
            for m, p in self._parts.items():
                faiss.write_index(p.index, str(tmp / "vectors" / f"{m}.faiss"))
            self._meta.to_parquet(tmp / "metadata.parquet", index=False)
            (tmp / "index.json").write_text(json.dumps(self.info(), indent=2, default=str))
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> VectorIndex:
        """Read an index folder written by :meth:`save`, checking every file against index.json."""
        import faiss

        path = Path(path)
        meta_json = path / "index.json"
        if not meta_json.is_file():
            raise VectorIndexError(f"{path}: not a vector index (index.json missing)")
        try:
            info = json.loads(meta_json.read_text())
            parts = dict(info["modalities"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise VectorIndexError(f"{meta_json}: corrupt index.json ({e})") from None
        if int(info.get("format_version", 0)) > FORMAT_VERSION:
            raise VectorIndexError(
                f"{path}: index format {info['format_version']} is newer than this moreclip"
            )
        known = {f for f in IndexParams.__dataclass_fields__}
        params = IndexParams(**{k: v for k, v in (info.get("params") or {}).items() if k in known})
        params.threads = threads
        index = cls(params, info.get("model"))
        index.created = info.get("created", index.created)
        try:
            meta = pd.read_parquet(path / "metadata.parquet")
        except Exception as e:
            raise VectorIndexError(f"{path / 'metadata.parquet'}: unreadable ({e})") from None
        for m, p in parts.items():
            f = path / p.get("file", f"vectors/{m}.faiss")
            if not f.is_file():
                raise VectorIndexError(f"{f}: missing (index.json lists modality '{m}')")
            try:
                fi = faiss.read_index(str(f))
            except RuntimeError as e:
                raise VectorIndexError(f"{f}: corrupt FAISS index ({str(e).splitlines()[0]})") from None
            rows = meta[meta["modality"] == m].sort_values("row")
            if (
                not (fi.ntotal == p["count"] == len(rows))
                or fi.d != p["dim"]
                or not np.array_equal(rows["row"], np.arange(len(rows)))
            ):
                raise VectorIndexError(f"{path}: '{m}' is inconsistent: index.json says {p['count']} x {p['dim']}, "
                                       f"{f.name} holds {fi.ntotal} x {fi.d}, metadata {len(rows)} rows")  # fmt: skip
            index._parts[m] = _Part(
                fi, rows["sample_id"].astype(str).tolist(), p["kind"], p.get("requested", p["kind"])
            )
        index._meta = meta.reset_index(drop=True)
        return index
