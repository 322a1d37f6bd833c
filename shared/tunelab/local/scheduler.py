"""Fires the embedded EventBridge Scheduler's schedules (moto stores schedules but never fires them).

A thread asks the scheduler, through its API like any client, for the schedules of every group,
and carries out those that are due:

* one-time `at(yyyy-mm-ddThh:mm:ss)` schedules (in their `ScheduleExpressionTimezone`) once their
  time has come — then, with `ActionAfterCompletion: DELETE`, the schedule is deleted, as the
  service does;
* recurring `rate(N unit)` schedules every period, counted from when the runtime first saw them;
  `cron(...)` expressions are not fired locally (said once in the log).

The target is invoked as Scheduler would: a Lambda function through Lambda's `Invoke` (so moto's
Lambda backend, and the in-process seam, run the function's handler), a state machine through
`StartExecution`, a queue through `SendMessage` — each with the target's `Input`. A failed
invocation is retried with a growing delay, at most `MAX_LOCAL_RETRIES` times (fewer when the
target's `RetryPolicy` says so), then given up, as the service does after its retries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

logger = logging.getLogger("tunelab.local.scheduler")

MAX_LOCAL_RETRIES = 3
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def at_time(expression: str, timezone: str | None = "UTC") -> datetime | None:
    """The moment of a one-time `at(...)` expression, or None for other expressions."""
    match = _AT.match(expression.strip())
    if match is None:
        return None
    local = datetime.fromisoformat(match.group(1))
    return local.replace(tzinfo=ZoneInfo(timezone or "UTC")).astimezone(UTC)


def rate_period(expression: str) -> timedelta | None:
    """The period of a `rate(N unit)` expression, or None for other expressions."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    unit = match.group(2).rstrip("s")
    return timedelta(seconds=int(match.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class Firing:
    """One invocation of a schedule's target."""

    group: str
    name: str
    target_arn: str
    input: str
    at: datetime
    ok: bool
    result: str  # the target's answer (a Lambda payload), or the error
    attempt: int = 1


@dataclass
class _Pending:
    attempts: int = 0
    next_try: float = 0.0


@dataclass
class ScheduleRunner:
    """The thread that fires due schedules; `firings` lists what it did (newest last)."""

    scheduler: EventBridgeSchedulerClient
    clients: Callable[[str], Any]  # boto3 client of a service ("lambda", "stepfunctions", "sqs")
    poll_interval: float = 1.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    firings: list[Firing] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    _done: set[tuple[str, str, str]] = field(default_factory=set)
    _next_rate: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _said: set[str] = field(default_factory=set)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tunelab-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_for(self, predicate: Callable[[Firing], bool], timeout: float) -> Firing | None:
        """The first firing (past or coming within `timeout` seconds) that `predicate` accepts."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for firing in self.firings:
                    if predicate(firing):
                        return firing
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a bad poll (the server stopping) must not end the thread
                if not self._stop.is_set():
                    logger.exception("polling the schedules failed")
            self._stop.wait(self.poll_interval)

    def poll(self) -> list[Firing]:
        """Fire every schedule that is due now; what was fired."""
        fired = []
        now = self.clock()
        for summary in self._list():
            if self._stop.is_set():
                break
            group, name = summary["GroupName"], summary["Name"]
            if summary.get("State", "ENABLED") != "ENABLED":
                continue
            try:
                schedule = self.scheduler.get_schedule(Name=name, GroupName=group)
            except self.scheduler.exceptions.ResourceNotFoundException:
                continue  # deleted since it was listed
            firing = self._consider(dict(schedule), now)
            if firing is not None:
                fired.append(firing)
        return fired

    def _list(self) -> list[dict[str, Any]]:
        schedules: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = (
                self.scheduler.list_schedules(NextToken=token) if token else self.scheduler.list_schedules()
            )
            schedules.extend(dict(s) for s in page.get("Schedules", []))
            token = page.get("NextToken")
            if not token:
                return schedules

    def _consider(self, schedule: dict[str, Any], now: datetime) -> Firing | None:
        group, name = schedule["GroupName"], schedule["Name"]
        expression = str(schedule["ScheduleExpression"])
        key = (group, name)
        when = at_time(expression, schedule.get("ScheduleExpressionTimezone"))
        if when is not None:
            if when > now or (group, name, expression) in self._done:
                return None
            pending = self._pending.setdefault(key, _Pending())
            if time.monotonic() < pending.next_try:
                return None
            firing = self._fire(schedule, pending.attempts + 1)
            if firing.ok or pending.attempts + 1 > self._retries(schedule):
                if not firing.ok:
                    logger.error("schedule %s/%s: giving up after %d attempts", group, name, firing.attempt)
                self._pending.pop(key, None)
                self._done.add((group, name, expression))
                if schedule.get("ActionAfterCompletion") == "DELETE":
                    self._delete(group, name)
            else:
                pending.attempts += 1
                pending.next_try = time.monotonic() + 2**pending.attempts
            return firing
        period = rate_period(expression)
        if period is not None:
            due = self._next_rate.setdefault(key, now + period)
            if due > now:
                return None
            self._next_rate[key] = now + period
            return self._fire(schedule, 1)
        if expression not in self._said:
            self._said.add(expression)
            logger.info("schedule %s/%s: %s is not fired by the local runtime", group, name, expression)
        return None

    @staticmethod
    def _retries(schedule: dict[str, Any]) -> int:
        policy = schedule.get("Target", {}).get("RetryPolicy") or {}
        return min(MAX_LOCAL_RETRIES, int(policy.get("MaximumRetryAttempts", MAX_LOCAL_RETRIES)))

    def _fire(self, schedule: dict[str, Any], attempt: int) -> Firing:
        target = schedule["Target"]
        arn = str(target["Arn"])
        payload = str(target.get("Input") or "{}")
        group, name = schedule["GroupName"], schedule["Name"]
        try:
            ok, result = self._invoke(arn, payload)
        except Exception as error:  # the target's failure is the firing's result
            ok, result = False, f"{type(error).__name__}: {error}"
        firing = Firing(
            group=group,
            name=name,
            target_arn=arn,
            input=payload,
            at=self.clock(),
            ok=ok,
            result=result,
            attempt=attempt,
        )
        target_name = arn.rsplit(":", 1)[-1]
        if ok:
            logger.info("schedule %s/%s fired: %s answered %s", group, name, target_name, result[:200])
        else:
            logger.warning(
                "schedule %s/%s: %s failed (attempt %d): %s", group, name, target_name, attempt, result
            )
        with self._changed:
            self.firings.append(firing)
            self._changed.notify_all()
        return firing

    def _invoke(self, arn: str, payload: str) -> tuple[bool, str]:
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "lambda":
            lam = self.clients("lambda")
            answer = lam.invoke(FunctionName=arn, InvocationType="RequestResponse", Payload=payload.encode())
            body = answer["Payload"].read().decode("utf-8", "replace")
            if answer.get("FunctionError"):
                try:
                    error = json.loads(body)
                    body = f"{error.get('errorType')}: {error.get('errorMessage')}"
                except (ValueError, AttributeError):
                    pass
                return False, body
            return True, body
        if service == "states":
            started = self.clients("stepfunctions").start_execution(stateMachineArn=arn, input=payload)
            return True, str(started["executionArn"])
        if service == "sqs":
            account, queue_name = arn.split(":")[4:6]
            sqs = self.clients("sqs")
            url = sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            sent = sqs.send_message(QueueUrl=url, MessageBody=payload)
            return True, str(sent["MessageId"])
        return False, f"the local runtime cannot invoke targets like {arn}"

    def _delete(self, group: str, name: str) -> None:
        with contextlib.suppress(self.scheduler.exceptions.ResourceNotFoundException):
            self.scheduler.delete_schedule(Name=name, GroupName=group)
