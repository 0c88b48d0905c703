"""A Django-style view calling clientcomm without asyncio (clientcomm.sync).

A Django or Flask process creates ONE :class:`SyncClientComm` at start-up
(``AppConfig.ready()``, or module level) and calls it from its request
threads. This file runs without Django: a view is a plain function of a
request-like object, served here by a thread pool as a WSGI server would.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clientcomm import (
    Audience,
    Client,
    ClientActor,
    ClientComm,
    Contact,
    FileBlobStore,
    Firm,
    LocalKeyProvider,
    MasterKey,
    MemoryTransport,
    NotFoundError,
    Role,
    Staff,
    StaffActor,
    directory_for,
    open_store,
)
from clientcomm.notifications import LinkTemplates, MailSettings
from clientcomm.sync import SyncClientComm


@dataclass
class Request:  # the parts of django.http.HttpRequest a view uses here
    method: str
    user_firm: str
    user_id: str
    is_staff: bool
    GET: dict[str, str] = field(default_factory=dict)
    POST: dict[str, str] = field(default_factory=dict)


def actor_of(request: Request) -> StaffActor | ClientActor:
    if request.is_staff:
        return StaffActor(request.user_firm, request.user_id)
    return ClientActor(request.user_firm, request.user_id)


# -- the views: plain functions, plain calls ---------------------------------------------
def send_mailing(portal: SyncClientComm, request: Request) -> tuple[int, dict[str, Any]]:
    actor = actor_of(request)
    assert isinstance(actor, StaffActor)
    receipt = portal.mailings.submit(actor, Audience.everyone(), request.POST["text"])
    return 202, {"mailing": receipt.id, "recipients": receipt.total}


def mailing_status(portal: SyncClientComm, request: Request) -> tuple[int, dict[str, Any]]:
    actor = actor_of(request)
    assert isinstance(actor, StaffActor)
    try:
        progress = portal.mailings.status(actor, request.GET["id"])
    except NotFoundError:
        return 404, {"error": "not found"}
    return 200, {"delivered": progress.delivered, "total": progress.total}


def inbox(portal: SyncClientComm, request: Request) -> tuple[int, dict[str, Any]]:
    actor = actor_of(request)
    assert isinstance(actor, ClientActor)
    messages = portal.messages.list_for_client(actor)
    return 200, {"messages": [m.text for m in messages]}


def reply(portal: SyncClientComm, request: Request) -> tuple[int, dict[str, Any]]:
    actor = actor_of(request)
    assert isinstance(actor, ClientActor)
    message_id = portal.messages.send(actor, actor.client_id, request.POST["text"])
    return 201, {"message": message_id}


# -- start-up (AppConfig.ready) ----------------------------------------------------------
def make_factory(db: Path, blobs: Path, master: MasterKey) -> Any:
    async def build() -> ClientComm:  # runs on the portal's own event loop
        store = await open_store(f"sqlite:///{db}")
        directory = directory_for(store)
        await directory.put_firm(Firm("kanzlei", "Kanzlei Müller"))
        await directory.put_staff(Staff("petra", "kanzlei", "Petra Partner", Role.ADMIN))
        for i in range(1, 21):
            await directory.put_client(Client(f"c{i}", "kanzlei", f"Mandant {i}"))
            await directory.put_contact(
                Contact(f"k{i}", "kanzlei", f"c{i}", f"Kontakt {i}", registered=True)
            )
        return ClientComm(
            store=store,
            directory=directory,
            keys=LocalKeyProvider(store, master),
            blobs=FileBlobStore(blobs),
            transport=MemoryTransport(),
            links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
            mail=MailSettings(sender="portal@portal.example", message_id_domain="portal.example"),
        )

    return build


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        factory = make_factory(Path(tmp) / "portal.db", Path(tmp) / "blobs", MasterKey.generate())
        with SyncClientComm(factory) as portal:
            staff = Request("POST", "kanzlei", "petra", True, POST={"text": "Neue Fristen 2027"})
            status, body = send_mailing(portal, staff)
            assert status == 202 and body["recipients"] == 20, body
            portal.drain()  # in production: `clientcomm worker` or the host's task queue

            # twenty client requests at once, from eight server threads
            def client_session(i: int) -> int:
                who = Request("GET", "kanzlei", f"c{i}", False)
                code, box = inbox(portal, who)
                assert code == 200 and box["messages"] == ["Neue Fristen 2027"], box
                code, _ = reply(
                    portal, Request("POST", "kanzlei", f"c{i}", False, POST={"text": "Danke"})
                )
                return code

            with ThreadPoolExecutor(max_workers=8) as pool:
                codes = list(pool.map(client_session, range(1, 21)))
            assert codes == [201] * 20

            code, body = mailing_status(
                portal, Request("GET", "kanzlei", "petra", True, GET={"id": body["mailing"]})
            )
            assert code == 200 and body == {"delivered": 20, "total": 20}, body
            code, _ = mailing_status(
                portal, Request("GET", "kanzlei", "petra", True, GET={"id": "x"})
            )
            assert code == 404
            print(f"mailing delivered to {body['delivered']} clients; 20 replies from 8 threads")


if __name__ == "__main__":
    main()
