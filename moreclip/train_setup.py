"""Setting up a pre-training run: the config (with registered model names), checks that fail early with one
line naming the key, the data (a cache prepared when needed), where to resume, precision, versions."""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import platform
from dataclasses import replace
from pathlib import Path

import torch

from moreclip import distributed as D
from moreclip.config import Config, from_dict, merge, parse_overrides, read_yaml, to_dict
from moreclip.errors import ConfigError
from moreclip.losses import create_loss
from moreclip.train_state import latest_checkpoint

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- config
def load_train_config(path=None, overrides=(), base: dict | None = None) -> Config:
    """The run config: defaults, ``base``, the YAML file, then ``key=value`` overrides.

    ``model.name`` may name a registered model (``tiny``, ``base``, ...): its config is the base of the
    model section and the other ``model.*`` keys override it.

    Args:
        path: a YAML file with ``model``, ``data`` and ``train`` sections (optional).
        overrides: ``["train.lr=1e-4", "model.xray.depth=2", ...]``.
        base: a nested dict applied before the file (e.g. a checkpoint's config).
    """
    from moreclip.models import get_model_config, list_models

    data = merge(base or {}, read_yaml(path) if path else {})
    data = merge(data, parse_overrides(list(overrides)))
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"model: expected a mapping, got {model!r}")
    name = model.get("name")
    if isinstance(name, str) and name in list_models():
        data["model"] = merge(to_dict(get_model_config(name)), model)
    elif isinstance(name, str) and difflib.get_close_matches(name, list_models(), n=1, cutoff=0.75):
        close = difflib.get_close_matches(name, list_models(), n=1, cutoff=0.75)[0]
        log.warning(
            "model.name %r is not a registered model (did you mean %r?): the defaults apply", name, close
        )
    return from_dict(Config, data)


def check_config(cfg: Config) -> None:
    """Fail before any work on a config whose parts do not fit together (one line naming the keys)."""
    m, d, t = cfg.model, cfg.data, cfg.train
    if m.xray.img_size != d.image_size:
        raise ConfigError(f"model.xray.img_size={m.xray.img_size} but data.image_size={d.image_size}")
    if m.ecg.sample_rate != d.ecg_rate or m.ecg.seconds != d.ecg_seconds:
        raise ConfigError(
            f"model.ecg takes {m.ecg.sample_rate} Hz x {m.ecg.seconds:g} s but data gives "
            f"{d.ecg_rate} Hz x {d.ecg_seconds:g} s (data.ecg_rate / data.ecg_seconds)"
        )
    for key, value, low in (
        ("data.batch_size", d.batch_size, 2),
        ("train.accum_steps", t.accum_steps, 1),
        ("train.log_every", t.log_every, 1),
        ("train.keep_last", t.keep_last, 1),
        ("train.val_every", t.val_every, -1),
        ("train.ckpt_every", t.ckpt_every, 0),
        ("train.epochs", t.epochs, 1 if t.max_steps is None else 0),
        ("train.max_steps", t.max_steps if t.max_steps is not None else 1, 1),
    ):
        if value < low:
            raise ConfigError(f"{key}: must be >= {low}, got {value}")
    if t.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {t.lr}")
    create_loss(t)  # unknown pairs / loss
    for key in ("manifest", "cache"):
        p = getattr(d, key)
        if p and key == "manifest" and not Path(p).is_file():
            raise ConfigError(f"data.manifest: file not found: {p}")
    if d.cache and not Path(d.cache).is_dir() and not d.manifest:
        raise ConfigError(
            f"data.cache: directory not found: {d.cache} (and no data.manifest to prepare it from)"
        )
    if not d.cache and not d.manifest:
        raise ConfigError("data.cache or data.manifest must be set")


def resolve_data(cfg: Config, info: D.DistInfo, progress: bool = True):
    """The data config to train from: a complete cache, prepared from the manifest when needed.

    ``data.cache`` complete: used as is. ``data.cache`` missing or incomplete and ``data.manifest`` set:
    prepared (or resumed) there. Only ``data.manifest``: prepared into ``output_dir/cache`` when
    ``train.auto_cache`` (the default), else the raw files are read every epoch. Rank 0 prepares,
    the others wait.
    """
    from moreclip.data.cache import CacheError, open_cache
    from moreclip.data.prepare import prepare_cache
    from moreclip.data.preprocess import PreprocessOptions

    d = cfg.data
    if d.cache:
        try:
            open_cache(d.cache)
            return d
        except CacheError as e:
            if not d.manifest:
                raise ConfigError(f"data.cache: {e}") from None
    elif not cfg.train.auto_cache:
        return d
    cache = d.cache or str(Path(cfg.train.output_dir) / "cache")
    if info.is_main:
        log.info("preparing the cache %s from %s", cache, d.manifest)
        workers = max(1, min(8, os.cpu_count() or 1))
        prepare_cache(d.manifest, cache, PreprocessOptions.from_config(d), workers=workers, progress=progress)
    D.barrier()
    return replace(d, cache=cache)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast dtype, or None for fp32 (``auto``: bf16 on GPUs that support it)."""
    if precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    return None


def compile_encoders(model) -> None:
    """torch.compile the encoders in place (parameter names, and so checkpoints, are unchanged)."""
    model.xray.compile()
    model.ecg.compile()
    for tower in model.text.values():
        tower.backbone.compile()


def find_resume(resume: str | None, ckpt_root: Path) -> Path | None:
    """The checkpoint to resume from: None (new run), ``"auto"`` (newest, or None) or a path."""
    if resume in (None, ""):
        if latest_checkpoint(ckpt_root) is not None:
            raise ConfigError(
                f"train.output_dir: {ckpt_root.parent} already holds a run (pass --resume auto to continue "
                "it, or choose another output_dir)"
            )
        return None
    if resume == "auto":
        return latest_checkpoint(ckpt_root)
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(f"--resume: {path} is not a complete training checkpoint")
    return path


def versions() -> dict[str, str]:
    """Versions of Python, moreclip and the main libraries, and the machine."""
    import importlib.metadata as md

    from moreclip import __version__

    out = {"moreclip": __version__, "python": platform.python_version(), "platform": platform.platform()}
    out["torch"] = torch.__version__
    for pkg in ("timm", "transformers", "peft", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    out["cpu"] = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        if names:
            out["cpu"] = names[0].split(":", 1)[1].strip()
    out["cpu_count"] = str(os.cpu_count())
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)
