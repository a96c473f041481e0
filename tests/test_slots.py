"""Compact batches travel from DataLoader workers in shared slots (moreclip.data.slots): same tensors as
batches built in-process, slots freed once finished, never a stall when the consumer holds batches."""

from __future__ import annotations

import pickle

import pytest
import torch

from moreclip.config import MODALITIES, DataConfig
from moreclip.data.batch import finalize_batch, make_dataloader
from moreclip.data.cache import open_cache
from moreclip.data.dataset import MoreDataset
from moreclip.data.prepare import prepare_cache
from moreclip.data.preprocess import PreprocessOptions
from moreclip.data.slots import SlotLease
from moreclip.train_data import TrainStream
from tests.test_dataset import N, _cohort


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("slots")
    cfg = DataConfig(image_size=32, num_workers=0, batch_size=3)
    prepare_cache(
        _cohort(root / "cohort"), root / "cache", PreprocessOptions.from_config(cfg), progress=False
    )
    return MoreDataset(open_cache(root / "cache"), cfg, augment=True)


def _same(a: dict, b: dict) -> None:
    for k in ("index", "xray", "ecg", "labels"):
        assert torch.equal(a[k].nan_to_num(-9), b[k].nan_to_num(-9)), k
    for m in MODALITIES:
        assert torch.equal(a["mask"][m], b["mask"][m])
    assert a["xray_report"] == b["xray_report"] and a["ecg_report"] == b["ecg_report"]


def test_worker_batches_arrive_in_slots_and_equal_batches_built_in_process(dataset):
    inline = TrainStream(dataset, 3, seed=4, num_workers=0)
    workers = TrainStream(dataset, 3, seed=4, num_workers=2)
    assert inline.slots is None and workers.slots is not None
    want = [b for _, (_, _, b) in zip(range(8), inline.batches())]  # two epochs of 4 batches
    got, shipped = [], []
    for _, (_, _, compact) in zip(range(8), _raw(workers)):
        shipped.append((compact["slot"], compact["xray_u8"]))
        got.append(finalize_batch(compact))
    assert all(
        slot is not None and arrays is None for slot, arrays in shipped
    )  # only the slot number travels
    for a, b in zip(got, want):
        _same(a, b)


def _raw(stream):
    """The stream's compact batches, unfinished, over epochs."""
    epoch = 0
    while True:
        stream.sampler.set_epoch(epoch)
        yield from stream.loader
        epoch += 1


def test_a_consumer_that_holds_unfinished_batches_gets_them_through_the_pipe(dataset):
    dataset.augment = False
    try:
        loader = make_dataloader(dataset, 1, shuffle=False, num_workers=1, drop_last=False)
        per_worker = loader.slots.per_worker
        held = list(loader.loader)  # N batches, none finished: more than the worker's slots
        assert len(held) == N > per_worker
        assert sum(b["slot"] is not None for b in held) == per_worker
        assert all(b["xray_u8"] is not None for b in held if b["slot"] is None)
        for i, b in enumerate(held):
            _same(finalize_batch(b), dataset.get_batch([i]))
        for i, b in enumerate(loader.loader):  # every slot was freed: the next epoch travels in slots again
            assert b["slot"] is not None
            _same(finalize_batch(b), dataset.get_batch([i]))
    finally:
        dataset.augment = True


def test_batches_left_unfinished_by_an_epoch_cut_short_free_their_slots(dataset):
    dataset.augment = False
    try:
        loader = make_dataloader(dataset, 1, shuffle=False, num_workers=1, drop_last=False)
        for _ in range(4):  # each early exit leaves the prefetched batches unfinished, then discarded
            for i, _ in enumerate(loader):
                if i == 1:
                    break
        for i, b in enumerate(loader.loader):  # a whole epoch: every batch still gets a slot
            assert b["slot"] is not None, i
            _same(finalize_batch(b), dataset.get_batch([i]))
    finally:
        dataset.augment = True


def test_a_batch_from_a_slot_is_finished_once(dataset):
    loader = make_dataloader(dataset, 2, shuffle=False, num_workers=1)
    compact = next(iter(loader.loader))
    assert compact["slot"] is not None
    finalize_batch(compact)
    with pytest.raises(RuntimeError, match="already finished"):
        finalize_batch(compact)


def test_compact_batches_pickle_without_their_slot_arrays(dataset):
    compact = dataset.compact_batch([0, 1])
    assert compact["slot"] is None  # built in this process: ordinary arrays, pickled by value
    assert pickle.loads(pickle.dumps(compact))["xray_u8"].shape == (2, 1, 32, 32)
    compact["slot"] = SlotLease("gone", 0, 0, 2)  # as a worker makes it
    small = pickle.loads(pickle.dumps(compact))
    assert small["xray_u8"] is None and small["ecg_f16"] is None and small["labels"].shape[0] == 2
    with pytest.raises(RuntimeError, match="slots of this compact batch are gone"):
        finalize_batch(small)


def test_too_little_shared_memory_means_pipes_and_a_warning(dataset, monkeypatch, caplog):
    from moreclip.data import slots

    monkeypatch.setattr(slots, "shm_room", lambda: 100_000)  # less than 6 slots of 4 samples (600 kB)
    dataset.augment = False
    try:
        loader = make_dataloader(dataset, 4, shuffle=False, num_workers=1, drop_last=False)
        assert loader.slots is None and "batches travel through pipes" in caplog.text
        batches = list(loader.loader)
        assert all(b["slot"] is None and b["xray_u8"] is not None for b in batches)
        _same(finalize_batch(batches[0]), dataset.get_batch([0, 1, 2, 3]))
    finally:
        dataset.augment = True
