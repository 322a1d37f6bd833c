"""What a tenant may read of a text that came from AWS or a provider (an error message, a job's failure
reason): the platform's ARNs, account, bucket names and server file paths are replaced by neutral words;
the full text stays in the logs.

Two ways to know what is the platform's, for the two places such text reaches a tenant:

- **The API's error answers** know the platform (settings): its account's ARNs and account id, its
  buckets (as `s3://`, S3 URLs, S3 ARNs or bare names) are hidden; everything else stays, so a BYOK
  customer's errors keep naming their own role and bucket.
- **Failure reasons written to a model** (provider failures, workflow errors) are written where the
  platform's account is not known: only what the tenant owns stays, the account and artifact bucket of
  their BYOK connection; every other account's ARNs and account ids and every other bucket are hidden.
  A managed (Bedrock) or local model's reason keeps no ARN and no bucket at all.

Public AWS names stay in both: ARNs without an account (foundation models) and AWS-managed policies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from tunelab.application.ports import Context
from tunelab.domain.records import ModelRecord

logger = Logger(child=True)

ROLE = "[tunelab role]"
STORAGE = "[tunelab storage]"
RESOURCE = "[tunelab resource]"
ACCOUNT = "[tunelab account]"
SERVER_PATH = "[server path]"

# An ARN as it appears in a sentence: up to a space, a quote or a bracket (a final period is the sentence's).
_ARN = re.compile(r"arn:aws[a-z-]*:[^\s\"'`<>(),;\[\]{}]*")
_S3_URI = re.compile(r"s3a?://([^/\s\"'`<>(),;]*)[^\s\"'`<>(),;]*", re.IGNORECASE)
_S3_URL = re.compile(
    r"https?://(?:([a-z0-9.-]+)\.s3[.-][a-z0-9.-]*amazonaws\.com|s3[.-][a-z0-9.-]*amazonaws\.com/([^/\s?\"']+))"
    r"[^\s\"'`<>(),;]*",
    re.IGNORECASE,
)
_ACCOUNT_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")
# Absolute paths under the usual roots of a server (Lambda's /var/task, /tmp, home folders, ...).
_PATH = re.compile(
    r"(?<![\w.:/~-])(?:~|/(?:var|tmp|home|opt|root|usr|etc|srv|mnt|private|Users|work|workspace|app|proc|"
    r"lib|lib64|run|snap|nix))(?:/[^\s\"'`<>(),;:]*)+"
    r"|(?<![\w])[A-Za-z]:\\[^\s\"'`<>(),;]+"
)
_PUBLIC_ACCOUNTS = frozenset({"aws", ""})


@dataclass(frozen=True)
class Redaction:
    """What to hide: the platform's accounts and buckets; with `tenant_accounts` given, also every
    account (and every bucket but `tenant_buckets`) that is not the tenant's."""

    platform_accounts: frozenset[str] = field(default_factory=frozenset)
    platform_buckets: frozenset[str] = field(default_factory=frozenset)
    tenant_accounts: frozenset[str] | None = None
    tenant_buckets: frozenset[str] = field(default_factory=frozenset)

    def __call__(self, text: str) -> str:
        """`text` with what is hidden replaced by neutral words."""
        text = _ARN.sub(self._arn, text)
        text = _S3_URI.sub(lambda m: self._bucket(m.group(1), m.group(0)), text)
        text = _S3_URL.sub(lambda m: self._bucket(m.group(1) or m.group(2), m.group(0)), text)
        for bucket in sorted(self.platform_buckets, key=len, reverse=True):
            # A bucket named like a word ("datasets") would hide the word; real ones have - . or digits.
            if bucket and not bucket.isalpha():
                text = re.sub(rf"(?<![A-Za-z0-9.-]){re.escape(bucket)}(?![A-Za-z0-9-])", STORAGE, text)
        text = _ACCOUNT_ID.sub(lambda m: ACCOUNT if self._hides_account(m.group(0)) else m.group(0), text)
        return _PATH.sub(_keep_period(SERVER_PATH), text)

    def _hides_account(self, account: str) -> bool:
        if account in self.platform_accounts:
            return True
        if account in _PUBLIC_ACCOUNTS:
            return False
        return self.tenant_accounts is not None and account not in self.tenant_accounts

    def _hides_bucket(self, bucket: str) -> bool:
        if bucket in self.platform_buckets:
            return True
        return self.tenant_accounts is not None and bucket not in self.tenant_buckets

    def _bucket(self, bucket: str, text: str) -> str:
        return _with_period(STORAGE, text) if self._hides_bucket(bucket) else text

    def _arn(self, match: re.Match[str]) -> str:
        arn = match.group(0)
        parts = arn.rstrip(".").split(":", 5)
        if len(parts) < 6:
            # Cut short (a message trimmed to a length): hidden unless it can only be public.
            hidden = self.tenant_accounts is not None or any(a in arn for a in self.platform_accounts if a)
            return _with_period(RESOURCE, arn) if hidden else arn
        service, account, resource = parts[2], parts[4], parts[5]
        if not account and service == "s3":
            return self._bucket(resource.split("/", 1)[0], arn)
        if not self._hides_account(account):
            return arn
        if service in {"iam", "sts"} and resource.startswith(("role/", "assumed-role/")):
            return _with_period(ROLE, arn)
        return _with_period(RESOURCE, arn)


def _with_period(word: str, matched: str) -> str:
    # A sentence's final period is not part of what was matched.
    return word + "." if matched.endswith(".") else word


def _keep_period(word: str) -> Callable[[re.Match[str]], str]:
    return lambda m: _with_period(word, m.group(0))


def for_platform(accounts: Collection[str], buckets: Collection[str]) -> Redaction:
    """Hide what the platform is known to own (the API's error answers)."""
    return Redaction(platform_accounts=frozenset(accounts), platform_buckets=frozenset(buckets))


def for_model(ctx: Context, record: ModelRecord) -> Redaction:
    """Hide everything of a model's reasons but what its workspace owns (its BYOK connection's account
    and artifact bucket), and the platform's datasets bucket wherever it is named."""
    accounts: frozenset[str] = frozenset()
    buckets: frozenset[str] = frozenset()
    if record.hosting == "byok":
        connection = ctx.connections.find(record.workspace_id, record.provider)
        if connection is not None:
            accounts, buckets = frozenset({connection.account}), frozenset({connection.artifact_bucket})
    return Redaction(
        platform_buckets=frozenset({ctx.config.datasets_bucket}),
        tenant_accounts=accounts,
        tenant_buckets=buckets,
    )


def public_reason(ctx: Context, record: ModelRecord, reason: str) -> str:
    """`reason` as the model's workspace may read it (see `for_model`); the full text is logged."""
    shown = for_model(ctx, record)(reason)
    if shown != reason:
        logger.info(
            "Reason redacted for the tenant",
            extra={"workspace_id": record.workspace_id, "model": record.name, "full_reason": reason},
        )
    return shown


__all__ = ["Redaction", "for_model", "for_platform", "public_reason"]
