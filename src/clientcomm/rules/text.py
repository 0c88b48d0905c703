"""What text must be before clientcomm accepts it (pure checks, one place).

Every string that is stored, sealed or rendered into an e-mail must encode as
UTF-8 (no lone surrogates such as ``"\\ud800"``, which ``str`` allows but no
database, cipher or mail header can take) and hold no NUL. Values that end up
on one line (firm, client and contact names, ids) must also be free of line
breaks and other control characters, and of bounded length. These checks run
where values **enter**: the bundled Directory writes and the service calls.
Use sites (the notification composer, the fan-out) use :func:`is_storable` to
fail one bad record alone instead of raising for the whole batch.

Every refusal is an :class:`~clientcomm.errors.InvalidInputError` naming the
field; the offending character is given by code point, never the value itself
(it may be content).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

from clientcomm.errors import InvalidInputError

__all__ = [
    "MAX_ID",
    "MAX_NAME",
    "MAX_SIGNED_64",
    "all_identifiers",
    "check_identifier",
    "check_line",
    "check_storable",
    "is_identifier",
    "is_storable",
    "lone_surrogate",
    "shown_id",
]

#: Longest id accepted (firm, client, contact, staff, group, case file).
MAX_ID = 200
#: Longest single-line name accepted (firm, client, contact, staff, group).
MAX_NAME = 300
#: Largest integer every backend stores (SQLite and PostgreSQL ``BIGINT``).
MAX_SIGNED_64 = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls except TAB, DEL, C1 controls, the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_BAD_IN_ID = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def lone_surrogate(value: str) -> int | None:
    """The position of the first lone surrogate in ``value``, or ``None``."""
    match = _SURROGATE.search(value)
    return None if match is None else match.start()


def is_storable(value: object) -> bool:
    """True if ``value`` is a string every backend can store and every
    encoder can encode: UTF-8-encodable and without NUL (never raises)."""
    return isinstance(value, str) and "\x00" not in value and _SURROGATE.search(value) is None


def check_storable(
    value: object,
    field: str,
    *,
    max_length: int | None = None,
    required: bool = False,
) -> str:
    """Return ``value`` if it is a string that can be stored, sealed and rendered.

    Raises:
        InvalidInputError: not a string, empty when ``required``, longer than
            ``max_length``, a NUL character or a lone surrogate.
    """
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInputError(field, "must not be empty")
    if max_length is not None and len(value) > max_length:
        raise InvalidInputError(field, f"must be at most {max_length} characters", value=len(value))
    if "\x00" in value:
        raise InvalidInputError(field, "must not contain NUL characters")
    at = lone_surrogate(value)
    if at is not None:
        raise InvalidInputError(
            field,
            f"contains a lone surrogate (U+{ord(value[at]):04X} at position {at}); "
            "it is not valid Unicode text",
        )
    return value


def check_line(
    value: object, field: str, *, max_length: int = MAX_NAME, required: bool = True
) -> str:
    """Return ``value`` if it is storable single-line text of at most
    ``max_length`` characters (a name that goes into a mail header or a list).

    Raises:
        InvalidInputError: as :func:`check_storable`, or a line break or other
            control character (tabs are allowed): the message says which.
    """
    text = check_storable(value, field, max_length=max_length, required=required)
    match = _CONTROL.search(text)
    if match is not None:
        char = match.group()
        what = "a line break" if char in _LINE_BREAKS else "a control character"
        raise InvalidInputError(field, f"must be one line: contains {what} (U+{ord(char):04X})")
    return text


def check_identifier(value: object, field: str, *, max_length: int = MAX_ID) -> str:
    """Return ``value`` if it is a usable id: a non-empty single-line string of
    at most ``max_length`` characters, not only whitespace.

    Raises:
        InvalidInputError: otherwise.
    """
    return check_line(value, field, max_length=max_length, required=True)


def is_identifier(value: object, *, max_length: int = MAX_ID) -> bool:
    """True if :func:`check_identifier` accepts ``value`` (never raises; one
    regular-expression search, cheap enough for every recipient of a mailing)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_length
        and _BAD_IN_ID.search(value) is None
        and not value.isspace()
    )


def all_identifiers(values: Sequence[object], *, max_length: int = MAX_ID) -> bool:
    """True if :func:`is_identifier` accepts every value (True for none): one
    regular-expression search over the batch joined and a few C-level passes,
    instead of a call per value (a mailing page's recipients). False means
    some value is not an id: ask :func:`is_identifier` of each."""
    if not values:
        return True
    if set(map(type, values)) != {str}:  # str subclasses too: value by value
        return all(is_identifier(v, max_length=max_length) for v in values)
    strings = cast("Sequence[str]", values)
    lengths = list(map(len, strings))
    return (
        min(lengths) > 0
        and max(lengths) <= max_length
        and _BAD_IN_ID.search("".join(strings)) is None
        and not any(map(str.isspace, strings))
    )


def shown_id(value: str) -> str:
    """A storable rendering of an id: the id itself if it is one, otherwise
    its ``ascii()`` escape (``"c\\x00x"``), so a report can name it."""
    if is_identifier(value):
        return value
    return ascii(value)[1:-1][:MAX_ID]
