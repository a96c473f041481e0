"""``moreclip index {build,add,search,info}``: a persistent vector index of a model's embeddings.

    moreclip index build --model runs/demo/checkpoint --manifest cohort/manifest.parquet --out runs/index
    moreclip index search --index runs/index --text "left pleural effusion" --target xray --k 5
    moreclip index search --index runs/index --ecg cohort/ecg/synth-000012 --target report --json
    moreclip index add --index runs/index --manifest more/manifest.parquet
    moreclip index info --index runs/index

Search results show a short excerpt of each hit's report (the user asked for them); ``--no-excerpt``
hides it. Nothing is logged about report contents.
"""

from __future__ import annotations

import argparse
import json
import sys

MODALITIES = ("xray", "ecg", "xray_report", "ecg_report")
TARGETS = (*MODALITIES, "report")


def _modalities(value: str) -> list[str]:
    mods = [m.strip() for m in value.split(",") if m.strip()]
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(MODALITIES)}")
    return mods


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="samples per forward pass (default 64)")
    p.add_argument(
        "--excerpt-chars", type=int, default=200, help="report characters stored per hit (0: none)"
    )
    p.add_argument(
        "--strict", action="store_true", help="fail on an unreadable record instead of skipping it"
    )
    p.add_argument("--workers", type=int, default=0, help="processes decoding records (default 0: this one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_command", metavar="<action>", required=True)
    b = sub.add_parser("build", help="embed every sample of a manifest into a new index",
                       description="Embed every sample of a manifest, per modality, into a new index.")  # fmt: skip
    b.add_argument("--model", required=True, help="checkpoint directory (recorded in the index)")
    b.add_argument("--manifest", required=True, help="manifest.parquet")
    b.add_argument("--out", required=True, help="index folder to write (an existing index there is replaced)")
    b.add_argument("--modalities", type=_modalities, default=list(MODALITIES),
                   help="comma-separated (default: xray,ecg,xray_report,ecg_report)")  # fmt: skip
    b.add_argument("--kind", choices=["auto", "flat", "hnsw", "ivf"], default="auto",
                   help="FAISS index: auto (exact up to --exact-max vectors, HNSW above; default)")  # fmt: skip
    b.add_argument(
        "--exact-max", type=int, default=100_000, help="auto: exact search up to this many vectors"
    )
    _common(b)

    a = sub.add_parser("add", help="embed the manifest rows an index does not hold yet and add them",
                       description="Add the rows of a manifest that the index does not hold yet.")  # fmt: skip
    a.add_argument("--index", required=True, help="index folder")
    a.add_argument("--manifest", required=True, help="manifest.parquet with new rows")
    a.add_argument(
        "--model", help="checkpoint (default: the one recorded in the index; must be the same weights)"
    )
    a.add_argument("--modalities", type=_modalities, help="default: those the index holds")
    _common(a)

    s = sub.add_parser("search", help="nearest samples to a text, X-ray or ECG query",
                       description="Nearest stored samples to a text, X-ray or ECG query.")  # fmt: skip
    s.add_argument("--index", required=True, help="index folder")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="a text query, e.g. 'moderate left pleural effusion'")
    q.add_argument("--xray", metavar="IMG", help="a radiograph file")
    q.add_argument("--ecg", metavar="RECORD", help="a 12-lead WFDB record")
    s.add_argument("--target", choices=TARGETS,
                   help="modality searched; report = both report modalities merged by score "
                        "(default: report for --text, xray for --xray, ecg for --ecg)")  # fmt: skip
    s.add_argument("--k", type=int, default=10, help="hits (default 10)")
    s.add_argument(
        "--model", help="checkpoint (default: the one recorded in the index; must be the same weights)"
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--no-excerpt", action="store_true", help="do not show report excerpts")

    i = sub.add_parser("info", help="what an index holds and which model built it",
                       description="Modalities, counts, index kinds and the model of an index.")  # fmt: skip
    i.add_argument("--index", required=True, help="index folder")


def run(args: argparse.Namespace) -> int:
    import logging

    from moreclip.index.model_index import require_faiss

    if not getattr(args, "verbose", 0):
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it found
    require_faiss()
    return {"build": _build, "add": _add, "search": _search, "info": _info}[args.index_command](args)


def _build(args) -> int:
    from moreclip.index import IndexParams
    from moreclip.index.model_index import build_index

    params = IndexParams(kind=args.kind, exact_max=args.exact_max)
    index = build_index(args.model, args.manifest, args.modalities, params=params, excerpt_chars=args.excerpt_chars,
                        batch_size=args.batch_size, progress=not args.no_progress, strict=args.strict,
                        num_workers=args.workers)  # fmt: skip
    path = index.save(args.out)
    counts = ", ".join(f"{m}: {index.count(m)} ({index.kind(m)})" for m in index.modalities)
    print(f"wrote {path}: {counts}")
    return 0


def _add(args) -> int:
    from moreclip.index import VectorIndex
    from moreclip.index.model_index import add_to_index, index_model

    index = VectorIndex.load(args.index)
    model = index_model(index, args.model)
    added = add_to_index(index, model, args.manifest, args.modalities, excerpt_chars=args.excerpt_chars,
                         batch_size=args.batch_size, progress=not args.no_progress, strict=args.strict,
                         num_workers=args.workers)  # fmt: skip
    path = index.save(args.index)
    counts = ", ".join(f"{m}: +{n} -> {index.count(m) if m in index else 0}" for m, n in added.items())
    print(f"updated {path}: {counts}")
    return 0


def _excerpt(text, width: int = 60) -> str:
    if text is None or text != text:
        return ""
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "\u2026"


def _search(args) -> int:
    from moreclip.errors import ConfigError
    from moreclip.index import VectorIndex
    from moreclip.index.model_index import index_model, search_index, target_modalities

    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    index = VectorIndex.load(args.index)
    target = args.target or ("report" if args.text is not None else "xray" if args.xray else "ecg")
    target_modalities(index, target)  # a clear error before the model is loaded
    model = index_model(index, args.model)
    hits = search_index(index, model, target, args.k, text=args.text, xray=args.xray, ecg=args.ecg)
    if args.no_excerpt and "excerpt" in hits:
        hits = hits.drop(columns="excerpt")
    if args.json:
        records = json.loads(hits.to_json(orient="records"))
        query = (
            {"text": args.text}
            if args.text is not None
            else {"xray": args.xray}
            if args.xray
            else {"ecg": args.ecg}
        )
        out = {"index": str(args.index), "target": target, "k": args.k, "query": query, "hits": records}
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    cols = ["rank", "score", "sample_id", "modality"] + [c for c in ("split",) if c in hits]
    table = hits[cols].copy()
    table["score"] = table["score"].map(lambda v: f"{v:.3f}")
    if "excerpt" in hits:
        table["excerpt"] = hits["excerpt"].map(_excerpt)
    print(table.to_string(index=False) if len(table) else "no hits")
    return 0


def _info(args) -> int:
    from moreclip.index import VectorIndex

    index = VectorIndex.load(args.index)
    info = index.model_info or {}
    print(f"index {args.index}: {len(index)} vectors")
    for m in index.modalities:
        print(f"  {m:<12} {index.count(m):>9} x {index.dim(m)}  {index.kind(m)}")
    print(f"model: {info.get('name')} {info.get('checkpoint')} (sha256 {str(info.get('sha256'))[:12]})")
    for m in info.get("manifests") or []:
        print(f"manifest: {m}")
    return 0
