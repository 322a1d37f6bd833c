"""Events: which rule feeds which queue, DLQs and retries, partial batch responses, the bus policy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import CONNECTED_ACCOUNTS, Synthesized, as_list, only, render, resources
from tunelab.composition.stack_definitions import EVENT_RULES, QUEUES, EventRuleSpec, QueueSpec, function

pytestmark = pytest.mark.xdist_group("infra")


def queue_id(template: dict[str, Any], spec: QueueSpec) -> str:
    return _queue(template, spec)


def _queue(template: dict[str, Any], spec: QueueSpec) -> str:
    # `Events<Logical>` is a prefix of `Events<Logical>Dlq`: pick the one with a redrive policy.
    found = [
        key
        for key, queue in resources(template, "AWS::SQS::Queue").items()
        if key.startswith(f"Events{spec.logical_id}") and "RedrivePolicy" in queue["Properties"]
    ]
    assert len(found) == 1
    return found[0]


def rule_of(template: dict[str, Any], spec: EventRuleSpec) -> dict[str, Any]:
    props: dict[str, Any] = only(template, "AWS::Events::Rule", f"Events{spec.logical_id}")[1]["Properties"]
    return props


@pytest.mark.parametrize("spec", QUEUES, ids=lambda s: s.name)
def test_queue_dead_letters_after_its_receive_count_and_outlives_its_consumer(
    synthesized: Synthesized, spec: QueueSpec
) -> None:
    template = synthesized.platform
    queue = template["Resources"][_queue(template, spec)]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == spec.max_receive_count
    dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq_id.startswith(f"Events{spec.logical_id}Dlq")
    assert template["Resources"][dlq_id]["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    assert queue["VisibilityTimeout"] == 6 * function(spec.consumer).timeout_seconds
    assert queue["SqsManagedSseEnabled"] is True


@pytest.mark.parametrize("spec", QUEUES, ids=lambda s: s.name)
def test_consumer_reads_its_queue_in_batches_and_reports_partial_failures(
    synthesized: Synthesized, spec: QueueSpec
) -> None:
    template = synthesized.platform
    queue = _queue(template, spec)
    (mapping,) = [
        m["Properties"]
        for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == spec.batch_size
    assert f"Functions{spec.consumer}" in render(mapping["FunctionName"])


@pytest.mark.parametrize("spec", EVENT_RULES, ids=lambda s: s.logical_id)
def test_rule_matches_its_pattern_and_feeds_its_queue_with_retries_and_a_dlq(
    synthesized: Synthesized, spec: EventRuleSpec
) -> None:
    template = synthesized.platform
    rule = rule_of(template, spec)
    pattern = rule["EventPattern"]
    assert pattern["source"] == spec.event_pattern["source"]
    assert pattern["detail-type"] == spec.event_pattern["detail-type"]
    if spec.bus == "tunelab":
        assert "EventsEventBus" in render(rule["EventBusName"])
    else:
        assert "EventBusName" not in rule
    (target,) = rule["Targets"]
    queue = _queue(template, next(q for q in QUEUES if q.logical_id == spec.target_queue))
    assert target["Arn"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": spec.retry_attempts,
        "MaximumEventAgeInSeconds": spec.max_event_age_seconds,
    }
    assert "EventsEventDeliveryDlq" in render(target["DeadLetterConfig"]["Arn"])


def test_provider_rules_match_bedrock_and_tagged_sagemaker_events(synthesized: Synthesized) -> None:
    by_id = {spec.logical_id: rule_of(synthesized.platform, spec)["EventPattern"] for spec in EVENT_RULES}
    assert by_id["BedrockCustomizationRule"] == {
        "source": ["aws.bedrock"],
        "detail-type": ["Model Customization Job State Change"],
    }
    for rule_id, detail_type in (
        ("SageMakerTrainingRule", "SageMaker Training Job State Change"),
        ("SageMakerEndpointRule", "SageMaker Endpoint State Change"),
    ):
        assert by_id[rule_id]["detail-type"] == [detail_type]
        assert by_id[rule_id]["detail"] == {"Tags": {"tunelab-workspace": [{"exists": True}]}}


def test_upload_rule_matches_objects_created_under_uploads_in_the_datasets_bucket(
    synthesized: Synthesized,
) -> None:
    (spec,) = [s for s in EVENT_RULES if s.logical_id == "DatasetUploadedRule"]
    pattern = rule_of(synthesized.platform, spec)["EventPattern"]
    bucket_id, _ = only(synthesized.platform, "AWS::S3::Bucket", "DataDatasetsBucket")
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": bucket_id}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "uploads/"}]


def test_queues_accept_messages_only_from_their_rules_and_only_over_tls(synthesized: Synthesized) -> None:
    template = synthesized.platform
    for policy in resources(template, "AWS::SQS::QueuePolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
        for statement in statements:
            if statement.get("Principal") == {"Service": "events.amazonaws.com"}:
                assert "aws:SourceArn" in json.dumps(statement["Condition"])


def test_bus_accepts_sagemaker_events_only_from_connected_accounts(synthesized: Synthesized) -> None:
    template = synthesized.platform
    policies = resources(template, "AWS::Events::EventBusPolicy")
    statements = [p["Properties"]["Statement"] for p in policies.values()]
    assert statements, "no bus policy"
    (statement,) = statements
    principals = as_list(statement["Principal"]["AWS"])
    assert sorted(render(p) for p in principals) == sorted(
        f"arn:aws:iam::{account}:root"
        for account in CONNECTED_ACCOUNTS  # the home region's partition
    )
    assert statement["Action"] == "events:PutEvents"
    assert statement["Condition"] == {"StringEquals": {"events:source": "aws.sagemaker"}}
    assert "EventsEventBus" in render(statement["Resource"])


def test_every_dead_letter_queue_raises_an_alarm_when_a_message_waits(synthesized: Synthesized) -> None:
    template = synthesized.platform
    redrive_targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in resources(template, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in q["Properties"]
    }
    other_dlqs = {key for key in resources(template, "AWS::SQS::Queue") if "Dlq" in key}
    alarmed = set()
    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props["MetricName"] == "ApproximateNumberOfMessagesVisible":
            assert props["Threshold"] == 1
            assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            (dimension,) = props["Dimensions"]
            alarmed.add(dimension["Value"]["Fn::GetAtt"][0])
    assert redrive_targets | other_dlqs <= alarmed
    assert len(alarmed) >= 6
