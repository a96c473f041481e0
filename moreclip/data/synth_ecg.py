"""Synthetic 12-lead ECGs: a vectorised sum-of-Gaussians beat model driven by a cardiac dipole.

Each wave of a beat (P, septal q, R, S, T, and the extra waves of bundle branch blocks, paced and premature
beats, ST elevation, old infarct Q waves) is an asymmetric Gaussian in time with a 3-D dipole direction
``(x: patient's left, y: inferior, z: anterior)``. Limb leads are projections of the dipole on the frontal
lead vectors, so Einthoven's relations hold exactly (III = II - I, aVR = -(I + II) / 2, aVL = I - II / 2,
aVF = II - I / 2); the precordial leads see the dipole from their own horizontal-plane angle plus a few
per-lead terms (territorial ST/T/Q changes). One beat template ``(12, W)`` per beat kind is built once per
record and overlap-added at every beat time, which is what makes a record cost about a millisecond.
Noise (baseline wander, broadband, mains hum) is added per *electrode* and mixed into leads, so it obeys
Einthoven too.

All amplitudes are millivolts at :data:`FS` = 500 Hz for :data:`SECONDS` = 10 s; the visible markers
(rate, RR irregularity and absent P waves of atrial fibrillation, QRS voltage of LVH, ST level, QRS width of
bundle branch blocks and paced beats) are large enough to survive resampling to 100 Hz.
"""

from __future__ import annotations

import numpy as np

from moreclip.data.synth_latent import Patient

FS = 500
SECONDS = 10.0
N_SAMPLES = int(FS * SECONDS)
_PRE, _POST = 0.50, 0.75  # template window around the R peak, seconds
_TW = np.arange(-int(_PRE * FS), int(_POST * FS)) / FS  # (W,) template time axis

# frontal lead vectors (x, y) of the six limb leads; z is 0
_LIMB = np.array([[1.0, 0.0], [0.5, 0.866], [-0.5, 0.866], [-0.75, -0.433], [0.75, -0.433], [0.0, 0.866]])
_PRECORDIAL_DEG = np.array([118.0, 94.0, 76.0, 58.0, 32.0, 8.0])  # horizontal angle from +x towards +z
_PRECORDIAL_GAIN = np.array([1.15, 1.5, 1.6, 1.6, 1.4, 1.1])
_PRECORDIAL_Y = np.array([0.0, 0.0, 0.1, 0.2, 0.3, 0.35])
# per-territory precordial patterns (V1..V6) for non-dipolar territorial changes
_ANTERIOR = np.array([0.55, 1.0, 1.0, 0.75, 0.25, 0.0])
_LATERAL_V = np.array([0.0, 0.0, 0.0, 0.3, 0.9, 1.0])
# electrode -> lead mixing (RA, LA, LL, V1..V6) -> (I, II, III, aVR, aVL, aVF, V1..V6); used for noise
_MIX = np.zeros((12, 9))
_MIX[0, :3] = [-1, 1, 0]
_MIX[1, :3] = [-1, 0, 1]
_MIX[2, :3] = [0, -1, 1]
_MIX[3, :3] = [1, -0.5, -0.5]
_MIX[4, :3] = [-0.5, 1, -0.5]
_MIX[5, :3] = [-0.5, -0.5, 1]
for _k in range(6):
    _MIX[6 + _k, :3] = -1.0 / 3.0
    _MIX[6 + _k, 3 + _k] = 1.0


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


class _Leads:
    """Projection of dipole vectors (and precordial-only terms) onto the 12 leads of one patient."""

    def __init__(self, rng: np.random.Generator):
        ang = np.deg2rad(_PRECORDIAL_DEG + rng.normal(0, 6, 6))
        gain = _PRECORDIAL_GAIN * rng.uniform(0.9, 1.1, 6)
        self.pre = np.stack([np.cos(ang), _PRECORDIAL_Y, np.sin(ang)], 1) * gain[:, None]  # (6, 3)

    def __call__(self, vec, precordial=None) -> np.ndarray:
        """A dipole ``vec`` (3,) -> lead amplitudes (12,); ``precordial`` (6,) adds to V1..V6 only."""
        vec = np.asarray(vec, dtype=np.float64)
        out = np.concatenate([_LIMB @ vec[:2], self.pre @ vec])
        if precordial is not None:
            out[6:] += precordial
        return out


def _frontal(deg: float, z: float = 0.0) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.array([np.cos(r), np.sin(r), z])


