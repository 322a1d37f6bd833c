"""API Gateway REST API proxy events for the API handler, shaped like the AWS documentation's sample
("Example REST API proxy event", Lambda developer guide), with a Cognito user pool authorizer's
claims in `requestContext.authorizer.claims`. Reuse `api_event` and `call` in every API test.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.utilities.typing import LambdaContext as PowertoolsLambdaContext

DEFAULT_CLAIMS: dict[str, str] = {
    "sub": "7d8ca528-4931-4254-9273-ea5ee853f271",
    "email": "ada@example.com",
    "email_verified": "true",
    "custom:workspace": "ws-acme",
    "cognito:username": "ada",
    "token_use": "id",
    "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
    "aud": "example-client-id",
}

_UNSET: Any = object()


def claims_for(workspace: str = "ws-acme", email: str = "ada@example.com", **more: str) -> dict[str, str]:
    """Claims of a user of `workspace`; `more` adds claims (`**{"custom:team": "ml"}`)."""
    return {**DEFAULT_CLAIMS, "custom:workspace": workspace, "email": email, **more}


def api_event(
    method: str,
    path: str,
    body: Any = None,
    claims: dict[str, str] | None = _UNSET,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    *,
    raw_body: str | bytes | None = None,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """A REST API proxy event for `method path`.

    `body` is sent as JSON; `raw_body` as is (bytes are base64-encoded, as API Gateway does for
    binary media types). `claims=None` sends no authorizer claims (an anonymous caller); the
    default is `DEFAULT_CLAIMS`. `path` may carry a query string (`/v1/x?limit=2`).
    """
    split = urlsplit(path)
    path = split.path
    if split.query:
        query = {**dict(p.split("=", 1) for p in split.query.split("&")), **(query or {})}
    encoded = False
    text: str | None
    if raw_body is not None:
        if isinstance(raw_body, bytes):
            text, encoded = base64.b64encode(raw_body).decode(), True
        else:
            text = raw_body
    elif body is not None:
        text = json.dumps(body)
    else:
        text = None
    all_headers = {
        "Accept": "application/json",
        "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "tunelab-tests",
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if text is not None and content_type:
        all_headers["Content-Type"] = content_type
    if claims is not None:
        all_headers["Authorization"] = "Bearer eyJraWQiOiJ0ZXN0In0.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
    all_headers.update(headers or {})
    request_id = str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.upper(),
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "authorizer": {"claims": dict(DEFAULT_CLAIMS if claims is _UNSET else claims)}
            if claims is not None
            else None,
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "extendedRequestId": "request-id",
            "httpMethod": method.upper(),
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "198.51.100.7",
                "user": None,
                "userAgent": "tunelab-tests",
                "userArn": None,
            },
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": "28/Nov/2026:12:00:00 +0000",
            "requestTimeEpoch": 1795867200000,
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "stage": "prod",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


class LambdaContext(PowertoolsLambdaContext):
    """A Lambda context as the runtime passes one (logger and idempotency read it)."""

    def __init__(
        self, remaining_millis: int = 29_000, request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    ):
        self._function_name = "tunelab-api"
        self._function_version = "$LATEST"
        self._invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tunelab-api"
        self._memory_limit_in_mb = 512
        self._aws_request_id = request_id
        self._log_group_name = "/aws/lambda/tunelab-api"
        self._log_stream_name = "2026/11/28/[$LATEST]0123456789abcdef"
        self.remaining_millis = remaining_millis

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return self.remaining_millis


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any
    text: str
    # API Gateway's id of the request answered (`requestContext.requestId`): the correlation id of
    # what the request caused (status events, workflows).
    request_id: str | None = None

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None


def call(event: dict[str, Any]) -> ApiResponse:
    """Send `event` through the Lambda entry point (`functions/api.py`) and decode the answer."""
    from functions.api import handler  # noqa: PLC0415  # imported late: the environment is set first

    raw = handler(event, LambdaContext())
    headers = dict(raw.get("headers") or {})
    for name, values in (raw.get("multiValueHeaders") or {}).items():
        headers.setdefault(name, values[-1])
    text = raw.get("body") or ""
    if raw.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    request_id = (event.get("requestContext") or {}).get("requestId")
    return ApiResponse(status=raw["statusCode"], headers=headers, body=body, text=text, request_id=request_id)


def assert_error(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    """The error of `response`, checked: `status`, JSON, the contract's body with `code` and a message."""
    assert response.status == status, response.text
    assert response.headers.get("Content-Type") == "application/json"
    assert set(response.body) == {"error"}
    error: dict[str, Any] = response.body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return error
