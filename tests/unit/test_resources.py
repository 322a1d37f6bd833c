"""Resource advice: one memory model for the plan the trainer runs, on the model's real shape.

GB = 1e9 bytes throughout. The figures below are worked by hand from the module's method on Llama 3.1
8B's shape (32 layers, width 4,096, MLP 14,336, 32 heads / 8 key-value heads of 128, vocabulary 128,256,
untied: 8,030,261,248 parameters; a layer 218,112,000; embeddings and head 1,050,673,152).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.unit.model_specs import LLAMA_8B_SHAPE
from tunelab.domain.catalog import Architecture, BaseModelSpec, InstanceType, load_catalog
from tunelab.domain.errors import ValidationFailed
from tunelab.domain.hyperparameters import resolve_training_parameters
from tunelab.domain.resources import (
    ResourceEstimateRequest,
    TrainingSetup,
    check_resources,
    default_setup,
    dora_recomputed_weights,
    dora_workspace_bytes,
    estimate_resources,
    kept_checkpoints,
    lora_parameters,
    memory,
    place,
    recommended_volume_gb,
    setup_for,
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


ARCH = Architecture.model_validate(LLAMA_8B_SHAPE)


def spec(provider: str = "sagemaker", parameter_count: int | None = 8_030_261_248) -> BaseModelSpec:
    data: dict[str, Any] = {
        "id": f"test.{provider}-8b",
        "name": "Test 8B",
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
        "architecture": LLAMA_8B_SHAPE if provider == "sagemaker" else None,
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


# One token per micro-batch makes activations and logits negligible (5.4 MB and 1.3 MB → 0.0 GB).
TINY = {"sequence_length": 1, "batch_size": 1, "gradient_checkpointing": False}
FULL_TINY = TrainingSetup(method="full", batch_size=1, sequence_length=1, gradient_checkpointing=False)


# --- the shape ---------------------------------------------------------------------------------


def test_the_shape_gives_the_parameter_count() -> None:
    # Per layer: q 4096² + k, v 2 × 4096 × 1024 + o 4096² + MLP 3 × 4096 × 14,336 + 2 norms × 4096
    # = 33,554,432 + 8,388,608 + 176,160,768 + 8,192 = 218,112,000; × 32 = 6,979,584,000;
    # + embeddings and head 2 × 128,256 × 4096 = 1,050,673,152 + final norm 4096 = 8,030,261,248.
    assert ARCH.layer_parameters == 218_112_000
    assert ARCH.parameter_count == 8_030_261_248


def test_every_catalog_shape_gives_its_listed_parameter_count() -> None:
    for model in load_catalog().models:
        if model.architecture is None:
            continue
        assert model.parameter_count is not None
        assert abs(model.architecture.parameter_count / model.parameter_count - 1) < 1e-4, model.id


def test_a_config_json_gives_the_shape_and_one_without_the_fields_none() -> None:
    config = {
        "num_hidden_layers": 30,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    }
    shape = Architecture.from_config(config)
    assert shape is not None
    assert shape.parameter_count == 134_515_008  # SmolLM2-135M, as its safetensors count it
    assert Architecture.from_config({"n_layer": 12, "n_embd": 768}) is None


def test_lora_parameters_follow_rank_and_modules() -> None:
    # q_proj and v_proj: r × ((4096 + 4096) + (4096 + 1024)) = 8 × 13,312 = 106,496 per layer; × 32.
    assert lora_parameters(ARCH, 8, None) == 3_407_872
    # Every linear layer: 8 × (8192 + 5120 + 5120 + 8192 + 2 × 18,432 + 18,432) = 8 × 81,920 × 32.
    assert lora_parameters(ARCH, 8, "all-linear") == 20_971_520
    assert lora_parameters(ARCH, 16, ["q_proj", "k_proj"]) == 16 * (8192 + 5120) * 32


# --- one GPU's memory --------------------------------------------------------------------------


def test_full_fine_tuning_in_bf16_is_8_bytes_a_parameter() -> None:
    # bf16 weights 8,030,261,248 × 2 B = 16.06 GB; gradients 16.06; AdamW's two bf16 states 32.12:
    # 64.25 GB; × 1.10 fragmentation + 1 GB context = 71.67.
    vram = estimate(base_model_id="test.sagemaker-8b", method="full", **TINY).vram_gb
    assert (vram.weights, vram.gradients, vram.optimizer, vram.activations, vram.logits) == (
        16.1,
        16.1,
        32.1,
        0.0,
        0.0,
    )
    assert (vram.total, vram.with_buffer) == (64.2, 71.7)


def test_fp32_and_fp16_keep_fp32_weights() -> None:
    for precision in ("fp32", "fp16"):
        vram = estimate(base_model_id="test.sagemaker-8b", method="full", precision=precision, **TINY).vram_gb
        assert (vram.weights, vram.gradients, vram.optimizer) == (32.1, 32.1, 64.2), precision


def test_lora_trains_only_the_adapters_in_fp32() -> None:
    # Frozen bf16 base 16.06 GB + 3,407,872 adapter weights × 4 B (0.014); gradients 0.014; states 0.027.
    result = estimate(base_model_id="test.sagemaker-8b", method="lora", **TINY)
    vram = result.vram_gb
    assert (vram.weights, vram.gradients, vram.optimizer) == (16.1, 0.0, 0.0)
    assert result.plan.trained_parameters == 3_407_872
    assert result.plan.parameters == 8_030_261_248


def test_activations_and_logits_of_a_micro_batch() -> None:
    # 4 × 2048 = 8,192 tokens. A layer keeps 4h + 2q + 2kv + 4i = 16,384 + 8,192 + 2,048 + 57,344
    # = 83,968 values a token. Checkpointed: (32 × 4096 + 83,968) × 2 B × 8,192 = 3.52 GB;
    # without: 32 × 83,968 × 2 B × 8,192 = 44.02 GB. Logits: 8,192 × 128,256 × (2 + 8) B = 10.51 GB.
    on = memory(ARCH, TrainingSetup(method="lora", batch_size=4, sequence_length=2048), "single")
    off = memory(
        ARCH,
        TrainingSetup(method="lora", batch_size=4, sequence_length=2048, gradient_checkpointing=False),
        "single",
    )
    assert (round(on.activations, 2), round(off.activations, 2)) == (3.52, 44.02)
    assert round(on.logits, 2) == round(off.logits, 2) == 10.51


def test_eager_attention_stores_the_scores() -> None:
    # 2 × 32 heads × 2048 = 131,072 more values a token in each layer: 8,192 tokens × 2 B = 2.15 GB
    # more for the one layer recomputed under checkpointing, 32 × that without.
    setup = TrainingSetup(method="lora", batch_size=4, sequence_length=2048)
    eager = TrainingSetup(method="lora", batch_size=4, sequence_length=2048, attention="eager")
    more = memory(ARCH, eager, "single").activations - memory(ARCH, setup, "single").activations
    assert round(more, 2) == 2.15
    result = estimate(base_model_id="test.sagemaker-8b", method="lora", attn_implementation="eager")
    assert any("eager attention" in n for n in result.notes)


# --- strategies --------------------------------------------------------------------------------


def test_ddp_adds_gradient_buckets_and_fsdp_shards_the_state() -> None:
    # DDP over 4: everything on every GPU plus one more copy of the gradients (16.06): 80.31 GB raw.
    ddp = memory(ARCH, FULL_TINY, "ddp", 4)
    assert round(ddp.subtotal, 2) == 80.31
    # FSDP over 4: 64.24 / 4 = 16.06, plus the gathered root (embeddings and head with their gradients:
    # 1,050,673,152 × 2 B × 2 = 4.20) and two layers (2 × 218,112,000 × 2 B = 0.87): 21.14 raw;
    # × 1.10 + 1 = 24.26 GB. Over 8: 8.03 + 5.08 = 13.11 raw → 15.42.
    assert round(memory(ARCH, FULL_TINY, "fsdp", 4).total, 2) == 24.26
    assert round(memory(ARCH, FULL_TINY, "fsdp", 8).total, 2) == 15.42


def test_placement_prefers_one_gpu_then_ddp_then_fsdp() -> None:
    lora = TrainingSetup(method="lora", batch_size=1, sequence_length=1, gradient_checkpointing=False)
    assert place(ARCH, lora, BIG, 1).strategy == "single"
    # LoRA's replicated job (18.7 GB) fits a 24 GB GPU: data-parallel over the four.
    assert (place(ARCH, lora, QUAD, 1).strategy, place(ARCH, lora, QUAD, 1).fits) == ("ddp", True)
    # A full fine-tune does not (89.3 GB with buckets): sharded, 24.26 > 24 on one QUAD, 15.42 on two.
    one, two = place(ARCH, FULL_TINY, QUAD, 1), place(ARCH, FULL_TINY, QUAD, 2)
    assert (one.strategy, one.fits, two.strategy, two.fits) == ("fsdp", False, "fsdp", True)


# --- the API's answer --------------------------------------------------------------------------


def test_instances_name_their_strategy_and_per_gpu_memory() -> None:
    result = estimate(base_model_id="test.sagemaker-8b", method="full", **TINY)
    # One BIG (80 GB) holds 71.7 GB: single GPU; EIGHT shards it (FSDP, 15.4 GB each: DDP would need
    # 89.3); QUAD needs 24.3 > 24 at one instance; SMALL cannot hold it.
    rows = {i.instance_type: (i.fits, i.strategy, i.memory_per_gpu_gb) for i in result.instances}
    assert rows == {
        "ml.t.big": (True, "single", 71.7),
        "ml.t.eight": (True, "fsdp", 15.4),
        "ml.t.quad": (False, "fsdp", 24.3),
        "ml.t.small": (False, "single", 71.7),
    }
    assert [i.instance_type for i in result.instances][:2] == ["ml.t.big", "ml.t.eight"]
    assert result.instance_count == 1
    assert any("sharded (FSDP)" in n and "one GPU holds the whole job" in n for n in result.notes)


def test_the_answer_states_the_plan_and_the_shape_it_used() -> None:
    result = estimate(base_model_id="test.sagemaker-8b")
    plan = result.plan
    # Nothing given: the model's default method (full: default_use_lora is false), its default batch
    # size (none in the spec: the trainer's 4), the trainer's default sequence 2048, bf16, checkpointing.
    assert (plan.method, plan.precision, plan.batch_size, plan.sequence_length) == ("full", "bf16", 4, 2048)
    assert plan.gradient_checkpointing
    assert plan.architecture.source == "catalog"
    assert (plan.architecture.layers, plan.architecture.hidden_size) == (32, 4096)
    assert any("32 layers of width 4,096" in n and "configuration" in n for n in result.notes)


def test_a_bare_parameter_count_says_its_shape_is_approximate() -> None:
    result = estimate(parameter_count=7e9, **TINY)
    assert result.plan.architecture.source == "approximate"
    assert abs(result.plan.parameters / 7e9 - 1) < 0.1
    assert any("approximated from the parameter count" in n for n in result.notes)


def test_bf16_leaves_out_instances_without_it_and_fp16_brings_them_back() -> None:
    bf16 = estimate(base_model_id="test.sagemaker-8b", method="lora", **TINY)
    assert "ml.t.old" not in {i.instance_type for i in bf16.instances}
    assert any("ml.t.old" in n and "bf16" in n for n in bf16.notes)
    # fp16: fp32 base weights 32.1 GB (+ adapters) × 1.1 + 1 = 36.4 > 32 GB: OLD is listed, not fitting.
    fp16 = estimate(base_model_id="test.sagemaker-8b", method="lora", precision="fp16", **TINY)
    assert {i.instance_type: i.fits for i in fp16.instances}["ml.t.old"] is False


def test_70b_full_needs_two_instances_of_eight_gpus() -> None:
    catalog = FakeCatalog([EIGHT], [load_catalog().model("sagemaker.llama-3-1-70b-instruct")])
    result = estimate_resources(
        ResourceEstimateRequest.parse(
            {"base_model_id": "sagemaker.llama-3-1-70b-instruct", "method": "full", "batch_size": 1}
        ),
        catalog,
    )
    # 70.55e9 × 8 B = 564.4 GB of state: / 8 = 70.6 GB on one instance (over 80 with everything else),
    # / 16 = 35.3 on two.
    assert result.instance_count == 2
    assert result.instances[0].strategy == "fsdp"
    assert any("needs 2 instances" in n for n in result.notes)


def test_nothing_fits_when_activations_alone_exceed_every_gpu() -> None:
    result = estimate(
        base_model_id="test.sagemaker-8b",
        sequence_length=32768,
        batch_size=64,
        gradient_checkpointing=False,
        method="full",
    )
    assert result.instance_count is None
    assert not any(i.fits for i in result.instances)
    assert any("Nothing fits" in n and "gradient checkpointing" in n for n in result.notes)


# --- storage rules -----------------------------------------------------------------------------


def test_storage_14_plus_30_plus_1_is_45_recommend_50() -> None:
    # 14 GB base + 1 checkpoint of 30 GB + 1 GB dataset = 45 GB; 45 × 1.1 = 49.5 → next 50 GB = 50.
    storage = storage_gb(base_model_gb=14, checkpoint_gb=30, checkpoints=1, dataset_gb=1)
    assert storage.model_dump() == {
        "base_model": 14.0,
        "trained_model": 0.0,
        "checkpoints": 30.0,
        "dataset": 1.0,
        "total": 45.0,
        "recommended": 50,
    }


def test_storage_from_a_request() -> None:
    # A full bf16 fine-tune: the base's files 8.03e9 × 2 B = 16.1 GB; the model written 16.1 GB; two
    # checkpoints kept, each weights + AdamW's two states 16.06 × 3 = 48.2 GB: 96.4; dataset 1 GB;
    # total 129.6; × 1.1 = 142.6 → next 50 GB = 150.
    storage = estimate(base_model_id="test.sagemaker-8b", dataset_bytes=1e9).storage_gb
    assert storage.model_dump() == {
        "base_model": 16.1,
        "trained_model": 16.1,
        "checkpoints": 96.4,
        "dataset": 1.0,
        "total": 129.6,
        "recommended": 150,
    }
    # LoRA's checkpoints hold the adapter alone: 3,407,872 × 4 B × 3 = 0.04 GB each.
    lora = estimate(base_model_id="test.sagemaker-8b", method="lora").storage_gb
    assert (lora.checkpoints, lora.total, lora.recommended) == (0.0, 32.2, 50)


@pytest.mark.parametrize(("total", "advised"), [(0.0, 50), (45.0, 50), (45.5, 100), (50.0, 100), (99.0, 150)])
def test_recommended_volume_rounding(total: float, advised: int) -> None:
    # total × 1.1 rounded up to a multiple of 50 GB: 45 → 49.5 → 50; 45.5 → 50.05 → 100; 50 → 55 → 100.
    assert recommended_volume_gb(total) == advised


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"parameter_count": 7e9, "dataset_bytes": -1}, "dataset_bytes", "greater than or equal"),
        ({"parameter_count": -7e9}, "parameter_count", "greater than"),
        ({"parameter_count": 7e9, "trainable_fraction": 0.2}, "trainable_fraction", "not permitted"),
        ({"parameter_count": 7e9, "precision": "int4"}, "precision", "quantised"),
        ({"parameter_count": 7e9, "optimizer": "adamw_8bit"}, "optimizer", "AdamW only"),
        ({"parameter_count": 7e9, "batch_size": 0}, "batch_size", "greater than"),
        ({"parameter_count": 7e9, "gpus": 4}, "gpus", "not permitted"),
    ],
)
def test_bad_fields_are_named(body: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        ResourceEstimateRequest.parse(body)
    assert [d.field for d in caught.value.details] == [field]
    assert words in caught.value.details[0].message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "base_model_id"),
        ({"base_model_id": "test.sagemaker-8b", "parameter_count": 7e9}, "base_model_id"),
        ({"base_model_id": "nope"}, "base_model_id"),
        ({"base_model_id": "test.bedrock-8b"}, "base_model_id"),
        ({"parameter_count": 7e9, "method": "full", "lora_r": 16}, "method"),
    ],
)
def test_contradictions_and_unknown_models_are_validation_errors(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate(**body)
    assert caught.value.details[0].field == field


# --- check_resources ---------------------------------------------------------------------------

LORA_2048 = TrainingSetup(method="lora", batch_size=1, sequence_length=2048)


def test_adequate_resources_give_no_warnings_and_name_the_strategy() -> None:
    checked = check_resources(spec(), BIG, 1, 100, setup=LORA_2048)
    assert (checked.warnings, checked.strategy) == ([], "single")


def test_too_little_vram_is_a_warning() -> None:
    # Full fine-tune on one 24 GB GPU: 71.7 GB and more.
    checked = check_resources(spec(), SMALL, 1, 200, setup=FULL_TINY)
    assert len(checked.warnings) == 1
    assert "24 GB" in checked.warnings[0]
    assert "may run out of memory" in checked.warnings[0]
    assert "full fine-tuning, bf16" in checked.warnings[0]


def test_more_instances_make_full_fine_tuning_fit_by_sharding() -> None:
    assert check_resources(spec(), QUAD, 1, 200, setup=FULL_TINY).warnings != []
    checked = check_resources(spec(), QUAD, 2, 200, setup=FULL_TINY)
    assert (checked.warnings, checked.strategy, checked.memory_per_gpu_gb) == ([], "fsdp", 15.4)


def test_volume_smaller_than_the_base_model_is_an_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_resources(spec(), BIG, 1, 10, setup=LORA_2048)
    assert caught.value.details[0].field == "resources.volume_size_gb"
    assert "16.1 GB" in caught.value.details[0].message


def test_volume_below_the_job_is_a_warning() -> None:
    # LoRA: 16.1 (base) + 16.1 (merged model) + 0.0 (two adapter checkpoints) = 32.2 GB (advised 50):
    # a 20 GB volume holds the base, not the model written.
    checked = check_resources(spec(), BIG, 1, 20, setup=LORA_2048)
    assert checked.warnings == [
        "Storage of 20 GB is less than the 32.2 GB this job may write (base model, trained model, "
        "checkpoints, dataset); 50 GB is advised."
    ]
    # 40 GB holds it, with little headroom.
    assert check_resources(spec(), BIG, 1, 40, setup=LORA_2048).warnings == [
        "A 40 GB volume leaves little headroom; 50 GB is advised."
    ]


def test_bf16_on_an_instance_without_it_is_an_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_resources(spec(), OLD, 1, 100, setup=LORA_2048)
    assert caught.value.details[0].field == "resources.instance_type"


def test_nvme_instance_uses_its_own_storage() -> None:
    nvme = instance("ml.n.big", 1, 80, 4.0, local_storage_gb=250)
    checked = check_resources(spec(), nvme, 1, 500, setup=LORA_2048)
    assert checked.warnings == [
        "ml.n.big trains on its own 250 GB NVMe storage; the 500 GB volume size does not apply."
    ]


# --- the shipped catalog: every default request fits its default instance -------------------------


def test_every_catalog_models_default_request_fits_its_default_instance() -> None:
    """The request a user gets by choosing only the model: default hyperparameters, default optional
    hyperparameters, the default instance (one, with the advised volume), longest rows the trainer keeps
    by default: the check the API makes finds it fits, under the strategy the trainer will use."""
    catalog = load_catalog()
    walked = 0
    for model in catalog.models:
        if not model.requires_resources:
            continue
        default = catalog.instance(model.default_instance_type or "")
        hyperparameters, optional = resolve_training_parameters(
            None, None, model, has_validation=False, hardware=default
        )
        assert optional is not None
        assert optional.use_lora == model.default_use_lora, model.id
        # LoRA chosen by default is merged, so the result is a whole model as a full fine-tune's.
        assert optional.merge_adapters == model.default_use_lora, model.id
        setup = setup_for(hyperparameters, optional, context_length=model.context_length)
        assert setup == default_setup(model), model.id
        advised = estimate_resources(ResourceEstimateRequest(base_model_id=model.id), catalog)
        checked = check_resources(model, default, 1, advised.storage_gb.recommended, setup=setup)
        assert checked.warnings == [], (model.id, checked)
        assert checked.memory_per_gpu_gb <= default.vram_per_gpu_gb, model.id
        # One GPU: single; several: data-parallel where one GPU holds the whole job, else sharded.
        if default.gpus == 1:
            assert checked.strategy == "single", model.id
        else:
            assert model.architecture is not None
            replicated = memory(model.architecture, setup, "ddp", default.gpus).total
            expected = "ddp" if replicated <= default.vram_per_gpu_gb else "fsdp"
            assert checked.strategy == expected, model.id
        # The model's notes state its default plan and what it needs there.
        assert any(
            n.startswith("Default plan:") and f"{checked.memory_per_gpu_gb:.1f} GB" in n for n in model.notes
        ), (
            model.id,
            checked.memory_per_gpu_gb,
        )
        walked += 1
    assert walked >= 12


def test_a_full_fine_tune_of_an_8b_model_does_not_fit_its_lora_instance() -> None:
    # Why Llama 3.1 8B defaults to LoRA: the full fine-tune of the same request needs 87 GB on 48.
    catalog = load_catalog()
    model = catalog.model("sagemaker.llama-3-1-8b-instruct")
    assert model.default_use_lora
    full = TrainingSetup(method="full", batch_size=4, sequence_length=2048)
    checked = check_resources(model, catalog.instance(model.default_instance_type or ""), 1, 200, setup=full)
    assert checked.memory_per_gpu_gb > 80
    assert checked.warnings


def test_catalog_bedrock_model_gets_no_resource_advice() -> None:
    with pytest.raises(ValidationFailed) as caught:
        estimate_resources(
            ResourceEstimateRequest(base_model_id="meta.llama3-1-8b-instruct-v1:0:128k"), load_catalog()
        )
    assert caught.value.details[0].field == "base_model_id"


# --- the optional hyperparameters the memory model reads --------------------------------------------


def _planned(optional: dict[str, Any], longest: int | None = None) -> TrainingSetup:
    model = spec()
    hyperparameters, resolved = resolve_training_parameters(None, optional, model, has_validation=False)
    return setup_for(
        hyperparameters, resolved, context_length=model.context_length, longest_row_tokens=longest
    )


def test_the_setup_reads_gradient_checkpointing_from_sft_config() -> None:
    assert _planned({}).gradient_checkpointing is True
    off = _planned({"sft_config": {"gradient_checkpointing": False}})
    assert off.gradient_checkpointing is False
    assert memory(ARCH, off, "single").activations > memory(ARCH, _planned({}), "single").activations


def test_max_length_caps_the_sequence_and_packing_fills_it() -> None:
    # Without packing a micro-batch is as long as the longest row kept; rows over max_length are left out.
    assert _planned({}, longest=300).sequence_length == 300
    assert _planned({}).sequence_length == 2048  # the model's 8,192-token context, at most 2,048
    assert _planned({"sft_config": {"max_length": 256}}, longest=300).sequence_length == 256
    assert _planned({"sft_config": {"max_length": 4096}}).sequence_length == 4096
    # Packing joins rows into sequences of max_length, however short the rows.
    assert (
        _planned({"sft_config": {"packing": True, "max_length": 1024}}, longest=300).sequence_length == 1024
    )


def test_dora_adds_a_magnitude_per_output_feature_and_its_weight_norm_workspace() -> None:
    lora = _planned({"use_lora": True})
    dora = _planned({"use_lora": True, "lora_config": {"use_dora": True}})
    assert (lora.dora, dora.dora) == (False, True)
    # q_proj and v_proj of Llama 3.1 8B: 4,096 and 1,024 outputs in each of 32 layers.
    assert lora_parameters(ARCH, 8, None, dora=True) - lora_parameters(ARCH, 8, None) == 32 * (4096 + 1024)
    assert dora_workspace_bytes(ARCH, None) == 2 * 4096 * 4096 * 4
    extra = memory(ARCH, dora, "single").subtotal - memory(ARCH, lora, "single").subtotal
    assert extra * 1e9 == pytest.approx(32 * (4096 + 1024) * 16 + 2 * 4096 * 4096 * 4)
    assert "DoRA r=8" in dora.describe()


def test_the_checkpoints_on_the_volume_follow_save_total_limit() -> None:
    def kept(sft: dict[str, Any]) -> int:
        _, resolved = resolve_training_parameters(None, {"sft_config": sft}, spec(), has_validation=False)
        return kept_checkpoints(resolved)

    assert kept({}) == 2
    assert kept({"save_total_limit": 5}) == 5
    assert kept({"save_strategy": "no"}) == 0
    assert kept_checkpoints(None) == 2


def test_dora_runs_its_adapted_weights_twice_only_with_dropout() -> None:
    def recomputed(lora: dict[str, Any]) -> int:
        _, resolved = resolve_training_parameters(
            None, {"use_lora": True, "lora_config": lora}, spec(), has_validation=False
        )
        return dora_recomputed_weights(spec(), resolved)

    # q_proj (4,096 × 4,096) and v_proj (4,096 × 1,024) in each of Llama 3.1 8B's 32 layers.
    assert recomputed({"use_dora": True, "lora_dropout": 0.05}) == 32 * (4096 * 4096 + 4096 * 1024)
    assert recomputed({"use_dora": True}) == 0  # without dropout peft reuses the layer's output
    assert recomputed({"lora_dropout": 0.05}) == 0
