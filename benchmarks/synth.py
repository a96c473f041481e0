"""Synthetic cohort speed: patients per second of ``generate_cohort`` and CPU cost per patient by stage.

    python benchmarks/synth.py                       # n = 1,000, 2 workers, 256 px
    python benchmarks/synth.py --n 200 --workers 1   # a quick run

Timed: one full ``generate_cohort`` call (12-lead ECG + radiograph + both reports + files + manifest per
patient) in a temporary folder: wall time, patients per second, and the CPU seconds of the worker processes
(``RUSAGE_CHILDREN``) per patient. Then ``--profile`` patients are rendered in this process stage by stage
(latent draw, ECG, radiograph, reports, PNG encoding, WFDB writing) with ``time.process_time``, which is
what to compare when the machine is shared (the load average is recorded). Also reported: the prevalence
of the main conditions and how many of 500 patients share all their report-visible attributes.
Writes ``benchmarks/out/synth.json``.
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
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def stage_costs(seed: int, n: int, image_size: int, tmp: Path) -> dict[str, float]:
    """Mean CPU milliseconds per patient of each stage, rendered in this process."""
    from PIL import Image

    from moreclip.config import CANONICAL_LEADS
    from moreclip.data.synth_ecg import render_ecg
    from moreclip.data.synth_latent import patient_rng, sample_patient
    from moreclip.data.synth_reports import ecg_report, xray_report
    from moreclip.data.synth_wfdb import write_wfdb16
    from moreclip.data.synth_xray import render_xray

    total = Counter()
    for i in range(n):
        t0 = time.process_time()
        p = sample_patient(patient_rng(seed, i, "latent"))
        t1 = time.process_time()
        sig, meas = render_ecg(p, patient_rng(seed, i, "ecg"))
        t2 = time.process_time()
        img, _ = render_xray(p, patient_rng(seed, i, "xray"), image_size)
        t3 = time.process_time()
        xray_report(p, patient_rng(seed, i, "xray_report"))
        ecg_report(p, meas, patient_rng(seed, i, "ecg_report"))
        t4 = time.process_time()
        Image.fromarray(img).save(tmp / "x.png", format="PNG")
        t5 = time.process_time()
        write_wfdb16(tmp / "r", sig, 500, CANONICAL_LEADS)
        t6 = time.process_time()
        total.update(latent=t1 - t0, ecg=t2 - t1, xray=t3 - t2, reports=t4 - t3, png=t5 - t4, wfdb=t6 - t5)
    out = {k: round(1000 * v / n, 3) for k, v in total.items()}
    out["total"] = round(sum(out.values()), 3)
    return out


def distinctiveness(seed: int, n: int = 500) -> dict[str, float]:
    """How many patients share every report-visible attribute with another, among ``n``."""
    from moreclip.data.synth_latent import sample_patients

    ecg_fields = ("rhythm", "av_block1", "bbb", "pvc", "low_voltage", "lvh", "lvh_strain", "ste_territory",
                  "twi_territory", "q_territory", "pac", "lae", "flat_t", "prwp", "sinus_arrhythmia")  # fmt: skip
    xray_skip = set(ecg_fields) | {"age", "sex", "ctr", "heart_rate", "pr_ms", "qrs_ms", "qtc_ms", "axis_deg"}
    ps = sample_patients(n, seed)
    fields = [f for f in ps[0].to_dict() if f not in xray_skip]
    keys = {
        "xray": [tuple(getattr(p, f) for f in fields) + (p.cardiomegaly_grade,) for p in ps],
        "ecg": [
            tuple(getattr(p, f) for f in ecg_fields) + (p.axis, p.long_qt, int(p.heart_rate // 10))
            for p in ps
        ],
    }
    out = {}
    for name, k in keys.items():
        c = Counter(k)
        shared = np.array([c[x] for x in k])
        out[f"{name}_unique_fraction"] = round(float((shared == 1).mean()), 3)
        out[f"{name}_at_most_5_fraction"] = round(float((shared <= 5).mean()), 3)
        out[f"{name}_largest_group"] = int(max(c.values()))
        out[f"{name}_oracle_recall_at_5"] = round(float(np.minimum(1, 5 / shared).mean()), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--profile", type=int, default=100, help="patients rendered stage by stage in-process")
    ap.add_argument("--out", default="benchmarks/out/synth.json")
    args = ap.parse_args(argv)

    import pandas as pd

    from moreclip.data.synthetic import LABELS, generate_cohort

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="moreclip-synth-bench-") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = time.process_time(), time.perf_counter()
        path = generate_cohort(Path(tmp) / "cohort", args.n, args.seed, workers=args.workers,
                               image_size=args.image_size, progress=False)  # fmt: skip
        wall = time.perf_counter() - t0
        main_cpu = time.process_time() - cpu0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        df = pd.read_parquet(path)
        size_mb = sum(f.stat().st_size for f in (Path(tmp) / "cohort").rglob("*") if f.is_file()) / 1e6
        stages = stage_costs(args.seed, args.profile, args.image_size, Path(tmp))
    # CPU of the whole job: pool workers are started by a fork server, so they are not this process's
    # children and RUSAGE_CHILDREN misses them; the in-process stage profile measures the same work
    cpu_per_patient = (child_cpu + main_cpu) / args.n if args.workers <= 1 else stages["total"] / 1000
    main_labels = ["cardiomegaly", "pleural_effusion", "edema_any", "pneumothorax", "sinus_tachycardia",
                   "sinus_bradycardia", "atrial_fibrillation", "lvh", "st_elevation"]  # fmt: skip
    result = {
        "benchmark": "synth",
        "n": args.n,
        "workers": args.workers,
        "image_size": args.image_size,
        "wall_s": round(wall, 2),
        "patients_per_s": round(args.n / wall, 2),
        "cpu_ms_per_patient": round(1000 * cpu_per_patient, 2),
        "stage_cpu_ms_per_patient": stages,
        "cohort_mb": round(size_mb, 1),
        "prevalence": {k: round(float(df[f"synthetic/{k}"].gt(0).mean()), 3) for k in main_labels},
        "n_labels": len(LABELS),
        "distinctiveness_500": distinctiveness(args.seed),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"synth: {args.n} patients, {args.workers} workers, {args.image_size} px: {wall:.1f} s wall, "
          f"{result['patients_per_s']:.1f} patients/s, {result['cpu_ms_per_patient']:.1f} ms CPU per patient")  # fmt: skip
    print(f"  per-stage CPU ms/patient (in-process, {args.profile} patients): {stages}")
    print(f"  prevalence: {result['prevalence']}")
    print(f"  distinctiveness among 500: {result['distinctiveness_500']}")
    print(f"  load average before/after: {result['loadavg_before']} / {result['loadavg_after']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
