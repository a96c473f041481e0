"""A vector index of a model's embeddings of a manifest: build, extend, and query by text, X-ray or ECG.

    index = build_index("runs/demo/checkpoint", "cohort/manifest.parquet")   # xray, ecg, both reports
    index.save("runs/index")
    index = VectorIndex.load("runs/index")
    model = index_model(index)                                  # the recorded checkpoint, hash-checked
    hits = search_index(index, model, text="left pleural effusion", target="xray", k=10)
    add_to_index(index, model, "new/manifest.parquet")          # only rows not indexed yet

The index records the model that built it (``model`` in index.json: checkpoint path, SHA-256 of its
``model.safetensors``, name, embedding size, the data preprocessing) and the manifests it read. A query
must be embedded by the same model: :func:`index_model` loads the recorded checkpoint (or the one given)
and refuses one whose weights differ.

Targets: ``xray``, ``ecg``, ``xray_report``, ``ecg_report``, and ``report``, which searches both report
modalities the index holds and merges their hits by score (each hit names its ``modality``). Text queries
are encoded as the target's kind of report (``xray_report`` for ``xray``, ``ecg_report`` for ``ecg``).

Stored per vector (metadata Parquet): ``sample_id``, ``subject_id``, ``split``, the file path of image
modalities, and ``excerpt``: the first ``excerpt_chars`` characters of the sample's report for that
modality (the X-ray report for ``xray`` and ``xray_report``, the ECG report for ``ecg`` and
``ecg_report``); ``excerpt_chars=0`` stores none. Report text is never logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moreclip.errors import ConfigError
from moreclip.eval.results import file_sha256
from moreclip.index.backend import IndexParams, VectorIndexError
from moreclip.index.vector_index import SearchResult, VectorIndex

log = logging.getLogger(__name__)

INDEX_MODALITIES = ("xray", "ecg", "xray_report", "ecg_report")
TARGETS = (*INDEX_MODALITIES, "report")
REPORT_OF = {
    "xray": "xray_report",
    "ecg": "ecg_report",
    "xray_report": "xray_report",
    "ecg_report": "ecg_report",
}
PATH_OF = {"xray": "xray_path", "ecg": "ecg_path"}
EXCERPT_CHARS = 200


def require_faiss() -> None:
    """Raise a clear ConfigError when FAISS (the ``index`` extra) is not installed."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise ConfigError("the vector index needs FAISS: pip install 'moreclip[index]'") from None


def checkpoint_info(checkpoint: str | os.PathLike, model, data_cfg) -> dict:
    """What an index records about the model that embedded it."""
    from moreclip.config import to_dict
    from moreclip.models.checkpoint import WEIGHTS_NAME

    path = Path(checkpoint).resolve()
    return {
        "checkpoint": str(path),
        "sha256": file_sha256(path / WEIGHTS_NAME),
        "name": model.config.name,
        "embed_dim": int(model.embed_dim),
        "data": {k: v for k, v in to_dict(data_cfg).items() if k not in ("manifest", "cache", "aug")},
    }


def _load_checkpoint(checkpoint: str | os.PathLike):
    from moreclip.models.checkpoint import is_checkpoint, load

    if not is_checkpoint(checkpoint):
        raise ConfigError(
            f"{checkpoint}: not a model checkpoint (a folder with config.yaml and model.safetensors); an index "
            "records the checkpoint that built it so queries can be embedded by the same model"
        )
    return load(checkpoint)


def index_model(index: VectorIndex, checkpoint: str | os.PathLike | None = None):
    """The model that embeds queries for ``index``: ``checkpoint`` or the one recorded; its weights must
    be the ones that built the index (SHA-256 of ``model.safetensors``).

    Raises:
        ConfigError: no checkpoint recorded or given, or its weights differ from the recorded ones.
    """
    from moreclip.models.checkpoint import WEIGHTS_NAME

    info = index.model_info or {}
    path = checkpoint or info.get("checkpoint")
    if not path:
        raise ConfigError("the index records no model; give the checkpoint that built it (--model)")
    model = _load_checkpoint(path)
    want = info.get("sha256")
    if want and file_sha256(Path(path) / WEIGHTS_NAME) != want:
        raise ConfigError(
            f"{path}: its weights differ from those of the model that built the index "
            f"({info.get('checkpoint')}); queries must be embedded by the same model"
        )
    return model


def _data_config(model, index: VectorIndex | None, checkpoint):
    from moreclip.eval.data import data_config_for

    saved = (index.model_info or {}).get("data") if index is not None else None
    return data_config_for(model, checkpoint=checkpoint, base=saved)


