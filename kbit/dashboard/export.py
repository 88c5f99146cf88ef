"""What a page shows, as downloadable CSV and JSON bytes (JSON: a list of records, NaN as null)."""

from __future__ import annotations

import json

import pandas as pd


def to_csv(frame: pd.DataFrame) -> bytes:
    """CSV with a header row, no index."""
    return frame.to_csv(index=False).encode()


def to_json(frame: pd.DataFrame) -> bytes:
    """A JSON array of row objects; missing values become null, dates ISO 8601."""
    return frame.to_json(orient="records", date_format="iso", indent=1).encode()


def detail_to_json(detail: dict) -> bytes:
    """One run's detail dict as indented JSON."""
    return json.dumps(detail, indent=2, default=str).encode()
