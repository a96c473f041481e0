"""DropKey: random dropping of attention logits before the softmax (Li et al., CVPR 2023; MoRE).

During training every attention logit ``(query i, key j)`` of every head is dropped independently with
probability ``rate``: it is replaced by the most negative finite value of its dtype (``finfo.min``), so
after the softmax the dropped key gets exactly zero weight and the kept keys are renormalised. In eval
mode (or with ``rate == 0``) nothing happens: the module is timm's ``Attention`` unchanged.

A finite value (not ``-inf``) is used on purpose: if every key of a row happens to be dropped (probability
``rate ** N``), the row holds ``N`` equal logits and the softmax gives uniform attention over the keys
that an ``attn_mask`` does not exclude, never ``NaN``. Keys excluded by an additive ``-inf`` mask stay
excluded. Nothing is rescaled: as in the paper, the kept logits are renormalised by the softmax itself.

Pattern of timm's ``patch_dropout.py``: a pure function (:func:`dropkey_forward`) plus a thin module
(:class:`DropKeyAttention`, a subclass of ``timm.layers.Attention`` with identical parameters, so timm
and pretrained weights load unchanged). Pass it to timm's ``VisionTransformer``/``Block`` as
``attn_layer=DropKeyAttention`` and set the per-block rates with :func:`set_dropkey`.

:func:`record_attention` collects the attention probabilities ``(B, H, N, N)`` of every block, for
attention rollout and other explanations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.layers.attention import resolve_self_attn_mask
from torch import nn


def dropkey_mask(
    shape: torch.Size | tuple[int, ...],
    rate: float,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A boolean mask of the logits to drop: each entry is True with probability ``rate``.

    Args:
        shape: the shape of the attention logits, usually ``(B, H, N, M)``.
        rate: drop probability in [0, 1].
        device: where to create the mask.
        generator: optional random generator (default: the global one).
    """
    if generator is None:  # torch.compile: rand's generator overload takes no symbolic (dynamic) shapes
        return torch.rand(shape, device=device) < rate
    return torch.rand(shape, device=device, generator=generator) < rate


def dropkey_forward(
    scores: torch.Tensor,
    rate: float,
    training: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Drop attention logits before the softmax.

    Args:
        scores: attention logits ``(B, H, N, M)`` (query x key), before the softmax.
        rate: probability that each logit is dropped.
        training: no-op (``scores`` returned as is) when False.
        generator: optional random generator.

    Returns:
        ``scores`` with dropped entries set to ``finfo(scores.dtype).min``; a new tensor (autograd-safe),
        or ``scores`` itself when nothing is dropped.
    """
    if not training or rate <= 0.0:
        return scores
    drop = dropkey_mask(scores.shape, rate, scores.device, generator)
    return scores.masked_fill(drop, torch.finfo(scores.dtype).min)


def dropkey_rates(rate: float, depth: int, schedule: str = "constant") -> list[float]:
    """Per-block drop rates.

    Args:
        rate: the rate of the first block.
        depth: number of blocks.
        schedule: ``"constant"`` (every block ``rate``) or ``"linear"`` (``rate`` in the first block
            decaying linearly to 0 in the last one, the schedule MoRE intended).
    """
    if schedule == "constant" or depth <= 1:
        return [float(rate)] * depth
    if schedule == "linear":
        return [float(rate) * (1.0 - i / (depth - 1)) for i in range(depth)]
    raise ValueError(f"unknown DropKey schedule {schedule!r} (expected 'constant' or 'linear')")


class DropKeyAttention(Attention):
    """timm's multi-head self-attention with DropKey, and optional recording of attention maps.

    Same constructor and parameters as ``timm.layers.Attention`` plus ``dropkey_rate``. Input and
    output ``(B, N, C)``. When DropKey is active in training, the fused SDPA kernel receives the drop
    mask as an additive bias; when attention maps are recorded, the attention is computed explicitly.
    Both paths draw the same random mask, so they agree for the same seed.
    """

    def __init__(self, *args, dropkey_rate: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.dropkey_rate = float(dropkey_rate)
        self.record = False  # when True, forward() stores its attention probabilities in .attn_probs
        self.attn_probs: torch.Tensor | None = None  # (B, H, N, N) of the last recorded forward

    def extra_repr(self) -> str:
        return f"dropkey_rate={self.dropkey_rate:g}"

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, hd) each
        q, k = self.q_norm(q), self.k_norm(k)
        dropping = self.training and self.dropkey_rate > 0.0

        if self.fused_attn and not self.record:
            if dropping:
                drop = dropkey_mask((B, self.num_heads, N, N), self.dropkey_rate, x.device)
                bias = torch.zeros(drop.shape, dtype=q.dtype, device=x.device)
                bias = bias.masked_fill(drop, torch.finfo(q.dtype).min)  # (B, H, N, N)
                mask_bias = resolve_self_attn_mask(N, bias, attn_mask, is_causal)
                attn_mask = bias if mask_bias is None else bias + mask_bias
                is_causal = False
            x = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.attn_drop.p if self.training else 0.0,
                is_causal=is_causal,
            )
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, N, N)
            attn = dropkey_forward(attn, self.dropkey_rate, self.training)
            mask_bias = resolve_self_attn_mask(N, attn, attn_mask, is_causal)
            if mask_bias is not None:
                attn = attn + mask_bias
            attn = attn.softmax(dim=-1)
            if self.record:
                self.attn_probs = attn
            attn = self.attn_drop(attn)
            x = attn @ v  # (B, H, N, hd)

        x = x.transpose(1, 2).reshape(B, N, self.attn_dim)
        x = self.norm(x)
        if gate is not None:
            x = x * gate
        x = self.proj(x)
        return self.proj_drop(x)


def dropkey_modules(model: nn.Module) -> list[DropKeyAttention]:
    """The :class:`DropKeyAttention` modules of ``model`` in forward (registration) order."""
    return [m for m in model.modules() if isinstance(m, DropKeyAttention)]


def set_dropkey(model: nn.Module, rate: float, schedule: str = "constant") -> list[float]:
    """Set the DropKey rate of every attention block of ``model``; returns the rates set.

    Args:
        model: any module holding :class:`DropKeyAttention` blocks (in depth order).
        rate: rate of the first block.
        schedule: ``"constant"`` or ``"linear"`` (see :func:`dropkey_rates`).
    """
    mods = dropkey_modules(model)
    rates = dropkey_rates(rate, len(mods), schedule)
    for m, r in zip(mods, rates):
        m.dropkey_rate = r
    return rates


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the attention probabilities of every DropKey block during the forward passes inside.

    Yields a list that, after the ``with`` block, holds one ``(B, H, N, N)`` tensor per block, in depth
    order, from the last forward pass (rows sum to 1; still attached to the autograd graph, so
    gradient-weighted rollout works; call ``.detach()`` otherwise)::

        with record_attention(model.xray) as maps:
            model.encode_xray(x)
        rollout(maps)

    Args:
        model: any module holding :class:`DropKeyAttention` blocks.
    """
    mods = dropkey_modules(model)
    if not mods:
        raise ValueError("the model has no DropKeyAttention blocks whose attention could be recorded")
    maps: list[torch.Tensor] = []
    for m in mods:
        m.record, m.attn_probs = True, None
    try:
        yield maps
    finally:
        for m in mods:
            if m.attn_probs is not None:
                maps.append(m.attn_probs)
            m.record, m.attn_probs = False, None
