"""Package surface, URLs, clock, CLI and examples."""

from __future__ import annotations

import asyncio
import runpy
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import clientcomm
from clientcomm import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    ManualClock,
    MemoryDirectory,
    MemoryStore,
    NotFoundError,
    PermissionDeniedError,
    SQLiteStore,
    SystemClock,
    open_store,
)
from clientcomm.clock import Clock
from clientcomm.directory.base import WritableDirectory
from clientcomm.directory.sql import SqlDirectory, directory_for
from clientcomm.storage.base import Store
from clientcomm.storage.sql import SqlBackend
from clientcomm.storage.url import sqlite_path_from_url

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_unique_and_importable() -> None:
    # ruff's RUF022 keeps it sorted (constants, classes, then functions)
    assert len(set(clientcomm.__all__)) == len(clientcomm.__all__)
    for name in clientcomm.__all__:
        assert hasattr(clientcomm, name), name


def test_py_typed_is_shipped() -> None:
    assert (Path(clientcomm.__file__).parent / "py.typed").exists()


async def test_backends_satisfy_their_protocols(tmp_path: Path) -> None:
    memory: Store = MemoryStore()
    assert isinstance(memory, Store)
    async with SQLiteStore(tmp_path / "x.db") as sqlite_store:
        typed: Store = sqlite_store
        backend: SqlBackend = sqlite_store
        assert isinstance(typed, Store) and isinstance(backend, SqlBackend)
        sql_dir: WritableDirectory = SqlDirectory(sqlite_store)
        assert isinstance(sql_dir, WritableDirectory)
    mem_dir: WritableDirectory = MemoryDirectory()
    assert isinstance(mem_dir, WritableDirectory)
    clocks: list[Clock] = [SystemClock(), ManualClock()]
    assert all(isinstance(c, Clock) for c in clocks)


def test_errors_inherit_builtins_and_carry_context() -> None:
    err = NotFoundError("client", "c1")
    assert isinstance(err, LookupError) and isinstance(err, ClientCommError)
    assert err.context == {"kind": "client", "id": "c1"}
    denied = PermissionDeniedError("no", offending_ids=["b", "a"])
    assert isinstance(denied, PermissionError) and denied.offending_ids == ("a", "b")
    bad = InvalidInputError("email", "invalid")
    assert isinstance(bad, ValueError) and bad.field == "email" and str(bad) == "email: invalid"
    assert not isinstance(ConflictError("x"), ValueError)


async def test_manual_clock() -> None:
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    clock.advance(60)
    assert clock.now() == datetime(2026, 5, 1, 0, 1, tzinfo=UTC)
    await clock.sleep(3600)
    assert clock.now() == datetime(2026, 5, 1, 1, 1, tzinfo=UTC)
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    assert clock.now().year == 2027
    with pytest.raises(InvalidInputError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(InvalidInputError):
        clock.set(datetime(2027, 1, 1))
    assert SystemClock().now().tzinfo is not None


def test_sqlite_urls() -> None:
    assert sqlite_path_from_url("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path_from_url("sqlite:////abs/x.db") == Path("/abs/x.db")
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "mysql:///x", "sqlite://host/x"):
        with pytest.raises(ConfigurationError):
            sqlite_path_from_url(bad)


async def test_open_store_by_url(tmp_path: Path) -> None:
    mem = await open_store("memory://")
    assert isinstance(mem, MemoryStore)
    assert isinstance(directory_for(mem), MemoryDirectory)
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert isinstance(store, SQLiteStore)
        assert isinstance(directory_for(store), SqlDirectory)
    finally:
        await store.aclose()
    with pytest.raises(ConfigurationError):
        await open_store("redis://localhost")
    with pytest.raises(ConfigurationError):
        directory_for(object())


async def test_sqlite_settings_and_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        rows = await store.sql_read("PRAGMA page_size")
        assert rows[0][0] == 16384
        assert (await store.sql_read("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await store.sql_read("PRAGMA foreign_keys"))[0][0] == 1
        assert (await store.sql_read("PRAGMA synchronous"))[0][0] == 2  # FULL
        await store.sql_write(
            [("INSERT INTO schema_migrations VALUES (?, ?, ?)", [(999, "future", 0)])]
        )
    from clientcomm.errors import StorageError

    with pytest.raises(StorageError, match="newer"):
        async with SQLiteStore(path):
            pass


async def test_nested_transaction_is_refused_not_deadlocked(tmp_path: Path) -> None:
    from clientcomm.errors import StorageError

    for store in (MemoryStore(), await SQLiteStore(tmp_path / "n.db").open()):
        async with store.transaction("f1"):
            with pytest.raises(StorageError, match="nested"):
                async with store.transaction("f1"):
                    pass
        await store.aclose()


def test_cli_migrate_and_clients(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run = [sys.executable, "-m", "clientcomm.cli"]
    out = subprocess.run([*run, "migrate", url], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("schema version ")
    bad = subprocess.run([*run, "migrate", "nosuch://x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown store URL" in bad.stderr


def test_quickstart_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Anna Alt" in out and "Bäckerei Brot GmbH" in out and "inactive" in out


async def test_cli_worker_runs_a_mailing(tmp_path: Path) -> None:
    import os
    import socket

    from clientcomm import Audience, LocalKeyProvider, MasterKey, StaffActor, generate_master_key
    from tests.mailing_support import make_app, recipient_states

    key = generate_master_key()
    db = tmp_path / "w.db"
    async with SQLiteStore(db) as store, make_app(store, tmp_path, blobs_on_disk=True) as app:
        app.sealer.provider = LocalKeyProvider(store, MasterKey.from_text(key))
        receipt = await app.mailings.submit(StaffActor("f1", "admin"), Audience.everyone(), "Hallo")
    with socket.socket() as s:  # a port where no SMTP server listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "clientcomm.cli",
            "worker",
            f"sqlite:///{db}",
            "--once",
            "--blobs",
            str(tmp_path / "blobs"),
            "--link",
            "https://portal.example/{client_id}",
            "--sender",
            "portal@portal.example",
            "--message-id-domain",
            "portal.example",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
            "--smtp-tls",
            "none",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CLIENTCOMM_MASTER_KEY": key},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    async with SQLiteStore(db) as store, store.transaction("f1") as tx:
        jobs = await tx.count_by_status("notify.job", parent=receipt.id)
    async with SQLiteStore(db) as store:
        assert await recipient_states(store) == {"delivered": receipt.total}
    # the SMTP server is down: the contact's e-mail waits for a retry, none is lost
    assert jobs.get("pending", 0) == 1 and jobs.get("failed", 0) == 1
