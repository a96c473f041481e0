"""Classification metrics with bootstrap confidence intervals, model-independent and vectorised (numpy).

Every metric is written once, for a matrix of per-row *weights* ``W (B, N)``: the point estimate uses one
row of ones, and a bootstrap resample is the same computation with the multinomial counts of the rows it
drew. So 1,000 resamples of AUROC over thousands of rows are a few array operations per label, and the
figures match scikit-learn's definitions exactly (the tests compare them):

- AUROC: probability that a positive scores above a negative, ties counted one half (Mann-Whitney U).
- AUPRC: average precision, ``sum_g (R_g - R_{g-1}) P_g`` over distinct score thresholds ``g``.
- F1 at a threshold: a row is predicted positive when ``score >= threshold``; the threshold is chosen on
  the validation split by :func:`best_f1_threshold` / :func:`select_thresholds`, then applied on test.
- Multi-class accuracy, macro-F1 (over the classes present in ``y_true`` or ``y_pred``), and one-vs-rest
  macro AUROC.

Labels: 1 positive, 0 negative, NaN unknown (always excluded for that label), -1 uncertain, which the
``uncertain`` policy maps (:func:`apply_uncertain`): ``"ignore"`` (default: excluded, CheXpert's U-Ignore),
``"positive"`` (U-Ones) or ``"negative"`` (U-Zeros). A label whose usable rows hold a single class has no
AUROC; it is left out of the macro averages and reported under ``"skipped"`` with the reason.

Confidence intervals: percentile bootstrap (default 1,000 resamples, seeded). Rows are resampled jointly
across labels, so the interval of a macro average accounts for the correlation between labels; a label
that has a single class in one resample is left out of that resample's average.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

UNCERTAIN_POLICIES = ("ignore", "positive", "negative")
#: bootstrap weights are generated in chunks of at most this many (resample, row) entries
_CHUNK_ELEMS = 2_000_000


# ------------------------------------------------------------------------------------------- inputs
def apply_uncertain(y: np.ndarray, uncertain: str = "ignore") -> np.ndarray:
    """Map uncertain labels (-1) by policy; returns a float copy with NaN for every unusable entry.

    Args:
        y: labels of any shape holding 1, 0, -1 (uncertain) or NaN (unknown).
        uncertain: ``"ignore"`` (-1 -> NaN), ``"positive"`` (-1 -> 1) or ``"negative"`` (-1 -> 0).
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}")
    out = np.array(y, dtype=np.float64, copy=True)
    out[out == -1] = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    return out


