"""Report text for synthetic patients: a radiology report and an ECG machine report, from varied phrasings.

The truth is drawn first and then described: a report reads only attributes that are visible in its own
modality (the radiograph's for :func:`xray_report`, the ECG's and its measurements for :func:`ecg_report`);
the report's random generator chooses only the wording (paraphrases, which normal findings are stated as
negations, hedges on small findings, sentence order within a section). Radiology reports have FINDINGS and
IMPRESSION sections; ECG reports are short machine statements in the style of MIMIC-IV-ECG, separated by
``". "``, with the ventricular rate and (often) the intervals the machine measured.
"""

from __future__ import annotations

import numpy as np

from moreclip.data.synth_latent import Patient

_SIDE_ADJ = {"left": "left", "right": "right", "bilateral": "bilateral"}
_LINE = {
    "right_ij": [
        "right internal jugular central venous catheter",
        "right IJ line",
        "right internal jugular line",
    ],
    "left_ij": [
        "left internal jugular central venous catheter",
        "left IJ line",
        "left internal jugular line",
    ],
    "right_picc": ["right PICC line", "right-sided PICC", "right upper extremity PICC"],
    "left_picc": ["left PICC line", "left-sided PICC", "left upper extremity PICC"],
}
_TIP = {
    "svc": ["the mid SVC", "the superior vena cava", "the mid superior vena cava"],
    "cavoatrial": ["the cavoatrial junction", "the junction of the SVC and right atrium"],
    "right_atrium": ["the right atrium", "the upper right atrium"],
}
_GRADE = {1: ["mild", "mildly"], 2: ["moderate", "moderately"], 3: ["severe", "severely"]}
_TERRITORY_LEADS = {"anterior": "V1-V4", "inferior": "II, III, aVF", "lateral": "I, aVL, V5-V6"}


