"""Every IAM statement of both stacks: no wildcard action, no wildcard where the resource is known.

A wildcard resource stands only where the resource's name is chosen at run time (object keys,
execution and schedule names, ids Bedrock generates, customers' accounts) or where the action
supports no resource-level permission; each such pattern is listed here with its reason, and
each is also acknowledged to cdk-nag on its role (test_nag).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.conftest import Synthesized, as_list, render

pytestmark = pytest.mark.xdist_group("infra")

# Actions AWS authorizes only on Resource "*".
RESOURCE_STAR_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",  # limited by a cloudwatch:namespace condition
    # No resource type in the Service Authorization Reference for Step Functions:
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html
    "states:SendTaskSuccess",
    "states:SendTaskHeartbeat",
}

# A region: the stack's own (`${AWS::Region}`) or one it names (the platform's Bedrock regions).
_REGION = r"(\$\{AWS::Region\}|[a-z]{2}(-[a-z]+)+-\d)"

# Wildcards over names chosen at run time, as rendered by conftest.render.
RUNTIME_NAMED = [
    r"^\$\{[A-Za-z0-9]+\.Arn\}/([a-z-]+/)?\*$",  # objects of one named bucket (under a prefix)
    # objects of a regional stack's Bedrock data bucket (under a prefix), named by its stack
    r"^arn:aws:s3:::tunelab-bedrock-\$\{AWS::AccountId\}-[a-z]{2}(-[a-z]+)+-\d/([a-z-]+/)?\*$",
    r"^\$\{[A-Za-z0-9]+\.Arn\}/tunelab/\$\{WorkspaceId\}/\*$",  # a connector's workspace folder
    rf":scheduler:{_REGION}:\$\{{AWS::AccountId\}}:schedule/Tunelab-auto-undeploy/\*$",
    rf":bedrock:{_REGION}:\$\{{AWS::AccountId\}}:"
    r"(model-customization-job|custom-model|custom-model-deployment|provisioned-model)/\*$",
    rf":bedrock:{_REGION}::foundation-model/\*$",
    r"^arn:\$\{AWS::Partition\}:iam::\*:role/tunelab-\*$",
    r":sagemaker:\$\{AWS::Region\}:\$\{AWS::AccountId\}:(training-job|endpoint|endpoint-config|model)/\*$",
    # (the group's ARN with `:*`: what CloudWatch Logs authorizes DescribeLogStreams on)
    r":log-group:/aws/sagemaker/(TrainingJobs|Endpoints/\*)(:log-stream:\*|:\*)?$",
    # executions of one of tunelab's state machines (named per model at run time)
    rf":states:{_REGION}:\$\{{AWS::AccountId\}}:execution:Tunelab-(fine-tuning|deployment):\*$",
]


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = []
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            documents += [policy["PolicyDocument"] for policy in props.get("Policies", [])]
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, statement
        if resource["Type"] == "AWS::Events::EventBusPolicy":
            yield logical_id, props["Statement"]


@pytest.fixture(scope="module")
def allow_statements(synthesized: Synthesized) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (stack, logical_id, statement)
        for stack, template in synthesized.templates.items()
        for logical_id, statement in statements(template)
        if statement.get("Effect", "Allow") == "Allow"
    ]
    assert len(found) > 50
    return found


def test_no_statement_allows_a_wildcard_action(
    allow_statements: list[tuple[str, str, dict[str, Any]]],
) -> None:
    offenders = [
        (stack, logical_id, action)
        for stack, logical_id, statement in allow_statements
        for action in as_list(statement.get("Action", []))
        if "*" in action
    ]
    assert offenders == []


def test_resource_star_only_for_actions_without_resource_level_permissions(
    allow_statements: list[tuple[str, str, dict[str, Any]]],
) -> None:
    offenders = [
        (stack, logical_id, sorted(set(as_list(statement["Action"])) - RESOURCE_STAR_ACTIONS))
        for stack, logical_id, statement in allow_statements
        if "*" in as_list(statement.get("Resource", []))
        and set(as_list(statement["Action"])) - RESOURCE_STAR_ACTIONS
    ]
    assert offenders == []


def test_other_wildcards_cover_only_names_chosen_at_run_time(
    allow_statements: list[tuple[str, str, dict[str, Any]]],
) -> None:
    offenders = []
    for stack, logical_id, statement in allow_statements:
        for resource in as_list(statement.get("Resource", [])):
            text = render(resource)
            if text == "*" or "*" not in text:
                continue
            if not any(re.search(pattern, text) for pattern in RUNTIME_NAMED):
                offenders.append((stack, logical_id, text))
    assert offenders == []


def test_the_walker_sees_a_wildcard_when_there_is_one() -> None:
    template = {
        "Resources": {
            "P": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/k"}
                        ]
                    }
                },
            }
        }
    }
    (found,) = statements(template)
    assert "*" in found[1]["Action"]
