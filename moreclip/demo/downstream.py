"""Demo stages 4-6 on the trained model: evaluate, index, explain (see :mod:`moreclip.demo.pipeline`).

The trained model is the one still in memory after training (its text prefix cache already holds the
training reports) or, when training was done by an earlier run, ``DIR/run/final``. Every sample is
embedded once (``DIR/eval/embeddings.npz``); evaluation, the index and the neighbours all use those.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from moreclip.demo.stages import stage_key, write_json_atomic

log = logging.getLogger(__name__)


def _weights_sha(final: Path) -> str:
    from moreclip.eval.results import file_sha256

    return file_sha256(final / "model.safetensors")


def _model(state: dict, final: Path):
    import torch

    import moreclip

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if state.get("model") is None:
        state["model"] = moreclip.load(final)
    return state["model"].eval()


def random_init_embeddings(cfg, data_cfg, seed: int, progress: bool):
    """X-ray and ECG embeddings of every sample by the same architecture with random weights (seeded)."""
    import torch

    from moreclip.demo.evaluate import embed_all
    from moreclip.models import create_model

    torch.manual_seed(seed)
    model = create_model(cfg.model).eval()
    return embed_all(model, data_cfg, ("xray", "ecg"), progress)


def metadata_frame(manifest, modalities, excerpt_chars: int = 200):
    """Per indexed vector: modality, sample / subject id, split, file path, report excerpt (as ``moreclip
    index build`` stores)."""
    import pandas as pd

    from moreclip.index.model_index import PATH_OF, REPORT_OF

    df, parts = manifest.df, []
    for m in modalities:
        rows = np.flatnonzero(manifest.has(m))
        meta = pd.DataFrame({"modality": m, "sample_id": df["sample_id"].iloc[rows].astype(str).to_numpy(),
                             "subject_id": df["subject_id"].iloc[rows].astype(str).to_numpy(),
                             "split": df["split"].iloc[rows].astype(str).to_numpy()})  # fmt: skip
        if m in PATH_OF:
            meta["path"] = df[PATH_OF[m]].iloc[rows].astype(str).to_numpy()
        meta["excerpt"] = (
            df[REPORT_OF[m]].iloc[rows].fillna("").astype(str).str.slice(0, excerpt_chars).to_numpy()
        )
        parts.append(meta)
    return pd.concat(parts, ignore_index=True)


def build_demo_index(emb, manifest, final: Path, model, data_cfg):
    """A :class:`~moreclip.index.VectorIndex` of every present embedding, recording the checkpoint."""
    from moreclip.index import VectorIndex
    from moreclip.index.model_index import checkpoint_info

    vectors = {}
    for m in ("xray", "ecg", "xray_report", "ecg_report"):
        x, ok = emb.get(m)
        if ok.any():
            vectors[m] = (emb.sample_ids[ok].astype(str).tolist(), x[ok])
    info = checkpoint_info(final, model, data_cfg)
    info["manifests"] = [str(Path(manifest.path).resolve())]
    return VectorIndex.build(vectors, metadata_frame(manifest, list(vectors)), model_info=info)


def run_downstream(s, cfg, paths: dict, stages, state: dict, k_train: str, echo) -> None:
    """Stages evaluate, index and explain; puts ``headline`` / ``bar`` into ``state["summary"]``."""
    from moreclip.data.manifest import read_manifest
    from moreclip.demo.evaluate import embed_all, evaluate_all
    from moreclip.demo.headline import check_bar, headline
    from moreclip.eval import Embeddings, data_config_for

    final = paths["run"] / "final"
    sha = _weights_sha(final)
    data_cfg = data_config_for(cfg.model, cache=str(paths["cache"]), checkpoint=str(final))
    ev = paths["eval"]
    emb_file = ev / "embeddings.npz"
    eval_settings = {"pool": s.pool, "fractions": list(s.probe_fractions), "seeds": s.probe_seeds,
                     "n_resamples": s.n_resamples, "seed": s.seed}  # fmt: skip
    k_eval = stage_key("evaluate", k_train, sha, eval_settings)

    def evaluate():
        model = _model(state, final)
        emb = embed_all(model, data_cfg, progress=s.progress)
        emb.save(emb_file)
        rand = random_init_embeddings(cfg, data_cfg, s.seed + 1_000_003, s.progress)
        records = evaluate_all(
            model, emb, rand, data_cfg, ev, source=str(final),
            random_source=f"{cfg.model.name} architecture, random initialisation (torch seed {s.seed + 1_000_003})",
            pool=s.pool, fractions=s.probe_fractions, seeds=s.probe_seeds, seed=s.seed,
            n_resamples=s.n_resamples, progress=s.progress,
        )  # fmt: skip
        h = headline(records)
        write_json_atomic(ev / "headline.json", {"headline": h, "bar": check_bar(h)})
        return {"n_embedded": len(emb)}

    stages.run("evaluate", "zero-shot, linear probe (vs random init), retrieval on the test split -> "
               f"{ev}", k_eval, evaluate, (emb_file, ev / "headline.json"))  # fmt: skip

    import json

    hj = json.loads((ev / "headline.json").read_text())
    state["summary"] = {"headline": hj["headline"], "bar": hj["bar"]}

    k_index = stage_key("index", k_eval)
    index_dir = paths["index"]

    def index():
        model = _model(state, final)
        vi = build_demo_index(Embeddings.load(emb_file), read_manifest(paths["cohort"] / "manifest.parquet"),
                              final, model, data_cfg)  # fmt: skip
        vi.save(index_dir)
        return {m: vi.count(m) for m in vi.modalities}

    stages.run("index", f"vector index of every sample's four embeddings -> {index_dir}", k_index, index,
               (index_dir / "index.json",))  # fmt: skip

    k_explain = stage_key("explain", k_index, s.patients)

    def explain():
        from moreclip.demo.showcase import showcase
        from moreclip.index import VectorIndex

        model = _model(state, final)
        man = read_manifest(paths["cohort"] / "manifest.parquet")
        pts = showcase(model, man, VectorIndex.load(index_dir), paths["explain"], k=s.patients, seed=s.seed,
                       data_cfg=data_cfg)  # fmt: skip
        return {"patients": [p["sample_id"] for p in pts]}

    stages.run("explain", f"explanations and nearest neighbours of {s.patients} test patients -> "
               f"{paths['explain']}", k_explain, explain, (paths["explain"] / "patients.json",))  # fmt: skip
