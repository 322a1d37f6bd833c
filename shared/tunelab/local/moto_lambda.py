"""Run moto's Lambda functions in this process: the seam between moto and tunelab's handlers.

moto's Lambda backend runs a function's code in one place, `LambdaFunction._invoke_lambda`, which
would start a Docker container. `install_in_process_lambda()` replaces that one method with a call
of the handler named by the function's `Handler` (`functions.start_training.handler`): the module
is imported here and called with the event and a context object. Step Functions tasks
(`lambda:invoke`, `.waitForTaskToken`), SQS event-source mappings and direct `Invoke` calls then
run the real handler code — under `mock_aws` and in `ThreadedMotoServer` alike.

One invocation of a function at a time: each function has its own lock, as if it had one Lambda
execution environment (handler modules keep module-level state, such as a Powertools
`BatchProcessor`, that is not thread-safe); different functions still run at the same time.

What the handler sees: the process's own environment (one process, one configuration; the
function's `Environment` variables are not applied, since concurrent invocations share
`os.environ`), an event parsed from JSON, and a context with the function's name, ARN, memory,
a request id and the remaining time.

Only tunelab's own handlers run: those of the functions the stack defines
(`composition.stack_definitions.FUNCTIONS`, `functions.<module>.handler`), or the set given to
`install_in_process_lambda(handlers=...)` / `allowed_handlers(...)`. A function whose `Handler` names
anything else (`pty.spawn`, `os.system`, any importable callable) is not run: its invocation fails
with `HandlerNotAllowed`, since this process is the operator's and the handler would run as them.

Errors come back as Lambda reports an unhandled exception: the payload
`{"errorMessage", "errorType", "stackTrace"}` with `errorType` the exception's class name, and the
function-error flag set, so a state's `Retry`/`Catch` on `ProviderTransientError` matches.

Relies on moto's private `_invoke_lambda(self, event) -> (payload, errored, logs)`, checked on
moto 5.2.x (the range pinned in pyproject); `install_in_process_lambda` refuses another shape.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tunelab.composition.stack_definitions import FUNCTIONS

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_ORIGINAL: Callable[..., tuple[str, bool, str]] | None = None
# One lock per function name; reentrant so a handler that (oddly) invokes itself in its own thread
# does not deadlock.
_FUNCTION_LOCKS: dict[str, threading.RLock] = {}
# The handlers that may run (None: tunelab's own, `tunelab_handlers()`).
_ALLOWED: frozenset[str] | None = None


class HandlerNotAllowed(PermissionError):  # noqa: N818  # the errorType an invocation reports
    """A function's `Handler` names something other than one of tunelab's own handlers."""

    def __init__(self, handler: str) -> None:
        super().__init__(
            f"the local runtime runs only the handlers of tunelab's own functions "
            f"(functions.<module>.handler); {handler[:200]!r} is not one of them"
        )
        self.handler = handler


def tunelab_handlers() -> frozenset[str]:
    """The `Handler` of every function the stack defines."""
    return frozenset(spec.handler for spec in FUNCTIONS)


def current_allowed() -> frozenset[str]:
    """The handlers this process runs now."""
    return _ALLOWED if _ALLOWED is not None else tunelab_handlers()


@contextmanager
def allowed_handlers(handlers: Iterable[str]) -> Iterator[None]:
    """Run exactly `handlers` (tunelab's own not included) for the duration of a `with` block (tests)."""
    global _ALLOWED  # noqa: PLW0603
    previous, _ALLOWED = _ALLOWED, frozenset(handlers)
    try:
        yield
    finally:
        _ALLOWED = previous


def function_lock(function_name: str) -> threading.RLock:
    """The lock that serialises invocations of `function_name` (one execution environment)."""
    with _LOCK:
        lock = _FUNCTION_LOCKS.get(function_name)
        if lock is None:
            lock = _FUNCTION_LOCKS[function_name] = threading.RLock()
        return lock


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers (and Powertools) read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def resolve_handler(handler: str) -> Callable[[Any, Any], Any]:
    """The callable `module.path.function` names (a Lambda `Handler` setting); `HandlerNotAllowed`
    unless it is one of the handlers this process runs (`current_allowed()`)."""
    if handler not in current_allowed():
        raise HandlerNotAllowed(handler)
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler!r} is not 'module.function'")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute)
    if not callable(function):
        raise TypeError(f"{handler} is not callable")
    return function  # type: ignore[no-any-return]