class _Beat:
    """Accumulates waves (centre s, rise/fall widths s, lead amplitudes (12,)) into a template (12, W)."""

    def __init__(self):
        self.centre, self.up, self.down, self.amp = [], [], [], []

    def add(self, centre: float, up: float, down: float, amp: np.ndarray) -> None:
        self.centre.append(centre)
        self.up.append(up)
        self.down.append(down)
        self.amp.append(amp)

    def template(self) -> np.ndarray:
        c = np.array(self.centre)[:, None]
        d = _TW[None, :] - c  # (K, W)
        width = np.where(d < 0, np.array(self.up)[:, None], np.array(self.down)[:, None])
        shapes = np.exp(-0.5 * (d / width) ** 2)  # (K, W)
        return np.stack(self.amp, 1) @ shapes  # (12, K) @ (K, W)


def _territory(leads: _Leads, territory: str, amp: float) -> np.ndarray:
    """Lead amplitudes (12,) of a change of size ``amp`` facing ``territory`` (reciprocal leads opposite)."""
    if territory == "inferior":
        return leads(amp * np.array([0.0, 1.0, 0.0]))
    if territory == "lateral":
        return leads(amp * np.array([0.95, -0.5, 0.0]), precordial=amp * 0.3 * _LATERAL_V)
    return leads(np.zeros(3), precordial=amp * _ANTERIOR)  # anterior: V1-V4


def _conducted_beat(
    p: Patient, leads: _Leads, qt: float, shape: dict, rot: float
) -> tuple[np.ndarray, np.ndarray]:
    """Templates (QRS part, rest) of a supraventricular beat (sinus, AF, or paced when ``p`` is paced).

    ``rot`` (degrees) turns the main QRS forces in the frontal plane; :func:`render_ecg` uses it to land the
    measured frontal axis on the patient's ``axis_deg`` whatever the extra waves (R', Q waves) add.
    """
    qrs, rest = _Beat(), _Beat()
    s = p.qrs_ms / 92.0
    q_on = -0.5 * p.qrs_ms / 1000
    axis = p.axis_deg
    a_r, a_t = shape["a_r"], shape["a_t"]
    c, si = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))

    def turn(v):  # frontal-plane rotation of a dipole
        v = np.asarray(v, dtype=np.float64)
        return np.array([c * v[0] - si * v[1], si * v[0] + c * v[1], v[2]])

    if p.rhythm == "paced":
        v = _frontal(axis, -0.55)
        # right-ventricular apical pacing: a broad, notched, LBBB-like complex with a superior axis
        qrs.add(-0.03, 0.014, 0.016, leads(turn(a_r * 0.7 * _unit(v))))
        qrs.add(0.012, 0.018, 0.022, leads(turn(a_r * 0.75 * _unit(v + [0.0, 0.0, -0.3]))))
        qrs.add(0.055, 0.014, 0.014, leads(turn(-0.2 * a_r * _unit([0.3, 1.0, 0.4]))))
        rest.add(qt + q_on - 0.1, 0.055, 0.04, leads(-0.55 * a_t * _unit(v)))
    elif p.bbb == "lbbb":
        qrs.add(-0.028 * s / 1.6, 0.016, 0.016, leads(turn(a_r * 0.8 * _unit([0.8, 0.35, -0.55]))))
        qrs.add(0.026 * s / 1.6, 0.02, 0.02, leads(turn(a_r * 0.85 * _unit([0.7, 0.2, -0.7]))))
        rest.add(qt + q_on - 0.1, 0.055, 0.04, leads(-0.6 * a_t * _unit([0.8, 0.3, -0.6])))
    else:
        qrs.add(-0.021 * min(s, 1.1), 0.008, 0.008, leads(shape["a_q"] * _unit([-0.55, 0.15, 0.8])))
        qrs.add(
            0.0,
            0.0095 * min(s, 1.1),
            0.0095 * min(s, 1.1),
            leads(turn(a_r * _unit(_frontal(axis, -shape["zr"])))),
        )
        qrs.add(0.024 * min(s, 1.1), 0.009, 0.009, leads(shape["a_s"] * _unit([-0.3, -0.35, -0.75])))
        t_vec = _unit(_frontal(shape["t_axis"], 0.35))
        if p.lvh_strain:
            t_vec = -1.2 * _unit(_frontal(axis, -0.3))
        rest.add(qt + q_on - 2.3 * shape["t_w"], 1.25 * shape["t_w"], 0.8 * shape["t_w"], leads(a_t * t_vec))
        if p.bbb == "rbbb":
            qrs.add(0.058 * s / 1.5, 0.016, 0.018, leads(shape["a_rp"] * _unit([-0.6, 0.0, 0.85])))
            rest.add(
                qt + q_on - 0.12, 0.05, 0.04, leads(np.zeros(3), precordial=-0.25 * _ANTERIOR * a_t / 0.35)
            )
        if p.lvh_strain:
            rest.add(0.5 * p.qrs_ms / 1000 + 0.07, 0.04, 0.06, leads(-0.15 * _unit(_frontal(axis, -0.3))))
    if p.q_territory != "none":
        qrs.add(q_on + 0.022, 0.011, 0.011, _territory(leads, p.q_territory, -shape["a_qw"]))
    if p.ste_territory != "none":
        # ST elevation: a broad hump from the J point merging into a taller T (reciprocal depression opposite)
        j = -q_on + 0.01
        rest.add(j + 0.06, 0.045, 0.08, _territory(leads, p.ste_territory, shape["a_ste"]))
    if p.twi_territory != "none":
        rest.add(qt + q_on - 2.3 * shape["t_w"], 1.2 * shape["t_w"], 0.9 * shape["t_w"],
                 _territory(leads, p.twi_territory, -shape["a_twi"]))  # fmt: skip
    pr = shape.get("pr_ms", p.pr_ms) / 1000  # a premature atrial beat has its own P and PR
    if pr > 0:
        p_vec = leads(shape["a_p"] * _unit(_frontal(shape["p_axis"], 0.15)))
        if p.lae and "pr_ms" not in shape:  # broad notched P (II), deep terminal negative P (V1)
            rest.add(q_on - pr + 0.035, 0.02, 0.02, 0.8 * p_vec)
            rest.add(
                q_on - pr + 0.085,
                0.02,
                0.02,
                0.8 * p_vec + leads(np.zeros(3), precordial=[-0.16, -0.06, 0, 0, 0, 0]),
            )
        else:
            rest.add(q_on - pr + 0.05, 0.022, 0.022, p_vec)
    if p.prwp:  # poor R-wave progression: little R in V1-V4
        qrs.add(
            0.0,
            0.0095,
            0.0095,
            leads(np.zeros(3), precordial=-a_r * np.array([0.1, 0.35, 0.55, 0.45, 0.0, 0.0])),
        )
    return qrs.template(), rest.template()


