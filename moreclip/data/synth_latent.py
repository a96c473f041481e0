"""The latent truth of a synthetic patient: correlated conditions and visible attributes, drawn per patient.

A :class:`Patient` is drawn first (:func:`sample_patient`); the radiograph, the ECG and both reports are then
rendered *from* it, so every label is a fact about what was drawn. Correlations come from four hidden risk
factors (age, heart failure, hypertension, coronary disease, critical illness), for example: heart failure
raises the odds of cardiomegaly, edema, effusion, atrial fibrillation and tachycardia; hypertension of LVH;
coronary disease of ST elevation, old infarct and sternotomy; critical illness of tubes, lines, the portable
AP view and pneumothorax. Clinical exclusions are kept: atrial fibrillation has no P waves and no AV block;
a paced rhythm always has a pacemaker on the radiograph and no bundle branch block, LVH or ST statements;
LBBB excludes LVH and ST elevation; low voltage excludes LVH.

Every patient is seeded from ``(seed, index)`` with :class:`numpy.random.SeedSequence`, one child stream
per purpose (:data:`STREAMS`), so a patient never depends on how many others are drawn or in what order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

#: child seed streams of one patient: latent truth, ECG noise/morphology, X-ray drawing, report wording
STREAMS = {"latent": 0, "ecg": 1, "xray": 2, "xray_report": 3, "ecg_report": 4}

RHYTHMS = ("sinus", "sinus_tachycardia", "sinus_bradycardia", "atrial_fibrillation", "paced")
TERRITORIES = ("anterior", "inferior", "lateral")
GRANULOMA_SITES = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "lingula",
    "left lower lobe",
)
LINES = ("right_ij", "left_ij", "right_picc", "left_picc")
LINE_TIPS = ("svc", "cavoatrial", "right_atrium")


@dataclass
class Patient:
    """Latent truth of one synthetic patient (defaults: a healthy adult with a normal ECG and radiograph).

    Angles in degrees, durations in ms, distances in cm. Sides are the patient's (``left`` is drawn on
    the viewer's right, as radiographs are displayed).
    """

    age: int = 50
    sex: str = "F"  # F / M (not drawn or reported)
    # ---- radiograph
    view: str = "PA"  # PA / AP (portable AP carries an "AP PORTABLE" marker)
    ctr: float = 0.44  # cardiothoracic ratio drawn (heart width / inner thoracic width)
    effusion_side: str = "none"  # none / left / right / bilateral
    effusion_size: str = "none"  # none / small / moderate / large
    edema: int = 0  # 0 none, 1 mild (vascular congestion), 2 moderate (interstitial), 3 severe (alveolar)
    pneumothorax_side: str = "none"  # none / left / right
    pneumothorax_size: str = "none"  # none / small / large
    atelectasis_side: str = "none"  # basal plate-like atelectasis: none / left / right / bilateral
    lung_volumes: str = "normal"  # normal / low / hyperinflated
    device: str = "none"  # none / pacemaker / icd (generator in the chest wall with transvenous leads)
    device_side: str = "none"  # none / left / right
    device_leads: int = 0  # 1 (right ventricle) or 2 (right atrium + right ventricle)
    sternotomy: bool = False  # median sternotomy wires
    cabg_clips: bool = False  # mediastinal surgical clips (bypass grafts)
    line: str = "none"  # none / right_ij / left_ij / right_picc / left_picc
    line_tip: str = "none"  # none / svc / cavoatrial / right_atrium
    ett_cm: float = 0.0  # endotracheal tube tip above the carina in cm (0: no tube)
    ngt: bool = False  # enteric (nasogastric) tube into the stomach
    abdominal_clips: bool = False  # cholecystectomy clips in the right upper quadrant
    granuloma: str = "none"  # none / one of GRANULOMA_SITES (calcified granuloma)
    aortic_calcification: bool = False
    scoliosis: str = "none"  # none / dextroconvex / levoconvex
    elevated_hemidiaphragm: str = "none"  # none / left / right
    nodule: str = "none"  # none / one of GRANULOMA_SITES (non-calcified pulmonary nodule)
    nodule_mm: int = 0  # nodule diameter in mm
    rib_fracture: str = "none"  # healed lateral rib fracture (callus): none / left / right
    spine_degeneration: bool = False  # degenerative changes (osteophytes) of the thoracic spine
    shoulder_arthroplasty: str = "none"  # none / left / right
    hiatal_hernia: bool = False  # retrocardiac air-containing hernia
    # ---- ECG
    rhythm: str = "sinus"  # one of RHYTHMS
    heart_rate: float = 72.0  # target mean ventricular rate (the rendered rate is measured and stored)
    pr_ms: float = 160.0  # P onset to QRS onset (0: no conducted P wave)
    qrs_ms: float = 92.0
    qtc_ms: float = 410.0  # Bazett-corrected QT
    axis_deg: float = 50.0  # frontal QRS axis
    av_block1: bool = False  # first-degree AV block (PR > 200 ms)
    bbb: str = "none"  # none / rbbb / lbbb
    pvc: int = 0  # premature ventricular complexes in the 10 s strip
    low_voltage: bool = False
    lvh: bool = False
    lvh_strain: bool = False  # LVH with lateral repolarisation abnormality
    ste_territory: str = "none"  # ST elevation: none / anterior / inferior / lateral
    twi_territory: str = "none"  # T-wave inversion: none / anterior / inferior / lateral
    q_territory: str = "none"  # pathological Q waves (old infarct): none / anterior / inferior / lateral
    pac: int = 0  # premature atrial complexes in the strip
    lae: bool = False  # left atrial enlargement (broad notched P in II, deep terminal P in V1)
    flat_t: bool = False  # nonspecific T-wave flattening
    prwp: bool = False  # poor R-wave progression (V1-V4)
    sinus_arrhythmia: bool = False  # marked respiratory variation of a sinus rhythm

    # ---- derived labels
    @property
    def cardiomegaly(self) -> bool:
        return self.ctr > 0.5

    @property
    def cardiomegaly_grade(self) -> int:
        """0 none, 1 mild (CTR <= 0.57), 2 moderate (<= 0.63), 3 severe."""
        return 0 if self.ctr <= 0.5 else 1 if self.ctr <= 0.57 else 2 if self.ctr <= 0.63 else 3

    @property
    def axis(self) -> str:
        """normal / left (< -30 degrees) / right (> 90 degrees); paced rhythms report none."""
        if self.rhythm == "paced":
            return "normal"
        return "left" if self.axis_deg < -30 else "right" if self.axis_deg > 90 else "normal"

    @property
    def long_qt(self) -> bool:
        return self.qtc_ms > 470

    def to_dict(self) -> dict:
        return asdict(self)


PATIENT_FIELDS = tuple(f.name for f in fields(Patient))


def patient_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """The generator of one purpose (:data:`STREAMS`) of patient ``index`` in the cohort of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), STREAMS[stream])))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw one patient's latent truth (risk factors -> conditions -> visible attributes)."""
    r = rng.random
    age = int(np.clip(round(rng.normal(62, 15)), 20, 95))
    a = (age - 60) / 10
    chf = r() < _sigmoid(-1.5 + 0.4 * a)  # heart failure (hidden)
    htn = r() < _sigmoid(-0.5 + 0.4 * a)  # hypertension (hidden)
    cad = r() < _sigmoid(-1.4 + 0.4 * a + 0.5 * htn)  # coronary disease (hidden)
    icu = r() < 0.16 + 0.14 * chf  # critically ill (hidden)
    p = Patient(age=age, sex="M" if r() < 0.5 else "F")

    # ---- radiograph: main findings
    if r() < 0.11 + 0.5 * chf + 0.12 * htn:
        p.ctr = float(_pick(rng, [rng.uniform(0.53, 0.57), rng.uniform(0.58, 0.63), rng.uniform(0.64, 0.72)],
                            [0.45, 0.35, 0.2]))  # fmt: skip
    else:
        p.ctr = float(rng.uniform(0.36, 0.47))
    if r() < (0.7 if chf else 0.07):
        p.edema = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25] if chf else [0.6, 0.3, 0.1]))
    if r() < 0.09 + 0.45 * chf + 0.12 * icu:
        p.effusion_side = _pick(
            rng, ["left", "right", "bilateral"], [0.25, 0.35, 0.4] if chf else [0.4, 0.4, 0.2]
        )
        p.effusion_size = _pick(rng, ["small", "moderate", "large"], [0.5, 0.35, 0.15])
    if r() < 0.07 + 0.22 * icu:
        sides = [s for s in ("left", "right") if p.effusion_side not in (s, "bilateral")]
        if sides:
            p.pneumothorax_side = _pick(rng, sides)
            p.pneumothorax_size = _pick(rng, ["small", "large"], [0.6, 0.4])
    # ---- radiograph: devices and incidental findings (drawn, then reported)
    p.view = "AP" if r() < (0.9 if icu else 0.12) else "PA"
    if r() < 0.14 + 0.25 * icu + 0.15 * (p.effusion_side != "none"):
        p.atelectasis_side = _pick(rng, ["left", "right", "bilateral"], [0.4, 0.3, 0.3])
    if r() < 0.13 + 0.2 * icu:
        p.lung_volumes = "low"
    elif r() < 0.1 + 0.05 * (age > 65):
        p.lung_volumes = "hyperinflated"
    pacer = r() < 0.02 + 0.05 * (age > 70) + 0.06 * chf
    if pacer:
        p.device = "icd" if r() < 0.3 + 0.3 * chf else "pacemaker"
        p.device_side = "left" if r() < 0.85 else "right"
        p.device_leads = 2 if r() < 0.65 else 1
    p.sternotomy = bool(r() < 0.03 + 0.3 * cad)
    p.cabg_clips = bool(p.sternotomy and r() < 0.6)
    if r() < 0.06 + 0.45 * icu:
        p.line = _pick(rng, LINES, [0.4, 0.15, 0.25, 0.2])
        p.line_tip = _pick(rng, LINE_TIPS, [0.55, 0.3, 0.15])
    if icu and r() < 0.45:
        p.ett_cm = float(np.round(rng.uniform(2.0, 7.0), 1))
    p.ngt = bool(r() < (0.8 if p.ett_cm else 0.04))
    p.abdominal_clips = bool(r() < 0.04 + 0.08 * (age > 55))
    if r() < 0.12:
        p.granuloma = _pick(rng, GRANULOMA_SITES)
    p.aortic_calcification = bool(r() < _sigmoid(-1.6 + 0.6 * a))
    if r() < 0.09:
        p.scoliosis = _pick(rng, ["dextroconvex", "levoconvex"])

    # ---- ECG: rhythm (exclusive, in this order)
    edema2 = p.edema >= 2
    if pacer and r() < 0.7:
        p.rhythm = "paced"
    elif r() < 0.04 + 0.22 * chf + 0.05 * (age > 75):
        p.rhythm = "atrial_fibrillation"
    elif r() < 0.08 + 0.3 * edema2 + 0.1 * icu + 0.15 * (p.pneumothorax_side != "none"):
        p.rhythm = "sinus_tachycardia"
    elif r() < 0.15 + 0.05 * (age > 70):
        p.rhythm = "sinus_bradycardia"
    p.heart_rate = float({
        "sinus": rng.uniform(62, 98),
        "sinus_tachycardia": rng.uniform(106, 145),
        "sinus_bradycardia": rng.uniform(42, 55),
        "atrial_fibrillation": rng.uniform(70, 135),
        "paced": _pick(rng, [60.0, 70.0, 72.0, 80.0]),
    }[p.rhythm])  # fmt: skip
    paced, af = p.rhythm == "paced", p.rhythm == "atrial_fibrillation"
    # conduction
    if not paced and r() < 0.12:
        p.bbb = "lbbb" if r() < 0.25 + 0.35 * (chf or p.cardiomegaly) else "rbbb"
    if not (paced or af) and r() < 0.06 + 0.06 * (age > 70):
        p.av_block1 = True
    # paced: a dual-chamber device tracks the sinus P wave; a single-lead device paces without P waves
    no_p = af or (paced and p.device_leads == 1)
    p.pr_ms = 0.0 if no_p else float(rng.uniform(225, 320) if p.av_block1 else rng.uniform(125, 190))
    p.qrs_ms = float(
        rng.uniform(150, 175) if paced else rng.uniform(132, 160) if p.bbb != "none" else rng.uniform(78, 104)
    )
    # axis
    u = r()
    if u < 0.12 + 0.1 * htn:
        p.axis_deg = float(rng.uniform(-75, -40))
    elif u > 0.93:
        p.axis_deg = float(rng.uniform(105, 150))
    else:
        p.axis_deg = float(rng.uniform(0, 80))
    if paced:
        p.axis_deg = float(rng.uniform(-80, -50))
    # voltage, hypertrophy, ischaemia
    structural = paced or p.bbb == "lbbb"
    if not structural and r() < 0.04 + 0.2 * (p.effusion_side != "none"):
        p.low_voltage = True
    if not (structural or p.low_voltage) and r() < 0.05 + 0.28 * htn + 0.15 * p.cardiomegaly:
        p.lvh = True
        p.lvh_strain = bool(r() < 0.45)
        if not -60 <= p.axis_deg <= 90:  # LVH with right or extreme left axis is atypical (and the chest-
            p.axis_deg = float(rng.uniform(-45, 60))  # lead voltage of the dipole model collapses there)
    if not structural and r() < 0.05 + 0.35 * cad:
        p.ste_territory = _pick(rng, TERRITORIES, [0.45, 0.35, 0.2])
    if not structural and r() < 0.04 + 0.25 * cad:
        p.q_territory = _pick(rng, TERRITORIES, [0.35, 0.45, 0.2])
    if not structural and not p.lvh_strain and r() < 0.11:
        options = [t for t in TERRITORIES if t != p.ste_territory]
        p.twi_territory = _pick(rng, options)
    if not paced and r() < 0.08 + 0.1 * chf:
        p.pvc = int(rng.integers(1, 4))
    p.qtc_ms = float(rng.uniform(480, 540) if r() < 0.08 + 0.06 * chf else rng.uniform(385, 450))
    _sample_extras(p, rng, chf=chf, htn=htn)
    return p


