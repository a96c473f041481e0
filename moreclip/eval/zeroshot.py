"""Zero-shot classification: score each label by the similarity of a sample to the label's text prompts.

    res = zero_shot(model, test_ds, "ptbxl-super", val=val_ds)      # datasets or precomputed Embeddings
    res.report["macro"]["auroc"]                                    # {"value": ..., "ci": [lo, hi]}

The task's prompt ensembles are encoded once (``model.encode_text(bank.texts, kind=bank.kind)``) and
averaged in embedding space; :func:`moreclip.eval.prompts.zero_shot_scores` then scores each query:
positive vs negative prompts (a sigmoid of the scaled similarity difference) where a label has negatives,
the softmax over the labels' prompts where it has none (MoRE's PTB-XL protocol), the softmax over the
classes for a multi-class task. The query is the task's modality (``xray`` or ``ecg``), another one by
``modality=``, or both fused (``fuse=True``: the normalised mean of the X-ray and ECG embeddings, or the
one a sample has). Samples without the query modality are left out (counted in ``n_missing``).

F1 is reported at per-label thresholds chosen on ``val`` (maximum F1 there), when ``val`` is given.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moreclip.errors import MoreclipError
from moreclip.eval.embed import Embeddings, embed_texts, ensure_embeddings
from moreclip.eval.metrics import multiclass_report, multilabel_report, select_thresholds
from moreclip.eval.prompts import prompt_bank, zero_shot_scores
from moreclip.eval.tasks import Task, load_task

log = logging.getLogger(__name__)


@dataclass
class ZeroShotResult:
    """Scores and metrics of one zero-shot evaluation.

    Attributes:
        task: the (resolved) task.
        query: the modality scored (``xray``, ``ecg`` or ``xray+ecg``).
        names: label / class names, the columns of ``scores``.
        scores: ``(N, L)`` probabilities per label, or ``(N, C)`` per class (rows sum to 1).
        targets: ``(N, L)`` 1 / 0 / NaN, or ``(N,)`` class positions (NaN unknown).
        sample_ids: ``(N,)`` the samples scored (those with the query modality).
        report: the metrics (:func:`~moreclip.eval.metrics.multilabel_report` or
            :func:`~moreclip.eval.metrics.multiclass_report`).
        thresholds: per-label F1 thresholds chosen on validation, or None.
        n_total, n_missing: samples given, and those left out for lacking the query modality.
        scale: the inverse temperature applied to the similarities.
        val: what the validation split contributed (``n``, thresholds by label), or None.
    """

    task: Task
    query: str
    names: list[str]
    scores: np.ndarray
    targets: np.ndarray
    sample_ids: np.ndarray
    report: dict
    thresholds: np.ndarray | None
    n_total: int
    n_missing: int
    scale: float
    val: dict | None = None
    prompts: dict = field(default_factory=dict)

    @property
    def multiclass(self) -> bool:
        return self.task.type == "multiclass"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able summary (scores left out) that goes into ``metrics.json``."""
        return {
            "task": {
                "name": self.task.name,
                "type": self.task.type,
                "modality": self.task.modality,
                "source": self.task.source,
                "names": self.names,
            },
            "query": self.query,
            "n": int(len(self.sample_ids)),
            "n_total": self.n_total,
            "n_missing_query": self.n_missing,
            "scale": self.scale,
            "prompts": self.prompts,
            "val": self.val,
            "metrics": self.report,
        }


def as_task(task: Task | str | os.PathLike) -> Task:
    """A Task, a built-in task name or a task YAML path -> Task."""
    return task if isinstance(task, Task) else load_task(task)


def resolve_task(task: Task, data, resolve_on=None) -> Task:
    """``task`` with ``labels_from`` fixed on ``resolve_on`` (the training rows; default: ``data``).

    Args:
        task: the task.
        data: the evaluated rows (Embeddings, Manifest or DataFrame), used when ``resolve_on`` is None.
        resolve_on: the rows to count positives on (Embeddings, Manifest or DataFrame).
    """
    if task.is_resolved:
        return task
    src = resolve_on if resolve_on is not None else data
    if resolve_on is None:
        log.info("task '%s': labels resolved on the evaluated rows (pass resolve_on=train rows)", task.name)
    return task.resolve(src.frame() if isinstance(src, Embeddings) else src)


