from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from moreclip.config import MODALITIES, DataConfig, load_config
from moreclip.data.augment import (
    apply_ecg_jitter,
    ecg_time_crop,
    sample_ecg_jitter,
    shuffle_sentences,
    xray_resized_crop,
)
from moreclip.data.batch import finalize_batch
from moreclip.data.cache import open_cache
from moreclip.data.dataset import MoreDataset, build_dataset, collate, make_dataloader
from moreclip.data.manifest import read_manifest, write_manifest
from moreclip.data.prepare import prepare_cache
from moreclip.data.preprocess import PreprocessOptions
from moreclip.errors import ConfigError
from tests.helpers import make_ecg, make_png

N = 12


def _cohort(root: Path) -> Path:
    """Rows with every mix of presence: no X-ray (i % 4 == 1), no ECG (i % 3 == 2), no reports (i % 5 == 4)."""
    rows = []
    for i in range(N):
        row = {"sample_id": f"s{i}", "subject_id": f"p{i}", "split": "train" if i < 8 else "val"}
        if i % 4 != 1:
            make_png(root / "xray" / f"s{i}.png", size=48, seed=i)
            row["xray_path"] = f"xray/s{i}.png"
        if i % 3 != 2:
            make_ecg(root / "ecg" / f"s{i}", seed=i)
            row["ecg_path"] = f"ecg/s{i}"
        if i % 5 != 4:
            row["xray_report"] = (
                f"FINDINGS: Heart size normal. No effusion. Case {i}. IMPRESSION: No acute process."
            )
            row["ecg_report"] = "Sinus rhythm. Normal axis. Normal ECG."
        row["demo/a"] = float(i % 2)
        row["demo/b"] = None if i % 3 == 0 else 1.0
        rows.append(row)
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    manifest = _cohort(root / "cohort")
    cfg = DataConfig(image_size=32, num_workers=0, batch_size=4)
    prepare_cache(manifest, root / "cache", PreprocessOptions.from_config(cfg), shard_size=5, progress=False)
    return manifest, root / "cache", cfg


def _expected_presence(i: int) -> dict[str, bool]:
    return {"xray": i % 4 != 1, "ecg": i % 3 != 2, "xray_report": i % 5 != 4, "ecg_report": i % 5 != 4}


def test_items_follow_the_contract_with_mixed_presence(cohort):
    manifest, cache, cfg = cohort
    ds = MoreDataset(open_cache(cache), cfg)
    assert len(ds) == N and ds.label_names == ["demo/a", "demo/b"]
    for i in range(N):
        it = ds[i]
        assert it["index"] == i and it["sample_id"] == f"s{i}"
        assert it["mask"] == _expected_presence(i)
        assert it["xray"].shape == (1, 32, 32) and it["xray"].dtype == torch.float32
        assert it["ecg"].shape == (12, 1000) and it["ecg"].dtype == torch.float32
        assert bool(it["xray"].any()) == it["mask"]["xray"] and bool(it["ecg"].any()) == it["mask"]["ecg"]
        assert (it["xray_report"] != "") == it["mask"]["xray_report"]
        assert it["labels"][0] == i % 2 and (torch.isnan(it["labels"][1]) == (i % 3 == 0))


def test_collate_of_items_equals_the_batched_path_and_masks_are_right(cohort):
    manifest, cache, cfg = cohort
    ds = MoreDataset(open_cache(cache), cfg)
    order = [7, 2, 9, 1, 4, 0]
    batch = ds.get_batch(order)
    stacked = collate([ds[i] for i in order])
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == order
    assert batch["sample_id"] == stacked["sample_id"] == [f"s{i}" for i in order]
    for m in MODALITIES:
        assert batch["mask"][m].dtype == torch.bool
        assert batch["mask"][m].tolist() == [_expected_presence(i)[m] for i in order]
        assert torch.equal(batch["mask"][m], stacked["mask"][m])
    for k in ("xray", "ecg", "index"):
        assert torch.equal(batch[k], stacked[k]), k
    assert torch.equal(batch["labels"].isnan(), stacked["labels"].isnan())
    assert batch["xray"].shape == (6, 1, 32, 32) and batch["ecg"].shape == (6, 12, 1000)
    assert batch["labels"].shape == (6, 2)
    assert batch["xray_report"] == stacked["xray_report"] and batch["ecg_report"][4] == ""
    assert collate(batch) is batch  # a prebuilt batch passes through


