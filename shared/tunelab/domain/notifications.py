"""Emails to a model's creator when something they should know happens.

`compose(kind, record, ...)` writes the email (pure: no AWS); the notifier port sends it (SES in
`adapters.ses`).

Each email says the model's name, its status label, the reason when something went wrong, what to
do next (the CLI command and the API call), and the costs that matter at that moment. Templates
live here, in code; every value put into the HTML is escaped.

A send that fails is raised (transient errors as `ProviderTransientError`): the workflow's Notify
state retries it, then gives up without touching the model's status.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from tunelab.domain.actual_costs import ActualTrainingCost
from tunelab.domain.catalog import provider_traits
from tunelab.domain.evaluation import headline
from tunelab.domain.records import ModelRecord
from tunelab.domain.status import ModelStatus, NotificationKind

API_BASE = "/v1/fine-tuned-models"


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str
    kind: str


@dataclass(frozen=True)
class _Section:
    heading: str | None
    lines: tuple[str, ...]


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _deploy_cost(record: ModelRecord) -> float | None:
    return record.predicted_cost.deployment_per_hour_usd if record.predicted_cost else None


def _actual_line(actual: ActualTrainingCost, *, part: bool = False) -> str:
    """`Training cost: $1.23 (predicted $1.10, 1.12×)`; an estimate says it is one; `part`: the job
    ended early, and the prediction was for the whole run."""
    label = (
        "Training cost (estimated; the provider reports no usage)" if actual.estimated else "Training cost"
    )
    compared = []
    if actual.predicted_usd is not None:
        compared.append(f"predicted {_usd(actual.predicted_usd)}" + (" for the whole run" if part else ""))
    if actual.actual_vs_predicted is not None:
        compared.append(f"{actual.actual_vs_predicted:.2f}×")
    if actual.earlier_attempts_usd is not None:
        compared.append(f"{_usd(actual.earlier_attempts_usd)} of it for the attempts before the resume")
    if actual.billable_seconds is not None:
        job = "this job" if actual.earlier_attempts_usd is not None else "the job"
        compared.append(f"{job}: {actual.billable_seconds:,} billable seconds")
    return f"{label}: {_usd(actual.cost_usd)}" + (f" ({', '.join(compared)})" if compared else "")


def _ended_early(record: ModelRecord, name: str, check: str | None = None) -> tuple[_Section, ...]:
    """What a stopped or failed job cost (where measured), and how to go on from it (`check` first)."""
    sections = []
    actual = record.training.actual_cost
    if actual is not None:
        sections.append(_Section("Costs", (_actual_line(actual, part=True),)))
    if provider_traits(record.provider).keeps_checkpoints:
        resume = (
            "To train on from its last checkpoint, where its job saved one: "
            f"tunelab models resume {name}   (or POST {API_BASE}/{name}/resume); it shows what the "
            "remaining steps cost before anything starts."
        )
    else:
        resume = "Its provider keeps no checkpoints, so this job cannot be resumed."
    return (
        *sections,
        _Section(
            "Next step",
            (
                *((check,) if check else ()),
                resume,
                f"To start over with other settings or data: tunelab models clone {name} NEW_NAME   "
                f"(or POST {API_BASE}/{name}/clone), or a new fine-tuned model. Nothing of this job is "
                "running or billing.",
            ),
        ),
    )


def _facts(record: ModelRecord) -> list[str]:
    return [
        f"Model: {record.name}",
        f"Status: {ModelStatus(record.status).label}",
        f"Base model: {record.base_model_name}",
        f"Dataset: {record.dataset.name}",
    ]


def _content(
    kind: NotificationKind, record: ModelRecord, reason: str | None, at: datetime | None
) -> tuple[str, list[_Section]]:
    name = record.name
    deploy = f"tunelab models deploy {name}   (or POST {API_BASE}/{name}/deploy)"
    undeploy = f"tunelab models undeploy {name}   (or POST {API_BASE}/{name}/undeploy)"
    facts = _Section(None, tuple(_facts(record)))
    if kind == "training_completed":
        metrics = record.training.metrics
        lines = [
            f"Training finished. {name} is ready and not deployed, so nothing bills by the hour.",
        ]
        if metrics is not None:
            lines.append(
                f"Final training loss {_loss(metrics.train_loss)}, "
                f"validation loss {_loss(metrics.eval_loss)}."
            )
        evaluation = record.training.evaluation
        if evaluation is not None:
            lines.append(f"Evaluation, base model → fine-tuned: {headline(evaluation)}.")
            lines.append(
                f"The whole report: tunelab models evaluation {name}   (or GET {API_BASE}/{name}/evaluation)"
            )
        elif record.training.evaluation_note:
            lines.append(f"Not evaluated: {record.training.evaluation_note.rstrip('.')}.")
        costs = []
        actual = record.training.actual_cost
        if actual is not None:
            costs.append(_actual_line(actual))
        elif record.predicted_cost is not None:
            costs.append(f"Predicted training cost: {_usd(record.predicted_cost.training.cost_usd)}")
        costs.append(
            f"Storage of the model: {_usd(record.storage_per_month_usd)} per month until you delete it"
        )
        deploy_cost = _deploy_cost(record)
        if deploy_cost:
            costs.append(f"A deployment costs about {_usd(deploy_cost)} per hour while deployed")
        if record.artifacts is not None and record.artifacts.size_bytes:
            costs.append(f"Artifacts: {record.artifacts.size_bytes / 1e9:.2f} GB")
        return f"{name} is ready: training completed", [
            _Section(None, tuple(lines)),
            facts,
            _Section("Costs", tuple(costs)),
            _Section("Next step", (f"Deploy it to try it in the sandbox: {deploy}",)),
        ]
    if kind == "training_failed":
        return f"Training of {name} failed", [
            _Section(None, (f"Training of {name} failed.", f"Reason: {reason or 'the provider gave none.'}")),
            facts,
            *_ended_early(
                record, name, "Check the dataset and the hyperparameters against the reason above."
            ),
        ]
    if kind == "training_stopped":
        lines = [f"Training of {name} was stopped before it finished; no fine-tuned model was produced."]
        if reason:
            lines.append(f"Reason: {reason}")
        return f"Training of {name} was stopped", [
            _Section(None, tuple(lines)),
            facts,
            *_ended_early(record, name),
        ]
    if kind == "deployed":
        deployment = record.deployment
        lines = [f"{name} is deployed and in service. Try it: POST {API_BASE}/{name}/invoke"]
        costs = []
        deploy_cost = _deploy_cost(record)
        if deploy_cost:
            costs.append(f"It costs about {_usd(deploy_cost)} per hour while deployed.")
        if deployment is not None and deployment.auto_undeploy_at is not None:
            costs.append(f"It will be undeployed automatically at {_when(deployment.auto_undeploy_at)}.")
        else:
            costs.append("It stays deployed, and billed, until you undeploy it.")
        return f"{name} is deployed", [
            _Section(None, tuple(lines)),
            facts,
            _Section("Costs", tuple(costs)),
            _Section("When you are done", (f"Undeploy it: {undeploy}",)),
        ]
    if kind == "deploy_failed":
        return f"Deployment of {name} failed", [
            _Section(
                None,
                (
                    f"Deployment of {name} failed.",
                    f"Reason: {reason or 'the provider gave none.'}",
                    "Nothing of this deployment is left running; the model is Not deployed and its weights "
                    "are kept.",
                ),
            ),
            facts,
            _Section("Next step", (f"Try again when the reason is dealt with: {deploy}",)),
        ]
    if kind == "undeploy_reminder":
        when = _when(at) if at else "soon"
        return f"{name} will be undeployed at {when}", [
            _Section(
                None,
                (
                    f"{name} is deployed and will be undeployed automatically at {when}, as chosen when it "
                    "was deployed. Requests to it will then fail.",
                ),
            ),
            facts,
            _Section(
                "Next step",
                (
                    f"Nothing to do if that suits you. To stop the charges now: {undeploy}. "
                    f"To keep serving it afterwards, deploy it again: {deploy}",
                ),
            ),
        ]
    if kind == "undeployed":
        lines = [f"{name} was undeployed; hourly charges have stopped. Its weights are kept."]
        if reason:
            lines.append(f"Reason: {reason}")
        return f"{name} was undeployed", [
            _Section(None, tuple(lines)),
            facts,
            _Section("Next step", (f"Deploy it again whenever you need it: {deploy}",)),
        ]
    raise ValueError(f"unknown notification {kind!r}")


def compose(
    kind: NotificationKind, record: ModelRecord, *, reason: str | None = None, at: datetime | None = None
) -> Email:
    """The email for `kind` about `record`, to its creator."""
    subject, sections = _content(kind, record, reason, at)
    subject = f"[tunelab] {subject}"
    text_parts: list[str] = []
    html_parts: list[str] = []
    for section in sections:
        if section.heading:
            text_parts.append(f"{section.heading}\n" + "\n".join(f"- {line}" for line in section.lines))
            items = "".join(f"<li>{html.escape(line)}</li>" for line in section.lines)
            html_parts.append(f"<h3>{html.escape(section.heading)}</h3><ul>{items}</ul>")
        else:
            text_parts.append("\n".join(section.lines))
            html_parts.append("".join(f"<p>{html.escape(line)}</p>" for line in section.lines))
    footer = "You get this email because you created this fine-tuned model in tunelab."
    text = "\n\n".join([*text_parts, footer]) + "\n"
    body = (
        '<!doctype html><html><body style="font-family: sans-serif">'
        + "".join(html_parts)
        + f'<p style="color:#666">{html.escape(footer)}</p></body></html>'
    )
    return Email(to=record.created_by.email, subject=subject, text=text, html=body, kind=kind)
