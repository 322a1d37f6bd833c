"""The BYOK connector stack: trust, SageMaker scope, pass-role, forwarding, outputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import (
    PLATFORM_BUS,
    Synthesized,
    actions_on,
    as_list,
    only,
    render,
    statements_of_role,
)
from tunelab.domain.layout import CONNECTOR_BUCKET_PREFIX

pytestmark = pytest.mark.xdist_group("infra")


def role(template: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::IAM::Role", prefix)


def test_template_deploys_without_cdk_bootstrap_and_takes_parameters(synthesized: Synthesized) -> None:
    template = synthesized.connector
    assert "BootstrapVersion" not in template.get("Parameters", {})
    assert "CheckBootstrapVersion" not in template.get("Rules", {})
    params = template["Parameters"]
    assert params["PlatformEventBusArn"]["Default"] == PLATFORM_BUS
    assert params["ExternalId"]["Default"] == ""
    assert params["HuggingFaceSecretArn"]["Default"] == ""
    for resource in template["Resources"].values():
        assert resource["Type"] != "AWS::Lambda::Function"


def test_access_role_trusts_only_the_platform_account_with_the_external_id(synthesized: Synthesized) -> None:
    _, access = role(synthesized.connector, "PlatformAccessRole")
    props = access["Properties"]
    assert render(props["RoleName"]) == "tunelab-platform-access-${AWS::Region}"
    (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    principal = render(statement["Principal"]["AWS"])
    assert "Select(" in principal
    assert "PlatformEventBusArn" in principal
    external_id = render(statement["Condition"]["StringEquals"]["sts:ExternalId"])
    assert external_id.startswith("${If(")
    assert "${ExternalId}" in external_id
    outputs = synthesized.connector["Outputs"]
    assert outputs["ExternalId"]["Value"] == statement["Condition"]["StringEquals"]["sts:ExternalId"]


def test_access_role_changes_only_tagged_sagemaker_resources(synthesized: Synthesized) -> None:
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    statements = statements_of_role(synthesized.connector, role_id)
    conditions: dict[str, Any] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            conditions[action] = statement.get("Condition")
    for action in ("sagemaker:CreateTrainingJob", "sagemaker:CreateEndpoint", "sagemaker:AddTags"):
        assert conditions[action] == {"Null": {"aws:RequestTag/tunelab-workspace": "false"}}, action
    for action in (
        "sagemaker:StopTrainingJob",
        "sagemaker:DeleteTrainingJob",
        "sagemaker:DeleteEndpoint",
        "sagemaker:InvokeEndpoint",
    ):
        assert conditions[action] == {"Null": {"aws:ResourceTag/tunelab-workspace": "false"}}, action
    assert conditions["sagemaker:DescribeTrainingJob"] is None
    assert "secretsmanager:GetSecretValue" not in conditions, "the platform never reads the token"


def test_access_role_passes_only_the_execution_role_and_only_to_sagemaker(synthesized: Synthesized) -> None:
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    execution_id, _ = role(synthesized.connector, "ExecutionRole")
    (statement,) = [
        s for s in statements_of_role(synthesized.connector, role_id) if s["Action"] == "iam:PassRole"
    ]
    assert statement["Resource"] == {"Fn::GetAtt": [execution_id, "Arn"]}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_execution_role_reads_data_writes_models_pulls_dlc_images_and_the_optional_secret(
    synthesized: Synthesized,
) -> None:
    template = synthesized.connector
    execution_id, execution = role(template, "ExecutionRole")
    (trust,) = execution["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    granted = {
        a: [render(r) for r in rs] for a, rs in actions_on(statements_of_role(template, execution_id)).items()
    }
    bucket_id, _ = only(template, "AWS::S3::Bucket", "ArtifactBucket")
    assert granted["s3:GetObject"] == [f"${{{bucket_id}.Arn}}/tunelab/*"]
    assert granted["s3:PutObject"] == [f"${{{bucket_id}.Arn}}/tunelab/*"]
    assert all(":763104351884:" in r or ":repository/*" in r for r in granted["ecr:BatchGetImage"])
    assert any(":763104351884:repository/*" in r for r in granted["ecr:BatchGetImage"])
    assert granted["secretsmanager:GetSecretValue"] == ["${HuggingFaceSecretArn}"]
    (secret_policy,) = [
        p
        for p in template["Resources"].values()
        if p["Type"] == "AWS::IAM::Policy" and "HfTokenSecretPolicy" in p["Properties"]["PolicyName"]
    ]
    assert secret_policy["Condition"] == "HasHfTokenSecret"


def test_tagged_sagemaker_state_changes_are_forwarded_to_the_platform_bus(synthesized: Synthesized) -> None:
    template = synthesized.connector
    rules = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    detail_types = sorted(rule["EventPattern"]["detail-type"][0] for rule in rules)
    assert detail_types == ["SageMaker Endpoint State Change", "SageMaker Training Job State Change"]
    forward_role_id, _ = role(template, "ForwardingRole")
    for rule in rules:
        assert rule["EventPattern"]["detail"] == {"Tags": {"tunelab-workspace": [{"exists": True}]}}
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": "PlatformEventBusArn"}
        assert target["RoleArn"] == {"Fn::GetAtt": [forward_role_id, "Arn"]}
        assert "ForwardingDlq" in render(target["DeadLetterConfig"]["Arn"])
    granted = actions_on(statements_of_role(template, forward_role_id))
    assert granted == {"events:PutEvents": [{"Ref": "PlatformEventBusArn"}]}


def test_outputs_are_what_the_provider_connection_needs(synthesized: Synthesized) -> None:
    outputs = synthesized.connector["Outputs"]
    assert {"RoleArn", "ExternalId", "ArtifactBucketName", "Region", "ExecutionRoleArn"} <= set(outputs)
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
    "s3:ListBucket",  # HeadBucket, ListObjectsV2 under tunelab/
    "secretsmanager:DescribeSecret",  # the connection check, never the value
}


def access_grants(synthesized: Synthesized) -> dict[str, list[str]]:
    role_id, _ = role(synthesized.connector, "PlatformAccessRole")
    return {
        action: [render(r) for r in targets]
        for action, targets in actions_on(statements_of_role(synthesized.connector, role_id)).items()
    }


def test_access_role_allows_exactly_the_calls_tunelab_makes(synthesized: Synthesized) -> None:
    assert set(access_grants(synthesized)) == ACCESS_CALLS


def test_access_role_objects_are_tunelabs_folder_of_the_artifact_bucket(synthesized: Synthesized) -> None:
    from tunelab.adapters.providers.sagemaker import BUCKET_PREFIX  # noqa: PLC0415  # boto3-heavy

    assert f"{BUCKET_PREFIX}/" == CONNECTOR_BUCKET_PREFIX
    granted = access_grants(synthesized)
    bucket_id, _ = only(synthesized.connector, "AWS::S3::Bucket", "ArtifactBucket")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert granted[action] == [f"${{{bucket_id}.Arn}}/{CONNECTOR_BUCKET_PREFIX}*"], action
    assert granted["s3:ListBucket"] == [f"${{{bucket_id}.Arn}}"]


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
