"""Filtered and sorted lists of models and datasets, one suite run against the DynamoDB stores (under
moto: the table's own keys and the list index) and the in-memory fakes the fast tests use."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.fakes.stores import MemoryDatasets, MemoryModels, MemoryTable
from tests.integration import factories
from tunelab.composition.wiring import Services
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.listing import DatasetQuery, ModelQuery
from tunelab.domain.records import Creator, DatasetRef, ValidationChoice, new_dataset_id
from tunelab.domain.status import ModelStatus as S

pytestmark = pytest.mark.moto

WS, OTHER = "ws-acme", "ws-globex"
T0 = factories.T0
GRACE = Creator(email="grace@example.com")


class Stores:
    def __init__(self) -> None:
        table = MemoryTable()
        self.datasets = MemoryDatasets(table)
        self.models = MemoryModels(table, self.datasets)


@pytest.fixture(params=["dynamodb", "memory"])
def repo(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return Stores()
    request.getfixturevalue("aws")
    return Services()


def at(hours: float):
    return T0 + timedelta(hours=hours)


def dataset(repo: Any, name: str, hours: float, workspace: str = WS, **fields: Any):
    # Ids sort by creation time, as `new_dataset_id` makes them when a dataset is created.
    created = at(hours)
    record = factories.dataset(
        workspace, name, dataset_id=new_dataset_id(created), created_at=created, **fields
    )
    return repo.datasets.create(record)


def model(repo: Any, name: str, hours: float, workspace: str = WS, status: S = S.TRAINING, **fields: Any):
    data = fields.pop("data", None) or dataset(repo, f"data-for-{name}", hours, workspace)
    created = repo.models.create(
        factories.model(workspace, name, data.dataset_id, created_at=at(hours), **fields), message="Started."
    )
    if status != S.TRAINING:
        repo.models.transition(workspace, name, {S.TRAINING}, S.TRAINING_FAILED)
        if status != S.TRAINING_FAILED:
            raise ValueError("the helper makes training or training_failed models")
    return created


@pytest.fixture
def models(repo: Any) -> Any:
    """Seven models of ws-acme, and look-alikes in ws-globex that no list of ws-acme may show."""
    shared = dataset(repo, "shared-data", 0)
    validation = dataset(repo, "held-out", 0)
    model(repo, "alpha-1", 1, data=shared)
    model(repo, "Alpha-2", 2, status=S.TRAINING_FAILED, provider="local", hosting="local")
    model(repo, "beta-1", 3, data=shared, created_by=GRACE)
    model(repo, "beta-2", 4, base_model_id="local.tiny-llama", provider="local", hosting="local")
    model(
        repo,
        "gamma",
        5,
        status=S.TRAINING_FAILED,
        validation=ValidationChoice(mode="dataset", dataset=DatasetRef(id=validation.dataset_id, name="h")),
        created_by=GRACE,
    )
    model(repo, "alpha-3", 6, provider="local", hosting="local")
    model(repo, "delta", 7, data=shared)
    for i, name in enumerate(["alpha-1", "alpha-9", "beta-1"]):
        model(repo, name, i + 1, workspace=OTHER, provider="local", hosting="local", created_by=GRACE)
    return {"shared": shared.dataset_id, "validation": validation.dataset_id}


def names(repo: Any, query: ModelQuery, limit: int = 100) -> list[str]:
    page = repo.models.list(WS, limit=limit, query=query)
    assert page.next_token is None
    return [m.name for m in page.items]


def every(repo: Any, store: str, query: Any, limit: int) -> tuple[list[str], int]:
    """Every item of a list, page by page; no page but the last is short."""
    seen: list[str] = []
    token, pages = None, 0
    while True:
        page = getattr(repo, store).list(WS, limit=limit, next_token=token, query=query)
        pages += 1
        seen += [r.name for r in page.items]
        token = page.next_token
        if token is None:
            return seen, pages
        assert len(page.items) == limit


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (ModelQuery(), ["alpha-1", "Alpha-2", "alpha-3", "beta-1", "beta-2", "delta", "gamma"]),
        (ModelQuery(statuses=frozenset({S.TRAINING_FAILED})), ["Alpha-2", "gamma"]),
        (
            ModelQuery(statuses=frozenset({S.TRAINING_FAILED, S.TRAINING}), name_prefix="ALPHA"),
            ["alpha-1", "Alpha-2", "alpha-3"],
        ),
        (ModelQuery(statuses=frozenset({S.DEPLOYED})), []),
        (ModelQuery(provider="local"), ["Alpha-2", "alpha-3", "beta-2"]),
        (ModelQuery(base_model_id="local.tiny-llama"), ["beta-2"]),
        (ModelQuery(creator="grace@example.com"), ["beta-1", "gamma"]),
        (ModelQuery(created_after=at(3)), ["alpha-3", "beta-1", "beta-2", "delta", "gamma"]),
        (ModelQuery(created_before=at(3)), ["alpha-1", "Alpha-2"]),
        (ModelQuery(created_after=at(2), created_before=at(5)), ["Alpha-2", "beta-1", "beta-2"]),
        (ModelQuery(name_prefix="be"), ["beta-1", "beta-2"]),
        (ModelQuery(name_prefix="alpha-", provider="local", created_after=at(3)), ["alpha-3"]),
    ],
    ids=lambda v: "" if isinstance(v, list) else None,
)
def test_each_model_filter_and_combinations(
    repo: Any, models: Any, query: ModelQuery, expected: list[str]
) -> None:
    assert names(repo, query) == expected
    # The same filter over the list index (by creation time) finds the same models.
    by_created = names(repo, query.model_copy(update={"sort": "created_at"}))
    assert sorted(by_created, key=str.lower) == expected


def test_models_by_dataset_count_training_and_validation(repo: Any, models: Any) -> None:
    assert names(repo, ModelQuery(dataset_id=models["shared"])) == ["alpha-1", "beta-1", "delta"]
    assert names(repo, ModelQuery(dataset_id=models["validation"])) == ["gamma"]


@pytest.mark.parametrize(
    ("sort", "order", "expected"),
    [
        ("name", "asc", ["alpha-1", "Alpha-2", "alpha-3", "beta-1", "beta-2", "delta", "gamma"]),
        ("name", "desc", ["gamma", "delta", "beta-2", "beta-1", "alpha-3", "Alpha-2", "alpha-1"]),
        ("created_at", "asc", ["alpha-1", "Alpha-2", "beta-1", "beta-2", "gamma", "alpha-3", "delta"]),
        ("created_at", "desc", ["delta", "alpha-3", "gamma", "beta-2", "beta-1", "Alpha-2", "alpha-1"]),
    ],
)
def test_models_sorted_both_ways(repo: Any, models: Any, sort: Any, order: Any, expected: list[str]) -> None:
    assert names(repo, ModelQuery(sort=sort, order=order)) == expected
    # Paged two at a time, the same order, each model once.
    assert every(repo, "models", ModelQuery(sort=sort, order=order), limit=2) == (expected, 4)


@pytest.mark.parametrize(
    ("sort", "order"), [("name", "asc"), ("name", "desc"), ("created_at", "asc"), ("created_at", "desc")]
)
def test_a_filtered_list_pages_full_pages_each_match_once(repo: Any, sort: Any, order: Any) -> None:
    # Given 30 models, every third one local, interleaved with another workspace's local models
    for i in range(30):
        local = i % 3 == 0
        provider: dict[str, Any] = {"provider": "local", "hosting": "local"} if local else {}
        model(repo, f"m-{i:02d}", i, **provider)
        model(repo, f"m-{i:02d}", i, workspace=OTHER, provider="local", hosting="local")
    query = ModelQuery(provider="local", sort=sort, order=order)

    # When paged three at a time (matches are sparse: most items read are filtered out)
    seen, pages = every(repo, "models", query, limit=3)

    # Then the ten local models come back in four pages (full but the last), each once, in order
    expected = [f"m-{i:02d}" for i in range(0, 30, 3)]
    assert seen == (expected if order == "asc" else expected[::-1])
    assert pages == 4


def test_no_status_in_common_lists_nothing(repo: Any, models: Any) -> None:
    page = repo.models.list(WS, status={S.DEPLOYED}, query=ModelQuery(statuses=frozenset({S.TRAINING})))
    assert (page.items, page.next_token) == ([], None)
    both = repo.models.list(
        WS, status={S.TRAINING, S.DEPLOYED}, query=ModelQuery(statuses=frozenset({S.TRAINING}))
    )
    assert [m.name for m in both.items] == ["alpha-1", "alpha-3", "beta-1", "beta-2", "delta"]


def test_a_token_of_another_order_or_workspace_is_refused(repo: Any, models: Any) -> None:
    by_name = repo.models.list(WS, limit=2).next_token
    by_created = repo.models.list(WS, limit=2, query=ModelQuery(sort="created_at")).next_token
    other = repo.models.list(OTHER, limit=1, query=ModelQuery(sort="created_at")).next_token
    for token, query in [
        (by_name, ModelQuery(sort="created_at")),
        (by_created, ModelQuery()),
        (other, ModelQuery(sort="created_at")),
    ]:
        with pytest.raises(ValidationFailed) as raised:
            repo.models.list(WS, limit=2, next_token=token, query=query)
        assert raised.value.details[0].field == "next_token"


# --- datasets -------------------------------------------------------------------------------------


@pytest.fixture
def datasets(repo: Any) -> None:
    dataset(repo, "tickets-b", 1)
    dataset(repo, "Tickets-A", 2, status="invalid")
    dataset(repo, "faq", 3)
    dataset(repo, "tickets-c", 4, status="validating")
    dataset(repo, "chat", 5)
    dataset(repo, "tickets-z", 1, workspace=OTHER)


def dataset_names(repo: Any, query: DatasetQuery) -> list[str]:
    page = repo.datasets.list(WS, query=query)
    assert page.next_token is None
    return [d.name for d in page.items]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (DatasetQuery(), ["tickets-b", "Tickets-A", "faq", "tickets-c", "chat"]),
        (DatasetQuery(order="desc"), ["chat", "tickets-c", "faq", "Tickets-A", "tickets-b"]),
        (DatasetQuery(sort="name"), ["chat", "faq", "Tickets-A", "tickets-b", "tickets-c"]),
        (DatasetQuery(sort="name", order="desc"), ["tickets-c", "tickets-b", "Tickets-A", "faq", "chat"]),
        (DatasetQuery(statuses=frozenset({"ready"})), ["tickets-b", "faq", "chat"]),
        (DatasetQuery(statuses=frozenset({"invalid", "validating"})), ["Tickets-A", "tickets-c"]),
        (DatasetQuery(name_prefix="TICK"), ["tickets-b", "Tickets-A", "tickets-c"]),
        (DatasetQuery(name_prefix="tick", sort="name"), ["Tickets-A", "tickets-b", "tickets-c"]),
        (DatasetQuery(created_after=at(2), created_before=at(4)), ["Tickets-A", "faq"]),
        (DatasetQuery(created_after=at(2), sort="name", statuses=frozenset({"ready"})), ["chat", "faq"]),
        (
            DatasetQuery(
                name_prefix="tickets-", statuses=frozenset({"ready", "validating"}), sort="name", order="desc"
            ),
            ["tickets-c", "tickets-b"],
        ),
    ],
)
def test_dataset_filters_and_orders(
    repo: Any, datasets: Any, query: DatasetQuery, expected: list[str]
) -> None:
    assert dataset_names(repo, query) == expected


@pytest.mark.parametrize("sort", ["created_at", "name"])
def test_a_filtered_dataset_list_pages_each_match_once(repo: Any, sort: Any) -> None:
    for i in range(20):
        dataset(repo, f"d-{i:02d}", i, status="ready" if i % 2 else "invalid")
        dataset(repo, f"d-{i:02d}", i, workspace=OTHER)
    seen, pages = every(repo, "datasets", DatasetQuery(statuses=frozenset({"ready"}), sort=sort), limit=3)
    assert seen == [f"d-{i:02d}" for i in range(1, 20, 2)]
    assert pages == 4


def test_items_written_before_the_list_index_get_its_keys_from_the_backfill(aws: Any) -> None:
    # Given a model and a dataset as an earlier release wrote them (no list-index keys)
    services = Services()
    model(services, "older", 1)
    # ... and a BYOK connection as it was written before connections were re-checked
    services.connections.put(factories.connection(WS))
    client, table = services.table.client, services.table.table_name
    for item in client.scan(TableName=table)["Items"]:
        connection = item["sk"]["S"].startswith("PROVIDER#")
        later = {"transient_status", "last_news_at"} if connection else {"list_pk", "list_sk", "name_lower"}
        client.put_item(TableName=table, Item={k: v for k, v in item.items() if k not in later})
    assert services.connections.due_for_check(factories.T0 + timedelta(days=400)) == []
    by_created = ModelQuery(sort="created_at")
    assert services.models.list(WS, query=by_created).items == []

    # When the operator runs the backfill (twice: the second finds nothing to do)
    given = services.table.backfill_list_keys()
    again = services.table.backfill_list_keys()

    # Then both are in the lists the index serves
    assert (given, again) == (3, 0)
    # and the connection is among those the reconciler re-checks
    assert [
        c.workspace_id for c in services.connections.due_for_check(factories.T0 + timedelta(days=400))
    ] == [WS]
    assert [m.name for m in services.models.list(WS, query=by_created).items] == ["older"]
    assert [d.name for d in services.datasets.list(WS, query=DatasetQuery(sort="name")).items] == [
        "data-for-older"
    ]
