"""The platform stack: composes one construct per capability."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Environment, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.bundling import lambda_code
from infra.capabilities.api import Api, RateLimits
from infra.capabilities.auth import Auth
from infra.capabilities.data import Data
from infra.capabilities.functions import FunctionResources, Functions, function_arn, state_machine_arn
from infra.capabilities.messaging import (
    Messaging,
    acknowledge_dead_letter_queue,
    dead_letter_alarm,
    secure_queue,
)
from infra.capabilities.notifications import Notifications
from infra.capabilities.schedules import Schedules
from infra.capabilities.training import Training
from infra.capabilities.workflow import Workflow
from infra.config import PlatformConfig
from tunelab.composition.stack_definitions import (
    AUTO_UNDEPLOY_FUNCTION,
    BEDROCK_DATA_BUCKETS_ENV,
    FUNCTIONS,
    LAMBDA_TASK_ROOT,
    STATE_MACHINES,
    TRAINER_BUNDLE_DIR,
    bedrock_data_bucket_name,
    table_definition,
)


class TunelabStack(Stack):
    """The platform, in the home region (`config.region`); the account is the CLI's."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=config.stack_name,
            env=Environment(region=config.region),
            description="tunelab: fine-tune, deploy and try LLMs (API, workflows, events, data)",
        )
        name = config.stack_name
        definition = table_definition()
        data = Data(self, "Data", table_definition=definition)
        # The data bucket of each other Bedrock region's stack (infra.bedrock_region_stack), by its name.
        self.bedrock_data_buckets: dict[str, s3.IBucket] = {
            region: s3.Bucket.from_bucket_name(
                self, f"BedrockDataBucket-{region}", bedrock_data_bucket_name(name, Aws.ACCOUNT_ID, region)
            )
            for region in config.regional_bedrock_regions
        }
        auth = Auth(self, "Auth")
        messaging = Messaging(self, "Events", bus_name=f"{name}-events")
        messaging.allow_forwarding_from(config.connected_accounts)
        notifications = Notifications(self, "Notifications", sender_email=config.sender_email)
        training = Training(
            self,
            "Training",
            artifacts_bucket=data.artifacts_bucket,
            bedrock_regions=config.all_bedrock_regions,
            regional_buckets=self.bedrock_data_buckets,
        )
        schedules_dlq = secure_queue(self, "SchedulesDlq", retention_period=Duration.days(14))
        dead_letter_alarm(schedules_dlq)
        acknowledge_dead_letter_queue(
            schedules_dlq, "EventBridge Scheduler's, for schedules it could not deliver"
        )
        function_arns = {spec.logical_id: function_arn(self, spec) for spec in FUNCTIONS}
        schedules = Schedules(
            self,
            "Schedules",
            group_name=f"{name}-auto-undeploy",
            auto_undeploy_arn=function_arns[AUTO_UNDEPLOY_FUNCTION],
            dlq=schedules_dlq,
        )
        state_machine_names = {spec.settings_field: f"{name}-{spec.name_suffix}" for spec in STATE_MACHINES}
        environment = {
            "RUNTIME": "aws",
            "TABLE_NAME": data.table.table_name,
            "IDEMPOTENCY_TABLE_NAME": data.idempotency_table.table_name,
            "DATASETS_BUCKET": data.datasets_bucket.bucket_name,
            "ARTIFACTS_BUCKET": data.artifacts_bucket.bucket_name,
            "EVENT_BUS_NAME": messaging.event_bus.event_bus_name,
            # With CONNECTOR_TRUSTED_ROLE_ARNS (infra.capabilities.functions): a connector's parameters.
            "EVENT_BUS_ARN": messaging.event_bus.event_bus_arn,
            "SENDER_EMAIL": config.sender_email,
            "SES_CONFIGURATION_SET": notifications.configuration_set.configuration_set_name,
            "SCHEDULE_GROUP": schedules.group_name,
            "SCHEDULER_ROLE_ARN": schedules.auto_undeploy_role.role_arn,
            "SCHEDULES_DLQ_ARN": schedules_dlq.queue_arn,
            "AUTO_UNDEPLOY_TARGET_ARN": function_arns[AUTO_UNDEPLOY_FUNCTION],
            "BEDROCK_ROLE_ARN": training.bedrock_role.role_arn,
            # Where a model that trains in another region keeps its training data and Bedrock output.
            BEDROCK_DATA_BUCKETS_ENV: self.to_json_string(
                {region: bucket.bucket_name for region, bucket in self.bedrock_data_buckets.items()}
            ),
            # The trainer's source is bundled with the code (infra.bundling); SageMaker jobs start from it.
            "TRAINER_DIR": f"{LAMBDA_TASK_ROOT}/{TRAINER_BUNDLE_DIR}",
            "PLATFORM_ACCOUNT_ID": Aws.ACCOUNT_ID,
            "DEFAULT_PLAN": config.default_plan,
            "ALLOWED_ORIGINS": ",".join(config.allowed_origins),
            "LOG_LEVEL": config.log_level,
            "POWERTOOLS_SERVICE_NAME": "tunelab",
            "POWERTOOLS_METRICS_NAMESPACE": "tunelab",
            "POWERTOOLS_LOG_LEVEL": config.log_level,
        }
        for spec in STATE_MACHINES:
            environment[spec.settings_field.upper()] = state_machine_arn(
                self, state_machine_names[spec.settings_field]
            )
        functions = Functions(
            self,
            "Functions",
            code=lambda_code(install_dependencies=not config.skip_bundling),
            resources=FunctionResources(
                table=data.table,
                table_definition=definition,
                idempotency_table=data.idempotency_table,
                datasets_bucket=data.datasets_bucket,
                artifacts_bucket=data.artifacts_bucket,
                bedrock_regions=config.all_bedrock_regions,
                bedrock_data_buckets=self.bedrock_data_buckets,
                event_bus=messaging.event_bus,
                state_machine_names=state_machine_names,
                bedrock_role=training.bedrock_role,
                scheduler_role=schedules.auto_undeploy_role,
                schedule_group_name=schedules.group_name,
                ses_identity_arn=notifications.identity_arn,
                ses_configuration_set_arn=notifications.configuration_set_arn,
                environment=environment,
            ),
        )
        self.functions = functions
        schedules.add_recurring(function_arns)
        messaging.add_queues(functions.functions)
        messaging.add_rules({"DatasetsBucketName": data.datasets_bucket.bucket_name})
        self.workflow = Workflow(
            self,
            "Workflow",
            stack_name=name,
            workflows_dir=config.workflows_dir,
            functions=functions.functions,
            resource_values={
                "TableName": data.table.table_name,
                "EventBusName": messaging.event_bus.event_bus_name,
                "DatasetsBucketName": data.datasets_bucket.bucket_name,
                "ArtifactsBucketName": data.artifacts_bucket.bucket_name,
            },
            resource_statements={
                "TableName": iam.PolicyStatement(
                    actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                    resources=[data.table.table_arn],
                ),
                "EventBusName": iam.PolicyStatement(
                    actions=["events:PutEvents"], resources=[messaging.event_bus.event_bus_arn]
                ),
            },
        )
        api = Api(
            self,
            "Api",
            handler=functions.functions["Api"],
            user_pool=auth.user_pool,
            allowed_origins=config.allowed_origins,
            rate_limit=config.api_rate_limit,
            burst_limit=config.api_burst_limit,
            rate_limits=RateLimits(
                caller=config.caller_rate_limit,
                health=config.health_rate_limit,
                ip=config.ip_rate_limit,
                window_seconds=config.rate_window_seconds,
            ),
            name=f"{name}-api",
        )
        self.data, self.auth, self.messaging, self.api = data, auth, messaging, api
        self.notifications, self.training, self.schedules = notifications, training, schedules

        CfnOutput(self, "ApiUrl", value=f"{api.rest_api.url}v1/", description="Base URL of the API")
        CfnOutput(self, "UserPoolId", value=auth.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=auth.client.user_pool_client_id)
        CfnOutput(
            self,
            "EventBusArn",
            value=messaging.event_bus.event_bus_arn,
            description="tunelab's bus: domain events out; the connector's platformEventBusArn",
        )
        CfnOutput(self, "PlatformAccountId", value=Aws.ACCOUNT_ID)
        CfnOutput(
            self,
            "ConnectorTrustedRoleArns",
            value=Fn.join(",", functions.connector_trusted_role_arns),
            description="The roles a BYOK connector trusts: its PlatformRoleArns parameter",
        )
        CfnOutput(self, "DatasetsBucketName", value=data.datasets_bucket.bucket_name)
        CfnOutput(self, "ArtifactsBucketName", value=data.artifacts_bucket.bucket_name)
