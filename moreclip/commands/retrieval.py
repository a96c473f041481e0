"""``moreclip retrieval --model DIR --manifest M``: cross-modal Recall@K and median rank, both directions."""

from __future__ import annotations

import argparse

from moreclip.commands._evalargs import add_common, common_kwargs, int_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p, task=False)
    p.add_argument(
        "--pairs",
        help="comma-separated a:b pairs of xray, ecg, xray_report, ecg_report "
        "(default: every pair present together in the data)",
    )
    p.add_argument(
        "--pool",
        type=int,
        default=None,
        help="rank each query among its match and POOL-1 random others (default: among all)",
    )
    p.add_argument("--ks", type=int_list, default=[1, 5, 10], help="the K of Recall@K (default 1,5,10)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")


def run(args: argparse.Namespace) -> int:
    from moreclip.eval.results import fmt
    from moreclip.eval.runs import evaluate_retrieval

    res, out = evaluate_retrieval(
        args.model, pairs=args.pairs, pool=args.pool, ks=args.ks, split=args.split, **common_kwargs(args)
    )
    for pair in res.report.values():
        for name, m in pair.items():
            recalls = ", ".join(f"R@{k} {fmt(m[f'recall@{k}'])}" for k in res.ks)
            print(f"{name} ({m['n_queries']} queries): {recalls}, median rank {m['median_rank']:g}")
    for k, v in res.skipped.items():
        print(f"skipped {k}: {v}")
    print(f"results in {out}")
    return 0
