"""API: the REST API in front of the `api` function.

`GET /v1/health` is open; every other route under `/v1` needs a Cognito ID token (the authorizer
passes its claims, `custom:workspace` among them, to the function). Errors API Gateway answers by
itself (no token, throttled, too large, unknown path) carry the contract's error body.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.capabilities.functions import RETENTION
from infra.nag import acknowledge

STAGE_NAME = "prod"
CSV_MEDIA_TYPES = ("text/csv", "application/csv")
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]

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
    (apigw.ResponseType.THROTTLED, "429", "throttled", "Too many requests: wait a moment and retry."),
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
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "No WAF web ACL by default (it costs per month and per rule); Cognito auth, request validation "
            "and stage throttling stand in front. Associate a web ACL per deployment where required.",
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


def response_type_id(response_type: apigw.ResponseType) -> str:
    return "".join(part.title() for part in response_type.response_type.split("_"))
