"""A 12-lead ECG in the clinical layout, on ECG paper, with attribution shading over time and lead.

Layouts:

- ``"3x4"`` (default): the standard printout, three rows of four columns of 2.5 s each (I, II, III |
  aVR, aVL, aVF | V1, V2, V3 | V4, V5, V6; every column shows its own 2.5 s of the simultaneous
  recording) plus a 10 s rhythm strip of lead II;
- ``"12x1"``: every lead over the full 10 s, one row each.

Paper: 25 mm/s and 10 mm/mV (the axes keep that aspect), minor lines every 1 mm (0.04 s, 0.1 mV) and
major lines every 5 mm (0.2 s, 0.5 mV), a 1 mV calibration pulse at the start of every row. Attribution
``(12, T)`` (any T spanning the same seconds as the signal) is interpolated onto the signal's time axis,
scaled to [0, 1] by its 99.5th percentile over all leads (so leads compare) and drawn as a colour band
behind each lead's trace, with a colour bar.
"""

from __future__ import annotations

import numpy as np

from moreclip.config import CANONICAL_LEADS
from moreclip.explain.render import display_scale, require_matplotlib

ATTR_CMAP = "Blues"  # cool shading reads apart from the red paper grid and the black trace
LAYOUT_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
ROW_MV = 3.0  # vertical room of one row (30 mm)
MM_PER_S, MM_PER_MV = 25.0, 10.0
TITLES = {"rollout": "Attention rollout", "text": "Text-conditioned attribution (gradient \u00d7 input)"}


def _segments(layout: str, seconds: float) -> list[tuple[int, float, float, int]]:
    """(lead index, t0, t1, row) of every trace segment of a layout; row 0 at the top."""
    idx = {name: i for i, name in enumerate(CANONICAL_LEADS)}
    if layout == "12x1":
        return [(i, 0.0, seconds, i) for i in range(12)]
    if layout != "3x4":
        raise ValueError(f"unknown ECG layout {layout!r} (expected '3x4' or '12x1')")
    col = seconds / 4
    segs = [
        (idx[name], c * col, (c + 1) * col, r)
        for r, row in enumerate(LAYOUT_3X4)
        for c, name in enumerate(row)
    ]
    return segs + [(idx[RHYTHM_LEAD], 0.0, seconds, 3)]


def _paper(ax, x0: float, x1: float, y0: float, y1: float) -> None:
    """ECG paper grid over the data box (minor 0.04 s / 0.1 mV, major 0.2 s / 0.5 mV)."""
    for step, color, lw in ((0.04, "#f7d4d4", 0.35), (0.2, "#e89a9a", 0.7)):
        xs = np.arange(np.floor(x0 / step) * step, x1 + 1e-9, step)
        ax.vlines(xs, y0, y1, colors=color, linewidth=lw, zorder=3)
    for step, color, lw in ((0.1, "#f7d4d4", 0.35), (0.5, "#e89a9a", 0.7)):
        ys = np.arange(np.floor(y0 / step) * step, y1 + 1e-9, step)
        ax.hlines(ys, x0, x1, colors=color, linewidth=lw, zorder=3)


