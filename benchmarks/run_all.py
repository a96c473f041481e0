"""Run every benchmark script of benchmarks/ and collect one results.json plus a Markdown table.

    python benchmarks/run_all.py               # full sizes (long: run it on a quiet machine)
    python benchmarks/run_all.py --quick       # reduced sizes: proves every script runs, figures not comparable
    python benchmarks/run_all.py --only synth,loader --quick
    python benchmarks/run_all.py --reuse demo_quality  # take benchmarks/out/demo_quality.json as it is

Every ``benchmarks/*.py`` except this one is run in its own process (``sys.executable``) with
``--out benchmarks/out/<name>.json`` (``out/quick/`` with ``--quick``) and, in quick mode, the reduced
arguments of :data:`QUICK` (a script not listed runs with its defaults). Each script's JSON is gathered into
``benchmarks/results.json`` (``--results``) with its exit status, wall time and command line, and the key
figures of :data:`KEY_FIGURES` go into ``benchmarks/results.md``. A failing script is recorded (with the
tail of its output) and the others still run; the exit status is 1 when any failed. ``--reuse`` takes the
named scripts' existing JSON (from an earlier run of the script itself, e.g. the 30-minute
``demo_quality``) instead of running them again; they are marked ``reused`` with the file's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: reduced arguments per script for --quick
QUICK: dict[str, list[str]] = {
    "synth": ["--n", "200", "--profile", "20"],
    "loader": ["--n", "128", "--raw-samples", "128", "--cache-samples", "1024", "--min-seconds", "1",
               "--image-size", "128", "--ecg-rate", "100"],
    "step": ["--models", "tiny", "--steps", "1"],
    "train": ["--n", "300", "--steps", "6", "--log-every", "2", "--nproc", "0"],
    "eval": ["--n", "500", "--seeds", "1", "--cohort", "40"],
    "index": ["--n", "20000", "--latency-queries", "100", "--recall-queries", "50"],
    "explain": ["--seeds", "0", "--steps", "150"],
    "ingest_mimic": ["--subjects", "2000"],
    "demo_quality": ["--quick"],
    "text_ceiling": ["--n", "400", "--steps", "100"],
}  # fmt: skip

#: per script: (label, path in its JSON as a list of keys / indices) shown in results.md
KEY_FIGURES: dict[str, list[tuple[str, list]]] = {
    "synth": [("patients/s", ["patients_per_s"]), ("CPU ms / patient", ["cpu_ms_per_patient"])],
    "loader": [("cache samples/s", ["results", "cache", "samples_per_s"]),
               ("raw samples/s", ["results", "raw", "samples_per_s"]), ("cache / raw", ["cache_over_raw"])],
    "step": [("tiny samples/CPU-s", ["results", 0, "samples_per_cpu_s"]),
             ("tiny text share", ["results", 0, "encoder_share", "text"])],
    "train": [("samples/s (1 process)", ["samples_per_s_1_process"]),
              ("data wait fraction", ["data_wait_fraction_1_process"]),
              ("2-process / 1-process throughput", ["ratio_2_to_1_process"])],
    "eval": [("probe CPU s", ["probe", "cpu_s"]), ("text embed samples/CPU-s", ["embed", "xray_report", "samples_per_cpu_s"])],
    "index": [("vectors", ["n"]), ("dim", ["dim"]), ("kind", ["kind"]), ("build s", ["build_s"]),
              ("p50 latency ms", ["latency_ms", "p50"]), ("p99 latency ms", ["latency_ms", "p99"]),
              ("recall@10", ["recall@10"])],
    "explain": [("seed 0 text-map mass on the effusion's side, trained", ["runs", 0, "trained", "text", "side"]),
                ("random weights", ["runs", 0, "random", "text", "side"])],
    "ingest_mimic": [("images", ["images"]), ("ECGs", ["ecgs"]), ("60-day pairing wall s", ["pairs_only", "wall_s"])],
    "demo_quality": [("all thresholds met", ["all_pass"]), ("zero-shot X-ray (mean)", ["mean", "zeroshot/synthetic-xray/auroc"]),
                     ("zero-shot ECG (mean)", ["mean", "zeroshot/synthetic-ecg/auroc"]),
                     ("R@5 X-ray→report (mean)", ["mean", "retrieval/xray->xray_report/recall@5"]),
                     ("R@5 ECG→report (mean)", ["mean", "retrieval/ecg->ecg_report/recall@5"])],
    "text_ceiling": [("zero-shot X-ray AUROC ceiling of the frozen text side", ["macro_auroc"])],
}  # fmt: skip


def scripts() -> list[str]:
    """Names of the benchmark scripts (every ``*.py`` beside this file but itself)."""
    return sorted(
        p.stem for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )


def dig(obj, path: list):
    """``obj[path[0]][path[1]]...`` or None when any step is missing."""
    for key in path:
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def scalars(obj: dict, limit: int = 4) -> list[tuple[str, object]]:
    """The first top-level numbers of a result (for scripts without :data:`KEY_FIGURES`)."""
    return [(k, v) for k, v in obj.items() if isinstance(v, int | float) and not isinstance(v, bool)][:limit]


def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "–" if v is None else str(v)


def reuse_one(name: str, out_dir: Path, before: dict | None = None) -> dict:
    """An earlier output of script ``name`` (``out_dir/<name>.json``), recorded as ``reused``; its wall
    time is the one recorded when run_all ran it (``before``: that entry of the previous results.json)."""
    out = out_dir / f"{name}.json"
    if not out.is_file():
        raise SystemExit(f"--reuse {name}: {out} does not exist (run benchmarks/{name}.py first)")
    made = datetime.fromtimestamp(out.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    print(f"== {name}: reusing {out} (written {made})", flush=True)
    result = json.loads(out.read_text())
    wall = (before or {}).get("wall_s") or result.get("wall_s") or 0
    return {"status": "reused", "returncode": 0, "wall_s": float(wall),
            "command": [str(HERE / f"{name}.py"), "--out", str(out)], "written": made,
            "output": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
            "result": result}  # fmt: skip


def run_one(name: str, quick: bool, out_dir: Path, timeout: float) -> dict:
    out = out_dir / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(HERE / f"{name}.py"),
        *(QUICK.get(name, []) if quick else []),
        "--out",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}  # fmt: skip
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = -1, f"timed out after {timeout:g} s\n" + str(e.stdout or "")[-2000:]
    wall = time.time() - t0
    result = None
    if rc == 0 and out.is_file():
        try:
            result = json.loads(out.read_text())
        except ValueError as e:
            rc, tail = -2, f"unreadable {out}: {e}"
    elif rc == 0:
        rc, tail = -3, f"{out} was not written"
    status = "ok" if rc == 0 else "failed"
    print(f"   {status} in {wall:.0f} s" + ("" if rc == 0 else f"\n{tail}"), flush=True)
    return {"status": status, "returncode": rc, "wall_s": round(wall, 1), "command": cmd[1:],
            "output": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
            "result": result, **({} if rc == 0 else {"log_tail": tail})}  # fmt: skip


def markdown(res: dict) -> str:
    mode = (
        "quick (reduced sizes: proves the scripts run; figures are not comparable)"
        if res["quick"]
        else "full"
    )
    lines = [
        "# Benchmark results",
        "",
        f"Created {res['created']} by `python benchmarks/run_all.py{' --quick' if res['quick'] else ''}` "
        f"on {res['machine']['cpu_count']} CPUs ({res['machine']['platform']}), mode: **{mode}**; load average "
        f"at start {res['machine']['load_start']}. Each script's full JSON is in `results.json` and "
        "`benchmarks/out/`; how each figure is measured is in the script's docstring. `reused`: the script's "
        "JSON from an earlier run (`--reuse`), its time in `results.json`.",
        "",
        "| benchmark | status | wall s | key figures |",
        "|---|---|---|---|",
    ]
    for name, r in res["benchmarks"].items():
        figs = ""
        if r["result"] is not None:
            pairs = [(lab, dig(r["result"], path)) for lab, path in KEY_FIGURES.get(name, [])]
            pairs = [(k, v) for k, v in pairs if v is not None] or scalars(r["result"])
            figs = "; ".join(f"{k}: {fmt(v)}" for k, v in pairs)
        lines.append(f"| `{name}` | {r['status']} | {r['wall_s']:.0f} | {figs} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="reduced sizes (see QUICK)")
    p.add_argument("--only", default=None, help="comma-separated script names (default: all)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds per script (default 7200)")
    p.add_argument("--reuse", default="", help="comma-separated scripts whose existing JSON is taken as is")
    p.add_argument(
        "--results", default=str(HERE / "results.json"), help="combined JSON (results.md beside it)"
    )
    args = p.parse_args(argv)
    names = scripts()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            p.error(f"unknown benchmark(s) {unknown}; have {names}")
        names = [n for n in names if n in wanted]
    out_dir = HERE / "out" / ("quick" if args.quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "load_start": [round(x, 2) for x in os.getloadavg()]},
        "benchmarks": {},
    }  # fmt: skip
    t0 = time.time()
    reuse = {n.strip() for n in args.reuse.split(",") if n.strip()}
    if reuse - set(names):
        p.error(f"--reuse: unknown benchmark(s) {sorted(reuse - set(names))}; have {names}")
    path = Path(args.results)
    previous = json.loads(path.read_text()).get("benchmarks", {}) if path.is_file() else {}
    for name in names:
        if name in reuse:
            res["benchmarks"][name] = reuse_one(name, out_dir, previous.get(name))
        else:
            res["benchmarks"][name] = run_one(name, args.quick, out_dir, args.timeout)
    res["total_wall_s"] = round(time.time() - t0, 1)
    res["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(res, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    md = path.with_suffix(".md")
    md.write_text(markdown(res))
    failed = [n for n, r in res["benchmarks"].items() if r["status"] not in ("ok", "reused")]
    print(
        f"\n{len(names) - len(failed)}/{len(names)} benchmarks ok in {res['total_wall_s']:.0f} s -> {path}, {md}"
    )
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
