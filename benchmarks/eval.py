"""Evaluation speed: linear probe, zero-shot and retrieval metrics on embeddings, and embedding throughput.

    python benchmarks/eval.py                       # defaults below; writes benchmarks/out/eval.json
    python benchmarks/eval.py --n 5000 --dim 256    # a larger probe / metric workload
    python benchmarks/eval.py --skip-embed          # numpy / scikit-learn parts only (no model)

Timed (CPU time beside wall time, and the load average: the machine may be shared):

- ``probe``: :func:`moreclip.eval.linear_probe` on ``--n`` samples (60/20/20 % train/val/test by subject,
  2 samples per subject) of ``--dim``-d features with ``--labels`` binary labels carrying a linear signal,
  3 fractions (1 %, 10 %, 100 %) x ``--seeds`` seeds, C grid of 5, 1,000 bootstrap resamples.
- ``zero_shot_metrics``: :func:`moreclip.eval.zero_shot` on precomputed embeddings (prompt embeddings given,
  so no model): scoring + F1 thresholds on val + the bootstrap report, test = 20 % of ``--n``.
- ``retrieval``: :func:`moreclip.eval.retrieval` on one pair of test-size embeddings, both directions,
  1,000 bootstrap resamples, all candidates and a pool of 100.
- ``embed`` (unless ``--skip-embed``): a ``--cohort``-patient synthetic cohort is generated and prepared
  into a cache (not timed), then :func:`moreclip.eval.embed_dataset` with the ``tiny`` model (64 px) on
  every modality; samples per CPU-second per modality.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np


def timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, {"cpu_s": round(time.process_time() - c, 3), "wall_s": round(time.perf_counter() - w, 3)}


def synthetic_embeddings(n: int, dim: int, n_labels: int, seed: int = 0):
    from moreclip.eval.embed import Embeddings

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    W = rng.standard_normal((dim, n_labels))
    Y = ((X @ W) / np.sqrt(dim) + rng.standard_normal((n, n_labels)) > 1.0).astype(np.float32)
    Y[rng.random((n, n_labels)) < 0.05] = np.nan
    subj = np.array([f"p{i // 2}" for i in range(n)], dtype=object)
    s = np.arange(n) // 2 / (n / 2)
    split = np.where(s < 0.6, "train", np.where(s < 0.8, "val", "test")).astype(object)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Embeddings(np.array([f"s{i}" for i in range(n)], dtype=object), np.arange(n), {"ecg": X},
                      {"ecg": np.ones(n, bool)}, Y, [f"bench/l{j}" for j in range(n_labels)], subj, split)  # fmt: skip


def bench_metrics(args) -> dict:
    from moreclip.eval import linear_probe, retrieval, zero_shot
    from moreclip.eval.prompts import prompt_bank
    from moreclip.eval.tasks import task_from_dict

    emb = synthetic_embeddings(args.n, args.dim, args.labels)
    labels = [{"name": f"l{j}", "column": f"bench/l{j}", "positive": [f"p{j}"], "negative": [f"n{j}"]}
              for j in range(args.labels)]  # fmt: skip
    task = task_from_dict({"name": "bench", "modality": "ecg", "labels": labels})
    out = {}
    res, t = timed(
        lambda: linear_probe(None, emb, task, fractions=(0.01, 0.1, 1.0), seeds=args.seeds, progress=False)
    )
    out["probe"] = {**t, "fits": len({r["n_samples"] for r in res.runs}) * args.labels * 5,
                    "macro_auroc": {f: s["macro"]["auroc"]["mean"] for f, s in res.summary.items()}}  # fmt: skip
    rng = np.random.default_rng(1)
    text = rng.standard_normal((len(prompt_bank(task).texts), args.dim)).astype(np.float32)
    test, val = emb.subset("test"), emb.subset("val")
    _, t = timed(lambda: zero_shot(None, test, task, val=val, text_emb=text, scale=100.0))
    out["zero_shot_metrics"] = {**t, "n_test": len(test), "labels": args.labels}
    pair = emb.subset("test")
    pair.embeddings["ecg_report"] = pair.embeddings["ecg"] + 0.5 * rng.standard_normal(
        pair.embeddings["ecg"].shape
    )
    pair.embeddings["ecg_report"] /= np.linalg.norm(pair.embeddings["ecg_report"], axis=1, keepdims=True)
    pair.masks["ecg_report"] = pair.masks["ecg"]
    for pool in (None, 100):
        r, t = timed(lambda p=pool: retrieval(None, pair, "ecg:ecg_report", pool=p))
        out[f"retrieval_pool_{pool or 'all'}"] = {
            **t,
            "n": len(pair),
            "recall@1": r.report["ecg:ecg_report"]["ecg->ecg_report"]["recall@1"]["value"],
        }
    return out


def bench_embed(args) -> dict:
    import torch

    from moreclip.data.prepare import prepare_cache
    from moreclip.data.preprocess import PreprocessOptions
    from moreclip.data.synthetic import generate_cohort
    from moreclip.eval import data_config_for, embed_dataset, eval_dataset
    from moreclip.models import create_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        man = generate_cohort(Path(tmp) / "c", args.cohort, seed=0, workers=2, image_size=96, progress=False)
        model = create_model("tiny", xray={"img_size": 64}).eval()
        cfg = data_config_for(model, cache=Path(tmp) / "cache")
        prepare_cache(man, cfg.cache, PreprocessOptions.from_config(cfg), workers=2, progress=False)
        ds = eval_dataset(cfg)
        out = {"n": len(ds), "torch_threads": args.threads}
        for m in ("xray", "ecg", "ecg_report", "xray_report"):
            emb, t = timed(lambda m=m: embed_dataset(model, ds, [m], batch_size=64, progress=False))
            k = int(emb.masks[m].sum())
            out[m] = {**t, "samples": k, "samples_per_cpu_s": round(k / max(t["cpu_s"], 1e-9), 1)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="samples of the probe / metric workload")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--labels", type=int, default=9)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--cohort", type=int, default=200, help="synthetic patients for the embedding benchmark")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the embedding benchmark")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / "eval.json"))
    args = p.parse_args()
    result = {"args": vars(args), "platform": platform.platform(), "cpus": os.cpu_count(),
              "loadavg_start": os.getloadavg()}  # fmt: skip
    result.update(bench_metrics(args))
    if not args.skip_embed:
        result["embed"] = bench_embed(args)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
