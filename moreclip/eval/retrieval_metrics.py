"""Cross-modal retrieval metrics from a similarity matrix: Recall@K and median rank, both directions.

Query ``i`` is paired with candidate ``match[i]`` (default: ``i``, i.e. row ``i`` of the query modality
and row ``i`` of the candidate modality come from the same sample). The rank of the true match is
``1 + #{other candidates j : sim[i, j] >= sim[i, match]}``: ties count *against* the query, so a model
whose similarities are constant gets chance-level figures, never perfect ones.

Candidate pool (papers report "Recall@K among N candidates"): with ``pool=N`` each query is ranked
against its own candidate set, namely its true match plus ``N - 1`` other candidates drawn uniformly
without replacement (seeded, independently per query). All queries are used, so the figures have less
variance than ranking inside one random subset of N pairs; ``pool=None`` (or ``pool >= `` number of
candidates) ranks against every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moreclip.eval.metrics import _summary, bootstrap

_CHUNK_ELEMS = 4_000_000


def retrieval_ranks(sim, match=None, pool: int | None = None, seed: int = 0) -> np.ndarray:
    """1-based rank of each query's true match among its candidates.

    Args:
        sim: ``(Q, C)`` similarities, query rows against candidate columns.
        match: ``(Q,)`` column of each query's true match (default ``arange(Q)``, needs ``Q <= C``).
        pool: candidates per query including the true one (None: all ``C``); see the module docstring.
        seed: seed of the candidate sampling.

    Returns:
        ``(Q,)`` int64 ranks in ``1..min(pool, C)``.
    """
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise ValueError(f"sim must be a (Q, C) matrix, got shape {sim.shape}")
    n_q, n_c = sim.shape
    if match is None:
        if n_q > n_c:
            raise ValueError(f"{n_q} queries but only {n_c} candidates: pass `match`")
        match = np.arange(n_q)
    match = np.asarray(match, dtype=np.int64)
    if match.shape != (n_q,) or (n_q and (match.min() < 0 or match.max() >= n_c)):
        raise ValueError(f"match must be ({n_q},) column indices in 0..{n_c - 1}")
    if not np.isfinite(sim).all():
        raise ValueError("sim holds NaN or infinite values")
    if pool is not None and pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    rows = np.arange(n_q)
    true = sim[rows, match][:, None]  # (Q, 1)
    if pool is None or pool >= n_c:
        return (sim >= true).sum(1)  # 1 + others scoring >= true: the true match counts itself once
    rng = np.random.default_rng(seed)
    ranks = np.empty(n_q, dtype=np.int64)
    step = max(1, _CHUNK_ELEMS // n_c)
    for a in range(0, n_q, step):
        r = rows[a : a + step]
        keys = rng.random((r.size, n_c))
        keys[np.arange(r.size), match[r]] = np.inf  # never draw the true match as a distractor
        if pool > 1:
            others = np.argpartition(keys, pool - 2, axis=1)[:, : pool - 1]  # (q, pool-1) random distinct
            ranks[r] = 1 + (np.take_along_axis(sim[r], others, 1) >= true[r]).sum(1)
        else:
            ranks[r] = 1
    return ranks


def recall_at_k(ranks, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose true match ranks within the top ``k``, for each ``k``."""
    ranks = np.asarray(ranks)
    return {int(k): float(np.mean(ranks <= k)) for k in ks}


def retrieval_report(
    sim,
    ks: Sequence[int] = (1, 5, 10),
    *,
    pool: int | None = None,
    seed: int = 0,
    names: tuple[str, str] = ("query", "candidate"),
    n_resamples: int = 0,
    level: float = 0.95,
) -> dict:
    """Recall@K, median and mean rank in both directions of a square paired similarity matrix.

    Args:
        sim: ``(N, N)`` similarities between modality ``names[0]`` (rows) and ``names[1]`` (columns);
            row ``i`` and column ``i`` are the same sample.
        ks: the K of Recall@K.
        pool: candidates per query (see the module docstring); None: all N.
        seed: seed of the candidate sampling (and of the bootstrap).
        names: the two modalities, used in the keys ``"a->b"`` and ``"b->a"``.
        n_resamples: bootstrap resamples of the queries for Recall@K intervals (0: none).
        level: confidence level of the intervals.

    Returns:
        ``{"a->b": {"recall@1": {"value", ["ci"]}, ..., "median_rank", "mean_rank", "n_queries",
        "n_candidates"}, "b->a": {...}}``.
    """
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be square (N, N) for paired retrieval, got {sim.shape}")
    a, b = names
    out = {}
    for key, m in ((f"{a}->{b}", sim), (f"{b}->{a}", sim.T)):
        ranks = retrieval_ranks(m, pool=pool, seed=seed)
        hits = np.stack([ranks <= k for k in ks], 1).astype(np.float64)  # (N, K)
        samples = bootstrap(
            lambda W, h=hits: (W @ h) / W.sum(1, keepdims=True), len(ranks), n_resamples, seed
        )
        entry = {f"recall@{k}": _summary(samples[:, i], level, n_resamples > 0) for i, k in enumerate(ks)}
        entry.update(
            median_rank=float(np.median(ranks)),
            mean_rank=float(np.mean(ranks)),
            n_queries=int(len(ranks)),
            n_candidates=int(min(pool or sim.shape[1], sim.shape[1])),
        )
        out[key] = entry
    return out
