"""Linear probe: logistic regression (scikit-learn) on frozen embeddings, at fractions of the training labels.

    res = linear_probe(model, all_ds, "synthetic-ecg", fractions=(0.01, 0.1, 1.0), seeds=3)
    res.summary["1.0"]["macro"]["auroc"]     # {"mean", "std", "ci", "values"} over seeds

Protocol:

- Label fractions are drawn at the **subject** level (:func:`sample_subjects`): each seed permutes the
  training subjects that have the query modality and keeps the first ``ceil(fraction * n_subjects)``.
  Fractions are **nested** within a seed (a smaller fraction's subjects are part of every larger one's)
  and independent across seeds. When a subset lacks the positive or the negative class of a label (a
  class of a multi-class task) that the full training split has, the first subject in the seed's order
  that has it is added (counted in ``n_added_subjects``). A label one class of which is absent from the
  whole training split cannot be probed and is reported under ``skipped``.
- Features are standardised on the training subset. Multi-label tasks fit one class-balanced binary
  classifier per label (rows with an unknown label are left out of that label's fit and scores);
  multi-class tasks fit one multinomial classifier (class-balanced).
- The inverse regularisation ``C`` is chosen per label (per task for multi-class) on the validation split
  from ``C_grid`` (maximum validation AUROC; the smallest C on ties), fits warm-started along the grid.
  A label without both classes in validation takes the C best on average over the other labels.
- F1 thresholds are chosen on validation with the selected C, then applied on test.
- Reported per fraction: mean and standard deviation over seeds of each test metric (training-subset
  variability), and ``ci``: the mean over seeds of the per-seed 95 % bootstrap intervals (test-set
  sampling uncertainty). Every seed's full report is kept in ``runs``. Identical training subsets
  (fraction 1.0) are fitted once.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from moreclip.errors import ConfigError, MoreclipError
from moreclip.eval.embed import ensure_embeddings
from moreclip.eval.metrics import auroc, multiclass_report, multilabel_report, select_thresholds
from moreclip.eval.tasks import Task
from moreclip.eval.zeroshot import as_task, query_name, resolve_task

log = logging.getLogger(__name__)
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


# ---------------------------------------------------------------------------------------- sampling
def _class_presence(subjects: np.ndarray, y: np.ndarray, classes: Sequence[float]):
    """Per subject and label, whether any of its rows holds each class: ``(K, S, L)`` bool, and the
    subject codes of the rows ``(N,)`` in first-appearance order."""
    _, first, codes = np.unique(subjects, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # code -> rank of first appearance
    codes = order[codes]
    y2 = y.reshape(len(y), -1)
    out = np.zeros((len(classes), len(first), y2.shape[1]), bool)
    for k, c in enumerate(classes):
        rows, cols = np.nonzero(y2 == c)
        out[k, codes[rows], cols] = True
    return out, codes


def sample_subjects(
    subject_ids: np.ndarray,
    targets: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    classes: Sequence[float] = (0.0, 1.0),
) -> list[dict[str, Any]]:
    """Nested subject-level subsets of the training rows for each fraction (see the module docstring).

    Args:
        subject_ids: ``(N,)`` subject of each training row.
        targets: ``(N, L)`` binary targets with NaN unknown, or ``(N,)`` class positions.
        fractions: label fractions in (0, 1].
        seed: the permutation seed.
        classes: the class values that each subset should hold per label (``range(C)`` for multi-class).

    Returns:
        per fraction (in the given order): ``{"fraction", "rows" (sorted positions), "n_subjects",
        "n_added_subjects"}``.
    """
    for f in fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"label fractions must lie in (0, 1], got {f}")
    has, codes = _class_presence(np.asarray(subject_ids).astype(str), np.asarray(targets), classes)
    n_subj = has.shape[1]
    perm = np.random.default_rng(seed).permutation(n_subj)
    need = has.any(axis=1)  # (K, L): class k of label l exists in the training split
    chosen = np.zeros(n_subj, bool)
    out = {}
    for f in sorted(set(fractions)):
        k = n_subj if f >= 1 else max(1, math.ceil(f * n_subj))
        chosen[perm[:k]] = True
        added = 0
        for c, lab in zip(*np.nonzero(need & ~has[:, chosen].any(axis=1))):
            if has[c, chosen, lab].any():  # an earlier addition already covered it
                continue
            cand = perm[has[c, perm, lab] & ~chosen[perm]]
            chosen[cand[0]] = True
            added += 1
        out[f] = {
            "fraction": float(f),
            "rows": np.flatnonzero(chosen[codes]),
            "n_subjects": int(chosen.sum()),
            "n_added_subjects": added,
        }
    return [out[f] for f in fractions]


# -------------------------------------------------------------------------------------------- fits
def _standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mu, sd = ref.mean(0), ref.std(0)
    return ((x - mu) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float64)


def _fit_path(X, y, C_grid, multiclass: bool, max_iter: int):
    """Fit along ``C_grid`` (warm-started); per C a (coef, intercept, classes) triple. Counts non-convergence."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(class_weight="balanced", max_iter=max_iter, warm_start=True)
    fits, unconverged = [], 0
    for C in C_grid:
        clf.set_params(C=C)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X, y)
        unconverged += any(issubclass(x.category, ConvergenceWarning) for x in w)
        fits.append((clf.coef_.copy(), clf.intercept_.copy(), clf.classes_.copy()))
    return fits, unconverged


