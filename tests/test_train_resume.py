"""Crash safety: runs SIGKILLed mid-checkpoint and mid-training resume with ``--resume auto`` and end with the
parameters of an uninterrupted run (augmentation, DropKey and LoRA dropout on; DataLoader workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from moreclip.errors import ConfigError
from tests.test_train import SUBPROCESS_ENV, make_setup, read_csv, run_config, write_config

STOCHASTIC = {
    "xray": {"depth": 1, "img_size": 32, "embed_dim": 32, "num_heads": 2, "dropkey_rate": 0.3},
    "ecg": {"depth": 1, "sample_rate": 20, "patch_size": 20, "embed_dim": 32, "num_heads": 2, "dropout": 0.1},
}


def pretrain_cli(config, *extra, fault=None, timeout=300):
    """``moreclip pretrain`` in its own session; returns (exit status, stderr). Checks that nothing the
    run started (DataLoader workers) outlives it, then kills any such leftover."""
    env = {**os.environ, **SUBPROCESS_ENV}
    env.pop("MORECLIP_FAULT", None)
    if fault:
        env["MORECLIP_FAULT"] = fault
    cmd = [
        sys.executable,
        "-m",
        "moreclip",
        "-q",
        "pretrain",
        "--config",
        str(config),
        "--no-progress",
        *extra,
    ]
    log = Path(config).with_suffix(".log")
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            survivors = _wait_group_gone(proc.pid, 10.0)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert not survivors, "processes of the run outlived it"
    return rc, log.read_text()


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


def test_killed_runs_resume_to_the_parameters_of_an_uninterrupted_run(tmp_path):
    from moreclip.train import load_train_config, pretrain
    from moreclip.train_state import list_checkpoints, load_checkpoint

    setup = make_setup(tmp_path)
    train = {"max_steps": 6, "val_every": 3, "ckpt_every": 2, "keep_last": 2, "log_every": 1}
    data = {"num_workers": 1, "augment": True}
    model = {**run_config(setup, tmp_path)["model"], **STOCHASTIC}

    torch.set_num_threads(1)
    ref_cfg = run_config(setup, tmp_path / "ref", train, data)
    ref_cfg["model"] = model
    pretrain(load_train_config(base=ref_cfg), progress=False)

    cfg = run_config(setup, tmp_path / "run", train, data)
    cfg["model"] = model
    path = write_config(cfg, tmp_path / "cfg.yaml")
    ckpts = tmp_path / "run" / "checkpoints"

    # killed in the middle of writing the checkpoint of step 4: steps 2 and 3 (best) stay complete
    rc, out = pretrain_cli(path, fault="checkpoint@4")
    assert rc == -9, out[-2000:]
    assert [s for s, _ in list_checkpoints(ckpts)] == [2, 3]
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(".tmp-step_000004")]
    for _, p in list_checkpoints(ckpts):
        load_checkpoint(p, _tiny_model(cfg))

    # resumed from step 3, killed right after step 5 (checkpoint 4 written)
    rc, out = pretrain_cli(path, "--resume", "auto", fault="step@5")
    assert rc == -9, out[-2000:]
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".tmp-")]
    assert max(s for s, _ in list_checkpoints(ckpts)) == 4

    # resumed from step 4, runs to the end
    rc, out = pretrain_cli(path, "--resume", "auto")
    assert rc == 0, out[-2000:]

    ref = load_file(tmp_path / "ref" / "final" / "model.safetensors")
    got = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert ref.keys() == got.keys()
    worst = max((ref[k].float() - got[k].float()).abs().max().item() for k in ref)
    assert worst <= 1e-5
    changed = [k for k in ref if "lora_B" in k]  # LoRA B starts at zero: training moved it
    assert changed and all(ref[k].abs().max() > 0 for k in changed)

    # the logs read as one run; the loss of every step matches the uninterrupted run
    rows = read_csv(tmp_path / "run" / "logs" / "train.csv")
    ref_rows = read_csv(tmp_path / "ref" / "logs" / "train.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(rows, ref_rows):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-5)

    # a different global batch cannot continue this data order
    with pytest.raises(ConfigError, match="global batch"):
        bad = load_train_config(path, ["data.batch_size=2", "train.max_steps=8"])
        pretrain(bad, resume="auto", progress=False)


def _tiny_model(cfg):
    from moreclip.models import create_model
    from moreclip.train import load_train_config

    return create_model(load_train_config(base=cfg).model)