def _metadata(manifest, modalities: Sequence[str], excerpt_chars: int) -> pd.DataFrame:
    df = manifest.df
    parts = []
    for m in modalities:
        rows = np.flatnonzero(manifest.has(m))
        meta = pd.DataFrame({"modality": m, "sample_id": df["sample_id"].iloc[rows].astype(str).to_numpy()})
        for col in ("subject_id", "split"):
            if col in df:
                meta[col] = df[col].iloc[rows].astype(str).to_numpy()
        if m in PATH_OF and PATH_OF[m] in df:
            meta["path"] = df[PATH_OF[m]].iloc[rows].astype(str).to_numpy()
        if excerpt_chars > 0 and REPORT_OF[m] in df:
            text = df[REPORT_OF[m]].iloc[rows].fillna("").astype(str)
            meta["excerpt"] = text.str.slice(0, excerpt_chars).to_numpy()
        parts.append(meta)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["modality", "sample_id"])


def _check_modalities(modalities: Sequence[str] | None) -> list[str]:
    mods = list(modalities) if modalities is not None else list(INDEX_MODALITIES)
    bad = [m for m in mods if m not in INDEX_MODALITIES]
    if bad or not mods:
        raise ConfigError(f"index modalities {bad or mods}: expected any of {', '.join(INDEX_MODALITIES)}")
    return mods


def _embed(model, manifest, modalities, data_cfg, batch_size, progress, strict, num_workers=0):
    """Embeddings of ``manifest``'s rows per modality: ``{modality: (sample ids, (n, D))}``."""
    from moreclip.data.dataset import MoreDataset
    from moreclip.eval.embed import embed_dataset

    if not len(manifest):
        return {}
    ds = MoreDataset(manifest, data_cfg, split=None, augment=False, strict=strict)
    emb = embed_dataset(model, ds, modalities=modalities, batch_size=batch_size, progress=progress,
                        num_workers=num_workers)  # fmt: skip
    out = {}
    for m in modalities:
        if m not in emb.embeddings:
            continue
        x, ok = emb.get(m)
        lost = int(manifest.has(m).sum() - ok.sum())
        if lost:
            log.warning(
                "%d %s record(s) could not be read and are not indexed (see the warnings above)", lost, m
            )
        if ok.any():
            out[m] = (emb.sample_ids[ok].astype(str).tolist(), x[ok])
    return out


def build_index(
    checkpoint: str | os.PathLike,
    manifest,
    modalities: Sequence[str] | None = None,
    *,
    params: IndexParams | None = None,
    excerpt_chars: int = EXCERPT_CHARS,
    batch_size: int = 64,
    progress: bool = True,
    strict: bool = False,
    num_workers: int = 0,
) -> VectorIndex:
    """Embed every sample of ``manifest`` per modality with the checkpoint's model into a new index.

    Args:
        checkpoint: a model checkpoint directory (recorded in the index, with its weights' SHA-256).
        manifest: a :class:`~moreclip.data.manifest.Manifest` or a path to one.
        modalities: any of ``xray``, ``ecg``, ``xray_report``, ``ecg_report`` (default: all four; those
            no row has are skipped).
        params: the FAISS index kind and parameters (default: exact below 100,000 vectors, HNSW above).
        excerpt_chars: characters of each report stored as the ``excerpt`` metadata (0: none).
        batch_size: samples per forward pass.
        progress: show progress bars.
        strict: raise on an unreadable record instead of reporting and skipping it.
        num_workers: DataLoader processes decoding records (0: in this process).

    Returns:
        the (unsaved) :class:`VectorIndex`.
    """
    from moreclip.data.manifest import Manifest, read_manifest

    mods = _check_modalities(modalities)
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    model = _load_checkpoint(checkpoint)
    cfg = _data_config(model, None, checkpoint)
    info = checkpoint_info(checkpoint, model, cfg)
    info["manifests"] = [str(Path(man.path).resolve())] if man.path else []
    embeddings = _embed(model, man, mods, cfg, batch_size, progress, strict, num_workers)
    if not embeddings:
        raise ConfigError(f"{man.path}: no row has any of the modalities {', '.join(mods)}")
    meta = _metadata(man, list(embeddings), excerpt_chars)
    index = VectorIndex.build(embeddings, meta, params=params, model_info=info, progress=progress)
    log.info("indexed %s", ", ".join(f"{m}: {index.count(m)}" for m in index.modalities))
    return index


