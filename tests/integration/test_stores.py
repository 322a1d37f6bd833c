"""The records stores, what the use cases rely on: one suite run against the DynamoDB stores (under
moto) and the in-memory fakes the fast tests use, so a use-case test on the fakes means the same.
Tests of DynamoDB alone (races, throttling, the TTL attribute) take the `dynamodb` fixture."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.fakes.stores import (
    MemoryConnections,
    MemoryDatasets,
    MemoryModels,
    MemoryRequestBudget,
    MemoryTable,
    MemoryTaskTokens,
    MemoryWorkspaces,
)
from tests.integration import factories
from tests.integration.conftest import Aws
from tunelab.adapters.dynamodb.table import RecordsTable
from tunelab.composition.wiring import Services
from tunelab.domain.errors import (
    Conflict,
    InUse,
    InvalidState,
    NameTaken,
    NotFound,
    Throttled,
    ValidationFailed,
)
from tunelab.domain.listing import ModelQuery
from tunelab.domain.records import (
    Artifacts,
    DatasetChanges,
    DeploymentState,
    Metrics,
    ModelChanges,
    PendingEmail,
    TrainingState,
)
from tunelab.domain.status import ModelStatus as S

pytestmark = pytest.mark.moto


class Clock:
    def __init__(self) -> None:
        self.now = factories.T0

    def __call__(self):
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class MemoryStores:
    """The fakes' stores, shaped like the services' (`.models`, `.datasets`, ...)."""

    def __init__(self, clock: Clock) -> None:
        table = MemoryTable(clock)
        self.workspaces = MemoryWorkspaces(table)
        self.connections = MemoryConnections(table)
        self.request_budget = MemoryRequestBudget(clock)
        self.datasets = MemoryDatasets(table)
        self.models = MemoryModels(table, self.datasets)
        self.task_tokens = MemoryTaskTokens(table)


@pytest.fixture(params=["dynamodb", "memory"])
def repo(request: pytest.FixtureRequest, clock: Clock) -> Any:
    if request.param == "memory":
        return MemoryStores(clock)
    request.getfixturevalue("aws")
    return Services(clock=clock)


@pytest.fixture
def dynamodb(aws: Aws, clock: Clock) -> Services:
    return Services(clock=clock)


def ready_dataset(repo: Any, workspace: str = "ws-acme", name: str = "support-tickets"):
    return repo.datasets.create(factories.dataset(workspace, name))


def new_model(repo: Any, workspace: str = "ws-acme", name: str = "support-bot-v1", **fields):
    ds = ready_dataset(repo, workspace, f"data-for-{name}")
    return repo.models.create(
        factories.model(workspace, name, ds.dataset_id, **fields), message="Training started."
    )


# --- create-if-absent -------------------------------------------------------------------------


def test_dataset_round_trip_and_name_taken_in_any_case(repo: Any) -> None:
    created = ready_dataset(repo)

    assert repo.datasets.get("ws-acme", created.dataset_id) == created
    with pytest.raises(NameTaken, match="SUPPORT-tickets"):
        repo.datasets.create(factories.dataset(name="SUPPORT-tickets"))


def test_model_name_taken_and_first_event(repo: Any) -> None:
    created = new_model(repo)

    with pytest.raises(NameTaken, match="Support-Bot-V1"):
        repo.models.create(factories.model(name="Support-Bot-V1", dataset_id=created.dataset.id))
    stored = repo.models.get("ws-acme", "support-bot-v1")
    assert stored.version == 1
    assert stored.hyperparameters.model_dump(exclude_none=True) == {
        "epochs": 3,
        "learning_rate": 0.0001,
        "batch_size": 1,
    }
    events = repo.models.list_events("ws-acme", "support-bot-v1").items
    assert [(e.type, e.status, e.message) for e in events] == [
        ("status_changed", S.TRAINING, "Training started.")
    ]


def test_model_needs_a_ready_dataset(repo: Any) -> None:
    validating = repo.datasets.create(factories.dataset(status="validating"))

    with pytest.raises(ValidationFailed) as raised:
        repo.models.create(factories.model(dataset_id=validating.dataset_id))
    assert raised.value.details[0].field == "dataset_id"
    assert "validating" in raised.value.message
    assert repo.models.find("ws-acme", "support-bot-v1") is None


# --- versioned updates --------------------------------------------------------------------------


def test_update_with_a_stale_version_is_a_conflict_and_keeps_the_winner(repo: Any) -> None:
    created = new_model(repo)
    read = repo.models.get("ws-acme", created.name)

    repo.models.update(
        "ws-acme", created.name, ModelChanges(storage_per_month_usd=2.5), expected_version=read.version
    )
    with pytest.raises(Conflict):
        repo.models.update(
            "ws-acme", created.name, ModelChanges(storage_per_month_usd=9.0), expected_version=read.version
        )

    stored = repo.models.get("ws-acme", created.name)
    assert stored.storage_per_month_usd == 2.5
    assert stored.version == read.version + 1


def test_unpinned_update_retries_on_a_lost_race_and_loses_nothing(
    dynamodb: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = dynamodb
    created = new_model(repo)
    other = Services()
    real_get = RecordsTable.get
    raced: list[bool] = []

    def get_then_race(self, cls, key):
        record = real_get(self, cls, key)
        if not raced and cls.__name__ == "ModelRecord":
            raced.append(True)  # another writer lands between this read and its write
            other.models.update("ws-acme", created.name, ModelChanges(storage_per_month_usd=7.0))
        return record

    monkeypatch.setattr(RecordsTable, "get", get_then_race)
    repo.models.update("ws-acme", created.name, ModelChanges(artifacts=Artifacts(uri="s3://b/model.tar.gz")))
    monkeypatch.undo()

    stored = repo.models.get("ws-acme", created.name)
    assert stored.storage_per_month_usd == 7.0
    assert stored.artifacts == Artifacts(uri="s3://b/model.tar.gz")
    assert stored.version == 3


# --- transitions --------------------------------------------------------------------------------


def test_transition_from_the_wrong_status_names_the_current_one(repo: Any) -> None:
    created = new_model(repo)
    repo.models.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)

    with pytest.raises(InvalidState, match="is Not deployed; this needs it to be Training"):
        repo.models.transition("ws-acme", created.name, {S.TRAINING}, S.STOPPING_TRAINING)
    assert repo.models.get("ws-acme", created.name).status == S.NOT_DEPLOYED


def test_transition_applies_changes_and_appends_events_oldest_first(repo: Any, clock: Clock) -> None:
    created = new_model(repo)
    clock.advance(minutes=5)
    ended = clock.now

    moved = repo.models.transition(
        "ws-acme",
        created.name,
        {S.TRAINING, S.STOPPING_TRAINING},
        S.TRAINING_FAILED,
        ModelChanges(training=TrainingState(job_id="job-1", ended_at=ended, failure_reason="Quota exceeded")),
        message="Training failed: Quota exceeded",
    )

    assert moved == repo.models.get("ws-acme", created.name)
    assert moved.status == S.TRAINING_FAILED
    assert moved.training.failure_reason == "Quota exceeded"
    assert moved.last_news_at == ended
    events = repo.models.list_events("ws-acme", created.name).items
    assert [e.status for e in events] == [S.TRAINING, S.TRAINING_FAILED]
    assert events[1].at == ended
    assert events[1].message == "Training failed: Quota exceeded"


def test_history_times_never_go_backwards_when_a_provider_stamps_to_the_second(
    repo: Services, clock: Clock
) -> None:
    # The model is created at 12:00:00.388; the provider's first note is stamped 12:00:00 (whole
    # seconds, as EventBridge's `time`) and arrives after it; a later one is stamped 12:00:07.
    clock.now = clock.now.replace(microsecond=388000)
    made_at = clock.now
    created = new_model(repo)
    provider_second = made_at.replace(microsecond=0)
    later = provider_second + timedelta(seconds=7)

    repo.models.add_message(
        "ws-acme", created.name, "Starting - Launching requested ML instances", at=provider_second
    )
    repo.models.record_metrics("ws-acme", created.name, Metrics(train_loss=1.5, step=1), at=later)
    repo.models.add_message("ws-acme", created.name, "late note", at=provider_second)

    events = repo.models.list_events("ws-acme", created.name).items
    assert [e.type for e in events] == ["status_changed", "message", "metrics", "message"]
    times = [e.at for e in events]
    assert times == sorted(times)
    # A stamp already in order is kept as the provider gave it.
    assert times[2] == later
    assert times[1] == made_at


def test_duplicate_event_changes_nothing(repo: Any) -> None:
    created = new_model(repo)
    first = repo.models.try_transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    again = repo.models.try_transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)

    assert first is not None
    assert again is None
    assert len(repo.models.list_events("ws-acme", created.name).items) == 2


def test_transition_outside_the_status_table_is_a_programming_error(repo: Any) -> None:
    created = new_model(repo)
    with pytest.raises(ValueError, match="training -> deployed"):
        repo.models.transition("ws-acme", created.name, {S.TRAINING}, S.DEPLOYED)


def test_metrics_are_kept_while_training_and_ignored_after(repo: Any) -> None:
    created = new_model(repo)
    latest = Metrics(train_loss=1.23, eval_loss=1.31, step=120, epoch=2.0)

    assert repo.models.record_metrics("ws-acme", created.name, latest) is not None
    repo.models.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    assert repo.models.record_metrics("ws-acme", created.name, Metrics(train_loss=9.9, step=1)) is None

    stored = repo.models.get("ws-acme", created.name)
    assert stored.training.metrics == latest
    assert [e.type for e in repo.models.list_events("ws-acme", created.name).items] == [
        "status_changed",
        "metrics",
        "status_changed",
    ]


# --- pagination -----------------------------------------------------------------------------------


def test_pagination_round_trip(repo: Any) -> None:
    created = [ready_dataset(repo, name=f"data-{i}").dataset_id for i in range(7)]

    seen, token, pages = [], None, 0
    while True:
        page = repo.datasets.list("ws-acme", limit=3, next_token=token)
        seen += [d.dataset_id for d in page.items]
        pages += 1
        token = page.next_token
        if token is None:
            break

    assert pages == 3
    assert seen == sorted(created)  # oldest first, each once


def test_exactly_a_page_has_no_next_token(repo: Any) -> None:
    for i in range(3):
        ready_dataset(repo, name=f"data-{i}")
    page = repo.datasets.list("ws-acme", limit=3)
    assert len(page.items) == 3
    assert page.next_token is None


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(
            json.dumps({"v": 1, "l": "datasets", "k": {"pk": "WS#ws-other", "sk": "DS#x"}}).encode()
        ).decode(),
        base64.urlsafe_b64encode(
            json.dumps({"v": 1, "l": "models", "k": {"pk": "WS#ws-acme", "sk": "MODEL#x"}}).encode()
        ).decode(),
    ],
    ids=["garbage", "empty", "other-workspace", "other-list"],
)
def test_a_token_this_list_did_not_return_is_a_validation_error(repo: Any, token: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        repo.datasets.list("ws-acme", limit=3, next_token=token)
    assert raised.value.details[0].field == "next_token"


def test_a_token_goes_on_only_in_the_order_it_was_read(repo: Any) -> None:
    for i in range(5):
        new_model(repo, name=f"model-{i}")
    newest = ModelQuery(sort="name", order="desc")
    first = repo.models.list("ws-acme", limit=2, query=newest)
    assert [m.name for m in first.items] == ["model-4", "model-3"]

    with pytest.raises(ValidationFailed) as raised:
        repo.models.list("ws-acme", limit=2, query=ModelQuery(sort="name"), next_token=first.next_token)
    assert raised.value.details[0].field == "next_token"
    second = repo.models.list("ws-acme", limit=2, query=newest, next_token=first.next_token)
    assert [m.name for m in second.items] == ["model-2", "model-1"]


def test_a_token_from_before_tokens_said_their_order_is_read_in_the_order_asked_for(
    dynamodb: Services,
) -> None:
    repo = dynamodb
    for i in range(3):
        new_model(repo, name=f"model-{i}")
    key = {"pk": "WS#ws-acme", "sk": "MODEL#model-1"}
    older = base64.urlsafe_b64encode(json.dumps({"v": 1, "l": "models", "k": key}).encode()).decode()

    page = repo.models.list("ws-acme", limit=2, query=ModelQuery(sort="name", order="desc"), next_token=older)

    assert [m.name for m in page.items] == ["model-0"]


def test_models_filtered_by_status_across_pages(repo: Any) -> None:
    for i in range(5):
        new_model(repo, name=f"model-{i}")
    for i in (0, 2, 4):
        repo.models.transition("ws-acme", f"model-{i}", {S.TRAINING}, S.NOT_DEPLOYED)

    first = repo.models.list("ws-acme", limit=2, status={S.NOT_DEPLOYED})
    second = repo.models.list("ws-acme", limit=2, status={S.NOT_DEPLOYED}, next_token=first.next_token)

    assert [m.name for m in first.items] == ["model-0", "model-2"]
    assert [m.name for m in second.items] == ["model-4"]
    assert second.next_token is None


# --- lookups and isolation ----------------------------------------------------------------------


def test_find_by_provider_job_and_endpoint(repo: Any) -> None:
    created = new_model(repo, provider="sagemaker", hosting="byok")
    repo.models.update(
        "ws-acme", created.name, ModelChanges(training=TrainingState(job_id="support-bot-v1-a1b2"))
    )

    found = repo.models.find_by_job("sagemaker", "support-bot-v1-a1b2")
    assert found is not None
    assert (found.workspace_id, found.name) == ("ws-acme", "support-bot-v1")
    assert repo.models.find_by_job("bedrock", "support-bot-v1-a1b2") is None

    repo.models.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    repo.models.transition(
        "ws-acme",
        created.name,
        {S.NOT_DEPLOYED},
        S.DEPLOYING,
        ModelChanges(deployment=DeploymentState(endpoint="ep-1")),
    )
    by_endpoint = repo.models.find_by_endpoint("sagemaker", "ep-1")
    assert by_endpoint is not None
    assert by_endpoint.status == S.DEPLOYING
    # An endpoint name is the provider's: another provider's endpoint of that name is not this model's.
    assert repo.models.find_by_endpoint("local", "ep-1") is None


def test_a_deployed_model_written_by_the_earlier_release_is_found_by_its_endpoint(
    dynamodb: Services, aws: Aws
) -> None:
    # Before endpoint keys named their provider, the item held the bare endpoint name: a model
    # deployed then still gets its endpoint's events after the upgrade.
    created = new_model(dynamodb, provider="sagemaker", hosting="byok")
    dynamodb.models.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    dynamodb.models.transition(
        "ws-acme",
        created.name,
        {S.NOT_DEPLOYED},
        S.DEPLOYING,
        ModelChanges(deployment=DeploymentState(endpoint="ep-old")),
    )
    dynamodb.models.transition("ws-acme", created.name, {S.DEPLOYING}, S.DEPLOYED)
    key = {"pk": {"S": "WS#ws-acme"}, "sk": {"S": "MODEL#support-bot-v1"}}
    aws.dynamodb.update_item(
        TableName=aws.table_name,
        Key=key,
        UpdateExpression="SET endpoint_key = :bare",
        ExpressionAttributeValues={":bare": {"S": "ep-old"}},
    )

    found = dynamodb.models.find_by_endpoint("sagemaker", "ep-old")

    assert found is not None
    assert (found.name, found.status) == ("support-bot-v1", S.DEPLOYED)
    assert dynamodb.models.find_by_endpoint("bedrock", "ep-old") is None


def test_another_workspace_sees_nothing(repo: Any) -> None:
    created = new_model(repo, workspace="ws-acme")
    ds = repo.datasets.list("ws-acme").items[0]

    with pytest.raises(NotFound):
        repo.models.get("ws-globex", created.name)
    with pytest.raises(NotFound):
        repo.datasets.get("ws-globex", ds.dataset_id)
    with pytest.raises(NotFound):
        repo.models.transition("ws-globex", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    assert repo.models.list("ws-globex").items == []
    assert repo.models.get("ws-acme", created.name).status == S.TRAINING


def test_stale_transient_models_for_the_reconciler(repo: Any, clock: Clock) -> None:
    quiet = new_model(repo, name="quiet")
    talking = new_model(repo, name="talking")
    done = new_model(repo, name="done")
    repo.models.transition("ws-acme", done.name, {S.TRAINING}, S.NOT_DEPLOYED)
    clock.advance(hours=2)
    repo.models.record_metrics("ws-acme", talking.name, Metrics(train_loss=1.0, step=10))

    stale = repo.models.stale(
        clock.now - timedelta(hours=1), statuses={S.TRAINING, S.STOPPING_TRAINING, S.DEPLOYING}
    )

    assert [m.name for m in stale] == [quiet.name]


def test_emails_owed_are_found_across_workspaces_until_they_are_sent(repo: Any, clock: Clock) -> None:
    first = new_model(repo, name="first")
    second = new_model(repo, name="second", workspace="ws-globex")
    quiet = new_model(repo, name="quiet")
    repo.models.transition(
        "ws-acme",
        first.name,
        {S.TRAINING},
        S.NOT_DEPLOYED,
        ModelChanges(pending_email=PendingEmail(kind="training_completed", since=clock.now)),
    )
    clock.advance(minutes=1)
    repo.models.transition(
        "ws-globex",
        second.name,
        {S.TRAINING},
        S.TRAINING_FAILED,
        ModelChanges(pending_email=PendingEmail(kind="training_failed", reason="no", since=clock.now)),
    )
    repo.models.transition("ws-acme", quiet.name, {S.TRAINING}, S.TRAINING_STOPPED)

    owed = repo.models.unsent_emails()
    repo.models.update("ws-acme", first.name, ModelChanges(pending_email=None))

    assert [(m.name, m.pending_email.kind) for m in owed] == [
        ("first", "training_completed"),
        ("second", "training_failed"),
    ]
    assert [m.name for m in repo.models.unsent_emails()] == ["second"]
    assert repo.models.get("ws-acme", first.name).pending_email is None
    # Not a transient model for the reconciler's other question.
    assert repo.models.stale(clock.now + timedelta(hours=1), statuses={S.TRAINING}) == []


# --- deletion ---------------------------------------------------------------------------------


def test_a_dataset_in_use_cannot_be_deleted_until_its_model_is(repo: Any) -> None:
    created = new_model(repo)

    with pytest.raises(InUse, match="support-bot-v1"):
        repo.datasets.delete("ws-acme", created.dataset.id)
    with pytest.raises(InvalidState, match="is Training"):
        repo.models.delete("ws-acme", created.name, allowed={S.NOT_DEPLOYED, S.TRAINING_FAILED})

    repo.models.transition("ws-acme", created.name, {S.TRAINING}, S.TRAINING_FAILED)
    repo.models.delete("ws-acme", created.name, allowed={S.NOT_DEPLOYED, S.TRAINING_FAILED})
    repo.datasets.delete("ws-acme", created.dataset.id)

    assert repo.models.find("ws-acme", created.name) is None
    assert repo.datasets.find("ws-acme", created.dataset.id) is None
    # Both names are free again, and the new model starts with a history of its own.
    again = new_model(repo)
    assert len(repo.models.list_events("ws-acme", again.name).items) == 1


# --- workspaces, connections, task tokens -------------------------------------------------------


def test_workspace_created_on_first_sight_its_plan_set_by_the_operator(repo: Any) -> None:
    first = repo.workspaces.ensure("ws-new", default_plan="pay_as_you_go")
    kept = repo.workspaces.ensure("ws-new", default_plan="trial")
    upgraded = repo.workspaces.set_plan("ws-new", "subscription", default_plan="pay_as_you_go")
    created = repo.workspaces.set_plan("ws-other", "internal", default_plan="pay_as_you_go")

    assert (first.plan, kept.plan, upgraded.plan) == ("pay_as_you_go", "pay_as_you_go", "subscription")
    assert repo.workspaces.get("ws-new").plan == "subscription"
    assert (created.plan, repo.workspaces.get("ws-other").plan) == ("internal", "internal")


def test_a_workspaces_connector_external_id_is_kept_from_the_first_ask(repo: Any) -> None:
    repo.workspaces.ensure("ws-new", default_plan="subscription")

    first = repo.workspaces.ensure_connector_external_id("ws-new", "tunelab-" + "a" * 32)
    again = repo.workspaces.ensure_connector_external_id("ws-new", "tunelab-" + "b" * 32)

    assert first == again == "tunelab-" + "a" * 32
    assert repo.workspaces.get("ws-new").connector_external_id == first


def test_each_workspace_has_its_own_request_budget_per_window(repo: Any, clock: Clock) -> None:
    spent = [repo.request_budget.spend("ws-busy", limit=3, window_s=60) for _ in range(4)]
    other = repo.request_budget.spend("ws-quiet", limit=3, window_s=60)
    clock.advance(seconds=60)
    next_window = repo.request_budget.spend("ws-busy", limit=3, window_s=60)

    assert spent == [True, True, True, False]
    assert other is True
    assert next_window is True


def test_one_role_belongs_to_one_workspace(repo: Any) -> None:
    role = "arn:aws:iam::210987654321:role/tunelab-connector"
    repo.connections.put(factories.connection("ws-acme", role_arn=role))
    repo.connections.put(factories.connection("ws-acme", role_arn=role))  # re-verified: the same holder

    # Another workspace cannot connect the same role (IAM role names compare case-insensitively).
    with pytest.raises(InUse, match="another tunelab workspace"):
        repo.connections.put(factories.connection("ws-globex", role_arn=role.replace("tunelab-", "TUNELAB-")))
    assert repo.connections.find("ws-globex") is None

    # Once the first moves to another role, or disconnects, the role is free.
    repo.connections.put(factories.connection("ws-acme", role_arn=role + "-2"))
    repo.connections.put(factories.connection("ws-globex", role_arn=role))
    with pytest.raises(InUse):
        repo.connections.put(factories.connection("ws-acme", role_arn=role))
    assert repo.connections.delete("ws-globex")
    repo.connections.put(factories.connection("ws-acme", role_arn=role))
    assert repo.connections.find("ws-acme").role_arn == role


def test_task_token_round_trip_and_expiry(repo: Any, clock: Clock) -> None:
    repo.task_tokens.put(
        "ws-acme", "support-bot-v1", "training", "token-abc", until=clock.now + timedelta(hours=1)
    )

    assert repo.task_tokens.get("ws-acme", "support-bot-v1", "training") == "token-abc"
    assert repo.task_tokens.get("ws-acme", "support-bot-v1", "deployment") is None
    clock.advance(hours=2)
    assert repo.task_tokens.get("ws-acme", "support-bot-v1", "training") is None


def test_task_tokens_carry_the_ttl_attribute(dynamodb: Services, aws: Aws, clock: Clock) -> None:
    dynamodb.task_tokens.put("ws-acme", "m", "training", "t", until=clock.now + timedelta(minutes=10))
    ttl = aws.dynamodb.describe_time_to_live(TableName=aws.table_name)["TimeToLiveDescription"]
    item = aws.dynamodb.get_item(
        TableName=aws.table_name, Key={"pk": {"S": "WS#ws-acme"}, "sk": {"S": "TASKTOKEN#m#training"}}
    )["Item"]
    assert int(item[ttl["AttributeName"]]["N"]) == int((factories.T0 + timedelta(minutes=10)).timestamp())


def test_dynamodb_throttling_is_the_domains_throttled(aws: Aws) -> None:
    client = boto3.client("dynamodb", region_name=aws.region)
    repo = Services(clients={"dynamodb": client})
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException")
        with pytest.raises(Throttled):
            repo.models.find("ws-acme", "support-bot-v1")


def test_dataset_changes_need_the_status_and_version_read(repo: Any) -> None:
    created = repo.datasets.create(factories.dataset(status="uploading"))

    validating = repo.datasets.update(
        "ws-acme", created.dataset_id, DatasetChanges(status="validating"), expected_status={"uploading"}
    )
    with pytest.raises(InvalidState, match="is validating; this needs it to be uploading"):
        repo.datasets.update(
            "ws-acme", created.dataset_id, DatasetChanges(status="ready"), expected_status={"uploading"}
        )
    with pytest.raises(Conflict):
        repo.datasets.update(
            "ws-acme", created.dataset_id, DatasetChanges(rows=5), expected_version=validating.version - 1
        )
    assert repo.datasets.get("ws-acme", created.dataset_id).status == "validating"


def test_a_connection_is_replaced_by_the_latest_verification_and_forgotten(repo: Any) -> None:
    first = repo.connections.put(factories.connection(region="us-west-2"))
    second = repo.connections.put(factories.connection(region="eu-west-1"))

    assert (second.version, second.created_at, second.region) == (
        first.version + 1,
        first.created_at,
        "eu-west-1",
    )
    assert repo.connections.find("ws-acme", "sagemaker") == second
    assert repo.connections.delete("ws-acme", "sagemaker") is True
    assert repo.connections.delete("ws-acme", "sagemaker") is False
    assert repo.connections.find("ws-acme", "sagemaker") is None


def test_connections_due_for_a_check_asked_for_first_then_the_longest_unchecked(repo: Any) -> None:
    t0 = factories.T0
    day = timedelta(days=1)
    role = "arn:aws:iam::210987654321:role/tunelab-connector"
    repo.connections.put(factories.connection("ws-fresh", role_arn=f"{role}-1", checked_at=t0))
    repo.connections.put(factories.connection("ws-old", role_arn=f"{role}-2", checked_at=t0 - 3 * day))
    repo.connections.put(factories.connection("ws-older", role_arn=f"{role}-3", checked_at=t0 - 5 * day))
    repo.connections.put(
        factories.connection("ws-asked", role_arn=f"{role}-4", checked_at=t0, recheck_requested_at=t0)
    )
    due = repo.connections.due_for_check(t0 - day)
    assert [c.workspace_id for c in due] == ["ws-asked", "ws-older", "ws-old"]
    assert [c.workspace_id for c in repo.connections.due_for_check(t0 - day, limit=2)] == [
        "ws-asked",
        "ws-older",
    ]


def test_a_connection_written_over_a_version_that_moved_is_a_conflict(repo: Any) -> None:
    first = repo.connections.put(factories.connection())
    repo.connections.put(factories.connection(region="eu-west-1"))
    with pytest.raises(Conflict):
        repo.connections.put(first.model_copy(update={"status": "error"}), expected_version=first.version)
    assert repo.connections.find("ws-acme").status == "connected"
