"""`moreclip ingest ptbxl` on a miniature PTB-XL tree in the shipped layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moreclip.cli import main
from moreclip.config import CANONICAL_LEADS
from moreclip.data.ecg import read_ecg
from moreclip.data.manifest import read_manifest
from moreclip.data.ptbxl import ingest_ptbxl, parse_scp_codes
from moreclip.data.validate import validate_manifest
from tests.layouts import PTBXL_LEADS, PTBXL_STATEMENTS, lead_signal, make_ptbxl

RECORDS = [
    {
        "ecg_id": 1,
        "patient_id": 15709,
        "scp_codes": "{'NORM': 100.0, 'SR': 0.0}",
        "strat_fold": 3,
        "report": "sinusrhythmus periphere niederspannung",
    },
    {
        "ecg_id": 2,
        "patient_id": 13243,
        "scp_codes": "{'IMI': 50.0, 'LVH': 100.0, 'SR': 0.0}",
        "strat_fold": 9,
        "report": "sinus rhythm. inferior infarction.",
    },
    {
        "ecg_id": 3,
        "patient_id": 20372,
        "scp_codes": "{'SR': 0.0, 'PVC': 100.0}",
        "strat_fold": 10,
        "report": "",
    },
    {
        "ecg_id": 4,
        "patient_id": 15709,
        "scp_codes": "{'NDT': 100.0, 'CLBBB': 0.0}",
        "strat_fold": 3,
        "report": "ST-T abnormality",
    },
    # not a dict literal: must be reported, never executed
    {
        "ecg_id": 5,
        "patient_id": 17014,
        "scp_codes": "__import__('os').system('touch PWNED')",
        "strat_fold": 1,
    },
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptb-xl-1.0.3", RECORDS)


def test_superclasses_from_scp_statements_codes_and_splits(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = ingest_ptbxl(root, tmp_path / "p.parquet", progress=False)
    m = read_manifest(res.manifest)
    assert not (tmp_path / "PWNED").exists() and not (root / "PWNED").exists()
    assert [i.reason for i in res.report.issues] == ["unparseable scp_codes"]
    df = m.df.set_index("ecg_id")
    assert df.index.tolist() == ["1", "2", "3", "4"]
    supers = ["ptbxl/NORM", "ptbxl/MI", "ptbxl/STTC", "ptbxl/CD", "ptbxl/HYP"]
    assert df.loc["1", supers].tolist() == [1, 0, 0, 0, 0]
    assert df.loc["2", supers].tolist() == [0, 1, 0, 0, 1]
    assert df.loc["4", supers].tolist() == [0, 0, 1, 1, 0]  # likelihood 0 still counts, as in PTB-XL's code
    assert df.loc["3", supers].isna().all()  # no diagnostic statement: unknown, not "normal"
    assert (
        df.loc["3", "ptbxl_code/PVC"] == 1
        and df.loc["3", "ptbxl_code/SR"] == 1
        and df.loc["3", "ptbxl_code/NORM"] == 0
    )
    assert {f"ptbxl_code/{c[0]}" for c in PTBXL_STATEMENTS} <= set(m.label_columns)
    assert all(m.label_domain(c) == (0, 1) for c in m.label_columns)
    assert df["split"].tolist() == ["train", "val", "test", "train"]  # strat_fold 3, 9, 10, 3
    assert df.loc["1", "subject_id"] == "15709" and df.loc["1", "sample_id"] == "ptbxl-00001"
    assert df.loc["1", "ecg_report"] == "sinusrhythmus periphere niederspannung"  # as is (German)
    assert df.loc["1", "ecg_time"] == pd.Timestamp("1984-11-09 09:17:34")
    assert m.meta["code_descriptions"]["ptbxl_code/LVH"] == "left ventricular hypertrophy"
    assert not m.has("xray").any() and m.ecg_root == root.resolve()
    assert validate_manifest(m, ecg_fs=500, progress=False).ok


@pytest.mark.parametrize("rate", [100, 500])
def test_rate_picks_records_and_leads_come_back_canonical(root, tmp_path, rate):
    m = read_manifest(ingest_ptbxl(root, tmp_path / "p.parquet", rate=rate, progress=False).manifest)
    assert m.df["ecg_path"].iloc[0] == f"records{rate}/00000/00001_{'hr' if rate == 500 else 'lr'}"
    ecg = read_ecg(m.ecg_record(0), expected_fs=rate, expected_seconds=10)
    raw = lead_signal(rate, 10.0, PTBXL_LEADS)
    for i, lead in enumerate(CANONICAL_LEADS):  # upper-case AVR/AVL/AVF matched case-insensitively
        np.testing.assert_allclose(
            ecg.signal[i], raw[[n.lower() for n in PTBXL_LEADS].index(lead.lower())], atol=1e-3
        )


def test_missing_record_is_listed_and_strict_fails(tmp_path, capsys):
    root = make_ptbxl(tmp_path / "ptbxl", RECORDS[:2])
    (root / "records500/00000/00002_hr.hea").unlink()
    res = ingest_ptbxl(root, tmp_path / "p.parquet", progress=False)
    assert res.df["ecg_id"].tolist() == ["1"]
    assert res.report.issues[0].file.endswith("records500/00000/00002_hr.hea")
    rc = main(["ingest", "ptbxl", "--root", str(root), "--out", str(tmp_path / "s.parquet"), "--strict"])
    err = capsys.readouterr().err
    assert (
        rc == 2
        and "--strict" in err
        and "ECG record not found" in err
        and not (tmp_path / "s.parquet").exists()
    )


def test_missing_column_is_named(tmp_path, capsys):
    root = make_ptbxl(tmp_path / "ptbxl", RECORDS[:1], write_100=False, write_500=False)
    db = pd.read_csv(root / "ptbxl_database.csv").drop(columns=["strat_fold"])
    db.to_csv(root / "ptbxl_database.csv", index=False)
    rc = main(["ingest", "ptbxl", "--root", str(root), "--out", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "ptbxl_database.csv: missing column(s) 'strat_fold'" in err


def test_scp_codes_parser_rejects_non_dicts():
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}") == {"NORM": 100.0, "SR": 0.0}
    for bad in ("['NORM']", "open('x')", "{1: 2}"):
        with pytest.raises((ValueError, SyntaxError)):
            parse_scp_codes(bad)
