"""Train-time augmentations, applied to whole batches; the Dataset turns them off at eval.

Work is split in two so that DataLoader workers ship compact batches (``uint8`` X-rays, ``float16``
ECGs): geometric augmentations run in the worker on the compact arrays, and the random parameters of
the intensity augmentations are drawn there and applied after the float conversion (in the main
process or on the GPU, see :func:`moreclip.data.batch.finalize_batch`). Every random draw comes from one
``numpy.random.Generator`` per batch, so a batch is reproducible from one seed. Defaults live in
:class:`moreclip.config.AugmentConfig`:

- ECG, before per-lead normalisation: :func:`ecg_time_crop` -- a random window of ``ecg_crop``..100 % of
  the record, linearly resized back to ``T`` (a crop plus a mild time stretch, so no longer signal is
  needed). After normalisation: amplitude scaling per sample, additive Gaussian noise, and lead dropout
  (whole leads zeroed, never all of them) -- :func:`sample_ecg_jitter` / :func:`apply_ecg_jitter`.
- X-ray: :func:`xray_resized_crop` -- a random crop of ``xray_crop``..100 % of the area (aspect ratio in
  ``xray_ratio``) resized back to ``S x S``; brightness and contrast on [0, 1] grey values
  (:func:`sample_brightness_contrast` / :func:`apply_brightness_contrast`). No horizontal flip: it would
  move the heart to the wrong side.
- Text: :func:`shuffle_sentences` -- sentences shuffled and sometimes dropped within each section
  (``FINDINGS:``, ``IMPRESSION:``, ...), so negations stay inside their sentence.
"""

from __future__ import annotations

import re

import numpy as np
import torch

NOISE_BANK_SIZE = 1 << 22
_NOISE_BANK: dict[str, torch.Tensor] = {}
_SECTION = re.compile(r"(?=\b[A-Z][A-Z /&-]{2,}:)")
_HEADER = re.compile(r"([A-Z][A-Z /&-]{2,}:)\s*")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")


def ecg_time_crop(x: torch.Tensor, rng: np.random.Generator, min_fraction: float) -> torch.Tensor:
    """Random window of ``U(min_fraction, 1) * T`` samples per sample, linearly resized back to ``T``.

    Args:
        x: ``(B, L, T)`` float tensor (float16 is computed in float32), modified in place and returned.
        min_fraction: smallest window as a fraction of ``T``; ``>= 1`` is a no-op.
    """
    if min_fraction >= 1:
        return x
    t = x.shape[-1]
    lengths = np.round(rng.uniform(min_fraction, 1.0, len(x)) * t).astype(int).clip(2, t)
    starts = [int(rng.integers(0, t - n + 1)) for n in lengths]
    for b, (n, s) in enumerate(zip(lengths, starts)):
        if n == t:
            continue
        window = x[b : b + 1, :, s : s + n].float()
        x[b] = torch.nn.functional.interpolate(window, size=t, mode="linear", align_corners=True)[0]
    return x


