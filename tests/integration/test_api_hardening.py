"""Requests no route can read answer 4xx in the contract's shape, never 500: bodies that are not UTF-8
(plain or base64-encoded, as API Gateway sends binary bodies), JSON nested too deep for a recursive
parser, numbers JSON does not have, and methods a known path does not take (405 with `Allow`)."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.apigw import api_event, assert_error, call
from tests.integration.conftest import Aws
from tunelab.entrypoints.api.app import MAX_JSON_DEPTH, json_depth

pytestmark = pytest.mark.moto

# Every route that takes a JSON body (the review found each of them answering 500 to a non-UTF-8 body).
JSON_ROUTES = [
    ("POST", "/v1/cost-estimates"),
    ("POST", "/v1/fine-tuned-models"),
    ("POST", "/v1/fine-tuned-models/support-bot/deploy"),
    ("POST", "/v1/fine-tuned-models/support-bot/invoke"),
    ("POST", "/v1/resource-estimates"),
    ("PUT", "/v1/providers/sagemaker"),
    ("POST", "/v1/datasets"),
]
NOT_UTF8 = b'{"name": "caf\xe9 \xff\xfe"}'


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_a_base64_body_that_is_not_utf8_is_400(aws: Aws, method: str, path: str) -> None:
    response = call(api_event(method, path, raw_body=NOT_UTF8))  # bytes: sent base64-encoded

    error = assert_error(response, 400, "validation_error")
    assert "UTF-8" in error["message"]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_a_text_body_with_a_lone_surrogate_is_400(aws: Aws, method: str, path: str) -> None:
    # What a front that decoded the bytes with `surrogateescape` would hand over.
    response = call(api_event(method, path, raw_body='{"name": "\udcff"}'))

    error = assert_error(response, 400, "validation_error")
    assert "UTF-8" in error["message"]


def test_a_base64_body_that_is_not_base64_is_400(aws: Aws) -> None:
    event = api_event("POST", "/v1/resource-estimates", raw_body=b'{"parameter_count": 7e9}')
    event["body"] = "%%% not base64 %%%"

    error = assert_error(call(event), 400, "validation_error")
    assert "base64" in error["message"]


def test_a_base64_json_body_that_is_utf8_still_answers(aws: Aws) -> None:
    body = json.dumps({"parameter_count": 7e9, "method": "lora"}).encode()

    response = call(api_event("POST", "/v1/resource-estimates", raw_body=body))

    assert response.status == 200, response.text
    assert response.body["vram_gb"]["total"] > 0


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_json_nested_5000_deep_is_400_naming_the_limit(aws: Aws, method: str, path: str) -> None:
    response = call(api_event(method, path, raw_body=nested(5000)))

    error = assert_error(response, 400, "validation_error")
    assert str(MAX_JSON_DEPTH) in error["message"]
    assert "deep" in error["message"]


def test_json_nested_5000_deep_base64_encoded_is_400(aws: Aws) -> None:
    response = call(api_event("POST", "/v1/cost-estimates", raw_body=nested(5000).encode()))

    error = assert_error(response, 400, "validation_error")
    assert str(MAX_JSON_DEPTH) in error["message"]


def test_nesting_up_to_the_limit_is_read_as_usual(aws: Aws) -> None:
    # 1 level for the object, MAX_JSON_DEPTH - 1 for the array: at the limit, so the field is checked.
    body = '{"parameter_count": ' + nested(MAX_JSON_DEPTH - 1) + "}"

    error = assert_error(
        call(api_event("POST", "/v1/resource-estimates", raw_body=body)), 400, "validation_error"
    )

    assert str(MAX_JSON_DEPTH) not in error["message"]
    assert [d["field"] for d in error["details"]] == ["parameter_count"]


def test_brackets_inside_strings_do_not_count_as_nesting(aws: Aws) -> None:
    body = json.dumps({"name": "[{" * 500 + '\\"' + "}]" * 500})

    error = assert_error(call(api_event("POST", "/v1/datasets", raw_body=body)), 400, "validation_error")

    assert "deep" not in error["message"]
    assert [d["field"] for d in error["details"]] == ["name"]


def test_an_unterminated_string_of_escaped_quotes_is_answered_without_delay(aws: Aws) -> None:
    # A review's find: skipping strings by a backtracking pattern took time growing with the square of
    # the body (47 s for 80 KB, hours for 5 MiB), before any token was checked. One pass reads 1 MiB
    # in well under a second; the bound is loose so a busy machine cannot fail it, the old way could
    # never meet it.
    body = "[" * (MAX_JSON_DEPTH + 1) + '"' + '\\"' * 500_000
    started = time.process_time()

    response = call(api_event("POST", "/v1/cost-estimates", raw_body=body))

    assert time.process_time() - started < 20
    assert_error(response, 400, "validation_error")
    # Brackets after the unterminated string are inside it: they do not nest.
    assert json_depth('"' + '\\"' * 100_000 + "[" * 100) == 0
    assert json_depth('["\\\\", ["\\"[", {}]]') == 3


@pytest.mark.parametrize(
    "number",
    ["NaN", "Infinity", "-Infinity", "1e400", "1" * 5000],
    ids=["nan", "infinity", "minus-infinity", "float-overflow", "5000-digit-integer"],
)
def test_numbers_json_does_not_have_are_400(aws: Aws, number: str) -> None:
    body = '{"parameter_count": ' + number + ', "method": "lora"}'

    response = call(api_event("POST", "/v1/resource-estimates", raw_body=body))

    error = assert_error(response, 400, "validation_error")
    assert "JSON" in error["message"] or "parameter_count" in error["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
    ],
)
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_a_body_of_a_type_no_route_reads_is_400_naming_content_type(
    aws: Aws, method: str, path: str, content_type: str
) -> None:
    # A form without its boundary made Powertools' form parser raise: the fuzzer found it answering 500.
    response = call(api_event(method, path, raw_body="name=x", content_type=content_type))

    error = assert_error(response, 400, "validation_error")
    assert error["details"][0]["field"] == "Content-Type"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/datasets", "GET, POST"),
        ("DELETE", "/v1/base-models", "GET"),
        ("PUT", "/v1/datasets/ds_0123456789abcdef", "DELETE, GET"),
        ("POST", "/v1/fine-tuned-models/support-bot", "DELETE, GET"),
        ("GET", "/v1/fine-tuned-models/support-bot/deploy", "POST"),
        ("PATCH", "/v1/providers/sagemaker", "DELETE, PUT"),
        ("HEAD", "/v1/workspace", "GET"),
    ],
)
def test_an_unsupported_method_on_a_known_path_is_405_with_allow(
    aws: Aws, method: str, path: str, allowed: str
) -> None:
    response = call(api_event(method, path))

    error = assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == allowed
    assert method in error["message"]


def test_a_public_path_answers_405_without_a_token(aws: Aws) -> None:
    response = call(api_event("DELETE", "/v1/health", claims=None))

    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


def test_an_anonymous_caller_learns_nothing_about_methods(aws: Aws) -> None:
    assert_error(call(api_event("PATCH", "/v1/datasets", claims=None)), 401, "unauthorized")


def test_an_unknown_path_is_still_404(aws: Aws) -> None:
    response = call(api_event("PATCH", "/v1/no-such-thing"))

    assert_error(response, 404, "not_found")
    assert "Allow" not in response.headers


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": "}}}"}]}', 3),
        ('{"a": "\\"[[[\\""}', 1),
        (nested(5000), 5000),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth
