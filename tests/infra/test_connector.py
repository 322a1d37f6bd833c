"""The BYOK connector stack: trust, SageMaker scope, pass-role, forwarding, outputs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template
from pydantic import ValidationError

from infra.config import REPO_ROOT, ConnectorConfig, load_cdk_json_context
from infra.connector_stack import (
    CHANGE_ACTIONS,
    CREATE_ACTIONS,
    ConnectorStack,
    image_sources,
    workspace_pattern,
)
from tests.infra.conftest import (
    PLATFORM_BUS,
    Synthesized,
    actions_on,
    as_list,
    only,
    render,
    statements_of_role,
)
from tunelab.adapters.providers.images import load_images
from tunelab.domain import layout
from tunelab.domain.layout import CONNECTOR_BUCKET_PREFIX

pytestmark = pytest.mark.xdist_group("infra")

EXTERNAL_ID = "tunelab-" + "5f" * 16
PLATFORM_ROLE = "arn:aws:iam::999988887777:role/Tunelab-FunctionsApiRole7CC0DC3E-AbC123"


def role(template: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::IAM::Role", prefix)


WORKSPACE = "${WorkspaceId}"
WORKSPACE_OBJECTS = f"{CONNECTOR_BUCKET_PREFIX}{WORKSPACE}/*"  # tunelab/${WorkspaceId}/*


def test_template_deploys_without_cdk_bootstrap_and_takes_parameters(synthesized: Synthesized) -> None:
    template = synthesized.connector
    assert "BootstrapVersion" not in template.get("Parameters", {})
    assert "CheckBootstrapVersion" not in template.get("Rules", {})
    params = template["Parameters"]
    assert params["PlatformEventBusArn"]["Default"] == PLATFORM_BUS
    assert params["HuggingFaceSecretArn"]["Default"] == ""
    for resource in template["Resources"].values():
        assert resource["Type"] != "AWS::Lambda::Function"


def test_workspace_external_id_and_platform_roles_are_required_parameters(synthesized: Synthesized) -> None:
    params = synthesized.connector["Parameters"]
    # No default: the customer gives what tunelab shows for the workspace (context gave none here)
    for name in ("WorkspaceId", "ExternalId", "PlatformRoleArns"):
        assert "Default" not in params[name], name
    assert params["WorkspaceId"]["Type"] == "String"
    assert params["WorkspaceId"]["AllowedPattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,55}$"
    assert params["ExternalId"]["Type"] == "String"
    assert params["ExternalId"]["AllowedPattern"] == "^tunelab-[0-9a-f]{32}$"
    assert params["PlatformRoleArns"]["Type"] == "CommaDelimitedList"
    role_arn = re.compile(params["PlatformRoleArns"]["AllowedPattern"])  # each value of the list
    assert role_arn.match("arn:aws:iam::999988887777:role/Tunelab-FunctionsApiRole7CC0DC3E-AbC123")
    assert not role_arn.match("arn:aws:iam::999988887777:root")
    assert not role_arn.match("999988887777")
    assert not role_arn.match("arn:aws:iam::999988887777:user/someone")
    workspace = re.compile(params["WorkspaceId"]["AllowedPattern"])
    assert workspace.match("ws-1")
    assert not workspace.match("a" * 57)
    assert not workspace.match("-ws")
    external_id = re.compile(params["ExternalId"]["AllowedPattern"])
    assert external_id.match("tunelab-" + "0123456789abcdef" * 2)
    assert not external_id.match("my-own-id")
    assert not external_id.match("tunelab-" + "0" * 31)


def test_context_sets_the_parameters_defaults() -> None:
    config = ConnectorConfig.model_validate(
        {
            "workspaceId": "acme",
            "externalId": EXTERNAL_ID,
            "platformRoleArns": f"{PLATFORM_ROLE},{PLATFORM_ROLE}2",
        }
    )
    app = App(context=load_cdk_json_context())
    template = Template.from_stack(ConnectorStack(app, "Connector", config=config)).to_json()
    params = template["Parameters"]
    assert params["WorkspaceId"]["Default"] == "acme"
    assert params["ExternalId"]["Default"] == EXTERNAL_ID
    assert params["PlatformRoleArns"]["Default"] == f"{PLATFORM_ROLE},{PLATFORM_ROLE}2"
    with pytest.raises(ValidationError, match="role ARNs"):
        ConnectorConfig.model_validate({"platformRoleArns": "arn:aws:iam::999988887777:root"})
    with pytest.raises(ValidationError):
        ConnectorConfig.model_validate({"externalId": "chosen-by-the-customer"})


def test_access_role_trusts_only_the_platform_roles_with_the_workspaces_external_id_and_session(
    synthesized: Synthesized,
) -> None:
    _, access = role(synthesized.connector, "PlatformAccessRole")
    props = access["Properties"]
    assert render(props["RoleName"]) == "tunelab-platform-access-${AWS::Region}"
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    # The platform's roles themselves (a list parameter), never its whole account
    assert statement["Principal"] == {"AWS": {"Ref": "PlatformRoleArns"}}
    assert ":root" not in json.dumps(props["AssumeRolePolicyDocument"])
    assert statement["Condition"] == {
        "StringEquals": {
            "sts:ExternalId": {"Ref": "ExternalId"},
            "sts:RoleSessionName": {"Fn::Join": ["", ["tunelab-", {"Ref": "WorkspaceId"}]]},
        }
    }
    assert render(statement["Condition"]["StringEquals"]["sts:RoleSessionName"]) == f"tunelab-{WORKSPACE}"
    outputs = synthesized.connector["Outputs"]
    assert outputs["ExternalId"]["Value"] == {"Ref": "ExternalId"}
    assert outputs["WorkspaceId"]["Value"] == {"Ref": "WorkspaceId"}


def test_access_role_changes_only_sagemaker_resources_tagged_with_the_workspace(
    synthesized: Synthesized,
) -> None:
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    statements = statements_of_role(synthesized.connector, role_id)
    conditions: dict[str, Any] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            conditions[action] = statement.get("Condition")
    for action in CREATE_ACTIONS:
        assert conditions[action] == {
            "StringEquals": {"aws:RequestTag/tunelab-workspace": {"Ref": "WorkspaceId"}}
        }, action
    for action in CHANGE_ACTIONS:
        assert conditions[action] == {
            "StringEquals": {"aws:ResourceTag/tunelab-workspace": {"Ref": "WorkspaceId"}}
        }, action
    assert conditions["sagemaker:DescribeTrainingJob"] is None
    assert "secretsmanager:GetSecretValue" not in conditions, "the platform never reads the token"


def test_no_statement_accepts_any_value_of_the_workspace_tag(synthesized: Synthesized) -> None:
    for logical_id, resource in synthesized.connector["Resources"].items():
        text = json.dumps(resource)
        assert '"Null"' not in text, logical_id
        for condition in re.findall(r'"aws:(?:Request|Resource)Tag/[^"]+": ([^}]+\})', text):
            assert condition == '{"Ref": "WorkspaceId"}', (logical_id, condition)


def test_access_role_passes_only_the_execution_role_and_only_to_sagemaker(synthesized: Synthesized) -> None:
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    execution_id, _ = role(synthesized.connector, "ExecutionRole")
    (statement,) = [
        s for s in statements_of_role(synthesized.connector, role_id) if s["Action"] == "iam:PassRole"
    ]
    assert statement["Resource"] == {"Fn::GetAtt": [execution_id, "Arn"]}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_execution_role_reads_and_writes_the_workspaces_folder_and_the_optional_secret(
    synthesized: Synthesized,
) -> None:
    template = synthesized.connector
    execution_id, execution = role(template, "ExecutionRole")
    (trust,) = execution["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statements = statements_of_role(template, execution_id)
    granted = {a: [render(r) for r in rs] for a, rs in actions_on(statements).items()}
    bucket_id, _ = only(template, "AWS::S3::Bucket", "ArtifactBucket")
    for action in ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"):
        assert granted[action] == [f"${{{bucket_id}.Arn}}/{WORKSPACE_OBJECTS}"], action
    assert "s3:DeleteObject" not in granted
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert render(listing["Resource"]) == f"${{{bucket_id}.Arn}}"
    assert {k: {c: render(v) for c, v in cs.items()} for k, cs in listing["Condition"].items()} == {
        "StringLike": {"s3:prefix": WORKSPACE_OBJECTS}
    }
    assert granted["secretsmanager:GetSecretValue"] == ["${HuggingFaceSecretArn}"]
    (secret_policy,) = [
        p
        for p in template["Resources"].values()
        if p["Type"] == "AWS::IAM::Policy" and "HfTokenSecretPolicy" in p["Properties"]["PolicyName"]
    ]
    assert secret_policy["Condition"] == "HasHfTokenSecret"


def table_image_sources() -> tuple[dict[str, str], set[str]]:
    """Each region's image account and the repositories, read from the image table's URIs here."""
    table = json.loads((REPO_ROOT / "shared/tunelab/catalog_data/hf_images.json").read_text())
    accounts: dict[str, set[str]] = {}
    repositories = set()
    for scope in ("training", "inference", "llm_inference"):
        for region, uri in table[scope]["images"].items():
            host, path = uri.split("/", 1)
            accounts.setdefault(region, set()).add(host.split(".")[0])
            repositories.add(path.split(":")[0])
    assert all(len(found) == 1 for found in accounts.values())
    return {region: found.pop() for region, found in accounts.items()}, repositories


def test_images_are_pulled_from_the_account_the_image_table_names_for_the_region(
    synthesized: Synthesized,
) -> None:
    template = synthesized.connector
    accounts, repositories = table_image_sources()
    assert len(set(accounts.values())) > 5, "the table's accounts, not a hand-kept few"
    # Every region of the table, with its account: a mapping the policy reads by the stack's region
    mapping = template["Mappings"]["HfImageAccounts"]
    assert {region: entry["Account"] for region, entry in mapping.items()} == accounts
    execution_id, _ = role(template, "ExecutionRole")
    granted = actions_on(statements_of_role(template, execution_id))
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        pulls = sorted(render(r) for r in granted[action])
        assert pulls == sorted(
            "arn:${AWS::Partition}:ecr:${AWS::Region}:${Map(HfImageAccounts,${AWS::Region},Account)}"
            f":repository/{repository}"
            for repository in repositories
        ), action
    # Nothing hard-coded: no account id appears in any policy of the template
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::Role"):
            assert not re.search(r"\b\d{12}\b", json.dumps(resource["Properties"]))


def test_a_region_without_images_is_refused_before_anything_is_made(synthesized: Synthesized) -> None:
    accounts, _ = table_image_sources()
    (assertion,) = synthesized.connector["Rules"]["HfImageRegion"]["Assertions"]
    regions, region = assertion["Assert"]["Fn::Contains"]
    assert sorted(regions) == sorted(accounts)
    assert region == {"Ref": "AWS::Region"}
    assert "hf_images.json" in assertion["AssertDescription"]


def test_an_image_table_naming_two_accounts_for_a_region_fails_synth(monkeypatch: pytest.MonkeyPatch) -> None:
    images = load_images()
    training = images.training.model_copy(
        update={
            "images": {
                **images.training.images,
                "eu-west-1": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/x:1",
            }
        }
    )
    monkeypatch.setattr(
        "infra.connector_stack.load_images", lambda: images.model_copy(update={"training": training})
    )
    with pytest.raises(ValueError, match="two image accounts for eu-west-1"):
        image_sources()


def test_only_the_workspaces_sagemaker_state_changes_are_forwarded_to_the_platform_bus(
    synthesized: Synthesized,
) -> None:
    template = synthesized.connector
    rules = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    detail_types = sorted(rule["EventPattern"]["detail-type"][0] for rule in rules)
    assert detail_types == ["SageMaker Endpoint State Change", "SageMaker Training Job State Change"]
    forward_role_id, _ = role(template, "ForwardingRole")
    for rule in rules:
        assert rule["EventPattern"]["detail"] == {"Tags": {"tunelab-workspace": [{"Ref": "WorkspaceId"}]}}
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": "PlatformEventBusArn"}
        assert target["RoleArn"] == {"Fn::GetAtt": [forward_role_id, "Arn"]}
        assert "ForwardingDlq" in render(target["DeadLetterConfig"]["Arn"])
    granted = actions_on(statements_of_role(template, forward_role_id))
    assert granted == {"events:PutEvents": [{"Ref": "PlatformEventBusArn"}]}


def test_a_forwarded_rule_must_filter_on_the_workspace_tag() -> None:
    pattern = {"source": ["aws.sagemaker"], "detail": {"Tags": {"tunelab-workspace": [{"exists": True}]}}}
    assert workspace_pattern(pattern, "acme")["detail"] == {"Tags": {"tunelab-workspace": ["acme"]}}
    assert pattern["detail"] == {"Tags": {"tunelab-workspace": [{"exists": True}]}}  # not changed
    with pytest.raises(ValueError, match="tunelab-workspace"):
        workspace_pattern({"source": ["aws.sagemaker"]}, "acme")


def test_the_platform_assumes_with_the_session_name_and_writes_under_the_folder_the_connector_allows() -> (
    None
):
    # tunelab.domain.layout spells both for the platform and for this template alike.
    assert layout.connector_session_name("acme") == "tunelab-acme"
    assert layout.connector_prefix("acme") == "tunelab/acme/"


def test_outputs_are_what_the_provider_connection_needs(synthesized: Synthesized) -> None:
    outputs = synthesized.connector["Outputs"]
    assert {
        "RoleArn",
        "ExternalId",
        "WorkspaceId",
        "ArtifactBucketName",
        "Region",
        "ExecutionRoleArn",
    } <= set(outputs)
    assert outputs["HfTokenSecretArn"]["Condition"] == "HasHfTokenSecret"


# What tunelab calls with the connector's role: tunelab.adapters.providers.sagemaker (the provider and
# verify_connection), whose storage PrepareData writes the training data to and FinishTraining lists
# model.tar.gz in, through the assumed session.
ACCESS_CALLS = {
    "sagemaker:DescribeTrainingJob",  # a retried start, the reconciler, the connection check
    "sagemaker:CreateTrainingJob",
    "sagemaker:StopTrainingJob",
    "sagemaker:DeleteTrainingJob",  # deleting a model frees the job's name
    "sagemaker:CreateModel",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:CreateEndpoint",
    "sagemaker:AddTags",  # tags on create
    "sagemaker:DescribeEndpoint",
    "sagemaker:DeleteEndpoint",
    "sagemaker:DeleteEndpointConfig",
    "sagemaker:DeleteModel",
    "sagemaker:InvokeEndpoint",  # the sandbox (sagemaker-runtime)
    "iam:PassRole",  # the execution role, to CreateTrainingJob and CreateModel
    "s3:GetObject",  # HeadObject/GetObject of artifacts, presigned downloads
    "s3:PutObject",  # training data, the trainer's source, the connection check
    "s3:DeleteObject",  # a deleted model's outputs and checkpoints
    "s3:AbortMultipartUpload",  # large training files go up in parts
    "s3:ListBucket",  # ListObjectsV2 under tunelab/<workspace>/ (HeadBucket is refused: no prefix)
    "secretsmanager:DescribeSecret",  # the connection check, never the value
    "logs:DescribeLogStreams",  # the training log: a job's streams
    "logs:GetLogEvents",  # the training log: its lines
}


def access_grants(synthesized: Synthesized) -> dict[str, list[str]]:
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    return {
        action: [render(r) for r in targets]
        for action, targets in actions_on(statements_of_role(synthesized.connector, role_id)).items()
    }


def test_access_role_allows_exactly_the_calls_tunelab_makes(synthesized: Synthesized) -> None:
    assert set(access_grants(synthesized)) == ACCESS_CALLS


def test_access_role_objects_are_the_workspaces_folder_of_the_artifact_bucket(
    synthesized: Synthesized,
) -> None:
    granted = access_grants(synthesized)
    bucket_id, _ = only(synthesized.connector, "AWS::S3::Bucket", "ArtifactBucket")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert granted[action] == [f"${{{bucket_id}.Arn}}/{WORKSPACE_OBJECTS}"], action
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    (listing,) = [
        s for s in statements_of_role(synthesized.connector, role_id) if s["Action"] == "s3:ListBucket"
    ]
    assert render(listing["Resource"]) == f"${{{bucket_id}.Arn}}"
    assert render(listing["Condition"]["StringLike"]["s3:prefix"]) == WORKSPACE_OBJECTS
    assert set(listing["Condition"]) == {"StringLike"}


def test_access_role_may_describe_only_the_hf_token_secret_and_only_when_there_is_one(
    synthesized: Synthesized,
) -> None:
    template = synthesized.connector
    role_id, _ = role(template, "PlatformAccessRole")
    (policy,) = [
        p
        for p in template["Resources"].values()
        if p["Type"] == "AWS::IAM::Policy"
        and {"Ref": role_id} in p["Properties"]["Roles"]
        and "secretsmanager:DescribeSecret" in json.dumps(p["Properties"]["PolicyDocument"])
    ]
    assert policy["Condition"] == "HasHfTokenSecret"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:DescribeSecret"
    assert statement["Resource"] == {"Ref": "HuggingFaceSecretArn"}


def test_access_role_reads_only_sagemakers_training_job_log_group(synthesized: Synthesized) -> None:
    granted = access_grants(synthesized)
    group = (
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/TrainingJobs"
    )
    # The group's ARN with `:*`: CloudWatch Logs authorizes DescribeLogStreams on it, not on the bare ARN.
    assert granted["logs:DescribeLogStreams"] == [f"{group}:*"]
    assert granted["logs:GetLogEvents"] == [f"{group}:log-stream:*"]
    # Read only: nothing of the access role writes or deletes logs.
    assert not [a for a in granted if a.startswith("logs:") and a not in ACCESS_CALLS]
