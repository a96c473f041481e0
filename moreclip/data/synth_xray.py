"""Synthetic frontal chest radiographs, drawn procedurally from a patient's latent truth.

The picture is built in an attenuation space (outside the body 0, soft tissue 1; lung air subtracts, bone
and metal add) and mapped to 8-bit grey with a per-patient exposure curve, detector blur and noise. Geometry
is in image fractions (x to the viewer's right = the patient's left, y down), so any size draws the same
anatomy. Every finding is drawn large enough to be seen at 128 px: the heart silhouette is exactly
``ctr`` of the inner thoracic width, effusions fill the costophrenic angle and base under a meniscus,
edema is graded perihilar haze, a pneumothorax is a lucent rim without lung markings bounded by the visceral
pleural line, and devices are bright metal. :func:`render_xray` also returns the boxes where the heart,
effusion(s), pneumothorax and cardiac device were drawn (for explanation maps).
"""

from __future__ import annotations

import cv2
import numpy as np

from moreclip.data.synth_latent import Patient
from moreclip.data.synth_xray_extras import draw_extras
from moreclip.data.synth_xray_layers import (
    SIDE,
    Anatomy,
    Canvas,
    draw_bones,
    draw_devices,
    draw_findings,
    draw_markings,
    mask_box,
)


def render_xray(p: Patient, rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, dict]:
    """Draw the frontal chest radiograph of patient ``p``.

    Returns:
        ``(image, boxes)``: ``image`` uint8 ``(size, size)``; ``boxes`` maps ``heart``, ``effusion``,
        ``pneumothorax``, ``device`` to ``[x0, y0, x1, y1]`` in image fractions (None when not drawn).
    """
    cv = Canvas(size)
    g = Anatomy(p, rng)
    u = rng.uniform
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size

    # body: neck, shoulders, chest wall, abdomen
    body = cv.layer()
    wall = g.hw + u(0.06, 0.1)
    cv.poly(body, [
        [g.cx - 0.09, 0.0], [g.cx + 0.09, 0.0], [g.cx + 0.11, g.top - 0.07], [g.cx + g.hw + 0.2, g.top - 0.03],
        [1.05, g.top + 0.02], [1.05, 0.45], [g.cx + wall, g.top + 0.2], [g.cx + wall + 0.02, 1.05],
        [g.cx - wall - 0.02, 1.05], [g.cx - wall, g.top + 0.2], [-0.05, 0.45], [-0.05, g.top + 0.02],
        [g.cx - g.hw - 0.2, g.top - 0.03], [g.cx - 0.11, g.top - 0.07],
    ])  # fmt: skip
    body = cv.blur(body, 0.006)
    # soft-tissue thickness: thickest in the midline, thinner towards the flanks
    body *= 0.8 + 0.2 * np.clip(1 - ((xx - g.cx) / (wall + 0.1)) ** 2, 0, 1)

    # lungs (air), minus mediastinum and heart
    lungs = {side: cv.layer() for side in ("right", "left")}
    for side, m in lungs.items():
        cv.poly(m, g.lung(side))
    solid = cv.layer()
    cv.poly(solid, g.mediastinum())
    cv.poly(solid, g.heart())
    heart_mask = cv.layer()
    cv.poly(heart_mask, g.heart())
    air = np.clip(lungs["right"] + lungs["left"] - solid, 0, 1)
    trachea = cv.layer()
    cv.line(trachea, [[g.cx - 0.004, 0.0], [g.cx - 0.006, g.carina]], 0.03)
    cv.line(trachea, [[g.cx - 0.006, g.carina], [g.cx - 0.05, g.carina + 0.05]], 0.018)
    cv.line(trachea, [[g.cx - 0.006, g.carina], [g.cx + 0.05, g.carina + 0.06]], 0.018)
    # lung tissue without markings where a pneumothorax is; findings change air and add opacities
    air, opacity, no_marks, boxes = draw_findings(cv, g, p, rng, air, lungs, xx, yy)
    boxes["heart"] = mask_box(heart_mask)
    extra = draw_extras(cv, g, p, rng)
    air = cv.blur(air, 0.004) * (1 - extra["air_loss"]) + extra["air_gain"]
    marks = draw_markings(cv, g, p, rng) * np.clip(air, 0, 1) * (1 - no_marks)
    bone = draw_bones(cv, g, p, rng) + extra["bone"]
    metal, boxes["device"] = draw_devices(cv, g, p, rng)
    metal += extra["metal"]

    k_air = u(0.66, 0.74) * (1.06 if p.lung_volumes == "hyperinflated" else 1.0)
    att = body * (1.0 - k_air * air - 0.2 * trachea * (1 - 0.5 * heart_mask)) + opacity * body
    thorax = np.abs(xx - g.cx) < g.hw * 1.06
    att += 0.22 * marks + 0.13 * bone * (0.4 + 0.6 * thorax) + metal
    if p.sex == "F":  # breast shadows over the lower zones
        for side in ("right", "left"):
            d = ((xx - (g.cx + SIDE[side] * 0.7 * g.hw)) / 0.16) ** 2 + (
                (yy - g.dome[side] + 0.02) / 0.09
            ) ** 2
            att += u(0.04, 0.09) * np.exp(-d) * body
    if p.view == "AP":
        att += _marker(cv, "AP PORTABLE" if rng.random() < 0.7 else "PORTABLE AP", rng)
    att += _marker(cv, "L", rng, right=True)

    # exposure, detector blur and noise
    gain, gamma = u(0.62, 0.74), u(0.85, 1.2)
    img = gain * np.clip(att, 0, None) ** gamma + u(-0.03, 0.05)
    img += (u(-0.04, 0.04) * (xx - 0.5) + u(-0.04, 0.04) * (yy - 0.5)).astype(np.float32)
    img = cv.blur(img.astype(np.float32), u(0.0015, 0.0035))
    noise = rng.standard_normal((size, size), dtype=np.float32) * np.float32(u(0.01, 0.025))
    img += noise
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), boxes


def _marker(cv: Canvas, text: str, rng, right: bool = False) -> np.ndarray:
    """A burned-in lead marker (white text) in a top corner."""
    m = np.zeros((cv.s, cv.s), np.uint8)
    scale = cv.s / 560.0 * (1.6 if len(text) == 1 else 1.0)
    thick = max(1, cv.s // 200)
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = int(cv.s * rng.uniform(0.8, 0.9)) - w if right else int(cv.s * rng.uniform(0.03, 0.06))
    y = int(cv.s * rng.uniform(0.04, 0.07)) + h
    cv2.putText(m, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    return m.astype(np.float32) * np.float32(1.2 / 255)
