"""The Idempotency-Key helper that create routes wrap their work with (Powertools idempotency on DynamoDB)."""

from __future__ import annotations

import pytest

from tests.integration.apigw import LambdaContext
from tests.integration.conftest import Aws
from tunelab.domain.errors import IdempotencyConflict, ValidationFailed
from tunelab.domain.identity import Identity
from tunelab.entrypoints.api.errors import status_of
from tunelab.entrypoints.api.idempotency import idempotency_key, idempotent

pytestmark = pytest.mark.moto

ADA = Identity(sub="s-1", email="ada@example.com", workspace="ws-acme")
ROUTE = "POST /v1/fine-tuned-models"


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, object]:
        self.calls += 1
        return {"name": "support-bot-v1", "created": self.calls}


def test_same_key_and_body_returns_the_first_response_and_does_the_work_once(aws: Aws) -> None:
    work = Counter()
    body = {"name": "support-bot-v1", "epochs": 3}

    first = idempotent(ADA, ROUTE, "key-1", body, work, context=LambdaContext())
    again = idempotent(ADA, ROUTE, "key-1", dict(body), work, context=LambdaContext())

    assert first == again == {"name": "support-bot-v1", "created": 1}
    assert work.calls == 1


def test_same_key_with_another_body_is_an_idempotency_conflict(aws: Aws) -> None:
    work = Counter()
    idempotent(ADA, ROUTE, "key-1", {"name": "a"}, work, context=LambdaContext())

    with pytest.raises(IdempotencyConflict) as raised:
        idempotent(ADA, ROUTE, "key-1", {"name": "b"}, work, context=LambdaContext())
    assert status_of(raised.value) == 409
    assert raised.value.code == "idempotency_conflict"
    assert work.calls == 1


def test_keys_are_scoped_to_workspace_and_route(aws: Aws) -> None:
    work = Counter()
    other_workspace = Identity(sub="s-2", email="bob@example.com", workspace="ws-globex")

    idempotent(ADA, ROUTE, "key-1", {"name": "a"}, work, context=LambdaContext())
    idempotent(other_workspace, ROUTE, "key-1", {"name": "a"}, work, context=LambdaContext())
    idempotent(ADA, "POST /v1/datasets", "key-1", {"name": "a"}, work, context=LambdaContext())

    assert work.calls == 3


def test_without_a_key_the_work_runs_every_time(aws: Aws) -> None:
    work = Counter()
    idempotent(ADA, ROUTE, None, {"name": "a"}, work)
    idempotent(ADA, ROUTE, None, {"name": "a"}, work)
    assert work.calls == 2


def test_a_failed_attempt_is_not_remembered(aws: Aws) -> None:
    def fails() -> dict[str, object]:
        raise ValidationFailed.of("name", "bad name")

    with pytest.raises(ValidationFailed):
        idempotent(ADA, ROUTE, "key-1", {"name": "a"}, fails, context=LambdaContext())
    work = Counter()
    assert idempotent(ADA, ROUTE, "key-1", {"name": "a"}, work, context=LambdaContext()) == {
        "name": "support-bot-v1",
        "created": 1,
    }


def test_header_is_read_case_insensitively_and_checked() -> None:
    assert idempotency_key({"idempotency-key": "3f1c0c1e-4b6f"}) == "3f1c0c1e-4b6f"
    assert idempotency_key({"Accept": "application/json"}) is None
    with pytest.raises(ValidationFailed) as raised:
        idempotency_key({"Idempotency-Key": "has spaces in it"})
    assert raised.value.details[0].field == "Idempotency-Key"
