"""Training checkpoints: the model in ``save_pretrained`` format plus optimizer and loop state, written atomically.

Layout of ``OUTPUT_DIR/checkpoints/step_000200/``::

    config.yaml            the full run config (model, data, train); moreclip.load() reads its model section
    model.safetensors      every weight except the frozen text backbone (its SHA-256 is in the metadata;
                           it is rebuilt from model.text.model_name), see moreclip.models.checkpoint
    text/                  the text backbone's config and tokenizer
    optimizer.safetensors  AdamW moments and step counts, keys ``state.<param index>.<name>``
    trainer_state.json     step, data position (epoch, batch), best metric, elapsed time, optimizer
                           hyper-parameters and parameter names, file sizes; written last

A checkpoint is written into ``checkpoints/.tmp-step_000200-<pid>/``, every file fsynced, and renamed to
``step_000200`` in one ``os.replace``: a directory named ``step_*`` is always complete, and a write
killed at any moment leaves only a ``.tmp-*`` folder that the next run deletes. Old checkpoints are
renamed to ``.trash-*`` before they are deleted. Nothing is pickled: tensors go to safetensors, the rest
to JSON.

Fault injection for tests: ``MORECLIP_FAULT=checkpoint@N`` SIGKILLs the process in the middle of writing
the checkpoint of step N (after the weights, before the state file); ``step@N`` right after optimizer
step N (``step@N@R``: only on rank R; with ``MORECLIP_FAULT_RAISE=1`` an exception instead).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import torch
import yaml

from moreclip.errors import ConfigError

CHECKPOINTS = "checkpoints"
STATE_NAME = "trainer_state.json"
OPTIM_NAME = "optimizer.safetensors"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def maybe_fault(point: str, step: int, rank: int = 0) -> None:
    """Fault injection for tests of crash safety: SIGKILL this process (or raise ``RuntimeError`` when
    ``MORECLIP_FAULT_RAISE=1``) when ``MORECLIP_FAULT`` is ``<point>@<step>`` or ``<point>@<step>@<rank>``."""
    want = os.environ.get("MORECLIP_FAULT")
    if want not in (f"{point}@{step}", f"{point}@{step}@{rank}"):
        return
    if os.environ.get("MORECLIP_FAULT_RAISE") == "1":
        raise RuntimeError(f"injected fault at {point} {step} on rank {rank}")
    os.kill(os.getpid(), signal.SIGKILL)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            _fsync(p)
    for d in [*sorted(p for p in root.rglob("*") if p.is_dir()), root]:
        _fsync(d)


def _remove(path: Path) -> None:
    """Rename to ``.trash-*`` (atomic), then delete: a half-deleted folder never looks like a checkpoint."""
    trash = path.parent / f".trash-{path.name}-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------------------- optimizer
def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer state as safetensors-ready tensors plus JSON (param groups, non-tensor values)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore :func:`optimizer_tensors` output into ``optimizer`` (same parameters, same order)."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    groups = []
    for g in meta["param_groups"]:
        groups.append({k: (tuple(v) if k == "betas" else v) for k, v in g.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def optimizer_param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its order (checked on resume)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names.get(id(p), "?") for g in optimizer.param_groups for p in g["params"]]


# ---------------------------------------------------------------------------------------- checkpoints
def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` (a run's ``checkpoints/`` folder) as ``(step, path)``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / STATE_NAME).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def clean_partial(root: str | os.PathLike) -> list[str]:
    """Delete what killed writes or deletions left under ``root`` (``.tmp-*``, ``.trash-*``); their names."""
    root = Path(root)
    gone = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
    return gone


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    model,
    optimizer: torch.optim.Optimizer,
    state: dict,
    config: dict,
) -> Path:
    """Write the checkpoint of ``step`` under ``root`` atomically (see the module docstring).

    Args:
        root: the run's ``checkpoints/`` folder.
        step: optimizer steps done.
        model: the :class:`~moreclip.models.MoRE` (not a DDP wrapper).
        optimizer: its optimizer.
        state: JSON-able loop state (position, best, metrics, ...), stored in ``trainer_state.json``.
        config: the full run config as a dict (``to_dict(cfg)``).

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, include_frozen=False)
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    tensors, meta = optimizer_tensors(optimizer)
    save_file(tensors, tmp / OPTIM_NAME, metadata={"format": "pt"})
    maybe_fault("checkpoint", step)
    files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
    record = {
        **state,
        "step": step,
        "optimizer": {**meta, "param_names": optimizer_param_names(model, optimizer)},
        "files": files,
    }
    (tmp / STATE_NAME).write_text(json.dumps(record, indent=1, default=float))
    _fsync_tree(tmp)
    if final.exists():
        _remove(final)
    os.replace(tmp, final)
    _fsync(root)
    return final


def load_checkpoint(path: str | os.PathLike, model, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load a checkpoint's weights into ``model`` (and its state into ``optimizer``); return its state.

    Raises:
        ConfigError: not a complete checkpoint, files of the wrong size, or weights / optimizer that do
            not fit the model.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from moreclip.models.checkpoint import WEIGHTS_NAME, frozen_text_keys, tensors_sha256

    path = Path(path)
    state_file = path / STATE_NAME
    if not state_file.is_file():
        raise ConfigError(f"{path}: not a complete training checkpoint (no {STATE_NAME})")
    state = json.loads(state_file.read_text())
    for name, size in state.get("files", {}).items():
        if not (path / name).is_file() or (path / name).stat().st_size != size:
            raise ConfigError(f"{path / name}: missing or truncated (expected {size} bytes)")
    with safe_open(path / WEIGHTS_NAME, framework="pt") as f:
        meta = f.metadata() or {}
    weights = load_file(path / WEIGHTS_NAME)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:
        raise ConfigError(f"{path / WEIGHTS_NAME}: weights do not fit the model config: {e}") from None
    frozen = frozen_text_keys(model)
    missing = [k for k in missing if meta.get("include_frozen") == "1" or k not in set(frozen)]
    if missing or unexpected:
        raise ConfigError(
            f"{path / WEIGHTS_NAME}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    if meta.get("include_frozen") == "0":
        sd = model.state_dict()
        if tensors_sha256({k: sd[k] for k in frozen}) != meta.get("frozen_text_sha256"):
            raise ConfigError(f"{path}: the frozen text backbone differs from the one of this checkpoint")
    if optimizer is not None:
        names = optimizer_param_names(model, optimizer)
        if names != state["optimizer"]["param_names"]:
            raise ConfigError(f"{path}: the optimizer's parameters differ from this model's trainable ones")
        load_optimizer(optimizer, load_file(path / OPTIM_NAME), state["optimizer"])
    return state


def prune_checkpoints(
    root: str | os.PathLike, keep_last: int, keep_steps: set[int] = frozenset()
) -> list[int]:
    """Delete all but the newest ``keep_last`` checkpoints and those of ``keep_steps``; the deleted steps."""
    found = list_checkpoints(root)
    newest = {s for s, _ in found[-max(1, keep_last) :]}
    gone = []
    for s, p in found:
        if s not in newest and s not in keep_steps:
            _remove(p)
            gone.append(s)
    return gone
