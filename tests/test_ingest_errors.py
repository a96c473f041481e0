"""Bad input in the shipped layouts is reported with the file and the problem, never crashed on.

Ingest checks the tables (columns, blank and duplicated ids, files named by the CSVs exist); decoding
(truncated ``.dat``, JPEG that does not decode, wrong length for the rate, NaN samples) is checked by
``moreclip validate`` on the ingested manifest.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moreclip.cli import main
from moreclip.data.ecg import write_ecg
from moreclip.data.mimic import ingest_mimic
from tests.layouts import MIMIC_ECG_LEADS, lead_signal, make_mimic_cxr, make_mimic_ecg, mimic_ecg_relpath

SUBJECTS = [f"1100000{n}" for n in range(1, 7)]
STUDIES = [
    {
        "subject": s,
        "study": f"5200000{i}",
        "date": "21800101",
        "time": "90000",
        "split": "train",
        "images": [(f"d{i}", "PA")],
        "labels": {"Edema": "1.0"},
    }
    for i, s in enumerate(SUBJECTS, start=1)
]
ECGS = [
    {"subject": s, "study": f"4200000{i}", "time": "2180-01-01 10:00:00"} for i, s in enumerate(SUBJECTS, 1)
]


@pytest.fixture
def bad_tree(tmp_path):
    cxr = make_mimic_cxr(tmp_path / "cxr", STUDIES)
    ecg = make_mimic_ecg(tmp_path / "ecg", ECGS)
    rec = {i: ecg / mimic_ecg_relpath(s, f"4200000{i}") for i, s in enumerate(SUBJECTS, 1)}
    rec[2].with_suffix(".hea").unlink()  # 2: record named by record_list.csv does not exist
    dat = rec[3].with_suffix(".dat")  # 3: truncated signal file
    dat.write_bytes(dat.read_bytes()[:3000])
    jpg = cxr / "files" / "p11" / f"p{SUBJECTS[3]}" / "s52000004" / "d4.jpg"  # 4: JPEG does not decode
    jpg.write_bytes(jpg.read_bytes()[:150])
    write_ecg(rec[5], lead_signal(500, 5.0), 500, MIMIC_ECG_LEADS)  # 5: 500 Hz claimed, 2,500 samples
    sig = lead_signal(500, 10.0)
    sig[4, 1000:1100] = np.nan  # file lead 4 is aVF (MIMIC order)
    write_ecg(rec[6], sig, 500, MIMIC_ECG_LEADS)  # 6: NaN samples
    rl = pd.read_csv(ecg / "record_list.csv", dtype=str)
    blank = rl.iloc[[0]].assign(subject_id="", study_id="42000099")
    pd.concat([rl, rl.iloc[[0]], blank]).to_csv(
        ecg / "record_list.csv", index=False
    )  # duplicated + blank ids
    meta = pd.read_csv(cxr / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str)
    pd.concat([meta, meta.iloc[[0]]]).to_csv(cxr / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    return cxr, ecg, rec, jpg


def test_table_problems_are_reported_by_ingest_and_rows_skipped(bad_tree, tmp_path, capsys):
    cxr, ecg, rec, _ = bad_tree
    out = tmp_path / "m.parquet"
    assert main(["ingest", "mimic", "--cxr-root", str(cxr), "--ecg-root", str(ecg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"ECG record not found (no .hea) [{rec[2]}.hea]" in text
    assert (
        f"duplicated study_id in record_list.csv (first kept) [{ecg / 'record_list.csv'}: 42000001]" in text
    )
    assert "blank subject_id in record_list.csv" in text and "42000099" in text
    assert "duplicated dicom_id in mimic-cxr-2.0.0-metadata.csv.gz (first kept)" in text
    assert "pairs" in text and "5 rows" in text  # subject 2 lost its ECG
    saved = json.loads((tmp_path / "m.ingest.json").read_text())
    assert {i["reason"] for i in saved["issues"]} >= {"ECG record not found (no .hea)"}


def test_decoding_problems_are_named_by_validate_on_the_ingested_manifest(bad_tree, tmp_path, capsys):
    cxr, ecg, rec, jpg = bad_tree
    res = ingest_mimic(cxr, ecg, tmp_path / "m.parquet", progress=False)
    assert main(["-q", "validate", str(res.manifest), "--workers", "1"]) == 1
    text = capsys.readouterr().out
    lines = text.splitlines()

    def line_for(path):
        hits = [ln for ln in lines if str(path) in ln]
        assert hits, f"{path} not named in:\n{text}"
        return hits[0]

    assert "truncated" in line_for(rec[3].with_suffix(".dat"))
    assert "does not decode" in line_for(jpg) or "not a recognised image" in line_for(jpg)
    assert "2500 samples at 500 Hz is 5 s, expected 10 s" in line_for(rec[5].with_suffix(".hea"))
    assert "100 NaN samples in lead(s) aVF" in line_for(rec[6].with_suffix(".hea"))
    assert "FAILED: 4 problem(s) in 4 of 5 rows" in text


def test_strict_writes_no_manifest(bad_tree, tmp_path, capsys):
    cxr, ecg, _, _ = bad_tree
    out = tmp_path / "m.parquet"
    rc = main(
        ["ingest", "mimic", "--cxr-root", str(cxr), "--ecg-root", str(ecg), "--out", str(out), "--strict"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --strict:") and "m.ingest.json" in err and not out.exists()


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("ecg/record_list.csv", "ecg_time"),
        ("cxr/mimic-cxr-2.0.0-metadata.csv.gz", "StudyTime"),
        ("ecg/machine_measurements.csv", "report_0"),
    ],
)
def test_missing_csv_column_names_file_and_column(tmp_path, capsys, table, column):
    make_mimic_cxr(tmp_path / "cxr", STUDIES[:1])
    make_mimic_ecg(tmp_path / "ecg", ECGS[:1])
    path = tmp_path / table
    pd.read_csv(path, dtype=str).drop(columns=[column]).to_csv(path, index=False)
    rc = main(
        [
            "ingest",
            "mimic",
            "--cxr-root",
            str(tmp_path / "cxr"),
            "--ecg-root",
            str(tmp_path / "ecg"),
            "--out",
            str(tmp_path / "m.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"error: {path}: missing column(s) '{column}'" in err


def test_missing_tables_and_roots_are_clear(tmp_path, capsys):
    make_mimic_ecg(tmp_path / "ecg", ECGS[:1])
    (tmp_path / "cxr").mkdir()
    rc = main(
        [
            "ingest",
            "mimic",
            "--cxr-root",
            str(tmp_path / "cxr"),
            "--ecg-root",
            str(tmp_path / "ecg"),
            "--out",
            str(tmp_path / "m.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        rc == 2
        and "MIMIC-CXR-JPG metadata CSV not found (looked for mimic-cxr-2.0.0-metadata.csv[.gz]" in err
    )


def test_wrong_root_is_one_clear_error_not_every_row_skipped(tmp_path, capsys):
    make_mimic_cxr(tmp_path / "cxr", STUDIES[:2])
    make_mimic_ecg(tmp_path / "ecg", ECGS[:2])
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / "record_list.csv").write_bytes((tmp_path / "ecg" / "record_list.csv").read_bytes())
    rc = main(
        [
            "ingest",
            "mimic",
            "--cxr-root",
            str(tmp_path / "cxr"),
            "--ecg-root",
            str(elsewhere),
            "--out",
            str(tmp_path / "m.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "none of the 2 files named by the tables exists" in err and "--ecg-root" in err
