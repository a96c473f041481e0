"""AdamW with weight-decay groups, and the learning-rate schedule as a pure function of the step.

The schedule is a function of the optimizer step only (nanoGPT's ``get_lr``), so resuming needs no
scheduler state: the loop sets ``lr = lr_at(step, ...)`` before every step. :func:`make_scheduler` wraps
the same function in a ``LambdaLR`` for people who write their own loop.

    opt = create_optimizer(model, cfg.train)
    for step in range(total):
        set_lr(opt, lr_at(step, cfg.train, total))
        ...
"""

from __future__ import annotations

import math

import torch

from moreclip.config import TrainConfig
from moreclip.errors import ConfigError


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    restart_steps: int = 1000,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Args:
        step: the step about to be taken.
        total_steps: steps of the whole run (the cosine reaches ``min_lr_ratio`` there).
        warmup_steps: linear warm-up from ``1 / warmup_steps`` to 1 over this many steps.
        schedule: ``"cosine"`` (one half-cosine from the end of warm-up to ``total_steps``),
            ``"cosine_restarts"`` (half-cosines of ``restart_steps`` steps, each restarting at 1; SGDR
            with a constant period) or ``"constant"``.
        restart_steps: period of ``cosine_restarts``.
        min_lr_ratio: floor of the cosine as a fraction of the peak.
    """
    # 1) linear warm-up
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    # 2) progress through the current cosine cycle, in [0, 1]
    t = step - warmup_steps
    if schedule == "cosine":
        progress = min(1.0, t / max(1, total_steps - warmup_steps))
    elif schedule == "cosine_restarts":
        progress = (t % max(1, restart_steps)) / max(1, restart_steps)
    else:
        raise ConfigError(f"train.schedule: unknown schedule {schedule!r}")
    # 3) half-cosine from 1 down to min_lr_ratio
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """The learning rate of ``cfg`` (peak ``cfg.lr``) at ``step`` of ``total_steps``."""
    return cfg.lr * lr_factor(
        step, total_steps, cfg.warmup_steps, cfg.schedule, cfg.restart_steps, cfg.min_lr_ratio
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (times its ``lr_scale``, default 1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def create_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: weight decay on weight matrices only (no decay on norms,
    biases, position / CLS / lead embeddings or the logit scale; :meth:`MoRE.param_groups`).

    Args:
        model: a :class:`~moreclip.models.MoRE` (not the DDP wrapper).
        cfg: ``lr``, ``weight_decay``, ``betas``, ``eps``.
    """
    groups = [g for g in model.param_groups(cfg.weight_decay) if g["params"]]
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=True if fused else None
    )


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A ``LambdaLR`` following :func:`lr_factor` (for custom loops; ``moreclip.train`` uses :func:`lr_at`)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(
            s, total_steps, cfg.warmup_steps, cfg.schedule, cfg.restart_steps, cfg.min_lr_ratio
        ),
    )
