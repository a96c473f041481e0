"""Arguments shared by ``moreclip zeroshot`` / ``probe`` / ``retrieval`` (standard library only)."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser, task: bool = True) -> None:
    """--model, --manifest/--cache, (--task), --out, data/model overrides, embedding and bootstrap settings."""
    p.add_argument(
        "--model", required=True, help="checkpoint directory (or a registered model name: random weights)"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", metavar="PARQUET", help="manifest to read raw files from")
    src.add_argument("--cache", metavar="DIR", help="cache written by moreclip prepare (faster)")
    if task:
        p.add_argument(
            "--task", required=True, help="built-in task name (see docs/tasks.md) or a task YAML file"
        )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default <model>/eval/<command>-<task>, or results/... for a non-checkpoint model)",
    )
    p.add_argument(
        "-d",
        "--data-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the data config derived from the model, e.g. -d ecg_norm=minmax (repeatable)",
    )
    p.add_argument(
        "-o",
        "--model-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the model config at load time (repeatable)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="samples per forward pass (default 64)")
    p.add_argument(
        "--workers", type=int, default=None, help="data loader workers (default: 0 with a cache, 2 otherwise)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples of the 95%% CIs (0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (and pools / subsets)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots (matplotlib not needed)")


def add_query(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modality", choices=["xray", "ecg"], help="query modality instead of the task's own")
    p.add_argument(
        "--fuse",
        action="store_true",
        help="query with the X-ray and ECG embeddings averaged (either when one)",
    )


def common_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of moreclip.eval.runs.evaluate_* from the parsed common arguments."""
    import os
    import sys

    return {
        "manifest": args.manifest,
        "cache": args.cache,
        "out": args.out,
        "data_overrides": args.data_override,
        "model_overrides": args.model_override,
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "device": args.device,
        "n_resamples": args.bootstrap,
        "seed": args.seed,
        "plots": not args.no_plots,
        "progress": not getattr(args, "quiet", False),
        "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv else None,
    }


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
