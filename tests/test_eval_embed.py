"""embed_dataset: frozen embeddings of every present modality, equal to the model's own encoders; data
config derived from the model (ECG rate, image size); save/load; subsets and fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moreclip.data.prepare import prepare_cache
from moreclip.data.preprocess import PreprocessOptions
from moreclip.errors import ConfigError
from moreclip.eval.embed import Embeddings, data_config_for, embed_dataset, eval_dataset, fuse
from tests.eval_helpers import mixed_cohort, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return mixed_cohort(tmp_path_factory.mktemp("embed") / "c", n=12)


def test_embeddings_match_the_model_encoders_row_by_row_and_absent_rows_are_zero(model, cohort):
    cfg = data_config_for(model, manifest=cohort, overrides=["num_workers=0"])
    ds = eval_dataset(cfg)
    emb = embed_dataset(model, ds, batch_size=5, progress=False)
    assert emb.modalities == ["xray", "ecg", "xray_report", "ecg_report"]
    assert len(emb) == 12 and emb.dim == 32
    assert emb.sample_ids.tolist() == [f"s{i}" for i in range(12)]
    assert emb.subject_ids.tolist() == [f"p{i // 2}" for i in range(12)]
    assert emb.masks["xray"].tolist() == [i % 4 != 1 for i in range(12)]
    assert emb.masks["ecg"].tolist() == [i % 3 != 2 for i in range(12)]
    assert emb.masks["ecg_report"].tolist() == [i % 5 != 4 for i in range(12)]
    assert np.isnan(emb.labels[:, emb.label_names.index("demo/b")]).sum() == 4
    with torch.inference_mode():
        for i in (0, 3, 5, 9):
            item = ds[i]
            if item["mask"]["ecg"]:
                ref = model.encode_ecg(item["ecg"][None]).numpy()[0]
                np.testing.assert_allclose(emb.embeddings["ecg"][i], ref, atol=1e-5)
            if item["mask"]["xray"]:
                ref = model.encode_xray(item["xray"][None]).numpy()[0]
                np.testing.assert_allclose(emb.embeddings["xray"][i], ref, atol=1e-5)
            if item["mask"]["ecg_report"]:
                ref = model.encode_text([item["ecg_report"]], kind="ecg_report").numpy()[0]
                np.testing.assert_allclose(emb.embeddings["ecg_report"][i], ref, atol=1e-5)
    for m in emb.modalities:
        x, ok = emb.get(m)
        np.testing.assert_allclose(np.linalg.norm(x[ok], axis=1), 1.0, atol=1e-5)
        assert not x[~ok].any()


def test_ecg_rate_and_image_size_come_from_the_model_and_mismatch_is_a_clear_error(model, cohort, tmp_path):
    slow = tiny_model(ecg={"sample_rate": 50, "patch_size": 25})
    cfg = data_config_for(slow, manifest=cohort, overrides=["data.num_workers=0", "ecg_norm=minmax"])
    assert (cfg.ecg_rate, cfg.ecg_seconds, cfg.image_size, cfg.augment) == (50, 10.0, 32, False)
    assert cfg.ecg_norm == "minmax"
    ds = eval_dataset(cfg, "train")
    assert ds.ecg_length == 500  # 500 Hz records resampled to the model's 50 Hz x 10 s
    emb = embed_dataset(slow, ds, modalities=["ecg"], progress=False)
    assert emb.masks["ecg"].any()
    # a cache prepared at another rate than the model's: one clear error, not a shape crash
    prepare_cache(cohort, tmp_path / "cache", PreprocessOptions(image_size=32, ecg_rate=100), progress=False)
    wrong = eval_dataset(data_config_for(model, cache=tmp_path / "cache"), "train")  # 100 Hz: fits `model`
    with pytest.raises(ConfigError, match=r"expects 500 \(50 Hz"):
        embed_dataset(slow, wrong, modalities=["ecg"], progress=False)
    assert embed_dataset(slow, wrong, modalities=["xray"], progress=False).masks["xray"].any()  # ECG unused
    with pytest.raises(ConfigError, match="32 px X-rays but the model expects 48 px"):
        embed_dataset(tiny_model(xray={"img_size": 32 + 16}), wrong, modalities=["xray"], progress=False)


def test_only_requested_modalities_run_and_missing_ones_are_all_absent(model, cohort):
    ds = eval_dataset(data_config_for(model, manifest=cohort, overrides=["num_workers=0"]), "train")
    calls = []
    orig = model.encode_xray
    model.encode_xray = lambda *a, **k: calls.append(1) or orig(*a, **k)
    try:
        emb = embed_dataset(model, ds, modalities=["ecg", "report"], progress=False)
    finally:
        del model.encode_xray
    assert calls == [] and emb.modalities == ["ecg", "report"]
    assert emb.masks["report"].tolist() == (ds.present["xray_report"] | ds.present["ecg_report"]).tolist()
    with pytest.raises(ConfigError, match="no xray embeddings"):
        emb.get("xray")


def test_training_flag_is_restored_and_train_rows_are_never_augmented(model, cohort):
    m = model.train()
    cfg = data_config_for(m, manifest=cohort, overrides=["num_workers=0", "augment=true"])
    assert cfg.augment is True  # the override wins, but eval_dataset never augments
    ds = eval_dataset(cfg, "train")
    a = embed_dataset(m, ds, modalities=["ecg", "xray"], progress=False)
    b = embed_dataset(m, ds, modalities=["ecg", "xray"], progress=False)
    assert m.training
    m.eval()
    np.testing.assert_array_equal(a.embeddings["ecg"], b.embeddings["ecg"])
    np.testing.assert_array_equal(a.embeddings["xray"], b.embeddings["xray"])


def test_subset_save_load_and_fusion(model, cohort, tmp_path):
    emb = embed_dataset(
        model,
        eval_dataset(data_config_for(model, manifest=cohort, overrides=["num_workers=0"])),
        progress=False,
    )
    test = emb.subset("test")
    assert set(test.splits) == {"test"} and len(test) == int((emb.splits == "test").sum())
    back = Embeddings.load(emb.save(tmp_path / "e.npz"))
    assert back.sample_ids.tolist() == emb.sample_ids.tolist() and back.label_names == emb.label_names
    for m in emb.modalities:
        np.testing.assert_array_equal(back.embeddings[m], emb.embeddings[m])
        np.testing.assert_array_equal(back.masks[m], emb.masks[m])
    np.testing.assert_array_equal(back.labels, emb.labels)  # NaN in the same places
    fused, ok = emb.get("xray+ecg")
    assert ok.tolist() == (emb.masks["xray"] | emb.masks["ecg"]).tolist()
    both = emb.masks["xray"] & emb.masks["ecg"]
    ref = emb.embeddings["xray"][both] + emb.embeddings["ecg"][both]
    np.testing.assert_allclose(fused[both], ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-6)
    only_x = emb.masks["xray"] & ~emb.masks["ecg"]
    np.testing.assert_allclose(fused[only_x], emb.embeddings["xray"][only_x], atol=1e-6)
    z, none = fuse([np.zeros((2, 3))], [np.zeros(2, bool)])
    assert not z.any() and not none.any()


def test_a_checkpoints_data_section_sets_preprocessing_but_not_paths_or_sizes(model, cohort, tmp_path):
    import yaml

    ckpt = model.save_pretrained(tmp_path / "ckpt")
    cfg_file = ckpt / "config.yaml"
    saved = yaml.safe_load(cfg_file.read_text())
    saved["data"] = {"ecg_norm": "minmax", "xray_fit": "stretch", "manifest": "/elsewhere/m.parquet",
                     "cache": "/elsewhere/cache", "augment": True, "image_size": 999, "ecg_rate": 500}  # fmt: skip
    cfg_file.write_text(yaml.safe_dump(saved))
    cfg = data_config_for(model, manifest=cohort, checkpoint=ckpt, overrides=["xray_fit=crop"])
    assert (cfg.ecg_norm, cfg.xray_fit) == ("minmax", "crop")  # the checkpoint's, then the override
    assert (cfg.manifest, cfg.cache, cfg.augment) == (str(cohort), None, False)
    assert (cfg.image_size, cfg.ecg_rate) == (32, 100)  # always the model's own input sizes
    with pytest.raises(ConfigError, match="ecg_nrom"):
        data_config_for(model, manifest=cohort, overrides=["ecg_nrom=minmax"])
