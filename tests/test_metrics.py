"""Metrics against scikit-learn and naive references; bootstrap intervals; retrieval ranks."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn import metrics as skm

from moreclip.eval.metrics import (
    accuracy,
    apply_thresholds,
    apply_uncertain,
    auroc,
    average_precision,
    best_f1_threshold,
    f1_at_threshold,
    macro_f1,
    multiclass_report,
    multilabel_report,
    select_thresholds,
)
from moreclip.eval.retrieval_metrics import recall_at_k, retrieval_ranks, retrieval_report


def _binary(rng, n, ties=False):
    y = rng.integers(0, 2, n)
    s = rng.standard_normal(n) + 0.8 * y
    return y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_average_precision_match_sklearn(ties):
    rng = np.random.default_rng(0)
    for n in (7, 50, 1000):
        y, s = _binary(rng, n, ties)
        assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_auroc_is_nan_with_a_single_class_and_rejects_bad_input():
    assert np.isnan(auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0 or 1"):
        auroc([1, -1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        auroc([1, 0], [np.nan, 0.2])


def test_f1_threshold_chosen_on_validation_matches_sklearn_and_an_exhaustive_search():
    rng = np.random.default_rng(1)
    y, s = _binary(rng, 300, ties=True)
    thr, best = best_f1_threshold(y, s)
    assert best == pytest.approx(skm.f1_score(y, s >= thr))
    assert f1_at_threshold(y, s, thr) == pytest.approx(best)
    exhaustive = max(skm.f1_score(y, s >= t) for t in np.unique(s))
    assert best == pytest.approx(exhaustive)
    # applied to another split, it is the plain F1 of the thresholded predictions
    y2, s2 = _binary(rng, 200)
    assert f1_at_threshold(y2, s2, thr) == pytest.approx(skm.f1_score(y2, s2 >= thr))


def test_select_and_apply_thresholds_per_label_mask_unknowns():
    rng = np.random.default_rng(2)
    t = rng.integers(0, 2, (200, 3)).astype(float)
    s = rng.standard_normal((200, 3)) + t
    t[:20, 1] = np.nan
    t[:, 2] = 0  # no positives: no threshold
    thr = select_thresholds(t, s)
    assert np.isnan(thr[2]) and np.isfinite(thr[:2]).all()
    assert thr[1] == best_f1_threshold(t[20:, 1], s[20:, 1])[0]
    pred = apply_thresholds(s, thr)
    assert pred.shape == (200, 3) and set(np.unique(pred[:, 0])) <= {0, 1}


def test_accuracy_and_macro_f1_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 4, 500))
    p[p == 3] = 2  # class 3 never predicted: F1 0 for it, as in sklearn
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    assert macro_f1(y, p) == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_uncertain_policy_maps_minus_one():
    y = np.array([1, 0, -1, np.nan])
    assert np.array_equal(apply_uncertain(y, "ignore"), [1, 0, np.nan, np.nan], equal_nan=True)
    assert np.array_equal(apply_uncertain(y, "positive"), [1, 0, 1, np.nan], equal_nan=True)
    assert np.array_equal(apply_uncertain(y, "negative"), [1, 0, 0, np.nan], equal_nan=True)
    with pytest.raises(ValueError, match="uncertain"):
        apply_uncertain(y, "maybe")


def test_multilabel_report_masks_unknowns_per_label_and_reports_skipped_labels():
    rng = np.random.default_rng(4)
    n = 400
    t = rng.integers(0, 2, (n, 4)).astype(float)
    s = rng.standard_normal((n, 4)) + t
    t[rng.random(n) < 0.2, 0] = np.nan
    t[rng.random(n) < 0.1, 1] = -1
    t[:, 3] = 1  # single class: skipped
    r = multilabel_report(t, s, ["a", "b", "c", "d"], n_resamples=200)
    ok = ~np.isnan(t[:, 0])
    assert r["labels"]["a"]["auroc"]["value"] == pytest.approx(skm.roc_auc_score(t[ok, 0], s[ok, 0]))
    ok = t[:, 1] >= 0
    assert r["labels"]["b"]["n"] == ok.sum()
    assert r["labels"]["b"]["auprc"]["value"] == pytest.approx(
        skm.average_precision_score(t[ok, 1], s[ok, 1])
    )
    assert "d" in r["skipped"] and "single class" in r["skipped"]["d"]
    assert r["macro"]["n_labels"] == 3
    per = [r["labels"][k]["auroc"]["value"] for k in "abc"]
    assert r["macro"]["auroc"]["value"] == pytest.approx(np.mean(per))
    # uncertain mapped to positive changes what label b is scored on
    r2 = multilabel_report(t, s, ["a", "b", "c", "d"], uncertain="positive", n_resamples=0)
    assert r2["labels"]["b"]["n"] == n and "ci" not in r2["labels"]["b"]["auroc"]


def test_report_without_usable_labels_skips_them_all():
    r = multilabel_report(np.full((5, 2), np.nan), np.zeros((5, 2)), ["a", "b"], n_resamples=10)
    assert r["skipped"] == {"a": "no labelled rows", "b": "no labelled rows"}
    assert r["macro"]["n_labels"] == 0 and r["macro"]["auroc"]["value"] is None
    empty = multilabel_report(np.zeros((0, 1)), np.zeros((0, 1)), n_resamples=10)
    assert empty["labels"] == {} and empty["macro"]["auroc"]["ci"] == [None, None]


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n():
    widths = []
    for n in (300, 3000):
        rng = np.random.default_rng(5)
        t = rng.integers(0, 2, (n, 2)).astype(float)
        s = rng.standard_normal((n, 2)) + t
        thr = select_thresholds(t, s)
        r = multilabel_report(t, s, thresholds=thr, n_resamples=300, seed=0)
        for m in ("auroc", "auprc", "f1"):
            lo, hi = r["macro"][m]["ci"]
            assert lo <= r["macro"][m]["value"] <= hi
        lo, hi = r["labels"]["label0"]["auroc"]["ci"]
        widths.append(hi - lo)
    assert widths[1] < widths[0] * 0.6  # ~ 1/sqrt(10)
    # seeded: the same intervals again
    assert multilabel_report(t, s, n_resamples=50, seed=3) == multilabel_report(t, s, n_resamples=50, seed=3)


def test_bootstrap_of_many_labels_is_fast():
    rng = np.random.default_rng(6)
    n, n_labels = 3000, 15
    t = rng.integers(0, 2, (n, n_labels)).astype(float)
    s = rng.standard_normal((n, n_labels)) + t
    start = time.process_time()
    multilabel_report(t, s, n_resamples=1000)
    assert time.process_time() - start < 30  # ~3 s of CPU on a laptop core; a quadratic loop takes minutes


def test_multiclass_report_matches_sklearn():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 600)
    s = rng.standard_normal((600, 4))
    s[np.arange(600), y] += 1.0
    s = np.exp(s) / np.exp(s).sum(1, keepdims=True)  # probabilities, as sklearn's OvR AUROC wants
    yf = y.astype(float)
    yf[:10] = np.nan  # unknown rows are dropped
    r = multiclass_report(yf, s, ["none", "mild", "moderate", "severe"], n_resamples=100)
    yk, sk = y[10:], s[10:]
    assert r["n"] == 590
    assert r["accuracy"]["value"] == pytest.approx(skm.accuracy_score(yk, sk.argmax(1)))
    assert r["macro_f1"]["value"] == pytest.approx(skm.f1_score(yk, sk.argmax(1), average="macro"))
    assert r["macro_auroc"]["value"] == pytest.approx(skm.roc_auc_score(yk, sk, multi_class="ovr"))
    lo, hi = r["accuracy"]["ci"]
    assert lo <= r["accuracy"]["value"] <= hi


def _naive_ranks(sim, pool_sets=None):
    ranks = []
    for i in range(sim.shape[0]):
        cands = range(sim.shape[1]) if pool_sets is None else pool_sets[i]
        ranks.append(1 + sum(1 for j in cands if j != i and sim[i, j] >= sim[i, i]))
    return np.array(ranks)


def test_retrieval_ranks_and_recall_match_a_naive_loop():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((60, 8))
    b = a + rng.standard_normal((60, 8))
    sim = np.round(a @ b.T, 0)  # rounding makes ties, which count against the query
    ranks = retrieval_ranks(sim)
    assert np.array_equal(ranks, _naive_ranks(sim))
    rec = recall_at_k(ranks, (1, 5, 10))
    for k in (1, 5, 10):
        assert rec[k] == pytest.approx(np.mean([r <= k for r in _naive_ranks(sim)]))
    rep = retrieval_report(sim, names=("xray", "ecg"))
    assert rep["xray->ecg"]["recall@5"]["value"] == pytest.approx(rec[5])
    assert np.array_equal(retrieval_ranks(sim.T), _naive_ranks(sim.T))
    assert rep["ecg->xray"]["median_rank"] == np.median(_naive_ranks(sim.T))


def test_constant_similarities_give_worst_ranks_not_perfect_recall():
    ranks = retrieval_ranks(np.zeros((20, 20)))
    assert (ranks == 20).all()
    assert recall_at_k(ranks, (1,))[1] == 0


def test_candidate_pool_ranks_each_query_among_its_true_match_and_pool_minus_one_others():
    rng = np.random.default_rng(9)
    sim = rng.standard_normal((300, 300))
    sim[np.arange(300), np.arange(300)] += 1.5
    ranks = retrieval_ranks(sim, pool=10, seed=1)
    assert ranks.min() >= 1 and ranks.max() <= 10
    assert np.array_equal(ranks, retrieval_ranks(sim, pool=10, seed=1))  # seeded
    assert not np.array_equal(ranks, retrieval_ranks(sim, pool=10, seed=2))
    # expected rank among 10 is ~ 1 + 9 * P(distractor >= true): compare with the full ranking
    full = retrieval_ranks(sim)
    assert np.mean(ranks) == pytest.approx(1 + 9 * np.mean((full - 1) / 299), rel=0.15)
    assert np.array_equal(retrieval_ranks(sim, pool=1000), full)  # pool >= N: all candidates
    rep = retrieval_report(sim, pool=10, n_resamples=100)
    assert rep["query->candidate"]["n_candidates"] == 10
    lo, hi = rep["query->candidate"]["recall@1"]["ci"]
    assert lo <= rep["query->candidate"]["recall@1"]["value"] <= hi


def test_retrieval_rejects_non_square_or_bad_input():
    with pytest.raises(ValueError, match="square"):
        retrieval_report(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="match"):
        retrieval_ranks(np.zeros((5, 3)))
