"""The registry of audit operations: every operation name is declared once.

An :class:`Operation` names what happened (``"mailing.submitted"``), what its
subject is, whether it concerns one client or a batch of them, and which
``details`` keys it may carry. :func:`clientcomm.audit.append` refuses an
undeclared operation and an undeclared detail key with
:class:`~clientcomm.errors.InvalidInputError`, so no capability writes an
operation nobody documented, and no free-form text (a message, a file name)
slips into the trail through a detail nobody declared.

Later capabilities declare their operations in their own modules with
:func:`declare` (``docs/compliance.md`` lists them; a test keeps the table in
step with this registry).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from clientcomm.errors import ConfigurationError, InvalidInputError

__all__ = ["OPERATIONS", "Operation", "OperationRegistry", "declare"]


@attrs.frozen
class Operation:
    """One declared audit operation.

    Attributes:
        name: ``capability.past_participle``, e.g. ``"mailing.submitted"``.
        subject: the kind of the subject, e.g. ``"mailing"`` (the subject is
            ``"<subject>:<id>"``).
        doc: what it records, one line (for the table in ``docs/compliance.md``).
        written_by: the API or step that writes it (for the table).
        details: the detail keys it may carry (ids, counts, states; never content).
        batch: whether it concerns many clients at once (``clients`` instead of
            ``client``); a query by client also looks into batch entries.
    """

    name: str
    subject: str
    doc: str
    written_by: str
    details: frozenset[str] = frozenset()
    batch: bool = False


class OperationRegistry:
    """Every declared :class:`Operation`, by name."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def declare(self, op: Operation) -> Operation:
        """Declare ``op``; returns it.

        Raises:
            ConfigurationError: declared twice, or a malformed name.
        """
        if op.name in self._ops:
            raise ConfigurationError(f"audit operation {op.name!r} is declared twice")
        head, dot, tail = op.name.partition(".")
        if (
            not dot
            or not head
            or not tail
            or not op.name.replace(".", "").replace("_", "").isalnum()
        ):
            raise ConfigurationError(f"audit operation {op.name!r} must look like 'thing.done'")
        self._ops[op.name] = op
        return op

    def get(self, name: str) -> Operation:
        """The operation named ``name``.

        Raises:
            InvalidInputError: not declared (``field`` is ``"operation"``).
        """
        try:
            return self._ops[name]
        except (KeyError, TypeError):
            raise InvalidInputError(
                "operation", "is not a declared audit operation", value=name
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[Operation]:
        return iter(sorted(self._ops.values(), key=lambda o: o.name))

    def batch_names(self) -> list[str]:
        """The operations whose entries name many clients."""
        return [o.name for o in self if o.batch]


OPERATIONS = OperationRegistry()
"""The registry every bundled capability declares its operations in."""


def declare(
    name: str,
    subject: str,
    doc: str,
    written_by: str,
    details: tuple[str, ...] = (),
    *,
    batch: bool = False,
) -> Operation:
    """Declare an operation in :data:`OPERATIONS` (see :class:`Operation`)."""
    return OPERATIONS.declare(Operation(name, subject, doc, written_by, frozenset(details), batch))


# -- the operations that exist today ----------------------------------------------------
declare(
    "mailing.submitted",
    "mailing",
    "a mass mailing was submitted (frozen audience, counts)",
    "`MailingService.submit`",
    ("audience", "recipient_count", "attachment_count", "scheduled_at", "skipped_count"),
)
declare(
    "mailing.delivered",
    "mailing",
    "one batch of copies was stored in the clients' chats (`clients`: who got one)",
    "`mailing.fanout` step",
    ("page", "delivered", "failed", "failed_clients"),
    batch=True,
)
declare(
    "mailing.completed",
    "mailing",
    "every recipient of the mailing was reached (delivered or failed)",
    "`mailing.fanout` step",
    ("total",),
)
declare(
    "mailing.cancelled",
    "mailing",
    "a mailing was cancelled; recipients not yet reached get nothing",
    "`MailingService.cancel`",
)
declare(
    "mailing.failed",
    "mailing",
    "a mailing could not go on (e.g. its staged content does not open)",
    "`mailing.fanout` step",
    ("reason", "error", "recipients_failed"),
)
declare(
    "message.sent",
    "message",
    "a message was written to a client's chat (by staff or by the client)",
    "`MessageService.send`",
    ("author", "attachment_count"),
)
declare(
    "message.deleted",
    "message",
    "a message copy was deleted from a client's chat",
    "`MessageService.delete`",
    ("attachment_count",),
)
declare(
    "message.read",
    "client",
    "messages became read for the client (`objects`: the messages, one entry per read batch)",
    "`MessageService.mark_read`, `list_for_client`, `get_for_client`",
    ("count", "via"),
)
declare(
    "keys.rotated",
    "client",
    "a client's key was rotated to a new version (a re-wrap job is queued)",
    "`ClientComm.rotate_client_key`",
)
declare(
    "keys.rewrap_queued",
    "key.rewrap",
    "a re-wrap of sealed values to the newest key versions was queued",
    "`ClientComm.queue_rewrap`",
)
declare(
    "keys.rewrapped",
    "key.rewrap",
    "a re-wrap job walked every sealed kind (counts of what it did)",
    "`keys.rewrap` step",
    ("examined", "rewrapped", "failed", "conflicts"),
)
declare(
    "client.forgotten",
    "client",
    "a client's keys were destroyed (crypto-shredding)",
    "`ClientComm.forget_client`",
    ("keys_existed", "override"),
)
