"""Model checkpoints: a directory with ``config.yaml`` and ``model.safetensors`` (Hugging Face style).

Layout written by :func:`save_pretrained`::

    ckpt/config.yaml          {"model": <ModelConfig>} (a trainer may add data/train sections)
    ckpt/model.safetensors    every weight and buffer (BatchNorm statistics, LoRA adapters, ...)
    ckpt/text/                the text backbone's Hugging Face config.json and tokenizer files
                              (text_xray_report/, text_ecg_report/ without a shared text encoder)

The checkpoint is self-contained: :func:`load` builds the text backbone from the saved config and
tokenizer and loads every weight from ``model.safetensors``, so it does not need the original backbone
(``model_name`` may be a temporary folder or a hub id that is offline). With ``include_frozen=False``
the frozen text backbone weights are left out (large LLMs); the safetensors metadata then records the
SHA-256 of those weights, and :func:`load` takes them from ``model.text.model_name`` and refuses to
load if they differ. Writing is atomic: everything goes to a temporary folder that is renamed into
place (into an existing folder file by file, weights last, so other files there are kept). Nothing
is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch
import yaml

from moreclip.config import ModelConfig, from_dict, merge, parse_overrides, read_yaml, to_dict
from moreclip.errors import ConfigError
from moreclip.models.more import MoRE, text_tower_dir

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"


def frozen_text_keys(model: MoRE) -> list[str]:
    """State-dict keys of the frozen text backbone parameters."""
    return sorted(f"text.{n}" for n, p in model.text.named_parameters() if not p.requires_grad)


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _state_for_saving(model: MoRE, include_frozen: bool) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if not include_frozen:
        for k in frozen_text_keys(model):
            state.pop(k, None)
    out, seen = {}, set()
    for k, v in state.items():  # safetensors refuses tensors that share memory
        v = v.detach().cpu().contiguous()
        key = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else None
        out[k] = v.clone() if key in seen else v
        seen.add(key)
    return out


def save_pretrained(model: MoRE, path: str | os.PathLike, include_frozen: bool = True) -> Path:
    """Save ``model`` to the directory ``path`` (created; see the module docstring for the layout).

    Args:
        model: the model.
        path: output directory.
        include_frozen: also save the frozen text backbone weights (default; the checkpoint is then
            self-contained). False leaves them out and records their SHA-256.

    Returns:
        ``path`` as a Path.
    """
    from safetensors.torch import save_file

    from moreclip import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / CONFIG_NAME).write_text(yaml.safe_dump({"model": to_dict(model.config)}, sort_keys=False))
        for tower, enc in model.text.items():
            enc.backbone.config.save_pretrained(tmp / text_tower_dir(tower))
            enc.tokenizer.save_pretrained(tmp / text_tower_dir(tower))
        meta = {"format": "pt", "moreclip_version": __version__, "include_frozen": str(int(include_frozen))}
        if not include_frozen:
            state = model.state_dict()
            meta["frozen_text_sha256"] = tensors_sha256({k: state[k] for k in frozen_text_keys(model)})
        save_file(_state_for_saving(model, include_frozen), tmp / WEIGHTS_NAME, metadata=meta)
        if not path.exists():
            os.replace(tmp, path)
            return path
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == WEIGHTS_NAME):  # weights last
            dest = path / item.name
            if item.is_dir():
                shutil.rmtree(dest, ignore_errors=True)
            os.replace(item, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding ``config.yaml`` and ``model.safetensors``."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()


def model_config_from_yaml(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), updates: dict | None = None
) -> ModelConfig:
    """A ModelConfig from a YAML file: a bare model config or a file with a ``model:`` section.

    Args:
        path: the YAML file.
        overrides: ``key=value`` strings relative to the model config (``xray.depth=2``; a leading
            ``model.`` is accepted).
        updates: a nested dict merged before ``overrides`` (``{"xray": {"depth": 2}}``).
    """
    raw = read_yaml(path)
    section = raw["model"] if isinstance(raw.get("model"), dict) else raw
    return model_config_from_dict(section, overrides, updates)


def model_config_from_dict(
    data: dict, overrides: list[str] | tuple[str, ...] = (), updates: dict | None = None
) -> ModelConfig:
    """A ModelConfig from a dict, then ``updates``, then ``key=value`` overrides (see above)."""
    over = parse_overrides([o[len("model.") :] if o.startswith("model.") else o for o in overrides])
    return from_dict(ModelConfig, merge(merge(data, updates or {}), over))


def load(
    path: str | os.PathLike,
    overrides: list[str] | tuple[str, ...] = (),
    device: str | torch.device = "cpu",
    **updates,
) -> MoRE:
    """Load a model saved by :meth:`MoRE.save_pretrained`; returned in eval mode.

    Args:
        path: the checkpoint directory.
        overrides: ``key=value`` changes to the saved model config (e.g. ``xray.dropkey_rate=0``);
            changes to the architecture make the weights not fit and raise ConfigError.
        device: where to put the model.
        **updates: top-level model config fields; sections as (partial) dicts.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not is_checkpoint(path):
        raise ConfigError(f"{path}: not a moreclip checkpoint (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    cfg = model_config_from_yaml(path / CONFIG_NAME, overrides, updates)
    with safe_open(path / WEIGHTS_NAME, framework="pt") as f:
        meta = f.metadata() or {}
    include_frozen = meta.get("include_frozen", "1") == "1"
    towers = ["text"] if cfg.text.share_encoder else ["xray_report", "ecg_report"]
    if include_frozen:
        sources = {t: path / text_tower_dir(t) for t in towers if (path / text_tower_dir(t)).is_dir()}
        model = MoRE(cfg, text_sources=sources, load_text_weights=False)
    else:
        model = MoRE(cfg)  # frozen backbone weights from model.text.model_name, checked below
    state = load_file(path / WEIGHTS_NAME)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ConfigError(f"{path / WEIGHTS_NAME}: weights do not fit the model config: {e}") from None
    allowed = set() if include_frozen else set(frozen_text_keys(model))
    missing = [k for k in missing if k not in allowed]
    if missing or unexpected:
        raise ConfigError(
            f"{path / WEIGHTS_NAME}: weights do not fit the model config "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]})"
        )
    if not include_frozen:
        sd = model.state_dict()
        digest = tensors_sha256({k: sd[k] for k in frozen_text_keys(model)})
        if digest != meta.get("frozen_text_sha256"):
            raise ConfigError(
                f"{path}: the text backbone {cfg.text.model_name!r} differs from the one this checkpoint "
                "was saved with (frozen weights not in the checkpoint; SHA-256 mismatch)"
            )
    return model.to(device).eval()
