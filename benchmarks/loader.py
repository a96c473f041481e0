"""Samples/s of the training Dataset + DataLoader, from raw files and from the ``moreclip prepare`` cache.

    python benchmarks/loader.py                       # generated cohort, 224 px, 500 Hz, 2 workers
    python benchmarks/loader.py --manifest cohort/manifest.parquet   # e.g. one written by `moreclip synth`

Without ``--manifest`` the embedded synthetic cohort (``moreclip.data.synthetic``) of ``--n`` samples is
written to a temporary folder (``--work`` keeps and reuses it): ``--source-size`` pixel PNG radiographs
and 10 s 500 Hz 12-lead WFDB records (a simpler generator stands in where that module is missing). Each loader
runs the training path (``augment=True``, shuffled, ``--batch-size``, ``--workers`` persistent workers);
the first batch (worker start-up) is not timed. The cache is also timed without augmentation (the
evaluation path). The machine's load average is recorded because timings on a shared machine are noisy;
so is the CPU time per sample (main process + workers), which does not depend on the load, and the
samples/s that CPU time allows on ``min(cpus, workers + 1)`` cores (``cpu_bound_samples_per_s``).
Writes ``benchmarks/out/loader.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def make_cohort(root: Path, n: int, source_size: int, fs: int, seed: int = 0) -> Path:
    import pandas as pd
    from PIL import Image

    from moreclip.data.ecg import write_ecg
    from moreclip.data.manifest import write_manifest

    rng = np.random.default_rng(seed)
    (root / "xray").mkdir(parents=True, exist_ok=True)
    (root / "ecg").mkdir(parents=True, exist_ok=True)
    t = np.arange(10 * fs) / fs
    yy, xx = np.mgrid[0:source_size, 0:source_size] / source_size
    rows = []
    for i in range(n):
        img = 60 + 120 * np.sin(3 * xx + i) * np.cos(2 * yy) ** 2 + rng.normal(0, 12, xx.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "xray" / f"s{i}.png")
        hr = rng.uniform(0.8, 1.8)
        sig = np.stack([np.sin(2 * np.pi * hr * t * (1 + 0.02 * k)) ** 15 for k in range(12)])
        write_ecg(root / "ecg" / f"s{i}", sig + 0.02 * rng.standard_normal(sig.shape), fs)
        rows.append(
            {
                "sample_id": f"s{i}",
                "subject_id": f"p{i}",
                "split": "train",
                "xray_path": f"xray/s{i}.png",
                "ecg_path": f"ecg/s{i}",
                "xray_report": "FINDINGS: Heart size is normal. No effusion. IMPRESSION: No acute process.",
                "ecg_report": "Sinus rhythm. Normal ECG.",
                "demo/finding": float(i % 2),
            }
        )
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet")


def synth_cohort(root: Path, n: int, size: int, workers: int) -> tuple[Path, str]:
    """The embedded synthetic cohort (``moreclip.data.synthetic``), reused when ``root`` already holds it
    with these settings; the simple generator above where that module is missing."""
    try:
        from moreclip.data.synthetic import generate_cohort
    except ImportError:
        if (root / "manifest.parquet").is_file():
            return root / "manifest.parquet", "simple generator (reused)"
        return make_cohort(root, n, size, 500), "simple generator"
    from moreclip.data.manifest import read_manifest

    if (root / "manifest.parquet").is_file():
        meta = read_manifest(root / "manifest.parquet").meta
        if meta.get("n") == n and meta.get("image_size") == size and meta.get("seed") == 0:
            return root / "manifest.parquet", "moreclip.data.synthetic (reused)"
    path = generate_cohort(root, n, 0, workers=workers, image_size=size, overwrite=True, progress=False)
    return path, "moreclip.data.synthetic"


def _proc_cpu(pids: list[int]) -> float | None:
    """User + system CPU seconds of processes (Linux /proc), None where unavailable."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def time_loader(ds, batch_size: int, workers: int, min_samples: int, min_seconds: float) -> dict:
    """Wall-clock samples/s after the first batch, and the CPU seconds per sample spent meanwhile by the
    main process and the workers (steady state; independent of how busy the machine is)."""
    from moreclip.data.dataset import make_dataloader

    loader = make_dataloader(ds, batch_size, shuffle=True, num_workers=workers, seed=0, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up and first batch: not timed
    pids = [w.pid for w in getattr(loader.loader._iterator, "_workers", [])]
    n, batches = 0, 0
    main0, workers0 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu(pids)
    t0 = time.perf_counter()
    while n < min_samples or time.perf_counter() - t0 < min_seconds:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        n += len(batch["index"])
        batches += 1
    wall = time.perf_counter() - t0
    main1, workers1 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu(pids)
    main_cpu = main1.ru_utime + main1.ru_stime - main0.ru_utime - main0.ru_stime
    worker_cpu = None if workers0 is None or workers1 is None else workers1 - workers0
    per_sample = (main_cpu + (worker_cpu or 0.0)) / n
    it.close()
    del it, loader, batch
    return {
        "samples": n,
        "batches": batches,
        "seconds": round(wall, 3),
        "samples_per_s": round(n / wall, 1),
        "cpu_ms_per_sample": round(1000 * per_sample, 4) if worker_cpu is not None or not workers else None,
        "main_cpu_s": round(main_cpu, 3),
        "worker_cpu_s": None if worker_cpu is None else round(worker_cpu, 3),
        "cpu_bound_samples_per_s": round(min(os.cpu_count() or 1, workers + 1) / per_sample, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", help="use this manifest instead of generating a cohort")
    p.add_argument("--n", type=int, default=512, help="samples in the generated cohort")
    p.add_argument("--source-size", type=int, default=256, help="side of the generated PNGs")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--ecg-rate", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--raw-samples", type=int, default=512, help="samples timed from raw files")
    p.add_argument("--cache-samples", type=int, default=8192, help="samples timed from the cache")
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--work", help="folder for the cohort and cache (default: a temporary one)")
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / "loader.json"))
    args = p.parse_args(argv)

    import torch

    from moreclip.config import DataConfig
    from moreclip.data.cache import open_cache
    from moreclip.data.dataset import MoreDataset
    from moreclip.data.manifest import read_manifest
    from moreclip.data.prepare import prepare_cache
    from moreclip.data.preprocess import PreprocessOptions

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        t = time.perf_counter()
        manifest, cohort = synth_cohort(work / "cohort", args.n, args.source_size, args.workers)
        if args.manifest:
            manifest, cohort = Path(args.manifest), f"given: {args.manifest}"
        print(f"cohort ({cohort}) ready in {time.perf_counter() - t:.1f} s")
        cfg = DataConfig(image_size=args.image_size, ecg_rate=args.ecg_rate, batch_size=args.batch_size)
        t = time.perf_counter()
        res = prepare_cache(
            manifest, work / "cache", PreprocessOptions.from_config(cfg), workers=args.workers, progress=False
        )
        prep_s = time.perf_counter() - t
        prep_rate = None if res.up_to_date else round(res.n_rows / prep_s, 1)
        print(f"prepare ({args.workers} workers): {res.n_rows} rows, {prep_rate or 'cache reused'} rows/s")
        cache = open_cache(work / "cache")
        m = read_manifest(manifest)
        results = {}
        for name, source, augment, samples in (
            ("raw", m, True, args.raw_samples),
            ("cache", cache, True, args.cache_samples),
            ("cache_eval", cache, False, args.cache_samples),
        ):
            ds = MoreDataset(source, cfg, split=None, augment=augment)
            results[name] = time_loader(ds, args.batch_size, args.workers, samples, args.min_seconds)
            r = results[name]
            print(
                f"{name:>10}: {r['samples_per_s']:8.1f} samples/s, {r['cpu_ms_per_sample']:.3f} CPU ms/sample "
                f"(CPU-bound: {r['cpu_bound_samples_per_s']:.0f} samples/s)"
            )
    speedup = results["cache"]["samples_per_s"] / results["raw"]["samples_per_s"]
    print(f"cache / raw: {speedup:.1f}x  (load average before {load_before}, after {os.getloadavg()})")
    report = {
        "benchmark": "loader",
        "cohort": cohort,
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "results": results,
        "cache_over_raw": round(speedup, 2),
        "prepare_rows_per_s": prep_rate,
        "targets": {"cache_samples_per_s": 2000, "cache_over_raw": 10},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
