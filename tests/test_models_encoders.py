"""X-ray ViT and ECG transformer encoders: shapes, pretrained weights on grey input, attention maps."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from moreclip.config import EcgConfig, XrayConfig
from moreclip.errors import ConfigError
from moreclip.models.dropkey import record_attention
from moreclip.models.ecg import EcgEncoder
from moreclip.models.vit import XrayEncoder

TINY_VIT = {"model_name": "vit_tiny_patch16_224", "img_size": 32, "depth": 2}


def test_xray_encoder_pools_grey_images_and_sets_dropkey_schedule():
    enc = XrayEncoder(XrayConfig(**TINY_VIT, dropkey_rate=0.2, dropkey_schedule="linear"))
    assert [b.attn.dropkey_rate for b in enc.vit.blocks] == pytest.approx([0.2, 0.0])
    assert enc(torch.randn(3, 1, 32, 32)).shape == (3, 192)
    with pytest.raises(ValueError, match=r"expects \(B, 1, 32, 32\)"):
        enc(torch.randn(3, 1, 64, 64))


def test_xray_pretrained_file_sums_rgb_kernels_and_equals_replicated_grey_input(tmp_path):
    """Loading a 3-channel checkpoint for grey input is the same as feeding the image three times."""
    torch.manual_seed(0)
    rgb = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, depth=2).eval()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, path)
    enc = XrayEncoder(XrayConfig(**TINY_VIT, pretrained_path=str(path))).eval()
    w_rgb = rgb.patch_embed.proj.weight
    assert torch.allclose(enc.vit.patch_embed.proj.weight, w_rgb.sum(1, keepdim=True))
    assert torch.equal(enc.vit.blocks[1].attn.qkv.weight, rgb.blocks[1].attn.qkv.weight)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(enc(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5)


def test_xray_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown timm model"):
        XrayEncoder(XrayConfig(model_name="vit_tinyy_patch16_224"))
    with pytest.raises(ConfigError, match="pretrained_path: file not found"):
        XrayEncoder(XrayConfig(**TINY_VIT, pretrained_path=str(tmp_path / "missing.pth")))


def test_xray_attention_maps_cover_every_block():
    enc = XrayEncoder(XrayConfig(**TINY_VIT)).eval()
    with record_attention(enc) as maps:
        enc(torch.randn(2, 1, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(2, 3, 5, 5)] * 2  # CLS + 2x2 patches


def test_xray_conv_stem_keeps_the_token_grid_and_sees_local_structure(tmp_path):
    enc = XrayEncoder(XrayConfig(**TINY_VIT, stem="conv")).eval()
    convs = [m for m in enc.vit.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    # 16 px patches: four stride-2 3x3 convolutions, then a 1x1 to the width
    assert [(c.kernel_size, c.stride) for c in convs] == [((3, 3), (2, 2))] * 4 + [((1, 1), (1, 1))]
    assert convs[-1].out_channels == enc.width == 192
    with record_attention(enc) as maps:
        out = enc(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 192) and [tuple(m.shape) for m in maps] == [(2, 3, 5, 5)] * 2
    # overlapping 3x3 receptive fields: a pixel just inside a patch border moves its neighbour's token
    x = torch.zeros(1, 1, 32, 32)
    y = x.clone()
    y[0, 0, 15, 15] = 5.0  # last pixel of patch (0, 0)
    patch = XrayEncoder(XrayConfig(**TINY_VIT)).eval()
    with torch.no_grad():
        delta_patch = (patch.vit.patch_embed(y) - patch.vit.patch_embed(x))[0].abs().sum(-1)
    assert delta_patch[0] > 0 and torch.all(delta_patch[1:] == 0)  # timm's stem: patch (0, 0) only
    with torch.no_grad():
        stem_delta = (enc.vit.patch_embed(y) - enc.vit.patch_embed(x))[0].abs().sum(-1)
    assert stem_delta[0] > 0 and stem_delta[1] > 0  # the conv stem reaches across the border
    with pytest.raises(ConfigError, match="stem=conv has no pretrained weights"):
        XrayEncoder(XrayConfig(**TINY_VIT, stem="conv", pretrained=True))
    with pytest.raises(ConfigError, match="power-of-two patch size"):
        XrayEncoder(XrayConfig(**{**TINY_VIT, "img_size": 36}, stem="conv", patch_size=12))


ECG = {"sample_rate": 100, "seconds": 10.0, "embed_dim": 48, "depth": 2, "num_heads": 4}


@pytest.mark.parametrize(
    ("mode", "patch", "tokens"),
    [("across", 50, 20), ("per_lead", 100, 120), ("more", 5, 196)],
)
def test_ecg_patch_modes_give_documented_token_counts(mode, patch, tokens):
    enc = EcgEncoder(EcgConfig(**ECG, patch_mode=mode, patch_size=patch))
    x = torch.randn(3, 12, 1000, requires_grad=True)
    assert enc.forward_tokens(x).shape == (3, 1 + tokens, 48)
    enc(x).sum().backward()
    assert x.grad.abs().sum() > 0
    with record_attention(enc) as maps:
        enc(x)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 1 + tokens, 1 + tokens)


def test_ecg_per_lead_tokens_know_their_lead():
    torch.manual_seed(0)
    enc = EcgEncoder(EcgConfig(**ECG, patch_mode="per_lead", patch_size=100, global_pool="avg")).eval()
    x = torch.randn(1, 12, 1000)
    swapped = x[:, [1, 0, *range(2, 12)]]  # same tokens, two leads exchanged
    assert not torch.allclose(enc(x), enc(swapped), atol=1e-4)


def test_ecg_dropkey_and_pooling_follow_config():
    enc = EcgEncoder(EcgConfig(**ECG, dropkey_rate=0.4, dropkey_schedule="linear", global_pool="avg")).eval()
    assert [b.attn.dropkey_rate for b in enc.blocks] == pytest.approx([0.4, 0.0])
    x = torch.randn(2, 12, 1000)
    tokens = enc.forward_tokens(x)
    assert torch.allclose(enc(x), tokens[:, 1:].mean(1))


def test_ecg_shape_and_config_errors():
    enc = EcgEncoder(EcgConfig(**ECG))
    with pytest.raises(ValueError, match=r"expects \(B, 12, 1000\)"):
        enc(torch.randn(2, 12, 5000))
    with pytest.raises(ConfigError, match="not divisible"):
        EcgEncoder(EcgConfig(**{**ECG, "num_heads": 5}))
    with pytest.raises(ConfigError, match="no token"):
        EcgEncoder(EcgConfig(**ECG, patch_mode="more", patch_size=250))
