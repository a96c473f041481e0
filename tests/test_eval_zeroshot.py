"""zero_shot: known answers by construction (queries equal to the prompt ensembles), chance level on random
embeddings, and the full pipeline from WFDB files through the Dataset with an ECG encoder whose answer is
known (it reads the signal's dominant frequency)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from moreclip.data.ecg import write_ecg
from moreclip.data.manifest import write_manifest
from moreclip.errors import MoreclipError
from moreclip.eval.embed import Embeddings, data_config_for, embed_texts, eval_dataset
from moreclip.eval.metrics import auroc
from moreclip.eval.prompts import ensemble, prompt_bank
from moreclip.eval.tasks import task_from_dict
from moreclip.eval.zeroshot import zero_shot
from tests.eval_helpers import tiny_model

TASK = task_from_dict(
    {
        "name": "known",
        "modality": "ecg",
        "labels": [
            {"name": "tachy", "column": "demo/tachy", "positive": ["Sinus tachycardia", "Tachycardia"],
             "negative": ["Sinus rhythm", "Normal ECG"]},
            {"name": "afib", "column": "demo/afib", "positive": ["Atrial fibrillation"],
             "negative": ["Regular sinus rhythm"]},
        ],
    }
)  # fmt: skip
MULTI = task_from_dict(
    {
        "name": "grade",
        "modality": "xray",
        "type": "multiclass",
        "column": "demo/grade",
        "classes": [
            {"value": 0, "name": "none", "prompts": ["No pulmonary edema."]},
            {"value": 1, "name": "mild", "prompts": ["Mild pulmonary edema.", "Interstitial edema."]},
            {"value": 2, "name": "severe", "prompts": ["Severe alveolar pulmonary edema."]},
        ],
    }
)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _embeddings(queries: dict[str, np.ndarray], labels: np.ndarray, names, splits=None) -> Embeddings:
    n = len(labels)
    return Embeddings(
        sample_ids=np.array([f"s{i}" for i in range(n)], dtype=object),
        rows=np.arange(n),
        embeddings={m: q.astype(np.float32) for m, q in queries.items()},
        masks={m: np.linalg.norm(q, axis=1) > 0 for m, q in queries.items()},
        labels=labels.astype(np.float32),
        label_names=list(names),
        subject_ids=np.array([f"p{i}" for i in range(n)], dtype=object),
        splits=splits,
    )


def test_queries_equal_to_the_prompt_ensembles_score_auroc_and_f1_of_one(model):
    bank = prompt_bank(TASK)
    text = embed_texts(model, bank.texts, bank.kind)
    pos, neg = ensemble(text, bank.positive), ensemble(text, bank.negative)
    rng = np.random.default_rng(0)
    n = 40
    which = np.arange(n) % 2  # each sample is labelled for one of the two labels, the other is unknown
    y = rng.integers(0, 2, n)
    labels = np.full((n, 2), np.nan)
    labels[np.arange(n), which] = y
    q = np.where(y[:, None] == 1, pos[which], neg[which])
    data, val = _embeddings({"ecg": q}, labels, ["demo/tachy", "demo/afib"]), None
    val = _embeddings({"ecg": q[::-1]}, labels[::-1], ["demo/tachy", "demo/afib"])
    res = zero_shot(model, data, TASK, val=val, n_resamples=200)
    for name in ("tachy", "afib"):
        lab = res.report["labels"][name]
        assert lab["auroc"]["value"] == 1.0 and lab["auprc"]["value"] == 1.0 and lab["f1"]["value"] == 1.0
        assert lab["n"] == 20
    assert res.report["macro"]["auroc"]["ci"] == [1.0, 1.0]
    assert res.scale == pytest.approx(float(model.temperature_scale().detach()))
    assert res.val["n"] == n and set(res.val["thresholds"]) == {"tachy", "afib"}
    # the same query set scored through the other modality name is refused: there is no xray
    with pytest.raises(MoreclipError, match="xray"):
        zero_shot(model, data, TASK, modality="xray")


def test_multiclass_queries_at_their_class_prompts_are_all_classified_right(model):
    bank = prompt_bank(MULTI)
    cls = ensemble(embed_texts(model, bank.texts, bank.kind), bank.positive)
    y = np.arange(30) % 3
    res = zero_shot(model, _embeddings({"xray": cls[y]}, y[:, None], ["demo/grade"]), MULTI, n_resamples=0)
    assert res.report["accuracy"]["value"] == 1.0 and res.report["macro_f1"]["value"] == 1.0
    assert res.report["macro_auroc"]["value"] == 1.0
    np.testing.assert_allclose(res.scores.sum(1), 1.0, atol=1e-9)


def test_random_embeddings_score_at_chance(model):
    rng = np.random.default_rng(1)
    n = 4000
    labels = rng.integers(0, 2, (n, 2)).astype(float)
    data = _embeddings(
        {"ecg": rng.standard_normal((n, model.embed_dim))}, labels, ["demo/tachy", "demo/afib"]
    )
    res = zero_shot(model, data, TASK, n_resamples=0)
    assert abs(res.report["macro"]["auroc"]["value"] - 0.5) < 0.04
    assert "f1" not in res.report["macro"]  # no validation split: no threshold, no F1


def test_fused_query_averages_xray_and_ecg_and_uses_either_alone(model):
    bank = prompt_bank(TASK)
    text = embed_texts(model, bank.texts, bank.kind)
    pos, neg = ensemble(text, bank.positive)[0], ensemble(text, bank.negative)[0]
    n = 12
    y = np.arange(n) % 2
    target = np.where(y[:, None] == 1, pos, neg)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((n, len(pos)))
    # X-ray = target + noise, ECG = target - noise: only their mean is the clean target
    xray, ecg = target + noise, target - noise
    xray[0], ecg[1] = 0, 0  # row 0 has only an ECG, row 1 only an X-ray
    ecg[0], xray[1] = target[0], target[1]
    labels = np.stack([y, np.full(n, np.nan)], 1)
    data = _embeddings({"xray": xray, "ecg": ecg}, labels, ["demo/tachy", "demo/afib"])
    fused = zero_shot(model, data, TASK, fuse=True, n_resamples=0)
    assert fused.query == "xray+ecg" and fused.n_missing == 0
    assert fused.report["labels"]["tachy"]["auroc"]["value"] == 1.0


def _sine_cohort(root, n=16):
    """ECGs at 500 Hz whose every lead is a 7 Hz (positive) or 2 Hz (negative) sine; no ECG at i % 7 == 6;
    label unknown at i % 5 == 3."""
    rows = []
    t = np.arange(5000) / 500
    (root / "ecg").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pos = i % 2
        row = {"sample_id": f"s{i}", "subject_id": f"p{i}", "split": "test" if i < 10 else "val"}
        if i % 7 != 6:
            sig = np.tile(np.sin(2 * np.pi * (7 if pos else 2) * t), (12, 1)) * (0.5 + 0.05 * i)
            write_ecg(root / "ecg" / f"s{i}", sig.astype(np.float32), 500)
            row["ecg_path"] = f"ecg/s{i}"
        row["demo/tachy"] = np.nan if i % 5 == 3 else float(pos)
        row["demo/afib"] = float(i % 3 == 0)
        rows.append(row)
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet")


def test_full_pipeline_from_wfdb_files_with_an_encoder_whose_answer_is_known(model, tmp_path, monkeypatch):
    manifest = _sine_cohort(tmp_path)
    bank = prompt_bank(TASK)
    text = embed_texts(model, bank.texts, bank.kind)
    pos, neg = (
        torch.from_numpy(ensemble(text, bank.positive)[0]),
        torch.from_numpy(ensemble(text, bank.negative)[0]),
    )
    seen = []

    def fake_encode_ecg(x, normalize=True):  # (B, 12, T) at the model's 100 Hz -> the prompt it matches
        seen.append(tuple(x.shape))
        spec = torch.fft.rfft(x[:, 0], dim=-1).abs()
        freq = spec[:, 1:].argmax(1).float() + 1  # bins of 0.1 Hz over 10 s
        return torch.stack([pos if f > 45 else neg for f in freq])

    monkeypatch.setattr(model, "encode_ecg", fake_encode_ecg)
    cfg = data_config_for(model, manifest=manifest, overrides=["num_workers=0"])
    res = zero_shot(model, eval_dataset(cfg, "test"), TASK, val=eval_dataset(cfg, "val"), n_resamples=100)
    assert {s[1:] for s in seen} == {(12, 1000)}  # resampled to 100 Hz x 10 s for the model
    tachy = res.report["labels"]["tachy"]
    assert tachy["auroc"]["value"] == 1.0 and tachy["f1"]["value"] == 1.0
    assert res.n_total == 10 and res.n_missing == 1  # s6 has no ECG
    assert tachy["n"] == 7  # and s3, s8 have an unknown label
    assert res.sample_ids.tolist() == [f"s{i}" for i in range(10) if i != 6]
    afib_truth = np.array([float(i % 3 == 0) for i in range(10) if i != 6])
    assert res.report["labels"]["afib"]["auroc"]["value"] == pytest.approx(
        auroc(afib_truth, res.scores[:, 1])
    )
