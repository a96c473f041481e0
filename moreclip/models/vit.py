"""The X-ray encoder: a timm Vision Transformer with DropKey attention, on 1-channel radiographs.

Any timm ViT architecture name works (``vit_tiny_patch16_224``, ``vit_base_patch16_224``, DeiT, ...) with
its pretrained weights when they are available (``pretrained=True`` with timm's cache or hub, or a local
``pretrained_path``). The architecture is created by timm with ``attn_layer=DropKeyAttention`` (same
parameters as timm's ``Attention``, so weights load unchanged) and ``num_classes=0`` (no classifier).

Grey input: the patch embedding has one input channel. Pretrained RGB kernels are summed into it by
timm's loader (``adapt_input_conv``); since the convolution is linear this equals feeding the grey
image replicated to three channels, at a third of the cost. A ``.pth`` weights file is read by timm with
``torch.load(weights_only=True)`` (nothing unpickled); ``.safetensors`` is preferred.

Stem (``stem``): ``patch`` is timm's patch embedding (one strided convolution per patch, what pretrained
weights expect); ``conv`` replaces it by a convolutional stem (Xiao et al. 2021, "Early convolutions help
transformers see better"): log2(patch) stride-2 3x3 convolutions with batch norm and ReLU, then a 1x1
convolution to the width. The token grid, and so everything downstream (rollout, position embeddings),
stays the same; ViTs trained from scratch on small data learn much faster with it. Its batch norm is
per process under DDP (as open_clip's BN towers without ``--use-bn-sync``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from moreclip.config import XrayConfig
from moreclip.errors import ConfigError
from moreclip.models.dropkey import DropKeyAttention, set_dropkey


def _conv_stem_embed():
    """timm's ``PatchEmbed`` with its projection replaced by a convolutional stem (same grid, same output)."""
    from timm.layers import PatchEmbed

    class ConvStemPatchEmbed(PatchEmbed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            p = self.patch_size[0]
            if self.patch_size[0] != self.patch_size[1] or p < 2 or p & (p - 1):
                raise ConfigError(f"model.xray.stem=conv needs a square power-of-two patch size, not {p}")
            n = p.bit_length() - 1  # stride-2 convolutions
            c_in, width, bias = self.proj.in_channels, self.proj.out_channels, self.proj.bias is not None
            layers: list[nn.Module] = []
            for i in range(n):
                c_out = max(16, width >> (n - 1 - i))
                layers += [
                    nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
            layers.append(nn.Conv2d(c_in, width, 1, bias=bias))
            self.proj = nn.Sequential(*layers)

    return ConvStemPatchEmbed


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
    if cfg.stem == "conv":
        kwargs["embed_layer"] = _conv_stem_embed()
    elif cfg.stem != "patch":
        raise ConfigError(f"model.xray.stem: {cfg.stem!r} is not 'patch' or 'conv'")
    pretrained = cfg.pretrained
    if cfg.stem == "conv" and (pretrained or cfg.pretrained_path):
        raise ConfigError(
            "model.xray.stem=conv has no pretrained weights (timm's checkpoints have a patch stem): "
            "use stem=patch with pretrained weights"
        )
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
