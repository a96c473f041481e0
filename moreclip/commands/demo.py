"""``moreclip demo``: generate a synthetic cohort, validate it and summarise it (provisional).

Until the full demo exists (training, zero-shot, retrieval and an HTML report on the cohort), this is the
first stage of it: it writes (or reuses, when the same settings already made it) a cohort under ``--out``,
checks every row and file with :func:`moreclip.data.validate.validate_manifest` and prints the summary,
ending with where the cohort is.
"""

from __future__ import annotations

import argparse

from moreclip.commands.synth import add_cohort_arguments, default_workers


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cohort_arguments(p, out_default="demo", n_default=500)
    p.add_argument(
        "--fresh", action="store_true", help="regenerate the cohort even if --out already holds it"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from moreclip.data.manifest import read_manifest
    from moreclip.data.synthetic import cohort_settings, generate_cohort
    from moreclip.data.validate import validate_manifest

    workers = args.workers or default_workers()
    out = Path(args.out)
    manifest = out / "manifest.parquet"
    wanted = cohort_settings(
        args.n, args.seed, args.image_size, args.missing_xray, args.missing_ecg, args.split
    )
    reuse = False
    if manifest.is_file() and not args.fresh:
        try:
            have = read_manifest(manifest).meta
        except Exception:  # unreadable or foreign: regenerate below
            have = {}
        reuse = all(have.get(k) == v for k, v in wanted.items())
    if reuse:
        print(f"step 1/2: reusing the synthetic cohort in {out} ({args.n} patients, seed {args.seed})")
    else:
        print(
            f"step 1/2: generating {args.n} synthetic patients (seed {args.seed}, {workers} workers) in {out}"
        )
        generate_cohort(
            out,
            args.n,
            args.seed,
            workers=workers,
            image_size=args.image_size,
            missing_xray=args.missing_xray,
            missing_ecg=args.missing_ecg,
            split=args.split,
            overwrite=True,
            progress=not args.quiet,
        )
    print("step 2/2: validating every row and file")
    m = read_manifest(manifest)
    report = validate_manifest(m, ecg_fs=500, workers=workers, progress=not args.quiet)
    print(report.format())
    print()
    if not report.ok:
        print(f"the cohort in {out.resolve()} has problems (see above)")
        return 1
    print(f"synthetic cohort ready: {manifest.resolve()}")
    print(f"  radiographs {out.resolve() / 'xray'}, ECGs {out.resolve() / 'ecg'}")
    print(
        "  (the full demo - pre-training, zero-shot, retrieval and an HTML report - comes in a later release)"
    )
    return 0
