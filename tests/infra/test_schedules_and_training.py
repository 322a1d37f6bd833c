"""Schedules (auto-undeploy group and role, reconciler) and the Bedrock customization role."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synthesized, actions_on, only, render, resources, statements_of_role
from tunelab.stack_definitions import SCHEDULES

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


def test_bedrock_role_is_for_this_accounts_customization_jobs_reading_datasets_writing_artifacts(
    synthesized: Synthesized,
) -> None:
    template = synthesized.platform
    role_id, role = only(template, "AWS::IAM::Role", "TrainingBedrockCustomizationRole")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert render(trust["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(":model-customization-job/*")
    granted = {
        a: [render(r) for r in rs] for a, rs in actions_on(statements_of_role(template, role_id)).items()
    }
    datasets, _ = only(template, "AWS::S3::Bucket", "DataDatasetsBucket")
    artifacts, _ = only(template, "AWS::S3::Bucket", "DataArtifactsBucket")
    assert granted["s3:GetObject"] == [f"${{{datasets}.Arn}}/*"]
    assert granted["s3:PutObject"] == [f"${{{artifacts}.Arn}}/*"]


def test_the_trainer_source_is_an_asset(synthesized: Synthesized) -> None:
    assets = (synthesized.outdir / "Tunelab.assets.json").read_text()
    assert '"packaging": "zip"' in assets
    staged = [p for p in synthesized.outdir.glob("asset.*") if (p / "train.py").exists()]
    assert staged, "trainer/ is not staged as an asset"
