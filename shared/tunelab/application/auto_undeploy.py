"""The target of the auto-undeploy schedules: undeploy a model at the chosen time, remind before.

EventBridge Scheduler invokes the AutoUndeploy function with the schedule's input
(`schedules.ScheduleInput`: action, workspace, model, its uid, the deploy request's time). A
schedule acts only on the deployment it was made for: the model must still be the same life of
the name (`uid`), be `deployed`, and carry that deployment's schedule (the schedule's name derives
from the deploy request's time). A schedule of an earlier deployment that fires late changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger

from tunelab.application import operations
from tunelab.domain.notifications import compose
from tunelab.domain.records import ModelRecord
from tunelab.domain.schedules import ScheduleInput, schedule_names
from tunelab.domain.status import ModelStatus

if TYPE_CHECKING:
    from tunelab.composition.wiring import Services

logger = Logger(child=True)

AUTO_UNDEPLOY_REASON = "The auto-undeploy time chosen when it was deployed has come."

ScheduleAction = Literal["undeployed", "reminded", "ignored"]


@dataclass(frozen=True)
class ScheduleResult:
    action: ScheduleAction
    reason: str


def handle_schedule(services: Services, payload: Mapping[str, Any]) -> ScheduleResult:
    """Carry out one schedule's input (see the module's description)."""
    order = ScheduleInput.model_validate(payload)
    model = services.repository.find_model(order.workspace_id, order.model_name)
    why_not = _why_not(model, order)
    if why_not is not None:
        logger.info("Schedule ignored", extra={"reason": why_not, "model": order.model_name})
        return ScheduleResult(action="ignored", reason=why_not)
    assert model is not None
    if order.action == "remind":
        operations.notifier(services).send(compose("undeploy_reminder", model, at=order.undeploy_at))
        return ScheduleResult(action="reminded", reason=f"{model.created_by.email} was reminded")
    operations.undeploy_model(
        services,
        model.workspace_id,
        model.name,
        reason=AUTO_UNDEPLOY_REASON,
        by="auto-undeploy",
        only_if={ModelStatus.DEPLOYED},
    )
    return ScheduleResult(action="undeployed", reason=AUTO_UNDEPLOY_REASON)


def _why_not(model: ModelRecord | None, order: ScheduleInput) -> str | None:
    if model is None or model.uid != order.uid:
        return "the model was deleted (or its name now belongs to another model)"
    if model.status != ModelStatus.DEPLOYED:
        return f"the model is {model.status.label}, not deployed"
    from tunelab.composition.wiring import model_identity  # noqa: PLC0415  # wiring imports the providers

    undeploy_name, _ = schedule_names(model_identity(model), order.deployment_requested_at)
    if model.deployment is None or model.deployment.schedule_name != undeploy_name:
        return "the schedule belongs to an earlier deployment of the model"
    return None
