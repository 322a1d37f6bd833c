"""Small base-model specs and instance types built in tests (independent of the shipped catalog)."""

from __future__ import annotations

from datetime import date
from typing import Any

from tunelab.domain.catalog import (
    Architecture,
    BaseModelSpec,
    DataLimits,
    Deployment,
    EarlyStoppingSpec,
    FloatRange,
    HyperparameterSpec,
    InstanceType,
    IntRange,
    Pricing,
    Provider,
    Source,
)

SOURCE = Source(url="https://example.com/spec", as_of=date(2026, 11, 1))

BEDROCK_NAMES = {
    "epochs": "epochCount",
    "learning_rate": "learningRate",
    "batch_size": "batchSize",
    "warmup_steps": "learningRateWarmupSteps",
    "early_stopping.patience": "earlyStoppingPatience",
    "early_stopping.threshold": "earlyStoppingThreshold",
    "eval_percentage": "evalPercentage",
}


BATCH_SIZE = IntRange(min=1, max=64, default=4)
WARMUP_STEPS = IntRange(min=0, max=1000, default=10)


def hyperparameter_spec(
    *,
    batch_size: IntRange | None = BATCH_SIZE,
    warmup_steps: IntRange | None = WARMUP_STEPS,
    early_stopping: bool = True,
    eval_percentage: IntRange | None = None,
    provider_names: dict[str, str] | None = None,
) -> HyperparameterSpec:
    return HyperparameterSpec(
        epochs=IntRange(min=1, max=10, default=3),
        learning_rate=FloatRange(min=5e-6, max=0.1, default=1e-4),
        batch_size=batch_size,
        warmup_steps=warmup_steps,
        early_stopping=EarlyStoppingSpec(
            patience=IntRange(min=1, max=10, default=3),
            threshold=FloatRange(min=0.0, max=0.1, default=0.01),
        )
        if early_stopping
        else None,
        eval_percentage=eval_percentage,
        provider_names=provider_names or {},
        source=SOURCE,
    )


# Llama 3.1 8B's shape (8,030,261,248 parameters: within the catalog's 2% of the 8e9 listed below).
LLAMA_8B_SHAPE: dict[str, Any] = {
    "layers": 32,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "attention_heads": 32,
    "kv_heads": 8,
    "vocab_size": 128256,
    "tied_embeddings": False,
}


def model_spec(
    provider: Provider = "sagemaker", name: str = "Test Model 8B", **hyperparameters: Any
) -> BaseModelSpec:
    hp = hyperparameter_spec(**hyperparameters)
    if provider == "bedrock" and not hp.provider_names:
        names = {k: v for k, v in BEDROCK_NAMES.items() if k in hp.supported_paths()}
        hp = hp.model_copy(update={"provider_names": names})
    extras: dict[str, dict[str, Any]] = {
        "bedrock": {"regions": ["us-east-1"]},
        "sagemaker": {
            "hf_id": "example/test-8b-instruct",
            "default_instance_type": "ml.g5.2xlarge",
            "architecture": Architecture(**LLAMA_8B_SHAPE),
        },
        "local": {"hf_id": "/models/tiny"},
    }
    extra = extras[provider]
    return BaseModelSpec(
        id=f"{provider}.test-model",
        name=name,
        vendor="Example",
        provider=provider,
        hosting={"bedrock": "managed", "sagemaker": "byok", "local": "local"}[provider],  # type: ignore[arg-type]
        parameter_count=8_000_000_000,
        context_length=8192,
        training_data_format="prompt_completion" if provider == "bedrock" else "trainer_jsonl",
        hyperparameters=HyperparameterSpec.model_validate(hp.model_dump()),
        pricing=Pricing(
            training_per_1k_tokens_usd=0.001,
            storage_per_month_usd=1.95,
            deployment_per_hour_usd=1.0,
            source=SOURCE,
        ),
        limits=DataLimits(min_records=8, max_records=10_000, max_record_tokens=4096, source=SOURCE),
        deployment=Deployment(
            method={"bedrock": "on_demand", "sagemaker": "sagemaker_endpoint", "local": "local_server"}[
                provider
            ],  # type: ignore[arg-type]
            default_instance_type="ml.g5.2xlarge" if provider == "sagemaker" else None,
        ),
        **extra,
    )


def instance(name: str = "ml.g4dn.xlarge", gpu_model: str = "NVIDIA T4", bf16: bool = False) -> InstanceType:
    return InstanceType(
        name=name,
        family=name.split(".")[1],
        gpus=1,
        gpu_model=gpu_model,
        vram_per_gpu_gb=16,
        bf16=bf16,
        local_storage_gb=125,
        vcpus=4,
        memory_gb=16,
        price_per_hour_usd=0.736,
        source=SOURCE,
        price_source=SOURCE,
    )
