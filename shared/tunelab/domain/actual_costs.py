"""What a fine-tuning job actually cost once it ended, and what a deployment costs while it runs.

The prediction (`domain.costs.estimate_cost`) is made before anything starts; these figures come
from what the provider measured:

* instance-hour billing (SageMaker): the job's billable seconds (DescribeTrainingJob's and the state
  change event's `BillableTimeInSeconds`, wall-clock per instance) × the instance's hourly price ×
  the instance count, plus the training volume where the estimate bills one;
* per-token billing (Bedrock): trained tokens × the price per 1,000 tokens. Bedrock reports no token
  count (its job output holds loss and perplexity per step), so the figure falls back to the
  prediction's token estimate and says so (`estimated`): an estimate is never shown as actual;
* no billing (the local runtime): 0, and the ratio to the prediction (also 0) is not applicable:
  `actual_vs_predicted` is null whenever the prediction is 0.

A job that stopped or failed is billed for what it ran: its figure is recorded where the provider
measured it (`ended_early`; never the prediction, which is for the whole job). A model resumed
after such a job runs further attempts; each attempt's figure includes what the earlier ones cost
(`EarlierAttempts`, carried from attempt to attempt; `with_earlier_attempts`), so the model's actual
cost is what all its jobs cost together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tunelab.domain.catalog import BaseModelSpec, InstanceType
from tunelab.domain.costs import CostEstimate, instance_hourly_usd, usd

ActualBasis = Literal["billable_seconds", "trained_tokens", "estimated_tokens", "estimated_hours", "free"]


class ActualTrainingCost(BaseModel):
    """The training cost of a finished job, beside the prediction it was started on."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    cost_usd: float
    # What the figure is made of: a provider's measure, or (estimated) the prediction's own figures.
    basis: ActualBasis
    # True when the provider measured nothing to bill and the figure is the prediction's.
    estimated: bool = False
    billable_seconds: int | None = None
    trained_tokens: int | None = None
    predicted_usd: float | None = None
    # cost_usd / predicted_usd, two decimals; null where the prediction is 0 (local: not applicable).
    actual_vs_predicted: float | None = None
    # Of `cost_usd`, what the earlier attempts of a resumed model cost; None for a model never resumed.
    earlier_attempts_usd: float | None = None
    note: str


