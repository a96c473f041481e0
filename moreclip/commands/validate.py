"""``moreclip validate MANIFEST``: check every row and file; exit 1 when anything is wrong."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="manifest.parquet (or .csv) to check")
    p.add_argument("--json", metavar="OUT", help="also write the full report (every problem) as JSON")
    p.add_argument("--no-files", action="store_true", help="check the table only, do not decode files")
    p.add_argument(
        "--ecg-rate", type=float, default=None, help="required ECG sampling rate in Hz (default: any)"
    )
    p.add_argument(
        "--ecg-seconds", type=float, default=10.0, help="required ECG duration (default: 10; 0: any)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes decoding files (default: CPU count, max 8)"
    )
    p.add_argument("--max-problems", type=int, default=50, help="problems printed (all go to --json)")


def run(args: argparse.Namespace) -> int:
    from moreclip.data.manifest import read_manifest
    from moreclip.data.validate import default_workers, validate_manifest

    m = read_manifest(args.manifest)
    report = validate_manifest(
        m,
        check_files=not args.no_files,
        ecg_fs=args.ecg_rate,
        ecg_seconds=args.ecg_seconds or None,
        workers=args.workers or default_workers(),
        progress=not args.quiet,
    )
    print(f"manifest: {m.path}  (X-ray root {m.xray_root}, ECG root {m.ecg_root})")
    print(report.format(args.max_problems))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"manifest": str(m.path), **report.to_dict()}, indent=2))
    return 0 if report.ok else 1
