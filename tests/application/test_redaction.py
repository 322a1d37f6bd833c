"""Tenants never read the platform's ARNs, account, buckets or server paths in what AWS and providers say:
failure reasons of trainings and deployments keep the sentence and lose those names; a BYOK customer's
own account and bucket stay in their reasons."""

from __future__ import annotations

import json

import pytest

from tests.application.conftest import ADA, connect_sagemaker, created_model, ready_dataset, sagemaker_request
from tests.application.test_deployments import _deployed, _deploying, _run
from tests.application.test_fine_tuned_models import _finish, _started
from tests.fakes import FakeContext
from tunelab.application import deployments, fine_tuned_models, redaction
from tunelab.application.redaction import Redaction
from tunelab.application.workflows import FinishDeploymentEvent, TaskError, TrainingOutcome
from tunelab.domain.events import MODEL_STATUS_CHANGED
from tunelab.domain.providers import DeploymentState
from tunelab.domain.records import ModelRecord

PLATFORM = "999988887777"
CUSTOMER = "210987654321"  # the BYOK connection's account in the fakes (`connect_sagemaker`)
PLATFORM_ROLE = f"arn:aws:sts::{PLATFORM}:assumed-role/tunelab-prod-bedrock/TrainingSession"
PLATFORM_FILE = "s3://tunelab-prod-artifacts-1a2b/ws-acme/support-bot/training/train.jsonl"
BEDROCK_REASON = (
    f"User: {PLATFORM_ROLE} is not authorized to perform: s3:GetObject on resource: "
    f"arn:aws:s3:::tunelab-prod-artifacts-1a2b/ws-acme/support-bot/training/train.jsonl because no "
    f"identity-based policy allows the s3:GetObject action. Could not read {PLATFORM_FILE}."
)
LEAKS = (PLATFORM, "tunelab-prod-bedrock", "tunelab-prod-artifacts", "arn:aws:sts", "arn:aws:s3", "s3://")


def assert_nothing_of_the_platform(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


def everything_the_tenant_reads(ctx: FakeContext, record: ModelRecord) -> str:
    """The failure reason, the history's messages, the status events' reasons and the emails, as one text."""
    stored = ctx.models.get(record.workspace_id, record.name)
    history = ctx.models.list_events(record.workspace_id, record.name, limit=100).items
    reasons = [str(e.data.get("reason")) for e in ctx.events.named(MODEL_STATUS_CHANGED)]
    emails = [f"{m.subject}\n{m.text}\n{m.html}" for m in ctx.notifier.sent]
    messages = [h.message or "" for h in history]
    return "\n".join([stored.training.failure_reason or "", *messages, *reasons, *emails])


# --- the rules ------------------------------------------------------------------------------------


MANAGED = Redaction(platform_buckets=frozenset({"tunelab-prod-datasets"}), tenant_accounts=frozenset())
BYOK = Redaction(tenant_accounts=frozenset({CUSTOMER}), tenant_buckets=frozenset({"customer-artifacts"}))
API = redaction.for_platform([PLATFORM], ["tunelab-prod-datasets", "tunelab-prod-artifacts-1a2b"])


@pytest.mark.parametrize(
    ("rules", "text", "shown"),
    [
        (MANAGED, f"User: {PLATFORM_ROLE} is not authorized.", "User: [tunelab role] is not authorized."),
        (MANAGED, f"Role arn:aws:iam::{PLATFORM}:role/tunelab-bedrock", "Role [tunelab role]"),
        (MANAGED, f"Read {PLATFORM_FILE}.", "Read [tunelab storage]."),
        (MANAGED, "Bucket tunelab-prod-datasets is private", "Bucket [tunelab storage] is private"),
        (MANAGED, f"Model arn:aws:bedrock:us-east-1:{PLATFORM}:custom-model/x", "Model [tunelab resource]"),
        (MANAGED, f"Account {PLATFORM} lacks quota", "Account [tunelab account] lacks quota"),
        (MANAGED, 'File "/var/task/tunelab/x.py", line 3', 'File "[server path]", line 3'),
        (MANAGED, "see /home/ops/.tunelab/local/jobs/log.txt.", "see [server path]."),
        (MANAGED, f"cut at arn:aws:iam::{PLATFORM[:5]}", "cut at [tunelab resource]"),
        (
            MANAGED,
            "https://tunelab-prod-artifacts-1a2b.s3.us-east-1.amazonaws.com/k?X-Amz=1 expired",
            "[tunelab storage] expired",
        ),
        (
            BYOK,
            f"arn:aws:iam::{CUSTOMER}:role/tunelab-connector lacks s3:PutObject on s3://customer-artifacts/x",
            None,
        ),
        (
            BYOK,
            f"Bucket s3://customer-artifacts/out and {PLATFORM_FILE}",
            "Bucket s3://customer-artifacts/out and [tunelab storage]",
        ),
        (BYOK, f"User: {PLATFORM_ROLE} may not assume it", "User: [tunelab role] may not assume it"),
        (API, f"arn:aws:iam::{CUSTOMER}:role/x may not read s3://customer-artifacts/y", None),
        (
            API,
            f"{PLATFORM_ROLE} may not read s3://tunelab-prod-datasets/ws/ds.csv",
            "[tunelab role] may not read [tunelab storage]",
        ),
        (MANAGED, "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0 is public", None),
        (MANAGED, "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess is AWS's", None),
        (MANAGED, "The dataset has 3 rows; see /v1/datasets and s3:GetObject.", None),
    ],
)
def test_what_is_hidden_and_what_stays(rules: Redaction, text: str, shown: str | None) -> None:
    assert rules(text) == (text if shown is None else shown)


# --- training -------------------------------------------------------------------------------------


def test_a_bedrock_failure_naming_the_platform_reaches_the_tenant_without_it(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))

    finished = _finish(
        ctx, model, outcome=TrainingOutcome(outcome="failed", reason=BEDROCK_REASON).model_dump()
    )

    stored = ctx.models.get(ADA.workspace, model.name)
    reason = stored.training.failure_reason or ""
    assert reason.startswith("User: [tunelab role] is not authorized to perform: s3:GetObject on resource: ")
    assert "Could not read [tunelab storage]." in reason
    assert finished.reason == reason
    assert_nothing_of_the_platform(everything_the_tenant_reads(ctx, model))