def _binary_scores(fit, X) -> np.ndarray:
    coef, b, _ = fit
    return 1.0 / (1.0 + np.exp(-(X @ coef[0] + b[0])))


def _class_scores(fit, X, n_classes: int) -> np.ndarray:
    coef, b, classes = fit
    out = np.zeros((len(X), n_classes))
    if len(classes) == 2:  # sklearn keeps one row for two classes
        p = 1.0 / (1.0 + np.exp(-(X @ coef[0] + b[0])))
        out[:, classes.astype(int)] = np.stack([1 - p, p], 1)
        return out
    z = X @ coef.T + b
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    out[:, classes.astype(int)] = e / e.sum(1, keepdims=True)
    return out


def _pick(vals: np.ndarray, fallback: int) -> int:
    return fallback if np.isnan(vals).all() else int(np.nanargmax(vals))  # first max: smallest C


def probe_once(
    X_tr,
    y_tr,
    X_va,
    y_va,
    X_te,
    y_te,
    task: Task,
    C_grid=DEFAULT_C_GRID,
    n_resamples=1000,
    seed=0,
    max_iter=300,
) -> dict[str, Any]:
    """One probe fit: choose C on val, report on test (targets as :meth:`Task.targets` gives them).

    Returns:
        ``{"report", "C", "thresholds", "skipped", "unconverged", "scores"}``; ``scores`` the test scores
        ``(N_test, L_probed)`` of the probed labels ``report`` names.
    """
    Xtr, Xva, Xte = (_standardise(x, X_tr) for x in (X_tr, X_va, X_te))
    grid = [float(c) for c in C_grid]
    default = int(np.argmin(np.abs(np.log10(grid))))  # C closest to 1
    if task.type == "multiclass":
        n_classes = len(task.classes)
        ok = ~np.isnan(y_tr)
        if len(np.unique(y_tr[ok])) < 2:
            raise MoreclipError(f"task '{task.name}': the training subset holds fewer than 2 classes")
        fits, unconv = _fit_path(Xtr[ok], y_tr[ok].astype(int), grid, True, max_iter)
        vok = ~np.isnan(y_va)
        val_auc = np.array(
            [
                multiclass_report(y_va[vok], _class_scores(f, Xva[vok], n_classes), n_resamples=0)[
                    "macro_auroc"
                ]["value"]
                or np.nan
                for f in fits
            ]
            if vok.any()
            else [np.nan] * len(grid)
        )
        g = _pick(val_auc, default)
        scores = _class_scores(fits[g], Xte, n_classes)
        report = multiclass_report(y_te, scores, task.names, n_resamples=n_resamples, seed=seed)
        return {"report": report, "C": grid[g], "thresholds": None, "skipped": {}, "unconverged": unconv,
                "scores": scores, "names": list(task.names)}  # fmt: skip
    names, skipped, per_label, unconv = task.names, {}, [], 0
    for j, name in enumerate(names):
        ok = ~np.isnan(y_tr[:, j])
        y = y_tr[ok, j]
        if not ok.any() or y.min() == y.max():
            skipped[name] = (
                "one class only in the training subset" if ok.any() else "no labelled training rows"
            )
            continue
        fits, u = _fit_path(Xtr[ok], y.astype(int), grid, False, max_iter)
        unconv += u
        vok = ~np.isnan(y_va[:, j])
        vy = y_va[vok, j]
        val_auc = np.array(
            [auroc(vy, _binary_scores(f, Xva[vok])) if vok.any() else np.nan for f in fits], dtype=float
        )
        per_label.append((j, fits, val_auc))
    if not per_label:
        raise MoreclipError(f"task '{task.name}': no label has both classes in the training subset")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_auc = np.nanmean(np.stack([v for _, _, v in per_label]), axis=0)
    shared = _pick(mean_auc, default)
    cols, chosen, va_scores, te_scores = [], {}, [], []
    for j, fits, val_auc in per_label:
        g = _pick(val_auc, shared)
        cols.append(j)
        chosen[names[j]] = grid[g]
        va_scores.append(_binary_scores(fits[g], Xva))
        te_scores.append(_binary_scores(fits[g], Xte))
    va_s, te_s = np.stack(va_scores, 1), np.stack(te_scores, 1)
    thr = select_thresholds(y_va[:, cols], va_s) if len(y_va) else None
    report = multilabel_report(
        y_te[:, cols], te_s, [names[j] for j in cols], thresholds=thr, n_resamples=n_resamples, seed=seed
    )
    report["skipped"] = {**skipped, **report["skipped"]}
    return {"report": report, "C": chosen, "thresholds": thr, "skipped": skipped, "unconverged": unconv,
            "scores": te_s, "names": [names[j] for j in cols]}  # fmt: skip