def _pvc_beat(leads: _Leads, rng, qt: float) -> np.ndarray:
    v = _unit([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)])
    a = rng.uniform(1.4, 2.2)
    b = _Beat()
    b.add(-0.025, 0.015, 0.018, leads(0.8 * a * v))
    b.add(0.02, 0.02, 0.022, leads(0.75 * a * _unit(v + rng.normal(0, 0.4, 3))))
    b.add(qt - 0.15, 0.06, 0.045, leads(-0.35 * a * v))
    return b.template()


def _beat_times(p: Patient, rng) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times (s) over the strip and each beat's kind (0 conducted, 1 PVC, 2 PAC)."""
    rr0 = 60.0 / p.heart_rate
    n = int(SECONDS / rr0) + 4
    k = np.arange(n)
    if p.rhythm == "atrial_fibrillation":
        cv = rng.uniform(0.16, 0.28)
        rr = rr0 * rng.gamma(1 / cv**2, cv**2, n)
        rr = np.clip(rr, 0.33, 2.2)
    elif p.rhythm == "paced":
        rr = np.full(n, rr0)
    else:  # respiratory sinus arrhythmia (marked when p.sinus_arrhythmia)
        f = rng.uniform(0.15, 0.3)
        depth = rng.uniform(0.07, 0.11) if p.sinus_arrhythmia else rng.uniform(0.01, 0.035)
        rr = rr0 * (1 + depth * np.sin(2 * np.pi * f * k * rr0 + rng.uniform(0, 6.3)))
        rr *= 1 + 0.006 * rng.standard_normal(n)
    t = rng.uniform(-rr0, 0) + np.concatenate([[0.0], np.cumsum(rr)[:-1]])
    kind = np.zeros(n, dtype=int)
    if p.pvc or p.pac:
        pool = np.flatnonzero((t > 0.6) & (t < SECONDS - 1.5))[:-1][::2]
        picks = rng.choice(pool, size=min(p.pvc + p.pac, len(pool)), replace=False)
        ectopic = [(int(j), 1 if i < p.pvc else 2) for i, j in enumerate(picks)]
        for j, e in sorted(ectopic, reverse=True):  # from the end, so earlier indices stay valid
            if e == 1:  # PVC at 55-65 % of the cycle; the next sinus beat is blocked (compensatory pause)
                tp = t[j] + rng.uniform(0.55, 0.65) * rr[j]
                t = np.concatenate([t[: j + 1], [tp], t[j + 2 :]])
                kind = np.concatenate([kind[: j + 1], [1], kind[j + 2 :]])
            else:  # PAC at 65-75 %; the sinus node resets (non-compensatory pause)
                tp = t[j] + rng.uniform(0.65, 0.75) * rr[j]
                t = np.concatenate([t[: j + 1], [tp], t[j + 1 :] + (tp + rr[j] - t[j + 1])])
                kind = np.concatenate([kind[: j + 1], [2], kind[j + 1 :]])
    sel = t < SECONDS + _PRE
    return t[sel], kind[sel]


