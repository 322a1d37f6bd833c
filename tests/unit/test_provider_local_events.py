"""The local provider's events: SageMaker-shaped details parsed into training states, the progress phase."""

from __future__ import annotations

import pytest

from tunelab.adapters.providers import EVENT_SOURCES, parse_event
from tunelab.adapters.providers.local import (
    EVENT_SOURCE,
    TRAINING_EVENT,
    JobProgress,
    format_duration,
    progress_phase,
)
from tunelab.domain.providers import TrainingState, UnhandledEventError

JOB = "triage-bot-c0e888122d"
ARTIFACTS = f"s3://tunelab-artifacts/local-jobs/ws/triage-bot/output/{JOB}/output/model.tar.gz"


def _detail(status: str, secondary: str, **more: object) -> dict[str, object]:
    return {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:tunelab:local:us-east-1:000000000000:training-job/{JOB}",
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "FinalMetricDataList": [],
        "ModelArtifacts": {},
        "Tags": {"tunelab-workspace": "ws"},
        **more,
    }


def _parse(detail: dict[str, object]) -> TrainingState:
    event = parse_event(EVENT_SOURCE, TRAINING_EVENT, detail)
    assert event.provider == "local"
    assert isinstance(event.state, TrainingState)
    return event.state


def test_local_events_reach_the_local_parser_and_never_claim_an_aws_source():
    assert EVENT_SOURCES[EVENT_SOURCE] == "local"
    assert not EVENT_SOURCE.startswith("aws.")


def test_an_in_progress_event_carries_metrics_and_a_progress_phase():
    detail = _detail(
        "InProgress",
        "Training",
        FinalMetricDataList=[
            {"MetricName": "train_loss", "Value": 1.25, "Timestamp": 1},
            {"MetricName": "eval_loss", "Value": 1.5, "Timestamp": 1},
            {"MetricName": "step", "Value": 40.0, "Timestamp": 1},
            {"MetricName": "epoch", "Value": 1.6, "Timestamp": 1},
        ],
        Progress={"step": 40, "max_steps": 120, "epoch": 1.6, "loss": 1.25, "eta_seconds": 35.2},
    )

    state = _parse(detail)

    assert state.job_id == JOB
    assert state.status == "in_progress"
    assert state.phase == "Training 40/120 steps, ETA 0:35"
    assert state.metrics is not None
    assert (state.metrics.train_loss, state.metrics.eval_loss) == (1.25, 1.5)
    assert (state.metrics.step, state.metrics.epoch) == (40, 1.6)


def test_a_completed_event_carries_the_artifacts_and_its_end():
    detail = _detail(
        "Completed",
        "Completed",
        ModelArtifacts={"S3ModelArtifacts": ARTIFACTS},
        TrainingEndTime=1764331346000,
    )

    state = _parse(detail)

    assert state.status == "completed"
    assert state.terminal
    assert state.artifacts_uri == ARTIFACTS
    assert state.ended_at is not None
    assert state.ended_at.year == 2025


@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        ("Failed", "failed", "train.jsonl line 2: missing the field 'completion'"),
        ("Stopped", "stopped", None),
    ],
)
def test_failed_and_stopped_events(status, expected, reason):
    detail = _detail(
        status,
        status,
        FailureReason="train.jsonl line 2: missing the field 'completion'",
        ModelArtifacts={"S3ModelArtifacts": ARTIFACTS},
    )

    state = _parse(detail)

    assert state.status == expected
    assert state.failure_reason == reason
    assert state.artifacts_uri is None  # only a completed job's model is the model's artifacts


def test_other_events_are_not_handled():
    with pytest.raises(UnhandledEventError):
        parse_event(EVENT_SOURCE, "Local Endpoint State Change", _detail("InProgress", "Training"))
    with pytest.raises(UnhandledEventError):
        parse_event(EVENT_SOURCE, TRAINING_EVENT, {"TrainingJobName": JOB})
    with pytest.raises(UnhandledEventError):
        parse_event(EVENT_SOURCE, TRAINING_EVENT, _detail("Exploded", "Training"))


@pytest.mark.parametrize(
    ("progress", "phase"),
    [
        (None, "Training"),
        (JobProgress(step=0, max_steps=0), "Training"),
        (JobProgress(step=0, max_steps=200), "Training 0/200 steps"),
        (JobProgress(step=199, max_steps=200, eta_seconds=3725), "Training 199/200 steps, ETA 1:02:05"),
        (JobProgress(step=200, max_steps=200, eta_seconds=0), "Training 200/200 steps"),
    ],
)
def test_the_progress_phase(progress, phase):
    assert progress_phase("Training", progress) == phase


def test_other_phases_are_left_as_they_are():
    assert progress_phase("Downloading", JobProgress(step=3, max_steps=9)) == "Downloading"
    assert format_duration(59.6) == "1:00"
    assert format_duration(605) == "10:05"


def test_final_metrics_keep_the_trainers_numbers_and_drop_the_rest():
    # The same list shape SageMaker's DescribeTrainingJob and state-change events carry.
    state = _parse(
        _detail(
            "Completed",
            "Completed",
            ModelArtifacts={"S3ModelArtifacts": ARTIFACTS},
            FinalMetricDataList=[
                {"MetricName": "train_loss", "Value": 0.3747, "Timestamp": 1764342237.0},
                {"MetricName": "eval_loss", "Value": 0.3377},
                {"MetricName": "step", "Value": 16.0},
                {"MetricName": "epoch", "Value": 2},
                {"MetricName": "learning_rate", "Value": 0.0005},  # not one the model shows
                {"MetricName": "grad_norm", "Value": "n/a"},
                {"MetricName": "eval_loss", "Value": True},  # not a number: ignored
            ],
        )
    )

    assert state.metrics is not None
    assert state.metrics.model_dump() == {"train_loss": 0.3747, "eval_loss": 0.3377, "step": 16, "epoch": 2.0}
    unknown = [{"MetricName": "x", "Value": 1}]
    assert _parse(_detail("InProgress", "Training", FinalMetricDataList=unknown)).metrics is None
