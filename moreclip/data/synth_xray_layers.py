"""Geometry and layers of the synthetic radiograph: anatomy, findings, lung markings, bones and metal.

Everything is in image fractions (x to the viewer's right = the patient's left, y down); see synth_xray.py.
"""

from __future__ import annotations

import cv2
import numpy as np

from moreclip.data.synth_latent import Patient

_SHIFT = 4  # sub-pixel bits for cv2 drawing
SIDE = {"right": -1.0, "left": 1.0}  # patient's side -> image x direction


class Canvas:
    """Float layers at ``size`` px with drawing in image fractions."""

    def __init__(self, size: int):
        self.s = size

    def layer(self) -> np.ndarray:
        return np.zeros((self.s, self.s), np.float32)

    def pts(self, xy) -> np.ndarray:
        return (
            np.round(np.asarray(xy, dtype=np.float64) * self.s * (1 << _SHIFT))
            .astype(np.int32)
            .reshape(-1, 1, 2)
        )

    def poly(self, img, xy, value=1.0) -> None:
        cv2.fillPoly(img, [self.pts(xy)], float(value), cv2.LINE_AA, _SHIFT)

    def line(self, img, xy, width: float, value=1.0) -> None:
        w = max(1, int(round(width * self.s)))
        cv2.polylines(img, [self.pts(xy)], False, float(value), w, cv2.LINE_AA, _SHIFT)

    def blur(self, img, sigma: float) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), max(0.3, sigma * self.s))


def smooth_curve(points, n: int = 24) -> np.ndarray:
    """A smooth (Catmull-Rom) curve through ``points`` (K, 2) -> (n * (K - 1), 2)."""
    p = np.asarray(points, dtype=np.float64)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(p[-2][None])
    return np.vstack(out)


def mask_box(mask: np.ndarray, thr: float = 0.5) -> list[float] | None:
    ys, xs = np.nonzero(mask > thr)
    if len(xs) == 0:
        return None
    s = mask.shape[0]
    return [
        round(xs.min() / s, 3),
        round(ys.min() / s, 3),
        round((xs.max() + 1) / s, 3),
        round((ys.max() + 1) / s, 3),
    ]


class Anatomy:
    """Per-patient geometry in image fractions."""

    def __init__(self, p: Patient, rng):
        u = rng.uniform
        self.cx = 0.5 + rng.normal(0, 0.012)
        self.hw = u(0.33, 0.375)  # inner thoracic half-width
        self.top = u(0.1, 0.14)  # lung apices
        dome = {"normal": u(0.68, 0.73), "low": u(0.6, 0.63), "hyperinflated": u(0.78, 0.81)}[p.lung_volumes]
        self.dome = {"right": dome - u(0.01, 0.025), "left": dome + u(0.0, 0.015)}
        if p.elevated_hemidiaphragm != "none":
            self.dome[p.elevated_hemidiaphragm] -= u(0.05, 0.07)
        self.cp_depth = 0.035 if p.lung_volumes == "hyperinflated" else u(0.06, 0.08)
        self.carina = self.top + u(0.15, 0.18)
        self.hilum_y = self.top + 0.3 * (dome - self.top) + 0.05
        amp = {"none": 0.0, "dextroconvex": -1.0, "levoconvex": 1.0}[p.scoliosis] * u(0.04, 0.06)
        self.scol = amp
        # heart: an ellipse tilted ~20 degrees whose horizontal extent is exactly ctr * thoracic width
        self.heart_w = p.ctr * 2 * self.hw
        self.heart_b = 0.36 * self.heart_w
        th = np.deg2rad(u(12, 24))
        b = self.heart_b
        self.heart_a = float(
            np.sqrt(max(((self.heart_w / 2) ** 2 - (b * np.sin(th)) ** 2) / np.cos(th) ** 2, b * b))
        )
        self.heart_th = th
        self.heart_cx = self.cx + u(0.12, 0.17) * self.heart_w
        self.heart_cy = min(self.dome.values()) - 0.5 * b

    def cp(self, side: str) -> tuple[float, float]:
        return self.cx + SIDE[side] * self.hw, self.dome[side] + self.cp_depth

    def spine_x(self, y):
        y0, y1 = self.top, max(self.dome.values())
        return self.cx - 0.006 + self.scol * np.sin(np.pi * np.clip((y - y0) / (y1 - y0), 0, 1))

    def lung(self, side: str) -> np.ndarray:
        """Outline (K, 2) of one lung field, clockwise from the medial apex."""
        sg, cx, hw, top = SIDE[side], self.cx, self.hw, self.top
        xcp, ycp = self.cp(side)
        dome = self.dome[side]
        a = np.linspace(np.pi, 0.2, 10)  # apical cap, medial to lateral
        cap = np.stack(
            [cx + sg * (0.055 + (0.57 * hw - 0.055) * (1 + np.cos(a)) * 0.5), top + 0.06 * (1 - np.sin(a))], 1
        )
        u = np.linspace(0.1, 1, 14)
        lat = np.stack([cx + sg * hw * (0.45 + 0.55 * (1 - (1 - u) ** 2.4)), top + u * (ycp - top)], 1)
        x = np.linspace(1, 0.1, 12)
        peak = 0.45
        dia_y = (
            dome
            + (ycp - dome) * np.clip((x - peak) / (1 - peak), 0, 1) ** 2
            + 0.03 * np.clip((peak - x) / peak, 0, 1)
        )
        dia = np.stack([cx + sg * hw * x, dia_y], 1)
        med = np.array(
            [[cx + sg * 0.035, dome - 0.02], [cx + sg * 0.045, self.carina], [cx + sg * 0.055, top + 0.07]]
        )
        return np.vstack([cap, lat, dia, med])

    def mediastinum(self) -> np.ndarray:
        cx, top, hy = self.cx, self.top, self.heart_cy - 0.6 * self.heart_b
        return np.array([
            [cx - 0.055, 0.0], [cx + 0.05, 0.0], [cx + 0.055, top + 0.07], [cx + 0.09, top + 0.11],
            [cx + 0.095, top + 0.14], [cx + 0.07, top + 0.18], [cx + 0.08, hy], [cx - 0.075, hy],
            [cx - 0.068, top + 0.12], [cx - 0.06, top + 0.05],
        ])  # fmt: skip

    def heart(self, n: int = 40) -> np.ndarray:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        x, y = self.heart_a * np.cos(t), self.heart_b * np.sin(t)
        c, s = np.cos(self.heart_th), np.sin(self.heart_th)
        return np.stack([self.heart_cx + c * x - s * y, self.heart_cy + s * x + c * y], 1)