def add_to_index(
    index: VectorIndex,
    model,
    manifest,
    modalities: Sequence[str] | None = None,
    *,
    excerpt_chars: int = EXCERPT_CHARS,
    batch_size: int = 64,
    progress: bool = True,
    strict: bool = False,
    num_workers: int = 0,
) -> dict[str, int]:
    """Embed the rows of ``manifest`` that ``index`` does not hold yet (per modality) and add them.

    Args:
        index: the index (changed in place; save it afterwards).
        model: the model that built it (:func:`index_model`).
        manifest: a Manifest or a path to one.
        modalities: default: those the index holds.
        excerpt_chars: as for :func:`build_index`.
        batch_size / progress / strict / num_workers: as for :func:`build_index`.

    Returns:
        modality -> number of vectors added (rows already indexed are skipped).
    """
    from moreclip.data.manifest import Manifest, read_manifest

    mods = _check_modalities(modalities if modalities is not None else index.modalities)
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    ids = man.df["sample_id"].astype(str).to_numpy()
    new_rows = np.zeros(len(man), bool)
    for m in mods:
        have = set(index.metadata(m)["sample_id"]) if m in index else set()
        new_rows |= man.has(m) & ~np.isin(ids, list(have))
    added = dict.fromkeys(mods, 0)
    if new_rows.any():
        sub = man.subset(new_rows)
        cfg = _data_config(model, index, None)
        embeddings = _embed(model, sub, mods, cfg, batch_size, progress, strict, num_workers)
        meta = _metadata(sub, list(embeddings), excerpt_chars)
        for m, (sids, x) in embeddings.items():
            have = set(index.metadata(m)["sample_id"]) if m in index else set()
            keep = [j for j, s in enumerate(sids) if s not in have]
            if keep:
                index.add(m, [sids[j] for j in keep], x[keep], meta, progress=progress)
                added[m] = len(keep)
    manifests = list((index.model_info or {}).get("manifests") or [])
    if man.path is not None and str(Path(man.path).resolve()) not in manifests:
        manifests.append(str(Path(man.path).resolve()))
    index.model_info = {**(index.model_info or {}), "manifests": manifests}
    return added


def embed_query(
    model, target: str, *, text: str | None = None, xray=None, ecg=None, data_cfg=None
) -> np.ndarray:
    """One query's embedding ``(1, D)`` for searching ``target`` (see the module docstring).

    Args:
        model: the index's model.
        target: the modality searched (decides the text kind of a text query).
        text / xray / ecg: exactly one: a text, an image file (or array), a WFDB record (or
            :class:`~moreclip.explain.inputs.EcgInput`).
        data_cfg: the preprocessing (default: from the model and the DataConfig defaults).
    """
    import torch

    given = [k for k, v in (("text", text), ("xray", xray), ("ecg", ecg)) if v is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one query: a text, an X-ray or an ECG")
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if text is not None:
                kind = REPORT_OF.get(target, "xray_report")
                z = model.encode_text([text], kind=kind)
            elif xray is not None:
                from moreclip.explain.inputs import xray_input

                z = model.encode_xray(xray_input(xray, model, data_cfg).tensor)
            else:
                from moreclip.explain.inputs import ecg_input

                z = model.encode_ecg(ecg_input(ecg, model, data_cfg).tensor)
    finally:
        model.train(was)
    return z.float().cpu().numpy()


def target_modalities(index: VectorIndex, target: str) -> list[str]:
    """The index modalities searched for ``target`` (``report``: both report modalities it holds).

    Raises:
        VectorIndexError: an unknown target, or one the index holds no vectors of.
    """
    if target not in TARGETS:
        raise VectorIndexError(f"unknown search target {target!r} (expected one of {', '.join(TARGETS)})")
    mods = [m for m in ("xray_report", "ecg_report") if m in index] if target == "report" else [target]
    if not mods or mods[0] not in index:
        has = ", ".join(index.modalities) or "nothing"
        want = "xray_report or ecg_report" if target == "report" else target
        raise VectorIndexError(f"the index has no {want} vectors to search (it holds: {has})")
    return mods


def search_index(
    index: VectorIndex,
    model,
    target: str | None = None,
    k: int = 10,
    *,
    text: str | None = None,
    xray=None,
    ecg=None,
) -> pd.DataFrame:
    """The ``k`` nearest stored samples of ``target`` to one query, best first.

    Args:
        index: the index.
        model: its model (:func:`index_model`).
        target: ``xray``, ``ecg``, ``xray_report``, ``ecg_report`` or ``report`` (both report
            modalities, merged by score). Default: ``report`` for a text query, ``xray`` for an X-ray,
            ``ecg`` for an ECG.
        k: hits to return.
        text / xray / ecg: the query (exactly one).

    Returns:
        one row per hit: ``rank`` (1-based), ``sample_id``, ``modality``, ``score`` (cosine), and the
        stored metadata (``split``, ``excerpt``, ...).
    """
    if target is None:
        target = "report" if text is not None else "xray" if xray is not None else "ecg"
    mods = target_modalities(index, target)
    cfg = _data_config(model, index, None)
    frames = []
    for m in mods:
        q = embed_query(model, m, text=text, xray=xray, ecg=ecg, data_cfg=cfg)
        res: SearchResult = index.search(q, m, k=k)
        f = res.to_frame().drop(columns=["query", "rank"])
        f.insert(1, "modality", m)
        frames.append(f[f["sample_id"].notna()])
    hits = pd.concat(frames, ignore_index=True).sort_values("score", ascending=False, kind="stable").head(k)
    hits.insert(0, "rank", np.arange(1, len(hits) + 1))
    return hits.reset_index(drop=True)
