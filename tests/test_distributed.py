"""DDP on CPU (gloo, 2 processes under torchrun): the first step's loss and gradients equal a 1-process run on
the global batch; only rank 0 writes; an exception on one rank ends the whole job.

Run as a script, this file is the torchrun worker: ``python tests/test_distributed.py CONFIG GRADS_DIR``.
"""

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

STEADY = {  # no stochastic part: DropKey, dropout, LoRA dropout and augmentation off; linear heads
    "head": "linear",
    "xray": {"depth": 1, "img_size": 32, "embed_dim": 32, "num_heads": 2, "dropkey_rate": 0.0},
    "ecg": {
        "depth": 1,
        "sample_rate": 20,
        "patch_size": 20,
        "embed_dim": 32,
        "num_heads": 2,
        "dropkey_rate": 0.0,
    },
}


def dump_first_grads(out_dir: Path, rank: int):
    """An ``after_backward`` hook writing the gradients of step 0 to ``out_dir/grads_rank<rank>.safetensors``."""

    def hook(step, model):
        from safetensors.torch import save_file

        if step == 0:
            grads = {
                n: p.grad.detach().contiguous() for n, p in model.named_parameters() if p.grad is not None
            }
            save_file(grads, out_dir / f"grads_rank{rank}.safetensors")

    return hook


def torchrun(args: list[str], env_extra: dict | None = None, timeout: float = 240) -> tuple[int, str, float]:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS`` in its own session; returns
    (exit status, output, seconds). Kills what it started if it outlives ``timeout``."""
    from tests.test_train import SUBPROCESS_ENV

    env = {**os.environ, **SUBPROCESS_ENV, **(env_extra or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, time.time() - t0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.test_train import make_setup

    return make_setup(tmp_path_factory.mktemp("ddp"), n=40)


def _config(setup, out: Path, batch_size: int, max_steps: int, **train):
    from tests.test_train import run_config

    cfg = run_config(
        setup,
        out,
        train={"max_steps": max_steps, "val_every": 0, "ckpt_every": 0, "log_every": 1, **train},
        data={"batch_size": batch_size, "augment": False, "num_workers": 0},
    )
    cfg["model"] = {
        **cfg["model"],
        **STEADY,
        "text": {**cfg["model"]["text"], "lora_dropout": 0.0},
    }
    return cfg


def test_gather_helpers_are_the_identity_in_one_process():
    from moreclip import distributed as D

    x = torch.randn(3, 4, requires_grad=True)
    assert D.gather_features(x) is x
    masks = {"xray": torch.tensor([True, False, True])}
    assert D.gather_masks(masks) is masks
    assert D.all_gather_object({"a": 1}) == [{"a": 1}] and D.any_rank(True) and not D.any_rank(False)
    info = D.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)


def test_two_process_ddp_first_step_equals_one_process_on_the_global_batch(setup, tmp_path):
    import csv
    import json

    from safetensors.torch import load_file

    from moreclip.train import load_train_config, pretrain
    from tests.test_train import write_config

    B = 3  # per process; the global batch is 2B
    ddp_cfg = write_config(_config(setup, tmp_path / "ddp", B, max_steps=2), tmp_path / "ddp.yaml")
    rc, out, _ = torchrun([__file__, str(ddp_cfg), str(tmp_path)])
    assert rc == 0, out[-4000:]

    torch.set_num_threads(1)
    one = tmp_path / "one"
    one.mkdir()
    cfg = load_train_config(base=_config(setup, tmp_path / "single", 2 * B, max_steps=1))
    pretrain(cfg, progress=False, after_backward=dump_first_grads(one, 0))

    def first_loss(run):
        with open(tmp_path / run / "logs" / "train.csv", newline="") as f:
            return float(next(csv.DictReader(f))["loss"])

    assert first_loss("ddp") == pytest.approx(first_loss("single"), abs=1e-5)
    ref = load_file(one / "grads_rank0.safetensors")
    for rank in (0, 1):
        got = load_file(tmp_path / f"grads_rank{rank}.safetensors")
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5, msg=k)
    assert "logit_scale" in ref and ref["logit_scale"].abs() > 0  # the scale gets its gradient under DDP too
    assert any("lora_B" in k for k in ref) and any(k.startswith("ecg.") for k in ref)

    # only rank 0 wrote: one summary with world_size 2, one set of logs and checkpoints
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 2 * B and summary["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step_000002"]


def test_an_exception_on_one_rank_ends_every_rank(setup, tmp_path):
    from tests.test_train import write_config

    cfg = write_config(_config(setup, tmp_path / "run", 3, max_steps=50), tmp_path / "cfg.yaml")
    rc, out, seconds = torchrun(
        ["-m", "moreclip", "pretrain", "--config", str(cfg), "--no-progress"],
        env_extra={"MORECLIP_FAULT": "step@2@1", "MORECLIP_FAULT_RAISE": "1"},
    )
    assert rc != 0 and "injected fault at step 2 on rank 1" in out
    assert not (tmp_path / "run" / "summary.json").exists()


if __name__ == "__main__":  # the torchrun worker of the DDP test
    from moreclip.train import load_train_config, pretrain

    config, out_dir = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    pretrain(load_train_config(config), progress=False, after_backward=dump_first_grads(out_dir, rank))
