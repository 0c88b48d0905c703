"""Checks shared by the bundled writable directories.

Every value is checked where it enters (hardening item 3): ids are single-line
storable strings of at most 200 characters, names single-line text of at most
300 characters (a firm's name becomes the sender's name of every notification
e-mail), every other text storable (UTF-8, no NUL); e-mail addresses have no
line breaks. A refused entry writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from clientcomm.directory.models import CaseFile, Client, ClientGroup, Contact, Firm, Staff
from clientcomm.errors import InvalidInputError
from clientcomm.rules.text import MAX_ID, MAX_NAME, check_identifier, check_line, check_storable

Entry = Firm | ClientGroup | Client | Contact | Staff | CaseFile


def _ids(values: Iterable[str], field: str) -> None:
    for value in values:
        check_identifier(value, field)


def check_entry(entry: Entry) -> None:
    """Refuse empty or unusable ids and names, and text no backend can store
    (InvalidInputError naming the field)."""
    if not isinstance(entry.id, str) or not entry.id.strip() or len(entry.id) > MAX_ID:
        raise InvalidInputError("id", f"must be a non-empty string of at most {MAX_ID} characters")
    check_identifier(entry.id, "id")
    if not isinstance(entry, Firm):
        check_identifier(entry.firm_id, "firm_id")
    name = entry.title if isinstance(entry, CaseFile) else entry.name
    field = "title" if isinstance(entry, CaseFile) else "name"
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(field, "must not be empty")
    check_line(name, field, max_length=MAX_NAME)
    if isinstance(entry, Contact | Staff) and entry.email is not None:
        if "\r" in entry.email or "\n" in entry.email:
            raise InvalidInputError("email", "must not contain line breaks")
        check_line(entry.email, "email", max_length=MAX_NAME, required=False)
    if isinstance(entry, Firm) and entry.office_email is not None:
        check_line(entry.office_email, "office_email", max_length=MAX_NAME, required=False)
    if isinstance(entry, Firm | Contact | Staff):
        check_line(entry.language, "language", max_length=35)
    if isinstance(entry, Client):
        _ids(entry.group_ids, "group_ids")
    if isinstance(entry, Contact | CaseFile):
        check_identifier(entry.client_id, "client_id")
    if isinstance(entry, CaseFile):
        _ids(entry.client_ids, "client_ids")
    if isinstance(entry, Staff):
        _ids(entry.client_ids, "client_ids")
    if isinstance(entry, CaseFile):
        if entry.handler_id is not None:
            check_identifier(entry.handler_id, "handler_id")
        _ids(entry.assistant_ids, "assistant_ids")
    if isinstance(entry, Contact) and entry.address is not None:
        a = entry.address
        for part, value in (
            ("name", a.name),
            ("street", a.street),
            ("postal_code", a.postal_code),
            ("city", a.city),
            ("country", a.country),
            ("extra", a.extra),
        ):
            if value is not None:
                check_storable(value, f"address.{part}", max_length=MAX_NAME)
