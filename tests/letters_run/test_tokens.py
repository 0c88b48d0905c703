"""Signed, expiring, single-purpose link tokens for the run's download."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.app import ClientComm
from clientcomm.errors import InvalidInputError
from clientcomm.letters.tokens import (
    LinkClaims,
    LinkPurpose,
    LinkTokenError,
    LinkTokens,
    TokenProblem,
    purpose_key,
    sign_token,
    verify_token,
)

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SECRET = bytes(range(32))
CLAIMS = LinkClaims(
    LinkPurpose.RUN_DOWNLOAD, "f1", "run-1", "digest-1", "dl-1", NOW + timedelta(hours=1)
)


def _problem(secret: bytes | None, token: object, now: datetime = NOW) -> TokenProblem:
    with pytest.raises(LinkTokenError) as info:
        verify_token(secret, token, purpose=LinkPurpose.RUN_DOWNLOAD, now=now)
    return info.value.problem


def _reencode(token: str, **changes: object) -> str:
    head, body, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return f"{head}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{mac}"


def test_round_trip() -> None:
    token = sign_token(SECRET, CLAIMS)
    assert verify_token(SECRET, token, purpose=LinkPurpose.RUN_DOWNLOAD, now=NOW) == CLAIMS


@pytest.mark.parametrize(
    ("field", "value"),
    [("f", "f2"), ("r", "run-2"), ("q", "digest-2"), ("d", "dl-2"), ("e", 4_000_000_000)],
)
def test_changed_claim_is_tampered(field: str, value: object) -> None:
    token = _reencode(sign_token(SECRET, CLAIMS), **{field: value})
    assert _problem(SECRET, token) is TokenProblem.TAMPERED


def test_changed_mac_other_key_and_no_key_are_tampered() -> None:
    token = sign_token(SECRET, CLAIMS)
    head, body, mac = token.split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert _problem(SECRET, f"{head}.{body}.{flipped}") is TokenProblem.TAMPERED
    assert _problem(bytes(32), token) is TokenProblem.TAMPERED
    assert _problem(None, token) is TokenProblem.TAMPERED


def test_expired_at_and_after_expiry() -> None:
    token = sign_token(SECRET, CLAIMS)
    verify_token(
        SECRET,
        token,
        purpose=LinkPurpose.RUN_DOWNLOAD,
        now=CLAIMS.expires_at - timedelta(seconds=1),
    )
    assert _problem(SECRET, token, CLAIMS.expires_at) is TokenProblem.EXPIRED
    assert _problem(SECRET, token, CLAIMS.expires_at + timedelta(days=1)) is TokenProblem.EXPIRED


def test_other_purpose_is_refused() -> None:
    token = _reencode(sign_token(SECRET, CLAIMS), p="notifications.unsubscribe")
    assert _problem(SECRET, token) is TokenProblem.WRONG_PURPOSE


def test_purpose_key_is_not_the_firm_key() -> None:
    key = purpose_key(SECRET, LinkPurpose.RUN_DOWNLOAD)
    assert len(key) == 32 and key != SECRET


@pytest.mark.parametrize(
    "token",
    [
        None,
        42,
        "",
        "cc1",
        "cc1.a.b.c",
        "cc2.e30.AAAA",
        "cc1.e30.AAAA",  # {} : claims missing
        "cc1.!!!.AAAA",
        "cc1." + "A" * 5000 + ".AAAA",
    ],
)
def test_malformed(token: object) -> None:
    assert _problem(SECRET, token) is TokenProblem.MALFORMED


def test_malformed_claim_types() -> None:
    token = sign_token(SECRET, CLAIMS)
    assert _problem(SECRET, _reencode(token, e="soon")) is TokenProblem.MALFORMED
    assert _problem(SECRET, _reencode(token, r=7)) is TokenProblem.MALFORMED
    assert _problem(SECRET, _reencode(token, x="extra")) is TokenProblem.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_refused(position: int, xor: int) -> None:
    token = sign_token(SECRET, CLAIMS)
    index = position % len(token)
    changed = token[:index] + chr(ord(token[index]) ^ (xor or 1)) + token[index + 1 :]
    with pytest.raises(LinkTokenError):
        verify_token(SECRET, changed, purpose=LinkPurpose.RUN_DOWNLOAD, now=NOW)


async def test_issue_and_verify_with_firm_keys(app: ClientComm) -> None:
    clock = app.clock
    tokens = LinkTokens(app.notice_keys, clock)
    token, claims = await tokens.issue(
        "f1",
        LinkPurpose.RUN_DOWNLOAD,
        run_id="run-1",
        filter_digest="d",
        download_id="dl-1",
        ttl=timedelta(hours=2),
    )
    assert await tokens.verify(token, LinkPurpose.RUN_DOWNLOAD) == claims
    # a process with a fresh key cache verifies too (the key is stored, sealed)
    fresh = LinkTokens(type(app.notice_keys)(app.store, app.sealer, clock=clock), clock)
    assert await fresh.verify(token, LinkPurpose.RUN_DOWNLOAD) == claims
    # the same claims under firm f2's key: refused
    token2, _ = await tokens.issue(
        "f2",
        LinkPurpose.RUN_DOWNLOAD,
        run_id="run-1",
        filter_digest="d",
        download_id="dl-1",
        ttl=timedelta(hours=2),
    )
    forged = _reencode(token2, f="f1")
    with pytest.raises(LinkTokenError) as info:
        await tokens.verify(forged, LinkPurpose.RUN_DOWNLOAD)
    assert info.value.problem is TokenProblem.TAMPERED
    # a firm without a notice key refuses everything
    with pytest.raises(LinkTokenError) as info:
        await tokens.verify(_reencode(token, f="f-none"), LinkPurpose.RUN_DOWNLOAD)
    assert info.value.problem is TokenProblem.TAMPERED
    assert clock.now() < claims.expires_at
    clock.advance(timedelta(hours=2))  # type: ignore[attr-defined]
    with pytest.raises(LinkTokenError) as info:
        await tokens.verify(token, LinkPurpose.RUN_DOWNLOAD)
    assert info.value.problem is TokenProblem.EXPIRED


async def test_ttl_bounds(app: ClientComm) -> None:
    tokens = LinkTokens(app.notice_keys, app.clock)
    for ttl in (timedelta(0), timedelta(days=31)):
        with pytest.raises(InvalidInputError) as info:
            await tokens.issue(
                "f1",
                LinkPurpose.RUN_DOWNLOAD,
                run_id="r",
                filter_digest="d",
                download_id="x",
                ttl=ttl,
            )
        assert info.value.field == "ttl"
