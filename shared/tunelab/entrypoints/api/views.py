"""The API's view of each record: persistence records (`domain.records`) mapped to the contract's
response bodies (`contracts`). Only the API loads the contract's models."""

from __future__ import annotations

import re
from datetime import datetime

from tunelab.application.fine_tuned_models import Download, Estimate, ResumeEstimate
from tunelab.domain.archives import variants
from tunelab.domain.catalog import provider_traits
from tunelab.domain.evaluation import EvaluationReport, EvaluationSummary, headline
from tunelab.domain.identity import byok_allowed
from tunelab.domain.records import (
    Artifacts,
    Creator,
    DatasetRecord,
    DatasetRef,
    Metrics,
    ModelEventRecord,
    ModelRecord,
    ProviderConnectionRecord,
    ValidationChoice,
    WorkspaceRecord,
    utcnow,
)
from tunelab.entrypoints.api.contracts import (
    ActualCostOut,
    ArtifactsOut,
    BaseModelRefOut,
    CreatorOut,
    DatasetOut,
    DatasetRefOut,
    DatasetRowErrorOut,
    DatasetStatsOut,
    DatasetWarningOut,
    DeploymentCostOut,
    DeploymentOut,
    DownloadOut,
    EvaluationOut,
    EvaluationSampleOut,
    EvaluationScoresOut,
    EvaluationSummaryOut,
    FineTunedModelOut,
    MergedArchiveOut,
    MetricsOut,
    ModelCostOut,
    ModelEventOut,
    PlanOut,
    ProviderOut,
    ProviderStatus,
    QuoteOut,
    ResourcesOut,
    ResumeQuoteOut,
    TrainingOut,
    ValidationOut,
    WorkspaceOut,
)


def creator_out(creator: Creator) -> CreatorOut:
    return CreatorOut(email=creator.email, sub=creator.sub)


def workspace_out(record: WorkspaceRecord) -> WorkspaceOut:
    return WorkspaceOut(id=record.workspace_id, plan=record.plan, byok_allowed=byok_allowed(record.plan))


def provider_out(
    record: ProviderConnectionRecord, *, status: ProviderStatus | None = None, message: str | None = None
) -> ProviderOut:
    """A stored connection; `status` and `message`, when given, are what the use case found of it."""
    return ProviderOut(
        provider=record.provider,
        status=status or record.status,
        message=message or record.message,
        role_arn=record.role_arn,
        region=record.region,
        artifact_bucket=record.artifact_bucket,
        hf_token_secret_arn=record.hf_token_secret_arn,
        verified_at=record.verified_at,
        checked_at=record.last_checked_at,
    )


def dataset_out(record: DatasetRecord) -> DatasetOut:
    return DatasetOut(
        id=record.dataset_id,
        name=record.name,
        status=record.status,
        created_at=record.created_at,
        # A dataset shows its creator's email only.
        created_by=CreatorOut(email=record.created_by.email),
        size_bytes=record.size_bytes,
        rows=record.rows,
        stats=DatasetStatsOut(**record.stats.model_dump()) if record.stats else None,
        errors=[DatasetRowErrorOut(**e.model_dump()) for e in record.errors],
        error_count=record.error_count,
        warnings=[DatasetWarningOut(**w.model_dump()) for w in record.warnings],
    )


def dataset_ref_out(ref: DatasetRef) -> DatasetRefOut:
    return DatasetRefOut(id=ref.id, name=ref.name, rows=ref.rows)


def validation_out(choice: ValidationChoice) -> ValidationOut:
    return ValidationOut(
        mode=choice.mode,
        percent=choice.percent,
        dataset=dataset_ref_out(choice.dataset) if choice.dataset else None,
    )


def metrics_out(metrics: Metrics) -> MetricsOut:
    return MetricsOut(**metrics.model_dump())


def model_out(record: ModelRecord, now: datetime | None = None) -> FineTunedModelOut:
    """The model as the API shows it; a deployment's running cost is counted to `now` (default: now)."""
    training = record.training
    return FineTunedModelOut(
        name=record.name,
        status=record.status,
        status_label=record.status.label,
        provider=record.provider,
        hosting=record.hosting,
        base_model=BaseModelRefOut(id=record.base_model_id, name=record.base_model_name),
        base_fine_tuned_model=record.base_fine_tuned_model,
        base_checkpoint=record.base_checkpoint,
        dataset=dataset_ref_out(record.dataset),
        validation=validation_out(record.validation),
        resources=ResourcesOut(**record.resources.model_dump()) if record.resources else None,
        hyperparameters=record.hyperparameters,
        optional_hyperparameters=record.optional_hyperparameters,
        cost=ModelCostOut(
            predicted=record.predicted_cost,
            storage_per_month_usd=record.storage_per_month_usd,
            actual=ActualCostOut(**training.actual_cost.model_dump()) if training.actual_cost else None,
            deployment=_deployment_cost(record, now or utcnow()),
            last_deployment=DeploymentCostOut(**record.last_deployment.model_dump())
            if record.last_deployment
            else None,
            deployments_total_usd=record.deployments_cost_usd,
        ),
        created_by=creator_out(record.created_by),
        created_at=record.created_at,
        updated_at=record.updated_at,
        training=TrainingOut(
            job_id=_shown_id(record, training.job_id),
            execution_arn=_platform_masked(training.execution_arn),
            started_at=training.started_at,
            ended_at=training.ended_at,
            phase=training.phase,
            failure_reason=training.failure_reason,
            metrics=metrics_out(training.metrics) if training.metrics else None,
            attempt=training.attempt,
        ),
        evaluation=evaluation_summary_out(training.evaluation) if training.evaluation else None,
        evaluation_note=training.evaluation_note,
        artifacts=artifacts_out(record) if record.artifacts else None,
        deployment=DeploymentOut(
            endpoint=_shown_id(record, record.deployment.endpoint),
            deployed_at=record.deployment.deployed_at,
            auto_undeploy_at=record.deployment.auto_undeploy_at,
            instance_type=record.deployment.instance_type,
            instance_count=record.deployment.instance_count,
        )
        if record.deployment
        else None,
    )