# --------------------------------------------------------------------------------------- the probe
@dataclass
class ProbeResult:
    """Linear-probe results: ``summary`` per fraction (mean / std / ci over seeds) and every ``run``.

    ``curve`` holds the test scores and targets of the largest fraction's first seed (for ROC plots).
    """

    task: Task
    query: str
    fractions: list[float]
    seeds: list[int]
    summary: dict[str, dict]
    runs: list[dict]
    n: dict[str, int]
    curve: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": {
                "name": self.task.name,
                "type": self.task.type,
                "modality": self.task.modality,
                "source": self.task.source,
                "names": self.task.names,
            },  # fmt: skip
            "query": self.query,
            "fractions": self.fractions,
            "seeds": self.seeds,
            "n": self.n,
            "summary": self.summary,
            "runs": self.runs,
        }


def _metric_paths(report: dict, multiclass: bool) -> dict[str, dict]:
    """Flatten a report into ``{"macro/auroc": {"value", "ci"}, "labels/X/auroc": ...}``."""
    if multiclass:
        out = {f"macro/{k}": report[k] for k in ("accuracy", "macro_f1", "macro_auroc")}
        out.update({f"labels/{n}/auroc": v["auroc"] for n, v in report["classes"].items()})
        return out
    out = {f"macro/{k}": v for k, v in report["macro"].items() if isinstance(v, dict)}
    for n, v in report["labels"].items():
        out.update({f"labels/{n}/{k}": m for k, m in v.items() if isinstance(m, dict)})
    return out


def _aggregate(reports: list[dict], multiclass: bool) -> dict:
    flat = [_metric_paths(r, multiclass) for r in reports]
    out: dict = {}
    for key in dict.fromkeys(k for f in flat for k in f):
        vals = [f[key]["value"] if key in f and f[key]["value"] is not None else np.nan for f in flat]
        lo = [f[key].get("ci", [None])[0] if key in f else None for f in flat]
        hi = [f[key].get("ci", [None, None])[1] if key in f else None for f in flat]
        v = np.array(vals, dtype=float)
        entry = {
            "mean": None if np.isnan(v).all() else float(np.nanmean(v)),
            "std": None if np.isnan(v).all() else float(np.nanstd(v)),
            "values": [None if np.isnan(x) else float(x) for x in v],
        }
        los, his = [x for x in lo if x is not None], [x for x in hi if x is not None]
        entry["ci"] = [float(np.mean(los)), float(np.mean(his))] if los and his else None
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = entry
    return out


