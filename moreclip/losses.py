"""Contrastive objectives: masked symmetric InfoNCE over modality pairs, and Symile.

Pure functions (:func:`clip_loss`, :func:`multimodal_clip_loss`, :func:`symile_loss`) plus thin module
wrappers (:class:`ClipLoss`, :class:`SymileLoss`, :func:`create_loss`) that return the total and the
named terms. ``logit_scale`` is always the multiplier of the cosine similarities (the model's
``temperature_scale()``, i.e. the clamped exp of its log-space parameter), as in open_clip.

Missing modalities: a presence ``mask (B,)`` restricts a term to the rows that have every modality of
the term; those rows are both the queries and the only negatives, so the result equals the loss
computed on that subset of rows. A term without any such row returns ``0 * (sum of its inputs)``: finite,
zero, and attached to the graph (DDP sees every parameter used).

Distributed training (features all-gathered across ranks by the caller) uses ``rows``: pass the
gathered ``(N, D)`` features, whose own-rank chunk should be this rank's local, gradient-carrying tensor
(open_clip's ``gather_features``), and ``rows = local_rows(rank, local_batch)``. Only those rows are
queries (open_clip's ``local_loss``) and all N rows are the negatives; the result is the mean over this
rank's valid rows. ``rows=None`` makes every row a query (the whole global loss on every rank).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from moreclip.errors import ConfigError

BASE_MODALITIES = ("xray", "ecg", "xray_report", "ecg_report")
PAIR_PRESETS = ("all", "report-anchored")
Rows = slice | range | torch.Tensor | None


def local_rows(rank: int, local_batch: int) -> slice:
    """The rows of rank ``rank`` in features gathered from ranks with ``local_batch`` rows each."""
    return slice(rank * local_batch, (rank + 1) * local_batch)


def _select(n: int, mask: torch.Tensor | None, rows: Rows, device: torch.device):
    """Global indices of the valid rows (keys), of the valid query rows, and each query's position
    among the keys (its label)."""
    all_rows = torch.arange(n, device=device)
    keys = all_rows if mask is None else all_rows[torch.as_tensor(mask, dtype=torch.bool, device=device)]
    if rows is None:
        return keys, keys, torch.arange(len(keys), device=device)
    if isinstance(rows, slice | range):
        query = all_rows[rows] if isinstance(rows, slice) else torch.as_tensor(list(rows), device=device)
    else:
        query = torch.as_tensor(rows, dtype=torch.long, device=device)
    if mask is not None:
        query = query[torch.as_tensor(mask, dtype=torch.bool, device=device)[query]]
    return keys, query, torch.searchsorted(keys, query)


def _zero(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero scalar attached to the graph of ``tensors`` (finite as long as they are)."""
    return sum(t.sum() for t in tensors) * 0.0


def _clip(a, b, logit_scale, mask, rows) -> tuple[torch.Tensor, int, int]:
    keys, query, labels = _select(a.shape[0], mask, rows, a.device)
    if len(query) == 0:
        return _zero(a, b, torch.as_tensor(logit_scale)), 0, len(keys)
    if mask is None and rows is None:  # no indexing copies on the plain path
        ak, bk, aq, bq = a, b, a, b
    else:
        ak, bk, aq, bq = a[keys], b[keys], a[query], b[query]
    logits_ab = logit_scale * aq @ bk.T  # (Q, K)
    logits_ba = logit_scale * bq @ ak.T  # (Q, K)
    loss = (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels)) / 2
    return loss, len(query), len(keys)


def clip_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    mask: torch.Tensor | None = None,
    rows: Rows = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between two modalities (CLIP).

    Args:
        a: ``(N, D)`` L2-normalised embeddings of the first modality.
        b: ``(N, D)`` embeddings of the second modality; row i of ``a`` and ``b`` is a positive pair.
        logit_scale: scalar multiplier of the similarities (the exp of the log temperature).
        mask: optional ``(N,)`` bool, rows that have both modalities; only those are queries and
            negatives.
        rows: optional query rows (local rows of a gathered batch; see the module docstring).

    Returns:
        scalar: ``(CE(s * a @ b.T) + CE(s * b @ a.T)) / 2`` averaged over the query rows; zero (in the
        graph) when no row qualifies.
    """
    return _clip(a, b, logit_scale, mask, rows)[0]


def resolve_pairs(
    pairs: str | list[str] | tuple[str, ...], available: list[str] | tuple[str, ...] | None = None
) -> list[tuple[str, str]]:
    """Modality pairs of a preset or a list of ``"a:b"`` names.

    Args:
        pairs: ``"all"`` (every pair among xray, ecg, xray_report, ecg_report that is ``available``),
            ``"report-anchored"`` (MoRE: ``xray:report`` and ``ecg:report``, ``report`` being the two
            reports of a sample joined), or names like ``["xray:ecg", "xray:xray_report"]``.
        available: the modalities that have embeddings (for ``"all"``; default all four).
    """
    known = (*BASE_MODALITIES, "report")
    if pairs == "all":
        mods = [m for m in BASE_MODALITIES if available is None or m in available]
        return list(itertools.combinations(mods, 2))
    if pairs == "report-anchored":
        return [("xray", "report"), ("ecg", "report")]
    if isinstance(pairs, str):
        raise ConfigError(
            f"train.pairs: unknown preset {pairs!r} (expected {PAIR_PRESETS} or a list of 'a:b')"
        )
    out = []
    for p in pairs:
        parts = str(p).split(":")
        if len(parts) != 2 or parts[0] == parts[1] or not all(x in known for x in parts):
            raise ConfigError(f"train.pairs: bad pair {p!r} (expected 'a:b' with a != b among {known})")
        out.append((parts[0], parts[1]))
    return out


def modalities_for_pairs(pairs: str | list[str]) -> list[str]:
    """The modalities whose embeddings a pair specification needs (for ``model(batch, modalities=...)``)."""
    mods = {m for pair in resolve_pairs(pairs) for m in pair}
    return [m for m in (*BASE_MODALITIES, "report") if m in mods]


def presence_masks(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch masks plus ``report`` (either report present) when absent from them."""
    out = dict(masks)
    if "report" not in out and ("xray_report" in out or "ecg_report" in out):
        parts = [torch.as_tensor(out[k], dtype=torch.bool) for k in ("xray_report", "ecg_report") if k in out]
        out["report"] = parts[0] if len(parts) == 1 else parts[0] | parts[1]
    return out


