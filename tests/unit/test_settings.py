"""Settings: read once from the environment, and loud about what is missing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.integration.conftest import ENVIRONMENT
from tunelab.composition.settings import get_settings, reset_settings


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield
    reset_settings()


def test_read_once_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("TABLE_NAME", "another")

    assert get_settings() is first
    reset_settings()
    assert get_settings().table_name == "another"
    assert first.runtime == "aws"
    assert first.default_plan == "pay_as_you_go"


@pytest.mark.parametrize("value", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_a_required_variable_missing_or_empty_fails_naming_it(monkeypatch: pytest.MonkeyPatch, value) -> None:
    if value is None:
        monkeypatch.delenv("DATASETS_BUCKET")
    else:
        monkeypatch.setenv("DATASETS_BUCKET", value)

    with pytest.raises(ValidationError, match="datasets_bucket"):
        get_settings()


def test_an_unknown_runtime_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME", "laptop")
    with pytest.raises(ValidationError, match="runtime"):
        get_settings()
