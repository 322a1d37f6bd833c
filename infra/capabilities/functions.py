"""Functions: one Lambda per `stack_definitions.FUNCTIONS` entry, each with its own role.

A role starts empty (no managed policy): it may write its own log group, send traces, and do what
its `Permission`s grant, each on named resources. Every function gets the same environment (the
fields of `tunelab.composition.settings.Settings`), so one settings model serves them all; it
includes `CONNECTOR_TRUSTED_ROLE_ARNS`, the roles here that may assume BYOK connector roles (what a
connector's `PlatformRoleArns` parameter must name), so every role is made before any function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.capabilities.messaging import dead_letter_alarm, secure_queue
from infra.nag import acknowledge, objects_finding, resource_finding
from tunelab.composition.stack_definitions import (
    FUNCTIONS,
    LAMBDA_PYTHON_VERSION,
    LOG_RETENTION_DAYS,
    FunctionSpec,
    Permission,
    TableDefinition,
)
from tunelab.domain.layout import CONNECTOR_ROLE_PREFIX

RUNTIME = lambda_.Runtime(f"python{LAMBDA_PYTHON_VERSION}", lambda_.RuntimeFamily.PYTHON)
RETENTION = logs.RetentionDays.THREE_MONTHS
assert LOG_RETENTION_DAYS == 90  # keep RETENTION and the shared constant in step
_COLON = ArnFormat.COLON_RESOURCE_NAME
# The environment variable naming, comma-separated, the roles a BYOK connector must trust (its
# PlatformRoleArns parameter): those of the functions that assume connector roles.
CONNECTOR_TRUSTED_ROLE_ARNS = "CONNECTOR_TRUSTED_ROLE_ARNS"


# Bedrock resource types → (ARN resource, in the account?, why a wildcard over it is the scope).
_BEDROCK = {
    "job": ("model-customization-job/*", True, "Bedrock names customization jobs by generated ids"),
    "custom": ("custom-model/*", True, "Bedrock names custom models by generated ids"),
    "deployment": ("custom-model-deployment/*", True, "Bedrock names deployments by generated ids"),
    "provisioned": ("provisioned-model/*", True, "Bedrock names provisioned throughput by generated ids"),
    "foundation": ("foundation-model/*", False, "Any base model of the catalog (data, not IAM) may be used"),
}
# Permission → (Bedrock actions, resource types they act on).
_BEDROCK_GRANTS: dict[Permission, tuple[list[str], tuple[str, ...]]] = {
    Permission.BEDROCK_CUSTOMIZE: (
        ["bedrock:CreateModelCustomizationJob", "bedrock:GetModelCustomizationJob", "bedrock:TagResource"],
        ("job", "custom", "foundation"),
    ),
    Permission.BEDROCK_STOP_TRAINING: (["bedrock:StopModelCustomizationJob"], ("job",)),
    Permission.BEDROCK_DEPLOY: (
        [
            "bedrock:CreateCustomModelDeployment",
            "bedrock:GetCustomModelDeployment",
            "bedrock:CreateProvisionedModelThroughput",
            "bedrock:GetProvisionedModelThroughput",
            "bedrock:TagResource",
        ],
        ("custom", "deployment", "provisioned"),
    ),
    Permission.BEDROCK_UNDEPLOY: (
        ["bedrock:DeleteCustomModelDeployment", "bedrock:DeleteProvisionedModelThroughput"],
        ("deployment", "provisioned"),
    ),
    Permission.BEDROCK_DELETE_MODEL: (["bedrock:DeleteCustomModel"], ("custom",)),
    Permission.BEDROCK_READ: (
        [
            "bedrock:GetModelCustomizationJob",
            "bedrock:GetCustomModel",
            "bedrock:GetCustomModelDeployment",
            "bedrock:GetProvisionedModelThroughput",
        ],
        ("job", "custom", "deployment", "provisioned"),
    ),
    Permission.BEDROCK_INVOKE: (
        ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
        ("custom", "deployment", "provisioned"),
    ),
}

# Answering the fine-tuning workflow's task tokens: the actions tunelab.application.workflows
# calls. The Service Authorization Reference lists no resource type for them, so a policy must name "*".
SEND_TASK_RESULT_ACTIONS = ("states:SendTaskSuccess", "states:SendTaskHeartbeat")
SEND_TASK_RESULT_DOC = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html"
)

_CALLERS = {
    "api": "API Gateway",
    "state_machine": "a Step Functions task, whose Retry/Catch handle it",
    "queue": "an SQS event source mapping; the queue's redrive policy dead-letters it",
    "schedule": "EventBridge Scheduler",
}


def function_name(stack_name: str, spec: FunctionSpec) -> str:
    return f"{stack_name}-{spec.name_suffix}"


def function_arn(stack: Stack, spec: FunctionSpec) -> str:
    """A function's ARN from its fixed name: roles and settings can name it without a reference cycle."""
    return stack.format_arn(
        service="lambda",
        resource="function",
        resource_name=function_name(stack.stack_name, spec),
        arn_format=_COLON,
    )


