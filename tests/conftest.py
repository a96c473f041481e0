"""Shared fixtures. Tests never touch the network or a GPU."""

from __future__ import annotations

import os

# before anything imports transformers / huggingface_hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One intra-op thread per test process: `make test` runs two pytest workers on two cores, and more
# threads only oversubscribe them (idle OpenMP threads spin while the other worker holds the cores).
# It also keeps forked DataLoader workers away from a parent's OpenMP pool.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)
