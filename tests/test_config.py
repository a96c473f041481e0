from __future__ import annotations

import pytest

from moreclip.config import Config, ConfigError, load_config, parse_overrides, save_config


def test_defaults_then_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.01\n  epochs: 3\nmodel:\n  xray:\n    depth: 2\n")
    cfg = load_config(Config, f, ["train.lr=1e-4", "model.embed_dim=64"])
    assert cfg.train.lr == pytest.approx(1e-4)  # override beats the file
    assert cfg.train.epochs == 3  # file beats the default
    assert cfg.model.xray.depth == 2
    assert cfg.model.embed_dim == 64
    assert cfg.train.warmup_steps == Config().train.warmup_steps  # untouched default


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        ("train.lr=abc", "train.lr: expected a number"),
        ("train.epochs=1.5", "train.epochs: expected an integer"),
        ("model.head=conv", "model.head: expected one of"),
        ("train.tensorboard=maybe", "train.tensorboard: expected true/false"),
        ("nosection.x=1", "unknown key 'nosection'"),
        ("train.lr", "not of the form key=value"),
    ],
)
def test_bad_override_names_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(Config, None, [override])
    assert message in str(e.value)


def test_unknown_key_in_file_names_file_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  batchsize: 3\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'data.batchsize' \(did you mean 'data.batch_size'\?\)"
    ):
        load_config(Config, f)


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Config, tmp_path / "nope.yaml")


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(
        Config, None, ["train.betas=[0.8, 0.9]", "train.pairs=[xray:ecg]", "model.xray.depth=3"]
    )
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(Config, tmp_path / "config.yaml")
    assert again == cfg
    assert again.train.betas == (0.8, 0.9)


def test_parse_overrides_nested_and_yaml_values():
    assert parse_overrides(["a.b.c=[1, 2]", "a.d=true", "e=null"]) == {
        "a": {"b": {"c": [1, 2]}, "d": True},
        "e": None,
    }
