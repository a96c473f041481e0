"""``run_demo``: the whole method on the embedded synthetic cohort, one resumable pipeline.

    from moreclip.demo import run_demo
    summary = run_demo("demo", n=2500, minutes=5, seed=0)      # what `moreclip demo` runs
    summary["headline"]["zeroshot/synthetic-xray/auroc"]

Stages (each skipped when its marker in ``DIR/stages/`` matches, see :mod:`moreclip.demo.stages`):

1. cohort    ``DIR/cohort/``: ``n`` synthetic patients (:func:`moreclip.data.synthetic.generate_cohort`)
2. cache     ``DIR/cache/``: decoded once at the model's input size (:func:`moreclip.data.prepare.prepare_cache`)
3. train     ``DIR/run/``: pre-training from ``configs/demo.yaml`` (resumes from its newest checkpoint)
4. evaluate  ``DIR/eval/``: zero-shot, linear probe vs random init, retrieval (:mod:`moreclip.demo.evaluate`)
5. index     ``DIR/index/``: every sample's four embeddings in a FAISS vector index
6. explain   ``DIR/explain/``: a few test patients' maps, reports and neighbours (:mod:`moreclip.demo.showcase`)
7. report    ``DIR/report.html`` (:func:`moreclip.report.build_report`)

Training length: ``configs/demo.yaml`` gives ``train.max_steps`` for :data:`REFERENCE_MINUTES` minutes on
2 CPU cores; ``minutes`` scales it (and the warm-up), so a run is a fixed number of steps — the same
seed gives the same model on any machine — and ``train.max_minutes`` (``minutes`` x 1.5 + 1) only stops a
much slower machine early (the summary then says ``stopped``). The resolved config is saved as
``DIR/config.yaml``: ``moreclip pretrain --config DIR/config.yaml`` repeats the training alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from moreclip.demo.stages import StageLog, format_seconds, stage_key, write_json_atomic
from moreclip.errors import ConfigError

log = logging.getLogger(__name__)

REFERENCE_MINUTES = 5.0
STAGES = 7


def default_config_path() -> Path:
    """The demo's training config, shipped inside the package (``configs/demo.yaml`` links to it), so an
    installed wheel runs the demo as a source checkout does."""
    return Path(__file__).resolve().parent / "demo.yaml"


@dataclass
class DemoSettings:
    """Everything that decides what the demo computes (saved as ``DIR/demo.json``)."""

    out: str = "demo"  # output folder
    n: int = 2500  # patients
    minutes: float = REFERENCE_MINUTES  # training budget on 2 CPU cores (sets the number of steps)
    seed: int = 0  # cohort and training seed
    config: str | None = None  # training config (default: configs/demo.yaml)
    overrides: list[str] = field(default_factory=list)  # key=value changes to the training config
    split: tuple[float, float, float] = (0.65, 0.10, 0.25)  # train / val / test (test >= 500 pairs at 2,500)
    missing_xray: float = 0.05
    missing_ecg: float = 0.05
    image_size: int = 256  # side of the generated radiographs (the model sees data.image_size)
    workers: int | None = None  # processes for cohort and cache (default: CPU count, max 8)
    patients: int = 3  # test patients explained in the report
    pool: int = 500  # retrieval candidates per query
    probe_fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    probe_seeds: int = 3
    n_resamples: int = 1000  # bootstrap resamples of every interval
    progress: bool = True

    def cohort_key(self) -> dict:
        return {"n": self.n, "seed": self.seed, "split": list(self.split), "image_size": self.image_size,
                "missing_xray": self.missing_xray, "missing_ecg": self.missing_ecg}  # fmt: skip


def training_config(s: DemoSettings, paths: dict[str, Path]):
    """The resolved training config: the demo YAML, the demo's paths and seed, steps scaled to ``minutes``."""
    from moreclip.train import load_train_config

    if s.minutes <= 0:
        raise ConfigError(f"--minutes must be > 0, got {s.minutes:g}")
    path = Path(s.config) if s.config else default_config_path()
    if not path.is_file():
        raise ConfigError(f"demo config not found: {path} (pass --config)")
    fixed = [f"data.manifest={paths['cohort'] / 'manifest.parquet'}", f"data.cache={paths['cache']}",
             f"train.output_dir={paths['run']}", f"train.seed={s.seed}"]  # fmt: skip
    cfg = load_train_config(path, fixed + list(s.overrides))
    t = cfg.train
    given = {o.split("=", 1)[0].strip() for o in s.overrides}
    if t.max_steps is None:
        raise ConfigError(f"{path}: train.max_steps must be set (steps for {REFERENCE_MINUTES:g} minutes)")
    scale = s.minutes / REFERENCE_MINUTES
    steps = t.max_steps if "train.max_steps" in given else max(1, round(t.max_steps * scale))
    warmup = t.warmup_steps if "train.warmup_steps" in given else min(t.warmup_steps, max(0, steps // 5))
    cap = t.max_minutes if "train.max_minutes" in given else round(s.minutes * 1.5 + 1.0, 2)
    ckpt = (
        t.ckpt_every if "train.ckpt_every" in given else max(1, min(t.ckpt_every or steps, steps // 4 or 1))
    )
    return replace(
        cfg, train=replace(t, max_steps=steps, warmup_steps=warmup, max_minutes=cap, ckpt_every=ckpt)
    )


def _same_run(run: Path, cfg) -> bool:
    """Whether ``run`` was started with ``cfg`` (its saved config.yaml equals it), or holds nothing."""
    from moreclip.config import Config, from_dict, read_yaml, to_dict

    saved = run / "config.yaml"
    if not run.exists():
        return True
    if not saved.is_file():
        return not any(run.iterdir())
    try:
        return to_dict(from_dict(Config, read_yaml(saved))) == to_dict(cfg)
    except Exception:  # unreadable: treat as another run
        return False


def run_demo(out: str | os.PathLike = "demo", n: int = 2500, minutes: float = REFERENCE_MINUTES, seed: int = 0,
             *, echo=print, **kwargs) -> dict:  # fmt: skip
    """Run (or continue) the demo into ``out``; returns the summary also written to ``out/summary.json``.

    Args:
        out: output folder.
        n: patients in the synthetic cohort.
        minutes: training budget (scales the number of steps of the demo config).
        seed: cohort and training seed.
        echo: where the stage log goes (default ``print``).
        **kwargs: other :class:`DemoSettings` fields (``config``, ``overrides``, ``split``, ``patients``,
            ``pool``, ``workers``, ``probe_fractions``, ``probe_seeds``, ``n_resamples``, ``progress``).
    """
    s = DemoSettings(out=str(out), n=int(n), minutes=float(minutes), seed=int(seed), **kwargs)
    root = Path(s.out)
    paths = {k: root / k for k in ("cohort", "cache", "run", "eval", "index", "explain")}
    cfg = training_config(s, paths)
    root.mkdir(parents=True, exist_ok=True)
    from moreclip.config import save_config, to_dict

    save_config(cfg, root / "config.yaml")
    write_json_atomic(root / "demo.json", {**asdict(s), "config_path": str(Path(s.config or default_config_path())),
                                           "train_steps": cfg.train.max_steps})  # fmt: skip
    t_start = time.time()
    stages = StageLog(root, STAGES, echo)
    workers = s.workers or max(1, min(8, os.cpu_count() or 1))
    state: dict = {}

    # 1. cohort -------------------------------------------------------------------------------
    k_cohort = stage_key("cohort", s.cohort_key())
    manifest_path = paths["cohort"] / "manifest.parquet"

    def cohort():
        from moreclip.data.synthetic import generate_cohort

        generate_cohort(paths["cohort"], s.n, s.seed, workers=workers, image_size=s.image_size,
                        missing_xray=s.missing_xray, missing_ecg=s.missing_ecg, split=s.split,
                        overwrite=True, progress=s.progress)  # fmt: skip
        return _cohort_counts(manifest_path)

    stages.run("cohort", f"synthetic cohort: {s.n} patients, seed {s.seed} -> {paths['cohort']}", k_cohort, cohort,
               (manifest_path,))  # fmt: skip

    # 2. cache --------------------------------------------------------------------------------
    from moreclip.data.preprocess import PreprocessOptions

    opts = PreprocessOptions.from_config(cfg.data)
    k_cache = stage_key("cache", k_cohort, asdict(opts))

    def cache():
        from moreclip.data.prepare import prepare_cache

        res = prepare_cache(
            manifest_path, paths["cache"], opts, workers=workers, overwrite=True, progress=s.progress
        )
        return {"counts": res.counts, "problems": len(res.problems), "resumed_shards": res.shards_done_before}

    stages.run("cache", f"decode once into {paths['cache']} ({cfg.data.image_size} px X-rays, "
               f"{cfg.data.ecg_rate} Hz ECGs)", k_cache, cache, (paths["cache"] / "meta.json",))  # fmt: skip

    # 3. train --------------------------------------------------------------------------------
    k_train = stage_key("train", k_cache, to_dict(cfg))

    def train():
        from moreclip.train import pretrain

        if not _same_run(paths["run"], cfg):
            echo(f"  {paths['run']} holds a run with another config: starting over")
            shutil.rmtree(paths["run"])
        _apply_threads(cfg)

        def keep(step, model):  # the trained model stays in memory (its text cache is warm)
            state["model"] = model

        summary = pretrain(cfg, resume="auto", progress=s.progress, after_backward=keep)
        if summary.get("resumed_from"):
            echo(f"  continued from {summary['resumed_from']}")
        if summary.get("status") == "stopped":
            echo(f"  stopped by the time limit ({cfg.train.max_minutes:g} min) at step {summary['steps']} "
                 f"of {cfg.train.max_steps}: this machine is slower than the reference")  # fmt: skip
        keys = ("status", "steps", "samples_per_s", "wall_s", "epochs")
        return {k: summary.get(k) for k in keys}

    stages.run("train", f"pre-train {cfg.model.name} for {cfg.train.max_steps} steps of {cfg.data.batch_size} "
               f"(~{s.minutes:g} min on 2 cores) -> {paths['run']}", k_train, train,
               (paths["run"] / "final" / "model.safetensors",))  # fmt: skip

    # 4.-6. evaluate, index, explain ----------------------------------------------------------
    from moreclip.demo.downstream import run_downstream

    run_downstream(s, cfg, paths, stages, state, k_train, echo)

    # 7. report -------------------------------------------------------------------------------
    from moreclip.report import build_report

    timings = stages.timings
    write_json_atomic(root / "timings.json", {"stages": timings, "total_s": time.time() - t_start})
    stages.run("report", f"HTML report -> {root / 'report.html'}", stage_key("report", time.time()),
               lambda: {"path": str(build_report(root))})  # fmt: skip
    write_json_atomic(root / "timings.json", {"stages": timings, "total_s": time.time() - t_start})
    summary = {"out": str(root), "report": str(root / "report.html"), "timings": timings,
               "total_s": time.time() - t_start, **state.get("summary", {})}  # fmt: skip
    write_json_atomic(root / "summary.json", summary)
    echo(f"done in {format_seconds(summary['total_s'])}")
    return summary


def _apply_threads(cfg) -> None:
    import torch

    torch.set_num_threads(cfg.train.threads or max(1, os.cpu_count() or 1))


def _cohort_counts(manifest_path: Path) -> dict:
    from moreclip.data.manifest import read_manifest

    m = read_manifest(manifest_path)
    return {"n": len(m), "splits": {k: int(v) for k, v in m.df["split"].value_counts().items()},
            "present": {k: int(m.has(k).sum()) for k in ("xray", "ecg", "xray_report", "ecg_report")}}  # fmt: skip
