"""The stack's definitions as data: references hold, placeholders render, the table reads back."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from infra.config import REPO_ROOT
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


def test_the_bedrock_prefixes_and_buckets_are_where_the_code_puts_the_files() -> None:
    from tunelab.adapters.providers.bedrock import BedrockConfig, BedrockProvider  # noqa: PLC0415  # boto3-heavy
    from tunelab.domain.catalog import BaseModelSpec, load_catalog  # noqa: PLC0415
    from tunelab.domain.providers import ModelIdentity  # noqa: PLC0415

    # Given a deployment in us-east-1 whose us-west-2 stack made the data bucket the stack names there
    regional = sd.bedrock_data_bucket_name("Tunelab", "123456789012", "us-west-2")
    provider = BedrockProvider(
        BedrockConfig(
            region="us-east-1",
            service_role_arn="arn:aws:iam::123456789012:role/b",
            output_bucket="artifacts",
            regional_buckets={"us-west-2": regional},
        )
    )
    identity = ModelIdentity(workspace_id="ws", model_name="m", created_at=datetime(2026, 11, 28, tzinfo=UTC))
    by_region: dict[str, BaseModelSpec] = {}
    for spec in load_catalog().models:
        if spec.provider == "bedrock" and not spec.is_retired and len(spec.regions) == 1:
            by_region.setdefault(spec.regions[0], spec)
    # Then Bedrock's service role is scoped to where the code writes: these folders of those buckets
    for region, bucket in (("us-east-1", "artifacts"), ("us-west-2", regional)):
        assert provider.output_uri(identity, region).startswith(f"s3://{bucket}/{BEDROCK_OUTPUT_PREFIX}")
        folder = provider.training_data_folder(identity, "u1", by_region[region])
        assert folder.startswith(f"s3://{bucket}/{TRAINING_DATA_PREFIX}")


def test_the_bundled_trainer_is_where_the_composition_looks_next_to_the_package() -> None:
    from tunelab.composition import trainer  # noqa: PLC0415

    # In a bundle the package sits at the task root: <root>/tunelab next to <root>/trainer
    assert trainer._PACKAGE_DIR.parent / sd.TRAINER_BUNDLE_DIR in trainer._CANDIDATES


def test_a_regional_data_bucket_name_is_a_valid_s3_name_for_any_stack_name_and_region() -> None:
    bucket = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    # 41 characters (the longest stack name the app accepts), one with a hyphen where it is cut
    cut_at_hyphen = "T" + "a" * 18 + "-" + "b" * 21
    for stack_name in ("Tunelab", "A" * 41, cut_at_hyphen):
        for region in ("us-east-1", "us-west-2", "ap-southeast-2", "us-gov-west-1"):
            name = sd.bedrock_data_bucket_name(stack_name, "123456789012", region)
            assert bucket.fullmatch(name), name
            assert len(name) <= 63
            assert name.endswith(f"-123456789012-{region}")
            # the same every time: the home stack names what the regional stack creates
            assert name == sd.bedrock_data_bucket_name(stack_name, "123456789012", region)
    assert sd.bedrock_data_bucket_name("Tunelab", "123456789012", "us-west-2") == (
        "tunelab-bedrock-123456789012-us-west-2"
    )
    # two deployments in one account keep apart, long names alike in their first 20 characters too
    assert sd.bedrock_data_bucket_name("TunelabDev", "1" * 12, "us-west-2") != sd.bedrock_data_bucket_name(
        "Tunelab", "1" * 12, "us-west-2"
    )
    assert sd.bedrock_data_bucket_name(
        "TunelabProductionEurope-A", "1" * 12, "us-west-2"
    ) != sd.bedrock_data_bucket_name("TunelabProductionEurope-B", "1" * 12, "us-west-2")
    with pytest.raises(ValueError, match="region"):
        sd.bedrock_data_bucket_name("Tunelab", "123456789012", "US-WEST-2")
    with pytest.raises(ValueError, match="bucket"):
        sd.bedrock_data_bucket_name("Xn--tunelab", "123456789012", "us-west-2")


def test_the_bedrock_rule_matches_the_job_state_changes_of_any_region() -> None:
    (rule,) = [r for r in sd.EVENT_RULES if r.logical_id == "BedrockCustomizationRule"]
    assert rule.event_pattern == sd.BEDROCK_JOB_STATE_CHANGE_PATTERN
    assert not {"region", "account"} & set(rule.event_pattern)
    assert set(sd.bedrock_training_regions()) >= {"us-east-1", "us-west-2"}


def test_stack_definitions_import_without_the_cdk() -> None:
    code = (
        "import sys; sys.modules['aws_cdk'] = None; sys.modules['constructs'] = None; "
        "import tunelab.composition.stack_definitions"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT / "shared")
