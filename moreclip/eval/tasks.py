"""Evaluation tasks: which labels of a manifest to predict from which modality, and with which prompts.

A task is a small YAML file (schema in docs/tasks.md). The built-in ones live in ``moreclip/tasks/``
(:func:`list_tasks`); a user's own is loaded from its path. :func:`load_task` accepts either.

    task = load_task("chexpert5")             # or load_task("my_tasks/pneumonia.yaml")
    task.check_columns(manifest)              # ManifestError naming the missing columns
    y = task.targets(manifest)                # (N, L) with NaN for unknown / uncertain (per policy)

Two task types: ``multilabel`` (independent binary labels, each a manifest column with 1 / 0 / -1 / NaN,
and positive / negative prompt sets) and ``multiclass`` (one column whose values are the classes, one
prompt set per class). A multilabel task may also take its labels from every column with a prefix
(``labels_from``, e.g. PTB-XL's raw statement codes), kept when a column has at least ``min_count``
positives in the rows the task is resolved on (:meth:`Task.resolve`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moreclip.errors import ConfigError, ManifestError
from moreclip.eval.metrics import UNCERTAIN_POLICIES, apply_uncertain

TASK_DIR = Path(__file__).resolve().parent.parent / "tasks"
TASK_TYPES = ("multilabel", "multiclass")
TASK_MODALITIES = ("xray", "ecg")
_KEYS = {
    "name",
    "description",
    "modality",
    "type",
    "uncertain",
    "base",
    "labels",
    "labels_from",
    "column",
    "classes",
}
_LABEL_KEYS = {"name", "column", "positive", "negative"}
_CLASS_KEYS = {"value", "name", "prompts"}
_RULE_KEYS = {"prefix", "min_count", "positive", "negative", "descriptions"}


@dataclass(frozen=True)
class Label:
    """One binary label: its manifest ``column`` and its positive / negative prompt ensembles."""

    name: str
    column: str
    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskClass:
    """One class of a multi-class task: the column ``value`` that means it, its name and prompts."""

    value: float
    name: str
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class LabelRule:
    """Labels taken from every column starting with ``prefix`` that has >= ``min_count`` positives.

    The label name is the column without the prefix; prompts are the templates with ``{name}`` and
    ``{description}`` (from ``descriptions``, falling back to the name) filled in.
    """

    prefix: str
    min_count: int = 1
    positive: tuple[str, ...] = ("{description}",)
    negative: tuple[str, ...] = ()
    descriptions: dict[str, str] = field(default_factory=dict)

    def label(self, column: str) -> Label:
        name = column[len(self.prefix) :]
        desc = self.descriptions.get(name, name)
        fill = lambda ts: tuple(t.format(name=name, description=desc) for t in ts)  # noqa: E731
        return Label(name, column, fill(self.positive), fill(self.negative))


@dataclass(frozen=True)
class Task:
    """An evaluation task (see the module docstring); build with :func:`load_task`."""

    name: str
    modality: str  # the query side: "xray" or "ecg"; prompts are text of the matching report stream
    type: str  # "multilabel" or "multiclass"
    labels: tuple[Label, ...] = ()  # multilabel
    column: str | None = None  # multiclass: the column holding the class values
    classes: tuple[TaskClass, ...] = ()  # multiclass
    labels_from: LabelRule | None = None  # multilabel with labels found in the data
    uncertain: str = "ignore"  # policy for -1 entries: ignore / positive / negative
    description: str = ""
    source: str | None = None  # the YAML file it came from

    @property
    def text_kind(self) -> str:
        """The report stream the prompts belong to (``xray_report`` / ``ecg_report``)."""
        return f"{self.modality}_report"

    @property
    def names(self) -> list[str]:
        """Label names (multilabel) or class names (multiclass), in output order."""
        return [c.name for c in self.classes] if self.type == "multiclass" else [x.name for x in self.labels]

    @property
    def columns(self) -> list[str]:
        """Manifest columns the task reads (for ``labels_from``: only after :meth:`resolve`)."""
        return [self.column] if self.type == "multiclass" else [x.column for x in self.labels]

    @property
    def is_resolved(self) -> bool:
        return self.labels_from is None

    def resolve(self, data) -> Task:
        """The task with ``labels_from`` expanded into labels, counting positives in ``data``'s rows.

        Resolve on the training split and reuse the result, so every split is scored on the same labels.
        A task without ``labels_from`` is returned unchanged.
        """
        if self.labels_from is None:
            return self
        df = _frame(data)
        rule = self.labels_from
        cols = sorted(c for c in df.columns if c.startswith(rule.prefix) and len(c) > len(rule.prefix))
        if not cols:
            raise ManifestError(f"task '{self.name}': no manifest column starts with '{rule.prefix}'")
        counts = {c: int((pd.to_numeric(df[c], errors="coerce") == 1).sum()) for c in cols}
        kept = [c for c in cols if counts[c] >= rule.min_count]
        if not kept:
            best = max(counts.values())
            raise ManifestError(
                f"task '{self.name}': no '{rule.prefix}*' column has >= {rule.min_count} positives "
                f"in {len(df)} rows (most: {best})"
            )
        labels = self.labels + tuple(rule.label(c) for c in kept if c not in {x.column for x in self.labels})
        return dataclasses.replace(self, labels=labels, labels_from=None)

    def check_columns(self, data) -> None:
        """Raise :class:`ManifestError` naming every task column ``data`` (manifest or DataFrame) lacks."""
        df = _frame(data)
        task = self.resolve(df)
        missing = [c for c in task.columns if c not in df.columns]
        if missing:
            where = f" ({data.path})" if getattr(data, "path", None) else ""
            raise ManifestError(
                f"task '{self.name}' needs column(s) missing from the manifest{where}: "
                + ", ".join(repr(c) for c in missing)
            )

    def targets(self, data, uncertain: str | None = None) -> np.ndarray:
        """Ground truth of ``data`` (a Manifest or DataFrame) for this task.

        Args:
            data: the rows to score.
            uncertain: policy for -1 in binary labels (default: the task's ``uncertain``).

        Returns:
            multilabel: ``(N, L)`` float64 of 1 / 0, NaN where unknown or uncertain-ignored;
            multiclass: ``(N,)`` float64 class positions ``0..C-1`` (order of ``classes``), NaN unknown.
        """
        df = _frame(data)
        task = self.resolve(df)
        task.check_columns(data)
        if task.type == "multiclass":
            v = pd.to_numeric(df[task.column], errors="coerce").to_numpy(dtype=np.float64)
            values = np.array([c.value for c in task.classes])
            bad = ~np.isnan(v) & ~np.isin(v, values)
            if bad.any():
                raise ManifestError(
                    f"column '{task.column}' holds values {_fmt(v[bad])} that are not "
                    f"classes of task '{self.name}' ({', '.join(f'{x:g}' for x in values)})"
                )
            out = np.full(v.shape, np.nan)
            for i, value in enumerate(values):
                out[v == value] = i
            return out
        y = np.stack([pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64) for c in task.columns], 1)
        bad = ~np.isnan(y) & ~np.isin(y, (-1.0, 0.0, 1.0))
        if bad.any():
            cols = sorted({task.columns[j] for j in np.flatnonzero(bad.any(0))})
            raise ManifestError(
                f"binary label column(s) {', '.join(map(repr, cols))} hold values other than "
                f"1, 0, -1 or null: {_fmt(y[bad])}"
            )
        return apply_uncertain(y, uncertain or self.uncertain)

    def to_dict(self) -> dict[str, Any]:
        """The YAML-able form of this task (what :func:`task_from_dict` reads back)."""
        keys = ["name", "description", "modality", "type"]
        keys += ["column", "classes"] if self.type == "multiclass" else ["uncertain", "labels", "labels_from"]
        return {k: _plain(getattr(self, k)) for k in keys if getattr(self, k) is not None}


def _plain(x: Any) -> Any:
    """Dataclasses and tuples as dicts and lists (what yaml.safe_dump and json accept)."""
    if dataclasses.is_dataclass(x):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:g}" for x in sorted(set(values.tolist()))[:5]) + "]"


def _frame(data) -> pd.DataFrame:
    df = getattr(data, "df", data)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a Manifest or a pandas DataFrame, got {type(data).__name__}")
    return df


# ------------------------------------------------------------------------------------------- loading
def list_tasks() -> list[str]:
    """Names of the built-in tasks (``moreclip/tasks/*.yaml``)."""
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml") if not p.name.startswith("_"))


def load_task(name_or_path: str | os.PathLike, _depth: int = 0) -> Task:
    """A built-in task by name, or a task YAML file by path.

    Raises:
        ConfigError: unknown name (the message lists the built-in ones), unreadable YAML, or a schema
            problem (the message names the file and the key).
    """
    import yaml

    if _depth > 8:
        raise ConfigError(f"task '{name_or_path}': 'base' chain too deep (a cycle?)")
    s = os.fspath(name_or_path)
    path = Path(s)
    if not path.is_file():
        if s.endswith((".yaml", ".yml")) or os.sep in s:
            raise ConfigError(f"task file not found: {s}")
        if s not in list_tasks():
            hint = difflib.get_close_matches(s, list_tasks(), n=1)
            raise ConfigError(
                f"unknown task '{s}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; built-in tasks: {', '.join(list_tasks())}; or pass a task YAML file"
            )
        path = TASK_DIR / f"{s}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not a readable task YAML ({e})") from None
    return task_from_dict(raw, source=str(path), _depth=_depth)


def task_from_dict(d: Any, source: str | None = None, _depth: int = 0) -> Task:
    """Build and validate a :class:`Task` from its YAML mapping (schema in docs/tasks.md)."""
    where = source or "<task>"

    def err(msg: str) -> ConfigError:
        return ConfigError(f"{where}: {msg}")

    if not isinstance(d, dict):
        raise err("a task file must hold a mapping of keys")
    _check_keys(d, _KEYS, "", err)
    base = None
    if d.get("base") is not None:
        ref = str(d["base"])
        if source and (ref.endswith((".yaml", ".yml"))) and not os.path.isabs(ref):
            ref = str(Path(source).parent / ref)
        base = load_task(ref, _depth + 1)
    get = lambda k, default=None: d.get(k, getattr(base, k) if base is not None else default)  # noqa: E731
    name = d.get("name") or (Path(source).stem if source else None)
    if not name or not isinstance(name, str):
        raise err("'name' is required (a string)")
    modality, type_, uncertain = get("modality"), get("type", "multilabel"), get("uncertain", "ignore")
    if modality not in TASK_MODALITIES:
        raise err(f"'modality' must be one of {', '.join(TASK_MODALITIES)}, got {modality!r}")
    if type_ not in TASK_TYPES:
        raise err(f"'type' must be one of {', '.join(TASK_TYPES)}, got {type_!r}")
    if uncertain not in UNCERTAIN_POLICIES:
        raise err(f"'uncertain' must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}")
    common = dict(
        name=name,
        modality=modality,
        type=type_,
        uncertain=uncertain,
        source=source,
        description=str(d.get("description") or (base.description if base else "")),
    )
    if type_ == "multiclass":
        column, classes = get("column"), d.get("classes")
        if not isinstance(column, str) or not column:
            raise err("a multiclass task needs 'column' (the manifest column holding the class values)")
        if classes is None and base is not None:
            parsed = base.classes
        else:
            parsed = tuple(_parse_class(c, i, err) for i, c in enumerate(_as_list(classes, "classes", err)))
        if len(parsed) < 2:
            raise err("a multiclass task needs at least 2 'classes'")
        _unique([c.name for c in parsed], "class name", err)
        _unique([c.value for c in parsed], "class value", err)
        return Task(column=column, classes=parsed, **common)
    for k in ("column", "classes"):
        if d.get(k) is not None:
            raise err(f"'{k}' belongs to multiclass tasks; a multilabel task has 'labels'")
    labels = []
    by_name = {x.name: x for x in base.labels} if base is not None else {}
    entries = d.get("labels", None if base is None or "labels_from" in d else [x.name for x in base.labels])
    for i, entry in enumerate(_as_list(entries or [], "labels", err)):
        if isinstance(entry, str):
            if entry not in by_name:
                avail = ", ".join(by_name) or "none (no 'base')"
                raise err(f"labels[{i}]: '{entry}' is not a label of the base task (available: {avail})")
            labels.append(by_name[entry])
        else:
            labels.append(_parse_label(entry, i, err))
    rule = (
        _parse_rule(d["labels_from"], err)
        if d.get("labels_from") is not None
        else (base.labels_from if base is not None and "labels" not in d else None)
    )
    if not labels and rule is None:
        raise err("a multilabel task needs 'labels' (or 'labels_from')")
    _unique([x.name for x in labels], "label name", err)
    _unique([x.column for x in labels], "label column", err)
    return Task(labels=tuple(labels), labels_from=rule, **common)


def _check_keys(d: dict, allowed: set[str], where: str, err) -> None:
    for k in d:
        if k not in allowed:
            hint = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            raise err(
                f"unknown key '{where}{k}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; allowed: {', '.join(sorted(allowed))}"
            )


def _as_list(v: Any, key: str, err) -> list:
    if not isinstance(v, list):
        raise err(f"'{key}' must be a list")
    return v


def _prompts(v: Any, key: str, err, required: bool) -> tuple[str, ...]:
    if v is None:
        v = []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(p, str) and p.strip() for p in v):
        raise err(f"'{key}' must be a list of non-empty strings")
    if required and not v:
        raise err(f"'{key}' needs at least one prompt")
    return tuple(p.strip() for p in v)


def _parse_label(e: Any, i: int, err) -> Label:
    if not isinstance(e, dict):
        raise err(f"labels[{i}] must be a mapping (name, column, positive, negative) or a base label name")
    _check_keys(e, _LABEL_KEYS, f"labels[{i}].", err)
    name = e.get("name")
    if not isinstance(name, str) or not name:
        raise err(f"labels[{i}]: 'name' is required")
    column = e.get("column")
    if not isinstance(column, str) or "/" not in column:
        raise err(f"labels[{i}] ({name}): 'column' must name a label column like 'chexpert/{name}'")
    return Label(
        name,
        column,
        _prompts(e.get("positive"), f"labels[{i}].positive", err, True),
        _prompts(e.get("negative"), f"labels[{i}].negative", err, False),
    )


def _parse_class(e: Any, i: int, err) -> TaskClass:
    if not isinstance(e, dict):
        raise err(f"classes[{i}] must be a mapping (value, name, prompts)")
    _check_keys(e, _CLASS_KEYS, f"classes[{i}].", err)
    value = e.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise err(f"classes[{i}]: 'value' must be a number (the column value of this class)")
    name = e.get("name")
    if not isinstance(name, str) or not name:
        raise err(f"classes[{i}]: 'name' is required")
    return TaskClass(float(value), name, _prompts(e.get("prompts"), f"classes[{i}].prompts", err, True))


def _parse_rule(e: Any, err) -> LabelRule:
    if not isinstance(e, dict):
        raise err("'labels_from' must be a mapping (prefix, min_count, positive, negative, descriptions)")
    _check_keys(e, _RULE_KEYS, "labels_from.", err)
    prefix = e.get("prefix")
    if not isinstance(prefix, str) or not prefix.endswith("/"):
        raise err("labels_from.prefix must be a column prefix ending in '/', e.g. 'ptbxl_code/'")
    min_count = e.get("min_count", 1)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise err("labels_from.min_count must be a positive integer")
    desc = e.get("descriptions") or {}
    if not isinstance(desc, dict):
        raise err("labels_from.descriptions must map a label name to its description")
    positive = _prompts(e.get("positive", ["{description}"]), "labels_from.positive", err, True)
    negative = _prompts(e.get("negative"), "labels_from.negative", err, False)
    for t in positive + negative:
        try:
            t.format(name="x", description="x")
        except (KeyError, IndexError, ValueError):
            raise err(f"labels_from template {t!r} may only use {{name}} and {{description}}") from None
    return LabelRule(prefix, min_count, positive, negative, {str(k): str(v) for k, v in desc.items()})


def _unique(values: list, what: str, err) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise err(f"duplicate {what} {v!r}")
        seen.add(v)
