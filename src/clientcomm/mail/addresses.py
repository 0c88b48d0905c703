"""E-mail address validation and header-injection checks.

Everything that ends up in a mail header or on an SMTP command line passes
through here first. We do not rely on the stdlib ``email`` package or on
aiosmtplib to refuse bad input: Python 3.11's ``email`` package has known
header-injection bugs (CVE-2024-6923, CVE-2023-27043) and aiosmtplib parses
envelope addresses with :func:`email.utils.parseaddr`, which silently trims
what it does not understand instead of refusing it.

Addresses are checked with `email-validator`_ (syntax only, no DNS):
internationalised domains are allowed and converted to their ASCII (IDNA)
form for the envelope; internationalised local parts are allowed and flagged
as needing SMTPUTF8.

.. _email-validator: https://github.com/JoshData/python-email-validator
"""

from __future__ import annotations

import re

import attrs
import email_validator

from clientcomm.errors import InvalidInputError

__all__ = [
    "MAX_HEADER_TEXT",
    "EmailAddress",
    "check_header_text",
    "is_valid_address",
    "validate_address",
]

#: Longest text accepted for one header value (subject, display name) before encoding.
MAX_HEADER_TEXT = 1000

# C0 controls (CR, LF, NUL, ...), DEL, C1 controls (NEL U+0085 among them) and the
# Unicode line/paragraph separators: anything a parser could treat as a line break
# or that has no business in a header.
_FORBIDDEN_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# An address given to us must be a bare addr-spec: no display name, no angle
# brackets, no list separators, no whitespace, no comments, nothing to trim.
_FORBIDDEN_IN_ADDRESS = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029<>,;:()\[\]\\\"]")
_MAX_ADDRESS = 254
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# A conservative subset of what email-validator accepts, checked with one regex:
# ASCII dot-atom local part, LDH domain labels without "--" (so no IDNA labels),
# an alphabetic TLD. Anything else goes through email-validator itself.
_SIMPLE_ADDRESS = re.compile(
    r"^([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})\Z"
)
_SPECIAL_USE = tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES)
_MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1


@attrs.frozen
class EmailAddress:
    """A validated e-mail address.

    Attributes:
        address: the normalised address (domain lower-cased, Unicode NFC); use it
            for display and for deduplication.
        ascii: the address with the domain in IDNA (punycode) form, or ``None``
            when the local part itself is non-ASCII.
        smtputf8: True when the address can only be sent with SMTPUTF8
            (RFC 6531/6532) because its local part is non-ASCII.
    """

    address: str
    ascii: str | None
    smtputf8: bool

    @property
    def envelope(self) -> str:
        """The form to use on the SMTP envelope and in headers (ASCII when possible)."""
        return self.ascii if self.ascii is not None else self.address

    @property
    def dedupe_key(self) -> str:
        """A case-insensitive key to detect the same mailbox given twice."""
        return self.address.casefold()


def check_header_text(value: object, field: str, *, max_length: int = MAX_HEADER_TEXT) -> str:
    """Return ``value`` if it is safe to place in a mail header, else refuse it.

    Refuses CR, LF and every other control character (C0, DEL, C1 such as NEL)
    and the Unicode line and paragraph separators, which is how header injection
    is done (a line break is named as such), and lone surrogates, which no
    encoder can write; tabs are allowed. The value is otherwise free text (umlauts, quotes):
    encoding is the composer's job.

    Raises:
        InvalidInputError: ``value`` is not a string, is longer than
            ``max_length`` characters, or contains a forbidden character
            (``field`` names the field; the character's code point is given).
    """
    if not isinstance(value, str):
        raise InvalidInputError(field, "must be a string")
    if len(value) > max_length:
        raise InvalidInputError(field, f"must be at most {max_length} characters")
    match = _FORBIDDEN_IN_HEADER.search(value)
    if match is not None:
        char = match.group()
        what = "a line break" if char in _LINE_BREAKS else "the control character"
        raise InvalidInputError(field, f"contains {what} U+{ord(char):04X} (header injection?)")
    surrogate = _LONE_SURROGATE.search(value)
    if surrogate is not None:
        raise InvalidInputError(
            field,
            f"contains a lone surrogate U+{ord(surrogate.group()):04X} (not valid Unicode text)",
        )
    return value


def validate_address(value: object, field: str = "email") -> EmailAddress:
    """Validate one bare e-mail address (``local@domain``, no display name).

    Syntax is checked with email-validator (no DNS lookups): internationalised
    domain names are accepted (and converted to IDNA for the envelope),
    internationalised local parts are accepted and flagged ``smtputf8``; quoted
    local parts and IP-address literals are refused, as are whitespace, angle
    brackets, commas and every control character (CR/LF header injection).

    Raises:
        InvalidInputError: ``value`` is not a valid address; the message names
            the address and the reason, ``value`` carries the address.
    """
    if not isinstance(value, str):
        raise InvalidInputError(field, "must be a string")
    shown = value if len(value) <= _MAX_ADDRESS else value[:_MAX_ADDRESS] + "..."
    if not value:
        raise InvalidInputError(field, "must not be empty", value=value)
    if len(value) > _MAX_ADDRESS:
        raise InvalidInputError(
            field, f"{shown!r} is longer than {_MAX_ADDRESS} characters", value=shown
        )
    simple = _SIMPLE_ADDRESS.match(value)
    if simple is not None:
        local, domain = simple.group(1), simple.group(2).lower()
        if (
            len(local) <= _MAX_LOCAL
            and len(domain) <= 253
            and "--" not in domain
            and not any(domain == s or domain.endswith("." + s) for s in _SPECIAL_USE)
        ):
            address = f"{local}@{domain}"
            return EmailAddress(address=address, ascii=address, smtputf8=False)
    bad = _FORBIDDEN_IN_ADDRESS.search(value)
    if bad is not None:
        raise InvalidInputError(
            field,
            f"{value!r} is not a valid e-mail address: it contains U+{ord(bad.group()):04X}",
            value=value,
        )
    try:
        checked = email_validator.validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidInputError(
            field, f"{value!r} is not a valid e-mail address: {exc}", value=value
        ) from None
    if len(checked.local_part.encode("utf-8")) > _MAX_LOCAL:
        raise InvalidInputError(
            field,
            f"{value!r} is not a valid e-mail address: "
            f"the part before the @-sign is longer than {_MAX_LOCAL} octets",
            value=value,
        )
    return EmailAddress(
        address=checked.normalized,
        ascii=checked.ascii_email,
        smtputf8=bool(checked.smtputf8),
    )


def is_valid_address(value: object) -> bool:
    """True if :func:`validate_address` accepts ``value`` (never raises)."""
    try:
        validate_address(value)
    except InvalidInputError:
        return False
    return True
