"""Small builders of real-format files for tests (WFDB via wfdb, images via Pillow, manifests via pandas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from moreclip.config import CANONICAL_LEADS
from moreclip.data.ecg import write_ecg
from moreclip.data.manifest import write_manifest


def make_png(path: Path, size: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), mode="L").save(path)
    return path


def make_ecg(
    record: Path, fs: int = 500, seconds: float = 10.0, leads=CANONICAL_LEADS, seed: int = 0
) -> Path:
    record.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(fs * seconds)
    t = np.arange(n) / fs
    sig = np.stack(
        [np.sin(2 * np.pi * (1 + i) * t) * 0.5 + 0.01 * rng.standard_normal(n) for i in range(len(leads))]
    )
    write_ecg(record, sig, fs, tuple(leads))
    return record


def make_cohort(root: Path, n: int = 4) -> Path:
    """A tiny valid manifest with images and ECGs under ``root``; returns the manifest path."""
    rows = []
    for i in range(n):
        make_png(root / "xray" / f"s{i}.png", seed=i)
        make_ecg(root / "ecg" / f"s{i}", seed=i)
        rows.append(
            {
                "sample_id": f"s{i}",
                "subject_id": f"p{i}",
                "split": ["train", "train", "val", "test"][i % 4],
                "xray_path": f"xray/s{i}.png",
                "ecg_path": f"ecg/s{i}",
                "xray_report": "FINDINGS: clear lungs. IMPRESSION: normal.",
                "ecg_report": "Sinus rhythm. Normal ECG.",
                "demo/finding": float(i % 2),
                "demo/severity": float(i % 4),
            }
        )
    return write_manifest(
        pd.DataFrame(rows), root / "manifest.parquet", label_domains={"demo/severity": [0, 1, 2, 3]}
    )
