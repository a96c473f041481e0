"""``moreclip synth --out DIR --n N --seed S``: generate the embedded synthetic cohort in the real formats."""

from __future__ import annotations

import argparse
import os


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {v:g}")
    return v


def _split(text: str) -> tuple[float, float, float]:
    parts = text.replace("/", ",").split(",")
    try:
        values = tuple(float(x) for x in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.7,0.1,0.2, got {text!r}") from None
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected three non-negative train,val,test fractions, got {text!r}"
        )
    return values  # type: ignore[return-value]


def add_cohort_arguments(p: argparse.ArgumentParser, *, out_default: str | None, n_default: int) -> None:
    """Options shared by ``synth`` and ``demo``."""
    p.add_argument("--out", default=out_default, required=out_default is None, help="cohort folder")
    p.add_argument("--n", type=int, default=n_default, help=f"number of patients (default {n_default})")
    p.add_argument("--seed", type=int, default=0, help="cohort seed: same seed, same bytes (default 0)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: CPU count, max 8; output does not depend on it)",
    )
    p.add_argument("--image-size", type=int, default=256, help="radiograph side in pixels (default 256)")
    p.add_argument(
        "--missing-xray",
        type=_fraction,
        default=0.05,
        help="fraction of samples without X-ray (default 0.05)",
    )
    p.add_argument(
        "--missing-ecg", type=_fraction, default=0.05, help="fraction of samples without ECG (default 0.05)"
    )
    p.add_argument(
        "--split", type=_split, default=(0.7, 0.1, 0.2), help="train,val,test fractions (default 0.7,0.1,0.2)"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cohort_arguments(p, out_default=None, n_default=1000)
    p.add_argument("--overwrite", action="store_true", help="replace a cohort already in --out")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def run(args: argparse.Namespace) -> int:
    from moreclip.data.synthetic import generate_cohort

    path = generate_cohort(
        args.out,
        args.n,
        args.seed,
        workers=args.workers or default_workers(),
        image_size=args.image_size,
        missing_xray=args.missing_xray,
        missing_ecg=args.missing_ecg,
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"wrote {args.n} synthetic patients: {path}")
    return 0
