"""Builders shared by the tests/test_eval_*.py files: a very small MoRE model and a mixed-presence cohort
written in real formats (PNG by Pillow, WFDB by wfdb, Parquet manifest by pandas)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pandas as pd
import torch

from moreclip.data.manifest import write_manifest
from tests.helpers import make_ecg, make_png

#: a tiny model with the smallest encoders that still run (the MiniLM text encoder is real)
TINY = {"xray": {"img_size": 32, "depth": 1}, "ecg": {"depth": 1}, "embed_dim": 32}


def tiny_model(seed: int = 0, **overrides):
    """A fresh copy of a tiny random-init model (built once per process and configuration)."""
    import json

    kw = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for k, v in overrides.items():
        kw[k] = {**kw.get(k, {}), **v} if isinstance(v, dict) else v
    return copy.deepcopy(_build(seed, json.dumps(kw, sort_keys=True))).eval()


@functools.lru_cache(maxsize=4)
def _build(seed: int, kw: str):
    import json

    from moreclip.models import create_model

    torch.manual_seed(seed)
    return create_model("tiny", **json.loads(kw)).eval()


def mixed_cohort(root: Path, n: int = 12, fs: int = 500) -> Path:
    """n rows over n // 2 subjects (two each), splits by subject; no X-ray where i % 4 == 1, no ECG where
    i % 3 == 2, no reports where i % 5 == 4; labels ``demo/a`` (0/1) and ``demo/b`` (NaN every third)."""
    rows = []
    for i in range(n):
        subj = i // 2
        split = "train" if subj < n // 4 else ("val" if subj < 3 * n // 8 else "test")
        row = {"sample_id": f"s{i}", "subject_id": f"p{subj}", "split": split}
        if i % 4 != 1:
            make_png(root / "xray" / f"s{i}.png", size=40, seed=i)
            row["xray_path"] = f"xray/s{i}.png"
        if i % 3 != 2:
            make_ecg(root / "ecg" / f"s{i}", fs=fs, seed=i)
            row["ecg_path"] = f"ecg/s{i}"
        if i % 5 != 4:
            row["xray_report"] = f"Heart size normal. Finding number {i}. No effusion."
            row["ecg_report"] = f"Sinus rhythm, rate {60 + i}. Normal ECG."
        row["demo/a"] = float(i % 2)
        row["demo/b"] = None if i % 3 == 0 else float(i % 2 == 0)
        rows.append(row)
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet")
