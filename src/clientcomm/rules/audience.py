"""Recipient selection for mass mailings (seed 000), as pure functions.

An :class:`Audience` combines three choices as a union with duplicates removed:
all active clients, one or more client groups, and individually picked clients.
:func:`resolve_audience` turns it, with the facts read from the Directory, into
a frozen, sorted recipient list. Inactive clients never receive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from clientcomm.directory.models import Client, ClientGroup, Staff
from clientcomm.errors import InvalidInputError, NotFoundError
from clientcomm.rules.access import AccessPolicy
from clientcomm.rules.text import all_identifiers, check_identifier, is_identifier, shown_id

__all__ = ["Audience", "ResolvedAudience", "SkippedClient", "resolve_audience"]


def _ids_of(value: Iterable[str], field: str) -> frozenset[str]:
    if isinstance(value, str):
        value = (value,)
    elif not isinstance(value, Iterable):
        raise InvalidInputError(field, f"must be ids (strings), not {type(value).__name__}")
    out = frozenset(value)
    for item in out:
        check_identifier(item, field)
    return out


def _group_ids(value: Iterable[str]) -> frozenset[str]:
    return _ids_of(value, "audience.group_ids")


def _client_ids(value: Iterable[str]) -> frozenset[str]:
    return _ids_of(value, "audience.client_ids")


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError("audience.all_active", "must be True or False")
    return value


@attrs.frozen
class Audience:
    """Who a mailing goes to: ``all_active`` clients, members of ``group_ids``,
    and the picked ``client_ids`` (union, duplicates removed).

    Raises:
        InvalidInputError: (on construction) an id that is not a usable string
            (``field`` is ``audience.group_ids`` or ``audience.client_ids``), or
            an ``all_active`` that is not a bool.
    """

    all_active: bool = attrs.field(default=False, converter=_flag)
    group_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_group_ids)
    client_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_client_ids)

    @classmethod
    def everyone(cls) -> Audience:
        """All active clients ("Alle")."""
        return cls(all_active=True)

    @classmethod
    def groups(cls, *group_ids: str) -> Audience:
        """Clients in any of these groups ("Gruppen")."""
        return cls(group_ids=frozenset(group_ids))

    @classmethod
    def clients(cls, *client_ids: str) -> Audience:
        """Individually picked clients ("Mandate")."""
        return cls(client_ids=frozenset(client_ids))

    def __or__(self, other: Audience) -> Audience:
        return Audience(
            all_active=self.all_active or other.all_active,
            group_ids=self.group_ids | other.group_ids,
            client_ids=self.client_ids | other.client_ids,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able definition (for the audit trail)."""
        return {
            "all_active": self.all_active,
            "group_ids": sorted(self.group_ids),
            "client_ids": sorted(self.client_ids),
        }


@attrs.frozen
class SkippedClient:
    client_id: str
    reason: str  # "inactive", or "invalid_id" (client_id then is an escaped rendering)


@attrs.frozen
class ResolvedAudience:
    """The frozen recipient list (sorted ids) and the picked clients left out."""

    recipient_ids: tuple[str, ...]
    skipped: tuple[SkippedClient, ...] = ()

    @property
    def count(self) -> int:
        return len(self.recipient_ids)


def resolve_audience(
    audience: Audience,
    *,
    sender: Staff,
    policy: AccessPolicy,
    clients: Sequence[Client],
    groups: Sequence[ClientGroup],
) -> ResolvedAudience:
    """Resolve ``audience`` for ``sender`` (pure).

    Args:
        clients: every client of the firm that the audience may name (at least
            the active ones, the groups' members and the picked ones).
        groups: the firm's client groups.

    Raises:
        InvalidInputError: nothing chosen; groups asked for in a firm without
            groups; an unknown group (``field="audience.group_ids"``); an empty
            result (``field="audience"``).
        NotFoundError: picked clients that do not exist or are outside the
            sender's access (never silently dropped), all named in ``id``
            (sorted, comma-separated); the two are not told apart.
    """
    if not (audience.all_active or audience.group_ids or audience.client_ids):
        raise InvalidInputError("audience", "choose all clients, groups or clients")
    if audience.group_ids:
        if not groups:
            raise InvalidInputError(
                "audience.group_ids",
                "this firm has no client groups",
                value=sorted(audience.group_ids),
            )
        unknown = audience.group_ids - {g.id for g in groups}
        if unknown:
            raise InvalidInputError(
                "audience.group_ids",
                f"unknown group(s): {', '.join(sorted(unknown))}",
                value=sorted(unknown),
            )
    by_id = {c.id: c for c in clients}
    # A picked client outside the sender's reach answers exactly as a missing
    # one (no existence oracle): one NotFoundError naming all of them, sorted.
    unseen = sorted(
        c
        for c in audience.client_ids
        if c not in by_id or not policy.allows(sender, "mailing.send", c)
    )
    if unseen:
        raise NotFoundError("client", ", ".join(unseen))

    chosen: set[str] = set(audience.client_ids)
    for c in clients:
        if (audience.all_active and c.active) or not audience.group_ids.isdisjoint(c.group_ids):
            chosen.add(c.id)
    recipients: list[str] = []
    skipped: list[SkippedClient] = []
    ordered = sorted(chosen)
    usable = all_identifiers(ordered)  # one pass for the usual case: every id usable
    for cid in ordered:
        client = by_id[cid]
        if not usable and not is_identifier(cid):
            # the Directory holds an id no store or cipher takes (NUL, a lone
            # surrogate): that client fails alone, reported under a safe rendering
            skipped.append(SkippedClient(shown_id(cid), "invalid_id"))
            continue
        if not client.active:
            if cid in audience.client_ids:
                skipped.append(SkippedClient(cid, "inactive"))
            continue
        if not policy.allows(sender, "mailing.send", cid):
            continue  # "all clients they have access to"
        recipients.append(cid)
    if not recipients:
        raise InvalidInputError("audience", "the audience has no active recipients")
    return ResolvedAudience(tuple(recipients), tuple(skipped))
