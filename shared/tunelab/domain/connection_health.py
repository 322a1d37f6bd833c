"""The emails a BYOK connection's health sends its owner: one when a check finds it broken, one when
it works again (one per change of status, never one per check)."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from tunelab.domain.notifications import Email
from tunelab.domain.records import ProviderConnectionRecord

CONNECTION_BROKEN = "connection_error"
CONNECTION_RECOVERED = "connection_recovered"
_FOOTER = "You get this email because you connected this AWS account to tunelab."


def _email(to: str, kind: str, subject: str, paragraphs: list[str]) -> Email:
    text = "\n\n".join([*paragraphs, _FOOTER]) + "\n"
    body = (
        '<!doctype html><html><body style="font-family: sans-serif">'
        + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        + f'<p style="color:#666">{html.escape(_FOOTER)}</p></body></html>'
    )
    return Email(to=to, subject=f"[tunelab] {subject}", text=text, html=body, kind=kind)


def _where(record: ProviderConnectionRecord) -> str:
    return f"the role {record.role_arn} in {record.region} (artifact bucket {record.artifact_bucket})"


def connection_broken(record: ProviderConnectionRecord, to: str, at: datetime) -> Email:
    """The connection's check failed; `record.message` says what failed."""
    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _email(
        to,
        CONNECTION_BROKEN,
        "Your SageMaker connection stopped working",
        [
            f"tunelab checked the SageMaker connection of workspace {record.workspace_id} at {when} and it "
            f"failed: {record.message or 'no reason was given.'}",
            f"The connection uses {_where(record)}. New SageMaker jobs and deployments cannot start until it "
            "works again; fix the connector stack (or PUT /v1/providers/sagemaker again). GET /v1/providers "
            "shows its status.",
        ],
    )


def connection_recovered(record: ProviderConnectionRecord, to: str, at: datetime) -> Email:
    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _email(
        to,
        CONNECTION_RECOVERED,
        "Your SageMaker connection works again",
        [
            f"tunelab checked the SageMaker connection of workspace {record.workspace_id} at {when}: "
            f"{_where(record)} works again.",
        ],
    )
