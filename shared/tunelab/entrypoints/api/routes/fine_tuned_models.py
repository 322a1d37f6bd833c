"""Fine-tuned models: create (202, training starts), list, details, history, stop, deploy, undeploy,
invoke (the sandbox), download and delete. Each route checks nothing itself: the use cases
do, and the status table (`tunelab.domain.status`) says what each status allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

from tunelab.application import checkpoints, deployments, evaluations, fine_tuned_models, training_logs
from tunelab.application.fine_tuned_models import Estimate, ResumeEstimate
from tunelab.composition.wiring import Services
from tunelab.domain.archives import Variant
from tunelab.domain.catalog import Provider
from tunelab.domain.errors import NotFound, ValidationFailed
from tunelab.domain.identity import Identity
from tunelab.domain.listing import ModelQuery, SortField, parse_model_statuses, parse_time
from tunelab.domain.naming import DATASET_ID_PATTERN, is_valid_name
from tunelab.domain.records import ModelRecord
from tunelab.entrypoints.api.contracts import (
    CheckpointDownloadOut,
    CheckpointOut,
    CheckpointsOut,
    CloneIn,
    CreateFineTunedModelIn,
    DeployIn,
    DeploymentPatchIn,
    DownloadOut,
    EvaluationOut,
    FineTunedModelOut,
    InvokeIn,
    InvokeOut,
    ModelEventOut,
    Page,
    QuoteOut,
    ResumeIn,
    ResumeQuoteOut,
    TrainingLogLineOut,
    TrainingLogOut,
    UsageOut,
)
from tunelab.entrypoints.api.deps import correlation_id, current_identity, services
from tunelab.entrypoints.api.idempotency import idempotency_key, idempotent
from tunelab.entrypoints.api.routes.common import (
    DEFAULT_LIMIT,
    CreatedAfter,
    CreatedBefore,
    Limit,
    NamePrefix,
    NextToken,
    Order,
    responses,
)
from tunelab.entrypoints.api.views import (
    download_out,
    evaluation_out,
    event_out,
    model_out,
    quote_out,
    resume_quote_out,
)

router = APIGatewayRouter()  # type: ignore[no-untyped-call]

TAGS = ["fine-tuned models"]
ROUTE = "POST /v1/fine-tuned-models"
ModelNamePath = Annotated[str, Path(description="The fine-tuned model's name.")]


def _name(name: str) -> str:
    # A name that breaks the naming rules names no model: 404, like an unknown one.
    if not is_valid_name(name):
        raise NotFound(f"There is no fine-tuned model '{name}' in this workspace.")
    return name


def _accepted(model: FineTunedModelOut) -> Response[FineTunedModelOut]:
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=model)


def _started_once(
    identity: Identity, route: str, body: BaseModel, start: Callable[[], ModelRecord]
) -> Response[FineTunedModelOut | Any]:
    """202 with the model `start` made, once per `Idempotency-Key` (a retry answers the first answer)."""
    out = idempotent(
        identity,
        route,
        idempotency_key(router.current_event.headers),
        body.model_dump(mode="json"),
        lambda: model_out(start()).model_dump(mode="json"),
        context=router.lambda_context,
    )
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=FineTunedModelOut.model_validate(out),
    )


@router.post(
    "/v1/fine-tuned-models",
    summary="Fine-tune a base model (or continue a fine-tuned one): all is checked, then training starts",
    description="Checks the whole request up front (name, base model, dataset, validation, resources, "
    "hyperparameters, plan and provider connection, acknowledgement), stores the model with status "
    "`training` and starts its workflow. `Idempotency-Key` makes a retry return the first answer.",
    tags=TAGS,
    responses=responses(202, "Accepted: training starts", conflict=True, forbidden=True),
    operation_id="createFineTunedModel",
)
def create_fine_tuned_model(
    body: CreateFineTunedModelIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
) -> Response[FineTunedModelOut]:
    out = idempotent(
        identity,
        ROUTE,
        idempotency_key(router.current_event.headers),
        body.model_dump(mode="json"),
        lambda: model_out(
            fine_tuned_models.create(ctx, identity, body, correlation_id=correlation)
        ).model_dump(mode="json"),
        context=router.lambda_context,
    )
    return _accepted(FineTunedModelOut.model_validate(out))


@router.get(
    "/v1/fine-tuned-models",
    summary="The workspace's fine-tuned models, filtered and sorted (by name unless asked)",
    description="Every filter given must hold. Pages are full until the last, whatever the filters.",
    tags=TAGS,
    responses=responses(),
    operation_id="listFineTunedModels",
)
def list_fine_tuned_models(  # noqa: PLR0917  # one parameter per filter of the contract
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    status: Annotated[
        list[str] | None,
        Query(description="Only models in these statuses: `training,deployed`, or the parameter repeated."),
    ] = None,
    provider: Annotated[Provider | None, Query(description="Only models of this provider.")] = None,
    base_model_id: Annotated[
        str | None, Query(max_length=200, description="Only models fine-tuned from this base model.")
    ] = None,
    dataset_id: Annotated[
        str | None,
        Query(pattern=DATASET_ID_PATTERN, description="Only models that train or validate on this dataset."),
    ] = None,
    creator: Annotated[
        str | None, Query(max_length=320, description="Only models created by this email address (exactly).")
    ] = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    name_prefix: NamePrefix = None,
    sort: Annotated[SortField, Query(description="`name` (the default) or `created_at`.")] = "name",
    order: Order = "asc",
    limit: Limit = DEFAULT_LIMIT,
    next_token: NextToken = None,
) -> Page[FineTunedModelOut]:
    query = ModelQuery(
        statuses=parse_model_statuses(status),
        provider=provider,
        base_model_id=base_model_id,
        dataset_id=dataset_id,
        creator=creator,
        created_after=parse_time(created_after, "created_after"),
        created_before=parse_time(created_before, "created_before"),
        name_prefix=name_prefix,
        sort=sort,
        order=order,
    )
    page = fine_tuned_models.list_models(ctx, identity, limit=limit, next_token=next_token, query=query)
    return Page[FineTunedModelOut](items=[model_out(m) for m in page.items], next_token=page.next_token)


@router.get(
    "/v1/fine-tuned-models/<name>",
    summary="One fine-tuned model: datasets, base model, hyperparameters, creator, cost, training, deploy",
    tags=TAGS,
    responses=responses(),
    operation_id="getFineTunedModel",
)
def get_fine_tuned_model(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> FineTunedModelOut:
    return model_out(fine_tuned_models.get(ctx, identity, _name(name)))


@router.get(
    "/v1/fine-tuned-models/<name>/events",
    summary="The model's history, oldest first: status changes, training metrics, messages",
    tags=TAGS,
    responses=responses(),
    operation_id="listFineTunedModelEvents",
)
def list_events(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    limit: Limit = DEFAULT_LIMIT,
    next_token: NextToken = None,
) -> Page[ModelEventOut]:
    page = fine_tuned_models.history(ctx, identity, _name(name), limit=limit, next_token=next_token)
    return Page[ModelEventOut](items=[event_out(e) for e in page.items], next_token=page.next_token)


@router.post(
    "/v1/fine-tuned-models/<name>/stop",
    summary="Stop training: training → stopping training → training stopped",
    tags=TAGS,
    responses=responses(202, "Accepted: the model as it stands after the request", conflict=True),
    operation_id="stopFineTunedModelTraining",
)
def stop(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
) -> Response[FineTunedModelOut]:
    model = fine_tuned_models.stop(ctx, identity, _name(name), correlation_id=correlation)
    return _accepted(model_out(model))


@router.post(
    "/v1/fine-tuned-models/<name>/clone",
    summary="A new model from this one's request, with any part replaced: estimate, or start it",
    description="Takes the source's base model (or the model it continued from), dataset, validation, "
    "resources and resolved hyperparameters; each part the body gives replaces the source's. Without "
    "`acknowledge: true` it answers the clone's estimate and quote (200) and starts nothing; with it, the "
    "clone goes through every check of `POST /v1/fine-tuned-models` (and its `quote_id` / "
    "`max_total_usd`) and starts (202). `Idempotency-Key` makes a retry return the first answer.",
    tags=TAGS,
    responses={
        **responses(202, "Accepted: the clone trains", conflict=True, forbidden=True),
        200: {"description": "Not acknowledged: the clone's estimate and quote; nothing started"},
    },
    operation_id="cloneFineTunedModel",
)
def clone(
    name: ModelNamePath,
    body: CloneIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
) -> Response[FineTunedModelOut | QuoteOut]:
    source = _name(name)
    if not body.acknowledge:
        answer = fine_tuned_models.clone(ctx, identity, source, body, correlation_id=correlation)
        assert isinstance(answer, Estimate)
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=quote_out(answer))

    def start() -> ModelRecord:
        created = fine_tuned_models.clone(ctx, identity, source, body, correlation_id=correlation)
        assert isinstance(created, ModelRecord)
        return created

    return _started_once(identity, f"POST /v1/fine-tuned-models/{source}/clone", body, start)


@router.post(
    "/v1/fine-tuned-models/<name>/resume",
    summary="Resume a failed or stopped training from its last checkpoint: estimate, or start it",
    description="For a `training_failed` or `training_stopped` model whose provider keeps checkpoints "
    "(SageMaker, local; not Bedrock: clone it instead). Without `acknowledge: true` it answers what "
    "resuming costs — the remaining steps' share of the model's predicted training cost — with the "
    "checkpoint and a quote (200), starting nothing; with it, the model is `training` again under its own "
    "name and history, and a new workflow execution and job continue from the checkpoint (202). 409 in "
    "other statuses; 400 when there is no checkpoint or the provider cannot resume.",
    tags=TAGS,
    responses={
        **responses(202, "Accepted: the training resumes", conflict=True),
        200: {"description": "Not acknowledged: what resuming costs, and a quote; nothing started"},
    },
    operation_id="resumeFineTunedModelTraining",
)
def resume(
    name: ModelNamePath,
    body: ResumeIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
) -> Response[FineTunedModelOut | ResumeQuoteOut]:
    model = _name(name)
    if not body.acknowledge:
        answer = fine_tuned_models.resume(ctx, identity, model, body, correlation_id=correlation)
        assert isinstance(answer, ResumeEstimate)
        return Response(
            status_code=200, content_type=content_types.APPLICATION_JSON, body=resume_quote_out(answer)
        )

    def start() -> ModelRecord:
        resumed = fine_tuned_models.resume(ctx, identity, model, body, correlation_id=correlation)
        assert isinstance(resumed, ModelRecord)
        return resumed

    return _started_once(identity, f"POST /v1/fine-tuned-models/{model}/resume", body, start)


@router.post(
    "/v1/fine-tuned-models/<name>/deploy",
    summary="Deploy: not deployed → deploying → deployed, with an optional automatic undeploy",
    tags=TAGS,
    responses=responses(202, "Accepted: the model as it stands after the request", conflict=True),
    operation_id="deployFineTunedModel",
)
def deploy(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
    body: DeployIn | None = None,
) -> Response[FineTunedModelOut]:
    model = deployments.deploy(ctx, identity, _name(name), body or DeployIn(), correlation_id=correlation)
    return _accepted(model_out(model))


@router.post(
    "/v1/fine-tuned-models/<name>/undeploy",
    summary="Undeploy: delete the deployment; hourly charges stop",
    tags=TAGS,
    responses=responses(202, "Accepted: the model as it stands after the request", conflict=True),
    operation_id="undeployFineTunedModel",
)
def undeploy(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
) -> Response[FineTunedModelOut]:
    model = deployments.undeploy_for(ctx, identity, _name(name), correlation_id=correlation)
    return _accepted(model_out(model))


@router.patch(
    "/v1/fine-tuned-models/<name>/deployment",
    summary="Change a deployed model's automatic undeploy: move it, or cancel it with null",
    description="`after_hours` counts from now; the time must be 5 minutes to 30 days ahead. The "
    "undeploy schedule (and its reminder) move with it; null deletes them. 409 unless deployed.",
    tags=TAGS,
    responses=responses(200, "The model as it stands after the change", conflict=True),
    operation_id="updateFineTunedModelDeployment",
)
def update_deployment(
    name: ModelNamePath,
    body: DeploymentPatchIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> FineTunedModelOut:
    return model_out(deployments.change_auto_undeploy(ctx, identity, _name(name), body))


@router.post(
    "/v1/fine-tuned-models/<name>/invoke",
    summary="The sandbox: one completion from the deployed model",
    tags=TAGS,
    responses=responses(conflict=True),
    operation_id="invokeFineTunedModel",
)
def invoke(
    name: ModelNamePath,
    body: InvokeIn,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> InvokeOut:
    result = deployments.invoke(ctx, identity, _name(name), body)
    return InvokeOut(
        completion=result.completion,
        usage=UsageOut(input_tokens=result.input_tokens, output_tokens=result.output_tokens),
        latency_ms=result.latency_ms,
    )


@router.get(
    "/v1/fine-tuned-models/<name>/download",
    summary="A short-lived link to the trained model's .tar.gz (SageMaker and local models): the full "
    "model, or the LoRA adapter",
    description="`variant=merged` (the default): the model with full weights and configuration, as it is "
    "served — for LoRA not merged into the weights, the merged copy under `merged/` of the job's output "
    "archive. `variant=adapter`: the LoRA adapter's archive (400 for a fully fine-tuned model). An "
    "unmerged LoRA model trained before merged copies were kept has the adapter only (409 for `merged`).",
    tags=TAGS,
    responses=responses(conflict=True),
    operation_id="downloadFineTunedModel",
)
def download(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    variant: Annotated[
        Variant | None,
        Query(
            description="`merged` (the default): full weights and configuration; `adapter`: the LoRA "
            "adapter of a LoRA model. Without it, an unmerged LoRA model trained before merged copies "
            "were kept gets its adapter."
        ),
    ] = None,
) -> DownloadOut:
    return download_out(fine_tuned_models.download(ctx, identity, _name(name), variant))


@router.delete(
    "/v1/fine-tuned-models/<name>",
    summary=(
        "Delete the model and all made for it (not while training, stopping, deploying, deployed, "
        "nor while a model continuing from it trains)"
    ),
    tags=TAGS,
    responses=responses(204, "Deleted", conflict=True),
    operation_id="deleteFineTunedModel",
)
def delete(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    correlation: Annotated[str, Depends(correlation_id)],
    acknowledge: Annotated[
        Literal["true", "false"] | None,
        Query(description="Must be `true`: the model, its weights and its history are deleted for good."),
    ] = None,
) -> Response[None]:
    if acknowledge != "true":
        raise ValidationFailed.of(
            "acknowledge",
            "Deleting removes the model, its weights and its history for good: add ?acknowledge=true.",
        )
    fine_tuned_models.delete(ctx, identity, _name(name), correlation_id=correlation)
    return Response(status_code=204)


@router.get(
    "/v1/fine-tuned-models/<name>/logs",
    summary="The model's training log, oldest first, each line with its time",
    description="What the trainer printed (steps, losses, warnings): for SageMaker the training job's "
    "CloudWatch log in your account, for the local runtime the job's log file. Bedrock keeps no training "
    "log: 200 with no lines and a `message` saying so. Follow a training by asking again with the "
    "`next_token` of the last page until it is null.",
    tags=TAGS,
    responses=responses(),
    operation_id="getFineTunedModelLogs",
)
def get_logs(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    limit: Limit = DEFAULT_LIMIT,
    next_token: NextToken = None,
) -> TrainingLogOut:
    log = training_logs.training_log(ctx, identity, _name(name), limit=limit, next_token=next_token)
    return TrainingLogOut(
        items=[TrainingLogLineOut(at=line.at, message=line.message) for line in log.lines],
        next_token=log.next_token,
        message=log.message,
    )


@router.get(
    "/v1/fine-tuned-models/<name>/evaluation",
    summary="Did the fine-tuning help? The base model beside the fine-tuned model on validation rows",
    description="After training completes, the trainer asks the base model and the fine-tuned model for "
    "the completions of up to `optional_hyperparameters.evaluation_config.max_rows` validation rows "
    "(greedy, the model's chat template) and scores both alike: exact match, token F1 and format "
    "match, fractions in 0–1, with a sample of the rows and both answers. 404 `not_found` while there "
    "is none, with a message that says why (still training, no validation data, turned off, Bedrock).",
    tags=TAGS,
    responses=responses(),
    operation_id="getFineTunedModelEvaluation",
)
def get_evaluation(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> EvaluationOut:
    return evaluation_out(evaluations.get_evaluation(ctx, identity, _name(name)))


@router.get(
    "/v1/fine-tuned-models/<name>/checkpoints",
    summary="The checkpoints the model's training job kept, by step, with the losses logged up to each",
    description="For the local runtime the job's `checkpoints/` folder, for SageMaker the checkpoints "
    "synced to your bucket (`<model prefix>/checkpoints/`). Bedrock keeps no checkpoints: 200 with no "
    "items and a `message` saying so; so does a model without a training job.",
    tags=TAGS,
    responses=responses(),
    operation_id="listFineTunedModelCheckpoints",
)
def list_checkpoints(
    name: ModelNamePath,
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> CheckpointsOut:
    found = checkpoints.list_checkpoints(ctx, identity, _name(name))
    return CheckpointsOut(
        items=[CheckpointOut(**item.model_dump()) for item in found.items], message=found.message
    )


@router.get(
    "/v1/fine-tuned-models/<name>/checkpoints/<checkpoint_id>/download",
    summary="A short-lived link to a .tar.gz of one checkpoint's folder (local runtime models)",
    description="The archive holds the checkpoint's folder as the trainer saved it: its "
    "`trainer_state.json` and weights. 404 for a checkpoint the model's job did not keep; 400 where the "
    "provider offers no such download (Bedrock keeps no checkpoints; a SageMaker checkpoint is a folder "
    "in your own bucket, under `<model prefix>/checkpoints/`, that tunelab does not pack).",
    tags=TAGS,
    responses=responses(),
    operation_id="downloadFineTunedModelCheckpoint",
)
def download_checkpoint(
    name: ModelNamePath,
    checkpoint_id: Annotated[str, Path(description="The checkpoint's id, `checkpoint-<step>`.")],
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> CheckpointDownloadOut:
    found = checkpoints.download_checkpoint(ctx, identity, _name(name), checkpoint_id)
    return CheckpointDownloadOut(
        id=found.checkpoint_id,
        url=found.link.url,
        expires_at=found.link.expires_at,
        size_bytes=found.link.size_bytes,
    )
