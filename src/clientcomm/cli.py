"""The ``clientcomm`` command.

clientcomm migrate URL            apply pending schema migrations
clientcomm keys new               print a fresh firm master key
clientcomm keys rotate URL        re-wrap every client key under the new master key
clientcomm clients URL --firm ID  list the clients of the SQL-backed Directory
clientcomm worker URL ...         run the background steps (mailing fan-out, e-mail
                                  notices, ...) until SIGTERM/SIGINT, or with --once
                                  until nothing is due
clientcomm mailing status URL ID  a mailing's progress, live until it is done
clientcomm audit verify URL       verify every firm's audit chain
clientcomm letters merge ...      merge serial letters into one print file
clientcomm demo                   the guided tour on a throwaway database

Every option can also come from a TOML file (``--config FILE`` or
``CLIENTCOMM_CONFIG``) and from ``CLIENTCOMM_<OPTION>`` environment variables;
the command line wins over the environment, the environment over the file.
Every option is described in docs/cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from clientcomm.cliconfig import apply_settings, config_path, load_file
from clientcomm.directory.sql import directory_for
from clientcomm.errors import ClientCommError, ConfigurationError
from clientcomm.storage.sql import SqlBackend
from clientcomm.storage.url import open_store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from clientcomm.app import ClientComm
    from clientcomm.crypto import MasterKey
    from clientcomm.mailing import MailingProgress
    from clientcomm.notifications import LinkTemplates
    from clientcomm.notifications.templates import TemplateSet
    from clientcomm.storage.base import Store

PREVIOUS_KEY_ENV = "CLIENTCOMM_PREVIOUS_MASTER_KEY"
PREVIOUS_KEY_FILE_ENV = "CLIENTCOMM_PREVIOUS_MASTER_KEY_FILE"

log = logging.getLogger("clientcomm.cli")


async def _migrate(url: str) -> int:
    store = await open_store(url, migrate=False)
    try:
        version = await store.migrate()
    finally:
        await store.aclose()
    print(f"schema version {version}")
    return 0


async def _clients(url: str, firm_id: str) -> int:
    store = await open_store(url)
    try:
        directory = directory_for(store)
        for client in await directory.list_clients(firm_id):
            state = "active" if client.active else "inactive"
            print(f"{client.id}\t{client.name}\t{state}\t{','.join(sorted(client.group_ids))}")
    finally:
        await store.aclose()
    return 0


async def _worker(args: argparse.Namespace) -> int:
    """Run the background worker over the embedded wiring: SQL Directory in the
    same database, LocalKeyProvider (master key from CLIENTCOMM_MASTER_KEY or
    CLIENTCOMM_MASTER_KEY_FILE), FileBlobStore and SMTP from the options.

    SIGTERM and SIGINT stop it after the current step (exit 0); a second one
    stops it at once (exit 1): the step's transaction rolls back and the work it
    had claimed is finished by the next worker once its lease expires.
    """
    from clientcomm.app import ClientComm
    from clientcomm.blobs.filesystem import FileBlobStore
    from clientcomm.crypto import LocalKeyProvider, load_master_key
    from clientcomm.mail import SMTPConfig, SMTPTransport, TLSMode
    from clientcomm.notifications import MailSettings, NotificationComposer
    from clientcomm.worker import Worker

    # Everything that can be wrong with the options fails here, before the
    # database is opened.
    links = _link_templates(args.link)
    templates = None if args.templates is None else _template_set(args.templates)
    smtp = SMTPConfig(
        host=args.smtp_host,
        port=args.smtp_port,
        tls=TLSMode(args.smtp_tls),
        username=args.smtp_user,
        password=os.environ.get("CLIENTCOMM_SMTP_PASSWORD"),
    )
    mail = MailSettings(sender=args.sender, message_id_domain=args.message_id_domain)
    NotificationComposer(mail, templates)  # checks the sender and the domain
    master_key = load_master_key()

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    worker: Worker | None = None
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("%s: stopping after the current step", signum.name)
            if worker is not None:
                worker.stop()
        elif len(received) == 2 and main_task is not None:
            log.warning("%s again: stopping at once", signum.name)
            main_task.cancel()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows, threads
            continue
        installed.append(signum)
    try:
        store = await open_store(args.url)
        try:
            app = ClientComm(
                store=store,
                directory=directory_for(store),
                keys=LocalKeyProvider(store, master_key),
                blobs=FileBlobStore(args.blobs),
                transport=SMTPTransport(smtp),
                links=links,
                mail=mail,
                templates=templates,
            )
        except BaseException:
            await store.aclose()
            raise
        try:
            worker = Worker(
                app, batch=args.batch, idle_interval=args.idle_interval, steps=args.steps
            )
            if received:  # a signal came while the store was opening
                worker.stop()
            log.info(
                "worker %s: steps %s", app.worker_id, ", ".join(worker.steps or app.steps.names)
            )
            done = await worker.run(stop_when_idle=args.once)
        finally:
            await app.aclose()
    except asyncio.CancelledError:
        if len(received) < 2 or main_task is None:
            raise
        main_task.uncancel()
        print(
            "clientcomm: stopped at once; work it had claimed resumes when the lease expires",
            file=sys.stderr,
        )
        return 1
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("worker stopped after %d items", done)
    print(f"processed {done}")
    return 0


def _template_set(directory: str) -> TemplateSet:
    """The ``--templates`` directory as a :class:`TemplateSet` (checked now).

    Raises:
        ConfigurationError: no such directory, or a template that is broken.
    """
    from clientcomm.notifications.templates import TemplateSet

    if not os.path.isdir(directory):
        raise ConfigurationError(f"--templates: {directory} is not a directory")
    return TemplateSet(directory=directory)


def _link_templates(values: Sequence[tuple[str | None, str]]) -> LinkTemplates:
    """The ``--link`` options as :class:`LinkTemplates`.

    Raises:
        ConfigurationError: two defaults, two templates for one kind, no default
            while some kind has no template, or a template LinkTemplates refuses.
    """
    from clientcomm.notifications import LinkTemplates
    from clientcomm.notifications.models import NotificationKind

    default: str | None = None
    per_kind: dict[str, str] = {}
    for kind, template in values:
        if kind is None:
            if default is not None:
                raise ConfigurationError("--link: give one default link template, not two")
            default = template
        elif kind in per_kind:
            raise ConfigurationError(f"--link: two link templates for {kind}")
        else:
            per_kind[kind] = template
    missing = [k.value for k in NotificationKind if k.value not in per_kind]
    if default is None and missing:
        raise ConfigurationError(
            f"--link: a default link template is needed (no template for {', '.join(missing)})"
        )
    return LinkTemplates(per_kind, default=default)


def _keys_new() -> int:
    from clientcomm.crypto import generate_master_key

    print(generate_master_key())
    return 0


async def _firm_ids(store: Store, wanted: Sequence[str] | None) -> list[str]:
    """``wanted``, or every firm of the SQL Directory in ``store``.

    Raises:
        ConfigurationError: no ``--firm`` and a store without the SQL Directory.
    """
    if wanted:
        return list(dict.fromkeys(wanted))
    if not isinstance(store, SqlBackend):
        raise ConfigurationError("--firm: name the firms (this store has no SQL Directory)")
    rows = await store.sql_read("SELECT id FROM dir_firms ORDER BY id")
    return [str(row[0]) for row in rows]


def _reading_app(store: Store, master: MasterKey) -> ClientComm:
    """A ClientComm over ``store`` for commands that only read (``mailing
    status``): it runs no step, so it sends nothing and stores no blob."""
    from clientcomm.app import ClientComm
    from clientcomm.blobs.memory import MemoryBlobStore
    from clientcomm.crypto import LocalKeyProvider
    from clientcomm.mail.memory import MemoryTransport
    from clientcomm.notifications import LinkTemplates, MailSettings

    return ClientComm(
        store=store,
        directory=directory_for(store),
        keys=LocalKeyProvider(store, master),
        blobs=MemoryBlobStore(),
        transport=MemoryTransport(),
        links=LinkTemplates(default="https://clientcomm.example/{firm_id}/{client_id}"),
        mail=MailSettings(sender="cli@clientcomm.example", message_id_domain="clientcomm.example"),
    )


async def _keys_rotate(args: argparse.Namespace) -> int:
    """Re-wrap every client key under the current master key (see
    docs/security.md, "The master key"); exit 1 while any remain."""
    from rich.table import Table

    from clientcomm.crypto import LocalKeyProvider, load_master_key

    current = load_master_key()
    previous = load_master_key(env=PREVIOUS_KEY_ENV, file_env=PREVIOUS_KEY_FILE_ENV)
    if previous.key_id == current.key_id:
        raise ConfigurationError(
            f"{PREVIOUS_KEY_ENV} is the current master key: give the old one to rotate from"
        )
    store = await open_store(args.url)
    try:
        provider = LocalKeyProvider(store, current, previous_master_keys=[previous])
        table = Table("firm", "re-wrapped", "still under an old key", title="master key rotation")
        left = 0
        for firm_id in await _firm_ids(store, args.firm):
            changed = await provider.rotate_master_key(firm_id, batch=args.batch)
            pending = await provider.pending_master_rotation(firm_id)
            left += pending
            table.add_row(firm_id, str(changed), str(pending))
    finally:
        await store.aclose()
    _console().print(table)
    if left:
        print(f"clientcomm: {left} client keys are still under an old master key", file=sys.stderr)
        return 1
    print(f"every client key is under master key {current.key_id}; the old key can go")
    return 0


def _progress_table(progress: MailingProgress) -> Table:
    from rich.table import Table

    table = Table("", "copies", "notices", title=f"mailing {progress.mailing_id}")
    table.add_row("state", progress.state.value, "")
    table.add_row("total", str(progress.total), "")
    table.add_row("delivered / sent", str(progress.delivered), str(progress.notifications_sent))
    table.add_row("pending", str(progress.pending), str(progress.notifications_pending))
    table.add_row("failed", str(progress.failed), str(progress.notifications_failed))
    table.add_row("cancelled", str(progress.cancelled), "")
    table.add_row("skipped", str(progress.skipped), "")
    return table


async def _mailing_status(args: argparse.Namespace) -> int:
    """Show a mailing's progress: a live bar until every copy and notice is
    through (``--no-wait``: once), then the counts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from clientcomm.actors import StaffActor
    from clientcomm.crypto import load_master_key

    master = load_master_key()
    actor = StaffActor(args.firm, args.staff)
    store = await open_store(args.url)
    try:
        app = _reading_app(store, master)
        progress = await app.mailings.status(actor, args.mailing_id)
        if not args.no_wait and not progress.all_done:
            print(f"watching mailing {args.mailing_id} until done (Ctrl-C stops)", file=sys.stderr)
            console = _console()
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as bar:
                copies = bar.add_task("copies", total=progress.total)
                notices = bar.add_task("notices", total=None)
                while True:
                    finished = progress.delivered + progress.failed + progress.cancelled
                    bar.update(copies, completed=finished + progress.skipped)
                    sent = progress.notifications_sent + progress.notifications_failed
                    bar.update(notices, completed=sent, total=sent + progress.notifications_pending)
                    if progress.all_done:
                        break
                    await asyncio.sleep(args.interval)
                    progress = await app.mailings.status(actor, args.mailing_id)
    finally:
        await store.aclose()
    _console().print(_progress_table(progress))
    if progress.failure:
        print(f"clientcomm: the mailing failed: {progress.failure}", file=sys.stderr)
        return 1
    return 0