def _binary_inputs(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but y_score has {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("y_score holds NaN or infinite values")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"binary labels must be 0 or 1 (mask NaN / -1 first), found {np.unique(y[bad])}")
    return y, s


# ------------------------------------------------------------------------- weighted binary metrics
class _Ranked:
    """One binary label's rows sorted by descending score, with groups of tied scores.

    ``rows`` are the columns of the weight matrices this label reads (default: all ``n``).
    """

    def __init__(self, y: np.ndarray, s: np.ndarray, rows: np.ndarray | None = None):
        order = np.argsort(-s, kind="mergesort")  # (n,)
        self.cols = order if rows is None else rows[order]
        self.y = y[order]
        self.s = s[order]
        self.starts = np.flatnonzero(np.r_[True, self.s[1:] != self.s[:-1]])  # (G,) first row of each group

    def counts(self, Ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight per score group, descending: two (B, G) arrays.

        ``Ws (B, n)`` are weights already in this label's sorted order (``W[:, self.cols]``).
        """
        pos = Ws * self.y
        if self.starts.size == self.y.size:  # no tied scores: every row is its own group
            return pos, Ws - pos
        return np.add.reduceat(pos, self.starts, axis=1), np.add.reduceat(Ws - pos, self.starts, axis=1)

    def auroc_ap(self, Ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AUROC and average precision per weight row: two (B,) arrays, NaN where a class is absent."""
        P, N = self.counts(Ws)  # (B, G)
        tp, fp = np.cumsum(P, axis=1), np.cumsum(N, axis=1)  # rows with score >= group score
        tot_p, tot_n = tp[:, -1], fp[:, -1]  # (B,)
        with np.errstate(invalid="ignore", divide="ignore"):
            # each positive of group g beats the negatives scored lower and ties half of its own group's
            auc = (P * (tot_n[:, None] - fp + 0.5 * N)).sum(1) / (tot_p * tot_n)
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
            ap = (P * precision).sum(1) / tot_p
        auc[(tot_p == 0) | (tot_n == 0)] = np.nan
        ap[tot_p == 0] = np.nan
        return auc, ap


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1e-300), 0.0)


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve of binary labels ``(N,)`` and scores ``(N,)``; NaN with a single class."""
    y, s = _binary_inputs(y_true, y_score)
    return float(_Ranked(y, s).auroc_ap(np.ones((1, y.size)))[0][0])


def average_precision(y_true, y_score) -> float:
    """Average precision (area under the precision-recall curve, step rule); NaN without positives."""
    y, s = _binary_inputs(y_true, y_score)
    return float(_Ranked(y, s).auroc_ap(np.ones((1, y.size)))[1][0])


def f1_at_threshold(y_true, y_score, threshold: float) -> float:
    """Binary F1 predicting positive where ``score >= threshold`` (0 when there is nothing to score)."""
    y, s = _binary_inputs(y_true, y_score)
    pred = s >= threshold
    tp, fp, fn = (pred & (y == 1)).sum(), (pred & (y == 0)).sum(), (~pred & (y == 1)).sum()
    return float(_f1(np.float64(tp), np.float64(fp), np.float64(fn)))


def best_f1_threshold(y_true, y_score) -> tuple[float, float]:
    """The score threshold that maximises F1 on these rows (use the validation split) and that F1.

    Candidates are the distinct scores (predict positive where ``score >= t``); on ties of F1 the highest
    threshold wins. Returns ``(nan, nan)`` when the rows hold no positive.
    """
    y, s = _binary_inputs(y_true, y_score)
    r = _Ranked(y, s)
    P, N = r.counts(np.ones((1, y.size)))
    tp, fp = np.cumsum(P[0]), np.cumsum(N[0])
    if tp[-1] == 0:
        return float("nan"), float("nan")
    f1 = _f1(tp, fp, tp[-1] - tp)
    g = int(np.argmax(f1))
    return float(r.s[r.starts[g]]), float(f1[g])


def select_thresholds(targets, scores, uncertain: str = "ignore") -> np.ndarray:
    """Per-label F1-maximising thresholds ``(L,)`` from validation ``targets``/``scores`` ``(N, L)``.

    Unknown / uncertain entries are masked per label (policy as in :func:`apply_uncertain`); a label
    without positives gets NaN (its F1 is then not reported).
    """
    t = apply_uncertain(np.atleast_2d(targets), uncertain)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    out = np.full(t.shape[1], np.nan)
    for j in range(t.shape[1]):
        ok = ~np.isnan(t[:, j])
        if ok.any():
            out[j] = best_f1_threshold(t[ok, j], s[ok, j])[0]
    return out


def apply_thresholds(scores, thresholds) -> np.ndarray:
    """Binary predictions ``(N, L)`` (int 0/1): ``scores (N, L) >= thresholds (L,)``."""
    return (np.asarray(scores) >= np.asarray(thresholds)[None, :]).astype(np.int64)


# ------------------------------------------------------------------------------------- multi-class
def _class_inputs(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} entries but y_pred has {p.size}")
    return y, p


def _weighted_class_metrics(y, p, classes, W) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 (over ``classes``; a class absent from a resample is left out): (B,) each."""
    acc = (W @ (y == p)) / W.sum(1)
    f1s = []
    for c in classes:
        tp, pred, true = W @ ((y == c) & (p == c)), W @ (p == c), W @ (y == c)
        den = pred + true
        f1s.append(np.where(den > 0, 2 * tp / np.maximum(den, 1e-300), np.nan))
    with np.errstate(invalid="ignore"), _quiet():
        return acc, np.nanmean(np.stack(f1s, 1), axis=1)


def accuracy(y_true, y_pred) -> float:
    """Fraction of rows where ``y_pred == y_true``."""
    y, p = _class_inputs(y_true, y_pred)
    return float(np.mean(y == p))


