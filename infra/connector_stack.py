"""The BYOK connector: what a customer deploys in their own account so tunelab can train there.

It is a plain CloudFormation template with parameters (no assets, no CDK bootstrap needed), so a
customer can deploy it from the console; CDK context only sets the parameters' defaults.

What it makes:
* the cross-account role tunelab assumes (trusts the platform's account, with an external id):
  exactly the calls tunelab makes with it (`tunelab.adapters.providers.sagemaker`; PrepareData and
  FinishTraining through its storage) — SageMaker training jobs and endpoints it tags
  `tunelab-workspace`, objects under `tunelab/` in the artifact bucket, `DescribeSecret` (never the
  value) of the optional Hugging Face token secret, and `iam:PassRole` of the execution role to
  SageMaker only;
* the SageMaker execution role the jobs and endpoints run with: the artifact bucket, the optional
  Hugging Face token secret, their logs, image pulls from AWS's Deep Learning Containers;
* the artifact bucket (training data in, `model.tar.gz` out);
* rules forwarding the tagged resources' SageMaker state changes to tunelab's event bus.

Outputs are what a user pastes into `PUT /v1/providers/sagemaker`.
"""

from __future__ import annotations

from aws_cdk import (
    ArnFormat,
    Aws,
    CfnCondition,
    CfnOutput,
    CfnParameter,
    CliCredentialsStackSynthesizer,
    Duration,
    Fn,
    RemovalPolicy,
    Stack,
    Token,
)
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.capabilities.messaging import acknowledge_dead_letter_queue, event_pattern, secure_queue
from infra.config import ConnectorConfig
from infra.nag import acknowledge, objects_finding
from tunelab.composition.stack_definitions import (
    ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS,
    ACCESS_LOGS_EXPIRE_AFTER_DAYS,
    EVENT_RULES,
)
from tunelab.domain.layout import CONNECTOR_BUCKET_PREFIX, CONNECTOR_ROLE_PREFIX, PROVIDER_RESOURCE_TAG

# AWS accounts that publish the Deep Learning Containers (Hugging Face PyTorch images) to ECR:
# 763104351884 in most regions, and the accounts of the opt-in regions.
DLC_ACCOUNTS = (
    "763104351884",
    "871362719292",  # ap-east-1
    "217643126080",  # me-south-1
    "626614931356",  # af-south-1
    "692866216735",  # eu-south-1
)

SAGEMAKER_RESOURCES = ("training-job", "endpoint", "endpoint-config", "model")
# What tunelab calls through the connector's role, by the condition each is allowed under.
READ_ACTIONS = ("sagemaker:DescribeTrainingJob", "sagemaker:DescribeEndpoint")
CREATE_ACTIONS = (  # the request must tag what it creates (tags on create need AddTags)
    "sagemaker:CreateTrainingJob",
    "sagemaker:CreateModel",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:CreateEndpoint",
    "sagemaker:AddTags",
)
CHANGE_ACTIONS = (  # only resources that carry the tag
    "sagemaker:StopTrainingJob",
    "sagemaker:DeleteTrainingJob",
    "sagemaker:DeleteEndpoint",
    "sagemaker:DeleteEndpointConfig",
    "sagemaker:DeleteModel",
    "sagemaker:InvokeEndpoint",
)
# Objects: the training data and the trainer's source (put), job outputs (head, get, presigned
# downloads), a deleted model's outputs (delete); multipart uploads of large training files.
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
_TAG_PRESENT_IN_REQUEST = {"Null": {f"aws:RequestTag/{PROVIDER_RESOURCE_TAG}": "false"}}
_TAG_PRESENT_ON_RESOURCE = {"Null": {f"aws:ResourceTag/{PROVIDER_RESOURCE_TAG}": "false"}}


class ConnectorStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: ConnectorConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=config.stack_name,
            description="tunelab BYOK connector: lets tunelab run SageMaker training and endpoints here",
            synthesizer=CliCredentialsStackSynthesizer(),
        )
        bus_arn = CfnParameter(
            self,
            "PlatformEventBusArn",
            type="String",
            description="ARN of tunelab's event bus (the platform stack's EventBusArn output)",
            allowed_pattern=r"^arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/.+$",
            default=config.platform_event_bus_arn or None,
        )
        external_id_param = CfnParameter(
            self,
            "ExternalId",
            type="String",
            default=config.external_id,
            description="External id tunelab must present; empty: this stack's own unique id",
            allowed_pattern=r"^$|^[A-Za-z0-9+=,.@:/_-]{2,1224}$",
        )
        hf_secret_param = CfnParameter(
            self,
            "HuggingFaceSecretArn",
            type="String",
            default=config.hf_token_secret_arn,
            description="Secrets Manager ARN of your Hugging Face token, for gated models (optional)",
            allowed_pattern=r"^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$",
        )
        acknowledge(
            self,  # CloudFormation's validation reports parameters on the stack
            "CloudFormation-Validate::W2509",
            "HuggingFaceSecretArn is the ARN of a secret, not a secret: the value stays in Secrets Manager.",
        )
        has_external_id = CfnCondition(
            self, "HasExternalId", expression=Fn.condition_not(Fn.condition_equals(external_id_param, ""))
        )
        has_hf_secret = CfnCondition(
            self, "HasHfTokenSecret", expression=Fn.condition_not(Fn.condition_equals(hf_secret_param, ""))
        )
        # The stack id ends in a UUID: unique and unguessable enough as a default external id.
        external_id = Token.as_string(
            Fn.condition_if(
                has_external_id.logical_id,
                external_id_param.value_as_string,
                Fn.select(2, Fn.split("/", Aws.STACK_ID)),
            )
        )
        platform_account = Fn.select(4, Fn.split(":", bus_arn.value_as_string))

        # --- the artifact bucket -------------------------------------------------------------
        access_logs = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(ACCESS_LOGS_EXPIRE_AFTER_DAYS))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.artifact_bucket = s3.Bucket(
            self,
            "ArtifactBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    abort_incomplete_multipart_upload_after=Duration.days(ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS)
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        bucket = self.artifact_bucket

        # --- the SageMaker execution role ----------------------------------------------------
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            role_name=f"{CONNECTOR_ROLE_PREFIX}sagemaker-execution-{Aws.REGION}",
            description="Role tunelab's SageMaker training jobs and endpoints run with",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        execution = self.execution_role
        objects = bucket.arn_for_objects(f"{CONNECTOR_BUCKET_PREFIX}*")
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], resources=[objects]
            )
        )
        execution.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
        log_groups = [
            self.format_arn(
                service="logs",
                resource="log-group",
                resource_name=f"/aws/sagemaker/{kind}",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for kind in ("TrainingJobs", "Endpoints/*")
        ]
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[*log_groups, *(f"{arn}:log-stream:*" for arn in log_groups)],
            )
        )
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}},
            )
        )
        execution.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[
                    f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/*" for account in DLC_ACCOUNTS
                ],
            )
        )
        # Its own policy, present only with a secret: an empty Resource would be invalid.
        secret_policy = iam.Policy(
            self,
            "HfTokenSecretPolicy",
            roles=[execution],
            statements=[
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"], resources=[hf_secret_param.value_as_string]
                )
            ],
        )
        cfn_secret_policy = secret_policy.node.default_child
        assert isinstance(cfn_secret_policy, iam.CfnPolicy)
        cfn_secret_policy.cfn_options.condition = has_hf_secret
        acknowledge(
            execution,
            "AwsSolutions-IAM5",
            "Training jobs and endpoints read and write objects under per-job keys; the scope is the "
            f"artifact bucket's {CONNECTOR_BUCKET_PREFIX} folder.",
            applies_to=(objects_finding(bucket, CONNECTOR_BUCKET_PREFIX),),
        )
        acknowledge(
            execution,
            "AwsSolutions-IAM5",
            "SageMaker names log streams per job and instance, and endpoint log groups per endpoint; "
            "the scope is SageMaker's own log groups in this account.",
            applies_to=(
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*",
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/TrainingJobs:log-stream:*",
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*:log-stream:*",
            ),
        )
        acknowledge(
            execution,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions "
            "(metrics are limited to SageMaker's namespaces by condition); image pulls are limited to "
            "the Deep Learning Containers' accounts, whose repositories are many and versioned.",
            applies_to=(
                "Resource::*",
                *(
                    f"Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:{account}:repository/*"
                    for account in DLC_ACCOUNTS
                ),
            ),
        )

        # --- the role tunelab assumes --------------------------------------------------------
        self.access_role = iam.Role(
            self,
            "PlatformAccessRole",
            role_name=f"{CONNECTOR_ROLE_PREFIX}platform-access-{Aws.REGION}",
            description="Role tunelab assumes to run SageMaker training jobs and endpoints in this account",
            assumed_by=iam.AccountPrincipal(platform_account).with_conditions(
                {"StringEquals": {"sts:ExternalId": external_id}}
            ),
            max_session_duration=Duration.hours(1),
        )
        access = self.access_role
        arns = {
            kind: self.format_arn(service="sagemaker", resource=kind, resource_name="*")
            for kind in SAGEMAKER_RESOURCES
        }
        access.add_to_policy(
            iam.PolicyStatement(
                actions=list(READ_ACTIONS), resources=[arns["training-job"], arns["endpoint"]]
            )
        )
        access.add_to_policy(
            iam.PolicyStatement(
                actions=list(CREATE_ACTIONS),
                resources=list(arns.values()),
                conditions=_TAG_PRESENT_IN_REQUEST,
            )
        )
        access.add_to_policy(
            iam.PolicyStatement(
                actions=list(CHANGE_ACTIONS),
                resources=list(arns.values()),
                conditions=_TAG_PRESENT_ON_RESOURCE,
            )
        )
        access.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[execution.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        access.add_to_policy(iam.PolicyStatement(actions=list(OBJECT_ACTIONS), resources=[objects]))
        # HeadBucket and ListObjectsV2 (a connection check, a deleted model's outputs) need ListBucket.
        access.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
        # The connection check confirms the token secret exists; only the jobs read its value.
        describe_secret = iam.Policy(
            self,
            "HfTokenSecretDescribePolicy",
            roles=[access],
            statements=[
                iam.PolicyStatement(
                    actions=["secretsmanager:DescribeSecret"], resources=[hf_secret_param.value_as_string]
                )
            ],
        )
        cfn_describe_secret = describe_secret.node.default_child
        assert isinstance(cfn_describe_secret, iam.CfnPolicy)
        cfn_describe_secret.cfn_options.condition = has_hf_secret
        acknowledge(
            access,
            "AwsSolutions-IAM5",
            "Job, endpoint and model names are chosen per fine-tuned model at run time; changes are "
            f"limited to resources tagged {PROVIDER_RESOURCE_TAG} (by condition), reads to this account's "
            "SageMaker jobs and endpoints, objects to the artifact bucket's "
            f"{CONNECTOR_BUCKET_PREFIX} folder.",
            applies_to=(
                *(
                    f"Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:{kind}/*"
                    for kind in SAGEMAKER_RESOURCES
                ),
                objects_finding(bucket, CONNECTOR_BUCKET_PREFIX),
            ),
        )

        # --- forwarding SageMaker events to tunelab ------------------------------------------
        platform_bus = events.EventBus.from_event_bus_arn(self, "PlatformEventBus", bus_arn.value_as_string)
        forward_dlq = secure_queue(self, "ForwardingDlq", retention_period=Duration.days(14))
        acknowledge_dead_letter_queue(
            forward_dlq, "EventBridge's, for events it could not forward to tunelab"
        )
        forward_role = iam.Role(
            self,
            "ForwardingRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        forward_role.add_to_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[bus_arn.value_as_string])
        )
        for spec in EVENT_RULES:
            if spec.bus != "tunelab" or spec.event_pattern.get("source") != ["aws.sagemaker"]:
                continue
            rule = events.Rule(
                self,
                f"Forward{spec.logical_id}",
                description=f"Forward to tunelab: {spec.description}",
                event_pattern=event_pattern(spec.event_pattern),
            )
            rule.add_target(
                targets.EventBus(
                    platform_bus,
                    role=forward_role,
                    dead_letter_queue=forward_dlq,
                )
            )

        CfnOutput(
            self, "RoleArn", value=access.role_arn, description="role_arn for PUT /v1/providers/sagemaker"
        )
        CfnOutput(self, "ExternalIdOutput", value=external_id, description="external_id", key="ExternalId")
        CfnOutput(self, "ArtifactBucketName", value=bucket.bucket_name, description="artifact_bucket")
        CfnOutput(self, "Region", value=Aws.REGION, description="region")
        CfnOutput(self, "ExecutionRoleArn", value=execution.role_arn, description="Role the jobs run with")
        CfnOutput(
            self,
            "HfTokenSecretArnOutput",
            key="HfTokenSecretArn",
            value=hf_secret_param.value_as_string,
            condition=has_hf_secret,
            description="hf_token_secret_arn",
        )
