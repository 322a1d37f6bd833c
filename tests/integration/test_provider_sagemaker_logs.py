"""The SageMaker provider's training log: CloudWatch Logs in the customer's account (moto), read
through the connector's role, page by page, each line once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from tunelab.adapters.providers.sagemaker import (
    TRAINING_LOG_GROUP,
    SageMakerConfig,
    SageMakerProvider,
    job_name,
)
from tunelab.domain.errors import ProviderPermissionDenied, ValidationFailed
from tunelab.domain.providers import ModelIdentity, SageMakerConnection, TrainingJobRef
from tunelab.domain.training_logs import TrainingLogLine

REGION = "eu-west-1"
CUSTOMER = "111122223333"
ROLE = f"arn:aws:iam::{CUSTOMER}:role/tunelab-platform-access-{REGION}"
IDENTITY = ModelIdentity(
    workspace_id="ws-acme", model_name="support-bot-v1", created_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
)
JOB = job_name(IDENTITY)
REF = TrainingJobRef(
    provider="sagemaker",
    job_id=f"arn:aws:sagemaker:{REGION}:{CUSTOMER}:training-job/{JOB}".lower(),
    job_name=JOB,
)
# An hour ago, to the second: CloudWatch refuses events older than 14 days.
T0 = (int(time.time()) - 3600) * 1000


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SageMakerProvider]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "train.py").write_text("print('training')\n")
    connection = SageMakerConnection(
        role_arn=ROLE, external_id="ext-7f3a", region=REGION, artifact_bucket="acme-tunelab-artifacts"
    )
    with mock_aws():
        yield SageMakerProvider(
            SageMakerConfig(connection=connection, workspace_id="ws-acme", trainer_dir=tmp_path)
        )


def _write(provider: SageMakerProvider, stream: str, messages: list[str], *, start: int = 0) -> None:
    """What SageMaker writes for the job: its log group, one stream per instance, the trainer's lines."""
    logs = provider.logs
    if not logs.describe_log_groups(logGroupNamePrefix=TRAINING_LOG_GROUP)["logGroups"]:
        logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
    existing = logs.describe_log_streams(logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=stream)
    if not existing["logStreams"]:
        logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
    logs.put_log_events(
        logGroupName=TRAINING_LOG_GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": T0 + (start + i) * 1000, "message": m} for i, m in enumerate(messages)],
    )


def _read_all(
    provider: SageMakerProvider, position: str | None, limit: int
) -> tuple[list[TrainingLogLine], str]:
    lines: list[TrainingLogLine] = []
    for _ in range(100):
        page = provider.training_log(REF, position=position, limit=limit)
        assert page.position is not None
        assert len(page.lines) <= limit
        lines.extend(page.lines)
        position = page.position
        if not page.lines:
            return lines, position
    raise AssertionError("the log never ended")


def test_a_job_not_yet_logged_has_no_lines_and_says_so(provider: SageMakerProvider) -> None:
    page = provider.training_log(REF, position=None, limit=10)
    assert page.lines == ()
    assert page.message == "SageMaker has not written this job's log yet."
    assert page.position is not None  # a follower asks again from here


def test_the_log_pages_oldest_first_each_line_once_with_its_time(provider: SageMakerProvider) -> None:
    steps = [f"step={i} train_loss={2.0 - i / 10:.2f}" for i in range(7)]
    _write(provider, f"{JOB}/algo-1-1764590400", steps)
    # Another job's stream in the same group is not this job's log.
    _write(provider, "other-job-0123456789/algo-1-1764590400", ["not ours"])

    lines, position = _read_all(provider, None, limit=3)

    assert [line.message for line in lines] == steps
    assert lines[0].at == datetime.fromtimestamp(T0 / 1000, UTC)
    assert [line.at for line in lines] == sorted(line.at for line in lines)
    # Lines written later are read from where the last page ended: only the new ones.
    _write(provider, f"{JOB}/algo-1-1764590400", ["eval_loss=1.10", "done"], start=7)
    more, _ = _read_all(provider, position, limit=3)
    assert [line.message for line in more] == ["eval_loss=1.10", "done"]


def test_every_instances_stream_is_read_and_a_stream_that_grows_later_is_read_on(
    provider: SageMakerProvider,
) -> None:
    _write(provider, f"{JOB}/algo-1-1764590400", ["a1", "a2"])
    _write(provider, f"{JOB}/algo-2-1764590400", ["b1", "b2", "b3"])
    lines, position = _read_all(provider, None, limit=2)
    assert [line.message for line in lines] == ["a1", "a2", "b1", "b2", "b3"]

    _write(provider, f"{JOB}/algo-1-1764590400", ["a3"], start=2)
    _write(provider, f"{JOB}/algo-2-1764590400", ["b4"], start=3)
    more, _ = _read_all(provider, position, limit=2)
    assert [line.message for line in more] == ["a3", "b4"]


@pytest.mark.parametrize("position", ["not json", "[1, 2]", '{"stream": 3}'])
def test_a_position_the_log_did_not_give_is_refused(provider: SageMakerProvider, position: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        provider.training_log(REF, position=position, limit=10)
    assert refused.value.details[0].field == "next_token"


def test_a_connector_without_log_permissions_says_which_one(
    provider: SageMakerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = provider.session()

    def refuse(**_: Any) -> tuple[Any, dict[str, Any]]:
        http = type("Http", (), {"status_code": 400, "headers": {}})()
        return http, {
            "Error": {"Code": "AccessDeniedException", "Message": "not allowed"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    session._session.get_component("event_emitter").register("before-call.logs.DescribeLogStreams", refuse)
    with pytest.raises(ProviderPermissionDenied) as denied:
        provider.training_log(REF, position=None, limit=10)
    assert "logs:DescribeLogStreams" in denied.value.message
