"""Prompt ensembles of a task and zero-shot scores from embeddings (numpy; no model needed here).

The zero-shot pipeline is: :func:`prompt_bank` lists each distinct prompt of a task once; the model encodes
``bank.texts`` with ``model.encode_text(bank.texts, kind=bank.kind)`` into ``(P, D)``; :func:`zero_shot_scores`
averages each prompt set in embedding space (normalised mean of normalised prompt embeddings, as CLIP's
prompt ensembles) and scores the query embeddings ``(N, D)`` against them:

- multilabel label with negative prompts: ``sigmoid(scale * (q.pos - q.neg))``, i.e. the softmax over the
  pair {positive, negative} (CheXzero's scoring);
- multilabel label without negatives (MoRE's one prompt per PTB-XL class): the softmax of
  ``scale * q.pos`` over all the task's labels, taking that label's share;
- multiclass: the softmax of ``scale * q.class`` over the classes.

``scale`` is the model's inverse temperature (``model.temperature_scale()``); AUROC does not depend on it,
F1 thresholds and probabilities do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moreclip.eval.tasks import Task


@dataclass(frozen=True)
class PromptBank:
    """The distinct prompts of a task and, per label / class, which of them form each ensemble."""

    texts: tuple[str, ...]  # encode these once: (P,) -> (P, D)
    kind: str  # report stream of the text encoder: "xray_report" / "ecg_report"
    names: tuple[str, ...]  # label or class names, output order
    positive: tuple[np.ndarray, ...]  # per label / class: indices into texts
    negative: tuple[np.ndarray, ...]  # per label: indices into texts (empty: none); empty for classes
    multiclass: bool = False


def prompt_bank(task: Task) -> PromptBank:
    """Collect ``task``'s prompts (a ``labels_from`` task must be resolved first: ``task.resolve(df)``)."""
    if not task.is_resolved:
        raise ValueError(
            f"task '{task.name}' takes its labels from the data: call task.resolve(manifest) first"
        )
    texts: dict[str, int] = {}

    def ids(prompts) -> np.ndarray:
        return np.array([texts.setdefault(p, len(texts)) for p in prompts], dtype=np.int64)

    if task.type == "multiclass":
        pos = tuple(ids(c.prompts) for c in task.classes)
        neg: tuple[np.ndarray, ...] = ()
    else:
        pos = tuple(ids(x.positive) for x in task.labels)
        neg = tuple(ids(x.negative) for x in task.labels)
    return PromptBank(tuple(texts), task.text_kind, tuple(task.names), pos, neg, task.type == "multiclass")


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def ensemble(text_emb, groups) -> np.ndarray:
    """Normalised mean of the normalised rows of each group.

    Args:
        text_emb: ``(P, D)`` prompt embeddings.
        groups: sequence of ``G`` index arrays into the rows.

    Returns:
        ``(G, D)`` float32 unit vectors.
    """
    e = _normalise(np.asarray(text_emb, dtype=np.float32))
    return _normalise(np.stack([e[np.asarray(g)].mean(0) for g in groups])).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def zero_shot_scores(query_emb, bank: PromptBank, text_emb, scale: float = 100.0) -> np.ndarray:
    """Zero-shot probabilities of each label / class for each query (rules in the module docstring).

    Args:
        query_emb: ``(N, D)`` image or ECG embeddings (normalised here).
        bank: the task's :class:`PromptBank`.
        text_emb: ``(P, D)`` embeddings of ``bank.texts`` in that order.
        scale: inverse temperature applied to cosine similarities.

    Returns:
        ``(N, L)`` (multilabel) or ``(N, C)`` (multiclass) float64 in [0, 1]; multiclass rows sum to 1.
    """
    q = _normalise(np.asarray(query_emb, dtype=np.float32))
    t = np.asarray(text_emb, dtype=np.float32)
    if t.shape[0] != len(bank.texts):
        raise ValueError(f"text_emb has {t.shape[0]} rows but the bank has {len(bank.texts)} prompts")
    if q.shape[1] != t.shape[1]:
        raise ValueError(f"query dimension {q.shape[1]} != text dimension {t.shape[1]}")
    pos = (q @ ensemble(t, bank.positive).T).astype(np.float64)  # (N, L)
    if bank.multiclass:
        return _softmax(scale * pos)
    out = np.empty_like(pos)
    has_neg = np.array([len(g) > 0 for g in bank.negative])
    if has_neg.any():
        groups = [g for g in bank.negative if len(g)]
        neg = (q @ ensemble(t, groups).T).astype(np.float64)  # (N, L_neg)
        out[:, has_neg] = 1.0 / (1.0 + np.exp(-scale * (pos[:, has_neg] - neg)))
    if (~has_neg).any():
        out[:, ~has_neg] = _softmax(scale * pos)[:, ~has_neg]
    return out
