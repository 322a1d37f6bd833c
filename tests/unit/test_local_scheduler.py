"""The local runtime's schedule runner: which schedules fire, when, how often, and what then."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tunelab.local.scheduler import ScheduleRunner, at_time, rate_period

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:tunelab-auto-undeploy"


class NotFound(Exception):  # noqa: N818  # boto3's name
    pass


@dataclass
class FakeScheduler:
    """The few Scheduler calls the runner makes, over a dict of schedules."""

    schedules: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    class exceptions:  # noqa: N801  # boto3's shape
        ResourceNotFoundException = NotFound

    def add(self, name: str, expression: str, *, group: str = "g", **more: Any) -> None:
        self.schedules[(group, name)] = {
            "Name": name,
            "GroupName": group,
            "ScheduleExpression": expression,
            "State": "ENABLED",
            "Target": {"Arn": FUNCTION, "Input": json.dumps({"name": name})},
            **more,
        }

    def list_schedules(self, **_: Any) -> dict[str, Any]:
        return {
            "Schedules": [{k: s[k] for k in ("Name", "GroupName", "State")} for s in self.schedules.values()]
        }

    def get_schedule(self, Name: str, GroupName: str) -> dict[str, Any]:  # noqa: N803
        try:
            return self.schedules[(GroupName, Name)]
        except KeyError:
            raise NotFound(Name) from None

    def delete_schedule(self, Name: str, GroupName: str) -> None:  # noqa: N803
        if self.schedules.pop((GroupName, Name), None) is None:
            raise NotFound(Name)


@dataclass
class FakeLambda:
    fail_times: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
        self.calls.append(json.loads(Payload))
        if self.fail_times:
            self.fail_times -= 1
            body = {"errorType": "ProviderTransientError", "errorMessage": "try later"}
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(body).encode())}
        return {"Payload": io.BytesIO(b'{"action": "undeployed"}')}


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def _runner(scheduler: FakeScheduler, lam: FakeLambda, clock: Clock) -> ScheduleRunner:
    return ScheduleRunner(scheduler=scheduler, clients=lambda service: lam, clock=clock)  # type: ignore[arg-type]


def test_at_expressions_are_read_in_their_time_zone() -> None:
    assert at_time("at(2026-11-28T12:00:00)") == T0
    assert at_time("at(2026-11-28T13:00:00)", "Europe/Paris") == T0
    assert at_time("rate(5 minutes)") is None


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(15 minutes)", timedelta(minutes=15)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(2 days)", timedelta(days=2)),
        ("cron(0 12 * * ? *)", None),
    ],
)
def test_rate_expressions(expression: str, period: timedelta | None) -> None:
    assert rate_period(expression) == period


def test_a_due_one_time_schedule_fires_once_with_its_input_then_is_deleted() -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(), Clock()
    scheduler.add("undeploy", "at(2026-11-28T11:59:00)", ActionAfterCompletion="DELETE")
    runner = _runner(scheduler, lam, clock)

    fired = runner.poll()

    assert [(f.name, f.ok, f.result) for f in fired] == [("undeploy", True, '{"action": "undeployed"}')]
    assert lam.calls == [{"name": "undeploy"}]
    assert scheduler.schedules == {}
    assert runner.poll() == []


def test_a_schedule_kept_after_completion_fires_only_once() -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(), Clock()
    scheduler.add("remind", "at(2026-11-28T11:59:00)", ActionAfterCompletion="NONE")
    runner = _runner(scheduler, lam, clock)

    runner.poll()
    clock.now += timedelta(minutes=5)
    runner.poll()

    assert len(lam.calls) == 1
    assert ("g", "remind") in scheduler.schedules


def test_a_future_or_disabled_schedule_does_not_fire() -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(), Clock()
    scheduler.add("later", "at(2026-11-28T12:01:00)")
    scheduler.add("off", "at(2026-11-28T11:00:00)", State="DISABLED")
    runner = _runner(scheduler, lam, clock)

    assert runner.poll() == []
    clock.now += timedelta(minutes=1)
    assert [f.name for f in runner.poll()] == ["later"]
    assert lam.calls == [{"name": "later"}]


def test_a_failed_invocation_is_retried_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(fail_times=1), Clock()
    scheduler.add("undeploy", "at(2026-11-28T11:59:00)", ActionAfterCompletion="DELETE")
    runner = _runner(scheduler, lam, clock)
    ticks = [100.0]
    monkeypatch.setattr("tunelab.local.scheduler.time.monotonic", lambda: ticks[0])

    first = runner.poll()
    ticks[0] += 1.0  # the first retry waits 2 s
    too_soon = runner.poll()
    ticks[0] += 1.5
    second = runner.poll()

    assert [(f.ok, f.result) for f in first] == [(False, "ProviderTransientError: try later")]
    assert too_soon == []
    assert [(f.ok, f.attempt) for f in second] == [(True, 2)]
    assert scheduler.schedules == {}


def test_retries_stop_at_the_targets_retry_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(fail_times=10), Clock()
    scheduler.add("undeploy", "at(2026-11-28T11:59:00)", ActionAfterCompletion="DELETE")
    scheduler.schedules[("g", "undeploy")]["Target"]["RetryPolicy"] = {"MaximumRetryAttempts": 1}
    runner = _runner(scheduler, lam, clock)
    monkeypatch.setattr("tunelab.local.scheduler.time.monotonic", iter(range(0, 10_000, 100)).__next__)

    for _ in range(5):
        runner.poll()

    assert len(lam.calls) == 2  # the first try and one retry
    assert scheduler.schedules == {}  # given up, and deleted as completed


def test_a_rate_schedule_fires_every_period() -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(), Clock()
    scheduler.add("reconcile", "rate(15 minutes)")
    runner = _runner(scheduler, lam, clock)

    assert runner.poll() == []  # first seen now: fires one period later
    clock.now += timedelta(minutes=15)
    assert len(runner.poll()) == 1
    clock.now += timedelta(minutes=10)
    assert runner.poll() == []
    clock.now += timedelta(minutes=5)
    assert len(runner.poll()) == 1
    assert ("g", "reconcile") in scheduler.schedules


def test_an_unsupported_target_is_a_failed_firing() -> None:
    scheduler, lam, clock = FakeScheduler(), FakeLambda(), Clock()
    scheduler.add("odd", "at(2026-11-28T11:59:00)")
    scheduler.schedules[("g", "odd")]["Target"]["Arn"] = "arn:aws:scheduler:::aws-sdk:sqs:sendMessage"
    runner = _runner(scheduler, lam, clock)

    (firing,) = runner.poll()

    assert not firing.ok
    assert "cannot invoke targets like" in firing.result
