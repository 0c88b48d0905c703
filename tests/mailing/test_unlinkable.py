"""Copies of one mailing cannot be linked by the ids a client sees (hardening
items 6 and 8): copy ids need the mailing's secret, attachment ids are per copy."""

from __future__ import annotations

import pytest

from clientcomm import Audience, ClientActor, ClientComm, MemoryDirectory, StaffActor
from clientcomm.attachments import AttachmentInput, AttachmentMode
from tests.mailing_support import seed

ADMIN = StaffActor("f1", "admin")
PDF = b"%PDF-1.4\n" + b"x" * 2000


@pytest.mark.parametrize("mode", [AttachmentMode.PER_COPY, AttachmentMode.SHARED])
async def test_two_clients_comparing_notes_see_no_common_id(mode: AttachmentMode) -> None:
    directory = MemoryDirectory()
    await seed(directory)
    app = ClientComm.in_memory(directory=directory)
    pdf = [AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")]
    receipt = await app.mailings.submit(
        ADMIN, Audience.clients("c1", "c2"), "Rundschreiben", attachments=pdf, attachment_mode=mode
    )
    await app.drain()
    [one] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    [two] = await app.messages.list_for_client(ClientActor("f1", "c2"))
    seen_one = {one.id, *(a.id for a in one.attachments)}
    seen_two = {two.id, *(a.id for a in two.attachments)}
    assert not seen_one & seen_two
    assert receipt.id not in seen_one | seen_two
    # each client still opens its own attachment by its own id
    for actor, msg in ((ClientActor("f1", "c1"), one), (ClientActor("f1", "c2"), two)):
        chunks = await app.messages.open_attachment(actor, msg.id, msg.attachments[0].id)
        assert b"".join([c async for c in chunks]) == PDF
