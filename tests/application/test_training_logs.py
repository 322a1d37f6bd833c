"""The training log use case on fakes: pages, the opaque token bound to the model, when it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.application.conftest import ADA, created_model, workflow_input
from tests.fakes import FakeContext
from tunelab.application import fine_tuned_models, training_logs
from tunelab.application.workflows import PrepareDataEvent, StartTrainingEvent
from tunelab.domain.errors import NotFound, ValidationFailed
from tunelab.domain.identity import Identity
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus as S
from tunelab.domain.training_logs import TrainingLogLine, wrap_token

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _started(ctx: FakeContext, record: ModelRecord) -> ModelRecord:
    base = workflow_input(record, "req-create")
    prepared = fine_tuned_models.prepare_data(ctx, PrepareDataEvent.model_validate(base))
    fine_tuned_models.start_training(
        ctx,
        StartTrainingEvent.model_validate(
            {
                **base,
                "task_token": "token-1",
                "execution_arn": record.training.execution_arn,
                "prepared": prepared.model_dump(),
            }
        ),
    )
    return ctx.models.get(record.workspace_id, record.name)


def _printed(ctx: FakeContext, model: ModelRecord, count: int) -> list[str]:
    assert model.refs.training_job is not None
    lines = [f"step={i} loss={1 - i / 100:.2f}" for i in range(count)]
    ctx.provider(model.provider).logs[model.refs.training_job.job_name] = [
        TrainingLogLine(at=T0 + timedelta(seconds=i), message=m) for i, m in enumerate(lines)
    ]
    return lines


def _read(ctx: FakeContext, name: str, token: str | None, limit: int = 2) -> training_logs.TrainingLog:
    return training_logs.training_log(ctx, ADA, name, limit=limit, next_token=token)


def test_a_model_without_a_job_has_no_lines_and_says_why(ctx: FakeContext) -> None:
    model = created_model(ctx)
    log = _read(ctx, model.name, None)
    assert (log.lines, log.next_token) == ((), None)
    assert log.message == "The training job has not started yet; its log appears once it runs."


def test_a_training_model_pages_its_log_and_keeps_a_token_to_follow(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    lines = _printed(ctx, model, 5)
    read: list[str] = []
    token: str | None = None
    for _ in range(3):
        log = _read(ctx, model.name, token)
        read += [line.message for line in log.lines]
        token = log.next_token
    assert read == lines
    # Caught up while it trains: no lines, but the token to ask again with.
    log = _read(ctx, model.name, token)
    assert log.lines == ()
    assert log.next_token is not None


def test_once_training_ended_the_last_page_has_no_token(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    lines = _printed(ctx, model, 3)
    ctx.models.transition(ADA.workspace, model.name, [S.TRAINING], S.TRAINING_FAILED)
    first = _read(ctx, model.name, None)
    assert first.next_token is not None  # a full page: there may be more
    last = _read(ctx, model.name, first.next_token)
    assert [line.message for line in first.lines + last.lines] == lines
    assert last.next_token is None


@pytest.mark.parametrize("token", ["garbage", "eyJ2IjoxfQ"])
def test_a_token_this_log_did_not_give_is_a_validation_error(ctx: FakeContext, token: str) -> None:
    model = _started(ctx, created_model(ctx))
    with pytest.raises(ValidationFailed) as refused:
        _read(ctx, model.name, token)
    assert refused.value.details[0].field == "next_token"


def test_another_models_token_is_refused(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    with pytest.raises(ValidationFailed):
        _read(ctx, model.name, wrap_token("another-uid", "0"))


def test_another_workspace_reads_no_log(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    other = Identity(sub="sub-eve", email="eve@example.com", workspace="ws-other")
    with pytest.raises(NotFound):
        training_logs.training_log(ctx, other, model.name, limit=10, next_token=None)
