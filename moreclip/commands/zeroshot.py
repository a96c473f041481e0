"""``moreclip zeroshot --model DIR --manifest M --task T``: zero-shot classification from text prompts."""

from __future__ import annotations

import argparse

from moreclip.commands._evalargs import add_common, add_query, common_kwargs


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    add_query(p)
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--val-split",
        default="val",
        help="split whose F1-maximising thresholds are applied ('none': no F1; default val)",
    )


def run(args: argparse.Namespace) -> int:
    from moreclip.eval.runs import evaluate_zero_shot

    res, out = evaluate_zero_shot(
        args.model,
        task=args.task,
        split=args.split,
        val_split=None if args.val_split.lower() == "none" else args.val_split,
        modality=args.modality,
        fuse=args.fuse,
        **common_kwargs(args),
    )
    rep = res.report
    if res.multiclass:
        line = f"accuracy {_v(rep['accuracy'])}, macro-F1 {_v(rep['macro_f1'])}, macro AUROC {_v(rep['macro_auroc'])}"
    else:
        m = rep["macro"]
        line = f"macro AUROC {_v(m['auroc'])}, AUPRC {_v(m['auprc'])} over {m['n_labels']} labels"
        if "f1" in m:
            line += f", F1 {_v(m['f1'])}"
    print(f"zero-shot {res.task.name} from {res.query} on {len(res.sample_ids)} samples: {line}")
    print(f"results in {out}")
    return 0


def _v(e: dict) -> str:
    from moreclip.eval.results import fmt

    return fmt(e)
