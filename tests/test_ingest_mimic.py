"""`moreclip ingest mimic` on a miniature MIMIC-CXR-JPG + reports + MIMIC-IV-ECG tree in the shipped layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moreclip.cli import main
from moreclip.config import CANONICAL_LEADS
from moreclip.data.ecg import read_ecg
from moreclip.data.manifest import read_manifest
from moreclip.data.mimic import ingest_mimic, join_statements, pair_nearest, parse_window
from moreclip.data.mimic_cxr import extract_sections, parse_study_time
from moreclip.data.tables import hash_split
from moreclip.data.validate import validate_manifest
from tests.layouts import MIMIC_ECG_LEADS, lead_signal, make_mimic_cxr, make_mimic_ecg, make_mimic_reports

A, B, C, D, E, F, G = (f"100000{n}" for n in (32, 33, 34, 35, 36, 37, 38))

STUDIES = [
    # A: PA + lateral + AP; ECG exactly 24 h later (in) and 24 h 1 min earlier (out of a 24 h window)
    {
        "subject": A,
        "study": "50000001",
        "date": "21800723",
        "time": "80000.0",
        "split": "train",
        "images": [("a-pa", "PA"), ("a-lat", "LATERAL"), ("a-ap", "AP")],
        "labels": {
            "Atelectasis": "1.0",
            "Cardiomegaly": "-1.0",
            "Pleural Effusion": "0.0",
            "Support Devices": "1.0",
        },
    },
    # B: StudyTime with milliseconds; ECGs 1.5 h before and ~1.5 h after (the later is nearer)
    {
        "subject": B,
        "study": "50000002",
        "date": "21800801",
        "time": "213014.531",
        "split": "test",
        "images": [("b-ap", "AP")],
        "labels": {"Edema": "1.0"},
    },
    # C: no ECG at all
    {
        "subject": C,
        "study": "50000003",
        "date": "21800901",
        "time": "120000",
        "split": "train",
        "images": [("c-pa", "PA")],
        "labels": {},
    },
    # E: StudyTime without zero padding (08:43:34); ECG 10 days later (only with 60d)
    {
        "subject": E,
        "study": "50000004",
        "date": "21801001",
        "time": "84334.0",
        "split": "validate",
        "images": [("e-pa", "PA")],
        "labels": {"No Finding": "1.0"},
    },
    # F: only a lateral image
    {
        "subject": F,
        "study": "50000005",
        "date": "21800301",
        "time": "100000",
        "split": "train",
        "images": [("f-lat", "LATERAL")],
        "labels": {},
    },
    # G: two studies 2 h apart, one ECG between them
    {
        "subject": G,
        "study": "50000006",
        "date": "21800501",
        "time": "80000",
        "split": "train",
        "images": [("g1-pa", "PA")],
        "labels": {},
    },
    {
        "subject": G,
        "study": "50000007",
        "date": "21800501",
        "time": "100000",
        "split": "train",
        "images": [("g2-pa", "PA")],
        "labels": {},
    },
]
ECGS = [
    {
        "subject": A,
        "study": "40000001",
        "time": "2180-07-24 08:00:00",
        "statements": ["Sinus rhythm", "", "Normal ECG"],
    },
    {"subject": A, "study": "40000002", "time": "2180-07-22 07:59:00"},
    {"subject": A, "study": "40000003", "time": "2180-11-01 08:00:00"},
    {"subject": B, "study": "40000004", "time": "2180-08-01 20:00:00"},
    {"subject": B, "study": "40000005", "time": "2180-08-01 23:00:00"},
    {"subject": D, "study": "40000006", "time": "2180-01-01 10:00:00"},
    {"subject": E, "study": "40000007", "time": "2180-10-11 08:43:00"},
    {"subject": F, "study": "40000008", "time": "2180-03-01 11:00:00"},
    {"subject": G, "study": "40000009", "time": "2180-05-01 09:30:00"},
]
REPORT_A = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with chest pain

 FINDINGS:

 The heart size is mildly enlarged.  No pleural effusion.  Dr. ___ was notified .

 IMPRESSION:

 Mild cardiomegaly.

 NOTIFICATION:  The findings were discussed with ___.
"""
REPORT_B = "                                 FINAL REPORT\n AP portable chest radiograph ___ shows no acute process.\n"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    make_mimic_cxr(root / "mimic-cxr-jpg", STUDIES)
    make_mimic_ecg(root / "mimic-iv-ecg", ECGS)
    reports = {(s["subject"], s["study"]): "FINDINGS: Clear lungs.\n" for s in STUDIES if s["subject"] != E}
    reports[(A, "50000001")], reports[(B, "50000002")] = REPORT_A, REPORT_B
    make_mimic_reports(root / "mimic-cxr", reports)
    return root