def test_a_workflow_error_cut_to_length_leaves_no_part_of_an_arn(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    # The ARN straddles the 300th character, where the reason is cut.
    message = "x" * 280 + f" {PLATFORM_ROLE} denied"
    cause = json.dumps({"errorType": "KeyError", "errorMessage": message})

    _finish(ctx, model, error=TaskError(Error="KeyError", Cause=cause).model_dump())

    reason = ctx.models.get(ADA.workspace, model.name).training.failure_reason or ""
    assert "[tunelab role]" in reason
    assert PLATFORM[:4] not in reason
    assert_nothing_of_the_platform(everything_the_tenant_reads(ctx, model))


def test_a_provider_permission_error_keeps_its_sentence(ctx: FakeContext) -> None:
    model = _started(ctx, created_model(ctx))
    message = (
        f"Reading {PLATFORM_FILE} was refused: the role lacks the permission s3:GetObject on "
        f"tunelab-prod-artifacts-1a2b (User: {PLATFORM_ROLE} is not authorized)."
    )
    cause = json.dumps({"errorType": "ProviderPermissionDenied", "errorMessage": message})

    _finish(ctx, model, error=TaskError(Error="ProviderPermissionDenied", Cause=cause).model_dump())

    reason = ctx.models.get(ADA.workspace, model.name).training.failure_reason or ""
    assert reason.startswith(
        "Reading [tunelab storage] was refused: the role lacks the permission s3:GetObject"
    )
    assert_nothing_of_the_platform(reason.replace("tunelab-prod-artifacts-1a2b", ""))
    assert PLATFORM not in reason


def test_a_byok_failure_keeps_the_customers_own_names(ctx: FakeContext) -> None:
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="req-create")
    model = _started(ctx, model)
    customer_role = f"arn:aws:iam::{CUSTOMER}:role/tunelab-connector"
    text = (
        f"ClientError: {customer_role} may not write s3://customer-artifacts/out/model.tar.gz; "
        f"asked by {PLATFORM_ROLE}"
    )

    _finish(ctx, model, outcome=TrainingOutcome(outcome="failed", reason=text).model_dump())

    reason = ctx.models.get(ADA.workspace, model.name).training.failure_reason or ""
    assert customer_role in reason
    assert "s3://customer-artifacts/out/model.tar.gz" in reason
    assert reason.endswith("asked by [tunelab role]")


def test_a_reason_without_platform_names_is_kept_as_is(ctx: FakeContext) -> None:
    ready_dataset(ctx, name="spare")
    model = _started(ctx, created_model(ctx))

    _finish(ctx, model, outcome=TrainingOutcome(outcome="failed", reason="Out of capacity.").model_dump())

    assert ctx.models.get(ADA.workspace, model.name).training.failure_reason == "Out of capacity."


# --- deployments ----------------------------------------------------------------------------------


def test_a_failed_deployment_naming_the_platform_reaches_the_tenant_without_it(ctx: FakeContext) -> None:
    model = _deploying(ctx)
    run = _run(ctx, model)
    deployments.start_deployment(ctx, run)
    ref = ctx.models.get(ADA.workspace, model.name).refs.deployment
    assert ref is not None
    ctx.provider("bedrock").deployments[ref.deployment_id] = DeploymentState(
        deployment_id=ref.deployment_id, status="failed", reason=BEDROCK_REASON
    )
    state = run.model_dump()
    check = deployments.finish_deployment(
        ctx, FinishDeploymentEvent.model_validate({"mode": "check", "state": state})
    )

    deployments.finish_deployment(
        ctx,
        FinishDeploymentEvent.model_validate(
            {"mode": "failed", "state": {**state, "check": {"Payload": check.model_dump()}}}
        ),
    )

    assert "[tunelab role]" in everything_the_tenant_reads(ctx, model)
    assert_nothing_of_the_platform(everything_the_tenant_reads(ctx, model))


def test_an_endpoint_failing_outside_tunelab_is_told_without_its_platform_arn(ctx: FakeContext) -> None:
    model = _deployed(ctx)
    arn = f"arn:aws:bedrock:us-east-1:{PLATFORM}:custom-model-deployment/abc123"
    state = DeploymentState(deployment_id=arn, status="failed", reason=f"Health check of {arn} failed.")

    deployments.apply_deployment_state(ctx, model, state, at=ctx.now(), correlation_id="eb-event-1")

    told = everything_the_tenant_reads(ctx, model)
    assert "The endpoint [tunelab resource] failed: Health check of [tunelab resource] failed." in told
    assert_nothing_of_the_platform(told)


def test_the_byok_connection_is_what_the_tenant_owns(ctx: FakeContext) -> None:
    connect_sagemaker(ctx)
    model = fine_tuned_models.create(ctx, ADA, sagemaker_request(ctx), correlation_id="req-create")

    rules = redaction.for_model(ctx, model)

    assert rules.tenant_accounts == frozenset({CUSTOMER})
    assert rules.tenant_buckets == frozenset({"customer-artifacts"})
