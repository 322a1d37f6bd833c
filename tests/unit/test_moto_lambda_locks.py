"""The in-process Lambda seam runs one invocation of a function at a time, different functions at once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from tunelab.local.moto_lambda import LambdaContext, _in_process, allowed_handlers

THIS = __name__
EVENTS: list[tuple[str, str]] = []
BOTH_INSIDE = threading.Barrier(2, timeout=5)


def probe(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    EVENTS.append(("enter", context.function_name))
    time.sleep(0.2)  # long enough that a second invocation would start meanwhile without the lock
    EVENTS.append(("exit", context.function_name))
    return {}


def meet(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    BOTH_INSIDE.wait()  # only passes when the other function is running at the same time
    return {"met": context.function_name}


@dataclass
class _Function:
    """The attributes of moto's LambdaFunction that the seam reads."""

    function_name: str
    handler: str
    function_arn: str = ""
    memory_size: int = 128
    timeout: int = 30


def _run_together(functions: list[_Function]) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = [("", True, "")] * len(functions)

    def run(index: int) -> None:
        results[index] = _in_process(functions[index], "{}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    # The seam runs only the handlers it is told to (tunelab's own by default).
    with allowed_handlers({f"{THIS}.probe", f"{THIS}.meet"}):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    return results


def test_two_invocations_of_one_function_do_not_overlap() -> None:
    EVENTS.clear()
    function = _Function("probe-fn", f"{THIS}.probe")

    results = _run_together([function, function])

    assert [errored for _, errored, _ in results] == [False, False]
    assert [kind for kind, _ in EVENTS] == ["enter", "exit", "enter", "exit"]


def test_different_functions_still_run_at_the_same_time() -> None:
    BOTH_INSIDE.reset()

    results = _run_together([_Function("meet-a", f"{THIS}.meet"), _Function("meet-b", f"{THIS}.meet")])

    assert [errored for _, errored, _ in results] == [False, False], results
