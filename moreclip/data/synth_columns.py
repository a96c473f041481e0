"""The synthetic cohort's manifest columns: ``synthetic/<name>`` labels and ``synth_*`` metadata.

:data:`LABELS` and :data:`COLUMNS` are the reference for both (docs/data.md and the
:mod:`moreclip.data.synthetic` docstring repeat them); :func:`patient_row` fills them for one patient.
"""

from __future__ import annotations

#: label column (without the ``synthetic/`` prefix) -> (function of a Patient, description)
LABELS = {
    # radiograph
    "cardiomegaly": (lambda p: p.cardiomegaly, "cardiothoracic ratio > 0.5 (X-ray)"),
    "pleural_effusion": (lambda p: p.effusion_side != "none", "pleural effusion, any side or size (X-ray)"),
    "edema": (lambda p: p.edema, "pulmonary edema severity 0-3: none, mild, moderate, severe (X-ray)"),
    "edema_any": (lambda p: p.edema > 0, "pulmonary edema of any severity (X-ray)"),
    "pneumothorax": (lambda p: p.pneumothorax_side != "none", "pneumothorax, any side or size (X-ray)"),
    "atelectasis": (lambda p: p.atelectasis_side != "none", "basal plate-like atelectasis (X-ray)"),
    "pacemaker": (lambda p: p.device != "none", "pacemaker or ICD generator with leads (X-ray)"),
    "sternotomy": (lambda p: p.sternotomy, "median sternotomy wires (X-ray)"),
    "central_line": (lambda p: p.line != "none", "central venous catheter or PICC (X-ray)"),
    "endotracheal_tube": (lambda p: p.ett_cm > 0, "endotracheal tube (X-ray)"),
    "enteric_tube": (lambda p: p.ngt, "nasogastric / enteric tube (X-ray)"),
    "granuloma": (lambda p: p.granuloma != "none", "calcified granuloma (X-ray)"),
    "low_lung_volumes": (lambda p: p.lung_volumes == "low", "low lung volumes (X-ray)"),
    "hyperinflation": (lambda p: p.lung_volumes == "hyperinflated", "hyperinflated lungs (X-ray)"),
    "aortic_calcification": (lambda p: p.aortic_calcification, "calcified aortic knob (X-ray)"),
    "scoliosis": (lambda p: p.scoliosis != "none", "thoracic scoliosis (X-ray)"),
    "elevated_hemidiaphragm": (
        lambda p: p.elevated_hemidiaphragm != "none",
        "elevated hemidiaphragm (X-ray)",
    ),
    "nodule": (lambda p: p.nodule != "none", "non-calcified pulmonary nodule, 8-25 mm (X-ray)"),
    "rib_fracture": (lambda p: p.rib_fracture != "none", "healed lateral rib fracture (X-ray)"),
    "spine_degeneration": (lambda p: p.spine_degeneration, "degenerative thoracic spine (X-ray)"),
    "shoulder_arthroplasty": (lambda p: p.shoulder_arthroplasty != "none", "shoulder prosthesis (X-ray)"),
    "hiatal_hernia": (lambda p: p.hiatal_hernia, "retrocardiac hiatal hernia (X-ray)"),
    # ECG
    "sinus_rhythm": (lambda p: p.rhythm == "sinus", "sinus rhythm at 60-100 bpm (ECG)"),
    "sinus_tachycardia": (lambda p: p.rhythm == "sinus_tachycardia", "sinus rhythm > 100 bpm (ECG)"),
    "sinus_bradycardia": (lambda p: p.rhythm == "sinus_bradycardia", "sinus rhythm < 60 bpm (ECG)"),
    "atrial_fibrillation": (lambda p: p.rhythm == "atrial_fibrillation", "irregular RR, no P waves (ECG)"),
    "paced_rhythm": (lambda p: p.rhythm == "paced", "ventricular paced rhythm (ECG)"),
    "lvh": (lambda p: p.lvh, "left ventricular hypertrophy: S V1 + R V5/V6 >= 4 mV (ECG)"),
    "st_elevation": (lambda p: p.ste_territory != "none", "ST elevation in one territory (ECG)"),
    "first_degree_av_block": (lambda p: p.av_block1, "PR interval > 200 ms (ECG)"),
    "rbbb": (lambda p: p.bbb == "rbbb", "right bundle branch block (ECG)"),
    "lbbb": (lambda p: p.bbb == "lbbb", "left bundle branch block (ECG)"),
    "pvc": (lambda p: p.pvc > 0, "premature ventricular complexes (ECG)"),
    "left_axis_deviation": (lambda p: p.axis == "left", "frontal QRS axis < -30 degrees (ECG)"),
    "right_axis_deviation": (lambda p: p.axis == "right", "frontal QRS axis > 90 degrees (ECG)"),
    "low_qrs_voltage": (lambda p: p.low_voltage, "limb-lead QRS < 0.5 mV peak to peak (ECG)"),
    "t_wave_inversion": (lambda p: p.twi_territory != "none", "T-wave inversion in one territory (ECG)"),
    "old_infarct": (lambda p: p.q_territory != "none", "pathological Q waves in one territory (ECG)"),
    "prolonged_qt": (lambda p: p.long_qt, "QTc > 470 ms (ECG)"),
    "pac": (lambda p: p.pac > 0, "premature atrial complexes (ECG)"),
    "left_atrial_enlargement": (lambda p: p.lae, "broad notched P in II, deep terminal P in V1 (ECG)"),
    "nonspecific_t_wave": (lambda p: p.flat_t, "flat, low-amplitude T waves (ECG)"),
    "poor_r_wave_progression": (lambda p: p.prwp, "small R waves in V1-V4 (ECG)"),
    "sinus_arrhythmia": (
        lambda p: p.sinus_arrhythmia,
        "marked respiratory RR variation in sinus rhythm (ECG)",
    ),
}

