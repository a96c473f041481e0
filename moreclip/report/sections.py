"""The sections of the demo report, each a function of the demo folder's files returning HTML."""

from __future__ import annotations

import json
from pathlib import Path

from moreclip.report.figures import PAIR_NAMES, plot_training
from moreclip.report.html import esc, figure, fmt, fmt_ci, img, table

TASK_TITLES = {"synthetic-xray": "X-ray findings", "synthetic-ecg": "ECG findings"}


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def headline_cards(head: dict, bar: dict) -> str:
    """One card per quality-bar metric: value, interval, chance level, target and whether it is met."""
    chance = {"zeroshot": "chance 0.500", "recall5": None, "probe_gain": "no gain: 0.000"}
    cards = []
    for b in bar.values():
        key, v = b["metric"], b["value"]
        ci = head.get(key + "_ci")
        if key.startswith("retrieval/"):
            n = head.get(f"retrieval/{key.split('/')[1]}/candidates") or 0
            ref = f"among {n} candidates; chance {5 / max(n, 1):.3f}"
        elif key.startswith("probe_gain/"):
            task = key.split("/")[1]
            ref = (f"demo {fmt(head.get(f'probe/{task}/0.1'))} vs random init "
                   f"{fmt(head.get(f'probe_random/{task}/0.1'))} (10 % of labels)")  # fmt: skip
        else:
            ref = chance["zeroshot"]
        badge = (
            '<span class="badge pass">met</span>' if b["pass"] else '<span class="badge fail">not met</span>'
        )
        cards.append(
            f'<div class="card"><div class="what">{esc(b["what"])}</div>'
            f'<div class="big">{esc(fmt(v))}</div>'
            f'<div class="ci">{esc(f"95 % CI [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "")}</div>'
            f'<div class="ref">{esc(ref)}</div><div class="ref">target \u2265 {b["min"]:.2f} {badge}</div></div>'
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def data_section(root: Path, stages: dict) -> str:
    info = ((stages.get("cohort") or {}).get("info")) or {}
    splits, present = info.get("splits", {}), info.get("present", {})
    rows = [[k, present.get(k, "–")] for k in ("xray", "ecg", "xray_report", "ecg_report")]
    return (
        '<h2 id="data">Data: the embedded synthetic cohort</h2>'
        f'<p class="note">{esc(info.get("n", "?"))} generated patients, each with a chest radiograph (PNG), a '
        "12-lead ECG (WFDB, 500 Hz, 10 s) and both reports, drawn from latent, correlated conditions "
        "(moreclip.data.synthetic). A few patients miss the X-ray or the ECG (and its report), as in real "
        "data; the training loss skips the missing pairs. Splits are by patient: "
        + esc(
            ", ".join(
                f"{k} {v}"
                for k, v in sorted(
                    splits.items(),
                    key=lambda kv: (
                        ("train", "val", "test").index(kv[0]) if kv[0] in ("train", "val", "test") else 9
                    ),
                )
            )
        )
        + ". Every number below is measured on the held-out test split.</p>"
        + table(["modality", "samples with it"], [[PAIR_NAMES.get(a, a), b] for a, b in rows], {1})
    )


def training_section(root: Path, cfg: dict, out_png: Path) -> str:
    run = root / "run"
    summ = _read(run / "summary.json") or {}
    batch = cfg.get("data", {}).get("batch_size")
    png = (
        plot_training(run / "logs" / "train.csv", out_png, batch)
        if (run / "logs" / "train.csv").is_file()
        else None
    )
    t = cfg.get("train", {})
    m = cfg.get("model", {})
    facts = [
        ["model", f"{m.get('name')}: ViT {m.get('xray', {}).get('depth')} blocks on {m.get('xray', {}).get('img_size')} px, "
                  f"ECG transformer {m.get('ecg', {}).get('depth')} blocks, text {m.get('text', {}).get('model_name')} "
                  f"({'LoRA r' + str(m.get('text', {}).get('lora_r')) if m.get('text', {}).get('lora') else 'frozen'}), "
                  f"{m.get('embed_dim')}-d shared space"],
        ["objective", f"symmetric InfoNCE over the pairs {t.get('pairs')}"],
        ["steps", f"{summ.get('steps', '?')} of batch {batch} ({fmt(summ.get('epochs'), 2)} epochs), status {summ.get('status', '?')}"],
        ["optimizer", f"AdamW lr {t.get('lr')}, {t.get('warmup_steps')} warm-up steps, {t.get('schedule')} schedule, "
                      f"weight decay {t.get('weight_decay')}"],
        ["speed", f"{fmt(summ.get('samples_per_s'), 1)} samples/s, {fmt(summ.get('wall_s'), 0)} s wall, "
                  f"{summ.get('device', '?')}, torch threads {t.get('threads') or 'all cores'}"],
    ]  # fmt: skip
    cap = ("Contrastive (InfoNCE) loss of every modality pair per logged step; the dashed line is the loss of "
           "an encoder that has learnt nothing (ln of the batch size). Right: the learning-rate schedule and "
           "the learnt inverse temperature of the similarity logits.")  # fmt: skip
    fig = figure(png, "training curves", cap) if png else '<p class="note">No training log.</p>'
    return '<h2 id="training">Pre-training</h2>' + table(["", ""], facts) + fig


def zeroshot_section(root: Path) -> str:
    parts = ['<h2 id="zeroshot">Zero-shot classification</h2><p class="note">No label is used for training: '
             "each finding is scored by comparing the embedding of the test X-ray (or ECG) with the embeddings of "
             "short generic text prompts for its presence and its absence (prompt ensembles averaged in the "
             "shared space). AUROC 0.5 is chance. F1 uses per-label thresholds chosen on the validation split. "
             "Intervals: 95 % bootstrap over test patients (1,000 resamples).</p>"]  # fmt: skip
    for task, title in TASK_TITLES.items():
        d = root / "eval" / f"zeroshot-{task}"
        rec = _read(d / "metrics.json")
        if rec is None:
            continue
        res = rec["results"]
        rep = res["metrics"]
        rows, cls = [], []
        for name, v in rep["labels"].items():
            rows.append([name.replace("_", " "), v["n_pos"], v["n"], fmt_ci(v["auroc"]), fmt_ci(v["auprc"]),
                         fmt_ci(v.get("f1"))])  # fmt: skip
            cls.append("")
        mac = rep["macro"]
        rows.append([f"macro ({mac['n_labels']} labels)", "", "", fmt_ci(mac["auroc"]), fmt_ci(mac["auprc"]),
                     fmt_ci(mac.get("f1"))])  # fmt: skip
        cls.append("macro")
        tab = table(["finding", "positives", "n", "AUROC [95 % CI]", "AUPRC", "F1"], rows, {1, 2}, cls)
        prompts = res.get("prompts") or {}
        plist = "".join(
            f"<li><b>{esc(k)}</b>: {esc(' / '.join(v.get('positive', [])))} <i>vs</i> "
            f"{esc(' / '.join(v.get('negative', [])))}</li>"
            for k, v in prompts.items() if isinstance(v, dict)
        )  # fmt: skip
        det = f"<details><summary>prompts used</summary><ul>{plist}</ul></details>" if plist else ""
        cap = (f"ROC curves of zero-shot {title} from the {res['query'].replace('xray', 'X-ray').replace('ecg', 'ECG')} "
               f"on {res['n']} test patients; AUROC per finding in the legend; the diagonal is chance.")  # fmt: skip
        parts.append(f'<h3>{esc(title)} (task {esc(task)})</h3><div class="row"><div>{tab}{det}</div>'
                     f'{figure(d / "roc.png", "ROC " + task, cap)}</div>')  # fmt: skip
    return "".join(parts)


def probe_section(root: Path) -> str:
    parts = ['<h2 id="probe">Linear probe: pre-trained vs random initialisation</h2><p class="note">A logistic '
             "regression per finding on the frozen X-ray (or ECG) embeddings, trained on 1 %, 10 % or 100 % of "
             "the training patients' labels (3 random draws each), regularisation chosen on validation, scored "
             "on test. The same architecture with random weights is probed the same way: the gap is what "
             "pre-training learnt.</p>"]  # fmt: skip
    for task, title in TASK_TITLES.items():
        a = _read(root / "eval" / f"probe-{task}" / "metrics.json")
        b = _read(root / "eval" / f"probe-{task}-random" / "metrics.json")
        if a is None or b is None:
            continue
        sa, sb = a["results"]["summary"], b["results"]["summary"]
        rows = [[f"{float(f):.0%}" if float(f) >= 0.01 else f"{float(f):.2%}",
                 fmt_ci(sa[f]["macro"]["auroc"]), fmt_ci(sb.get(f, {}).get("macro", {}).get("auroc")),
                 fmt((sa[f]["macro"]["auroc"]["mean"] or 0) - (sb.get(f, {}).get("macro", {}).get("auroc", {}).get("mean") or 0))]
                for f in sorted(sa, key=float)]  # fmt: skip
        tab = table(
            ["labels used", "pre-trained: macro AUROC (mean ± std [CI])", "random init", "gain"], rows, {3}
        )
        cap = (f"Test macro AUROC of the {title} probe against the fraction of training labels; mean ± std over "
               "draws, shaded: mean 95 % bootstrap interval; dashed: chance.")  # fmt: skip
        parts.append(f'<h3>{esc(title)}</h3><div class="row"><div>{tab}</div>'
                     f'{figure(root / "eval" / f"probe-{task}-vs-random.png", "probe " + task, cap)}</div>')  # fmt: skip
    return "".join(parts)


def retrieval_section(root: Path) -> str:
    d = root / "eval" / "retrieval"
    rec = _read(d / "metrics.json")
    if rec is None:
        return ""
    res = rec["results"]
    rows = []
    for pair in res["metrics"].values():
        for direction, m in pair.items():
            a, _, b = direction.partition("->")
            n = m["n_candidates"]
            rows.append([f"{PAIR_NAMES.get(a, a)} \u2192 {PAIR_NAMES.get(b, b)}", m["n_queries"], n]
                        + [fmt_ci(m[f"recall@{k}"]) for k in res["ks"]]
                        + [f"{m['median_rank']:g}", fmt(min(1.0, 5 / max(n, 1)))])  # fmt: skip
    tab = table(["query \u2192 candidates", "queries", "candidates"] + [f"R@{k} [95 % CI]" for k in res["ks"]]
                + ["median rank", "chance R@5"], rows, {1, 2})  # fmt: skip
    cap = (
        "Recall@K per direction: how often the query's own counterpart (its report, its other modality) "
        f"is among the top K of {res['pool']} held-out candidates (the true one and random others)."
    )
    return ('<h2 id="retrieval">Cross-modal retrieval</h2><p class="note">Each test patient\'s X-ray, ECG or '
            "report queries the embeddings of the other modalities; the correct match is the same patient's. "
            "X-ray \u2194 ECG is the hardest pair: they share findings (e.g. a pacemaker, heart failure) but not "
            "details.</p>" + tab + figure(d / "recall.png", "retrieval recall", cap))  # fmt: skip


def _hits(entries: list[dict]) -> str:
    items = []
    for e in entries:
        own = ' <span class="own">own report</span>' if e.get("own") else ""
        items.append(f'<li><span class="score">{e["score"]:.3f} \u00b7 {esc(e["sample_id"])}</span>{own}<br>'
                     f"{esc(e.get('text', ''))}</li>")  # fmt: skip
    return f'<ol class="hits">{"".join(items)}</ol>'


def _thumbs(entries: list[dict], folder: Path) -> str:
    figs = [f'<figure>{img(folder / "thumbs" / e["thumb"], e["sample_id"])}'
            f'<figcaption>{esc(e["sample_id"])} \u00b7 {e["score"]:.3f}</figcaption></figure>'
            for e in entries if e.get("thumb")]  # fmt: skip
    return f'<div class="nb">{"".join(figs)}</div>'


def patients_section(root: Path) -> str:
    folder = root / "explain"
    pts = _read(folder / "patients.json") or []
    out = ['<h2 id="patients">Test patients explained</h2><p class="note">For a few held-out patients: where '
           "the X-ray encoder attends (attention rollout) and which patches raise the match with a finding's "
           "prompt (gradient-weighted attention); the 12-lead ECG shaded by attention over time and by "
           "gradient \u00d7 input over time and lead for the ECG prompt; both reports with the words that raise "
           "(red) or lower (blue) their match with the patient's own X-ray / ECG; and the nearest entries the "
           "vector index finds for this patient's X-ray and ECG embeddings. Reports are synthetic.</p>"]  # fmt: skip
    for p in pts:
        f = p["files"]
        nb = p["neighbours"]
        px = p.get("xray_prompt") or "the patient's own report"
        pe = p.get("ecg_prompt") or "the patient's own report"
        fx = ", ".join(p["xray_findings"]).replace("_", " ") or "none of the task's findings"
        fe = ", ".join(p["ecg_findings"]).replace("_", " ") or "none of the task's findings"
        rep_x = (
            (folder / f["xray_report"]).read_text(encoding="utf-8")
            if (folder / f["xray_report"]).is_file()
            else ""
        )
        rep_e = (
            (folder / f["ecg_report"]).read_text(encoding="utf-8")
            if (folder / f["ecg_report"]).is_file()
            else ""
        )
        out.append(
            f'<div class="patient"><h3>{esc(p["sample_id"])} \u2014 X-ray: {esc(fx)}; ECG: {esc(fe)}</h3>'
            + figure(folder / f["xray"], "X-ray maps", f"The radiograph as the model sees it, attention rollout, "
                     f"and the map for the prompt \u201c{px}\u201d.")
            + f'<div class="report-text">{rep_x}</div>'
            + '<div class="row"><div><b>X-ray \u2192 nearest X-ray reports</b>' + _hits(nb["xray->xray_report"])
            + '</div><div><b>X-ray \u2192 most similar other X-rays</b>' + _thumbs(nb["xray->xray"], folder) + "</div></div>"
            + figure(folder / f["ecg"], "ECG attribution", f"The 12-lead ECG (3\u00d74 with a lead II rhythm strip) "
                     f"shaded by attention rollout and by attribution to the prompt \u201c{pe}\u201d.")
            + f'<div class="report-text">{rep_e}</div>'
            + '<div class="row"><div><b>ECG \u2192 nearest ECG reports</b>' + _hits(nb["ecg->ecg_report"])
            + '</div><div><b>ECG \u2192 most similar other ECGs (lead II, 4 s)</b>' + _thumbs(nb["ecg->ecg"], folder)
            + "</div></div></div>"
        )  # fmt: skip
    return "".join(out)


def reproduce_section(root: Path, settings: dict, timings: dict, versions: dict) -> str:
    cmd = (f"moreclip demo --out {settings.get('out')} --n {settings.get('n')} --minutes {settings.get('minutes'):g} "
           f"--seed {settings.get('seed')}")  # fmt: skip
    rows = [[v.get("title", k), "skipped (done before)" if v.get("skipped") else f"{v.get('seconds', 0):.1f} s"]
            for k, v in (timings.get("stages") or {}).items()]  # fmt: skip
    cfg_text = (root / "config.yaml").read_text() if (root / "config.yaml").is_file() else ""
    ver = ", ".join(
        f"{k} {v}"
        for k, v in versions.items()
        if k in ("moreclip", "python", "torch", "timm", "transformers", "cpu", "cpu_count")
    )
    return (
        '<h2 id="reproduce">Reproduce</h2><p class="note">The same command gives the same cohort and model '
        f"(same seed, fixed number of steps):</p><pre>{esc(cmd)}</pre><p class=\"note\">Training alone, from the "
        f"saved config: <code>moreclip pretrain --config {esc(root / 'config.yaml')}</code> (to a new "
        "<code>train.output_dir</code>). Interrupted? Run the same command again: finished stages are "
        f"skipped and training resumes from its last checkpoint.</p><h3>Time per stage (this run)</h3>"
        + table(["stage", "time"], rows, {1})
        + f'<p class="note">Total {fmt(timings.get("total_s"), 0)} s. Versions: {esc(ver)}.</p>'
        + f"<h3>Training config</h3><pre>{esc(cfg_text)}</pre>"
    )  # fmt: skip