def _c(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentences(items: list[str]) -> str:
    return " ".join(_cap(s.rstrip(".")) + "." for s in items if s)


# --------------------------------------------------------------------------------------------- X-ray
def _devices(p: Patient, rng) -> list[str]:
    out = []
    if p.device != "none":
        kind = (
            _c(rng, ["pacemaker", "pacer", "pacemaker device"])
            if p.device == "pacemaker"
            else _c(rng, ["ICD", "AICD", "defibrillator", "pacer-defibrillator"])
        )
        leads = (
            _c(rng, ["leads in the right atrium and right ventricle", "leads terminating in the RA and RV",
                     "atrial and ventricular leads in standard position"])
            if p.device_leads == 2
            else _c(rng, ["a single lead in the right ventricle", "its lead terminating in the RV",
                          "a single ventricular lead"])
        )  # fmt: skip
        side = p.device_side
        out.append(_c(rng, [f"{side}-sided {kind} with {leads}", f"{side} chest wall {kind} with {leads}",
                            f"a {kind} projects over the {side} chest with {leads}"]))  # fmt: skip
    if p.sternotomy:
        s = _c(rng, ["median sternotomy wires", "intact median sternotomy wires", "sternotomy wires"])
        if p.cabg_clips:
            s += _c(
                rng,
                [
                    " and mediastinal surgical clips",
                    " and CABG clips",
                    " and clips from prior bypass surgery",
                ],
            )
        out.append(s + _c(rng, ["", " are present", " are noted"]))
    if p.line != "none":
        line, tip = _c(rng, _LINE[p.line]), _c(rng, _TIP[p.line_tip])
        out.append(_c(rng, [f"{line} terminates in {tip}", f"{line} with tip in {tip}",
                            f"the {line} ends at {tip}"]))  # fmt: skip
    if p.ett_cm:
        cm = f"{p.ett_cm:.1f}"
        s = _c(rng, [f"endotracheal tube terminates {cm} cm above the carina",
                     f"ET tube tip is {cm} cm above the carina", f"endotracheal tube {cm} cm above the carina"])  # fmt: skip
        if p.ett_cm < 3.0:
            s += _c(rng, [", could be withdrawn 1-2 cm", ", slightly low", ", low-lying"])
        out.append(s)
    if p.ngt:
        out.append(_c(rng, ["enteric tube courses below the diaphragm into the stomach",
                            "nasogastric tube terminates in the stomach", "NG tube tip in the stomach"]))  # fmt: skip
    return out


def _heart(p: Patient, rng) -> str:
    g = p.cardiomegaly_grade
    if g == 0:
        return _c(rng, ["heart size is normal", "the cardiac silhouette is within normal limits",
                        "normal heart size", "no cardiomegaly"])  # fmt: skip
    adj, adv = _GRADE[g]
    s = _c(rng, [f"{adj} cardiomegaly", f"the heart is {adv} enlarged", f"{adv} enlarged cardiac silhouette",
                 f"{adj} enlargement of the cardiac silhouette"])  # fmt: skip
    if g == 1 and rng.random() < 0.15:  # hedged
        s = _c(rng, ["probable mild cardiomegaly", "heart size is top normal to mildly enlarged"])
    return s


def _effusion(p: Patient, rng) -> str:
    side, size = p.effusion_side, p.effusion_size
    if side == "bilateral":
        s = _c(rng, [f"{size} bilateral pleural effusions", f"bilateral {size} pleural effusions",
                     f"{size} pleural effusions on both sides"])  # fmt: skip
    else:
        s = _c(rng, [f"{size} {side} pleural effusion", f"there is a {size} {side} pleural effusion",
                     f"{side} pleural effusion, {size}", f"{size} {side}-sided pleural effusion"])  # fmt: skip
        if size == "small" and rng.random() < 0.3:
            s = _c(rng, [f"blunting of the {side} costophrenic angle, consistent with a small effusion",
                         f"possible small {side} pleural effusion"])  # fmt: skip
    return s


def _pneumothorax(p: Patient, rng) -> str:
    side, size = p.pneumothorax_side, p.pneumothorax_size
    s = _c(rng, [f"{size} {side} pneumothorax", f"there is a {size} {side}-sided pneumothorax",
                 f"{side} pneumothorax, {size}"])  # fmt: skip
    if size == "small" and rng.random() < 0.3:
        s = f"a visceral pleural line at the {side} apex, consistent with a small pneumothorax"
    return s


def _edema(p: Patient, rng) -> str:
    return _c(rng, {
        0: ["no pulmonary edema", "no pulmonary vascular congestion", "no edema"],
        1: ["mild pulmonary edema", "mild interstitial edema", "vascular congestion with mild pulmonary edema"],
        2: ["moderate pulmonary edema", "moderate interstitial pulmonary edema with perihilar haziness",
            "moderate edema"],
        3: ["severe pulmonary edema", "extensive perihilar airspace opacities consistent with severe pulmonary edema",
            "severe alveolar pulmonary edema"],
    }[p.edema])  # fmt: skip


def xray_report(p: Patient, rng: np.random.Generator) -> str:
    """The radiology report (FINDINGS, IMPRESSION) of patient ``p``'s radiograph."""
    f: list[str] = []
    if p.view == "AP":
        f.append(
            _c(
                rng,
                ["portable AP view", "portable AP chest radiograph", "AP portable view"],
            )
        )
    elif rng.random() < 0.3:
        f.append(_c(rng, ["PA view", "PA view of the chest"]))
    f += _devices(p, rng)
    if p.lung_volumes == "low":
        f.append(
            _c(
                rng,
                [
                    "low lung volumes",
                    "lung volumes are low",
                    "low lung volumes with crowding of the bronchovasculature",
                ],
            )
        )
    elif p.lung_volumes == "hyperinflated":
        f.append(_c(rng, ["the lungs are hyperinflated with flattened diaphragms", "hyperinflated lungs",
                          "hyperinflation, possibly emphysema"]))  # fmt: skip
    f.append(_heart(p, rng))
    if p.aortic_calcification:
        f.append(_c(rng, ["atherosclerotic calcification of the aortic knob", "calcified aortic knob",
                          "aortic arch calcifications"]))  # fmt: skip
    elif rng.random() < 0.15:
        f.append("mediastinal contours are normal")
    if p.hiatal_hernia:
        f.append(_c(rng, ["hiatal hernia", "retrocardiac air-fluid level, consistent with a hiatal hernia",
                          "moderate hiatal hernia"]))  # fmt: skip
    if p.elevated_hemidiaphragm != "none":
        side = p.elevated_hemidiaphragm
        f.append(_c(rng, [f"elevated {side} hemidiaphragm", f"the {side} hemidiaphragm is elevated",
                          f"relative elevation of the {side} hemidiaphragm"]))  # fmt: skip
    if p.edema or rng.random() < 0.25:
        f.append(_edema(p, rng))
    if p.atelectasis_side != "none":
        where = {"left": "left basilar", "right": "right basilar", "bilateral": "bibasilar"}[
            p.atelectasis_side
        ]
        f.append(_c(rng, [f"{where} atelectasis", f"{where} plate-like atelectasis",
                          f"linear {where} opacity, likely atelectasis"]))  # fmt: skip
    if p.granuloma != "none":
        f.append(_c(rng, [f"calcified granuloma in the {p.granuloma}", f"{p.granuloma} calcified granuloma",
                          f"small calcified nodule in the {p.granuloma}, consistent with a granuloma"]))  # fmt: skip
    if p.nodule != "none":
        mm, lobe = p.nodule_mm, p.nodule
        f.append(_c(rng, [f"{mm} mm nodule in the {lobe}", f"{mm} mm nodular opacity projects over the {lobe}",
                          f"{lobe} pulmonary nodule measuring {mm} mm"]))  # fmt: skip
    eff, ptx = p.effusion_side != "none", p.pneumothorax_side != "none"
    if eff:
        f.append(_effusion(p, rng))
    if ptx:
        f.append(_pneumothorax(p, rng))
    if not eff and not ptx:
        f.append(_c(rng, ["no pleural effusion or pneumothorax", "no effusion or pneumothorax",
                          "no pleural effusion. No pneumothorax"]))  # fmt: skip
    elif not eff:
        f.append(_c(rng, ["no pleural effusion", "no effusion"]))
    elif not ptx:
        f.append("no pneumothorax")
    if p.scoliosis != "none":
        f.append(
            _c(
                rng,
                [f"{p.scoliosis} scoliosis of the thoracic spine", f"mild {p.scoliosis} thoracic scoliosis"],
            )
        )
    if p.spine_degeneration:
        f.append(_c(rng, ["degenerative changes of the thoracic spine", "mild thoracic spondylosis",
                          "multilevel degenerative changes in the thoracic spine"]))  # fmt: skip
    if p.rib_fracture != "none":
        side = p.rib_fracture
        f.append(_c(rng, [f"healed {side} rib fracture", f"old healed fracture of a {side} lateral rib",
                          f"callus about a {side} lateral rib, consistent with a healed fracture"]))  # fmt: skip
    if p.shoulder_arthroplasty != "none":
        side = p.shoulder_arthroplasty
        f.append(_c(rng, [f"{side} shoulder arthroplasty", f"partially imaged {side} shoulder prosthesis",
                          f"postsurgical changes of a {side} shoulder arthroplasty"]))  # fmt: skip
    if p.abdominal_clips:
        f.append(_c(rng, ["cholecystectomy clips in the right upper quadrant",
                          "surgical clips project over the right upper quadrant"]))  # fmt: skip
    return f"FINDINGS: {_sentences(f)}\nIMPRESSION: {_sentences(_impression(p, rng))}"


def _impression(p: Patient, rng) -> list[str]:
    imp = []
    if p.pneumothorax_side != "none":
        imp.append(_c(rng, [f"{p.pneumothorax_size} {p.pneumothorax_side} pneumothorax",
                            f"{p.pneumothorax_side} pneumothorax, {p.pneumothorax_size}"]))  # fmt: skip
    if p.edema:
        imp.append(_edema(p, rng))
    if p.effusion_side != "none":
        side = "bilateral" if p.effusion_side == "bilateral" else p.effusion_side
        imp.append(f"{p.effusion_size} {side} pleural effusion{'s' if side == 'bilateral' else ''}")
    if p.cardiomegaly:
        imp.append(_c(rng, [f"{_GRADE[p.cardiomegaly_grade][0]} cardiomegaly", "cardiomegaly"]))
    if p.edema >= 2 and p.cardiomegaly and rng.random() < 0.5:
        imp.append(_c(rng, ["findings consistent with congestive heart failure", "likely fluid overload"]))
    if p.nodule != "none" and rng.random() < 0.5:
        imp.append(f"{p.nodule_mm} mm {p.nodule} nodule, recommend chest CT")
    if p.ett_cm and rng.random() < 0.5:
        imp.append(f"endotracheal tube {p.ett_cm:.1f} cm above the carina")
    if not imp:
        imp.append(_c(rng, ["no acute cardiopulmonary process", "no acute intrathoracic abnormality",
                            "no acute cardiopulmonary abnormality"]))  # fmt: skip
    return imp


# ----------------------------------------------------------------------------------------------- ECG
def _rhythm(p: Patient, meas: dict, rng) -> str:
    rate = meas["rate"]
    if p.rhythm == "sinus":
        if p.sinus_arrhythmia:
            return _c(rng, ["sinus arrhythmia", "sinus rhythm with marked sinus arrhythmia"])
        return _c(rng, ["sinus rhythm", "normal sinus rhythm"])
    if p.rhythm == "sinus_tachycardia":
        return "sinus tachycardia"
    if p.rhythm == "sinus_bradycardia":
        s = "marked sinus bradycardia" if rate < 50 and rng.random() < 0.5 else "sinus bradycardia"
        return s + (" with sinus arrhythmia" if p.sinus_arrhythmia else "")
    if p.rhythm == "atrial_fibrillation":
        if rate > 100:
            return _c(
                rng, ["atrial fibrillation with rapid ventricular response", "atrial fibrillation with RVR"]
            )
        return _c(rng, ["atrial fibrillation", "atrial fibrillation with controlled ventricular response"])
    if p.pr_ms > 0:
        return _c(
            rng,
            [
                "atrial-sensed ventricular-paced rhythm",
                "AV dual-paced rhythm",
                "atrial-tracked ventricular pacing",
            ],
        )
    return _c(rng, ["ventricular-paced rhythm", "electronic ventricular pacemaker", "ventricular pacing"])


def ecg_report(p: Patient, meas: dict, rng: np.random.Generator) -> str:
    """The ECG machine report of patient ``p`` (statements; ``meas`` from :func:`~synth_ecg.render_ecg`)."""
    s = [_rhythm(p, meas, rng)]
    if p.pvc:
        s[0] += (
            _c(rng, [" with PVCs", " with occasional premature ventricular complexes"]) if p.pvc > 1 else ""
        )
        if p.pvc == 1:
            s.append(_c(rng, ["ventricular premature complex", "single PVC"]))
    if p.pac:
        s.append(_c(rng, ["atrial premature complexes", "premature atrial complexes", "PACs"]))
    if p.lae:
        s.append(_c(rng, ["left atrial enlargement", "possible left atrial enlargement", "LAE"]))
    if p.av_block1:
        s.append(_c(rng, ["1st degree A-V block", "first degree AV block", "prolonged PR interval"]))
    if p.axis != "normal":
        s.append(_c(rng, [f"{p.axis} axis deviation", f"{p.axis}ward axis"]))
    if p.bbb != "none":
        side = "right" if p.bbb == "rbbb" else "left"
        s.append(
            _c(rng, [f"{side} bundle branch block", f"complete {side} bundle branch block", p.bbb.upper()])
        )
    if p.low_voltage:
        s.append(_c(rng, ["low QRS voltages in limb leads", "low voltage QRS", "low QRS voltage"]))
    if p.lvh:
        if p.lvh_strain:
            s.append(_c(rng, ["left ventricular hypertrophy with repolarization abnormality",
                              "LVH with secondary repolarization abnormality"]))  # fmt: skip
        else:
            s.append(
                _c(
                    rng,
                    [
                        "left ventricular hypertrophy",
                        "LVH by voltage criteria",
                        "possible left ventricular hypertrophy",
                    ],
                )
            )
    if p.q_territory != "none":
        t = p.q_territory
        s.append(_c(rng, [f"{t} infarct, age undetermined", f"possible {t} infarct - age undetermined",
                          f"Q waves in {_TERRITORY_LEADS[t]}, consistent with old {t} infarct"]))  # fmt: skip
    if p.ste_territory != "none":
        t = p.ste_territory
        s.append(_c(rng, [f"{t} ST elevation", f"ST elevation in {_TERRITORY_LEADS[t]}, consider {t} injury",
                          f"ST elevation, consider {t} injury or acute infarct"]))  # fmt: skip
        if rng.random() < 0.3:
            s.append("acute MI / STEMI")
    if p.twi_territory != "none":
        t = p.twi_territory
        s.append(_c(rng, [f"T wave inversion in {t} leads", f"{t} T wave abnormality, consider ischemia",
                          f"inverted T waves in {_TERRITORY_LEADS[t]}"]))  # fmt: skip
    if p.flat_t:
        s.append(
            _c(
                rng,
                ["nonspecific T wave abnormality", "low amplitude T waves", "nonspecific T wave flattening"],
            )
        )
    if p.prwp:
        s.append(_c(rng, ["poor R wave progression", "poor R wave progression - may be normal variant"]))
    if p.long_qt:
        s.append(_c(rng, ["prolonged QT interval", "long QTc interval", "prolonged QT"]))
    s.append(_summary(p))
    rate = _c(
        rng,
        [
            f"Vent. rate {meas['rate']} bpm",
            f"ventricular rate {meas['rate']}",
            f"heart rate {meas['rate']} bpm",
        ],
    )
    if rng.random() < 0.5:
        s.insert(0, rate)
    else:
        s.append(rate)
    if rng.random() < 0.5:
        pr = f"PR {meas['pr']} ms, " if meas["pr"] else ""
        s.append(f"{pr}QRS {meas['qrs']} ms, QT/QTc {meas['qt']}/{meas['qtc']} ms, axis {meas['axis']}")
    return _sentences(s)


def _summary(p: Patient) -> str:
    major = (
        p.rhythm in ("sinus_tachycardia", "atrial_fibrillation", "paced") or p.bbb != "none" or p.lvh or p.pvc
        or p.ste_territory != "none" or p.twi_territory != "none" or p.q_territory != "none" or p.long_qt
    )  # fmt: skip
    minor = (
        p.rhythm == "sinus_bradycardia" or p.av_block1 or p.axis != "normal" or p.low_voltage or p.pac or p.lae
        or p.flat_t or p.prwp
    )  # fmt: skip
    return "abnormal ECG" if major else "borderline ECG" if minor else "normal ECG"
