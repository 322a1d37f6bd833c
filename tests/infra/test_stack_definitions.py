"""The stack's definitions as data: references hold, placeholders render, the table reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tunelab.composition import stack_definitions as sd
from tunelab.domain.layout import BEDROCK_OUTPUT_PREFIX, TRAINING_DATA_PREFIX

pytestmark = pytest.mark.xdist_group("infra")


def test_every_function_module_is_named_once_and_queues_rules_schedules_point_at_known_things() -> None:
    modules = [spec.module for spec in sd.FUNCTIONS]
    assert len(modules) == len(set(modules))
    assert {q.consumer for q in sd.QUEUES} <= {f.logical_id for f in sd.FUNCTIONS}
    assert {r.target_queue for r in sd.EVENT_RULES} <= {q.logical_id for q in sd.QUEUES}
    assert sd.function(sd.AUTO_UNDEPLOY_FUNCTION).trigger == "schedule"


def test_queue_consumers_are_queue_triggered() -> None:
    for queue in sd.QUEUES:
        assert sd.function(queue.consumer).trigger == "queue"


def test_unknown_names_fail_with_the_known_ones_listed() -> None:
    with pytest.raises(KeyError, match="PrepareData"):
        sd.function("Nope")


def test_render_pattern_fills_placeholders_anywhere_and_refuses_unknown_ones() -> None:
    (rule,) = [r for r in sd.EVENT_RULES if r.logical_id == "DatasetUploadedRule"]
    rendered = sd.render_pattern(rule.event_pattern, {"DatasetsBucketName": "my-bucket"})
    assert rendered["detail"]["bucket"]["name"] == ["my-bucket"]
    assert rendered["detail"]["object"]["key"] == [{"prefix": "uploads/"}]
    assert rule.event_pattern["detail"]["bucket"]["name"] == ["${DatasetsBucketName}"]  # left as it was
    with pytest.raises(KeyError):
        sd.render_pattern(rule.event_pattern, {})


def test_placeholders_and_the_variables_a_definition_may_use() -> None:
    assert sd.placeholders('{"a": "${PrepareDataFunctionArn}", "b": "$.x", "c": "${TableName}"}') == {
        "PrepareDataFunctionArn",
        "TableName",
    }
    variables = sd.state_machine_variables()
    assert variables["NotifyFunctionArn"] == "Notify"
    assert variables["TableName"] == "TableName"


def test_table_definition_reads_boto3_create_table_arguments() -> None:
    definition = sd.TableDefinition.from_create_table(
        {
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "by-job",
                    "KeySchema": [{"AttributeName": "job", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status"]},
                }
            ],
        },
        ttl_attribute="ttl",
    )
    assert (definition.partition_key, definition.sort_key, definition.ttl_attribute) == ("pk", "sk", "ttl")
    (index,) = definition.global_indexes
    assert (index.name, index.partition_key, index.sort_key) == ("by-job", "job", None)
    assert (index.projection, index.non_key_attributes) == ("INCLUDE", ("status",))


def test_the_repositorys_table_is_the_one_used() -> None:
    from tunelab.adapters import dynamodb  # noqa: PLC0415

    definition = sd.table_definition()
    assert definition.ttl_attribute == dynamodb.TTL_ATTRIBUTE
    assert {i.name for i in definition.global_indexes} == {
        i["IndexName"] for i in dynamodb.TABLE_DEFINITION["GlobalSecondaryIndexes"]
    }


def test_the_bedrock_prefixes_are_where_the_code_puts_the_files() -> None:
    from tunelab.adapters.providers.bedrock import BedrockConfig, BedrockProvider  # noqa: PLC0415  # boto3-heavy
    from tunelab.domain.providers import ModelIdentity  # noqa: PLC0415

    # Bedrock's service role is scoped to these folders: the code must write exactly there
    provider = BedrockProvider(
        BedrockConfig(
            region="us-east-1", service_role_arn="arn:aws:iam::123456789012:role/b", output_bucket="artifacts"
        )
    )
    identity = ModelIdentity(workspace_id="ws", model_name="m", created_at=datetime(2026, 11, 28, tzinfo=UTC))
    assert provider.output_uri(identity).startswith(f"s3://artifacts/{BEDROCK_OUTPUT_PREFIX}")
    assert provider.training_data_folder(identity, "u1").startswith(f"s3://artifacts/{TRAINING_DATA_PREFIX}")


def test_the_bundled_trainer_is_where_the_composition_looks_next_to_the_package() -> None:
    from tunelab.composition import trainer  # noqa: PLC0415

    # In a bundle the package sits at the task root: <root>/tunelab next to <root>/trainer
    assert trainer._PACKAGE_DIR.parent / sd.TRAINER_BUNDLE_DIR in trainer._CANDIDATES
