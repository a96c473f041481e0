"""``moreclip prepare MANIFEST --out CACHE``: decode every record once into memory-mapped arrays (resumable)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="manifest.parquet (or .csv)")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache directory to write (or resume)")
    p.add_argument(
        "--config", metavar="YAML", help="take the preprocessing options from this config's data section"
    )
    p.add_argument("--image-size", type=int, help="X-ray side in pixels (default: data.image_size, 224)")
    p.add_argument(
        "--fit",
        choices=["pad", "crop", "stretch"],
        help="keep aspect + pad, centre crop, or stretch (default pad)",
    )
    p.add_argument("--clahe", action=argparse.BooleanOptionalAction, default=None, help="CLAHE equalisation")
    p.add_argument(
        "--ecg-rate", type=int, help="ECG rate in Hz after resampling (default: data.ecg_rate, 100)"
    )
    p.add_argument("--ecg-seconds", type=float, help="required ECG duration (default: data.ecg_seconds, 10)")
    p.add_argument(
        "--bandpass", action=argparse.BooleanOptionalAction, default=None, help="0.5-100 Hz ECG band-pass"
    )
    p.add_argument("--baseline", choices=["none", "median"], help="ECG baseline removal (default median)")
    p.add_argument(
        "--nan-max", type=float, help="fraction of NaN samples above which an ECG is bad (default 0.05)"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, max 8)")
    p.add_argument("--shard-size", type=int, default=256, help="rows per shard, the unit of resumption")
    p.add_argument("--strict", action="store_true", help="abort on the first bad record")
    p.add_argument("--overwrite", action="store_true", help="rebuild a cache prepared with other options")
    p.add_argument("--max-problems", type=int, default=20, help="problems printed (all go to problems.csv)")


def run(args: argparse.Namespace) -> int:
    import os

    from moreclip.config import Config, load_config
    from moreclip.data.prepare import prepare_cache
    from moreclip.data.preprocess import PreprocessOptions

    cfg = load_config(Config, args.config).data
    opts = PreprocessOptions.from_config(
        cfg,
        image_size=args.image_size,
        xray_fit=args.fit,
        clahe=args.clahe,
        ecg_rate=args.ecg_rate,
        ecg_seconds=args.ecg_seconds,
        ecg_bandpass=args.bandpass,
        ecg_baseline=args.baseline,
        ecg_nan_max=args.nan_max,
    )
    workers = args.workers or max(1, min(8, os.cpu_count() or 1))
    res = prepare_cache(
        args.manifest,
        args.out,
        opts,
        workers=workers,
        shard_size=args.shard_size,
        strict=args.strict,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    c = res.counts
    state = "already complete, nothing to do" if res.up_to_date else "complete"
    if res.shards_done_before and not res.up_to_date:
        state += f" (resumed: {res.shards_done_before} of {res.shards_total} shards were done)"
    print(f"cache {res.path}: {state}")
    print(
        f"  {c['rows']} rows: {c['xray']} X-rays, {c['ecg']} ECGs, "
        f"{c['xray_report']} X-ray reports, {c['ecg_report']} ECG reports"
    )
    if res.problems:
        print(
            f"  {c['skipped']} record(s) skipped, {c['repaired']} ECG(s) with NaN set to 0; "
            f"all listed in {res.path / 'problems.csv'}"
        )
        for p in res.problems[: args.max_problems]:
            print(f"    row {p['row']} ({p['modality']}, {p['action']}): {p['file']}: {p['problem']}")
        if len(res.problems) > args.max_problems:
            print(f"    ... and {len(res.problems) - args.max_problems} more")
    return 0
