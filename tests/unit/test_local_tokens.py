"""Local runtime tokens: HS256 JWTs the HTTP front verifies."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunelab.domain.errors import ValidationFailed
from tunelab.local.tokens import (
    SECRET_FILE,
    InvalidToken,
    claims_for,
    encode,
    issue_token,
    load_or_create_secret,
    mint_token,
    subject_for,
    verify_token,
)

SECRET = b"0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_minted_token_verifies_to_the_claims_the_authorizer_passes() -> None:
    token = mint_token(SECRET, workspace="ws-acme", email="ada@example.com", now=T0)

    claims = verify_token(SECRET, token, now=T0 + timedelta(minutes=5))

    assert claims["custom:workspace"] == "ws-acme"
    assert claims["email"] == "ada@example.com"
    assert "custom:plan" not in claims  # a plan is the operator's setting, never a token's
    assert claims["sub"] == subject_for("ws-acme", "ada@example.com")
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600


def test_the_same_person_gets_the_same_sub_and_another_workspace_another() -> None:
    assert subject_for("ws-acme", "Ada@Example.com") == subject_for("ws-acme", "ada@example.com")
    assert subject_for("ws-acme", "ada@example.com") != subject_for("ws-other", "ada@example.com")


def test_the_token_is_a_compact_hs256_jwt() -> None:
    header, payload, signature = mint_token(SECRET, workspace="w", email="a@b.c", now=T0).split(".")

    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(payload + "=="))["custom:workspace"] == "w"
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32


def test_an_expired_token_is_refused() -> None:
    token = mint_token(SECRET, workspace="w", email="a@b.c", ttl=timedelta(hours=1), now=T0)

    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, token, now=T0 + timedelta(hours=1, seconds=2))


def test_a_token_of_another_secret_is_refused() -> None:
    token = mint_token(b"x" * 32, workspace="w", email="a@b.c", now=T0)

    with pytest.raises(InvalidToken, match="not signed by this local runtime"):
        verify_token(SECRET, token, now=T0)


def test_a_changed_claim_breaks_the_signature() -> None:
    header, _, signature = mint_token(SECRET, workspace="w", email="a@b.c", now=T0).split(".")
    forged = _segment(claims_for("ws-victim", "a@b.c", now=T0))

    with pytest.raises(InvalidToken, match="not signed"):
        verify_token(SECRET, f"{header}.{forged}.{signature}", now=T0)


@pytest.mark.parametrize("alg", ["none", "HS512", "RS256"])
def test_another_algorithm_is_refused_before_the_signature(alg: str) -> None:
    payload = _segment(claims_for("w", "a@b.c", now=T0))

    with pytest.raises(InvalidToken, match="not signed the way"):
        verify_token(SECRET, f"{_segment({'alg': alg, 'typ': 'JWT'})}.{payload}.", now=T0)


def test_a_token_of_another_issuer_is_refused() -> None:
    claims = {**claims_for("w", "a@b.c", now=T0), "iss": "https://cognito-idp.example"}

    with pytest.raises(InvalidToken, match="not issued by a tunelab local runtime"):
        verify_token(SECRET, encode(claims, SECRET), now=T0)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.@@@.###"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SECRET, token, now=T0)


@pytest.mark.parametrize(
    ("workspace", "email", "field"),
    [
        ("no/slash", "a@b.c", "workspace"),
        ("", "a@b.c", "workspace"),
        ("w", "not-an-email", "email"),
    ],
)
def test_minting_refuses_bad_input_naming_the_field(workspace: str, email: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        mint_token(SECRET, workspace=workspace, email=email)

    assert refused.value.details[0].field == field


def test_the_secret_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "data")
    second = load_or_create_secret(tmp_path / "data")

    assert first == second
    assert len(first) == 32
    mode = stat.S_IMODE((tmp_path / "data" / SECRET_FILE).stat().st_mode)
    assert mode == 0o600


def test_a_token_issued_from_a_data_dir_verifies_with_its_secret(tmp_path: Path) -> None:
    token = issue_token(tmp_path, workspace="ws-acme", email="ada@example.com")

    assert verify_token(load_or_create_secret(tmp_path), token)["custom:workspace"] == "ws-acme"


def test_a_corrupt_secret_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("short")

    with pytest.raises(ValueError, match="delete it"):
        load_or_create_secret(tmp_path)
