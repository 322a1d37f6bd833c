"""Schedules (auto-undeploy group and role, reconciler) and the Bedrock customization role."""

from __future__ import annotations

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
from tunelab.composition.stack_definitions import SCHEDULES, TRAINER_BUNDLE_DIR
from tunelab.domain.layout import BEDROCK_OUTPUT_PREFIX, TRAINING_DATA_PREFIX

pytestmark = pytest.mark.xdist_group("infra")


def test_the_auto_undeploy_role_may_only_invoke_the_auto_undeploy_function(synthesized: Synthesized) -> None:
    template = synthesized.platform
    role_id, role = only(template, "AWS::IAM::Role", "SchedulesAutoUndeployRole")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert render(trust["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(
        ":schedule-group/Tunelab-auto-undeploy"
    )
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    granted = {
        a: [render(r) for r in rs] for a, rs in actions_on(statements_of_role(template, role_id)).items()
    }
    assert set(granted) == {"lambda:InvokeFunction", "sqs:SendMessage"}
    (target,) = granted["lambda:InvokeFunction"]
    assert target.endswith(":function:Tunelab-auto-undeploy")
    (group,) = resources(template, "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == "Tunelab-auto-undeploy"


def test_the_reconciler_runs_on_its_schedule_with_retries_and_a_dlq(synthesized: Synthesized) -> None:
    (spec,) = SCHEDULES
    (schedule,) = resources(synthesized.platform, "AWS::Scheduler::Schedule").values()
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == spec.expression
    target = props["Target"]
    assert render(target["Arn"]).endswith(":function:Tunelab-reconciler")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert "SchedulesDlq" in render(target["DeadLetterConfig"]["Arn"])
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    granted = actions_on(statements_of_role(synthesized.platform, role_id))
    assert [render(r) for r in granted["lambda:InvokeFunction"]] == [render(target["Arn"])]


def test_bedrock_role_reads_the_training_data_and_writes_the_output_where_tunelab_puts_them(
    synthesized: Synthesized,
) -> None:
    template = synthesized.platform
    role_id, role = only(template, "AWS::IAM::Role", "TrainingBedrockCustomizationRole")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # This account's customization jobs in each region it trains in: home and the regional stacks'
    assert sorted(render(arn) for arn in as_list(trust["Condition"]["ArnLike"]["aws:SourceArn"])) == sorted(
        f"arn:${{AWS::Partition}}:bedrock:{region}:${{AWS::AccountId}}:model-customization-job/*"
        for region in (HOME_REGION, *REGIONAL_BEDROCK_REGIONS)
    )
    granted = {
        a: sorted(render(r) for r in rs)
        for a, rs in actions_on(statements_of_role(template, role_id)).items()
    }
    artifacts, _ = only(template, "AWS::S3::Bucket", "DataArtifactsBucket")
    # PrepareData writes Bedrock's training files under training-data/ in the artifacts bucket (or
    # the data bucket of the region the model trains in), and jobs write their output under
    # bedrock-output/ there (the Bedrock provider's training_data_folder, output_uri)
    buckets = [f"${{{artifacts}.Arn}}"] + [
        f"arn:aws:s3:::tunelab-bedrock-${{AWS::AccountId}}-{region}" for region in REGIONAL_BEDROCK_REGIONS
    ]
    assert granted == {
        "s3:GetObject": sorted(
            f"{bucket}/{prefix}*"
            for bucket in buckets
            for prefix in (BEDROCK_OUTPUT_PREFIX, TRAINING_DATA_PREFIX)
        ),
        "s3:PutObject": sorted(f"{bucket}/{BEDROCK_OUTPUT_PREFIX}*" for bucket in buckets),
        "s3:ListBucket": sorted(buckets),
    }
    # S3-managed keys: no KMS permission to grant
    (bucket,) = [b for k, b in resources(template, "AWS::S3::Bucket").items() if k == artifacts]
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_the_trainer_travels_in_the_lambda_code_and_is_no_asset_of_its_own(synthesized: Synthesized) -> None:
    staged = [p for p in synthesized.outdir.glob("asset.*") if p.is_dir()]
    assert not [p for p in staged if (p / "train.py").exists()], "trainer/ is still an asset of its own"
    (code,) = [p for p in staged if (p / "functions").is_dir()]
    assert (code / TRAINER_BUNDLE_DIR / "train.py").is_file()
    assert (code / TRAINER_BUNDLE_DIR / "requirements.txt").is_file()
