"""One evaluation run end to end: load the model, build its data, evaluate, write the outputs.

These are what ``moreclip zeroshot`` / ``probe`` / ``retrieval`` call; use them from Python the same way::

    res, out = evaluate_zero_shot("runs/demo/checkpoint", manifest="cohort/manifest.parquet", task="synthetic-ecg")

The data config is derived from the model (:func:`moreclip.eval.embed.data_config_for`: image size and
ECG rate / length of the model, the checkpoint's normalisation), then ``data_overrides``. Outputs go to
``out`` (default ``<checkpoint>/eval/<command>-<task>[-<split>]``, or ``results/...`` for a model that is
not a checkpoint directory): ``metrics.json``, ``metrics.md`` and PNG plots (:mod:`moreclip.eval.results`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moreclip.errors import ConfigError, MoreclipError
from moreclip.eval import plots as P
from moreclip.eval import results as R
from moreclip.eval.embed import data_config_for, embed_dataset, eval_dataset
from moreclip.eval.zeroshot import as_task, query_name

log = logging.getLogger(__name__)


def load_eval_model(model, device: str | None = None, overrides: Sequence[str] = ()):
    """``(model, source)``: a MoRE instance as is, or a checkpoint directory / registry name loaded in eval mode."""
    if not isinstance(model, str | os.PathLike):
        return model.eval(), None
    import torch

    from moreclip.models import create_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return create_model(model, list(overrides), device=device).eval(), str(model)


def default_out(source: str | None, command: str, task: str | None = None, split: str = "test") -> Path:
    """``<checkpoint>/eval/<command>[-<task>][-<split>]``, or ``results/...`` when the model is no checkpoint."""
    name = command + (f"-{Path(task).stem}" if task else "") + ("" if split == "test" else f"-{split}")
    if source is not None and (Path(source) / "model.safetensors").is_file():
        return Path(source) / "eval" / name
    return Path("results") / name


def _setup(model, manifest, cache, data_overrides, device, model_overrides, plots):
    if plots:
        P.require_matplotlib()  # fail before the work, not after it
    if manifest is None and cache is None:
        raise ConfigError("give --manifest or --cache (the data to evaluate on)")
    m, source = load_eval_model(model, device, model_overrides)
    cfg = data_config_for(m, manifest=manifest, cache=cache, checkpoint=source, overrides=data_overrides)
    if cfg.cache and cfg.manifest:
        cfg.manifest = None  # the cache is the same rows, decoded
    return m, source, cfg


def _dataset(cfg, split):
    ds = eval_dataset(cfg, split)
    if len(ds) == 0:
        src = cfg.cache or cfg.manifest
        raise MoreclipError(f"{src}: no samples in split '{split}'")
    return ds


def _task_summary(task) -> dict[str, Any]:
    return {"name": task.name, "type": task.type, "modality": task.modality, "source": task.source}


def evaluate_zero_shot(
    model,
    *,
    task,
    manifest=None,
    cache=None,
    split: str = "test",
    val_split: str | None = "val",
    modality: str | None = None,
    fuse: bool = False,
    out=None,
    data_overrides: Sequence[str] = (),
    model_overrides: Sequence[str] = (),
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
    argv: Sequence[str] | None = None,
):
    """Zero-shot ``task`` on ``split`` (thresholds on ``val_split``); writes the outputs. Returns ``(result, out)``.

    Args:
        model: checkpoint directory, registry name, or a MoRE model.
        task: built-in task name, task YAML, or Task.
        manifest, cache: the data (a cache is preferred when both are given).
        split, val_split: evaluated split and the split that chooses F1 thresholds (None: no F1).
        modality, fuse: query modality instead of the task's, or X-ray + ECG fused.
        out: output folder (default: see the module docstring).
        data_overrides, model_overrides: ``key=value`` changes to the data / model config.
        batch_size, num_workers, device: embedding settings.
        n_resamples, seed: bootstrap settings.
        plots: write the ROC plot (needs matplotlib).
        progress: progress bars.
        argv: the command line recorded in metrics.json (default ``sys.argv``).
    """
    from moreclip.eval.zeroshot import resolve_task, zero_shot

    m, source, cfg = _setup(model, manifest, cache, data_overrides, device, model_overrides, plots)
    task = as_task(task)
    query = query_name(task, modality, fuse)
    parts = query.split("+")
    emb = lambda ds: embed_dataset(m, ds, parts, batch_size, progress, num_workers)  # noqa: E731
    test = emb(_dataset(cfg, split))
    val = None
    if val_split:
        vds = eval_dataset(cfg, val_split)
        val = emb(vds) if len(vds) else None
    if not task.is_resolved:
        tr = eval_dataset(cfg, "train")
        task = resolve_task(task, None, tr_frame(tr) if len(tr) else test.frame())
    res = zero_shot(m, test, task, val=val, modality=modality, fuse=fuse, n_resamples=n_resamples, seed=seed)
    out = Path(out) if out is not None else default_out(source, "zeroshot", task.name, split)
    n = {"evaluated": len(res.sample_ids), split: res.n_total}
    if val is not None:
        n[val_split] = len(val)
    record = R.run_record(
        "zeroshot",
        res.to_dict(),
        model=R.model_provenance(m, source),
        data=R.data_provenance(cfg, [split] + ([val_split] if val is not None else []), n),
        task=_task_summary(task),
        seed=seed,
        argv=argv,
    )
    md = R.markdown_header(f"Zero-shot: {task.name} from {res.query}", record)
    if res.n_missing:
        md += f"\n{res.n_missing} of {res.n_total} samples have no {res.query} and are not scored.\n"
    if val is None:
        md += "\nNo validation split: F1 not reported.\n"
    md += "\n" + R.markdown_classification(res.report, res.multiclass) + "\n"
    R.write_outputs(out, record, md)
    if plots:
        aucs = res.report["classes"] if res.multiclass else res.report["labels"]
        P.plot_roc(
            out / "roc.png",
            res.targets,
            res.scores,
            res.names,
            f"zero-shot {task.name} ({res.query})",
            {k: v["auroc"]["value"] for k, v in aucs.items()},
        )
    return res, out


def tr_frame(ds):
    """The label table of a dataset's rows (what :meth:`Task.resolve` counts on), without decoding anything."""
    import pandas as pd

    return pd.DataFrame(np.asarray(ds.labels, dtype=np.float64), columns=list(ds.label_names))


