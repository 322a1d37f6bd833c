"""The SageMaker endpoint's instance type and count at deploy, on the fakes: checked against the serving
memory the model needs (`resources.serving_gb`), defaulted, kept on the record and priced."""

from __future__ import annotations

import pytest

from tests.application.conftest import ADA, created_model, trained_on_sagemaker, workflow_input
from tests.fakes import FakeContext
from tunelab.application import deployments, fine_tuned_models
from tunelab.application.commands import DeployIn
from tunelab.application.workflows import FinishTrainingEvent, StartDeploymentEvent, TrainingOutcome
from tunelab.domain.costs import usd
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.records import ModelRecord
from tunelab.domain.resources import serving_instances


def _start(ctx: FakeContext, model: ModelRecord) -> None:
    started = ctx.workflows.started[-1]
    deployments.start_deployment(
        ctx,
        StartDeploymentEvent.model_validate(
            workflow_input(model, started.correlation_id, requested_at=started.requested_at)
        ),
    )


def _lora(ctx: FakeContext) -> ModelRecord:
    return trained_on_sagemaker(ctx, "lora-bot", optional={"use_lora": True, "merge_adapters": True})


def test_a_fitting_instance_type_and_count_reach_the_endpoint_record_and_price(ctx: FakeContext) -> None:
    model = _lora(ctx)
    asked = DeployIn(instance_type="ml.g6e.12xlarge", instance_count=2)

    deploying = deployments.deploy(ctx, ADA, model.name, asked, correlation_id="req-deploy")
    _start(ctx, deploying)

    assert deploying.deployment is not None
    assert (deploying.deployment.instance_type, deploying.deployment.instance_count) == ("ml.g6e.12xlarge", 2)
    instance = ctx.catalog.find_instance("ml.g6e.12xlarge")
    assert instance is not None
    assert deploying.deployment.hourly_usd == usd(instance.price_per_hour_usd * 2)
    [request] = ctx.provider("sagemaker").called("deploy")
    assert (request.instance_type, request.instance_count, request.gpus_per_instance) == (
        "ml.g6e.12xlarge",
        2,
        instance.gpus,
    )


def test_a_too_small_instance_type_is_refused_naming_the_smallest_that_fits(ctx: FakeContext) -> None:
    # 14.8B parameters need about 36 GB to serve: one 24 GB GPU is too small.
    model = trained_on_sagemaker(
        ctx, "big-bot", optional={"use_lora": True}, base_model_id="sagemaker.qwen2-5-14b-instruct"
    )
    spec = ctx.catalog.model(model.base_model_id)
    assert spec.parameter_count is not None
    started = len(ctx.workflows.started)

    with pytest.raises(ValidationFailed) as refused:
        deployments.deploy(
            ctx, ADA, model.name, DeployIn(instance_type="ml.g5.2xlarge"), correlation_id="req-deploy"
        )

    [detail] = refused.value.details
    assert detail.field == "instance_type"
    smallest = serving_instances(spec.parameter_count, ctx.catalog.instances)[0]
    assert smallest.vram_gb == 48
    assert f"The smallest that fits is {smallest.name}." in detail.message
    assert len(ctx.workflows.started) == started
    assert ctx.models.get(ADA.workspace, model.name).deployment is None


def test_an_unknown_instance_type_is_refused_naming_some_that_exist(ctx: FakeContext) -> None:
    model = _lora(ctx)

    with pytest.raises(ValidationFailed) as refused:
        deployments.deploy(ctx, ADA, model.name, DeployIn(instance_type="ml.x9.huge"), correlation_id="r")

    [detail] = refused.value.details
    assert detail.field == "instance_type"
    assert "'ml.x9.huge' is not an instance type" in detail.message
    assert any(i.name in detail.message for i in ctx.catalog.instances)


def test_a_bedrock_model_takes_no_instance_type_or_count(ctx: FakeContext) -> None:
    model = created_model(ctx)
    fine_tuned_models.finish_training(
        ctx,
        FinishTrainingEvent.model_validate(
            {
                **workflow_input(model, "run-1"),
                "outcome": TrainingOutcome(
                    outcome="completed", model_ref="arn:aws:bedrock:custom-model/x", artifacts_uri="s3://b/o/"
                ).model_dump(),
            }
        ),
    )
    assert ctx.catalog.model(model.base_model_id).deployment.method != "sagemaker_endpoint"

    for field, asked in (
        ("instance_type", DeployIn(instance_type="ml.g5.xlarge")),
        ("instance_count", DeployIn(instance_count=2)),
    ):
        with pytest.raises(ValidationFailed) as refused:
            deployments.deploy(ctx, ADA, model.name, asked, correlation_id="r")
        assert refused.value.details[0].field == field
        assert "not served on a SageMaker endpoint" in refused.value.details[0].message
    assert ctx.models.get(ADA.workspace, model.name).status == "not_deployed"


def test_without_a_choice_the_models_default_instance_type_serves_it_once(ctx: FakeContext) -> None:
    model = _lora(ctx)
    spec = ctx.catalog.model(model.base_model_id)

    deploying = deployments.deploy(ctx, ADA, model.name, DeployIn(), correlation_id="req-deploy")
    _start(ctx, deploying)

    assert deploying.deployment is not None
    assert deploying.deployment.instance_type == spec.deployment.default_instance_type
    assert deploying.deployment.instance_count == 1
    [request] = ctx.provider("sagemaker").called("deploy")
    assert request.instance_type == spec.deployment.default_instance_type


def test_instance_count_is_one_to_ten() -> None:
    DeployIn(instance_count=10)
    for wrong in (0, 11):
        with pytest.raises(ValueError, match="instance_count"):
            DeployIn(instance_count=wrong)
