from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from moreclip.cli import main
from moreclip.config import CANONICAL_LEADS
from moreclip.data.ecg import read_ecg
from moreclip.data.manifest import read_manifest, write_manifest
from moreclip.data.validate import validate_manifest
from moreclip.errors import ManifestError
from tests.helpers import make_cohort, make_ecg


def test_round_trip_keeps_columns_roots_and_domains(tmp_path):
    path = make_cohort(tmp_path / "cohort")
    m = read_manifest(path)
    assert len(m) == 4 and m.df["sample_id"].tolist() == ["s0", "s1", "s2", "s3"]
    assert m.label_columns == ["demo/finding", "demo/severity"]
    assert m.label_domain("demo/severity") == (0, 1, 2, 3)
    assert m.xray_file(0) == (tmp_path / "cohort" / "xray" / "s0.png").resolve()
    # the root is stored relative, so the cohort folder can move as a whole
    shutil.move(tmp_path / "cohort", tmp_path / "moved")
    m2 = read_manifest(tmp_path / "moved" / "manifest.parquet")
    assert m2.xray_file(1).is_file() and (tmp_path / "moved" / "ecg" / "s1.hea").is_file()
    assert (
        pd.read_parquet(tmp_path / "moved" / "manifest.parquet")["split"].tolist() == m.df["split"].tolist()
    )


def test_valid_cohort_passes(tmp_path):
    m = read_manifest(make_cohort(tmp_path))
    report = validate_manifest(m, progress=False)
    assert report.ok, report.format()
    assert report.summary["splits"]["train"]["rows"] == 2
    assert report.summary["labels"]["demo/finding"]["positive_rate"] == 0.5
    # a graded column (declared domain 0-3) counts any grade above 0 and lists the grades
    assert report.summary["labels"]["demo/severity"]["positive_rate"] == 0.75
    assert report.summary["labels"]["demo/severity"]["counts"] == {"0": 1, "1": 1, "2": 1, "3": 1}


def test_missing_required_column_is_clear(tmp_path):
    pd.DataFrame({"sample_id": ["a"], "split": ["train"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="lacks required column.*subject_id"):
        read_manifest(tmp_path / "m.parquet")


def test_ecg_reader_reorders_leads_by_name(tmp_path):
    order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]  # MIMIC-IV-ECG order
    rec = make_ecg(tmp_path / "r", leads=[n.upper() for n in order])
    import wfdb

    raw = wfdb.rdrecord(str(rec)).p_signal.T
    ecg = read_ecg(rec)
    assert ecg.signal.shape == (12, 5000) and ecg.fs == 500
    for i, lead in enumerate(CANONICAL_LEADS):
        np.testing.assert_allclose(ecg.signal[i], raw[order.index(lead)], atol=1e-6)


def _corrupt(tmp_path):
    """A cohort with one defect per row, each of the kinds validate must catch."""
    root = tmp_path / "bad"
    path = make_cohort(root, n=8)
    m = read_manifest(path)
    df = m.df
    (root / "xray" / "s0.png").unlink()  # row 0: missing file
    dat = root / "ecg" / "s1.dat"  # row 1: truncated .dat
    dat.write_bytes(dat.read_bytes()[:1000])
    (root / "xray" / "s2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)  # row 2: corrupt PNG
    make_ecg(root / "ecg" / "s3", leads=CANONICAL_LEADS[:11])  # row 3: 11 leads
    sig = np.zeros((12, 5000))
    sig[4, 100:200] = np.nan
    from moreclip.data.ecg import write_ecg

    write_ecg(root / "ecg" / "s4", sig, 500)  # row 4: NaN samples
    df.loc[5, "sample_id"] = "s6"  # row 5/6: duplicate id
    df.loc[7, "subject_id"] = "p0"  # row 7: subject p0 also in row 0's split
    df.loc[7, "split"] = "test"
    write_manifest(df, path)
    return path


def test_validate_names_each_bad_row(tmp_path):
    report = validate_manifest(read_manifest(_corrupt(tmp_path)), progress=False)
    assert not report.ok
    by_row = {}
    for p in report.problems:
        by_row.setdefault(p.row, []).append(str(p))
    assert "image file not found" in " ".join(by_row[0]) and "s0.png" in " ".join(by_row[0])
    assert "truncated" in " ".join(by_row[1]) and "s1.dat" in " ".join(by_row[1])
    assert "does not decode" in " ".join(by_row[2]) or "not a recognised image" in " ".join(by_row[2])
    assert "11 leads" in " ".join(by_row[3]) and "missing V6" in " ".join(by_row[3])
    assert "NaN" in " ".join(by_row[4]) and "aVL" in " ".join(by_row[4])
    assert "duplicate id 's6'" in " ".join(by_row[6])
    assert "several splits" in " ".join(by_row[7]) and "several splits" in " ".join(by_row[0])


def test_validate_cli_exits_nonzero_without_traceback(tmp_path, capsys):
    path = _corrupt(tmp_path)
    rc = main(["validate", str(path), "--json", str(tmp_path / "v.json"), "--workers", "2"])
    out = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out.out + out.err
    assert "FAILED" in out.out and "s1.dat" in out.out
    import json

    data = json.loads((tmp_path / "v.json").read_text())
    assert data["ok"] is False and data["n_bad_rows"] == 7  # rows 0-4, 6 (duplicate of 5), 7


def test_validate_cli_ok_and_report_text_not_printed(tmp_path, capsys):
    path = make_cohort(tmp_path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OK: 4 rows" in out
    assert "clear lungs" not in out  # report contents are never logged


def test_validate_missing_manifest_is_one_line_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: manifest not found") and "Traceback" not in err


def test_corrupt_jpeg_and_16bit_png(tmp_path):
    from moreclip.data.image import read_image
    from moreclip.errors import RecordError

    a = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "x16.png")
    img = read_image(tmp_path / "x16.png")
    assert img.dtype == np.uint8 and img.max() == 255 and img.min() == 0
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "x.jpg")
    data = (tmp_path / "x.jpg").read_bytes()
    (tmp_path / "x.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordError, match="x.jpg"):
        read_image(tmp_path / "x.jpg")
