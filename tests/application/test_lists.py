"""The list use cases on the fakes: filters and order reach the stores, scoped to the caller's workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.application.conftest import ADA, created_model, ready_dataset
from tests.fakes import FakeContext
from tunelab.application import datasets, fine_tuned_models
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.identity import Identity
from tunelab.domain.listing import (
    DatasetQuery,
    ModelQuery,
    parse_dataset_statuses,
    parse_model_statuses,
    parse_time,
)
from tunelab.domain.status import ModelStatus as S

GRACE = Identity(sub="sub-grace", email="grace@example.com", workspace="ws-globex")


def test_models_listed_by_the_query_in_the_callers_workspace(ctx: FakeContext) -> None:
    for name in ("bot-b", "helper", "bot-a"):
        created_model(ctx, name=name)
        ctx.clock.advance(timedelta(minutes=1))
    ctx.workspaces.set_plan(GRACE.workspace, "subscription", default_plan="pay_as_you_go")
    ctx.models.transition(ADA.workspace, "helper", {S.TRAINING}, S.TRAINING_FAILED)

    def names(query: ModelQuery, limit: int = 50) -> list[str]:
        page = fine_tuned_models.list_models(ctx, ADA, limit=limit, next_token=None, query=query)
        return [m.name for m in page.items]

    assert names(ModelQuery()) == ["bot-a", "bot-b", "helper"]
    assert names(
        ModelQuery(statuses=parse_model_statuses("training_failed, training"), name_prefix="BOT")
    ) == [
        "bot-a",
        "bot-b",
    ]
    assert names(ModelQuery(sort="created_at", order="desc")) == ["bot-a", "helper", "bot-b"]
    assert names(ModelQuery(creator="grace@example.com")) == []
    assert fine_tuned_models.list_models(ctx, GRACE, limit=50, next_token=None).items == []


def test_datasets_listed_by_the_query(ctx: FakeContext) -> None:
    for name in ("tickets", "faq", "Chat"):
        ready_dataset(ctx, name=name)

    page = datasets.list_datasets(ctx, ADA, limit=2, next_token=None, query=DatasetQuery(sort="name"))
    rest = datasets.list_datasets(
        ctx, ADA, limit=2, next_token=page.next_token, query=DatasetQuery(sort="name")
    )

    assert [d.name for d in page.items + rest.items] == ["Chat", "faq", "tickets"]
    assert rest.next_token is None
    assert (
        datasets.list_datasets(
            ctx, ADA, limit=50, next_token=None, query=DatasetQuery(statuses=frozenset({"invalid"}))
        ).items
        == []
    )


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: parse_model_statuses(["training", "asleep"]), "status"),
        (lambda: parse_dataset_statuses("ready,deployed"), "status"),
        (lambda: parse_time("28/11/2026", "created_after"), "created_after"),
        (lambda: ModelQuery(name_prefix="a b"), "name_prefix"),
        (
            lambda: DatasetQuery(
                created_after=parse_time("2026-11-29", "created_after"),
                created_before=parse_time("2026-11-28T23:59:59+00:00", "created_before"),
            ),
            "created_after",
        ),
    ],
)
def test_each_bad_filter_names_its_parameter(make: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        make()  # type: ignore[operator]
    assert [d.field for d in raised.value.details] == [field]


def test_times_without_a_zone_are_utc_and_a_date_is_its_midnight() -> None:
    assert parse_time("2026-11-28", "created_after") == parse_time("2026-11-28T00:00:00Z", "created_after")
    assert parse_time("2026-11-28T13:00:00+01:00", "x") == parse_time("2026-11-28T12:00:00", "x")
    assert parse_time("", "x") is None
