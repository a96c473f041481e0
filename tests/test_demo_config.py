"""The demo's settings without running it: training length from --minutes, overrides, the quality bar,
stage markers."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from moreclip.demo import check_bar, format_headline, training_config
from moreclip.demo.headline import BAR_POOL
from moreclip.demo.pipeline import DemoSettings, default_config_path
from moreclip.demo.stages import StageLog, stage_key
from moreclip.errors import ConfigError


def _paths(tmp_path):
    return {k: tmp_path / k for k in ("cohort", "cache", "run")}


def test_minutes_scale_steps_and_warmup_and_set_a_safety_stop(tmp_path):
    ref = yaml.safe_load(default_config_path().read_text())["train"]
    five = training_config(DemoSettings(out=str(tmp_path)), _paths(tmp_path))
    assert five.train.max_steps == ref["max_steps"] and five.train.warmup_steps == ref["warmup_steps"]
    assert five.train.max_minutes == pytest.approx(5 * 1.5 + 1)
    short = training_config(DemoSettings(out=str(tmp_path), minutes=0.5, seed=7), _paths(tmp_path))
    assert short.train.max_steps == round(ref["max_steps"] / 10)
    assert short.train.warmup_steps <= short.train.max_steps // 5
    assert 1 <= short.train.ckpt_every <= short.train.max_steps
    assert short.train.seed == 7 and short.train.output_dir == str(tmp_path / "run")
    assert short.data.cache == str(tmp_path / "cache")
    assert short.data.manifest == str(tmp_path / "cohort" / "manifest.parquet")
    tiny = training_config(DemoSettings(out=str(tmp_path), minutes=0.001), _paths(tmp_path))
    assert tiny.train.max_steps == 1 and tiny.train.warmup_steps == 0


def test_explicit_overrides_win_over_the_scaling(tmp_path):
    s = DemoSettings(out=str(tmp_path), minutes=1, overrides=["train.max_steps=7", "train.max_minutes=3",
                                                              "data.batch_size=16"])  # fmt: skip
    cfg = training_config(s, _paths(tmp_path))
    assert (cfg.train.max_steps, cfg.train.max_minutes, cfg.data.batch_size) == (7, 3.0, 16)
    with pytest.raises(ConfigError, match="minutes"):
        training_config(DemoSettings(out=str(tmp_path), minutes=0), _paths(tmp_path))
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        training_config(DemoSettings(out=str(tmp_path), overrides=["train.lrr=1"]), _paths(tmp_path))
    with pytest.raises(ConfigError, match="demo config not found"):
        training_config(DemoSettings(out=str(tmp_path), config=str(tmp_path / "nope.yaml")), _paths(tmp_path))


def _head(v: float, candidates: int) -> dict:
    h = {"zeroshot/synthetic-xray/auroc": v, "zeroshot/synthetic-ecg/auroc": v,
         "probe/synthetic-xray/0.1": 0.9, "probe_random/synthetic-xray/0.1": 0.6,
         "probe/synthetic-ecg/0.1": 0.9, "probe_random/synthetic-ecg/0.1": 0.88,
         "probe_gain/synthetic-xray": 0.3, "probe_gain/synthetic-ecg": 0.02}  # fmt: skip
    for d in ("xray->xray_report", "ecg->ecg_report"):
        h[f"retrieval/{d}/recall@5"] = v
        h[f"retrieval/{d}/candidates"] = candidates
    return h


def test_quality_bar_needs_the_full_pool_for_retrieval():
    bar = check_bar(_head(0.95, BAR_POOL))
    assert bar["zeroshot_xray"]["pass"] and bar["recall5_ecg"]["pass"] and bar["probe_gain_xray"]["pass"]
    assert not bar["probe_gain_ecg"]["pass"]  # 0.02 < 0.05
    small = check_bar(_head(0.95, 40))  # a high recall among 40 candidates is not the bar
    assert not small["recall5_xray"]["pass"] and small["zeroshot_xray"]["pass"]
    low = check_bar(_head(0.2, BAR_POOL))
    assert not low["zeroshot_ecg"]["pass"] and not low["recall5_xray"]["pass"]
    text = format_headline(_head(0.95, BAR_POOL))
    assert re.search(r"Recall@5 xray -> xray_report \(among 500\)\s+0\.950\s+0\.010", text)  # chance 5/500
    assert "0.900 vs 0.600" in text


def test_stage_markers_skip_only_matching_finished_stages(tmp_path):
    calls, lines = [], []
    out = tmp_path / "x.txt"

    def work():
        calls.append(1)
        out.write_text("done")
        return {"n": 1}

    log = StageLog(tmp_path, 3, lines.append)
    assert log.run("a", "stage a", stage_key("a", 1), work, (out,))
    assert not StageLog(tmp_path, 3, lines.append).run("a", "stage a", stage_key("a", 1), work, (out,))
    assert len(calls) == 1 and "done before" in lines[-1]
    assert StageLog(tmp_path, 3, lines.append).run("a", "stage a", stage_key("a", 2), work, (out,))  # new key
    out.unlink()
    assert StageLog(tmp_path, 3, lines.append).run(
        "a", "stage a", stage_key("a", 2), work, (out,)
    )  # output gone
    assert len(calls) == 3
    assert json.loads((tmp_path / "stages" / "a.json").read_text())["info"] == {"n": 1}

    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StageLog(tmp_path, 3, lines.append).run("a", "stage a", stage_key("a", 3), boom)
    assert not (tmp_path / "stages" / "a.json").exists()  # an interrupted stage is not done