def _ingest(tree, tmp_path, **kw):
    kw.setdefault("reports_root", tree / "mimic-cxr")
    res = ingest_mimic(
        tree / "mimic-cxr-jpg", tree / "mimic-iv-ecg", tmp_path / "m.parquet", progress=False, **kw
    )
    return res, read_manifest(res.manifest)


def _pairs(m):
    df = m.df[m.df["xray_path"].notna() & m.df["ecg_path"].notna()]
    return sorted(zip(df["cxr_study_id"], df["ecg_study_id"]))


def test_pairs_nearest_ecg_within_24h_boundary_included(tree, tmp_path):
    res, m = _ingest(tree, tmp_path)
    # A: +24 h exactly is in, -24 h 1 min is out; B: the nearer later ECG; G: both studies share the ECG
    assert _pairs(m) == [
        ("50000001", "40000001"),
        ("50000002", "40000005"),
        ("50000006", "40000009"),
        ("50000007", "40000009"),
    ]
    assert len(m) == 4 and m.has("xray").all() and m.has("ecg").all()
    row = m.df.set_index("cxr_study_id").loc["50000001"]
    assert row["dicom_id"] == "a-pa" and row["view_position"] == "PA"  # PA preferred over AP, lateral never
    assert row["pair_dt_hours"] == pytest.approx(24.0)
    b = m.df.set_index("cxr_study_id").loc["50000002"]
    assert b["xray_time"] == pd.Timestamp("2180-08-01 21:30:14.531")
    assert b["pair_dt_hours"] == pytest.approx((3600 * 1.5 - 14.531) / 3600)
    assert res.report.counts["studies without ECG in 24h (dropped)"] == 2  # C and E (F has no frontal view)
    assert (
        m.xray_root == (tree / "mimic-cxr-jpg").resolve() and m.ecg_root == (tree / "mimic-iv-ecg").resolve()
    )
    assert all(m.xray_file(i).is_file() for i in range(len(m)))
    assert all(m.ecg_record(i).with_suffix(".hea").is_file() for i in range(len(m)))


def test_60_day_window_and_several_ecgs_per_study(tree, tmp_path):
    _, m = _ingest(tree, tmp_path, window="60d")
    assert ("50000004", "40000007") in _pairs(m)  # E: 10 days
    assert ("50000001", "40000001") in _pairs(m) and ("50000001", "40000002") not in _pairs(m)
    _, m2 = _ingest(tree, tmp_path, window="60d", ecgs_per_study=2)
    a = m2.df[m2.df["cxr_study_id"] == "50000001"].sort_values("pair_dt_hours", key=abs)
    assert a["ecg_study_id"].tolist() == ["40000001", "40000002"]  # nearest first, 101-day ECG never
    assert len(m2.df["sample_id"].unique()) == len(m2)


def test_unique_ecgs_gives_each_ecg_to_its_nearest_study(tree, tmp_path):
    _, m = _ingest(tree, tmp_path, unique_ecgs=True)
    assert ("50000007", "40000009") in _pairs(m) and ("50000006", "40000009") not in _pairs(m)


