"""The installed ``clientcomm`` command: every command's help, keys rotate, mailing
status, audit verify, letters merge, demo, and settings from a file and the
environment (the worker itself: tests/test_cli.py)."""

from __future__ import annotations

import asyncio
import base64
import email
import email.message
import email.policy
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import attrs
import pytest
from pypdf import PdfReader

from clientcomm import (
    Audience,
    ClientActor,
    ClientComm,
    ConfigurationError,
    LocalKeyProvider,
    MasterKey,
    MemoryBlobStore,
    MemoryTransport,
    StaffActor,
    directory_for,
    generate_master_key,
)
from clientcomm.audit import AuditTrail
from clientcomm.demo import DOCUMENT_NAMES, SHARED_PDF, mail_text
from clientcomm.letters.pdfa import check_pdfa
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.testing.letters import letter
from tests.audit.test_trail import raw_at, replace
from tests.cli_support import cli_env, clientcomm_script
from tests.mailing_support import LINKS, MAIL, seed

COMMANDS = [
    [],
    ["migrate"],
    ["keys"],
    ["keys", "new"],
    ["keys", "rotate"],
    ["clients"],
    ["worker"],
    ["mailing"],
    ["mailing", "status"],
    ["audit"],
    ["audit", "verify"],
    ["letters"],
    ["letters", "merge"],
    ["demo"],
]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [clientcomm_script(), *args],
        capture_output=True,
        text=True,
        env=cli_env(**env),
        timeout=120,
        check=False,
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "clientcomm")
def test_help_everywhere(words: list[str]) -> None:
    proc = cli(*words, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: clientcomm {' '.join(words)}".rstrip())
    assert "--help" in proc.stdout


def test_no_command_and_an_unknown_one_fail_in_one_line() -> None:
    proc = cli()
    assert proc.returncode == 2
    assert "required: COMMAND" in one_line(proc.stderr)
    proc = cli("mailing", "statsu")
    assert proc.returncode == 2
    assert "invalid choice: 'statsu'" in one_line(proc.stderr)


def test_migrate_and_a_bad_url(tmp_path: Path) -> None:
    proc = cli("migrate", f"sqlite:///{tmp_path / 'cc.db'}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("schema version ")
    proc = cli("migrate", "mysql://db/x")
    assert proc.returncode == 2
    assert "unknown store URL scheme 'mysql'" in one_line(proc.stderr)


def test_keys_new_prints_a_usable_key() -> None:
    proc = cli("keys", "new")
    assert proc.returncode == 0
    key = proc.stdout.strip()
    assert len(base64.b64decode(key)) == 32
    assert MasterKey.from_text(key).key_id
    assert cli("keys", "new").stdout.strip() != key


# -- a store with data ------------------------------------------------------------------
@attrs.frozen
class Site:
    db: Path
    key: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def app(self, store: SQLiteStore, *keys: str) -> ClientComm:
        master, *previous = [MasterKey.from_text(k) for k in (keys or (self.key,))]
        return ClientComm(
            store=store,
            directory=directory_for(store),
            keys=LocalKeyProvider(store, master, previous_master_keys=previous),
            blobs=MemoryBlobStore(),
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
        )

    async def mailing(self, *, drain: bool = True) -> str:
        async with SQLiteStore(self.db) as store:
            app = self.app(store)
            await seed(directory_for(store))
            receipt = await app.mailings.submit(
                StaffActor("f1", "admin"), Audience.everyone(), "Hallo"
            )
            await app.mailings.submit(StaffActor("f2", "admin2"), Audience.everyone(), "Servus")
            if drain:
                await app.drain()
            return receipt.id


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "cc.db", generate_master_key())


async def test_keys_rotate_moves_every_client_key_to_the_new_master_key(site: Site) -> None:
    await site.mailing()
    new = generate_master_key()
    # bad cases first: nothing changes
    proc = cli("keys", "rotate", site.url, CLIENTCOMM_MASTER_KEY=new)
    assert proc.returncode == 2
    assert "no master key: set CLIENTCOMM_PREVIOUS_MASTER_KEY" in one_line(proc.stderr)
    proc = cli(
        "keys",
        "rotate",
        site.url,
        CLIENTCOMM_MASTER_KEY=site.key,
        CLIENTCOMM_PREVIOUS_MASTER_KEY=site.key,
    )
    assert proc.returncode == 2
    assert "is the current master key" in one_line(proc.stderr)
    async with SQLiteStore(site.db) as store:
        [copy] = await site.app(store).messages.list_for_client(ClientActor("f1", "c1"))
    # the rotation: every firm of the Directory
    proc = cli(
        "keys",
        "rotate",
        site.url,
        CLIENTCOMM_MASTER_KEY=new,
        CLIENTCOMM_PREVIOUS_MASTER_KEY=site.key,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if "│" in line}
    assert set(rows) >= {"f1", "f2"}
    assert "the old key can go" in proc.stdout
    async with SQLiteStore(site.db) as store:
        app = site.app(store, new)  # the new key alone opens everything
        [again] = await app.messages.list_for_client(ClientActor("f1", "c1"))
        assert again.text == copy.text == "Hallo"
        [other] = await app.messages.list_for_client(ClientActor("f2", "x1"))
        assert other.text == "Servus"
        with pytest.raises(ConfigurationError, match="master key does not match"):
            await site.app(store).messages.list_for_client(ClientActor("f1", "c1"))
    # again: nothing left to move
    proc = cli(
        "keys",
        "rotate",
        site.url,
        CLIENTCOMM_MASTER_KEY=new,
        CLIENTCOMM_PREVIOUS_MASTER_KEY=site.key,
    )
    assert proc.returncode == 0, proc.stderr


async def test_mailing_status_once_and_live(site: Site) -> None:
    mailing_id = await site.mailing(drain=False)
    common = ["mailing", "status", site.url, mailing_id, "--firm", "f1", "--staff", "admin"]
    proc = cli(*common, "--no-wait", CLIENTCOMM_MASTER_KEY=site.key)
    assert proc.returncode == 0, proc.stderr
    assert "sending" in proc.stdout and "pending" in proc.stdout
    # live: it waits while nothing moves, and ends when the worker is through
    live = await asyncio.create_subprocess_exec(
        clientcomm_script(),
        *common,
        "--interval",
        "0.1",
        env=cli_env(CLIENTCOMM_MASTER_KEY=site.key),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert live.stderr is not None
    line = await asyncio.wait_for(live.stderr.readline(), 60)
    assert line.startswith(b"watching mailing "), line
    await asyncio.sleep(0.5)
    assert live.returncode is None  # still watching
    async with SQLiteStore(site.db) as store:
        await site.app(store).drain()
    out, err = await asyncio.wait_for(live.communicate(), 60)
    assert live.returncode == 0, err.decode()
    text = out.decode()
    assert "copies" in text and "5/5" in text
    assert "completed" in text and "delivered / sent │ 5 " in text
    # bad cases: an unknown mailing, a staff member without access, no key
    proc = cli(*common[:3], "nosuch", *common[4:], CLIENTCOMM_MASTER_KEY=site.key)
    assert proc.returncode == 2 and "not found" in one_line(proc.stderr).lower()
    proc = cli(*common[:-1], "gone", CLIENTCOMM_MASTER_KEY=site.key)
    assert proc.returncode == 2 and "clientcomm:" in one_line(proc.stderr)
    proc = cli(*common)
    assert proc.returncode == 2 and "no master key" in one_line(proc.stderr)


async def test_audit_verify_passes_and_finds_an_edited_entry(site: Site) -> None:
    await site.mailing()
    proc = cli("audit", "verify", site.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" ok ") >= 2  # f1 and f2
    async with SQLiteStore(site.db) as store:
        assert (await AuditTrail(store).verify("f1")).checked > 0
        record = await raw_at(store, 1)
        await replace(store, record.evolve(ref="someone-else"))
    proc = cli("audit", "verify", site.url, "--firm", "f1")
    assert proc.returncode == 1
    assert "audit chain broken: f1: edited at 1" in one_line(proc.stderr)
    proc = cli("audit", "verify", site.url, "--firm", "f2")  # the other firm is intact
    assert proc.returncode == 0, proc.stderr


def test_letters_merge_pads_for_duplex_and_refuses_a_hostile_file(tmp_path: Path) -> None:
    one, two = tmp_path / "eins.pdf", tmp_path / "zwei.pdf"
    one.write_bytes(letter(pages=1))
    two.write_bytes(letter(pages=2))
    out = tmp_path / "druck.pdf"
    proc = cli("letters", "merge", "--duplex", str(one), str(two), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    reader = PdfReader(out)
    # one page, a blank back, then the two-page letter on a new sheet
    assert len(reader.pages) == 4
    assert (reader.pages[1].extract_text() or "").strip() == ""
    assert "eins.pdf: pages 1-2" in proc.stdout
    simplex = tmp_path / "simplex.pdf"
    proc = cli("letters", "merge", str(one), str(two), "-o", str(simplex))
    assert proc.returncode == 0 and len(PdfReader(simplex).pages) == 3
    bad = tmp_path / "kaputt.pdf"
    bad.write_bytes(b"%PDF-1.7\nnot really")
    refused = tmp_path / "refused.pdf"
    proc = cli("letters", "merge", str(one), str(bad), "-o", str(refused))
    assert proc.returncode == 1
    assert "kaputt.pdf: refused" in one_line(proc.stderr)
    assert not refused.exists() and not list(tmp_path.glob(".merge-*"))
    proc = cli("letters", "merge", str(one))
    assert proc.returncode == 2 and "required: -o/--output" in one_line(proc.stderr)


def summary_rows(stdout: str) -> dict[str, str]:
    """The demo's summary table (one line a row: COLUMNS is wide) as step -> outcome."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 4 and cells[1] and cells[1] != "step":
            rows[cells[1]] = cells[2]
    return rows


def demo_mails(out: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted((out / "mail").glob("*.eml"))
    ]


def print_file(out: Path) -> tuple[Path, dict[str, Any]]:
    [batch] = (out / "print-shop" / "outbox" / "kanzlei").iterdir()
    return batch / "letters.pdf", json.loads((batch / "manifest.json").read_text())


def test_demo_runs_and_tells_where_its_outputs_are(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    started = time.monotonic()
    proc = cli("demo", "--out", str(out), COLUMNS="400")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 60
    rows = summary_rows(proc.stdout)
    assert rows["firm"] == "4 staff (admin Petra, manager Max, clerk Sven, assistant Asta)"
    assert rows["clients"] == (
        "300 in groups (Vermieter 100, GmbHs 100, Privatpersonen 100, Lindenweg 12)"
    )
    assert rows["mailing"].startswith("100/100 copies with PDF, 100 e-mail notices")
    assert rows["client reply"].startswith("c000 read 'Grundsteuer 2027' and replied (1 unread")
    assert "share ended: c003 now sees ['Beleg-Handwerker.pdf']" in rows["portal share"]
    assert rows["client upload"].endswith(
        "handler Sven notified by e-mail (1) and in-app (client_upload)"
    )
    assert rows["conversation"].startswith("open → needs_attention → open → answered")
    assert rows["conversation notices"] == (
        "office 1 e-mail, administrator Petra 2 e-mails + in-app (new_comment), client c001 2"
    )
    # shown, closed, back at the next login, read; the edit shows only at the next login
    assert rows["announcement"] == (
        "login 1: [r1 unread]; closed: []; login 2: [r1 unread]; read, edited: []; "
        "login 3: [r2 unread]"
    )
    assert rows["serial letter"].startswith(
        "12 units: released into 10 portals, 5 letters by post, 20 pages with duplex padding"
    )
    assert rows["audit chain"].endswith("entries verified")
    assert rows["e-mails"] == "118 received on loopback, all over STARTTLS, none names a file"

    # the outputs are where the table says, and are what it says
    assert rows["database"] == str(out / "clientcomm.db")
    assert rows["e-mail files"] == f"{out / 'mail'}/*.eml"
    printed, manifest = print_file(out)
    assert rows["print PDF"] == str(printed)
    assert len(PdfReader(printed).pages) == 20 == manifest["page_count"]
    # by preference (c000, c004, c008) and without a portal login (c010, c011), each
    # letter 1 or 2 pages + the attachment, padded to whole sheets: 4 pages each
    assert {x["contact_id"]: x["page_count"] for x in manifest["letters"]} == dict.fromkeys(
        ["k000", "k004", "k008", "k010", "k011"], 4
    )
    pdfa = out / "serienbrief-pdfa.pdf"
    assert rows["PDF/A file"] == str(pdfa)
    assert check_pdfa(pdfa.read_bytes()).pages == 20
    mails = demo_mails(out)
    assert len(mails) == 118
    for mail in mails:  # notices only: no document's name, no attachment
        text = mail_text(mail)
        assert not [name for name in DOCUMENT_NAMES if name in text], text
        assert not list(mail.iter_attachments())
    to = Counter(parseaddr(m["To"])[1] for m in mails)
    assert to["office@kanzlei.example"] == 1 and to["petra@kanzlei.example"] == 2
    assert [m for m in mails if "token=" in mail_text(m)] == [
        m
        for m in mails
        if m["To"].endswith("<sven@kanzlei.example>") and "Serienbrief" in m["Subject"]
    ]
    proc = cli("audit", "verify", f"sqlite:///{out / 'clientcomm.db'}")  # the database is real
    assert proc.returncode == 0 and " ok " in proc.stdout, proc.stderr

    proc = cli("demo", "--out", str(out))  # not over an earlier run
    assert proc.returncode == 2 and "is not empty" in one_line(proc.stderr)


def test_demo_without_ghostscript_skips_only_the_pdfa_step(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # the console script and its interpreter, nothing else on PATH: no gs
    bin_dir = str(Path(clientcomm_script()).parent)
    assert shutil.which("gs", path=bin_dir) is None
    proc = cli("demo", "--out", str(out), COLUMNS="400", PATH=bin_dir)
    assert proc.returncode == 0, proc.stderr
    skipped = [
        line for line in proc.stdout.splitlines() if "Ghostscript" in line and "│" not in line
    ]
    assert skipped == ["PDF/A download link: skipped, Ghostscript (gs) is not installed"]
    rows = summary_rows(proc.stdout)
    assert rows["PDF/A"] == "skipped: Ghostscript (gs) is not installed"
    assert "PDF/A file" not in rows and not (out / "serienbrief-pdfa.pdf").exists()
    printed, _ = print_file(out)  # the rest of the tour ran
    assert len(PdfReader(printed).pages) == 20
    assert rows["audit chain"].endswith("entries verified")
    assert len(demo_mails(out)) == 117  # all but the download link


def test_a_document_name_in_an_encoded_mail_is_found() -> None:
    """The demo's check reads what a reader sees: a name hidden from a byte
    search by the transfer encoding is still found."""
    mail = email.message.EmailMessage()
    mail["To"] = "c003@example.org"
    mail.set_content(f"Ihr Dokument {SHARED_PDF} ist da. " * 3, cte="base64")
    raw = mail.as_bytes()
    assert SHARED_PDF.encode() not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert SHARED_PDF in mail_text(parsed)
    other = email.message.EmailMessage()
    other.set_content("Neue Dokumente sind da.", cte="base64")
    assert SHARED_PDF not in mail_text(other)


# -- settings from a file and the environment ------------------------------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def test_settings_from_a_file_and_the_environment(site: Site, tmp_path: Path) -> None:
    mailing_id = await site.mailing()
    config = write(
        tmp_path / "clientcomm.toml",
        f'url = "{site.url}"\n\n[mailing.status]\nfirm = "f1"\nstaff = "admin"\nno_wait = true\n',
    )
    proc = cli(
        "--config", str(config), "mailing", "status", mailing_id, CLIENTCOMM_MASTER_KEY=site.key
    )
    assert proc.returncode == 0, proc.stderr
    assert "delivered" in proc.stdout
    # the environment beats the file, the command line beats the environment
    proc = cli(
        "mailing",
        "status",
        mailing_id,
        CLIENTCOMM_CONFIG=str(config),
        CLIENTCOMM_STAFF="gone",
        CLIENTCOMM_MASTER_KEY=site.key,
    )
    assert proc.returncode == 2
    proc = cli(
        "mailing",
        "status",
        mailing_id,
        "--staff",
        "admin",
        CLIENTCOMM_CONFIG=str(config),
        CLIENTCOMM_STAFF="gone",
        CLIENTCOMM_MASTER_KEY=site.key,
    )
    assert proc.returncode == 0, proc.stderr
    # the worker: every option from the file, --once from the environment
    worker = write(
        tmp_path / "worker.toml",
        f'url = "{site.url}"\n[worker]\nblobs = "{tmp_path / "blobs"}"\n'
        'link = ["https://portal.example/{firm_id}/clients/{client_id}"]\n'
        'sender = "portal@portal.example"\nmessage-id-domain = "portal.example"\n'
        'smtp-host = "127.0.0.1"\nsmtp-port = 1\nsmtp-tls = "none"\nbatch = 50\n'
        'idle-interval = 0\nsteps = "mailing.fanout"\n',
    )
    proc = cli(
        "--config", str(worker), "worker", CLIENTCOMM_ONCE="yes", CLIENTCOMM_MASTER_KEY=site.key
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("processed ")


BAD_SETTINGS = {
    "unknown-key": ('colour = "blue"\n', {}, "config file .*: unknown setting 'colour'"),
    "unknown-in-table": ("[worker]\nbatchsize = 5\n", {}, "unknown setting 'worker.batchsize'"),
    "unknown-command": ("[keys.destroy]\nurl = 'x'\n", {}, "unknown setting 'keys.destroy'"),
    "bad-value": ("[worker]\nbatch = 0\n", {}, r"worker.batch: --batch: must be positive"),
    "bad-type": ("[worker]\nonce = 'maybe'\n", {}, "--once must be true or false"),
    "bad-choice": ("[worker]\nsmtp-tls = 'plain'\n", {}, "'plain' is not one of starttls"),
    "not-toml": ("url = \n", {}, "not valid TOML"),
    "env": ("", {"CLIENTCOMM_BATCH": "many"}, "CLIENTCOMM_BATCH: --batch: not a whole number"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_bad_settings_fail_in_one_line_naming_the_setting(tmp_path: Path, case: str) -> None:
    text, env, message = BAD_SETTINGS[case]
    config = write(tmp_path / "bad.toml", text)
    proc = cli("--config", str(config), "keys", "new", **env)
    assert proc.returncode == 2
    assert re.search(message, one_line(proc.stderr)), proc.stderr
    assert proc.stdout == ""


def test_a_missing_config_file_is_named() -> None:
    proc = cli("keys", "new", CLIENTCOMM_CONFIG="/nonexistent/clientcomm.toml")
    assert proc.returncode == 2
    assert "config file /nonexistent/clientcomm.toml" in one_line(proc.stderr)
