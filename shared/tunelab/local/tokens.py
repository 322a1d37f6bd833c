"""Bearer tokens of the local runtime: compact JWTs signed with HMAC-SHA256 (HS256).

On AWS, Cognito signs the tokens and API Gateway's authorizer verifies them. Locally,
`tunelab local token --workspace W --email E` mints one with a secret kept in the data dir
(`token-secret`, made on first use, readable by its owner only), and the HTTP front verifies it and
hands the claims on exactly as the authorizer would (`sub`, `email`, `custom:workspace`). A token
carries no plan (`--plan` is the operator's path, `local.plans`). Tokens made before the secret is
replaced (delete the file) stop working.

A secret file another user owns, or that group or others may read or write, is refused (whoever could
read it could sign tokens for any workspace; whoever could write it could choose the secret), and so
is one too short or too regular to be a random secret (all zero bytes, say).

A token verifies when this runtime signed it (HS256 only), its issuer, audience and `token_use`
("id", as a Cognito id token's) are this runtime's, it was not issued in the future, it has not
expired, and it was minted for at most `MAX_TTL` (30 days).

The `sub` derives from the workspace and the email, so the same person gets the same id in every
token minted for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

from tunelab.domain.errors import Unauthorized, ValidationFailed
from tunelab.domain.identity import WORKSPACE_ID_PATTERN
from tunelab.local.files import PRIVATE_FILE_MODE, UnsafeFile, check_private_file, secure_data_dir

SECRET_FILE = "token-secret"  # noqa: S105  # the file name, not a secret
ISSUER = "tunelab-local"
AUDIENCE = "tunelab"
DEFAULT_TTL = timedelta(days=30)
# The longest a token may live (`exp - iat`): a token is refused beyond it, and none is minted for longer.
MAX_TTL = timedelta(days=30)
TOKEN_USE = "id"  # noqa: S105  # the claim's value, not a secret
SECRET_BYTES = 32
# A random 32-byte secret has about 30 distinct byte values; fewer than this is no random secret.
_MIN_DISTINCT_BYTES = 16
# Clocks of one machine agree; a second of leeway covers rounding of `iat`/`exp`.
LEEWAY_S = 1
_SUB_NAMESPACE = uuid.UUID("5b0c4c61-8f5e-4a53-9d0e-7a3c1f2b9e10")
_WORKSPACE_RE = re.compile(WORKSPACE_ID_PATTERN)
_SIGN_AGAIN = "Mint a new one with 'tunelab local token --workspace W --email E'."


class InvalidToken(Unauthorized):
    """A bearer token the local runtime did not sign, cannot read, or that has expired."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_secret(data_dir: Path) -> bytes:
    """The signing secret of the runtime whose data dir this is; made (0600) on first use.

    `UnsafeFile` when the data dir or the secret's file is another user's, or the file may be read or
    written by others, or it holds no secret fit to sign with (short, or too regular to be random).
    """
    secure_data_dir(data_dir)
    path = data_dir / SECRET_FILE
    try:
        # O_EXCL: when two commands start at once, exactly one writes the secret, the other reads it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return _read_secret(path)
    secret = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret.hex() + "\n")
    return secret


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as file:
        check_private_file(path, file.fileno())
        text = file.read(4096).strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < SECRET_BYTES or len(set(secret)) < _MIN_DISTINCT_BYTES:
        raise UnsafeFile(
            f"{path} does not hold a random token secret (at least {SECRET_BYTES} random bytes as hex): "
            "delete it and a new one is made (tokens minted with the old one stop working)"
        )
    return secret


def subject_for(workspace: str, email: str) -> str:
    """The stable user id (`sub`) of `email` in `workspace`."""
    return str(uuid.uuid5(_SUB_NAMESPACE, f"{workspace}/{email.strip().lower()}"))


def claims_for(
    workspace: str,
    email: str,
    *,
    now: datetime | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> dict[str, Any]:
    """The claims of a token for `email` in `workspace`; `ValidationFailed` for bad input. No plan: a
    workspace's plan is the operator's setting (`local.plans`), never a token's."""
    problems = []
    if not _WORKSPACE_RE.fullmatch(workspace):
        problems.append(
            ("workspace", "letters, digits, '.', '_' and '-', starting with a letter or digit, up to 64")
        )
    if "@" not in email or email.strip() != email or " " in email:
        problems.append(("email", "an email address such as ada@example.com"))
    if not timedelta(0) < ttl <= MAX_TTL:
        problems.append(("ttl", f"more than 0 and at most {MAX_TTL.days} days"))
    if problems:
        field, expected = problems[0]
        raise ValidationFailed.of(field, f"The {field} must be {expected}.")
    issued = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "token_use": TOKEN_USE,
        "sub": subject_for(workspace, email),
        "email": email,
        "email_verified": "true",
        "custom:workspace": workspace,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }


def encode(claims: dict[str, Any], secret: bytes) -> str:
    """`claims` as a compact HS256 JWT."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"


def mint_token(
    secret: bytes,
    *,
    workspace: str,
    email: str,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> str:
    """A signed token for `email` in `workspace`."""
    return encode(claims_for(workspace, email, now=now, ttl=ttl), secret)


def verify_token(secret: bytes, token: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The claims of a token this runtime signed; `InvalidToken` saying what is wrong otherwise."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise InvalidToken(f"The bearer token is not a tunelab local token. {_SIGN_AGAIN}")
    try:
        header = json.loads(_b64decode(parts[0]))
        payload_bytes = _b64decode(parts[1])
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise InvalidToken(f"The bearer token cannot be read. {_SIGN_AGAIN}") from None
    # Only HS256: a token that names another algorithm (or "none") is refused before anything else.
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidToken(f"The bearer token is not signed the way this runtime signs. {_SIGN_AGAIN}")
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken(
            "The bearer token was not signed by this local runtime (or its secret changed). " + _SIGN_AGAIN
        )
    try:
        claims = json.loads(payload_bytes)
    except ValueError:
        raise InvalidToken(f"The bearer token cannot be read. {_SIGN_AGAIN}") from None
    if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
        raise InvalidToken(f"The bearer token was not issued by a tunelab local runtime. {_SIGN_AGAIN}")
    if claims.get("aud") != AUDIENCE or claims.get("token_use") != TOKEN_USE:
        raise InvalidToken(f"The bearer token is not an id token for tunelab's API. {_SIGN_AGAIN}")
    moment = (now or datetime.now(UTC)).timestamp()
    issued, expires = claims.get("iat"), claims.get("exp")
    if not _is_time(issued) or not _is_time(expires):
        raise InvalidToken(f"The bearer token says not when it was issued or expires. {_SIGN_AGAIN}")
    if issued > moment + LEEWAY_S:
        raise InvalidToken(f"The bearer token was issued in the future. {_SIGN_AGAIN}")
    if moment > expires + LEEWAY_S or expires <= issued:
        raise InvalidToken(f"The bearer token has expired. {_SIGN_AGAIN}")
    if expires - issued > MAX_TTL.total_seconds() + LEEWAY_S:
        raise InvalidToken(
            f"The bearer token lives longer than {MAX_TTL.days} days, the most a token may. {_SIGN_AGAIN}"
        )
    return claims


def _is_time(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def issue_token(
    data_dir: Path,
    *,
    workspace: str,
    email: str,
    ttl: timedelta = DEFAULT_TTL,
) -> str:
    """Mint a token with the secret of the runtime that keeps its data in `data_dir`."""
    return mint_token(load_or_create_secret(data_dir), workspace=workspace, email=email, ttl=ttl)
