"""Incidental findings of the synthetic radiograph: nodule, healed rib fracture, degenerative spine, shoulder
arthroplasty and hiatal hernia (see synth_xray.py; the elevated hemidiaphragm is part of the anatomy)."""

from __future__ import annotations

import cv2
import numpy as np

from moreclip.data.synth_latent import Patient
from moreclip.data.synth_xray_layers import CM, SIDE, Anatomy, Canvas, granuloma_site


def _disk(cv: Canvas, x: float, y: float, r: float) -> np.ndarray:
    m = cv.layer()
    cv2.circle(
        m, (int(x * cv.s * 16), int(y * cv.s * 16)), max(16, int(r * cv.s * 16)), 1.0, -1, cv2.LINE_AA, 4
    )
    return m


def draw_extras(cv: Canvas, g: Anatomy, p: Patient, rng) -> dict[str, np.ndarray]:
    """Layers ``air_loss`` (fraction of lung air replaced by tissue), ``air_gain``, ``bone`` and ``metal``."""
    u = rng.uniform
    out = {"air_loss": cv.layer(), "air_gain": cv.layer(), "bone": cv.layer(), "metal": cv.layer()}
    if p.nodule != "none":
        x, y = granuloma_site(g, p.nodule)
        x, y = x + u(-0.02, 0.02), y + u(-0.03, 0.01)
        out["air_loss"] += 0.85 * cv.blur(_disk(cv, x, y, p.nodule_mm / 20 * CM), 0.002)
    if p.rib_fracture != "none":
        sg = SIDE[p.rib_fracture]
        y = g.top + u(0.2, 0.4)
        c = (int((g.cx + sg * u(0.88, 0.96) * g.hw) * cv.s * 16), int(y * cv.s * 16))
        axes = (int(0.02 * cv.s * 16), int(0.012 * cv.s * 16))
        cv2.ellipse(out["bone"], c, axes, u(-30, 30), 0, 360, 1.3, -1, cv2.LINE_AA, 4)
    if p.spine_degeneration:
        bottom = max(g.dome.values())
        for y in np.linspace(g.top + 0.05, bottom, int(rng.integers(5, 9))):
            x = float(g.spine_x(y))
            for sg in (-1.0, 1.0):
                if rng.random() < 0.7:
                    ln = u(0.012, 0.022)
                    cv.line(
                        out["bone"],
                        [[x + sg * 0.028, y], [x + sg * (0.028 + ln), y + u(-0.012, 0.012)]],
                        0.006,
                        1.4,
                    )
    if p.shoulder_arthroplasty != "none":
        sg = SIDE[p.shoulder_arthroplasty]
        hx, hy = g.cx + sg * (g.hw + 0.085), g.top + 0.005
        out["metal"] += 1.1 * _disk(cv, hx, hy, 0.04)
        cv.line(out["metal"], [[hx + sg * 0.01, hy + 0.02], [hx + sg * 0.05, hy + 0.2]], 0.02, 1.1)
    if p.hiatal_hernia:
        x, y, r = g.cx + u(0.0, 0.04), g.dome["left"] - u(0.05, 0.08), u(0.035, 0.05)
        bubble = _disk(cv, x, y, r)
        yy = (np.arange(cv.s, dtype=np.float32)[:, None] + 0.5) / cv.s
        out["air_gain"] += 0.55 * cv.blur(
            bubble * (yy < y + u(-0.01, 0.01)), 0.002
        )  # air above a fluid level
    return out