def evaluation_summary_out(summary: EvaluationSummary) -> EvaluationSummaryOut:
    return EvaluationSummaryOut(
        rows=summary.rows,
        base=EvaluationScoresOut(**summary.base.model_dump()),
        fine_tuned=EvaluationScoresOut(**summary.fine_tuned.model_dump()),
        headline=headline(summary),
    )


def evaluation_out(report: EvaluationReport) -> EvaluationOut:
    return EvaluationOut(
        **evaluation_summary_out(report).model_dump(),
        validation_rows=report.validation_rows,
        max_new_tokens=report.max_new_tokens,
        decoding=report.decoding,
        seconds=report.seconds.model_dump(),
        samples=[EvaluationSampleOut(**sample.model_dump()) for sample in report.samples],
        notes=report.notes,
    )


def _deployment_cost(record: ModelRecord, now: datetime) -> DeploymentCostOut | None:
    running = record.deployment_cost(now)
    return DeploymentCostOut(**running.model_dump()) if running else None


def artifacts_out(record: ModelRecord) -> ArtifactsOut:
    artifacts = record.artifacts or Artifacts()
    copy = artifacts.merged_archive
    return ArtifactsOut(
        size_bytes=artifacts.size_bytes,
        files=artifacts.files,
        merged=artifacts.merged,
        merged_archive=MergedArchiveOut(path=copy.path, size_bytes=copy.size_bytes, files=copy.files)
        if copy
        else None,
        download_variants=variants(record),
    )


def download_out(download: Download) -> DownloadOut:
    link, archive = download.link, download.archive
    return DownloadOut(
        url=link.url,
        expires_at=link.expires_at,
        size_bytes=link.size_bytes,
        files=archive.files,
        variant=archive.variant,
        model_path=archive.model_path,
        contents=archive.contents,
    )


def event_out(record: ModelEventRecord) -> ModelEventOut:
    return ModelEventOut(
        at=record.at,
        type=record.type,
        status=record.status,
        message=record.message,
        metrics=metrics_out(record.metrics) if record.metrics else None,
    )


# An ARN's account field: tenants are not shown the platform's account (AWS names it in every ARN).
_ARN_ACCOUNT = re.compile(r"^(arn:[^:]*:[^:]*:[^:]*:)(\d{12})(:)")
MASKED_ACCOUNT = "************"


def _platform_masked(arn: str | None) -> str | None:
    """An ARN of the platform's own (a workflow's execution, a Bedrock job) with its account masked."""
    return _ARN_ACCOUNT.sub(rf"\g<1>{MASKED_ACCOUNT}\g<3>", arn) if arn else arn


def _shown_id(record: ModelRecord, provider_id: str | None) -> str | None:
    """A provider's id as the tenant sees it: in the customer's own account (BYOK) as it is; else with
    the platform's account masked."""
    if provider_traits(record.provider).requires_connection:
        return provider_id
    return _platform_masked(provider_id)


def resume_quote_out(estimate: ResumeEstimate) -> ResumeQuoteOut:
    return ResumeQuoteOut(
        **estimate.cost.model_dump(),
        model=estimate.model.name,
        checkpoint=estimate.checkpoint.checkpoint,
        step=estimate.checkpoint.step,
        total_steps=estimate.checkpoint.total_steps,
        quote_id=estimate.quote.quote_id,
        quote_expires_at=estimate.quote.expires_at,
    )


def quote_out(estimate: Estimate) -> QuoteOut:
    planned = estimate.plan
    return QuoteOut(
        **planned.cost.model_dump(),
        runnable=planned.unrunnable is None,
        unrunnable_reason=planned.unrunnable,
        plan=PlanOut(
            base_model_id=planned.spec.id,
            base_model_name=planned.spec.name,
            provider=planned.spec.provider,
            training_region=planned.training_region,
            base_fine_tuned_model=planned.parent.name if planned.parent else None,
            base_checkpoint=planned.base_checkpoint,
            dataset=DatasetRefOut(
                id=planned.dataset.dataset_id, name=planned.dataset.name, rows=planned.dataset.rows
            ),
            validation=validation_out(planned.validation),
            resources=ResourcesOut(**planned.resources.model_dump()) if planned.resources else None,
            hyperparameters=planned.hyperparameters,
            optional_hyperparameters=planned.optional_hyperparameters,
            advice=planned.advice,
        ),
        quote_id=estimate.quote.quote_id if estimate.quote else None,
        quote_expires_at=estimate.quote.expires_at if estimate.quote else None,
    )
