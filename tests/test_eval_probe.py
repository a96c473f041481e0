"""Linear probe: subject-level nested label fractions with class coverage, C chosen on validation (checked
against independent scikit-learn fits), multi-label skips, multi-class, and the seed summary."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from moreclip.eval.embed import Embeddings
from moreclip.eval.probe import linear_probe, sample_subjects
from moreclip.eval.tasks import task_from_dict


def _task(names, multiclass=False):
    if multiclass:
        return task_from_dict({"name": "mc", "modality": "ecg", "type": "multiclass", "column": "t/grade",
                               "classes": [{"value": v, "name": f"c{v}", "prompts": ["x"]} for v in range(3)]})  # fmt: skip
    return task_from_dict(
        {
            "name": "ml",
            "modality": "ecg",
            "labels": [{"name": n, "column": f"t/{n}", "positive": ["x"]} for n in names],
        }
    )


def _data(n=600, d=16, n_labels=3, seed=0, rows_per_subject=3, splits=(0.6, 0.2, 0.2)):
    """Features with a linear signal for each label; subjects own consecutive rows, splits by subject."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, n_labels))
    Y = ((X @ W) / np.sqrt(d) + 0.7 * rng.standard_normal((n, n_labels)) > 0.3).astype(float)
    subj = np.array([f"p{i // rows_per_subject}" for i in range(n)], dtype=object)
    n_subj = (n + rows_per_subject - 1) // rows_per_subject
    cut = np.cumsum(np.array(splits) * n_subj).astype(int)
    sidx = np.arange(n) // rows_per_subject
    split = np.where(sidx < cut[0], "train", np.where(sidx < cut[1], "val", "test")).astype(object)
    return X, Y, subj, split


def _emb(X, Y, names, subj, split):
    n = len(X)
    return Embeddings(np.array([f"s{i}" for i in range(n)], dtype=object), np.arange(n),
                      {"ecg": X.astype(np.float32)}, {"ecg": np.ones(n, bool)}, Y.astype(np.float32),
                      [f"t/{x}" for x in names], subj, split)  # fmt: skip


def test_subject_sampling_is_nested_whole_subject_seeded_and_covers_both_classes():
    rng = np.random.default_rng(0)
    subj = np.repeat([f"p{i}" for i in range(200)], rng.integers(1, 4, 200))
    y = np.zeros((len(subj), 2))
    y[:, 0] = rng.random(len(subj)) < 0.3
    rare = np.flatnonzero(subj == "p137")  # one subject holds the only positives of label 1
    y[rare, 1] = 1
    y[rng.random(len(subj)) < 0.1, 0] = np.nan
    fr = [0.01, 0.1, 0.5, 1.0]
    a = sample_subjects(subj, y, fr, seed=3)
    assert [s["fraction"] for s in a] == fr
    sets = [set(subj[s["rows"]]) for s in a]
    for s, chosen in zip(a, sets):  # whole subjects: every row of a chosen subject, no other row
        assert set(np.flatnonzero(np.isin(subj, list(chosen)))) == set(s["rows"].tolist())
        assert s["n_subjects"] == len(chosen)
        for j in range(2):  # both classes of both labels, even at 1 %
            assert {0.0, 1.0} <= set(y[s["rows"], j][~np.isnan(y[s["rows"], j])])
    assert all(x <= y_ for x, y_ in zip(sets, sets[1:]))  # nested
    assert a[0]["n_subjects"] <= 2 + 2 and a[0]["n_added_subjects"] >= 1  # 1 % of 200 = 2, plus coverage
    assert a[1]["n_subjects"] in (20, 21, 22) and a[-1]["n_subjects"] == 200
    again = sample_subjects(subj, y, fr, seed=3)
    assert all(np.array_equal(p["rows"], q["rows"]) for p, q in zip(a, again))
    other = sample_subjects(subj, y, fr, seed=4)
    assert set(subj[other[1]["rows"]]) != sets[1]
    with pytest.raises(Exception, match=r"\(0, 1\]"):
        sample_subjects(subj, y, [0.0], seed=0)


