"""Cost prediction: Bedrock per token, SageMaker per instance-hour, local free; figures by hand."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from tests.unit.model_specs import LLAMA_8B_SHAPE
from tunelab.domain.catalog import BaseModelSpec, InstanceType, load_catalog
from tunelab.domain.costs import (
    GPU_PEAK_TFLOPS,
    TOKENIZER_NOTE,
    EvaluationRun,
    SageMakerRun,
    estimate_cost,
    evaluation_hours,
    gpu_key,
    gpu_peak,
    remaining_cost,
    training_hours,
    usd,
)
from tunelab.domain.errors import ValidationFailed

SOURCE = {"url": "https://example.com/prices", "as_of": "2026-11-01"}


def model(provider: str = "bedrock", **pricing: float) -> BaseModelSpec:
    prices = {
        "training_per_1k_tokens_usd": 0.004,
        "storage_per_month_usd": 1.95,
        "deployment_per_hour_usd": 7.10,
    }
    prices.update(pricing)
    data: dict[str, Any] = {
        "id": f"test.{provider}-8b",
        "name": "Test 8B",
        "vendor": "Test",
        "provider": provider,
        "hosting": {"bedrock": "managed", "sagemaker": "byok", "local": "local"}[provider],
        "parameter_count": 8_000_000_000,
        "context_length": 8192,
        "training_data_format": "prompt_completion" if provider == "bedrock" else "trainer_jsonl",
        "hyperparameters": {
            "epochs": {"min": 1, "max": 10, "default": 3},
            "learning_rate": {"min": 1e-6, "max": 1e-3, "default": 1e-4},
            "provider_names": {"epochs": "epochCount", "learning_rate": "learningRate"}
            if provider == "bedrock"
            else {},
            "source": SOURCE,
        },
        "pricing": {**prices, "source": SOURCE},
        "limits": {"min_records": 1, "max_records": 10000, "max_record_tokens": 4096, "source": SOURCE},
        "deployment": {
            "method": {"bedrock": "on_demand", "sagemaker": "sagemaker_endpoint", "local": "local_server"}[
                provider
            ],
            "default_instance_type": "ml.a.big" if provider == "sagemaker" else None,
        },
        "regions": ["us-east-1"] if provider == "bedrock" else [],
        "hf_id": "test/test-8b" if provider != "bedrock" else None,
        "default_instance_type": "ml.a.big" if provider == "sagemaker" else None,
        "architecture": LLAMA_8B_SHAPE if provider == "sagemaker" else None,
    }
    return BaseModelSpec.model_validate(data)


def instance(
    name: str = "ml.a.big",
    gpu: str = "NVIDIA A100",
    gpus: int = 1,
    price: float = 4.0,
    local_storage_gb: float = 0,
) -> InstanceType:
    return InstanceType.model_validate(
        {
            "name": name,
            "family": name.split(".")[1],
            "gpus": gpus,
            "gpu_model": gpu,
            "vram_per_gpu_gb": 80,
            "bf16": True,
            "local_storage_gb": local_storage_gb,
            "vcpus": 8,
            "memory_gb": 64,
            "price_per_hour_usd": price,
            "source": SOURCE,
            "price_source": SOURCE,
        }
    )


def run(
    method: str = "lora", count: int = 1, local_storage_gb: float = 0, *, checkpointing: bool = False
) -> SageMakerRun:
    return SageMakerRun(
        instance=instance(local_storage_gb=local_storage_gb),
        instance_count=count,
        volume_size_gb=100,
        volume_per_gb_month_usd=0.14,
        method=method,  # type: ignore[arg-type]
        gradient_checkpointing=checkpointing,
    )


# --- Bedrock -----------------------------------------------------------------------------------


def test_bedrock_reproduces_the_api_example() -> None:
    # 130,000 tokens × 3 epochs = 390,000 trained tokens; 390 × $0.004 = $1.56;
    # ±15%: 1.56 × 0.85 = 1.326 → 1.33, 1.56 × 1.15 = 1.794 → 1.79; total 1.56 + 1.95 = 3.51.
    estimate = estimate_cost(model(), tokens_per_epoch=130_000, epochs=3, token_error=(0.85, 1.15))

    assert estimate.model_dump() == {
        "currency": "USD",
        "training": {
            "tokens_per_epoch": 130000,
            "epochs": 3,
            "trained_tokens": 390000,
            "cost_usd": 1.56,
            "low_usd": 1.33,
            "high_usd": 1.79,
            "hours": None,
            "evaluation_hours": None,  # Bedrock runs no evaluation of tunelab's
        },
        "storage_per_month_usd": 1.95,
        "deployment_per_hour_usd": 7.1,
        "total_usd": 3.51,
        "notes": estimate.notes,
    }
    assert estimate.notes[0] == TOKENIZER_NOTE
    assert any("training plus one month of storage" in n and "$7.10 per hour" in n for n in estimate.notes)


def _regional(**overrides: Any) -> BaseModelSpec:
    """The test model trained in us-east-1 and us-west-2, priced higher in us-west-2."""
    base = model()
    west = {
        "training_per_1k_tokens_usd": 0.005,
        "storage_per_month_usd": 2.5,
        "deployment_per_hour_usd": 8.0,
        "source": {"url": "https://example.com/prices/us-west-2", "as_of": "2026-12-01"},
    }
    data = base.model_dump(mode="json")
    data["regions"] = ["us-east-1", "us-west-2"]
    data["pricing"]["regions"] = {"us-west-2": west}
    data.update(overrides)
    return BaseModelSpec.model_validate(data)


def test_a_job_is_priced_in_the_region_it_trains_in() -> None:
    spec = _regional()
    east = estimate_cost(spec, region="us-east-1", tokens_per_epoch=130_000, epochs=3)
    west = estimate_cost(spec, region="us-west-2", tokens_per_epoch=130_000, epochs=3)
    # 390 × $0.004 = $1.56 + $1.95 storage; 390 × $0.005 = $1.95 + $2.50 storage
    assert (east.training.cost_usd, east.storage_per_month_usd, east.total_usd) == (1.56, 1.95, 3.51)
    assert (west.training.cost_usd, west.storage_per_month_usd, west.total_usd) == (1.95, 2.5, 4.45)
    assert west.deployment_per_hour_usd == 8.0
    assert any("Prices in us-west-2 as of 2026-12-01" in n for n in west.notes)
    assert any("Prices in us-east-1 as of 2026-11-01" in n for n in east.notes)


def test_prices_for_a_region_the_model_does_not_train_in_are_refused() -> None:
    data = _regional().model_dump(mode="json")
    data["regions"] = ["us-east-1"]
    with pytest.raises(ValueError, match=r"prices for \['us-west-2'\], where the model does not train"):
        BaseModelSpec.model_validate(data)


def test_the_training_region_is_the_platforms_own_where_the_model_trains_there() -> None:
    spec = _regional()
    assert spec.training_region("us-west-2", ["us-east-1"]) == "us-west-2"
    assert spec.training_region("us-east-1", ["us-west-2"]) == "us-east-1"
    # Elsewhere: the first of the model's regions (by preference) that the deployment reaches.
    assert spec.training_region("eu-west-1", ["us-east-1", "us-west-2"]) == "us-east-1"
    assert spec.training_region("eu-west-1", ["us-west-2"]) == "us-west-2"
    assert spec.training_region("eu-west-1", []) is None
    available, reason = spec.availability(runtime="aws", region="eu-west-1", regions=[])
    assert not available
    assert reason is not None
    assert "only in us-east-1, us-west-2" in reason
    assert "bedrockRegions" in reason
    # A model that is not regional trains wherever the deployment runs.
    assert model("sagemaker").training_region("eu-west-1", []) == "eu-west-1"


def test_bedrock_default_token_bound_is_080_to_125() -> None:
    # $1.56 × 0.8 = 1.248 → 1.25; $1.56 × 1.25 = 1.95.
    training = estimate_cost(model(), tokens_per_epoch=130_000, epochs=3).training
    assert (training.low_usd, training.cost_usd, training.high_usd) == (1.25, 1.56, 1.95)


def test_zero_tokens_cost_only_the_storage() -> None:
    estimate = estimate_cost(model(), tokens_per_epoch=0, epochs=2)
    assert (estimate.training.trained_tokens, estimate.training.cost_usd, estimate.training.high_usd) == (
        0,
        0,
        0,
    )
    assert estimate.total_usd == 1.95


def test_total_adds_the_rounded_figures_the_user_sees() -> None:
    # 1,001 tokens × 1 epoch at $5 per 1K = $5.005 → 5.01; storage $0.005 → 0.01; total 5.01 + 0.01 = 5.02.
    estimate = estimate_cost(
        model(training_per_1k_tokens_usd=5.0, storage_per_month_usd=0.005), tokens_per_epoch=1001, epochs=1
    )
    assert (estimate.training.cost_usd, estimate.storage_per_month_usd, estimate.total_usd) == (
        5.01,
        0.01,
        5.02,
    )


@pytest.mark.parametrize(
    ("tokens", "epochs", "field"),
    [(-1, 1, "tokens_per_epoch"), (100, 0, "hyperparameters.epochs")],
)
def test_bad_counts_are_validation_errors_with_their_field(tokens: int, epochs: int, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate_cost(model(), tokens_per_epoch=tokens, epochs=epochs)
    assert caught.value.details[0].field == field


def test_resources_on_a_bedrock_model_are_rejected() -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate_cost(model(), tokens_per_epoch=1, epochs=1, sagemaker=run())
    assert caught.value.details[0].field == "resources"


# --- SageMaker ---------------------------------------------------------------------------------

# 8B parameters, 10M tokens × 3 epochs = 30M trained tokens, 1 × A100 (312 TFLOPS dense BF16), MFU 0.35,
# without gradient checkpointing:
#   LoRA compute = 4 × 8e9 × 30e6 / (312e12 × 0.35) s = 8,791.2 s = 2.4420 h
#   overhead     = 300 s + 2 × (8e9 × 2 bytes) / 100 MB/s = 300 + 320 s = 620 s = 0.17222 h
#   hours        = 2.61422 → 2.61
#   per hour     = $4.00 + 100 GB × $0.14 / 730 = $4.019178
#   cost         = 2.61422 × 4.019178 = 10.507 → 10.51
#   low  = (0.17222 + 2.4420 × 0.8 × 0.7) × 4.019178 = 1.53974 × 4.019178 = 6.1885 → 6.19
#   high = (0.17222 + 2.4420 × 1.25 × 1.5) × 4.019178 = 4.75098 × 4.019178 = 19.0950 → 19.10


def test_sagemaker_lora_hours_and_cost() -> None:
    estimate = estimate_cost(model("sagemaker"), tokens_per_epoch=10_000_000, epochs=3, sagemaker=run("lora"))

    assert estimate.training.hours == 2.61
    assert (estimate.training.cost_usd, estimate.training.low_usd, estimate.training.high_usd) == (
        10.51,
        6.19,
        19.10,
    )
    assert estimate.notes[0] == TOKENIZER_NOTE
    assert any("1 × ml.a.big" in n and "35% of peak" in n for n in estimate.notes)


def test_full_fine_tuning_takes_one_and_a_half_times_the_compute() -> None:
    # compute 2.4420 × 6/4 = 3.6630 h + 0.17222 h = 3.83523 → 3.84 h; × 4.019178 = 15.414 → 15.41.
    training = estimate_cost(
        model("sagemaker"), tokens_per_epoch=10_000_000, epochs=3, sagemaker=run("full")
    ).training
    assert (training.hours, training.cost_usd) == (3.84, 15.41)


def test_gradient_checkpointing_adds_a_forward_pass() -> None:
    # LoRA 4·N + 2·N recomputed = 6·N: compute 2.4420 × 6/4 = 3.6630 h + 0.17222 = 3.83523 → 3.84 h,
    # the same as full fine-tuning without checkpointing; × 4.019178 = 15.414 → 15.41.
    training = estimate_cost(
        model("sagemaker"),
        tokens_per_epoch=10_000_000,
        epochs=3,
        sagemaker=run("lora", checkpointing=True),
    ).training
    assert (training.hours, training.cost_usd) == (3.84, 15.41)


def test_two_nvme_instances_split_the_compute_and_bill_no_volume() -> None:
    # 2 instances = 1 + 0.85 = 1.85 instances' throughput:
    # 2.4420 / 1.85 = 1.32000 h, + 0.17222 = 1.49222 → 1.49 h.
    # NVMe storage: no volume. Cost 1.49222 × 2 × $4 = 11.938 → 11.94;
    # low (0.17222 + 1.32 × 0.56) × 8 = 7.2914 → 7.29; high (0.17222 + 1.32 × 1.875) × 8 = 21.1778 → 21.18.
    estimate = estimate_cost(
        model("sagemaker"),
        tokens_per_epoch=10_000_000,
        epochs=3,
        sagemaker=run("lora", count=2, local_storage_gb=7600),
    )
    training = estimate.training
    assert (training.hours, training.cost_usd, training.low_usd, training.high_usd) == (
        1.49,
        11.94,
        7.29,
        21.18,
    )
    assert any("7600 GB NVMe storage" in n for n in estimate.notes)


def test_sagemaker_zero_tokens_still_pays_the_start_up() -> None:
    # Only the overhead: 0.17222 h × $4.019178 = 0.6922 → 0.69; the range collapses onto it.
    training = estimate_cost(model("sagemaker"), tokens_per_epoch=0, epochs=1, sagemaker=run()).training
    assert (training.hours, training.cost_usd, training.low_usd, training.high_usd) == (
        0.17,
        0.69,
        0.69,
        0.69,
    )


def test_sagemaker_model_requires_resources() -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate_cost(model("sagemaker"), tokens_per_epoch=1, epochs=1)
    assert caught.value.details[0].field == "resources"


def test_unknown_instance_type_names_the_field() -> None:
    class Instances:
        volume_per_gb_month_usd = 0.14

        def find_instance(self, name: str) -> InstanceType | None:
            return None

    with pytest.raises(ValidationFailed) as caught:
        SageMakerRun.from_catalog(
            Instances(), instance_type="ml.nope", instance_count=1, volume_size_gb=100, method="lora"
        )
    assert caught.value.details[0].field == "resources.instance_type"


def test_training_hours_range_brackets_the_estimate() -> None:
    hours = training_hours(
        parameter_count=8e9, trained_tokens=30_000_000, instance=instance(), instance_count=1, method="lora"
    )
    assert hours.low < hours.hours < hours.high
    assert hours.overhead_hours == pytest.approx(620 / 3600)


# --- local -------------------------------------------------------------------------------------


def test_local_training_is_free() -> None:
    estimate = estimate_cost(
        model("local", training_per_1k_tokens_usd=0, storage_per_month_usd=0, deployment_per_hour_usd=0),
        tokens_per_epoch=5000,
        epochs=2,
    )
    assert (estimate.training.trained_tokens, estimate.training.cost_usd, estimate.total_usd) == (10000, 0, 0)
    assert estimate.training.hours is None
    assert estimate.notes == ["Local training runs on this machine: there are no cloud charges."]


# --- GPU table and rounding --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("l40s", "L40S"),
        ("Tesla T4", "T4"),
    ],
)
def test_gpu_names_normalise_to_the_table_keys(name: str, key: str) -> None:
    assert gpu_key(name) == key
    assert key in GPU_PEAK_TFLOPS


def test_dense_figures_not_sparse_ones() -> None:
    # NVIDIA prints A100 BF16 312 | 624* and H100 SXM 1,979* (sparsity): the table holds 312 and 989.5.
    assert GPU_PEAK_TFLOPS["A100"].tflops == 312.0
    assert GPU_PEAK_TFLOPS["H100"].tflops == 989.5
    assert all(p.source.startswith("https://") for p in GPU_PEAK_TFLOPS.values())
    assert all(p.verified or p.note for p in GPU_PEAK_TFLOPS.values())


def test_unknown_gpu_is_a_catalog_error() -> None:
    with pytest.raises(LookupError, match="no peak FLOP/s"):
        gpu_peak(instance(gpu="NVIDIA Z9000"))


def test_usd_rounds_half_up() -> None:
    assert (usd(1.325), usd(0.125), usd(2.675), usd(0.004)) == (1.33, 0.13, 2.68, 0.0)


# --- the shipped catalog -----------------------------------------------------------------------


def test_every_catalog_instance_has_a_known_gpu_peak() -> None:
    catalog = load_catalog()
    assert catalog.instances
    for item in catalog.instances:
        assert gpu_peak(item).tflops > 0, item.name


def test_catalog_bedrock_model_cost_follows_its_price() -> None:
    spec = load_catalog().model("meta.llama3-1-8b-instruct-v1:0:128k")
    estimate = estimate_cost(spec, tokens_per_epoch=130_000, epochs=3)
    # 390 thousand tokens × the catalog's price per 1K tokens, rounded to cents.
    assert estimate.training.cost_usd == usd(390 * spec.pricing.training_per_1k_tokens_usd)
    assert estimate.total_usd == usd(estimate.training.cost_usd + usd(spec.pricing.storage_per_month_usd))


def test_catalog_sagemaker_models_price_on_their_default_instance() -> None:
    catalog = load_catalog()
    for spec in (m for m in catalog.models if m.provider == "sagemaker"):
        assert spec.default_instance_type is not None
        sm = SageMakerRun.from_catalog(
            catalog,
            instance_type=spec.default_instance_type,
            instance_count=1,
            volume_size_gb=100,
            method="lora",
        )
        estimate = estimate_cost(spec, tokens_per_epoch=1_000_000, epochs=3, sagemaker=sm)
        hours = estimate.training.hours
        assert hours is not None, spec.id
        assert hours > 0, spec.id
        # At least the start-up is billed at the instance's price.
        assert estimate.training.cost_usd >= usd(0.08 * sm.instance.price_per_hour_usd), spec.id
        assert estimate.training.low_usd <= estimate.training.cost_usd <= estimate.training.high_usd


def test_every_catalog_bedrock_model_can_be_priced() -> None:
    # Nova and Titan publish no parameter count; Bedrock prices per token, so none is needed.
    for spec in (m for m in load_catalog().models if m.provider == "bedrock"):
        estimate = estimate_cost(spec, tokens_per_epoch=100_000, epochs=2)
        assert estimate.training.hours is None
        assert estimate.training.cost_usd == usd(200 * spec.pricing.training_per_1k_tokens_usd), spec.id


def test_date_of_prices_is_in_the_notes() -> None:
    estimate = estimate_cost(model(), tokens_per_epoch=1, epochs=1)
    assert any(date(2026, 11, 1).isoformat() in n for n in estimate.notes)


def test_dora_with_dropout_adds_the_weights_it_runs_twice() -> None:
    # 4 billion weights run twice: + 4 × 4e9 = 2·N for N = 8e9, so LoRA's 4·N becomes 6·N:
    # 2.4420 × 6/4 = 3.6630 h + 0.17222 = 3.83523 → 3.84 h, as full fine-tuning; × 4.019178 → 15.41.
    dora = dataclasses.replace(run("lora"), dora_recomputed_weights=4e9)

    estimate = estimate_cost(model("sagemaker"), tokens_per_epoch=10_000_000, epochs=3, sagemaker=dora)

    assert (estimate.training.hours, estimate.training.cost_usd) == (3.84, 15.41)
    assert any("DoRA runs its adapted layers twice" in n for n in estimate.notes)


# --- resuming -------------------------------------------------------------------------------------


def test_resuming_costs_the_remaining_steps_share_of_the_training_plus_the_month_of_storage() -> None:
    # The API example: training $1.56 ($1.33-$1.79), storage $1.95. A quarter of 120 steps done.
    predicted = estimate_cost(model(), tokens_per_epoch=130_000, epochs=3, token_error=(0.85, 1.15))

    left = remaining_cost(predicted, done_steps=30, total_steps=120)

    assert (left.training.cost_usd, left.training.low_usd, left.training.high_usd) == (1.17, 1.0, 1.34)
    assert left.training.trained_tokens == 292_500
    assert left.storage_per_month_usd == predicted.storage_per_month_usd
    assert left.total_usd == usd(1.17 + predicted.storage_per_month_usd)
    assert (
        left.notes[0] == "Resuming trains the remaining 90 of 120 steps: 75% of the predicted training cost."
    )
    # A checkpoint past the end costs no training; one without a step count, the whole prediction.
    assert remaining_cost(predicted, done_steps=130, total_steps=120).training.cost_usd == 0
    whole = remaining_cost(predicted, done_steps=30, total_steps=None)
    assert whole.total_usd == predicted.total_usd
    assert "the whole prediction is shown" in whole.notes[-1]


# --- the evaluation after training ---------------------------------------------------------------


def test_the_evaluation_reads_prompts_at_trainings_mfu_and_decodes_a_batch_of_rows_a_step() -> None:
    # 7B parameters on the run's GPU; 100 rows of 500 prompt tokens and 50 answer tokens, both models.
    gpu = run().instance
    peak = gpu_peak(gpu).tflops * 1e12
    evaluation = EvaluationRun(rows=100, prompt_tokens=500, answer_tokens=50)
    prompts = 2 * 100 * 500 * 2 * 7e9 / (peak * 0.35)
    decoding = 2 * 7 * 50 * 2 * 7e9 / (peak * 0.02)  # ceil(100 / 16) = 7 batches

    hours = evaluation_hours(parameter_count=7e9, evaluation=evaluation, instance=gpu)

    assert hours == pytest.approx((prompts + decoding) / 3600)
    # Answering 16 rows costs what answering one does: decoding is bound by reading the weights.
    one = evaluation_hours(
        parameter_count=7e9, evaluation=EvaluationRun(rows=1, prompt_tokens=0, answer_tokens=50), instance=gpu
    )
    sixteen = evaluation_hours(
        parameter_count=7e9,
        evaluation=EvaluationRun(rows=16, prompt_tokens=0, answer_tokens=50),
        instance=gpu,
    )
    assert one == pytest.approx(sixteen)


def test_the_evaluation_is_billed_with_the_job_and_a_resume_pays_all_of_it_again() -> None:
    evaluation = EvaluationRun(rows=1000, prompt_tokens=2000, answer_tokens=512)
    without = estimate_cost(model("sagemaker"), tokens_per_epoch=10_000_000, epochs=1, sagemaker=run())
    with_it = estimate_cost(
        model("sagemaker"), tokens_per_epoch=10_000_000, epochs=1, sagemaker=run(), evaluation=evaluation
    )
    extra = evaluation_hours(parameter_count=8e9, evaluation=evaluation, instance=run().instance)

    assert with_it.training.evaluation_hours == round(extra, 2)
    assert with_it.training.hours is not None
    assert without.training.hours is not None
    assert with_it.training.hours > without.training.hours
    assert with_it.training.cost_usd > without.training.cost_usd
    assert any(f"about {extra * 60:.1f} minutes billed with the job" in n for n in with_it.notes)

    # Resuming after the last step: no training is left, the evaluation still runs whole.
    left = remaining_cost(with_it, done_steps=100, total_steps=100)
    assert left.training.hours == pytest.approx(with_it.training.evaluation_hours, abs=0.01)
    assert left.training.cost_usd > 0
