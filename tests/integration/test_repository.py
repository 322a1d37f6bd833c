"""The DynamoDB repository under moto: what other code and, through it, users rely on."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import boto3
import pytest
from botocore.stub import Stubber

from tests.integration import factories
from tests.integration.conftest import Aws
from tunelab.adapters.dynamodb import Repository
from tunelab.domain.errors import (
    Conflict,
    InUse,
    InvalidState,
    NameTaken,
    NotFound,
    Throttled,
    ValidationFailed,
)
from tunelab.domain.records import DeploymentState, Metrics, TrainingState
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


@pytest.fixture
def repo(aws: Aws, clock: Clock) -> Repository:
    return Repository(aws.table_name, aws.dynamodb, clock=clock)


def ready_dataset(repo: Repository, workspace: str = "ws-acme", name: str = "support-tickets"):
    return repo.create_dataset(factories.dataset(workspace, name))


def new_model(repo: Repository, workspace: str = "ws-acme", name: str = "support-bot-v1", **fields):
    ds = ready_dataset(repo, workspace, f"data-for-{name}")
    return repo.create_model(
        factories.model(workspace, name, ds.dataset_id, **fields), message="Training started."
    )


# --- create-if-absent -------------------------------------------------------------------------


def test_dataset_round_trip_and_name_taken_in_any_case(repo: Repository) -> None:
    created = ready_dataset(repo)

    assert repo.get_dataset("ws-acme", created.dataset_id) == created
    with pytest.raises(NameTaken, match="SUPPORT-tickets"):
        repo.create_dataset(factories.dataset(name="SUPPORT-tickets"))


def test_model_name_taken_and_first_event(repo: Repository) -> None:
    created = new_model(repo)

    with pytest.raises(NameTaken, match="Support-Bot-V1"):
        repo.create_model(factories.model(name="Support-Bot-V1", dataset_id=created.dataset.id))
    stored = repo.get_model("ws-acme", "support-bot-v1")
    assert stored.version == 1
    assert stored.hyperparameters.model_dump(exclude_none=True) == {
        "epochs": 3,
        "learning_rate": 0.0001,
        "batch_size": 1,
    }
    events = repo.list_events("ws-acme", "support-bot-v1").items
    assert [(e.type, e.status, e.message) for e in events] == [
        ("status_changed", S.TRAINING, "Training started.")
    ]


def test_model_needs_a_ready_dataset(repo: Repository) -> None:
    validating = repo.create_dataset(factories.dataset(status="validating"))

    with pytest.raises(ValidationFailed) as raised:
        repo.create_model(factories.model(dataset_id=validating.dataset_id))
    assert raised.value.details[0].field == "dataset_id"
    assert "validating" in raised.value.message
    assert repo.find_model("ws-acme", "support-bot-v1") is None


# --- versioned updates --------------------------------------------------------------------------


def test_update_with_a_stale_version_is_a_conflict_and_keeps_the_winner(repo: Repository) -> None:
    created = new_model(repo)
    read = repo.get_model("ws-acme", created.name)

    repo.update_model("ws-acme", created.name, {"storage_per_month_usd": 2.5}, expected_version=read.version)
    with pytest.raises(Conflict):
        repo.update_model(
            "ws-acme", created.name, {"storage_per_month_usd": 9.0}, expected_version=read.version
        )

    stored = repo.get_model("ws-acme", created.name)
    assert stored.storage_per_month_usd == 2.5
    assert stored.version == read.version + 1


def test_unpinned_update_retries_on_a_lost_race_and_loses_nothing(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = new_model(repo)
    other = Repository(repo.table_name, repo.client)
    real_get = Repository._get
    raced: list[bool] = []

    def get_then_race(self, cls, key):
        record = real_get(self, cls, key)
        if not raced and cls.__name__ == "ModelRecord":
            raced.append(True)  # another writer lands between this read and its write
            other.update_model("ws-acme", created.name, {"storage_per_month_usd": 7.0})
        return record

    monkeypatch.setattr(Repository, "_get", get_then_race)
    repo.update_model("ws-acme", created.name, {"base_fine_tuned_model": "support-bot-v0"})
    monkeypatch.undo()

    stored = repo.get_model("ws-acme", created.name)
    assert stored.storage_per_month_usd == 7.0
    assert stored.base_fine_tuned_model == "support-bot-v0"
    assert stored.version == 3


# --- transitions --------------------------------------------------------------------------------


def test_transition_from_the_wrong_status_names_the_current_one(repo: Repository) -> None:
    created = new_model(repo)
    repo.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)

    with pytest.raises(InvalidState, match="is Not deployed; this needs it to be Training"):
        repo.transition("ws-acme", created.name, {S.TRAINING}, S.STOPPING_TRAINING)
    assert repo.get_model("ws-acme", created.name).status == S.NOT_DEPLOYED


def test_transition_applies_changes_and_appends_events_oldest_first(repo: Repository, clock: Clock) -> None:
    created = new_model(repo)
    clock.advance(minutes=5)
    ended = clock.now

    moved = repo.transition(
        "ws-acme",
        created.name,
        {S.TRAINING, S.STOPPING_TRAINING},
        S.TRAINING_FAILED,
        {"training": TrainingState(job_id="job-1", ended_at=ended, failure_reason="Quota exceeded")},
        message="Training failed: Quota exceeded",
    )

    assert moved == repo.get_model("ws-acme", created.name)
    assert moved.status == S.TRAINING_FAILED
    assert moved.training.failure_reason == "Quota exceeded"
    assert moved.last_news_at == ended
    events = repo.list_events("ws-acme", created.name).items
    assert [e.status for e in events] == [S.TRAINING, S.TRAINING_FAILED]
    assert events[1].at == ended
    assert events[1].message == "Training failed: Quota exceeded"


def test_history_times_never_go_backwards_when_a_provider_stamps_to_the_second(
    repo: Repository, clock: Clock
) -> None:
    # The model is created at 12:00:00.388; the provider's first note is stamped 12:00:00 (whole
    # seconds, as EventBridge's `time`) and arrives after it; a later one is stamped 12:00:07.
    clock.now = clock.now.replace(microsecond=388000)
    made_at = clock.now
    created = new_model(repo)
    provider_second = made_at.replace(microsecond=0)
    later = provider_second + timedelta(seconds=7)

    repo.add_message(
        "ws-acme", created.name, "Starting - Launching requested ML instances", at=provider_second
    )
    repo.record_metrics("ws-acme", created.name, Metrics(train_loss=1.5, step=1), at=later)
    repo.add_message("ws-acme", created.name, "late note", at=provider_second)

    events = repo.list_events("ws-acme", created.name).items
    assert [e.type for e in events] == ["status_changed", "message", "metrics", "message"]
    times = [e.at for e in events]
    assert times == sorted(times)
    # A stamp already in order is kept as the provider gave it.
    assert times[2] == later
    assert times[1] == made_at


def test_duplicate_event_changes_nothing(repo: Repository) -> None:
    created = new_model(repo)
    first = repo.try_transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    again = repo.try_transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)

    assert first is not None
    assert again is None
    assert len(repo.list_events("ws-acme", created.name).items) == 2


def test_transition_outside_the_status_table_is_a_programming_error(repo: Repository) -> None:
    created = new_model(repo)
    with pytest.raises(ValueError, match="training -> deployed"):
        repo.transition("ws-acme", created.name, {S.TRAINING}, S.DEPLOYED)


def test_metrics_are_kept_while_training_and_ignored_after(repo: Repository) -> None:
    created = new_model(repo)
    latest = Metrics(train_loss=1.23, eval_loss=1.31, step=120, epoch=2.0)

    assert repo.record_metrics("ws-acme", created.name, latest) is not None
    repo.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    assert repo.record_metrics("ws-acme", created.name, Metrics(train_loss=9.9, step=1)) is None

    stored = repo.get_model("ws-acme", created.name)
    assert stored.training.metrics == latest
    assert [e.type for e in repo.list_events("ws-acme", created.name).items] == [
        "status_changed",
        "metrics",
        "status_changed",
    ]


# --- pagination -----------------------------------------------------------------------------------


def test_pagination_round_trip(repo: Repository) -> None:
    created = [ready_dataset(repo, name=f"data-{i}").dataset_id for i in range(7)]

    seen, token, pages = [], None, 0
    while True:
        page = repo.list_datasets("ws-acme", limit=3, next_token=token)
        seen += [d.dataset_id for d in page.items]
        pages += 1
        token = page.next_token
        if token is None:
            break

    assert pages == 3
    assert seen == sorted(created)  # oldest first, each once


def test_exactly_a_page_has_no_next_token(repo: Repository) -> None:
    for i in range(3):
        ready_dataset(repo, name=f"data-{i}")
    page = repo.list_datasets("ws-acme", limit=3)
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
def test_a_token_this_list_did_not_return_is_a_validation_error(repo: Repository, token: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        repo.list_datasets("ws-acme", limit=3, next_token=token)
    assert raised.value.details[0].field == "next_token"


def test_models_filtered_by_status_across_pages(repo: Repository) -> None:
    for i in range(5):
        new_model(repo, name=f"model-{i}")
    for i in (0, 2, 4):
        repo.transition("ws-acme", f"model-{i}", {S.TRAINING}, S.NOT_DEPLOYED)

    first = repo.list_models("ws-acme", limit=2, status={S.NOT_DEPLOYED})
    second = repo.list_models("ws-acme", limit=2, status={S.NOT_DEPLOYED}, next_token=first.next_token)

    assert [m.name for m in first.items] == ["model-0", "model-2"]
    assert [m.name for m in second.items] == ["model-4"]
    assert second.next_token is None


# --- lookups and isolation ----------------------------------------------------------------------


def test_find_by_provider_job_and_endpoint(repo: Repository) -> None:
    created = new_model(repo, provider="sagemaker", hosting="byok")
    repo.update_model("ws-acme", created.name, {"training": TrainingState(job_id="support-bot-v1-a1b2")})

    found = repo.find_model_by_job("sagemaker", "support-bot-v1-a1b2")
    assert found is not None
    assert (found.workspace_id, found.name) == ("ws-acme", "support-bot-v1")
    assert repo.find_model_by_job("bedrock", "support-bot-v1-a1b2") is None

    repo.transition("ws-acme", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    repo.transition(
        "ws-acme",
        created.name,
        {S.NOT_DEPLOYED},
        S.DEPLOYING,
        {"deployment": DeploymentState(endpoint="ep-1")},
    )
    by_endpoint = repo.find_model_by_endpoint("ep-1")
    assert by_endpoint is not None
    assert by_endpoint.status == S.DEPLOYING


def test_another_workspace_sees_nothing(repo: Repository) -> None:
    created = new_model(repo, workspace="ws-acme")
    ds = repo.list_datasets("ws-acme").items[0]

    with pytest.raises(NotFound):
        repo.get_model("ws-globex", created.name)
    with pytest.raises(NotFound):
        repo.get_dataset("ws-globex", ds.dataset_id)
    with pytest.raises(NotFound):
        repo.transition("ws-globex", created.name, {S.TRAINING}, S.NOT_DEPLOYED)
    assert repo.list_models("ws-globex").items == []
    assert repo.get_model("ws-acme", created.name).status == S.TRAINING


def test_stale_transient_models_for_the_reconciler(repo: Repository, clock: Clock) -> None:
    quiet = new_model(repo, name="quiet")
    talking = new_model(repo, name="talking")
    done = new_model(repo, name="done")
    repo.transition("ws-acme", done.name, {S.TRAINING}, S.NOT_DEPLOYED)
    clock.advance(hours=2)
    repo.record_metrics("ws-acme", talking.name, Metrics(train_loss=1.0, step=10))

    stale = repo.stale_models(clock.now - timedelta(hours=1))

    assert [m.name for m in stale] == [quiet.name]


# --- deletion ---------------------------------------------------------------------------------


def test_a_dataset_in_use_cannot_be_deleted_until_its_model_is(repo: Repository) -> None:
    created = new_model(repo)

    with pytest.raises(InUse, match="support-bot-v1"):
        repo.delete_dataset("ws-acme", created.dataset.id)
    with pytest.raises(InvalidState, match="is Training"):
        repo.delete_model("ws-acme", created.name, allowed={S.NOT_DEPLOYED, S.TRAINING_FAILED})

    repo.transition("ws-acme", created.name, {S.TRAINING}, S.TRAINING_FAILED)
    repo.delete_model("ws-acme", created.name, allowed={S.NOT_DEPLOYED, S.TRAINING_FAILED})
    repo.delete_dataset("ws-acme", created.dataset.id)

    assert repo.find_model("ws-acme", created.name) is None
    assert repo.find_dataset("ws-acme", created.dataset.id) is None
    # Both names are free again, and the new model starts with a history of its own.
    again = new_model(repo)
    assert len(repo.list_events("ws-acme", again.name).items) == 1


# --- workspaces, connections, task tokens -------------------------------------------------------


def test_workspace_created_on_first_sight_and_following_the_plan_claim(repo: Repository) -> None:
    first = repo.ensure_workspace("ws-new", plan=None, default_plan="pay_as_you_go")
    kept = repo.ensure_workspace("ws-new", plan=None, default_plan="trial")
    upgraded = repo.ensure_workspace("ws-new", plan="subscription", default_plan="pay_as_you_go")

    assert (first.plan, kept.plan, upgraded.plan) == ("pay_as_you_go", "pay_as_you_go", "subscription")
    assert repo.get_workspace("ws-new").plan == "subscription"


def test_task_token_round_trip_and_expiry(repo: Repository, clock: Clock) -> None:
    repo.put_task_token("ws-acme", "support-bot-v1", "training", "token-abc", ttl=timedelta(hours=1))

    assert repo.get_task_token("ws-acme", "support-bot-v1", "training") == "token-abc"
    assert repo.get_task_token("ws-acme", "support-bot-v1", "deployment") is None
    clock.advance(hours=2)
    assert repo.get_task_token("ws-acme", "support-bot-v1", "training") is None


def test_task_tokens_carry_the_ttl_attribute(repo: Repository, aws: Aws) -> None:
    repo.put_task_token("ws-acme", "m", "training", "t", ttl=timedelta(minutes=10))
    ttl = aws.dynamodb.describe_time_to_live(TableName=aws.table_name)["TimeToLiveDescription"]
    item = aws.dynamodb.get_item(
        TableName=aws.table_name, Key={"pk": {"S": "WS#ws-acme"}, "sk": {"S": "TASKTOKEN#m#training"}}
    )["Item"]
    assert int(item[ttl["AttributeName"]]["N"]) == int((factories.T0 + timedelta(minutes=10)).timestamp())


def test_dynamodb_throttling_is_the_domains_throttled(aws: Aws) -> None:
    client = boto3.client("dynamodb", region_name=aws.region)
    repo = Repository(aws.table_name, client)
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code="ProvisionedThroughputExceededException")
        with pytest.raises(Throttled):
            repo.find_model("ws-acme", "support-bot-v1")
