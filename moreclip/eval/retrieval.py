"""Cross-modal retrieval: Recall@K and median rank in both directions of each modality pair.

    res = retrieval(model, test_ds, pairs=["ecg:ecg_report"], pool=500)
    res.report["ecg:ecg_report"]["ecg->ecg_report"]["recall@1"]      # {"value", "ci"}

For a pair ``a:b`` the queries are the samples that have both ``a`` and ``b``; sample ``i``'s ``a``
embedding should retrieve its own ``b`` embedding among the candidates (and the other way round). The
similarity is the cosine (embeddings are normalised). With ``pool=N`` each query is ranked among its
true match and ``N - 1`` random other candidates (the "among N" protocol of papers, seeded); with
``pool=None`` among every sample of the pair. Ties count against the query
(:mod:`moreclip.eval.retrieval_metrics`). The default pairs are every pair of ``xray``, ``ecg``,
``xray_report`` and ``ecg_report`` that at least two samples have together.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moreclip.errors import ConfigError, MoreclipError
from moreclip.eval.embed import EMBED_MODALITIES, Embeddings, ensure_embeddings
from moreclip.eval.retrieval_metrics import retrieval_report

BASE_MODALITIES = ("xray", "ecg", "xray_report", "ecg_report")


def parse_pairs(pairs: str | Sequence[str] | None) -> list[tuple[str, str]] | None:
    """``"xray:xray_report,ecg:ecg_report"`` or a list of ``"a:b"`` -> ``[(a, b), ...]`` (None stays None)."""
    if pairs is None:
        return None
    items = [p.strip() for p in pairs.split(",")] if isinstance(pairs, str) else list(pairs)
    out = []
    for p in items:
        if not p:
            continue
        a, sep, b = p.partition(":") if isinstance(p, str) else (p[0], ":", p[1])
        if not sep or a not in EMBED_MODALITIES or b not in EMBED_MODALITIES or a == b:
            raise ConfigError(
                f"retrieval pair {p!r} must be 'a:b' with two different modalities of "
                f"{', '.join(EMBED_MODALITIES)}"
            )
        out.append((a, b))
    if not out:
        raise ConfigError("no retrieval pairs given")
    return out


def available_pairs(masks: dict[str, np.ndarray], min_rows: int = 2) -> list[tuple[str, str]]:
    """Every pair of the base modalities that at least ``min_rows`` samples have together.

    Args:
        masks: modality -> ``(N,)`` presence.
        min_rows: rows needed for a pair.
    """
    mods = [m for m in BASE_MODALITIES if m in masks]
    return [
        (a, b) for a, b in itertools.combinations(mods, 2) if int((masks[a] & masks[b]).sum()) >= min_rows
    ]


@dataclass
class RetrievalResult:
    """Per pair ``"a:b"``: the report of both directions, and the ranks (for plots)."""

    pairs: list[str]
    report: dict[str, dict]
    pool: int | None
    ks: list[int]
    skipped: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "pool": self.pool,
            "ks": self.ks,
            "skipped": self.skipped,
            "metrics": self.report,
        }


def retrieval(
    model,
    data,
    pairs: str | Sequence[str] | None = None,
    *,
    pool: int | None = None,
    ks: Sequence[int] = (1, 5, 10),
    n_resamples: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> RetrievalResult:
    """Retrieval evaluation of ``model`` on ``data``.

    Args:
        model: a MoRE model (None when ``data`` is :class:`Embeddings`).
        data: the samples (a MoreDataset of the test split, or Embeddings).
        pairs: ``"a:b,c:d"`` or a list of ``"a:b"``; default: every pair the data has (see above).
        pool: candidates per query including the true match (None: all samples of the pair).
        ks: the K of Recall@K.
        n_resamples: bootstrap resamples of the Recall@K intervals (0: none).
        seed: seed of the candidate pools and the bootstrap.
        batch_size, progress: embedding settings.
    """
    wanted = parse_pairs(pairs)
    if pool is not None and pool < 2:
        raise ConfigError(f"pool must be at least 2 candidates, got {pool}")
    if wanted is None:
        if isinstance(data, Embeddings):
            emb = data
        else:
            present = {m: np.asarray(data.present[m]) for m in BASE_MODALITIES}
            mods = sorted({m for p in available_pairs(present) for m in p}, key=BASE_MODALITIES.index)
            emb = ensure_embeddings(model, data, mods, batch_size, progress)
        wanted = available_pairs(emb.masks)
        if not wanted:
            raise MoreclipError(
                f"no two modalities are present together in 2 or more of the {len(emb)} samples: nothing to retrieve"
            )
    else:
        mods = list(dict.fromkeys(m for p in wanted for m in p))
        emb = ensure_embeddings(model, data, mods, batch_size, progress)
    report, skipped, names = {}, {}, []
    for a, b in wanted:
        key = f"{a}:{b}"
        both = emb.masks[a] & emb.masks[b]
        if both.sum() < 2:
            skipped[key] = f"{int(both.sum())} sample(s) with both {a} and {b}"
            continue
        sim = emb.embeddings[a][both] @ emb.embeddings[b][both].T  # (n, n) cosine similarities
        report[key] = retrieval_report(sim, ks, pool=pool, seed=seed, names=(a, b), n_resamples=n_resamples)
        names.append(key)
    if not report:
        raise MoreclipError(
            "no retrieval pair has 2 or more samples: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return RetrievalResult(names, report, pool, [int(k) for k in ks], skipped)
