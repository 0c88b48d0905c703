"""Pure rules for attachments: what a file name and a media type must look like."""

from __future__ import annotations

import re

from clientcomm.errors import InvalidInputError

__all__ = ["MAX_FILENAME", "check_content_type", "check_filename"]

MAX_FILENAME = 255
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
_MIME = re.compile(r"[\w.+-]+/[\w.+-]+")


def check_filename(name: object, field: str = "filename") -> str:
    """A plain file name: non-blank, at most 255 characters, no path separators
    or control characters.

    Raises:
        InvalidInputError: otherwise (``field`` names it).
    """
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_FILENAME
        or _BAD_NAME.search(name)
    ):
        raise InvalidInputError(field, "must be a plain file name", value=name)
    return name


def check_content_type(content_type: object, field: str = "content_type") -> str:
    """A MIME type such as ``application/pdf``.

    Raises:
        InvalidInputError: otherwise.
    """
    if not isinstance(content_type, str) or not _MIME.fullmatch(content_type):
        raise InvalidInputError(field, "must be a MIME type", value=content_type)
    return content_type
