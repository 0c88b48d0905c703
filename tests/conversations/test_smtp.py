"""Conversation notices through the real loopback SMTP server of the suite
(aiosmtpd, ``clientcomm.testing.smtpd``), on every Store backend: each
recipient gets its mail exactly once, and no mail carries comment text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from clientcomm import ClientComm, ManualClock, directory_for
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.mail.smtp import SMTPTransport
from clientcomm.testing.smtpd import smtp_server
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.conversations.support import ADMIN, ANNA, CLERK, OFFICE, STAFF
from tests.mailing_support import LINKS, MAIL, T0, seed

SECRET = "Kontoauszug 4711 vertraulich"


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_comment_notices_reach_the_smtp_server_once(backend: str, tmp_path: Path) -> None:
    async for store in open_backend(backend, tmp_path):
        async with smtp_server() as server:
            directory = directory_for(store)
            await seed(directory)
            for s in STAFF:
                await directory.put_staff(s)
            clock = ManualClock(T0)
            async with SMTPTransport(server.config(tls="none", timeout=5)) as transport:
                app = ClientComm(
                    store=store,
                    directory=directory,
                    keys=LocalKeyProvider(store, MasterKey.generate(), clock=clock),
                    blobs=MemoryBlobStore(),
                    transport=transport,
                    links=LINKS,
                    mail=MAIL,
                    clock=clock,
                )
                cid = await app.conversations.create(
                    CLERK, "c1", "Betreff", SECRET, assignee_id="boss"
                )
                await app.conversations.comment(ANNA, cid, SECRET)
                await app.drain()
                await app.drain()  # nothing is sent twice
                await app.conversations.notify_admins(ADMIN, [cid], request_id="bulk-1")
                await app.drain()
            received = server.handler.messages
            to = Counter(r for m in received for r in m.rcpt_tos)
            assert to == Counter(
                {
                    "anna@example.com": 1,  # the staff message
                    OFFICE: 1,  # the client's comment
                    "berta@mueller.example": 2,  # assignee of the comment, and the bulk alert
                    "ada@mueller.example": 1,  # bulk alert
                    "lia@mueller.example": 1,  # bulk alert
                }
            )
            assert len(server.handler.message_ids()) == len(received)  # unique Message-IDs
            for m in received:
                parsed = m.parse()
                texts = [
                    str(part.get_content())
                    for part in parsed.walk()
                    if part.get_content_maintype() == "text"
                ]
                assert texts and not any(SECRET in t or "Betreff" in t for t in texts)
            subjects = sorted(str(m.parse()["Subject"]) for m in received)
            assert subjects.count("Neuer Kommentar von Anna Alt im Mandantenportal") == 2
