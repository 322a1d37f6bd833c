"""Request validation errors become the contract's 400 with field paths a person can follow."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from tunelab.entrypoints.api.contracts import CreateFineTunedModelIn, DeployIn
from tunelab.entrypoints.api.errors import status_of, validation_failed

VALID: dict[str, Any] = {
    "name": "support-bot-v1",
    "base_model_id": "amazon.nova-micro-v1:0:128k",
    "dataset_id": "ds_01jdq8k2m3n4p5q6r7s8t9v0w1",
    "validation": {"mode": "split", "percent": 10},
    "hyperparameters": {"epochs": 3},
    "acknowledge": True,
}


def problems(model: Any, body: dict[str, Any]) -> list[tuple[str | None, str]]:
    with pytest.raises(ValidationError) as raised:
        TypeAdapter(model).validate_python(body)
    # Powertools reports the same errors with "body" in front of each location.
    errors = [{**e, "loc": ("body", *e["loc"])} for e in raised.value.errors()]
    return [(d.field, d.message) for d in validation_failed(errors, body).details]


def test_the_valid_body_is_valid() -> None:
    CreateFineTunedModelIn.model_validate(VALID)


def test_nested_field_path() -> None:
    body = {**VALID, "hyperparameters": {"epochs": "three"}}
    assert [f for f, _ in problems(CreateFineTunedModelIn, body)] == ["hyperparameters.epochs"]


def test_discriminated_union_path_leaves_out_the_member_name() -> None:
    body = {**VALID, "validation": {"mode": "split", "percent": 90}}
    assert problems(CreateFineTunedModelIn, body) == [
        ("validation.percent", "Input should be less than or equal to 50.")
    ]


def test_unknown_validation_mode_names_the_discriminator() -> None:
    body = {**VALID, "validation": {"mode": "half"}}
    assert [f for f, _ in problems(CreateFineTunedModelIn, body)] == ["validation.mode"]


def test_missing_field_is_named_where_it_belongs() -> None:
    body = {k: v for k, v in VALID.items() if k != "dataset_id"}
    assert problems(CreateFineTunedModelIn, body) == [("dataset_id", "This field is required.")]


def test_model_rule_names_its_field() -> None:
    body = {**VALID, "acknowledge": False}
    [(field, message)] = problems(CreateFineTunedModelIn, body)
    assert field == "acknowledge"
    assert "POST /v1/cost-estimates" in message

    both = {**VALID, "base_fine_tuned_model": "support-bot-v0"}
    assert [f for f, _ in problems(CreateFineTunedModelIn, both)] == ["base_model_id"]


def test_model_name_rule_message_is_kept() -> None:
    [(field, message)] = problems(CreateFineTunedModelIn, {**VALID, "name": "-bad name"})
    assert field == "name"
    assert "hyphen" in message or "spaces" in message


def test_union_of_objects_path_leaves_out_member_names() -> None:
    fields = [f for f, _ in problems(DeployIn, {"auto_undeploy": {"after_hours": -1}})]
    assert "auto_undeploy.after_hours" in fields
    assert all(f is not None and "AfterHoursIn" not in f and "AtIn" not in f for f in fields)


def test_summary_names_every_field() -> None:
    body = {**VALID, "name": "", "validation": {"mode": "split", "percent": 0}}
    with pytest.raises(ValidationError) as raised:
        CreateFineTunedModelIn.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in raised.value.errors()]
    failed = validation_failed(errors, body)
    assert "name" in failed.message
    assert "validation.percent" in failed.message
    assert status_of(failed) == 400
    assert failed.code == "validation_error"
