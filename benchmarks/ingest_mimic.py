"""Cost of `moreclip ingest mimic` on tables the size of the real MIMIC-CXR-JPG / MIMIC-IV-ECG releases.

Writes synthetic tables in the shipped layout (metadata/chexpert/split CSV.gz with ~377k images, record_list
and machine_measurements with ~800k ECGs; no image or WFDB files, so ingest runs with check_files=False) and
times the ingest (tables read, vectorised pairing, manifest written). Prints CPU and wall seconds and writes
JSON (default benchmarks/out/ingest_mimic.json).

    python benchmarks/ingest_mimic.py [--subjects 65000] [--window 60d] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.data.chexpert import CHEXPERT_OBSERVATIONS
from moreclip.data.mimic import ingest_mimic


def write_tables(root: Path, n_subjects: int, seed: int = 0) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    subjects = np.arange(10_000_000, 10_000_000 + n_subjects)
    # ~3.5 studies and ~5.8 images per subject, ~12 ECGs per subject (real: 227k studies, 377k images, 800k ECGs)
    n_studies = rng.poisson(3.5, n_subjects) + 1
    study_subject = np.repeat(subjects, n_studies)
    n_st = len(study_subject)
    study_ids = rng.choice(np.arange(50_000_000, 60_000_000), n_st, replace=False)
    base = pd.Timestamp("2150-01-01")
    subj_offset = rng.integers(0, 40 * 365, n_subjects)
    study_day = np.repeat(subj_offset, n_studies) + rng.integers(0, 3 * 365, n_st)
    study_time = (
        base + pd.to_timedelta(study_day, unit="D") + pd.to_timedelta(rng.integers(0, 86400, n_st), unit="s")
    )
    n_img = rng.integers(1, 3, n_st)
    img_study = np.repeat(np.arange(n_st), n_img)
    views = np.where(np.r_[True, img_study[1:] != img_study[:-1]], "PA", "LATERAL")
    views[rng.random(len(views)) < 0.3] = "AP"
    t = study_time[img_study]
    meta = pd.DataFrame(
        {
            "dicom_id": [
                f"{i:08x}-{j:08x}"
                for i, j in zip(rng.integers(0, 2**32, len(img_study)), range(len(img_study)))
            ],
            "subject_id": study_subject[img_study],
            "study_id": study_ids[img_study],
            "ViewPosition": views,
            "StudyDate": t.strftime("%Y%m%d"),
            "StudyTime": [
                f"{int(h)}{m:02d}{s:02d}.{ms:03d}"
                for h, m, s, ms in zip(t.hour, t.minute, t.second, rng.integers(0, 1000, len(t)))
            ],
        }
    )
    meta.to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    split = np.where(
        rng.random(n_subjects) < 0.98, "train", np.where(rng.random(n_subjects) < 0.4, "validate", "test")
    )
    sub_split = dict(zip(subjects, split))
    meta[["dicom_id", "study_id", "subject_id"]].assign(split=meta["subject_id"].map(sub_split)).to_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz", index=False
    )
    chex = pd.DataFrame({"subject_id": study_subject, "study_id": study_ids})
    for o in CHEXPERT_OBSERVATIONS:
        chex[o] = rng.choice(["1.0", "0.0", "-1.0", ""], n_st, p=[0.2, 0.2, 0.05, 0.55])
    chex.to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)

    n_ecg = rng.poisson(11, n_subjects) + 1
    ecg_subject = np.repeat(subjects, n_ecg)
    ne = len(ecg_subject)
    ecg_ids = rng.choice(np.arange(40_000_000, 50_000_000), ne, replace=False)
    ecg_day = np.repeat(subj_offset, n_ecg) + rng.integers(0, 3 * 365, ne)
    ecg_time = (
        base + pd.to_timedelta(ecg_day, unit="D") + pd.to_timedelta(rng.integers(0, 1440, ne), unit="min")
    )
    path = [f"files/p{str(s)[:4]}/p{s}/s{e}/{e}" for s, e in zip(ecg_subject, ecg_ids)]
    pd.DataFrame(
        {
            "subject_id": ecg_subject,
            "study_id": ecg_ids,
            "file_name": ecg_ids,
            "ecg_time": ecg_time.strftime("%Y-%m-%d %H:%M:%S"),
            "path": path,
        }
    ).to_csv(root / "record_list.csv", index=False)
    statements = np.array(["Sinus rhythm", "Normal ECG", "Left axis deviation", "Borderline ECG", "", "", ""])
    mm = pd.DataFrame({"subject_id": ecg_subject, "study_id": ecg_ids, "cart_id": 1, "ecg_time": ecg_time})
    for i in range(18):
        mm[f"report_{i}"] = statements[rng.integers(0, len(statements), ne)] if i < 6 else ""
    mm["rr_interval"] = rng.integers(400, 1200, ne)
    mm.to_csv(root / "machine_measurements.csv", index=False)
    return len(meta), ne


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=65_000)
    p.add_argument("--window", default="60d")
    p.add_argument("--out", default="benchmarks/out/ingest_mimic.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        t0 = time.time()
        n_img, n_ecg = write_tables(root, args.subjects)
        print(f"wrote tables: {n_img} images, {n_ecg} ECGs in {time.time() - t0:.1f} s")
        results = {}
        for keep in (False, True):
            c0, w0 = time.process_time(), time.time()
            res = ingest_mimic(
                root,
                root,
                root / "m.parquet",
                window=args.window,
                keep_unpaired=keep,
                check_files=False,
                progress=False,
            )
            cpu, wall = time.process_time() - c0, time.time() - w0
            key = "keep_unpaired" if keep else "pairs_only"
            results[key] = {
                "rows": len(res.df),
                "pairs": res.report.counts["pairs"],
                "cpu_s": round(cpu, 2),
                "wall_s": round(wall, 2),
            }
            print(
                f"{key}: {len(res.df)} rows, {res.report.counts['pairs']} pairs, cpu {cpu:.1f} s, wall {wall:.1f} s"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": n_img, "ecgs": n_ecg, "window": args.window, **results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