def test_keep_unpaired_rows_and_subject_level_splits(tree, tmp_path):
    res, m = _ingest(tree, tmp_path, keep_unpaired=True)
    df = m.df.set_index("sample_id")
    assert df.loc["cxr-50000003", "ecg_path"] is None and df.loc["cxr-50000003", "split"] == "train"
    assert df.loc["cxr-50000004", "split"] == "val"  # 'validate' in the split file
    ecg_only = df[df["xray_path"].isna()]
    assert sorted(ecg_only["ecg_study_id"]) == [
        "40000002",
        "40000003",
        "40000004",
        "40000006",
        "40000007",
        "40000008",
    ]
    split = ecg_only.set_index("ecg_study_id")["split"]
    assert split["40000003"] == "train" and split["40000004"] == "test" and split["40000007"] == "val"
    assert split["40000008"] == "train"  # F is in the split file through its lateral image
    assert split["40000006"] == hash_split([D])[0]  # D has no X-ray at all
    assert df.loc["cxr-50000002_ecg-40000005", "split"] == "test"
    report = validate_manifest(m, progress=False)
    assert report.ok, report.format()  # subject-disjoint splits, every file decodes, 12 leads at 10 s
    assert res.report.counts["rows"] == 12


def test_labels_reports_and_ecg_statements(tree, tmp_path):
    _, m = _ingest(tree, tmp_path, keep_unpaired=True)
    for obs in (
        "Atelectasis",
        "Cardiomegaly",
        "Edema",
        "Pleural Effusion",
        "No Finding",
        "Support Devices",
        "Enlarged Cardiomediastinum",
    ):
        assert f"chexpert/{obs}" in m.label_columns and m.label_domain(f"chexpert/{obs}") == (-1, 0, 1)
    assert m.meta["more_finetune_labels"] == [
        f"chexpert/{o}" for o in ("Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion")
    ]
    a = m.df.set_index("sample_id").loc["cxr-50000001_ecg-40000001"]
    assert a["chexpert/Atelectasis"] == 1 and a["chexpert/Cardiomegaly"] == -1
    assert a["chexpert/Pleural Effusion"] == 0 and np.isnan(a["chexpert/Edema"])  # blank = unmentioned
    assert a["xray_report"] == (
        "FINDINGS: The heart size is mildly enlarged. No pleural effusion. Dr. was "
        "notified. IMPRESSION: Mild cardiomegaly."
    )
    assert a["ecg_report"] == "Sinus rhythm. Normal ECG."
    b = m.df.set_index("cxr_study_id").loc["50000002"]
    assert b["xray_report"] == "AP portable chest radiograph shows no acute process."  # no sections: all text
    e = m.df.set_index("sample_id").loc["cxr-50000004"]
    assert e["xray_report"] is None and e["chexpert/No Finding"] == 1


def test_ingested_mimic_ecg_is_read_in_canonical_lead_order(tree, tmp_path):
    _, m = _ingest(tree, tmp_path)
    raw = lead_signal(500, 10.0)  # rows in MIMIC file order: ..., aVR, aVF, aVL, ...
    ecg = read_ecg(m.ecg_record(0), expected_fs=500, expected_seconds=10)
    assert ecg.signal.shape == (12, 5000)
    for i, lead in enumerate(CANONICAL_LEADS):
        np.testing.assert_allclose(ecg.signal[i], raw[MIMIC_ECG_LEADS.index(lead)], atol=1e-3)
    assert ecg.signal[4].mean() == pytest.approx(0.5, abs=1e-3)  # aVL: 6th in the file, 5th canonical
    assert ecg.signal[5].mean() == pytest.approx(0.4, abs=1e-3)  # aVF


def test_per_image_rows_and_views(tree, tmp_path):
    _, m = _ingest(tree, tmp_path, per_image=True, views=["PA", "AP", "LATERAL"], window="60d")
    a = m.df[m.df["cxr_study_id"] == "50000001"]
    assert sorted(a["dicom_id"]) == ["a-ap", "a-lat", "a-pa"]
    assert ("50000005", "40000008") in _pairs(m)  # F's lateral image now counts


