"""The status table: labels, what may follow what, and which actions each status allows."""

from __future__ import annotations

import pytest

from tunelab.domain.errors import InvalidState, ValidationFailed
from tunelab.domain.status import (
    ACTION_RESULT,
    ACTIONS,
    TERMINAL,
    TRANSIENT,
    TRANSITIONS,
    Action,
    ModelStatus,
    allowed_actions,
    can,
    can_transition,
    check_action,
    check_transition,
    parse_status,
    status_label,
)
from tunelab.entrypoints.api.errors import status_of

S = ModelStatus


def test_the_seven_statuses_and_their_labels() -> None:
    assert {s.value: s.label for s in ModelStatus} == {
        "training": "Training",
        "training_failed": "Training failed",
        "stopping_training": "Stopping training",
        "training_stopped": "Training stopped",
        "not_deployed": "Not deployed",
        "deploying": "Deploying",
        "deployed": "Deployed",
    }
    assert status_label("deploying") == "Deploying"


def test_transient_and_terminal_statuses() -> None:
    assert {S.TRAINING, S.STOPPING_TRAINING, S.DEPLOYING} == TRANSIENT
    assert {S.TRAINING_FAILED, S.TRAINING_STOPPED} == TERMINAL
    assert S.DEPLOYING.is_transient
    assert not S.DEPLOYED.is_transient
    assert S.TRAINING_FAILED.is_terminal


# (action, statuses where a user may take it) — what a user of the product expects.
EXPECTED = {
    Action.STOP: {S.TRAINING},
    Action.DEPLOY: {S.NOT_DEPLOYED},
    Action.UNDEPLOY: {S.DEPLOYING, S.DEPLOYED},
    Action.INVOKE: {S.DEPLOYED},
    Action.DOWNLOAD: {S.NOT_DEPLOYED, S.DEPLOYING, S.DEPLOYED},
    Action.DELETE: {S.TRAINING_FAILED, S.TRAINING_STOPPED, S.NOT_DEPLOYED},
    Action.CONTINUE_TRAINING: {S.NOT_DEPLOYED, S.DEPLOYING, S.DEPLOYED},
    Action.RESUME: {S.TRAINING_FAILED, S.TRAINING_STOPPED},
}


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("status", list(ModelStatus))
def test_each_action_is_allowed_exactly_where_expected(action: Action, status: ModelStatus) -> None:
    allowed = status in EXPECTED[action]
    assert can(action, status) is allowed
    assert can(action.value, status.value) is allowed
    if allowed:
        check_action(action, status)
    else:
        with pytest.raises(InvalidState) as caught:
            check_action(action, status)
        # The message names the current status's label; the API answers 409.
        assert f"its status is {status.label}" in caught.value.message
        assert status_of(caught.value) == 409
        assert caught.value.code == "invalid_state"


@pytest.mark.parametrize("status", [S.TRAINING, S.STOPPING_TRAINING, S.DEPLOYING, S.DEPLOYED])
def test_delete_is_refused_while_running_or_deployed_with_what_to_do(status: ModelStatus) -> None:
    with pytest.raises(InvalidState) as caught:
        check_action("delete", status, name="support-bot-v1")
    message = caught.value.message
    assert message.startswith("Cannot delete model 'support-bot-v1': its status is")
    assert any(hint in message for hint in ("undeploy it first", "stop the training first", "wait until"))


def test_the_actions_each_status_offers() -> None:
    assert allowed_actions("deployed") == [
        Action.UNDEPLOY,
        Action.INVOKE,
        Action.DOWNLOAD,
        Action.CONTINUE_TRAINING,
    ]
    assert allowed_actions(S.TRAINING) == [Action.STOP]
    assert allowed_actions(S.STOPPING_TRAINING) == []
    assert allowed_actions(S.TRAINING_FAILED) == [Action.DELETE, Action.RESUME]
    assert allowed_actions(S.TRAINING_STOPPED) == [Action.DELETE, Action.RESUME]


def test_a_refusal_lists_the_statuses_where_the_action_is_possible() -> None:
    with pytest.raises(InvalidState) as caught:
        check_action(Action.DOWNLOAD, S.TRAINING)
    assert caught.value.message == (
        "Cannot download this model: its status is Training, and that is possible only when the status "
        "is Not deployed, Deploying or Deployed."
    )


