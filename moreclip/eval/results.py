"""Evaluation outputs: ``metrics.json`` (results + provenance) and a Markdown summary, written atomically.

Every evaluation command writes into its output folder::

    metrics.json   {"command", "created", "command_line", "seed", "versions", "model", "data", "task",
                    "results"} -- ``model``: path or registry name, config name and SHA-256 of the model
                    config (and of model.safetensors for a checkpoint); ``data``: manifest or cache path
                    and SHA-256 of its content, split(s), number of samples, the data config used
    metrics.md     the same figures as Markdown tables (value [95 % CI])
    *.png          plots (see moreclip.eval.plots)

Metric entries are ``{"value": v, "ci": [lo, hi]}`` (None where undefined); probe summaries are
``{"mean", "std", "ci", "values"}`` over seeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from moreclip.config import to_dict


# ------------------------------------------------------------------------------------------ files
def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON (NaN/inf as null, numpy values as Python), atomically."""
    return write_text_atomic(path, json.dumps(_plain(obj), indent=2, allow_nan=False) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------- provenance
def versions() -> dict[str, str]:
    """Versions of Python, moreclip and the numerical libraries."""
    from importlib.metadata import PackageNotFoundError, version

    from moreclip import __version__

    out = {"python": platform.python_version(), "moreclip": __version__, "platform": platform.platform()}
    for pkg in ("torch", "numpy", "scikit-learn", "transformers", "timm"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def model_provenance(model, source: str | os.PathLike | None) -> dict[str, Any]:
    """Where the model came from: path (or registry name), config name, config and weights SHA-256."""
    cfg = to_dict(model.config)
    out: dict[str, Any] = {
        "source": None if source is None else str(source),
        "name": cfg.get("name"),
        "embed_dim": cfg.get("embed_dim"),
        "config_sha256": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest(),
    }
    if source is not None and Path(source).is_dir():
        out["source"] = str(Path(source).resolve())
        weights = Path(source) / "model.safetensors"
        if weights.is_file():
            out["weights_sha256"] = file_sha256(weights)
    return out


def data_provenance(cfg, split: str | list[str] | None, n: dict[str, int] | int) -> dict[str, Any]:
    """The data source (cache preferred, else manifest) with a content hash, split(s), sizes, config.

    For a manifest the hash is the SHA-256 of the file; for a cache, of its ``meta.json`` and
    ``index.parquet`` (with the source manifest's hash from the cache metadata).
    """
    out: dict[str, Any] = {}
    if cfg.cache:
        p = Path(cfg.cache)
        h = hashlib.sha256()
        for name in ("meta.json", "index.parquet"):
            if (p / name).is_file():
                h.update(file_sha256(p / name).encode())
        out.update(cache=str(p.resolve()), sha256=h.hexdigest())
        try:
            meta = json.loads((p / "meta.json").read_text())
            out["source_manifest"] = meta.get("source")
        except (OSError, ValueError):
            pass
    elif cfg.manifest:
        p = Path(cfg.manifest)
        out.update(manifest=str(p.resolve()), sha256=file_sha256(p) if p.is_file() else None)
    keys = ("image_size", "ecg_rate", "ecg_seconds", "ecg_norm", "ecg_baseline", "ecg_bandpass", "xray_fit")
    out.update(split=split, n=n, config={k: getattr(cfg, k) for k in keys})
    return out


def run_record(command: str, results: dict, *, model, data, task=None, seed: int = 0, argv=None) -> dict:
    """The full ``metrics.json`` content of one evaluation."""
    argv = sys.argv if argv is None else argv
    return {
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": " ".join(shlex.quote(str(a)) for a in argv),
        "seed": seed,
        "versions": versions(),
        "model": model,
        "data": data,
        "task": task,
        "results": results,
    }


# --------------------------------------------------------------------------------------- markdown
def fmt(entry: dict | None, digits: int = 3) -> str:
    """``{"value", "ci"}`` -> ``0.912 [0.890, 0.931]``; ``{"mean", "std", "ci"}`` -> ``0.912 ± 0.004 [..]``."""
    if not entry:
        return "–"
    f = lambda v: "–" if v is None else f"{v:.{digits}f}"  # noqa: E731
    if "mean" in entry:
        s = f(entry["mean"]) + (f" ± {f(entry['std'])}" if entry.get("std") is not None else "")
    else:
        s = f(entry.get("value"))
    ci = entry.get("ci")
    if ci and ci[0] is not None and ci[1] is not None:
        s += f" [{f(ci[0])}, {f(ci[1])}]"
    return s


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _skipped(skipped: dict) -> str:
    if not skipped:
        return ""
    return "\n\nNot scored: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."


def markdown_classification(report: dict, multiclass: bool) -> str:
    """Per-label (per-class) and macro table of a multilabel / multiclass report."""
    if multiclass:
        head = table(
            ["accuracy", "macro-F1", "macro AUROC", "n"],
            [[fmt(report["accuracy"]), fmt(report["macro_f1"]), fmt(report["macro_auroc"]), report["n"]]],
        )
        rows = [[n, v["n_pos"], fmt(v["auroc"])] for n, v in report["classes"].items()]
        return (
            head + "\n\n" + table(["class", "n", "AUROC (one-vs-rest)"], rows) + _skipped(report["skipped"])
        )
    has_f1 = any("f1" in v for v in report["labels"].values())
    header = ["label", "n", "positives", "AUROC", "AUPRC"] + (["F1 (val threshold)"] if has_f1 else [])
    rows = []
    for n, v in report["labels"].items():
        rows.append(
            [n, v["n"], v["n_pos"], fmt(v["auroc"]), fmt(v["auprc"])] + ([fmt(v.get("f1"))] if has_f1 else [])
        )
    m = report["macro"]
    rows.append(
        [f"**macro** ({m['n_labels']} labels)", "", "", fmt(m["auroc"]), fmt(m["auprc"])]
        + ([fmt(m.get("f1"))] if has_f1 else [])
    )
    return table(header, rows) + _skipped(report["skipped"])


def markdown_header(title: str, record: dict) -> str:
    model, data = record["model"], record["data"]
    src = data.get("cache") or data.get("manifest")
    lines = [
        f"# {title}",
        "",
        f"- model: `{model.get('source')}` ({model.get('name')}, config sha256 {model['config_sha256'][:12]})",
        f"- data: `{src}` (sha256 {str(data.get('sha256'))[:12]}), split {_plain_text(data.get('split'))}, "
        f"n: {_plain_text(data.get('n'))}",
        f"- created {record['created']}, moreclip {record['versions']['moreclip']}, seed {record['seed']}",
        f"- command: `{record['command_line']}`",
        "- intervals: 95 % percentile bootstrap over the evaluated samples",
        "",
    ]
    return "\n".join(lines)


def _plain_text(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return " + ".join(map(str, v))
    return str(v)


def write_outputs(out: str | os.PathLike, record: dict, markdown: str) -> dict[str, Path]:
    """Write ``metrics.json`` and ``metrics.md`` into ``out``; returns their paths."""
    out = Path(out)
    return {
        "json": write_json(out / "metrics.json", record),
        "md": write_text_atomic(out / "metrics.md", markdown),
    }