def query_name(task: Task, modality: str | None = None, fuse: bool = False) -> str:
    """The query modality: ``xray+ecg`` when fusing, else ``modality`` or the task's own."""
    if fuse:
        return "xray+ecg"
    return modality or task.modality


def _scores(emb: Embeddings, query: str, bank, text_emb: np.ndarray, scale: float):
    x, ok = emb.get(query)
    return zero_shot_scores(x[ok], bank, text_emb, scale), ok


def zero_shot(
    model,
    data,
    task: Task | str | os.PathLike,
    *,
    val=None,
    modality: str | None = None,
    fuse: bool = False,
    resolve_on=None,
    n_resamples: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
    text_emb: np.ndarray | None = None,
    scale: float | None = None,
) -> ZeroShotResult:
    """Zero-shot evaluation of ``model`` on ``data`` for ``task``.

    Args:
        model: a MoRE model (may be None when ``data``/``val`` are Embeddings and ``text_emb`` and
            ``scale`` are given).
        data: the evaluated samples: a MoreDataset (embedded here) or :class:`Embeddings`.
        task: a Task, built-in task name or task YAML path.
        val: validation samples (same kinds as ``data``) to choose the F1 thresholds on; None: no F1.
        modality: query modality instead of the task's (``xray`` / ``ecg``).
        fuse: query with the fused X-ray + ECG embedding.
        resolve_on: rows that fix a ``labels_from`` task's labels (the training split); default ``data``.
        n_resamples: bootstrap resamples of the confidence intervals (0: none).
        seed: bootstrap seed.
        batch_size: samples per forward pass when embedding.
        progress: show progress bars.
        text_emb: precomputed ``(P, D)`` embeddings of the task's prompt bank (default: encoded here).
        scale: inverse temperature (default ``model.temperature_scale()``).

    Returns:
        :class:`ZeroShotResult`.
    """
    task = as_task(task)
    query = query_name(task, modality, fuse)
    emb = ensure_embeddings(model, data, [query], batch_size, progress)
    task = resolve_task(task, emb, resolve_on)
    bank = prompt_bank(task)
    if text_emb is None:
        text_emb = embed_texts(model, bank.texts, kind=bank.kind)
    if scale is None:
        scale = float(model.temperature_scale().detach().cpu())
    scores, ok = _scores(emb, query, bank, text_emb, scale)
    if not ok.any():
        raise MoreclipError(f"none of the {len(emb)} samples has the query modality '{query}'")
    targets = task.targets(emb.frame())[ok]
    thresholds, val_info = None, None
    if val is not None:
        vemb = ensure_embeddings(model, val, [query], batch_size, progress)
        vscores, vok = _scores(vemb, query, bank, text_emb, scale)
        val_info = {"n": int(vok.sum())}
        if task.type != "multiclass" and vok.any():
            thresholds = select_thresholds(task.targets(vemb.frame())[vok], vscores)
            val_info["thresholds"] = {
                n: (None if np.isnan(t) else float(t)) for n, t in zip(task.names, thresholds)
            }
    if task.type == "multiclass":
        report = multiclass_report(targets, scores, task.names, n_resamples=n_resamples, seed=seed)
    else:
        report = multilabel_report(
            targets, scores, task.names, thresholds=thresholds, n_resamples=n_resamples, seed=seed
        )
    return ZeroShotResult(
        task=task,
        query=query,
        names=list(task.names),
        scores=scores,
        targets=targets,
        sample_ids=emb.sample_ids[ok],
        report=report,
        thresholds=thresholds,
        n_total=len(emb),
        n_missing=int((~ok).sum()),
        scale=scale,
        val=val_info,
        prompts={"n": len(bank.texts), "kind": bank.kind},
    )
