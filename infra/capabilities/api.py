"""API: the REST API in front of the `api` function.

`GET /v1/health` is open; every other route under `/v1` needs a Cognito ID token (the authorizer
passes its claims, `custom:workspace` among them, to the function). Errors API Gateway answers by
itself (no token, throttled, too large, unknown path) carry the contract's error body.

Rate limits, in front of the stage, by a WAF web ACL (`RateLimits`): each caller's token (the
`Authorization` header) has a budget of its own, so one tenant cannot spend another's; anonymous
health checks are counted per client IP apart from the rest; and every client IP has a backstop
budget (requests without a token, or with many). A request over a budget is answered 429 with the
contract's `throttled` body. The stage's own throttling only guards the account as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.capabilities.functions import RETENTION
from infra.nag import acknowledge

STAGE_NAME = "prod"
CSV_MEDIA_TYPES = ("text/csv", "application/csv")
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HEALTH_PATH = "/v1/health"
THROTTLED = ("429", "throttled", "Too many requests: wait a moment and retry.")

# (response type, status, code, message) — the contract's error body for API Gateway's own answers.
GATEWAY_ERRORS: tuple[tuple[apigw.ResponseType, str, str, str], ...] = (
    (
        apigw.ResponseType.UNAUTHORIZED,
        "401",
        "unauthorized",
        "Sign in again: the request has no valid token.",
    ),
    (apigw.ResponseType.ACCESS_DENIED, "403", "forbidden", "This token may not call this operation."),
    (
        apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "404",
        "not_found",
        "There is no such path in the API.",
    ),
    (apigw.ResponseType.THROTTLED, *THROTTLED),
    (apigw.ResponseType.REQUEST_TOO_LARGE, "413", "payload_too_large", "The request body is over the limit."),
    (apigw.ResponseType.BAD_REQUEST_BODY, "400", "validation_error", "The request body is not valid."),
    (
        apigw.ResponseType.BAD_REQUEST_PARAMETERS,
        "400",
        "validation_error",
        "A request parameter is missing or bad.",
    ),
    (apigw.ResponseType.INTEGRATION_TIMEOUT, "504", "timeout", "The request took too long: retry later."),
    (
        apigw.ResponseType.DEFAULT_5_XX,
        "500",
        "internal_error",
        "Something went wrong on our side: retry later.",
    ),
)


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        user_pool: cognito.IUserPool,
        allowed_origins: Sequence[str],
        rate_limit: float,
        burst_limit: int,
        rate_limits: RateLimits,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self, "AccessLogs", retention=RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        cors = (
            apigw.CorsOptions(
                allow_origins=list(allowed_origins),
                allow_methods=CORS_METHODS,
                allow_headers=CORS_HEADERS,
                max_age=Duration.hours(1),
            )
            if allowed_origins
            else None
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=name,
            description="tunelab HTTPS API v1",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # CSV uploads reach the function as the exact bytes sent (base64), BOM and all.
            binary_media_types=list(CSV_MEDIA_TYPES),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            default_cors_preflight_options=cors,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
            ),
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4",
            "API Gateway's account-level CloudWatch role uses AWS's policy for pushing execution logs; "
            "it is the documented set-up and has no narrower equivalent.",
            applies_to=(
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            ),
        )
        self._add_gateway_responses(allowed_origins)

        authorizer = apigw.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[user_pool])
        validator = self.rest_api.add_request_validator(
            "RequestValidator", validate_request_body=True, validate_request_parameters=True
        )
        integration = apigw.LambdaIntegration(handler, proxy=True)
        v1 = self.rest_api.root.add_resource("v1")
        health = v1.add_resource("health")
        self.health_method = health.add_method(
            "GET", integration, authorization_type=apigw.AuthorizationType.NONE, request_validator=validator
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(
                self.health_method,
                rule,
                "GET /v1/health is public by contract: monitors call it without a token.",
            )
        proxy = v1.add_resource("{proxy+}")
        self.proxy_method = proxy.add_method(
            "ANY",
            integration,
            authorization_type=apigw.AuthorizationType.COGNITO,
            authorizer=authorizer,
            request_validator=validator,
            request_parameters={"method.request.path.proxy": True},
        )
        self.web_acl = self._add_web_acl(name, rate_limits)

    def _add_web_acl(self, name: str, limits: RateLimits) -> wafv2.CfnWebACL:
        status, code, message = THROTTLED
        throttled = wafv2.CfnWebACL.RuleActionProperty(
            block=wafv2.CfnWebACL.BlockActionProperty(
                custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                    response_code=int(status), custom_response_body_key=code
                )
            )
        )
        # The path WAF sees carries the stage (`/prod/v1/health`) or a custom domain's base path.
        health = wafv2.CfnWebACL.StatementProperty(
            and_statement=wafv2.CfnWebACL.AndStatementProperty(
                statements=[
                    _byte_match(wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}), "ENDS_WITH", HEALTH_PATH),
                    _byte_match(wafv2.CfnWebACL.FieldToMatchProperty(method={}), "EXACTLY", "GET"),
                ]
            )
        )
        rules = [
            _rate_rule(
                "HealthPerIp",
                0,
                wafv2.CfnWebACL.RateBasedStatementProperty(
                    aggregate_key_type="IP",
                    limit=limits.health,
                    evaluation_window_sec=limits.window_seconds,
                    scope_down_statement=health,
                ),
                throttled,
                name,
            ),
            # A request without the header is not counted here (WAF needs every key present): the
            # per-IP backstop counts it.
            _rate_rule(
                "PerCaller",
                1,
                wafv2.CfnWebACL.RateBasedStatementProperty(
                    aggregate_key_type="CUSTOM_KEYS",
                    custom_keys=[
                        wafv2.CfnWebACL.RateBasedStatementCustomKeyProperty(
                            header=wafv2.CfnWebACL.RateLimitHeaderProperty(
                                name="authorization", text_transformations=[_NO_TRANSFORMATION]
                            )
                        )
                    ],
                    limit=limits.caller,
                    evaluation_window_sec=limits.window_seconds,
                    scope_down_statement=wafv2.CfnWebACL.StatementProperty(
                        not_statement=wafv2.CfnWebACL.NotStatementProperty(statement=health)
                    ),
                ),
                throttled,
                name,
            ),
            _rate_rule(
                "PerIp",
                2,
                wafv2.CfnWebACL.RateBasedStatementProperty(
                    aggregate_key_type="IP", limit=limits.ip, evaluation_window_sec=limits.window_seconds
                ),
                throttled,
                name,
            ),
        ]
        web_acl = wafv2.CfnWebACL(
            self,
            "RateLimits",
            name=f"{name}-rate-limits",
            description="tunelab API: per-caller, health and per-IP rate limits",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            rules=rules,
            custom_response_bodies={
                code: wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON",
                    content=json.dumps({"error": {"code": code, "message": message}}),
                )
            },
            # Sampled requests (and any logs) show a hash of the token, never the token.
            data_protection_config=wafv2.CfnWebACL.DataProtectionConfigProperty(
                data_protections=[
                    wafv2.CfnWebACL.DataProtectProperty(
                        action="HASH",
                        field=wafv2.CfnWebACL.FieldToProtectProperty(
                            field_type="SINGLE_HEADER", field_keys=["authorization"]
                        ),
                    )
                ]
            ),
            visibility_config=_visibility(name, "RateLimits"),
        )
        wafv2.CfnWebACLAssociation(
            self,
            "RateLimitsAssociation",
            resource_arn=self.rest_api.deployment_stage.stage_arn,
            web_acl_arn=web_acl.attr_arn,
        )
        return web_acl

    def _add_gateway_responses(self, allowed_origins: Sequence[str]) -> None:
        headers = {"Content-Type": "'application/json'"}
        if len(allowed_origins) == 1:
            # With one origin the browser can read API Gateway's own errors too (one value only).
            headers["Access-Control-Allow-Origin"] = f"'{allowed_origins[0]}'"
        for response_type, status, code, message in GATEWAY_ERRORS:
            body = {"error": {"code": code, "message": message}}
            self.rest_api.add_gateway_response(
                f"{response_type_id(response_type)}Response",
                type=response_type,
                status_code=status,
                response_headers=headers,
                templates={"application/json": json.dumps(body)},
            )


@dataclass(frozen=True)
class RateLimits:
    """The web ACL's budgets: requests per `window_seconds` per caller's token, per IP on
    `GET /v1/health`, and per IP over everything."""

    caller: int
    health: int
    ip: int
    window_seconds: int


_NO_TRANSFORMATION = wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")


def _byte_match(
    field: wafv2.CfnWebACL.FieldToMatchProperty, constraint: str, text: str
) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
            field_to_match=field,
            positional_constraint=constraint,
            search_string=text,
            text_transformations=[_NO_TRANSFORMATION],
        )
    )


def _visibility(name: str, rule: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, sampled_requests_enabled=True, metric_name=f"{name}-{rule}"
    )


def _rate_rule(
    rule: str,
    priority: int,
    statement: wafv2.CfnWebACL.RateBasedStatementProperty,
    action: wafv2.CfnWebACL.RuleActionProperty,
    name: str,
) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=rule,
        priority=priority,
        statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=statement),
        action=action,
        visibility_config=_visibility(name, rule),
    )


def response_type_id(response_type: apigw.ResponseType) -> str:
    return "".join(part.title() for part in response_type.response_type.split("_"))
