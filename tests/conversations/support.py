"""Shared set-up for the conversation tests: the mailing tests' firm, with
e-mail addresses for staff and a second administrator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from clientcomm import ManualClock, Role, Staff
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.notifications import InAppRecord, NotifyJob
from clientcomm.records import Records
from clientcomm.storage.base import Store
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
BOSS = StaffActor("f1", "boss")
CLERK = StaffActor("f1", "clerk")
RITA = StaffActor("f1", "restricted")  # reaches c1 and c2 only
ANNA = ClientActor("f1", "c1", "k1")
BERND = ClientActor("f1", "c2", "k2")
CARLA = ClientActor("f1", "c3")
OFFICE = "office@mueller.example"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"

STAFF = [
    Staff("admin", "f1", "Ada Admin", Role.ADMIN, email="ada@mueller.example"),
    Staff("boss", "f1", "Berta Boss", Role.ADMIN, email="berta@mueller.example"),
    Staff("manager", "f1", "Max Manager", Role.MANAGER, email="max@mueller.example"),
    Staff("clerk", "f1", "Cleo Clerk", Role.CLERK, unrestricted=True, email="cleo@mueller.example"),
    Staff(
        "restricted",
        "f1",
        "Rita Restricted",
        Role.CLERK,
        client_ids={"c1", "c2"},
        email="rita@mueller.example",
    ),
    Staff(
        "limited",
        "f1",
        "Lia Limited",
        Role.ADMIN,
        client_ids={"c1"},  # reaches only c1 under a policy without the admin bypass
        email="lia@mueller.example",
    ),
    Staff("gone", "f1", "Gerd Gone", Role.ADMIN, active=False, email="gerd@mueller.example"),
]


@asynccontextmanager
async def conversation_app(
    store: Store, tmp_path: Path, **kwargs: Any
) -> AsyncIterator[ClientComm]:
    async with make_app(store, tmp_path, **kwargs) as app:
        for s in STAFF:
            await app.directory.put_staff(s)  # type: ignore[attr-defined]
        yield app


def clock_of(app: ClientComm) -> ManualClock:
    assert isinstance(app.clock, ManualClock)
    return app.clock


async def jobs(app: ClientComm, firm_id: str = "f1") -> list[NotifyJob]:
    return [j async for j in Records(app.store).iterate(NotifyJob, firm_id)]


async def sent_to(app: ClientComm, **match: Any) -> list[tuple[str, str | None]]:
    """``(kind, address)`` of every pending/sent job matching ``match``
    (attributes of the job), sorted; skipped recipients give ``None``."""
    out = []
    for j in await jobs(app):
        if all(getattr(j, k) == v for k, v in match.items()):
            out.append((j.kind.value, j.to.email))
    return sorted(out, key=lambda t: (t[0], t[1] or ""))


async def inapp(app: ClientComm, firm_id: str = "f1") -> list[InAppRecord]:
    return [r async for r in Records(app.store).iterate(InAppRecord, firm_id)]
