"""The API fuzzed in-process under moto: schemathesis generates requests from the OpenAPI document the API
serves (valid ones and invalid ones: wrong types, missing fields, bad parameters, other content types)
and sends them to the Lambda handler through a small WSGI adapter that builds API Gateway's proxy event
as the REST API does (a body that is not UTF-8 base64-encoded; a request with a bearer token carries
the authorizer's claims of a workspace). No answer may be a 5xx, and every 4xx has the contract's error
body. The explicit probes (tests/integration/fuzz_support.py) add what a generator rarely tries: bodies
that are not UTF-8, JSON nested 5,000 deep, and every method a known path does not take.

Bounded: MAX_EXAMPLES per operation, no shrinking, derandomized (the same requests every run).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest
import schemathesis
from moto import mock_aws
from schemathesis import GenerationMode
from werkzeug.test import Client

from functions.api import handler
from tests.integration.api_support import make_buckets
from tests.integration.apigw import LambdaContext, api_event, claims_for
from tests.integration.conftest import (
    ENVIRONMENT,
    IDEMPOTENCY_TABLE_NAME,
    REGION,
    TABLE_NAME,
)
from tests.integration.fuzz_support import check_answer, check_probe, fuzz_settings, probes
from tests.integration.handler_support import BusSpy
from tunelab.adapters.dynamodb import IDEMPOTENCY_TABLE_DEFINITION, TABLE_DEFINITION
from tunelab.application.workspaces import set_plan
from tunelab.composition.settings import get_settings
from tunelab.composition.wiring import Services, set_services
from tunelab.entrypoints.api.app import OPENAPI_PATH, openapi_document
from tunelab.entrypoints.api.deps import reset as reset_services

pytestmark = pytest.mark.moto

WORKSPACE = "ws-fuzz"
MAX_EXAMPLES = 30
BEARER = {"Authorization": "Bearer fuzz"}
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def lambda_as_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The API's Lambda handler as a WSGI app: the request as API Gateway's REST proxy event."""
    method = environ["REQUEST_METHOD"]
    # WSGI hands the path as latin-1 text of its bytes; API Gateway hands it decoded as UTF-8.
    path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    content_type = environ.get("CONTENT_TYPE") or None
    if content_type:
        headers["Content-Type"] = content_type
    try:
        body: str | bytes | None = raw.decode("utf-8") if raw else None
    except UnicodeDecodeError:
        body = raw  # sent base64-encoded, as API Gateway sends a body it cannot pass as text
    claims = claims_for(WORKSPACE) if "Authorization" in headers else None
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    event = api_event(
        method, "/", claims=claims, headers=headers, query=query or None, raw_body=body, content_type=None
    )
    if claims is None:
        event["headers"].pop("Authorization", None)
    event["path"] = path
    event["requestContext"]["path"] = f"/prod{path}"
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    answer = handler(event, LambdaContext())
    status = int(answer["statusCode"])
    out = [(k, str(v)) for k, v in (answer.get("headers") or {}).items()]
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        out += [(name, str(v)) for v in values]
    text = answer.get("body") or ""
    payload = base64.b64decode(text) if answer.get("isBase64Encoded") else str(text).encode("utf-8")
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    start_response(f"{status} {phrase}", out)
    return [payload]


@pytest.fixture(scope="module")
def account() -> Iterator[None]:
    """One mock account for the module (what the `api` fixture makes, once): the fuzzer's requests
    add up in it, as they would in a real deployment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        reset_services()
        with mock_aws():
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            dynamodb.create_table(TableName=TABLE_NAME, **TABLE_DEFINITION)
            dynamodb.create_table(TableName=IDEMPOTENCY_TABLE_NAME, **IDEMPOTENCY_TABLE_DEFINITION)
            make_buckets()
            BusSpy(get_settings().event_bus_name)
            boto3.client("ses", region_name=REGION).verify_email_identity(
                EmailAddress=get_settings().sender_email
            )
            boto3.client("scheduler", region_name=REGION).create_schedule_group(
                Name=get_settings().schedule_group
            )
            services = Services()
            set_services(services)
            # A plan with BYOK (an operator's setting), so the SageMaker routes are reached too.
            set_plan(services.workspaces, WORKSPACE, "subscription", default_plan="pay_as_you_go")
            yield
        reset_services()


def _schema() -> schemathesis.BaseSchema:
    """The OpenAPI document the API serves (`test_the_fuzzer_reads_the_document_the_api_serves`), for
    valid and invalid requests sent to the handler."""
    loaded = schemathesis.openapi.from_dict(openapi_document())
    loaded.app = lambda_as_wsgi
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
    )
    return loaded


schema = _schema()


@schema.parametrize()
@fuzz_settings(MAX_EXAMPLES)
def test_no_generated_request_gets_a_5xx_and_every_4xx_has_the_error_body(
    account: None, case: schemathesis.Case[Any]
) -> None:
    response = case.call(headers=BEARER)

    check_answer(
        response.status_code, response.headers, response.content, f"{case.method} {case.formatted_path}"
    )


def test_the_fuzzer_reads_the_document_the_api_serves(account: None) -> None:
    served = Client(lambda_as_wsgi).get(OPENAPI_PATH)

    assert served.status_code == 200
    assert served.json == openapi_document()


def test_explicit_probes_from_the_document(account: None) -> None:
    found = probes(openapi_document())
    failures: list[str] = []

    for probe in found:
        headers = {**BEARER, **({"Content-Type": probe.content_type} if probe.content_type else {})}
        answer = Client(lambda_as_wsgi).open(
            probe.path, method=probe.method, data=probe.body, headers=headers
        )
        try:
            check_probe(probe, answer.status_code, dict(answer.headers), answer.get_data())
        except AssertionError as failed:
            failures.append(str(failed))

    assert len(found) > 50  # every path, every JSON body
    assert failures == []


@pytest.mark.parametrize("method", ["HEAD", "TRACE", "CONNECT", "PROPFIND"])
def test_other_methods_on_a_known_path_are_405(account: None, method: str) -> None:
    answer = Client(lambda_as_wsgi).open("/v1/datasets", method=method, headers=BEARER)

    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST"
