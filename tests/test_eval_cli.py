"""The evaluation commands end to end on a miniature PTB-XL tree in the shipped layout: `moreclip ingest
ptbxl` (500 Hz and 100 Hz) -> (`moreclip prepare`) -> a saved tiny model (100 Hz ECG encoder) ->
`moreclip zeroshot` (ptbxl-super, ptbxl-all) / `probe` / `retrieval`. ECG-only data, records without a
diagnostic statement (NaN superclasses), outputs (metrics.json schema, Markdown, PNGs read by Pillow)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from moreclip.cli import main
from moreclip.data.manifest import read_manifest
from tests.eval_helpers import tiny_model
from tests.layouts import make_ptbxl

CODES = [
    ("{'NORM': 100.0, 'SR': 0.0}", "sinus rhythm. normal ecg."),
    (
        "{'IMI': 50.0, 'LVH': 100.0, 'SR': 0.0}",
        "sinus rhythm. inferior infarction, left ventricular hypertrophy.",
    ),
    ("{'NDT': 100.0, 'CLBBB': 0.0, 'SR': 0.0}", "sinusrhythmus linksschenkelblock t-veraenderungen"),
    ("{'PVC': 100.0}", ""),  # no diagnostic statement (superclasses unknown) and no report
]
RECORD_KEYS = {"command", "created", "command_line", "seed", "versions", "model", "data", "task", "results"}


def _records(n=60):
    out = []
    for i in range(n):
        p = i // 2  # two records per patient, folds by patient (patient-disjoint, as PTB-XL's)
        codes, report = CODES[(i + p // 5) % 4]
        out.append({"ecg_id": i + 1, "patient_id": 1000 + p, "scp_codes": codes, "report": report,
                    "strat_fold": 1 + p % 10})  # fmt: skip
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("ptbxl_eval")
    ptb = make_ptbxl(root / "ptb-xl-1.0.3", _records())
    assert main(["-q", "ingest", "ptbxl", "--root", str(ptb), "--out", str(root / "m500.parquet")]) == 0
    assert (
        main(
            [
                "-q",
                "ingest",
                "ptbxl",
                "--root",
                str(ptb),
                "--out",
                str(root / "m100.parquet"),
                "--rate",
                "100",
            ]
        )
        == 0
    )
    model = tiny_model()
    assert model.config.ecg.sample_rate == 100
    model.save_pretrained(root / "ckpt")
    return root


def _png_ok(path):
    with Image.open(path) as im:
        im.load()
        a = np.asarray(im.convert("L"), dtype=float)
    assert a.shape[0] > 100 and a.shape[1] > 100 and a.std() > 5, path


def _record(out):
    rec = json.loads((out / "metrics.json").read_text())
    assert set(rec) == RECORD_KEYS
    assert rec["model"]["source"] == str((out.parent / "ckpt").resolve()) and rec["model"]["name"] == "tiny"
    assert len(rec["model"]["config_sha256"]) == 64 and len(rec["model"]["weights_sha256"]) == 64
    assert len(rec["data"]["sha256"]) == 64 and rec["data"]["config"]["ecg_rate"] == 100
    assert {"moreclip", "torch", "numpy", "scikit-learn", "python"} <= set(rec["versions"])
    md = (out / "metrics.md").read_text()
    assert md.startswith("# ") and "| " in md
    return rec, md


def test_zeroshot_ptbxl_super_on_500hz_records_with_unknown_superclasses(chain):
    out = chain / "zs-super"
    argv = ["zeroshot", "--model", str(chain / "ckpt"), "--manifest", str(chain / "m500.parquet"),
            "--task", "ptbxl-super", "--out", str(out), "--workers", "0", "--bootstrap", "200"]  # fmt: skip
    assert main(["-q", *argv]) == 0
    rec, md = _record(out)
    df = read_manifest(chain / "m500.parquet").df
    test = df[df["split"] == "test"]
    res = rec["results"]
    assert rec["data"]["manifest"].endswith("m500.parquet") and rec["data"]["n"]["test"] == len(test)
    assert res["query"] == "ecg" and res["n"] == len(test) and res["n_missing_query"] == 0
    labelled = int(test["ptbxl/NORM"].notna().sum())
    assert 0 < labelled < len(test)  # some test records have no diagnostic statement
    for name, lab in res["metrics"]["labels"].items():
        assert lab["n"] == labelled, name  # NaN superclasses left out of every label
        lo, hi = lab["auroc"]["ci"]
        assert lo <= lab["auroc"]["value"] <= hi
    assert set(res["metrics"]["labels"]) | set(res["metrics"]["skipped"]) == {
        "NORM",
        "MI",
        "STTC",
        "CD",
        "HYP",
    }
    assert "f1" in res["metrics"]["macro"] and res["val"]["n"] > 0
    assert "macro" in md and "AUROC" in md
    _png_ok(out / "roc.png")
    assert res["prompts"] == {"n": 5, "kind": "ecg_report"}


def test_zeroshot_ptbxl_all_resolves_codes_on_the_training_folds(chain):
    out = chain / "zs-all"
    assert main(["-q", "zeroshot", "--model", str(chain / "ckpt"), "--manifest", str(chain / "m500.parquet"),
                 "--task", "ptbxl-all", "--out", str(out), "--workers", "0", "--no-plots"]) == 0  # fmt: skip
    rec, _ = _record(out)
    df = read_manifest(chain / "m500.parquet").df
    train = df[df["split"] == "train"]
    expected = sorted(
        c.split("/", 1)[1] for c in df if c.startswith("ptbxl_code/") and (train[c] == 1).sum() >= 20
    )
    assert expected == ["SR"]  # 3 of 4 training records; every other code has fewer than 20
    assert rec["results"]["task"]["names"] == expected
    assert not list(out.glob("*.png"))


def test_probe_from_a_100hz_cache_with_subject_level_fractions(chain):
    cache = chain / "cache100"
    assert main(["-q", "prepare", str(chain / "m100.parquet"), "--out", str(cache), "--image-size", "32",
                 "--workers", "1"]) == 0  # fmt: skip
    out = chain / "probe"
    assert main(["-q", "probe", "--model", str(chain / "ckpt"), "--cache", str(cache), "--task", "ptbxl-super",
                 "--fractions", "0.25,1.0", "--seeds", "2", "--out", str(out), "--bootstrap", "100"]) == 0  # fmt: skip
    rec, md = _record(out)
    res = rec["results"]
    assert rec["data"]["cache"] == str(cache.resolve())
    assert res["n"]["train"] == 48 and res["fractions"] == [0.25, 1.0] and res["seeds"] == [0, 1]
    runs = {(r["fraction"], r["seed"]): r for r in res["runs"]}
    assert runs[(1.0, 0)]["n_subjects"] == 24 and runs[(1.0, 0)]["n_samples"] == 48
    assert 6 <= runs[(0.25, 0)]["n_subjects"] < 24
    assert (
        runs[(0.25, 0)]["n_samples"] == 2 * runs[(0.25, 0)]["n_subjects"]
    )  # whole subjects (2 records each)
    assert set(res["summary"]) == {"0.25", "1"}
    assert "labels used" in md
    _png_ok(out / "probe_fractions.png")
    _png_ok(out / "roc.png")


def test_retrieval_ecg_to_report_on_ecg_only_data(chain):
    out = chain / "retr"
    assert main(["-q", "retrieval", "--model", str(chain / "ckpt"), "--manifest", str(chain / "m500.parquet"),
                 "--out", str(out), "--workers", "0", "--pool", "3", "--bootstrap", "100"]) == 0  # fmt: skip
    rec, md = _record(out)
    res = rec["results"]
    assert res["pairs"] == ["ecg:ecg_report"]  # the default: the only pair ECG-only data has
    d = res["metrics"]["ecg:ecg_report"]
    assert set(d) == {"ecg->ecg_report", "ecg_report->ecg"}
    df = read_manifest(chain / "m500.parquet").df
    test = df[df["split"] == "test"]
    with_report = int(test["ecg_report"].fillna("").str.strip().ne("").sum())
    assert d["ecg->ecg_report"]["n_queries"] == with_report and d["ecg->ecg_report"]["n_candidates"] == 3
    assert "R@1" in md
    _png_ok(out / "recall.png")
    with pytest.raises(SystemExit):  # no data source: refused by the parser
        main(["retrieval", "--model", str(chain / "ckpt")])
    # ECG-only data has no X-ray to pair: one clear error (exit 2), not a traceback
    assert main(["retrieval", "--model", str(chain / "ckpt"), "--manifest", str(chain / "m500.parquet"),
                 "--pairs", "xray:ecg", "--out", str(out), "--no-plots"]) == 2  # fmt: skip


def test_missing_matplotlib_is_one_clear_error_and_no_plots_needs_none(chain, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = ["zeroshot", "--model", str(chain / "ckpt"), "--manifest", str(chain / "m500.parquet"),
            "--task", "ptbxl-super", "--workers", "0", "--bootstrap", "0"]  # fmt: skip
    assert main([*argv, "--out", str(chain / "np1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: plots need matplotlib") and "moreclip[viz]" in err and "--no-plots" in err
    assert not (chain / "np1").exists()  # refused before any work
    assert main([*argv, "--out", str(chain / "np2"), "--no-plots"]) == 0
    assert (chain / "np2" / "metrics.json").is_file() and not list((chain / "np2").glob("*.png"))
