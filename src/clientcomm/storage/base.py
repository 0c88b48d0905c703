"""The Store port: clientcomm's own state, behind a transactional unit of work.

Every capability (messages, mailings, the notification outbox, keys, shares,
conversations, announcements, letters, audit) keeps its state as
:class:`Record` values of its own ``kind``. A backend therefore implements one
small, generic contract, and a new capability never needs a new backend method.

* A :class:`Transaction` is bound to one firm: it can neither read nor write
  another firm's rows (firm isolation is structural, not a convention).
* Writes inside a transaction become visible to other transactions only at
  commit, all together; an exception inside ``async with`` rolls everything back.
  Backends may buffer writes and send them in batches: a duplicate or a stale
  version is then reported at the next read or at commit, always before the
  transaction commits.
* Reads filter on the indexed columns only: ``parent`` (a chat, a mailing),
  ``ref`` (a secondary grouping: an assignee, a case file, an actor), ``status``
  and a ``created_at`` range; everything else is in ``data``.
* A refused batch (:class:`~clientcomm.errors.InvalidInputError` from
  ``insert``, ``update`` or ``delete``) writes nothing of the batch, and the
  transaction goes on.
* :meth:`Store.claim` leases due records to one worker for a while (PostgreSQL:
  ``FOR UPDATE SKIP LOCKED``). Each claim bumps ``version``, so a worker that
  finishes with :meth:`Transaction.update` after losing its lease gets a
  :class:`~clientcomm.errors.ConflictError` and its whole transaction rolls back:
  this is what makes background work exactly-once.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import attrs

from clientcomm.errors import InvalidInputError

__all__ = [
    "EPOCH",
    "Record",
    "Store",
    "Transaction",
    "validate_created_range",
    "validate_ids",
    "validate_record",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_KIND_RE = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")
_MAX_ID = 200


@attrs.frozen
class Record:
    """One stored row.

    Attributes:
        kind: record type, e.g. ``"message"``, ``"mailing.page"``.
        id: unique within (firm, kind); at most 200 characters.
        firm_id: owning firm; a transaction only sees its own firm's records.
        parent: grouping id (a chat, a mailing); indexed with ``seq``.
        ref: a second, independent grouping reference, not unique (an assignee,
            a case file, an actor); indexed with ``seq`` (and with ``status``).
        key: optional secondary key, unique within (firm, kind) when set.
        status: indexed state, e.g. ``"queued"``.
        due_at: when a claimable record becomes due (``None``: now).
        data: JSON-serialisable mapping (str keys; str, int, float, bool, None,
            lists and dicts of them).
        body: opaque bytes (a sealed envelope); hidden from ``repr``.
        seq: store-assigned, increasing with insertion order (0 before insert).
        version: bumped on every update and claim (optimistic concurrency).
        lease_owner, lease_until: set by :meth:`Store.claim`.
        created_at: set by the caller (from its Clock); reads can filter on a
            range of it.
    """

    kind: str
    id: str
    firm_id: str
    parent: str | None = None
    ref: str | None = None
    key: str | None = None
    status: str | None = None
    due_at: datetime | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    body: bytes | None = attrs.field(default=None, repr=False)
    seq: int = 0
    version: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    created_at: datetime = EPOCH

    def evolve(self, **changes: Any) -> Record:
        """A copy with ``changes`` applied (``attrs.evolve``)."""
        return attrs.evolve(self, **changes)


def _make_record_builder() -> Any:
    """``build(kind, id, firm_id, parent, ref, key, status, due_at, data, body,
    seq, version, lease_owner, lease_until, created_at)``: a Record from all of
    its fields, positionally, without the frozen ``__init__``'s per-field
    ``object.__setattr__`` calls (the record registry's generated encoders use
    it: a mailing's fan-out builds one Record per recipient). It sets the slots
    through their descriptors; Record has no validators or converters."""
    names = [f.name for f in attrs.fields(Record)]
    setters = {f"_set_{n}": Record.__dict__[n].__set__ for n in names}
    body = "".join(f"    _set_{n}(r, {n})\n" for n in names)
    source = f"def build({', '.join(names)}):\n    r = _new(_Record)\n{body}    return r\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_Record": Record, **setters}
    exec(compile(source, "<clientcomm.storage build_record>", "exec"), namespace)  # noqa: S102
    return namespace["build"]


build_record: Any = _make_record_builder()
"""See :func:`_make_record_builder` (internal: for generated encoders)."""


_GOOD_KINDS: set[str] = set()


def _bad_text(name: str, value: object, limit: int, required: bool) -> InvalidInputError | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        what = "a non-empty string" if required else "None or a string"
        return InvalidInputError(name, f"must be {what} of at most {limit} characters")
    if "\x00" in value:
        return InvalidInputError(name, "must not contain NUL characters")
    return None


def validate_record(record: Record) -> None:
    """Check the parts of a record every backend must refuse (on the hot path of
    every write, so it is written for speed).

    Raises:
        InvalidInputError: bad kind; empty or over-long id or firm id; a text
            field that is not a string, too long or contains NUL; a naive
            datetime; a body that is not bytes; data that is not a mapping.
    """
    kind = record.kind
    if kind not in _GOOD_KINDS:
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise InvalidInputError("kind", "must match [a-z][a-z0-9_.]*", value=kind)
        if len(_GOOD_KINDS) < 1000:
            _GOOD_KINDS.add(kind)
    # fast path: every check below in one expression; the slow path names the fault
    i, f, p, r, k, s, o = (
        record.id,
        record.firm_id,
        record.parent,
        record.ref,
        record.key,
        record.status,
        record.lease_owner,
    )
    due, until, created, body = record.due_at, record.lease_until, record.created_at, record.body
    if (
        type(i) is str
        and 0 < len(i) <= _MAX_ID
        and "\x00" not in i
        and type(f) is str
        and 0 < len(f) <= _MAX_ID
        and "\x00" not in f
        and (p is None or (type(p) is str and len(p) <= 400 and "\x00" not in p))
        and (r is None or (type(r) is str and len(r) <= 400 and "\x00" not in r))
        and (k is None or (type(k) is str and len(k) <= 400 and "\x00" not in k))
        and (s is None or (type(s) is str and len(s) <= 400 and "\x00" not in s))
        and (o is None or (type(o) is str and len(o) <= 400 and "\x00" not in o))
        and (due is None or due.tzinfo is not None)
        and (until is None or until.tzinfo is not None)
        and (created is None or created.tzinfo is not None)
        and (body is None or type(body) is bytes)
        and type(record.data) is dict
    ):
        return
    _validate_slowly(record)


def _validate_slowly(record: Record) -> None:
    for name, value, limit, required in (
        ("id", record.id, _MAX_ID, True),
        ("firm_id", record.firm_id, _MAX_ID, True),
        ("parent", record.parent, 400, False),
        ("ref", record.ref, 400, False),
        ("key", record.key, 400, False),
        ("status", record.status, 400, False),
        ("lease_owner", record.lease_owner, 400, False),
    ):
        if value is None and not required:
            continue
        if (
            type(value) is str
            and (value or not required)
            and len(value) <= limit
            and "\x00" not in value
        ):
            continue
        error = _bad_text(name, value, limit, required)
        if error is not None:
            raise error
    for name, when in (
        ("due_at", record.due_at),
        ("lease_until", record.lease_until),
        ("created_at", record.created_at),
    ):
        if when is not None and when.tzinfo is None:
            raise InvalidInputError(name, "must be timezone-aware")
    body = record.body
    if body is not None and not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidInputError("body", "must be bytes or None")
    if not isinstance(record.data, Mapping):
        raise InvalidInputError("data", "must be a mapping")


def validate_ids(ids: Iterable[str]) -> list[str]:
    """The distinct ids of ``ids``, in order, once every one is checked as
    :func:`validate_record` checks ``Record.id`` (for :meth:`Transaction.delete`,
    which refuses the whole batch before deleting anything).

    Raises:
        InvalidInputError: an id is not a non-empty string of at most 200
            characters, or contains NUL.
    """
    given = list(ids)
    for i in given:
        if type(i) is str and 0 < len(i) <= _MAX_ID and "\x00" not in i:
            continue
        error = _bad_text("id", i, _MAX_ID, True)
        if error is not None:
            raise error
    return list(dict.fromkeys(given))


def validate_created_range(created_from: object, created_before: object) -> None:
    """Check the ``created_at`` range filter of :meth:`Transaction.list`,
    :meth:`Transaction.count` and :meth:`Store.iterate`.

    Raises:
        InvalidInputError: a bound that is neither None nor a timezone-aware
            datetime (the error names ``created_from`` or ``created_before``).
    """
    for name, value in (("created_from", created_from), ("created_before", created_before)):
        if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
            raise InvalidInputError(name, "must be None or a timezone-aware datetime")


@runtime_checkable
class Transaction(Protocol):
    """A unit of work bound to one firm (see module docs)."""

    @property
    def firm_id(self) -> str: ...

    async def get(self, kind: str, id: str) -> Record:
        """Raises NotFoundError if absent (or of another firm)."""
        ...

    async def find(self, kind: str, id: str) -> Record | None:
        """The record, or None."""
        ...

    async def find_by_key(self, kind: str, key: str) -> Record | None:
        """The record whose ``key`` equals ``key``, or None."""
        ...

    async def get_many(self, kind: str, ids: Iterable[str]) -> Mapping[str, Record]:
        """The records that exist among ``ids``, by id."""
        ...

    async def insert(self, records: Iterable[Record]) -> Sequence[Record]:
        """Insert new records; returns them with ``seq`` assigned where known
        (a buffering backend may return ``seq=0`` until flushed).

        Raises:
            InvalidInputError: a record fails :func:`validate_record` or belongs
                to another firm.
            ConflictError: an id or key already exists (maybe at flush/commit).
        """
        ...

    async def update(self, records: Iterable[Record]) -> Sequence[Record]:
        """Replace records whose stored ``version`` equals the given one, bumping
        ``version``; returns the new values. ``seq`` and ``created_at`` are kept;
        every other field (``parent``, ``ref``, ``key``, ``status``, ...) is
        replaced.

        Raises:
            InvalidInputError: a record fails :func:`validate_record` or belongs
                to another firm; the whole batch is refused before anything of
                it is written or queued.
            ConflictError: a record was changed or claimed since it was read, or
                its new key clashes (maybe at flush/commit).
            NotFoundError: a record does not exist (maybe at flush/commit,
                reported as ConflictError by buffering backends).
        """
        ...

    async def replace(self, records: Iterable[Record]) -> None:
        """Insert records, each in place of the record of the same kind and id
        if there is one: it becomes the newest in ``seq`` order, ``version``
        0 (a list index entry moving to the top when its item changes).
        Nothing is read, so a buffering backend queues it like an insert
        (``DELETE`` then ``INSERT`` of each is a correct implementation).

        Raises:
            InvalidInputError: a record fails :func:`validate_record` or belongs
                to another firm; the whole batch is refused before anything of
                it is written or queued.
            ConflictError: a record's ``key`` is held by another record (maybe
                at flush/commit).
        """
        ...

    async def delete(self, kind: str, ids: Iterable[str]) -> int:
        """Delete records by id; returns how many existed.

        Raises:
            InvalidInputError: an id fails :func:`validate_ids`; the whole
                batch is refused and nothing is deleted.
        """
        ...

    async def list(
        self,
        kind: str,
        *,
        parent: str | None = None,
        status: str | None = None,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        descending: bool = False,
    ) -> Sequence[Record]:
        """Records ordered by ``seq`` (ascending, or descending), filtered by
        every filter given (together): ``parent``, ``status`` and ``ref``
        equal, and ``created_from <= created_at < created_before``. ``after_seq``
        pages forward (ascending) or backward (descending, 0 meaning from the
        newest).

        A backend indexes (firm, kind, parent), (firm, kind, ref), (firm, kind,
        ref, status) in ``seq`` order and (firm, kind, created_at).

        Raises:
            InvalidInputError: negative ``limit``; a naive or non-datetime
                ``created_from``/``created_before`` (see
                :func:`validate_created_range`).
        """
        ...

    async def count(
        self,
        kind: str,
        *,
        parent: str | None = None,
        status: str | None = None,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        after_seq: int = 0,
    ) -> int:
        """How many records :meth:`list` would return (ascending, no limit)."""
        ...

    async def count_by_status(self, kind: str, *, parent: str | None = None) -> Mapping[str, int]:
        """Counts per status (records without status are left out)."""
        ...


@runtime_checkable
class Store(Protocol):
    """A Store backend: memory, SQLite or PostgreSQL (or an integrator's own)."""

    def transaction(self, firm_id: str) -> AbstractAsyncContextManager[Transaction]:
        """Open a unit of work for ``firm_id``; commits on normal exit, rolls back
        on exception.

        Raises:
            InvalidInputError: empty firm id.
            StorageError: the backend failed.
        """
        ...

    async def claim(
        self,
        kind: str,
        *,
        status: str,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        firm_id: str | None = None,
        parent: str | None = None,
    ) -> Sequence[Record]:
        """Lease up to ``limit`` records of ``kind`` in ``status`` that are due
        (``due_at`` is None or <= now) and not leased by a live lease, oldest
        ``seq`` first, across all firms unless ``firm_id`` is given. Sets
        ``lease_owner``/``lease_until`` and bumps ``version``; commits at once.
        Concurrent claimers never receive the same record while its lease lives.
        """
        ...

    def iterate(
        self,
        firm_id: str,
        kind: str,
        *,
        parent: str | None = None,
        status: str | None = None,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[Record]:
        """Stream the records :meth:`Transaction.list` would return with the same
        filters, in ``seq`` order, reading ``batch`` at a time in short
        transactions (memory stays bounded for any count)."""
        ...

    async def migrate(self) -> int:
        """Apply pending schema migrations; returns the schema version.

        Raises:
            StorageError: the database schema is newer than this library.
        """
        ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc: object) -> None: ...
