"""Train-time augmentations, applied to whole batches (cheap per sample); the Dataset turns them off at eval.

All take a ``numpy.random.Generator`` so a batch is reproducible from one seed. Defaults live in
:class:`moreclip.config.AugmentConfig`:

- ECG, before per-lead normalisation: :func:`ecg_time_crop` -- a random window of ``ecg_crop``..100 % of
  the record, linearly resized back to ``T`` (a crop plus a mild time stretch; no longer signal is
  needed, so the cache stays ``T`` long). After normalisation: :func:`ecg_jitter` -- amplitude scaling
  per sample, additive Gaussian noise, and lead dropout (whole leads zeroed, never all of them).
- X-ray: :func:`xray_resized_crop` -- a random crop of ``xray_crop``..100 % of the area (aspect ratio in
  ``xray_ratio``) resized back to ``S x S``; :func:`xray_brightness_contrast` on [0, 1] grey values.
  No horizontal flip: it would move the heart to the wrong side.
- Text: :func:`shuffle_sentences` -- sentences shuffled and sometimes dropped within each section
  (``FINDINGS:``, ``IMPRESSION:``, ...), so negations stay inside their sentence.
"""

from __future__ import annotations

import re

import numpy as np
import torch

_NOISE_BANK: dict[int, torch.Tensor] = {}
_SECTION = re.compile(r"(?=\b[A-Z][A-Z /&-]{2,}:)")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")


def ecg_time_crop(x: torch.Tensor, rng: np.random.Generator, min_fraction: float) -> torch.Tensor:
    """Random window of ``U(min_fraction, 1) * T`` samples per sample, linearly resized back to ``T``.

    Args:
        x: ``(B, L, T)`` float, modified in place and returned.
        min_fraction: smallest window as a fraction of ``T``; ``>= 1`` is a no-op.
    """
    if min_fraction >= 1:
        return x
    t = x.shape[-1]
    lengths = np.round(rng.uniform(min_fraction, 1.0, len(x)) * t).astype(int).clip(2, t)
    for b, n in enumerate(lengths):
        if n == t:
            continue
        s = int(rng.integers(0, t - n + 1))
        window = x[b : b + 1, :, s : s + n]
        x[b] = torch.nn.functional.interpolate(window, size=t, mode="linear", align_corners=True)[0]
    return x


def _noise_bank(numel: int) -> torch.Tensor:
    """A per-process bank of standard normal noise; batches take random slices of it (much cheaper
    than drawing fresh noise for every sample, and statistically the same for augmentation)."""
    bank = _NOISE_BANK.get(numel)
    if bank is None:
        g = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        bank = _NOISE_BANK[numel] = torch.randn(max(1 << 22, 4 * numel), generator=g)
    return bank


def ecg_jitter(
    x: torch.Tensor,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.8, 1.2),
    noise: float = 0.05,
    lead_dropout: float = 0.1,
) -> torch.Tensor:
    """Amplitude scaling (one factor per sample), Gaussian noise of std ``noise``, and lead dropout.

    Args:
        x: ``(B, L, T)`` normalised ECGs, modified in place and returned.
    """
    b, leads, t = x.shape
    if scale[0] != 1 or scale[1] != 1:
        x.mul_(torch.from_numpy(rng.uniform(scale[0], scale[1], (b, 1, 1)).astype(np.float32)))
    if noise > 0:
        bank = _noise_bank(leads * t)
        for i, off in enumerate(rng.integers(0, bank.numel() - leads * t, b)):
            x[i].add_(bank[off : off + leads * t].view(leads, t), alpha=noise)
    if lead_dropout > 0:
        drop = rng.random((b, leads)) < lead_dropout
        drop[drop.all(axis=1)] = False  # never every lead
        x.masked_fill_(torch.from_numpy(drop)[:, :, None], 0.0)
    return x


def xray_resized_crop(
    img: np.ndarray, rng: np.random.Generator, min_area: float, ratio: tuple[float, float] = (0.9, 1.1)
) -> np.ndarray:
    """Random crop of ``U(min_area, 1)`` of the area and aspect ratio in ``ratio``, resized back (bilinear).

    Args:
        img: ``(B, S, S)`` uint8 (not modified).

    Returns:
        ``(B, S, S)`` uint8; ``img`` itself when ``min_area >= 1``.
    """
    import cv2

    if min_area >= 1:
        return img
    n, h, w = img.shape
    out = np.empty_like(img)
    areas = rng.uniform(min_area, 1.0, n)
    ratios = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), n))
    for i in range(n):
        ch = int(min(h, round(h * np.sqrt(areas[i] / ratios[i]))))
        cw = int(min(w, round(w * np.sqrt(areas[i] * ratios[i]))))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out[i] = cv2.resize(img[i, y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def xray_brightness_contrast(
    x: np.ndarray, rng: np.random.Generator, brightness: float = 0.1, contrast: float = 0.1
) -> np.ndarray:
    """``(x - mean) * U(1-c, 1+c) + mean + U(-b, b)``, clipped to [0, 1], per image.

    Args:
        x: ``(B, ...)`` float32 grey values in [0, 1], modified in place and returned.
    """
    if brightness <= 0 and contrast <= 0:
        return x
    n = len(x)
    shape = (n,) + (1,) * (x.ndim - 1)
    mean = x.reshape(n, -1).mean(axis=1).reshape(shape)
    c = rng.uniform(1 - contrast, 1 + contrast, shape).astype(np.float32)
    b = rng.uniform(-brightness, brightness, shape).astype(np.float32)
    x -= mean
    x *= c
    x += mean + b
    np.clip(x, 0.0, 1.0, out=x)
    return x


def shuffle_sentences(text: str, rng: np.random.Generator, shuffle: float = 0.5, drop: float = 0.1) -> str:
    """Shuffle (with probability ``shuffle``) and drop (each with probability ``drop``) sentences within
    every section of a report; section headers stay in place and each section keeps at least one sentence.
    """
    if not text or (shuffle <= 0 and drop <= 0):
        return text
    parts = []
    for section in _SECTION.split(text):
        section = section.strip()
        if not section:
            continue
        header, body = "", section
        m = re.match(r"([A-Z][A-Z /&-]{2,}:)\s*", section)
        if m:
            header, body = m.group(1), section[m.end() :]
        sentences = [s for s in _SENTENCE.split(body) if s]
        if len(sentences) > 1:
            if drop > 0:
                keep = rng.random(len(sentences)) >= drop
                if not keep.any():
                    keep[rng.integers(len(sentences))] = True
                sentences = [s for s, k in zip(sentences, keep) if k]
            if shuffle > 0 and rng.random() < shuffle:
                sentences = [sentences[i] for i in rng.permutation(len(sentences))]
        parts.append(" ".join(filter(None, [header, " ".join(sentences)])))
    return " ".join(parts)
