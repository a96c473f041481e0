"""Manifest validation: every row and every file it names, with one reason per bad row.

Checks: unique non-empty ids, known splits, no subject in two splits, at least one modality per row,
label values inside their domain, and (unless ``check_files=False``) that every image decodes with
Pillow and every ECG record reads with ``wfdb`` as 12 standard leads at a consistent rate and length
without NaN. Report texts are never printed.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moreclip.data.ecg import read_ecg
from moreclip.data.image import read_image
from moreclip.data.manifest import DEFAULT_LABEL_DOMAIN, MODALITY_COLUMNS, SPLITS, Manifest
from moreclip.errors import RecordError


@dataclass
class Problem:
    row: int  # 0-based row in the manifest
    sample_id: str | None
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row} (sample {self.sample_id}): {self.column}: {self.message}"


@dataclass
class ValidationReport:
    n_rows: int
    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_rows(self) -> list[int]:
        return sorted({p.row for p in self.problems})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "n_rows": self.n_rows,
            "n_bad_rows": len(self.bad_rows),
            "problems": [p.__dict__ for p in self.problems],
            "summary": self.summary,
        }

    def format(self, max_problems: int = 50) -> str:
        lines = [format_summary(self.summary), ""]
        if self.ok:
            lines.append(f"OK: {self.n_rows} rows, no problems found")
        else:
            lines.append(
                f"FAILED: {len(self.problems)} problem(s) in {len(self.bad_rows)} of {self.n_rows} rows"
            )
            lines += [f"  {p}" for p in self.problems[:max_problems]]
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems} more (see --json)")
        return "\n".join(lines)


def summarise(m: Manifest) -> dict[str, Any]:
    """Counts per split (rows, subjects, modalities) and positive rate of every label column."""
    df = m.df
    present = {mod: m.has(mod) for mod in MODALITY_COLUMNS}
    splits: dict[str, dict[str, int]] = {}
    for s in [*SPLITS, *sorted(set(df["split"].dropna()) - set(SPLITS))]:
        sel = (df["split"] == s).to_numpy()
        if not sel.any():
            continue
        row = {"rows": int(sel.sum()), "subjects": int(df.loc[sel, "subject_id"].nunique())}
        row.update({mod: int(p[sel].sum()) for mod, p in present.items()})
        splits[s] = row
    labels = {}
    for c in m.label_columns:
        v = df[c].to_numpy(dtype=np.float64)
        known = ~np.isnan(v)
        graded = not set(m.label_domain(c)) <= set(DEFAULT_LABEL_DOMAIN)  # e.g. a 0-3 severity
        entry = {
            "n": int(known.sum()),
            # binary: share of 1; graded: share above the lowest grade (any finding)
            "positive_rate": float((v[known] > 0 if graded else v[known] == 1).mean())
            if known.any()
            else None,
            "uncertain": 0 if graded else int((v == -1).sum()),
        }
        if graded:
            values, counts = np.unique(v[known], return_counts=True)
            entry["counts"] = {f"{x:g}": int(k) for x, k in zip(values, counts)}
        labels[c] = entry
    return {"splits": splits, "labels": labels}


def format_summary(summary: dict[str, Any]) -> str:
    cols = ["rows", "subjects", *MODALITY_COLUMNS]
    widths = [8] + [max(len(c), 8) for c in cols]
    out = ["split".ljust(widths[0]) + " ".join(c.rjust(w) for c, w in zip(cols, widths[1:]))]
    for split, row in summary.get("splits", {}).items():
        out.append(split.ljust(widths[0]) + " ".join(str(row[c]).rjust(w) for c, w in zip(cols, widths[1:])))
    labels = summary.get("labels", {})
    if labels:
        out.append("")
        width = max(len(c) for c in labels) + 2
        out.append("label".ljust(width) + "known".rjust(8) + "positive".rjust(10) + "uncertain".rjust(11))
        for c, s in labels.items():
            rate = "-" if s["positive_rate"] is None else f"{100 * s['positive_rate']:.1f}%"
            out.append(c.ljust(width) + str(s["n"]).rjust(8) + rate.rjust(10) + str(s["uncertain"]).rjust(11))
    return "\n".join(out)


def _check_table(m: Manifest) -> list[Problem]:
    df = m.df
    ids = df["sample_id"].tolist()
    problems: list[Problem] = []

    def add(i: int, column: str, message: str) -> None:
        problems.append(Problem(int(i), ids[i], column, message))

    first_seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid is None or not str(sid).strip():
            add(i, "sample_id", "empty sample id")
        elif sid in first_seen:
            add(i, "sample_id", f"duplicate id '{sid}' (first at row {first_seen[sid]})")
        else:
            first_seen[sid] = i
    for i, (subj, split) in enumerate(zip(df["subject_id"], df["split"])):
        if subj is None or not str(subj).strip():
            add(i, "subject_id", "empty subject id")
        if split not in SPLITS:
            add(i, "split", f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    per_subject = (
        df.dropna(subset=["subject_id"]).groupby("subject_id")["split"].agg(lambda s: sorted(set(s)))
    )
    leaky = per_subject[per_subject.map(len) > 1]
    for subj, splits in leaky.items():
        for i in np.flatnonzero((df["subject_id"] == subj).to_numpy()):
            add(i, "split", f"subject '{subj}' appears in several splits ({', '.join(splits)})")
    any_modality = np.zeros(len(df), dtype=bool)
    for mod in MODALITY_COLUMNS:
        any_modality |= m.has(mod)
    for i in np.flatnonzero(~any_modality):
        add(i, "modalities", "row has no X-ray, ECG or report")
    for c in m.label_columns:
        domain = np.array(m.label_domain(c), dtype=np.float64)
        v = df[c].to_numpy(dtype=np.float64)
        bad = ~np.isnan(v) & ~np.isin(v, domain)
        for i in np.flatnonzero(bad):
            add(i, c, f"label value {v[i]:g} outside its domain {[float(x) for x in domain]}")
    return problems


def _check_file(task: tuple[int, str, str, float | None, float | None]) -> tuple[int, str, str] | None:
    i, column, path, fs, seconds = task
    try:
        if column == "xray_path":
            read_image(path)
        else:
            read_ecg(path, expected_fs=fs, expected_seconds=seconds, allow_nan=False)
    except RecordError as e:
        return i, column, str(e)
    return None


def validate_manifest(
    m: Manifest,
    *,
    check_files: bool = True,
    ecg_fs: float | None = None,
    ecg_seconds: float | None = 10.0,
    workers: int = 1,
    progress: bool = True,
) -> ValidationReport:
    """Check every row of ``m`` (and, by default, every file) and return a :class:`ValidationReport`.

    Args:
        ecg_fs: required ECG sampling rate in Hz (None: any rate, but ``ecg_seconds`` long).
        ecg_seconds: required ECG duration (None: any length).
        workers: processes used to decode files.
    """
    from tqdm.auto import tqdm

    problems = _check_table(m)
    if check_files:
        tasks = []
        for i in range(len(m)):
            if (p := m.xray_file(i)) is not None:
                tasks.append((i, "xray_path", str(p), None, None))
            if (r := m.ecg_record(i)) is not None:
                tasks.append((i, "ecg_path", str(r), ecg_fs, ecg_seconds))
        bar = tqdm(total=len(tasks), desc="validate files", unit="file", disable=not progress)
        ids = m.df["sample_id"].tolist()
        if workers > 1 and len(tasks) > 1:
            from moreclip.workers import process_context

            with ProcessPoolExecutor(max_workers=workers, mp_context=process_context()) as pool:
                results = pool.map(_check_file, tasks, chunksize=max(1, min(64, len(tasks) // (4 * workers))))
                for res in results:
                    bar.update()
                    if res is not None:
                        problems.append(Problem(res[0], ids[res[0]], res[1], res[2]))
        else:
            for t in tasks:
                res = _check_file(t)
                bar.update()
                if res is not None:
                    problems.append(Problem(res[0], ids[res[0]], res[1], res[2]))
        bar.close()
    problems.sort(key=lambda p: (p.row, p.column))
    return ValidationReport(n_rows=len(m), problems=problems, summary=summarise(m))


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
