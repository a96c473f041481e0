"""Pre-training throughput on the demo config: samples/s, the fraction of step time spent waiting for data,
and the throughput of 2 processes (torchrun, gloo) over 1 process on this machine.

    python benchmarks/train.py                                  # demo config, 20 steps, 2,000-patient cohort
    python benchmarks/train.py --steps 12 --n 600 --nproc 2
    python benchmarks/train.py --manifest demo/manifest.parquet --cache demo/cache

Each run is ``moreclip pretrain`` in a subprocess with ``train.max_steps=STEPS``, no validation, no
TensorBoard, logging every ``--log-every`` steps. Figures come from the run's ``logs/train.csv``: the first
logging window (DataLoader start-up, first allocations) is left out, the rest is pooled (samples over step
time; validation and checkpoint writes are not step time). The per-process batch is the config's
(``data.batch_size``), so N processes train on an N-times larger global batch; the ratio compares samples/s
with the better of the 1-process runs.
One process uses every core for torch (``--one-thread`` adds a 1-thread run: on a shared machine OpenMP
threads that wait for a busy core can cost more than they bring); N processes use cores / N threads each. The load average and the
CPU are recorded: on a shared machine the figures are noisy. Writes ``benchmarks/out/train.json``
(``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def ensure_cohort(args, work: Path) -> tuple[str, str]:
    """The manifest and cache to train on: given, or a synthetic cohort generated and prepared in ``work``."""
    if args.manifest:
        return args.manifest, args.cache or str(work / "cache")
    from moreclip.data.synthetic import generate_cohort

    cohort = work / "cohort"
    manifest = cohort / "manifest.parquet"
    if not manifest.is_file():
        print(f"generating a synthetic cohort of {args.n} patients in {cohort}", flush=True)
        generate_cohort(cohort, args.n, args.seed, workers=os.cpu_count() or 1, progress=False)
    return str(manifest), args.cache or str(work / "cache")


def run(nproc: int, threads: int, args, manifest: str, cache: str, out_dir: Path) -> dict:
    """One ``moreclip pretrain`` run with ``nproc`` processes of ``threads`` torch threads each; figures
    from its train.csv."""
    shutil.rmtree(out_dir, ignore_errors=True)  # a fresh run
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    overrides = [
        f"data.manifest={manifest}",
        f"data.cache={cache}",
        f"train.output_dir={out_dir}",
        f"train.max_steps={args.steps}",
        f"train.log_every={args.log_every}",
        "train.val_every=-1",
        f"train.ckpt_every={args.steps}",
        "train.max_minutes=null",
        "train.tensorboard=false",
        *args.set,
    ]
    launcher = [sys.executable, "-m", "moreclip"]
    if nproc > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "moreclip",
        ]
    cmd = [*launcher, "-q", "pretrain", "--config", args.config, "--no-progress", *overrides]
    print(f"{nproc} process(es): {' '.join(cmd[-len(overrides) - 5 :])}", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"run with {nproc} process(es) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    with open(out_dir / "logs" / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out_dir / "summary.json").read_text())
    # windows after the first: (steps, samples/s, data fraction); pooled over their step time
    per_step = summary["global_batch"] * summary["accum_steps"]
    windows = [
        (int(r["step"]) - int(q["step"]), float(r["samples_per_s"]), float(r["data_frac"]))
        for q, r in zip(rows, rows[1:])
    ]
    samples = sum(k * per_step for k, _, _ in windows)
    step_s = sum(k * per_step / sps for k, sps, _ in windows)
    data_s = sum(frac * k * per_step / sps for k, sps, frac in windows)
    return {
        "processes": nproc,
        "threads_per_process": threads,
        "global_batch": summary["global_batch"],
        "steps": summary["steps"],
        "steady_windows": len(windows),
        "samples_per_s": samples / step_s if step_s else summary["samples_per_s"],
        "data_wait_fraction": data_s / step_s if step_s else summary["data_frac"],
        "s_per_step": step_s * per_step / samples if step_s else None,
        "all_steps_samples_per_s": summary["samples_per_s"],
        "wall_s_including_startup": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--manifest", help="train on this manifest (default: generate a synthetic cohort)")
    p.add_argument("--cache", help="its cache (default: prepared in the work folder)")
    p.add_argument("--n", type=int, default=2000, help="patients of the generated cohort (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated cohort")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per run (default 20)")
    p.add_argument("--log-every", type=int, default=4, help="logging window in steps (default 4)")
    p.add_argument("--nproc", type=int, default=2, help="processes of the DDP run (0: skip it)")
    p.add_argument(
        "--one-thread",
        action="store_true",
        help="also run 1 process with 1 torch thread (oversubscription check)",
    )
    p.add_argument("--work", help="folder for the cohort and runs (default: a temporary folder)")
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="extra config overrides")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "train.json"))
    args = p.parse_args()

    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="moreclip-bench-train-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    manifest, cache = ensure_cohort(args, work)
    results = {"machine": info, "config": args.config, "steps": args.steps, "runs": []}
    cores = os.cpu_count() or 1
    variants = [(1, cores), *([(1, 1)] if cores > 1 and args.one_thread else [])]
    variants += [(args.nproc, max(1, cores // args.nproc))] if args.nproc > 1 else []
    for nproc, threads in variants:
        r = run(nproc, threads, args, manifest, cache, work / f"run{nproc}x{threads}")
        results["runs"].append(r)
        print(json.dumps(r, indent=1), flush=True)
    singles = [r for r in results["runs"] if r["processes"] == 1]
    one = max(singles, key=lambda r: r["samples_per_s"])  # the better thread count
    results["samples_per_s_1_process"] = one["samples_per_s"]
    results["threads_1_process"] = one["threads_per_process"]
    results["data_wait_fraction_1_process"] = one["data_wait_fraction"]
    if args.nproc > 1:
        many = results["runs"][-1]
        results[f"ratio_{args.nproc}_to_1_process"] = many["samples_per_s"] / one["samples_per_s"]
        results[f"ratio_{args.nproc}_to_1_process_all_threads"] = (
            many["samples_per_s"] / singles[0]["samples_per_s"]
        )
    results["load_average_at_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1))
    print(f"wrote {out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
