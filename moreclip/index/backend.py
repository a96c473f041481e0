"""FAISS-facing helpers of the vector index: parameters, index construction, threads, normalisation."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from moreclip.errors import MoreclipError

KINDS = ("auto", "flat", "hnsw", "ivf")
_ADD_CHUNK = 50_000


class VectorIndexError(MoreclipError):
    """A vector index is missing, corrupt, or used with the wrong modality or dimension."""


@dataclass
class IndexParams:
    """How each modality's FAISS index is built and searched."""

    kind: str = "auto"  # auto / flat / hnsw / ivf
    exact_max: int = 100_000  # auto: exact search up to this many vectors per modality, HNSW above
    hnsw_m: int = 32  # HNSW graph degree
    ef_construction: int = 40  # HNSW build-time beam (FAISS default)
    ef_search: int = 128  # HNSW search-time beam (recall vs latency)
    ivf_nlist: int | None = None  # IVF cells; None: 4 * sqrt(n), at least 39 training points per cell
    nprobe: int = 32  # IVF cells visited per query
    threads: int | None = None  # FAISS OpenMP threads (None: FAISS default)
    seed: int = 0  # IVF training sample

    def choose(self, n: int) -> str:
        """The kind used for a modality of ``n`` vectors."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.exact_max else "hnsw"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise VectorIndexError(f"index kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


@contextlib.contextmanager
def faiss_threads(n: int | None):
    """Run the block with FAISS (OpenMP) using ``n`` threads, restoring the previous count after."""
    import faiss

    if not n:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def normalise(x, what: str, dim: int | None = None) -> np.ndarray:
    """``x (N, D)`` as contiguous float32 unit rows; clear errors for bad shape, dimension, NaN or zeros."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise VectorIndexError(f"{what} must be a (N, D) matrix, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise VectorIndexError(f"{what} have dimension {x.shape[1]} but the index expects {dim}")
    if not np.isfinite(x).all():
        raise VectorIndexError(f"{what} hold NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise VectorIndexError(f"{what}: {int((norms == 0).sum())} zero vector(s) cannot be normalised")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def new_faiss_index(kind: str, x: np.ndarray, p: IndexParams):
    """An empty FAISS index of ``kind`` for vectors like ``x`` (IVF is trained on a sample of x)."""
    import faiss

    d = x.shape[1]
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = p.ef_construction, p.ef_search
        return index
    nlist = p.ivf_nlist or int(4 * np.sqrt(len(x)))
    nlist = max(1, min(nlist, len(x) // 39))
    index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(p.seed)
    sample = x[rng.choice(len(x), 256 * nlist, replace=False)] if len(x) > 256 * nlist else x
    index.train(sample)
    index.nprobe = p.nprobe
    return index


def add_vectors(index, x: np.ndarray, progress: bool) -> None:
    """Add ``x (N, D)`` to a FAISS index in chunks, with a progress bar on large inputs."""
    from tqdm.auto import tqdm

    with tqdm(
        total=len(x), desc="index add", unit="vec", disable=not progress or len(x) <= _ADD_CHUNK
    ) as bar:
        for a in range(0, len(x), _ADD_CHUNK):
            index.add(x[a : a + _ADD_CHUNK])
            bar.update(min(_ADD_CHUNK, len(x) - a))
