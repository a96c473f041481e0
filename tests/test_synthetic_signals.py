"""The synthetic cohort's labels are really in its signals, measured by code independent of the generator.

Every check reads the written files (wfdb, Pillow, pandas) and measures with its own simple method:
heart rate from R peaks found by NeuroKit2, RR irregularity, a threshold-based cardiothoracic ratio,
Sokolow-Lyon voltage and ST level on averaged beats, brightness of the lung bases.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import wfdb
from PIL import Image
from scipy import ndimage
from scipy.signal import resample_poly
from sklearn.metrics import roc_auc_score

from moreclip.data.synth_ecg import render_ecg
from moreclip.data.synth_latent import Patient
from moreclip.data.synthetic import generate_cohort

nk = pytest.importorskip("neurokit2")

N = 160
SEED = 11


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_signals")
    path = generate_cohort(root, N, SEED, workers=2, progress=False, missing_xray=0.05, missing_ecg=0.05)
    return root, pd.read_parquet(path)


# ------------------------------------------------------------------------------------- ECG measurement
def _r_peaks(x: np.ndarray, fs: int) -> np.ndarray:
    """R peaks with NeuroKit2 on the lead with the steepest slopes (the next ones if it finds too few)."""
    smooth = ndimage.uniform_filter1d(x, max(1, fs // 100), axis=1)
    order = np.argsort(-np.percentile(np.abs(np.diff(smooth, axis=1)), 99, axis=1))
    peaks = np.zeros(0, dtype=int)
    for lead in order[:4]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = nk.ecg_clean(x[lead], sampling_rate=fs)
            peaks = np.asarray(nk.ecg_peaks(clean, sampling_rate=fs)[1]["ECG_R_Peaks"], dtype=int)
        if len(peaks) >= 5:
            break
    return peaks


def _read(root, rel: str) -> tuple[np.ndarray, int]:
    sig, fields = wfdb.rdsamp(str(root / rel))
    assert sig.shape == (5000, 12) and fields["fs"] == 500
    return ndimage.median_filter(sig.T, size=(1, 5)), 500  # (12, T) mV; median filter drops pacing spikes


@pytest.fixture(scope="module")
def ecg_measures(cohort):
    root, df = cohort
    rows = []
    for rel in df["ecg_path"].dropna():
        x, fs = _read(root, rel)
        out = {}
        for rate, y in ((500, x), (100, resample_poly(x, 1, 5, axis=1))):
            r = _r_peaks(y, rate)
            rr = np.diff(r) / rate
            out[f"hr{rate}"] = 60.0 / np.median(rr) if len(rr) else np.nan
            out[f"irr{rate}"] = np.median(np.abs(np.diff(rr))) / np.median(rr) if len(rr) > 2 else np.nan
        r = _r_peaks(x, fs)
        beats = [x[:, i - 200 : i + 300] for i in r if 200 <= i <= x.shape[1] - 300]
        beat = np.median(np.stack(beats), 0)  # (12, 500), R peak at sample 200
        beat = beat - beat[:, 200 - 22 : 200 - 17].mean(1, keepdims=True)  # PR-segment baseline
        out["sokolow"] = -beat[6, 170:230].min() + max(beat[10, 170:230].max(), beat[11, 170:230].max())
        st = beat[:, 200 + 40 : 200 + 45].mean(1)  # ST level 80-90 ms after the R peak
        for terr, leads in {"anterior": [7, 8, 9], "inferior": [1, 2, 5], "lateral": [0, 4, 10, 11]}.items():
            out[f"st_{terr}"] = st[leads].mean()
        rows.append(out)
    return df[df["ecg_path"].notna()].reset_index(drop=True).join(pd.DataFrame(rows))


def test_written_ecgs_obey_einthoven_and_have_physiological_range(cohort):
    root, df = cohort
    for rel in df["ecg_path"].dropna()[:20]:
        sig, fields = wfdb.rdsamp(str(root / rel))
        assert fields["sig_name"] == [
            "I",
            "II",
            "III",
            "aVR",
            "aVL",
            "aVF",
            "V1",
            "V2",
            "V3",
            "V4",
            "V5",
            "V6",
        ]
        assert fields["units"] == ["mV"] * 12
        i, ii, iii, avr, avl, avf = sig.T[:6]
        np.testing.assert_allclose(iii, ii - i, atol=2.5e-3)  # 1 uV storage rounding, three leads
        np.testing.assert_allclose(avr, -(i + ii) / 2, atol=2.5e-3)
        np.testing.assert_allclose(avl, i - ii / 2, atol=2.5e-3)
        np.testing.assert_allclose(avf, ii - i / 2, atol=2.5e-3)
        assert 0.3 < np.ptp(sig, axis=0).max() < 12.0


@pytest.mark.parametrize("rate", [500, 100])
def test_heart_rate_from_neurokit_peaks_matches_rhythm_labels(ecg_measures, rate):
    e = ecg_measures
    hr = e[f"hr{rate}"].to_numpy()
    rhythm = e["synth_rhythm"].to_numpy()
    agree = np.where(
        rhythm == "sinus_tachycardia",
        hr > 100,
        np.where(
            rhythm == "sinus_bradycardia",
            hr < 60,
            np.where(rhythm == "sinus", (hr >= 60) & (hr <= 100), True),
        ),
    )
    for label in ("sinus_tachycardia", "sinus_bradycardia", "sinus"):
        assert (rhythm == label).sum() >= 5, f"cohort has too few {label} records to test"
    assert agree.mean() >= 0.95, e.loc[~agree, ["sample_id", "synth_rhythm", "synth_heart_rate", f"hr{rate}"]]
    regular = rhythm != "atrial_fibrillation"
    err = np.abs(hr - e["synth_heart_rate"].to_numpy())[regular]
    assert np.nanmedian(err) < 2.0  # the rate the report quotes is the rate in the signal


@pytest.mark.parametrize("rate", [500, 100])
def test_rr_irregularity_separates_atrial_fibrillation(ecg_measures, rate):
    e = ecg_measures
    af = e["synthetic/atrial_fibrillation"].to_numpy() == 1
    assert af.sum() >= 5
    irr = e[f"irr{rate}"].fillna(0).to_numpy()
    assert np.median(irr[af]) > 4 * np.median(irr[~af])
    # against the regular rhythms; premature beats and marked sinus arrhythmia are irregular by design
    # (they keep their P waves, see test_atrial_fibrillation_has_no_p_waves)
    regular = (
        (e["synth_pvc_count"] == 0) & (e["synth_pac_count"] == 0) & (e["synthetic/sinus_arrhythmia"] == 0)
    ).to_numpy()
    keep = af | regular
    assert roc_auc_score(af[keep], irr[keep]) > 0.95


def test_qrs_voltage_separates_lvh(ecg_measures):
    e = ecg_measures
    lvh = e["synthetic/lvh"].to_numpy() == 1
    assert lvh.sum() >= 5
    assert roc_auc_score(lvh, e["sokolow"]) > 0.95
    assert (e.loc[lvh, "sokolow"] > 3.5).mean() > 0.85  # Sokolow-Lyon criterion
    assert (e.loc[~lvh, "sokolow"] < 3.5).mean() > 0.95


def test_st_level_is_raised_in_the_labelled_territory(ecg_measures):
    e = ecg_measures
    ste = e["synth_ste_territory"].to_numpy()
    assert (ste != "none").sum() >= 5
    own = np.array([e.at[i, f"st_{t}"] for i, t in enumerate(ste) if t != "none"])
    assert np.median(own) > 0.15 and (own > 0.05).mean() > 0.85
    # without the secondary ST changes of LBBB, pacing, LVH strain or fast rates, other records stay flat
    quiet = (
        (ste == "none") & (e["synthetic/lbbb"] == 0) & (e["synthetic/paced_rhythm"] == 0)
        & (e["synth_lvh_strain"] == 0) & (e["synth_heart_rate"] < 95)
    ).to_numpy()  # fmt: skip
    worst = e.loc[quiet, ["st_anterior", "st_inferior", "st_lateral"]].max(axis=1)
    assert np.median(worst) < 0.08 and np.median(own) > 3 * np.median(worst)


def test_atrial_fibrillation_has_no_p_waves():
    """Same patient, sinus vs atrial fibrillation: the P wave before the averaged QRS disappears."""

    def p_wave(p: Patient) -> float:
        x, _ = render_ecg(p, np.random.default_rng(5))
        r = _r_peaks(x, 500)
        beat = np.mean([x[1, i - 150 : i + 10] for i in r if i >= 150], axis=0)  # lead II, R at 150
        return float(beat[150 - 125 : 150 - 40].max() - beat[150 - 40 : 150 - 30].mean())

    sinus = [p_wave(Patient(heart_rate=hr)) for hr in (60, 70, 80)]
    af = [p_wave(Patient(rhythm="atrial_fibrillation", pr_ms=0.0, heart_rate=hr)) for hr in (60, 70, 80)]
    assert min(sinus) > 0.08 and max(af) < 0.06, (sinus, af)


def test_beat_morphology_resembles_neurokit2_simulator():
    """Averaged beats of a normal patient vs NeuroKit2's multi-lead simulator at the same rate.

    NeuroKit2's ``multileads`` does not keep Einthoven's relations (its aVR is upright), so the comparison
    uses the leads where its morphology is the textbook one: I, aVL, V4, V5.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nk.ecg_simulate(
            duration=10, sampling_rate=500, heart_rate=70, method="multileads", random_state=3, noise=0
        )
    ref = ref.to_numpy().T
    ours, _ = render_ecg(Patient(heart_rate=70, qtc_ms=400, pr_ms=160, axis_deg=40), np.random.default_rng(0))

    def average(x):
        r = _r_peaks(x, 500)
        return np.mean([x[:, i - 150 : i + 250] for i in r if 150 <= i <= x.shape[1] - 250], axis=0)

    a, b = average(ours), average(ref)
    leads = [0, 4, 9, 10]
    corr = [np.corrcoef(a[i], b[i])[0, 1] for i in leads]
    assert np.median(corr) > 0.7, corr
    for i in leads:  # T peak after and P peak before the R peak, in ms
        t_a, t_b = 2 * (np.argmax(a[i, 210:]) + 60), 2 * (np.argmax(b[i, 210:]) + 60)
        p_a, p_b = 2 * (110 - np.argmax(a[i, 40:120])), 2 * (110 - np.argmax(b[i, 40:120]))
        assert abs(t_a - t_b) <= 40 and abs(p_a - p_b) <= 40, (i, t_a, t_b, p_a, p_b)
        assert 0.3 < a[i, 140:160].max() / b[i, 140:160].max() < 3.0


