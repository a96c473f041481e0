"""Vector index speed and quality: build time, single-query latency p50/p99 at k=10, recall@10 vs exact.

    python benchmarks/index.py                          # 1,000,000 x 256, auto kind (HNSW), 2 threads
    python benchmarks/index.py --n 200000 --kind ivf    # a smaller run / another index kind
    python benchmarks/index.py --data uniform           # worst case: uniformly random unit vectors

Data (``--data``): ``clustered`` (default) imitates embeddings: 1,000 Gaussian clusters in a 32-dim
latent space, mapped into ``--dim`` dimensions by a random orthonormal map, plus isotropic noise, then
L2-normalised. Real embeddings have a low intrinsic dimension; ``uniform`` (random unit vectors, where
all points are nearly equidistant) is the hardest case for every approximate index and far from real use.
Queries are further draws from the same distribution, not stored vectors.

Timed: building the index through :class:`moreclip.index.VectorIndex` (normalisation, FAISS add, metadata),
``--latency-queries`` single-query calls of ``VectorIndex.search(q, k=10)`` (the whole API path, result
table included; p50 / p99 / mean) and one batched call (queries per second). Recall@10 is measured on
``--recall-queries`` queries against an exact brute-force search in numpy. CPU time is recorded beside
wall time, as is the load average (the machine may be shared). Writes ``benchmarks/out/index.json``.
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


def make_vectors(n: int, dim: int, data: str, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors (see the module docstring), generated in chunks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    if data == "clustered":
        latent = 32
        basis = np.linalg.qr(rng.standard_normal((dim, latent)))[0].T.astype(np.float32)  # (latent, dim)
        centres = rng.standard_normal((1000, latent)).astype(np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        if data == "clustered":
            z = centres[rng.integers(0, len(centres), m)] + 0.5 * rng.standard_normal(
                (m, latent), dtype=np.float32
            )
            x = z @ basis + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
        else:
            x = rng.standard_normal((m, dim), dtype=np.float32)
        out[a : a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_topk(queries: np.ndarray, base: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Rows of the exact top-k inner products, ``(Q, k)``, by brute force over base chunks."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for a in range(0, len(base), chunk):
        s = queries @ base[a : a + chunk].T  # (Q, chunk)
        s_all = np.concatenate([best_s, s], 1)
        i_all = np.concatenate([best_i, np.arange(a, a + s.shape[1])[None].repeat(len(queries), 0)], 1)
        top = np.argpartition(-s_all, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s_all, top, 1), np.take_along_axis(i_all, top, 1)
    return best_i


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="stored vectors")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--data", choices=("clustered", "uniform"), default="clustered")
    p.add_argument("--kind", choices=("auto", "flat", "hnsw", "ivf"), default="auto")
    p.add_argument("--threads", type=int, default=2, help="FAISS threads")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--latency-queries", type=int, default=1000)
    p.add_argument("--recall-queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "index.json"))
    args = p.parse_args(argv)

    from moreclip.index import IndexParams, VectorIndex

    t = time.perf_counter()
    n_q = max(args.latency_queries, args.recall_queries)
    allv = make_vectors(args.n + n_q, args.dim, args.data, args.seed)
    base, queries = allv[: args.n], allv[args.n :]
    ids = np.char.add("s", np.arange(args.n).astype(str)).tolist()
    print(f"data: {args.n} x {args.dim} {args.data} in {time.perf_counter() - t:.1f} s", flush=True)

    params = IndexParams(kind=args.kind, threads=args.threads)
    t, c = time.perf_counter(), time.process_time()
    index = VectorIndex.build({"vectors": (ids, base)}, params=params, progress=True)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - c
    print(f"build: {index!r} in {build_s:.1f} s wall, {build_cpu:.1f} s CPU", flush=True)

    lat = []
    for q in queries[: args.latency_queries]:
        t = time.perf_counter()
        index.search(q[None], "vectors", k=args.k)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1000
    t = time.perf_counter()
    index.search(queries[: args.latency_queries], "vectors", k=args.k)
    batch_s = time.perf_counter() - t

    rq = queries[: args.recall_queries]
    truth = exact_topk(rq, base, args.k)
    found = index.search(rq, "vectors", k=args.k).rows
    recall = float(np.mean([len(set(f) & set(g)) / args.k for f, g in zip(found, truth)]))

    import faiss

    result = {
        "n": args.n,
        "dim": args.dim,
        "data": args.data,
        "k": args.k,
        "kind": index.kind("vectors"),
        "params": {k: v for k, v in vars(params).items()},
        "build_s": round(build_s, 2),
        "build_cpu_s": round(build_cpu, 2),
        "latency_ms": {
            "p50": round(float(np.percentile(lat_ms, 50)), 3),
            "p99": round(float(np.percentile(lat_ms, 99)), 3),
            "mean": round(float(lat_ms.mean()), 3),
            "queries": len(lat_ms),
        },
        "batch_qps": round(args.latency_queries / batch_s, 1),
        f"recall@{args.k}": round(recall, 4),
        "recall_queries": len(rq),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
        },
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
