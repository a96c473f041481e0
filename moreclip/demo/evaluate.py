"""The demo's evaluation: every sample embedded once, then zero-shot, linear probe (trained vs random
initialisation) and retrieval on those embeddings, written in the format of ``moreclip zeroshot`` /
``probe`` / ``retrieval`` (``metrics.json``, ``metrics.md``, PNG plots) under ``DIR/eval/``.

    emb = embed_all(model, data_cfg)                       # Embeddings of every split, four modalities
    summary = evaluate_all(model, emb, random_emb, data_cfg, "demo/eval", source="demo/run/final")

The headline numbers (:data:`moreclip.demo.headline.QUALITY_BAR`) are read from these files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moreclip.eval import plots as P
from moreclip.eval import results as R

log = logging.getLogger(__name__)

MODALITIES = ("xray", "ecg", "xray_report", "ecg_report")
TASKS = ("synthetic-xray", "synthetic-ecg")


def embed_all(model, data_cfg, modalities: Sequence[str] = MODALITIES, progress: bool = True):
    """Embeddings of every sample of every split (no augmentation).

    Args:
        model: the MoRE model.
        data_cfg: its data config (:func:`moreclip.eval.data_config_for`).
        modalities: what to embed.
        progress: progress bar.
    """
    from moreclip.eval import embed_dataset, eval_dataset

    return embed_dataset(
        model, eval_dataset(data_cfg, None), list(modalities), batch_size=64, progress=progress
    )


def _task_summary(task) -> dict:
    return {"name": task.name, "type": task.type, "modality": task.modality, "source": task.source}


def run_zero_shot(model, emb, task_name: str, out: Path, provenance: dict, seed: int, n_resamples: int):
    """Zero-shot ``task_name`` on the test split (F1 thresholds on val); writes ``out``. Returns the record."""
    from moreclip.eval import zero_shot

    test, val = emb.subset("test"), emb.subset("val")
    res = zero_shot(model, test, task_name, val=val if len(val) else None, n_resamples=n_resamples, seed=seed)
    record = R.run_record(
        "zeroshot", res.to_dict(), model=provenance["model"],
        data={**provenance["data"], "split": "test", "n": {"test": len(test), "val": len(val)}},
        task=_task_summary(res.task), seed=seed,
    )  # fmt: skip
    md = R.markdown_header(f"Zero-shot: {res.task.name} from {res.query}", record)
    md += "\n" + R.markdown_classification(res.report, res.multiclass) + "\n"
    R.write_outputs(out, record, md)
    aucs = {k: v["auroc"]["value"] for k, v in res.report["labels"].items()}
    P.plot_roc(
        out / "roc.png", res.targets, res.scores, res.names, f"zero-shot {res.task.name} ({res.query})", aucs
    )
    return record


def run_probe(emb, task_name: str, out: Path, provenance: dict, fractions, seeds: int, seed: int,
              n_resamples: int, progress: bool):  # fmt: skip
    """Linear probe of ``task_name`` on the frozen embeddings (train / val / test splits); writes ``out``."""
    from moreclip.eval import linear_probe
    from moreclip.eval.runs import markdown_probe

    res = linear_probe(None, emb, task_name, fractions=fractions, seeds=seeds, n_resamples=n_resamples,
                       seed=seed, progress=progress)  # fmt: skip
    record = R.run_record(
        "probe", res.to_dict(), model=provenance["model"],
        data={**provenance["data"], "split": ["train", "val", "test"], "n": res.n},
        task=_task_summary(res.task), seed=seed,
    )  # fmt: skip
    md = R.markdown_header(f"Linear probe: {res.task.name} from {res.query}", record)
    md += "\n" + markdown_probe(res) + "\n"
    R.write_outputs(out, record, md)
    P.plot_probe_fractions(out / "probe_fractions.png", res.summary, "auroc", f"linear probe {res.task.name}")
    return record


def run_retrieval(emb, out: Path, provenance: dict, pool: int, seed: int, n_resamples: int):
    """Recall@1/5/10 of every modality pair on the test split among ``pool`` candidates; writes ``out``."""
    from moreclip.eval import retrieval
    from moreclip.eval.retrieval import available_pairs
    from moreclip.eval.runs import markdown_retrieval

    test = emb.subset("test")
    pairs = [f"{a}:{b}" for a, b in available_pairs(test.masks)]
    res = retrieval(None, test, pairs, pool=pool, n_resamples=n_resamples, seed=seed)
    record = R.run_record(
        "retrieval", res.to_dict(), model=provenance["model"],
        data={**provenance["data"], "split": "test", "n": {"samples": len(test)}}, seed=seed,
    )  # fmt: skip
    R.write_outputs(out, record, R.markdown_header("Cross-modal retrieval", record) + "\n" +
                    markdown_retrieval(res) + "\n")  # fmt: skip
    P.plot_recall(
        out / "recall.png", res.report, res.ks, f"retrieval on the test split (among {pool} candidates)"
    )
    return record


def plot_probe_comparison(path: Path, trained: dict, random: dict, title: str) -> Path:
    """Probe macro AUROC vs label fraction for the pre-trained and the random-init encoder."""
    plt = P.require_matplotlib()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for rec, label, colour in (
        (trained, "pre-trained (demo)", "C0"),
        (random, "random initialisation", "C3"),
    ):
        summ = rec["results"]["summary"]
        fr = sorted(summ, key=float)
        mean = [summ[f]["macro"]["auroc"]["mean"] for f in fr]
        std = [summ[f]["macro"]["auroc"]["std"] or 0.0 for f in fr]
        x = [float(f) * 100 for f in fr]
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=4, color=colour, label=label)
        ci = [summ[f]["macro"]["auroc"].get("ci") or [m, m] for f, m in zip(fr, mean)]
        ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], color=colour, alpha=0.12)
    ax.axhline(0.5, ls="--", c="0.6", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}%" for v in x])
    ax.minorticks_off()
    ax.set(xlabel="training labels used (% of subjects)", ylabel="test macro AUROC", ylim=(0.4, 1.0))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return P._save(fig, path)


def evaluate_all(model, emb, random_emb, data_cfg, out, *, source, random_source: str, pool: int = 500,
                 fractions=(0.01, 0.1, 1.0), seeds: int = 3, seed: int = 0, n_resamples: int = 1000,
                 progress: bool = True) -> dict:  # fmt: skip
    """Zero-shot (both tasks), probes (trained and random init) and retrieval into ``out``.

    Args:
        model: the trained model (encodes the zero-shot prompts).
        emb: its :class:`~moreclip.eval.Embeddings` of every sample.
        random_emb: the random-init model's X-ray and ECG embeddings of every sample.
        data_cfg: the data config used to embed (recorded).
        out: output folder (``zeroshot-<task>/``, ``probe-<task>/``, ``probe-<task>-random/``,
            ``retrieval/``, ``probe-<task>-vs-random.png``).
        source: the checkpoint folder of ``model`` (recorded with its SHA-256).
        random_source: how the random-init model was made (recorded).
        pool: retrieval candidates per query.
        fractions, seeds: probe label fractions and seeds.
        seed: seed of bootstraps and candidate pools.
        n_resamples: bootstrap resamples (0: no intervals).
        progress: progress bars.

    Returns:
        ``{"zeroshot": {task: record}, "probe": {task: record}, "probe_random": {...}, "retrieval": record}``.
    """
    out = Path(out)
    data = R.data_provenance(data_cfg, None, len(emb))
    prov = {"model": R.model_provenance(model, source), "data": data}
    prov_random = {"model": {**R.model_provenance(model, None), "source": random_source}, "data": data}
    result: dict = {"zeroshot": {}, "probe": {}, "probe_random": {}}
    for t in TASKS:
        result["zeroshot"][t] = run_zero_shot(model, emb, t, out / f"zeroshot-{t}", prov, seed, n_resamples)
    for t in TASKS:
        args = (fractions, seeds, seed, n_resamples, progress)
        result["probe"][t] = run_probe(emb, t, out / f"probe-{t}", prov, *args)
        result["probe_random"][t] = run_probe(random_emb, t, out / f"probe-{t}-random", prov_random, *args)
        plot_probe_comparison(
            out / f"probe-{t}-vs-random.png", result["probe"][t], result["probe_random"][t],
            f"linear probe {t}: pre-trained vs random init",
        )  # fmt: skip
    result["retrieval"] = run_retrieval(emb, out / "retrieval", prov, pool, seed, n_resamples)
    return result


def chance_recall(k: int, candidates: int) -> float:
    """Recall@K of a random ranking among ``candidates``."""
    return min(1.0, k / max(candidates, 1))


def pair_count(emb, a: str, b: str) -> int:
    """Test samples with both ``a`` and ``b`` (the retrieval pool available)."""
    test = emb.subset("test")
    return int(np.sum(test.masks[a] & test.masks[b]))