# ----------------------------------------------------------------------------------- X-ray measurement
def _ctr(img: np.ndarray) -> float:
    """Cardiothoracic ratio by thresholding: the two largest dark regions not touching the border are the
    lungs; thorax = widest span across both lungs, heart = widest gap between them (above the right
    hemidiaphragm, where the right lung is still wide)."""
    s = img.shape[0]
    im = ndimage.uniform_filter(img.astype(np.float32), 5)
    centre = im[s // 8 : 7 * s // 8, s // 8 : 7 * s // 8]
    dark = im < (np.percentile(centre, 5) + np.percentile(centre, 70)) / 2
    lab, n = ndimage.label(dark)
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])))
    sizes = ndimage.sum(dark, lab, range(1, n + 1))
    inner = sorted((sizes[i - 1], i) for i in range(1, n + 1) if i not in border)[-2:]
    if len(inner) < 2:
        return float("nan")
    a, b = (lab == inner[0][1]), (lab == inner[1][1])
    if ndimage.center_of_mass(a)[1] > ndimage.center_of_mass(b)[1]:
        a, b = b, a  # a: the lung on the image's left (patient's right)
    close = np.ones((15, 1), bool)  # bridge thin horizontal bands (ribs, atelectasis)
    a, b = ndimage.binary_closing(a, close), ndimage.binary_closing(b, close)
    cols, wa = np.arange(s), a.sum(1)
    thorax = heart = 0
    for r in np.flatnonzero((wa > 0) & (b.sum(1) > 0)):
        thorax = max(thorax, cols[b[r]].max() - cols[a[r]].min())
        if wa[r] > 0.6 * wa.max():
            heart = max(heart, cols[b[r]].min() - cols[a[r]].max())
    return heart / thorax if thorax else float("nan")


