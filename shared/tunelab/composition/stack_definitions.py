"""What the tunelab stack contains, as plain data.

Two readers build the same resources from this module: the CDK app in `infra/` (on AWS) and the
embedded local runtime (in moto). Neither invents a function, queue, rule, state machine or
schedule of its own: adding one here adds it to both. No CDK or boto3 import here.

Placeholders: event patterns may hold `"${Name}"` strings for values only known once the stack
exists (the datasets bucket's name); `render_pattern` fills them in. State machine definitions
(ASL JSON files) hold `"${<Function>FunctionArn}"` placeholders, one per Lambda task, and may use
the resource placeholders of `STATE_MACHINE_RESOURCE_VARIABLES`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunelab.adapters.dynamodb.table import TABLE_DEFINITION, TTL_ATTRIBUTE
from tunelab.domain.catalog import load_catalog

# Where things live and how provider resources are tagged: the domain's layout, which the stack scopes
# its permissions, rules and lifecycles with.
from tunelab.domain.layout import (
    PROVIDER_RESOURCE_TAG,
    UPLOADS_PREFIX,
)

# Lambda's Python: the runtime of every function and the interpreter the bundle's wheels are for.
LAMBDA_PYTHON_VERSION = "3.14"
LAMBDA_ARCHITECTURE: Literal["arm64"] = "arm64"

# Objects a presigned upload puts under UPLOADS_PREFIX land first; validation copies them out (they
# expire).
UPLOADS_EXPIRE_AFTER_DAYS = 7
ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS = 1
ACCESS_LOGS_EXPIRE_AFTER_DAYS = 90
LOG_RETENTION_DAYS = 90

# Where the trainer's source (`trainer/`) sits in the Lambda bundle, whose root is Lambda's task root:
# SageMaker jobs are started with it packed as sourcedir.tar.gz (`composition.trainer`, TRAINER_DIR).
LAMBDA_TASK_ROOT = "/var/task"
TRAINER_BUNDLE_DIR = "trainer"

# Bedrock fine-tunes each model only in some regions (the catalog's `regions`): the platform stack
# calls Bedrock there, and a regional stack in each such region besides the home one holds the data
# bucket the jobs read and write (Bedrock reads training data only from a bucket in the job's region)
# and forwards the jobs' state changes to the home region's default bus.
# The functions' variable: a JSON object `{"<region>": "<data bucket>"}` of the regions besides home.
BEDROCK_DATA_BUCKETS_ENV = "BEDROCK_DATA_BUCKETS"
# Bedrock's customization job state changes, on the default bus of the job's region: the home stack's
# rule (EVENT_RULES) and each regional stack's forwarding rule match the same pattern.
BEDROCK_JOB_STATE_CHANGE_PATTERN: Mapping[str, Any] = {
    "source": ["aws.bedrock"],
    "detail-type": ["Model Customization Job State Change"],
}
# An AWS region's name (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`).
AWS_REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"
# S3 refuses bucket names that start with these.
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")


def bedrock_training_regions() -> tuple[str, ...]:
    """Every region a Bedrock model of the shipped catalog is fine-tuned in (retired ones aside), sorted."""
    return tuple(
        sorted(
            {
                region
                for model in load_catalog().models
                if model.provider == "bedrock" and not model.is_retired
                for region in model.regions
            }
        )
    )


def bedrock_data_bucket_name(stack_name: str, account: str, region: str) -> str:
    """The data bucket of the platform's regional Bedrock stack in `region` (at most 63 characters).

    Derived from names alone, so the home stack grants on it and tells the functions about it without
    a cross-region reference; `account` may be a CDK token (`Aws.ACCOUNT_ID`).
    """
    if not re.fullmatch(AWS_REGION_PATTERN, region):
        raise ValueError(f"not an AWS region name: {region!r}")
    lowered = stack_name.lower()
    prefix = lowered[:20].rstrip("-")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", prefix) or prefix.startswith(_RESERVED_BUCKET_PREFIXES):
        raise ValueError(f"stack name {stack_name!r} makes no valid S3 bucket name")
    if len(lowered) > 20:
        # Two long stack names of one account that share their first 20 characters keep apart.
        prefix = f"{prefix}-{hashlib.sha256(stack_name.encode()).hexdigest()[:6]}"
    name = f"{prefix}-bedrock-{account}-{region}"
    # A token stands for a 12-digit account id: count that, not the token's placeholder text.
    length = len(name) - len(account) + 12
    if length > 63:
        raise ValueError(f"bucket name {name!r} is longer than S3's 63 characters")
    return name


# The Powertools idempotency table's attributes (Powertools' defaults).
IDEMPOTENCY_KEY_ATTRIBUTE = "id"
IDEMPOTENCY_TTL_ATTRIBUTE = "expiration"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Permission(StrEnum):
    """What a function may do; each maps to named resources in the CDK app (least privilege)."""

    TABLE_READ_WRITE = "table_read_write"
    IDEMPOTENCY = "idempotency"
    DATASETS_READ = "datasets_read"
    DATASETS_WRITE = "datasets_write"  # put and delete objects (presigned uploads too)
    ARTIFACTS_READ = "artifacts_read"
    ARTIFACTS_WRITE = "artifacts_write"
    PUT_EVENTS = "put_events"  # on tunelab's own event bus
    START_EXECUTIONS = "start_executions"  # of tunelab's state machines
    SEND_TASK_RESULT = "send_task_result"  # answer task tokens (success, heartbeat)
    ASSUME_CONNECTOR_ROLE = "assume_connector_role"  # customers' BYOK roles, `tunelab-*`
    BEDROCK_CUSTOMIZE = "bedrock_customize"  # create customization jobs, passing the service role
    BEDROCK_STOP_TRAINING = "bedrock_stop_training"  # stop customization jobs (not create them)
    BEDROCK_DEPLOY = "bedrock_deploy"  # custom model deployments and provisioned throughput
    BEDROCK_UNDEPLOY = "bedrock_undeploy"
    BEDROCK_DELETE_MODEL = "bedrock_delete_model"
    BEDROCK_READ = "bedrock_read"
    BEDROCK_INVOKE = "bedrock_invoke"  # the sandbox: custom models only
    SEND_EMAIL = "send_email"
    SCHEDULE_CREATE = "schedule_create"  # in tunelab's schedule group, passing the scheduler role
    SCHEDULE_DELETE = "schedule_delete"


# Who invokes a function: API Gateway, a state machine task and an SQS event source mapping invoke
# synchronously (failures return to them); EventBridge Scheduler invokes asynchronously.
Trigger = Literal["api", "state_machine", "queue", "schedule"]


class FunctionSpec(_Frozen):
    """One Lambda function; its code is `functions/<module>.py` with a `handler`."""

    logical_id: str = Field(pattern=r"^[A-Z][A-Za-z0-9]+$", description="CloudFormation id, PascalCase.")
    module: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Module name in `functions/`.")
    description: str
    timeout_seconds: int = Field(ge=1, le=900)
    memory_mb: int = Field(ge=128, le=10240)
    trigger: Trigger
    permissions: frozenset[Permission] = frozenset()

    @property
    def invoked_asynchronously(self) -> bool:
        """Whether failures have no caller to return to (they go to the function's own DLQ)."""
        return self.trigger == "schedule"

    @property
    def handler(self) -> str:
        return f"functions.{self.module}.handler"

    @property
    def arn_variable(self) -> str:
        """The placeholder name an ASL definition uses for this function's ARN."""
        return f"{self.logical_id}FunctionArn"

    @property
    def name_suffix(self) -> str:
        """The function's name after the stack's name (`<stack>-<suffix>`)."""
        return self.module.replace("_", "-")


class QueueSpec(_Frozen):
    """An SQS queue with its dead-letter queue, consumed by one function in batches."""

    logical_id: str = Field(pattern=r"^[A-Z][A-Za-z0-9]+$")
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="Queue name (the local runtime uses it).")
    consumer: str = Field(description="Logical id of the function that consumes the queue.")
    max_receive_count: int = Field(ge=1, le=1000, description="Receives before a message goes to the DLQ.")
    batch_size: int = Field(default=10, ge=1, le=10)
    max_batching_window_seconds: int = Field(default=0, ge=0, le=300)
    retention_days: int = Field(default=4, ge=1, le=14)
    dlq_retention_days: int = Field(default=14, ge=1, le=14)

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"

    def visibility_timeout_seconds(self, consumer_timeout_seconds: int) -> int:
        """Six times the consumer's timeout, as Lambda's SQS guidance asks (retries inside a batch)."""
        return 6 * consumer_timeout_seconds