async def _audit_verify(args: argparse.Namespace) -> int:
    """Walk every firm's audit chain; exit 1 on the first fault of any."""
    from rich.table import Table

    from clientcomm.audit import AuditTrail

    store = await open_store(args.url)
    try:
        trail = AuditTrail(store)
        table = Table("firm", "verified", "pending", "result", title="audit chains")
        faults: list[str] = []
        for firm_id in await _firm_ids(store, args.firm):
            result = await trail.verify(firm_id)
            if result.fault is None:
                verdict = "ok"
            else:
                verdict = f"{result.fault.fault.value} at {result.fault.position}"
                faults.append(f"{firm_id}: {verdict}: {result.fault.detail}")
            table.add_row(firm_id, str(result.checked), str(result.pending), verdict)
    finally:
        await store.aclose()
    _console().print(table)
    for fault in faults:
        print(f"clientcomm: audit chain broken: {_one_line_text(fault)}", file=sys.stderr)
    return 1 if faults else 0


def _letters_merge(args: argparse.Namespace) -> int:
    """Hand ``letters merge`` to the serial-letters package
    (``clientcomm.letters.cli.merge_command(files, output, duplex=...)``, which
    validates the files at intake and returns the exit status)."""
    try:
        letters_cli = importlib.import_module("clientcomm.letters.cli")
    except ModuleNotFoundError as exc:
        if exc.name is None or not "clientcomm.letters.cli".startswith(exc.name):
            raise
        raise ConfigurationError(
            "letters merge is not available: this installation has no "
            "clientcomm.letters.cli (the serial-letters package's command)"
        ) from None
    merge: Callable[..., int] = letters_cli.merge_command
    return merge(args.files, args.output, duplex=args.duplex)


