"""Address validation and header-injection checks (examples and hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientcomm.errors import InvalidInputError
from clientcomm.mail.addresses import check_header_text, is_valid_address, validate_address

BREAKS = ["\r", "\n", "\r\n", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize(
    "value, address, ascii_form, smtputf8",
    [
        ("kunde@example.com", "kunde@example.com", "kunde@example.com", False),
        ("Kunde@EXAMPLE.com", "Kunde@example.com", "Kunde@example.com", False),
        ("info@bücher.example", "info@bücher.example", "info@xn--bcher-kva.example", False),
        ("jürgen@müller.example", "jürgen@müller.example", None, True),
        (
            "a.b+tag@sub.example.co.uk",
            "a.b+tag@sub.example.co.uk",
            "a.b+tag@sub.example.co.uk",
            False,
        ),
    ],
)
def test_valid_addresses(value: str, address: str, ascii_form: str | None, smtputf8: bool) -> None:
    checked = validate_address(value)
    assert checked.address == address
    assert checked.ascii == ascii_form
    assert checked.smtputf8 is smtputf8
    assert checked.envelope == (ascii_form or address)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "kunde",
        "kunde@",
        "@example.com",
        "kunde@@example.com",
        "kunde@example",  # no dot in the domain
        "kunde@localhost",
        "kunde..x@example.com",
        '"quoted"@example.com',
        "kunde@[192.0.2.1]",
        "Kunde <kunde@example.com>",
        "kunde@example.com, other@example.com",
        "kunde@example.com\r\nBcc: x@evil.example",
        "kunde@example.com\n",
        " kunde@example.com",
        "kunde@exa mple.com",
        "x" * 65 + "@example.com",
        "k@" + "a" * 250 + ".com",
    ],
)
def test_invalid_addresses_are_refused_and_named(value: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_address(value, "contact.email")
    assert info.value.field == "contact.email"
    if value and len(value) <= 254:
        assert repr(value) in str(info.value)
    assert not is_valid_address(value)


def test_non_string_address() -> None:
    with pytest.raises(InvalidInputError):
        validate_address(None)
    assert not is_valid_address(42)


@given(st.emails())
def test_generated_emails_validate_idempotently(value: str) -> None:
    try:
        checked = validate_address(value)
    except InvalidInputError:
        return  # hypothesis also generates e.g. special-use TLDs that we refuse
    again = validate_address(checked.address)
    assert again == checked
    assert validate_address(checked.envelope).envelope == checked.envelope


@given(st.emails(), st.sampled_from(BREAKS), st.integers(min_value=0, max_value=300))
def test_any_line_break_in_an_address_is_refused(value: str, brk: str, at: int) -> None:
    at = at % (len(value) + 1)
    with pytest.raises(InvalidInputError):
        validate_address(value[:at] + brk + value[at:])


@given(st.text(), st.sampled_from(BREAKS), st.integers(min_value=0, max_value=300))
def test_any_control_character_in_header_text_is_refused(text: str, brk: str, at: int) -> None:
    at = at % (len(text) + 1)
    with pytest.raises(InvalidInputError) as info:
        check_header_text(text[:at] + brk + text[at:], "subject")
    assert info.value.field == "subject"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=200))
def test_header_text_without_controls_is_accepted(text: str) -> None:
    assert check_header_text(text, "subject") == text


def test_header_text_limits() -> None:
    with pytest.raises(InvalidInputError):
        check_header_text("x" * 1001, "subject")
    with pytest.raises(InvalidInputError):
        check_header_text(b"bytes", "subject")
    assert check_header_text("Tab\tis fine", "subject")


ATOM = st.text(alphabet="abcXYZ09!#$%&'*+/=?^_`{|}~-.", min_size=1, max_size=70)
LABEL = st.text(alphabet="abcdeXYZ019-", min_size=1, max_size=64)


@given(
    st.one_of(
        st.emails(),
        st.builds(
            lambda a, labels, tld: f"{a}@{'.'.join(labels)}.{tld}",
            ATOM,
            st.lists(LABEL, min_size=1, max_size=3),
            st.sampled_from(["de", "com", "test", "local", "a1", "x", "example", "c0m"]),
        ),
    )
)
def test_fast_path_agrees_with_email_validator(value: str) -> None:
    """Our one-regex fast path for plain ASCII addresses never accepts what
    email-validator refuses, and normalises the same way."""
    import email_validator

    try:
        reference = email_validator.validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
        )
        ref_ok = len(reference.local_part.encode()) <= 64
    except email_validator.EmailNotValidError:
        ref_ok = False
    try:
        ours = validate_address(value)
    except InvalidInputError:
        assert not ref_ok
        return
    assert ref_ok
    assert ours.address == reference.normalized
    assert ours.envelope == (reference.ascii_email or reference.normalized)
