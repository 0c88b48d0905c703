"""Driving clientcomm's background steps from procrastinate on the same PostgreSQL.

requires: postgres  (tests/test_docs.py runs it against the suite's server)

A host that already runs a task queue does not need clientcomm's own worker:
every background step is a named, plain async function behind
``app.run_step(name)``. Here procrastinate, a PostgreSQL-based task queue,
runs them from the database clientcomm uses:

* a periodic task per registered step (every second here; a minute is usual),
* an on-demand task the web request defers right after ``submit`` (the
  fan-out starts at once instead of at the next tick),
* ``queueing_lock`` so a step is queued at most once at a time, and several
  procrastinate workers may run: the steps claim their work with leases.

Usage: ``python examples/task_queue.py [POSTGRES_URL]`` (default
``$CLIENTCOMM_PG_URL`` or ``$CLIENTCOMM_TEST_PG_URL``). It works in a fresh
schema of its own and drops it at the end. Needs ``procrastinate`` and
``clientcomm[postgres]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued

from clientcomm import (
    Audience,
    Client,
    ClientActor,
    ClientComm,
    Contact,
    Firm,
    LocalKeyProvider,
    MasterKey,
    MemoryBlobStore,
    MemoryTransport,
    Role,
    Staff,
    StaffActor,
    directory_for,
)
from clientcomm.notifications import LinkTemplates, MailSettings
from clientcomm.storage.postgres import PostgresStore
from clientcomm.testing.postgres import isolated_schema

CLIENTS = 40
runs: Counter[str] = Counter()  # task name -> jobs run, "<name>:on-demand" for deferred ones


def make_queue(conninfo: str, app: ClientComm) -> procrastinate.App:
    """One procrastinate task per registered step, each also periodic."""
    queue = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    def register(step: str) -> None:
        task_name = f"clientcomm.{step}"

        @queue.periodic(cron="* * * * * *", periodic_id=step)  # 6th field: every second
        @queue.task(name=task_name, queueing_lock=task_name)
        async def run(timestamp: int | None = None) -> int:
            runs[task_name if timestamp is not None else f"{task_name}:on-demand"] += 1
            done = 0
            while n := await app.run_step(step, limit=500):  # until nothing is due
                done += n
            return done

    for name in app.steps.names:  # every registered step, future capabilities' too
        register(name)
    return queue


async def defer(queue: procrastinate.App, step: str) -> bool:
    """On demand: run ``step`` now. Returns False when a run of it was queued
    already (a periodic tick not yet started: it does the same work)."""
    try:
        await queue.configure_task(f"clientcomm.{step}").defer_async()
    except AlreadyEnqueued:
        return False
    return True


async def main(url: str) -> None:
    async with isolated_schema(url) as conninfo:
        store = await PostgresStore(conninfo).open()
        try:
            directory = directory_for(store)
            await directory.put_firm(Firm("kanzlei", "Kanzlei Müller"))
            await directory.put_staff(Staff("petra", "kanzlei", "Petra Partner", Role.ADMIN))
            for i in range(CLIENTS):
                await directory.put_client(Client(f"c{i}", "kanzlei", f"Mandant {i}"))
                await directory.put_contact(
                    Contact(
                        f"k{i}",
                        "kanzlei",
                        f"c{i}",
                        f"Kontakt {i}",
                        email=f"k{i}@example.org",
                        registered=True,
                    )
                )
            transport = MemoryTransport()
            app = ClientComm(
                store=store,
                directory=directory,
                keys=LocalKeyProvider(store, MasterKey.generate()),
                blobs=MemoryBlobStore(),
                transport=transport,
                links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
                mail=MailSettings(
                    sender="portal@portal.example", message_id_domain="portal.example"
                ),
                mailing_batch=10,
            )
            queue = make_queue(conninfo, app)
            async with queue.open_async():
                await queue.schema_manager.apply_schema_async()
                worker = asyncio.create_task(
                    queue.run_worker_async(
                        install_signal_handlers=False,
                        delete_jobs="always",
                        fetch_job_polling_interval=0.2,
                    )
                )
                # the web request: submit, defer the fan-out, answer at once
                staff = StaffActor("kanzlei", "petra")
                receipt = await app.mailings.submit(
                    staff, Audience.everyone(), "Unsere Kanzlei ist am Freitag geschlossen."
                )
                deferred = await defer(queue, "mailing.fanout")
                deadline = time.monotonic() + 60
                while not (progress := await app.mailings.status(staff, receipt.id)).all_done:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"not done after 60 s: {progress}")
                    await asyncio.sleep(0.1)
                worker.cancel()  # procrastinate stops gracefully: running jobs finish
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
                left = await queue.job_manager.list_jobs_async(status="doing")
            assert progress.delivered == CLIENTS and progress.notifications_sent == CLIENTS
            assert len(transport.sent) == CLIENTS  # each notice once
            [copy] = await app.messages.list_for_client(ClientActor("kanzlei", "c3"))
            assert copy.text.startswith("Unsere Kanzlei")
            assert runs["clientcomm.mailing.fanout:on-demand"] == int(deferred), runs
            assert runs["clientcomm.notifications.deliver"] >= 1, runs  # periodic ticks
            assert not left, left
            ticks = sum(n for name, n in runs.items() if not name.endswith(":on-demand"))
            print(
                f"{progress.delivered} copies delivered, {progress.notifications_sent} notices "
                f"sent; procrastinate ran {int(deferred)} on-demand and {ticks} periodic jobs "
                f"over {len(app.steps.names)} steps"
            )
        finally:
            await store.aclose()


if __name__ == "__main__":
    pg = (sys.argv[1:] or [os.environ.get("CLIENTCOMM_PG_URL") or ""])[0] or os.environ.get(
        "CLIENTCOMM_TEST_PG_URL", ""
    )
    if not pg:
        sys.exit("usage: python examples/task_queue.py POSTGRES_URL (or set CLIENTCOMM_PG_URL)")
    asyncio.run(main(pg))
