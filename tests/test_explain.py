"""Explanations: rollout maths, map shapes and mass, preprocessing parity with the Dataset, text importance,
escaped HTML, figures checked as decoded PNGs, the Python sample API and the ``moreclip explain`` CLI."""

from __future__ import annotations

import io
import sys

import matplotlib
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from moreclip.cli import main
from moreclip.config import EcgConfig
from moreclip.data.dataset import MoreDataset
from moreclip.data.manifest import read_manifest
from moreclip.errors import ConfigError
from moreclip.eval.data import data_config_for
from moreclip.explain import (
    attention_rollout,
    ecg_input,
    ecg_maps,
    ecg_relevance,
    explain_sample,
    figure_png,
    gradient_rollout,
    render_ecg,
    render_text_html,
    render_xray,
    text_importance,
    xray_input,
    xray_maps,
    xray_relevance,
)
from moreclip.explain.ecg import tokens_to_samples
from moreclip.explain.render import CMAP, require_matplotlib
from moreclip.models import create_model
from moreclip.models.ecg import EcgEncoder
from tests.helpers import make_cohort
from tests.tiny_text import tiny_text_backbone

SMALL = {
    "embed_dim": 32,
    "xray": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    "ecg": {"embed_dim": 32, "depth": 2, "num_heads": 2},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    text = tiny_text_backbone(tmp_path_factory.mktemp("bert"))
    return create_model("tiny", **SMALL, text={"model_name": text}).eval()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    return make_cohort(root, n=4)


def eye_maps(n_blocks: int, N: int = 5) -> list[torch.Tensor]:
    return [torch.eye(N).expand(1, 2, N, N).clone() for _ in range(n_blocks)]


# ------------------------------------------------------------------------------------------ maths
def test_rollout_follows_attention_through_the_blocks_in_order():
    maps = eye_maps(2)
    maps[0][:, :, 3] = torch.eye(5)[2]  # block 1: token 3 attends only to token 2
    maps[1][:, :, 0] = torch.eye(5)[3]  # block 2: CLS attends only to token 3
    r = attention_rollout(maps)[0]  # CLS row = 0.5 e0 + 0.25 e2 + 0.25 e3 (0.5 A + 0.5 I per block)
    assert torch.allclose(r, torch.tensor([0.0, 0.25, 0.25, 0.0]))
    reversed_order = attention_rollout(maps[::-1])[0]  # the other order never reaches token 2
    assert reversed_order[1] == 0 and reversed_order[2] == 0.5


def test_rollout_without_attention_flow_gives_nothing_and_uniform_attention_gives_a_flat_map():
    assert attention_rollout(eye_maps(3)).abs().sum() == 0
    maps = eye_maps(3)
    maps[1] = torch.full((1, 2, 5, 5), 0.2)
    r = attention_rollout(maps)[0]
    assert torch.allclose(r, torch.full((4,), 0.1))  # CLS keeps 0.5 + 0.1, each patch gets 0.5 * 0.2


def test_gradient_rollout_keeps_only_attention_that_raised_the_score():
    maps = [torch.full((1, 2, 5, 5), 0.2) for _ in range(2)]
    grads = [torch.zeros(1, 2, 5, 5) for _ in range(2)]
    assert gradient_rollout(maps, grads).abs().sum() == 0
    grads[1][:, :, 0, 3] = 1.0  # raising CLS -> token 3 in the last block raises the score
    grads[1][:, :, 0, 1] = -1.0  # ... and CLS -> token 1 lowers it: clipped away
    r = gradient_rollout(maps, grads)[0]
    assert r[2] > 0 and (r[[0, 1, 3]] == 0).all()


def test_token_relevance_is_spread_over_the_samples_each_patch_mode_covers():
    for mode, n_tokens in (("across", 20), ("per_lead", 240), ("more", 16)):
        enc = EcgEncoder(EcgConfig(patch_mode=mode, embed_dim=24, depth=1, num_heads=2))
        assert enc.patch_embed.num_patches == n_tokens
        rel = torch.zeros(1, n_tokens)
        rel[0, 1] = 1.0
        out = tokens_to_samples(rel, enc, 1000)[0]
        assert out.shape == (12, 1000) and out.sum() == pytest.approx(1.0)
        covered = (out > 0).nonzero()
        leads, times = covered[:, 0].unique(), covered[:, 1]
        if mode == "per_lead":  # token 1 is lead I, second time patch
            assert leads.tolist() == [0] and (times.min(), times.max()) == (50, 99)
        else:
            assert leads.tolist() == list(range(12))
            assert (times.min(), times.max()) == ((50, 99) if mode == "across" else (50, 299))


# ------------------------------------------------------------------------------------------ maps
def test_xray_maps_are_distributions_on_the_patch_grid(model, cohort):
    path = read_manifest(cohort).xray_file(0)
    maps = xray_maps(model, path, text="small left pleural effusion", methods="all")
    for m in ("rollout", "text", "gradient"):
        assert maps[m].shape == (4, 4) and (maps[m] >= 0).all()
        assert maps[m].sum() == pytest.approx(1.0, abs=1e-5)
    assert maps["image"].shape == (32, 32) and maps["image"].dtype == np.uint8
    x = xray_input(path, model).tensor
    with torch.no_grad():
        sim = (model.encode_xray(x) * model.encode_text(["small left pleural effusion"])).sum().item()
    assert maps["similarity"] == pytest.approx(sim, abs=1e-5)
    assert set(xray_maps(model, path)) == {"rollout", "image"}  # no prompt: no text map
    with pytest.raises(ValueError, match="needs a text prompt"):
        xray_maps(model, path, methods="text")


def test_maps_of_a_batch_equal_the_maps_of_each_input(model):
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(3, 1, 32, 32, generator=g), torch.randn(3, 12, 1000, generator=g)
    prompts = ["effusion", "pneumothorax", "clear lungs"]
    xb = xray_relevance(model, x, prompts, "all")
    eb = ecg_relevance(model, e, prompts, "both")
    for i in range(3):
        xi = xray_relevance(model, x[i : i + 1], prompts[i], "all")
        ei = ecg_relevance(model, e[i : i + 1], prompts[i], "both")
        for m in xi:
            assert torch.allclose(xb[m][i], xi[m][0], atol=1e-5), m
        for m in ei:
            assert torch.allclose(eb[m][i], ei[m][0], atol=1e-6), m
    assert not model.training  # restored


def test_ecg_text_attribution_resolves_leads(model):
    e = torch.randn(1, 12, 1000, generator=torch.Generator().manual_seed(1))
    e[0, 4] = 0.0  # a flat lead carries no gradient x input
    attr = ecg_relevance(model, e, "sinus tachycardia", "text")["text"][0]
    assert attr.shape == (12, 1000) and attr.sum() == pytest.approx(1.0, abs=1e-5)
    assert attr[4].abs().sum() == 0 and (attr.sum(1) > 0).sum() == 11


def test_single_inputs_are_preprocessed_like_the_training_dataset(model, cohort, tmp_path):
    man = read_manifest(cohort)
    for data in ({}, {"ecg_norm": "minmax", "xray_fit": "crop", "clahe": True, "ecg_bandpass": True}):
        cfg = data_config_for(model, manifest=cohort, base=data)
        item = MoreDataset(man, cfg)[1]
        xin = xray_input(man.xray_file(1), model, cfg)
        ein = ecg_input(man.ecg_record(1), model, cfg)
        assert torch.allclose(xin.tensor[0], item["xray"], atol=1e-6)
        assert torch.allclose(ein.tensor[0], item["ecg"], atol=1e-5)
        assert ein.signal.shape == (12, 5000) and ein.fs == 500.0 and ein.model_fs == 100.0
    arr = np.asarray(Image.open(man.xray_file(1)))
    assert torch.equal(xray_input(arr, model).tensor, xray_input(man.xray_file(1), model).tensor)


# ------------------------------------------------------------------------------------------ text
def test_occlusion_scores_are_the_similarity_lost_without_each_word(model):
    report = "  FINDINGS: small left effusion.\nNo pneumothorax. "
    e = torch.randn(1, 12, 1000, generator=torch.Generator().manual_seed(2))
    scores = text_importance(model, report, ecg=e)
    assert "".join(t for t, _ in scores) == report
    assert [t.strip() for t, _ in scores] == report.split()
    with torch.no_grad():
        q = model.encode_ecg(e)[0]
        full = model.encode_text([report], kind="ecg_report")[0] @ q
        without = model.encode_text([report.replace("effusion.", "")], kind="ecg_report")[0] @ q
    assert scores[3][1] == pytest.approx((full - without).item(), abs=1e-5)
    grad = text_importance(model, report, ecg=e, method="gradient")
    assert [t for t, _ in grad] == [t for t, _ in scores] and all(np.isfinite([s for _, s in grad]))
    assert any(s != 0 for _, s in grad)
    with pytest.raises(ValueError, match="exactly one"):
        text_importance(model, report)


def test_highlighted_report_escapes_every_token():
    scores = [("<script>alert('x')</script> ", 0.5), ('&"quoted" ', -0.2), ("fine\n", 0.0)]
    page = render_text_html(scores, title="<b>title</b>")
    assert "<script>" not in page and "<b>title" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and "&amp;&quot;quoted&quot;" in page
    assert page.startswith("<!DOCTYPE html>") and "rgba(214, 39, 40" in page and "rgba(31, 119, 180" in page
    frag = render_text_html(scores, standalone=False)
    assert frag.startswith('<div class="moreclip-explain">') and "<html" not in frag


# ------------------------------------------------------------------------------------------ figures
def png_array(fig, dpi=100) -> np.ndarray:
    img = Image.open(io.BytesIO(figure_png(fig, dpi)))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB")).astype(np.float64) / 255.0


def pixel(fig, arr, ax, x, y, transform="axes"):
    """RGB of the PNG pixel at ``(x, y)`` in axes fractions (or data units) of ``ax``."""
    tr = ax.transAxes if transform == "axes" else ax.transData
    px, py = tr.transform((x, y))
    h = arr.shape[0]
    return arr[int(round(h - py)), int(round(px))]


def colorbar_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_xray_figure_has_the_heat_where_the_map_is_and_a_colour_bar(model):
    img = np.tile(np.linspace(40, 200, 32, dtype=np.uint8), (32, 1))
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0  # all mass on the top-left patch
    fig = render_xray(img, {"rollout": heat, "text": heat}, prompt="pleural effusion", title="s1")
    arr = png_array(fig)
    w, h = fig.get_size_inches() * 100
    assert arr.shape == (round(h), round(w), 3) and arr.std() > 0.1
    cbars = colorbar_axes(fig)
    assert len(cbars) == 2
    cmap = matplotlib.colormaps[CMAP]
    fig.canvas.draw()
    for v in (0.1, 0.5, 0.9):
        assert np.abs(pixel(fig, arr, cbars[0], 0.5, v) - cmap(v)[:3]).max() < 0.05
    panel = fig.axes[1]
    hot, cold = pixel(fig, arr, panel, 0.12, 0.88), pixel(fig, arr, panel, 0.85, 0.15)
    assert hot.max() - hot.min() > 0.3  # coloured
    assert cold.max() - cold.min() < 0.02  # still the grey radiograph


def test_ecg_figure_shades_the_attributed_lead_and_has_a_colour_bar(model):
    t = np.arange(1000) / 100
    sig = np.stack([0.5 * np.sin(2 * np.pi * 1.2 * t + k) for k in range(12)]).astype(np.float32)
    attr = np.zeros((12, 1000))
    attr[6] = 1.0  # V1 only
    fig = render_ecg(sig, 100, {"text": attr}, prompt="sinus tachycardia", title="s2")
    arr = png_array(fig)
    assert len(colorbar_axes(fig)) == 1 and arr.std() > 0.05
    ax = fig.axes[0]
    fig.canvas.draw()
    v1 = pixel(fig, arr, ax, 6.9, -1.25, "data")  # 3x4 layout: V1 is row 0, 5-7.5 s; below its trace
    lead_i = pixel(fig, arr, ax, 1.9, -1.25, "data")  # lead I, same height
    assert v1[2] - v1[0] > 0.25  # blue shading
    assert lead_i[2] - lead_i[0] < 0.05 and lead_i.min() > 0.9  # almost white paper
    tall = render_ecg(sig, 100, {"rollout": attr, "text": attr}, layout="12x1")
    assert tall.get_size_inches()[1] > 2.5 * fig.get_size_inches()[1]
    plain = render_ecg(sig, 100)
    assert colorbar_axes(plain) == [] and png_array(plain).std() > 0.05


def test_figures_need_matplotlib_and_say_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"moreclip\[viz\]"):
        require_matplotlib()


