"""The ``clientcomm worker`` command, the installed script run as a separate process
against SQLite."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from clientcomm import Audience, Client, ClientComm, StaffActor, generate_master_key
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.directory.sql import directory_for
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing import MailingProgress, MailingReceipt
from clientcomm.messages import MESSAGE_KIND
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.testing.smtpd import smtp_server
from clientcomm.worker import Worker
from tests.cli_support import clientcomm_script
from tests.mailing_support import LINKS, MAIL, recipient_states, seed

ROOT = Path(__file__).resolve().parent.parent
ADMIN = StaffActor("f1", "admin")
LINK = "https://portal.example/{firm_id}/clients/{client_id}"


@attrs.frozen
class Setup:
    db: Path
    blobs: Path
    key: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLIENTCOMM_")}
        path = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        env["CLIENTCOMM_MASTER_KEY"] = self.key
        env.update(extra)
        return env

    def app(self, store: SQLiteStore) -> ClientComm:
        return ClientComm(
            store=store,
            directory=directory_for(store),
            keys=LocalKeyProvider(store, MasterKey.from_text(self.key)),
            blobs=FileBlobStore(self.blobs),
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
        )

    def worker(self, *options: str, smtp_port: int = 1) -> list[str]:
        return [
            clientcomm_script(),  # the installed console script
            "worker",
            self.url,
            "--blobs",
            str(self.blobs),
            "--link",
            LINK,
            "--sender",
            "portal@portal.example",
            "--message-id-domain",
            "portal.example",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(smtp_port),
            "--smtp-tls",
            "none",
            *options,
        ]

    async def submit(self, *, clients: int = 0, notify: bool = True) -> MailingReceipt:
        """The test firm (tests.mailing_support.seed) plus ``clients`` more, and
        a mailing to every active client."""
        async with SQLiteStore(self.db) as store:
            app = self.app(store)
            directory = directory_for(store)
            await seed(directory)
            for i in range(clients):
                await directory.put_client(Client(f"m{i:04}", "f1", f"Mandant {i}"))
            return await app.mailings.submit(ADMIN, Audience.everyone(), "Hallo", notify=notify)

    async def progress(self, mailing_id: str) -> MailingProgress:
        async with SQLiteStore(self.db) as store:
            return await self.app(store).mailings.status(ADMIN, mailing_id)

    async def states(self) -> dict[str, int]:
        async with SQLiteStore(self.db) as store:
            return await recipient_states(store)

    async def copies_per_client(self) -> dict[str, int]:
        async with SQLiteStore(self.db) as store, store.transaction("f1") as tx:
            messages = await tx.list(MESSAGE_KIND)
        per_client: dict[str, int] = {}
        for m in messages:
            per_client[m.parent or ""] = per_client.get(m.parent or "", 0) + 1
        return per_client


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path / "cc.db", tmp_path / "blobs", generate_master_key())


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- bad options --------------------------------------------------------------------
BAD_OPTIONS = {
    "plaintext": (["--smtp-tls", "plaintext"], "invalid choice: 'plaintext'"),
    "empty-host": (["--smtp-host", " "], "--smtp-host: must name the SMTP server"),
    "zero-batch": (["--batch", "0"], "--batch: must be positive"),
    "negative-idle": (["--idle-interval", "-1"], "--idle-interval: must be zero or more"),
    "unknown-step": (["--steps", "mailing.fanout,mailing.bogus"], "unknown step 'mailing.bogus'"),
    "link-kind": (["--link", "nosuch=https://x.example/"], "unknown notification kind 'nosuch'"),
    "templates": (["--templates", "/nonexistent/templates"], "is not a directory"),
}
MORE_BAD_OPTIONS = {
    "negative-batch": (["--batch", "-5"], "--batch: must be positive"),
    "word-batch": (["--batch", "many"], "--batch: not a whole number"),
    "infinite-idle": (["--idle-interval", "inf"], "--idle-interval: must be zero or more"),
    "no-step": (["--steps", ","], "--steps: name at least one step"),
    "log-level": (["--log-level", "chatty"], "--log-level: invalid choice"),
    "link-url": (["--link", "new_message=ftp://x.example/"], "must be an absolute http(s) URL"),
    "two-defaults": (["--link", "https://other.example/"], "one default link template"),
    "port": (["--smtp-port", "99999"], "--smtp-port: must be between 1 and 65535"),
    "sender": (["--sender", "not an address"], "sender"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=list(BAD_OPTIONS))
def test_bad_options_fail_in_one_line_before_opening_the_database(setup: Setup, case: str) -> None:
    options, message = BAD_OPTIONS[case]
    proc = subprocess.run(
        [*setup.worker(), *options], capture_output=True, text=True, env=setup.env(), timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert message in one_line(proc.stderr)
    assert not setup.db.exists()


@pytest.mark.parametrize("case", MORE_BAD_OPTIONS, ids=list(MORE_BAD_OPTIONS))
def test_more_bad_options_in_process(
    setup: Setup, case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clientcomm.cli import main

    monkeypatch.setattr("logging.basicConfig", lambda **kw: None)
    monkeypatch.setenv("CLIENTCOMM_MASTER_KEY", setup.key)
    options, message = MORE_BAD_OPTIONS[case]
    try:
        status = main([*setup.worker()[1:], *options])
    except SystemExit as exc:  # argparse
        status = int(str(exc.code))
    assert status == 2
    assert message in one_line(capsys.readouterr().err)
    assert not setup.db.exists()


def without(command: Sequence[str], option: str) -> list[str]:
    i = command.index(option)
    return [*command[:i], *command[i + 2 :]]


def test_a_missing_smtp_host_or_master_key_fails_in_one_line(setup: Setup) -> None:
    proc = subprocess.run(
        without(setup.worker(), "--smtp-host"),
        capture_output=True,
        text=True,
        env=setup.env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert "required: --smtp-host" in one_line(proc.stderr)
    env = setup.env()
    del env["CLIENTCOMM_MASTER_KEY"]
    proc = subprocess.run(setup.worker(), capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "no master key" in one_line(proc.stderr)
    assert not setup.db.exists()


# -- --once ------------------------------------------------------------------------------
async def test_once_delivers_a_mailing_and_its_notices(setup: Setup, tmp_path: Path) -> None:
    receipt = await setup.submit()
    templates = tmp_path / "templates"
    for language in ("de", "en"):
        (templates / language).mkdir(parents=True)
        (templates / language / "new_message.subject.txt").write_text(
            "Post von {{ firm_name }}", encoding="utf-8"
        )
    async with smtp_server() as server:
        proc = await asyncio.create_subprocess_exec(
            *setup.worker(
                "--once",
                "--batch",
                "2",
                "--idle-interval",
                "0",
                "--log-level",
                "info",
                "--templates",
                str(templates),
                "--link",
                "new_message=https://portal.example/{firm_id}/inbox/{client_id}",
                "--steps",
                "mailing.fanout,notifications.expand,notifications.deliver",
                smtp_port=server.port,
            ),
            env=setup.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        [mail] = server.handler.parsed()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"processed " in out
    assert await setup.states() == {"delivered": receipt.total}
    progress = await setup.progress(receipt.id)
    assert progress.all_done and (progress.notifications_sent, progress.notifications_failed) == (
        1,
        1,  # k2 has no address
    )
    assert mail["To"].addresses[0].addr_spec == "anna@example.com"
    assert mail["Subject"] == "Post von Kanzlei Müller"  # the host's template
    text = mail.get_body(("plain",))
    assert text is not None and "https://portal.example/f1/inbox/c1" in text.get_content()
    assert set((await setup.copies_per_client()).values()) == {1}


async def run(command: Sequence[str], env: dict[str, str]) -> tuple[int | None, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_a_worker_with_another_master_key_fails_in_one_line_and_leaves_the_mailing_queued(
    setup: Setup,
) -> None:
    receipt = await setup.submit(notify=False)
    wrong = setup.env(CLIENTCOMM_MASTER_KEY=generate_master_key())
    command = setup.worker(
        "--once", "--idle-interval", "0", "--steps", "mailing.fanout", "--log-level", "ERROR"
    )
    code, _, err = await run(command, wrong)
    assert code == 2
    assert "master key does not match" in one_line(err)
    assert await setup.states() == {"queued": receipt.total}  # nothing cancelled or failed
    progress = await setup.progress(receipt.id)
    assert progress.state.value == "sending" and progress.pending == receipt.total
    assert await setup.copies_per_client() == {}
    # the worker with the right key delivers every copy at once (no lease left behind)
    code, _, err = await run(command, setup.env())
    assert code == 0, err
    assert await setup.states() == {"delivered": receipt.total}
    assert set((await setup.copies_per_client()).values()) == {1}


# -- signals --------------------------------------------------------------------------
async def test_sigterm_stops_a_running_worker_between_steps(setup: Setup) -> None:
    receipt = await setup.submit(clients=400, notify=False)
    proc = await asyncio.create_subprocess_exec(
        *setup.worker("--batch", "2", "--idle-interval", "30", "--log-level", "INFO"),
        env=setup.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while (await setup.states()).get("delivered", 0) < 10:
        assert proc.returncode is None and time.monotonic() < deadline
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"SIGTERM: stopping after the current step" in err
    assert out.startswith(b"processed ")
    states = await setup.states()
    # stopped mid-mailing, between steps: every copy delivered or still queued
    assert set(states) == {"delivered", "queued"}, states
    assert sum(states.values()) == receipt.total
    # the next worker finishes the rest at once: nothing was left leased
    proc = await asyncio.create_subprocess_exec(
        *setup.worker("--once", "--idle-interval", "0"),
        env=setup.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert await setup.states() == {"delivered": receipt.total}
    per_client = await setup.copies_per_client()
    assert len(per_client) == receipt.total and set(per_client.values()) == {1}
    assert (await setup.progress(receipt.id)).all_done


async def test_sigint_stops_an_idle_worker_at_once(setup: Setup) -> None:
    await setup.submit(notify=False)
    proc = await asyncio.create_subprocess_exec(
        *setup.worker("--idle-interval", "3600", "--log-level", "INFO"),
        env=setup.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while b"steps" not in await asyncio.wait_for(proc.stderr.readline(), 60):
        pass
    deadline = time.monotonic() + 60
    while (await setup.states()).get("queued", 0):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # asleep for an hour now
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert out.startswith(b"processed ")


async def test_a_second_signal_stops_at_once(setup: Setup) -> None:
    receipt = await setup.submit(clients=400, notify=False)
    proc = await asyncio.create_subprocess_exec(
        *setup.worker("--batch", "400", "--log-level", "INFO"),
        env=setup.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while b"steps" not in await asyncio.wait_for(proc.stderr.readline(), 60):
        pass
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode()
    # both may be pending at once, and Linux then delivers the lower number
    # (SIGINT) first: the second one handled stops at once, whichever it is
    assert b"Traceback" not in err
    assert b"SIGINT again: stopping at once" in err or b"SIGTERM again: stopping at once" in err
    assert err.decode().strip().splitlines()[-1].startswith("clientcomm: stopped at once")
    # a step cut short rolled back: no copy is half-written
    states = await setup.states()
    assert set(states) <= {"delivered", "queued"} and sum(states.values()) == receipt.total


# -- the Worker's stop ------------------------------------------------------------------
async def test_worker_stop_ends_the_round_and_the_idle_sleep(tmp_path: Path) -> None:
    app = ClientComm.in_memory()
    ran: list[str] = []
    worker = Worker(app, idle_interval=3600)

    async def record(name: str) -> None:
        ran.append(name)
        if name == "attachments.sweep":
            worker.stop()

    real = app.run_step

    async def run_step(name: str, *, limit: int = 500) -> int:
        await record(name)
        return await real(name, limit=limit)

    app.run_step = run_step  # type: ignore[method-assign]
    assert await asyncio.wait_for(worker.run(), 5) == 0
    assert ran == ["mailing.fanout", "attachments.sweep"]  # no step after stop()
    assert worker.stopping
    idle = Worker(ClientComm.in_memory(), idle_interval=3600)
    task = asyncio.create_task(idle.run())
    await asyncio.sleep(0.05)  # now in its hour-long sleep
    idle.stop()
    assert await asyncio.wait_for(task, 5) == 0