class EventRuleSpec(_Frozen):
    """An EventBridge rule that sends matching events to a queue."""

    logical_id: str = Field(pattern=r"^[A-Z][A-Za-z0-9]+$")
    description: str
    bus: Literal["default", "tunelab"] = Field(
        description="`default`: the account's own AWS events; `tunelab`: tunelab's bus, which also "
        "receives the SageMaker events connected customer accounts forward."
    )
    event_pattern: dict[str, Any] = Field(description="May hold `${Name}` placeholders (render_pattern).")
    target_queue: str = Field(description="Logical id of the target queue.")
    retry_attempts: int = Field(default=8, ge=0, le=185)
    max_event_age_seconds: int = Field(default=3600, ge=60, le=86400)


class StateMachineSpec(_Frozen):
    """A Standard state machine whose definition is an ASL file with `${...}` placeholders."""

    logical_id: str = Field(pattern=r"^[A-Z][A-Za-z0-9]+$")
    name_suffix: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="Name after `<stack>-`.")
    asl_file: str = Field(description="File name in the workflows folder.")
    settings_field: str = Field(description="Settings field (environment variable) that holds its ARN.")


class ScheduleSpec(_Frozen):
    """A recurring EventBridge Scheduler schedule that invokes a function."""

    logical_id: str = Field(pattern=r"^[A-Z][A-Za-z0-9]+$")
    target_function: str
    expression: str = Field(pattern=r"^(rate|cron)\(.+\)$")
    description: str


