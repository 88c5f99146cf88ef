"""The binary encoding of per-document scores in the `document_scores` table.

Each array is the raw bytes of a little-endian numpy array (`tobytes()`), with no header; the
row's `n_docs` column says how many entries each holds:

    doc_ids  int32   ('<i4', 4 bytes per document)
    values   float64 ('<f8', 8 bytes per document)
    weights  float64 ('<f8', 8 bytes per document), or NULL when the metric is a plain mean

So a task of n documents takes 12n bytes (20n with weights). Decoding gives doc ids as int64 and
values and weights as float64.
"""

from __future__ import annotations

import numpy as np

IDS = np.dtype("<i4")
FLOATS = np.dtype("<f8")


def encode_scores(doc_ids, values, weights=None) -> dict:
    """{"n_docs", "doc_ids", "values", "weights"}: the table's columns for one (task, metric).
    ValueError when the arrays differ in length or a doc id does not fit in int32."""
    ids = np.asarray(doc_ids, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    if ids.ndim != 1 or vals.shape != ids.shape:
        raise ValueError(f"scores: doc_ids and values must be flat and of one length, got {ids.shape} and {vals.shape}")
    if ids.size and (ids.min() < np.iinfo(IDS).min or ids.max() > np.iinfo(IDS).max):
        raise ValueError("scores: doc ids must fit in int32")
    out = {"n_docs": int(ids.size), "doc_ids": ids.astype(IDS).tobytes(), "values": vals.astype(FLOATS).tobytes(),
           "weights": None}
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != ids.shape:
            raise ValueError(f"scores: weights must have one entry per document, got {w.shape} for {ids.shape}")
        out["weights"] = w.astype(FLOATS).tobytes()
    return out


def decode_scores(doc_ids: bytes, values: bytes, weights: bytes | None) -> dict:
    """{"doc_ids": int64 array, "values": float64 array, "weights": float64 array or None}."""
    return {
        "doc_ids": np.frombuffer(doc_ids, dtype=IDS).astype(np.int64),
        "values": np.frombuffer(values, dtype=FLOATS).astype(np.float64),
        "weights": None if weights is None else np.frombuffer(weights, dtype=FLOATS).astype(np.float64),
    }
