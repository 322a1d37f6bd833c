"""Settings the stack sets for the API's CORS and the auto-undeploy schedules' dead-letter queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from tests.integration.conftest import ENVIRONMENT
from tunelab.composition.settings import get_settings, reset_settings


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield
    reset_settings()


def test_allowed_origins_are_read_comma_separated_as_the_stack_sets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://app.example.com, http://localhost:5173,")
    assert get_settings().allowed_origins == ("https://app.example.com", "http://localhost:5173")


@pytest.mark.parametrize("value", [None, "", " , "], ids=["unset", "empty", "blank"])
def test_no_allowed_origin_when_none_is_configured(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("ALLOWED_ORIGINS", raising=False)
    else:
        monkeypatch.setenv("ALLOWED_ORIGINS", value)
    assert get_settings().allowed_origins == ()


def test_the_schedules_dead_letter_queue_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every auto-undeploy schedule names it: a deployment without one fails at start, not at a schedule.
    assert get_settings().schedules_dlq_arn == ENVIRONMENT["SCHEDULES_DLQ_ARN"]
    monkeypatch.delenv("SCHEDULES_DLQ_ARN")
    reset_settings()
    with pytest.raises(ValidationError, match="schedules_dlq_arn"):
        get_settings()
