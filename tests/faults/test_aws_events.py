"""Provider events lost, duplicated and out of order, and PutEvents answering a partial failure.

A lost "Completed" is found by the reconciler (`reconcile`), which asks the provider; duplicates and
late "InProgress" news after the end change nothing; a partial PutEvents failure is published again
until every entry landed — each status change reaches the bus once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.aws_support import (
    api,
    aws,  # noqa: F401  # fixture
    bedrock_life,
    census,
    faults_fixture,  # noqa: F401  # the `faults` fixture
    later,
    record_faults,
    sagemaker_life,
    stack_fixture,  # noqa: F401  # fixture
    training_emails,
)
from tests.faults.injection import Injector
from tests.faults.tally import Tally
from tests.integration.workflow_fixtures import Stack
from tunelab.application.reconcile import reconcile
from tunelab.domain.events import MODEL_STATUS_CHANGED
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto


@pytest.mark.parametrize("provider", ["bedrock", "sagemaker"])
def test_a_lost_completed_event_is_settled_by_the_reconciler(
    stack: Stack, faults: Injector, tally: Tally, provider: str
) -> None:
    life = sagemaker_life(stack) if provider == "sagemaker" else bedrock_life(stack)
    life.create()
    life.wait_training()
    life.provider_says("Completed")  # ... and its event never arrives
    tally.injected("provider event lost")

    report = reconcile(stack.services, now=later())

    assert report.outcomes_sent == 1, report
    trained = life.wait_workflow()
    assert trained.status == ModelStatus.NOT_DEPLOYED, trained.training.failure_reason
    assert training_emails(stack)[life.name] == 1
    record_faults(tally, faults)
    census(life).report(tally)


def test_duplicated_and_out_of_order_events_change_nothing_twice(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    life = sagemaker_life(stack)
    life.create()
    life.wait_training()
    started = datetime.now(UTC)
    in_progress = life.job_event("InProgress", at=started)
    completed = life.job_event("Completed", at=started + timedelta(minutes=30))
    late_news = life.job_event("InProgress", at=started + timedelta(minutes=10), SecondaryStatus="Training")

    # Completed first and twice (in one batch and again), then news older than it, then again
    assert life.deliver(completed, completed) == {"batchItemFailures": []}
    tally.injected("provider event duplicated")
    assert life.deliver(late_news, in_progress) == {"batchItemFailures": []}
    tally.injected("provider event out of order", 2)
    trained = life.wait_workflow()
    assert life.deliver(completed, late_news) == {"batchItemFailures": []}
    tally.injected("provider event duplicated", 2)

    assert trained.status == ModelStatus.NOT_DEPLOYED, trained.training.failure_reason
    assert life.record().status == ModelStatus.NOT_DEPLOYED
    assert life.record().version == trained.version  # nothing written after the end
    assert training_emails(stack)[life.name] == 1
    executions = stack.sfn.list_executions(stateMachineArn=stack.fine_tuning_arn)["executions"]
    assert [e["status"] for e in executions] == ["SUCCEEDED"]
    record_faults(tally, faults)
    census(life).report(tally)


def test_a_stop_whose_stopped_event_comes_twice_and_late_ends_stopped_once(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    life = bedrock_life(stack)
    life.create()
    life.wait_training()
    started = datetime.now(UTC)
    stopping = life.job_event("Stopping", at=started)
    assert api("POST", f"{life.base}/stop").status == 202
    stopped = life.job_event("Stopped", at=started + timedelta(minutes=5))

    assert life.deliver(stopped, stopped) == {"batchItemFailures": []}
    assert life.deliver(stopping) == {"batchItemFailures": []}  # older than the Stopped
    tally.injected("provider event duplicated")
    tally.injected("provider event out of order")
    ended = life.wait_workflow()

    assert ended.status == ModelStatus.TRAINING_STOPPED
    assert training_emails(stack)[life.name] == 1
    record_faults(tally, faults)
    census(life).report(tally)


def test_partial_putevents_failures_are_published_again_and_land_once(
    stack: Stack, faults: Injector, tally: Tally
) -> None:
    life = bedrock_life(stack)
    faults.partial_put_events(times=None, every=2)  # one call in two loses its first entry

    life.create()
    trained = life.train()
    deployed = life.deploy()

    assert trained.status == ModelStatus.NOT_DEPLOYED
    assert deployed.status == ModelStatus.DEPLOYED
    assert faults.injected["putevents partial failure"] >= 2
    changes = [
        (e["detail"]["data"]["previous_status"], e["detail"]["data"]["status"])
        for e in stack.domain_events(timeout=0)
        if e["detail-type"] == MODEL_STATUS_CHANGED
    ]
    assert sorted(changes, key=str) == sorted(
        [
            (None, "training"),
            ("training", "not_deployed"),
            ("not_deployed", "deploying"),
            ("deploying", "deployed"),
        ],
        key=str,
    )
    record_faults(tally, faults)
    census(life).report(tally)
