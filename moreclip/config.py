"""Dataclass configs: defaults, then a YAML file, then ``key=value`` overrides from the command line.

Every section is a plain dataclass with one comment per field. :func:`load_config` layers the three
sources, checks every key and type, and raises :class:`~moreclip.errors.ConfigError` with one line that
names the offending key (``unknown key 'train.lrr' (did you mean 'train.lr'?)``). :func:`save_config`
writes the final config next to every checkpoint and result, so a run can be reproduced from it.

    cfg = load_config(Config, "configs/demo.yaml", ["train.lr=1e-4", "model.embed_dim=128"])
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from moreclip.errors import ConfigError

T = TypeVar("T")

MODALITIES = ("xray", "ecg", "xray_report", "ecg_report")
CANONICAL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


# ----------------------------------------------------------------------------------------- model
@dataclass
class XrayConfig:
    model_name: str = "vit_tiny_patch16_224"  # any timm ViT architecture name
    img_size: int = 224  # input side in pixels (square)
    patch_size: int | None = None  # None: the timm architecture's own patch size
    embed_dim: int | None = None  # None: the timm architecture's width (override to build a custom size)
    depth: int | None = None  # None: the timm architecture's depth
    num_heads: int | None = None  # None: the timm architecture's heads
    pretrained: bool = False  # load timm's pretrained weights (needs them cached locally or a hub)
    pretrained_path: str | None = None  # local weights file (.safetensors/.pth) for the timm model
    dropkey_rate: float = 0.1  # fraction of attention logits dropped before the softmax in training
    dropkey_schedule: Literal["constant", "linear"] = "constant"  # linear: rate decays to 0 over depth
    drop_path_rate: float = 0.0  # stochastic depth
    global_pool: Literal["token", "avg"] = "token"  # CLS token or mean of patch tokens
    # patch: timm's one strided convolution per patch; conv: a convolutional stem (Xiao et al. 2021, stride-2
    # 3x3 convolutions + BN/ReLU, then 1x1 to the width) with the same token grid: trains faster from scratch
    stem: Literal["patch", "conv"] = "patch"


@dataclass
class EcgConfig:
    sample_rate: int = 100  # Hz the encoder sees (the data pipeline resamples to it)
    seconds: float = 10.0  # signal length; the encoder sees sample_rate * seconds samples per lead
    num_leads: int = 12  # input leads (canonical order)
    patch_size: int = 50  # samples per time patch (MoRE: 5, the stride of its first convolution)
    # across: one conv, one token per time patch spanning all leads; per_lead: one token per (lead, patch)
    # with a lead embedding; more: MoRE's two convolutions across leads (196 tokens for 1,000 samples)
    patch_mode: Literal["across", "per_lead", "more"] = "across"
    embed_dim: int = 192  # transformer width
    depth: int = 4  # transformer blocks
    num_heads: int = 3  # attention heads (must divide embed_dim)
    mlp_ratio: float = 4.0  # MLP hidden width / embed_dim
    dropout: float = 0.0  # dropout after the embeddings and in the blocks' projections
    drop_path_rate: float = 0.0  # stochastic depth (linearly increasing to this rate over depth)
    dropkey_rate: float = 0.0  # the same attention dropping as the X-ray ViT
    dropkey_schedule: Literal["constant", "linear"] = "constant"  # linear: rate decays to 0 over depth
    global_pool: Literal["token", "avg"] = "token"  # CLS token or mean of patch tokens


@dataclass
class TextConfig:
    model_name: str = "minilm"  # "minilm" (offline default), or any Hugging Face id / local directory
    pooling: Literal["mean", "cls", "last"] = "mean"  # last: last non-padding token (decoder LLMs)
    max_length: int = 128  # tokens per report
    lora: bool = True  # add LoRA adapters (peft) and freeze the backbone
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator (the update is scaled by alpha / r)
    lora_dropout: float = 0.1  # dropout on the LoRA branch input
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture (query/value...)
    lora_layers: list[int] | None = None  # None: every layer; else these layer indices (-1: the top one)
    freeze_backbone: bool = True  # without LoRA: train nothing in the backbone (heads only)
    share_encoder: bool = True  # X-ray and ECG reports go through the same text encoder
    # MiB of float32 hidden states of the frozen layers below the lowest LoRA layer, cached per report
    # (exact; only the top layers run on a hit; models/text_cache.py); 0: off
    prefix_cache_mb: float = 0.0


@dataclass
class ModelConfig:
    name: str = "custom"  # registry name of this configuration
    embed_dim: int = 256  # dimension of the shared, L2-normalised space
    head: Literal["linear", "mlp"] = "linear"  # mlp: MoRE's 2-layer head with batch norm
    head_hidden: int | None = None  # hidden width of the mlp head (None: the encoder width)
    init_logit_scale: float = math.log(1 / 0.07)  # CLIP initialisation of the temperature
    max_logit_scale: float = math.log(100.0)  # CLIP clamp
    xray: XrayConfig = field(default_factory=XrayConfig)
    ecg: EcgConfig = field(default_factory=EcgConfig)
    text: TextConfig = field(default_factory=TextConfig)


# ------------------------------------------------------------------------------------------ data
@dataclass
class AugmentConfig:
    """Train-time augmentations (moreclip/data/augment.py); all are off at eval."""

    ecg_crop: float = 0.9  # random time window of >= this fraction, resized back to T (1: off)
    ecg_scale: tuple[float, float] = (0.8, 1.2)  # amplitude factor per sample, after normalisation
    ecg_noise: float = 0.05  # std of added Gaussian noise, in normalised units (0: off)
    ecg_lead_dropout: float = 0.1  # probability of zeroing each lead (never all 12)
    xray_crop: float = 0.8  # random resized crop of >= this area fraction (1: off)
    xray_ratio: tuple[float, float] = (0.9, 1.1)  # aspect ratio range of that crop
    xray_brightness: float = 0.1  # additive shift in [-b, b] of [0, 1] grey values
    xray_contrast: float = 0.1  # contrast factor in [1 - c, 1 + c] around the image mean
    text_shuffle: float = 0.5  # probability of shuffling the sentences within each report section
    text_drop: float = 0.1  # probability of dropping each sentence (a section keeps at least one)


@dataclass
class DataConfig:
    manifest: str | None = None  # manifest.parquet (raw files) ...
    cache: str | None = None  # ... or a cache directory written by `moreclip prepare` (faster)
    image_size: int = 224  # X-ray side in pixels fed to the model
    ecg_rate: int = 100  # Hz fed to the model
    ecg_seconds: float = 10.0
    ecg_bandpass: bool = False  # 0.5-100 Hz band-pass (raw-file path; the cache bakes in its choice)
    ecg_baseline: Literal["none", "median"] = "median"  # MoRE: median-filter baseline removal
    ecg_norm: Literal["zscore", "minmax", "none"] = "zscore"  # per lead; minmax: MoRE's [-1, 1]
    ecg_nan_max: float = 0.05  # fraction of NaN samples above which an ECG is bad (below: NaN -> 0, reported)
    xray_fit: Literal["pad", "crop", "stretch"] = "pad"  # keep aspect and pad, centre crop, or stretch (MoRE)
    clahe: bool = False  # CLAHE contrast equalisation of radiographs (MoRE)
    clahe_clip: float = 2.0  # CLAHE clip limit (OpenCV's definition)
    clahe_tiles: int = 8  # CLAHE tile grid (tiles x tiles)
    xray_mean: float = 0.499  # MoRE's normalisation of [0, 1] grey values
    xray_std: float = 0.293
    augment: bool = True  # train-time augmentation (off at eval regardless)
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 64
    num_workers: int = 2
    report_sep: str = " "  # joins the X-ray and ECG reports for the report-anchored preset


# ----------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    output_dir: str = "runs/moreclip"
    seed: int = 0
    epochs: int = 10
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    max_minutes: float | None = None  # stop (and checkpoint) after this wall time
    lr: float = 5e-4
    weight_decay: float = 0.1  # not applied to norms, biases, embeddings' position tables, logit scale
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    schedule: Literal["cosine", "cosine_restarts", "constant"] = "cosine"
    restart_steps: int = 1000  # cycle length of cosine_restarts
    min_lr_ratio: float = 0.0
    accum_steps: int = 1  # gradient accumulation
    grad_clip: float | None = 1.0  # max gradient norm (None: off)
    precision: Literal["fp32", "bf16", "auto"] = "auto"  # auto: bf16 on GPUs that support it, fp32 on CPU
    device: str = "auto"  # auto (cuda:<local rank> when CUDA is available), cpu, cuda
    threads: int | None = None  # torch CPU threads per process (None: torch's default, one per core)
    auto_cache: bool = True  # only data.manifest given: cache it in output_dir/cache (False: raw files)
    compile: bool = False  # torch.compile the model
    loss: Literal["clip", "symile"] = "clip"
    pairs: str | list[str] = "all"  # "all", "report-anchored", or ["xray:xray_report", ...]
    pair_weights: dict[str, float] = field(default_factory=dict)  # "xray:ecg" -> weight (default 1)
    symile_negatives: Literal["n", "n_squared"] = "n"
    local_loss: bool = False  # DDP: local rows vs global negatives (open_clip's local_loss)
    gather_with_grad: bool = True  # DDP: gradients flow through gathered features
    log_every: int = 10  # steps
    val_every: int = 200  # steps (0: only at the end; -1: never)
    ckpt_every: int = 200  # steps
    keep_last: int = 2  # checkpoints kept besides the best
    best_metric: str = "val/mean_recall@1"  # higher is better
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "moreclip"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ------------------------------------------------------------------------------------- mechanism
def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (e.g. list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for section '{key}', got {value!r}")
        return _from_dict(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")  # pragma: no cover


def _from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean '{(prefix + '.') if prefix else ''}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key '{key}'{hint}")
        kwargs[k] = _coerce(v, hints[k], key)
    return cls(**kwargs)


def from_dict(cls: type[T], data: dict | None) -> T:
    """Build the dataclass ``cls`` from a (possibly partial) nested dict, checking keys and types."""
    return _from_dict(cls, data or {})


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML-friendly Python (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    """Turn ``["train.lr=1e-4", "model.xray.depth=4"]`` into a nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': value is not valid YAML ({e.problem})") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins. Neither input is modified."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T] = Config,  # type: ignore[assignment]
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict | None = None,
) -> T:
    """Defaults of ``cls``, then ``base`` (a dict), then the YAML file at ``path``, then ``overrides``."""
    data = base or {}
    if path is not None:
        data = merge(data, read_yaml(path))
    data = merge(data, parse_overrides(list(overrides)))
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    os.replace(tmp, p)