def xray_resized_crop(
    img: np.ndarray, rng: np.random.Generator, min_area: float, ratio: tuple[float, float] = (0.9, 1.1)
) -> np.ndarray:
    """Random crop of ``U(min_area, 1)`` of the area and aspect ratio in ``ratio``, resized back (bilinear).

    Args:
        img: ``(B, S, S)`` uint8, modified in place and returned (a no-op when ``min_area >= 1``).
    """
    import cv2

    if min_area >= 1:
        return img
    n, h, w = img.shape
    areas = rng.uniform(min_area, 1.0, n)
    ratios = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), n))
    for i in range(n):
        ch = int(min(h, round(h * np.sqrt(areas[i] / ratios[i]))))
        cw = int(min(w, round(w * np.sqrt(areas[i] * ratios[i]))))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img[i] = cv2.resize(img[i, y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    return img


def sample_brightness_contrast(
    rng: np.random.Generator, n: int, brightness: float = 0.1, contrast: float = 0.1
) -> dict[str, np.ndarray]:
    """Per image: ``contrast`` factor ``U(1-c, 1+c)`` and ``brightness`` shift ``U(-b, b)``, each ``(n,)``."""
    return {
        "contrast": rng.uniform(1 - contrast, 1 + contrast, n).astype(np.float32),
        "brightness": rng.uniform(-brightness, brightness, n).astype(np.float32),
    }


def brightness_contrast_coeffs(
    params: dict[str, np.ndarray], mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(gain, bias)``, each ``(n,)``: brightness/contrast as ``x * gain + bias`` (before the clip to
    [0, 1]) for images whose mean grey value on [0, 1] is ``mean``."""
    c = np.asarray(params["contrast"], dtype=np.float32)
    return c, np.asarray(mean, dtype=np.float32) * (1 - c) + np.asarray(
        params["brightness"], dtype=np.float32
    )


def apply_brightness_contrast(x: torch.Tensor, params: dict[str, np.ndarray]) -> torch.Tensor:
    """``(x - mean) * contrast + mean + brightness``, clipped to [0, 1], per image (``mean``: the image's
    mean, or ``params["mean"]`` when given).

    Args:
        x: ``(B, ...)`` float grey values in [0, 1], modified in place and returned.
    """
    shape = (len(x),) + (1,) * (x.dim() - 1)
    mean = params.get("mean")
    if mean is None:
        mean = x.reshape(len(x), -1).mean(dim=1).cpu().numpy()
    gain, bias = brightness_contrast_coeffs(params, mean)
    x.mul_(torch.from_numpy(gain).to(x.device).view(shape)).add_(
        torch.from_numpy(bias).to(x.device).view(shape)
    )
    return x.clamp_(0.0, 1.0)


def sample_ecg_jitter(
    rng: np.random.Generator,
    n: int,
    leads: int,
    scale: tuple[float, float] = (0.8, 1.2),
    noise: float = 0.05,
    lead_dropout: float = 0.1,
) -> dict[str, np.ndarray]:
    """Per sample: amplitude ``scale`` ``(n,)``, noise std ``(n,)``, offsets into the noise bank ``(n,)``,
    and the leads to drop ``(n, leads)`` (never all of them)."""
    drop = rng.random((n, leads)) < lead_dropout
    drop[drop.all(axis=1)] = False
    return {
        "scale": rng.uniform(scale[0], scale[1], n).astype(np.float32),
        "noise": np.full(n, noise, dtype=np.float32),
        "noise_offset": rng.integers(0, NOISE_BANK_SIZE, n),
        "drop": drop,
    }


def noise_bank(device: torch.device | str = "cpu") -> torch.Tensor:
    """A fixed bank of standard normal noise (seed 0) per device; batches add random slices of it, which
    is much cheaper than fresh noise per sample and, for augmentation, statistically the same."""
    key = str(device)
    bank = _NOISE_BANK.get(key)
    if bank is None:
        bank = torch.randn(NOISE_BANK_SIZE * 2, generator=torch.Generator().manual_seed(0))
        bank = _NOISE_BANK[key] = bank.to(device)
    return bank


def ecg_jitter_coeffs(params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample and lead ``(n, leads)``: the amplitude gain (0 on dropped leads) and the noise std (0 on
    dropped leads), as drawn by :func:`sample_ecg_jitter`."""
    keep = ~np.asarray(params["drop"], dtype=bool)
    scale = np.asarray(params["scale"], dtype=np.float32)[:, None] * keep
    std = np.asarray(params["noise"], dtype=np.float32)[:, None] * keep
    return scale.astype(np.float32), std.astype(np.float32)


def add_ecg_noise(x: torch.Tensor, offsets: np.ndarray, std: torch.Tensor) -> torch.Tensor:
    """``x += std * noise`` with noise from :func:`noise_bank` at ``offsets`` (one contiguous slice for the
    whole batch when it fits the bank, else one per sample).

    Args:
        x: ``(B, L, T)``, modified in place and returned. std: broadcastable to ``(B, L, 1)``.
    """
    b, leads, t = x.shape
    bank = noise_bank(x.device)
    offsets = np.asarray(offsets)
    if b * leads * t < bank.numel():
        off = int(offsets[0]) % (bank.numel() - b * leads * t)
        return x.addcmul_(bank[off : off + b * leads * t].view(b, leads, t), std)
    std = std.expand(b, leads, 1)
    for i, off in enumerate((offsets % (bank.numel() - leads * t)).tolist()):
        x[i].addcmul_(bank[off : off + leads * t].view(leads, t), std[i])
    return x


def apply_ecg_jitter(x: torch.Tensor, params: dict[str, np.ndarray]) -> torch.Tensor:
    """Scale, add noise and drop leads as drawn by :func:`sample_ecg_jitter`.

    Args:
        x: ``(B, L, T)`` normalised ECGs, modified in place and returned.
    """
    gain, std = ecg_jitter_coeffs(params)
    x.mul_(torch.from_numpy(gain).to(x.device)[..., None])
    return add_ecg_noise(x, params["noise_offset"], torch.from_numpy(std).to(x.device)[..., None])


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
        m = _HEADER.match(section)
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