def _shape_params(p: Patient, rng) -> dict:
    a_r = rng.uniform(1.1, 1.7)
    if p.lvh:
        a_r *= rng.uniform(1.9, 2.3)
    return {
        "a_r": a_r,
        "zr": rng.uniform(0.15, 0.35),
        "a_q": rng.uniform(0.12, 0.25),
        "a_s": rng.uniform(0.35, 0.6) * (1.8 if p.lvh else 1.0),
        "a_rp": rng.uniform(0.6, 0.9),
        "a_t": rng.uniform(0.28, 0.45) * (rng.uniform(0.2, 0.3) if p.flat_t else 1.0),
        "t_axis": p.axis_deg * 0.3 + rng.uniform(25, 45),
        "t_w": rng.uniform(0.038, 0.048),
        "a_p": rng.uniform(0.12, 0.2),
        "p_axis": rng.uniform(40, 70),
        "a_ste": rng.uniform(0.32, 0.5),
        "a_twi": rng.uniform(0.55, 0.75),
        "a_qw": rng.uniform(0.45, 0.7),
    }


_MAX_QRS_MV = 4.5  # no lead's QRS peak is scaled beyond this (tall LVH voltages stay physiological)


def _qrs_scale(p: Patient, qrs_t: np.ndarray) -> float:
    """Factor on the QRS part that keeps the voltage criteria of the labels clear of their thresholds."""
    if p.low_voltage:  # every limb lead < 0.5 mV peak-to-peak
        limb = np.ptp(qrs_t[:6], axis=1).max()
        return min(1.0, 0.38 / limb) if limb > 0 else 1.0
    sokolow = -qrs_t[6].min() + max(qrs_t[10].max(), qrs_t[11].max())  # S V1 + R V5/V6
    if p.lvh:  # capped: with a far-rotated axis the chest-lead voltage can be small, and an uncapped
        # factor (4 / small) drew limb leads of 30+ mV, beyond any real ECG and the 16-bit record's range
        peak = np.abs(qrs_t).max()
        cap = _MAX_QRS_MV / peak if peak > 0 else 1.0
        return max(1.0, min(4.0 / sokolow if sokolow > 0 else 1.0, cap))
    if p.rhythm != "paced" and p.bbb == "none":
        return min(1.0, 3.0 / sokolow)
    return 1.0


