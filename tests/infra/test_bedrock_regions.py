"""Bedrock in each region its models train in: a stack per Bedrock region besides home (the data
bucket, the job state changes forwarded home), and the platform reaching Bedrock and those buckets."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.conftest import (
    HOME_REGION,
    REGIONAL_BEDROCK_REGIONS,
    Synthesized,
    actions_on,
    as_list,
    only,
    render,
    resources,
    statements_of_role,
)
from tunelab.composition.stack_definitions import (
    ACCESS_LOGS_EXPIRE_AFTER_DAYS,
    BEDROCK_DATA_BUCKETS_ENV,
    BEDROCK_JOB_STATE_CHANGE_PATTERN,
    EVENT_RULES,
    FUNCTIONS,
    FunctionSpec,
    Permission,
    bedrock_data_bucket_name,
    bedrock_training_regions,
)

pytestmark = pytest.mark.xdist_group("infra")

HOME_RULE = next(rule for rule in EVENT_RULES if rule.logical_id == "BedrockCustomizationRule")
HOME_BUS = f"arn:${{AWS::Partition}}:events:{HOME_REGION}:${{AWS::AccountId}}:event-bus/default"
BEDROCK_PERMISSIONS = {
    Permission.BEDROCK_CUSTOMIZE,
    Permission.BEDROCK_STOP_TRAINING,
    Permission.BEDROCK_DEPLOY,
    Permission.BEDROCK_UNDEPLOY,
    Permission.BEDROCK_DELETE_MODEL,
    Permission.BEDROCK_READ,
    Permission.BEDROCK_INVOKE,
}


# `arn:<partition>:bedrock:<region>:<account>:<type>/...`, with `${AWS::...}` references as text.
_BEDROCK_ARN = re.compile(r":bedrock:(?P<region>[a-z0-9-]+):(\$\{AWS::AccountId\})?:(?P<type>[a-z-]+)/")


def bedrock_arn(arn: str) -> tuple[str, str]:
    """(region, resource type) of a rendered Bedrock ARN."""
    match = _BEDROCK_ARN.search(arn)
    assert match, arn
    return match["region"], match["type"]


def stack_of(region: str) -> str:
    return f"Tunelab-Bedrock-{region}"


def bucket_name(region: str) -> str:
    """A regional data bucket's name as the templates show it."""
    return bedrock_data_bucket_name("Tunelab", "${AWS::AccountId}", region)


def environments(synthesized: Synthesized) -> dict[str, dict[str, str]]:
    """Each platform stack's function → its BEDROCK_DATA_BUCKETS, decoded."""
    return {
        props["FunctionName"]: json.loads(render(props["Environment"]["Variables"][BEDROCK_DATA_BUCKETS_ENV]))
        for function in resources(synthesized.platform, "AWS::Lambda::Function").values()
        for props in [function["Properties"]]
    }


