"""Forward + backward throughput of the registered models on CPU, and the share of time per encoder.

    python benchmarks/step.py                          # tiny, small, base; batch 32; 1 warm-up + 2 steps
    python benchmarks/step.py --models tiny --steps 5 --batch 64

One training step = ``model(batch)`` on every modality (all present), the mean pairwise InfoNCE over all
six pairs, ``backward()``. Reports of realistic length (~60-90 tokens) are generated from templates.
Per model: samples/s (wall and per CPU-second of this process), peak resident memory, and the share of
forward + backward time of each encoder (X-ray, ECG, text = both report streams) measured in isolation.
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

XRAY_SENTENCES = [
    "The heart size is mildly enlarged.",
    "There is a small left pleural effusion with adjacent atelectasis.",
    "No pneumothorax is seen.",
    "Mild pulmonary vascular congestion without frank edema.",
    "The mediastinal contours are within normal limits.",
    "IMPRESSION: Cardiomegaly with small effusion, no focal consolidation.",
]
ECG_SENTENCES = [
    "Sinus rhythm at 72 bpm.",
    "Left ventricular hypertrophy by voltage criteria.",
    "Nonspecific ST-T wave changes in the lateral leads.",
    "Borderline first degree AV block.",
    "Abnormal ECG, compared with the previous tracing no significant change.",
]


def make_batch(model, n: int, seed: int = 0) -> dict:
    import torch

    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    T = round(cfg.ecg.sample_rate * cfg.ecg.seconds)

    def report(sents, i, k):
        return " ".join(sents[(i + j) % len(sents)] for j in range(k))

    return {
        "xray": torch.randn(n, 1, cfg.xray.img_size, cfg.xray.img_size, generator=g),
        "ecg": torch.randn(n, 12, T, generator=g),
        "xray_report": [report(XRAY_SENTENCES, i, 5) for i in range(n)],
        "ecg_report": [report(ECG_SENTENCES, i, 4) for i in range(n)],
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

    def step():
        emb = model(batch)
        loss, _ = multimodal_clip_loss(emb, batch["mask"], model.temperature_scale())
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
        "parameters": model.parameter_summary()["total"],
        "input": {
            "xray": list(batch["xray"].shape),
            "ecg": list(batch["ecg"].shape),
            "text_max_length": model.config.text.max_length,
        },
    }


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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    import torch

    meta["torch"] = torch.__version__
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
