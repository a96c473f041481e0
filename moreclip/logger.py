"""Run metrics to CSV, TensorBoard and (optionally) Weights & Biases; only rank 0 writes.

``OUTPUT_DIR/logs/<group>.csv`` holds one row per logged step of a group (``train``, ``val``): the column
``step`` then one column per metric (a metric that appears later rewrites the file with the wider
header). TensorBoard events go to ``OUTPUT_DIR/logs/tb``; metric names keep their ``group/`` prefix.
On resume, :meth:`RunLogger.truncate_after` drops the CSV rows a killed run logged after its last
checkpoint, and TensorBoard purges them, so the logs read as one uninterrupted run. Reports' text is
never logged.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class RunLogger:
    """Metric sinks of one run.

    Args:
        output_dir: the run folder.
        enabled: False on ranks other than 0 (every method is then a no-op).
        tensorboard: write TensorBoard events.
        wandb: log to Weights & Biases when the package is installed (a warning otherwise).
        wandb_project: W&B project.
        config: the run config (a dict), for W&B.
        resume_step: the step a resumed run starts from (later rows are dropped); None for a new run.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        enabled: bool = True,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "moreclip",
        config: dict | None = None,
        resume_step: int | None = None,
    ):
        self.enabled = enabled
        self.dir = Path(output_dir) / "logs"
        self.tb = self.wandb = None
        self._headers: dict[str, list[str]] = {}
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.truncate_after(resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=resume_step)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed: no TensorBoard logs")
        if wandb:
            try:
                import wandb as wb
            except ImportError:
                log.warning(
                    "train.wandb is set but wandb is not installed (pip install wandb): not logging to W&B"
                )
            else:
                self.wandb = wb.init(
                    project=wandb_project, dir=str(self.dir), config=config, name=Path(output_dir).name
                )

    def _csv(self, group: str) -> Path:
        return self.dir / f"{group}.csv"

    def _read(self, group: str) -> tuple[list[str], list[dict]]:
        path = self._csv(group)
        if not path.is_file():
            return [], []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)

    def _rewrite(self, group: str, header: list[str], rows: list[dict]) -> None:
        path = self._csv(group)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header, restval="")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)

    def log(self, group: str, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` (name -> number) of ``group`` at ``step``."""
        if not self.enabled:
            return
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        if group not in self._headers:
            self._headers[group] = self._read(group)[0]
        header = self._headers[group]
        if not header or any(k not in header for k in row):  # a new column: rewrite with the wider header
            header = [*(header or ["step"]), *[k for k in row if k not in (header or ["step"])]]
            self._rewrite(group, header, [*self._read(group)[1], row])
            self._headers[group] = header
        else:
            with open(self._csv(group), "a", newline="") as f:
                csv.DictWriter(f, fieldnames=header, restval="").writerow(row)
        for k, v in metrics.items():
            if self.tb is not None:
                self.tb.add_scalar(f"{group}/{k}", float(v), step)
        if self.wandb is not None:
            self.wandb.log({f"{group}/{k}": float(v) for k, v in metrics.items()}, step=step)

    def truncate_after(self, step: int) -> None:
        """Drop CSV rows logged after ``step`` (a resumed run repeats them)."""
        for path in self.dir.glob("*.csv"):
            header, rows = self._read(path.stem)
            keep = [r for r in rows if float(r.get("step") or 0) <= step]
            if len(keep) != len(rows):
                self._rewrite(path.stem, header, keep)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
