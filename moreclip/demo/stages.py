"""Stage bookkeeping of the demo: done-markers keyed by what a stage's outputs depend on, and timings.

A stage that finished writes ``DIR/stages/<name>.json`` (atomically) holding the SHA-256 of its inputs
(``key``: settings, configs, upstream keys, model hashes), its duration and when it finished. Running the
demo again skips a stage whose marker holds the same key and whose outputs are still there, so an
interrupted demo continues where it stopped; a changed setting redoes that stage and everything after it
(the downstream keys include the upstream ones).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGE_DIR = "stages"


def stage_key(*parts: Any) -> str:
    """SHA-256 of the JSON of ``parts`` (sorted keys): equal inputs, equal key."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)
    return path


@dataclass
class StageLog:
    """Runs the demo's stages in order, skipping finished ones, and prints one line per stage.

    Args:
        root: the demo folder (markers go to ``root/stages``).
        total: the number of stages (for ``[k/total]`` in the log).
        echo: where log lines go (default ``print``).
    """

    root: Path
    total: int
    echo: Callable[[str], None] = print
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    _k: int = 0

    def marker(self, name: str) -> Path:
        return Path(self.root) / STAGE_DIR / f"{name}.json"

    def done(self, name: str, key: str) -> dict | None:
        """The marker of ``name`` when it exists and was written for ``key``, else None."""
        p = self.marker(name)
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("key") == key else None

    def run(self, name: str, title: str, key: str, fn: Callable[[], Any], outputs: tuple = ()) -> bool:
        """Run stage ``name`` unless its marker holds ``key`` and every path of ``outputs`` exists.

        Args:
            name: marker name.
            title: what the log line says.
            key: :func:`stage_key` of the stage's inputs.
            fn: the work; its return value (JSON-able dict or None) is stored in the marker as ``info``.
            outputs: paths that must exist for the stage to count as done.

        Returns:
            True when the stage ran, False when it was skipped.
        """
        self._k += 1
        head = f"[{self._k}/{self.total}] {title}"
        prev = self.done(name, key)
        if prev is not None and all(Path(p).exists() for p in outputs):
            self.echo(f"{head}: done before ({prev.get('seconds', 0):.0f} s then), skipped")
            self.timings[name] = {"title": title, "seconds": 0.0, "skipped": True,
                                  "seconds_then": prev.get("seconds", 0.0)}  # fmt: skip
            return False
        self.marker(name).unlink(missing_ok=True)  # a stage being redone is not done
        self.echo(f"{head} ...")
        t0 = time.time()
        info = fn()
        dt = time.time() - t0
        write_json_atomic(
            self.marker(name),
            {"key": key, "seconds": dt, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "info": info},
        )
        self.timings[name] = {"title": title, "seconds": dt, "skipped": False}
        self.echo(f"{head}: {format_seconds(dt)}")
        return True


def format_seconds(s: float) -> str:
    """``"4.2 s"``, ``"3 min 07 s"``."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s"
