"""The HTML report builder on hand-made demo folders: self-contained, escaped, robust to missing parts.
(The full report of a real demo run is rendered in headless Chromium in tests/test_demo.py.)"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
from PIL import Image

from moreclip.report import build_report
from moreclip.report.figures import plot_training
from moreclip.report.html import fmt_ci, table


def _png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 30), value, np.uint8)).save(path)
    return path


def _folder(tmp_path):
    root = tmp_path / "demo"
    (root / "run" / "logs").mkdir(parents=True)
    (root / "demo.json").write_text(json.dumps({"n": 40, "seed": 3, "minutes": 0.5, "out": str(root)}))
    (root / "config.yaml").write_text("model:\n  name: tiny\ndata:\n  batch_size: 8\ntrain:\n  lr: 0.001\n")
    rows = ["step,loss,loss/xray:xray_report,loss/ecg:ecg_report,lr,logit_scale"]
    rows += [
        f"{s},{2.0 - s / 100},{2.1 - s / 90},{1.9 - s / 80},{1e-3 * (1 - s / 50)},{14 + s / 100}"
        for s in range(5, 50, 5)
    ]
    (root / "run" / "logs" / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def test_report_embeds_every_image_and_escapes_every_text(tmp_path):
    root = _folder(tmp_path)
    ex = root / "explain"
    for name in ("xray_s1.png", "ecg_s1.png", "thumbs/xray_s2.png", "thumbs/ecg_s2.png"):
        _png(ex / name, 90)
    (ex / "xray_report_s1.html").write_text('<div class="moreclip-explain">FINDINGS &lt;b&gt;</div>')
    (ex / "ecg_report_s1.html").write_text('<div class="moreclip-explain">Sinus rhythm.</div>')
    evil = "<script>alert('x')</script> & effusion"
    hit = lambda sid, **kw: {"sample_id": sid, "score": 0.5, "own": sid == "s1", **kw}  # noqa: E731
    patient = {
        "sample_id": "s1", "row": 0, "xray_findings": ["pleural_effusion"], "ecg_findings": [],
        "xray_prompt": "Pleural effusion.", "ecg_prompt": None,
        "files": {"xray": "xray_s1.png", "ecg": "ecg_s1.png", "xray_report": "xray_report_s1.html",
                  "ecg_report": "ecg_report_s1.html"},
        "neighbours": {"xray->xray_report": [hit("s1", text=evil), hit("s3", text="No effusion.")],
                       "xray->xray": [hit("s2", thumb="xray_s2.png")],
                       "ecg->ecg_report": [hit("s1", text="Sinus rhythm.")],
                       "ecg->ecg": [hit("s2", thumb="ecg_s2.png")]},
    }  # fmt: skip
    (ex / "patients.json").write_text(json.dumps([patient]))
    path = build_report(root)
    html = path.read_text(encoding="utf-8")
    assert path == root / "report.html"
    assert (
        "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; effusion" in html
    )
    assert "FINDINGS &lt;b&gt;" in html  # an explain fragment (already escaped) is kept as it is
    assert html.count('<span class="own">own report</span>') == 2
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 5  # training curves, X-ray and ECG figures, two thumbnails
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<link" not in html and len(re.findall(r'src="', html)) == len(
        srcs
    )  # nothing loaded from elsewhere


def test_report_of_a_folder_with_nothing_evaluated_yet(tmp_path):
    root = _folder(tmp_path)
    (root / "run" / "logs" / "train.csv").unlink()
    html = build_report(root).read_text(encoding="utf-8")
    assert "No training log." in html and "<img" not in html
    assert "moreclip demo --out" in html and "lr: 0.001" in html  # how to reproduce, and the config


def test_training_curves_and_helpers(tmp_path):
    root = _folder(tmp_path)
    png = plot_training(root / "run" / "logs" / "train.csv", tmp_path / "t.png", batch_size=8)
    with Image.open(png) as im:
        assert im.size[0] > 800 and len(np.unique(np.asarray(im.convert("L")))) > 10
    assert fmt_ci({"value": 0.91234, "ci": [0.9, 0.93]}) == "0.912 [0.900, 0.930]"
    assert fmt_ci({"mean": 0.5, "std": 0.01, "ci": [0.4, 0.6]}) == "0.500 ± 0.010 [0.400, 0.600]"
    assert fmt_ci(None) == "–"
    assert table(["a<b"], [["<i>"]], {0}) == (
        '<table><thead><tr><th>a&lt;b</th></tr></thead><tbody><tr><td class="num">&lt;i&gt;</td></tr></tbody></table>'
    )
