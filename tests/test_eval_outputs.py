"""Evaluation outputs: JSON without NaN, Markdown figures, ROC points against scikit-learn, PNGs read back by
Pillow, and a multi-class fused zero-shot run through the Python API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sklearn.metrics import roc_curve

from moreclip.data.manifest import write_manifest
from moreclip.eval import plots as P
from moreclip.eval.results import fmt, write_json
from moreclip.eval.runs import evaluate_zero_shot
from tests.eval_helpers import mixed_cohort, tiny_model


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        a = np.asarray(im.convert("L"), dtype=float)
    assert a.std() > 5  # not blank
    return a


def test_json_has_null_for_nan_and_plain_numbers(tmp_path):
    p = write_json(
        tmp_path / "m.json", {"a": np.float32(0.5), "b": float("nan"), "c": np.arange(2), "d": [np.inf]}
    )
    assert json.loads(p.read_text()) == {"a": 0.5, "b": None, "c": [0, 1], "d": [None]}


def test_fmt_of_values_intervals_and_seed_summaries():
    assert fmt({"value": 0.91234, "ci": [0.9, 0.93]}) == "0.912 [0.900, 0.930]"
    assert fmt({"value": None, "ci": [None, None]}) == "–"
    assert (
        fmt({"mean": 0.5, "std": 0.01, "ci": [0.4, 0.6], "values": [0.5]}) == "0.500 ± 0.010 [0.400, 0.600]"
    )
    assert fmt(None) == "–"


def test_roc_points_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(float)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    fpr, tpr = P.roc_points(y, s)
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def test_plots_decode_and_are_not_blank(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (200, 20)).astype(float)
    y[:10, 0] = np.nan
    s = rng.random((200, 20)) + 0.5 * y
    few = _png(P.plot_roc(tmp_path / "few.png", y[:, :3], s[:, :3], list("abc"), "t", {"a": 0.7}))
    many = _png(P.plot_roc(tmp_path / "many.png", y, s, [f"l{i}" for i in range(20)], "t"))  # no legend
    assert few.shape[0] > 200 and many.shape[0] > 200
    assert P.plot_roc(tmp_path / "none.png", np.ones((5, 1)), np.ones((5, 1)), ["x"]) is None
    summary = {"0.01": {"macro": {"auroc": {"mean": 0.6, "std": 0.05, "ci": [0.5, 0.7]}}},
               "1": {"macro": {"auroc": {"mean": 0.8, "std": 0.0, "ci": [0.75, 0.85]}}}}  # fmt: skip
    _png(P.plot_probe_fractions(tmp_path / "fr.png", summary, "auroc", "probe"))
    rep = {"a:b": {"a->b": {"recall@1": {"value": 0.2, "ci": [0.1, 0.3]}, "recall@5": {"value": 0.6}},
                   "b->a": {"recall@1": {"value": 0.3, "ci": [0.2, 0.4]}, "recall@5": {"value": 0.7}}}}  # fmt: skip
    _png(P.plot_recall(tmp_path / "r.png", rep, [1, 5], "retrieval"))
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_multiclass_fused_zero_shot_through_the_api_writes_every_output(tmp_path):
    manifest = mixed_cohort(tmp_path / "c", n=16)
    df = pd.read_parquet(manifest)
    df["demo/grade"] = np.arange(len(df)) % 3
    write_manifest(df, manifest, label_domains={"demo/grade": [0, 1, 2]})
    task = tmp_path / "grade.yaml"
    task.write_text(yaml.safe_dump({"name": "grade", "modality": "xray", "type": "multiclass", "column": "demo/grade",
                                    "classes": [{"value": v, "name": f"g{v}", "prompts": [f"Grade {v} edema."]}
                                                for v in range(3)]}))  # fmt: skip
    model = tiny_model()
    res, out = evaluate_zero_shot(model, task=str(task), manifest=manifest, split="train", val_split="val",
                                  fuse=True, out=tmp_path / "out", num_workers=0, n_resamples=50,
                                  progress=False, argv=["moreclip", "zeroshot"])  # fmt: skip
    train = df[df["split"] == "train"]
    neither = train["xray_path"].isna() & train["ecg_path"].isna()
    assert res.multiclass and res.query == "xray+ecg"
    assert res.n_missing == int(neither.sum()) == 1 and res.n_total == len(train)  # either modality counts
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["command_line"] == "moreclip zeroshot" and rec["model"]["source"] is None
    assert rec["results"]["metrics"]["accuracy"]["value"] == pytest.approx(
        float(np.mean(res.scores.argmax(1) == res.targets))
    )
    assert "accuracy" in (out / "metrics.md").read_text()
    _png(out / "roc.png")