def test_C_is_chosen_on_validation_and_test_scores_match_an_independent_fit():
    names = ["a", "b", "c"]
    X, Y, subj, split = _data()
    res = linear_probe(
        None, _emb(X, Y, names, subj, split), _task(names), fractions=[1.0], seeds=1, n_resamples=0
    )
    run = res.runs[0]
    tr, va, te = (split == s for s in ("train", "val", "test"))
    mu, sd = X[tr].mean(0), X[tr].std(0)
    Z = (X - mu) / sd
    grid = [0.001, 0.01, 0.1, 1.0, 10.0]
    for j, name in enumerate(names):
        fits = [
            LogisticRegression(C=C, class_weight="balanced", max_iter=2000).fit(Z[tr], Y[tr, j]) for C in grid
        ]
        val_auc = [roc_auc_score(Y[va, j], f.decision_function(Z[va])) for f in fits]
        best = int(np.argmax(np.round(val_auc, 6)))
        assert run["C"][name] == grid[best], (name, val_auc)
        ref = roc_auc_score(Y[te, j], fits[best].decision_function(Z[te]))
        assert res.summary["1"]["labels"][name]["auroc"]["mean"] == pytest.approx(ref, abs=2e-3)
    assert run["n_subjects"] == len(set(subj[tr])) and run["n_samples"] == int(tr.sum())
    assert res.summary["1"]["macro"]["auroc"]["mean"] > 0.75


def test_fractions_and_seeds_summarised_with_mean_std_and_interval():
    names = ["a", "b"]
    X, Y, subj, split = _data(n=900, n_labels=2, seed=1)
    res = linear_probe(None, _emb(X, Y, names, subj, split), _task(names), fractions=[0.05, 1.0], seeds=3,
                       n_resamples=200)  # fmt: skip
    assert [(r["fraction"], r["seed"]) for r in res.runs] == [(f, s) for s in range(3) for f in (0.05, 1.0)]
    small, full = res.summary["0.05"]["macro"]["auroc"], res.summary["1"]["macro"]["auroc"]
    assert len(small["values"]) == 3 and small["std"] > 0  # different subjects per seed
    assert full["std"] == pytest.approx(0.0, abs=1e-12)  # all subjects: the same fit for every seed
    assert full["mean"] > small["mean"]
    lo, hi = full["ci"]
    assert lo <= full["mean"] <= hi
    assert "f1" in res.summary["1"]["macro"]  # thresholds chosen on val
    assert res.curve["scores"].shape == (int((split == "test").sum()), 2)


def test_a_label_with_one_class_in_training_is_skipped_and_reported():
    names = ["a", "b"]
    X, Y, subj, split = _data(n=300, n_labels=2, seed=2)
    Y[split == "train", 1] = 0  # no training positive at all: impossible to probe
    res = linear_probe(None, _emb(X, Y, names, subj, split), _task(names), fractions=[0.5, 1.0], seeds=1,
                       n_resamples=0)  # fmt: skip
    for r in res.runs:
        assert r["skipped"] == {"b": "one class only in the training subset"}
        assert set(r["report"]["labels"]) == {"a"} and "b" in r["report"]["skipped"]
    assert "b" not in res.summary["1"]["labels"]


def test_multiclass_probe_is_multinomial_over_all_classes():
    rng = np.random.default_rng(3)
    n = 450
    y = np.arange(n) % 3
    X = rng.standard_normal((n, 8)) + 3.0 * np.eye(8)[y]
    _, _, subj, split = _data(n=n, d=8, n_labels=1)
    Y = y[:, None].astype(float)
    Y[::17] = np.nan
    res = linear_probe(None, _emb(X, Y, ["grade"], subj, split), _task(None, True), fractions=[0.02, 1.0],
                       seeds=2, n_resamples=0)  # fmt: skip
    full = res.summary["1"]["macro"]
    assert full["accuracy"]["mean"] > 0.8 and full["macro_auroc"]["mean"] > 0.9
    np.testing.assert_allclose(res.curve["scores"].sum(1), 1.0, atol=1e-9)
    assert res.curve["scores"].shape[1] == 3
    tr = split == "train"
    for r in res.runs:
        assert isinstance(r["C"], float)  # one C for the multinomial model
        sub = sample_subjects(subj[tr], Y[tr, 0], [r["fraction"]], r["seed"], classes=range(3))[0]
        assert sub["n_subjects"] == r["n_subjects"]
        assert set(Y[tr, 0][sub["rows"]][~np.isnan(Y[tr, 0][sub["rows"]])]) == {0.0, 1.0, 2.0}