def macro_f1(y_true, y_pred, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: classes present in y_true or y_pred)."""
    y, p = _class_inputs(y_true, y_pred)
    classes = np.unique(np.r_[y, p]) if labels is None else np.asarray(labels)
    return float(_weighted_class_metrics(y, p, classes, np.ones((1, y.size)))[1][0])


# --------------------------------------------------------------------------------------- bootstrap
class _quiet:
    """Silence numpy's 'mean of empty slice' warnings inside nan-reductions."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def bootstrap_weights(n: int, n_resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield the row counts of bootstrap resamples of ``n`` rows in chunks, ``(b, n)`` float64 each.

    Deterministic for a given ``(n, n_resamples, seed)``; memory is bounded by the chunk size.
    """
    rng = np.random.default_rng(seed)
    per = max(1, min(n_resamples, _CHUNK_ELEMS // max(n, 1)))
    done = 0
    while done < n_resamples:
        b = min(per, n_resamples - done)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, n_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Evaluate ``statistic(W)`` on the point weights and on resamples.

    Args:
        statistic: maps row weights ``W (B, n)`` to ``(B,)`` or ``(B, M)`` values.
        n: number of rows.
        n_resamples: bootstrap resamples (0: point estimate only).
        seed: seed of the resampling.

    Returns:
        ``(1 + n_resamples, ...)``: row 0 the point estimate, then one row per resample (none when n = 0).
    """
    parts = [np.asarray(statistic(np.ones((1, n))))]
    if n_resamples > 0 and n > 0:
        parts += [np.asarray(statistic(W)) for W in bootstrap_weights(n, n_resamples, seed)]
    return np.concatenate(parts, axis=0)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap ``samples (R, ...)`` ignoring NaN resamples: (low, high)."""
    a = (1 - level) / 2 * 100
    with _quiet():
        return np.nanpercentile(samples, a, axis=0), np.nanpercentile(samples, 100 - a, axis=0)


def _summary(values: np.ndarray, level: float, with_ci: bool) -> dict:
    """{"value": point, "ci": [low, high]} for one metric column ``values (1 + R,)``."""
    point = float(values[0])
    out: dict = {"value": None if np.isnan(point) else point}
    if with_ci:
        lo, hi = percentile_ci(values[1:], level) if len(values) > 1 else (np.nan, np.nan)
        out["ci"] = [None if np.isnan(lo) else float(lo), None if np.isnan(hi) else float(hi)]
    return out


# ------------------------------------------------------------------------------------------ reports
def multilabel_report(
    targets,
    scores,
    names: Sequence[str] | None = None,
    *,
    thresholds=None,
    uncertain: str = "ignore",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Per-label and macro AUROC / AUPRC (/ F1) of binary multi-label scores, with bootstrap CIs.

    Args:
        targets: ``(N, L)`` labels: 1, 0, -1 (uncertain, mapped by ``uncertain``), NaN (unknown).
        scores: ``(N, L)`` real-valued scores (higher = more likely positive).
        names: ``L`` label names (default ``label0``...).
        thresholds: ``(L,)`` decision thresholds chosen on validation (:func:`select_thresholds`); F1 is
            reported only when given.
        uncertain: policy for -1 entries (:func:`apply_uncertain`).
        n_resamples: bootstrap resamples (0: no intervals); rows are resampled jointly across labels.
        seed: bootstrap seed.
        level: confidence level of the percentile intervals.

    Returns:
        JSON-able dict: ``labels`` {name: {n, n_pos, auroc, auprc[, f1, threshold]}} with each metric as
        ``{"value": v, "ci": [lo, hi]}``, ``macro`` (same metrics, ``n_labels``), ``skipped`` {name: reason}.
    """
    t = apply_uncertain(np.atleast_2d(targets), uncertain)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if t.shape != s.shape:
        raise ValueError(f"targets {t.shape} and scores {s.shape} differ in shape")
    n, n_labels = t.shape
    names = list(names) if names is not None else [f"label{j}" for j in range(n_labels)]
    if len(names) != n_labels:
        raise ValueError(f"{len(names)} names for {n_labels} labels")
    thr = None if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    used, skipped = [], {}
    for j, name in enumerate(names):
        ok = ~np.isnan(t[:, j])
        y = t[ok, j]
        if not ok.any():
            skipped[name] = "no labelled rows"
        elif y.min() == y.max():
            skipped[name] = f"single class (all {'positive' if y[0] == 1 else 'negative'}, n={y.size})"
        else:
            r = _Ranked(*_binary_inputs(y, s[ok, j]), rows=np.flatnonzero(ok))
            pred = None if thr is None or np.isnan(thr[j]) else r.s >= thr[j]  # in r's sorted order
            used.append((j, r, pred, r.y == 1))

    def statistic(W: np.ndarray) -> np.ndarray:  # (B, n) -> (B, 3, L_used)
        out = np.full((W.shape[0], 3, len(used)), np.nan)
        for i, (_, r, pred, pos) in enumerate(used):
            Ws = W[:, r.cols]  # (B, n_label), sorted by descending score
            out[:, 0, i], out[:, 1, i] = r.auroc_ap(Ws)
            if pred is not None:
                tp, fp, fn = Ws @ (pred & pos), Ws @ (pred & ~pos), Ws @ (~pred & pos)
                out[:, 2, i] = np.where(Ws @ pos > 0, _f1(tp, fp, fn), np.nan)
        return out

    samples = bootstrap(statistic, n, n_resamples, seed)  # (1 + R, 3, L_used)
    with_ci = n_resamples > 0
    metrics = ["auroc", "auprc"] + (["f1"] if thr is not None else [])
    labels = {}
    for i, (j, r, _, pos) in enumerate(used):
        entry = {"n": int(r.cols.size), "n_pos": int(pos.sum())}
        entry.update({m: _summary(samples[:, k, i], level, with_ci) for k, m in enumerate(metrics)})
        if thr is not None:
            entry["threshold"] = None if np.isnan(thr[j]) else float(thr[j])
        labels[names[j]] = entry
    with _quiet():
        macro_samples = np.nanmean(samples, axis=2)  # (1 + R, 3)
    macro = {"n_labels": len(used)}
    macro.update({m: _summary(macro_samples[:, k], level, with_ci) for k, m in enumerate(metrics)})
    return {
        "n": n,
        "uncertain": uncertain,
        "labels": labels,
        "macro": macro,
        "skipped": skipped,
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": level, "method": "percentile"},
    }


