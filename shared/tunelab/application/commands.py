"""What a user asks the use cases to do: the bodies of the API's requests that start something, as
pydantic models (the API serves them as its request bodies and documents them in OpenAPI).

Unknown fields are refused, so a typo (`hyperparameters.epoch`) is a 400 naming the field rather
than a value silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from tunelab.domain.catalog import BaseModelId
from tunelab.domain.hyperparameters import HyperparametersIn, OptionalHyperparametersIn
from tunelab.domain.naming import DatasetId, DatasetName, ModelName
from tunelab.domain.times import Timestamp


class _In(BaseModel):
    """A request body: unknown fields are refused, so typos are reported instead of ignored."""

    # Validators are built on first use, not at import: a cold start builds only what it touches.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class CreateDatasetIn(_In):
    name: DatasetName


class SplitValidationIn(_In):
    mode: Literal["split"]
    percent: int = Field(ge=1, le=50, description="Share of the dataset's rows held back for validation.")


class DatasetValidationIn(_In):
    mode: Literal["dataset"]
    dataset_id: DatasetId


class NoValidationIn(_In):
    mode: Literal["none"]


ValidationIn = Annotated[
    SplitValidationIn | DatasetValidationIn | NoValidationIn,
    Field(discriminator="mode", description="Where validation data comes from."),
]


class ResourcesIn(_In):
    instance_type: str = Field(
        min_length=1, max_length=64, description="SageMaker instance type, e.g. `ml.g5.12xlarge`."
    )
    instance_count: int = Field(default=1, ge=1, le=64, description="Instances; more than one runs torchrun.")
    volume_size_gb: int = Field(default=100, ge=1, le=16384, description="Training volume per instance.")


def _one_base(base_model_id: str | None, base_fine_tuned_model: str | None) -> None:
    if (base_model_id is None) == (base_fine_tuned_model is None):
        # `field` in ctx tells the API's error mapping which field to name.
        raise PydanticCustomError(
            "base_model",
            "Give either base_model_id or base_fine_tuned_model (exactly one).",
            {"field": "base_model_id"},
        )


class CostEstimateIn(_In):
    """The body of `POST /v1/fine-tuned-models`, where the acknowledgement is not needed."""

    name: ModelName | None = None
    base_model_id: BaseModelId | None = None
    base_fine_tuned_model: ModelName | None = Field(
        default=None,
        description="Continue from this fine-tuned model of the workspace instead of a base model.",
    )
    base_checkpoint: str | None = Field(
        default=None,
        pattern=r"^checkpoint-\d+$",
        max_length=64,
        description="With `base_fine_tuned_model`: start from this checkpoint its job kept (e.g. "
        "`checkpoint-8`, `GET .../checkpoints`) instead of its final weights.",
    )
    dataset_id: DatasetId
    validation: ValidationIn = Field(default_factory=lambda: NoValidationIn(mode="none"))
    resources: ResourcesIn | None = Field(default=None, description="SageMaker only, and required there.")
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    optional_hyperparameters: OptionalHyperparametersIn = None
    acknowledge: bool | None = None
    quote_id: str | None = Field(
        default=None,
        max_length=64,
        description="The `quote_id` of `POST /v1/cost-estimates` the user read: the job starts only with "
        "that very plan and price (an estimate ignores it).",
    )
    max_total_usd: float | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="The most the user will pay (training plus a month of storage): a job predicted to "
        "cost more is refused (an estimate notes it).",
    )

    @model_validator(mode="after")
    def _exactly_one_base(self) -> Self:
        _one_base(self.base_model_id, self.base_fine_tuned_model)
        if self.base_checkpoint is not None and self.base_fine_tuned_model is None:
            raise PydanticCustomError(
                "base_checkpoint",
                "base_checkpoint names a checkpoint of base_fine_tuned_model: give both.",
                {"field": "base_checkpoint"},
            )
        return self


class CreateFineTunedModelIn(CostEstimateIn):
    name: ModelName
    acknowledge: bool = Field(description="Must be true: the user has read the predicted cost.")

    @model_validator(mode="after")
    def _acknowledged(self) -> Self:
        if not self.acknowledge:
            raise PydanticCustomError(
                "acknowledge",
                "Set acknowledge to true once you have read the predicted cost (POST /v1/cost-estimates).",
                {"field": "acknowledge"},
            )
        return self


class CloneIn(_In):
    """The body of `POST /v1/fine-tuned-models/{name}/clone`: a new model made from another one's request:
    the hyperparameters given join the source's; each other part given replaces the source's whole."""

    name: ModelName
    acknowledge: bool = Field(
        default=False,
        description="True starts the clone (the user has read its predicted cost); false or left out answers "
        "the clone's estimate and quote, starting nothing.",
    )
    quote_id: str | None = Field(
        default=None, max_length=64, description="As in `POST /v1/fine-tuned-models`."
    )
    max_total_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    dataset_id: DatasetId | None = None
    validation: ValidationIn | None = None
    resources: ResourcesIn | None = None
    hyperparameters: HyperparametersIn | None = None
    optional_hyperparameters: OptionalHyperparametersIn = None


class ResumeIn(_In):
    """The body of `POST /v1/fine-tuned-models/{name}/resume`: resume a failed or stopped training from
    its last checkpoint."""

    acknowledge: bool = Field(
        default=False,
        description="True resumes the training (the user has read what resuming costs); false or left out "
        "answers the remaining steps' share of the prediction and a quote, starting nothing.",
    )
    quote_id: str | None = Field(
        default=None, max_length=64, description="As in `POST /v1/fine-tuned-models`."
    )
    max_total_usd: float | None = Field(default=None, ge=0, le=1_000_000)


class AfterHoursIn(_In):
    after_hours: float = Field(gt=0, le=24 * 30, description="Undeploy this many hours after deployment.")


class AtIn(_In):
    at: Timestamp = Field(description="Undeploy at this time (UTC).")


class DeployIn(_In):
    auto_undeploy: AfterHoursIn | AtIn | None = Field(
        default=None, description="When to undeploy automatically; null keeps it deployed until undeployed."
    )
    instance_type: str | None = Field(
        default=None,
        description="SageMaker only: the endpoint's instance type; it must hold the model for serving. "
        "Default: the model's default instance type when it fits, else the cheapest that does.",
    )
    instance_count: int | None = Field(
        default=None, ge=1, le=10, description="SageMaker only: the endpoint's instances (default 1)."
    )


class DeploymentPatchIn(_In):
    """`PATCH .../deployment`: change a deployed model's automatic undeploy."""

    auto_undeploy: AfterHoursIn | AtIn | None = Field(
        description="The new automatic undeploy (`after_hours` counts from now); null cancels it."
    )


class InvokeIn(_In):
    prompt: str = Field(min_length=1, max_length=100_000)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=0.9, gt=0, le=1)


ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9_/+=.@-]+$"  # noqa: S105
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class PutSageMakerProviderIn(_In):
    role_arn: str = Field(
        pattern=ROLE_ARN_PATTERN, description="The IAM role tunelab assumes in the customer's account."
    )
    external_id: str | None = Field(
        default=None,
        min_length=2,
        max_length=1224,
        pattern=r"^[A-Za-z0-9_+=,.@:/-]+$",
        description="The external id tunelab made for this workspace (GET /v1/providers/sagemaker/"
        "connector), which the connector's trust policy requires; left out, that one is used. Any other is "
        "refused.",
    )
    region: str = Field(pattern=REGION_PATTERN, description="Region of the training jobs and endpoints.")
    artifact_bucket: str = Field(
        pattern=BUCKET_PATTERN, description="Bucket in the customer's account for datasets and model outputs."
    )
    hf_token_secret_arn: str | None = Field(
        default=None,
        pattern=SECRET_ARN_PATTERN,
        description="Secrets Manager secret (in the customer's account) holding a Hugging Face token for "
        "gated models; tunelab passes its ARN to the job and never reads the value.",
    )
