"""Forward + backward throughput of the registered models on CPU, and the share of time per encoder.

    python benchmarks/step.py                          # tiny, small, base; batch 32; 1 warm-up + 2 steps
    python benchmarks/step.py --models tiny --steps 5 --batch 64

One training step = ``model(batch)`` on every modality (all present), the mean pairwise InfoNCE over all
six pairs, ``backward()``. The reports are those of the synthetic cohort (``moreclip.data.synthetic``,
drawn in memory: X-ray ~70 tokens, ECG ~40 tokens, all distinct). Per model: samples/s (wall and per
CPU-second of this process), peak resident memory, and the share of forward + backward time of each
encoder (X-ray, ECG, text = both report streams) measured in isolation, with the model's config as
registered (text prefix cache off unless the config turns it on).

Text prefix cache (``model.text.prefix_cache_mb``, models whose LoRA sits above frozen layers): the step
cost with the cache ``off`` (same model, uncached path), ``cold`` (a batch of reports never seen, every
step: the first epoch) and ``warm`` (reports already cached: later epochs without text augmentation),
and the warm-over-off speed-up in CPU time; and, without a model, the cache's hit rate per epoch under
the data pipeline's sentence shuffle/drop text augmentation (synthetic reports, unbounded cache).
``--threads 1`` gives the steadiest CPU times on a busy machine (idle intra-op threads spin).
Each model runs in its own subprocess so that peak memory is per model. The load average is recorded:
on a shared machine wall-clock figures are noisy, CPU time less so.
Writes ``benchmarks/out/step.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


VARIANTS = ("off", "cold", "warm")


def synthetic_reports(start: int, n: int) -> tuple[list[str], list[str]]:
    """X-ray and ECG reports of synthetic patients ``start .. start + n - 1`` (cohort seed 0, no files)."""
    from moreclip.data.synthetic import render_patient

    ps = [render_patient(0, i, 8, xray=False) for i in range(start, start + n)]
    return [p.xray_report for p in ps], [p.ecg_report for p in ps]


def make_batch(model, n: int, seed: int = 0) -> dict:
    """A batch of ``n`` samples: random X-ray/ECG tensors and the reports of synthetic patients
    ``seed * n ..`` (different seeds, different reports)."""
    import torch

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    T = round(cfg.ecg.sample_rate * cfg.ecg.seconds)
    xray_reports, ecg_reports = synthetic_reports(seed * n, n)
    return {
        "xray": torch.randn(n, 1, cfg.xray.img_size, cfg.xray.img_size, generator=g),
        "ecg": torch.randn(n, 12, T, generator=g),
        "xray_report": xray_reports,
        "ecg_report": ecg_reports,
        "mask": {m: torch.ones(n, dtype=torch.bool) for m in ("xray", "ecg", "xray_report", "ecg_report")},
    }


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def worker(name: str, batch_size: int, warmup: int, steps: int) -> dict:
    """Benchmark one model in this process; returns the figures."""
    import torch

    from moreclip.losses import multimodal_clip_loss
    from moreclip.models import create_model

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    model = create_model(name).train()
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch = make_batch(model, batch_size)
    tokens = {
        k: int(model.text["text"].tokenize(batch[k])["attention_mask"].sum(1).float().mean())
        for k in ("xray_report", "ecg_report")
    }

    def step(b=batch):
        emb = model(b)
        loss, _ = multimodal_clip_loss(emb, b["mask"], model.temperature_scale())
        loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    walls, cpus = [], []
    for _ in range(steps):
        w, c = timed(step)
        walls.append(w)
        cpus.append(c)

    def encoder_step(part):
        def run():
            if part == "text":
                z = model.encode_text(batch["xray_report"]) + model.encode_text(batch["ecg_report"])
            else:
                z = model.encode(part, batch[part])
            z.sum().backward()
            model.zero_grad(set_to_none=True)

        return run

    parts = {p: timed(encoder_step(p)) for p in ("xray", "ecg", "text")}
    cache = prefix_cache_variants(model, step, batch_size, warmup, steps)
    cpu_total = sum(c for _, c in parts.values())
    wall = sorted(walls)[len(walls) // 2]
    cpu = sorted(cpus)[len(cpus) // 2]
    return {
        "model": name,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "step_wall_s": wall,
        "step_cpu_s": cpu,
        "samples_per_s": batch_size / wall,
        "samples_per_cpu_s": batch_size / cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_rss_mib": (rss_model - rss0) / 1024,
        "encoder_cpu_s": {p: c for p, (_, c) in parts.items()},
        "encoder_share": {p: c / cpu_total for p, (_, c) in parts.items()},
        "mean_report_tokens": tokens,
        "prefix_cache": cache,
        "parameters": model.parameter_summary()["total"],
        "input": {
            "xray": list(batch["xray"].shape),
            "ecg": list(batch["ecg"].shape),
            "text_max_length": model.config.text.max_length,
        },
    }


def prefix_cache_variants(model, step, batch_size: int, warmup: int, steps: int) -> dict | None:
    """Step cost with the text prefix cache off, cold and warm; None when it cannot apply to the model.

    The same weights and batch throughout: ``off`` is the uncached path, then a cache of 1 GiB (or
    the configured size, if larger), emptied before every ``cold`` step.
    """
    towers = list(model.text.values())
    if not hasattr(towers[0], "set_prefix_cache"):  # a version without the cache
        return None
    mb = max(model.config.text.prefix_cache_mb, 1024.0)
    batch = make_batch(model, batch_size, seed=999)

    def run(cold: bool = False) -> dict:
        for _ in range(warmup):
            step(batch)
        before = [t.cache_stats() or {"hits": 0, "misses": 0} for t in towers]
        cpus, walls = [], []
        for _ in range(steps):
            for t in towers if cold else ():
                t.clear_cache()
            w, c = timed(lambda: step(batch))
            walls.append(w)
            cpus.append(c)
        after = [t.cache_stats() or {"hits": 0, "misses": 0, "bytes": 0} for t in towers]
        hits = sum(a["hits"] - b["hits"] for a, b in zip(after, before))
        looks = hits + sum(a["misses"] - b["misses"] for a, b in zip(after, before))
        cpu, wall = sorted(cpus)[len(cpus) // 2], sorted(walls)[len(walls) // 2]
        return {
            "step_cpu_s": cpu,
            "step_wall_s": wall,
            "samples_per_cpu_s": batch_size / cpu,
            "samples_per_s": batch_size / wall,
            "hit_rate": hits / looks if looks else None,
            "cache_mib": sum(a["bytes"] for a in after) / 2**20,
        }

    for t in towers:
        t.set_prefix_cache(0)
    out = {"off": run()}
    for t in towers:
        t.set_prefix_cache(mb)
    if any(t.prefix is None for t in towers):
        return None
    out["split_layer"] = towers[0].prefix.split
    out["cold"] = run(cold=True)
    out["warm"] = run()
    out["speedup_warm_vs_off"] = out["off"]["step_cpu_s"] / out["warm"]["step_cpu_s"]
    out["speedup_cold_vs_off"] = out["off"]["step_cpu_s"] / out["cold"]["step_cpu_s"]
    for t in towers:  # back to the registered config
        t.set_prefix_cache(model.config.text.prefix_cache_mb)
    return out


def augmented_hit_rates(n_patients: int = 200, epochs: int = 10, seed: int = 0) -> dict:
    """Per-epoch share of reports whose exact text was seen in an earlier epoch (the prefix cache's hit
    rate with an unbounded cache), under the data pipeline's sentence shuffle/drop augmentation.

    Returns ``{"shuffle=<p>,drop=<q>": [hit rate of epoch 1, 2, ...], ...}`` for the default
    :class:`~moreclip.config.AugmentConfig` and lighter settings; both report kinds pooled.
    """
    import numpy as np

    from moreclip.config import AugmentConfig
    from moreclip.data.augment import shuffle_sentences

    xr, er = synthetic_reports(0, n_patients)
    texts = [t for t in xr + er if t]
    d = AugmentConfig()
    out = {}
    for shuffle, drop in ((d.text_shuffle, d.text_drop), (d.text_shuffle, 0.0), (0.2, 0.0), (0.0, 0.0)):
        rng, seen, rates = np.random.default_rng(seed), set(), []
        for _ in range(epochs):
            keys = [shuffle_sentences(t, rng, shuffle, drop) for t in texts]
            rates.append(sum(k in seen for k in keys) / len(keys))
            seen.update(keys)
        out[f"shuffle={shuffle},drop={drop}"] = rates
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny", "small", "base"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "step.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        res = worker(args.worker, args.batch, args.warmup, args.steps)
        res["threads"] = torch.get_num_threads()
        print("RESULT " + json.dumps(res))
        return 0

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    results = []
    for name in args.models:
        load_before = os.getloadavg()
        cmd = [sys.executable, __file__, "--worker", name, "--batch", str(args.batch)]
        cmd += ["--warmup", str(args.warmup), "--steps", str(args.steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        res = json.loads(line[-1][len("RESULT ") :])
        res["loadavg_before"] = load_before
        res["loadavg_after"] = os.getloadavg()
        results.append(res)
        share = ", ".join(f"{k} {v:.0%}" for k, v in res["encoder_share"].items())
        print(
            f"{name:<6} batch {args.batch}: {res['samples_per_s']:7.1f} samples/s wall "
            f"({res['step_wall_s']:.2f} s/step), {res['samples_per_cpu_s']:7.1f} samples/CPU-s, "
            f"peak RSS {res['peak_rss_mib']:.0f} MiB; time share {share}; load {res['loadavg_after'][0]:.1f}"
        )
        pc = res["prefix_cache"]
        if pc:
            print(
                f"{'':<6} text prefix cache (layers < {pc['split_layer']}): CPU s/step "
                + ", ".join(
                    f"{k} {pc[k]['step_cpu_s']:.2f} ({pc[k]['samples_per_cpu_s']:.1f}/CPU-s)"
                    for k in VARIANTS
                )
                + f"; speed-up over off: warm {pc['speedup_warm_vs_off']:.2f}x, "
                + f"cold {pc['speedup_cold_vs_off']:.2f}x"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    import torch

    meta["torch"] = torch.__version__
    rates = augmented_hit_rates()
    for k, v in rates.items():
        print(
            f"prefix cache hit rate per epoch with text augmentation {k}: " + " ".join(f"{r:.2f}" for r in v)
        )
    out.write_text(json.dumps({"meta": meta, "results": results, "augmented_hit_rates": rates}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
