"""tunelab's domain events on its own EventBridge bus (`application.ports.EventPublisher`).

PutEvents answers per entry: failed entries are retried a bounded number of times, then
`ProviderTransientError` is raised (a workflow's Retry runs the task again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunelab.adapters.aws_errors import aws_call
from tunelab.domain.errors import ProviderTransientError
from tunelab.domain.events import SOURCE, DomainEvent

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

# PutEvents takes at most 10 entries per call.
_BATCH = 10
DEFAULT_ATTEMPTS = 3


class EventPublisher:
    """Puts domain events on tunelab's bus; failed entries are retried, then raised as transient."""

    def __init__(
        self,
        client: EventBridgeClient,
        bus_name: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.bus_name = bus_name
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._sleep = sleep

    def entry(self, event: DomainEvent) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": SOURCE,
            "DetailType": event.name,
            "Detail": json.dumps(event.detail(), separators=(",", ":")),
            "EventBusName": self.bus_name,
            "Time": event.time,
        }

    def publish(self, *events: DomainEvent) -> None:
        """Publish `events`; `ProviderTransientError` naming the first failure if some never land."""
        for start in range(0, len(events), _BATCH):
            self._put([self.entry(e) for e in events[start : start + _BATCH]])

    def _put(self, entries: Sequence[PutEventsRequestEntryTypeDef]) -> None:
        pending = list(entries)
        failure: Mapping[str, Any] = {}
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with aws_call("Publishing tunelab's events", permission="events:PutEvents"):
                    answer = self.client.put_events(Entries=pending)
            except ProviderTransientError:
                if attempt == self.attempts - 1:
                    raise
                continue
            if not answer.get("FailedEntryCount"):
                return
            # Entries answer in request order; the failed ones carry an ErrorCode.
            results = answer.get("Entries", [])
            retry = [
                entry for entry, result in zip(pending, results, strict=False) if result.get("ErrorCode")
            ]
            failure = next((r for r in results if r.get("ErrorCode")), {})
            pending = retry or pending
        raise ProviderTransientError(
            f"{len(pending)} of tunelab's events could not be published on {self.bus_name} "
            f"({failure.get('ErrorCode')}: {failure.get('ErrorMessage')}); try again shortly."
        )
