"""Shared set-up for the sharing tests: the mailing tests' firm plus portal
staff, registered contacts and case files (one with two portal clients)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from clientcomm import CaseFile, Contact, ManualClock, Role, Staff, StaffPermission
from clientcomm.actors import StaffActor
from clientcomm.app import ClientComm
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.directory.base import WritableDirectory
from clientcomm.storage.base import Store
from tests.mailing_support import make_app

PORTAL = {StaffPermission.CLIENT_PORTAL}
SHARER = StaffActor("f1", "sharer")
ASSIST = StaffActor("f1", "assist")
VIEWER = StaffActor("f1", "viewer")
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


async def seed_sharing(directory: WritableDirectory) -> None:
    for staff in [
        Staff(
            "sharer",
            "f1",
            "Sina Share",
            Role.CLERK,
            email="sina@kanzlei.example",
            client_ids={"c1", "c2", "c3", "c4", "c6"},
            permissions=PORTAL,
        ),
        Staff(
            "assist",
            "f1",
            "Asta Portal",
            Role.ASSISTANT,
            client_ids={"c1", "c2"},
            permissions=PORTAL,
        ),
        Staff("viewer", "f1", "Vera View", Role.CLERK, client_ids={"c1", "c2"}, permissions=PORTAL),
        Staff("noperm", "f1", "Nora Noperm", Role.CLERK, unrestricted=True),
        Staff("outsider", "f1", "Olaf Out", Role.CLERK, client_ids={"c4"}, permissions=PORTAL),
        Staff("portal-admin", "f1", "Paula Admin", Role.ADMIN, permissions=PORTAL),
    ]:
        await directory.put_staff(staff)
    await directory.put_contact(
        Contact("k4", "f1", "c4", "Dora Dach", email="dora@example.com", registered=True)
    )
    for case in [
        # two clients with portal access (c1: k1, c2: k2 without address)
        CaseFile(
            "akte1", "f1", "c1", "Alt ./. Bau", handler_id="sharer",
            assistant_ids={"assist"}, client_ids={"c2"},
        ),
        CaseFile("akte2", "f1", "c1", "Alt Miete", handler_id="noperm", assistant_ids={"sharer"}),
        # c4 has portal access, c3 has none
        CaseFile("akte3", "f1", "c4", "Dach ./. Chor", handler_id="sharer", client_ids={"c3"}),
        CaseFile("akte-c6", "f1", "c6", "Fink", handler_id="sharer"),
        CaseFile("x-akte", "f2", "x1", "Fremd", handler_id="admin2"),
    ]:  # fmt: skip
        await directory.put_case_file(case)


CRASH_MASTER = MasterKey(b"\x07" * 32)
"""A fixed master key, for tests whose processes share one store."""


@asynccontextmanager
async def sharing_app(
    store: Store, tmp_path: Path, *, master: MasterKey | None = None, **kwargs: object
) -> AsyncIterator[ClientComm]:
    async with make_app(store, tmp_path, **kwargs) as app:  # type: ignore[arg-type]
        if master is not None:  # before any key is used
            app.sealer.provider = LocalKeyProvider(store, master, clock=app.clock)
        assert isinstance(app.directory, WritableDirectory)
        await seed_sharing(app.directory)
        yield app


def clock_of(app: ClientComm) -> ManualClock:
    assert isinstance(app.clock, ManualClock)
    return app.clock


def blob_ids(app: ClientComm) -> list[str]:
    assert isinstance(app.blobs, MemoryBlobStore)
    return app.blobs.blob_ids("f1")


async def count(app: ClientComm, kind: str, firm: str = "f1", **filters: object) -> int:
    async with app.store.transaction(firm) as tx:
        return await tx.count(kind, **filters)  # type: ignore[arg-type]
