"""Conversations (seed 002): staff start one with a client, assign an
administrator, the client replies with a file, the office address and the
assignee are notified, the conversation is answered; the bulk action
re-notifies every administrator; a waiting conversation escalates.

Run with ``python examples/conversations.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from clientcomm import (
    AttachmentInput,
    Client,
    ClientActor,
    ClientComm,
    Contact,
    ConversationSettings,
    ConversationStatus,
    EscalationPolicy,
    Firm,
    IllegalTransitionError,
    ManualClock,
    MemoryDirectory,
    Role,
    Staff,
    StaffActor,
    Turn,
)


async def main() -> None:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("f1", "Kanzlei Müller", office_email="office@mueller.example"))
    await directory.put_client(Client("c1", "f1", "Anna Alt"))
    await directory.put_contact(
        Contact("k1", "f1", "c1", "Anna Alt", email="anna@example.com", registered=True)
    )
    await directory.put_staff(Staff("ada", "f1", "Ada", Role.ADMIN, email="ada@mueller.example"))
    await directory.put_staff(Staff("bea", "f1", "Bea", Role.ADMIN, email="bea@mueller.example"))
    clock = ManualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    settings = ConversationSettings(
        escalation=EscalationPolicy(
            assignee_after=timedelta(hours=4), admins_after=timedelta(days=1)
        )
    )
    app = ClientComm.in_memory(directory=directory, clock=clock, conversations=settings)
    ada, anna = StaffActor("f1", "ada"), ClientActor("f1", "c1", "k1")

    # "Erstellen": details (subject), the message, the assigned administrator
    cid = await app.conversations.create(
        ada, "c1", "Jahresabschluss 2025", "Bitte senden Sie uns die Belege.", assignee_id="bea"
    )
    await app.conversations.set_status(ada, cid, ConversationStatus.NEEDS_ATTENTION)

    # the client replies from the portal, with a file: it now waits on the firm
    clock.advance(timedelta(hours=1))
    receipt = AttachmentInput.from_bytes("Belege.pdf", b"%PDF-1.7 ...", "application/pdf")
    await app.conversations.comment(anna, cid, "Anbei die Belege.", attachments=[receipt])
    waiting = await app.conversations.list_for_staff(
        StaffActor("f1", "bea"), assignee_id="bea", turn=Turn.FIRM
    )
    print([(c.subject, c.status.value, c.unread, c.turn_since.isoformat()) for c in waiting])

    # the history, in order, and the file
    history = await app.conversations.comments(StaffActor("f1", "bea"), cid)
    for comment in history:
        print(comment.number, comment.author.value, comment.text)
    [file] = history[1].attachments
    chunks = await app.conversations.open_attachment(ada, history[1].id, file.id)
    print(file.filename, len(b"".join([c async for c in chunks])), "bytes")

    # the assignee's in-app notification
    [note] = await app.conversations.notifications(StaffActor("f1", "bea"))
    print("in-app:", note.kind.value)

    # escalation: nobody answered for four hours, the assignee hears again
    clock.advance(timedelta(hours=4))
    await app.drain()  # also delivers every notice (app.transport records them)
    print(sorted((m["To"], m["Subject"]) for m in app.transport.messages()))  # type: ignore[attr-defined]

    # "Benachrichtigung an Administratoren für eine neue Nachricht senden"
    print("admins notified:", await app.conversations.notify_admins(ada, [cid]))

    # "Beantwortet"; an illegal change names both states
    await app.conversations.comment(ada, cid, "Danke, erledigt.")
    await app.conversations.set_status(ada, cid, ConversationStatus.ANSWERED)
    try:
        await app.conversations.set_status(ada, cid, ConversationStatus.NEEDS_ATTENTION)
    except IllegalTransitionError as exc:
        print("refused:", exc)
    print([c.status.value for c in await app.conversations.list_for_client(anna)])


if __name__ == "__main__":
    asyncio.run(main())
