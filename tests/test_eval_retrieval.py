"""retrieval: both directions of each pair (against a naive ranking loop), only samples with both members,
default pairs from presence, candidate pools, bad pair names."""

from __future__ import annotations

import numpy as np
import pytest

from moreclip.errors import ConfigError, MoreclipError
from moreclip.eval.embed import Embeddings
from moreclip.eval.retrieval import available_pairs, parse_pairs, retrieval


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _emb(mods: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> Embeddings:
    n = len(next(iter(mods.values())))
    return Embeddings(
        np.array([f"s{i}" for i in range(n)], dtype=object), np.arange(n),
        {m: np.where(masks[m][:, None], x, 0).astype(np.float32) for m, x in mods.items()},
        {m: masks[m] for m in mods}, np.zeros((n, 0), np.float32), [],
    )  # fmt: skip


def _naive_recall(q, c, k):
    hits = 0
    for i in range(len(q)):
        s = c @ q[i]
        rank = 1 + sum(s[j] >= s[i] for j in range(len(c)) if j != i)
        hits += rank <= k
    return hits / len(q)


def test_both_directions_match_a_naive_loop_and_swapping_the_pair_mirrors_them():
    rng = np.random.default_rng(0)
    n = 60
    ecg = _unit(rng.standard_normal((n, 16)))
    rep = _unit(ecg + 0.9 * rng.standard_normal((n, 16)))
    ones = np.ones(n, bool)
    emb = _emb({"ecg": ecg, "ecg_report": rep}, {"ecg": ones, "ecg_report": ones})
    res = retrieval(None, emb, "ecg:ecg_report", n_resamples=0)
    d = res.report["ecg:ecg_report"]
    assert set(d) == {"ecg->ecg_report", "ecg_report->ecg"}
    for k in (1, 5, 10):
        assert d["ecg->ecg_report"][f"recall@{k}"]["value"] == pytest.approx(_naive_recall(ecg, rep, k))
        assert d["ecg_report->ecg"][f"recall@{k}"]["value"] == pytest.approx(_naive_recall(rep, ecg, k))
    for name, q, c in (("ecg->ecg_report", ecg, rep), ("ecg_report->ecg", rep, ecg)):
        s = q @ c.T
        ranks = [(s[i] >= s[i, i]).sum() for i in range(n)]  # the match counts itself once
        assert d[name]["mean_rank"] == pytest.approx(np.mean(ranks)) and d[name]["median_rank"] == np.median(
            ranks
        )
    swapped = retrieval(None, emb, ["ecg_report:ecg"], n_resamples=0).report["ecg_report:ecg"]
    assert (
        swapped["ecg_report->ecg"] == d["ecg_report->ecg"]
        and swapped["ecg->ecg_report"] == d["ecg->ecg_report"]
    )
    same = retrieval(
        None, _emb({"ecg": ecg, "ecg_report": ecg}, {"ecg": ones, "ecg_report": ones}), "ecg:ecg_report"
    )
    for m in same.report["ecg:ecg_report"].values():
        assert m["recall@1"]["value"] == 1.0 and m["median_rank"] == 1.0 and m["recall@1"]["ci"] == [1.0, 1.0]


def test_only_samples_with_both_modalities_count_and_default_pairs_follow_presence():
    rng = np.random.default_rng(1)
    n = 30
    x = {m: _unit(rng.standard_normal((n, 8))) for m in ("xray", "ecg", "ecg_report")}
    masks = {"xray": np.arange(n) < 20, "ecg": np.arange(n) >= 12, "ecg_report": np.arange(n) % 2 == 0}
    masks["xray"][:19] = False  # a single sample (19) has an X-ray and an ECG ... and no report
    emb = _emb(x, masks)
    assert available_pairs(emb.masks) == [("ecg", "ecg_report")]
    assert available_pairs(emb.masks, min_rows=1) == [("xray", "ecg"), ("ecg", "ecg_report")]
    res = retrieval(None, emb, n_resamples=0)
    assert res.pairs == ["ecg:ecg_report"]
    assert res.report["ecg:ecg_report"]["ecg->ecg_report"]["n_queries"] == 9  # even rows >= 12
    res = retrieval(None, emb, "xray:ecg,ecg:ecg_report", n_resamples=0)
    assert res.skipped == {"xray:ecg": "1 sample(s) with both xray and ecg"} and res.pairs == [
        "ecg:ecg_report"
    ]
    with pytest.raises(MoreclipError, match="no retrieval pair"):
        retrieval(None, emb, "xray:ecg")


def test_candidate_pool_limits_the_ranks():
    rng = np.random.default_rng(2)
    n = 200
    a = _unit(rng.standard_normal((n, 8)))
    ones = np.ones(n, bool)
    emb = _emb(
        {"xray": a, "xray_report": _unit(rng.standard_normal((n, 8)))}, {"xray": ones, "xray_report": ones}
    )
    full = retrieval(None, emb, "xray:xray_report", n_resamples=0).report["xray:xray_report"][
        "xray->xray_report"
    ]
    pooled = retrieval(None, emb, "xray:xray_report", pool=10, n_resamples=0)
    p = pooled.report["xray:xray_report"]["xray->xray_report"]
    assert p["n_candidates"] == 10 and full["n_candidates"] == n
    assert p["recall@10"]["value"] == 1.0 and abs(p["recall@1"]["value"] - 0.1) < 0.07  # random: 1 in 10
    assert full["median_rank"] > 50
    with pytest.raises(ConfigError, match="pool"):
        retrieval(None, emb, "xray:xray_report", pool=1)


@pytest.mark.parametrize("bad", ["xray", "xray:xray", "xray:cxr", "", ":ecg"])
def test_bad_pairs_are_clear_errors(bad):
    with pytest.raises(ConfigError):
        parse_pairs(bad)


def test_pair_lists_parse():
    assert parse_pairs("xray:xray_report, ecg:ecg_report") == [("xray", "xray_report"), ("ecg", "ecg_report")]
    assert parse_pairs(["xray:ecg"]) == [("xray", "ecg")]
    assert parse_pairs(None) is None