def multiclass_report(
    y_true,
    scores,
    class_names: Sequence[str] | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Accuracy, macro-F1 and one-vs-rest AUROC of multi-class scores, with bootstrap CIs.

    Args:
        y_true: ``(N,)`` class positions ``0..C-1``; NaN rows (unknown) are dropped.
        scores: ``(N, C)`` class scores or probabilities; the prediction is their argmax.
        class_names: ``C`` names (default ``class0``...).
        n_resamples, seed, level: bootstrap settings as in :func:`multilabel_report`.

    Returns:
        JSON-able dict with ``accuracy``, ``macro_f1``, ``macro_auroc`` (``{"value", "ci"}``), per-class
        ``classes`` {name: {n, auroc}} and ``skipped`` classes (no AUROC: absent or the only class).
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != y.size:
        raise ValueError(f"scores must be (N, C) with N={y.size}, got {s.shape}")
    n_classes = s.shape[1]
    names = list(class_names) if class_names is not None else [f"class{c}" for c in range(n_classes)]
    ok = ~np.isnan(y)
    y, s = y[ok].astype(np.int64), s[ok]
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"class positions must lie in 0..{n_classes - 1}")
    onehot = np.eye(n_classes)[y]  # (N, C)
    per_class = multilabel_report(onehot, s, names, n_resamples=n_resamples, seed=seed, level=level)
    pred = s.argmax(1)
    classes = np.unique(np.r_[y, pred])
    samples = bootstrap(
        lambda W: np.stack(_weighted_class_metrics(y, pred, classes, W), 1), y.size, n_resamples, seed
    )  # (1 + R, 2); same seed: the same resamples as the AUROC
    with_ci = n_resamples > 0
    return {
        "n": int(y.size),
        "accuracy": _summary(samples[:, 0], level, with_ci),
        "macro_f1": _summary(samples[:, 1], level, with_ci),
        "macro_auroc": per_class["macro"]["auroc"],
        "classes": {k: {"n_pos": v["n_pos"], "auroc": v["auroc"]} for k, v in per_class["labels"].items()},
        "skipped": per_class["skipped"],
        "bootstrap": per_class["bootstrap"],
    }
