"""The persistent cross-modal vector index: exact equality, approximate recall, persistence, errors."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pandas as pd
import pytest

from moreclip.errors import MoreclipError
from moreclip.index import IndexParams, VectorIndex, VectorIndexError
from moreclip.index.backend import faiss_threads


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pairs(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = x + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return [f"s{i}" for i in range(n)], x, y


def _exact(queries, base, k):
    sim = _unit(queries) @ _unit(base).T  # (Q, N)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), axis=1), 1)
    return order, np.take_along_axis(sim, order, 1)


def _recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def test_small_index_search_equals_exact_search_across_modalities():
    ids, x, y = _pairs()
    index = VectorIndex.build({"xray": (ids, x), "ecg_report": (ids, y)})
    assert index.kind("xray") == "flat" and index.modalities == ["xray", "ecg_report"] and len(index) == 800
    res = index.search(x[:50], "ecg_report", k=10)
    rows, scores = _exact(x[:50], y, 10)
    assert np.array_equal(res.rows, rows)
    assert np.allclose(res.scores, scores, atol=1e-5)
    assert res.ids[0, 0] == ids[rows[0, 0]]
    assert res.ids.shape == (50, 10) and res.scores.dtype == np.float32
    # vectors are stored normalised: the nearest X-ray of an X-ray is itself with cosine 1
    self_hit = index.search(x[:5] * 7.0, "xray", k=1)
    assert list(self_hit.ids[:, 0]) == ids[:5] and np.allclose(self_hit.scores, 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(index.vectors("xray", ids[:3]), axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_hnsw_recall_at_10_on_100k_random_vectors():
    # d = 32: uniformly random unit vectors are the hardest case for any approximate index (in high
    # dimension all points become nearly equidistant), while real embeddings have a far lower intrinsic
    # dimension; 32 keeps a meaningful neighbourhood structure and the build under ~10 s on 2 cores.
    rng = np.random.default_rng(0)
    n, d = 100_000, 32
    base = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((300, d)).astype(np.float32)
    index = VectorIndex.build(
        {"ecg": ([str(i) for i in range(n)], base)}, params=IndexParams(exact_max=50_000, threads=2)
    )
    assert index.kind("ecg") == "hnsw"  # auto: approximate above the exact threshold
    truth, _ = _exact(queries, base, 10)
    res = index.search(queries, "ecg", k=10)
    assert _recall(res.rows, truth) >= 0.95


def test_ivf_index_recall_on_clustered_vectors():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((50, 24)).astype(np.float32)
    base = centres[rng.integers(0, 50, 20_000)] + 0.3 * rng.standard_normal((20_000, 24)).astype(np.float32)
    queries = base[:200] + 0.1 * rng.standard_normal((200, 24)).astype(np.float32)
    index = VectorIndex.build(
        {"xray": ([str(i) for i in range(20_000)], base)}, params=IndexParams(kind="ivf")
    )
    assert index.kind("xray") == "ivf"
    truth, _ = _exact(queries, base, 10)
    assert _recall(index.search(queries, "xray", k=10).rows, truth) >= 0.95  # nprobe 32 of ~565 cells
    assert _recall(index.search(queries, "xray", k=10, nprobe=1).rows, truth) < 0.8  # the override applies


def test_saved_index_reloads_to_the_same_results(tmp_path):
    ids, x, y = _pairs()
    meta = pd.DataFrame(
        {"sample_id": ids, "split": ["train", "test"] * 200, "excerpt": [f"r{i}" for i in ids]}
    )
    for params in (IndexParams(), IndexParams(kind="hnsw", hnsw_m=8)):
        index = VectorIndex.build(
            {"xray": (ids, x), "ecg": (ids, y)}, meta, params=params, model_info={"ckpt": "m"}
        )
        before = index.search(y[:20], "xray", k=7)
        path = index.save(tmp_path / "idx")
        info = json.loads((path / "index.json").read_text())
        assert info["modalities"]["ecg"] == {
            "dim": 16,
            "count": 400,
            "kind": params.choose(400),
            "requested": params.kind,
            "file": "vectors/ecg.faiss",
        }
        assert info["model"] == {"ckpt": "m"} and info["faiss_version"] == faiss.__version__
        loaded = VectorIndex.load(path)
        after = loaded.search(y[:20], "xray", k=7)
        assert np.array_equal(before.rows, after.rows) and np.array_equal(before.ids, after.ids)
        assert np.allclose(before.scores, after.scores)
        pd.testing.assert_frame_equal(before.to_frame(), after.to_frame())
    # the second save replaced the first atomically: no temporary folders are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_search_results_carry_metadata_as_table_and_json():
    ids, x, y = _pairs(50)
    meta = pd.DataFrame({"sample_id": ids, "split": ["train"] * 50, "age": np.arange(50.0)})
    meta.loc[3, "age"] = np.nan
    index = VectorIndex.build({"xray": (ids, x)}, meta)
    res = index.search(x[[3, 4]], "xray", k=3)
    table = res.to_frame()
    assert list(table.columns[:4]) == ["query", "rank", "sample_id", "score"]
    assert table.loc[0, "sample_id"] == "s3" and table.loc[0, "rank"] == 1 and np.isnan(table.loc[0, "age"])
    recs = res.to_records()
    assert len(recs) == 2 and len(recs[0]) == 3 and recs[0][0]["age"] is None and recs[1][0]["age"] == 4.0
    json.dumps(recs)  # JSON-able


def test_incremental_add_matches_a_single_build_and_rejects_duplicates():
    ids, x, y = _pairs()
    whole = VectorIndex.build({"ecg": (ids, y)})
    parts = VectorIndex.build({"ecg": (ids[:150], y[:150])})
    parts.add("ecg", ids[150:], y[150:])
    parts.add("xray", ids, x)
    assert parts.count("ecg") == 400 and "xray" in parts
    a, b = whole.search(x[:30], "ecg", k=5), parts.search(x[:30], "ecg", k=5)
    assert np.array_equal(a.ids, b.ids)
    with pytest.raises(VectorIndexError, match="already present or repeated: \\['s0'\\]"):
        parts.add("ecg", ["s0"], y[:1])
    with pytest.raises(VectorIndexError, match="repeated"):
        parts.add("ecg", ["new", "new"], y[:2])


def test_auto_index_becomes_approximate_when_an_add_crosses_the_threshold(tmp_path):
    ids, x, _ = _pairs(1500)
    index = VectorIndex.build({"xray": (ids[:900], x[:900])}, params=IndexParams(exact_max=1000))
    assert index.kind("xray") == "flat"
    index.add("xray", ids[900:], x[900:])
    assert index.kind("xray") == "hnsw" and index.count("xray") == 1500
    rows, _ = _exact(x[:100], x, 10)
    assert _recall(index.search(x[:100], "xray", k=10).rows, rows) >= 0.95
    assert VectorIndex.load(index.save(tmp_path / "i")).kind("xray") == "hnsw"


def test_missing_modality_and_dimension_mismatch_are_clear_errors():
    ids, x, y = _pairs(20)
    index = VectorIndex.build({"xray": (ids, x), "ecg_report": (ids, y)})
    with pytest.raises(VectorIndexError, match="no 'ecg' vectors; it holds: xray, ecg_report") as e:
        index.search(x, "ecg")
    assert isinstance(e.value, MoreclipError)
    with pytest.raises(VectorIndexError, match="dimension 8 but the index expects 16"):
        index.search(x[:, :8], "xray")
    with pytest.raises(VectorIndexError, match="dimension 8"):
        index.add("xray", ["z"], x[:1, :8])
    with pytest.raises(VectorIndexError, match="zero vector"):
        index.add("xray", ["z"], np.zeros((1, 16)))
    with pytest.raises(VectorIndexError, match="NaN"):
        index.search(np.full((1, 16), np.nan), "xray")
    with pytest.raises(VectorIndexError, match="modality name"):
        index.add("../evil", ["a"], x[:1])
    with pytest.raises(VectorIndexError, match="kind"):
        IndexParams(kind="lsh")
    with pytest.raises(VectorIndexError, match="'sample_id'"):
        index.add("ecg", ids, y, metadata=pd.DataFrame({"id": ids}))
    with pytest.raises(VectorIndexError, match="clash"):
        index.add("ecg", ids, y, metadata=pd.DataFrame({"sample_id": ids, "score": 1.0}))
    with pytest.raises(VectorIndexError, match="several rows for sample id"):
        index.add("ecg", ids, y, metadata=pd.DataFrame({"sample_id": ids + ids[:1]}))
    assert "ecg" not in index  # a refused add leaves nothing behind


def test_corrupt_or_missing_index_files_are_reported(tmp_path):
    ids, x, _ = _pairs(30)
    path = VectorIndex.build({"xray": (ids, x)}).save(tmp_path / "idx")
    with pytest.raises(VectorIndexError, match="index.json missing"):
        VectorIndex.load(tmp_path / "nowhere")
    blob = (path / "vectors" / "xray.faiss").read_bytes()
    (path / "vectors" / "xray.faiss").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VectorIndexError, match="xray.faiss: corrupt FAISS index"):
        VectorIndex.load(path)
    (path / "vectors" / "xray.faiss").unlink()
    with pytest.raises(VectorIndexError, match="xray.faiss: missing"):
        VectorIndex.load(path)
    (path / "vectors" / "xray.faiss").write_bytes(blob)
    info = json.loads((path / "index.json").read_text())
    info["modalities"]["xray"]["count"] = 31
    (path / "index.json").write_text(json.dumps(info))
    with pytest.raises(VectorIndexError, match="inconsistent"):
        VectorIndex.load(path)
    (path / "index.json").write_text("{not json")
    with pytest.raises(VectorIndexError, match="corrupt index.json"):
        VectorIndex.load(path)


def test_save_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path):
    ids, x, _ = _pairs(10)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    with pytest.raises(VectorIndexError, match="not a moreclip vector index"):
        VectorIndex.build({"xray": (ids, x)}).save(tmp_path / "data")
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"


def test_thread_option_is_applied_and_restored():
    before = faiss.omp_get_max_threads()
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