def state_machine_arn(stack: Stack, name: str) -> str:
    return stack.format_arn(service="states", resource="stateMachine", resource_name=name, arn_format=_COLON)


@dataclass(frozen=True)
class FunctionResources:
    """The resources functions are granted on and configured with."""

    table: dynamodb.ITable
    table_definition: TableDefinition
    idempotency_table: dynamodb.ITable
    datasets_bucket: s3.IBucket
    artifacts_bucket: s3.IBucket
    # Every region the functions call Bedrock in (home first), and the data bucket of each but home:
    # whoever reads or writes the artifacts bucket's training data and Bedrock output does the same there.
    bedrock_regions: tuple[str, ...]
    bedrock_data_buckets: Mapping[str, s3.IBucket]
    event_bus: events.IEventBus
    state_machine_names: Mapping[str, str]  # settings field → state machine name
    bedrock_role: iam.IRole
    scheduler_role: iam.IRole
    schedule_group_name: str
    ses_identity_arn: str
    ses_configuration_set_arn: str
    environment: Mapping[str, str]


class Functions(Construct):
    """The Lambda functions; `functions[logical_id]` is each one."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        resources: FunctionResources,
        specs: tuple[FunctionSpec, ...] = FUNCTIONS,
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)
        self._resources = resources
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        log_groups = {spec.logical_id: self._add_role(spec) for spec in specs}
        # The roles that may assume customers' connector roles: what a connector must trust.
        self.connector_trusted_roles = [
            self.roles[spec.logical_id]
            for spec in specs
            if Permission.ASSUME_CONNECTOR_ROLE in spec.permissions
        ]
        environment = {
            **resources.environment,
            CONNECTOR_TRUSTED_ROLE_ARNS: Fn.join(",", self.connector_trusted_role_arns),
        }
        for spec in specs:
            self._add(spec, code, log_groups[spec.logical_id], environment)

    @property
    def connector_trusted_role_arns(self) -> list[str]:
        return [role.role_arn for role in self.connector_trusted_roles]

    def _add_role(self, spec: FunctionSpec) -> logs.LogGroup:
        name = function_name(self._stack.stack_name, spec)
        log_group = logs.LogGroup(
            self,
            f"{spec.logical_id}LogGroup",
            log_group_name=f"/aws/lambda/{name}",
            retention=RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{spec.logical_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"tunelab {spec.module}: {spec.description}",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        for permission in sorted(spec.permissions):
            self._grant(role, permission)
        self.roles[spec.logical_id] = role
        return log_group

    def _add(
        self, spec: FunctionSpec, code: lambda_.Code, log_group: logs.LogGroup, environment: Mapping[str, str]
    ) -> None:
        name = function_name(self._stack.stack_name, spec)
        role = self.roles[spec.logical_id]
        # Only asynchronous invocations have no caller to report a failure to: they get a failure
        # destination (the event and the error, after Lambda's retries).
        async_dlq = (
            secure_queue(self, f"{spec.logical_id}AsyncDlq", retention_period=Duration.days(14))
            if spec.invoked_asynchronously
            else None
        )
        function = lambda_.Function(
            self,
            spec.logical_id,
            function_name=name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            code=code,
            handler=spec.handler,
            timeout=Duration.seconds(spec.timeout_seconds),
            memory_size=spec.memory_mb,
            role=role,
            environment=dict(environment),
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=log_group,
            on_failure=destinations.SqsDestination(async_dlq) if async_dlq else None,
            retry_attempts=2 if spec.invoked_asynchronously else None,
        )
        if async_dlq is None:
            acknowledge(
                function,
                "Serverless-LambdaDLQ",
                f"Invoked synchronously ({_CALLERS[spec.trigger]}): a failure returns to the caller, "
                "which retries or dead-letters it.",
            )
        else:
            dead_letter_alarm(async_dlq)
            for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
                acknowledge(
                    async_dlq,
                    rule,
                    "This queue is the function's on-failure destination (async invocations).",
                )
            acknowledge(
                function,
                "Serverless-LambdaDLQ",
                "Failed asynchronous invocations go to an on-failure destination (SQS), "
                "which supersedes a DLQ.",
            )
        star_reason = (
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions."
        )
        if Permission.SEND_TASK_RESULT in spec.permissions:
            star_reason += (
                " Neither do Step Functions' SendTaskSuccess and SendTaskHeartbeat (no resource type in "
                f"{SEND_TASK_RESULT_DOC}); a task token, kept only in the records table, names the task."
            )
        acknowledge(role, "AwsSolutions-IAM5", star_reason, applies_to=("Resource::*",))
        self.functions[spec.logical_id] = function

    # --- permissions -------------------------------------------------------------------------

    def _allow(self, role: iam.Role, actions: list[str], resources: list[str], **conditions: object) -> None:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=actions, resources=resources, conditions=dict(conditions) if conditions else None
            )
        )

    def _bedrock(self, role: iam.Role, actions: list[str], kinds: tuple[str, ...]) -> None:
        # In every Bedrock region of the deployment: a model trains, deploys and answers in its region.
        arns = []
        for kind in kinds:
            resource, in_account, why = _BEDROCK[kind]
            account = Aws.ACCOUNT_ID if in_account else ""
            kind_arns = [
                f"arn:{Aws.PARTITION}:bedrock:{region}:{account}:{resource}"
                for region in self._resources.bedrock_regions
            ]
            arns += kind_arns
            acknowledge(
                role,
                "AwsSolutions-IAM5",
                f"{why}; this account's, in the regions tunelab calls Bedrock in, are the scope.",
                applies_to=tuple(resource_finding(role, arn) for arn in kind_arns),
            )
        self._allow(role, actions, arns)

    def _grant(self, role: iam.Role, permission: Permission) -> None:
        r = self._resources
        stack = self._stack
        state_machines = list(r.state_machine_names.values())
        table_arns = [r.table.table_arn] + [
            f"{r.table.table_arn}/index/{index.name}" for index in r.table_definition.global_indexes
        ]
        schedules = stack.format_arn(
            service="scheduler", resource="schedule", resource_name=f"{r.schedule_group_name}/*"
        )

        def objects(bucket: s3.IBucket) -> str:
            return bucket.arn_for_objects("*")

        def ack_objects(bucket: s3.IBucket, what: str) -> None:
            acknowledge(
                role,
                "AwsSolutions-IAM5",
                f"Object keys are per workspace and dataset/model; the {what} bucket is the unit of scope.",
                applies_to=(objects_finding(bucket),),
            )

        def buckets_of(permission: Permission) -> dict[str, s3.IBucket]:
            # what each bucket is → the bucket; a model's training data and Bedrock output are in the
            # artifacts bucket or in the data bucket of the Bedrock region it trained in.
            if permission in (Permission.DATASETS_READ, Permission.DATASETS_WRITE):
                return {"datasets": r.datasets_bucket}
            regional = {f"{region} Bedrock data": bucket for region, bucket in r.bedrock_data_buckets.items()}
            return {"artifacts": r.artifacts_bucket, **regional}

        if permission is Permission.TABLE_READ_WRITE:
            self._allow(
                role,
                [
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:DescribeTable",
                ],
                table_arns,
            )
        elif permission is Permission.IDEMPOTENCY:
            self._allow(
                role,
                ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                [r.idempotency_table.table_arn],
            )
        elif permission in (Permission.DATASETS_READ, Permission.ARTIFACTS_READ):
            buckets = buckets_of(permission)
            self._allow(role, ["s3:GetObject"], [objects(bucket) for bucket in buckets.values()])
            self._allow(role, ["s3:ListBucket"], [bucket.bucket_arn for bucket in buckets.values()])
            for what, bucket in buckets.items():
                ack_objects(bucket, what)
        elif permission in (Permission.DATASETS_WRITE, Permission.ARTIFACTS_WRITE):
            buckets = buckets_of(permission)
            self._allow(
                role,
                ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                [objects(bucket) for bucket in buckets.values()],
            )
            for what, bucket in buckets.items():
                ack_objects(bucket, what)
        elif permission is Permission.PUT_EVENTS:
            self._allow(role, ["events:PutEvents"], [r.event_bus.event_bus_arn])
        elif permission is Permission.START_EXECUTIONS:
            self._allow(
                role, ["states:StartExecution"], [state_machine_arn(stack, n) for n in state_machines]
            )
        elif permission is Permission.SEND_TASK_RESULT:
            # No resource type in SEND_TASK_RESULT_DOC: "*" is the resource the reference documents.
            self._allow(role, list(SEND_TASK_RESULT_ACTIONS), ["*"])
            # Whether the execution a token belonged to still runs (a finished job whose workflow
            # ended is then recorded directly): executions of tunelab's state machines only.
            executions = []
            for name in state_machines:
                execution = stack.format_arn(
                    service="states", resource="execution", resource_name=f"{name}:*", arn_format=_COLON
                )
                executions.append(execution)
                acknowledge(
                    role,
                    "AwsSolutions-IAM5",
                    "Executions are named per model at run time; the scope is tunelab's state machine.",
                    applies_to=(resource_finding(role, execution),),
                )
            self._allow(role, ["states:DescribeExecution"], executions)
        elif permission is Permission.ASSUME_CONNECTOR_ROLE:
            pattern = f"arn:{Aws.PARTITION}:iam::*:role/{CONNECTOR_ROLE_PREFIX}*"
            self._allow(role, ["sts:AssumeRole"], [pattern])
            acknowledge(
                role,
                "AwsSolutions-IAM5",
                "Customers' connector roles live in accounts connected at run time; only roles named "
                f"{CONNECTOR_ROLE_PREFIX}* may be assumed, and each trusts only these functions' roles, "
                "with its workspace's external id and session name.",
                applies_to=(f"Resource::arn:<AWS::Partition>:iam::*:role/{CONNECTOR_ROLE_PREFIX}*",),
            )
        elif permission in _BEDROCK_GRANTS:
            actions, kinds = _BEDROCK_GRANTS[permission]
            self._bedrock(role, actions, kinds)
            if permission is Permission.BEDROCK_CUSTOMIZE:
                self._bedrock(role, ["bedrock:GetFoundationModel"], ("foundation",))
                self._allow(
                    role,
                    ["iam:PassRole"],
                    [r.bedrock_role.role_arn],
                    StringEquals={"iam:PassedToService": "bedrock.amazonaws.com"},
                )
        elif permission is Permission.SEND_EMAIL:
            self._allow(
                role,
                ["ses:SendEmail", "ses:SendRawEmail"],
                [r.ses_identity_arn, r.ses_configuration_set_arn],
            )
        elif permission is Permission.SCHEDULE_CREATE:
            self._allow(
                role,
                ["scheduler:CreateSchedule", "scheduler:GetSchedule", "scheduler:UpdateSchedule"],
                [schedules],
            )
            self._allow(
                role,
                ["iam:PassRole"],
                [r.scheduler_role.role_arn],
                StringEquals={"iam:PassedToService": "scheduler.amazonaws.com"},
            )
            self._ack_schedules(role, schedules)
        elif permission is Permission.SCHEDULE_DELETE:
            self._allow(role, ["scheduler:DeleteSchedule", "scheduler:GetSchedule"], [schedules])
            self._ack_schedules(role, schedules)
        else:  # pragma: no cover - a new Permission must be mapped here
            raise ValueError(f"no grant for {permission}")

    def _ack_schedules(self, role: iam.Role, schedules: str) -> None:
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "One-time schedules are named per deployment at run time; the scope is tunelab's schedule group.",
            applies_to=(resource_finding(role, schedules),),
        )