def render_ecg(p: Patient, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Draw the 12-lead ECG of patient ``p``.

    Returns:
        ``(signal, measurements)``: ``signal`` float32 ``(12, 5000)`` in mV (canonical lead order, 500 Hz,
        10 s); ``measurements`` with the rate, PR, QRS, QT, QTc and frontal QRS axis as an ECG machine
        would print them (what the report may quote).
    """
    leads = _Leads(rng)
    shape = _shape_params(p, rng)
    times, kind = _beat_times(p, rng)
    inside = times[(times >= 0) & (times < SECONDS)]
    rr_mean = float(np.mean(np.diff(inside))) if len(inside) > 1 else 60.0 / p.heart_rate
    rate = int(round(60.0 / rr_mean))
    qt = p.qtc_ms / 1000 * np.sqrt(60.0 / p.heart_rate)
    rot = _axis_rotation(p, leads, qt, shape)
    qrs_t, rest_t = _conducted_beat(p, leads, qt, shape, rot)
    scale = _qrs_scale(p, qrs_t)
    qrs_t *= scale
    kinds = [qrs_t + rest_t, _pvc_beat(leads, rng, qt) if (kind == 1).any() else None, None]
    if (kind == 2).any():  # ectopic atrial focus: a low-atrial P (negative in II, III, aVF), short PR
        ectopic = dict(shape, p_axis=rng.uniform(-90, -50), pr_ms=rng.uniform(110, 140))
        pac_q, pac_rest = _conducted_beat(p, leads, qt, ectopic, rot)
        kinds[2] = pac_q * scale + pac_rest
    w = len(_TW)
    sig = np.zeros((12, N_SAMPLES + 2 * w))  # padded: sample s lives at index s + w
    for t, k in zip(times, kind):
        a = int(round(t * FS)) - int(_PRE * FS) + w  # index of the template's first sample
        if 0 <= a <= N_SAMPLES + w:
            sig[:, a : a + w] += kinds[k]
    sig = sig[:, w : w + N_SAMPLES]
    if p.rhythm == "paced":  # pacing spikes: one sample before each paced QRS
        spike = leads(rng.uniform(0.8, 1.6) * _unit([rng.uniform(-1, 1), 1.0, rng.uniform(-1, 1)]))
        idx = np.round((times - 0.045) * FS).astype(int)
        idx = idx[(idx >= 0) & (idx < N_SAMPLES)]
        sig[:, idx] += spike[:, None]
    electrodes = _electrode_noise(p, rng, shape)
    sig += _MIX @ electrodes
    axis = _frontal_axis(qrs_t)
    meas = {
        "rate": rate,
        "pr": int(round(p.pr_ms)) if p.pr_ms > 0 else None,
        "qrs": int(round(p.qrs_ms)),
        "qt": int(round(qt * 1000)),
        "qtc": int(round(p.qtc_ms)),
        "axis": int(round(axis)),
    }
    return sig.astype(np.float32), meas


def _frontal_net(qrs_t: np.ndarray) -> np.ndarray:
    """Net frontal QRS vector (x, y) of a template (12, W), from the areas of leads I and aVF."""
    area = qrs_t.sum(axis=1)
    return np.array([area[0], area[5] / 0.866])


def _frontal_axis(qrs_t: np.ndarray) -> float:
    """Frontal QRS axis in degrees (the direction of the net QRS vector)."""
    x, y = _frontal_net(qrs_t)
    return float(np.degrees(np.arctan2(y, x)))


def _axis_rotation(p: Patient, leads: _Leads, qt: float, shape: dict) -> float:
    """Rotation (degrees) of the main QRS forces that puts the net frontal axis on ``p.axis_deg``.

    The net vector is ``o + R(rot) m`` (``m``: the rotatable main forces, ``o``: the rest, e.g. an R' or
    Q waves); two builds give ``m`` and ``o``, then the rotation follows in closed form.
    """
    n0 = _frontal_net(_conducted_beat(p, leads, qt, shape, 0.0)[0])
    n90 = _frontal_net(_conducted_beat(p, leads, qt, shape, 90.0)[0])
    d = n0 - n90  # = (I - R90) m, with I - R90 = [[1, 1], [-1, 1]]
    m = np.linalg.solve(np.array([[1.0, 1.0], [-1.0, 1.0]]), d)
    o = n0 - m
    u = _frontal(p.axis_deg)[:2]
    uo = float(u @ o)
    disc = uo**2 - float(o @ o) + float(m @ m)
    if disc < 0:  # the other forces are too strong to reach the target exactly: get as close as possible
        disc = 0.0
    v = (uo + np.sqrt(disc)) * u - o  # the rotated main forces
    return float(np.degrees(np.arctan2(v[1], v[0]) - np.arctan2(m[1], m[0])))


def _electrode_noise(p: Patient, rng, shape) -> np.ndarray:
    """(9, T) potentials at RA, LA, LL, V1..V6: baseline wander, broadband noise, mains hum, f waves."""
    t = np.arange(N_SAMPLES) / FS
    f = rng.uniform(0.05, 0.45, (9, 2))
    amp = rng.uniform(0.0, 0.12, (9, 2))
    ph = rng.uniform(0, 2 * np.pi, (9, 2))
    e = (amp[:, :, None] * np.sin(2 * np.pi * f[:, :, None] * t + ph[:, :, None])).sum(1)
    e += rng.uniform(0.005, 0.015) * rng.standard_normal((9, N_SAMPLES))
    mains = 50.0 if rng.random() < 0.5 else 60.0
    e += rng.uniform(0, 0.015, (9, 1)) * np.sin(2 * np.pi * mains * t + rng.uniform(0, 6.3))
    if p.rhythm == "atrial_fibrillation":  # fibrillatory waves, 5-8 Hz, best seen in V1 and inferior leads
        fw = np.sin(2 * np.pi * rng.uniform(5, 8) * t + 1.5 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t))
        fw *= rng.uniform(0.08, 0.15)  # coarse fibrillatory waves
        # as a dipole mostly inferior-anterior, expressed at the electrodes (LL and V1 carry it)
        e[2] += fw
        e[3] += 0.8 * fw
    return e
