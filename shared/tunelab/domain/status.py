"""A fine-tuned model's statuses, what may follow what, and which user actions each status allows.

Two tables, both here and nowhere else:

* `TRANSITIONS` — what status may follow which, for every change (a user's request or a
  provider's event). Event handlers use `can_transition` to drop duplicates and out-of-order
  events: a status never "changes" to itself, and nothing leaves a terminal status.
* `ACTIONS` — from which statuses a user may stop, deploy, undeploy, invoke, download, delete
  or continue training; `check_action` refuses the rest with `InvalidState` (409), naming the
  current status and what the action needs.

Decisions a user will notice:

* Undeploy is allowed while `deploying`: someone who started a deployment by mistake, or one that
  hangs, can cancel it at once instead of waiting to be billed for an endpoint in service.
* Download and "use as the base of a new fine-tune" need trained weights: only after training
  succeeded (`not_deployed`, `deploying`, `deployed`). Deploying or undeploying never touches
  the stored weights, so these stay allowed while deployed.
* Delete is refused while anything runs or bills by the hour (training, stopping, deploying,
  deployed); undeploy first.
* Stop is allowed only while `training`; a second stop while `stopping_training` is refused with
  a message saying the stop is under way. The model is `stopping_training` before the provider is
  asked, so news of a stop that lands at once finds it asked for; a provider that refuses the stop
  puts the model back to `training`.
* Resume is allowed from `training_failed` and `training_stopped` (whether the provider can resume,
  and from which checkpoint, is the use case's to check): the model goes back to `training` under
  its own name, record and history. Only this user action leaves those two statuses; no provider
  event does, so they stay `TERMINAL` for events.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from tunelab.domain.errors import InvalidState, ValidationFailed

# A dataset's status (the record's and the API's): uploaded, then validated into ready or invalid.
DatasetStatus = Literal["uploading", "validating", "ready", "invalid"]
# What a model's creator is told about (`domain.notifications` writes the emails).
NotificationKind = Literal[
    "training_completed",
    "training_failed",
    "training_stopped",
    "deployed",
    "deploy_failed",
    "undeploy_reminder",
    "undeployed",
]
# The kind of an entry in a model's history (the record's and the API's).
ModelEventType = Literal["status_changed", "metrics", "message"]


class ModelStatus(StrEnum):
    TRAINING = "training"
    TRAINING_FAILED = "training_failed"
    STOPPING_TRAINING = "stopping_training"
    TRAINING_STOPPED = "training_stopped"
    NOT_DEPLOYED = "not_deployed"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]

    @property
    def is_transient(self) -> bool:
        return self in TRANSIENT

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


STATUS_LABELS: Mapping[ModelStatus, str] = MappingProxyType(
    {
        ModelStatus.TRAINING: "Training",
        ModelStatus.TRAINING_FAILED: "Training failed",
        ModelStatus.STOPPING_TRAINING: "Stopping training",
        ModelStatus.TRAINING_STOPPED: "Training stopped",
        ModelStatus.NOT_DEPLOYED: "Not deployed",
        ModelStatus.DEPLOYING: "Deploying",
        ModelStatus.DEPLOYED: "Deployed",
    }
)


class Action(StrEnum):
    STOP = "stop"
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"
    INVOKE = "invoke"
    DOWNLOAD = "download"
    DELETE = "delete"
    CONTINUE_TRAINING = "continue_training"
    RESUME = "resume"


S = ModelStatus

# What may follow what. Each line says why an edge exists where it is not obvious.
TRANSITIONS: Mapping[ModelStatus, frozenset[ModelStatus]] = MappingProxyType(
    {
        S.TRAINING: frozenset(
            {
                S.STOPPING_TRAINING,  # the user asked to stop
                S.NOT_DEPLOYED,  # the job completed
                S.TRAINING_FAILED,  # the job failed (or our workflow did)
                S.TRAINING_STOPPED,  # stopped elsewhere (console, provider) without our stop request
            }
        ),
        S.STOPPING_TRAINING: frozenset(
            {
                S.TRAINING_STOPPED,  # the stop landed
                S.NOT_DEPLOYED,  # the job completed before the stop landed: the weights are good
                S.TRAINING_FAILED,  # the job failed before (or while) stopping
                S.TRAINING,  # the provider refused the stop: the job still trains
            }
        ),
        S.TRAINING_FAILED: frozenset({S.TRAINING}),  # the user resumed it from its last checkpoint
        S.TRAINING_STOPPED: frozenset({S.TRAINING}),  # the user resumed it from its last checkpoint
        S.NOT_DEPLOYED: frozenset({S.DEPLOYING}),
        S.DEPLOYING: frozenset(
            {
                S.DEPLOYED,  # in service
                S.NOT_DEPLOYED,  # the deployment failed, or the user undeployed while deploying
            }
        ),
        # Undeploy, the auto-undeploy schedule, or the endpoint failed / was deleted elsewhere.
        S.DEPLOYED: frozenset({S.NOT_DEPLOYED}),
    }
)

TRANSIENT: frozenset[ModelStatus] = frozenset({S.TRAINING, S.STOPPING_TRAINING, S.DEPLOYING})
# The training ended without weights: nothing but a user's resume follows these (no provider event);
# otherwise the record only waits to be deleted (or looked at).
TERMINAL: frozenset[ModelStatus] = frozenset({S.TRAINING_FAILED, S.TRAINING_STOPPED})
# Training succeeded: the weights exist in storage.
TRAINED: frozenset[ModelStatus] = frozenset({S.NOT_DEPLOYED, S.DEPLOYING, S.DEPLOYED})

ACTIONS: Mapping[Action, frozenset[ModelStatus]] = MappingProxyType(
    {
        Action.STOP: frozenset({S.TRAINING}),
        Action.DEPLOY: frozenset({S.NOT_DEPLOYED}),
        Action.UNDEPLOY: frozenset({S.DEPLOYING, S.DEPLOYED}),
        Action.INVOKE: frozenset({S.DEPLOYED}),
        Action.DOWNLOAD: TRAINED,
        Action.DELETE: frozenset({S.TRAINING_FAILED, S.TRAINING_STOPPED, S.NOT_DEPLOYED}),
        Action.CONTINUE_TRAINING: TRAINED,
        Action.RESUME: TERMINAL,
    }
)

# The status an accepted action moves the model to at once (the rest follows from events).
ACTION_RESULT: Mapping[Action, ModelStatus] = MappingProxyType(
    {
        Action.STOP: S.STOPPING_TRAINING,
        Action.DEPLOY: S.DEPLOYING,
        Action.UNDEPLOY: S.NOT_DEPLOYED,
        Action.RESUME: S.TRAINING,
    }
)

_VERB = {
    Action.STOP: "stop training of",
    Action.DEPLOY: "deploy",
    Action.UNDEPLOY: "undeploy",
    Action.INVOKE: "invoke",
    Action.DOWNLOAD: "download",
    Action.DELETE: "delete",
    Action.CONTINUE_TRAINING: "continue training from",
    Action.RESUME: "resume training of",
}

# Said instead of the generic "possible only when …" where the status explains itself.
_WHY: dict[tuple[Action, ModelStatus], str] = {
    (Action.STOP, S.STOPPING_TRAINING): "a stop is already under way",
    (Action.DEPLOY, S.DEPLOYING): "it is already being deployed",
    (Action.DEPLOY, S.DEPLOYED): "it is already deployed",
    (Action.UNDEPLOY, S.NOT_DEPLOYED): "it is not deployed",
    (Action.INVOKE, S.DEPLOYING): "it is still being deployed; try again when it is Deployed",
    (Action.DELETE, S.DEPLOYED): "it is deployed; undeploy it first",
    (Action.DELETE, S.DEPLOYING): "it is being deployed; undeploy it first",
    (Action.DELETE, S.TRAINING): "it is training; stop the training first",
    (Action.DELETE, S.STOPPING_TRAINING): "its training is stopping; wait until it has stopped",
    (Action.RESUME, S.TRAINING): "it is already training",
    (Action.RESUME, S.STOPPING_TRAINING): "its training is stopping; resume it once it has stopped",
}


def can(action: Action | str, status: ModelStatus | str) -> bool:
    """Whether a user may take `action` on a model in `status`."""
    return ModelStatus(status) in ACTIONS[Action(action)]


def check_action(action: Action | str, status: ModelStatus | str, name: str | None = None) -> None:
    """Raise `InvalidState` (409) when `action` is not possible in `status`; the message names both."""
    action, status = Action(action), ModelStatus(status)
    if status in ACTIONS[action]:
        return
    allowed = _or_list([s.label for s in ModelStatus if s in ACTIONS[action]])
    why = _WHY.get((action, status), f"that is possible only when the status is {allowed}")
    subject = f"model '{name}'" if name else "this model"
    raise InvalidState(f"Cannot {_VERB[action]} {subject}: its status is {status.label}, and {why}.")


def allowed_actions(status: ModelStatus | str) -> list[Action]:
    """The actions a user may take on a model in `status`, in the order of `Action`."""
    status = ModelStatus(status)
    return [a for a in Action if status in ACTIONS[a]]


def can_transition(current: ModelStatus | str, new: ModelStatus | str) -> bool:
    """Whether `new` may follow `current`; False for a repeat of the same status."""
    return ModelStatus(new) in TRANSITIONS[ModelStatus(current)]


def check_transition(current: ModelStatus | str, new: ModelStatus | str) -> None:
    """Raise `InvalidState` when `new` may not follow `current` (see `TRANSITIONS`)."""
    current, new = ModelStatus(current), ModelStatus(new)
    if new in TRANSITIONS[current]:
        return
    if new == current:
        raise InvalidState(f"The model is already {current.label}.")
    following = ", ".join(s.label for s in ModelStatus if s in TRANSITIONS[current]) or "nothing"
    raise InvalidState(
        f"The status cannot change from {current.label} to {new.label}; "
        f"from {current.label} it can become: {following}."
    )


def status_label(status: ModelStatus | str) -> str:
    return ModelStatus(status).label


def parse_status(value: str, field: str = "status") -> ModelStatus:
    """A status from user input (e.g. the `?status=` filter); `ValidationFailed` lists the valid ones."""
    try:
        return ModelStatus(value.strip().lower())
    except ValueError:
        valid = ", ".join(s.value for s in ModelStatus)
        raise ValidationFailed.of(field, f"Unknown status '{value}'; valid statuses: {valid}.") from None


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
