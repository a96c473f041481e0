"""Losses against independent references: open_clip's ClipLoss, the symile package, naive subsets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from moreclip.config import TrainConfig
from moreclip.errors import ConfigError
from moreclip.losses import (
    ClipLoss,
    SymileLoss,
    clip_loss,
    create_loss,
    local_rows,
    modalities_for_pairs,
    multimodal_clip_loss,
    resolve_pairs,
    symile_loss,
)


def feats(n=8, d=16, seed=0, k=2, grad=False):
    g = torch.Generator().manual_seed(seed)
    out = [F.normalize(torch.randn(n, d, generator=g), dim=-1) for _ in range(k)]
    return [t.requires_grad_(grad) for t in out]


def test_clip_loss_matches_open_clip():
    from open_clip.loss import ClipLoss as OpenClipLoss

    a, b = feats(n=32, d=64)
    scale = torch.tensor(1 / 0.07)
    ours = clip_loss(a, b, scale)
    ref = OpenClipLoss()(a, b, scale)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_clip_loss_with_mask_equals_loss_on_complete_rows():
    a, b = feats(n=12)
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    masked = clip_loss(a, b, 10.0, mask)
    subset = clip_loss(a[mask], b[mask], 10.0)
    assert torch.allclose(masked, subset, atol=1e-6, rtol=0)
    assert not torch.allclose(masked, clip_loss(a, b, 10.0))


def test_clip_loss_without_rows_is_zero_finite_and_in_graph():
    a, b = feats(grad=True)
    scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss = clip_loss(a, b, scale.exp(), torch.zeros(8, dtype=torch.bool))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert a.grad is not None and torch.all(a.grad == 0)


def test_clip_loss_local_rows_match_open_clip_local_loss(monkeypatch):
    """rows= reproduces open_clip's local_loss on each rank, given the gathered features."""
    import open_clip.loss as ocl

    world, local = 3, 4
    a, b = feats(n=world * local, d=32, seed=3)
    monkeypatch.setattr(ocl, "gather_features", lambda *args, **kw: (a, b))  # the all-gather, faked
    per_rank = []
    for rank in range(world):
        sl = local_rows(rank, local)
        ref = ocl.ClipLoss(local_loss=True, rank=rank, world_size=world)(a[sl], b[sl], 20.0)
        ours = clip_loss(a, b, 20.0, rows=sl)
        assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
        per_rank.append(ours)
    # equal local batches: the mean of the ranks' losses is the global loss
    assert torch.allclose(torch.stack(per_rank).mean(), clip_loss(a, b, 20.0), atol=1e-6, rtol=0)


def test_clip_loss_local_rows_with_mask_use_only_complete_rows_as_negatives():
    a, b = feats(n=8, seed=4)
    mask = torch.tensor([1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.bool)
    ours = clip_loss(a, b, 5.0, mask, rows=slice(0, 4))  # valid local rows 0, 1, 3
    ak, bk = a[mask], b[mask]
    labels = torch.tensor([0, 1, 2])
    q = torch.tensor([0, 1, 3])
    ref = (F.cross_entropy(5.0 * a[q] @ bk.T, labels) + F.cross_entropy(5.0 * b[q] @ ak.T, labels)) / 2
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def four_modalities(n=10, seed=0, grad=False):
    names = ("xray", "ecg", "xray_report", "ecg_report")
    return dict(zip(names, feats(n=n, seed=seed, k=4, grad=grad)))


def test_multimodal_loss_averages_all_pairs_over_their_complete_rows():
    emb = four_modalities()
    g = torch.Generator().manual_seed(1)
    masks = {m: torch.rand(10, generator=g) > 0.3 for m in emb}
    total, terms = multimodal_clip_loss(emb, masks, 10.0)
    assert list(terms) == [
        "xray:ecg",
        "xray:xray_report",
        "xray:ecg_report",
        "ecg:xray_report",
        "ecg:ecg_report",
        "xray_report:ecg_report",
    ]
    for name, loss in terms.items():
        x, y = name.split(":")
        both = masks[x] & masks[y]
        assert torch.allclose(loss, clip_loss(emb[x][both], emb[y][both], 10.0), atol=1e-6, rtol=0)
    assert torch.allclose(total, torch.stack(list(terms.values())).mean(), atol=1e-6, rtol=0)


def test_missing_modality_pair_contributes_nothing_and_total_is_finite():
    emb = four_modalities(grad=True)
    masks = {m: torch.ones(10, dtype=torch.bool) for m in emb}
    masks["ecg"] = torch.zeros(10, dtype=torch.bool)  # no ECG in this batch
    total, terms = multimodal_clip_loss(emb, masks, 10.0)
    assert torch.isfinite(total)
    for name in ("xray:ecg", "ecg:xray_report", "ecg:ecg_report"):
        assert terms[name].item() == 0.0
    kept = [terms[k] for k in ("xray:xray_report", "xray:ecg_report", "xray_report:ecg_report")]
    assert torch.allclose(total, torch.stack(kept).mean(), atol=1e-6, rtol=0)
    total.backward()
    assert torch.all(emb["ecg"].grad == 0) and emb["xray"].grad.abs().sum() > 0


def test_all_modalities_missing_gives_zero_total_that_backpropagates():
    emb = four_modalities(grad=True)
    masks = {m: torch.zeros(10, dtype=torch.bool) for m in emb}
    total, _ = multimodal_clip_loss(emb, masks, 10.0)
    assert total.item() == 0.0
    total.backward()  # no error: the zero is part of the graph


def test_pair_weights_weight_the_mean():
    emb = four_modalities()
    masks = {}
    _, terms = multimodal_clip_loss(emb, masks, 10.0, pairs=["xray:ecg", "xray:xray_report"])
    total, _ = multimodal_clip_loss(
        emb, masks, 10.0, pairs=["xray:ecg", "xray:xray_report"], weights={"ecg:xray": 3.0}
    )
    expected = (3 * terms["xray:ecg"] + terms["xray:xray_report"]) / 4
    assert torch.allclose(total, expected, atol=1e-6, rtol=0)


def test_report_anchored_preset_uses_joined_report_and_its_derived_mask():
    emb = four_modalities()
    emb["report"] = feats(n=10, seed=9, k=1)[0]
    masks = {
        "xray": torch.tensor([1] * 8 + [0] * 2, dtype=torch.bool),
        "ecg": torch.ones(10, dtype=torch.bool),
        "xray_report": torch.tensor([1, 0] * 5, dtype=torch.bool),
        "ecg_report": torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 0, 0], dtype=torch.bool),
    }
    total, terms = multimodal_clip_loss(emb, masks, 10.0, pairs="report-anchored")
    assert list(terms) == ["xray:report", "ecg:report"]
    report = masks["xray_report"] | masks["ecg_report"]
    ref = clip_loss(emb["xray"][report & masks["xray"]], emb["report"][report & masks["xray"]], 10.0)
    assert torch.allclose(terms["xray:report"], ref, atol=1e-6, rtol=0)
    assert modalities_for_pairs("report-anchored") == ["xray", "ecg", "report"]


