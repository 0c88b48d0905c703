"""clientcomm.sync: the blocking API over every Store backend, from many threads."""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clientcomm import (
    Audience,
    ClientActor,
    ClientComm,
    LocalKeyProvider,
    MasterKey,
    MemoryBlobStore,
    MemoryTransport,
    NotFoundError,
    PermissionDeniedError,
    StaffActor,
    directory_for,
)
from clientcomm.storage.base import Store
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.sync import SyncClientComm, SyncProxy
from tests.mailing_support import LINKS, MAIL, seed

ADMIN = StaffActor("f1", "admin")
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where the portal's factory opens its Store (on the portal's own loop)."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield str(tmp_path / "sync.db")
    else:
        from clientcomm.testing.postgres import isolated_schema
        from tests.conftest import pg_admin_url

        async with isolated_schema(pg_admin_url()) as conninfo:
            yield conninfo


async def open_backend(where: str) -> Store:
    if where == "memory://":
        return MemoryStore()
    if where.endswith(".db"):
        return await SQLiteStore(Path(where)).open()
    from clientcomm.storage.postgres import PostgresStore

    return await PostgresStore(where).open()


def factory(where: str, master: MasterKey) -> object:
    async def build() -> ClientComm:
        store = await open_backend(where)
        directory = directory_for(store)
        await seed(directory)
        return ClientComm(
            store=store,
            directory=directory,
            keys=LocalKeyProvider(store, master),
            blobs=MemoryBlobStore(),
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
        )

    return build


@pytest.fixture
def portal(store_url: str) -> Iterator[SyncClientComm]:
    with SyncClientComm(factory(store_url, MasterKey.generate())) as p:  # type: ignore[arg-type]
        yield p


def test_a_mailing_end_to_end_from_plain_calls(portal: SyncClientComm) -> None:
    receipt = portal.mailings.submit(ADMIN, Audience.everyone(), "Hallo aus Django")
    assert portal.run_step("mailing.fanout", limit=2) == 2  # a step as a plain call
    portal.drain()
    progress = portal.mailings.status(ADMIN, receipt.id)
    assert progress.all_done and progress.delivered == receipt.total == 5
    [copy] = portal.messages.list_for_client(ClientActor("f1", "c1"))
    assert copy.text == "Hallo aus Django"
    assert portal.steps.names == portal.app.steps.names  # plain attributes pass through
    lines = portal.audit.export_jsonl("f1")  # an async generator becomes a list
    assert isinstance(lines, list) and any('"mailing.submitted"' in line for line in lines)


def test_typed_errors_come_through_unchanged(portal: SyncClientComm) -> None:
    with pytest.raises(NotFoundError):
        portal.mailings.status(ADMIN, "no-such-mailing")
    with pytest.raises(PermissionDeniedError):
        portal.mailings.status(StaffActor("f1", "gone"), "no-such-mailing")
    # a client writing into another client's chat: the same answer as a missing one
    with pytest.raises(NotFoundError):
        portal.messages.send(ClientActor("f1", "c1"), "c2", "fremd")


def test_many_threads_share_one_app(portal: SyncClientComm) -> None:
    clients = ["c1", "c2", "c3", "c4", "c6"]
    per_client = 8
    threads: set[int] = set()

    def work(i: int) -> str:
        threads.add(threading.get_ident())
        client = clients[i % len(clients)]
        if i % 2:
            return str(portal.messages.send(ClientActor("f1", client), client, f"Frage {i}"))
        return str(portal.messages.send(ADMIN, client, f"Antwort {i}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(work, range(len(clients) * per_client)))
    assert len(set(ids)) == len(ids) == len(clients) * per_client
    assert len(threads) > 1
    for client in clients:
        texts = [m.text for m in portal.messages.list_for_client(ClientActor("f1", client))]
        assert len(texts) == per_client, (client, texts)
    # concurrent reads answer what one thread reads
    alone = [portal.messages.unread_count(ADMIN, c) for c in clients]
    with ThreadPoolExecutor(max_workers=6) as pool:
        counts = list(pool.map(lambda c: portal.messages.unread_count(ADMIN, c), clients * 4))
    assert counts == alone * 4 and sum(alone) > 0


def test_every_coroutine_method_of_every_service_is_wrapped() -> None:
    with SyncClientComm.in_memory() as portal:
        app = portal.app
        wrapped = 0
        for name in ("messages", "mailings", "audit", "compliance", "attachments"):
            service = getattr(app, name)
            proxy = getattr(portal, name)
            assert isinstance(proxy, SyncProxy)
            for method, fn in inspect.getmembers(type(service), inspect.iscoroutinefunction):
                if method.startswith("_"):
                    continue
                blocking = getattr(proxy, method)
                assert not inspect.iscoroutinefunction(blocking), (name, method)
                assert blocking.__wrapped__.__func__ is fn  # the same operation
                wrapped += 1
        assert wrapped > 30

        class Later:  # a service a later capability adds: covered without new code
            async def hello(self, who: str) -> str:
                return f"hello {who} on {threading.current_thread().name}"

        app.later = Later()  # type: ignore[attr-defined]
        answer = portal.later.hello("host")
        assert answer.startswith("hello host") and threading.current_thread().name not in answer


def test_a_call_from_the_portal_thread_is_refused_not_deadlocked() -> None:
    with SyncClientComm.in_memory() as portal:

        async def inside() -> None:
            portal.run_once()  # blocking call on the loop it would wait for

        with pytest.raises(RuntimeError):
            portal.portal.call(inside)
        assert portal.run_once() == 0  # still usable


def test_factory_errors_and_close() -> None:
    with pytest.raises(TypeError, match="must return a ClientComm"):
        SyncClientComm(lambda: "not an app")  # type: ignore[arg-type,return-value]
    before = threading.active_count()
    portal = SyncClientComm.in_memory()
    portal.close()
    portal.close()  # idempotent
    with pytest.raises(RuntimeError):
        portal.run_once()
    assert threading.active_count() <= before