P = Permission

# Each function's permissions are what its code calls (tests/infra/test_functions.py lists the calls):
# the API, workflow tasks and handlers share the use cases (`tunelab.application`), whose one undeploy
# (`deployments.undeploy`) deletes the auto-undeploy schedules, publishes the change and emails the creator.
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        logical_id="Api",
        module="api",
        description="tunelab's HTTPS API (API Gateway proxy)",
        trigger="api",
        timeout_seconds=29,  # API Gateway's integration limit
        memory_mb=1024,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.IDEMPOTENCY,  # Idempotency-Key on creates
                P.DATASETS_READ,  # listing a deleted model's folders
                P.DATASETS_WRITE,  # CSV uploads, presigned PUTs, deletes
                P.ARTIFACTS_READ,
                P.ARTIFACTS_WRITE,  # deleting a model's training data and outputs
                P.START_EXECUTIONS,
                P.ASSUME_CONNECTOR_ROLE,
                P.BEDROCK_READ,
                P.BEDROCK_INVOKE,
                P.BEDROCK_STOP_TRAINING,
                P.BEDROCK_UNDEPLOY,
                P.BEDROCK_DELETE_MODEL,
                P.SCHEDULE_DELETE,
                P.PUT_EVENTS,
                P.SEND_EMAIL,  # the "undeployed" email
            }
        ),
    ),
    FunctionSpec(
        logical_id="PrepareData",
        module="prepare_data",
        description="Turns a dataset into the provider's training files",
        trigger="state_machine",
        timeout_seconds=900,
        memory_mb=2048,
        permissions=frozenset(
            {P.TABLE_READ_WRITE, P.DATASETS_READ, P.ARTIFACTS_WRITE, P.ASSUME_CONNECTOR_ROLE}
        ),
    ),
    FunctionSpec(
        logical_id="StartTraining",
        module="start_training",
        description="Starts the provider's training job",
        trigger="state_machine",
        timeout_seconds=60,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.BEDROCK_CUSTOMIZE,
                P.BEDROCK_STOP_TRAINING,  # a stop asked while the job was being created
                P.ASSUME_CONNECTOR_ROLE,
            }
        ),
    ),
    FunctionSpec(
        logical_id="FinishTraining",
        module="finish_training",
        description="Records a training job's outcome",
        trigger="state_machine",
        timeout_seconds=60,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.ASSUME_CONNECTOR_ROLE,
                P.BEDROCK_READ,
                P.BEDROCK_STOP_TRAINING,  # the job of a workflow that timed out or failed
                P.PUT_EVENTS,
            }
        ),
    ),
    FunctionSpec(
        logical_id="Notify",
        module="notify",
        description="Sends the emails of status changes",
        trigger="state_machine",
        timeout_seconds=30,
        memory_mb=256,
        permissions=frozenset({P.TABLE_READ_WRITE, P.SEND_EMAIL}),
    ),
    FunctionSpec(
        logical_id="StartDeployment",
        module="start_deployment",
        description="Creates the endpoint or deployment of a model",
        trigger="state_machine",
        timeout_seconds=60,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.BEDROCK_DEPLOY,
                P.BEDROCK_UNDEPLOY,  # a model undeployed while its deployment was created
                P.ASSUME_CONNECTOR_ROLE,
                P.SCHEDULE_CREATE,
                P.SCHEDULE_DELETE,  # the same
            }
        ),
    ),
    FunctionSpec(
        logical_id="FinishDeployment",
        module="finish_deployment",
        description="Records a deployment's or undeployment's outcome",
        trigger="state_machine",
        timeout_seconds=60,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.BEDROCK_READ,
                P.BEDROCK_UNDEPLOY,
                P.ASSUME_CONNECTOR_ROLE,
                P.SCHEDULE_DELETE,
                P.PUT_EVENTS,
            }
        ),
    ),
    FunctionSpec(
        logical_id="ProviderEvents",
        module="provider_events",
        description="Applies Bedrock and SageMaker state changes",
        trigger="queue",
        timeout_seconds=60,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.SEND_TASK_RESULT,
                P.BEDROCK_READ,  # a finished job whose workflow ended is recorded directly
                # A deployed model whose endpoint failed or went away is undeployed.
                P.ASSUME_CONNECTOR_ROLE,
                P.SCHEDULE_DELETE,
                P.PUT_EVENTS,
                P.SEND_EMAIL,
            }
        ),
    ),
    FunctionSpec(
        logical_id="DatasetUploaded",
        module="dataset_uploaded",
        description="Validates a dataset uploaded to S3",
        trigger="queue",
        timeout_seconds=900,
        memory_mb=2048,
        permissions=frozenset({P.TABLE_READ_WRITE, P.DATASETS_READ, P.DATASETS_WRITE, P.PUT_EVENTS}),
    ),
    FunctionSpec(
        logical_id="AutoUndeploy",
        module="auto_undeploy",
        description="Undeploys a model at its scheduled time, and reminds before",
        trigger="schedule",
        timeout_seconds=60,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.BEDROCK_UNDEPLOY,
                P.ASSUME_CONNECTOR_ROLE,
                P.SCHEDULE_DELETE,  # the reminder, when it has not fired
                P.SEND_EMAIL,
                P.PUT_EVENTS,
            }
        ),
    ),
    FunctionSpec(
        logical_id="Reconciler",
        module="reconciler",
        description="Asks providers about jobs whose events may have been lost",
        trigger="schedule",
        timeout_seconds=300,
        memory_mb=512,
        permissions=frozenset(
            {
                P.TABLE_READ_WRITE,
                P.BEDROCK_READ,
                P.BEDROCK_STOP_TRAINING,  # stops that were lost are issued again
                P.ASSUME_CONNECTOR_ROLE,
                P.SEND_TASK_RESULT,
                # A job whose workflow ended is recorded and told directly; a lost workflow is started again.
                P.PUT_EVENTS,
                P.SEND_EMAIL,
                P.START_EXECUTIONS,
            }
        ),
    ),
)

QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        logical_id="ProviderEventsQueue",
        name="provider-events",
        consumer="ProviderEvents",
        max_receive_count=5,
        batch_size=10,
    ),
    QueueSpec(
        logical_id="DatasetUploadsQueue",
        name="dataset-uploads",
        consumer="DatasetUploaded",
        max_receive_count=3,
        batch_size=1,  # one validation may take minutes: one file per invocation
    ),
)

EVENT_RULES: tuple[EventRuleSpec, ...] = (
    EventRuleSpec(
        logical_id="BedrockCustomizationRule",
        description="Bedrock model customization job state changes",
        bus="default",
        # Also those of jobs in the other Bedrock regions, which their regional stacks forward here.
        event_pattern=dict(BEDROCK_JOB_STATE_CHANGE_PATTERN),
        target_queue="ProviderEventsQueue",
    ),
    EventRuleSpec(
        logical_id="SageMakerTrainingRule",
        description="SageMaker training job state changes forwarded by connected accounts",
        bus="tunelab",
        event_pattern={
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Training Job State Change"],
            "detail": {"Tags": {PROVIDER_RESOURCE_TAG: [{"exists": True}]}},
        },
        target_queue="ProviderEventsQueue",
    ),
    EventRuleSpec(
        logical_id="SageMakerEndpointRule",
        description="SageMaker endpoint state changes forwarded by connected accounts",
        bus="tunelab",
        event_pattern={
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Endpoint State Change"],
            "detail": {"Tags": {PROVIDER_RESOURCE_TAG: [{"exists": True}]}},
        },
        target_queue="ProviderEventsQueue",
    ),
    EventRuleSpec(
        logical_id="DatasetUploadedRule",
        description="Objects created under uploads/ in the datasets bucket",
        bus="default",
        event_pattern={
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": ["${DatasetsBucketName}"]},
                "object": {"key": [{"prefix": UPLOADS_PREFIX}]},
            },
        },
        target_queue="DatasetUploadsQueue",
    ),
)

