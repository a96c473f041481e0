"""The X-ray encoder: a timm Vision Transformer with DropKey attention, on 1-channel radiographs.

Any timm ViT architecture name works (``vit_tiny_patch16_224``, ``vit_base_patch16_224``, DeiT, ...) with
its pretrained weights when they are available (``pretrained=True`` with timm's cache or hub, or a local
``pretrained_path``). The architecture is created by timm with ``attn_layer=DropKeyAttention`` (same
parameters as timm's ``Attention``, so weights load unchanged) and ``num_classes=0`` (no classifier).

Grey input: the patch embedding has one input channel. Pretrained RGB kernels are summed into it by
timm's loader (``adapt_input_conv``); since the convolution is linear this equals feeding the grey
image replicated to three channels, at a third of the cost. A ``.pth`` weights file is read by timm with
``torch.load(weights_only=True)`` (nothing unpickled); ``.safetensors`` is preferred.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from moreclip.config import XrayConfig
from moreclip.errors import ConfigError
from moreclip.models.dropkey import DropKeyAttention, set_dropkey


def create_vit(cfg: XrayConfig) -> nn.Module:
    """Build the timm ViT for ``cfg`` (1 input channel, no classifier, DropKey attention).

    Args:
        cfg: the X-ray encoder config; ``None`` sizes keep the timm architecture's own values.
    """
    import timm

    if not timm.is_model(cfg.model_name):
        close = timm.list_models(f"*{cfg.model_name.split('_')[0]}*")[:5]
        raise ConfigError(f"model.xray.model_name: unknown timm model {cfg.model_name!r} (e.g. {close})")
    kwargs: dict = {
        "num_classes": 0,
        "in_chans": 1,
        "img_size": cfg.img_size,
        "global_pool": cfg.global_pool,
        "drop_path_rate": cfg.drop_path_rate,
        "attn_layer": DropKeyAttention,
    }
    for key in ("patch_size", "embed_dim", "depth", "num_heads"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    pretrained = cfg.pretrained
    if cfg.pretrained_path:
        path = Path(cfg.pretrained_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.xray.pretrained_path: file not found: {path}")
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    try:
        vit = timm.create_model(cfg.model_name, pretrained=pretrained, **kwargs)
    except TypeError as e:  # the architecture does not take attn_layer / these sizes
        raise ConfigError(
            f"model.xray.model_name: {cfg.model_name!r} is not a timm VisionTransformer ({e})"
        ) from None
    if set_dropkey(vit, cfg.dropkey_rate, cfg.dropkey_schedule) == []:
        raise ConfigError(f"model.xray.model_name: {cfg.model_name!r} has no timm Attention blocks")
    return vit


class XrayEncoder(nn.Module):
    """ViT over grey radiographs: ``(B, 1, H, W)`` normalised pixels -> ``(B, width)`` pooled features.

    Args:
        cfg: the X-ray encoder config.
    """

    def __init__(self, cfg: XrayConfig):
        super().__init__()
        self.cfg = cfg
        self.vit = create_vit(cfg)
        self.width: int = self.vit.num_features
        self.img_size: tuple[int, int] = tuple(self.vit.patch_embed.img_size)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"X-ray input of shape {tuple(x.shape)}; the encoder expects (B, 1, {self.img_size[0]}, "
                f"{self.img_size[1]}) (model.xray.img_size must match data.image_size)"
            )

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Token features after the last block and norm: ``(B, 1, H, W)`` -> ``(B, prefix + patches, width)``."""
        self._check(x)
        return self.vit.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (CLS token or mean of patch tokens): ``(B, 1, H, W)`` -> ``(B, width)``."""
        return self.vit.forward_head(self.forward_tokens(x), pre_logits=True)