def error_payload(error: BaseException) -> dict[str, Any]:
    """An unhandled exception as Lambda's runtime reports it."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_exception(type(error), error, error.__traceback__),
    }


def invoke_handler(handler: str, event: Any, context: LambdaContext) -> tuple[str, bool, str]:
    """Call `handler` with `event`; (payload JSON, errored, log text) as moto's backend wants them."""
    try:
        function = resolve_handler(handler)
    except HandlerNotAllowed as error:
        logger.warning("refused to run the Lambda function %s: %s", context.function_name, error)
        payload = error_payload(error)
        return json.dumps(payload), True, str(error)
    try:
        result = function(event, context)
        return json.dumps(result, default=str), False, ""
    except Exception as error:  # the handler's own failure is the invocation's result, not ours
        logger.info("in-process Lambda %s raised %s: %s", handler, type(error).__name__, error)
        payload = error_payload(error)
        return json.dumps(payload), True, "".join(payload["stackTrace"])


def _in_process(self: Any, event: Any = None) -> tuple[str, bool, str]:
    if isinstance(event, str | bytes):
        event = json.loads(event) if event else {}
    if event is None:
        event = {}
    context = LambdaContext(
        function_name=str(self.function_name),
        invoked_function_arn=str(self.function_arn),
        memory_limit_in_mb=int(self.memory_size or 128),
        timeout_seconds=int(self.timeout or 3),
        function_version=str(getattr(self, "version", "$LATEST")),
    )
    with function_lock(context.function_name):
        return invoke_handler(str(self.handler), event, context)


def _lambda_function_class() -> Any:
    from moto.awslambda.models import LambdaFunction  # noqa: PLC0415  # moto is a dev/local dependency

    original = LambdaFunction.__dict__.get("_invoke_lambda")
    if original is None:
        raise RuntimeError("this moto has no LambdaFunction._invoke_lambda; check the pinned moto range")
    parameters = list(inspect.signature(original).parameters)
    if parameters[:2] != ["self", "event"]:
        raise RuntimeError(f"moto's _invoke_lambda has an unexpected signature {parameters}")
    return LambdaFunction


def install_in_process_lambda(handlers: Iterable[str] | None = None) -> Callable[[], None]:
    """Make moto run Lambda functions in this process; returns a function that undoes it.

    `handlers`: the handlers that may run (default: tunelab's own, `tunelab_handlers()`).
    Installing twice is harmless (the second call changes nothing and its undo does nothing).
    """
    global _ORIGINAL, _ALLOWED  # noqa: PLW0603  # one patch per process
    cls = _lambda_function_class()
    with _LOCK:
        if _ORIGINAL is not None:
            return lambda: None
        _ORIGINAL = cls.__dict__["_invoke_lambda"]
        _ALLOWED = frozenset(handlers) if handlers is not None else None
        cls._invoke_lambda = _in_process

    def uninstall() -> None:
        global _ORIGINAL, _ALLOWED  # noqa: PLW0603
        with _LOCK:
            if _ORIGINAL is not None:
                cls._invoke_lambda = _ORIGINAL
                _ORIGINAL = None
                _ALLOWED = None

    return uninstall


def is_installed() -> bool:
    return _ORIGINAL is not None


@contextmanager
def in_process_lambda(handlers: Iterable[str] | None = None) -> Iterator[None]:
    """`install_in_process_lambda(handlers)` for the duration of a `with` block."""
    uninstall = install_in_process_lambda(handlers)
    try:
        yield
    finally:
        uninstall()
