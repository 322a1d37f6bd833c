"""Quotes: a fine-tuning plan and its price, as the user read them, named so that starting the job can
prove nothing changed in between.

A quote id is `q1.<expiry, epoch seconds>.<digest>`, the digest a SHA-256 of the workspace, the expiry
and the plan's fingerprint (every value the job would run with and every figure of its price). It
holds no secret and needs no storage: `POST /v1/fine-tuned-models` works the plan out again and
recomputes the digest; a different plan or price, another workspace or a forged expiry gives another
digest. Nothing is gained by forging one: it only asserts "I saw this plan at this price".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from tunelab.domain.errors import ValidationFailed

# How long a quote holds: long enough to read it and decide, short enough that prices rarely move.
QUOTE_TTL = timedelta(hours=24)
_FORMAT = re.compile(r"^q1\.(\d{10})\.([0-9a-f]{32})$")


class Quote(BaseModel):
    model_config = ConfigDict(frozen=True)

    quote_id: str
    expires_at: datetime


def _digest(workspace: str, expires: int, fingerprint: Mapping[str, Any]) -> str:
    canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{workspace}\n{expires}\n{canonical}".encode()).hexdigest()[:32]


def quote(workspace: str, fingerprint: Mapping[str, Any], *, now: datetime) -> Quote:
    """The quote of `fingerprint` for `workspace`, valid for QUOTE_TTL from `now`."""
    expires = int((now + QUOTE_TTL).timestamp())
    return Quote(
        quote_id=f"q1.{expires}.{_digest(workspace, expires, fingerprint)}",
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
    )


def check_quote(
    quote_id: str, workspace: str, fingerprint: Mapping[str, Any], *, now: datetime, total_usd: float
) -> None:
    """`ValidationFailed` on `quote_id` unless it is a quote of this very plan and price for this
    workspace that has not expired."""
    found = _FORMAT.fullmatch(quote_id)
    if found is None:
        raise ValidationFailed.of(
            "quote_id", "This is not a quote id of tunelab's; POST /v1/cost-estimates gives one."
        )
    expires = int(found.group(1))
    if now.timestamp() > expires:
        at = datetime.fromtimestamp(expires, tz=UTC).isoformat().replace("+00:00", "Z")
        raise ValidationFailed.of(
            "quote_id",
            f"The quote expired at {at}; nothing was started. Ask POST /v1/cost-estimates for a new one.",
        )
    if found.group(2) != _digest(workspace, expires, fingerprint):
        raise ValidationFailed.of(
            "quote_id",
            "The plan or its price changed since this quote (the predicted total is now "
            f"${total_usd:,.2f}); nothing was started. Read the new estimate (POST /v1/cost-estimates) "
            "and start with its quote_id.",
        )


def over_budget(max_total_usd: float, total_usd: float) -> str | None:
    """What to say when the predicted total is above the user's maximum; None when it is not."""
    if total_usd <= max_total_usd:
        return None
    return f"The predicted total ${total_usd:,.2f} is above your maximum ${max_total_usd:,.2f}"


def check_budget(max_total_usd: float, total_usd: float) -> None:
    """`ValidationFailed` on `max_total_usd` when the predicted total is above it."""
    over = over_budget(max_total_usd, total_usd)
    if over is not None:
        raise ValidationFailed.of("max_total_usd", f"{over}; nothing was started.")
