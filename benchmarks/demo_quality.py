"""The demo's quality bar over three seeds: the whole demo pipeline for seeds 0, 1, 2, every headline metric,
and whether each threshold of ``moreclip.demo.QUALITY_BAR`` holds.

    python benchmarks/demo_quality.py                       # seeds 0 1 2, demo defaults (2,500 patients, 5 min)
    python benchmarks/demo_quality.py --seeds 0 --minutes 3 # one seed, shorter training
    python benchmarks/demo_quality.py --quick               # 1 seed, 300 patients, 0.5 min: proves it runs

Each seed runs :func:`moreclip.demo.run_demo` (cohort, cache, training, evaluation, index, explanations,
report) into ``--work/seed<k>`` (default ``benchmarks/out/demo_quality/``); a seed whose folder already
holds a finished demo with the same settings is not recomputed (the demo's stage markers). Writes JSON
(``--out``, default ``benchmarks/out/demo_quality.json``): per seed the headline metrics, the pass/fail of
every threshold and the time per stage; the mean / min / max of every metric over seeds; and ``all_pass``
(every threshold held for every seed). Retrieval thresholds are defined among 500 held-out candidates:
with fewer test samples (``--quick``) they cannot pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=None, help="patients (default: the demo's 2,500)")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: the demo's 5)")
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="training config overrides")
    p.add_argument("--quick", action="store_true", help="1 seed, 300 patients, 0.5 minutes (thresholds fail)")
    p.add_argument("--work", default=str(HERE / "out" / "demo_quality"), help="demo folders (one per seed)")
    p.add_argument("--out", default=str(HERE / "out" / "demo_quality.json"))
    args = p.parse_args(argv)

    from moreclip.demo import QUALITY_BAR, format_headline, run_demo
    from moreclip.demo.pipeline import DemoSettings

    defaults = DemoSettings()
    seeds = args.seeds[:1] if args.quick else args.seeds
    n = args.n or (300 if args.quick else defaults.n)
    minutes = args.minutes or (0.5 if args.quick else defaults.minutes)
    work = Path(args.work) / ("quick" if args.quick else "")
    runs = {}
    t0 = time.time()
    for seed in seeds:
        print(
            f"=== seed {seed}: {n} patients, {minutes:g} min of training -> {work / f'seed{seed}'}",
            flush=True,
        )
        summary = run_demo(work / f"seed{seed}", n, minutes, seed, overrides=list(args.set),
                           progress=False, echo=lambda s: print("  " + s, flush=True))  # fmt: skip
        print(format_headline(summary["headline"]), flush=True)
        train = json.loads((work / f"seed{seed}" / "run" / "summary.json").read_text())
        runs[str(seed)] = {
            "headline": summary["headline"], "bar": summary["bar"],
            "all_pass": all(b["pass"] for b in summary["bar"].values()),
            "timings_s": {k: v["seconds"] for k, v in summary["timings"].items()},
            "train": {k: train.get(k) for k in ("status", "steps", "samples_per_s", "wall_s", "epochs")},
        }  # fmt: skip
    keys = sorted({k for r in runs.values() for k, v in r["headline"].items() if isinstance(v, int | float)})
    stats = {}
    for agg, fn in (("mean", lambda v: sum(v) / len(v)), ("min", min), ("max", max)):
        stats[agg] = {k: fn(vals) for k in keys if (vals := [r["headline"][k] for r in runs.values()
                                                            if isinstance(r["headline"].get(k), int | float)])}  # fmt: skip
    thresholds = {
        name: {"metric": key, "min": low, "what": what, "pass_per_seed": {s: r["bar"][name]["pass"] for s, r in runs.items()},
               "values": {s: r["bar"][name]["value"] for s, r in runs.items()}}
        for name, (key, low, what) in QUALITY_BAR.items()
    }  # fmt: skip
    result = {
        "benchmark": "demo_quality", "seeds": seeds, "n": n, "minutes": minutes, "overrides": args.set,
        "quick": args.quick, "all_pass": all(r["all_pass"] for r in runs.values()), "thresholds": thresholds,
        **stats, "runs": runs, "wall_s": round(time.time() - t0, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load": list(os.getloadavg())},
    }  # fmt: skip
    print("\nthreshold" + " " * 48 + "  ".join(f"seed {s}" for s in seeds))
    for t in thresholds.values():
        cells = "  ".join(f"{t['values'][str(s)]:.3f}{'✓' if t['pass_per_seed'][str(s)] else '✗'}"
                          if t["values"][str(s)] is not None else "  n/a  " for s in seeds)  # fmt: skip
        print(f"{t['what'] + ' >= ' + format(t['min'], 'g'):<56}{cells}")
    print(f"all thresholds met for every seed: {result['all_pass']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
