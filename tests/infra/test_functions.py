"""Functions: one per stack definition, each with its own least-privilege role and the same settings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.capabilities.functions import SEND_TASK_RESULT_ACTIONS
from tests.infra.conftest import (
    HOME_REGION,
    ORIGINS,
    REGIONAL_BEDROCK_REGIONS,
    SENDER,
    Synthesized,
    actions_on,
    only,
    render,
    resources,
    statements_of_role,
)
from tunelab.composition.settings import Settings
from tunelab.composition.stack_definitions import (
    FUNCTIONS,
    LAMBDA_PYTHON_VERSION,
    LAMBDA_TASK_ROOT,
    TRAINER_BUNDLE_DIR,
    FunctionSpec,
    Permission,
    table_definition,
)

pytestmark = pytest.mark.xdist_group("infra")


def function_of(template: dict[str, Any], spec: FunctionSpec) -> tuple[str, dict[str, Any]]:
    name = f"Tunelab-{spec.name_suffix}"
    found = [
        (key, value)
        for key, value in resources(template, "AWS::Lambda::Function").items()
        if value["Properties"].get("FunctionName") == name
    ]
    assert len(found) == 1, f"no single function named {name}"
    return found[0]


def role_of(function: dict[str, Any]) -> str:
    return str(function["Properties"]["Role"]["Fn::GetAtt"][0])


def allowed(synthesized: Synthesized, spec: FunctionSpec) -> dict[str, list[str]]:
    _, function = function_of(synthesized.platform, spec)
    return {
        action: [render(r) for r in targets]
        for action, targets in actions_on(statements_of_role(synthesized.platform, role_of(function))).items()
    }


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.module)
def test_each_function_runs_its_module_on_current_python_arm64_with_tracing_and_json_logs(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    _, function = function_of(synthesized.platform, spec)
    props = function["Properties"]
    assert props["Handler"] == f"functions.{spec.module}.handler"
    assert props["Runtime"] == f"python{LAMBDA_PYTHON_VERSION}"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["Timeout"] == spec.timeout_seconds
    assert props["MemorySize"] == spec.memory_mb


def test_every_function_has_a_role_of_its_own_without_managed_policies(synthesized: Synthesized) -> None:
    roles = [role_of(function_of(synthesized.platform, spec)[1]) for spec in FUNCTIONS]
    assert len(set(roles)) == len(FUNCTIONS)
    for role in roles:
        assert "ManagedPolicyArns" not in synthesized.platform["Resources"][role]["Properties"]


def test_all_functions_share_one_code_asset(synthesized: Synthesized) -> None:
    codes = {render(function_of(synthesized.platform, spec)[1]["Properties"]["Code"]) for spec in FUNCTIONS}
    assert len(codes) == 1


def test_the_environment_satisfies_the_settings_model(
    synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the environment every function gets, with CloudFormation references as stand-in text
    _, function = function_of(synthesized.platform, FUNCTIONS[0])
    environment = {k: render(v) for k, v in function["Properties"]["Environment"]["Variables"].items()}
    for spec in FUNCTIONS[1:]:
        other = function_of(synthesized.platform, spec)[1]["Properties"]["Environment"]["Variables"]
        assert {k: render(v) for k, v in other.items()} == environment
    # Then the settings model reads every required field from it (Lambda adds AWS_REGION itself)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_REGION", HOME_REGION)
    monkeypatch.setenv("PLATFORM_ACCOUNT_ID", "123456789012")  # a reference to AWS::AccountId
    settings = Settings()
    # The data bucket of each other Bedrock region, as its regional stack names it
    assert settings.bedrock_data_buckets == {
        region: f"tunelab-bedrock-${{AWS::AccountId}}-{region}" for region in REGIONAL_BEDROCK_REGIONS
    }
    assert json.loads(environment["BEDROCK_DATA_BUCKETS"]) == settings.bedrock_data_buckets
    assert settings.sender_email == SENDER
    assert environment["PLATFORM_ACCOUNT_ID"] == "${AWS::AccountId}"
    assert ":stateMachine:Tunelab-fine-tuning" in environment["FINE_TUNING_STATE_MACHINE_ARN"]
    assert ":stateMachine:Tunelab-deployment" in environment["DEPLOYMENT_STATE_MACHINE_ARN"]
    assert environment["AUTO_UNDEPLOY_TARGET_ARN"].endswith(":function:Tunelab-auto-undeploy")
    # The trainer SageMaker jobs start from is the one bundled with the code, not an S3 asset
    assert environment["TRAINER_DIR"] == f"{LAMBDA_TASK_ROOT}/{TRAINER_BUNDLE_DIR}"
    assert not any("TRAINER_SOURCE" in key for key in environment)
    # Every variable the stack sets is read: a settings field, TRAINER_DIR (wiring), Powertools', and
    # the BYOK connector's parameters the API shows (optional settings of the application)
    assert {key.lower() for key in environment} - {"trainer_dir"} <= set(Settings.model_fields) | {
        "powertools_service_name",
        "powertools_metrics_namespace",
        "powertools_log_level",
        "event_bus_arn",
        "connector_trusted_role_arns",
    }
    assert settings.allowed_origins == tuple(ORIGINS)
    assert settings.schedules_dlq_arn is not None
    assert "${SchedulesDlq" in settings.schedules_dlq_arn


def test_every_function_and_the_outputs_name_the_roles_a_connector_trusts(synthesized: Synthesized) -> None:
    template = synthesized.platform
    # The roles allowed sts:AssumeRole on connector roles: exactly those a connector must trust
    assuming = [
        {"Fn::GetAtt": [role_of(function_of(template, spec)[1]), "Arn"]}
        for spec in FUNCTIONS
        if Permission.ASSUME_CONNECTOR_ROLE in spec.permissions
    ]
    assert len(assuming) > 1
    for spec in FUNCTIONS:
        allows_assume = "sts:AssumeRole" in allowed(synthesized, spec)
        assert allows_assume == (Permission.ASSUME_CONNECTOR_ROLE in spec.permissions), spec.logical_id
    trusted = {"Fn::Join": [",", assuming]}
    assert template["Outputs"]["ConnectorTrustedRoleArns"]["Value"] == trusted
    bus_id, _ = only(template, "AWS::Events::EventBus")
    for spec in FUNCTIONS:
        variables = function_of(template, spec)[1]["Properties"]["Environment"]["Variables"]
        assert variables["CONNECTOR_TRUSTED_ROLE_ARNS"] == trusted, spec.logical_id
        assert variables["EVENT_BUS_ARN"] == {"Fn::GetAtt": [bus_id, "Arn"]}, spec.logical_id
    assert template["Outputs"]["EventBusArn"]["Value"] == {"Fn::GetAtt": [bus_id, "Arn"]}


# One action (on one resource, where several share it) that only a given permission grants: the
# function has it exactly when its spec says so.
SIGNATURE: dict[Permission, tuple[str, str]] = {
    Permission.TABLE_READ_WRITE: ("dynamodb:Query", "${DataTable"),
    Permission.IDEMPOTENCY: ("dynamodb:PutItem", "${DataIdempotencyTable"),
    Permission.DATASETS_READ: ("s3:GetObject", "${DataDatasetsBucket"),
    Permission.DATASETS_WRITE: ("s3:PutObject", "${DataDatasetsBucket"),
    Permission.ARTIFACTS_READ: ("s3:GetObject", "${DataArtifactsBucket"),
    Permission.ARTIFACTS_WRITE: ("s3:PutObject", "${DataArtifactsBucket"),
    Permission.PUT_EVENTS: ("events:PutEvents", ""),
    Permission.START_EXECUTIONS: ("states:StartExecution", ""),
    Permission.SEND_TASK_RESULT: ("states:SendTaskSuccess", ""),
    Permission.ASSUME_CONNECTOR_ROLE: ("sts:AssumeRole", ""),
    Permission.BEDROCK_CUSTOMIZE: ("bedrock:CreateModelCustomizationJob", ""),
    Permission.BEDROCK_STOP_TRAINING: ("bedrock:StopModelCustomizationJob", ""),
    Permission.BEDROCK_DEPLOY: ("bedrock:CreateCustomModelDeployment", ""),
    Permission.BEDROCK_UNDEPLOY: ("bedrock:DeleteCustomModelDeployment", ""),
    Permission.BEDROCK_DELETE_MODEL: ("bedrock:DeleteCustomModel", ""),
    Permission.BEDROCK_READ: ("bedrock:GetCustomModel", ""),
    Permission.BEDROCK_INVOKE: ("bedrock:InvokeModel", ""),
    Permission.SEND_EMAIL: ("ses:SendEmail", ""),
    Permission.SCHEDULE_CREATE: ("scheduler:CreateSchedule", ""),
    Permission.SCHEDULE_DELETE: ("scheduler:DeleteSchedule", ""),
}


def test_every_permission_has_a_signature() -> None:
    assert set(SIGNATURE) == set(Permission)


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.module)
def test_a_function_may_do_what_its_permissions_say_and_nothing_of_the_others(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    granted = allowed(synthesized, spec)
    for permission, (action, resource) in SIGNATURE.items():
        has = any(resource in target for target in granted.get(action, []))
        assert has == (permission in spec.permissions), (
            f"{spec.module}: {action} on {resource!r} ({permission})"
        )


def spec(module: str) -> FunctionSpec:
    return next(s for s in FUNCTIONS if s.module == module)


def test_task_tokens_are_answered_on_resource_star_as_step_functions_requires(
    synthesized: Synthesized,
) -> None:
    # SendTaskSuccess and SendTaskHeartbeat support no resource-level permission (Service
    # Authorization Reference for Step Functions): a state machine ARN there would deny every call.
    for s in FUNCTIONS:
        granted = allowed(synthesized, s)
        for action in (*SEND_TASK_RESULT_ACTIONS, "states:SendTaskFailure"):
            if action in SEND_TASK_RESULT_ACTIONS and Permission.SEND_TASK_RESULT in s.permissions:
                assert granted[action] == ["*"], (s.module, action)
            else:
                assert action not in granted, (s.module, action)
    assert {s.module for s in FUNCTIONS if Permission.SEND_TASK_RESULT in s.permissions} == {
        "provider_events",
        "reconciler",
    }


def test_only_start_training_may_pass_the_bedrock_role_and_only_to_bedrock(synthesized: Synthesized) -> None:
    passers = {s.module: allowed(synthesized, s).get("iam:PassRole", []) for s in FUNCTIONS}
    assert {m for m, roles in passers.items() if roles} == {"start_training", "start_deployment"}
    (bedrock_role,) = passers["start_training"]
    assert "TrainingBedrockCustomizationRole" in bedrock_role
    (scheduler_role,) = passers["start_deployment"]
    assert "SchedulesAutoUndeployRole" in scheduler_role
    _, function = function_of(synthesized.platform, spec("start_training"))
    (statement,) = [
        s
        for s in statements_of_role(synthesized.platform, role_of(function))
        if s["Action"] == "iam:PassRole"
    ]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}


def test_notify_sends_email_only_from_the_identity_with_the_configuration_set(
    synthesized: Synthesized,
) -> None:
    targets = allowed(synthesized, spec("notify"))["ses:SendEmail"]
    assert any(t.endswith(f":identity/{SENDER}") for t in targets)
    assert any(":configuration-set/${NotificationsConfigurationSet" in t for t in targets)
    assert len(targets) == 2


def test_connector_roles_are_assumed_only_by_name_pattern(synthesized: Synthesized) -> None:
    for s in FUNCTIONS:
        targets = allowed(synthesized, s).get("sts:AssumeRole", [])
        assert targets in ([], ["arn:${AWS::Partition}:iam::*:role/tunelab-*"]), s.module


def test_table_access_names_the_table_and_its_indexes(synthesized: Synthesized) -> None:
    targets = allowed(synthesized, spec("provider_events"))["dynamodb:Query"]
    indexes = {t.rsplit("/index/", 1)[1] for t in targets if "/index/" in t}
    assert indexes == {index.name for index in table_definition().global_indexes}
    assert not any(t.endswith("*") for t in targets)


def test_no_function_reads_an_asset_bucket(synthesized: Synthesized) -> None:
    # The trainer's source travels with the code; no function needs CDK's asset bucket.
    for s in FUNCTIONS:
        objects = [t for t in allowed(synthesized, s).get("s3:GetObject", []) if "cdk-" in t]
        assert objects == [], s.module


def test_asynchronous_functions_send_failures_to_a_queue(synthesized: Synthesized) -> None:
    configs = resources(synthesized.platform, "AWS::Lambda::EventInvokeConfig")
    configured = {render(c["Properties"]["FunctionName"]) for c in configs.values()}
    asynchronous = [s for s in FUNCTIONS if s.invoked_asynchronously]
    assert len(configured) == len(asynchronous) == 2
    for config in configs.values():
        assert "OnFailure" in config["Properties"]["DestinationConfig"]
        assert config["Properties"]["MaximumRetryAttempts"] == 2


# The records table, as `tunelab.adapters.dynamodb` uses it (TransactWriteItems is authorized per
# item action).
_TABLE = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
)
_UNDEPLOY_BEDROCK = ("bedrock:DeleteCustomModelDeployment", "bedrock:DeleteProvisionedModelThroughput")
# `deployments.undeploy`: the provider's deployment, the schedules, the bus, the creator's email.
_UNDEPLOY = ("sts:AssumeRole", "scheduler:DeleteSchedule", "events:PutEvents", "ses:SendEmail")

# What each function's code calls, as IAM actions: functions/<module>.py → the tunelab code it runs →
# its boto3 calls (with the platform's credentials; SageMaker calls go through the assumed role).
CALLS: dict[str, tuple[str, ...]] = {
    "api": (
        *_TABLE,
        *_UNDEPLOY,  # POST .../undeploy
        *_UNDEPLOY_BEDROCK,
        "dynamodb:PutItem",  # Idempotency-Key records (idempotency table)
        "s3:PutObject",  # a CSV body kept; presigned PUTs of uploads
        "s3:DeleteObject",  # a deleted dataset's files, a deleted model's folders
        "s3:ListBucket",  # a deleted model's folders
        "states:StartExecution",  # create a model, deploy it
        "bedrock:StopModelCustomizationJob",  # POST .../stop
        "bedrock:GetModelCustomizationJob",  # a stop refused: has the job ended?
        "bedrock:DeleteCustomModel",  # DELETE a model
        "bedrock:InvokeModel",  # the sandbox (Converse)
    ),
    "prepare_data": (*_TABLE, "s3:GetObject", "s3:PutObject", "sts:AssumeRole"),
    "start_training": (
        *_TABLE,
        "bedrock:CreateModelCustomizationJob",
        "bedrock:GetModelCustomizationJob",  # a retried start finds its job
        "bedrock:TagResource",
        "iam:PassRole",
        "bedrock:StopModelCustomizationJob",  # stopped while the job was created
        "sts:AssumeRole",
    ),
    "finish_training": (
        *_TABLE,
        "bedrock:GetModelCustomizationJob",
        "bedrock:StopModelCustomizationJob",  # the workflow timed out or failed: stop the job
        "sts:AssumeRole",
        "events:PutEvents",
    ),
    "notify": (*_TABLE, "ses:SendEmail"),
    "start_deployment": (
        *_TABLE,
        "bedrock:CreateCustomModelDeployment",
        "bedrock:CreateProvisionedModelThroughput",
        "bedrock:TagResource",
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",  # a retried step makes its schedule say the same
        "iam:PassRole",
        "sts:AssumeRole",
        # undeployed while the deployment was created: remove it and the schedules
        *_UNDEPLOY_BEDROCK,
        "scheduler:DeleteSchedule",
    ),
    "finish_deployment": (
        *_TABLE,
        "bedrock:GetCustomModelDeployment",
        "bedrock:GetProvisionedModelThroughput",
        *_UNDEPLOY_BEDROCK,
        "scheduler:DeleteSchedule",
        "events:PutEvents",
        "sts:AssumeRole",
    ),
    "provider_events": (
        *_TABLE,
        "states:SendTaskSuccess",
        "states:SendTaskHeartbeat",
        "states:DescribeExecution",  # a finished job whose workflow ended is recorded directly
        "bedrock:GetModelCustomizationJob",
        *_UNDEPLOY,  # a deployed model whose endpoint failed or was deleted
    ),
    "dataset_uploaded": (*_TABLE, "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "events:PutEvents"),
    "auto_undeploy": (*_TABLE, *_UNDEPLOY, *_UNDEPLOY_BEDROCK),
    "reconciler": (
        *_TABLE,
        "bedrock:GetModelCustomizationJob",
        "bedrock:StopModelCustomizationJob",  # a stop that was lost is issued again
        "sts:AssumeRole",
        "states:SendTaskSuccess",
        "states:SendTaskHeartbeat",
        # A finished job whose workflow ended is recorded and told directly; a lost one starts again.
        "states:DescribeExecution",
        "states:StartExecution",
        "events:PutEvents",
        "ses:SendEmail",
    ),
}


def test_every_function_is_listed_with_its_calls() -> None:
    assert set(CALLS) == {s.module for s in FUNCTIONS}


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.module)
def test_a_function_is_granted_every_call_its_code_makes(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    granted = allowed(synthesized, spec)
    missing = sorted(action for action in set(CALLS[spec.module]) if not granted.get(action))
    assert missing == [], f"{spec.module} calls {missing} without permission"


def test_only_the_api_uses_the_idempotency_table_and_only_it_and_the_reconciler_start_executions(
    synthesized: Synthesized,
) -> None:
    for s in FUNCTIONS:
        granted = allowed(synthesized, s)
        idempotency = any("IdempotencyTable" in t for ts in granted.values() for t in ts)
        assert idempotency == (s.module == "api"), s.module
        assert ("states:StartExecution" in granted) == (s.module in ("api", "reconciler")), s.module
        assert "states:StopExecution" not in granted, s.module
        # Only those that answer task tokens look executions up, and only tunelab's.
        described = granted.get("states:DescribeExecution", [])
        assert bool(described) == ("states:SendTaskSuccess" in granted), s.module
        assert all(":execution:" in str(arn) for arn in described), described


def test_stopping_a_bedrock_job_does_not_allow_creating_one(synthesized: Synthesized) -> None:
    for module in ("finish_training", "reconciler", "api"):
        granted = allowed(synthesized, spec(module))
        assert granted["bedrock:StopModelCustomizationJob"], module
        assert "bedrock:CreateModelCustomizationJob" not in granted, module
        assert "iam:PassRole" not in granted, module
