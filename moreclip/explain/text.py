"""Which words of a report make it match an X-ray or an ECG, and the report rendered with highlights.

    scores = text_importance(model, report, xray="cxr.png")        # [(token, score), ...]
    html = render_text_html(scores, title="X-ray report vs its radiograph")

Tokens are the report's whitespace-separated words, each carrying the whitespace that follows it (the
first one also any that precedes it), so ``"".join(token for token, _ in scores) == report``. Scores
(``score > 0``: the word raises the match, ``< 0``: it lowers it), by ``method``:

- ``"occlusion"`` (default): leave-one-word-out, ``cos(q, report) - cos(q, report without the word)``
  for the query embedding ``q`` of the X-ray or ECG; exact and model-agnostic, one text encoder pass
  per word (batched).
- ``"gradient"``: gradient x input on the text tower's input word-piece embeddings,
  ``sum_dim(e * d cos(q, report) / d e)``, summed over the pieces of each word; one backward pass.

Reports can hold patient text: nothing here logs them; the HTML escapes every token.
"""

from __future__ import annotations

import html as _html
import re

import numpy as np
import torch

from moreclip.explain.common import eval_mode

_WORD = re.compile(r"\S+")
METHODS = ("occlusion", "gradient")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """``(token, start, end)`` of every word, where ``token = text[start:end]`` includes the whitespace
    up to the next word (and the first token any leading whitespace); the tokens concatenate to ``text``.
    ``start``/``end`` of the word itself (no whitespace) are returned."""
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    out = []
    for k, (s, e) in enumerate(spans):
        lo = 0 if k == 0 else s
        hi = spans[k + 1][0] if k + 1 < len(spans) else len(text)
        out.append((text[lo:hi], s, e))
    return out


def _query_embedding(model, xray=None, ecg=None, data_cfg=None, fs=None) -> tuple[torch.Tensor, str]:
    from moreclip.explain.inputs import ecg_input, xray_input

    if (xray is None) == (ecg is None):
        raise ValueError("give exactly one of xray= or ecg= to explain a report against")
    with eval_mode(model), torch.no_grad():
        if xray is not None:
            x = xray if torch.is_tensor(xray) else xray_input(xray, model, data_cfg).tensor
            return model.encode_xray(x.reshape(1, *x.shape[-3:])).float()[0], "xray_report"
        e = ecg if torch.is_tensor(ecg) else ecg_input(ecg, model, data_cfg, fs=fs).tensor
        return model.encode_ecg(e.reshape(1, *e.shape[-2:])).float()[0], "ecg_report"


def _occlusion(model, report: str, words, q: torch.Tensor, kind: str, batch: int) -> list[float]:
    variants = [report] + [report[:s] + report[e:] for _, s, e in words]
    sims = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(variants), batch):
            sims.append(model.encode_text(variants[i : i + batch], kind=kind).float() @ q)
    sims = torch.cat(sims)
    return (sims[0] - sims[1:]).tolist()