def _demo(args: argparse.Namespace) -> int:
    """Run the guided tour (clientcomm.demo) into ``--out`` (default: a new
    temporary directory, kept so its outputs can be looked at)."""
    from clientcomm.demo import run_demo

    return run_demo(args.out)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _one_line_text(text: str) -> str:
    return " ".join(text.split())


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``clientcomm worker: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, not {text}")
    return value


def _host(text: str) -> str:
    host = text.strip()
    if not host:
        raise argparse.ArgumentTypeError("must name the SMTP server (a host name or IP address)")
    return host


_KIND_LINK = re.compile(r"(?P<kind>[A-Za-z_]+)=(?P<template>.+)")


def _link(text: str) -> tuple[str | None, str]:
    """``TEMPLATE`` (the default) or ``KIND=TEMPLATE``."""
    from clientcomm.notifications.models import NotificationKind

    match = _KIND_LINK.fullmatch(text)
    if match is None:
        return None, text
    kinds = [k.value for k in NotificationKind]
    if match["kind"] not in kinds:
        raise argparse.ArgumentTypeError(
            f"unknown notification kind {match['kind']!r} (known: {', '.join(kinds)})"
        )
    return match["kind"], match["template"]


def _steps(text: str) -> tuple[str, ...]:
    from clientcomm.app import BUILTIN_STEPS

    known = [step.name for step in BUILTIN_STEPS]
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one step (known: {', '.join(known)})")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown step {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    return names


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_parser() -> argparse.ArgumentParser:
    """The ``clientcomm`` parser (without settings from a file or the environment)."""
    return build_commands()[0]


