"""Relevance of input tokens from recorded attention maps: attention rollout and gradient-weighted rollout.

Both take the per-block attention probabilities that :func:`moreclip.models.record_attention` collects,
one ``(B, H, N, N)`` tensor per block in depth order (rows: queries, columns: keys, rows sum to 1), and
return the relevance of every token for the pooled output, ``(B, N)``.

- :func:`attention_rollout` (Abnar & Zuidema, ACL 2020, "Quantifying attention flow in transformers"):
  average the heads, add the identity for the residual connection and renormalise the rows
  (``0.5 A + 0.5 I``), multiply through the blocks (``R = Â_L ... Â_1``), and read the row of the pooled
  token. Class-agnostic: it says what the encoder looked at, not why.
- :func:`gradient_rollout` (Chefer, Gur & Wolf, ICCV 2021, "Generic attention-model explainability for
  interpreting bi-modal and encoder-decoder transformers", their rule for self-attention): start from
  ``R = I`` and for every block add ``Ā R`` with ``Ā = mean_heads((∇A ⊙ A)^+)``, the attention weighted
  by the gradient of a target score (here: the similarity of the embedding to a text prompt) and clipped
  at zero. Target-specific: it says which tokens raised that score.

The pooled token is the CLS token (``pool="token"``) or the mean of the other tokens (``pool="avg"``,
the rows of the non-prefix tokens averaged), matching the encoder's ``global_pool``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _pooled_row(R: torch.Tensor, prefix: int, pool: str) -> torch.Tensor:
    """``(B, N, N)`` relevance matrix -> ``(B, N - prefix)`` relevance of the non-prefix tokens."""
    if pool == "token":
        row = R[:, 0]
    elif pool == "avg":
        row = R[:, prefix:].mean(dim=1)
    else:
        raise ValueError(f"unknown pooling {pool!r} (expected 'token' or 'avg')")
    return row[:, prefix:]


def attention_rollout(
    maps: Sequence[torch.Tensor], prefix: int = 1, pool: str = "token", residual: float = 0.5
) -> torch.Tensor:
    """Attention rollout: how much each token flows into the pooled output.

    Args:
        maps: per block, attention probabilities ``(B, H, N, N)``, in depth order.
        prefix: leading tokens that are not patches (CLS, registers); excluded from the result.
        pool: ``"token"`` (read the CLS row) or ``"avg"`` (average the rows of the patch tokens).
        residual: weight of the identity mixed into every block's attention (0.5: Abnar & Zuidema).

    Returns:
        ``(B, N - prefix)`` non-negative relevance of the patch tokens (not normalised).
    """
    if not maps:
        raise ValueError("no attention maps recorded")
    B, _, N, _ = maps[0].shape
    eye = torch.eye(N, device=maps[0].device, dtype=torch.float32)
    R = eye.expand(B, N, N)
    for A in maps:
        a = A.detach().float().mean(dim=1)  # (B, N, N)
        a = (1.0 - residual) * a + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        R = a @ R
    return _pooled_row(R, prefix, pool)


def gradient_rollout(
    maps: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], prefix: int = 1, pool: str = "token"
) -> torch.Tensor:
    """Gradient-weighted attention relevance (Chefer et al. 2021, self-attention rule).

    Args:
        maps: per block, attention probabilities ``(B, H, N, N)``, in depth order.
        grads: per block, the gradient of the target score with respect to that block's ``maps`` entry.
        prefix: leading tokens that are not patches; excluded from the result.
        pool: ``"token"`` or ``"avg"`` (see :func:`attention_rollout`).

    Returns:
        ``(B, N - prefix)`` non-negative relevance of the patch tokens (not normalised; all zeros when
        no attention raised the score). The identity ``R`` starts from is subtracted before reading the
        pooled row: with ``pool="avg"`` it would add the same ``1/N`` to every token and drown the
        gradient-weighted part; with ``"token"`` it changes nothing (the CLS row of ``I`` has no patch
        entries).
    """
    if len(maps) != len(grads) or not maps:
        raise ValueError(f"{len(maps)} attention maps but {len(grads)} gradients")
    B, _, N, _ = maps[0].shape
    R = torch.eye(N, device=maps[0].device, dtype=torch.float32).repeat(B, 1, 1)
    eye = R[0].clone()
    for A, G in zip(maps, grads):
        a = (G.detach().float() * A.detach().float()).clamp(min=0).mean(dim=1)  # (B, N, N)
        R = R + a @ R
    return _pooled_row(R - eye, prefix, pool)  # what attention moved; a token's own identity is no evidence


def normalise_mass(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Scale each map of ``x`` (its last ``dims`` axes) to sum to 1 (an all-zero map becomes uniform)."""
    flat = x.flatten(start_dim=x.ndim - dims).clamp(min=0)
    total = flat.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[-1])
    flat = torch.where(total > 0, flat / total.clamp(min=1e-30), uniform)
    return flat.reshape(x.shape)
