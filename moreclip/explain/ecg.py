"""Which leads and moments of a 12-lead ECG the encoder relies on: ``(12, T)`` attribution maps.

    maps = ecg_maps(model, "ecg/rec001", text="sinus tachycardia")
    maps["rollout"], maps["text"]        # (12, T) at the model's rate, each summing to 1
    maps["signal"], maps["fs"]           # the filtered trace in mV for plotting, and its rate
    attr = ecg_attribution(model, "ecg/rec001", "sinus tachycardia")   # (12, T): the text map

- ``rollout``: attention rollout of the ECG transformer (:mod:`moreclip.explain.attention`), spread from
  tokens back to samples. With ``patch_mode="across"`` (the default) and ``"more"`` a token spans all 12
  leads, so rollout has time resolution only (every lead of a time patch gets the same value); with
  ``"per_lead"`` each token is one lead's patch and rollout resolves leads too. A ``more`` token covers
  the 5 first-convolution patches under its second convolution; its relevance is spread evenly on them.
- ``text``: gradient x input on the normalised signal, ``|x * d cos(ecg embedding, prompt) / dx|``,
  smoothed over ``smooth_s`` seconds. It resolves leads in every patch mode (the gradient reaches each
  input sample through the patch convolution), which attention cannot do in ``across`` mode.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from moreclip.explain.attention import attention_rollout, normalise_mass
from moreclip.explain.common import check_methods, eval_mode, prompt_embeddings
from moreclip.models.dropkey import record_attention
from moreclip.models.ecg import MORE_KERNEL

SMOOTH_S = 0.08  # default smoothing window of the gradient x input map (about one QRS width)


def tokens_to_samples(rel: torch.Tensor, encoder, num_samples: int) -> torch.Tensor:
    """Spread token relevance ``(B, N)`` over the input samples ``(B, 12, T)``, keeping each token's mass.

    Args:
        rel: relevance of the patch tokens (no CLS), in the encoder's token order.
        encoder: the :class:`~moreclip.models.ecg.EcgEncoder` (patch mode and sizes).
        num_samples: ``T``.
    """
    cfg, pe = encoder.cfg, encoder.patch_embed
    B, L, P = rel.shape[0], cfg.num_leads, cfg.patch_size
    out = torch.zeros(B, L, num_samples, dtype=torch.float32, device=rel.device)
    if cfg.patch_mode == "per_lead":
        steps = pe.time_steps
        per = rel.reshape(B, L, steps, 1).expand(B, L, steps, P) / P
        out[:, :, : steps * P] = per.reshape(B, L, steps * P)
        return out
    span = MORE_KERNEL if cfg.patch_mode == "more" else 1  # first-conv patches under one token
    for j in range(rel.shape[1]):
        lo, hi = j * P, (j + span) * P
        out[:, :, lo:hi] += (rel[:, j] / (L * (hi - lo)))[:, None, None]
    return out


def smooth_time(a: torch.Tensor, width: int) -> torch.Tensor:
    """Moving average of ``(B, L, T)`` along time over ``width`` samples (same length, edges replicated)."""
    if width <= 1:
        return a
    B, L, T = a.shape
    kernel = torch.full((1, 1, width), 1.0 / width, dtype=a.dtype, device=a.device)
    padded = F.pad(a.reshape(B * L, 1, T), ((width - 1) // 2, width // 2), mode="replicate")
    return F.conv1d(padded, kernel).reshape(B, L, T)


def ecg_relevance(
    model,
    x: torch.Tensor,
    text: str | list[str] | None = None,
    methods="both",
    kind: str = "ecg_report",
    smooth_s: float = SMOOTH_S,
) -> dict[str, torch.Tensor]:
    """Attribution maps of a batch of preprocessed ECGs.

    Args:
        model: the MoRE model.
        x: ``(B, 12, T)`` normalised ECGs at the model's rate (see :func:`~moreclip.explain.inputs.ecg_input`).
        text: the prompt (or B prompts) for the ``text`` map.
        methods: ``"rollout"``, ``"text"``, ``"both"`` or a list of them.
        kind: text kind of the prompt (``ecg_report`` by default).
        smooth_s: moving-average window of the ``text`` map, in seconds (0: none).

    Returns:
        method -> ``(B, 12, T)`` float tensors, non-negative, each map summing to 1.
    """
    methods = check_methods(methods, text is not None)
    enc = model.ecg
    out: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        x = x.to(model.device).float().requires_grad_(True)
        with record_attention(enc) as maps:
            z = model.encode_ecg(x)
        if "rollout" in methods:
            pool = "token" if enc.cfg.global_pool == "token" else "avg"
            out["rollout"] = tokens_to_samples(attention_rollout(maps, 1, pool), enc, x.shape[-1])
        if "text" in methods:
            t = prompt_embeddings(model, text, len(x), kind).to(z.dtype)
            (grad,) = torch.autograd.grad((z * t).sum(), x)
            width = int(round(smooth_s * enc.cfg.sample_rate))
            out["text"] = smooth_time((grad * x).detach().abs().float(), width)
    return {m: normalise_mass(r, 2).cpu() for m, r in out.items()}


def ecg_maps(
    model, signal, text: str | None = None, methods="both", data_cfg=None, fs: float | None = None
) -> dict:
    """Explanation maps of one ECG.

    Args:
        model: the MoRE model.
        signal: WFDB record path, ``(12, T)`` mV array (with ``fs``), or
            :class:`~moreclip.explain.inputs.EcgInput`.
        text: prompt for the text-conditioned map (without it only ``rollout`` is computed).
        methods: ``"rollout"``, ``"text"``, ``"both"`` (default: rollout, and text when a prompt is
            given), or a list.
        data_cfg: the training preprocessing (:func:`moreclip.eval.data_config_for`).
        fs: sampling rate of an array ``signal``.

    Returns:
        ``{"rollout": (12, T), "text": (12, T)`` (each when computed; float32 at the model's rate,
        summing to 1), ``"signal": (12, Td)`` mV for display, ``"fs"`` its rate, ``"model_fs"``,
        ``"similarity"`` (cosine to the prompt, when given)``}``.
    """
    from moreclip.explain.inputs import ecg_input

    inp = ecg_input(signal, model, data_cfg, fs=fs)
    rel = ecg_relevance(model, inp.tensor, text, methods)
    out: dict = {m: r[0].numpy().astype(np.float32) for m, r in rel.items()}
    out.update(signal=inp.signal, fs=inp.fs, model_fs=inp.model_fs)
    if text is not None:
        with eval_mode(model), torch.no_grad():
            ze = model.encode_ecg(inp.tensor)
            zt = model.encode_text([text], kind="ecg_report")
        out["similarity"] = float((ze * zt).sum())
    return out


def ecg_attribution(
    model, signal, text: str, data_cfg=None, fs: float | None = None, smooth_s: float = SMOOTH_S
) -> np.ndarray:
    """The text-conditioned attribution ``(12, T)`` of one ECG (gradient x input; see the module docstring).

    Args:
        model: the MoRE model.
        signal: WFDB record path, ``(12, T)`` mV array (with ``fs``) or an EcgInput.
        text: the prompt, e.g. ``"sinus tachycardia"``.
        data_cfg: the training preprocessing.
        fs: sampling rate of an array ``signal``.
        smooth_s: moving-average window in seconds.

    Returns:
        float32 ``(12, T)`` at the model's rate, non-negative, summing to 1.
    """
    from moreclip.explain.inputs import ecg_input

    inp = ecg_input(signal, model, data_cfg, fs=fs)
    return ecg_relevance(model, inp.tensor, text, "text", smooth_s=smooth_s)["text"][0].numpy()


def lead_shares(attr: np.ndarray) -> np.ndarray:
    """Fraction of an attribution map's mass on each lead: ``(12, T)`` -> ``(12,)`` summing to 1."""
    per = np.clip(np.asarray(attr, dtype=np.float64), 0, None).sum(axis=-1)
    return per / per.sum() if per.sum() > 0 else np.full(per.shape, 1.0 / len(per))
