"""Helpers shared by the X-ray, ECG and text explanations: eval mode, prompt embeddings, targets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

METHODS = ("rollout", "text")  # computed by "both"; X-rays also have "gradient" (in "all")
TEXT_METHODS = ("text", "gradient")  # the methods that need a prompt


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode (no DropKey, no dropout) and gradients enabled."""
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        model.train(was)


def prompt_embeddings(model, text: str | list[str], n: int, kind: str) -> torch.Tensor:
    """Normalised, detached embeddings ``(n, d)`` of one prompt (repeated) or of ``n`` prompts.

    Args:
        model: the MoRE model.
        text: a prompt, or one per input.
        n: number of inputs.
        kind: text kind (``xray_report``, ``ecg_report``, ``report``) picking the text tower.
    """
    texts = [text] if isinstance(text, str) else list(text)
    if len(texts) not in (1, n):
        raise ValueError(f"{len(texts)} prompts for {n} inputs (give one, or one per input)")
    with torch.no_grad():
        z = model.encode_text(texts, kind=kind).float()
    return z.expand(n, -1) if len(texts) == 1 else z


def check_methods(
    methods: str | list[str] | tuple[str, ...], has_text: bool, known: tuple[str, ...] = METHODS
) -> list[str]:
    """The methods to compute, in order.

    Args:
        methods: a name, a comma-separated list, a list, ``"both"`` (rollout + text) or ``"all"``
            (every method in ``known``). Without a prompt, ``both``/``all`` keep only the methods that
            need none.
        has_text: whether a prompt was given.
        known: the methods of this modality.
    """
    if isinstance(methods, str):
        if methods in ("both", "all"):
            methods = [
                m for m in (METHODS if methods == "both" else known) if has_text or m not in TEXT_METHODS
            ]
        else:
            methods = [m.strip() for m in methods.split(",") if m.strip()]
    out = []
    for m in methods:
        if m not in known:
            raise ValueError(f"unknown explanation method {m!r} (expected {', '.join(known)}, both or all)")
        if m in TEXT_METHODS and not has_text:
            raise ValueError(f"the '{m}' explanation needs a text prompt")
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError("no explanation method selected")
    return out