CM = 0.026  # one centimetre in image fractions (a ~28 cm thorax spans ~0.72 of the image)
EDEMA_HAZE = (0.0, 0.25, 0.5, 0.75)
EFFUSION_HEIGHT = {"small": 0.045, "moderate": 0.14, "large": 0.27}
PTX_SHRINK = {"small": (0.8, 0.86), "large": (0.55, 0.66)}  # collapsed lung scale (x, y)


def granuloma_site(g: Anatomy, site: str) -> tuple[float, float]:
    sg = -1.0 if site.startswith("right") else 1.0
    dome = g.dome["right" if sg < 0 else "left"]
    if "upper" in site:
        return g.cx + sg * 0.58 * g.hw, g.top + 0.11
    if "middle" in site or "lingula" in site:
        return g.cx + sg * (0.42 if sg < 0 else 0.72) * g.hw, dome - 0.16
    return g.cx + sg * 0.68 * g.hw, dome - 0.06


def draw_findings(cv: Canvas, g: Anatomy, p: Patient, rng, air, lungs, xx, yy):
    """Apply effusion, edema, pneumothorax, atelectasis and granuloma to the lung air map.

    Returns ``(air, opacity, no_marks, boxes)``: air fraction (H, W), extra attenuation (H, W), where lung
    markings are absent (H, W), and the effusion / pneumothorax boxes.
    """
    u = rng.uniform
    opacity = cv.layer()
    no_marks = cv.layer()
    boxes = {"effusion": None, "pneumothorax": None}
    # pleural effusion: fluid fills the base under a meniscus that rises laterally
    if p.effusion_side != "none":
        fluid_all = cv.layer()
        for side in ("right", "left") if p.effusion_side == "bilateral" else (p.effusion_side,):
            _, ycp = g.cp(side)
            h = EFFUSION_HEIGHT[p.effusion_size] * u(0.85, 1.15)
            lat = np.clip(np.abs(xx - g.cx) / g.hw, 0, 1)
            level = ycp - g.cp_depth * 0.4 - h - 0.06 * lat**2
            fluid = np.clip((yy - level) / 0.03, 0, 1) * lungs[side]
            air = air * (1 - fluid)
            fluid_all = np.maximum(fluid_all, fluid)
        boxes["effusion"] = mask_box(fluid_all)
    # pulmonary edema: perihilar haze (bat-wing when severe), thickened markings, Kerley B lines
    if p.edema:
        spread = 1.0 + 0.25 * p.edema
        haze = cv.layer()
        for side in ("right", "left"):
            hx = g.cx + SIDE[side] * 0.42 * g.hw
            d = ((xx - hx) / (0.13 * spread)) ** 2 + ((yy - g.hilum_y - 0.03) / (0.17 * spread)) ** 2
            haze = np.maximum(haze, np.exp(-0.5 * d))
        if p.edema >= 2:
            blot = cv2.resize(
                rng.random((cv.s // 16, cv.s // 16), dtype=np.float32),
                (cv.s, cv.s),
                interpolation=cv2.INTER_CUBIC,
            )
            haze *= 0.75 + 0.5 * blot
        air = air * (1 - EDEMA_HAZE[p.edema] * u(0.9, 1.1) * haze)
        kerley = cv.layer()
        for side in ("right", "left"):
            sg = SIDE[side]
            for _ in range(3 + 2 * p.edema):
                y = g.dome[side] - u(0.03, 0.15)
                x0 = g.cx + sg * g.hw * u(0.8, 0.95)
                cv.line(kerley, [[x0, y], [x0 - sg * u(0.025, 0.04), y + u(-0.004, 0.004)]], 0.004)
        air = air * (1 - 0.35 * kerley)
    # pneumothorax: the lung collapses towards the hilum; the rim is air without markings
    if p.pneumothorax_side != "none":
        side = p.pneumothorax_side
        kx, ky = PTX_SHRINK[p.pneumothorax_size]
        kx, ky = kx * u(0.95, 1.05), ky * u(0.97, 1.03)
        outline = g.lung(side)
        hx = g.cx + SIDE[side] * 0.1 * g.hw
        base = g.dome[side] + g.cp_depth
        col = np.stack([hx + (outline[:, 0] - hx) * kx, base - (base - outline[:, 1]) * ky], 1)
        collapsed = cv.layer()
        cv.poly(collapsed, col)
        rim = np.clip(lungs[side] - collapsed, 0, 1) * (np.abs(xx - g.cx) > abs(hx - g.cx) + 0.04)
        air = np.maximum(air, rim)  # pure air, no lung tissue
        opacity -= 0.14 * rim
        no_marks = rim
        air = air * (1 - (0.35 if p.pneumothorax_size == "large" else 0.12) * collapsed)
        pleura = cv.layer()
        cv.line(pleura, col[:22], 0.004)  # apical and lateral visceral pleural line
        opacity += 0.3 * pleura * lungs[side]
        boxes["pneumothorax"] = mask_box(rim)
    # basal plate-like atelectasis
    if p.atelectasis_side != "none":
        band = cv.layer()
        for side in ("right", "left") if p.atelectasis_side == "bilateral" else (p.atelectasis_side,):
            sg, y = SIDE[side], g.dome[side] - u(0.045, 0.08)
            cv.line(band, [[g.cx + sg * 0.3 * g.hw, y], [g.cx + sg * 0.8 * g.hw, y - u(0.0, 0.03)]], 0.014)
        air = air * (1 - 0.65 * cv.blur(band, 0.004))
    if p.granuloma != "none":
        gx, gy = granuloma_site(g, p.granuloma)
        dot = cv.layer()
        cv2.circle(dot, (int(gx * cv.s * 16), int((gy + u(-0.02, 0.02)) * cv.s * 16)),
                   int(u(0.011, 0.015) * cv.s * 16), 1.0, -1, cv2.LINE_AA, 4)  # fmt: skip
        opacity += 0.75 * dot
    # normal lung texture and hilar vessels
    tex = cv2.resize(
        rng.random((cv.s // 12, cv.s // 12), dtype=np.float32), (cv.s, cv.s), interpolation=cv2.INTER_CUBIC
    )
    hila = np.exp(-0.5 * (((np.abs(xx - g.cx) - 0.3 * g.hw) / 0.07) ** 2 + ((yy - g.hilum_y) / 0.08) ** 2))
    air = air * (1 - 0.07 * tex - 0.12 * hila)
    # gastric bubble under the left hemidiaphragm
    if rng.random() < 0.75 and p.effusion_side not in ("left", "bilateral"):
        d = ((xx - g.cx - 0.45 * g.hw) / 0.06) ** 2 + ((yy - g.dome["left"] - 0.055) / 0.03) ** 2
        air = air + 0.5 * np.exp(-(d**2)) * (yy > g.dome["left"] + 0.03)
    return air, opacity, no_marks, boxes


def draw_markings(cv: Canvas, g: Anatomy, p: Patient, rng) -> np.ndarray:
    """Bronchovascular markings radiating from the hila (thicker with vascular congestion)."""
    u = rng.uniform
    m = cv.layer()
    w = 0.008 * (1 + 0.3 * p.edema)
    for side in ("right", "left"):
        sg = SIDE[side]
        hx, hy = g.cx + sg * 0.3 * g.hw, g.hilum_y
        for ang in np.linspace(-70, 75, 9) + rng.normal(0, 7, 9):
            a = np.deg2rad(ang)
            d = np.array([sg * np.cos(a), np.sin(a)])
            length = u(0.12, 0.26)
            mid = np.array([hx, hy]) + d * length * 0.5
            end = mid + (d + rng.normal(0, 0.25, 2)) * length * 0.5
            cv.line(m, [[hx, hy], mid], w, 1.0)
            cv.line(m, [mid, end], w * 0.55, 0.8)
            cv.line(m, [mid, mid + (d + rng.normal(0, 0.5, 2)) * length * 0.3], w * 0.45, 0.7)
    return cv.blur(m, 0.003)


def draw_bones(cv: Canvas, g: Anatomy, p: Patient, rng) -> np.ndarray:
    """Spine, posterior ribs, clavicles and (AP view) scapulae."""
    b = cv.layer()
    ys = np.linspace(0, 1, 20)
    cv.line(b, np.stack([g.spine_x(ys), ys], 1), 0.06, 0.5)
    bottom = max(g.dome.values())
    step = (bottom - g.top + 0.04) / 9.5
    for side in ("right", "left"):
        sg = SIDE[side]
        for k in range(10):
            y0 = g.top - 0.03 + k * step
            xs = g.spine_x(y0)
            pts = [[xs + sg * 0.03, y0], [g.cx + sg * 0.45 * g.hw, y0 - 0.022], [g.cx + sg * 0.92 * g.hw, y0 + 0.03],
                   [g.cx + sg * 1.06 * g.hw, y0 + 0.085]]  # fmt: skip
            cv.line(b, smooth_curve(pts, 6), 0.012 + 0.003 * k / 9, 0.7)
        cv.line(b, smooth_curve([[g.cx + sg * 0.035, g.top + 0.035], [g.cx + sg * 0.45 * g.hw, g.top - 0.005],
                           [g.cx + sg * 1.08 * g.hw, g.top - 0.045]], 8), 0.024, 1.4)  # fmt: skip
        if p.view == "AP":  # scapulae project over the upper lateral lungs
            cv.line(b, smooth_curve([[g.cx + sg * 1.0 * g.hw, g.top - 0.01], [g.cx + sg * 0.74 * g.hw, g.top + 0.19],
                               [g.cx + sg * 0.95 * g.hw, g.top + 0.33]], 8), 0.01, 0.9)  # fmt: skip
    return cv.blur(b, 0.003)


def _superellipse(cx, cy, rx, ry, n=24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([cx + rx * np.sign(c) * np.abs(c) ** 0.4, cy + ry * np.sign(s) * np.abs(s) ** 0.4], 1)


def draw_devices(cv: Canvas, g: Anatomy, p: Patient, rng):
    """Metal and tubes: cardiac device and leads, sternotomy wires, clips, lines, tubes, calcification.

    Returns ``(metal, device_box)``: extra attenuation (H, W) and where the generator was drawn.
    """
    u = rng.uniform
    m = cv.layer()
    box = None
    svc_x = g.cx - 0.05
    heart_top = g.heart_cy - 0.8 * g.heart_b
    if p.device != "none":
        sg = SIDE[p.device_side]
        gx, gy = g.cx + sg * u(0.66, 0.8) * g.hw, g.top + u(0.03, 0.07)
        rx, ry = (0.055, 0.04) if p.device == "icd" else (0.044, 0.032)
        gen = cv.layer()
        cv.poly(gen, _superellipse(gx, gy, rx, ry))
        box = mask_box(gen)
        m += 1.2 * gen
        entry = [
            [gx - sg * rx * 0.8, gy - 0.01],
            [g.cx + sg * 0.25 * g.hw, g.top - 0.005],
            [svc_x + 0.005, g.carina],
        ]
        rv_tip = [g.heart_cx + 0.3 * g.heart_a, g.heart_cy + 0.3 * g.heart_b]
        rv = smooth_curve(entry + [[svc_x - 0.005, heart_top + 0.02], [g.cx, g.heart_cy], rv_tip], 10)
        cv.line(m, rv, 0.008, 0.9)
        if p.device == "icd":
            cv.line(m, rv[-14:], 0.02, 0.9)  # shock coil in the right ventricle
        if p.device_leads == 2:
            ra = smooth_curve(
                entry + [[svc_x - 0.01, heart_top + 0.03], [svc_x + 0.01, heart_top - 0.015]], 10
            )
            cv.line(m, ra, 0.008, 0.9)
    if p.sternotomy:
        for y in np.linspace(g.top + 0.09, g.heart_cy - 0.2 * g.heart_b, int(rng.integers(5, 8))):
            c = (int((g.cx + u(-0.008, 0.008)) * cv.s * 16), int(y * cv.s * 16))
            cv2.ellipse(m, c, (int(0.02 * cv.s * 16), int(0.007 * cv.s * 16)), u(-12, 12), 0, 360, 1.0,
                        max(1, cv.s // 128), cv2.LINE_AA, 4)  # fmt: skip
    if p.cabg_clips:
        for _ in range(int(rng.integers(3, 7))):
            x, y = g.heart_cx + u(-0.3, 0.9) * g.heart_a, g.heart_cy + u(-0.9, 0.2) * g.heart_b
            a = u(0, np.pi)
            cv.line(m, [[x, y], [x + 0.016 * np.cos(a), y + 0.016 * np.sin(a)]], 0.006, 1.0)
    if p.line != "none":
        tip_y = {"svc": g.carina - 0.01, "cavoatrial": heart_top + 0.015, "right_atrium": heart_top + 0.06}[
            p.line_tip
        ]
        tip = [svc_x + 0.005, tip_y]
        path = {
            "right_ij": [[g.cx - 0.1, -0.01], [g.cx - 0.09, g.top - 0.03], [svc_x - 0.005, g.top + 0.08], tip],
            "left_ij": [[g.cx + 0.1, -0.01], [g.cx + 0.085, g.top], [g.cx + 0.01, g.top + 0.06], [svc_x, g.top + 0.12], tip],
            "right_picc": [[-0.01, g.top + 0.1], [g.cx - g.hw, g.top + 0.01], [g.cx - 0.4 * g.hw, g.top + 0.015],
                           [svc_x - 0.005, g.top + 0.09], tip],
            "left_picc": [[1.01, g.top + 0.1], [g.cx + g.hw, g.top + 0.01], [g.cx + 0.4 * g.hw, g.top + 0.02],
                          [g.cx + 0.02, g.top + 0.07], [svc_x + 0.005, g.top + 0.12], tip],
        }[p.line]  # fmt: skip
        cv.line(m, smooth_curve(path, 10), 0.006, 0.85)
    if p.ett_cm:
        tip = g.carina - p.ett_cm * CM
        cv.line(m, [[g.cx - 0.004, -0.01], [g.cx - 0.006, tip]], 0.022, 0.3)
        cv.line(m, [[g.cx - 0.001, -0.01], [g.cx - 0.003, tip]], 0.005, 0.5)
    if p.ngt:
        dl = g.dome["left"]
        path = [[g.cx + 0.012, -0.01], [g.cx + 0.018, g.carina], [g.cx + 0.03, dl - 0.05], [g.cx + 0.08, dl + 0.045],
                [g.cx + 0.42 * g.hw, dl + 0.085], [g.cx + 0.55 * g.hw, dl + 0.06]]  # fmt: skip
        cv.line(m, smooth_curve(path, 10), 0.006, 0.75)
    if p.abdominal_clips:
        x0, y0 = g.cx - 0.5 * g.hw, g.dome["right"] + u(0.07, 0.1)
        for _ in range(int(rng.integers(2, 5))):
            x, y, a = x0 + u(-0.03, 0.03), y0 + u(-0.02, 0.02), u(0, np.pi)
            cv.line(m, [[x, y], [x + 0.017 * np.cos(a), y + 0.017 * np.sin(a)]], 0.006, 1.1)
    if p.aortic_calcification:
        c = (int((g.cx + 0.083) * cv.s * 16), int((g.top + 0.125) * cv.s * 16))
        cv2.ellipse(m, c, (int(0.02 * cv.s * 16), int(0.02 * cv.s * 16)), 0, -110, 80, 0.8,
                    max(1, cv.s // 128), cv2.LINE_AA, 4)  # fmt: skip
    return m, box