def test_workers_ship_compact_batches_that_finish_to_the_same_tensors(cohort):
    manifest, cache, cfg = cohort
    ds = MoreDataset(open_cache(cache), cfg, augment=True)
    torch.manual_seed(0)
    compact = ds.__getitems__([3, 0, 5])
    assert compact["xray_u8"].dtype == np.uint8 and compact["xray_u8"].shape == (3, 1, 32, 32)
    assert compact["ecg_f16"].dtype == np.float16 and compact["ecg_f16"].shape == (3, 12, 1000)
    assert compact["aug"]["ecg"]["drop"].shape == (3, 12)
    torch.manual_seed(0)
    done = ds.get_batch([3, 0, 5])
    finished = finalize_batch(compact)
    for k in ("index", "xray", "ecg", "labels"):
        assert torch.equal(finished[k].nan_to_num(-9), done[k].nan_to_num(-9)), k
    for m in MODALITIES:
        assert torch.equal(finished["mask"][m], done["mask"][m])
    assert finished["sample_id"] == done["sample_id"] and finished["xray_report"] == done["xray_report"]
    assert collate(compact)["xray"].dtype == torch.float32  # collate finishes a compact batch too


def test_cache_and_raw_files_give_identical_tensors(cohort):
    manifest, cache, cfg = cohort
    fast = MoreDataset(open_cache(cache), cfg, augment=True)
    slow = MoreDataset(read_manifest(manifest), cfg, augment=True)
    for augment in (False, True):
        fast.augment = slow.augment = augment
        torch.manual_seed(3)
        a = fast.get_batch(range(N))
        torch.manual_seed(3)
        b = slow.get_batch(range(N))
        for k in ("xray", "ecg", "labels", "index"):
            assert torch.equal(a[k].nan_to_num(-9), b[k].nan_to_num(-9)), (augment, k)
        assert a["xray_report"] == b["xray_report"]


def test_normalisation_and_pixel_scaling(cohort):
    manifest, cache, cfg = cohort
    c = open_cache(cache)
    ds = MoreDataset(c, cfg)
    b = ds.get_batch(range(N))
    has = b["mask"]["ecg"]
    ecg = b["ecg"][has]
    torch.testing.assert_close(ecg.mean(-1), torch.zeros(ecg.shape[:2]), atol=1e-4, rtol=0)
    torch.testing.assert_close(ecg.std(-1, correction=0), torch.ones(ecg.shape[:2]), atol=1e-3, rtol=0)
    mm = MoreDataset(c, DataConfig(image_size=32, ecg_norm="minmax")).get_batch(range(N))["ecg"][has]
    assert mm.min() >= -1 - 1e-5 and mm.max() <= 1 + 1e-5
    torch.testing.assert_close(mm.amax(-1), torch.ones(mm.shape[:2]), atol=1e-4, rtol=0)
    rows = np.flatnonzero(b["mask"]["xray"].numpy())
    raw = c.array("xray")[rows].astype(np.float32)
    expected = (raw / 255 - cfg.xray_mean) / cfg.xray_std
    np.testing.assert_allclose(b["xray"][rows, 0].numpy(), expected, atol=1e-5)


def test_augmentation_only_in_training_and_masks_survive_it(cohort):
    manifest, cache, _ = cohort
    cfg = load_config(DataConfig, overrides=[f"cache={cache}", "image_size=32", "augment=true"])
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert train.augment and not val.augment and len(train) == 8 and len(val) == 4
    assert not build_dataset(cfg, "train", augment=False).augment
    assert not MoreDataset(open_cache(cache), cfg, "test", augment=True).augment
    v1, v2 = val.get_batch(range(4)), val.get_batch(range(4))
    assert torch.equal(v1["xray"], v2["xray"]) and torch.equal(v1["ecg"], v2["ecg"])
    t1, t2 = train.get_batch(range(8)), train.get_batch(range(8))
    assert not torch.equal(t1["ecg"], t2["ecg"]) and not torch.equal(t1["xray"], t2["xray"])
    for m in MODALITIES:
        assert torch.equal(t1["mask"][m], t2["mask"][m])
    assert not t1["xray"][~t1["mask"]["xray"]].any() and not t1["ecg"][~t1["mask"]["ecg"]].any()
    assert (t1["ecg"][t1["mask"]["ecg"]].abs().amax(-1) > 0).any(-1).all()  # never all leads dropped


def test_dataloader_workers_are_seeded_and_cover_each_sample_once(cohort):
    manifest, cache, _ = cohort
    cfg = DataConfig(cache=str(cache), image_size=32)
    ds = build_dataset(cfg, "train")
    pickle.loads(pickle.dumps(ds))  # workers get a picklable dataset (memory maps reopen lazily)

    def epoch(seed: int) -> list[dict]:
        loader = make_dataloader(ds, 3, shuffle=True, num_workers=2, seed=seed, drop_last=False)
        assert loader.loader.persistent_workers and not loader.loader.pin_memory
        return list(loader)

    a, b, c = epoch(5), epoch(5), epoch(6)
    seen = torch.cat([x["index"] for x in a]).tolist()
    assert sorted(seen) == list(range(8))
    assert [x["index"].tolist() for x in a] == [x["index"].tolist() for x in b]
    assert all(torch.equal(x["ecg"], y["ecg"]) and torch.equal(x["xray"], y["xray"]) for x, y in zip(a, b))
    assert torch.cat([x["index"] for x in c]).tolist() != seen


