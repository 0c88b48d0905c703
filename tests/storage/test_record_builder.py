"""``build_record``: the generated fast constructor the record encoders use
gives exactly the Record the frozen ``__init__`` gives, and stays frozen."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from clientcomm.storage.base import Record, build_record

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_build_record_equals_the_init() -> None:
    values: dict[str, Any] = {
        "kind": "message",
        "id": "m1",
        "firm_id": "f1",
        "parent": "c1",
        "ref": "r",
        "key": "k",
        "status": "s",
        "due_at": T0,
        "data": {"a": "b"},
        "body": b"x",
        "seq": 3,
        "version": 2,
        "lease_owner": "w",
        "lease_until": T0,
        "created_at": T0,
    }
    assert [f.name for f in attrs.fields(Record)] == list(values)  # every field, in order
    built = build_record(*values.values())
    assert built == Record(**values)
    assert attrs.asdict(built, recurse=False) == values
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.id = "m2"