def _pair_mask(masks: dict, x: str, y: str, device: torch.device) -> torch.Tensor | None:
    ms = [torch.as_tensor(masks[m], dtype=torch.bool, device=device) for m in (x, y) if m in masks]
    if not ms:
        return None
    return ms[0] if len(ms) == 1 else ms[0] & ms[1]


def _pair_weight(weights: dict[str, float] | None, x: str, y: str) -> float:
    if not weights:
        return 1.0
    return float(weights.get(f"{x}:{y}", weights.get(f"{y}:{x}", 1.0)))


def multimodal_clip_loss(
    embeddings: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    logit_scale: torch.Tensor | float,
    pairs: str | list[str] = "all",
    weights: dict[str, float] | None = None,
    rows: Rows = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted mean of :func:`clip_loss` over modality pairs, each over the rows having both members.

    Args:
        embeddings: modality -> ``(N, D)`` normalised embeddings (``model(batch)``).
        masks: modality -> ``(N,)`` presence; a modality without a mask counts as always present;
            ``report`` defaults to either report present.
        logit_scale: scalar multiplier of the similarities.
        pairs: see :func:`resolve_pairs`.
        weights: ``"a:b"`` -> weight (either order; default 1).
        rows: optional query rows (see the module docstring).

    Returns:
        ``(total, {"a:b": loss})``. Pairs with no query row, or fewer than two valid rows (no negative),
        report their loss but are left out of the mean (they stay in the graph with zero gradient, so
        every encoder is "used" under DDP); the total is the weighted mean over the other pairs, and zero
        (in the graph) when there is none.
    """
    plist = resolve_pairs(pairs, list(embeddings))
    missing = sorted({m for p in plist for m in p if m not in embeddings})
    if missing:
        raise ConfigError(
            f"train.pairs: no embeddings for {missing} (embed them: model(batch, modalities=...))"
        )
    if weights:
        names = {f"{x}:{y}" for x, y in plist} | {f"{y}:{x}" for x, y in plist}
        unknown = sorted(set(weights) - names)
        if unknown:
            raise ConfigError(f"train.pair_weights: {unknown} are not among the pairs {sorted(names)}")
    masks = presence_masks(masks)
    terms: dict[str, torch.Tensor] = {}
    total, wsum = None, 0.0
    idle = _zero(torch.as_tensor(logit_scale))  # keeps skipped terms in the graph (zero gradient)
    for x, y in plist:
        a, b = embeddings[x], embeddings[y]
        loss, n_query, n_keys = _clip(a, b, logit_scale, _pair_mask(masks, x, y, a.device), rows)
        terms[f"{x}:{y}"] = loss
        w = _pair_weight(weights, x, y)
        if n_query >= 1 and n_keys >= 2 and w > 0:
            total = w * loss if total is None else total + w * loss
            wsum += w
        else:
            idle = idle + 0.0 * loss
    if total is None:
        return idle, terms
    return total / wsum + idle, terms


def symile_loss(
    representations: list[torch.Tensor],
    logit_scale: torch.Tensor | float,
    negatives: str = "n",
    mask: torch.Tensor | None = None,
    rows: Rows = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Symile (Saporta et al. 2024): contrast the multilinear inner product of M >= 2 modalities.

    The score of a tuple is ``MIP(x, y, z) = sum_d x_d * y_d * z_d``. Each modality in turn is the
    anchor; for anchor row i the positive is ``MIP(x_i, y_i, z_i)``. Negatives:

    - ``"n"``: N - 1 per row: the non-anchor rows are shuffled (one random permutation per non-anchor
      modality) and the positive is put on the diagonal; logits ``(Q, N)``. Same draws as the
      ``symile`` package for the same seed.
    - ``"n_squared"``: every combination of non-anchor rows, ``N ** (M - 1) - 1`` per row; logits
      ``(Q, N ** (M - 1))``, so memory grows as ``N ** (M - 1) * D``.

    Args:
        representations: M tensors ``(N, D)``; row i of each is one sample.
        logit_scale: scalar multiplier of the MIPs.
        negatives: ``"n"`` or ``"n_squared"``.
        mask: optional ``(N,)`` bool, rows where every modality is present (the loss then equals the
            loss on that subset of rows).
        rows: optional query rows (see the module docstring).
        generator: random generator for the ``"n"`` permutations (default: the global one).

    Returns:
        scalar: the mean over anchors of the cross-entropy, averaged over the query rows.
    """
    if negatives not in ("n", "n_squared"):
        raise ValueError(f"negatives must be 'n' or 'n_squared', got {negatives!r}")
    if len(representations) < 2:
        raise ValueError(f"Symile needs at least 2 modalities, got {len(representations)}")
    first = representations[0]
    keys, query, labels = _select(first.shape[0], mask, rows, first.device)
    if len(query) == 0:
        return _zero(torch.as_tensor(logit_scale), *representations)
    K = len(keys)
    reps = [r[keys] for r in representations]  # (K, D) each
    losses = []
    for i in range(len(reps)):
        anchor = representations[i][query]  # (Q, D)
        others = [r for j, r in enumerate(reps) if j != i]
        if negatives == "n":
            shuffled = torch.ones_like(reps[0])
            for r in others:  # not in place: autograd needs every factor
                perm = torch.randperm(K, generator=generator).to(r.device)
                shuffled = shuffled * r[perm]
            logits = anchor @ shuffled.T  # (Q, K)
            positive = anchor
            for r in others:
                positive = positive * r[labels]
            cols = torch.arange(K, device=anchor.device)
            logits = torch.where(cols[None, :] == labels[:, None], positive.sum(1, keepdim=True), logits)
            target = labels
        else:
            prod = others[0]
            for r in others[1:]:  # row j*K + k holds others[0][j] * others[1][k] ...
                prod = (prod[:, None, :] * r[None, :, :]).reshape(-1, r.shape[1])
            logits = anchor @ prod.T  # (Q, K ** (M - 1))
            target = labels * sum(K**p for p in range(len(others)))  # the all-l tuple's flat index
        losses.append(F.cross_entropy(logit_scale * logits, target))
    return sum(losses) / len(losses)


class ClipLoss(nn.Module):
    """Module form of :func:`multimodal_clip_loss`; ``forward`` returns ``(total, {"a:b": loss})``.

    Args:
        pairs: see :func:`resolve_pairs`.
        weights: ``"a:b"`` -> weight.
    """

    def __init__(self, pairs: str | list[str] = "all", weights: dict[str, float] | None = None):
        super().__init__()
        resolve_pairs(pairs)  # fail early on a bad specification
        self.pairs, self.weights = pairs, dict(weights or {})

    def modalities(self) -> list[str]:
        """The embeddings this loss needs."""
        return modalities_for_pairs(self.pairs)

    def forward(self, embeddings, masks, logit_scale, rows: Rows = None):
        return multimodal_clip_loss(embeddings, masks, logit_scale, self.pairs, self.weights, rows)


class SymileLoss(nn.Module):
    """Module form of :func:`symile_loss` over named modalities, on the rows that have all of them;
    ``forward`` returns ``(total, {"symile": loss})``.

    Args:
        modalities: the modalities contrasted together (default MoRE's three: X-ray, ECG, joined report).
        negatives: ``"n"`` or ``"n_squared"``.
    """

    def __init__(self, modalities: tuple[str, ...] = ("xray", "ecg", "report"), negatives: str = "n"):
        super().__init__()
        self.mods, self.negatives = tuple(modalities), negatives

    def modalities(self) -> list[str]:
        """The embeddings this loss needs."""
        return list(self.mods)

    def forward(self, embeddings, masks, logit_scale, rows: Rows = None):
        masks = presence_masks(masks)
        reps = [embeddings[m] for m in self.mods]
        mask = None
        for m in self.mods:
            if m in masks:
                mm = torch.as_tensor(masks[m], dtype=torch.bool, device=reps[0].device)
                mask = mm if mask is None else mask & mm
        loss = symile_loss(reps, logit_scale, self.negatives, mask, rows)
        return loss, {"symile": loss}


def create_loss(train_cfg) -> nn.Module:
    """The loss module a :class:`~moreclip.config.TrainConfig` asks for (``loss``, ``pairs``,
    ``pair_weights``, ``symile_negatives``)."""
    if train_cfg.loss == "clip":
        return ClipLoss(train_cfg.pairs, train_cfg.pair_weights)
    if train_cfg.loss == "symile":
        return SymileLoss(negatives=train_cfg.symile_negatives)
    raise ConfigError(f"train.loss: unknown loss {train_cfg.loss!r}")
