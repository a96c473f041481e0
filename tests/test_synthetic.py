"""The synthetic cohort: real formats read back by independent readers, determinism, splits and missing
modalities, validation, the CLI, prevalence and coherence of the latent conditions, and the reports."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import wfdb
from PIL import Image

from moreclip.cli import main
from moreclip.config import CANONICAL_LEADS
from moreclip.data.ecg import write_ecg
from moreclip.data.manifest import read_manifest
from moreclip.data.synth_latent import patient_rng, sample_patients
from moreclip.data.synth_reports import ecg_report, xray_report
from moreclip.data.synth_wfdb import write_wfdb16
from moreclip.data.synthetic import COLUMNS, LABELS, generate_cohort, render_patient
from moreclip.data.validate import validate_manifest
from moreclip.errors import ConfigError, ManifestError

MAIN = ("cardiomegaly", "pleural_effusion", "edema_any", "pneumothorax", "sinus_tachycardia",
        "sinus_bradycardia", "atrial_fibrillation", "lvh", "st_elevation")  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_small")
    path = generate_cohort(
        root, 30, 5, workers=2, progress=False, missing_xray=0.1, missing_ecg=0.1, image_size=128
    )
    return root, path


def test_files_are_read_back_by_wfdb_pillow_and_pandas(small):
    root, path = small
    df = pd.read_parquet(path)
    assert len(df) == 30 and df["sample_id"].is_unique
    for rel in df["ecg_path"].dropna()[:5]:
        sig, fields = wfdb.rdsamp(str(root / rel))
        assert sig.shape == (5000, 12) and fields["fs"] == 500 and fields["sig_len"] == 5000
        assert fields["sig_name"] == list(CANONICAL_LEADS) and set(fields["units"]) == {"mV"}
        assert np.isfinite(sig).all()
    for rel in df["xray_path"].dropna()[:5]:
        with Image.open(root / rel) as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (128, 128)
            a = np.asarray(im)
        assert a.std() > 20 and a.min() < 40 and a.max() > 200  # dark outside the body, bright bone/metal
    for text in df["xray_report"].dropna():
        assert re.match(r"FINDINGS: .+\nIMPRESSION: .+", text, re.S)
    assert df["ecg_report"].dropna().str.contains(r"\bECG\b").all()


def test_missing_modalities_take_their_report_with_them_and_never_both(small):
    root, path = small
    df = pd.read_parquet(path)
    no_x, no_e = df["xray_path"].isna(), df["ecg_path"].isna()
    assert no_x.sum() == 3 and no_e.sum() == 3 and not (no_x & no_e).any()
    assert df.loc[no_x, "xray_report"].isna().all() and df.loc[~no_x, "xray_report"].notna().all()
    assert df.loc[no_e, "ecg_report"].isna().all() and df.loc[~no_e, "ecg_report"].notna().all()
    for sid in df.loc[no_x, "sample_id"]:
        assert not (root / "xray" / f"{sid}.png").exists()
    for sid in df.loc[no_e, "sample_id"]:
        assert not (root / "ecg" / f"{sid}.hea").exists()
    assert df.loc[no_x, "synth_heart_box"].isna().all() and df.loc[~no_x, "synth_heart_box"].notna().all()


def test_manifest_declares_labels_domains_and_documented_columns(small):
    _, path = small
    m = read_manifest(path)
    assert set(m.label_columns) == {f"synthetic/{k}" for k in LABELS}
    assert m.label_domain("synthetic/edema") == (0, 1, 2, 3)
    assert m.label_domain("synthetic/cardiomegaly") == (0, 1)
    meta = [c for c in m.df.columns if c.startswith("synth_")]
    assert sorted(meta) == sorted(COLUMNS)
    assert m.meta["generator"] == "moreclip.synth" and m.meta["seed"] == 5 and m.meta["n"] == 30
    assert (m.df["synthetic/edema_any"] == (m.df["synthetic/edema"] > 0)).all()


def test_validate_passes_and_catches_a_corrupted_record(small, tmp_path):
    import shutil

    root, path = small
    report = validate_manifest(read_manifest(path), ecg_fs=500, progress=False)
    assert report.ok, report.format()
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    df = pd.read_parquet(copy / "manifest.parquet")
    rel = df["ecg_path"].dropna().iloc[0]
    dat = copy / f"{rel}.dat"
    dat.write_bytes(dat.read_bytes()[:1000])  # truncated signal file
    bad = validate_manifest(read_manifest(copy / "manifest.parquet"), ecg_fs=500, progress=False)
    assert not bad.ok and len(bad.bad_rows) == 1 and "ecg_path" in str(bad.problems[0])


def test_split_is_by_subject_with_exact_fractions(tmp_path):
    path = generate_cohort(tmp_path, 40, 2, split=(0.5, 0.25, 0.25), workers=1, progress=False)
    df = pd.read_parquet(path)
    assert df["split"].value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}
    assert df.groupby("subject_id")["split"].nunique().max() == 1


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_whatever_the_workers_and_other_seeds_differ(tmp_path):
    a = generate_cohort(tmp_path / "a", 12, 3, workers=1, progress=False, image_size=96)
    b = generate_cohort(tmp_path / "b", 12, 3, workers=2, progress=False, image_size=96)
    c = generate_cohort(tmp_path / "c", 12, 4, workers=2, progress=False, image_size=96)
    ta, tb, tc = _tree(a.parent), _tree(b.parent), _tree(c.parent)
    assert len(ta) > 30 and ta == tb
    assert ta["manifest.parquet"] != tc["manifest.parquet"]
    common = set(ta) & set(tc) - {"manifest.parquet"}
    assert common and all(ta[k] != tc[k] for k in common)
    # a patient does not depend on the cohort size
    assert (
        render_patient(3, 7).xray_report == pd.read_parquet(a).set_index("synth_index").at[7, "xray_report"]
    )


def test_fast_wfdb_writer_is_byte_identical_to_write_ecg(tmp_path):
    sig = render_patient(0, 1).ecg
    write_ecg(tmp_path / "ref", sig, 500)
    write_wfdb16(tmp_path / "fast", sig, 500, CANONICAL_LEADS)
    assert (tmp_path / "ref.dat").read_bytes() == (tmp_path / "fast.dat").read_bytes()
    assert (tmp_path / "ref.hea").read_text().replace("ref", "fast") == (tmp_path / "fast.hea").read_text()


def test_cli_synth_writes_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "cohort"
    args = [
        "-q",
        "synth",
        "--out",
        str(out),
        "--n",
        "6",
        "--seed",
        "1",
        "--workers",
        "1",
        "--image-size",
        "96",
    ]
    assert main(args) == 0
    assert len(pd.read_parquet(out / "manifest.parquet")) == 6
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--n", "4"]) == 0 and len(list((out / "xray").glob("*.png"))) <= 4
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(out), "--missing-xray", "1.5"])


def test_bad_arguments_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="missing_xray"):
        generate_cohort(tmp_path, 5, missing_xray=0.7, missing_ecg=0.5, progress=False)
    with pytest.raises(ConfigError, match="image_size"):
        generate_cohort(tmp_path, 5, image_size=16, progress=False)
    pd.DataFrame({"sample_id": ["a"], "subject_id": ["a"], "split": ["train"]}).to_parquet(
        tmp_path / "manifest.parquet"
    )
    with pytest.raises(ManifestError, match="not a synthetic cohort"):
        generate_cohort(tmp_path, 5, overwrite=True, progress=False)


# --------------------------------------------------------------------------------- latent truth
def _labels(patients) -> pd.DataFrame:
    return pd.DataFrame([{k: float(fn(p)) for k, (fn, _) in LABELS.items()} for p in patients])


@pytest.mark.parametrize("seed", [0, 1])
def test_each_main_condition_has_5_to_60_percent_prevalence_in_1000_patients(seed):
    prev = _labels(sample_patients(1000, seed)).mean()
    for name in MAIN:
        assert 0.05 <= prev[name] <= 0.60, (name, prev[name])
    edema = pd.Series([p.edema for p in sample_patients(1000, seed)]).value_counts()
    assert all(edema.get(g, 0) >= 30 for g in (1, 2, 3))


def test_conditions_co_occur_as_in_patients_and_stay_clinically_coherent():
    ps = sample_patients(3000, 7)
    lab = _labels(ps)

    def lift(a, b):  # P(a | b) / P(a | not b)
        return lab.loc[lab[b] == 1, a].mean() / lab.loc[lab[b] == 0, a].mean()

    assert lift("edema_any", "cardiomegaly") > 2.0
    assert lift("lvh", "cardiomegaly") > 1.3
    assert lift("sinus_tachycardia", "edema_any") > 1.5
    assert lift("atrial_fibrillation", "cardiomegaly") > 1.5
    for p in ps:
        if p.rhythm == "atrial_fibrillation":
            assert p.pr_ms == 0 and not p.av_block1 and not p.lae and not p.pac
        if p.rhythm == "paced":
            assert p.device != "none" and p.bbb == "none" and not p.lvh and p.ste_territory == "none"
        if p.bbb == "lbbb":
            assert not p.lvh and p.ste_territory == "none"
        if p.av_block1:
            assert p.pr_ms > 200
        assert not (p.low_voltage and p.lvh)
        assert p.ste_territory == "none" or p.ste_territory != p.twi_territory
        assert not (p.effusion_side in (p.pneumothorax_side, "bilateral") and p.pneumothorax_side != "none")


def test_visible_attributes_make_most_patients_distinguishable_among_500():
    """Retrieval needs reports that tell patients apart: count patients sharing every reported attribute."""
    ps = sample_patients(500, 3)
    xkey = [tuple(getattr(p, f) for f in _XRAY_FIELDS) + (p.cardiomegaly_grade,) for p in ps]
    ekey = [tuple(getattr(p, f) for f in _ECG_FIELDS) + (p.axis, p.heart_rate // 10) for p in ps]
    for keys in (xkey, ekey):
        c = Counter(keys)
        shared = np.array([c[k] for k in keys])
        assert (shared <= 5).mean() > 0.8 and max(c.values()) < 40


_XRAY_FIELDS = ("view", "effusion_side", "effusion_size", "edema", "pneumothorax_side", "pneumothorax_size",
                "atelectasis_side", "lung_volumes", "device", "device_side", "device_leads", "sternotomy", "cabg_clips",
                "line", "line_tip", "ett_cm", "ngt", "abdominal_clips", "granuloma", "aortic_calcification", "scoliosis",
                "elevated_hemidiaphragm", "nodule", "nodule_mm", "rib_fracture", "spine_degeneration",
                "shoulder_arthroplasty", "hiatal_hernia")  # fmt: skip
_ECG_FIELDS = ("rhythm", "av_block1", "bbb", "pvc", "low_voltage", "lvh", "lvh_strain",
               "ste_territory", "twi_territory", "q_territory", "pac", "lae", "flat_t", "prwp", "sinus_arrhythmia")  # fmt: skip


# -------------------------------------------------------------------------------------- reports
def _reports(n: int = 400, seed: int = 2):
    out = []
    for i, p in enumerate(sample_patients(n, seed)):
        meas = {
            "rate": int(round(p.heart_rate)),
            "pr": int(p.pr_ms) or None,
            "qrs": 90,
            "qt": 380,
            "qtc": 410,
            "axis": 40,
        }
        out.append(
            (
                p,
                xray_report(p, patient_rng(seed, i, "xray_report")),
                ecg_report(p, meas, patient_rng(seed, i, "ecg_report")),
                meas,
            )
        )
    return out


def _sentences(text: str) -> list[str]:
    text = re.sub(r"(FINDINGS|IMPRESSION):\s*", "", text)
    return [s.strip() for s in re.split(r"(?<=\.)\s+|\n", text) if s.strip()]


def _affirmed(text: str, *words: str) -> list[str]:
    """Sentences mentioning any of ``words`` that are not negated (``No ...``)."""
    found = [s.lower() for s in _sentences(text) if any(w in s.lower() for w in words)]
    return [s for s in found if not s.startswith("no ")]


def test_reports_state_what_was_drawn_including_side_and_never_the_absent():
    for p, xr, er, meas in _reports():
        ptx = _affirmed(xr, "pneumothorax")
        assert bool(ptx) == (p.pneumothorax_side != "none"), xr
        assert all(p.pneumothorax_side in s for s in ptx), xr
        eff = _affirmed(xr, "effusion")
        assert bool(eff) == (p.effusion_side != "none"), xr
        assert all(p.effusion_side in s or "both sides" in s for s in eff), xr
        assert bool(_affirmed(xr, "cardiomegaly", "enlarge")) == p.cardiomegaly, xr
        assert bool(_affirmed(xr, "edema")) == bool(p.edema), xr
        assert bool(_affirmed(xr, "pacemaker", "pacer", "icd", "defibrillator")) == (p.device != "none"), xr
        assert bool(_affirmed(xr, "nodule measuring", "mm nodul")) == (p.nodule != "none"), xr
        el = er.lower()
        assert ("atrial fibrillation" in el) == (p.rhythm == "atrial_fibrillation")
        assert ("sinus tachycardia" in el) == (p.rhythm == "sinus_tachycardia")
        assert ("sinus bradycardia" in el) == (p.rhythm == "sinus_bradycardia")
        assert bool(re.search(r"pac|atrial premature|premature atrial", el)) == (
            p.rhythm == "paced" or p.pac > 0
        )
        assert ("st elevation" in el) == (p.ste_territory != "none")
        assert (("left ventricular hypertrophy" in el) or ("lvh" in el)) == p.lvh
        assert re.search(rf"\b{meas['rate']}\b", er), er


def test_report_wording_varies_with_paraphrases_negations_and_hedges():
    reps = _reports()
    first_heart = Counter()
    for p, xr, _, _ in reps:
        if p.cardiomegaly:
            first_heart.update(
                s
                for s in _sentences(xr.split("IMPRESSION")[0])
                if "cardi" in s.lower() or "heart" in s.lower()
            )
    assert len(first_heart) >= 6  # several phrasings per finding, never one fixed sentence
    text = " ".join(x for _, x, _, _ in reps)
    assert (
        "No pleural effusion" in text
        and "No pneumothorax" in text
        or "No pleural effusion or pneumothorax" in text
    )
    assert re.search(r"\b(possible|probable|likely|consistent with)\b", text, re.I)
    ecg_text = " ".join(e for _, _, e, _ in reps)
    assert "Normal ECG" in ecg_text and "Abnormal ECG" in ecg_text and "Borderline ECG" in ecg_text
    assert len({x for _, x, _, _ in reps}) > 0.9 * len(reps)
