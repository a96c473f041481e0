"""``moreclip index build | add | search | info`` on a synthetic cohort: results equal exact search over
independently computed embeddings, a saved index reloads to the same results, ``add`` indexes only new
rows, and a missing modality or another model's weights are clear one-line errors."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch

from moreclip.cli import main
from moreclip.data.manifest import read_manifest, write_manifest
from moreclip.data.synthetic import generate_cohort
from moreclip.explain import ecg_input, xray_input
from moreclip.index import VectorIndex
from moreclip.index.model_index import add_to_index, build_index, index_model, search_index
from moreclip.models import create_model
from tests.tiny_text import tiny_text_backbone

SMALL = {
    "embed_dim": 32,
    "xray": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    "ecg": {"embed_dim": 32, "depth": 2, "num_heads": 2},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    full = read_manifest(generate_cohort(root / "cohort", 16, seed=5, image_size=64, progress=False))
    parts = {}
    for name, rows in (("first", slice(0, 12)), ("second", slice(8, 16))):  # rows 8-11 in both
        df = full.df.iloc[rows].reset_index(drop=True)
        parts[name] = write_manifest(
            df, root / f"{name}.parquet", xray_root=full.xray_root, ecg_root=full.ecg_root
        )
    torch.manual_seed(0)
    model = create_model("tiny", **SMALL, text={"model_name": tiny_text_backbone(root / "bert")}).eval()
    ckpt = model.save_pretrained(root / "model")
    with torch.no_grad():
        model.logit_scale += 1.0  # other weights: another model
    other = model.save_pretrained(root / "other")
    with torch.no_grad():
        model.logit_scale -= 1.0
    build_index(ckpt, full, progress=False).save(root / "idx")
    return {"root": root, "full": full, "model": model, "ckpt": ckpt, "other": other, **parts}


def cli_json(capsys, *args) -> dict:
    assert main(["index", "search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_search_equals_exact_search_over_independent_embeddings(setup, capsys):
    s, out = setup, setup["root"] / "idx"
    man, model = s["full"], s["model"]
    rows = np.flatnonzero(man.has("xray"))
    with torch.no_grad():
        zx = torch.cat([model.encode_xray(xray_input(man.xray_file(i), model).tensor) for i in rows]).numpy()
        q = model.encode_text(["moderate left pleural effusion"], kind="xray_report").numpy()[0]
    sims = zx @ q
    order = np.argsort(-sims)[:5]
    res = cli_json(capsys, "--index", str(out), "--text", "moderate left pleural effusion", "--target", "xray",
                   "--k", "5")  # fmt: skip
    assert [h["sample_id"] for h in res["hits"]] == man.df["sample_id"].to_numpy()[rows][order].tolist()
    assert np.allclose([h["score"] for h in res["hits"]], sims[order], atol=1e-5)
    assert res["hits"][0]["excerpt"] == man.df["xray_report"].iat[rows[order[0]]][:200]

    e_rows = np.flatnonzero(man.has("ecg_report"))
    with torch.no_grad():
        qe = model.encode_ecg(ecg_input(man.ecg_record(3), model).tensor).numpy()[0]
        zr = model.encode_text(man.df["ecg_report"].iloc[e_rows].tolist(), kind="ecg_report").numpy()
    res = cli_json(
        capsys, "--index", str(out), "--ecg", str(man.ecg_record(3)), "--target", "ecg_report", "--k", "3"
    )
    assert [h["sample_id"] for h in res["hits"]] == man.df["sample_id"].to_numpy()[e_rows][
        np.argsort(-(zr @ qe))[:3]
    ].tolist()


def test_report_target_merges_both_report_modalities_by_score(setup, capsys):
    out = setup["root"] / "idx"
    res = cli_json(capsys, "--index", str(out), "--text", "sinus tachycardia", "--k", "30")
    hits = res["hits"]
    assert res["target"] == "report" and len(hits) == 30
    assert {h["modality"] for h in hits} == {"xray_report", "ecg_report"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and [h["rank"] for h in hits] == list(range(1, 31))
    index = VectorIndex.load(out)
    model = index_model(index)
    for m in ("xray_report", "ecg_report"):
        alone = search_index(index, model, m, 30, text="sinus tachycardia")
        mine = [(h["sample_id"], h["score"]) for h in hits if h["modality"] == m]
        assert [sid for sid, _ in mine] == alone["sample_id"].tolist()[: len(mine)]


def test_a_saved_index_reloads_to_the_same_results_and_add_takes_only_new_rows(setup, capsys, caplog):
    s = setup
    part = s["root"] / "part"
    with caplog.at_level(logging.INFO):
        assert main(["index", "build", "--model", str(s["ckpt"]), "--manifest", str(s["first"]), "--out", str(part),
                     "--no-progress"]) == 0  # fmt: skip
    first = read_manifest(s["first"])
    assert f"xray: {first.has('xray').sum()} (flat)" in capsys.readouterr().out
    before = cli_json(
        capsys, "--index", str(part), "--text", "no acute process", "--target", "xray", "--k", "4"
    )
    assert before == cli_json(
        capsys, "--index", str(part), "--text", "no acute process", "--target", "xray", "--k", "4"
    )

    with caplog.at_level(logging.INFO):
        assert (
            main(["index", "add", "--index", str(part), "--manifest", str(s["second"]), "--no-progress"]) == 0
        )
    new_xrays = s["full"].has("xray")[12:].sum()  # rows 8-11 are indexed already
    assert f"xray: +{new_xrays} -> {s['full'].has('xray').sum()}" in capsys.readouterr().out
    reports = s["full"].df["xray_report"].dropna().tolist() + s["full"].df["ecg_report"].dropna().tolist()
    assert not any(r[:40] in caplog.text for r in reports)  # nothing about report contents is logged
    grown = VectorIndex.load(part)
    full = VectorIndex.load(s["root"] / "idx")
    for m in full.modalities:
        assert sorted(grown.metadata(m)["sample_id"]) == sorted(full.metadata(m)["sample_id"])
    after = cli_json(
        capsys, "--index", str(part), "--text", "no acute process", "--target", "ecg", "--k", "16"
    )
    same = cli_json(capsys, "--index", str(s["root"] / "idx"), "--text", "no acute process", "--target", "ecg",
                    "--k", "16")  # fmt: skip
    assert [h["sample_id"] for h in after["hits"]] == [h["sample_id"] for h in same["hits"]]
    assert np.allclose([h["score"] for h in after["hits"]], [h["score"] for h in same["hits"]], atol=1e-6)
    recorded = json.loads((part / "index.json").read_text())["model"]["manifests"]
    assert recorded == [str(s["first"].resolve()), str(s["second"].resolve())]


def test_missing_modality_and_other_weights_are_clear_errors(setup, capsys):
    s = setup
    xo = s["root"] / "xray_only"
    index = build_index(s["ckpt"], s["first"], ["xray", "xray_report"], progress=False)
    index.save(xo)
    assert main(["index", "search", "--index", str(xo), "--ecg", str(s["full"].ecg_record(0))]) == 2
    assert "no ecg vectors to search (it holds: xray, xray_report)" in capsys.readouterr().err
    assert main(["index", "search", "--index", str(xo), "--text", "x", "--target", "ecg_report"]) == 2
    assert "no ecg_report vectors" in capsys.readouterr().err
    res = cli_json(capsys, "--index", str(xo), "--text", "effusion", "--k", "3")  # report: the one it has
    assert {h["modality"] for h in res["hits"]} == {"xray_report"}
    assert main(["index", "search", "--index", str(xo), "--text", "x", "--model", str(s["other"])]) == 2
    assert "weights differ" in capsys.readouterr().err
    assert main(["index", "build", "--model", "tiny", "--manifest", str(s["first"]), "--out", str(xo)]) == 2
    assert "not a model checkpoint" in capsys.readouterr().err
    assert main(["index", "search", "--index", str(s["root"] / "nothing"), "--text", "x"]) == 2
    assert "index.json missing" in capsys.readouterr().err


def test_table_output_shows_excerpts_unless_asked_not_to(setup, capsys):
    s = setup
    index = VectorIndex.load(s["root"] / "idx")
    added = add_to_index(index, s["model"], s["full"], progress=False)
    assert set(added.values()) == {0}  # everything is there already
    args = ["index", "search", "--index", str(s["root"] / "idx"), "--text", "pleural effusion", "--target", "xray",
            "--k", "3"]  # fmt: skip
    assert main(args) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["rank", "score", "sample_id", "modality", "split", "excerpt"]
    assert "FINDINGS:" in table and len(table.splitlines()) == 4
    assert main([*args, "--no-excerpt"]) == 0
    table = capsys.readouterr().out
    assert "excerpt" not in table and "FINDINGS" not in table
    assert main(["index", "info", "--index", str(s["root"] / "idx")]) == 0
    info = capsys.readouterr().out
    assert "xray_report" in info and str(s["ckpt"].resolve()) in info


def test_a_missing_faiss_is_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert main(["index", "info", "--index", str(tmp_path)]) == 2
    assert "pip install 'moreclip[index]'" in capsys.readouterr().err