def linear_probe(
    model,
    data,
    task: Task | str | os.PathLike,
    *,
    val=None,
    test=None,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    seeds: int | Sequence[int] = 3,
    modality: str | None = None,
    fuse: bool = False,
    C_grid: Sequence[float] = DEFAULT_C_GRID,
    n_resamples: int = 1000,
    seed: int = 0,
    max_iter: int = 300,
    batch_size: int = 64,
    progress: bool = True,
) -> ProbeResult:
    """Linear probe of ``model``'s frozen embeddings for ``task`` (protocol in the module docstring).

    Args:
        model: a MoRE model (None when every input is :class:`Embeddings`).
        data: the training samples; or, with ``val`` and ``test`` None, every sample (a dataset with
            ``split=None`` or Embeddings), split by its ``split`` column.
        task: a Task, built-in name or YAML path; ``labels_from`` is resolved on the training rows.
        val, test: validation and test samples (datasets or Embeddings).
        fractions: fractions of the training subjects whose labels are used.
        seeds: number of seeds (0, 1, ...) or the seeds themselves.
        modality, fuse: the query embedding, as in :func:`~moreclip.eval.zeroshot.zero_shot`.
        C_grid: candidate inverse regularisation strengths.
        n_resamples, seed: bootstrap of the test intervals.
        max_iter: lbfgs iterations per fit.
        batch_size: samples per forward pass when embedding.
        progress: progress bars (embedding, fits).
    """
    task = as_task(task)
    query = query_name(task, modality, fuse)
    if (val is None) != (test is None):
        raise ConfigError("give both val and test, or neither (then data is split by its split column)")
    if val is None:
        emb = ensure_embeddings(model, data, [query], batch_size, progress)
        parts = [emb.subset(s) for s in ("train", "val", "test")]
    else:
        parts = [ensure_embeddings(model, d, [query], batch_size, progress) for d in (data, val, test)]
    feats = []
    for name, e in zip(("train", "val", "test"), parts):
        x, ok = e.get(query)
        feats.append((x[ok], e.subset(ok)))
        if name != "val" and not ok.any():
            raise MoreclipError(f"the {name} split has no sample with '{query}' ({len(e)} samples)")
    (X_tr, tr), (X_va, va), (X_te, te) = feats
    task = resolve_task(task, tr, tr)
    y_tr, y_va, y_te = (task.targets(e.frame()) for e in (tr, va, te))
    if tr.subject_ids is None:
        raise ConfigError("the training samples carry no subject ids (needed for subject-level sampling)")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    classes = list(range(len(task.classes))) if task.type == "multiclass" else (0.0, 1.0)
    runs, done, curve = [], {}, {}
    # These fits are small: threaded BLAS only adds overhead (scipy's L-BFGS-B spent 100x the CPU time
    # with 2 OpenBLAS threads). Import first, so the limit reaches the BLAS that scikit-learn loads.
    import sklearn.linear_model  # noqa: F401
    from tqdm.auto import tqdm

    bar = tqdm(total=len(seed_list) * len(fractions), desc="probe fits", unit="run", disable=not progress)
    with threadpool_limits(1), bar:
        for s in seed_list:
            for sub in sample_subjects(tr.subject_ids, y_tr, fractions, s, classes):
                rows = sub.pop("rows")
                key = rows.tobytes()
                if key not in done:
                    args = (X_tr[rows], y_tr[rows], X_va, y_va, X_te, y_te, task, C_grid, n_resamples, seed)
                    done[key] = probe_once(*args, max_iter=max_iter)
                r = done[key]
                runs.append({"seed": s, **sub, "n_samples": int(len(rows)), "C": r["C"], "skipped": r["skipped"],
                             "unconverged_fits": r["unconverged"], "report": r["report"]})  # fmt: skip
                bar.update(1)
                if sub["fraction"] == max(fractions) and s == seed_list[0]:
                    cols = [task.names.index(n) for n in r["names"]]
                    curve = {"scores": r["scores"], "names": r["names"],
                             "targets": y_te if task.type == "multiclass" else y_te[:, cols]}  # fmt: skip
    summary = {}
    for f in fractions:
        reports = [r["report"] for r in runs if r["fraction"] == f]
        summary[f"{f:g}"] = _aggregate(reports, task.type == "multiclass")
    n = {"train": len(tr), "val": len(va), "test": len(te)}
    return ProbeResult(task, query, [float(f) for f in fractions], seed_list, summary, runs, n, curve)
