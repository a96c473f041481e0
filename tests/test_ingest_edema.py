"""`moreclip ingest edema`: MIMIC-CXR edema severity CSVs (as published) against a miniature MIMIC-CXR-JPG."""

from __future__ import annotations

import pandas as pd
import pytest

from moreclip.cli import main
from moreclip.data.edema import ingest_edema
from moreclip.data.manifest import read_manifest
from moreclip.data.tables import hash_split
from moreclip.data.validate import validate_manifest
from tests.layouts import make_mimic_cxr

S1, S2, S3, S4, S5 = (f"1000004{n}" for n in range(5))
STUDIES = [
    {
        "subject": S1,
        "study": "51000001",
        "date": "21800101",
        "time": "90000",
        "split": "train",
        "images": [("x1-ap", "AP"), ("x1-pa", "PA"), ("x1-lat", "LATERAL")],
    },
    {
        "subject": S2,
        "study": "51000002",
        "date": "21800102",
        "time": "90000",
        "split": "test",
        "images": [("x2-ap", "AP")],
    },
    {
        "subject": S3,
        "study": "51000003",
        "date": "21800103",
        "time": "90000",
        "split": "validate",
        "images": [("x3-lat", "LATERAL")],
    },
    {
        "subject": S4,
        "study": "51000004",
        "date": "21800104",
        "time": "90000",
        "split": None,
        "images": [("x4-pa", "PA")],
    },
    {
        "subject": S5,
        "study": "51000005",
        "date": "21800105",
        "time": "90000",
        "split": "train",
        "images": [("x5-pa", "PA")],
    },
]


@pytest.fixture(scope="module")
def cxr(tmp_path_factory):
    return make_mimic_cxr(tmp_path_factory.mktemp("edema") / "mimic-cxr-jpg", STUDIES)


def _csv(path, rows, columns):
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def test_dicom_keyed_consensus_labels(cxr, tmp_path):
    labels = _csv(
        tmp_path / "consensus_image_edema_severity.csv",
        [
            (S1, "51000001", "x1-ap", 2),
            (S2, "51000002", "x2-ap", 3),
            (S3, "51000003", "x3-lat", 0),
            (S1, "51000001", "nope-dicom", 1),
            (S4, "51000004", "x4-pa", 5),
        ],
        ["subject_id", "study_id", "dicom_id", "edema_severity"],
    )
    res = ingest_edema(labels, cxr, tmp_path / "e.parquet", progress=False)
    m = read_manifest(res.manifest)
    got = dict(zip(m.df["dicom_id"], m.df["edema/severity"]))
    assert got == {"x1-ap": 2, "x2-ap": 3, "x3-lat": 0}  # dicom-keyed: the labelled image, any view
    assert m.label_domain("edema/severity") == (0, 1, 2, 3)
    assert dict(zip(m.df["dicom_id"], m.df["split"])) == {"x1-ap": "train", "x2-ap": "test", "x3-lat": "val"}
    reasons = {i.reason: i.id for i in res.report.issues}
    assert reasons["dicom_id not in the MIMIC-CXR-JPG metadata, or its image is missing"] == "nope-dicom"
    assert reasons["blank or invalid edema severity (row dropped)"] == "x4-pa"
    assert validate_manifest(m, progress=False).ok


def test_study_keyed_labels_pick_frontal_image_and_report_conflicts(cxr, tmp_path):
    labels = _csv(
        tmp_path / "regex_report_edema_severity.csv",
        [
            (S1, "51000001", 1),
            (S2, "51000002", 0),
            (S3, "51000003", 2),
            (S4, "51000004", 1),
            (S4, "51000004", 1),
            (S5, "51000005", 1),
            (S5, "51000005", 2),
        ],
        ["subject_id", "study_id", "edema_severity"],
    )
    res = ingest_edema(labels, cxr, tmp_path / "e.parquet", progress=False)
    df = res.df.set_index("cxr_study_id")
    assert df.loc["51000001", "dicom_id"] == "x1-pa"  # PA preferred over AP
    assert sorted(df.index) == ["51000001", "51000002", "51000004"]  # 3: lateral only; 5: conflicting grades
    no_image = [i.id for i in res.report.issues if i.reason.startswith("study has no image in views PA,AP")]
    assert no_image == ["51000003"]
    assert df.loc["51000004", "split"] == hash_split([S4])[0]  # absent from the split file
    counts = {i.reason: 0 for i in res.report.issues}
    for i in res.report.issues:
        counts[i.reason] += 1
    assert counts["conflicting severities for one study_id (all dropped)"] == 2
    assert counts["duplicated study_id with the same severity (first kept)"] == 1


def test_split_modes_and_configurable_columns(cxr, tmp_path, capsys):
    labels = _csv(tmp_path / "mine.csv", [("x1-pa", "2"), ("x2-ap", "0")], ["dicom", "grade"])
    out = tmp_path / "e.parquet"
    rc = main(
        [
            "-q",
            "ingest",
            "edema",
            "--labels",
            str(labels),
            "--cxr-root",
            str(cxr),
            "--out",
            str(out),
            "--id-column",
            "dicom",
            "--label-column",
            "grade",
            "--split",
            "test",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    m = read_manifest(out)
    assert set(m.df["split"]) == {"test"} and dict(zip(m.df["dicom_id"], m.df["edema/severity"])) == {
        "x1-pa": 2,
        "x2-ap": 0,
    }
    assert main(["ingest", "edema", "--labels", str(labels), "--cxr-root", str(cxr), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mine.csv: missing id column 'study_id'" in err
    rc = main(
        [
            "ingest",
            "edema",
            "--labels",
            str(labels),
            "--cxr-root",
            str(cxr),
            "--out",
            str(out),
            "--id-column",
            "dicom",
        ]
    )
    assert rc == 2 and "missing severity column" in capsys.readouterr().err
