"""Text encoder: MiniLM and a tiny local decoder LLM, pooling, LoRA placement, save/load of the LLM path."""

from __future__ import annotations

import pytest
import torch

from moreclip.config import ModelConfig, TextConfig
from moreclip.errors import ConfigError
from moreclip.models import create_model, load
from moreclip.models.text import TextEncoder, pool, resolve_backbone


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(TextConfig(lora_layers=[-2, -1], max_length=32))


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> str:
    """A 2-layer Llama with random weights and the MiniLM tokenizer, saved locally (no download)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    out = tmp_path_factory.mktemp("tiny_llm")
    tok = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    LlamaModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_mean_pooling_ignores_padding(minilm):
    short = minilm.encode(["sinus rhythm"])
    padded = minilm.encode(["sinus rhythm", "a much longer report about atrial fibrillation with rvr"])
    assert torch.allclose(short[0], padded[0], atol=1e-5)


def test_pool_last_finds_the_last_token_with_left_or_right_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "cls").flatten().tolist() == [0.0, 4.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]


def test_lora_only_in_requested_top_layers_and_backbone_frozen(minilm):
    trainable = [n for n, p in minilm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    layers = {int(n.split("encoder.layer.")[1].split(".")[0]) for n in trainable}
    assert layers == {4, 5}
    assert {n.split(".")[-4] for n in trainable} == {"query", "value"}  # peft's BERT default


def test_backward_stops_below_the_lowest_adapter(minilm):
    seen = {}
    hooks = [
        minilm.backbone.encoder.layer[i].register_forward_hook(
            lambda m, a, out, i=i: seen.__setitem__(
                i, (out[0] if isinstance(out, tuple) else out).requires_grad
            )
        )
        for i in (3, 4)
    ]
    try:
        minilm.train()
        minilm.encode(["left ventricular hypertrophy"]).sum().backward()
    finally:
        minilm.eval()
        for h in hooks:
            h.remove()
    assert seen == {3: False, 4: True}  # layers 0-3 build no autograd graph


def test_lora_layer_and_target_errors():
    with pytest.raises(ConfigError, match="out of range"):
        TextEncoder(TextConfig(lora_layers=[6]))
    with pytest.raises(ConfigError, match="no module named"):
        TextEncoder(TextConfig(lora_target_modules=["q_proj"]))


def test_tiny_llm_last_token_pooling_with_lora(tiny_llm):
    enc = TextEncoder(
        TextConfig(model_name=tiny_llm, pooling="last", lora_r=4, lora_alpha=8, lora_layers=[-1])
    )
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("layers.1." in n and "lora_" in n for n in trainable)
    z = enc.encode(["normal ecg", "atrial fibrillation with rapid ventricular response"])
    assert z.shape == (2, 32) and torch.isfinite(z).all()
    alone = enc.encode(["normal ecg"])
    assert torch.allclose(z[0], alone[0], atol=1e-5)  # padding does not move the last real token


def test_tiny_llm_model_save_load_round_trip_is_bit_exact(tiny_llm, tmp_path):
    model = create_model(
        "tiny",
        xray={"depth": 1, "img_size": 32},
        ecg={"depth": 1},
        text={"model_name": tiny_llm, "pooling": "last", "lora_layers": None, "max_length": 32},
    )
    with torch.no_grad():  # non-zero LoRA B so the adapters matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    model.eval()
    texts = ["no acute cardiopulmonary process", "sinus bradycardia"]
    before = model.encode_text(texts)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    assert torch.equal(loaded.encode_text(texts), before)
    assert isinstance(loaded.config, ModelConfig) and loaded.config.text.model_name == tiny_llm
