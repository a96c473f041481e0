"""Pre-training: one loop, read top to bottom, for one process and for ``torchrun`` alike (nanoGPT style).

    moreclip pretrain --config configs/demo.yaml train.max_steps=200
    moreclip pretrain --config configs/demo.yaml --resume auto      # continue from the newest checkpoint
    torchrun --nproc_per_node 4 -m moreclip pretrain --config configs/mimic.yaml

    from moreclip.train import load_train_config, pretrain
    summary = pretrain(load_train_config("configs/demo.yaml", ["train.max_steps=10"]))

Batch sizes: ``data.batch_size`` is per process; the contrastive loss sees the global batch
``batch_size * world_size`` (features are all-gathered with gradients, so negatives span every rank),
and one optimizer step averages ``accum_steps`` such batches.

What a run writes into ``train.output_dir``: ``config.yaml`` (the resolved config, at start),
``logs/train.csv``, ``logs/val.csv`` and ``logs/tb/`` (TensorBoard), ``checkpoints/step_NNNNNN/`` (see
:mod:`moreclip.train_state`; the last ``keep_last`` plus the best by ``best_metric``), ``final/`` and
``best/`` (``save_pretrained`` format: ``moreclip.load("runs/x/final")``) and ``summary.json``.

Exact resume: the data order is a function of ``(seed, epoch)``, each batch's augmentation of
``(seed, epoch, batch, rank)`` (:mod:`moreclip.train_data`), and torch's RNG (DropKey, dropout) is
re-seeded before every micro-step from ``(seed, step, micro-step, rank)``; the learning rate is a
function of the step. A checkpoint therefore needs only weights, AdamW moments and the data position,
and a resumed run retraces the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from moreclip import distributed as D
from moreclip.config import Config, save_config, to_dict
from moreclip.errors import ConfigError, MoreclipError
from moreclip.losses import create_loss, local_rows
from moreclip.optim import create_optimizer, lr_at, set_lr
from moreclip.train_data import MODEL, TrainStream, mix_seed
from moreclip.train_setup import (
    check_config,
    compile_encoders,
    find_resume,
    load_train_config,
    resolve_data,
    resolve_precision,
    versions,
    write_json,
)
from moreclip.train_state import (
    CHECKPOINTS,
    clean_partial,
    load_checkpoint,
    maybe_fault,
    prune_checkpoints,
    save_checkpoint,
)

__all__ = ["Objective", "TrainingError", "load_train_config", "pretrain", "update_best"]

log = logging.getLogger(__name__)
RNG_NOTE = (
    "torch re-seeded per micro-step from (seed, step, micro, rank); batches from (seed, epoch, batch, rank)"
)


class TrainingError(MoreclipError):
    """Training cannot go on (e.g. the loss became NaN)."""


# ----------------------------------------------------------------------------------------- model
class Objective(nn.Module):
    """The model and the loss as one module, so that DDP sees every parameter the loss uses (the
    logit scale too). ``forward(batch) -> (loss, {"a:b": loss})``.

    Under DDP the embeddings (``(B, D)`` per modality) and presence masks are all-gathered into
    ``(world * B, D)``; with ``local_loss`` only this rank's rows are queries (open_clip's local loss),
    otherwise every rank computes the loss of the whole global batch.
    """

    def __init__(
        self, model, loss_fn, local_loss=False, gather_with_grad=True, autocast=contextlib.nullcontext
    ):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn
        self.local_loss, self.gather_with_grad, self.autocast = local_loss, gather_with_grad, autocast

    def forward(self, batch: dict):
        with self.autocast():
            emb = self.model(batch, modalities=self.loss_fn.modalities())
        emb = {m: z.float() for m, z in emb.items()}  # (B, D) each
        masks, rows = batch["mask"], None
        rank, world = D.rank_world()
        if world > 1:
            n = len(batch["sample_id"])
            emb = {m: D.gather_features(z, self.gather_with_grad) for m, z in emb.items()}  # (world * B, D)
            masks = D.gather_masks(masks)
            if self.local_loss:
                rows = local_rows(rank, n)
        return self.loss_fn(emb, masks, self.model.temperature_scale(), rows=rows)


def pretrain(cfg: Config, resume: str | None = None, *, progress: bool = True, after_backward=None) -> dict:
    """Pre-train a MoRE model as ``cfg`` says; in every process of a torchrun job, or alone.

    Args:
        cfg: the run config (:func:`load_train_config`).
        resume: None (new run; an output_dir holding a run is an error), ``"auto"`` (newest complete
            checkpoint of the run, or a new run when there is none) or a checkpoint folder.
        progress: show the progress bar (rank 0).
        after_backward: optional ``fn(step, model)`` called once per optimizer step when the gradients
            are final (accumulated and averaged over ranks), before clipping.

    Returns:
        The run summary (also written to ``output_dir/summary.json`` by rank 0).
    """
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = D.init_distributed(cfg.train.device)
    try:
        return _pretrain(cfg, resume, info, progress, after_backward)
    finally:
        if owns_group:
            D.cleanup()


def _pretrain(cfg: Config, resume, info: D.DistInfo, progress: bool, after_backward) -> dict:
    from tqdm.auto import tqdm

    from moreclip.data.dataset import build_dataset
    from moreclip.logger import RunLogger
    from moreclip.models import create_model
    from moreclip.train_eval import validate

    t_start = time.time()
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    out = Path(tc.output_dir)
    ckpt_root = out / CHECKPOINTS

    # ---- 1. config, data, where to start
    check_config(cfg)
    resume_path = find_resume(resume, ckpt_root)
    cfg = replace(cfg, data=resolve_data(cfg, info, progress))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        clean_partial(ckpt_root)
    train_ds = build_dataset(cfg.data, "train")
    val_ds = build_dataset(cfg.data, "val") if tc.val_every >= 0 else None
    if val_ds is not None and len(val_ds) < 2:
        log.warning("no validation: the val split has %d sample(s)", len(val_ds))
        val_ds = None
    stream = TrainStream(
        train_ds, cfg.data.batch_size, info.rank, info.world_size, tc.seed, cfg.data.num_workers, info.device
    )
    global_batch = cfg.data.batch_size * info.world_size
    if stream.batches_per_epoch == 0:
        raise ConfigError(
            f"data.batch_size: the train split has {len(train_ds)} samples, fewer than one global batch of "
            f"{global_batch} (batch_size {cfg.data.batch_size} x {info.world_size} processes)"
        )
    total_steps = tc.max_steps or max(1, tc.epochs * stream.batches_per_epoch // tc.accum_steps)

    # ---- 2. model, objective, optimizer
    torch.manual_seed(tc.seed)
    model = create_model(cfg.model, device=info.device)
    model.train()
    optimizer = create_optimizer(model, tc)
    loss_fn = create_loss(tc)
    amp = resolve_precision(tc.precision, info.device)
    autocast = functools.partial(
        torch.autocast, device_type=info.device.type, dtype=torch.bfloat16, enabled=amp is not None
    )

    # ---- 3. resume: weights, AdamW moments, data position, best so far
    step, epoch, batch_pos, best, elapsed_before, samples, val = 0, 0, 0, None, 0.0, 0, None
    if resume_path is not None:
        st = load_checkpoint(resume_path, model, optimizer)
        if st["global_batch"] != global_batch:
            raise ConfigError(
                f"--resume: {resume_path} was trained with a global batch of {st['global_batch']}, this run "
                f"has {global_batch} (data.batch_size x processes); the data position would not match"
            )
        step, epoch, batch_pos = st["step"], st["epoch"], st["batch"]
        best, elapsed_before, samples = st.get("best"), st.get("elapsed_s", 0.0), st.get("samples", 0)
        val = st.get("val")
        if info.is_main:
            log.info("resuming from %s (step %d, epoch %d, batch %d)", resume_path, step, epoch, batch_pos)
    if tc.compile:
        compile_encoders(model)
    objective = Objective(model, loss_fn, tc.local_loss, tc.gather_with_grad, autocast)
    if info.distributed:  # an encoder whose modality a whole local batch lacks does not run
        objective = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    params = [p for p in model.parameters() if p.requires_grad]
    logger = RunLogger(
        out, info.is_main, tc.tensorboard, tc.wandb, tc.wandb_project, to_dict(cfg),
        resume_step=step if resume_path is not None else None,
    )  # fmt: skip

    def run_validation(at_step: int) -> dict:
        metrics = validate(
            model, val_ds, loss_fn, tc.pairs, cfg.data.batch_size, global_batch, info.device, autocast
        )
        logger.log("val", at_step, metrics)
        return metrics

    def checkpoint(at_step: int, val: dict | None) -> None:
        state = {
            "epoch": epoch, "batch": batch_pos, "samples": samples, "global_batch": global_batch,
            "world_size": info.world_size, "accum_steps": tc.accum_steps, "seed": tc.seed,
            "total_steps": total_steps, "best": best, "val": val, "rng": RNG_NOTE,
            "elapsed_s": elapsed_before + time.time() - t_start,
        }  # fmt: skip
        save_checkpoint(ckpt_root, at_step, model, optimizer, state, to_dict(cfg))
        prune_checkpoints(ckpt_root, tc.keep_last, {best["step"]} if best else set())

    # ---- 4. the loop
    batches = stream.batches(epoch, batch_pos)
    bar = tqdm(total=total_steps, initial=step, disable=not (progress and info.is_main), unit="step")
    window = {"n": 0, "sums": {}, "data_s": 0.0, "step_s": 0.0, "samples": 0}
    data_s_total, step_s_total, start_step, stop_reason = 0.0, 0.0, step, None
    last_saved = last_val = step if resume_path is not None else -1
    while step < total_steps:
        t_step = time.time()
        set_lr(optimizer, lr := lr_at(step, tc, total_steps))
        for micro in range(tc.accum_steps):
            t0 = time.time()
            epoch, b, batch = next(batches)
            window["data_s"] += time.time() - t0
            torch.manual_seed(mix_seed(tc.seed, step, micro, info.rank, MODEL))  # DropKey, dropout
            last = micro == tc.accum_steps - 1
            with objective.no_sync() if info.distributed and not last else contextlib.nullcontext():
                loss, terms = objective(batch)
                (loss / tc.accum_steps).backward()
            for k, v in {"loss": loss, **{f"loss/{n}": t for n, t in terms.items()}}.items():
                window["sums"][k] = window["sums"].get(k, 0.0) + v.detach()
            window["n"] += 1
        epoch, batch_pos = (epoch, b + 1) if b + 1 < stream.batches_per_epoch else (epoch + 1, 0)
        if after_backward is not None:
            after_backward(step, model)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip) if tc.grad_clip else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        samples += global_batch * tc.accum_steps
        window["samples"] += global_batch * tc.accum_steps
        window["step_s"] += time.time() - t_step
        maybe_fault("step", step, info.rank)
        time_up = tc.max_minutes is not None and D.any_rank(
            (time.time() - t_start) / 60 >= tc.max_minutes, info.device
        )  # every rank stops at the same step

        if step % tc.log_every == 0 or step == total_steps or time_up:  # ---- logging (every rank joins)
            names = sorted(window["sums"])
            means = D.all_reduce_mean(torch.stack([window["sums"][k] for k in names]) / window["n"]).tolist()
            row = dict(zip(names, means))
            if not all(math.isfinite(v) for v in means):
                raise TrainingError(f"the training loss is not finite at step {step}: {row}")
            dt = window["step_s"]  # time in training steps (validation and checkpoints not counted)
            row.update(
                lr=lr,
                logit_scale=float(model.temperature_scale().detach()),
                samples_per_s=window["samples"] / max(dt, 1e-9),
                data_frac=window["data_s"] / max(dt, 1e-9),
                epoch=epoch + batch_pos / stream.batches_per_epoch,
                **({"grad_norm": float(grad_norm)} if grad_norm is not None else {}),
            )
            logger.log("train", step, row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{row['samples_per_s']:.1f}")
            data_s_total, step_s_total = data_s_total + window["data_s"], step_s_total + window["step_s"]
            window = {"n": 0, "sums": {}, "data_s": 0.0, "step_s": 0.0, "samples": 0}
        bar.update(1)

        if time_up and step < total_steps:
            stop_reason = f"max_minutes ({tc.max_minutes:g})"
            break
        improved = False
        if val_ds is not None and tc.val_every > 0 and step % tc.val_every == 0 and step < total_steps:
            val, last_val = run_validation(step), step
            best, improved = update_best(best, val, tc.best_metric, step)
        if (
            info.is_main
            and ((tc.ckpt_every and step % tc.ckpt_every == 0) or improved)
            and step < total_steps
        ):
            checkpoint(step, val)
            last_saved = step
    bar.close()

    # ---- 5. the end: validation, checkpoint, final/ and best/, summary.json
    if val_ds is not None and last_val != step:
        val = run_validation(step)
        best, _ = update_best(best, val, tc.best_metric, step)
    summary = None
    if info.is_main:
        if last_saved != step:
            checkpoint(step, val)
        _save_model(model, out / "final", cfg)
        if best is not None:
            best_dir = ckpt_root / f"step_{best['step']:06d}"
            src = model if best["step"] == step else _load_weights(cfg, best_dir)
            _save_model(src, out / "best", cfg)
        summary = {
            "status": "stopped" if stop_reason else "complete",
            "stop_reason": stop_reason or ("max_steps" if tc.max_steps else "epochs"),
            "steps": step, "total_steps": total_steps, "steps_this_run": step - start_step,
            "samples": samples, "epochs": epoch + batch_pos / stream.batches_per_epoch,
            "world_size": info.world_size, "global_batch": global_batch, "accum_steps": tc.accum_steps,
            "device": str(info.device), "precision": "bf16" if amp is not None else "fp32",
            "wall_s": time.time() - t_start, "step_s": step_s_total,
            "elapsed_s_all_runs": elapsed_before + time.time() - t_start,
            "samples_per_s": (step - start_step) * global_batch * tc.accum_steps / max(step_s_total, 1e-9),
            "data_frac": data_s_total / max(step_s_total, 1e-9),
            "resumed_from": str(resume_path) if resume_path else None,
            "val": val, "best": best, "final": str(out / "final"),
            "best_model": str(out / "best") if best is not None else None,
            "parameters": model.parameter_summary()["total"], "versions": versions(), "config": to_dict(cfg),
        }  # fmt: skip
        write_json(out / "summary.json", summary)
        log.info(
            "done: %d steps, %.1f samples/s; final model in %s", step, summary["samples_per_s"], out / "final"
        )
    logger.close()
    return summary or {"steps": step, "rank": info.rank}


def update_best(best: dict | None, val: dict, metric: str, step: int) -> tuple[dict | None, bool]:
    """``(best, improved)``: ``val[metric]`` (``val/`` prefix optional; higher is better) becomes the best
    ``{"metric", "value", "step"}`` when it beats ``best``."""
    key = metric.removeprefix("val/")
    if key not in val or (best is not None and val[key] <= best["value"]):
        return best, False
    return {"metric": metric, "value": float(val[key]), "step": step}, True


def _save_model(model, path: Path, cfg: Config) -> None:
    """``save_pretrained`` with every weight, and the full run config as ``config.yaml``."""
    model.save_pretrained(path)
    save_config(cfg, path / "config.yaml")


def _load_weights(cfg: Config, ckpt: Path):
    from moreclip.models import create_model

    model = create_model(cfg.model)
    load_checkpoint(ckpt, model)
    return model