STATE_MACHINES: tuple[StateMachineSpec, ...] = (
    StateMachineSpec(
        logical_id="FineTuningStateMachine",
        name_suffix="fine-tuning",
        asl_file="fine_tuning.asl.json",
        settings_field="fine_tuning_state_machine_arn",
    ),
    StateMachineSpec(
        logical_id="DeploymentStateMachine",
        name_suffix="deployment",
        asl_file="deployment.asl.json",
        settings_field="deployment_state_machine_arn",
    ),
)

SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        logical_id="ReconcilerSchedule",
        target_function="Reconciler",
        expression="rate(15 minutes)",
        description="Reconciles jobs and deployments whose provider events may have been lost",
    ),
)

# The function EventBridge Scheduler's one-time schedules invoke (undeploy, and the reminder before).
AUTO_UNDEPLOY_FUNCTION = "AutoUndeploy"

# Placeholders an ASL definition may use besides the function ARNs, with what they stand for.
STATE_MACHINE_RESOURCE_VARIABLES: Mapping[str, str] = {
    "TableName": "the records table's name",
    "EventBusName": "tunelab's event bus name",
    "DatasetsBucketName": "the datasets bucket's name",
    "ArtifactsBucketName": "the artifacts bucket's name",
}


class GlobalIndex(_Frozen):
    name: str
    partition_key: str
    sort_key: str | None = None
    projection: Literal["ALL", "KEYS_ONLY", "INCLUDE"] = "ALL"
    non_key_attributes: tuple[str, ...] = ()