def _gradient(model, report: str, words, q: torch.Tensor, kind: str) -> list[float]:
    import torch.nn.functional as F

    tower = model.text_tower(kind)
    enc = model.text[tower]
    tok = enc.tokenizer(
        [report],
        truncation=True,
        max_length=enc.cfg.max_length,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets = tok.pop("offset_mapping")[0].tolist()
    ids = tok["input_ids"].to(enc.device)
    mask = tok["attention_mask"].to(enc.device)
    with eval_mode(model):
        emb = enc.backbone.get_input_embeddings()(ids).detach().requires_grad_(True)  # (1, L, W)
        z = F.normalize(model.heads[tower](enc(attention_mask=mask, inputs_embeds=emb)), dim=-1)
        (grad,) = torch.autograd.grad((z[0].float() * q).sum(), emb)
    piece = (grad * emb).sum(-1)[0].detach().float().cpu().numpy()  # (L,)
    scores = np.zeros(len(words))
    for p, (s, e) in enumerate(offsets):
        if e <= s:  # special tokens
            continue
        for k, (_, ws, we) in enumerate(words):
            if s < we and e > ws:
                scores[k] += piece[p]
                break
    return scores.tolist()


def text_importance(
    model,
    report: str,
    xray=None,
    ecg=None,
    method: str = "occlusion",
    kind: str | None = None,
    data_cfg=None,
    fs: float | None = None,
    batch_size: int = 64,
) -> list[tuple[str, float]]:
    """Word-level importance of ``report`` for its match to an X-ray or an ECG.

    Args:
        model: the MoRE model.
        report: the report text.
        xray: the radiograph (file path, uint8 array, XrayInput or a normalised ``(1, 1, S, S)`` tensor).
        ecg: the ECG (WFDB record, ``(12, T)`` mV array with ``fs``, EcgInput or a normalised
            ``(1, 12, T)`` tensor). Exactly one of ``xray`` / ``ecg``.
        method: ``"occlusion"`` or ``"gradient"`` (see the module docstring).
        kind: text kind (tower) to encode the report with; default ``xray_report`` for an X-ray,
            ``ecg_report`` for an ECG.
        data_cfg: the training preprocessing (:func:`moreclip.eval.data_config_for`).
        fs: sampling rate of an array ``ecg``.
        batch_size: texts per encoder pass (occlusion).

    Returns:
        ``[(token, score), ...]`` in reading order; tokens concatenate back to ``report``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown text importance method {method!r} (expected one of {', '.join(METHODS)})")
    words = split_words(report)
    if not words:
        return []
    q, default_kind = _query_embedding(model, xray, ecg, data_cfg, fs)
    kind = kind or default_kind
    if method == "occlusion":
        scores = _occlusion(model, report, words, q, kind, batch_size)
    else:
        scores = _gradient(model, report, words, q, kind)
    return [(tok, float(s)) for (tok, _, _), s in zip(words, scores)]


def _colour(score: float, scale: float) -> str:
    """Diverging highlight: red for positive, blue for negative, opacity by ``|score| / scale``."""
    a = 0.0 if scale <= 0 else min(1.0, abs(score) / scale) * 0.8
    rgb = "214, 39, 40" if score > 0 else "31, 119, 180"
    return f"rgba({rgb}, {a:.3f})"


_STYLE = """
.moreclip-text { font-family: Georgia, 'Times New Roman', serif; font-size: 15px; line-height: 1.9;
  max-width: 52em; white-space: pre-wrap; }
.moreclip-text span.w { border-radius: 3px; padding: 1px 0; }
.moreclip-legend { font-family: sans-serif; font-size: 12px; color: #444; margin: 6px 0 10px; }
.moreclip-legend span { display: inline-block; padding: 1px 6px; border-radius: 3px; margin-right: 6px; }
"""


def render_text_html(
    scores: list[tuple[str, float]],
    title: str | None = None,
    standalone: bool = True,
    note: str | None = None,
) -> str:
    """The report with each word highlighted by its score (red: raises the match, blue: lowers it).

    Args:
        scores: ``text_importance`` output.
        title: heading (escaped).
        standalone: a full HTML page (True) or a ``<div>`` fragment to embed (False; the style is
            inlined in a ``<style>`` element inside it).
        note: a line under the title (escaped), e.g. what the report was matched against.

    Returns:
        HTML text; every token, title and note is escaped.
    """
    vals = np.array([s for _, s in scores], dtype=np.float64)
    scale = float(np.percentile(np.abs(vals), 95)) if len(vals) else 0.0
    scale = scale if scale > 0 else float(np.abs(vals).max()) if len(vals) else 0.0
    spans = []
    for tok, s in scores:
        word = tok.rstrip()
        tail = tok[len(word) :]
        lead = word[: len(word) - len(word.lstrip())]
        core = word.lstrip()
        spans.append(
            f'{_html.escape(lead)}<span class="w" style="background:{_colour(s, scale)}" '
            f'title="{s:+.4f}">{_html.escape(core)}</span>{_html.escape(tail)}'
        )
    body = []
    if title:
        body.append(f"<h3>{_html.escape(title)}</h3>")
    if note:
        body.append(f'<div class="moreclip-legend">{_html.escape(note)}</div>')
    body.append(
        '<div class="moreclip-legend">'
        f'<span style="background:{_colour(1, 1)}">raises the match</span>'
        f'<span style="background:{_colour(-1, 1)}">lowers it</span>'
        "opacity: |score| relative to the 95th percentile; hover a word for its score</div>"
    )
    body.append(f'<div class="moreclip-text">{"".join(spans)}</div>')
    frag = f'<div class="moreclip-explain"><style>{_STYLE}</style>{"".join(body)}</div>'
    if not standalone:
        return frag
    head = f"<title>{_html.escape(title or 'moreclip text explanation')}</title>"
    return f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{head}</head><body>{frag}</body></html>\n'
