"""Checks shared by the bundled writable directories."""

from __future__ import annotations

from clientcomm.directory.models import CaseFile, Client, ClientGroup, Contact, Firm, Staff
from clientcomm.errors import InvalidInputError

Entry = Firm | ClientGroup | Client | Contact | Staff | CaseFile


def check_entry(entry: Entry) -> None:
    """Refuse empty ids and names (InvalidInputError naming the field)."""
    if not isinstance(entry.id, str) or not entry.id.strip() or len(entry.id) > 200:
        raise InvalidInputError("id", "must be a non-empty string of at most 200 characters")
    name = entry.title if isinstance(entry, CaseFile) else entry.name
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(
            "title" if isinstance(entry, CaseFile) else "name", "must not be empty"
        )
    if (
        isinstance(entry, Contact | Staff)
        and entry.email is not None
        and ("\r" in entry.email or "\n" in entry.email)
    ):
        raise InvalidInputError("email", "must not contain line breaks")