def deployed_in(synthesized: Synthesized) -> dict[str, str]:
    """Each stack → the `aws://account/region` the CLI deploys it to."""
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text())
    return {
        name: artifact["environment"]
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def bedrock_regions_of_trust(synthesized: Synthesized) -> set[str]:
    _, role = only(synthesized.platform, "AWS::IAM::Role", "TrainingBedrockCustomizationRole")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return {bedrock_arn(render(arn))[0] for arn in as_list(trust["Condition"]["ArnLike"]["aws:SourceArn"])}


def test_the_catalog_trains_nova_and_llama_where_the_home_region_of_the_tests_trains_nothing() -> None:
    assert {"us-east-1", "us-west-2"} <= set(bedrock_training_regions())
    assert HOME_REGION not in bedrock_training_regions()
    assert bedrock_training_regions() == REGIONAL_BEDROCK_REGIONS


def test_a_home_region_where_no_model_trains_gets_a_stack_in_each_bedrock_region(
    synthesized: Synthesized,
) -> None:
    assert deployed_in(synthesized) == {
        "Tunelab": f"aws://unknown-account/{HOME_REGION}",
        "TunelabConnector": "aws://unknown-account/unknown-region",  # wherever the customer deploys it
        **{stack_of(region): f"aws://unknown-account/{region}" for region in REGIONAL_BEDROCK_REGIONS},
    }


@pytest.mark.parametrize("region", REGIONAL_BEDROCK_REGIONS)
def test_the_regional_data_bucket_is_named_for_the_platform_private_and_kept_like_the_artifacts(
    synthesized: Synthesized, region: str
) -> None:
    template = synthesized.templates[stack_of(region)]
    buckets = resources(template, "AWS::S3::Bucket")
    ((data_id, data),) = [(k, b) for k, b in buckets.items() if "BucketName" in b["Properties"]]
    props = data["Properties"]
    assert render(props["BucketName"]) == bucket_name(region)
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert data["DeletionPolicy"] == data["UpdateReplacePolicy"] == "Retain"
    # The same lifecycle as the artifacts bucket whose role it plays in this region
    _, artifacts = only(synthesized.platform, "AWS::S3::Bucket", "DataArtifactsBucket")
    assert props["LifecycleConfiguration"] == artifacts["Properties"]["LifecycleConfiguration"]
    # Access logged to a bucket of this region, whose logs expire
    (logs_id,) = set(buckets) - {data_id}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    logs = buckets[logs_id]
    assert logs["Properties"]["LifecycleConfiguration"]["Rules"] == [
        {"ExpirationInDays": ACCESS_LOGS_EXPIRE_AFTER_DAYS, "Status": "Enabled"}
    ]
    assert logs["DeletionPolicy"] == "Retain"
    assert template["Outputs"]["DataBucketName"]["Value"] == {"Ref": data_id}


@pytest.mark.parametrize("region", REGIONAL_BEDROCK_REGIONS)
def test_the_regional_rule_forwards_bedrock_job_state_changes_to_the_home_default_bus(
    synthesized: Synthesized, region: str
) -> None:
    template = synthesized.templates[stack_of(region)]
    _, rule = only(template, "AWS::Events::Rule")
    props = rule["Properties"]
    # The region's default bus, the home rule's pattern: the home rule, which names no region or
    # account, queues the forwarded events like its own region's
    assert "EventBusName" not in props
    assert props["EventPattern"] == dict(BEDROCK_JOB_STATE_CHANGE_PATTERN)
    home_rule = only(synthesized.platform, "AWS::Events::Rule", f"Events{HOME_RULE.logical_id}")[1]
    assert home_rule["Properties"]["EventPattern"] == props["EventPattern"]
    assert not {"region", "account"} & set(props["EventPattern"])
    (target,) = props["Targets"]
    assert render(target["Arn"]) == HOME_BUS
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": HOME_RULE.retry_attempts,
        "MaximumEventAgeInSeconds": HOME_RULE.max_event_age_seconds,
    }
    # The role EventBridge forwards with may only put events on that bus
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    (trust,) = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    granted = actions_on(statements_of_role(template, role_id))
    assert {action: [render(r) for r in rs] for action, rs in granted.items()} == {
        "events:PutEvents": [HOME_BUS]
    }
    # An event it could not forward waits in an encrypted, TLS-only queue for 14 days, with an alarm
    dlq_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    dlq = template["Resources"][dlq_id]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    assert dlq["SqsManagedSseEnabled"] is True
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(template, "AWS::SQS::QueuePolicy").values()
        if {"Ref": dlq_id} in p["Properties"]["Queues"]
    ]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy
    )
    (send,) = [s for s in policy if s["Effect"] == "Allow"]
    assert send["Principal"] == {"Service": "events.amazonaws.com"}
    assert send["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [only(template, "AWS::Events::Rule")[0], "Arn"]}}
    }
    (alarm,) = resources(template, "AWS::CloudWatch::Alarm").values()
    assert alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [dlq_id, "QueueName"]}


def test_every_function_is_told_the_data_bucket_of_each_other_bedrock_region(
    synthesized: Synthesized,
) -> None:
    told = environments(synthesized)
    assert len(told) == len(FUNCTIONS)
    expected = {region: bucket_name(region) for region in REGIONAL_BEDROCK_REGIONS}
    assert all(buckets == expected for buckets in told.values())


