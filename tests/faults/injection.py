"""Faults injected through botocore's event system, never by patching tunelab.

One handler, `_before_send`, is put at the head of botocore's `BUILTIN_HANDLERS` (`REGISTER_FIRST`
on `before-send`, with `_after_others` as `REGISTER_LAST`) when this module is imported. Every
botocore session made afterwards registers it ahead of moto's own `botocore_stubber` (which moto
appends to the same list), and every client copies its session's handlers: the injector reaches
the clients tunelab makes (its `Services`, the providers' clients, the clients made with a customer
role's credentials), whenever they are made. `install()`
also registers it on boto3's default session where that session was made before this module.

While no `Injector` is installed the handler answers nothing and moto answers as usual. An installed
`Injector` answers, instead of moto, the calls its rules match:

* `throttle(service, operation, times=N)`: HTTP 400/429/503 with the service's own throttling error,
  shaped by the service's protocol (JSON `__type`, REST-JSON `x-amzn-ErrorType`, query and REST-XML
  `<Error><Code>`);
* `fail(service, operation, times=N)`: HTTP 500 with the service's internal-error code;
* `deny(service, operation, times=N)`: HTTP 400 `AccessDeniedException` (not retried by anyone);
* `partial_put_events(times=N)`: EventBridge `PutEvents` answering HTTP 200 with its first entry
  failed (`ErrorCode` "InternalFailure", `FailedEntryCount` 1); the other entries of the call are
  handed to moto and land.

`times=None` answers every matching call (until `clear()`), `every=k` one call in k. botocore retries
throttling and 5xx answers itself (legacy mode: 5 attempts, DynamoDB 10; standard mode: 3): each
answer counts, so `injected` tells how many attempts were refused, and `exhausted` how many calls
botocore gave up on (the calls tunelab's own error path saw).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Literal

import boto3
from botocore import handlers as botocore_handlers
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders

FaultKind = Literal["throttling", "5xx", "access denied", "putevents partial failure"]

# Services' ids as botocore hyphenates them in event names, and their protocols.
PROTOCOLS: dict[str, str] = {
    "bedrock": "rest-json",
    "sagemaker": "json",
    "sts": "query",
    "s3": "rest-xml",
    "dynamodb": "json",
    "eventbridge": "json",
    "sesv2": "rest-json",
    "scheduler": "rest-json",
    "sfn": "json",
    "sqs": "json",
}
# What each service says when it throttles: (HTTP status, error code).
THROTTLING: dict[str, tuple[int, str]] = {
    "bedrock": (429, "ThrottlingException"),
    "sagemaker": (400, "ThrottlingException"),
    "sts": (400, "Throttling"),
    "s3": (503, "SlowDown"),
    "dynamodb": (400, "ProvisionedThroughputExceededException"),
    "eventbridge": (400, "ThrottlingException"),
    "sesv2": (429, "TooManyRequestsException"),
    "scheduler": (429, "ThrottlingException"),
    "sfn": (400, "ThrottlingException"),
    "sqs": (400, "ThrottlingException"),
}
SERVER_ERROR: dict[str, tuple[int, str]] = {
    "bedrock": (500, "InternalServerException"),
    "sagemaker": (500, "InternalFailure"),
    "sts": (500, "InternalFailure"),
    "s3": (500, "InternalError"),
    "dynamodb": (500, "InternalServerError"),
    "eventbridge": (500, "InternalException"),
    "sesv2": (500, "InternalFailure"),
    "scheduler": (500, "InternalServerException"),
    "sfn": (500, "InternalFailure"),
    "sqs": (500, "InternalFailure"),
}
JSON_TARGET_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#"}

_HANDLER_ID = "tunelab-fault-injector"


@dataclass
class Rule:
    """Answer matching calls with a fault: the first `times` of them (None: all), one in `every`."""

    service: str
    operation: str | None
    kind: FaultKind
    times: int | None = 1
    every: int = 1
    per_operation: bool = False  # `times` and `every` count each operation apart
    seen: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)

    def matches(self, service: str, operation: str) -> bool:
        return self.service == service and self.operation in (None, operation)

    def take(self, operation: str) -> bool:
        """Whether this matching call gets the fault (and count it)."""
        key = operation if self.per_operation else ""
        self.seen[key] += 1
        if self.times is not None and self.injected[key] >= self.times:
            return False
        if (self.seen[key] - 1) % self.every:
            return False
        self.injected[key] += 1
        return True


@dataclass
class Injector:
    """The rules in force and what they injected, by "<service> <kind>" and by operation."""

    rules: list[Rule] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- rules -------------------------------------------------------------------------------------

    def throttle(
        self,
        service: str,
        operation: str | None = None,
        *,
        times: int | None = 1,
        every: int = 1,
        per_operation: bool = False,
    ) -> Rule:
        return self._add(Rule(service, operation, "throttling", times, every, per_operation))

    def fail(
        self,
        service: str,
        operation: str | None = None,
        *,
        times: int | None = 1,
        every: int = 1,
        per_operation: bool = False,
    ) -> Rule:
        return self._add(Rule(service, operation, "5xx", times, every, per_operation))

    def deny(self, service: str, operation: str | None = None, *, times: int | None = 1) -> Rule:
        return self._add(Rule(service, operation, "access denied", times))

    def partial_put_events(self, *, times: int | None = 1, every: int = 1) -> Rule:
        return self._add(Rule("eventbridge", "PutEvents", "putevents partial failure", times, every))

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """No more faults (the counts stay)."""
        with self._lock:
            self.rules.clear()

    # --- botocore's side ---------------------------------------------------------------------------

    def answer(self, service: str, operation: str, request: AWSPreparedRequest) -> AWSResponse | None:
        with self._lock:
            rule = next(
                (r for r in self.rules if r.matches(service, operation) and r.take(operation)),
                None,
            )
            if rule is None:
                return None
            kind = rule.kind if rule.kind == "putevents partial failure" else f"{service} {rule.kind}"
            self.injected[kind] += 1
            self.by_operation[f"{service}.{operation} {rule.kind}"] += 1
        if rule.kind == "putevents partial failure":
            return _partial_put_events(request)
        if rule.kind == "throttling":
            status, code = THROTTLING[service]
            return error_response(service, status, code, "Rate exceeded")
        if rule.kind == "5xx":
            status, code = SERVER_ERROR[service]
            return error_response(service, status, code, "We encountered an internal error. Try again.")
        return error_response(service, 400, "AccessDeniedException", "User is not authorized (injected)")


_ACTIVE: Injector | None = None


# botocore calls every before-send handler (`emit`, then the first answer wins): moto's stubber would
# carry out a call this module answers. An answered request's URL is swapped for one no moto backend
# serves while the others run, and put back by the last handler (botocore sends the same request
# object again when it retries).
_NOWHERE = "https://fault-injected.invalid/"
_URL = "_tunelab_fault_url"


def _before_send(request: AWSPreparedRequest, event_name: str = "", **_: Any) -> AWSResponse | None:
    injector = _ACTIVE
    if injector is None:
        return None
    # before-send.<service-id>.<Operation>
    parts = event_name.split(".")
    if len(parts) < 3:
        return None
    answer = injector.answer(parts[1], parts[2], request)
    if answer is not None:
        setattr(request, _URL, request.url)
        request.url = _NOWHERE
    return answer


def _after_others(request: AWSPreparedRequest, **_: Any) -> None:
    url = getattr(request, _URL, None)
    if url is not None:
        request.url = url
        delattr(request, _URL)


def install(injector: Injector) -> None:
    """Make `injector` answer from now on (one at a time per process)."""
    global _ACTIVE  # noqa: PLW0603
    default = boto3.DEFAULT_SESSION
    if default is not None:  # made before this module: give it (and its future clients) the handler
        emitter = default._session.get_component("event_emitter")
        emitter.register_first("before-send", _before_send, unique_id=_HANDLER_ID)
        emitter.register_last("before-send", _after_others, unique_id=f"{_HANDLER_ID}-last")
    _ACTIVE = injector


def uninstall() -> None:
    global _ACTIVE  # noqa: PLW0603
    _ACTIVE = None


def _register() -> None:
    first = ("before-send", _before_send, botocore_handlers.REGISTER_FIRST)
    last = ("before-send", _after_others, botocore_handlers.REGISTER_LAST)
    if first not in botocore_handlers.BUILTIN_HANDLERS:
        botocore_handlers.BUILTIN_HANDLERS.insert(0, first)
        botocore_handlers.BUILTIN_HANDLERS.append(last)


_register()


# --- answers shaped like each protocol's ------------------------------------------------------------


class _Raw(BytesIO):
    """The raw body botocore streams an `AWSResponse` from."""

    def stream(self, **_: Any) -> Any:
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()


def _headers(values: dict[str, str]) -> HTTPHeaders:
    headers = HTTPHeaders()
    for name, value in values.items():
        headers[name] = value
    return headers


def _response(status: int, headers: dict[str, str], body: bytes) -> AWSResponse:
    values = {"x-amzn-RequestId": str(uuid.uuid4()), "Content-Length": str(len(body)), **headers}
    return AWSResponse(_NOWHERE, status, _headers(values), _Raw(body))


def error_response(service: str, status: int, code: str, message: str) -> AWSResponse:
    """An error answer as `service`'s protocol shapes it."""
    protocol = PROTOCOLS[service]
    if protocol == "json":
        body = json.dumps({"__type": JSON_TARGET_PREFIX.get(service, "") + code, "message": message})
        return _response(status, {"Content-Type": "application/x-amz-json-1.1"}, body.encode())
    if protocol == "rest-json":
        body = json.dumps({"message": message})
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": f"{code}:"}
        return _response(status, headers, body.encode())
    request_id = str(uuid.uuid4())
    if protocol == "query":
        xml = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    else:  # rest-xml
        xml = (
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
    return _response(status, {"Content-Type": "text/xml"}, xml.encode())


def _partial_put_events(request: AWSPreparedRequest) -> AWSResponse:
    """PutEvents with its first entry failed; moto puts the rest (if any) and answers for them."""
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body or "{}")
    sent = json.loads(text)
    entries = list(sent.get("Entries", []))
    failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal failure (injected)"}
    results: list[dict[str, Any]] = [failed]
    if len(entries) > 1:
        from moto.core.models import botocore_stubber  # noqa: PLC0415  # moto answers the rest

        rest = json.dumps({**sent, "Entries": entries[1:]}).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        forwarded = AWSPreparedRequest(
            request.method, request.url, _headers(headers), rest, request.stream_output
        )
        answered = botocore_stubber(event_name="before-send.eventbridge.PutEvents", request=forwarded)
        if answered is None:
            raise RuntimeError("moto did not answer the forwarded PutEvents")
        results += json.loads(answered.content).get("Entries", [])
    answer = json.dumps({"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results})
    return _response(200, {"Content-Type": "application/x-amz-json-1.1"}, answer.encode())
