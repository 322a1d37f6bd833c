"""The EventBridge envelope of queue messages: AWS's spellings parse, anything else is a bad message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tunelab.entrypoints.messages import BadMessageError, parse_envelope

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"


@pytest.mark.parametrize("sample", sorted(p.name for p in EVENTS.glob("*.json")))
def test_every_documented_sample_parses(sample: str) -> None:
    body = (EVENTS / sample).read_text()

    envelope = parse_envelope(body)

    assert envelope.source.startswith("aws.")
    assert envelope.detail
    assert envelope.time.tzinfo is not None


def test_epoch_millisecond_times_parse_as_utc() -> None:
    envelope = parse_envelope((EVENTS / "sagemaker_endpoint_state_change.json").read_text())

    assert envelope.time == datetime(2020, 3, 10, 9, 18, 9, 50000, tzinfo=UTC)


def test_an_event_without_account_parses() -> None:
    body = json.loads((EVENTS / "s3_object_created.json").read_text())
    del body["account"]

    assert parse_envelope(json.dumps(body)).account is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"source": "aws.bedrock"}), "not an EventBridge event"),
        (
            json.dumps(
                {
                    "id": "1",
                    "source": "aws.s3",
                    "detail-type": "x",
                    "time": "yesterday",
                    "region": "r",
                    "detail": {},
                }
            ),
            "time",
        ),
    ],
)
def test_what_is_not_an_event_is_a_bad_message(body: str, says: str) -> None:
    with pytest.raises(BadMessageError, match=says):
        parse_envelope(body)
