"""The BYOK connector: what a customer deploys in their own account, once per tunelab workspace,
so tunelab can train there for that workspace.

It is a plain CloudFormation template with parameters (no assets, no CDK bootstrap needed), so a
customer can deploy it from the console; CDK context only sets the parameters' defaults. tunelab
shows a workspace the values to give: `WorkspaceId`, `ExternalId` (tunelab generates it for the
workspace: `tunelab-` and 32 hex digits), `PlatformRoleArns` (the platform stack's
`ConnectorTrustedRoleArns` output) and `PlatformEventBusArn` (its `EventBusArn`).

What it makes:
* the cross-account role tunelab assumes: it trusts only the platform's roles named in
  `PlatformRoleArns` (never the platform's whole account), and only with the workspace's external
  id and the session name `tunelab-<WorkspaceId>` — another workspace's session cannot use it (no
  confused deputy). It allows exactly the calls tunelab makes with it
  (`tunelab.adapters.providers.sagemaker`; PrepareData and FinishTraining through its storage):
  SageMaker training jobs and endpoints it tags `tunelab-workspace=<WorkspaceId>`, objects under
  `tunelab/<WorkspaceId>/` in the artifact bucket, `DescribeSecret` (never the value) of the
  optional Hugging Face token secret, and `iam:PassRole` of the execution role to SageMaker only;
* the SageMaker execution role the jobs and endpoints run with: the workspace's folder of the
  artifact bucket, the optional Hugging Face token secret, their logs, and image pulls from the
  account that publishes tunelab's Hugging Face images in this region (a mapping generated from
  `tunelab/catalog_data/hf_images.json`; a rule refuses a region the table does not have);
* the artifact bucket (training data in, `model.tar.gz` out);
* rules forwarding the SageMaker state changes of the workspace's resources (tagged
  `tunelab-workspace=<WorkspaceId>`) to tunelab's event bus.

Outputs are what a user pastes into `PUT /v1/providers/sagemaker`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aws_cdk import (
    ArnFormat,
    Aws,
    CfnCondition,
    CfnMapping,
    CfnOutput,
    CfnParameter,
    CfnRule,
    CfnRuleAssertion,
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
from infra.config import EXTERNAL_ID_PATTERN, ROLE_ARN_PATTERN, WORKSPACE_ID_PATTERN, ConnectorConfig
from infra.nag import acknowledge
from tunelab.adapters.providers.images import load_images
from tunelab.composition.stack_definitions import (
    ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS,
    ACCESS_LOGS_EXPIRE_AFTER_DAYS,
    EVENT_RULES,
)

# The contract with the platform, spelled once in tunelab.domain.layout: it assumes a workspace's
# connector role with the session name `connector_session_name(workspace)` and keeps every key it
# writes in the artifact bucket under `connector_prefix(workspace)`.
from tunelab.domain.layout import (
    CONNECTOR_ROLE_PREFIX,
    PROVIDER_RESOURCE_TAG,
    SAGEMAKER_TRAINING_LOG_GROUP,
    connector_prefix,
    connector_session_name,
)

# `<account>.dkr.ecr.<region>.<domain>/<repository>:<tag>`: an image URI of the image table.
_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.[a-z0-9.-]+/(?P<repo>[^:@]+)"
)


def image_sources() -> tuple[dict[str, str], tuple[str, ...]]:
    """From tunelab's Hugging Face image table: each region's image account, and the repositories.

    Every region the table has an image for (training or serving) maps to the one account that
    publishes the Deep Learning Containers there; a table that names two accounts for one region,
    or an image URI of another shape, fails synth.
    """
    images = load_images()
    accounts: dict[str, str] = {}
    repositories: set[str] = set()
    for scope in ("training", "inference", "llm_inference"):
        for region, uri in images.scope(scope).images.items():
            match = _IMAGE_URI.match(uri)
            if match is None or match["region"] != region:
                raise ValueError(f"hf_images.json: {scope} image of {region} is not an ECR image URI: {uri}")
            if accounts.setdefault(region, match["account"]) != match["account"]:
                raise ValueError(
                    f"hf_images.json names two image accounts for {region}: "
                    f"{accounts[region]} and {match['account']}"
                )
            repositories.add(match["repo"])
    return dict(sorted(accounts.items())), tuple(sorted(repositories))


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


def workspace_pattern(pattern: Mapping[str, Any], workspace: str) -> dict[str, Any]:
    """A SageMaker rule's pattern, from "tagged `tunelab-workspace`" to "tagged with this workspace"."""
    detail = dict(pattern.get("detail", {}))
    tags = dict(detail.get("Tags", {}))
    if PROVIDER_RESOURCE_TAG not in tags:
        raise ValueError(f"a forwarded rule must filter on the {PROVIDER_RESOURCE_TAG} tag: {pattern}")
    tags[PROVIDER_RESOURCE_TAG] = [workspace]
    return {**pattern, "detail": {**detail, "Tags": tags}}


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
        workspace_param = CfnParameter(
            self,
            "WorkspaceId",
            type="String",
            default=config.workspace_id or None,
            description="Your tunelab workspace's id (tunelab shows it with the connector's parameters)",
            allowed_pattern=WORKSPACE_ID_PATTERN,
            constraint_description="a tunelab workspace id: letters, digits, '_', '.', '-' (at most 56)",
        )
        external_id_param = CfnParameter(
            self,
            "ExternalId",
            type="String",
            default=config.external_id or None,
            description="The external id tunelab generated for your workspace (tunelab- and 32 hex digits)",
            allowed_pattern=EXTERNAL_ID_PATTERN,
            constraint_description="the external id tunelab shows: tunelab- and 32 lower-case hex digits",
        )
        platform_roles_param = CfnParameter(
            self,
            "PlatformRoleArns",
            type="CommaDelimitedList",
            default=",".join(config.platform_role_arns) or None,
            description=(
                "The tunelab platform's role ARNs, comma-separated (the platform stack's "
                "ConnectorTrustedRoleArns output): the only principals that may assume the access role"
            ),
            allowed_pattern=ROLE_ARN_PATTERN,  # applies to each value of a list
            constraint_description="IAM role ARNs (arn:aws:iam::<account>:role/<name>), comma-separated",
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
        has_hf_secret = CfnCondition(
            self, "HasHfTokenSecret", expression=Fn.condition_not(Fn.condition_equals(hf_secret_param, ""))
        )
        workspace = workspace_param.value_as_string
        external_id = external_id_param.value_as_string
        # The workspace's folder of the artifact bucket: every key tunelab writes for it.
        workspace_prefix = connector_prefix(workspace)
        tag_in_request = {"StringEquals": {f"aws:RequestTag/{PROVIDER_RESOURCE_TAG}": workspace}}
        tag_on_resource = {"StringEquals": {f"aws:ResourceTag/{PROVIDER_RESOURCE_TAG}": workspace}}
        list_workspace_folder = {"StringLike": {"s3:prefix": f"{workspace_prefix}*"}}

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
        objects = bucket.arn_for_objects(f"{workspace_prefix}*")
        # What cdk-nag reports for `objects` (a wildcard under the workspace's folder).
        bucket_arn = self.resolve(bucket.bucket_arn)["Fn::GetAtt"][0]
        objects_finding = f"Resource::<{bucket_arn}.Arn>/{connector_prefix('<WorkspaceId>')}*"
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], resources=[objects]
            )
        )
        # Input channels and checkpoints list their folder, which is under the workspace's.
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[bucket.bucket_arn], conditions=list_workspace_folder
            )
        )
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
        # Images: the repositories of tunelab's image table, in the account that publishes them in
        # this region (one mapping entry per region of the table; a region it lacks is refused).
        image_accounts, image_repositories = image_sources()
        accounts = CfnMapping(
            self,
            "HfImageAccounts",
            mapping={region: {"Account": account} for region, account in image_accounts.items()},
        )
        CfnRule(
            self,
            "HfImageRegion",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_contains(list(image_accounts), Aws.REGION),
                    assert_description=(
                        "tunelab has no Hugging Face training or serving image in this region: deploy the "
                        "connector in a region of tunelab's image table (catalog_data/hf_images.json)."
                    ),
                )
            ],
        )
        image_account = accounts.find_in_map(Aws.REGION, "Account")
        execution.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[
                    f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{image_account}:repository/{repository}"
                    for repository in image_repositories
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
            f"workspace's folder of the artifact bucket ({connector_prefix('<WorkspaceId>')}).",
            applies_to=(objects_finding,),
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
            "(metrics are limited to SageMaker's namespaces by condition).",
            applies_to=("Resource::*",),
        )

        # --- the role tunelab assumes --------------------------------------------------------
        # Only the platform's roles, with the workspace's external id and session name: another
        # workspace's session (a different name, a different external id) cannot use this role.
        platform_roles = iam.ArnPrincipal(Token.as_string(platform_roles_param.value)).with_conditions(
            {
                "StringEquals": {
                    "sts:ExternalId": external_id,
                    "sts:RoleSessionName": connector_session_name(workspace),
                }
            }
        )
        self.access_role = iam.Role(
            self,
            "PlatformAccessRole",
            role_name=f"{CONNECTOR_ROLE_PREFIX}platform-access-{Aws.REGION}",
            description="Role tunelab assumes to run SageMaker training jobs and endpoints in this account",
            assumed_by=platform_roles,
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
                actions=list(CREATE_ACTIONS), resources=list(arns.values()), conditions=tag_in_request
            )
        )
        access.add_to_policy(
            iam.PolicyStatement(
                actions=list(CHANGE_ACTIONS), resources=list(arns.values()), conditions=tag_on_resource
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
        # The training log (GET /v1/fine-tuned-models/{name}/logs): SageMaker's training-job log group
        # only, read-only; one stream per job and instance (`<job name>/algo-<n>-<time>`).
        training_log_group = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=SAGEMAKER_TRAINING_LOG_GROUP,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # DescribeLogStreams is authorized on `log-group:NAME:*` (the bare group ARN serves only the
        # tagging actions).
        access.add_to_policy(
            iam.PolicyStatement(actions=["logs:DescribeLogStreams"], resources=[f"{training_log_group}:*"])
        )
        access.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:GetLogEvents"], resources=[f"{training_log_group}:log-stream:*"]
            )
        )
        # ListObjectsV2 under the workspace's folder (a deleted model's outputs). Not HeadBucket: it
        # has no prefix, so this condition refuses it.
        access.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[bucket.bucket_arn], conditions=list_workspace_folder
            )
        )
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
            f"limited to resources tagged {PROVIDER_RESOURCE_TAG}=<WorkspaceId> (by condition), reads to "
            "this account's SageMaker jobs and endpoints, objects to the workspace's folder of the "
            f"artifact bucket ({connector_prefix('<WorkspaceId>')}).",
            applies_to=(
                *(
                    f"Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:{kind}/*"
                    for kind in SAGEMAKER_RESOURCES
                ),
                objects_finding,
            ),
        )
        acknowledge(
            access,
            "AwsSolutions-IAM5",
            "SageMaker names a training job's log streams after the job and instance; tunelab's job names "
            "are chosen per fine-tuned model (no common prefix), so reads are scoped to SageMaker's "
            "training-job log group of this account and region (DescribeLogStreams on the group, whose "
            "ARN CloudWatch Logs authorizes with `:*`, and GetLogEvents; no writes).",
            applies_to=(
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                f"{SAGEMAKER_TRAINING_LOG_GROUP}:log-stream:*",
                "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                f"{SAGEMAKER_TRAINING_LOG_GROUP}:*",
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
                event_pattern=event_pattern(workspace_pattern(spec.event_pattern, workspace)),
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
        CfnOutput(
            self,
            "WorkspaceIdOutput",
            key="WorkspaceId",
            value=workspace,
            description="The workspace this connector serves (its roles' objects: tunelab/<WorkspaceId>/)",
        )
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
