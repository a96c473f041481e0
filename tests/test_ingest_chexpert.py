"""`moreclip ingest chexpert` on a miniature CheXpert-v1.0-small tree in the shipped layout."""

from __future__ import annotations

import numpy as np
import pytest

from moreclip.cli import main
from moreclip.data.chexpert import CHEXPERT_OBSERVATIONS, ingest_chexpert
from moreclip.data.manifest import read_manifest
from moreclip.data.tables import hash_split
from moreclip.data.validate import validate_manifest
from tests.layouts import make_chexpert

LABELS_1 = {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0", "No Finding": ""}
TRAIN = [
    {"patient": 1, "study": 1, "view": "frontal", "labels": LABELS_1},
    {"patient": 1, "study": 1, "view": "lateral", "labels": LABELS_1},
]
TRAIN += [
    {"patient": p, "study": 1, "view": "frontal", "labels": {"Atelectasis": "1.0"}} for p in range(2, 41)
]
VALID = [
    {"patient": 64541, "study": 1, "view": "frontal", "labels": {"Cardiomegaly": "1.0", "Edema": "0.0"}},
    {"patient": 64542, "study": 1, "view": "frontal", "labels": {}},
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    make_chexpert(root, TRAIN, VALID)
    return root


@pytest.mark.parametrize("which", ["dataset_folder", "parent"])
def test_path_column_resolves_from_folder_or_parent(tree, tmp_path, which):
    root = tree / "CheXpert-v1.0-small" if which == "dataset_folder" else tree
    res = ingest_chexpert(root, tmp_path / "c.parquet", val_fraction=0.25, progress=False)
    m = read_manifest(res.manifest)
    assert len(m) == 42 and not res.report.issues  # 40 train frontal + 2 valid; the lateral dropped
    assert all(m.xray_file(i).is_file() for i in range(len(m)))
    assert "train/patient00001/study1/view1_frontal" in set(m.df["sample_id"])
    assert validate_manifest(m, progress=False).ok


def test_labels_uncertain_blank_and_competition_tasks(tree, tmp_path):
    m = read_manifest(ingest_chexpert(tree, tmp_path / "c.parquet", progress=False).manifest)
    assert m.label_columns == [f"chexpert/{o}" for o in CHEXPERT_OBSERVATIONS]
    row = m.df.set_index("sample_id").loc["train/patient00001/study1/view1_frontal"]
    assert row["chexpert/Cardiomegaly"] == 1 and row["chexpert/Edema"] == -1
    assert row["chexpert/Pleural Effusion"] == 0 and np.isnan(row["chexpert/No Finding"])
    assert m.label_domain("chexpert/Edema") == (-1, 0, 1)
    assert m.meta["competition_tasks"] == [
        f"chexpert/{t}" for t in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    ]


def test_splits_valid_is_test_and_val_is_subject_level(tree, tmp_path):
    m = read_manifest(
        ingest_chexpert(tree, tmp_path / "c.parquet", val_fraction=0.25, progress=False).manifest
    )
    test = m.df[m.df["split"] == "test"]
    assert sorted(test["subject_id"]) == ["patient64541", "patient64542"]
    train_rows = m.df[m.df["split"] != "test"]
    expected = dict(zip(train_rows["subject_id"], hash_split(train_rows["subject_id"], (0.75, 0.25, 0.0))))
    assert train_rows["split"].tolist() == [expected[s] for s in train_rows["subject_id"]]
    assert 0 < (train_rows["split"] == "val").sum() < len(train_rows)
    m2 = read_manifest(
        ingest_chexpert(tree, tmp_path / "d.parquet", val_fraction=0.25, progress=False).manifest
    )
    assert m2.df["split"].tolist() == m.df["split"].tolist()  # deterministic


def test_all_views_keeps_lateral(tree, tmp_path):
    res = ingest_chexpert(tree, tmp_path / "c.parquet", frontal_only=False, progress=False)
    assert (res.df["view"] == "Lateral").sum() == 1 and len(res.df) == 43


def test_bad_rows_are_reported_by_file(tmp_path, capsys):
    train = [
        dict(TRAIN[0]),
        {"patient": 2, "study": 1, "view": "frontal", "labels": {"Edema": "2.0"}},
        {"patient": 3, "study": 1, "view": "frontal", "write": False},
    ]
    base = make_chexpert(tmp_path, train, VALID[:1])
    first_row = (base / "train.csv").read_text().splitlines()[1]
    with open(base / "train.csv", "a") as f:  # a duplicated Path row
        f.write(first_row + "\n")
    rc = main(["ingest", "chexpert", "--root", str(base), "--out", str(tmp_path / "c.parquet")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "duplicated Path in train.csv" in out
    assert "image file not found" in out and "patient00003/study1/view1_frontal.jpg" in out
    assert "label 'Edema' outside [-1.0, 0.0, 1.0] ('2.0') set to unknown" in out
    m = read_manifest(tmp_path / "c.parquet")
    assert np.isnan(m.df.set_index("subject_id").loc["patient00002", "chexpert/Edema"])
    assert len(m) == 3


def test_missing_root_and_columns_are_clear(tmp_path, capsys):
    assert (
        main(["ingest", "chexpert", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "c.parquet")])
        == 2
    )
    assert "not found" in capsys.readouterr().err
    base = make_chexpert(tmp_path, TRAIN[:1], VALID[:1])
    (base / "valid.csv").write_text(
        "Path,Sex\nCheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,F\n"
    )
    assert main(["ingest", "chexpert", "--root", str(base), "--out", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err
    assert "valid.csv: missing column(s) 'No Finding'" in err