def test_bad_pair_specifications_raise_config_errors():
    with pytest.raises(ConfigError, match="bad pair"):
        resolve_pairs(["xray:xry"])
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_pairs("everything")
    with pytest.raises(ConfigError, match="no embeddings"):
        multimodal_clip_loss(four_modalities(), {}, 10.0, pairs="report-anchored")
    with pytest.raises(ConfigError, match="pair_weights"):
        multimodal_clip_loss(four_modalities(), {}, 10.0, pairs=["xray:ecg"], weights={"xray:text": 2})


def test_symile_n_squared_matches_symile_package_and_grads_reach_every_input():
    from symile import Symile

    reps = feats(n=6, d=8, seed=5, k=3, grad=True)
    scale = torch.tensor(7.0, requires_grad=True)
    ours = symile_loss(reps, scale, negatives="n_squared")
    ref = Symile(negative_sampling="n_squared")(reps, scale)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    ours.backward()
    for t in (*reps, scale):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_symile_n_matches_symile_package_for_the_same_seed():
    from symile import Symile

    reps = feats(n=9, d=8, seed=6, k=3)
    torch.manual_seed(123)
    ref = Symile(negative_sampling="n")(reps, 5.0)
    torch.manual_seed(123)
    ours = symile_loss(reps, 5.0, negatives="n")
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)


def test_symile_four_modalities_n_squared_counts_every_combination():
    reps = feats(n=3, d=4, seed=7, k=4)
    loss = symile_loss(reps, 2.0, negatives="n_squared")
    # naive reference: for anchor x, logits over all (j, k, l) triples of the other modalities
    losses = []
    for i in range(4):
        others = [r for j, r in enumerate(reps) if j != i]
        logits = torch.einsum("qd,jd,kd,ld->qjkl", reps[i], *others).reshape(3, -1)
        target = torch.arange(3) * (9 + 3 + 1)
        losses.append(F.cross_entropy(2.0 * logits, target))
    assert torch.allclose(loss, torch.stack(losses).mean(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("negatives", ["n", "n_squared"])
def test_masked_symile_equals_symile_on_complete_rows(negatives):
    reps = feats(n=10, d=8, seed=8, k=3)
    mask = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    torch.manual_seed(0)
    masked = symile_loss(reps, 4.0, negatives, mask=mask)
    torch.manual_seed(0)
    subset = symile_loss([r[mask] for r in reps], 4.0, negatives)
    assert torch.allclose(masked, subset, atol=1e-6, rtol=0)
    assert symile_loss(reps, 4.0, negatives, mask=torch.zeros(10, dtype=torch.bool)).item() == 0.0


def test_symile_local_rows_average_to_the_global_loss():
    reps = feats(n=8, d=8, seed=10, k=3)
    full = symile_loss(reps, 3.0, "n_squared")
    parts = [symile_loss(reps, 3.0, "n_squared", rows=local_rows(r, 4)) for r in range(2)]
    assert torch.allclose(torch.stack(parts).mean(), full, atol=1e-6, rtol=0)


def test_loss_modules_from_train_config_return_named_terms():
    emb = four_modalities()
    emb["report"] = feats(n=10, seed=11, k=1)[0]
    masks = {m: torch.ones(10, dtype=torch.bool) for m in ("xray", "ecg", "xray_report", "ecg_report")}
    clip = create_loss(TrainConfig(loss="clip", pairs="report-anchored"))
    assert isinstance(clip, ClipLoss) and clip.modalities() == ["xray", "ecg", "report"]
    total, terms = clip(emb, masks, 10.0)
    assert set(terms) == {"xray:report", "ecg:report"} and torch.isfinite(total)
    sym = create_loss(TrainConfig(loss="symile", symile_negatives="n_squared"))
    assert isinstance(sym, SymileLoss)
    total, terms = sym(emb, masks, 10.0)
    ref = symile_loss([emb["xray"], emb["ecg"], emb["report"]], 10.0, "n_squared")
    assert torch.allclose(total, ref, atol=1e-6, rtol=0) and set(terms) == {"symile"}
