"""API and auth: the Cognito authorizer on every route but health, throttling, logs, CORS, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.capabilities.api import THROTTLED
from infra.config import PlatformConfig
from infra.nag import acknowledgements
from tests.infra.conftest import (
    BURST_LIMIT,
    CALLER_LIMIT,
    HEALTH_LIMIT,
    HOME_REGION,
    IP_LIMIT,
    ORIGINS,
    RATE_LIMIT,
    RATE_WINDOW,
    Synthesized,
    only,
    render,
    resources,
)

pytestmark = pytest.mark.xdist_group("infra")


def path_of(template: dict[str, Any], resource_id: Any) -> str:
    if isinstance(resource_id, dict) and "Fn::GetAtt" in resource_id:
        return ""
    resource = template["Resources"][resource_id["Ref"]]["Properties"]
    return f"{path_of(template, resource['ParentId'])}/{resource['PathPart']}"


def methods(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for method in resources(template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        path = path_of(template, props["ResourceId"]) or "/"
        found[f"{props['HttpMethod']} {path}"] = props
    return found


def test_every_method_but_health_and_preflight_needs_a_cognito_token(synthesized: Synthesized) -> None:
    template = synthesized.platform
    authorizer_id, authorizer = only(template, "AWS::ApiGateway::Authorizer")
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    found = methods(template)
    assert found["GET /v1/health"]["AuthorizationType"] == "NONE"
    assert found["ANY /v1/{proxy+}"]["AuthorizationType"] == "COGNITO_USER_POOLS"
    for key, props in found.items():
        if key == "GET /v1/health" or key.startswith("OPTIONS "):
            continue
        assert props["AuthorizationType"] == "COGNITO_USER_POOLS", key
        assert props["AuthorizerId"] == {"Ref": authorizer_id}, key


def test_methods_are_validated_and_proxied_to_the_api_function(synthesized: Synthesized) -> None:
    validator_id, validator = only(synthesized.platform, "AWS::ApiGateway::RequestValidator")
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True
    for key, props in methods(synthesized.platform).items():
        if key.startswith("OPTIONS "):
            continue
        assert props["RequestValidatorId"] == {"Ref": validator_id}
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert "FunctionsApi" in render(props["Integration"]["Uri"])


def test_stage_throttles_logs_access_as_json_and_traces(synthesized: Synthesized) -> None:
    stage = only(synthesized.platform, "AWS::ApiGateway::Stage")[1]["Properties"]
    (settings,) = stage["MethodSettings"]
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")
    assert settings["ThrottlingRateLimit"] == RATE_LIMIT
    assert settings["ThrottlingBurstLimit"] == BURST_LIMIT
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False
    assert stage["TracingEnabled"] is True
    access = stage["AccessLogSetting"]
    assert "ApiAccessLogs" in render(access["DestinationArn"])
    assert json.loads(access["Format"])["requestId"] == "$context.requestId"


def test_cors_preflight_allows_only_the_configured_origins(synthesized: Synthesized) -> None:
    found = methods(synthesized.platform)
    preflight = found["OPTIONS /v1/{proxy+}"]
    assert preflight["AuthorizationType"] == "NONE"
    (response,) = preflight["Integration"]["IntegrationResponses"]
    headers = response["ResponseParameters"]
    text = json.dumps(response)
    for origin in ORIGINS:
        assert origin in text
    assert "'*'" not in headers.get("method.response.header.Access-Control-Allow-Origin", "")
    assert "Authorization" in headers["method.response.header.Access-Control-Allow-Headers"]
    assert "Idempotency-Key" in headers["method.response.header.Access-Control-Allow-Headers"]


def test_api_gateways_own_errors_use_the_contracts_error_body(synthesized: Synthesized) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(synthesized.platform, "AWS::ApiGateway::GatewayResponse").values()
    }
    expected = {
        "UNAUTHORIZED": ("401", "unauthorized"),
        "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found"),
        "THROTTLED": ("429", "throttled"),
        "REQUEST_TOO_LARGE": ("413", "payload_too_large"),
        "BAD_REQUEST_BODY": ("400", "validation_error"),
    }
    for response_type, (status, code) in expected.items():
        props = responses[response_type]
        assert props["StatusCode"] == status
        body = json.loads(props["ResponseTemplates"]["application/json"])
        assert body["error"]["code"] == code
        assert body["error"]["message"]


def test_users_cannot_write_their_workspace_or_plan(synthesized: Synthesized) -> None:
    pool = only(synthesized.platform, "AWS::Cognito::UserPool")[1]["Properties"]
    schema = {attribute["Name"]: attribute for attribute in pool["Schema"]}
    assert schema["workspace"]["AttributeDataType"] == "String"
    assert schema["plan"]["AttributeDataType"] == "String"
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["MfaConfiguration"] == "ON"
    client = only(synthesized.platform, "AWS::Cognito::UserPoolClient")[1]["Properties"]
    assert {"custom:workspace", "custom:plan"} <= set(client["ReadAttributes"])
    assert not {"custom:workspace", "custom:plan"} & set(client["WriteAttributes"])
    assert client["GenerateSecret"] is False


def test_csv_bodies_reach_the_function_as_the_bytes_sent(synthesized: Synthesized) -> None:
    api = only(synthesized.platform, "AWS::ApiGateway::RestApi")[1]["Properties"]
    assert set(api["BinaryMediaTypes"]) == {"text/csv", "application/csv"}
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


# --- rate limits: the WAF web ACL in front of the stage ----------------------------------------

HEALTH_SCOPE = {
    "AndStatement": {
        "Statements": [
            {
                "ByteMatchStatement": {
                    "FieldToMatch": {"UriPath": {}},
                    "PositionalConstraint": "ENDS_WITH",
                    "SearchString": "/v1/health",
                    "TextTransformations": [{"Priority": 0, "Type": "NONE"}],
                }
            },
            {
                "ByteMatchStatement": {
                    "FieldToMatch": {"Method": {}},
                    "PositionalConstraint": "EXACTLY",
                    "SearchString": "GET",
                    "TextTransformations": [{"Priority": 0, "Type": "NONE"}],
                }
            },
        ]
    }
}


def web_acl_rules(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    _, acl = only(synthesized.platform, "AWS::WAFv2::WebACL")
    return {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}


def test_a_regional_web_acl_guards_the_api_stage(synthesized: Synthesized) -> None:
    template = synthesized.platform
    acl_id, acl = only(template, "AWS::WAFv2::WebACL")
    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert acl["Properties"]["DefaultAction"] == {"Allow": {}}
    _, association = only(template, "AWS::WAFv2::WebACLAssociation")
    props = association["Properties"]
    assert props["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    api_id, _ = only(template, "AWS::ApiGateway::RestApi")
    stage_id, _ = only(template, "AWS::ApiGateway::Stage")
    stage_arn = f"::/restapis/${{{api_id}}}/stages/${{{stage_id}}}"
    # The platform stack is in its home region: CDK writes that region (and its partition) out
    assert render(props["ResourceArn"]) == f"arn:aws:apigateway:{HOME_REGION}{stage_arn}"


def test_health_checks_are_limited_per_client_ip_apart_from_the_api(synthesized: Synthesized) -> None:
    statement = web_acl_rules(synthesized)["HealthPerIp"]["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP"
    assert statement["Limit"] == HEALTH_LIMIT
    assert statement["EvaluationWindowSec"] == RATE_WINDOW
    assert statement["ScopeDownStatement"] == HEALTH_SCOPE


def test_every_other_request_is_limited_per_caller_token(synthesized: Synthesized) -> None:
    statement = web_acl_rules(synthesized)["PerCaller"]["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "CUSTOM_KEYS"
    assert statement["CustomKeys"] == [
        {"Header": {"Name": "authorization", "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}}
    ]
    assert statement["Limit"] == CALLER_LIMIT
    assert statement["EvaluationWindowSec"] == RATE_WINDOW
    assert statement["ScopeDownStatement"] == {"NotStatement": {"Statement": HEALTH_SCOPE}}


def test_every_client_ip_has_a_backstop_over_all_requests(synthesized: Synthesized) -> None:
    statement = web_acl_rules(synthesized)["PerIp"]["Statement"]["RateBasedStatement"]
    assert statement == {"AggregateKeyType": "IP", "Limit": IP_LIMIT, "EvaluationWindowSec": RATE_WINDOW}
    assert IP_LIMIT >= CALLER_LIMIT


def test_rate_limited_requests_get_429_with_the_contracts_throttled_body(synthesized: Synthesized) -> None:
    _, acl = only(synthesized.platform, "AWS::WAFv2::WebACL")
    rules = acl["Properties"]["Rules"]
    assert [rule["Priority"] for rule in rules] == [0, 1, 2]
    for rule in rules:
        assert rule["Action"] == {
            "Block": {"CustomResponse": {"ResponseCode": 429, "CustomResponseBodyKey": "throttled"}}
        }, rule["Name"]
        assert rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
    body = acl["Properties"]["CustomResponseBodies"]["throttled"]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"]) == {
        "error": {"code": "throttled", "message": "Too many requests: wait a moment and retry."}
    }
    # The same body API Gateway answers when the stage's own throttling refuses a request
    gateway = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(synthesized.platform, "AWS::ApiGateway::GatewayResponse").values()
    }["THROTTLED"]
    assert json.loads(gateway["ResponseTemplates"]["application/json"]) == json.loads(body["Content"])
    assert THROTTLED[0] == "429"


def test_samples_of_the_web_acl_show_a_hash_of_the_token_never_the_token(synthesized: Synthesized) -> None:
    _, acl = only(synthesized.platform, "AWS::WAFv2::WebACL")
    assert acl["Properties"]["DataProtectionConfig"] == {
        "DataProtections": [
            {"Action": "HASH", "Field": {"FieldType": "SINGLE_HEADER", "FieldKeys": ["authorization"]}}
        ]
    }


def test_the_missing_web_acl_is_fixed_not_acknowledged(synthesized: Synthesized) -> None:
    rules = {rule for _, rule, _ in acknowledgements(synthesized.outdir)}
    assert not any("APIG3" in rule for rule in rules)


def test_default_limits_guard_the_account_and_give_each_caller_a_budget() -> None:
    config = PlatformConfig()
    assert (config.api_rate_limit, config.api_burst_limit) == (500, 1000)
    assert (config.caller_rate_limit, config.health_rate_limit, config.ip_rate_limit) == (300, 60, 1500)
    assert config.rate_window_seconds == 60
    with pytest.raises(ValueError, match="rateWindowSeconds"):
        PlatformConfig.model_validate({"rateWindowSeconds": 90})
    with pytest.raises(ValueError, match="greater than or equal to 10"):
        PlatformConfig.model_validate({"callerRateLimit": 5})  # WAF's minimum is 10
