"""Figures of the explanations: radiograph heat-map overlays with colour bars, and PNG bytes.

matplotlib (the ``viz`` extra) is imported on first use; figures are built with
``matplotlib.figure.Figure`` directly (no pyplot, no global state, any backend), so they can be rendered
in threads and never pop up windows. ECG plots are in :mod:`moreclip.explain.ecg_plot`, text highlights
in :mod:`moreclip.explain.text`.

    fig = render_xray(maps["image"], {"rollout": maps["rollout"], "text": maps["text"]}, prompt="effusion")
    png = figure_png(fig)            # bytes
    save_figure(fig, "xray.png")     # written atomically
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from moreclip.errors import ConfigError

CMAP = "inferno"  # perceptually uniform; its dark end fades into the radiograph (alpha ramp below)
TITLES = {
    "rollout": "Attention rollout",
    "text": "Text-conditioned attention",
    "gradient": "Text-conditioned gradient \u00d7 input",
}


def require_matplotlib():
    """Import matplotlib (the ``viz`` extra) or raise a clear ConfigError."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ConfigError("explanation figures need matplotlib: pip install 'moreclip[viz]'") from None
    return matplotlib


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (white background)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def save_bytes(data: bytes | str, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` to a PNG file at ``path`` (atomically)."""
    return save_bytes(figure_png(fig, dpi), path)


def display_scale(heat: np.ndarray, q: float = 99.5) -> np.ndarray:
    """A non-negative map scaled to [0, 1] by its ``q``-th percentile (robust max), for colouring."""
    h = np.clip(np.asarray(heat, dtype=np.float64), 0, None)
    top = np.percentile(h, q) if h.size else 0.0
    top = top if top > 0 else (h.max() if h.max() > 0 else 1.0)
    return np.clip(h / top, 0.0, 1.0)


def overlay_rgba(heat01: np.ndarray, cmap: str = CMAP, alpha: float = 0.75) -> np.ndarray:
    """RGBA ``(H, W, 4)`` of a [0, 1] map: the colour map's colours, opacity rising with the value so
    that anatomy stays visible where the map is low."""
    matplotlib = require_matplotlib()
    rgba = matplotlib.colormaps[cmap](heat01)
    rgba[..., 3] = alpha * np.clip(heat01 / 0.5, 0.0, 1.0) ** 0.8
    return rgba


def render_xray(
    image: np.ndarray,
    maps: dict[str, np.ndarray],
    prompt: str | None = None,
    title: str | None = None,
    box=None,
    cmap: str = CMAP,
    panel_inches: float = 3.6,
):
    """The radiograph and one heat-map overlay per map, each with a colour bar.

    Args:
        image: ``(S, S)`` uint8 radiograph as the model saw it (``xray_maps(...)["image"]``).
        maps: method name -> ``(h, w)`` non-negative map on the patch grid (upsampled bilinearly here).
        prompt: the text the ``text`` / ``gradient`` maps are conditioned on (shown in their titles).
        title: figure title (e.g. the sample id); never a report.
        box: optional region to outline on every panel, ``(x0, y0, x1, y1)`` image fractions.
        cmap: matplotlib colour map of the overlays.
        panel_inches: width of one panel.

    Returns:
        a matplotlib Figure.
    """
    require_matplotlib()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from moreclip.explain.xray import upsample

    img = np.asarray(image)
    H, W = img.shape[:2]
    n = 1 + len(maps)
    fig = Figure(figsize=(panel_inches * n + 0.6 * len(maps), panel_inches + 0.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    panels = [("Radiograph", None)] + [(name, m) for name, m in maps.items()]
    for ax, (name, heat) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        if heat is None:
            ax.set_title(name, fontsize=10)
        else:
            h01 = display_scale(upsample(heat, (H, W)))
            ax.imshow(overlay_rgba(h01, cmap), interpolation="bilinear")
            label = TITLES.get(name, name)
            if prompt and name != "rollout":
                short = prompt if len(prompt) <= 34 else prompt[:32] + "\u2026"
                label += f"\n\u201c{short}\u201d"
            ax.set_title(label, fontsize=10)
            cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, fraction=0.046, pad=0.03)
            cb.set_label("relative relevance", fontsize=8)
            cb.ax.tick_params(labelsize=7)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in (box.split(",") if isinstance(box, str) else box))
            ax.add_patch(Rectangle((x0 * W, y0 * H), (x1 - x0) * W, (y1 - y0) * H, fill=False,
                                   edgecolor="#39ff14", linewidth=1.2, linestyle="--"))  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
