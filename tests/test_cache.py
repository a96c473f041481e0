from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moreclip.cli import main
from moreclip.config import CANONICAL_LEADS
from moreclip.data.cache import INCOMPLETE, CacheError, open_cache
from moreclip.data.ecg import write_ecg
from moreclip.data.manifest import read_manifest, write_manifest
from moreclip.data.prepare import FAULT_ENV, prepare_cache
from moreclip.data.preprocess import PreprocessOptions, load_ecg, load_xray
from moreclip.errors import RecordError
from tests.helpers import make_ecg, make_png

ROOT = Path(__file__).resolve().parents[1]
OPTS = PreprocessOptions.from_config(image_size=32, ecg_rate=100)


def _cohort(root: Path, n: int = 8) -> Path:
    """``n`` rows with images of different shapes, every 3rd without ECG, every 4th without X-ray."""
    rows = []
    for i in range(n):
        row = {"sample_id": f"s{i}", "subject_id": f"p{i}", "split": ["train", "val", "test"][i % 3]}
        if i % 4 != 3:
            make_png(root / "xray" / f"s{i}.png", size=40 + 8 * i, seed=i)
            row["xray_path"] = f"xray/s{i}.png"
        if i % 3 != 2:
            make_ecg(root / "ecg" / f"s{i}", seed=i)
            row["ecg_path"] = f"ecg/s{i}"
        row["xray_report"] = f"FINDINGS: case {i}. IMPRESSION: fine." if i % 2 == 0 else None
        row["ecg_report"] = "Sinus rhythm." if i != 5 else None
        row["demo/finding"] = float(i % 2) if i != 4 else None
        rows.append(row)
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet")


def _arrays_bytes(cache: Path) -> dict[str, bytes]:
    return {name: (cache / name).read_bytes() for name in ("xray.npy", "ecg.npy")}


def test_cache_holds_the_preprocessed_records_and_reads_without_raw_files(tmp_path):
    manifest = _cohort(tmp_path / "cohort")
    m = read_manifest(manifest)
    res = prepare_cache(manifest, tmp_path / "cache", OPTS, shard_size=3, progress=False)
    assert res.counts["xray"] == 6 and res.counts["ecg"] == 6 and res.problems == []
    expected_x = [load_xray(m.xray_file(i), OPTS) if m.xray_file(i) else None for i in range(8)]
    expected_e = [load_ecg(m.ecg_record(i), OPTS)[0] if m.ecg_record(i) else None for i in range(8)]
    shutil.rmtree(tmp_path / "cohort")  # reading needs none of the raw files
    c = open_cache(tmp_path / "cache")
    x, e = c.array("xray"), c.array("ecg")
    assert x.dtype == np.uint8 and x.shape == (8, 32, 32)
    assert e.dtype == np.float16 and e.shape == (8, 12, 1000)
    for i in range(8):
        if expected_x[i] is None:
            assert not c.has("xray")[i] and not x[i].any()
        else:
            np.testing.assert_array_equal(x[i], expected_x[i])
        if expected_e[i] is None:
            assert not c.has("ecg")[i] and not e[i].any()
        else:
            np.testing.assert_array_equal(e[i], expected_e[i].astype(np.float16))
    idx = c.index
    assert idx["sample_id"].tolist() == [f"s{i}" for i in range(8)] and idx["row"].tolist() == list(range(8))
    assert idx["has_xray_report"].tolist() == [i % 2 == 0 for i in range(8)]
    assert idx["has_ecg_report"].tolist() == [i != 5 for i in range(8)]
    assert c.label_columns == ["demo/finding"] and np.isnan(idx["demo/finding"][4])
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["complete"] and meta["options"]["image_size"] == 32 and len(meta["source"]["sha256"]) == 64
    assert {"numpy", "opencv", "wfdb"} <= set(meta["versions"])
    assert not (tmp_path / "cache" / "shards").exists()