def build_commands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and each command's own parser, by name (``"keys rotate"``)."""
    commands: dict[str, argparse.ArgumentParser] = {}
    parser = _Parser(
        prog="clientcomm",
        description="Operate clientcomm from the shell: migrations, workers, keys, checks.",
        epilog="Options also come from CLIENTCOMM_<OPTION> variables and a TOML file "
        "(--config or CLIENTCOMM_CONFIG); see docs/cli.md.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file of settings (default: $CLIENTCOMM_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands["migrate"] = sub.add_parser(
        "migrate", help="apply pending schema migrations", description="Apply pending migrations."
    )
    p.add_argument("url", help="memory://, sqlite:///path or postgresql://...")
    keys = sub.add_parser("keys", help="master keys: new, rotate", description="Master keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    commands["keys new"] = keys_sub.add_parser(
        "new", help="print a fresh master key (base64)", description="Print a fresh master key."
    )
    p = commands["keys rotate"] = keys_sub.add_parser(
        "rotate",
        help="re-wrap every client key under the new master key",
        description="Move every client key to the current master key "
        f"(CLIENTCOMM_MASTER_KEY[_FILE]) from the old one ({PREVIOUS_KEY_ENV}[_FILE]). "
        "Exit 0 when none is left under the old key. See docs/security.md.",
    )
    p.add_argument("url", help="sqlite:///path or postgresql://...")
    p.add_argument(
        "--firm", action="append", metavar="ID", help="only this firm (repeatable; default: all)"
    )
    p.add_argument("--batch", type=_positive_int, default=500, metavar="N", help="keys per step")
    p = commands["clients"] = sub.add_parser(
        "clients",
        help="list clients of the SQL-backed Directory",
        description="List the clients of one firm.",
    )
    p.add_argument("url")
    p.add_argument("--firm", required=True)
    mailing = sub.add_parser("mailing", help="mailings: status", description="Mailings.")
    mailing_sub = mailing.add_subparsers(dest="mailing_command", required=True, metavar="COMMAND")
    p = commands["mailing status"] = mailing_sub.add_parser(
        "status",
        help="a mailing's progress, live until done",
        description="Show a mailing's progress as the staff member STAFF sees it: a live "
        "progress bar until every copy and notice is through, then the counts.",
    )
    p.add_argument("url", help="sqlite:///path or postgresql://...")
    p.add_argument("mailing_id", metavar="ID", help="the mailing's id (from submit)")
    p.add_argument("--firm", required=True, metavar="ID")
    p.add_argument("--staff", required=True, metavar="ID", help="act as this staff member")
    p.add_argument("--no-wait", action="store_true", help="print the counts once")
    p.add_argument(
        "--interval", type=_seconds, default=0.5, metavar="SECONDS", help="poll interval"
    )
    audit = sub.add_parser("audit", help="the audit trail: verify", description="Audit trail.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    p = commands["audit verify"] = audit_sub.add_parser(
        "verify",
        help="verify the audit chains",
        description="Walk each firm's audit chain; exit 1 if any entry was edited, "
        "removed, inserted or reordered.",
    )
    p.add_argument("url", help="sqlite:///path or postgresql://...")
    p.add_argument(
        "--firm", action="append", metavar="ID", help="only this firm (repeatable; default: all)"
    )
    letters = sub.add_parser("letters", help="serial letters: merge", description="Letters.")
    letters_sub = letters.add_subparsers(dest="letters_command", required=True, metavar="COMMAND")
    p = commands["letters merge"] = letters_sub.add_parser(
        "merge",
        help="merge letters (PDF) into one print file",
        description="Check each PDF at intake and merge them into one print file; with "
        "--duplex every letter is padded to an even page count.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="the letters (PDF)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the print file")
    p.add_argument("--duplex", action="store_true", help="pad letters for two-sided printing")
    p = commands["demo"] = sub.add_parser(
        "demo",
        help="the guided tour on a throwaway database",
        description="Run the tour (what `make demo` runs) and print where its outputs are.",
    )
    p.add_argument("--out", metavar="DIR", help="where to put its outputs (default: a new dir)")
    p = commands["worker"] = sub.add_parser(
        "worker",
        help="run mailing fan-out and notification delivery",
        description="Run clientcomm's background steps until SIGTERM or SIGINT "
        "(or, with --once, until nothing is due). See docs/cli.md.",
    )
    p.add_argument("url", help="sqlite:///path or postgresql://...")
    p.add_argument("--once", action="store_true", help="stop when nothing is due")
    p.add_argument("--blobs", required=True, help="directory of the FileBlobStore")
    p.add_argument(
        "--link",
        required=True,
        action="append",
        type=_link,
        metavar="[KIND=]TEMPLATE",
        help="portal link template, e.g. https://portal.example/{firm_id}/clients/{client_id}; "
        "KIND=TEMPLATE for one notification kind (repeatable)",
    )
    p.add_argument(
        "--templates", metavar="DIR", help="directory of notification templates (de/...)"
    )
    p.add_argument("--sender", required=True, help="From address of notifications")
    p.add_argument("--message-id-domain", required=True)
    p.add_argument("--smtp-host", required=True, type=_host)
    p.add_argument("--smtp-port", type=_port, default=None)
    p.add_argument(
        "--smtp-tls",
        default="starttls",
        choices=("starttls", "implicit", "none"),
        help="default: starttls",
    )
    p.add_argument("--smtp-user", default=None, help="password from CLIENTCOMM_SMTP_PASSWORD")
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=500,
        metavar="N",
        help="items per step and round (default: 500)",
    )
    p.add_argument(
        "--idle-interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="sleep when nothing is due (default: 1)",
    )
    p.add_argument(
        "--steps",
        type=_steps,
        default=None,
        metavar="NAME,...",
        help="run only these steps (default: all)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default: WARNING); logs go to stderr",
    )
    return parser, commands


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _command(args: argparse.Namespace) -> str:
    words = [args.command]
    sub = getattr(args, f"{args.command}_command", None)
    if sub:
        words.append(sub)
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for usage, configuration or
    clientcomm errors, 1 for other failures, a failed check and a worker
    stopped at once)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_commands()
    try:
        path = config_path(argv, os.environ)
        settings = {} if path is None else load_file(path)
        configured = apply_settings(commands, settings, os.environ, source=f"config file {path}")
    except ClientCommError as exc:
        print(f"clientcomm: {_one_line(exc)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    command = _command(args)
    configured.fill(command, args)
    if command == "worker":
        logging.basicConfig(
            level=args.log_level,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        if command == "migrate":
            return asyncio.run(_migrate(args.url))
        if command == "clients":
            return asyncio.run(_clients(args.url, args.firm))
        if command == "worker":
            return asyncio.run(_worker(args))
        if command == "keys new":
            return _keys_new()
        if command == "keys rotate":
            return asyncio.run(_keys_rotate(args))
        if command == "mailing status":
            return asyncio.run(_mailing_status(args))
        if command == "audit verify":
            return asyncio.run(_audit_verify(args))
        if command == "letters merge":
            return _letters_merge(args)
        if command == "demo":
            return _demo(args)
    except ClientCommError as exc:
        print(f"clientcomm: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a blob directory or database file out of reach
        print(f"clientcomm: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clientcomm: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - argparse enforces the commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
