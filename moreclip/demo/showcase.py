"""A few test patients explained: X-ray attention maps, the 12-lead ECG with its attribution, both reports
with word importance, and their nearest neighbours in the vector index, per modality.

    patients = showcase(model, manifest, emb, index, "demo/explain", k=3, data_cfg=cfg)

Writes ``OUT/patients.json`` (what the HTML report shows) and PNG / HTML files beside it. The reports
are synthetic patient text: they go into these output files only, never into a log.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moreclip.demo.stages import write_json_atomic

#: X-ray findings that make a patient worth showing, in order of preference
SHOW_FINDINGS = ("pleural_effusion", "cardiomegaly", "pacemaker", "pneumothorax", "edema_any", "atelectasis")
NEIGHBOURS = 3


def pick_patients(manifest, k: int, seed: int = 0) -> list[tuple[int, str | None]]:
    """``(manifest row, X-ray finding)`` of ``k`` test patients with all four modalities, each showing
    another finding of :data:`SHOW_FINDINGS` when the test split has one (None for the rest); seeded, so
    the same cohort gives the same patients."""
    df = manifest.df
    full = np.ones(len(df), bool)
    for m in ("xray", "ecg", "xray_report", "ecg_report"):
        full &= manifest.has(m)
    rows = np.flatnonzero(full & (df["split"].to_numpy() == "test"))
    rows = [int(r) for r in rows[np.random.default_rng(seed).permutation(len(rows))]]
    chosen: list[tuple[int, str | None]] = []
    for finding in SHOW_FINDINGS:
        col = f"synthetic/{finding}"
        taken = {r for r, _ in chosen}
        if len(chosen) >= k or col not in df:
            continue
        hit = [r for r in rows if df[col].iat[r] == 1 and r not in taken]
        if hit:
            chosen.append((hit[0], finding))
    taken = {r for r, _ in chosen}
    chosen += [(r, None) for r in rows if r not in taken][: max(0, k - len(chosen))]
    return chosen[:k]


def _findings(row, task) -> list[str]:
    return [lab.name for lab in task.labels if lab.column in row and row[lab.column] == 1]


def _prompt(task, names: list[str]) -> str | None:
    by = {lab.name: lab for lab in task.labels}
    return by[names[0]].positive[0] if names and by[names[0]].positive else None


def _xray_thumb(path: Path, out: Path, size: int = 112) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        im.thumbnail((size, size))
        tmp = out.with_name(f".{out.name}.tmp.png")
        im.save(tmp, format="PNG")
        tmp.replace(out)
    return out.name


def _ecg_thumb(record: Path, out: Path, seconds: float = 4.0) -> str:
    from moreclip.data.ecg import read_ecg
    from moreclip.explain.render import figure_png, save_bytes

    rec = read_ecg(record)
    from matplotlib.figure import Figure

    n = int(rec.fs * seconds)
    fig = Figure(figsize=(2.6, 0.9))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.plot(np.arange(n) / rec.fs, rec.signal[1, :n], lw=0.8, c="k")  # lead II
    ax.set_axis_off()
    ax.set_xlim(0, seconds)
    save_bytes(figure_png(fig, dpi=90), out)
    return out.name


def neighbours(index, manifest, sid: str, query: str, target: str, k: int, thumbs: Path) -> list[dict]:
    """The ``k`` nearest ``target`` entries of the index to sample ``sid``'s stored ``query`` vector.

    The sample itself is left out for same-modality searches; for a report target its own report is
    kept (and marked ``own``): finding it first is what retrieval measures.
    """
    q = index.vectors(query, [sid])
    res = index.search(q, target, k=k + 1).to_frame()
    df = manifest.df
    pos = {s: i for i, s in enumerate(df["sample_id"].astype(str))}
    out = []
    for _, hit in res.iterrows():
        other = str(hit["sample_id"])
        if target == query and other == sid:
            continue
        i = pos[other]
        entry = {"sample_id": other, "score": float(hit["score"]), "own": other == sid}
        if target in ("xray_report", "ecg_report"):
            entry["text"] = str(df[target].iat[i])
        elif target == "xray":
            entry["thumb"] = _xray_thumb(manifest.xray_file(i), thumbs / f"xray_{other}.png")
        else:
            entry["thumb"] = _ecg_thumb(manifest.ecg_record(i), thumbs / f"ecg_{other}.png")
        out.append(entry)
        if len(out) == k:
            break
    return out


def showcase(model, manifest, index, out, *, k: int = 3, seed: int = 0, data_cfg=None) -> list[dict]:
    """Explain ``k`` test patients and find their neighbours; writes ``out/patients.json`` and figures.

    Args:
        model: the trained model.
        manifest: the cohort (:class:`~moreclip.data.manifest.Manifest`).
        index: the :class:`~moreclip.index.VectorIndex` of the cohort built with ``model``.
        out: output folder.
        k: patients.
        seed: patient choice.
        data_cfg: the model's data config (:func:`moreclip.eval.data_config_for`).

    Returns:
        one dict per patient (the content of ``patients.json``).
    """
    from moreclip.eval import load_task
    from moreclip.explain import explain_sample

    out = Path(out)
    thumbs = out / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    tx, te = load_task("synthetic-xray"), load_task("synthetic-ecg")
    patients = []
    for row, finding in pick_patients(manifest, k, seed):
        rec = manifest.df.iloc[row]
        sid = str(rec["sample_id"])
        fx, fe = _findings(rec, tx), _findings(rec, te)
        px, pe = _prompt(tx, [finding] if finding else fx), _prompt(te, fe)
        ex = explain_sample(model, manifest, row, xray_prompt=px, ecg_prompt=pe, data_cfg=data_cfg)
        files = {}
        for part in ("xray", "ecg"):
            name = f"{part}_{sid}.png"
            (out / name).write_bytes(ex[part]["png"])
            files[part] = name
        for part in ("xray_report", "ecg_report"):
            name = f"{part}_{sid}.html"
            (out / name).write_text(ex[part]["html"], encoding="utf-8")
            files[part] = name
        patients.append({
            "sample_id": sid, "row": int(row), "xray_findings": fx, "ecg_findings": fe,
            "xray_prompt": px, "ecg_prompt": pe, "files": files,
            "xray_similarity": float(ex["xray"]["maps"].get("similarity", float("nan"))),
            "neighbours": {
                "xray->xray_report": neighbours(index, manifest, sid, "xray", "xray_report", NEIGHBOURS, thumbs),
                "xray->xray": neighbours(index, manifest, sid, "xray", "xray", NEIGHBOURS, thumbs),
                "ecg->ecg_report": neighbours(index, manifest, sid, "ecg", "ecg_report", NEIGHBOURS, thumbs),
                "ecg->ecg": neighbours(index, manifest, sid, "ecg", "ecg", NEIGHBOURS, thumbs),
            },
        })  # fmt: skip
        for part in ("xray", "ecg"):
            ex[part]["figure"].clear()
    write_json_atomic(out / "patients.json", patients)
    return patients


def load_patients(out) -> list[dict]:
    """``patients.json`` written by :func:`showcase` (empty when absent)."""
    p = Path(out) / "patients.json"
    return json.loads(p.read_text()) if p.is_file() else []
