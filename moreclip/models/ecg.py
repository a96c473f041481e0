"""The ECG encoder: a transformer over time patches of a 12-lead signal, with DropKey attention.

Input ``(B, L, T)`` with ``L = num_leads`` (12, canonical order) and ``T = sample_rate * seconds``.
Three patch embeddings (``patch_mode``):

- ``"across"`` (default): one token per time patch spanning all leads, a ``Conv1d(L, D, P, stride=P)``;
  ``T / P`` tokens. Lead identity is carried by the convolution's input channels.
- ``"per_lead"``: one token per (lead, time patch), a ``Conv1d(1, D, P, stride=P)`` shared by the leads,
  plus a learnable lead embedding; ``L * T / P`` tokens (finer attention maps, costlier).
- ``"more"``: MoRE's two convolutions across leads, ``Conv1d(L, D/3, P, stride=P)`` -> ReLU -> BatchNorm
  -> ``Conv1d(D/3, D, 5)`` -> ReLU -> BatchNorm; ``T / P - 4`` tokens (196 for 12 x 1,000 with P = 5).

Then a learnable position embedding (per time patch; shared across leads in ``per_lead`` mode), a CLS
token, timm ``Block``s with :class:`~moreclip.models.dropkey.DropKeyAttention`, a final LayerNorm and CLS
or mean pooling.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from moreclip.config import EcgConfig
from moreclip.errors import ConfigError
from moreclip.models.dropkey import DropKeyAttention, set_dropkey

MORE_KERNEL = 5  # kernel of MoRE's second convolution


class EcgPatchEmbed(nn.Module):
    """``(B, L, T)`` signal -> ``(B, N, D)`` tokens; see the module docstring for the modes."""

    def __init__(self, num_leads: int, num_samples: int, patch_size: int, embed_dim: int, mode: str):
        super().__init__()
        self.mode = mode
        self.num_leads = num_leads
        steps = num_samples // patch_size  # time patches (trailing samples that do not fill one dropped)
        if mode == "across":
            self.proj = nn.Conv1d(num_leads, embed_dim, patch_size, stride=patch_size)
        elif mode == "per_lead":
            self.proj = nn.Conv1d(1, embed_dim, patch_size, stride=patch_size)
        elif mode == "more":
            hidden = max(embed_dim // 3, 8)
            self.proj = nn.Sequential(
                nn.Conv1d(num_leads, hidden, patch_size, stride=patch_size),
                nn.ReLU(),
                nn.BatchNorm1d(hidden),
                nn.Conv1d(hidden, embed_dim, MORE_KERNEL),
                nn.ReLU(),
                nn.BatchNorm1d(embed_dim),
            )
            steps -= MORE_KERNEL - 1
        else:
            raise ConfigError(f"model.ecg.patch_mode: unknown mode {mode!r}")
        if steps < 1:
            raise ConfigError(
                f"model.ecg: {num_samples} samples give no token with patch_size={patch_size} ({mode})"
            )
        self.time_steps = steps  # tokens per lead (per_lead) or in all (across, more)
        self.num_patches = steps * (num_leads if mode == "per_lead" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, T = x.shape
        if self.mode == "per_lead":
            x = self.proj(x.reshape(B * L, 1, T))  # (B*L, D, P)
            return x.reshape(B, L, x.shape[1], x.shape[2]).permute(0, 1, 3, 2).flatten(1, 2)  # (B, L*P, D)
        return self.proj(x).transpose(1, 2)  # (B, P, D)


class EcgEncoder(nn.Module):
    """Transformer over ECG patches: ``(B, L, T)`` -> ``(B, width)`` pooled features.

    Args:
        cfg: the ECG encoder config.
    """

    def __init__(self, cfg: EcgConfig):
        super().__init__()
        if cfg.embed_dim % cfg.num_heads:
            raise ConfigError(
                f"model.ecg.embed_dim={cfg.embed_dim} is not divisible by num_heads={cfg.num_heads}"
            )
        self.cfg = cfg
        self.num_samples = round(cfg.sample_rate * cfg.seconds)
        D = self.width = cfg.embed_dim
        self.patch_embed = EcgPatchEmbed(cfg.num_leads, self.num_samples, cfg.patch_size, D, cfg.patch_mode)
        steps = self.patch_embed.time_steps
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, steps, D))  # per time patch
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, D))
        self.lead_embed = (
            nn.Parameter(torch.zeros(1, cfg.num_leads, 1, D)) if cfg.patch_mode == "per_lead" else None
        )
        self.pos_drop = nn.Dropout(cfg.dropout)
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.Sequential(
            *[
                Block(
                    dim=D,
                    num_heads=cfg.num_heads,
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=True,
                    proj_drop=cfg.dropout,
                    drop_path=dpr[i],
                    norm_layer=partial(nn.LayerNorm, eps=1e-6),
                    attn_layer=DropKeyAttention,
                )
                for i in range(cfg.depth)
            ]
        )
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self._init_weights()
        set_dropkey(self, cfg.dropkey_rate, cfg.dropkey_schedule)

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.pos_embed, self.cls_pos, self.lead_embed):
            if p is not None:
                trunc_normal_(p, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.cfg.num_leads or x.shape[2] != self.num_samples:
            raise ValueError(
                f"ECG input of shape {tuple(x.shape)}; the encoder expects (B, {self.cfg.num_leads}, "
                f"{self.num_samples}) (model.ecg.sample_rate * seconds must match the data pipeline)"
            )

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Token features after the last block and norm: ``(B, L, T)`` -> ``(B, 1 + N, width)`` (CLS first)."""
        self._check(x)
        x = self.patch_embed(x)  # (B, N, D)
        B = x.shape[0]
        if self.lead_embed is not None:  # (B, L*P, D): position per time patch + embedding per lead
            L, P = self.cfg.num_leads, self.patch_embed.time_steps
            x = (x.reshape(B, L, P, -1) + self.pos_embed.unsqueeze(1) + self.lead_embed).flatten(1, 2)
        else:
            x = x + self.pos_embed
        cls = (self.cls_token + self.cls_pos).expand(B, -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1))  # (B, 1 + N, D)
        x = self.blocks(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (CLS token or mean of the patch tokens): ``(B, L, T)`` -> ``(B, width)``."""
        x = self.forward_tokens(x)
        return x[:, 0] if self.cfg.global_pool == "token" else x[:, 1:].mean(dim=1)
