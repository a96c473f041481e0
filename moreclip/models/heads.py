"""Projection heads from an encoder's width into the shared space (before L2 normalisation).

- ``linear``: one bias-free ``Linear(width, d)`` (CLIP).
- ``mlp``: MoRE's head, ``Linear(width, hidden, bias=False)`` -> BatchNorm -> ReLU ->
  ``Linear(hidden, d, bias=False)`` -> BatchNorm.

BatchNorm needs batch statistics: the model encodes only the rows where a modality is present, so
absent rows never enter the statistics. A training batch with a single present row cannot give batch
statistics; that row is normalised with the running statistics, which it does not update.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on ``(B, C)`` that falls back to running statistics for a single training row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


class MLPHead(nn.Sequential):
    """MoRE's 2-layer projection with batch norm: ``(B, in_dim)`` -> ``(B, out_dim)``.

    Args:
        in_dim: encoder width.
        out_dim: dimension of the shared space.
        hidden: hidden width (MoRE: 768).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int):
        super().__init__(
            nn.Linear(in_dim, hidden, bias=False),
            BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_dim, bias=False),
            BatchNorm1d(out_dim),
        )


def make_head(kind: str, in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Module:
    """A projection head ``(B, in_dim)`` -> ``(B, out_dim)``.

    Args:
        kind: ``"linear"`` or ``"mlp"``.
        in_dim: encoder width.
        out_dim: dimension of the shared space.
        hidden: hidden width of the mlp head (default ``in_dim``).
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=False)
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, hidden or in_dim)
    raise ValueError(f"unknown head {kind!r} (expected 'linear' or 'mlp')")
