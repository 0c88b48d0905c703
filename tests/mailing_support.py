"""Shared set-up for the mailing tests: a firm with groups, clients, contacts, staff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from clientcomm import (
    Client,
    ClientGroup,
    Contact,
    Firm,
    ManualClock,
    Role,
    Staff,
    WritableDirectory,
    directory_for,
)
from clientcomm.app import ClientComm
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import MailSettings
from clientcomm.storage.base import Store

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
LINKS = LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}/messages")
MAIL = MailSettings(sender="portal@portal.example", message_id_domain="portal.example")


async def seed(directory: WritableDirectory) -> None:
    await directory.put_firm(Firm("f1", "Kanzlei Müller", office_email="office@mueller.example"))
    await directory.put_firm(Firm("f2", "Ohne Gruppen"))
    await directory.put_group(ClientGroup("g1", "f1", "Vermieter"))
    await directory.put_group(ClientGroup("g2", "f1", "GmbHs"))
    clients = [
        Client("c1", "f1", "Anna Alt", group_ids={"g1"}),
        Client("c2", "f1", "Bernd Bau", group_ids={"g1", "g2"}),
        Client("c3", "f1", "Carla Chor", group_ids={"g2"}),
        Client("c4", "f1", "Dora Dach"),
        Client("c5", "f1", "Emil Ehemalig", active=False, group_ids={"g1"}),
        Client("c6", "f1", "Frieda Fink"),
    ]
    for c in clients:
        await directory.put_client(c)
    await directory.put_client(Client("x1", "f2", "Fremd"))
    await directory.put_contact(
        Contact("k1", "f1", "c1", "Anna Alt", email="anna@example.com", registered=True)
    )
    await directory.put_contact(Contact("k2", "f1", "c2", "Bernd Bau", registered=True))
    await directory.put_contact(
        Contact("k3", "f1", "c3", "Carla Chor", email="carla@example.com", registered=False)
    )
    for staff in [
        Staff("admin", "f1", "Ada Admin", Role.ADMIN),
        Staff("manager", "f1", "Max Manager", Role.MANAGER),
        Staff("clerk", "f1", "Cleo Clerk", Role.CLERK, unrestricted=True),
        Staff(
            "restricted",
            "f1",
            "Rita Restricted",
            Role.CLERK,
            unrestricted=False,
            client_ids={"c1", "c2"},
        ),
        Staff("assistant", "f1", "Asta Assist", Role.ASSISTANT),
        Staff("gone", "f1", "Gerd Gone", Role.ADMIN, active=False),
        Staff("admin2", "f2", "Zweite Admin", Role.ADMIN),
    ]:
        await directory.put_staff(staff)


@asynccontextmanager
async def make_app(
    store: Store, tmp_path: Path, *, blobs_on_disk: bool = False, **kwargs: object
) -> AsyncIterator[ClientComm]:
    directory = directory_for(getattr(store, "inner", store))  # a CountingStore's own store
    await seed(directory)
    clock = ManualClock(T0)
    app = ClientComm(
        store=store,
        directory=directory,
        keys=LocalKeyProvider(store, MasterKey.generate(), clock=clock),
        blobs=FileBlobStore(tmp_path / "blobs") if blobs_on_disk else MemoryBlobStore(),
        transport=MemoryTransport(),
        links=LINKS,
        mail=MAIL,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    yield app


async def recipient_states(store: Store, firm_id: str = "f1") -> dict[str, int]:
    """Recipients by state, summed over every mailing's pages (as stored)."""
    from clientcomm.mailing import PageState, RecipientPage
    from clientcomm.records import Records

    states: dict[str, int] = {}
    async for page in Records(store).iterate(RecipientPage, firm_id):
        queued = page.remaining if page.status is PageState.QUEUED else 0
        for name, n in (
            ("delivered", page.delivered),
            ("failed", page.failed),
            ("cancelled", page.cancelled),
            ("queued", queued),
        ):
            if n:
                states[name] = states.get(name, 0) + n
    return states


@attrs.define
class World:
    """One deployment's backends; :meth:`app` wires a fresh ClientComm over
    them (as a restarted process would)."""

    store: Store
    directory: WritableDirectory
    master: MasterKey
    blobs: MemoryBlobStore
    clock: ManualClock

    def app(self, **kwargs: Any) -> ClientComm:
        return ClientComm(
            store=self.store,
            directory=self.directory,
            keys=LocalKeyProvider(self.store, self.master, clock=self.clock),
            blobs=self.blobs,
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
            clock=self.clock,
            **kwargs,
        )
