"""Typed records: the registry of stored kinds and a typed view of a Store
transaction. See :mod:`clientcomm.records.registry` and ``docs/records.md``."""

from __future__ import annotations

from clientcomm.records.registry import (
    COLUMNS,
    INTEGRITY,
    REGISTRY,
    Kind,
    Meta,
    Registry,
    SealedField,
    converter,
    meta_field,
    unbound,
)
from clientcomm.records.tx import Records, RecordTx

__all__ = [
    "COLUMNS",
    "INTEGRITY",
    "REGISTRY",
    "Kind",
    "Meta",
    "RecordTx",
    "Records",
    "Registry",
    "SealedField",
    "converter",
    "meta_field",
    "unbound",
]
