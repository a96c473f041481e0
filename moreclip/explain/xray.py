"""Where the X-ray encoder looks: attention rollout and text-conditioned relevance maps on the patch grid.

    maps = xray_maps(model, "cxr.png", text="left pleural effusion")
    maps["rollout"], maps["text"]        # (gh, gw) numpy maps on the ViT patch grid, each summing to 1
    maps["image"]                        # (S, S) uint8: the radiograph as the model saw it

Methods (``methods=``; ``"both"`` = rollout + text, ``"all"`` adds gradient):

- ``rollout``: :func:`~moreclip.explain.attention.attention_rollout` of the ViT's blocks (Abnar &
  Zuidema 2020): what the encoder attends to, whatever the prompt.
- ``text``: gradient-weighted attention rollout (Chefer et al. 2021,
  :func:`~moreclip.explain.attention.gradient_rollout`) with the target score
  ``cos(x-ray embedding, prompt embedding)``: the patches whose attention raised the image's similarity
  to the prompt.
- ``gradient``: gradient x input of the same score on the normalised pixels, ``|x * d score / dx|``
  summed over each patch (the method of the ECG's text map). Cheaper and model-agnostic, but it favours
  pixels far from the normalisation mean (dark lung more than grey opacity) and shows where a change
  *would* move the score, which for a saturated finding is often elsewhere.

How well each localises depends on the model: ``benchmarks/explain.py`` measures the synthetic pointing
game for all three (tests/test_explain_pointing.py asserts it for ``text``).

Maps are computed in eval mode (DropKey and dropout off) and normalised to sum to 1 over the grid, so a
map's "mass" in a region is comparable across images and methods; :func:`mass_in_box` and
:func:`pointing_hit` score them against a known finding location (pointing game).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from moreclip.explain.attention import attention_rollout, gradient_rollout, normalise_mass
from moreclip.explain.common import check_methods, eval_mode, prompt_embeddings
from moreclip.models.dropkey import record_attention

XRAY_METHODS = ("rollout", "text", "gradient")


def _vit_layout(model) -> tuple[int, tuple[int, int], str]:
    vit = model.xray.vit
    grid = tuple(int(g) for g in vit.patch_embed.grid_size)
    pool = "token" if model.config.xray.global_pool == "token" else "avg"
    return int(getattr(vit, "num_prefix_tokens", 1)), grid, pool


def xray_relevance(
    model, x: torch.Tensor, text: str | list[str] | None = None, methods="both", kind: str = "xray_report"
) -> dict[str, torch.Tensor]:
    """Relevance maps of a batch of preprocessed radiographs on the ViT patch grid.

    Args:
        model: the MoRE model.
        x: ``(B, 1, S, S)`` normalised radiographs (see :func:`~moreclip.explain.inputs.xray_input`).
        text: the prompt (or B prompts) for the ``text`` / ``gradient`` maps.
        methods: ``"rollout"``, ``"text"``, ``"gradient"``, ``"both"`` (rollout + text), ``"all"``, or a
            list of them.
        kind: text kind of the prompt (picks the text tower; ``xray_report`` by default).

    Returns:
        method -> ``(B, gh, gw)`` float tensors, each map non-negative and summing to 1.
    """
    methods = check_methods(methods, text is not None, XRAY_METHODS)
    prefix, (gh, gw), pool = _vit_layout(model)
    out: dict[str, torch.Tensor] = {}
    B = x.shape[0]
    with eval_mode(model):
        x = x.to(model.device).float().requires_grad_(True)  # a graph even when every weight is frozen
        with record_attention(model.xray) as maps:
            z = model.encode_xray(x)  # (B, d)
        if "rollout" in methods:
            out["rollout"] = attention_rollout(maps, prefix, pool)
        wanted = [m for m in ("text", "gradient") if m in methods]
        if wanted:
            t = prompt_embeddings(model, text, B, kind).to(z.dtype)
            score = (z * t).sum()  # sum of per-image cosine similarities (images are independent)
            inputs = ([x] if "gradient" in wanted else []) + (list(maps) if "text" in wanted else [])
            grads = torch.autograd.grad(score, inputs)
            if "gradient" in wanted:
                gx = (grads[0] * x).detach().abs().sum(1, keepdim=True).float()  # (B, 1, S, S)
                out["gradient"] = F.adaptive_avg_pool2d(gx, (gh, gw))  # per patch
            if "text" in wanted:
                out["text"] = gradient_rollout(maps, grads[-len(maps) :], prefix, pool)
    return {m: normalise_mass(out[m].reshape(B, gh, gw), 2).cpu() for m in methods}


def xray_maps(model, image, text: str | None = None, methods="both", data_cfg=None) -> dict:
    """Explanation maps of one radiograph.

    Args:
        model: the MoRE model.
        image: image file path, grey uint8 array, or :class:`~moreclip.explain.inputs.XrayInput`.
        text: prompt for the text-conditioned maps (without it only ``rollout`` is computed).
        methods: ``"rollout"``, ``"text"``, ``"gradient"``, ``"both"`` (default: rollout, and text when a
            prompt is given), ``"all"``, or a list.
        data_cfg: the training preprocessing (:func:`moreclip.eval.data_config_for`).

    Returns:
        ``{"rollout": (gh, gw), "text": (gh, gw), "gradient": (gh, gw)`` (each when computed, float32
        numpy summing to 1),
        ``"image": (S, S) uint8, "similarity": float`` (cosine to the prompt, when given)``}``.
    """
    from moreclip.explain.inputs import xray_input

    inp = xray_input(image, model, data_cfg)
    rel = xray_relevance(model, inp.tensor, text, methods)
    out: dict = {m: r[0].numpy().astype(np.float32) for m, r in rel.items()}
    out["image"] = inp.image
    if text is not None:
        with eval_mode(model), torch.no_grad():
            zx = model.encode_xray(inp.tensor)
            zt = model.encode_text([text], kind="xray_report")
        out["similarity"] = float((zx * zt).sum())
    return out


def upsample(heat: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``(h, w)`` map to ``size`` (image pixels), as float32 numpy."""
    t = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    """Cells of an ``(h, w)`` grid whose centres fall in ``box`` = (x0, y0, x1, y1) image fractions."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    cy = (np.arange(h) + 0.5) / h
    cx = (np.arange(w) + 0.5) / w
    return ((cy >= y0) & (cy <= y1))[:, None] & ((cx >= x0) & (cx <= x1))[None, :]


def mass_in_box(heat: np.ndarray, box) -> float:
    """Fraction of a map's mass inside ``box`` (x0, y0, x1, y1 in image fractions, e.g. the synthetic
    cohort's ``synth_effusion_box``). A map uniform over the image scores about the box's area fraction.

    Args:
        heat: ``(h, w)`` non-negative map.
        box: the region, as fractions of width and height (a string "x0,y0,x1,y1" is accepted).
    """
    if isinstance(box, str):
        box = [float(v) for v in box.split(",")]
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0, None)
    total = heat.sum()
    return float(heat[_box_mask(heat.shape, box)].sum() / total) if total > 0 else 0.0


def pointing_hit(heat: np.ndarray, box) -> bool:
    """Pointing game: does the map's maximum fall inside ``box`` (x0, y0, x1, y1 image fractions)?"""
    if isinstance(box, str):
        box = [float(v) for v in box.split(",")]
    heat = np.asarray(heat)
    i, j = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(_box_mask(heat.shape, box)[i, j])
