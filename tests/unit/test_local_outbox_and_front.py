"""The local runtime's outbox (sent emails as .eml files) and HTTP front (requests as proxy events)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunelab.local.http_front import HttpFront, authorizer_claims, proxy_event
from tunelab.local.outbox import Outbox, file_name, html_to_text
from tunelab.local.tokens import InvalidToken

T0 = datetime(2026, 11, 28, 12, 0, 5, 123456, tzinfo=UTC)


# --- outbox -------------------------------------------------------------------------------------


def _sent(message_id: str, to: str, subject: str, body: str) -> SimpleNamespace:
    """A message as moto's SES backend keeps it."""
    return SimpleNamespace(
        id=message_id,
        source="tunelab@tunelab.local",
        destinations={"ToAddresses": [to], "CcAddresses": [], "BccAddresses": []},
        subject=subject,
        body=body,
    )


def test_file_names_carry_time_recipient_and_subject_safely() -> None:
    name = file_name(T0, "ada@example.com", "Training of bot/v1 failed: out of memory?")

    assert name == "20261128T120005123456Z-ada@example.com-Training-of-bot-v1-failed-out-of-memory.eml"


def test_html_becomes_readable_text() -> None:
    html = "<html><head><style>p{}</style></head><body><h1>Ready</h1><p>Deploy &amp; try.</p></body></html>"

    assert html_to_text(html) == "Ready\n\nDeploy & try.\n"


def test_each_sent_message_is_written_once_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent = [_sent("m-1", "ada@example.com", "bot is deployed", "<p>It is <b>in service</b>.</p>")]
    outbox = Outbox(folder=tmp_path, sent_messages=lambda: sent, clock=lambda: T0)

    with caplog.at_level(logging.INFO, logger="tunelab.local.outbox"):
        written = outbox.flush()
        again = outbox.flush()

    assert [p.name for p in written] == ["20261128T120005123456Z-ada@example.com-bot-is-deployed.eml"]
    assert again == []
    assert caplog.messages == ["email to ada@example.com: bot is deployed"]
    message = message_from_bytes(written[0].read_bytes(), _class=EmailMessage, policy=default_policy)
    assert message["Subject"] == "bot is deployed"
    assert message["X-SES-Message-ID"] == "m-1"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == "It is in service."
    assert "<b>in service</b>" in html.get_content()


def test_a_text_only_message_has_no_html_part(tmp_path: Path) -> None:
    outbox = Outbox(
        folder=tmp_path, sent_messages=lambda: [_sent("m-2", "bo@example.com", "hi", "plain words")]
    )

    (path,) = outbox.flush()

    message = message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=default_policy)
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "plain words"


def test_two_messages_with_the_same_name_both_stay(tmp_path: Path) -> None:
    sent = [_sent("m-3", "a@b.c", "same", "one"), _sent("m-4", "a@b.c", "same", "two")]
    outbox = Outbox(folder=tmp_path, sent_messages=lambda: sent, clock=lambda: T0)

    assert len(outbox.flush()) == 2
    assert len(list(tmp_path.glob("*.eml"))) == 2


def test_a_raw_message_is_kept_as_sent(tmp_path: Path) -> None:
    raw = "From: a@b.c\r\nTo: d@e.f\r\nSubject: raw one\r\n\r\nbody\r\n"
    sent = [SimpleNamespace(id="m-5", source="a@b.c", destinations=["d@e.f"], raw_data=raw)]

    (path,) = Outbox(folder=tmp_path, sent_messages=lambda: sent).flush()

    assert "d@e.f-raw-one" in path.name
    assert b"Subject: raw one" in path.read_bytes()


# --- HTTP front ---------------------------------------------------------------------------------


def test_a_request_becomes_a_rest_proxy_event() -> None:
    event = proxy_event(
        method="post",
        target="/v1/datasets?name=tickets&tag=a&tag=b",
        headers=[("Content-Type", "text/csv"), ("X-Multi", "1"), ("X-Multi", "2")],
        body=b"prompt,completion\nhi,there\n",
        claims={"sub": "s", "custom:workspace": "ws"},
    )

    assert event["httpMethod"] == "POST"
    assert event["path"] == "/v1/datasets"
    assert event["resource"] == "/{proxy+}"
    assert event["pathParameters"] == {"proxy": "v1/datasets"}
    assert event["queryStringParameters"] == {"name": "tickets", "tag": "b"}
    assert event["multiValueQueryStringParameters"]["tag"] == ["a", "b"]
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["body"] == "prompt,completion\nhi,there\n"
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["authorizer"] == {"claims": {"sub": "s", "custom:workspace": "ws"}}


def test_a_binary_body_is_base64_encoded_and_no_claims_means_no_authorizer() -> None:
    event = proxy_event(method="PUT", target="/v1/x", headers=[], body=b"\xff\xfe\x00", claims=None)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe\x00"
    assert event["requestContext"]["authorizer"] is None
    assert event["queryStringParameters"] is None


def test_claims_reach_the_handler_as_strings() -> None:
    assert authorizer_claims({"exp": 17, "email_verified": True, "sub": "s"}) == {
        "exp": "17",
        "email_verified": "true",
        "sub": "s",
    }


class _Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "headers": {}, "body": "{}"}


def _verify(token: str) -> dict[str, Any]:
    if token != "good":
        raise InvalidToken("The bearer token has expired.")
    return {"sub": "s", "email": "a@b.c", "custom:workspace": "ws", "exp": 1}


@pytest.fixture
def front() -> Iterator[tuple[HttpFront, _Recorder]]:
    recorder = _Recorder()
    http = HttpFront(
        handler=lambda: recorder,
        verify=_verify,
        context=lambda: None,
        public_paths=frozenset({"/v1/health"}),
        port=0,
    )
    yield http, recorder
    http.stop()


def test_a_good_token_gives_the_handler_its_claims(front: tuple[HttpFront, _Recorder]) -> None:
    http, recorder = front

    answer = http.answer("GET", "/v1/workspace", [("Authorization", "Bearer good")], b"", "127.0.0.1")

    assert answer["statusCode"] == 200
    assert recorder.events[0]["requestContext"]["authorizer"]["claims"]["custom:workspace"] == "ws"


def test_a_bad_token_is_answered_401_without_calling_the_handler(front: tuple[HttpFront, _Recorder]) -> None:
    http, recorder = front

    answer = http.answer("GET", "/v1/workspace", [("Authorization", "Bearer bad")], b"", "127.0.0.1")

    assert answer["statusCode"] == 401
    assert json.loads(answer["body"]) == {
        "error": {"code": "unauthorized", "message": "The bearer token has expired."}
    }
    assert recorder.events == []


def test_a_public_path_ignores_the_token(front: tuple[HttpFront, _Recorder]) -> None:
    http, recorder = front

    answer = http.answer("GET", "/v1/health", [("Authorization", "Bearer bad")], b"", "127.0.0.1")

    assert answer["statusCode"] == 200
    assert recorder.events[0]["requestContext"]["authorizer"] is None


def test_a_failing_handler_is_a_502_in_the_contracts_shape(front: tuple[HttpFront, _Recorder]) -> None:
    http, _ = front

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    http._handler = broken  # the handler as loaded

    answer = http.answer("GET", "/v1/health", [], b"", "127.0.0.1")

    assert answer["statusCode"] == 502
    assert json.loads(answer["body"])["error"]["code"] == "internal_error"