def test_cardiothoracic_ratio_measured_on_the_image_separates_cardiomegaly(cohort):
    root, df = cohort
    x = df[df["xray_path"].notna()].reset_index(drop=True)
    ctr = np.array([_ctr(np.asarray(Image.open(root / rel))) for rel in x["xray_path"]])
    assert np.isfinite(ctr).mean() > 0.95
    cm = x["synthetic/cardiomegaly"].to_numpy() == 1
    assert cm.sum() >= 10
    assert roc_auc_score(cm, np.nan_to_num(ctr, nan=1.0)) > 0.85  # effusions and edema blur the borders
    # with clear lung bases the measurement recovers the drawn ratio and the 0.5 threshold
    clear = (
        (x["synthetic/pleural_effusion"] == 0)
        & (x["synthetic/edema"] < 2)
        & (x["synthetic/pneumothorax"] == 0)
    ).to_numpy()
    err = np.abs(ctr[clear] - x.loc[clear, "synth_ctr"].to_numpy())
    assert np.nanmedian(err) < 0.02
    assert ((ctr[clear] > 0.5) == cm[clear]).mean() > 0.95


def _mean(img: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> float:
    s = img.shape[0]
    return float(img[int(y0 * s) : int(y1 * s), int(x0 * s) : int(x1 * s)].mean())


def test_effusion_and_pneumothorax_are_drawn_on_the_labelled_side(cohort):
    root, df = cohort
    # (an elevated opposite hemidiaphragm would put abdomen into the mirror zone: left out)
    one_side = df[
        df["xray_path"].notna()
        & df["synth_effusion_side"].isin(["left", "right"])
        & (df["synth_elevated_hemidiaphragm"] == "none")
    ]
    assert len(one_side) >= 4
    for _, row in one_side.iterrows():
        img = np.asarray(Image.open(root / row["xray_path"]), dtype=np.float32)
        x0, y0, x1, y1 = (float(v) for v in row["synth_effusion_box"].split(","))
        image_right = (x0 + x1) / 2 > 0.5
        assert image_right == (row["synth_effusion_side"] == "left")  # radiographs face the viewer
        # the lateral half of the box is brighter than its mirror image (fluid instead of lung air)
        lat = (x0 + x1) / 2, x1 if image_right else x0, (x0 + x1) / 2
        lat = (lat[0], lat[1]) if image_right else (lat[1], lat[2])
        here = _mean(img, lat[0], lat[1], y0, y1)
        mirror = _mean(img, 1 - lat[1], 1 - lat[0], y0, y1)
        assert here > mirror + 5, (row["sample_id"], here, mirror)
    ptx = df[df["xray_path"].notna() & (df["synth_pneumothorax_side"] != "none")]
    assert len(ptx) >= 3
    for _, row in ptx.iterrows():
        x0, _, x1, _ = (float(v) for v in row["synth_pneumothorax_box"].split(","))
        assert ((x0 + x1) / 2 > 0.5) == (row["synth_pneumothorax_side"] == "left")


def test_no_patient_draws_an_unphysiological_voltage():
    """Regression: LVH scaling on a far-rotated axis once drew 30+ mV limb leads (seed 0, patient 1302),
    beyond real ECGs and the 16-bit record's range, so a ~2,000-patient cohort failed to write."""
    from moreclip.data.synthetic import render_patient

    for index in [52, 224, 276, 1074, 1302, *range(0, 400, 3)]:
        sample = render_patient(0, index, 32)
        assert np.abs(sample.ecg).max() < 6.0, index
