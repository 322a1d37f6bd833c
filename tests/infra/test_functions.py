"""Functions: one per stack definition, each with its own least-privilege role and the same settings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import (
    SENDER,
    Synthesized,
    actions_on,
    render,
    resources,
    statements_of_role,
)
from tunelab.settings import Settings
from tunelab.stack_definitions import (
    FUNCTIONS,
    LAMBDA_PYTHON_VERSION,
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


def test_the_environment_satisfies_the_settings_model(synthesized: Synthesized) -> None:
    # Given the environment every function gets, with CloudFormation references as stand-in text
    _, function = function_of(synthesized.platform, FUNCTIONS[0])
    environment = {k: render(v) for k, v in function["Properties"]["Environment"]["Variables"].items()}
    for spec in FUNCTIONS[1:]:
        other = function_of(synthesized.platform, spec)[1]["Properties"]["Environment"]["Variables"]
        assert {k: render(v) for k, v in other.items()} == environment
    # Then the settings model reads every required field from it (Lambda adds AWS_REGION itself)
    values = {key.lower(): value for key, value in environment.items()}
    values["aws_region"] = "eu-west-1"
    values["platform_account_id"] = "123456789012"  # a reference to AWS::AccountId in the template
    settings = Settings.model_validate(values)
    assert settings.sender_email == SENDER
    assert environment["PLATFORM_ACCOUNT_ID"] == "${AWS::AccountId}"
    assert ":stateMachine:Tunelab-fine-tuning" in environment["FINE_TUNING_STATE_MACHINE_ARN"]
    assert ":stateMachine:Tunelab-deployment" in environment["DEPLOYMENT_STATE_MACHINE_ARN"]
    assert environment["AUTO_UNDEPLOY_TARGET_ARN"].endswith(":function:Tunelab-auto-undeploy")
    assert environment["TRAINER_SOURCE_S3_URI"].startswith("s3://")


# One action (on one resource, where several share it) that only a given permission grants: the
# function has it exactly when its spec says so.
SIGNATURE: dict[Permission, tuple[str, str]] = {
    Permission.TABLE_READ_WRITE: ("dynamodb:Query", "${DataTable"),
    Permission.IDEMPOTENCY: ("dynamodb:PutItem", "${DataIdempotencyTable"),
    Permission.DATASETS_READ: ("s3:GetObject", "${DataDatasetsBucket"),
    Permission.DATASETS_WRITE: ("s3:PutObject", "${DataDatasetsBucket"),
    Permission.ARTIFACTS_READ: ("s3:GetObject", "${DataArtifactsBucket"),
    Permission.ARTIFACTS_WRITE: ("s3:PutObject", "${DataArtifactsBucket"),
    Permission.TRAINER_SOURCE_READ: ("s3:GetObject", "cdk-"),
    Permission.PUT_EVENTS: ("events:PutEvents", ""),
    Permission.START_EXECUTIONS: ("states:StartExecution", ""),
    Permission.STOP_EXECUTIONS: ("states:StopExecution", ""),
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


def test_provider_events_completes_task_tokens_of_both_state_machines_only(synthesized: Synthesized) -> None:
    granted = allowed(synthesized, spec("provider_events"))
    for action in ("states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"):
        targets = granted[action]
        assert len(targets) == 2
        assert any(t.endswith(":stateMachine:Tunelab-fine-tuning") for t in targets)
        assert any(t.endswith(":stateMachine:Tunelab-deployment") for t in targets)


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


def test_the_trainer_source_is_readable_only_by_start_training_as_one_object(
    synthesized: Synthesized,
) -> None:
    for s in FUNCTIONS:
        objects = [t for t in allowed(synthesized, s).get("s3:GetObject", []) if "cdk-" in t]
        if s.module == "start_training":
            assert len(objects) == 1
            assert objects[0].endswith(".zip")
        else:
            assert objects == [], s.module


def test_asynchronous_functions_send_failures_to_a_queue(synthesized: Synthesized) -> None:
    configs = resources(synthesized.platform, "AWS::Lambda::EventInvokeConfig")
    configured = {render(c["Properties"]["FunctionName"]) for c in configs.values()}
    asynchronous = [s for s in FUNCTIONS if s.invoked_asynchronously]
    assert len(configured) == len(asynchronous) == 2
    for config in configs.values():
        assert "OnFailure" in config["Properties"]["DestinationConfig"]
        assert config["Properties"]["MaximumRetryAttempts"] == 2
