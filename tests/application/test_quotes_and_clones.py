"""The quote (the whole plan and its price, named so that starting proves nothing changed), the
maximum a user will pay, and clones of a model's request — on in-memory fakes of every port."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.application.conftest import (
    ADA,
    SAGEMAKER_MODEL,
    TRAINING_CSV,
    create_request,
    created_model,
    ready_dataset,
    sagemaker_request,
)
from tests.fakes import FakeContext
from tunelab.application import datasets, fine_tuned_models
from tunelab.application.commands import CloneIn, CostEstimateIn, CreateFineTunedModelIn
from tunelab.application.fine_tuned_models import Estimate
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.hyperparameters import HyperparametersIn
from tunelab.domain.identity import Identity
from tunelab.domain.quotes import QUOTE_TTL
from tunelab.domain.records import ModelRecord

BOB = Identity(sub="sub-bob", email="bob@example.com", workspace="ws-other")


def _estimate_of(request: CreateFineTunedModelIn) -> CostEstimateIn:
    body = request.model_dump(mode="json", exclude={"name", "acknowledge"})
    return CostEstimateIn.model_validate(body)


def _field(error: ValidationFailed) -> str:
    return str(error.details[0].field)


def test_the_estimate_answers_the_whole_plan_and_a_quote_that_starts_exactly_it(ctx: FakeContext) -> None:
    request = sagemaker_request(ctx, hyperparameters={"epochs": 2})
    answer = fine_tuned_models.estimate(ctx, ADA, _estimate_of(request))

    planned = answer.plan
    assert planned.unrunnable is None
    assert planned.spec.id == SAGEMAKER_MODEL
    assert planned.hyperparameters.epochs == 2
    assert planned.hyperparameters.learning_rate > 0  # the default, filled in
    assert planned.optional_hyperparameters is not None
    assert planned.resources is not None
    assert planned.resources.instance_type == "ml.g6e.2xlarge"
    # The advice for the very plan: it fits the instance asked for.
    assert planned.advice is not None
    assert any(i.instance_type == "ml.g6e.2xlarge" and i.fits for i in planned.advice.instances)
    assert answer.quote is not None
    assert answer.quote.expires_at == ctx.now().replace(microsecond=0) + QUOTE_TTL

    started = fine_tuned_models.create(
        ctx, ADA, request.model_copy(update={"quote_id": answer.quote.quote_id}), correlation_id="r"
    )
    assert started.predicted_cost == planned.cost


def test_a_quote_refuses_a_changed_plan_an_expired_quote_and_another_workspace(ctx: FakeContext) -> None:
    request = create_request(ready_dataset(ctx), hyperparameters={"epochs": 2})
    quoted = fine_tuned_models.estimate(ctx, ADA, _estimate_of(request)).quote
    assert quoted is not None

    changed = CreateFineTunedModelIn.model_validate(
        {**request.model_dump(mode="json"), "quote_id": quoted.quote_id, "hyperparameters": {"epochs": 3}}
    )
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.create(ctx, ADA, changed, correlation_id="r")
    assert _field(refused.value) == "quote_id"
    assert "changed since this quote (the predicted total is now $" in refused.value.message

    with pytest.raises(ValidationFailed, match="not a quote id"):
        fine_tuned_models.create(
            ctx, ADA, request.model_copy(update={"quote_id": "q1.123.abc"}), correlation_id="r"
        )
    ctx.clock.advance(QUOTE_TTL + timedelta(seconds=1))
    with pytest.raises(ValidationFailed, match="The quote expired at"):
        fine_tuned_models.create(
            ctx, ADA, request.model_copy(update={"quote_id": quoted.quote_id}), correlation_id="r"
        )
    assert ctx.workflows.started == []


def test_a_quote_is_the_workspaces_own(ctx: FakeContext) -> None:
    request = create_request(ready_dataset(ctx))
    quoted = fine_tuned_models.estimate(ctx, ADA, _estimate_of(request)).quote
    assert quoted is not None
    bobs = create_request(datasets.create_from_csv(ctx, BOB, "tickets", TRAINING_CSV))
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.create(
            ctx, BOB, bobs.model_copy(update={"quote_id": quoted.quote_id}), correlation_id="r"
        )
    assert _field(refused.value) == "quote_id"


def test_a_maximum_below_the_predicted_total_starts_nothing_and_the_estimate_says_so(
    ctx: FakeContext,
) -> None:
    request = create_request(ready_dataset(ctx), hyperparameters={"epochs": 2})
    total = fine_tuned_models.estimate(ctx, ADA, _estimate_of(request)).plan.cost.total_usd
    assert total > 0.01

    noted = fine_tuned_models.estimate(
        ctx, ADA, _estimate_of(request).model_copy(update={"max_total_usd": 0.01})
    ).plan.cost.notes
    assert any("above your maximum $0.01: starting it would be refused" in n for n in noted)
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.create(
            ctx, ADA, request.model_copy(update={"max_total_usd": 0.01}), correlation_id="r"
        )
    assert _field(refused.value) == "max_total_usd"
    assert f"${total:,.2f} is above your maximum $0.01" in refused.value.message
    assert ctx.workflows.started == []
    # At or above the total it starts.
    started = fine_tuned_models.create(
        ctx, ADA, request.model_copy(update={"max_total_usd": total}), correlation_id="r"
    )
    assert started.name == "support-bot"


def test_a_model_this_deployment_cannot_run_is_estimated_not_runnable_and_without_a_quote(
    ctx: FakeContext,
) -> None:
    # The fake deployment runs on AWS: a local-runtime model is priced, not runnable.
    request = create_request(
        ready_dataset(ctx), base_model_id="local.tiny-llama", validation={"mode": "none"}
    )
    answer = fine_tuned_models.estimate(ctx, ADA, _estimate_of(request))
    assert answer.plan.unrunnable is not None
    assert "only in the local runtime" in answer.plan.unrunnable
    assert answer.quote is None
    assert answer.plan.cost.total_usd == 0
    with pytest.raises(ValidationFailed, match="only in the local runtime"):
        fine_tuned_models.create(ctx, ADA, request, correlation_id="r")


def test_a_clone_takes_the_sources_request_and_the_changes_it_gives(ctx: FakeContext) -> None:
    source = created_model(ctx, hyperparameters={"epochs": 2, "warmup_steps": 5})
    other = ready_dataset(ctx, name="more-tickets")

    # Not acknowledged: the clone's estimate and quote, nothing started.
    asked = CloneIn(
        name="support-bot-2", hyperparameters=HyperparametersIn(epochs=3), dataset_id=other.dataset_id
    )
    answer = fine_tuned_models.clone(ctx, ADA, source.name, asked, correlation_id="c")
    assert isinstance(answer, Estimate)
    assert answer.quote is not None
    assert (answer.plan.hyperparameters.epochs, answer.plan.dataset.dataset_id) == (3, other.dataset_id)
    assert ctx.models.find(ADA.workspace, "support-bot-2") is None

    started = fine_tuned_models.clone(
        ctx,
        ADA,
        source.name,
        asked.model_copy(update={"acknowledge": True, "quote_id": answer.quote.quote_id}),
        correlation_id="c",
    )
    assert isinstance(started, ModelRecord)
    assert started.name == "support-bot-2"
    assert started.base_model_id == source.base_model_id
    assert started.validation == source.validation
    assert started.dataset.id == other.dataset_id
    # The hyperparameters given join the source's: epochs 3, the warm-up as the source had it.
    assert started.hyperparameters.epochs == 3
    assert started.hyperparameters.warmup_steps == 5
    # Unchanged, everything is the source's.
    same = fine_tuned_models.clone(
        ctx, ADA, source.name, CloneIn(name="support-bot-3", acknowledge=True), correlation_id="c"
    )
    assert isinstance(same, ModelRecord)
    assert (same.hyperparameters, same.dataset.id, same.validation) == (
        source.hyperparameters,
        source.dataset.id,
        source.validation,
    )


def test_a_clone_goes_through_every_check_of_create(ctx: FakeContext) -> None:
    source = created_model(ctx)
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.clone(
            ctx,
            ADA,
            source.name,
            CloneIn.model_validate(
                {"name": "support-bot-2", "acknowledge": True, "hyperparameters": {"epochs": 99}}
            ),
            correlation_id="c",
        )
    assert _field(refused.value) == "hyperparameters.epochs"
    with pytest.raises(ValidationFailed) as refused:
        fine_tuned_models.clone(
            ctx,
            ADA,
            source.name,
            CloneIn(name="support-bot-2", acknowledge=True, max_total_usd=0),
            correlation_id="c",
        )
    assert _field(refused.value) == "max_total_usd"
    assert ctx.models.find(ADA.workspace, "support-bot-2") is None


def test_a_clone_of_a_source_with_optional_hyperparameters_resolves_them_again(ctx: FakeContext) -> None:
    # A source trained with LoRA, no checkpoints kept, and early stopping (saving follows evaluation).
    request = sagemaker_request(
        ctx,
        validation={"mode": "split", "percent": 10},
        hyperparameters={"epochs": 2, "early_stopping": {}},
        optional_hyperparameters={
            "use_lora": True,
            "lora_config": {"r": 16, "use_dora": True},
            "sft_config": {"eval_strategy": "steps", "eval_steps": 5, "weight_decay": 0.1},
        },
    )
    source = fine_tuned_models.create(ctx, ADA, request, correlation_id="r")
    assert source.optional_hyperparameters is not None
    unsaved = sagemaker_request(
        ctx, name="no-saves", optional_hyperparameters={"sft_config": {"save_strategy": "no"}}
    )
    no_saves = fine_tuned_models.create(ctx, ADA, unsaved, correlation_id="r")

    same = fine_tuned_models.clone(
        ctx, ADA, source.name, CloneIn(name="same", acknowledge=True), correlation_id="c"
    )
    assert isinstance(same, ModelRecord)
    assert same.optional_hyperparameters == source.optional_hyperparameters
    assert same.hyperparameters == source.hyperparameters

    # Without validation data: what follows from it is worked out again (no evaluation, no early stop).
    unvalidated = fine_tuned_models.clone(
        ctx,
        ADA,
        source.name,
        CloneIn.model_validate(
            {
                "name": "unvalidated",
                "acknowledge": True,
                "validation": {"mode": "none"},
                "hyperparameters": {"epochs": 2},
            }
        ),
        correlation_id="c",
    )
    assert isinstance(unvalidated, ModelRecord)
    assert unvalidated.optional_hyperparameters is not None
    assert unvalidated.optional_hyperparameters.sft_config.eval_strategy == "no"
    assert unvalidated.optional_hyperparameters.lora_config == source.optional_hyperparameters.lora_config
    assert unvalidated.optional_hyperparameters.sft_config.weight_decay == 0.1

    cloned = fine_tuned_models.clone(
        ctx, ADA, no_saves.name, CloneIn(name="no-saves-2", acknowledge=True), correlation_id="c"
    )
    assert isinstance(cloned, ModelRecord)
    assert cloned.optional_hyperparameters == no_saves.optional_hyperparameters
