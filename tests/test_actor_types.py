"""Type confusion (hardening item 7): every public service method refuses an
actor of the wrong type with PermissionDeniedError, before anything is read.

The methods are enumerated from the services themselves, so a new method is
covered by default: it only needs its actor parameter annotated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

import pytest

from clientcomm import (
    Audience,
    Client,
    ClientActor,
    ClientComm,
    Firm,
    MailingService,
    MemoryDirectory,
    MessageService,
    PermissionDeniedError,
    Role,
    Staff,
    StaffActor,
)

ARGS: dict[str, Any] = {
    "client_id": "c1",
    "client_ids": ["c1"],
    "text": "Hallo",
    "message_id": "m1",
    "attachment_id": "a1",
    "mailing_id": "m1",
    "audience": Audience.everyone(),
    "up_to_seq": 1,
}

STAFF = StaffActor("f1", "admin")
CLIENT = ClientActor("f1", "c1")


class NotAnActor:
    firm_id = "f1"
    staff_id = "admin"
    client_id = "c1"
    contact_id = None


def public_methods(cls: type) -> list[tuple[str, Callable[..., Any]]]:
    out: list[tuple[str, Callable[..., Any]]] = []
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        params = inspect.signature(fn).parameters
        if "actor" in params:
            out.append((name, fn))
    return out


def wrong_actors(fn: Callable[..., Any]) -> list[object]:
    hint = get_type_hints(fn)["actor"]
    accepted = set(getattr(hint, "__args__", (hint,)))
    wrong: list[object] = [NotAnActor()]
    if StaffActor not in accepted:
        wrong.append(STAFF)
    if ClientActor not in accepted:
        wrong.append(CLIENT)
    return wrong


CASES = [
    (svc, name, actor)
    for svc in (MessageService, MailingService)
    for name, fn in public_methods(svc)
    for actor in wrong_actors(fn)
]


@pytest.fixture
async def app() -> ClientComm:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("f1", "Kanzlei"))
    await directory.put_staff(Staff("admin", "f1", "Ada", Role.ADMIN))
    await directory.put_client(Client("c1", "f1", "Mandant"))
    app = ClientComm.in_memory(directory=directory)
    await app.messages.send(STAFF, "c1", "vorhanden")
    return app


def test_every_method_is_covered() -> None:
    names = {(svc.__name__, name) for svc, name, _ in CASES}
    assert ("MessageService", "list_for_staff") in names
    assert ("MailingService", "submit") in names
    assert len(names) >= 15


@pytest.mark.parametrize(
    ("service", "name", "actor"),
    CASES,
    ids=[f"{s.__name__}.{n}-{type(a).__name__}" for s, n, a in CASES],
)
async def test_wrong_actor_type_is_refused(
    app: ClientComm, service: type, name: str, actor: object
) -> None:
    target = app.messages if service is MessageService else app.mailings
    fn = getattr(target, name)
    params = inspect.signature(fn).parameters
    kwargs = {p: ARGS[p] for p in params if p != "actor" and p in ARGS}
    with pytest.raises(PermissionDeniedError):
        result = fn(actor, **kwargs)
        if inspect.isawaitable(result):
            await result
        else:  # an async iterator (ledger, exports, follow)
            await result.__anext__()
