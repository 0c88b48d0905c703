"""Conversions shared by the SQL backends (and the memory backend's fidelity checks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from clientcomm.errors import InvalidInputError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_decode = json.JSONDecoder().decode


def to_micros(value: datetime | None) -> int | None:
    """Aware datetime -> integer microseconds since the epoch (exact)."""
    if value is None:
        return None
    return (value - EPOCH) // _MICRO


def from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return EPOCH + timedelta(microseconds=value)


def dump_data(data: Mapping[str, Any]) -> str:
    """Serialise a record's ``data``.

    Raises:
        InvalidInputError: not JSON-serialisable (sets, bytes, NaN, non-str keys...).
    """
    try:
        if any(not isinstance(k, str) for k in data):
            raise TypeError("keys must be strings")
        return _encoder.encode(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("data", f"must be JSON-serialisable: {exc}") from None


def load_data(text: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    value = _decode(text if isinstance(text, str) else text.decode())
    if not isinstance(value, dict):
        raise InvalidInputError("data", "stored data is not an object")
    return value


def data_dumper(records: object) -> Callable[[Mapping[str, Any]], str]:
    """:func:`dump_data` for one batch of records. When the batch is a list or
    tuple (fully built before the store reads it), records that share one
    ``data`` object (a mailing's copies) are serialised once."""
    if not isinstance(records, list | tuple):
        return dump_data
    last_data: Mapping[str, Any] | None = None
    last_text = ""

    def dump(data: Mapping[str, Any]) -> str:
        nonlocal last_data, last_text
        if data is not last_data:
            last_text = dump_data(data)
            last_data = data
        return last_text

    return dump
