"""Explanations: where the encoders look, which ECG leads and moments matter, which report words match.

    from moreclip.explain import xray_maps, ecg_maps, text_importance, render_xray, render_ecg
    maps = xray_maps(model, "cxr.png", text="left pleural effusion")      # rollout / text: (gh, gw)
    fig = render_xray(maps["image"], {"rollout": maps["rollout"], "text": maps["text"]}, prompt="...")
    attr = ecg_attribution(model, "ecg/rec001", "sinus tachycardia")       # (12, T)
    maps = ecg_maps(model, "ecg/rec001", text="sinus tachycardia")         # rollout / text: (12, T)
    fig = render_ecg(maps["signal"], maps["fs"], {"text": maps["text"]}, prompt="sinus tachycardia")
    html = render_text_html(text_importance(model, report, xray="cxr.png"))

Single inputs are preprocessed exactly like the training data (:mod:`moreclip.explain.inputs`).
Figures need matplotlib (the ``viz`` extra), imported only when a figure is drawn. See docs/explain.md.
"""

from moreclip.explain.attention import attention_rollout, gradient_rollout
from moreclip.explain.ecg import ecg_attribution, ecg_maps, ecg_relevance, lead_shares
from moreclip.explain.ecg_plot import render_ecg
from moreclip.explain.inputs import (
    EcgInput,
    XrayInput,
    ecg_input,
    xray_input,
)
from moreclip.explain.render import figure_png, render_xray, save_figure
from moreclip.explain.sample import explain_sample
from moreclip.explain.text import render_text_html, text_importance
from moreclip.explain.xray import mass_in_box, pointing_hit, upsample, xray_maps, xray_relevance

__all__ = [
    "EcgInput",
    "XrayInput",
    "attention_rollout",
    "ecg_attribution",
    "ecg_input",
    "ecg_maps",
    "ecg_relevance",
    "explain_sample",
    "figure_png",
    "gradient_rollout",
    "lead_shares",
    "mass_in_box",
    "pointing_hit",
    "render_ecg",
    "render_text_html",
    "render_xray",
    "save_figure",
    "text_importance",
    "upsample",
    "xray_input",
    "xray_maps",
    "xray_relevance",
]
