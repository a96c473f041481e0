"""Pre-training loop: outputs of a run, schedules and optimizer groups, missing modalities, time budget, bad configs.

A tiny model (1-block encoders on 32 px radiographs and 20 Hz ECGs, a 2-layer 32-wide BERT with the MiniLM
tokenizer) trains on a small synthetic cohort, so a run takes a few seconds. The builders here are shared
with test_train_resume.py and test_distributed.py.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from moreclip.cli import main
from moreclip.config import DataConfig
from moreclip.errors import ConfigError

SUBPROCESS_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
}


def make_setup(root: Path, n: int = 48, missing: float = 0.05) -> dict:
    """A synthetic cohort, its cache (32 px, 20 Hz x 10 s) and a tiny local BERT under ``root``."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from moreclip.data.prepare import prepare_cache
    from moreclip.data.preprocess import PreprocessOptions
    from moreclip.data.synthetic import generate_cohort
    from moreclip.models.text import resolve_backbone

    bert = root / "bert"
    tok = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(bert)
    tok.save_pretrained(bert)
    manifest = generate_cohort(
        root / "cohort", n, 0, image_size=64, missing_xray=missing, missing_ecg=missing, progress=False
    )
    cache = root / "cache"
    opts = PreprocessOptions.from_config(DataConfig(image_size=32, ecg_rate=20))
    prepare_cache(manifest, cache, opts, progress=False)
    return {"root": root, "bert": str(bert), "manifest": str(manifest), "cache": str(cache)}


def run_config(
    setup: dict, out: Path, train: dict | None = None, data: dict | None = None, model=None
) -> dict:
    """A run config dict over ``setup``; ``train``/``data``/``model`` entries override the defaults."""
    cfg = {
        "model": {
            "name": "tiny",
            "embed_dim": 16,
            "xray": {"depth": 1, "img_size": 32, "embed_dim": 32, "num_heads": 2},
            "ecg": {"depth": 1, "sample_rate": 20, "patch_size": 20, "embed_dim": 32, "num_heads": 2},
            "text": {"model_name": setup["bert"], "lora_layers": [-1], "max_length": 32},
        },
        "data": {
            "cache": setup["cache"],
            "image_size": 32,
            "ecg_rate": 20,
            "batch_size": 4,
            "num_workers": 0,
        },
        "train": {
            "output_dir": str(out),
            "max_steps": 6,
            "warmup_steps": 2,
            "log_every": 1,
            "val_every": 3,
            "ckpt_every": 2,
            "tensorboard": False,
        },
    }
    for section, extra in (("train", train), ("data", data), ("model", model)):
        for k, v in (extra or {}).items():
            cfg[section][k] = v
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the test machine's cores are shared, and OpenMP spinning slows tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("train"))


# ------------------------------------------------------------------------------------ schedule / optimizer
def test_lr_schedule_warms_up_then_follows_cosine_restarts_or_constant():
    from moreclip.optim import lr_factor

    f = [lr_factor(s, 110, warmup_steps=10) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.5) and f[110] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warm-up
    assert lr_factor(110, 110, 10, min_lr_ratio=0.1) == pytest.approx(0.1)
    r = [lr_factor(s, 1000, 0, "cosine_restarts", restart_steps=20) for s in range(60)]
    assert r[0] == r[20] == r[40] == pytest.approx(1.0) and r[10] == pytest.approx(0.5)
    assert r[19] < 0.01 and r[39] < 0.01
    assert lr_factor(500, 1000, 5, "constant") == 1.0
    with pytest.raises(ConfigError, match="schedule"):
        lr_factor(50, 100, 0, "linear")