def test_killed_prepare_resumes_to_the_same_bytes(tmp_path):
    manifest = _cohort(tmp_path / "cohort")
    ref = prepare_cache(manifest, tmp_path / "ref", OPTS, shard_size=2, workers=2, progress=False)
    assert ref.shards_total == 4
    env = {**os.environ, FAULT_ENV: "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "moreclip", "-q", "prepare", str(manifest), "--out", str(tmp_path / "c")]
    cmd += ["--image-size", "32", "--workers", "1", "--shard-size", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # SIGKILLed after the first shard
    assert len(list((tmp_path / "c" / "shards").glob("*.json"))) == 1
    with pytest.raises(CacheError, match=INCOMPLETE):
        open_cache(tmp_path / "c")
    assert main(["prepare", str(manifest), "--out", str(tmp_path / "c"), "--image-size", "48"]) == 2
    # other options on an incomplete cache are refused too; the same options resume, in its shard size
    res = prepare_cache(manifest, tmp_path / "c", OPTS, workers=2, progress=False)
    assert res.shards_done_before == 1 and not res.up_to_date
    assert _arrays_bytes(tmp_path / "c") == _arrays_bytes(tmp_path / "ref")
    pd.testing.assert_frame_equal(open_cache(tmp_path / "c").index, open_cache(tmp_path / "ref").index)


def test_rerun_is_a_noop_and_other_options_need_overwrite(tmp_path, capsys):
    manifest = _cohort(tmp_path / "cohort", n=4)
    out = tmp_path / "cache"
    assert main(["-q", "prepare", str(manifest), "--out", str(out), "--image-size", "32"]) == 0
    stamp = (out / "meta.json").stat().st_mtime_ns, (out / "xray.npy").stat().st_mtime_ns
    res = prepare_cache(manifest, out, OPTS, progress=False)
    assert res.up_to_date and stamp == (
        (out / "meta.json").stat().st_mtime_ns,
        (out / "xray.npy").stat().st_mtime_ns,
    )
    capsys.readouterr()
    assert main(["-q", "prepare", str(manifest), "--out", str(out), "--image-size", "48", "--clahe"]) == 2
    err = capsys.readouterr().err
    assert (
        "error:" in err
        and "image_size 32 -> 48" in err
        and "clahe False -> True" in err
        and "--overwrite" in err
    )
    args = ["-q", "prepare", str(manifest), "--out", str(out), "--image-size", "48", "--overwrite"]
    assert main(args) == 0
    assert open_cache(out).array("xray").shape == (4, 48, 48)


def test_refuses_to_write_into_a_foreign_directory(tmp_path):
    manifest = _cohort(tmp_path / "cohort", n=2)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not a moreclip cache"):
        prepare_cache(manifest, tmp_path / "busy", OPTS, progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(CacheError, match="no meta.json"):
        open_cache(tmp_path / "busy")


def _bad_cohort(root: Path) -> Path:
    manifest = _cohort(root, n=6)
    df = read_manifest(manifest).df
    (root / "xray" / "s0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # corrupt image
    (root / "ecg" / "s1.dat").unlink()  # signal file gone
    make_ecg(root / "ecg" / "s3", leads=CANONICAL_LEADS[:11])  # 11 leads
    make_ecg(root / "ecg" / "s4", seconds=8)  # wrong duration
    sig = np.sin(np.linspace(0, 60, 5000))[None].repeat(12, 0)
    sig[2, :40] = np.nan
    write_ecg(root / "ecg" / "s5", sig, 500)  # a few NaNs: repaired and reported
    df.loc[3, "ecg_path"], df.loc[4, "ecg_path"], df.loc[5, "ecg_path"] = "ecg/s3", "ecg/s4", "ecg/s5"
    return write_manifest(df, manifest)


def test_bad_records_are_reported_and_skipped(tmp_path, capsys):
    manifest = _bad_cohort(tmp_path / "cohort")
    out = tmp_path / "cache"
    assert main(["prepare", str(manifest), "--out", str(out), "--image-size", "32", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "4 record(s) skipped, 1 ECG(s) with NaN set to 0" in printed
    problems = pd.read_csv(out / "problems.csv")
    by_row = {(r.row, r.modality): r for r in problems.itertuples()}
    assert set(by_row) == {(0, "xray"), (1, "ecg"), (3, "ecg"), (4, "ecg"), (5, "ecg")}
    assert by_row[0, "xray"].file.endswith("s0.png") and "not a recognised image" in by_row[0, "xray"].problem
    assert by_row[1, "ecg"].file.endswith("s1.dat") and "not found" in by_row[1, "ecg"].problem
    assert "11 leads" in by_row[3, "ecg"].problem and "missing V6" in by_row[3, "ecg"].problem
    assert "expected 10 s" in by_row[4, "ecg"].problem
    assert by_row[5, "ecg"].action == "nan_to_zero" and "40 NaN" in by_row[5, "ecg"].problem
    assert {r.action for k, r in by_row.items() if k != (5, "ecg")} == {"skipped"}
    c = open_cache(out)
    assert c.has("xray").tolist() == [False, True, True, False, True, True]
    assert c.has("ecg").tolist() == [True, False, False, False, False, True]
    assert not c.array("xray")[0].any() and np.isfinite(c.array("ecg")[5]).all()
    assert c.meta["counts"]["skipped"] == 4 and c.meta["counts"]["repaired"] == 1


def test_strict_aborts_on_the_first_bad_record(tmp_path, capsys):
    manifest = _bad_cohort(tmp_path / "cohort")
    out = tmp_path / "cache"
    with pytest.raises(RecordError, match=r"s0\.png: .*row 0, sample s0; --strict"):
        prepare_cache(manifest, out, OPTS, strict=True, progress=False)
    with pytest.raises(CacheError, match=INCOMPLETE):
        open_cache(out)
    assert (
        main(["-q", "prepare", str(manifest), "--out", str(tmp_path / "c2"), "--strict", "--workers", "2"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--strict" in err and "Traceback" not in err


def test_prepare_takes_its_options_from_a_config_file_and_flags_win(tmp_path):
    manifest = _cohort(tmp_path / "cohort", n=3)
    (tmp_path / "c.yaml").write_text("data:\n  image_size: 40\n  ecg_rate: 250\n  clahe: true\n")
    args = [
        "-q",
        "prepare",
        str(manifest),
        "--out",
        str(tmp_path / "cache"),
        "--config",
        str(tmp_path / "c.yaml"),
    ]
    assert main([*args, "--ecg-rate", "200", "--fit", "crop"]) == 0
    c = open_cache(tmp_path / "cache")
    assert (c.options.image_size, c.options.ecg_rate, c.options.clahe, c.options.xray_fit) == (
        40,
        200,
        True,
        "crop",
    )
    assert c.array("ecg").shape == (3, 12, 2000) and c.array("xray").shape == (3, 40, 40)
