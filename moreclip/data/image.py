"""Radiograph files (JPEG/PNG): decoding to 8-bit grey with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moreclip.errors import RecordError


def read_image(path: str | os.PathLike, *, max_side: int | None = None) -> np.ndarray:
    """Decode an image file to an 8-bit grey array ``(H, W)``.

    Args:
        path: a JPEG, PNG (8- or 16-bit) or any format Pillow reads.
        max_side: when given, JPEGs are decoded at a reduced scale (Pillow's ``draft``) that still has
            both sides >= ``max_side``; much faster for full-size MIMIC-CXR images. Other formats
            decode at full size.

    Raises:
        RecordError: the file is missing or does not decode (truncated, corrupt, not an image).
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise RecordError(p, "image file not found")
    try:
        with Image.open(p) as im:
            if max_side is not None and im.format == "JPEG":
                w, h = im.size
                scale = max(1, min(w, h) // max_side)
                if scale > 1:
                    im.draft("L", (w // scale, h // scale))
            im.load()
            arr = _to_grey8(im)
    except UnidentifiedImageError:
        raise RecordError(p, "not a recognised image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise RecordError(p, f"image does not decode ({e})") from None
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise RecordError(p, f"image has unusable shape {arr.shape}")
    return arr


def _to_grey8(im) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return np.round(a).astype(np.uint8)
    if mode != "L":
        im = im.convert("L")
    return np.asarray(im, dtype=np.uint8).copy()