class EarlierAttempts(BaseModel):
    """The attempts of a resumed model before the running one (each stopped or failed): how many, the
    sum of what the provider measured of them, and how many it measured nothing of."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    count: int = 0
    measured_usd: float = 0.0
    unmeasured: int = 0


def after_attempt(earlier: EarlierAttempts | None, ended: ActualTrainingCost | None) -> EarlierAttempts:
    """What the attempts before the next one cost, once an attempt has ended with the figure `ended`
    (which already includes `earlier`), or with none where the provider measured nothing."""
    before = earlier or EarlierAttempts()
    if ended is None or ended.estimated:
        return before.model_copy(update={"count": before.count + 1, "unmeasured": before.unmeasured + 1})
    return before.model_copy(update={"count": before.count + 1, "measured_usd": ended.cost_usd})


def ratio(actual: float, predicted: float | None) -> float | None:
    """actual / predicted to two decimals; None when there is no prediction to compare with (or it is 0)."""
    if predicted is None or predicted <= 0:
        return None
    return round(actual / predicted, 2)


def with_earlier_attempts(cost: ActualTrainingCost, earlier: EarlierAttempts | None) -> ActualTrainingCost:
    """`cost` (one job's) plus what the `earlier` attempts of a resumed model cost, as measured; an
    estimate stays the prediction (which is for the whole run) and local training stays free."""
    if earlier is None or earlier.count == 0 or cost.estimated or cost.basis == "free":
        return cost
    if earlier.unmeasured == earlier.count:  # nothing measured: no "$0.00 of it" to add or show
        they = "attempt was" if earlier.count == 1 else "attempts were"
        it = "it is" if earlier.count == 1 else "they are"
        note = f"{cost.note} The {earlier.count} earlier {they} not measured by the provider"
        note += f", so {it} not included."
        return cost.model_copy(update={"note": note})
    total = usd(cost.cost_usd + earlier.measured_usd)
    attempts = "attempt" if earlier.count == 1 else "attempts"
    note = f"{cost.note} Plus ${earlier.measured_usd:,.2f} for the {earlier.count} earlier {attempts}"
    if earlier.unmeasured:
        note += f" ({earlier.unmeasured} of them not measured by the provider, so not included)"
    return cost.model_copy(
        update={
            "cost_usd": total,
            "earlier_attempts_usd": usd(earlier.measured_usd),
            "actual_vs_predicted": ratio(total, cost.predicted_usd)
            if cost.actual_vs_predicted is not None
            else None,
            "note": note + " before the resume.",
        }
    )


def ended_early(cost: ActualTrainingCost) -> ActualTrainingCost | None:
    """What a job that stopped or failed cost: only a figure the provider measured (None for an
    estimate: the prediction is for a whole run, not for a part of one), and not compared with the
    prediction, for the same reason."""
    if cost.estimated:
        return None
    return cost.model_copy(update={"actual_vs_predicted": None})


def actual_training_cost(
    spec: BaseModelSpec,
    *,
    region: str | None,
    predicted: CostEstimate | None,
    billable_seconds: int | None = None,
    trained_tokens: int | None = None,
    instance: InstanceType | None = None,
    instance_count: int = 1,
    volume_size_gb: float = 0.0,
    volume_per_gb_month_usd: float = 0.0,
) -> ActualTrainingCost:
    """What the job of a `spec` model cost, from the provider's measure (`billable_seconds` for
    instance-hour billing, `trained_tokens` per token); the prediction's figures, marked `estimated`,
    where the provider measured nothing."""
    predicted_usd = predicted.training.cost_usd if predicted else None
    billing = spec.traits.billing
    if billing == "instance_hours":
        if billable_seconds is not None and instance is not None:
            hourly = instance_hourly_usd(instance, instance_count, volume_size_gb, volume_per_gb_month_usd)
            cost = usd(billable_seconds / 3600 * hourly)
            return ActualTrainingCost(
                cost_usd=cost,
                basis="billable_seconds",
                billable_seconds=billable_seconds,
                predicted_usd=predicted_usd,
                actual_vs_predicted=ratio(cost, predicted_usd),
                note=f"{billable_seconds} billable seconds × {instance_count} × {instance.name} "
                f"(${hourly:.4f} per hour in all).",
            )
        cost = predicted_usd or 0.0
        return ActualTrainingCost(
            cost_usd=cost,
            basis="estimated_hours",
            estimated=True,
            predicted_usd=predicted_usd,
            actual_vs_predicted=None,
            note="The provider reported no billable time for this job; the figure is the prediction, "
            "not a measured cost.",
        )
    if billing == "per_token":
        price = spec.pricing.in_region(region).training_per_1k_tokens_usd
        if trained_tokens is not None:
            cost = usd(trained_tokens / 1000 * price)
            return ActualTrainingCost(
                cost_usd=cost,
                basis="trained_tokens",
                trained_tokens=trained_tokens,
                predicted_usd=predicted_usd,
                actual_vs_predicted=ratio(cost, predicted_usd),
                note=f"{trained_tokens:,} trained tokens × ${price:g} per 1,000 tokens.",
            )
        tokens = predicted.training.trained_tokens if predicted else 0
        cost = usd(tokens / 1000 * price)
        return ActualTrainingCost(
            cost_usd=cost,
            basis="estimated_tokens",
            estimated=True,
            trained_tokens=tokens,
            predicted_usd=predicted_usd,
            actual_vs_predicted=None,
            note="The provider reports no trained-token count; this is an estimate from tunelab's token "
            f"count ({tokens:,} tokens × ${price:g} per 1,000), not the billed amount.",
        )
    return ActualTrainingCost(
        cost_usd=0.0,
        basis="free",
        predicted_usd=predicted_usd,
        actual_vs_predicted=None,
        note="Trained on this machine: there are no cloud charges.",
    )


class DeploymentCost(BaseModel):
    """How long a deployment has run (or ran) and what it has cost at its hourly price."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    deployed_at: datetime
    # None while it runs.
    undeployed_at: datetime | None = None
    hours: float
    hourly_usd: float
    cost_usd: float


def deployment_cost(
    deployed_at: datetime, until: datetime, hourly_usd: float, *, ended: bool = False
) -> DeploymentCost:
    """The running hours from `deployed_at` to `until` and their cost (`ended`: `until` is when it was
    undeployed)."""
    hours = max(0.0, (until - deployed_at).total_seconds() / 3600)
    return DeploymentCost(
        deployed_at=deployed_at,
        undeployed_at=until if ended else None,
        hours=round(hours, 2),
        hourly_usd=hourly_usd,
        cost_usd=usd(hours * hourly_usd),
    )
