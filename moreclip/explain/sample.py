"""Everything the explanations say about one manifest row: maps, figures and highlighted reports.

    from moreclip.explain import explain_sample
    out = explain_sample(model, manifest, row=12, xray_prompt="pleural effusion")
    out["xray"]["png"], out["ecg"]["png"]            # PNG bytes of the two figures
    out["xray"]["maps"]["text"]                      # (gh, gw) arrays
    out["xray_report"]["html"]                       # the report, highlighted against its own X-ray

For a demo page of a few test patients; each part is None when the row lacks that modality.
"""

from __future__ import annotations

from moreclip.explain.ecg import ecg_maps
from moreclip.explain.render import figure_png, render_xray
from moreclip.explain.text import render_text_html, text_importance
from moreclip.explain.xray import xray_maps

OWN = "(the sample's own report)"  # shown as the prompt when none was given


def explain_sample(
    model,
    manifest,
    row: int,
    xray_prompt: str | None = None,
    ecg_prompt: str | None = None,
    methods="both",
    data_cfg=None,
    text_method: str = "occlusion",
    reports: bool = True,
    layout: str = "3x4",
    dpi: int = 100,
) -> dict:
    """Explain manifest row ``row``: X-ray maps, ECG attribution, and both reports' word importance.

    Args:
        model: the MoRE model.
        manifest: a :class:`~moreclip.data.manifest.Manifest` (or a path to one).
        row: the row position.
        xray_prompt: prompt of the X-ray text maps (default: the row's own X-ray report, when present).
        ecg_prompt: prompt of the ECG text map (default: the row's own ECG report, when present).
        methods: as for :func:`~moreclip.explain.xray.xray_maps`.
        data_cfg: the training preprocessing (:func:`moreclip.eval.data_config_for`).
        text_method: ``occlusion`` or ``gradient`` (:func:`~moreclip.explain.text.text_importance`).
        reports: also explain the reports (against the row's own X-ray / ECG).
        layout: ECG layout, ``"3x4"`` or ``"12x1"``.
        dpi: PNG resolution.

    Returns:
        ``{"sample_id", "xray": {"maps", "figure", "png"} | None, "ecg": {"maps", "figure", "png"} | None,
        "xray_report": {"scores", "html"} | None, "ecg_report": {...} | None}``. Figures are not closed;
        drop them when done.
    """
    from moreclip.data.manifest import Manifest, read_manifest
    from moreclip.explain.ecg_plot import render_ecg
    from moreclip.explain.inputs import ecg_input, xray_input

    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    df = m.df
    sid = str(df["sample_id"].iat[row])
    texts = {}
    for col in ("xray_report", "ecg_report"):
        v = df[col].iat[row] if col in df else None
        texts[col] = None if v is None or v != v or not str(v).strip() else str(v)
    out: dict = {"sample_id": sid, "xray": None, "ecg": None, "xray_report": None, "ecg_report": None}
    xin = ein = None
    if m.xray_file(row) is not None:
        xin = xray_input(m.xray_file(row), model, data_cfg)
        prompt = xray_prompt or texts["xray_report"]
        maps = xray_maps(model, xin, prompt, methods, data_cfg)
        fig = render_xray(
            maps["image"], _only_maps(maps), prompt=xray_prompt or OWN, title=f"{sid} \u2014 X-ray"
        )
        out["xray"] = {"maps": maps, "figure": fig, "png": figure_png(fig, dpi)}
    if m.ecg_record(row) is not None:
        ein = ecg_input(m.ecg_record(row), model, data_cfg)
        prompt = ecg_prompt or texts["ecg_report"]
        maps = ecg_maps(model, ein, prompt, methods, data_cfg)
        fig = render_ecg(maps["signal"], maps["fs"], _only_maps(maps), prompt=ecg_prompt or OWN,
                         title=f"{sid} \u2014 ECG", layout=layout)  # fmt: skip
        out["ecg"] = {"maps": maps, "figure": fig, "png": figure_png(fig, dpi)}
    if reports:
        for col, query in (("xray_report", {"xray": xin}), ("ecg_report", {"ecg": ein})):
            if texts[col] is None or next(iter(query.values())) is None:
                continue
            scores = text_importance(model, texts[col], method=text_method, data_cfg=data_cfg, **query)
            title = f"{sid} \u2014 {'radiology' if col == 'xray_report' else 'ECG'} report"
            note = (
                f"word importance for the match to the sample's own {'X-ray' if 'xray' in query else 'ECG'}"
            )
            out[col] = {
                "scores": scores,
                "html": render_text_html(scores, title, standalone=False, note=note),
            }
    return out


def _only_maps(maps: dict) -> dict:
    """The method -> map entries of an ``xray_maps`` / ``ecg_maps`` result."""
    return {k: v for k, v in maps.items() if k in ("rollout", "text", "gradient")}
