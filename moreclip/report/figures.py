"""Figures the report draws itself (the evaluation plots come from :mod:`moreclip.eval.plots`).

- :func:`plot_training`: loss per modality pair and in total, learning rate and temperature, per step,
  from a run's ``logs/train.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

PAIR_NAMES = {"xray": "X-ray", "ecg": "ECG", "xray_report": "X-ray report", "ecg_report": "ECG report"}


def pair_label(pair: str) -> str:
    """``"xray:xray_report"`` -> ``"X-ray ↔ X-ray report"``."""
    a, _, b = pair.partition(":")
    return f"{PAIR_NAMES.get(a, a)} \u2194 {PAIR_NAMES.get(b, b)}"


def plot_training(csv: str | Path, out: str | Path, batch_size: int | None = None) -> Path | None:
    """Training curves of one run; None when the log has no rows.

    Args:
        csv: ``logs/train.csv`` of the run.
        out: PNG to write.
        batch_size: global batch (draws the chance level ``ln(batch)`` of the InfoNCE loss).
    """
    import pandas as pd

    from moreclip.eval.plots import _save, require_matplotlib

    df = pd.read_csv(csv)
    if df.empty:
        return None
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    step = df["step"].to_numpy()
    for col in sorted(c for c in df.columns if c.startswith("loss/")):
        ax1.plot(step, df[col], lw=1.2, alpha=0.85, label=pair_label(col[5:]))
    ax1.plot(step, df["loss"], lw=2.4, c="k", label="mean over pairs")
    if batch_size:
        ax1.axhline(math.log(batch_size), ls="--", c="0.5", lw=1, label=f"chance (ln {batch_size})")
    ax1.set(xlabel="optimizer step", ylabel="contrastive loss (InfoNCE)")
    ax1.set_title("training loss per modality pair", fontsize=10)
    ax1.legend(fontsize=7, ncol=2, loc="lower left")
    ax1.grid(alpha=0.3)
    ax2.plot(step, df["lr"], c="C0", lw=1.6)
    ax2.set(xlabel="optimizer step", ylabel="learning rate")
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax2.grid(alpha=0.3)
    if "logit_scale" in df:
        tw = ax2.twinx()
        tw.plot(step, df["logit_scale"], c="C1", lw=1.6)
        tw.set_ylabel("inverse temperature (logit scale)", color="C1")
        tw.tick_params(axis="y", colors="C1")
    ax2.set_title("learning rate (blue) and inverse temperature (orange)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def last_value(csv: str | Path, column: str) -> float | None:
    """The last logged value of ``column`` (None when absent)."""
    import pandas as pd

    df = pd.read_csv(csv)
    if column not in df or df.empty:
        return None
    v = float(df[column].iloc[-1])
    return v if np.isfinite(v) else None
