"""DropKey attention: identity in eval, the configured drop fraction in training, no NaN, attention maps."""

from __future__ import annotations

import pytest
import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block

from moreclip.models.dropkey import (
    DropKeyAttention,
    dropkey_forward,
    dropkey_rates,
    record_attention,
    set_dropkey,
)


def block_pair(dim=48, heads=4, rate=0.3, seed=0):
    torch.manual_seed(seed)
    ref = Block(dim, heads, qkv_bias=True, attn_layer=Attention)
    ours = Block(dim, heads, qkv_bias=True, attn_layer=DropKeyAttention)
    ours.load_state_dict(ref.state_dict())  # same parameter names: timm weights load unchanged
    ours.attn.dropkey_rate = rate
    return ref, ours


def test_dropkey_forward_is_identity_in_eval_and_at_rate_zero():
    s = torch.randn(2, 3, 5, 5)
    assert dropkey_forward(s, 0.5, training=False) is s
    assert dropkey_forward(s, 0.0, training=True) is s


def test_dropkey_forward_drops_the_configured_fraction():
    torch.manual_seed(0)
    s = torch.randn(8, 4, 32, 32)
    out = dropkey_forward(s, 0.3, training=True)
    dropped = out == torch.finfo(s.dtype).min
    assert abs(dropped.float().mean().item() - 0.3) < 0.02
    assert torch.equal(out[~dropped], s[~dropped])


def test_block_matches_timm_block_in_eval():
    ref, ours = block_pair()
    ref.eval(), ours.eval()
    x = torch.randn(2, 17, 48)
    assert torch.allclose(ours(x), ref(x), atol=1e-6, rtol=0)
    with record_attention(ours) as _:  # the explicit (non-fused) path too
        y = ours(x)
    assert torch.allclose(y, ref(x), atol=1e-6, rtol=0)


def test_block_with_rate_zero_matches_timm_block_in_training():
    ref, ours = block_pair(rate=0.0)
    ref.train(), ours.train()
    x = torch.randn(2, 17, 48)
    assert torch.allclose(ours(x), ref(x), atol=1e-6, rtol=0)


def test_training_changes_output_and_drops_rate_of_attention_weights():
    ref, ours = block_pair(rate=0.3)
    ours.train()
    x = torch.randn(4, 33, 48)
    with record_attention(ours) as maps:
        ours(x)
    probs = maps[0]  # (B, H, N, N)
    zero_fraction = (probs == 0).float().mean().item()
    assert abs(zero_fraction - 0.3) < 0.02
    assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)
    ref.eval()
    assert not torch.allclose(ours(x), ref(x), atol=1e-3)


def test_fused_and_explicit_paths_draw_the_same_mask():
    _, ours = block_pair(rate=0.4)
    ours.train()
    x = torch.randn(2, 9, 48)
    torch.manual_seed(7)
    fused = ours(x)
    torch.manual_seed(7)
    with record_attention(ours):
        explicit = ours(x)
    assert torch.allclose(fused, explicit, atol=1e-5, rtol=0)


def test_all_logits_dropped_gives_uniform_attention_not_nan():
    attn = DropKeyAttention(16, num_heads=2, dropkey_rate=1.0).train()
    x = torch.randn(2, 6, 16, requires_grad=True)
    with record_attention(attn) as maps:
        y = attn(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(maps[0], torch.full_like(maps[0], 1 / 6))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(attn(x)).all()  # fused path as well


def test_linear_schedule_decays_to_zero_over_depth():
    assert dropkey_rates(0.2, 5, "linear") == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0])
    assert dropkey_rates(0.3, 3, "constant") == [0.3, 0.3, 0.3]
    blocks = torch.nn.Sequential(*[Block(16, 2, attn_layer=DropKeyAttention) for _ in range(3)])
    assert set_dropkey(blocks, 0.2, "linear") == pytest.approx([0.2, 0.1, 0.0])
    assert [b.attn.dropkey_rate for b in blocks] == pytest.approx([0.2, 0.1, 0.0])
    with pytest.raises(ValueError, match="schedule"):
        dropkey_rates(0.1, 3, "cosine")


def test_record_attention_returns_one_map_per_block_and_cleans_up():
    blocks = torch.nn.Sequential(*[Block(16, 2, attn_layer=DropKeyAttention) for _ in range(3)]).eval()
    x = torch.randn(2, 5, 16)
    with record_attention(blocks) as maps:
        out = blocks(x)
    assert [tuple(m.shape) for m in maps] == [(2, 2, 5, 5)] * 3
    assert all(not b.attn.record and b.attn.attn_probs is None for b in blocks)
    assert torch.allclose(blocks(x), out, atol=1e-6)
    with pytest.raises(ValueError, match="no DropKeyAttention"), record_attention(torch.nn.Linear(2, 2)):
        pass
