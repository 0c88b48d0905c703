"""What a sealed value is bound to, and the byte-level constants of format v1.

See ``docs/security.md`` for the envelope format byte by byte.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import cast

import attrs

from clientcomm.errors import InvalidInputError

__all__ = [
    "FORMAT_VERSION",
    "TYPE_STREAM_KEY",
    "TYPE_VALUE",
    "SealContext",
    "all_fast_ok",
    "key_commitment",
]

FORMAT_VERSION = 1
"""Byte 0 of every envelope and stream key."""

TYPE_VALUE = 1
"""Byte 1 of a single-value envelope."""

TYPE_STREAM_KEY = 2
"""Byte 1 of a stream key (the wrapped key and parameters of a chunked stream)."""

COMMIT_LABEL = b"clientcomm.v1.key-commitment\x00"
VALUE_AAD_TAG = "clientcomm.v1.value"
COMMITMENT_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")

_sha256 = hashlib.sha256
_MAX = 400


def key_commitment(data_key: bytes) -> bytes:
    """``SHA-256("clientcomm.v1.key-commitment" || 0x00 || data_key)``.

    Stored beside the ciphertext and compared (in constant time) with the
    unwrapped data key before decrypting, so a ciphertext cannot open under two
    different data keys (key commitment, as in the AWS Encryption SDK's
    committing suites): that would need a SHA-256 collision.
    """
    return _sha256(COMMIT_LABEL + data_key).digest()


def _check_part(inst: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX or "\x00" in value:
        raise InvalidInputError(
            attribute.name, "must be a non-empty string without NUL (<= 400 chars)"
        )
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInputError(attribute.name, "must be encodable as UTF-8") from None


def _check_client(inst: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None:
        _check_part(inst, attribute, value)  # type: ignore[arg-type]


@attrs.frozen(slots=True)
class SealContext:
    """Where a sealed value belongs; bound into the associated data, so the
    ciphertext fails to open anywhere else (another client, object or field).

    Attributes:
        firm_id: the owning firm.
        client_id: the client whose key wraps the data key. ``None`` only for a
            *shared* stream sealed once for several clients (each recipient
            gets a stream key wrapped with their own key).
        kind: object kind, e.g. ``"message"``, ``"attachment"``.
        object_id: the object's id (message id, blob id).
        field: which field of the object, e.g. ``"body"``, ``"subject"``.

    All parts are non-empty strings without NUL characters (at most 400).
    """

    firm_id: str = attrs.field(validator=_check_part)
    client_id: str | None = attrs.field(validator=_check_client)
    kind: str = attrs.field(validator=_check_part)
    object_id: str = attrs.field(validator=_check_part)
    field: str = attrs.field(validator=_check_part)

    def encode(self) -> bytes:
        """The context as associated-data bytes: the five parts joined by NUL
        (an absent client is the empty string), UTF-8."""
        return "\x00".join(
            (self.firm_id, self.client_id or "", self.kind, self.object_id, self.field)
        ).encode()

    def value_aad(self) -> bytes:
        """Associated data of a single-value envelope:
        ``"clientcomm.v1.value" \\0 firm \\0 client \\0 kind \\0 id \\0 field`` (UTF-8)."""
        return "\x00".join(
            (
                VALUE_AAD_TAG,
                self.firm_id,
                self.client_id or "",
                self.kind,
                self.object_id,
                self.field,
            )
        ).encode()

    @classmethod
    def many(
        cls, firm_id: str, kind: str, field: str, items: Iterable[tuple[str, str]]
    ) -> list[SealContext]:
        """Contexts of one firm, kind and field for many ``(client_id,
        object_id)`` pairs (a mailing builds one per recipient): validated as
        the constructor validates, with the shared parts checked once.

        Raises:
            InvalidInputError: a part is empty, too long, contains NUL or is not
                encodable as UTF-8 (names the part, as the constructor does).
        """
        cls(firm_id, None, kind, "-", field)  # validates the shared parts
        new = object.__new__
        put = object.__setattr__
        out: list[SealContext] = []
        for client_id, object_id in items:
            if not (_fast_ok(client_id) and _fast_ok(object_id)):
                cls(firm_id, client_id, kind, object_id, field)  # raises the precise error
            ctx = new(cls)
            put(ctx, "firm_id", firm_id)
            put(ctx, "client_id", client_id)
            put(ctx, "kind", kind)
            put(ctx, "object_id", object_id)
            put(ctx, "field", field)
            out.append(ctx)
        return out


def all_fast_ok(values: Sequence[object]) -> bool:
    """:func:`_fast_ok` of every value (True for none), in a few C-level passes
    over the batch instead of one Python call per value; False sends the
    caller to the per-value checks (which name the fault)."""
    if not values:
        return True
    if set(map(type, values)) != {str}:
        return False
    strings = cast("Sequence[str]", values)
    lengths = list(map(len, strings))
    if min(lengths) <= 0 or max(lengths) > _MAX:
        return False
    joined = "".join(strings)
    return joined.isascii() and "\x00" not in joined


def _fast_ok(value: object) -> bool:
    """The common case of :func:`_check_part`: a short ASCII string without NUL."""
    return type(value) is str and 0 < len(value) <= _MAX and value.isascii() and "\x00" not in value