class TableDefinition(_Frozen):
    """The records table: string keys, on demand, a TTL attribute, global secondary indexes."""

    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    global_indexes: tuple[GlobalIndex, ...] = ()

    @model_validator(mode="after")
    def _distinct_index_names(self) -> TableDefinition:
        names = [index.name for index in self.global_indexes]
        if len(names) != len(set(names)):
            raise ValueError(f"global index names repeat: {names}")
        return self

    @classmethod
    def from_create_table(
        cls, kwargs: Mapping[str, Any], ttl_attribute: str | None = None
    ) -> TableDefinition:
        """From boto3 `create_table` keyword arguments (KeySchema, GlobalSecondaryIndexes, ...)."""

        def keys(schema: Any) -> tuple[str, str | None]:
            by_type = {item["KeyType"]: item["AttributeName"] for item in schema}
            return by_type["HASH"], by_type.get("RANGE")

        partition_key, sort_key = keys(kwargs["KeySchema"])
        indexes = []
        for index in kwargs.get("GlobalSecondaryIndexes", ()):
            index_pk, index_sk = keys(index["KeySchema"])
            projection = index.get("Projection", {})
            indexes.append(
                GlobalIndex(
                    name=index["IndexName"],
                    partition_key=index_pk,
                    sort_key=index_sk,
                    projection=projection.get("ProjectionType", "ALL"),
                    non_key_attributes=tuple(projection.get("NonKeyAttributes", ())),
                )
            )
        ttl = kwargs.get("TimeToLiveSpecification", {}).get("AttributeName", ttl_attribute)
        return cls(
            partition_key=partition_key, sort_key=sort_key, ttl_attribute=ttl, global_indexes=tuple(indexes)
        )


def table_definition() -> TableDefinition:
    """The records table as its stores lay it out (`adapters.dynamodb.TABLE_DEFINITION`)."""
    return TableDefinition.from_create_table(TABLE_DEFINITION, ttl_attribute=TTL_ATTRIBUTE)


def function(logical_id: str) -> FunctionSpec:
    """The function of that logical id; `KeyError` naming the known ones otherwise."""
    for spec in FUNCTIONS:
        if spec.logical_id == logical_id:
            return spec
    raise KeyError(f"no function {logical_id!r}; known: {[f.logical_id for f in FUNCTIONS]}")


def queue(logical_id: str) -> QueueSpec:
    for spec in QUEUES:
        if spec.logical_id == logical_id:
            return spec
    raise KeyError(f"no queue {logical_id!r}; known: {[q.logical_id for q in QUEUES]}")


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


def placeholders(text: str) -> set[str]:
    """The `${Name}` placeholder names in a text (an ASL definition)."""
    return set(_PLACEHOLDER.findall(text))


def state_machine_variables() -> dict[str, str]:
    """Every placeholder an ASL definition may use → the function logical id or resource it names."""
    variables = {spec.arn_variable: spec.logical_id for spec in FUNCTIONS}
    variables.update({name: name for name in STATE_MACHINE_RESOURCE_VARIABLES})
    return variables


def render_pattern(pattern: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """The event pattern with each `"${Name}"` string replaced by `values[Name]` (KeyError if missing)."""

    def render(node: Any) -> Any:
        if isinstance(node, str):
            match = _PLACEHOLDER.fullmatch(node)
            return values[match.group(1)] if match else node
        if isinstance(node, Mapping):
            return {key: render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(item) for item in node]
        return node

    rendered = render(pattern)
    assert isinstance(rendered, dict)
    return rendered


def _check_references() -> None:
    specs: tuple[FunctionSpec | QueueSpec | EventRuleSpec | StateMachineSpec | ScheduleSpec, ...] = (
        *FUNCTIONS,
        *QUEUES,
        *EVENT_RULES,
        *STATE_MACHINES,
        *SCHEDULES,
    )
    logical_ids = [spec.logical_id for spec in specs]
    duplicates = {name for name in logical_ids if logical_ids.count(name) > 1}
    if duplicates:
        raise ValueError(f"logical ids repeat: {sorted(duplicates)}")
    for q in QUEUES:
        function(q.consumer)
    for rule in EVENT_RULES:
        queue(rule.target_queue)
    for schedule in SCHEDULES:
        function(schedule.target_function)
    function(AUTO_UNDEPLOY_FUNCTION)


_check_references()
