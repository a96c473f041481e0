"""Encoders (X-ray ViT with DropKey, ECG transformer, Hugging Face text + LoRA), heads, MoRE, registry."""

from moreclip.models.checkpoint import load, save_pretrained
from moreclip.models.dropkey import DropKeyAttention, dropkey_forward, record_attention, set_dropkey
from moreclip.models.factory import add_model_config, create_model, get_model_config, list_models
from moreclip.models.more import MoRE, join_reports

__all__ = [
    "DropKeyAttention",
    "MoRE",
    "add_model_config",
    "create_model",
    "dropkey_forward",
    "get_model_config",
    "join_reports",
    "list_models",
    "load",
    "record_attention",
    "save_pretrained",
    "set_dropkey",
]