def evaluate_probe(
    model,
    *,
    task,
    manifest=None,
    cache=None,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    seeds: int | Sequence[int] = 3,
    modality: str | None = None,
    fuse: bool = False,
    C_grid: Sequence[float] | None = None,
    out=None,
    data_overrides: Sequence[str] = (),
    model_overrides: Sequence[str] = (),
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
    argv: Sequence[str] | None = None,
):
    """Linear probe of ``task`` (train / val / test splits of the data); writes the outputs. Returns ``(result, out)``.

    Args are those of :func:`evaluate_zero_shot`, plus ``fractions``, ``seeds`` and ``C_grid`` of
    :func:`moreclip.eval.probe.linear_probe`.
    """
    from moreclip.eval.probe import DEFAULT_C_GRID, linear_probe

    m, source, cfg = _setup(model, manifest, cache, data_overrides, device, model_overrides, plots)
    task = as_task(task)
    query = query_name(task, modality, fuse)
    ds = eval_dataset(cfg, None)
    emb = embed_dataset(m, ds, query.split("+"), batch_size, progress, num_workers)
    grid = tuple(C_grid) if C_grid else DEFAULT_C_GRID
    res = linear_probe(
        None, emb, task, fractions=fractions, seeds=seeds, modality=modality, fuse=fuse, C_grid=grid,
        n_resamples=n_resamples, seed=seed, progress=progress,
    )  # fmt: skip
    out = Path(out) if out is not None else default_out(source, "probe", res.task.name)
    record = R.run_record(
        "probe",
        {**res.to_dict(), "C_grid": list(grid)},
        model=R.model_provenance(m, source),
        data=R.data_provenance(cfg, ["train", "val", "test"], res.n),
        task=_task_summary(res.task),
        seed=seed,
        argv=argv,
    )
    md = R.markdown_header(f"Linear probe: {res.task.name} from {res.query}", record)
    md += "\n" + markdown_probe(res) + "\n"
    R.write_outputs(out, record, md)
    if plots:
        mc = res.task.type == "multiclass"
        P.plot_probe_fractions(
            out / "probe_fractions.png",
            res.summary,
            "macro_auroc" if mc else "auroc",
            f"linear probe {res.task.name} ({res.query})",
        )
        if res.curve:
            P.plot_roc(
                out / "roc.png",
                res.curve["targets"],
                res.curve["scores"],
                res.curve["names"],
                f"probe {res.task.name}, {max(res.fractions):g} of labels, seed {res.seeds[0]}",
            )
    return res, out


