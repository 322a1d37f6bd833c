"""Which archive of a trained model holds what, for downloading and serving it.

A model trained by the trainer (SageMaker, local) leaves `model.tar.gz`: the full model for full
fine-tuning, the merged model (and the adapter in `adapter/`) for LoRA merged into the weights, and
only the adapter for LoRA not merged. For that last case the trainer also writes a merged copy into
the job's output archive (`merged/`), recorded as `Artifacts.merged_archive`.

Two download variants:

* `merged` (the default; for an unmerged LoRA model trained before merged copies, which has none,
  a download that names no variant gets the adapter): the model with full weights and
  configuration, as it is served —
  `model.tar.gz` for full and merged models, the merged copy's archive for unmerged LoRA;
* `adapter`: the LoRA adapter's archive (`model.tar.gz`) of a LoRA model.

Unmerged LoRA models trained before merged copies were written have only the adapter: their `merged`
download is refused (409) and so is their deployment, before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunelab.domain.catalog import provider_traits
from tunelab.domain.errors import InvalidState, ValidationFailed
from tunelab.domain.records import ModelRecord

Variant = Literal["merged", "adapter"]
VARIANTS: tuple[Variant, ...] = ("merged", "adapter")
DEFAULT_VARIANT: Variant = "merged"
# The trainer keeps the adapter in this folder of `model.tar.gz`, merged or not (`trainer/README.md`).
ADAPTER_FOLDER = "adapter/"


@dataclass(frozen=True)
class ArchiveChoice:
    """One archive of a model: where it is, the folder inside it that holds what was asked for ("" for
    the archive's root, else a prefix of `files`), and a sentence saying what it holds."""

    variant: Variant
    uri: str
    model_path: str
    files: list[str]
    contents: str


def is_lora(model: ModelRecord) -> bool:
    """Whether the model was trained as a LoRA adapter."""
    optional = model.optional_hyperparameters
    return optional is not None and optional.use_lora


def is_unmerged_lora(model: ModelRecord) -> bool:
    """A LoRA model whose `model.tar.gz` holds the adapter without base weights."""
    return is_lora(model) and not (model.artifacts is not None and model.artifacts.merged)


def variants(model: ModelRecord) -> list[Variant]:
    """The download variants the model has now (none before training left an archive)."""
    if provider_traits(model.provider).keeps_weights or model.artifacts is None or not model.artifacts.uri:
        return []
    found: list[Variant] = []
    if not is_unmerged_lora(model) or model.artifacts.merged_archive is not None:
        found.append("merged")
    if is_lora(model):
        found.append("adapter")
    return found


def default_variant(model: ModelRecord) -> Variant:
    """What a download that names no variant gets: `merged`, except for an unmerged LoRA model trained
    before merged copies were kept, whose only archive is its adapter (as such downloads were then)."""
    artifacts = model.artifacts
    if is_unmerged_lora(model) and artifacts is not None and artifacts.merged_archive is None:
        return "adapter"
    return DEFAULT_VARIANT


def archive_for(model: ModelRecord, variant: Variant | None = None) -> ArchiveChoice:
    """The archive of `model` that holds `variant` (None: `default_variant`).

    `ValidationFailed` (field `variant`) for an adapter of a fully fine-tuned model; `InvalidState` when
    the model has no archive, or for `merged` of an unmerged LoRA model trained before merged copies.
    """
    artifacts = model.artifacts
    if artifacts is None or not artifacts.uri:
        raise InvalidState(f"Model '{model.name}' has no archive recorded; its training produced no files.")
    variant = variant or default_variant(model)
    if variant == "adapter":
        if not is_lora(model):
            raise ValidationFailed.of(
                "variant",
                f"'{model.name}' was fully fine-tuned, not trained as a LoRA adapter, so it has no adapter "
                "to download; variant=merged (the default) is its full model.",
            )
        rest = (
            "the merged model is at the archive's root"
            if artifacts.merged
            else "the archive's root holds the same adapter in PEFT's layout and the tokenizer, "
            "without base weights"
        )
        return ArchiveChoice(
            variant="adapter",
            uri=artifacts.uri,
            model_path=ADAPTER_FOLDER,
            files=list(artifacts.files),
            contents=(
                f"The LoRA adapter (adapter_config.json, adapter_model.safetensors) in {ADAPTER_FOLDER}, "
                f"for its base model {model.base_model_name}; {rest}."
            ),
        )
    if not is_unmerged_lora(model):
        adapter = f" The LoRA adapter is also in {ADAPTER_FOLDER}." if is_lora(model) else ""
        return ArchiveChoice(
            variant="merged",
            uri=artifacts.uri,
            model_path="",
            files=list(artifacts.files),
            contents=(
                "The full model at the archive's root: weights (safetensors), config.json, "
                f"generation_config.json, the tokenizer and its chat template.{adapter}"
            ),
        )
    copy = artifacts.merged_archive
    if copy is None:
        raise InvalidState(
            f"'{model.name}' is a LoRA adapter trained before tunelab kept a merged copy of LoRA models "
            "that were not merged, so there is no archive with its full weights; download the adapter "
            f"with variant=adapter and load it on {model.base_model_name} (with peft)."
        )
    return ArchiveChoice(
        variant="merged",
        uri=copy.uri,
        model_path=copy.path,
        files=list(copy.files),
        contents=(
            f"The LoRA adapter merged into {model.base_model_name}'s weights, in {copy.path}: weights "
            "(safetensors), config.json, generation_config.json, the tokenizer and its chat template "
            "(the job's output archive; the adapter alone is variant=adapter)."
        ),
    )


def serving_archive(model: ModelRecord) -> ArchiveChoice | None:
    """What a deployment of `model` serves: the `merged` archive; None where the provider keeps the
    weights (it serves its own model). `InvalidState` for an unmerged LoRA model without a merged copy,
    which no endpoint could load."""
    if provider_traits(model.provider).keeps_weights:
        return None
    try:
        return archive_for(model, "merged")
    except InvalidState as error:
        if model.artifacts is None or not model.artifacts.uri:
            raise
        raise InvalidState(
            f"'{model.name}' cannot be deployed: it is a LoRA adapter trained before tunelab kept a merged "
            "copy of LoRA models that were not merged, and an endpoint needs full weights. Train it again "
            "(a new model keeps a merged copy), or download the adapter with variant=adapter."
        ) from error


__all__ = [
    "ADAPTER_FOLDER",
    "DEFAULT_VARIANT",
    "VARIANTS",
    "ArchiveChoice",
    "Variant",
    "archive_for",
    "default_variant",
    "is_lora",
    "is_unmerged_lora",
    "serving_archive",
    "variants",
]
