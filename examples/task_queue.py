"""Driving clientcomm's background work from a host's own task queue.

A host that already runs a task queue (Celery, Dramatiq, procrastinate, arq)
does not need clientcomm's Worker: every background step is a named, plain
async function behind ``app.run_step(name)``. This example stands in a tiny
in-process queue for the real one, so it runs anywhere; the shape of the
tasks is the same as with procrastinate (see docs/operations.md):

* a periodic task per step ("every second: run mailing.fanout"), and
* an on-demand task the web request enqueues right after ``submit``.

Only public names are used.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from clientcomm import (
    Audience,
    Client,
    ClientActor,
    ClientComm,
    Contact,
    Firm,
    MemoryDirectory,
    Role,
    Staff,
    StaffActor,
)


class TinyQueue:
    """A stand-in for the host's task queue: named tasks, FIFO, one worker."""

    def __init__(self) -> None:
        self.tasks: dict[str, Callable[[], Awaitable[int]]] = {}
        self.pending: deque[str] = deque()

    def task(self, name: str, fn: Callable[[], Awaitable[int]]) -> None:
        self.tasks[name] = fn

    def defer(self, name: str) -> None:
        self.pending.append(name)

    async def work(self) -> None:
        while self.pending:
            name = self.pending.popleft()
            done = await self.tasks[name]()
            if done:  # more may be due: run the task again, like a periodic tick
                self.pending.append(name)


async def main() -> None:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("kanzlei", "Kanzlei Müller"))
    await directory.put_staff(Staff("petra", "kanzlei", "Petra Partner", Role.ADMIN))
    for i in range(1, 6):
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
    app = ClientComm.in_memory(directory=directory, mailing_batch=2)

    queue = TinyQueue()
    for name in app.steps.names:  # one task per registered step

        def make(step: str) -> Callable[[], Awaitable[int]]:
            return lambda: app.run_step(step, limit=100)

        queue.task(name, make(name))

    # The web request: submit, then enqueue the fan-out (returns at once).
    receipt = await app.mailings.submit(
        StaffActor("kanzlei", "petra"),
        Audience.everyone(),
        "Unsere Kanzlei ist am Freitag geschlossen.",
    )
    queue.defer("mailing.fanout")
    await queue.work()
    # The periodic ticks of the other steps (beat / procrastinate periodic tasks).
    for name in ("notifications.expand", "notifications.deliver"):
        queue.defer(name)
    await queue.work()

    progress = await app.mailings.status(StaffActor("kanzlei", "petra"), receipt.id)
    assert progress.delivered == 5 and progress.notifications_sent == 5, progress
    [copy] = await app.messages.list_for_client(ClientActor("kanzlei", "c3"))
    assert copy.text.startswith("Unsere Kanzlei")
    print(f"{progress.delivered} copies delivered, {progress.notifications_sent} notices sent")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
