"""A persistent cross-modal vector index: FAISS per modality, metadata in Parquet, one folder on disk.

Every modality (``xray``, ``ecg``, ``xray_report``, ``ecg_report`` or any name) holds the L2-normalised
embeddings of its samples, so inner product is cosine similarity, and any modality's vectors can query any
other's (an X-ray embedding finds the nearest ECG reports).

    index = VectorIndex.build({"xray": (ids, xray_emb), "ecg_report": (ids, text_emb)}, metadata=df)
    res = index.search(query_emb, "ecg_report", k=10)    # SearchResult: ids, scores, rows, to_frame()
    index.save("runs/index");  index = VectorIndex.load("runs/index")
    index.add("xray", new_ids, new_emb)

Index kind per modality (:class:`IndexParams`): ``auto`` (default) is exact ``IndexFlatIP`` up to
``exact_max`` vectors (100,000) and HNSW above, upgraded automatically when ``add`` crosses the threshold;
``flat``, ``hnsw`` or ``ivf`` force one. HNSW (M=32, efConstruction=40, efSearch=128) needs no training and
takes incremental adds; IVF-Flat (nlist = 4 sqrt(n), nprobe=32, trained on the first vectors) builds faster.

On disk (written atomically: into a temporary folder, then renamed into place)::

    <dir>/index.json           format version, per-modality dim / count / kind / file, params, model info
    <dir>/metadata.parquet     modality, row, sample_id, and any extra columns given (report excerpt, ...)
    <dir>/vectors/<modality>.faiss
"""

from moreclip.index.backend import KINDS, IndexParams, VectorIndexError
from moreclip.index.vector_index import FORMAT_VERSION, SearchResult, VectorIndex

__all__ = ["FORMAT_VERSION", "KINDS", "IndexParams", "SearchResult", "VectorIndex", "VectorIndexError"]
