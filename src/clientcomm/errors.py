"""One exception hierarchy for everything clientcomm raises.

Every error is a :class:`ClientCommError`. Each one also inherits the matching
builtin, so host code that already catches ``LookupError``, ``PermissionError`` or
``ValueError`` keeps working, and each carries structured context (``context``)
that is safe to log: it never contains plaintext, keys or tokens.

Backends translate driver errors (``sqlite3``, ``psycopg``, ``aiosmtplib``,
``cryptography``'s ``InvalidTag``, ``pypdf``) into the most specific class here.

Every error pickles (task queues such as Celery, Dramatiq and procrastinate
pickle exceptions): it is rebuilt from its stored state, never by calling
``__init__`` again, so subclasses with their own signatures round-trip too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ClientCommError",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "IntegrityError",
    "InvalidDocumentError",
    "InvalidInputError",
    "KeyDestroyedError",
    "NotFoundError",
    "PermanentDeliveryError",
    "PermissionDeniedError",
    "RetentionError",
    "StorageError",
    "TemporaryDeliveryError",
]


class ClientCommError(Exception):
    """Root of every error raised by clientcomm.

    ``context`` holds structured, log-safe details (ids, field names, counts).
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: Mapping[str, Any] = context

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException's own reduce re-calls ``cls(*self.args)``, which fails for
        # every __init__ whose parameters differ from ``args`` (NotFoundError,
        # InvalidInputError, host subclasses). Rebuild without __init__ instead;
        # pickle then restores the attributes (message, context, kind, field,
        # __notes__, ...) with BaseException.__setstate__.
        return (_rebuild, (type(self), self.args), self.__dict__.copy())


def _rebuild(cls: type[ClientCommError], args: tuple[Any, ...]) -> ClientCommError:
    """Unpickling helper: an instance of ``cls`` with ``args``, not initialised."""
    err = cls.__new__(cls, *args)
    err.args = args  # OSError subclasses (PermissionError) leave args to __init__
    return err


class NotFoundError(ClientCommError, LookupError):
    """An id names nothing visible to the caller (also used for another firm's or
    another client's objects, and for objects out of a staff member's reach, so
    existence is never leaked)."""

    def __init__(self, kind: str, id: object, message: str | None = None) -> None:
        super().__init__(message or f"{kind} {id!r} not found", kind=kind, id=id)
        self.kind = kind
        self.id = id


class PermissionDeniedError(ClientCommError, PermissionError):
    """The actor may not perform the action. Nothing was read or written.

    ``offending_ids`` names the objects outside the actor's access, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        actor: object = None,
        action: str | None = None,
        offending_ids: Iterable[str] = (),
    ) -> None:
        ids = tuple(sorted(offending_ids))
        super().__init__(message, actor=actor, action=action, offending_ids=ids)
        self.actor = actor
        self.action = action
        self.offending_ids: tuple[str, ...] = ids


class InvalidInputError(ClientCommError, ValueError):
    """Input was rejected; ``field`` names the offending field, ``value`` a safe
    rendering of the offending value where that does not leak content."""

    def __init__(self, field: str, message: str, *, value: object = None) -> None:
        super().__init__(f"{field}: {message}", field=field, value=value)
        self.field = field
        self.value = value


class InvalidDocumentError(InvalidInputError):
    """An uploaded document (a letter's PDF, a general attachment) was refused by
    intake: ``filename`` names the file, ``reason`` is a stable reason code
    (:class:`clientcomm.letters.DocumentProblem` values such as ``"encrypted"`` or
    ``"decompression_bomb"``), ``detail`` a short log-safe explanation. Nothing
    was stored."""

    def __init__(self, filename: str, reason: str, detail: str = "") -> None:
        message = f"{filename!r} refused: {reason}" + (f" ({detail})" if detail else "")
        ClientCommError.__init__(
            self, message, field="document", filename=filename, reason=reason, detail=detail
        )
        self.field = "document"
        self.value = filename
        self.filename = filename
        self.reason = reason
        self.detail = detail


class ConflictError(ClientCommError):
    """The write clashes with existing state: a duplicate id or unique key, a stale
    version (someone else changed the record), or an illegal state transition."""


class IntegrityError(ClientCommError):
    """Stored data failed authentication: it was tampered with, truncated, moved to
    another client/object/field, or opened with the wrong key. No bytes are
    returned."""


class KeyDestroyedError(IntegrityError):
    """The key needed to open the value was destroyed (the client was forgotten)."""


class RetentionError(ClientCommError, PermissionError):
    """A retention rule forbids the erasure that was asked for."""


class StorageError(ClientCommError):
    """The storage backend failed in a way that is not the caller's fault
    (connection lost, disk full, schema newer than this library)."""


class ConfigurationError(ClientCommError, ValueError):
    """clientcomm was configured inconsistently (bad URL, missing master key)."""


class DeliveryError(ClientCommError):
    """A notification or letter could not be delivered."""


class TemporaryDeliveryError(DeliveryError):
    """Delivery failed for now (connection error, SMTP 4xx); retrying may succeed."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for good (SMTP 5xx, invalid address); do not retry."""
