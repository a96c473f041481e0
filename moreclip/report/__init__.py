"""The HTML report of a demo run: one self-contained ``report.html`` (images embedded as data URIs).

    from moreclip.report import build_report
    build_report("demo")          # reads demo/{demo.json, config.yaml, run/, eval/, explain/} -> demo/report.html

Sections: headline numbers with intervals, chance levels and the quality targets; the cohort; training
curves; zero-shot tables and ROC curves; linear probe against a random-init encoder; retrieval Recall@K per
modality pair; a few test patients (X-ray attention maps, ECG attribution, highlighted reports, nearest
neighbours from the vector index); how to reproduce it, the config, versions and the time per stage.
Every text is escaped; the reports shown are the cohort's (synthetic) reports.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from moreclip.report import sections as S
from moreclip.report.html import esc, page

__all__ = ["build_report"]


def _read(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def build_report(root: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the report of the demo folder ``root``.

    Args:
        root: the demo folder (what :func:`moreclip.demo.run_demo` wrote).
        out: the HTML file (default ``root/report.html``).

    Returns:
        the path of the HTML file (written atomically).
    """
    import yaml

    root = Path(root)
    out = Path(out) if out is not None else root / "report.html"
    settings = _read(root / "demo.json", {})
    hj = _read(root / "eval" / "headline.json", {"headline": {}, "bar": {}})
    timings = _read(root / "timings.json", {})
    stage_info = {p.stem: _read(p, {}) for p in sorted((root / "stages").glob("*.json"))}
    cfg = yaml.safe_load((root / "config.yaml").read_text()) if (root / "config.yaml").is_file() else {}
    summ = _read(root / "run" / "summary.json", {})
    versions = summ.get("versions", {})
    fig_dir = root / "report_files"
    fig_dir.mkdir(exist_ok=True)

    intro = (
        "<h1>moreclip demo</h1>"
        f'<p class="sub">MoRE-style contrastive pre-training of chest X-rays, 12-lead ECGs and their reports '
        f"into one embedding space, on a synthetic cohort of {esc(settings.get('n', '?'))} patients "
        f"(seed {esc(settings.get('seed', '?'))}), {esc(summ.get('steps', '?'))} training steps "
        f"(~{esc(settings.get('minutes', '?'))} min budget on 2 CPU cores). Created "
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>"
        '<nav><a href="#data">data</a><a href="#training">training</a><a href="#zeroshot">zero-shot</a>'
        '<a href="#probe">linear probe</a><a href="#retrieval">retrieval</a><a href="#patients">patients</a>'
        '<a href="#reproduce">reproduce</a></nav>'
        '<h2 id="headline">Headline (held-out test split)</h2>'
        '<p class="note">Zero-shot: macro AUROC over the task\'s findings from text prompts alone. Retrieval: '
        "how often an X-ray (ECG) finds its own report among 500 held-out candidates in the top 5. Probe: "
        "logistic regression on frozen embeddings with 10 % of the training labels, against the same "
        "encoder with random weights. Targets are the demo's quality bar.</p>"
    )  # fmt: skip
    body = (
        intro
        + S.headline_cards(hj["headline"], hj["bar"])
        + S.data_section(root, stage_info)
        + S.training_section(root, cfg, fig_dir / "training.png")
        + S.zeroshot_section(root)
        + S.probe_section(root)
        + S.retrieval_section(root)
        + S.patients_section(root)
        + S.reproduce_section(root, settings, timings, versions)
    )
    html = page("moreclip demo report", body)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