def test_adamw_groups_leave_norms_biases_and_logit_scale_undecayed(setup):
    from moreclip.models import create_model
    from moreclip.optim import create_optimizer
    from moreclip.train import load_train_config

    cfg = load_train_config(base=run_config(setup, Path("unused")), overrides=["train.weight_decay=0.05"])
    model = create_model(cfg.model)
    opt = create_optimizer(model, cfg.train)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert "logit_scale" in plain and "logit_scale" not in decayed
    assert all(not n.endswith(".bias") and "norm" not in n for n in decayed)
    assert any("lora_A" in n for n in decayed) and any(n.endswith("norm.weight") for n in plain)
    assert len(decayed) + len(plain) == sum(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------------------------ a run
def test_run_writes_config_logs_checkpoints_final_best_and_summary(setup, tmp_path):
    import moreclip
    from moreclip.train import load_train_config, pretrain
    from moreclip.train_state import list_checkpoints, load_checkpoint

    out = tmp_path / "run"
    cfg = load_train_config(base=run_config(setup, out, train={"keep_last": 1, "tensorboard": True}))
    summary = pretrain(cfg, progress=False)

    assert summary["status"] == "complete" and summary["steps"] == 6 and summary["samples"] == 24
    assert summary["versions"]["torch"] == torch.__version__ and summary["samples_per_s"] > 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 6 and saved["model"]["xray"]["depth"] == 1
    assert saved["model"]["ecg"]["dropkey_rate"] == 0.1  # the registry model's own value under the overrides

    train_log = read_csv(out / "logs" / "train.csv")
    assert [int(r["step"]) for r in train_log] == [1, 2, 3, 4, 5, 6]
    pairs = [k for k in train_log[0] if k.startswith("loss/")]
    assert len(pairs) == 6  # every pair of the four modalities
    assert all(math.isfinite(float(r[k])) for r in train_log for k in ["loss", "lr", "samples_per_s", *pairs])
    val_log = read_csv(out / "logs" / "val.csv")
    assert [int(r["step"]) for r in val_log] == [3, 6]
    assert {"loss", "mean_recall@1", "mean_recall@5", "recall@1/xray->ecg", "recall@5/ecg->xray"} <= set(
        val_log[0]
    )
    assert list((out / "logs" / "tb").glob("events.out.tfevents.*"))

    # last checkpoint (keep_last=1) plus the best; every one complete and loadable
    steps = [s for s, _ in list_checkpoints(out / "checkpoints")]
    best = summary["best"]
    assert best["metric"] == "val/mean_recall@1" and best["value"] == max(
        float(r["mean_recall@1"]) for r in val_log
    )
    assert steps == sorted({6, best["step"]})
    final = moreclip.load(out / "final")
    last = moreclip.create_model(cfg.model)
    state = load_checkpoint(out / "checkpoints" / "step_000006", last)
    assert state["epoch"] == 0 and state["batch"] == 6 and state["global_batch"] == 4
    for (n, a), (_, b) in zip(final.state_dict().items(), last.state_dict().items()):
        assert torch.equal(a, b), n
    assert moreclip.load(out / "best").config == final.config


def test_modalities_missing_in_part_of_the_data_train_without_nan(tmp_path):
    from moreclip.train import load_train_config, pretrain

    setup = make_setup(tmp_path, n=40, missing=0.45)  # ~45% without X-ray, ~45% without ECG, never both
    out = tmp_path / "run"
    cfg = load_train_config(
        base=run_config(
            setup, out, train={"max_steps": 5, "val_every": 0, "ckpt_every": 0}, data={"batch_size": 3}
        )
    )
    pretrain(cfg, progress=False)
    rows = read_csv(out / "logs" / "train.csv")
    pairs = [k for k in rows[0] if k.startswith("loss/")]
    assert set(pairs) == {
        "loss/xray:ecg", "loss/xray:xray_report", "loss/xray:ecg_report",
        "loss/ecg:xray_report", "loss/ecg:ecg_report", "loss/xray_report:ecg_report",
    }  # fmt: skip
    values = [float(r[k]) for r in rows for k in ["loss", "grad_norm", *pairs]]
    assert all(math.isfinite(v) for v in values)
    assert any(float(r["loss/xray:ecg"]) == 0.0 for r in rows)  # a batch with < 2 complete X-ray/ECG rows
    val = read_csv(out / "logs" / "val.csv")[0]
    assert math.isfinite(float(val["loss"])) and float(val["n/xray:ecg"]) < float(val["n/ecg:ecg_report"])


@pytest.mark.parametrize(
    "train, pairs",
    [
        ({"loss": "symile"}, ["xray->ecg", "ecg->report", "report->xray"]),
        ({"pairs": "report-anchored", "accum_steps": 2}, ["xray->report", "report->ecg"]),
    ],
)
def test_symile_and_report_anchored_objectives_train_and_validate(setup, tmp_path, train, pairs):
    from moreclip.train import load_train_config, pretrain

    out = tmp_path / "run"
    cfg = load_train_config(base=run_config(setup, out, train={"max_steps": 2, "val_every": 0, **train}))
    summary = pretrain(cfg, progress=False)
    assert summary["samples"] == 2 * 4 * cfg.train.accum_steps
    val = read_csv(out / "logs" / "val.csv")[0]
    assert all(f"recall@1/{p}" in val for p in pairs) and math.isfinite(float(val["loss"]))


def test_max_minutes_stops_with_checkpoint_final_model_and_summary(setup, tmp_path):
    from moreclip.train import load_train_config, pretrain
    from moreclip.train_state import list_checkpoints

    out = tmp_path / "run"
    cfg = load_train_config(base=run_config(setup, out, train={"max_steps": 1000, "max_minutes": 1e-4}))
    summary = pretrain(cfg, progress=False)
    assert summary["status"] == "stopped" and summary["stop_reason"].startswith("max_minutes")
    assert summary["steps"] == 1
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [1]
    assert (out / "final" / "model.safetensors").is_file() and summary["val"] is not None


# ------------------------------------------------------------------------------------ shipped configs
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", ["demo", "mimic", "ptbxl", "more"])
def test_shipped_configs_resolve_their_registry_model_and_fit_together(setup, name):
    from moreclip.train_setup import check_config, load_train_config

    cfg = load_train_config(
        CONFIGS / f"{name}.yaml", [f"data.manifest={setup['manifest']}", "data.cache=null"]
    )
    check_config(cfg)  # image size, ECG rate, pairs, ranges
    assert cfg.model.name == {"demo": "tiny", "mimic": "base", "ptbxl": "small", "more": "more"}[name]


def test_more_config_is_the_published_recipe():
    from moreclip.train_setup import load_train_config

    cfg = load_train_config(CONFIGS / "more.yaml")
    m, d, t = cfg.model, cfg.data, cfg.train
    assert (m.xray.model_name, m.xray.dropkey_rate, m.embed_dim, m.head) == (
        "vit_base_patch16_224",
        0.3,
        128,
        "mlp",
    )
    assert (m.text.lora_r, m.text.lora_alpha, m.text.lora_dropout) == (16, 8, 0.1)
    assert (d.ecg_rate, d.ecg_norm, d.ecg_baseline, d.clahe, d.xray_fit) == (
        100,
        "minmax",
        "median",
        True,
        "stretch",
    )
    assert (d.batch_size, t.accum_steps, t.lr, t.weight_decay) == (100, 4, 3e-5, 0.1)
    assert (t.schedule, t.pairs) == ("cosine_restarts", "report-anchored")
    assert "--window 60d" in (CONFIGS / "more.yaml").read_text()


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        ("model.xray.dept=2", "unknown key 'model.xray.dept' (did you mean 'model.xray.depth'?)"),
        ("train.max_steps=many", "train.max_steps: expected"),
        ("data.cache=/nonexistent/cache", "data.cache: directory not found: /nonexistent/cache"),
        ("data.image_size=64", "model.xray.img_size=32 but data.image_size=64"),
        ("train.pairs=[xray:ekg]", "train.pairs: bad pair 'xray:ekg'"),
    ],
)
def test_bad_config_fails_at_start_with_one_line_naming_the_key(setup, tmp_path, capsys, override, message):
    path = write_config(run_config(setup, tmp_path / "run"), tmp_path / "cfg.yaml")
    assert main(["pretrain", "--config", str(path), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and message in err
    assert not (tmp_path / "run").exists()


def test_manifest_only_prepares_a_cache_in_the_output_dir_and_existing_run_needs_resume(
    setup, tmp_path, capsys
):
    cfg = run_config(setup, tmp_path / "run", train={"max_steps": 1, "val_every": 0})
    cfg["data"] = {**cfg["data"], "cache": None, "manifest": setup["manifest"]}
    path = write_config(cfg, tmp_path / "cfg.yaml")
    assert main(["pretrain", "--config", str(path), "--no-progress"]) == 0
    assert (tmp_path / "run" / "cache" / "meta.json").is_file()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["cache"] == str(tmp_path / "run" / "cache")
    capsys.readouterr()
    assert main(["pretrain", "--config", str(path)]) == 2
    assert "already holds a run (pass --resume auto" in capsys.readouterr().err
