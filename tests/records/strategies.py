"""Hypothesis strategies for every registered record class, derived from the
attrs fields' types, so a newly registered kind is covered without edits.

``store_safe=True`` keeps to values every backend accepts (no NUL, no lone
surrogates, bounded lengths and integers, finite floats).
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
from hypothesis import strategies as st

from clientcomm.records import Kind

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
AWARE = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=ZONES
)
"""Timezone-aware datetimes (the records' datetimes are always aware)."""

_SAFE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def texts(store_safe: bool) -> st.SearchStrategy[str]:
    if store_safe:
        return st.text(_SAFE_CHARS, max_size=20)
    return st.text(max_size=20)


def json_values(store_safe: bool) -> st.SearchStrategy[Any]:
    """What a ``dict[str, Any]`` attribute (audience, details) may hold: JSON values."""
    ints = st.integers(-(2**53), 2**53) if store_safe else st.integers()
    scalars = (
        st.none()
        | st.booleans()
        | ints
        | st.floats(allow_nan=False, allow_infinity=False)
        | texts(store_safe)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=2) | st.dictionaries(texts(store_safe), inner, max_size=2)
        ),
        max_leaves=5,
    )


def for_type(tp: Any, store_safe: bool = False) -> st.SearchStrategy[Any]:
    """A strategy for values of the annotated type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return json_values(store_safe)
    if tp is datetime:
        return AWARE
    if tp is bytes:
        return st.binary(max_size=64)
    if tp is str:
        return texts(store_safe)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**53), 2**53) if store_safe else st.integers()
    if tp is type(None):
        return st.none()
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[for_type(a, store_safe) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(for_type(args[0], store_safe), max_size=3).map(tuple)
        return st.tuples(*[for_type(a, store_safe) for a in args])
    if origin is dict:
        keys, values = for_type(args[0], store_safe), for_type(args[1], store_safe)
        return st.dictionaries(keys, values, max_size=3)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and attrs.has(tp):
        return values_of(tp, store_safe=store_safe)
    return st.from_type(tp)


def values_of(
    cls: type[Any],
    *,
    store_safe: bool = False,
    overrides: Mapping[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Any]:
    """``st.builds(cls)`` with a strategy for every init attribute (optional ones
    included; ``overrides`` by name), ``meta`` left at its default."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in attrs.fields(cls) if f.init and f.name != "meta"]
    given = overrides or {}
    kwargs = {
        f.name: given[f.name] if f.name in given else for_type(hints[f.name], store_safe)
        for f in fields
    }
    return st.builds(cls, **kwargs)


def optional_created_attr(kind: Kind[Any]) -> str | None:
    """The attribute mapped to ``created_at`` when its type admits None."""
    attr = kind.columns.get("created_at")
    if attr is None:
        return None
    hint = typing.get_type_hints(kind.cls)[attr]
    return attr if type(None) in typing.get_args(hint) else None


@functools.cache
def records_of(kind: Kind[Any], *, store_safe: bool = False) -> st.SearchStrategy[Any]:
    """Values of ``kind`` that the Record layout can represent exactly: an
    optional attribute mapped to ``created_at`` is always set (None is stored
    as the epoch; ``test_optional_created_at_survives`` covers that)."""
    overrides: dict[str, st.SearchStrategy[Any]] = dict(_KIND_OVERRIDES.get(kind.name, {}))
    created = optional_created_attr(kind)
    if created is not None:
        overrides[created] = AWARE
    return values_of(kind.cls, store_safe=store_safe, overrides=overrides)


_HEX32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
_KIND_OVERRIDES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    # chained audit entries keep their link hashes as 32 raw bytes and the rest
    # as UTF-8 canonical JSON in the body (append refuses what UTF-8 cannot hold)
    "audit": {
        "hash": _HEX32,
        "prev": _HEX32,
        "actor": texts(True),
        "details": st.dictionaries(texts(True), json_values(True), max_size=3),
        "clients": st.lists(texts(True), max_size=3).map(tuple),
        "objects": st.lists(texts(True), max_size=3).map(tuple),
    },
}
