"""The reconciler function checks BYOK connections again (moto): a connection whose role can no longer
be assumed turns to `error` with what failed, shown by `GET /v1/providers`, and its owner gets one
email (SES) however many sweeps find it broken; when the role works again, it is `connected` again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from functions import reconciler
from tests.integration.conftest import Aws
from tests.integration.handler_support import CONTEXT, SENDER, WS, emails
from tunelab.composition.wiring import Services, reset_services, set_services
from tunelab.domain.records import ProviderConnectionRecord, utcnow

REGION = "us-west-2"
CUSTOMER = "210987654321"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/tunelab-platform-access-{REGION}"
BUCKET = "acme-tunelab-artifacts"
OWNER = "ada@example.com"


class RoleGate:
    """The customer's side of the trust: while `denied`, STS refuses AssumeRole of the connector's role
    (its trust policy or external id no longer matches)."""

    def __init__(self) -> None:
        self.denied = False

    def __call__(self, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        if not self.denied:
            return None
        http = type("Http", (), {"status_code": 403, "headers": {}})()
        return http, {
            "Error": {
                "Code": "AccessDenied",
                "Message": f"Not authorized to perform sts:AssumeRole on {ROLE}",
            },
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }


@pytest.fixture
def gate(aws: Aws) -> Iterator[RoleGate]:
    boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress=SENDER)
    # The customer's account: its artifact bucket (reached through the assumed role, in its account).
    gate = RoleGate()
    session = boto3.Session(region_name="us-east-1")
    session._session.get_component("event_emitter").register("before-call.sts.AssumeRole", gate)
    services = Services(session=session)
    set_services(services)
    yield gate
    reset_services()


def _connection(checked_days_ago: float) -> ProviderConnectionRecord:
    when = utcnow() - timedelta(days=checked_days_ago)
    return ProviderConnectionRecord(
        workspace_id=WS,
        role_arn=ROLE,
        external_id="tunelab-" + "ab" * 16,
        region=REGION,
        artifact_bucket=BUCKET,
        status="connected",
        verified_at=when,
        checked_at=when,
        connected_by=OWNER,
        created_at=when,
        updated_at=when,
    )


def _customer_bucket() -> None:
    sts = boto3.client("sts", region_name=REGION)
    creds = sts.assume_role(RoleArn=ROLE, RoleSessionName="setup")["Credentials"]
    s3 = boto3.client(
        "s3",
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})


def _sweep() -> dict[str, int]:
    counts: dict[str, int] = reconciler.handler({"source": "aws.scheduler"}, CONTEXT)
    return counts


def _stored(repo: Services) -> ProviderConnectionRecord:
    record = repo.connections.find(WS)
    assert record is not None
    return record


def test_a_role_that_can_no_longer_be_assumed_is_an_error_told_once_then_recovers(
    gate: RoleGate, repo: Services
) -> None:
    _customer_bucket()
    repo.connections.put(_connection(checked_days_ago=2))
    gate.denied = True

    first = _sweep()
    assert (first["connections_checked"], first["connections_broken"]) == (1, 1)
    broken = _stored(repo)
    assert broken.status == "error"
    assert broken.message is not None
    assert "could not assume the role" in broken.message
    told = [m for m in emails() if "stopped working" in m.subject]
    assert len(told) == 1
    assert told[0].destinations["ToAddresses"] == [OWNER]

    # Checked just now: the next sweep leaves it; a day later it is checked (still broken), no email.
    assert _sweep()["connections_checked"] == 0
    repo.connections.put(
        broken.model_copy(update={"checked_at": utcnow() - timedelta(days=1, minutes=1)}),
        expected_version=broken.version,
    )
    again = _sweep()
    assert (again["connections_checked"], again["connections_broken"]) == (1, 0)
    assert len([m for m in emails() if "stopped working" in m.subject]) == 1

    # The customer fixes the trust policy: the next daily check finds it working.
    gate.denied = False
    stored = _stored(repo)
    repo.connections.put(
        stored.model_copy(update={"checked_at": utcnow() - timedelta(days=1, minutes=1)}),
        expected_version=stored.version,
    )
    fixed = _sweep()
    assert (fixed["connections_recovered"], fixed["connections_emails_sent"]) == (1, 1)
    assert _stored(repo).status == "connected"
    assert _stored(repo).message is None
    assert len([m for m in emails() if "works again" in m.subject]) == 1
