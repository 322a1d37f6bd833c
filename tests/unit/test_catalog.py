"""The shipped catalog: it loads, every figure is sourced, and the figures users see are the verified ones."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from tunelab.domain.catalog import (
    BaseModelSpec,
    Catalog,
    CatalogError,
    DataLimits,
    FloatRange,
    IntRange,
    Source,
    load_catalog,
    parse_catalog,
    read_catalog_data,
)
from tunelab.domain.errors import NotFound

BEDROCK_IDS = {
    "amazon.nova-micro-v1:0:128k",
    "amazon.nova-lite-v1:0:300k",
    "amazon.nova-pro-v1:0:300k",
    "amazon.nova-2-lite-v1:0:256k",
    "amazon.titan-text-express-v1:0:8k",
    "amazon.titan-text-lite-v1:0:4k",
    "cohere.command-text-v14:7:4k",
    "cohere.command-light-text-v14:7:4k",
    "meta.llama3-1-8b-instruct-v1:0:128k",
    "meta.llama3-1-70b-instruct-v1:0:128k",
    "meta.llama3-3-70b-instruct-v1:0:128k",
}
# Added from AWS's fine-tuning list of 2026-12-02 without a hyperparameter page of their own: their
# ranges are those of their family's page, so they are marked unverified.
UNVERIFIED_HYPERPARAMETERS = {"amazon.nova-2-lite-v1:0:256k", "meta.llama3-3-70b-instruct-v1:0:128k"}
SAGEMAKER_HF_IDS = {
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
    "aisingapore/Llama-SEA-LION-v3-8B-IT",
    "aisingapore/Gemma-SEA-LION-v3-9B-IT",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
}
LOCAL_IDS = {"local.tiny-llama", "local.smollm2-135m-instruct"}
NOVA = ("amazon.nova-micro-v1:0:128k", "amazon.nova-lite-v1:0:300k", "amazon.nova-pro-v1:0:300k")
TITAN = ("amazon.titan-text-express-v1:0:8k", "amazon.titan-text-lite-v1:0:4k")
COHERE = ("cohere.command-text-v14:7:4k", "cohere.command-light-text-v14:7:4k")
LLAMA = ("meta.llama3-1-8b-instruct-v1:0:128k", "meta.llama3-1-70b-instruct-v1:0:128k")

# The simple VRAM check for LoRA training: bf16 weights (2 B/param) + 20% of gradients (2 B) and AdamW
# states (4 B) + 10% activations, times 1.2 for buffer.
LORA_TRAIN_BYTES_PER_PARAM = (2 + 0.2 * (2 + 4) + 0.2) * 1.2
SERVE_BYTES_PER_PARAM = 2 * 1.2


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _r(spec: IntRange | FloatRange | None) -> tuple[float, float, float] | None:
    return None if spec is None else (spec.min, spec.max, spec.default)


def _all_sources(catalog: Catalog) -> list[tuple[str, Source]]:
    out: list[tuple[str, Source]] = []
    for m in catalog.models:
        out += [
            (f"{m.id} hyperparameters", m.hyperparameters.source),
            (f"{m.id} pricing", m.pricing.source),
            (f"{m.id} limits", m.limits.source),
        ]
        if m.retired is not None:
            out.append((f"{m.id} retired", m.retired.source))
    for i in catalog.instances:
        out += [(f"{i.name} specs", i.source), (f"{i.name} price", i.price_source)]
    out.append(("training volume price", catalog.volume_source))
    return out


# --- the shipped catalog -------------------------------------------------------------------------


def test_shipped_catalog_loads_every_product_model(catalog: Catalog) -> None:
    bedrock = {m.id for m in catalog.models if m.provider == "bedrock"}
    sagemaker = {m.hf_id for m in catalog.models if m.provider == "sagemaker"}
    assert bedrock == BEDROCK_IDS
    assert sagemaker == SAGEMAKER_HF_IDS
    # local.json ships the local runtime's own models; operators' folders come through Catalog.with_models.
    assert {m.id for m in catalog.models if m.provider == "local"} == LOCAL_IDS


def test_lookup_by_exact_id_and_unknown_ids_are_not_found(catalog: Catalog) -> None:
    assert catalog.model("meta.llama3-1-8b-instruct-v1:0:128k").name == "Meta Llama 3.1 8B Instruct"
    assert catalog.instance("ml.g5.12xlarge").gpus == 4
    with pytest.raises(NotFound, match=r"no base model 'meta\.llama3-1-8b'"):
        catalog.model("meta.llama3-1-8b")
    with pytest.raises(NotFound, match=r"ml\.g9\.xlarge"):
        catalog.instance("ml.g9.xlarge")
    assert catalog.find_model("nope") is None
    assert catalog.find_instance("nope") is None


def test_every_price_and_limit_has_a_source_url_and_date(catalog: Catalog) -> None:
    for what, source in _all_sources(catalog):
        assert source.url.startswith("https://"), what
        assert date(2024, 1, 1) <= source.as_of <= date(2026, 12, 2), what
        if not source.verified:
            assert source.note, f"{what}: an unverified figure must say what is unconfirmed"
    # The figures taken straight from the hyperparameter pages are verified ones.
    for m in catalog.models:
        if m.provider == "bedrock":
            assert m.hyperparameters.source.verified == (m.id not in UNVERIFIED_HYPERPARAMETERS), m.id
            assert m.hyperparameters.source.url.startswith("https://docs.aws.amazon.com/bedrock/"), m.id


def test_only_instruct_models_are_offered(catalog: Catalog) -> None:
    assert all(m.instruct for m in catalog.models)
    for m in catalog.models:
        if m.provider == "sagemaker":
            # Instruct / IT checkpoints, or DeepSeek's R1 distills (chat models without the suffix).
            name = (m.hf_id or "").lower()
            assert name.endswith(("-instruct", "-it")) or "/deepseek-r1-distill-" in name, m.hf_id


def test_bedrock_models_are_managed_with_regions_and_formats(catalog: Catalog) -> None:
    for m in catalog.models:
        if m.provider != "bedrock":
            continue
        assert m.hosting == "managed"
        assert m.regions
        assert not m.supports_optional_hyperparameters
        assert not m.supports_download
        assert not m.requires_resources
    for mid in NOVA:
        assert catalog.model(mid).training_data_format == "bedrock_conversation"
        assert catalog.model(mid).regions == ["us-east-1"]
    for mid in (*TITAN, *COHERE, *LLAMA):
        assert catalog.model(mid).training_data_format == "prompt_completion"
    for mid in LLAMA:
        assert catalog.model(mid).regions == ["us-west-2"]


def test_nova_hyperparameters_match_aws(catalog: Catalog) -> None:
    for mid in NOVA:
        hp = catalog.model(mid).hyperparameters
        assert _r(hp.epochs) == (1, 5, 2)
        assert _r(hp.learning_rate) == (1e-6, 1e-4, 1e-5)
        assert _r(hp.warmup_steps) == (0, 100, 10)
        assert hp.batch_size is None
        assert hp.early_stopping is None
        assert hp.provider_names == {
            "epochs": "epochCount",
            "learning_rate": "learningRate",
            "warmup_steps": "learningRateWarmupSteps",
        }


def test_titan_hyperparameters_match_aws(catalog: Catalog) -> None:
    for mid in TITAN:
        hp = catalog.model(mid).hyperparameters
        assert _r(hp.epochs) == (1, 10, 5)
        assert _r(hp.batch_size) == (1, 64, 1)
        assert _r(hp.learning_rate) == (0.0, 1.0, 1e-5)
        assert _r(hp.warmup_steps) == (0, 250, 5)
        assert hp.early_stopping is None
        assert hp.provider_names["batch_size"] == "batchSize"


def test_cohere_hyperparameters_match_aws(catalog: Catalog) -> None:
    command, light = (catalog.model(mid).hyperparameters for mid in COHERE)
    assert _r(command.batch_size) == (8, 8, 8)
    assert _r(light.batch_size) == (8, 32, 8)
    for hp in (command, light):
        assert _r(hp.epochs) == (1, 100, 1)
        assert _r(hp.learning_rate) == (5e-6, 0.1, 1e-5)
        assert hp.early_stopping is not None
        assert _r(hp.early_stopping.patience) == (1, 10, 6)
        assert _r(hp.early_stopping.threshold) == (0.0, 0.1, 0.01)
        assert _r(hp.eval_percentage) == (5, 50, 20)
        assert hp.warmup_steps is None
        assert hp.provider_names["early_stopping.patience"] == "earlyStoppingPatience"
        assert hp.provider_names["early_stopping.threshold"] == "earlyStoppingThreshold"
        assert hp.provider_names["eval_percentage"] == "evalPercentage"


def test_llama_31_hyperparameters_match_aws(catalog: Catalog) -> None:
    for mid in LLAMA:
        hp = catalog.model(mid).hyperparameters
        assert _r(hp.epochs) == (1, 10, 5)
        assert _r(hp.batch_size) == (1, 1, 1)
        assert _r(hp.learning_rate) == (5e-6, 0.1, 1e-4)
        assert hp.warmup_steps is None
        assert hp.early_stopping is None


def test_bedrock_data_limits_match_aws(catalog: Catalog) -> None:
    llama = catalog.model(LLAMA[0]).limits
    assert (llama.min_records, llama.max_records, llama.max_record_tokens) == (100, 10000, 16000)
    cohere = catalog.model(COHERE[0]).limits
    assert (cohere.max_prompt_tokens, cohere.max_completion_tokens) == (4096, 2048)
    assert (cohere.max_records, cohere.max_validation_records) == (10000, 1000)
    express, lite = (catalog.model(mid).limits for mid in TITAN)
    assert [express.max_record_tokens_for(b) for b in (1, 2, 4, 5)] == [4096, 2048, 2048, None]
    assert [lite.max_record_tokens_for(b) for b in (1, 2, 3, 6, 7)] == [4096, 4096, 2048, 2048, None]
    nova = catalog.model(NOVA[0]).limits
    assert (nova.min_records, nova.max_records) == (8, 20000)
    assert not nova.source.verified


def test_retired_models_stay_listed_and_marked(catalog: Catalog) -> None:
    retired = {m.id for m in catalog.models if m.is_retired}
    assert retired == {*TITAN, *COHERE}
    for mid in retired:
        assert catalog.model(mid).retired is not None


def test_deployment_methods(catalog: Catalog) -> None:
    for mid in NOVA:
        m = catalog.model(mid)
        assert m.deployment.method == "on_demand"
        assert m.pricing.deployment_per_hour_usd == 0
    # On-demand custom model deployment does not cover Llama 3.1 (only 3.3 70B), nor Titan or Cohere.
    for mid in (*TITAN, *COHERE, *LLAMA):
        m = catalog.model(mid)
        assert m.deployment.method == "provisioned_throughput"
        assert m.pricing.deployment_per_hour_usd > 0


def test_sagemaker_models_are_byok_with_trainer_hyperparameters(catalog: Catalog) -> None:
    for m in catalog.models:
        if m.provider != "sagemaker":
            continue
        assert m.hosting == "byok"
        assert m.training_data_format == "trainer_jsonl"
        assert m.hyperparameters.provider_names == {}
        assert m.hyperparameters.early_stopping is not None
        assert m.supports_optional_hyperparameters
        assert m.supports_download
        assert m.requires_resources
        assert m.pricing.training_per_1k_tokens_usd == 0
        assert m.deployment.method == "sagemaker_endpoint"
        assert m.limits.max_record_tokens == m.context_length
        assert m.gated == m.hf_id.startswith("meta-llama/")  # type: ignore[union-attr]


def test_sagemaker_default_instances_exist_and_fit(catalog: Catalog) -> None:
    for m in catalog.models:
        if m.provider != "sagemaker":
            continue
        assert m.parameter_count is not None
        assert m.default_instance_type is not None
        assert m.deployment.default_instance_type is not None
        train = catalog.instance(m.default_instance_type)
        serve = catalog.instance(m.deployment.default_instance_type)
        assert train.vram_gb >= m.parameter_count * LORA_TRAIN_BYTES_PER_PARAM / 1e9, m.id
        assert serve.vram_gb >= m.parameter_count * SERVE_BYTES_PER_PARAM / 1e9, m.id
        assert m.pricing.deployment_per_hour_usd == serve.price_per_hour_usd, m.id
        # Storage is S3 Standard for the merged bf16 artifact.
        assert m.pricing.storage_per_month_usd == pytest.approx(m.parameter_count * 2 / 1e9 * 0.023, abs=0.01)


def test_instance_catalog_families_and_bf16(catalog: Catalog) -> None:
    names = {i.name for i in catalog.instances}
    sizes = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")
    for family in ("g5", "g6", "g6e"):
        assert {f"ml.{family}.{s}" for s in sizes} <= names
    assert {"ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge"} <= names
    gpu_by_family = {
        "g5": ("NVIDIA A10G", 24),
        "g6": ("NVIDIA L4", 24),
        "g6e": ("NVIDIA L40S", 48),
        "p4d": ("NVIDIA A100", 40),
        "p4de": ("NVIDIA A100", 80),
        "p5": ("NVIDIA H100", 80),
    }
    for i in catalog.instances:
        assert (i.gpu_model, i.vram_per_gpu_gb) == gpu_by_family[i.family], i.name
        # Ampere and newer all have bf16.
        assert i.bf16, i.name
        assert i.price_per_hour_usd > 0
    assert catalog.instance("ml.g5.48xlarge").vram_gb == 192
    assert catalog.instance("ml.p5.48xlarge").vram_gb == 640
    assert catalog.instances_region == "us-east-1"
    assert catalog.volume_per_gb_month_usd > 0


def test_with_models_adds_a_local_model(catalog: Catalog) -> None:
    base = catalog.model("sagemaker.llama-3-2-1b-instruct")
    local = base.model_copy(
        update={
            "id": "local.tiny",
            "provider": "local",
            "hosting": "local",
            "default_instance_type": None,
            "deployment": base.deployment.model_copy(
                update={"method": "local_server", "default_instance_type": None}
            ),
        }
    )
    grown = catalog.with_models([BaseModelSpec.model_validate(local.model_dump())])
    assert grown.model("local.tiny").provider == "local"
    assert len(grown.models) == len(catalog.models) + 1
    with pytest.raises(CatalogError, match="duplicate base model ids"):
        grown.with_models([grown.model("local.tiny")])


# --- broken data fails at load with a clear message ----------------------------------------------


@pytest.fixture
def data() -> tuple[dict[str, Any], Any]:
    models, instances = read_catalog_data()
    return copy.deepcopy(models), copy.deepcopy(instances)


def _entry(models: dict[str, Any], file: str, model_id: str) -> dict[str, Any]:
    return next(m for m in models[file]["models"] if m["id"] == model_id)


def test_unmodified_data_parses(data: tuple[dict[str, Any], Any]) -> None:
    assert len(parse_catalog(*data).models) == len(BEDROCK_IDS) + len(SAGEMAKER_HF_IDS) + len(LOCAL_IDS)


def test_default_outside_range_fails_naming_the_model(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    _entry(models, "bedrock.json", "amazon.nova-pro-v1:0:300k")["hyperparameters"]["epochs"]["default"] = 9
    with pytest.raises(CatalogError) as e:
        parse_catalog(models, instances)
    assert "bedrock.json" in str(e.value)
    assert "models[amazon.nova-pro-v1:0:300k].hyperparameters.epochs" in str(e.value)
    assert "default 9 outside [1, 5]" in str(e.value)


def test_duplicate_id_fails(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    models["bedrock.json"]["models"].append(copy.deepcopy(models["bedrock.json"]["models"][0]))
    with pytest.raises(CatalogError, match=r"duplicate base model ids.*amazon\.nova-micro-v1:0:128k"):
        parse_catalog(models, instances)


def test_unknown_instance_type_fails(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    _entry(models, "sagemaker.json", "sagemaker.qwen2-5-7b-instruct")["default_instance_type"] = "ml.g5.huge"
    with pytest.raises(
        CatalogError, match=r"sagemaker\.qwen2-5-7b-instruct: unknown instance type ml\.g5\.huge"
    ):
        parse_catalog(models, instances)
    models, instances = read_catalog_data()
    _entry(models, "sagemaker.json", "sagemaker.qwen2-5-7b-instruct")["deployment"][
        "default_instance_type"
    ] = "ml.x"
    with pytest.raises(CatalogError, match=r"unknown instance type ml\.x"):
        parse_catalog(models, instances)


def test_missing_source_or_unverified_without_note_fails(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    del _entry(models, "bedrock.json", "cohere.command-text-v14:7:4k")["pricing"]["source"]
    with pytest.raises(CatalogError, match=r"models\[cohere\.command-text-v14:7:4k\]\.pricing\.source"):
        parse_catalog(models, instances)
    models, instances = read_catalog_data()
    instances["instances"][0]["price_source"].pop("note")
    with pytest.raises(CatalogError, match=r"instances.json: instances\[ml\.g5\.xlarge\]\.price_source"):
        parse_catalog(models, instances)


def test_bedrock_model_without_parameter_name_fails(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    del _entry(models, "bedrock.json", "meta.llama3-1-8b-instruct-v1:0:128k")["hyperparameters"][
        "provider_names"
    ]["batch_size"]
    with pytest.raises(CatalogError, match=r"Bedrock parameter names missing for \['batch_size'\]"):
        parse_catalog(models, instances)


def test_non_instruct_model_fails(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    _entry(models, "sagemaker.json", "sagemaker.qwen2-5-7b-instruct")["instruct"] = False
    with pytest.raises(CatalogError, match="only instruct"):
        parse_catalog(models, instances)


def test_bedrock_model_with_sagemaker_deployment_fails(data: tuple[dict[str, Any], Any]) -> None:
    models, instances = data
    _entry(models, "bedrock.json", "amazon.nova-lite-v1:0:300k")["deployment"]["method"] = (
        "sagemaker_endpoint"
    )
    with pytest.raises(CatalogError, match="deployment method sagemaker_endpoint"):
        parse_catalog(models, instances)


def test_data_limits_tiers_must_agree() -> None:
    src = {"url": "https://example.com/x", "as_of": "2026-11-28"}
    with pytest.raises(ValueError, match="first batch_token_limits tier"):
        DataLimits.model_validate(
            {
                "min_records": 1,
                "max_records": 10,
                "max_record_tokens": 4096,
                "batch_token_limits": [{"max_batch_size": 1, "max_record_tokens": 2048}],
                "source": src,
            }
        )
    with pytest.raises(ValueError, match="min_records 11 is above max_records 10"):
        DataLimits.model_validate(
            {"min_records": 11, "max_records": 10, "max_record_tokens": 1, "source": src}
        )
