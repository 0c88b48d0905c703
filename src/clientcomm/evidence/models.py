"""Proof of delivery: typed facts about one message, and the registry of the
sources that find them.

A :class:`DeliveryEvidence` gathers what is known about one message sent to a
client (a single message or a mailing copy) as a list of :class:`Fact`\\ s:
``copy.stored`` (the copy is in the client's chat), ``notice.accepted`` (the
SMTP server accepted an e-mail notice, with its reply), ``notice.failed``,
``notice.pending``, ``message.opened`` (the client first opened it).

Each fact comes from an **evidence source** registered with
:func:`register_evidence_source`, which declares the fact kinds it reports. A
later capability (shares: ``share.downloaded``; letters:
``letter.ordered``, ``letter.tracked``) adds its facts by registering its own
source in its own module; the gatherer is not edited, and a fact of a kind no
source declared is refused (:class:`~clientcomm.errors.ConfigurationError`),
so the kinds stay documented.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from clientcomm.errors import ConfigurationError

if TYPE_CHECKING:
    from clientcomm.audit import AuditTrail
    from clientcomm.messages.records import MessageRecord
    from clientcomm.records import Records

__all__ = [
    "EVIDENCE_SOURCES",
    "DeliveryEvidence",
    "EvidenceContext",
    "EvidenceSource",
    "EvidenceSourceRegistry",
    "Fact",
    "SourceFn",
    "register_evidence_source",
]


def _json_value(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 strings (for :meth:`Fact.to_dict`)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


@attrs.frozen
class Fact:
    """One thing known about a message's delivery.

    Attributes:
        kind: what is known (``copy.stored``, ``notice.accepted``, ...; declared
            by the source that reports it).
        at: when it happened (``None`` where nothing happened yet, e.g. a
            notice still pending).
        source: the record it was read from, ``"<kind>:<id>"`` (the message,
            a notification job, an audit entry: ``"audit:<position>"``).
        details: JSON values (ids, codes, the SMTP reply, audit positions and
            hashes); never message text.
    """

    kind: str
    at: datetime | None
    source: str
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at.isoformat() if self.at is not None else None,
            "source": self.source,
            "details": _json_value(dict(self.details)),
        }


@attrs.frozen
class DeliveryEvidence:
    """What is known about the delivery of one message (see module docs).

    Attributes:
        firm_id, message_id, client_id: the message and its chat.
        mailing_id: the mailing it is a copy of (``None``: a single message).
        facts: every fact found, ordered by time (facts without a time last).
        problems: records that should have told something but could not be
            read (tampered with, damaged, missing), each a log-safe line naming
            the record; evidence with problems is incomplete, never silently.
        gathered_at: when it was gathered.
    """

    firm_id: str
    message_id: str
    client_id: str
    mailing_id: str | None
    facts: tuple[Fact, ...]
    problems: tuple[str, ...]
    gathered_at: datetime

    def of(self, kind: str) -> tuple[Fact, ...]:
        """The facts of ``kind``, in order."""
        return tuple(f for f in self.facts if f.kind == kind)

    def first(self, kind: str) -> Fact | None:
        """The earliest fact of ``kind``, or None."""
        found = self.of(kind)
        return found[0] if found else None

    @property
    def stored_at(self) -> datetime | None:
        """When the copy was stored in the client's chat."""
        fact = self.first("copy.stored")
        return fact.at if fact else None

    @property
    def first_opened_at(self) -> datetime | None:
        """When the client first opened it (None: not yet, as far as recorded)."""
        fact = self.first("message.opened")
        return fact.at if fact else None

    @property
    def complete(self) -> bool:
        """No record that should have told something failed to read."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "firm_id": self.firm_id,
            "message_id": self.message_id,
            "client_id": self.client_id,
            "mailing_id": self.mailing_id,
            "gathered_at": self.gathered_at.isoformat(),
            "complete": self.complete,
            "facts": [f.to_dict() for f in self.facts],
            "problems": list(self.problems),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """The evidence as one JSON document (UTF-8 text, sorted keys)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, indent=indent)


@attrs.frozen
class EvidenceContext:
    """What a source gets: the message (authenticated against its sealed
    value), the firm's records and audit trail, and a way to report a record
    it could not read.

    Attributes:
        firm_id: the firm.
        message: the message, as its sealed value authenticates it.
        records: the firm's Store as typed records.
        audit: the audit trail (already chained up to now).
        problems: append a log-safe line per record that could not be read
            (prefer :meth:`problem`).
    """

    firm_id: str
    message: MessageRecord
    records: Records
    audit: AuditTrail
    problems: list[str] = attrs.field(factory=list)

    def problem(self, line: str) -> None:
        """Report one record that should have told something but could not be read."""
        self.problems.append(line)


SourceFn = Callable[[EvidenceContext], Awaitable[Iterable[Fact]]]
"""``await source(ctx)`` returns the facts it knows about ``ctx.message``."""


@attrs.frozen
class EvidenceSource:
    """A registered source: its name, the fact kinds it reports (with one line
    of documentation each) and the function."""

    name: str
    kinds: Mapping[str, str]
    fn: SourceFn = attrs.field(repr=False)


class EvidenceSourceRegistry:
    """Every registered :class:`EvidenceSource`, in registration order."""

    def __init__(self) -> None:
        self._sources: dict[str, EvidenceSource] = {}

    def register(self, name: str, kinds: Mapping[str, str], fn: SourceFn) -> EvidenceSource:
        """Register a source reporting ``kinds`` (fact kind -> what it means).

        Raises:
            ConfigurationError: a name registered twice, a fact kind another
                source already reports, no kinds, or a malformed kind.
        """
        if name in self._sources:
            raise ConfigurationError(f"evidence source {name!r} is registered twice")
        if not kinds:
            raise ConfigurationError(f"evidence source {name!r} declares no fact kinds")
        taken = self.kinds()
        for kind in kinds:
            head, dot, tail = kind.partition(".")
            if not (dot and head and tail and kind.replace(".", "").replace("_", "").isalnum()):
                raise ConfigurationError(f"fact kind {kind!r} must look like 'thing.done'")
            if kind in taken:
                raise ConfigurationError(f"fact kind {kind!r} is reported by {taken[kind]!r}")
        source = EvidenceSource(name, dict(kinds), fn)
        self._sources[name] = source
        return source

    def unregister(self, name: str) -> None:
        """Remove a source (for tests of a host's own sources)."""
        self._sources.pop(name, None)

    def kinds(self) -> dict[str, str]:
        """fact kind -> the name of the source reporting it."""
        return {k: s.name for s in self._sources.values() for k in s.kinds}

    def __iter__(self) -> Iterator[EvidenceSource]:
        return iter(list(self._sources.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._sources


EVIDENCE_SOURCES = EvidenceSourceRegistry()
"""The registry every bundled capability registers its evidence sources in."""


def register_evidence_source(name: str, kinds: Mapping[str, str]) -> Callable[[SourceFn], SourceFn]:
    """Decorator: register ``fn`` in :data:`EVIDENCE_SOURCES` as the source
    ``name`` reporting the fact kinds ``kinds`` (kind -> one line of what it
    means, for ``docs/compliance.md``).

    ```python no-run
    from clientcomm.evidence import Fact, register_evidence_source

    @register_evidence_source("shares", {"share.downloaded": "the client downloaded it"})
    async def downloads(ctx):
        return [Fact("share.downloaded", at, f"share:{sid}", {"share_id": sid}) ...]
    ```
    """

    def decorate(fn: SourceFn) -> SourceFn:
        EVIDENCE_SOURCES.register(name, kinds, fn)
        return fn

    return decorate
