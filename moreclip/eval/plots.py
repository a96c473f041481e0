"""PNG plots of evaluation results (matplotlib, Agg backend; the ``viz`` extra).

- :func:`plot_roc`: ROC curves, one per label (or class, one-vs-rest), AUROC in the legend.
- :func:`plot_probe_fractions`: linear-probe macro metric vs label fraction (mean ± std over seeds, with
  the mean bootstrap interval shaded).
- :func:`plot_recall`: Recall@K bars per retrieval direction.

matplotlib is imported only when a plot is drawn; without it, :func:`require_matplotlib` raises a
:class:`MissingDependency` error that says how to install it (or to pass ``--no-plots``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moreclip.errors import MoreclipError

_MAX_LEGEND = 15
METRIC_NAMES = {
    "auroc": "macro AUROC",
    "auprc": "macro AUPRC",
    "f1": "macro F1",
    "macro_auroc": "macro AUROC",
}


class MissingDependency(MoreclipError):
    """An optional dependency needed for the requested output is not installed."""


def require_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend, or :class:`MissingDependency` with the install hint."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency(
            "plots need matplotlib: pip install 'moreclip[viz]' (or pass --no-plots / plots=False)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    plt = require_matplotlib()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over descending thresholds (ties as one step), from (0, 0) to (1, 1)."""
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each tied group
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def plot_roc(
    path: str | os.PathLike,
    targets: np.ndarray,
    scores: np.ndarray,
    names: Sequence[str],
    title: str = "",
    aurocs: dict[str, float | None] | None = None,
) -> Path | None:
    """ROC curves of each column of ``scores``.

    Args:
        path: PNG to write.
        targets: ``(N, L)`` 1 / 0 / NaN, or ``(N,)`` class positions (one-vs-rest curves per class).
        scores: ``(N, L)`` or ``(N, C)``.
        names: the column names.
        title: figure title.
        aurocs: name -> AUROC for the legend (default: not shown).

    Returns:
        the path, or None when no column has both classes.
    """
    t = np.asarray(targets, dtype=float)
    s = np.asarray(scores, dtype=float)
    if t.ndim == 1:
        t = np.where(np.isnan(t)[:, None], np.nan, (t[:, None] == np.arange(s.shape[1])[None]).astype(float))
    curves = []
    for j, name in enumerate(names):
        ok = ~np.isnan(t[:, j])
        y = t[ok, j]
        if ok.any() and 0 < y.sum() < y.size:
            curves.append((name, *roc_points(y, s[ok, j])))
    if not curves:
        return None
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1)
    many = len(curves) > _MAX_LEGEND
    for name, fpr, tpr in curves:
        auc = (aurocs or {}).get(name)
        label = None if many else (f"{name} ({auc:.3f})" if auc is not None else name)
        ax.plot(fpr, tpr, lw=0.8 if many else 1.6, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(title + (f" ({len(curves)} labels)" if many else ""), fontsize=10)
    if not many:
        ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_probe_fractions(
    path: str | os.PathLike, summary: dict[str, dict], metric: str, title: str = ""
) -> Path:
    """Probe ``metric`` (a key of the summary's ``macro`` section) vs label fraction (log axis).

    Args:
        path: PNG to write.
        summary: fraction (str) -> aggregated metrics (:attr:`ProbeResult.summary`).
        metric: e.g. ``auroc`` (multilabel) or ``macro_auroc`` (multiclass).
        title: figure title.
    """
    plt = require_matplotlib()
    fr, mean, std, lo, hi = [], [], [], [], []
    for f, s in summary.items():
        e = s.get("macro", {}).get(metric)
        if not e or e.get("mean") is None:
            continue
        fr.append(float(f))
        mean.append(e["mean"])
        std.append(e["std"] or 0.0)
        ci = e.get("ci") or [e["mean"], e["mean"]]
        lo.append(ci[0])
        hi.append(ci[1])
    order = np.argsort(fr)
    fr, mean, std, lo, hi = (np.asarray(a, float)[order] for a in (fr, mean, std, lo, hi))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if len(fr):
        ax.fill_between(fr * 100, lo, hi, alpha=0.2, label="mean 95 % bootstrap CI")
        ax.errorbar(fr * 100, mean, yerr=std, marker="o", capsize=4, label="mean ± std over seeds")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    if len(fr):
        ax.set_xticks(fr * 100, [f"{v:g}%" for v in fr * 100])
        ax.minorticks_off()
    ax.set(xlabel="training labels used (% of subjects)", ylabel=f"test {METRIC_NAMES.get(metric, metric)}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_recall(path: str | os.PathLike, report: dict[str, dict], ks: Sequence[int], title: str = "") -> Path:
    """Grouped bars of Recall@K for every retrieval direction (with bootstrap intervals when present).

    Args:
        path: PNG to write.
        report: pair -> direction -> metrics (:attr:`RetrievalResult.report`).
        ks: the K values.
        title: figure title.
    """
    plt = require_matplotlib()
    dirs = [(d, m) for pair in report.values() for d, m in pair.items()]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(dirs) + 2), 4))
    width = 0.8 / max(len(ks), 1)
    x = np.arange(len(dirs))
    for i, k in enumerate(ks):
        vals = np.array([m[f"recall@{k}"]["value"] or 0.0 for _, m in dirs])
        cis = [m[f"recall@{k}"].get("ci") for _, m in dirs]
        err = None
        if all(c and c[0] is not None for c in cis):
            err = np.abs(np.array([[v - c[0], c[1] - v] for v, c in zip(vals, cis)]).T)
        ax.bar(x + (i - (len(ks) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=f"R@{k}")
    ax.set_xticks(x, [d.replace("->", "\n→ ") for d, _ in dirs], fontsize=7)
    ax.set(ylim=(0, 1.05), ylabel="recall")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)
