"""Model registry and factory (open_clip / timm style).

On first use every ``moreclip/model_configs/*.yaml`` is registered under its file name; users add their
own with :func:`add_model_config`. :func:`create_model` takes a registered name, a YAML file or a
checkpoint directory, plus overrides::

    moreclip.list_models()                        # ['base', 'more', 'small', 'tiny']
    model = moreclip.create_model("tiny")
    model = moreclip.create_model("small", overrides=["xray.depth=2"], embed_dim=128)
    model = moreclip.create_model("runs/demo/checkpoint")   # same as moreclip.load(...)
"""

from __future__ import annotations

import os
from pathlib import Path

from moreclip.config import ModelConfig, merge, to_dict
from moreclip.errors import ConfigError
from moreclip.models.checkpoint import is_checkpoint, load, model_config_from_dict, model_config_from_yaml
from moreclip.models.more import MoRE

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
_REGISTRY: dict[str, Path] = {}


def _registry() -> dict[str, Path]:
    if not _REGISTRY:
        for p in sorted(CONFIG_DIR.glob("*.yaml")):
            _REGISTRY.setdefault(p.stem, p)
    return _REGISTRY


def list_models() -> list[str]:
    """Names of the registered model configs, sorted."""
    return sorted(_registry())


def add_model_config(path: str | os.PathLike, name: str | None = None) -> str:
    """Register a model config YAML (or every ``*.yaml`` of a directory); returns the (last) name.

    Args:
        path: a YAML file (bare model config or with a ``model:`` section) or a directory of them.
        name: registry name (default: the file name without ``.yaml``).
    """
    p = Path(path)
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise ConfigError(f"model config not found: {p}")
    reg = _registry()
    for f in files:
        model_config_from_yaml(f)  # validate now, not at first use
        reg[name or f.stem] = f
    return name or files[-1].stem


def get_model_config(
    name_or_path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), **kwargs
) -> ModelConfig:
    """The ModelConfig of a registered name, a YAML file or a checkpoint directory, with overrides.

    Args:
        name_or_path: registry name, ``.yaml`` file or checkpoint directory.
        overrides: ``key=value`` strings relative to the model config (``xray.depth=2``).
        **kwargs: top-level model config fields; sections as (partial) dicts, e.g. ``xray={"depth": 2}``.
    """
    reg = _registry()
    key = str(name_or_path)
    if key in reg:
        path, name = reg[key], key
    else:
        p = Path(name_or_path).expanduser()
        if is_checkpoint(p):
            path, name = p / "config.yaml", None
        elif p.is_file():
            path, name = p, None
        else:
            raise ConfigError(
                f"unknown model {key!r}: not a registered name ({', '.join(list_models())}), "
                "a YAML file or a checkpoint directory"
            )
    return model_config_from_yaml(path, overrides, merge({"name": name} if name else {}, kwargs))


def create_model(
    name_or_path: str | os.PathLike | ModelConfig,
    overrides: list[str] | tuple[str, ...] = (),
    device: str = "cpu",
    **kwargs,
) -> MoRE:
    """Build a model from a registered config name, a YAML file, a ModelConfig or a checkpoint.

    A checkpoint directory is loaded with its weights (in eval mode, as :func:`moreclip.load`);
    otherwise the model is freshly initialised (pretrained backbones where the config asks for them)
    and left in training mode.

    Args:
        name_or_path: registry name (see :func:`list_models`), ``.yaml`` file, ModelConfig, or
            checkpoint directory.
        overrides: ``key=value`` strings relative to the model config (``xray.depth=2``).
        device: where to put the model.
        **kwargs: top-level model config fields; sections as (partial) dicts, e.g. ``xray={"depth": 2}``.
    """
    if isinstance(name_or_path, ModelConfig):
        return MoRE(model_config_from_dict(to_dict(name_or_path), overrides, kwargs)).to(device)
    if str(name_or_path) not in _registry() and is_checkpoint(name_or_path):
        return load(name_or_path, overrides, device=device, **kwargs)
    return MoRE(get_model_config(name_or_path, overrides, **kwargs)).to(device)


def model_info(name_or_path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Build (or load) a model and describe it: name, source, config and parameter counts.

    Args:
        name_or_path: registry name, ``.yaml`` file or checkpoint directory.
        overrides: ``key=value`` strings relative to the model config.

    Returns:
        ``{"name", "source", "checkpoint", "config", "parameters"}`` where ``parameters`` is
        :meth:`MoRE.parameter_summary`.
    """
    model = create_model(name_or_path, overrides)
    key = str(name_or_path)
    source = str(_registry()[key]) if key in _registry() else str(Path(name_or_path).resolve())
    return {
        "name": model.config.name,
        "source": source,
        "checkpoint": key not in _registry() and is_checkpoint(name_or_path),
        "config": to_dict(model.config),
        "parameters": model.parameter_summary(),
    }


def format_parameters(summary: dict[str, dict[str, int]]) -> str:
    """A text table of :meth:`MoRE.parameter_summary` (trainable / frozen / total per component)."""
    lines = [f"{'component':<20}{'trainable':>14}{'frozen':>14}{'total':>14}"]
    for name, c in summary.items():
        if name == "total":
            lines.append("-" * 62)
        lines.append(f"{name:<20}{c['trainable']:>14,}{c['frozen']:>14,}{c['trainable'] + c['frozen']:>14,}")
    return "\n".join(lines)