def _draw_panel(ax, signal, fs, attr01, layout, cmap, name_fs):
    seconds = signal.shape[1] / fs
    segs = _segments(layout, seconds)
    rows = max(s[3] for s in segs) + 1
    pad_left = 0.5  # calibration pulse room
    y_top, y_bottom = ROW_MV / 2, ROW_MV / 2 - rows * ROW_MV
    _paper(ax, -pad_left, seconds, y_bottom, y_top)
    t = np.arange(signal.shape[1]) / fs
    for lead, t0, t1, row in segs:
        y = -row * ROW_MV
        lo, hi = int(round(t0 * fs)), min(signal.shape[1], int(round(t1 * fs)) + 1)
        if attr01 is not None:
            band = attr01[lead, lo:hi][None]  # (1, n) in [0, 1]
            ax.imshow(band, extent=(t0, t1, y - ROW_MV / 2 + 0.05, y + ROW_MV / 2 - 0.05), aspect="auto",
                      cmap=cmap, vmin=0, vmax=1, alpha=0.85, zorder=2, interpolation="bilinear")  # fmt: skip
        trace = np.clip(signal[lead, lo:hi], -ROW_MV * 0.62, ROW_MV * 0.62)
        ax.plot(t[lo:hi], y + trace, color="black", linewidth=0.7, zorder=4)
        ax.text(t0 + 0.05, y + ROW_MV * 0.32, CANONICAL_LEADS[lead], fontsize=8, fontweight="bold", zorder=5)
        if t0 > 0:
            ax.vlines(t0, y - 0.4, y + 0.4, colors="black", linewidth=0.8, zorder=5)
    for row in range(rows):  # 1 mV calibration pulse, 0.2 s wide
        y = -row * ROW_MV
        ax.plot([-0.45, -0.4, -0.4, -0.2, -0.2, -0.15], [y, y, y + 1, y + 1, y, y], color="black",
                linewidth=0.8, zorder=4)  # fmt: skip
    ax.set_xlim(-pad_left, seconds)
    ax.set_ylim(y_bottom, y_top)
    ax.set_aspect(MM_PER_MV / MM_PER_S)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.text(
        seconds, y_bottom - 0.15, f"25 mm/s   10 mm/mV   {name_fs:g} Hz", fontsize=7, ha="right", va="top"
    )


def _resample_time(attr: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of ``(12, T_a)`` onto ``n`` samples spanning the same time."""
    a = np.asarray(attr, dtype=np.float64)
    if a.shape[1] == n:
        return a
    src = (np.arange(a.shape[1]) + 0.5) / a.shape[1]
    dst = (np.arange(n) + 0.5) / n
    return np.stack([np.interp(dst, src, row) for row in a])


def render_ecg(
    signal: np.ndarray,
    fs: float,
    maps: dict[str, np.ndarray] | None = None,
    prompt: str | None = None,
    title: str | None = None,
    layout: str = "3x4",
    cmap: str = ATTR_CMAP,
):
    """A 12-lead ECG plot, one panel per attribution map (or one plain panel).

    Args:
        signal: ``(12, T)`` millivolts, canonical lead order (``ecg_maps(...)["signal"]``).
        fs: sampling rate of ``signal``.
        maps: method name -> ``(12, T_a)`` non-negative attribution over the same seconds.
        prompt: the text the ``text`` map is conditioned on (shown in its title).
        title: figure title (e.g. the sample id); never a report.
        layout: ``"3x4"`` (+ lead II rhythm strip) or ``"12x1"``.
        cmap: colour map of the shading.

    Returns:
        a matplotlib Figure.
    """
    require_matplotlib()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != 12:
        raise ValueError(f"expected a (12, T) signal, got shape {signal.shape}")
    seconds = signal.shape[1] / fs
    rows = 12 if layout == "12x1" else 4
    panels = list((maps or {}).items()) or [(None, None)]
    width = (seconds + 0.5) * MM_PER_S / 25.4 + 1.2
    height = rows * ROW_MV * MM_PER_MV / 25.4 + 0.7
    fig = Figure(figsize=(width, height * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, attr) in zip(axes, panels):
        attr01 = None if attr is None else display_scale(_resample_time(attr, signal.shape[1]))
        _draw_panel(ax, signal, fs, attr01, layout, cmap, fs)
        if name is not None:
            label = TITLES.get(name, name)
            if prompt and name != "rollout":
                label += f" \u2014 \u201c{prompt if len(prompt) <= 60 else prompt[:58] + chr(0x2026)}\u201d"
            ax.set_title(label, fontsize=10, loc="left")
            cb = fig.colorbar(
                ScalarMappable(Normalize(0, 1), cmap),
                ax=ax,
                fraction=0.02,
                pad=0.01,
                shrink=min(1.0, 4 / rows),
            )
            cb.set_label("relative attribution", fontsize=8)
            cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