#: metadata column -> description (what was drawn; not labels: names carry no "/")
COLUMNS = {
    "synth_index": "patient index in the cohort (with the seed, all that the patient depends on)",
    "synth_age": "age in years (drives risk; not drawn)",
    "synth_sex": "F / M (female patients have breast shadows; not reported)",
    "synth_view": "PA / AP (portable AP radiographs carry an 'AP PORTABLE' marker)",
    "synth_ctr": "cardiothoracic ratio drawn",
    "synth_cardiomegaly_grade": "0 none, 1 mild (CTR <= 0.57), 2 moderate (<= 0.63), 3 severe",
    "synth_effusion_side": "none / left / right / bilateral (patient's side; left is drawn on the image's right)",
    "synth_effusion_size": "none / small / moderate / large",
    "synth_pneumothorax_side": "none / left / right",
    "synth_pneumothorax_size": "none / small / large",
    "synth_atelectasis_side": "none / left / right / bilateral",
    "synth_lung_volumes": "normal / low / hyperinflated",
    "synth_device": "none / pacemaker / icd",
    "synth_device_side": "none / left / right (generator pocket)",
    "synth_device_leads": "0, 1 (right ventricle) or 2 (right atrium + right ventricle)",
    "synth_cabg_clips": "mediastinal surgical clips beside sternotomy wires (bool)",
    "synth_line": "none / right_ij / left_ij / right_picc / left_picc",
    "synth_line_tip": "none / svc / cavoatrial / right_atrium",
    "synth_ett_cm": "endotracheal tube tip above the carina in cm (0: none)",
    "synth_abdominal_clips": "cholecystectomy clips in the right upper quadrant (bool)",
    "synth_granuloma": "none or the lobe of a calcified granuloma",
    "synth_scoliosis": "none / dextroconvex / levoconvex",
    "synth_elevated_hemidiaphragm": "none / left / right",
    "synth_nodule": "none or the lobe of a non-calcified nodule",
    "synth_nodule_mm": "nodule diameter in mm (0: none)",
    "synth_rib_fracture": "none / left / right (healed lateral rib fracture)",
    "synth_shoulder_arthroplasty": "none / left / right",
    "synth_rhythm": "sinus / sinus_tachycardia / sinus_bradycardia / atrial_fibrillation / paced",
    "synth_heart_rate": "mean ventricular rate of the drawn ECG in bpm (as the report quotes it)",
    "synth_pr_ms": "PR interval in ms (0: no conducted P waves)",
    "synth_qrs_ms": "QRS duration in ms",
    "synth_qt_ms": "QT interval in ms",
    "synth_qtc_ms": "Bazett-corrected QT in ms",
    "synth_qrs_axis": "measured frontal QRS axis in degrees",
    "synth_pvc_count": "premature ventricular complexes in the strip",
    "synth_pac_count": "premature atrial complexes in the strip",
    "synth_lvh_strain": "LVH with lateral repolarisation abnormality (bool)",
    "synth_ste_territory": "none / anterior (V1-V4) / inferior (II, III, aVF) / lateral (I, aVL, V5-V6)",
    "synth_twi_territory": "T-wave inversion territory, as above",
    "synth_q_territory": "old-infarct Q-wave territory, as above",
    "synth_heart_box": "x0,y0,x1,y1 of the heart silhouette in image fractions (null without X-ray)",
    "synth_effusion_box": "x0,y0,x1,y1 around the effusion(s) (null: none drawn)",
    "synth_pneumothorax_box": "x0,y0,x1,y1 of the pneumothorax rim (null: none drawn)",
    "synth_device_box": "x0,y0,x1,y1 of the pacemaker / ICD generator (null: none drawn)",
}


def _box_str(box) -> str | None:
    return None if box is None else ",".join(f"{v:.3f}" for v in box)


# Patient fields copied as ``synth_<field>`` (COLUMNS documents each); the rest is derived or measured
_PATIENT_META = (
    "age", "sex", "view", "effusion_side", "effusion_size", "pneumothorax_side", "pneumothorax_size",
    "atelectasis_side", "lung_volumes", "device", "device_side", "device_leads", "cabg_clips", "line",
    "line_tip", "ett_cm", "abdominal_clips", "granuloma", "scoliosis", "elevated_hemidiaphragm", "nodule",
    "nodule_mm", "rib_fracture", "shoulder_arthroplasty", "rhythm", "lvh_strain", "ste_territory",
    "twi_territory", "q_territory",
)  # fmt: skip


def patient_row(s) -> dict:
    """Labels and ``synth_*`` metadata of one rendered patient (a :class:`~moreclip.data.synthetic.SyntheticSample`;
    no paths, split or reports)."""
    p, m = s.patient, s.measurements
    row = {f"synth_{f}": getattr(p, f) for f in _PATIENT_META}
    row.update(
        synth_index=s.index, synth_ctr=round(p.ctr, 4), synth_cardiomegaly_grade=p.cardiomegaly_grade,
        synth_heart_rate=m["rate"], synth_pr_ms=m["pr"] or 0, synth_qrs_ms=m["qrs"], synth_qt_ms=m["qt"],
        synth_qtc_ms=m["qtc"], synth_qrs_axis=m["axis"], synth_pvc_count=p.pvc, synth_pac_count=p.pac,
    )  # fmt: skip
    for k in ("heart", "effusion", "pneumothorax", "device"):
        row[f"synth_{k}_box"] = _box_str(s.boxes.get(k))
    for name, (fn, _) in LABELS.items():
        row[f"synthetic/{name}"] = float(fn(p))
    return row
