"""``moreclip pretrain --config CONFIG.yaml [key=value ...] [--resume PATH|auto]``: contrastive pre-training.

Multi-GPU (or several CPU processes): ``torchrun --nproc_per_node N -m moreclip pretrain --config ...``.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="run config (model, data, train sections; see configs/)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. train.max_steps=100 model.xray.depth=2 data.batch_size=16",
    )
    p.add_argument(
        "--resume",
        metavar="PATH|auto",
        help="continue a run: 'auto' = newest complete checkpoint in train.output_dir (a new run when there "
        "is none), or a checkpoint folder (its config.yaml is used when --config is not given)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from moreclip.config import read_yaml
    from moreclip.errors import ConfigError
    from moreclip.train import load_train_config, pretrain

    base = None
    if args.config is None:
        if not args.resume or args.resume == "auto":
            raise ConfigError("--config is required (except with --resume CHECKPOINT_FOLDER)")
        base = read_yaml(Path(args.resume) / "config.yaml")
    cfg = load_train_config(args.config, args.overrides, base=base)
    summary = pretrain(cfg, resume=args.resume, progress=not (args.no_progress or args.quiet))
    if "status" in summary:  # rank 0
        brief = {k: summary[k] for k in ("status", "stop_reason", "steps", "samples_per_s", "final", "best")}
        print(json.dumps(brief, indent=1, default=str))
    return 0
