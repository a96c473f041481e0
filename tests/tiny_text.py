"""A tiny random BERT text backbone (MiniLM's tokenizer, 2 layers of width 32) for fast tests of code
paths that do not need pretrained text semantics: it loads in milliseconds instead of seconds."""

from __future__ import annotations

from pathlib import Path


def tiny_text_backbone(folder: Path) -> str:
    """Write the backbone (config, random weights, tokenizer) to ``folder`` once; returns its path."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from moreclip.models.text import resolve_backbone

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)  # fmt: skip
        BertModel(cfg).save_pretrained(folder)
        AutoTokenizer.from_pretrained(resolve_backbone("minilm")).save_pretrained(folder)
    return str(folder)
