"""Resource advice: VRAM, storage and instances by the product guide's method, with the arithmetic right.

GB = 1e9 bytes throughout, as the guide counts. The guide's worked example has two slips: weights +
gradients "×" optimizer (it is a sum: 28 + 28 = 56 GB) and 14 + 30 + 1 = "35" (it is 45 GB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tunelab.domain.catalog import BaseModelSpec, InstanceType, load_catalog
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.resources import (
    ResourceEstimateRequest,
    activation_gb,
    check_resources,
    estimate_resources,
    model_shape,
    recommended_volume_gb,
    storage_gb,
)

SOURCE = {"url": "https://example.com/spec", "as_of": "2026-11-01"}


def instance(
    name: str, gpus: int, vram: float, price: float, *, bf16: bool = True, local_storage_gb: float = 0
) -> InstanceType:
    return InstanceType.model_validate(
        {
            "name": name,
            "family": name.split(".")[1],
            "gpus": gpus,
            "gpu_model": "NVIDIA A100",
            "vram_per_gpu_gb": vram,
            "bf16": bf16,
            "local_storage_gb": local_storage_gb,
            "vcpus": 8,
            "memory_gb": 64,
            "price_per_hour_usd": price,
            "source": SOURCE,
            "price_source": SOURCE,
        }
    )


SMALL = instance("ml.t.small", 1, 24, 1.0)
BIG = instance("ml.t.big", 1, 80, 4.0)
QUAD = instance("ml.t.quad", 4, 24, 6.0)
OLD = instance("ml.t.old", 1, 32, 0.5, bf16=False)
EIGHT = instance("ml.t.eight", 8, 80, 50.0)


def spec(provider: str = "sagemaker", parameter_count: int | None = 7_000_000_000) -> BaseModelSpec:
    data: dict[str, Any] = {
        "id": f"test.{provider}-7b",
        "name": "Test 7B",
        "vendor": "Test",
        "provider": provider,
        "hosting": {"bedrock": "managed", "sagemaker": "byok", "local": "local"}[provider],
        "parameter_count": parameter_count,
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
        "pricing": {
            "training_per_1k_tokens_usd": 0,
            "storage_per_month_usd": 0.3,
            "deployment_per_hour_usd": 1.0,
            "source": SOURCE,
        },
        "limits": {"min_records": 1, "max_records": 10000, "max_record_tokens": 4096, "source": SOURCE},
        "deployment": {
            "method": {"bedrock": "on_demand", "sagemaker": "sagemaker_endpoint", "local": "local_server"}[
                provider
            ],
            "default_instance_type": "ml.t.big" if provider == "sagemaker" else None,
        },
        "regions": ["us-east-1"] if provider == "bedrock" else [],
        "hf_id": "test/test-7b" if provider != "bedrock" else None,
        "default_instance_type": "ml.t.big" if provider == "sagemaker" else None,
    }
    return BaseModelSpec.model_validate(data)


class FakeCatalog:
    def __init__(self, instances: list[InstanceType], models: Sequence[BaseModelSpec] = ()) -> None:
        self._instances = instances
        self._models = {m.id: m for m in models}

    def find_model(self, model_id: str) -> BaseModelSpec | None:
        return self._models.get(model_id)

    @property
    def instances(self) -> list[InstanceType]:
        return list(self._instances)


CATALOG = FakeCatalog([SMALL, BIG, QUAD, OLD, EIGHT], [spec("sagemaker"), spec("bedrock", None)])


def estimate(**body: Any):
    return estimate_resources(ResourceEstimateRequest.parse(body), CATALOG)


# A 1-token micro-batch makes activations negligible: 34 B × h·L = 34 × 138,497 = 4.7 MB → 0.0 GB.
TINY = {"sequence_length": 1, "batch_size": 1, "gradient_checkpointing": False}


# --- the guide's worked example, corrected -----------------------------------------------------


def test_worked_example_full_fine_tuning_7b_fp16() -> None:
    # weights 7e9 × 2 B = 14 GB; gradients 14 GB; AdamW 2 × 14 = 28 GB; 14 + 14 + 28 = 56 GB; × 1.2 = 67.2.
    result = estimate(parameter_count=7e9, precision="fp16", optimizer="adamw", method="full", **TINY)
    assert result.vram_gb.model_dump() == {
        "weights": 14.0,
        "gradients": 14.0,
        "optimizer": 28.0,
        "activations": 0.0,
        "total": 56.0,
        "with_buffer": 67.2,
    }


def test_worked_example_lora_20_percent() -> None:
    # 14 + (14 + 28) × 0.2 = 14 + 2.8 + 5.6 = 22.4 GB; × 1.2 = 26.88 → 26.9.
    result = estimate(parameter_count=7e9, precision="fp16", method="lora", trainable_fraction=0.2, **TINY)
    vram = result.vram_gb
    assert (vram.weights, vram.gradients, vram.optimizer, vram.total, vram.with_buffer) == (
        14.0,
        2.8,
        5.6,
        22.4,
        26.9,
    )


def test_worked_example_storage_14_plus_30_plus_1_is_45_recommend_50() -> None:
    # 14 GB base + 1 checkpoint of 30 GB + 1 GB dataset = 45 GB; 45 × 1.1 = 49.5 → next 50 GB = 50.
    storage = storage_gb(base_model_gb=14, checkpoint_gb=30, checkpoints=1, dataset_gb=1)
    assert storage.model_dump() == {
        "base_model": 14.0,
        "checkpoints": 30.0,
        "dataset": 1.0,
        "total": 45.0,
        "recommended": 50,
    }


# --- VRAM rules --------------------------------------------------------------------------------


def test_default_lora_fraction_is_the_guides_20_percent() -> None:
    assert estimate(parameter_count=7e9, precision="bf16", **TINY).vram_gb.total == 22.4


def test_fp32_doubles_every_byte() -> None:
    # 7e9 × 4 B = 28 GB weights, 28 gradients, 56 optimizer: 112 GB full.
    assert estimate(parameter_count=7e9, precision="fp32", method="full", **TINY).vram_gb.total == 112.0


@pytest.mark.parametrize(
    ("optimizer", "state"),
    # Trainable state per 14 GB of weights: adafactor 1×, sgd 1× (momentum), 8-bit AdamW 1×, adam 2×.
    [("adafactor", 14.0), ("sgd", 14.0), ("adamw_8bit", 14.0), ("adam", 28.0)],
)
def test_optimizer_multipliers(optimizer: str, state: float) -> None:
    result = estimate(parameter_count=7e9, precision="bf16", optimizer=optimizer, method="full", **TINY)
    assert result.vram_gb.optimizer == state


def test_int4_weights_with_16_bit_adapters() -> None:
    # QLoRA-style: weights 7e9 × 0.5 B = 3.5 GB; adapters' state in 16 bits: 14 × 0.2 = 2.8, 28 × 0.2 = 5.6.
    vram = estimate(parameter_count=7e9, precision="int4", method="lora", **TINY).vram_gb
    assert (vram.weights, vram.gradients, vram.optimizer, vram.total) == (3.5, 2.8, 5.6, 11.9)


def test_activations_follow_korthikanti_without_attention_scores() -> None:
    # N = 12·L·h² with L = h/128: N = 6,442,450,944 gives h = 4096, L = 32 exactly.
    assert model_shape(6_442_450_944) == pytest.approx((4096, 32))
    # Without recomputation: 34 B × s·b·h·L = 34 × 2048 × 4 × 4096 × 32 = 36,507,222,016 B = 36.5 GB.
    full = activation_gb(6_442_450_944, sequence_length=2048, batch_size=4, gradient_checkpointing=False)
    assert round(full, 1) == 36.5
    # Checkpointed: s·b·h·(2L + 34) = 2048 × 4 × 4096 × 98 = 3,288,334,336 B = 3.3 GB.
    checkpointed = activation_gb(
        6_442_450_944, sequence_length=2048, batch_size=4, gradient_checkpointing=True
    )
    assert round(checkpointed, 1) == 3.3


def test_request_activations_and_total() -> None:
    # 6,442,450,944 params bf16 LoRA: weights 12.8849 → 12.9, gradients 2.577 → 2.6, optimizer 5.154 → 5.2,
    # activations (2048 × 4, no checkpointing) 36.5;
    # total 12.9 + 2.6 + 5.2 + 36.5 = 57.2; × 1.2 = 68.64 → 68.6.
    vram = estimate(
        parameter_count=6_442_450_944, sequence_length=2048, batch_size=4, gradient_checkpointing=False
    ).vram_gb
    assert (vram.weights, vram.gradients, vram.optimizer, vram.activations) == (12.9, 2.6, 5.2, 36.5)
    assert (vram.total, vram.with_buffer) == (57.2, 68.6)


# --- storage rules -----------------------------------------------------------------------------


def test_storage_from_a_request() -> None:
    # base 7e9 × 2 B = 14 GB; AdamW checkpoint = 14 × (1 + 2) = 42 GB each, × 2 = 84; dataset 1e9 B = 1 GB;
    # total 14 + 84 + 1 = 99; 99 × 1.1 = 108.9 → next 50 GB = 150.
    storage = estimate(parameter_count=7e9, checkpoints=2, dataset_bytes=1_000_000_000).storage_gb
    assert storage.model_dump() == {
        "base_model": 14.0,
        "checkpoints": 84.0,
        "dataset": 1.0,
        "total": 99.0,
        "recommended": 150,
    }


def test_adafactor_checkpoint_is_twice_the_model() -> None:
    assert estimate(parameter_count=7e9, optimizer="adafactor").storage_gb.checkpoints == 28.0


@pytest.mark.parametrize(("total", "advised"), [(0.0, 50), (45.0, 50), (45.5, 100), (50.0, 100), (99.0, 150)])
def test_recommended_volume_rounding(total: float, advised: int) -> None:
    # total × 1.1 rounded up to a multiple of 50 GB: 45 → 49.5 → 50; 45.5 → 50.05 → 100; 50 → 55 → 100.
    assert recommended_volume_gb(total) == advised


# --- instance advice ---------------------------------------------------------------------------


def test_lora_fits_where_a_gpu_holds_its_share() -> None:
    # with_buffer 26.9 GB: one 80 GB GPU holds it all; one 24 GB GPU does not;
    # four 24 GB GPUs hold a quarter of the 22.4 GB state each: (22.4 / 4 + 0.0) × 1.2 = 6.7 GB (sharded).
    result = estimate(parameter_count=7e9, method="lora", **TINY)
    rows = [(i.instance_type, i.fits) for i in result.instances]
    assert rows == [("ml.t.big", True), ("ml.t.quad", True), ("ml.t.eight", True), ("ml.t.small", False)]
    assert result.instance_count == 1
    assert any("sharded across all GPUs (FSDP / ZeRO-3)" in n for n in result.notes)
    assert result.instances[0].model_dump() == {
        "instance_type": "ml.t.big",
        "gpus": 1,
        "vram_gb": 80.0,
        "fits": True,
        "price_per_hour_usd": 4.0,
    }


def test_bf16_leaves_out_instances_without_it_and_fp16_brings_them_back() -> None:
    bf16 = estimate(parameter_count=7e9, precision="bf16", **TINY)
    assert "ml.t.old" not in {i.instance_type for i in bf16.instances}
    assert any("ml.t.old" in n and "bf16" in n for n in bf16.notes)

    fp16 = estimate(parameter_count=7e9, precision="fp16", **TINY)
    # 26.9 GB ≤ 32 GB: the cheapest ($0.50) fits and comes first.
    assert (fp16.instances[0].instance_type, fp16.instances[0].fits) == ("ml.t.old", True)


def test_full_fine_tuning_shards_model_state_across_gpus() -> None:
    # state 56 GB: one 24 GB GPU needs 56 × 1.2 = 67.2 (no); four GPUs 56 / 4 × 1.2 = 16.8 ≤ 24 (fits);
    # one 80 GB GPU 67.2 (fits); eight 56 / 8 × 1.2 = 8.4 (fits). Fitting first, cheapest first.
    result = estimate(parameter_count=7e9, precision="fp16", method="full", **TINY)
    rows = [(i.instance_type, i.fits) for i in result.instances]
    assert rows == [
        ("ml.t.big", True),
        ("ml.t.quad", True),
        ("ml.t.eight", True),
        ("ml.t.old", False),
        ("ml.t.small", False),
    ]
    assert any("sharded across all GPUs" in n for n in result.notes)


def test_70b_full_needs_two_instances() -> None:
    # 70e9 bf16: weights 140, gradients 140, AdamW 280 → state 560 GB. Activations with checkpointing,
    # 2048 × 1: h = (128 × 70e9 / 12)^(1/3) = 9,072.1, L = 70.88:
    # 2048 × 9072.1 × (2 × 70.88 + 34) B = 3.3 GB.
    # 8 × 80 GB on one instance: (560 / 8 + 3.27) × 1.2 = 87.9 > 80;
    # on two: (560 / 16 + 3.27) × 1.2 = 45.9 ≤ 80.
    result = estimate(parameter_count=70e9, method="full", batch_size=1, gradient_checkpointing=True)
    vram = result.vram_gb
    assert (vram.weights, vram.gradients, vram.optimizer, vram.activations) == (140.0, 140.0, 280.0, 3.3)
    assert (vram.total, vram.with_buffer) == (563.3, 676.0)
    assert result.instance_count == 2
    assert [i.instance_type for i in result.instances if i.fits] == ["ml.t.eight"]
    assert any("needs 2 instances" in n for n in result.notes)


def test_nothing_fits_when_activations_alone_exceed_every_gpu() -> None:
    # 32,768 tokens × 64 per GPU without checkpointing: 2,097,152 × 4.71 MB = 9,877.6 GB per GPU.
    result = estimate(
        parameter_count=7e9, sequence_length=32768, batch_size=64, gradient_checkpointing=False, method="full"
    )
    assert result.instance_count is None
    assert not any(i.fits for i in result.instances)
    assert any("Nothing fits" in n and "gradient checkpointing" in n for n in result.notes)


def test_data_parallel_note_when_every_fit_holds_the_whole_job() -> None:
    catalog = FakeCatalog([SMALL, BIG])
    result = estimate_resources(ResourceEstimateRequest.parse({"parameter_count": 7e9, **TINY}), catalog)
    assert [i.fits for i in result.instances] == [True, False]
    assert any("plain data-parallel" in n for n in result.notes)


def test_base_model_id_resolves_through_the_catalog() -> None:
    by_id = estimate(base_model_id="test.sagemaker-7b", **TINY)
    by_count = estimate(parameter_count=7e9, **TINY)
    assert by_id.vram_gb == by_count.vram_gb
    assert any(n.startswith("Test 7B (7B parameters)") for n in by_id.notes)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"parameter_count": 7e9, "dataset_bytes": -1}, "dataset_bytes"),
        ({"parameter_count": -7e9}, "parameter_count"),
        ({"parameter_count": 7e9, "trainable_fraction": 1.5}, "trainable_fraction"),
        ({"parameter_count": 7e9, "trainable_fraction": 0}, "trainable_fraction"),
        ({"parameter_count": 7e9, "precision": "fp8"}, "precision"),
        ({"parameter_count": 7e9, "batch_size": 0}, "batch_size"),
        ({"parameter_count": 7e9, "gpus": 4}, "gpus"),
    ],
)
def test_bad_fields_are_named(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        ResourceEstimateRequest.parse(body)
    assert [d.field for d in caught.value.details] == [field]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "base_model_id"),
        ({"base_model_id": "test.sagemaker-7b", "parameter_count": 7e9}, "base_model_id"),
        ({"base_model_id": "nope"}, "base_model_id"),
        ({"base_model_id": "test.bedrock-7b"}, "base_model_id"),
        ({"parameter_count": 7e9, "method": "full", "trainable_fraction": 0.5}, "trainable_fraction"),
        ({"parameter_count": 7e9, "method": "full", "precision": "int4"}, "precision"),
    ],
)
def test_contradictions_and_unknown_models_are_validation_errors(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate(**body)
    assert caught.value.details[0].field == field


# --- check_resources ---------------------------------------------------------------------------


def test_adequate_resources_give_no_warnings() -> None:
    # 7B LoRA bf16 with checkpointing, 2048 × 1: 22.4 + 0.8 = 23.2 × 1.2 = 27.9 GB ≤ 80; volume 100 ≥ advised.
    assert check_resources(spec(), BIG, 1, 100, method="lora") == []


def test_too_little_vram_is_a_warning() -> None:
    # 27.9 GB per GPU > 24 GB.
    warnings = check_resources(spec(), SMALL, 1, 100, method="lora")
    assert len(warnings) == 1
    assert "24 GB" in warnings[0]
    assert "may run out of memory" in warnings[0]


def test_more_instances_make_full_fine_tuning_fit() -> None:
    # Full 7B bf16: state 56 GB + 0.8 GB activations. 1 × QUAD: (56 / 4 + 0.8) × 1.2 = 17.8 ≤ 24: fits.
    assert check_resources(spec(), QUAD, 1, 300, method="full") == []
    # 1 × SMALL: (56 + 0.8) × 1.2 = 68.2 > 24; 4 × SMALL shard it to (14 + 0.8) × 1.2 = 17.8.
    assert check_resources(spec(), SMALL, 1, 300, method="full") != []
    assert check_resources(spec(), SMALL, 4, 300, method="full") == []


def test_volume_smaller_than_the_base_model_is_an_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_resources(spec(), BIG, 1, 10, method="lora")
    assert caught.value.details[0].field == "resources.volume_size_gb"
    assert "14 GB" in caught.value.details[0].message


def test_volume_below_the_job_is_a_warning() -> None:
    # Needs 14 + 42 + 0 = 56 GB (advised 100): a 40 GB volume holds the model, not the checkpoint.
    warnings = check_resources(spec(), BIG, 1, 40, method="lora")
    assert warnings == [
        "Storage of 40 GB is less than the 56 GB this job may write (model, checkpoints, dataset); "
        "100 GB is advised."
    ]


def test_bf16_on_an_instance_without_it_is_an_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_resources(spec(), OLD, 1, 100, method="lora", precision="bf16")
    assert caught.value.details[0].field == "resources.instance_type"


def test_nvme_instance_uses_its_own_storage() -> None:
    nvme = instance("ml.n.big", 1, 80, 4.0, local_storage_gb=250)
    warnings = check_resources(spec(), nvme, 1, 500, method="lora")
    assert warnings == [
        "ml.n.big trains on its own 250 GB NVMe storage; the 500 GB volume size does not apply."
    ]


# --- the shipped catalog -----------------------------------------------------------------------


def test_catalog_default_instances_fit_their_models_default_lora_job() -> None:
    catalog = load_catalog()
    sagemaker = [m for m in catalog.models if m.provider == "sagemaker"]
    assert sagemaker
    for model in sagemaker:
        result = estimate_resources(ResourceEstimateRequest(base_model_id=model.id), catalog)
        fitting = {i.instance_type for i in result.instances if i.fits}
        assert model.default_instance_type in fitting, (model.id, result.vram_gb)
        assert result.instance_count == 1, model.id
        default = catalog.instance(model.default_instance_type or "")
        assert check_resources(model, default, 1, 100, method="lora") == [], model.id


def test_catalog_8b_lora_advice() -> None:
    # Llama 3.1 8B: 8,030,261,248 params bf16: weights 16.06 → 16.1, gradients 3.212 → 3.2,
    # optimizer 6.424 → 6.4; activations (checkpointed, 2048 × 1; h = 4,407.6, L = 34.43)
    # 2048 × 4407.6 × 102.87 B = 0.93 → 0.9; total 16.1 + 3.2 + 6.4 + 0.9 = 26.6 → 31.9 with the buffer.
    # One 24 GB GPU cannot hold it; the cheapest 48 GB single GPU (L40S) is advised first; four 24 GB GPUs
    # fit by sharding: (25.7 / 4 + 0.9) × 1.2 = 8.8 GB each.
    catalog = load_catalog()
    result = estimate_resources(
        ResourceEstimateRequest(base_model_id="sagemaker.llama-3-1-8b-instruct"), catalog
    )
    assert (result.vram_gb.total, result.vram_gb.with_buffer) == (26.6, 31.9)
    first = catalog.instance(result.instances[0].instance_type)
    assert result.instances[0].fits
    assert (first.gpus, first.vram_per_gpu_gb) == (1, 48)
    fits = {i.instance_type: i.fits for i in result.instances}
    for item in catalog.instances:
        if item.gpus == 1:
            assert fits[item.name] == (item.vram_per_gpu_gb >= 31.9), item.name
        else:
            assert fits[item.name], item.name


def test_catalog_bedrock_model_gets_no_resource_advice() -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate_resources(
            ResourceEstimateRequest(base_model_id="meta.llama3-1-8b-instruct-v1:0:128k"), load_catalog()
        )
    assert caught.value.details[0].field == "base_model_id"
