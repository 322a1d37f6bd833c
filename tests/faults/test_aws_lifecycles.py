"""Throttling and 5xx from every AWS service a lifecycle calls, answered within botocore's retries:
the whole life of a SageMaker (BYOK) and of a Bedrock model — create → trained → deployed →
undeployed → deleted — goes through as if nothing happened.

Each operation's first call is answered with the service's throttling error (or its 5xx), botocore
retries it; every one of the eight services tunelab speaks to (SageMaker's path: STS, SageMaker, S3,
DynamoDB, EventBridge, SES, Scheduler; Bedrock's: Bedrock and the same platform services) sees its
faults, and the census finds nothing left behind.
"""

from __future__ import annotations

import pytest

from tests.faults.aws_support import (
    aws,  # noqa: F401  # fixture
    bedrock_life,
    census,
    faults_fixture,  # noqa: F401  # the `faults` fixture
    record_faults,
    sagemaker_life,
    stack_fixture,  # noqa: F401  # fixture
)
from tests.faults.injection import Injector
from tests.faults.tally import Tally
from tests.integration.workflow_fixtures import Stack

pytestmark = pytest.mark.moto

PLATFORM = ("s3", "dynamodb", "eventbridge", "sesv2", "scheduler")
BY_PROVIDER = {"sagemaker": ("sts", "sagemaker", *PLATFORM), "bedrock": ("bedrock", *PLATFORM)}


@pytest.mark.parametrize("kind", ["throttling", "5xx"])
@pytest.mark.parametrize("provider", ["sagemaker", "bedrock"])
def test_a_whole_life_goes_through_faults_that_botocore_retries(
    stack: Stack, faults: Injector, tally: Tally, provider: str, kind: str
) -> None:
    # the first call of each operation of each service (botocore's retry then gets through)
    for service in BY_PROVIDER[provider]:
        add = faults.throttle if kind == "throttling" else faults.fail
        add(service, times=1, per_operation=True)
    life = sagemaker_life(stack) if provider == "sagemaker" else bedrock_life(stack)

    life.whole_life()

    record_faults(tally, faults)
    faulted = {key.split(" ")[0] for key in faults.injected}
    assert faulted == set(BY_PROVIDER[provider]), faults.injected  # every service saw its faults
    emails = [e.subject for e in stack.emails()]
    assert sum("deployed" in s and "undeployed" not in s for s in emails) == 1, emails
    census(life).report(tally)
