"""``moreclip probe --model DIR --manifest M --task T``: logistic regression on frozen embeddings."""

from __future__ import annotations

import argparse

from moreclip.commands._evalargs import add_common, add_query, common_kwargs, float_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    add_query(p)
    p.add_argument(
        "--fractions",
        type=float_list,
        default=[0.01, 0.1, 1.0],
        help="fractions of the training subjects whose labels are used (default 0.01,0.1,1.0)",
    )
    p.add_argument("--seeds", type=int, default=3, help="subject samples per fraction (default 3)")
    p.add_argument(
        "--C",
        dest="C_grid",
        type=float_list,
        default=None,
        help="inverse regularisation candidates chosen on val (default 0.001,0.01,0.1,1,10)",
    )


def run(args: argparse.Namespace) -> int:
    from moreclip.eval.results import fmt
    from moreclip.eval.runs import evaluate_probe

    res, out = evaluate_probe(
        args.model,
        task=args.task,
        fractions=args.fractions,
        seeds=args.seeds,
        C_grid=args.C_grid,
        modality=args.modality,
        fuse=args.fuse,
        **common_kwargs(args),
    )
    key = "macro_auroc" if res.task.type == "multiclass" else "auroc"
    print(f"linear probe {res.task.name} from {res.query} ({res.n['train']} train samples):")
    for f, s in res.summary.items():
        print(f"  {float(f):>7.2%} of labels: macro AUROC {fmt(s.get('macro', {}).get(key))}")
    print(f"results in {out}")
    return 0