# ------------------------------------------------------------------------------------------ API / CLI
def test_explain_sample_gives_figures_maps_and_highlighted_reports(model, cohort):
    out = explain_sample(model, cohort, 2, xray_prompt="pleural effusion")
    assert out["sample_id"] == "s2"
    for part in ("xray", "ecg"):
        assert out[part]["png"].startswith(b"\x89PNG") and "rollout" in out[part]["maps"]
        assert "text" in out[part]["maps"]  # the ECG map is conditioned on the row's own report
    assert out["xray_report"]["html"].startswith('<div class="moreclip-explain">')
    assert "".join(t for t, _ in out["ecg_report"]["scores"]) == "Sinus rhythm. Normal ECG."


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "model")
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["data"] = {"ecg_norm": "minmax", "manifest": "/elsewhere/manifest.parquet"}  # as a trainer writes
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def test_cli_explains_an_xray_and_its_report_without_printing_it(checkpoint, cohort, tmp_path, capsys):
    man = read_manifest(cohort)
    out, npz = tmp_path / "x.png", tmp_path / "x.npz"
    report = "FINDINGS: Zyxwvut <i>effusion</i> on the left."
    rc = main(["explain", "--model", str(checkpoint), "--xray", str(man.xray_file(0)), "--text", "effusion",
               "--method", "all", "--report", report, "--out", str(out), "--maps", str(npz)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr()
    assert "Zyxwvut" not in printed.out + printed.err and "cosine similarity" in printed.out
    assert Image.open(out).format == "PNG"
    html = (tmp_path / "x.html").read_text()
    assert "Zyxwvut" in html and "&lt;i&gt;effusion&lt;/i&gt;" in html
    with np.load(npz) as z:
        assert set(z.files) == {"rollout", "text", "gradient", "word_scores"}
        assert z["text"].shape == (4, 4) and z["word_scores"].shape == (6,)


def test_cli_ecg_uses_the_checkpoint_preprocessing(checkpoint, cohort, tmp_path, model):
    man = read_manifest(cohort)
    npz = tmp_path / "e.npz"
    rc = main(["explain", "--model", str(checkpoint), "--ecg", str(man.ecg_record(1)), "--text", "sinus rhythm",
               "--layout", "12x1", "--out", str(tmp_path / "e.png"), "--maps", str(npz)])  # fmt: skip
    assert rc == 0 and Image.open(tmp_path / "e.png").size[1] > 1200
    minmax = ecg_maps(
        model, man.ecg_record(1), "sinus rhythm", data_cfg=data_config_for(model, base={"ecg_norm": "minmax"})
    )
    with np.load(npz) as z:
        assert np.allclose(z["text"], minmax["text"], atol=1e-6)


def test_cli_errors_are_one_line(checkpoint, cohort, tmp_path, capsys):
    man = read_manifest(cohort)
    base = ["explain", "--model", str(checkpoint), "--out", str(tmp_path / "o.png")]
    assert main([*base, "--ecg", str(man.ecg_record(0)), "--method", "text"]) == 2
    assert "needs a text prompt" in capsys.readouterr().err
    assert main([*base, "--ecg", str(tmp_path / "missing")]) == 2
    assert "WFDB header not found" in capsys.readouterr().err
    assert main([*base, "--xray", str(man.xray_file(0)), "--method", "sharp"]) == 2
    assert "unknown explanation method" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
