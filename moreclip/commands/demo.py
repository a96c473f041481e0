"""``moreclip demo [--out DIR] [--n N] [--minutes M] [--seed S]``: the whole method on a synthetic cohort.

Generates the cohort, decodes it into a cache, pre-trains the demo config (``configs/demo.yaml``, about
5 minutes on 2 CPU cores), evaluates zero-shot, linear probe (against random init) and retrieval on the
held-out test split, builds a vector index, explains a few test patients, and writes ``DIR/report.html``.
Interrupted? The same command continues: finished stages are skipped, training resumes from its last
checkpoint. Work is done by :func:`moreclip.demo.run_demo`.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from moreclip.demo.pipeline import DemoSettings

    d = DemoSettings()  # the API's defaults are the command's
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out}/)")
    p.add_argument("--n", type=int, default=d.n, help=f"patients in the synthetic cohort (default {d.n})")
    p.add_argument(
        "--minutes",
        type=float,
        default=d.minutes,
        help=f"training budget on 2 CPU cores; sets the number of training steps (default {d.minutes:g})",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"cohort and training seed (default {d.seed})")
    p.add_argument("--config", default=None, help="training config (default: the packaged configs/demo.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training config override, e.g. --set data.batch_size=16 (repeatable)",
    )
    p.add_argument(
        "--patients",
        type=int,
        default=d.patients,
        help=f"test patients explained in the report (default {d.patients})",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes for cohort and cache (default: CPUs, max 8)"
    )
    p.add_argument("--fresh", action="store_true", help="delete DIR's previous results and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from moreclip.demo import format_headline, run_demo
    from moreclip.errors import ConfigError

    out = Path(args.out)
    if args.n < 20:
        raise ConfigError(f"--n must be at least 20 patients, got {args.n}")
    if args.fresh and out.exists():
        if not (out / "demo.json").is_file():
            raise ConfigError(f"--fresh: {out} is not a demo folder (no demo.json); not deleting it")
        shutil.rmtree(out)
    print(f"moreclip demo -> {out.resolve()}")
    try:
        summary = run_demo(
            out, args.n, args.minutes, args.seed, config=args.config, overrides=args.overrides,
            patients=args.patients, workers=args.workers, progress=not (args.no_progress or args.quiet),
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to continue where it stopped (results in {out})")
        return 130
    print()
    print(format_headline(summary["headline"]))
    failed = [b["what"] for b in summary["bar"].values() if not b["pass"]]
    if failed:
        print(f"\nbelow the demo's quality bar: {'; '.join(failed)}")
    print(f"\nreport: {Path(summary['report']).resolve()}")
    print(
        f"config: {(out / 'config.yaml').resolve()}  (training alone: moreclip pretrain --config {out / 'config.yaml'})"
    )
    print(
        f"rerun:  moreclip demo --out {args.out} --n {args.n} --minutes {args.minutes:g} --seed {args.seed}"
    )
    print(
        f"search: moreclip index search --index {out / 'index'} --text 'large left pleural effusion' --target xray"
    )
    return 0