def test_a_second_stop_says_the_stop_is_under_way() -> None:
    with pytest.raises(InvalidState, match="a stop is already under way"):
        check_action("stop", "stopping_training")


def test_invoke_while_deploying_says_to_wait() -> None:
    with pytest.raises(InvalidState, match="still being deployed"):
        check_action("invoke", "deploying")


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.TRAINING, S.STOPPING_TRAINING),
        (S.TRAINING, S.NOT_DEPLOYED),
        (S.TRAINING, S.TRAINING_FAILED),
        (S.TRAINING, S.TRAINING_STOPPED),  # stopped elsewhere
        (S.STOPPING_TRAINING, S.TRAINING_STOPPED),
        (S.STOPPING_TRAINING, S.NOT_DEPLOYED),  # completed before the stop landed
        (S.STOPPING_TRAINING, S.TRAINING_FAILED),
        (S.STOPPING_TRAINING, S.TRAINING),  # the provider refused the stop
        (S.NOT_DEPLOYED, S.DEPLOYING),
        (S.DEPLOYING, S.DEPLOYED),
        (S.DEPLOYING, S.NOT_DEPLOYED),  # deployment failed, or undeployed while deploying
        (S.DEPLOYED, S.NOT_DEPLOYED),  # undeploy, auto-undeploy, endpoint gone
        (S.TRAINING_FAILED, S.TRAINING),  # resumed from its last checkpoint
        (S.TRAINING_STOPPED, S.TRAINING),  # resumed from its last checkpoint
    ],
)
def test_the_allowed_transitions(current: ModelStatus, new: ModelStatus) -> None:
    assert can_transition(current, new)
    check_transition(current, new)


def test_every_other_transition_is_refused() -> None:
    allowed = {(a, b) for a, nxt in TRANSITIONS.items() for b in nxt}
    assert len(allowed) == 14
    for current in ModelStatus:
        for new in ModelStatus:
            if (current, new) in allowed:
                continue
            assert not can_transition(current, new)
            with pytest.raises(InvalidState):
                check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.NOT_DEPLOYED, S.TRAINING),  # a late "InProgress" event after completion
        (S.DEPLOYED, S.TRAINING_FAILED),  # a late failure event for an old job
        (S.TRAINING_FAILED, S.NOT_DEPLOYED),  # terminal
        (S.TRAINING_STOPPED, S.NOT_DEPLOYED),  # only a user's resume leaves it (to training)
        (S.NOT_DEPLOYED, S.DEPLOYED),  # skipping deploying
    ],
)
def test_out_of_order_events_are_refused(current: ModelStatus, new: ModelStatus) -> None:
    with pytest.raises(InvalidState) as caught:
        check_transition(current, new)
    assert f"from {current.label} to {new.label}" in caught.value.message


def test_a_duplicate_event_is_not_a_transition() -> None:
    for status in ModelStatus:
        assert not can_transition(status, status)
    with pytest.raises(InvalidState, match="already Deployed"):
        check_transition("deployed", "deployed")


def test_every_status_is_reachable_from_training() -> None:
    seen, frontier = {S.TRAINING}, [S.TRAINING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(ModelStatus)


def test_an_accepted_action_moves_to_a_status_the_table_allows() -> None:
    for action, result in ACTION_RESULT.items():
        for status in ACTIONS[action]:
            assert can_transition(status, result), (action, status, result)


def test_a_status_filter_from_user_input() -> None:
    assert parse_status(" Deployed ") is S.DEPLOYED
    with pytest.raises(ValidationFailed) as caught:
        parse_status("running")
    detail = caught.value.details[0]
    assert detail.field == "status"
    assert "Unknown status 'running'" in detail.message
    assert "not_deployed" in detail.message


def test_resume_goes_back_to_training_and_says_why_not_while_training() -> None:
    assert ACTION_RESULT[Action.RESUME] == S.TRAINING
    with pytest.raises(InvalidState, match="it is already training"):
        check_action("resume", "training", name="support-bot-v1")
    with pytest.raises(InvalidState, match="resume it once it has stopped"):
        check_action("resume", "stopping_training")
    with pytest.raises(InvalidState, match="Training failed or Training stopped"):
        check_action("resume", "not_deployed")
