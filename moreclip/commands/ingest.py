"""``moreclip ingest {mimic,ptbxl,chexpert,edema}``: turn a public data set, in the layout its publisher
ships, into a manifest (plus ``<manifest>.ingest.json`` listing every problem found)."""

from __future__ import annotations

import argparse


def _views(text: str) -> list[str] | None:
    return (
        None
        if text.strip().lower() in ("all", "any", "")
        else [v.strip() for v in text.split(",") if v.strip()]
    )


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three numbers train,val,test, e.g. 0.9,0.05,0.05")
    return parts[0], parts[1], parts[2]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (write no manifest) on any problem instead of skipping rows",
    )
    p.add_argument(
        "--no-check-files",
        dest="check_files",
        action="store_false",
        help="do not check that every file named by the tables exists (faster on slow file systems)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="source", metavar="<source>", required=True)

    m = sub.add_parser("mimic", help="MIMIC-CXR-JPG (+ reports) paired with MIMIC-IV-ECG by subject and time")
    m.add_argument(
        "--cxr-root", required=True, help="MIMIC-CXR-JPG folder (files/, mimic-cxr-2.0.0-*.csv.gz)"
    )
    m.add_argument("--ecg-root", required=True, help="MIMIC-IV-ECG folder (files/, record_list.csv, ...)")
    m.add_argument(
        "--reports-root", help="MIMIC-CXR reports folder holding files/pXX/pXXXXXXXX/sXXXXXXXX.txt"
    )
    m.add_argument("--out", required=True, help="manifest to write (.parquet)")
    m.add_argument("--window", default="24h", help="max |ECG time - study time| (default 24h; MoRE used 60d)")
    m.add_argument(
        "--views",
        default="PA,AP",
        type=_views,
        help="ViewPosition kept, preferred first (default PA,AP; 'all')",
    )
    m.add_argument(
        "--per-image", action="store_true", help="one row per image instead of one frontal image per study"
    )
    m.add_argument(
        "--ecgs-per-study", type=int, default=1, help="pair each study with up to K nearest ECGs (default 1)"
    )
    m.add_argument("--unique-ecgs", action="store_true", help="an ECG pairs with at most one study")
    m.add_argument(
        "--keep-unpaired", action="store_true", help="keep studies without ECG and ECGs without study"
    )
    m.add_argument(
        "--hash-split",
        type=_fractions,
        default=(0.9, 0.05, 0.05),
        help="train,val,test fractions for subjects absent from the official split (default 0.9,0.05,0.05)",
    )
    _common(m)

    x = sub.add_parser("ptbxl", help="PTB-XL: diagnostic superclasses and SCP codes, strat_fold splits")
    x.add_argument(
        "--root", required=True, help="PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records500/)"
    )
    x.add_argument("--out", required=True, help="manifest to write (.parquet)")
    x.add_argument(
        "--rate", type=int, choices=(100, 500), default=500, help="records100 or records500 (default 500)"
    )
    _common(x)

    c = sub.add_parser("chexpert", help="CheXpert train.csv / valid.csv with the 14 observations")
    c.add_argument(
        "--root", required=True, help="CheXpert folder (train.csv, valid.csv, train/, valid/) or its parent"
    )
    c.add_argument(
        "--out",
        default="manifests/chexpert.parquet",
        help="manifest to write (default manifests/chexpert.parquet)",
    )
    c.add_argument(
        "--val-fraction", type=float, default=0.05, help="train patients moved to val (default 0.05)"
    )
    c.add_argument("--all-views", dest="frontal_only", action="store_false", help="keep lateral images too")
    _common(c)

    e = sub.add_parser("edema", help="MIMIC-CXR pulmonary edema severity (0-3) labels")
    e.add_argument("--labels", required=True, help="label CSV (e.g. consensus_image_edema_severity.csv)")
    e.add_argument("--cxr-root", required=True, help="MIMIC-CXR-JPG folder")
    e.add_argument("--reports-root", help="MIMIC-CXR reports folder (optional)")
    e.add_argument(
        "--out", default="manifests/edema.parquet", help="manifest to write (default manifests/edema.parquet)"
    )
    e.add_argument("--id-column", help="CSV column with the ids (default dicom_id if present, else study_id)")
    e.add_argument(
        "--id-kind", choices=("dicom_id", "study_id"), help="what --id-column holds (default: from its name)"
    )
    e.add_argument("--label-column", help="CSV column with the severity (default edema_severity)")
    e.add_argument(
        "--views",
        default="PA,AP",
        type=_views,
        help="study-keyed labels: image views preferred (default PA,AP)",
    )
    e.add_argument(
        "--split",
        choices=("official", "hash", "test"),
        default="official",
        help="official MIMIC-CXR split (default), stable hash of the subject, or all rows in test",
    )
    _common(e)


def run(args: argparse.Namespace) -> int:
    progress = not args.quiet
    common = {"strict": args.strict, "check_files": args.check_files, "progress": progress}
    if args.source == "mimic":
        from moreclip.data.mimic import ingest_mimic

        result = ingest_mimic(
            args.cxr_root,
            args.ecg_root,
            args.out,
            reports_root=args.reports_root,
            window=args.window,
            views=args.views,
            per_image=args.per_image,
            ecgs_per_study=args.ecgs_per_study,
            unique_ecgs=args.unique_ecgs,
            keep_unpaired=args.keep_unpaired,
            hash_fractions=args.hash_split,
            **common,
        )
    elif args.source == "ptbxl":
        from moreclip.data.ptbxl import ingest_ptbxl

        result = ingest_ptbxl(args.root, args.out, rate=args.rate, **common)
    elif args.source == "chexpert":
        from moreclip.data.chexpert import ingest_chexpert

        result = ingest_chexpert(
            args.root, args.out, val_fraction=args.val_fraction, frontal_only=args.frontal_only, **common
        )
    else:
        from moreclip.data.edema import ingest_edema

        result = ingest_edema(
            args.labels,
            args.cxr_root,
            args.out,
            id_column=args.id_column,
            id_kind=args.id_kind,
            label_column=args.label_column,
            reports_root=args.reports_root,
            views=args.views,
            split=args.split,
            **common,
        )
    print(result.report.format())
    print(f"wrote {result.manifest} ({len(result.df)} rows); every problem is listed in {result.report_path}")
    print(f"next: moreclip validate {result.manifest}")
    return 0