def test_cache_of_another_shape_is_refused(cohort):
    manifest, cache, _ = cohort
    with pytest.raises(ConfigError, match="32 px X-rays .* re-run moreclip prepare"):
        MoreDataset(open_cache(cache), DataConfig(image_size=64))
    with pytest.raises(ConfigError, match="data.cache or data.manifest"):
        build_dataset(DataConfig())


def test_batch_augmentations_keep_shapes_and_bounds():
    rng = np.random.default_rng(0)
    x = torch.randn(4, 12, 500)
    before = x.clone()
    assert torch.equal(ecg_time_crop(x, rng, 1.0), before)
    y = ecg_time_crop(x.clone(), rng, 0.8)
    assert y.shape == before.shape and not torch.equal(y, before)
    # a crop of a ramp is still a monotone ramp, inside the original range
    ramp = torch.linspace(0, 1, 500).repeat(2, 12, 1)
    r = ecg_time_crop(ramp, rng, 0.5)
    assert (r.diff(dim=-1) >= -1e-6).all() and r.min() >= 0 and r.max() <= 1
    params = sample_ecg_jitter(rng, 64, 12, scale=(1, 1), noise=0.0, lead_dropout=0.5)
    z = apply_ecg_jitter(torch.ones(64, 12, 100), params)
    dropped = (z == 0).all(-1)
    assert torch.equal(dropped, torch.from_numpy(params["drop"])) and 0.3 < dropped.float().mean() < 0.7
    assert not dropped.all(-1).any()
    noisy = apply_ecg_jitter(torch.zeros(8, 12, 1000), sample_ecg_jitter(rng, 8, 12, (2, 2), 0.1, 0.0))
    assert 0.09 < noisy.std() < 0.11 and not torch.equal(noisy[0], noisy[1])
    img = np.random.default_rng(1).integers(0, 255, (3, 40, 40), dtype=np.uint8)
    out = xray_resized_crop(img.copy(), rng, 0.6)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)


def test_sentence_shuffling_stays_inside_sections():
    text = "FINDINGS: A one. B two. C three. D four. IMPRESSION: Nothing acute. No change."
    rng = np.random.default_rng(0)
    outs = {shuffle_sentences(text, rng, shuffle=1.0, drop=0.0) for _ in range(30)}
    assert len(outs) > 3
    for out in outs:
        findings, impression = out.split(" IMPRESSION: ")
        assert findings.startswith("FINDINGS: ")
        assert set(impression.rstrip(".").split(". ")) == {"Nothing acute", "No change"}
        assert set(findings[10:].rstrip(".").split(". ")) == {"A one", "B two", "C three", "D four"}
    dropped = shuffle_sentences(text, rng, shuffle=0.0, drop=0.99)
    assert dropped.startswith("FINDINGS: ") and " IMPRESSION: " in dropped  # one sentence per section kept
    assert (
        shuffle_sentences("", rng) == ""
        and shuffle_sentences("Sinus rhythm.", rng, 1.0, 0.9) == "Sinus rhythm."
    )


def test_a_modality_nobody_has_gets_no_array_and_reads_as_absent(tmp_path):
    rows = []
    for i in range(3):
        make_png(tmp_path / "xray" / f"s{i}.png", size=40, seed=i)
        rows.append(
            {"sample_id": f"s{i}", "subject_id": f"p{i}", "split": "test", "xray_path": f"xray/s{i}.png"}
        )
    manifest = write_manifest(pd.DataFrame(rows), tmp_path / "manifest.parquet")
    cfg = DataConfig(image_size=32)
    prepare_cache(manifest, tmp_path / "cache", PreprocessOptions.from_config(cfg), progress=False)
    assert not (tmp_path / "cache" / "ecg.npy").exists()
    b = MoreDataset(open_cache(tmp_path / "cache"), cfg).get_batch([0, 2])
    assert b["ecg"].shape == (2, 12, 1000) and not b["ecg"].any() and not b["mask"]["ecg"].any()
    assert b["mask"]["xray"].all() and b["xray"].any() and b["labels"].shape == (2, 0)
    assert b["xray_report"] == ["", ""] and not b["mask"]["xray_report"].any()