def test_the_bedrock_role_trusts_jobs_in_every_bedrock_region_of_the_deployment(
    synthesized: Synthesized,
) -> None:
    assert bedrock_regions_of_trust(synthesized) == {HOME_REGION, *REGIONAL_BEDROCK_REGIONS}


def function_grants(synthesized: Synthesized, logical_id: str) -> dict[str, list[str]]:
    template = synthesized.platform
    (role_id,) = [
        key for key in resources(template, "AWS::IAM::Role") if key.startswith(f"Functions{logical_id}Role")
    ]
    return {a: [render(r) for r in rs] for a, rs in actions_on(statements_of_role(template, role_id)).items()}


@pytest.mark.parametrize(
    "spec", [s for s in FUNCTIONS if s.permissions & BEDROCK_PERMISSIONS], ids=lambda s: s.module
)
def test_functions_call_bedrock_in_every_bedrock_region_of_the_deployment(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    for action, targets in function_grants(synthesized, spec.logical_id).items():
        if not action.startswith("bedrock:"):
            continue
        # Each resource type it acts on, in each region: a model trains, deploys and answers there
        by_type: dict[str, set[str]] = {}
        for arn in targets:
            region, resource_type = bedrock_arn(arn)
            by_type.setdefault(resource_type, set()).add(region)
        assert by_type, (spec.module, action)
        for resource_type, regions in by_type.items():
            assert regions == {HOME_REGION, *REGIONAL_BEDROCK_REGIONS}, (spec.module, action, resource_type)


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda s: s.module)
def test_who_writes_or_deletes_training_data_and_bedrock_output_does_so_in_every_region(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    granted = function_grants(synthesized, spec.logical_id)
    regional = [f"arn:aws:s3:::{bucket_name(region)}" for region in REGIONAL_BEDROCK_REGIONS]
    writes = Permission.ARTIFACTS_WRITE in spec.permissions
    reads = Permission.ARTIFACTS_READ in spec.permissions
    for bucket in regional:
        # PrepareData writes the training files; the API deletes a model's files (and lists them)
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert (f"{bucket}/*" in granted.get(action, [])) == writes, (spec.module, action)
        assert (f"{bucket}/*" in granted.get("s3:GetObject", [])) == reads, spec.module
        assert (bucket in granted.get("s3:ListBucket", [])) == reads, spec.module
    if writes:
        assert any("DataArtifactsBucket" in t for t in granted["s3:PutObject"]), spec.module


def test_a_home_region_where_nova_trains_gets_a_stack_only_in_the_llama_region(
    synthesized_in_us_east_1: Synthesized,
) -> None:
    synthesized = synthesized_in_us_east_1
    assert synthesized.error is None
    assert deployed_in(synthesized) == {
        "Tunelab": "aws://unknown-account/us-east-1",
        "TunelabConnector": "aws://unknown-account/unknown-region",
        stack_of("us-west-2"): "aws://unknown-account/us-west-2",
    }
    assert all(b == {"us-west-2": bucket_name("us-west-2")} for b in environments(synthesized).values())
    assert bedrock_regions_of_trust(synthesized) == {"us-east-1", "us-west-2"}
    _, rule = only(synthesized.templates[stack_of("us-west-2")], "AWS::Events::Rule")
    (target,) = rule["Properties"]["Targets"]
    assert (
        render(target["Arn"]) == "arn:${AWS::Partition}:events:us-east-1:${AWS::AccountId}:event-bus/default"
    )


def test_bedrock_regions_narrows_where_bedrock_trains_and_keeps_data(
    synthesized_narrowed: Synthesized,
) -> None:
    synthesized = synthesized_narrowed
    assert synthesized.error is None
    assert set(deployed_in(synthesized)) == {"Tunelab", "TunelabConnector", stack_of("us-west-2")}
    assert all(b == {"us-west-2": bucket_name("us-west-2")} for b in environments(synthesized).values())
    assert bedrock_regions_of_trust(synthesized) == {HOME_REGION, "us-west-2"}
    text = json.dumps(synthesized.platform)
    assert "us-east-1" not in text