def markdown_probe(res) -> str:
    """Per-fraction table (macro metrics, mean ± std over seeds [mean CI]) and per-label AUROC table."""
    mc = res.task.type == "multiclass"
    keys = ["accuracy", "macro_f1", "macro_auroc"] if mc else ["auroc", "auprc", "f1"]
    rows = []
    for f, s in res.summary.items():
        runs = [r for r in res.runs if f"{r['fraction']:g}" == f]
        subj = sorted({r["n_subjects"] for r in runs})
        added = sum(r["n_added_subjects"] for r in runs)
        rows.append(
            [f"{float(f):.0%}" if float(f) >= 0.01 else f"{float(f):.2%}", "/".join(map(str, subj))]
            + [R.fmt(s.get("macro", {}).get(k)) for k in keys]
            + [added]
        )
    nice = {"auroc": "macro AUROC", "auprc": "macro AUPRC", "f1": "macro F1 (val threshold)",
            "accuracy": "accuracy", "macro_f1": "macro-F1", "macro_auroc": "macro AUROC"}  # fmt: skip
    header = ["labels used", "train subjects (per seed)"] + [nice[k] for k in keys]
    text = R.table(header + ["subjects added for class coverage"], rows)
    text += f"\n\nmean ± std over {len(res.seeds)} seed(s) [mean of the per-seed 95 % bootstrap intervals]."
    names = [n for n in res.task.names if any(n in s.get("labels", {}) for s in res.summary.values())]
    if names:
        fr = list(res.summary)
        rows = [
            [n] + [R.fmt(res.summary[f].get("labels", {}).get(n, {}).get("auroc")) for f in fr] for n in names
        ]
        text += "\n\n" + R.table(["AUROC by label"] + [f"{float(f):g}" for f in fr], rows)
    skipped = {k: v for r in res.runs for k, v in r["skipped"].items()}
    if skipped:
        text += "\n\nNot probed in some runs: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."
    return text


def evaluate_retrieval(
    model,
    *,
    manifest=None,
    cache=None,
    pairs=None,
    pool: int | None = None,
    ks: Sequence[int] = (1, 5, 10),
    split: str = "test",
    out=None,
    data_overrides: Sequence[str] = (),
    model_overrides: Sequence[str] = (),
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
    argv: Sequence[str] | None = None,
):
    """Retrieval on ``split`` for ``pairs`` (default: every pair present); writes the outputs. Returns ``(result, out)``."""
    from moreclip.eval.retrieval import BASE_MODALITIES, available_pairs, parse_pairs, retrieval

    m, source, cfg = _setup(model, manifest, cache, data_overrides, device, model_overrides, plots)
    ds = _dataset(cfg, split)
    wanted = parse_pairs(pairs)
    if wanted is None:
        wanted = available_pairs({k: np.asarray(ds.present[k]) for k in BASE_MODALITIES})
        if not wanted:
            raise MoreclipError(f"no two modalities are present together in split '{split}'")
    mods = list(dict.fromkeys(x for p in wanted for x in p))
    emb = embed_dataset(m, ds, mods, batch_size, progress, num_workers)
    res = retrieval(
        None, emb, [f"{a}:{b}" for a, b in wanted], pool=pool, ks=ks, n_resamples=n_resamples, seed=seed
    )
    out = Path(out) if out is not None else default_out(source, "retrieval", None, split)
    n = {p: next(iter(d.values()))["n_queries"] for p, d in res.report.items()}
    record = R.run_record(
        "retrieval",
        res.to_dict(),
        model=R.model_provenance(m, source),
        data=R.data_provenance(cfg, split, {"samples": len(emb), **n}),
        seed=seed,
        argv=argv,
    )
    md = R.markdown_header("Cross-modal retrieval", record)
    md += "\n" + markdown_retrieval(res) + "\n"
    R.write_outputs(out, record, md)
    if plots:
        P.plot_recall(out / "recall.png", res.report, res.ks, f"retrieval ({_pool_text(res.pool)})")
    return res, out


def _pool_text(pool: int | None) -> str:
    return "all candidates" if pool is None else f"among {pool} candidates"


def markdown_retrieval(res) -> str:
    header = (
        ["direction", "queries", "candidates"] + [f"R@{k}" for k in res.ks] + ["median rank", "mean rank"]
    )
    rows = []
    for d in res.report.values():
        for name, m in d.items():
            rows.append(
                [name.replace("->", " → "), m["n_queries"], m["n_candidates"]]
                + [R.fmt(m[f"recall@{k}"]) for k in res.ks]
                + [f"{m['median_rank']:g}", f"{m['mean_rank']:.1f}"]
            )
    text = (
        R.table(header, rows) + f"\n\nRanks {_pool_text(res.pool)} per query; ties count against the query."
    )
    if res.skipped:
        text += "\n\nSkipped pairs: " + "; ".join(f"{k} ({v})" for k, v in res.skipped.items()) + "."
    return text
