"""MoRE over the registry: every config builds and trains a step; masks, LoRA freezing, save/load, CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import moreclip
from moreclip.cli import main
from moreclip.errors import ConfigError
from moreclip.losses import multimodal_clip_loss
from moreclip.models import add_model_config, create_model, get_model_config, list_models, load
from moreclip.models.ecg import EcgEncoder

# the large configs are built with one block per encoder so the suite stays fast
SHRINK = {m: {"xray": {"depth": 1, "img_size": 64}, "ecg": {"depth": 1}} for m in ("base", "more")}


def make_batch(model, n=4, masks=None, seed=0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    T = round(cfg.ecg.sample_rate * cfg.ecg.seconds)
    reports = ["cardiomegaly with small effusions", "no acute process", "mild edema", "clear lungs"]
    ecgs = ["sinus rhythm", "atrial fibrillation", "left ventricular hypertrophy", "sinus tachycardia"]
    return {
        "xray": torch.randn(n, 1, cfg.xray.img_size, cfg.xray.img_size, generator=g),
        "ecg": torch.randn(n, 12, T, generator=g),
        "xray_report": [reports[i % 4] for i in range(n)],
        "ecg_report": [ecgs[i % 4] for i in range(n)],
        "mask": masks
        or {m: torch.ones(n, dtype=torch.bool) for m in ("xray", "ecg", "xray_report", "ecg_report")},
    }


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny")


def test_registry_lists_the_shipped_configs():
    assert {"tiny", "small", "base", "more"} <= set(list_models())
    assert set(list_models()) == set(moreclip.list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_registered_config_builds_and_trains_one_step(name):
    torch.manual_seed(0)
    model = create_model(name, **SHRINK.get(name, {})).train()
    assert model.config.name == name
    batch = make_batch(model, n=3)
    emb = model(batch, modalities=model.available_modalities())
    total, terms = multimodal_clip_loss(emb, batch["mask"], model.temperature_scale())
    total = total + multimodal_clip_loss(emb, batch["mask"], model.temperature_scale(), "report-anchored")[0]
    assert torch.isfinite(total) and len(terms) == 6
    total.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_more_config_is_the_published_recipe():
    cfg = get_model_config("more")
    assert (cfg.xray.model_name, cfg.xray.img_size, cfg.xray.dropkey_rate) == (
        "vit_base_patch16_224",
        224,
        0.3,
    )
    assert (cfg.text.lora_r, cfg.text.lora_alpha, cfg.text.lora_dropout, cfg.text.pooling) == (
        16,
        8,
        0.1,
        "mean",
    )
    assert (cfg.head, cfg.head_hidden, cfg.embed_dim) == ("mlp", 768, 128)
    ecg = EcgEncoder(dataclasses.replace(cfg.ecg, depth=1))
    assert ecg.num_samples == 1000 and ecg.patch_embed.num_patches == 196


def test_forward_embeds_present_rows_and_leaves_absent_rows_zero(tiny):
    tiny.eval()
    masks = {
        "xray": torch.tensor([1, 0, 1, 1], dtype=torch.bool),
        "ecg": torch.tensor([0, 0, 0, 0], dtype=torch.bool),
        "xray_report": torch.tensor([1, 1, 0, 1], dtype=torch.bool),
        "ecg_report": torch.tensor([1, 0, 0, 1], dtype=torch.bool),
    }
    batch = make_batch(tiny, masks=masks)
    with torch.no_grad():
        emb = tiny(batch, modalities=["xray", "ecg", "xray_report", "report"])
        direct = tiny.encode_xray(batch["xray"][[0, 2, 3]])
        report = tiny.encode_text(["cardiomegaly with small effusions sinus rhythm"], kind="report")
    assert torch.allclose(emb["xray"][[0, 2, 3]], direct, atol=1e-6)
    assert torch.equal(emb["xray"][1], torch.zeros(128)) and torch.equal(emb["ecg"], torch.zeros(4, 128))
    norms = emb["xray_report"].norm(dim=1)
    assert torch.allclose(norms, torch.tensor([1.0, 1.0, 0.0, 1.0]), atol=1e-5)
    assert torch.allclose(emb["report"][0], report[0], atol=1e-5)  # joined with a space
    assert emb["report"][2].abs().sum() == 0  # neither report present


def test_absent_rows_do_not_enter_batch_norm_statistics():
    torch.manual_seed(0)
    model = create_model(
        "tiny", head="mlp", xray={"depth": 1, "img_size": 32, "dropkey_rate": 0.0}, ecg={"depth": 1}
    )
    model.train()
    batch = make_batch(model, n=4)
    batch["mask"]["xray"] = torch.tensor([1, 1, 0, 1], dtype=torch.bool)
    batch["xray"][2] = 1e3  # garbage in an absent row
    bn = model.heads["xray"][1]
    model(batch, modalities=["xray"])
    with_absent = bn.running_mean.clone()
    bn.reset_running_stats()
    present = {**batch, "xray": batch["xray"][[0, 1, 3]], "mask": {"xray": torch.ones(3, dtype=torch.bool)}}
    model(present, modalities=["xray"])
    assert torch.allclose(with_absent, bn.running_mean, atol=1e-6)
    one = {**batch, "mask": {"xray": torch.tensor([0, 1, 0, 0], dtype=torch.bool)}}
    assert torch.isfinite(model(one, modalities=["xray"])["xray"]).all()  # a single row: running stats


def test_only_adapters_encoders_heads_and_scale_train_and_frozen_weights_stay_bitwise(tiny):
    trainable = [n for n, p in tiny.named_parameters() if p.requires_grad]
    assert all(n.startswith(("xray.", "ecg.", "heads.", "logit_scale")) or "lora_" in n for n in trainable)
    assert any("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in tiny.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("text.") for n in frozen)
    lora_b = {n: p.detach().clone() for n, p in tiny.named_parameters() if "lora_B" in n}
    opt = torch.optim.AdamW(tiny.param_groups(0.1), lr=1e-2)
    tiny.train()
    batch = make_batch(tiny)
    total, _ = multimodal_clip_loss(tiny(batch), batch["mask"], tiny.temperature_scale())
    total.backward()
    opt.step()
    opt.zero_grad()
    tiny.eval()
    for n, p in tiny.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert any(not torch.equal(p, lora_b[n]) for n, p in tiny.named_parameters() if n in lora_b)


def test_param_groups_cover_trainable_params_without_decay_on_norms_biases_and_scale(tiny):
    decay, no_decay = tiny.param_groups(0.05)
    names = {id(p): n for n, p in tiny.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "logit_scale" in nd and "xray.vit.pos_embed" in nd and "ecg.lead_embed" not in nd
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.05
    assert no_decay["weight_decay"] == 0.0
    n_groups = len(decay["params"]) + len(no_decay["params"])
    assert n_groups == sum(p.requires_grad for p in tiny.parameters())


def test_temperature_is_clip_initialised_and_clamped(tiny):
    assert math.isclose(tiny.config.init_logit_scale, math.log(1 / 0.07))
    with torch.no_grad():
        old = tiny.logit_scale.clone()
        tiny.logit_scale.fill_(tiny.config.init_logit_scale)
        assert math.isclose(tiny.temperature_scale().item(), 1 / 0.07, rel_tol=1e-5)
        tiny.logit_scale.fill_(10.0)
        assert math.isclose(tiny.temperature_scale().item(), 100.0, rel_tol=1e-5)
        tiny.logit_scale.copy_(old)


def embed_all(model):
    batch = make_batch(model, seed=3)
    with torch.no_grad():
        return (
            model.encode_xray(batch["xray"]),
            model.encode_ecg(batch["ecg"]),
            model.encode_text(batch["xray_report"], kind="xray_report"),
        )


def test_save_load_round_trip_is_bit_exact_and_keeps_other_files(tiny, tmp_path):
    tiny.eval()
    before = embed_all(tiny)
    ckpt = tiny.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.yaml", "model.safetensors", "text"]
    loaded = moreclip.load(ckpt)
    assert not loaded.training and loaded.config == tiny.config
    for a, b in zip(before, embed_all(loaded)):
        assert torch.equal(a, b)
    sd = tiny.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in loaded.state_dict().items())
    (ckpt / "optimizer.safetensors").write_bytes(b"kept")  # a trainer's file beside the model
    tiny.save_pretrained(ckpt)  # overwrite in place
    assert (ckpt / "optimizer.safetensors").read_bytes() == b"kept"
    assert not list(tmp_path.glob(".ckpt.tmp*"))
    for a, b in zip(before, embed_all(create_model(ckpt))):
        assert torch.equal(a, b)


def test_checkpoint_without_frozen_backbone_checks_its_hash(tiny, tmp_path):
    tiny.eval()
    before = embed_all(tiny)
    ckpt = tiny.save_pretrained(tmp_path / "slim", include_frozen=False)
    state = load_file(ckpt / "model.safetensors")
    assert not any(k.startswith("text.") and "lora_" not in k for k in state)
    for a, b in zip(before, embed_all(load(ckpt))):
        assert torch.equal(a, b)
    save_file(
        state, ckpt / "model.safetensors", metadata={"include_frozen": "0", "frozen_text_sha256": "0" * 64}
    )
    with pytest.raises(ConfigError, match="SHA-256 mismatch"):
        load(ckpt)


def test_load_errors_name_the_problem(tiny, tmp_path):
    with pytest.raises(ConfigError, match="not a moreclip checkpoint"):
        load(tmp_path)
    ckpt = tiny.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match="do not fit"):
        load(ckpt, ["embed_dim=64"])


def test_create_model_from_yaml_overrides_and_user_registry(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "model:\n  name: mine\n  embed_dim: 32\n  xray: {img_size: 32, depth: 1}\n  ecg: {depth: 1}\n"
    )
    cfg = get_model_config(path, ["model.ecg.embed_dim=48"], text={"max_length": 16})
    assert (cfg.embed_dim, cfg.xray.depth, cfg.ecg.embed_dim, cfg.text.max_length) == (32, 1, 48, 16)
    with pytest.raises(ConfigError, match="did you mean"):
        get_model_config("tiny", ["xray.dept=2"])
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("no-such-model")
    assert add_model_config(path, name="mine-test") == "mine-test" and "mine-test" in list_models()
    model = create_model("mine-test", ecg={"num_heads": 4})
    assert model.encode_ecg(torch.randn(2, 12, 1000)).shape == (2, 32)


def test_separate_text_towers_have_their_own_heads_and_no_joined_report():
    model = create_model(
        "tiny", xray={"depth": 1, "img_size": 32}, ecg={"depth": 1}, text={"share_encoder": False}
    )
    assert set(model.text) == {"xray_report", "ecg_report"} and "report" not in model.available_modalities()
    with pytest.raises(ValueError, match="share_encoder"):
        model.encode_text(["x"], kind="report")
    assert model.encode_text(["x"], kind="ecg_report").shape == (1, 128)


def test_info_command_prints_and_writes_parameter_summary(tiny, tmp_path, capsys):
    out = tmp_path / "info.json"
    assert main(["info", "tiny", "-o", "xray.depth=1", "--json", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["config"]["xray"]["depth"] == 1 and not info["checkpoint"]
    text = info["parameters"]["text/text"]
    assert text["frozen"] > 20_000_000 and 0 < text["trainable"] < 100_000
    assert "trainable" in capsys.readouterr().out
    ckpt = tiny.save_pretrained(tmp_path / "ckpt")
    assert main(["info", str(ckpt)]) == 0
    assert "checkpoint" in capsys.readouterr().out
    assert main(["info", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_model_embeds_a_dataset_batch_from_real_files(tmp_path):
    """The collated batch of the data pipeline (PNG + WFDB files) fits model(batch) and the loss."""
    from moreclip.config import DataConfig
    from moreclip.data.dataset import build_dataset, collate
    from tests.helpers import make_cohort

    manifest = make_cohort(tmp_path, n=4)
    ds = build_dataset(DataConfig(manifest=str(manifest), image_size=32, ecg_rate=100), split=None)
    batch = collate([ds[i] for i in range(len(ds))])
    model = create_model("tiny", xray={"img_size": 32, "depth": 1}, ecg={"depth": 1})
    emb = model(batch, modalities=model.available_modalities())
    total, terms = multimodal_clip_loss(emb, batch["mask"], model.temperature_scale(), "report-anchored")
    assert set(emb) == {"xray", "ecg", "xray_report", "ecg_report", "report"} and torch.isfinite(total)
    total.backward()
