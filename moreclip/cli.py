"""The ``moreclip`` console script: a thin argparse layer, one sub-command per pipeline stage.

Each sub-command lives in ``moreclip/commands/<name>.py`` with two functions, ``add_arguments(parser)``
and ``run(args) -> int``; those modules import only the standard library at the top so that
``moreclip --help`` stays fast, and call a public library function that does the work. Errors the user
can act on (:class:`moreclip.errors.MoreclipError`) are printed as one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from moreclip import __version__
from moreclip.errors import MoreclipError

# name -> (module, one-line purpose); the order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": (
        "moreclip.commands.synth",
        "generate the embedded synthetic cohort (radiographs, ECGs, reports)",
    ),
    "ingest": (
        "moreclip.commands.ingest",
        "turn MIMIC / PTB-XL / CheXpert / edema data as shipped into a manifest",
    ),
    "validate": ("moreclip.commands.validate", "check every row and file of a manifest"),
    "prepare": ("moreclip.commands.prepare", "decode a manifest once into a memory-mapped cache (resumable)"),
    "info": ("moreclip.commands.info", "describe a model: config and trainable / frozen parameters"),
    "pretrain": (
        "moreclip.commands.pretrain",
        "contrastive pre-training (one process or torchrun; resumable)",
    ),
    "zeroshot": ("moreclip.commands.zeroshot", "zero-shot classification of a task from text prompts"),
    "probe": ("moreclip.commands.probe", "linear probe on frozen embeddings at fractions of the labels"),
    "retrieval": ("moreclip.commands.retrieval", "cross-modal retrieval: Recall@K and median rank"),
    "explain": (
        "moreclip.commands.explain",
        "heat maps, ECG attribution and report word importance for one input",
    ),
    "index": ("moreclip.commands.index", "vector index of a model's embeddings: build, add, search"),
    "demo": (
        "moreclip.commands.demo",
        "the whole method on a generated cohort: pre-train, evaluate, explain, index, HTML report",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moreclip",
        description="Multi-modal contrastive pre-training on chest X-rays, 12-lead ECGs and reports (MoRE).",
    )
    parser.add_argument("--version", action="version", version=f"moreclip {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    for name, (module, purpose) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=purpose, description=purpose[:1].upper() + purpose[1:] + ".")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if verbose < 2:  # the root level is INFO: FAISS logs its SIMD probing (a page of failed imports) there
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except MoreclipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
