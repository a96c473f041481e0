"""moreclip: multi-modal contrastive pre-training on chest X-rays, 12-lead ECGs and their reports (MoRE).

The public API is re-exported here and resolved lazily, so ``import moreclip`` stays cheap (no torch
import) until a model-related name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "Config": "moreclip.config",
    "load_config": "moreclip.config",
    "Manifest": "moreclip.data.manifest",
    "read_manifest": "moreclip.data.manifest",
    "write_manifest": "moreclip.data.manifest",
    "validate_manifest": "moreclip.data.validate",
    "generate_cohort": "moreclip.data.synthetic",
    "prepare_cache": "moreclip.data.prepare",
    "open_cache": "moreclip.data.cache",
    "MoreDataset": "moreclip.data.dataset",
    "build_dataset": "moreclip.data.dataset",
    "collate": "moreclip.data.dataset",
    "make_dataloader": "moreclip.data.batch",
    "MoRE": "moreclip.models",
    "create_model": "moreclip.models",
    "list_models": "moreclip.models",
    "add_model_config": "moreclip.models",
    "load": "moreclip.models",
    "record_attention": "moreclip.models",
    "clip_loss": "moreclip.losses",
    "multimodal_clip_loss": "moreclip.losses",
    "symile_loss": "moreclip.losses",
    "create_loss": "moreclip.losses",
    "pretrain": "moreclip.train",
    "load_train_config": "moreclip.train",
    "Task": "moreclip.eval.tasks",
    "load_task": "moreclip.eval.tasks",
    "list_tasks": "moreclip.eval.tasks",
    "Embeddings": "moreclip.eval.embed",
    "embed_dataset": "moreclip.eval.embed",
    "zero_shot": "moreclip.eval.zeroshot",
    "linear_probe": "moreclip.eval.probe",
    "retrieval": "moreclip.eval",
    "VectorIndex": "moreclip.index",
    "build_index": "moreclip.index.model_index",
    "search_index": "moreclip.index.model_index",
    "xray_maps": "moreclip.explain",
    "ecg_maps": "moreclip.explain",
    "ecg_attribution": "moreclip.explain",
    "text_importance": "moreclip.explain",
    "explain_sample": "moreclip.explain",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'moreclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
