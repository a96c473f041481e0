"""Shared fixtures. Tests never touch the network or a GPU."""

from __future__ import annotations

import os

# before anything imports transformers / huggingface_hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
