"""Validation during pre-training: the contrastive loss and Recall@1/5 of every modality pair on the val split.

Every rank embeds a contiguous shard of the val split; the shards are gathered in order, so the figures
do not depend on the number of processes. The loss is the training objective averaged over consecutive
chunks of ``chunk`` samples (the global batch: the same negatives per query as in training); retrieval
ranks each query among all val samples that have both modalities of the pair (ties count against the
query, :mod:`moreclip.eval.retrieval_metrics`).

Metric names: ``loss``, ``loss/<a:b>``, ``recall@K/<a>-><b>`` (both directions of every pair),
``mean_recall@K`` (over every direction), and ``n/<a:b>`` (samples having both).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from moreclip import distributed as D
from moreclip.losses import presence_masks, resolve_pairs
from moreclip.models.more import report_mask

KS = (1, 5)


@torch.no_grad()
def embed_split(model, dataset, modalities, batch_size, device, autocast=contextlib.nullcontext) -> tuple:
    """Embed a dataset, sharded over the ranks and gathered in order.

    Args:
        model: the :class:`~moreclip.models.MoRE` (unwrapped).
        dataset: a :class:`~moreclip.data.dataset.MoreDataset` (no augmentation).
        modalities: what to embed (``model(batch, modalities=...)``).
        batch_size: samples per forward.
        device: where batches go.
        autocast: a context factory for mixed precision.

    Returns:
        ``(embeddings, masks)``: modality -> ``(N, D)`` float32 CPU tensor, modality -> ``(N,)`` bool.
    """
    rank, world = D.rank_world()
    mine = np.array_split(np.arange(len(dataset)), world)[rank]
    was_training = model.training
    model.eval()
    embs: dict[str, list] = {m: [] for m in modalities}
    masks: dict[str, list] = {}
    for lo in range(0, len(mine), batch_size):
        batch = dataset.get_batch(mine[lo : lo + batch_size], device)
        with autocast():
            out = model(batch, modalities=list(modalities))
        for m in modalities:
            embs[m].append(out[m].float().cpu())
        for m, v in batch["mask"].items():
            masks.setdefault(m, []).append(v.cpu())
    model.train(was_training)
    d = model.embed_dim
    local = (
        {m: torch.cat(v) if v else torch.zeros(0, d) for m, v in embs.items()},
        {m: torch.cat(v) if v else torch.zeros(0, dtype=torch.bool) for m, v in masks.items()},
    )
    parts = D.all_gather_object(local)
    emb = {m: torch.cat([p[0][m] for p in parts]) for m in modalities}
    mask = {m: torch.cat([p[1][m] for p in parts]) for m in parts[0][1]}
    if "report" in modalities:
        mask["report"] = report_mask(mask, len(mask["xray"]))
    return emb, mask


def retrieval_pairs(loss_fn, train_pairs) -> list[tuple[str, str]]:
    """The modality pairs to evaluate: the loss's pairs (every pair of Symile's modalities)."""
    mods = loss_fn.modalities()
    if hasattr(loss_fn, "pairs"):
        return resolve_pairs(train_pairs, mods)
    return [(a, b) for i, a in enumerate(mods) for b in mods[i + 1 :]]


@torch.no_grad()
def validation_metrics(emb, masks, loss_fn, logit_scale, pairs, chunk: int) -> dict[str, float]:
    """Loss and retrieval figures from gathered embeddings (see the module docstring).

    Args:
        emb: modality -> ``(N, D)``. masks: modality -> ``(N,)`` presence.
        loss_fn: the training loss module. logit_scale: its temperature multiplier.
        pairs: ``[(a, b), ...]`` for retrieval. chunk: samples per loss chunk.
    """
    from moreclip.eval.retrieval_metrics import recall_at_k, retrieval_ranks

    n = len(next(iter(emb.values())))
    out: dict[str, float] = {}
    sums: dict[str, float] = {}
    count = 0
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        if sl.stop - sl.start < 2:  # a lone sample has no negative
            continue
        total, terms = loss_fn(
            {m: e[sl] for m, e in emb.items()}, {m: v[sl] for m, v in masks.items()}, logit_scale
        )
        sums["loss"] = sums.get("loss", 0.0) + float(total)
        for k, v in terms.items():
            sums[f"loss/{k}"] = sums.get(f"loss/{k}", 0.0) + float(v)
        count += 1
    out.update({k: v / max(1, count) for k, v in sums.items()})
    masks = presence_masks(masks)
    recalls: dict[int, list[float]] = {k: [] for k in KS}
    for a, b in pairs:
        both = masks[a] & masks[b]
        out[f"n/{a}:{b}"] = float(both.sum())
        if both.sum() < 2:
            continue
        sim = (emb[a][both] @ emb[b][both].T).numpy()  # (M, M)
        for name, s in ((f"{a}->{b}", sim), (f"{b}->{a}", sim.T)):
            r = recall_at_k(retrieval_ranks(s), KS)
            for k in KS:
                out[f"recall@{k}/{name}"] = r[k]
                recalls[k].append(r[k])
    for k in KS:
        if recalls[k]:
            out[f"mean_recall@{k}"] = float(np.mean(recalls[k]))
    return out


def validate(model, dataset, loss_fn, train_pairs, batch_size, chunk, device, autocast) -> dict[str, float]:
    """Validation metrics of ``model`` on ``dataset`` (every rank must call it; see the module docstring)."""
    mods = loss_fn.modalities()
    emb, masks = embed_split(model, dataset, mods, batch_size, device, autocast)
    scale = model.temperature_scale().detach().float().cpu()
    return validation_metrics(emb, masks, loss_fn, scale, retrieval_pairs(loss_fn, train_pairs), chunk)
