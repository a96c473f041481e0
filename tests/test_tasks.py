"""Task registry (built-in YAML and user files), targets from manifests, prompt banks and zero-shot scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from moreclip.data.manifest import read_manifest, write_manifest
from moreclip.errors import ConfigError, ManifestError
from moreclip.eval.prompts import ensemble, prompt_bank, zero_shot_scores
from moreclip.eval.tasks import list_tasks, load_task, task_from_dict

CHEXPERT14 = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]


def _manifest(tmp_path, extra: dict, n: int = 6):
    df = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "subject_id": [f"p{i}" for i in range(n)],
            "split": ["train"] * (n - 2) + ["test"] * 2,
            **extra,
        }
    )
    return read_manifest(write_manifest(df, tmp_path / "manifest.parquet"))


def test_every_built_in_task_loads_with_prompts():
    names = list_tasks()
    for expected in ("mimic4", "chexpert5", "chexpert14", "edema-severity", "ptbxl-super", "ptbxl-all",
                     "synthetic-xray", "synthetic-ecg", "synthetic-edema"):  # fmt: skip
        assert expected in names
    for name in names:
        task = load_task(name)
        assert task.name == name and task.modality in ("xray", "ecg")
        assert task.text_kind == f"{task.modality}_report"
        for label in task.labels:
            assert label.positive and label.column.count("/") >= 1
        for c in task.classes:
            assert c.prompts
        assert task.to_dict() == task_from_dict(task.to_dict()).to_dict()  # round trip
        yaml.safe_dump(task.to_dict())  # plain YAML


def test_built_in_label_sets_and_columns():
    assert load_task("chexpert14").names == CHEXPERT14
    assert load_task("chexpert14").columns == [f"chexpert/{o}" for o in CHEXPERT14]
    assert load_task("chexpert5").names == [
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Pleural Effusion",
    ]
    mimic4 = load_task("mimic4")
    assert mimic4.names == ["Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion"]
    assert mimic4.labels[1].negative  # binary labels carry negative prompt ensembles
    assert load_task("ptbxl-super").columns == [f"ptbxl/{s}" for s in ("NORM", "MI", "STTC", "CD", "HYP")]
    edema = load_task("edema-severity")
    assert edema.type == "multiclass" and edema.column == "edema/severity"
    assert [c.value for c in edema.classes] == [0, 1, 2, 3]
    assert load_task("synthetic-edema").classes == edema.classes


def test_unknown_task_lists_the_available_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'chexpert4'.*did you mean 'chexpert1?[45]'.*mimic4"):
        load_task("chexpert4")
    with pytest.raises(ConfigError, match="not found"):
        load_task(tmp_path / "nope.yaml")


def test_user_task_file_with_base_and_own_labels(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "base": "chexpert14",
                "uncertain": "positive",
                "labels": [
                    "Cardiomegaly",
                    {"name": "Nodule", "column": "site/nodule", "positive": ["Lung nodule."], "negative": []},
                ],
            }
        )
    )
    task = load_task(path)
    assert task.modality == "xray" and task.uncertain == "positive" and task.source == str(path)
    assert task.columns == ["chexpert/Cardiomegaly", "site/nodule"]
    assert task.labels[0] == load_task("chexpert14").labels[2]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"name": "x", "modality": "xray", "lables": []}, r"unknown key 'lables' \(did you mean 'labels'"),
        ({"name": "x", "modality": "eeg", "labels": []}, "'modality' must be one of xray, ecg"),
        (
            {"name": "x", "modality": "xray", "type": "multiclass", "column": "a/b", "classes": []},
            "at least 2",
        ),
        (
            {"name": "x", "modality": "xray", "labels": [{"name": "a", "column": "t/a"}]},
            "positive.*at least one",
        ),
        (
            {"name": "x", "modality": "xray", "labels": [{"name": "a", "column": "a", "positive": "A"}]},
            "column",
        ),
        (
            {"name": "x", "modality": "xray", "base": "chexpert5", "labels": ["Fracture"]},
            "not a label of the base",
        ),
        ({"name": "x", "modality": "xray", "labels": []}, "needs 'labels'"),
        (
            {
                "name": "x",
                "modality": "xray",
                "labels": [{"name": "a", "column": "t/a", "positive": ["A"]}] * 2,
            },
            "duplicate label name",
        ),
        (
            {"name": "x", "modality": "ecg", "labels_from": {"prefix": "c/", "positive": ["{nme}"]}},
            "template",
        ),
    ],
)
def test_invalid_task_files_raise_clear_errors(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=match) as e:
        load_task(path)
    assert str(path) in str(e.value)


def test_targets_apply_the_uncertain_policy_and_keep_unknowns(tmp_path):
    m = _manifest(
        tmp_path,
        {
            "chexpert/Cardiomegaly": [1, 0, -1, None, 1, 0],
            "chexpert/Edema": [0, 0, 1, 1, -1, None],
            "chexpert/Atelectasis": [0] * 6,
            "chexpert/Pleural Effusion": [1] * 6,
        },
    )
    task = load_task("mimic4")
    task.check_columns(m)
    y = task.targets(m)
    assert y.shape == (6, 4)
    assert np.array_equal(y[:, 1], [1, 0, np.nan, np.nan, 1, 0], equal_nan=True)  # -1 ignored
    assert np.array_equal(
        task.targets(m, uncertain="positive")[:, 2], [0, 0, 1, 1, 1, np.nan], equal_nan=True
    )
    assert np.array_equal(
        task.targets(m.df, uncertain="negative")[:, 2], [0, 0, 1, 1, 0, np.nan], equal_nan=True
    )


def test_missing_columns_are_named(tmp_path):
    m = _manifest(tmp_path, {"chexpert/Cardiomegaly": [1, 0, 0, 1, 0, 1]})
    with pytest.raises(
        ManifestError, match="'chexpert/Atelectasis', 'chexpert/Edema', 'chexpert/Pleural Effusion'"
    ):
        load_task("mimic4").check_columns(m)
    with pytest.raises(ManifestError, match="manifest.parquet"):
        load_task("mimic4").targets(m)


def test_binary_targets_reject_values_outside_the_domain():
    df = pd.DataFrame({c: [0.0, 1.0] for c in load_task("chexpert5").columns})
    df["chexpert/Edema"] = [0.0, 2.0]
    with pytest.raises(ManifestError, match="chexpert/Edema"):
        load_task("chexpert5").targets(df)


def test_multiclass_targets_are_class_positions(tmp_path):
    m = _manifest(tmp_path, {"edema/severity": [0, 3, None, 2, 1, 1]})
    y = load_task("edema-severity").targets(m)
    assert np.array_equal(y, [0, 3, np.nan, 2, 1, 1], equal_nan=True)
    bad = pd.DataFrame({"edema/severity": [0.0, 5.0]})
    with pytest.raises(ManifestError, match=r"values \[5\].*edema-severity"):
        load_task("edema-severity").targets(bad)


def test_labels_from_keeps_codes_above_the_count_on_the_rows_resolved(tmp_path):
    m = _manifest(
        tmp_path,
        {
            "ptbxl_code/IMI": [1, 1, 0, 1, 0, 0],
            "ptbxl_code/LAO/LAE": [1, 1, 1, 0, 1, 0],
            "ptbxl_code/XYZ": [1, 0, 0, 0, 0, 0],
            "ptbxl/MI": [1, 1, 0, 1, 0, 0],
        },
    )
    task = load_task("ptbxl-all")
    assert not task.is_resolved
    with pytest.raises(ValueError, match="resolve"):
        prompt_bank(task)
    rule_task = task_from_dict(
        {**task.to_dict(), "labels_from": {**task.to_dict()["labels_from"], "min_count": 2}}
    )
    train = rule_task.resolve(m.subset("train"))
    assert train.names == ["IMI", "LAO/LAE"]  # XYZ has 1 positive
    assert train.labels[0].positive == ("Inferior myocardial infarction",)
    assert train.labels[1].positive == ("Left atrial overload or enlargement",)
    assert train.targets(m.subset("test")).shape == (2, 2)  # the train labels, scored on test
    with pytest.raises(ManifestError, match=">= 20 positives"):
        task.resolve(m)
    with pytest.raises(ManifestError, match="no manifest column starts with 'ptbxl_code/'"):
        task.targets(pd.DataFrame({"ptbxl/MI": [1.0]}))


def test_prompt_bank_lists_each_prompt_once_and_indexes_the_ensembles():
    task = load_task("chexpert5")
    bank = prompt_bank(task)
    assert len(bank.texts) == len(set(bank.texts)) and bank.kind == "xray_report"
    for label, pos, neg in zip(task.labels, bank.positive, bank.negative):
        assert [bank.texts[i] for i in pos] == list(label.positive)
        assert [bank.texts[i] for i in neg] == list(label.negative)


def _embed_texts(texts, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return {t: rng.standard_normal(dim) for t in texts}


def test_zero_shot_scores_rank_queries_near_the_positive_prompts_higher():
    task = load_task("mimic4")
    bank = prompt_bank(task)
    table = _embed_texts(bank.texts)
    t = np.stack([table[x] for x in bank.texts])
    pos, neg = ensemble(t, bank.positive), ensemble(t, bank.negative)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (200, 4))
    q = np.where(y[..., None] == 1, pos[None], neg[None]).sum(1) + 0.3 * rng.standard_normal((200, 16))
    s = zero_shot_scores(q, bank, t, scale=10.0)
    assert s.shape == (200, 4) and ((s >= 0) & (s <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert min(roc_auc_score(y[:, j], s[:, j]) for j in range(4)) > 0.9
    # pairwise rule: sigmoid(scale * (q.pos - q.neg)) with normalised queries
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    expected = 1 / (1 + np.exp(-10.0 * (qn @ pos.T - qn @ neg.T)))
    assert np.allclose(s, expected)


def test_zero_shot_scores_without_negatives_and_multiclass_are_softmaxes():
    for name in ("ptbxl-super", "edema-severity"):
        bank = prompt_bank(load_task(name))
        table = _embed_texts(bank.texts, seed=2)
        t = np.stack([table[x] for x in bank.texts])
        q = np.random.default_rng(3).standard_normal((50, 16))
        s = zero_shot_scores(q, bank, t)
        assert s.shape == (50, len(bank.names))
        assert np.allclose(s.sum(1), 1.0)
        centres = ensemble(t, bank.positive)
        assert np.array_equal(s.argmax(1), (q @ centres.T).argmax(1))
    with pytest.raises(ValueError, match="prompts"):
        zero_shot_scores(q, bank, t[:-1])


def test_built_in_tasks_read_the_columns_the_data_adapters_write():
    from moreclip.data import chexpert, edema, ptbxl, synthetic

    assert load_task("chexpert14").columns == [
        chexpert.chexpert_column(o) for o in chexpert.CHEXPERT_OBSERVATIONS
    ]
    assert load_task("chexpert5").names == list(chexpert.COMPETITION_TASKS)
    assert load_task("edema-severity").column == edema.LABEL_COLUMN
    assert load_task("ptbxl-super").columns == [ptbxl.SUPER_PREFIX + s for s in ptbxl.SUPERCLASSES]
    assert load_task("ptbxl-all").labels_from.prefix == ptbxl.CODE_PREFIX
    for name in ("synthetic-xray", "synthetic-ecg", "synthetic-edema"):
        for column in load_task(name).columns:
            assert column.removeprefix("synthetic/") in synthetic.LABELS, column
