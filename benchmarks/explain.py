"""Explanation quality on the synthetic pointing game, and the cost of one explanation.

    python benchmarks/explain.py                        # seeds 0-4, depth-1 ViT, 800 X-ray steps
    python benchmarks/explain.py --seeds 0 1 --depth 2 --steps 800

For each seed a tiny model is trained as in tests/test_explain_pointing.py (tests/explain_model.py:
effusion vs the same patient drawn without it, 200 patients, one thread), and its initial random weights
are kept as the control. On 64 held-out radiographs with a large one-sided effusion (32 drawn on each side
of the image), every X-ray map method (``rollout``, ``text`` = Chefer gradient-weighted attention,
``gradient`` = gradient x input; prompt "pleural effusion") is scored by

- ``side``: mean fraction of the map's mass on the image half holding the effusion (0.5: no information),
- ``hit``: pointing game, fraction of maps whose maximum lies on that half,
- ``box``: mean fraction of the mass inside the effusion's box (``box_area``: what a flat map gets),

plus the model's accuracy at telling the test images from their effusion-free counterparts. Also timed:
CPU seconds of ``xray_maps`` (all methods) and ``ecg_maps`` for one input. Writes
``benchmarks/out/explain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def score(model, data, method: str, prompt: str) -> dict[str, float]:
    from moreclip.explain import mass_in_box, pointing_hit, xray_relevance
    from tests.explain_model import side_half

    maps = xray_relevance(model, data.xray, prompt, [method])[method].numpy()
    halves = [side_half(b) for b in data.boxes]
    side = np.array([mass_in_box(m, h) for m, h in zip(maps, halves)])
    n = len(side) // 2
    return {
        "side": float(side.mean()),
        "side_image_left": float(side[:n].mean()),
        "side_image_right": float(side[n:].mean()),
        "hit": float(np.mean([pointing_hit(m, h) for m, h in zip(maps, halves)])),
        "box": float(np.mean([mass_in_box(m, b) for m, b in zip(maps, data.boxes)])),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=800, help="X-ray training steps")
    p.add_argument("--depth", type=int, default=1, help="X-ray ViT blocks")
    p.add_argument("--out", default="benchmarks/out/explain.json")
    args = p.parse_args()

    import torch

    from moreclip.explain import ecg_maps, xray_maps
    from tests import explain_model as em

    em.ARCH["xray"]["depth"] = args.depth
    f = em.FINDINGS["effusion"]
    runs = []
    for seed in args.seeds:
        t0 = time.process_time()
        trained, random_model, test, counterfactual = em.trained_and_random("effusion", xray_steps=args.steps,
                                                                            seed=seed)  # fmt: skip
        train_cpu = time.process_time() - t0
        both = em.concat(test, counterfactual)
        run = {"seed": seed, "train_cpu_s": round(train_cpu, 1), "box_area": float(np.mean(
            [(b[2] - b[0]) * (b[3] - b[1]) for b in test.boxes]))}  # fmt: skip
        for name, model in (("trained", trained), ("random", random_model)):
            run[name] = {"accuracy": em.accuracy(model, both, f)["xray"]}
            for method in ("rollout", "text", "gradient"):
                run[name][method] = score(model, test, method, f.prompt)
        torch.set_num_threads(1)
        t = time.process_time()
        xray_maps(trained, test.images[0], text=f.prompt, methods="all")
        run["xray_maps_cpu_s"] = round(time.process_time() - t, 3)
        t = time.process_time()
        ecg_maps(trained, test.ecg_mv[0], text="sinus tachycardia", fs=500)
        run["ecg_maps_cpu_s"] = round(time.process_time() - t, 3)
        runs.append(run)
        tr, rd = run["trained"], run["random"]
        print(
            f"seed {seed}: accuracy {tr['accuracy']:.3f} (random {rd['accuracy']:.3f}), train {train_cpu:.0f} s CPU"
        )
        for method in ("rollout", "text", "gradient"):
            a, b = tr[method], rd[method]
            print(f"  {method:<9} side {a['side']:.3f} / {b['side']:.3f}   hit {a['hit']:.3f} / {b['hit']:.3f}   "
                  f"box {a['box']:.3f} / {b['box']:.3f}  (trained / random; flat map: side 0.5, "
                  f"box {run['box_area']:.3f})")  # fmt: skip
    out = {
        "benchmark": "explain",
        "args": vars(args),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "runs": runs,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