def test_cli_prints_summary_and_validate_passes(tree, tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    rc = main(
        [
            "-q",
            "ingest",
            "mimic",
            "--cxr-root",
            str(tree / "mimic-cxr-jpg"),
            "--ecg-root",
            str(tree / "mimic-iv-ecg"),
            "--reports-root",
            str(tree / "mimic-cxr"),
            "--out",
            str(out),
            "--window",
            "60d",
            "--keep-unpaired",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "pairs" in text and "rows" in text and "report file not found" in text
    assert "Mild cardiomegaly" not in text  # report texts are never printed
    assert (tmp_path / "cli.ingest.json").is_file()
    assert main(["-q", "validate", str(out)]) == 0


def test_study_time_parsing_without_zero_padding():
    t, missing = parse_study_time(
        pd.Series(["21800506", "21800506", "21800506", "bad"]),
        pd.Series(["84334.0", "213014.531", None, "120000"]),
    )
    assert t[0] == pd.Timestamp("2180-05-06 08:43:34") and t[1] == pd.Timestamp("2180-05-06 21:30:14.531")
    assert t[2] == pd.Timestamp("2180-05-06") and missing.tolist() == [False, False, True, False]
    assert pd.isna(t[3])


def test_pair_nearest_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    n, m = 300, 500
    ls = pd.Series(rng.integers(0, 40, n).astype(str))
    rs = pd.Series(rng.integers(0, 40, m).astype(str))
    base = pd.Timestamp("2180-01-01")
    lt = pd.Series(base + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h"))
    rt = pd.Series(base + pd.to_timedelta(rng.integers(0, 90 * 24, m), unit="h"))
    w = parse_window("3d")
    li, ri, _ = pair_nearest(ls, lt, rs, rt, w, k=2)
    got = {(int(a), int(b)) for a, b in zip(li, ri)}
    want = set()
    for i in range(n):
        cands = [
            (abs(rt[j] - lt[i]), rt[j], j) for j in range(m) if rs[j] == ls[i] and abs(rt[j] - lt[i]) <= w
        ]
        want |= {(i, j) for *_, j in sorted(cands)[:2]}
    assert got == want


def test_window_parsing_and_statement_joining():
    assert parse_window("24h") == pd.Timedelta(hours=24) and parse_window("60d") == pd.Timedelta(days=60)
    assert parse_window("90min") == pd.Timedelta(minutes=90) and parse_window("1w") == pd.Timedelta(days=7)
    with pytest.raises(Exception, match="window"):
        parse_window("soon")
    t = pd.DataFrame({"report_1": ["Normal ECG", None], "report_0": ["Sinus rhythm.", None], "x": ["a", "b"]})
    assert join_statements(t).tolist()[0] == "Sinus rhythm. Normal ECG." and pd.isna(join_statements(t)[1])


def test_section_extraction_variants():
    assert extract_sections("FINDINGS AND IMPRESSION: No acute process.") == "FINDINGS: No acute process."
    assert extract_sections("Impression: Stable.\nRECOMMENDATION(S): none") == "IMPRESSION: Stable."
    assert extract_sections("CONCLUSION: Edema ___.") == "IMPRESSION: Edema."
    assert extract_sections("") == ""


def test_reports_unpacked_into_the_cxr_root_are_found(tmp_path):
    make_mimic_cxr(tmp_path / "cxr", STUDIES[:1])
    make_mimic_ecg(tmp_path / "ecg", ECGS[:1])
    make_mimic_reports(tmp_path / "cxr", {(A, "50000001"): REPORT_A})
    res = ingest_mimic(tmp_path / "cxr", tmp_path / "ecg", tmp_path / "m.parquet", progress=False)
    assert res.df["xray_report"].iloc[0].startswith("FINDINGS: The heart size is mildly enlarged.")
    assert any("reports found under" in n for n in res.report.notes)