def _sample_extras(p: Patient, rng: np.random.Generator, *, chf: bool, htn: bool) -> None:
    """Further independent visible attributes that make most patients' reports distinguishable."""
    r = rng.random
    sides = [
        s for s in ("left", "right") if p.effusion_side not in (s, "bilateral") and p.pneumothorax_side != s
    ]
    if sides and r() < 0.1:
        p.elevated_hemidiaphragm = _pick(rng, sides)
    if r() < 0.09:
        p.nodule = _pick(rng, [g for g in GRANULOMA_SITES if g != p.granuloma])
        p.nodule_mm = int(rng.integers(8, 26))
    if r() < 0.08:
        p.rib_fracture = _pick(rng, ["left", "right"])
    p.spine_degeneration = bool(r() < _sigmoid(-1.2 + 0.5 * (p.age - 60) / 10))
    if p.age > 55 and r() < 0.06:
        p.shoulder_arthroplasty = _pick(rng, ["left", "right"])
    p.hiatal_hernia = bool(r() < 0.07)
    # ECG
    sinus = p.rhythm in ("sinus", "sinus_tachycardia", "sinus_bradycardia")
    if sinus and r() < 0.1:
        p.pac = int(rng.integers(1, 4))
    if p.pr_ms > 0 and r() < 0.06 + 0.1 * (chf or htn):
        p.lae = True
    structural = p.rhythm == "paced" or p.bbb == "lbbb"
    if not (structural or p.lvh_strain) and p.twi_territory == "none" and r() < 0.1:
        p.flat_t = True
    if not structural and p.bbb == "none" and p.q_territory != "anterior" and r() < 0.08:
        p.prwp = True
    if p.rhythm in ("sinus", "sinus_bradycardia") and r() < 0.12:
        p.sinus_arrhythmia = True


def sample_patients(n: int, seed: int, start: int = 0) -> list[Patient]:
    """Latent truth of patients ``start .. start + n - 1`` of the cohort of ``seed`` (no files written)."""
    return [sample_patient(patient_rng(seed, i, "latent")) for i in range(start, start + n)]
