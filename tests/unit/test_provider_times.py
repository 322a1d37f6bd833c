"""The one reader of the times SageMaker-shaped job descriptions and events carry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tunelab.adapters.providers.common import event_time

ENDED = datetime(2026, 11, 28, 15, 14, 18, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        ENDED,  # DescribeTrainingJob through boto3
        ENDED.replace(tzinfo=None),  # naive: UTC
        ENDED.timestamp(),  # epoch seconds
        int(ENDED.timestamp() * 1000),  # epoch milliseconds, as the state-change events carry
        str(int(ENDED.timestamp() * 1000)),  # the same, as text
        "2026-11-28T15:14:18Z",
        "2026-11-28T15:14:18",  # naive ISO text: UTC
        "2026-11-28T16:14:18+01:00",
    ],
)
def test_every_shape_of_one_moment_reads_as_that_moment(value: object) -> None:
    read = event_time(value)

    assert read == ENDED
    assert read is not None
    assert read.tzinfo is not None  # aware: comparable with every other time tunelab keeps


@pytest.mark.parametrize("value", [None, 0, -5, True, "", "soon", {"at": 1}])
def test_what_is_no_time_reads_as_none(value: object) -> None:
    assert event_time(value) is None
