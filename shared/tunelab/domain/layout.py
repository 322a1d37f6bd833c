"""Where tunelab keeps things: object keys and prefixes in its buckets and in a BYOK customer's
bucket, and the tag on every resource it makes in a customer's account.

The stack (`composition.stack_definitions`, the CDK app, the connector template) scopes its
permissions, rules and lifecycles with these same values; nothing else spells them.
"""

from __future__ import annotations

import re

# --- the platform's datasets bucket --------------------------------------------------------------

# Presigned uploads land here (`uploads/<workspace>/<dataset id>.csv`); S3 tells EventBridge about
# new objects under it, and objects under it expire.
UPLOADS_PREFIX = "uploads/"
# Where a ready dataset's CSV lives for good.
DATASETS_PREFIX = "datasets/"

_UPLOAD_KEY = re.compile(
    "^" + re.escape(UPLOADS_PREFIX) + r"(?P<workspace>[^/]+)/(?P<dataset_id>ds_[0-9a-z]{26})\.csv$"
)


def upload_key(workspace: str, dataset_id: str) -> str:
    """The key a presigned upload of this dataset writes: `uploads/<workspace>/<dataset id>.csv`."""
    return f"{UPLOADS_PREFIX}{workspace}/{dataset_id}.csv"


def dataset_key(workspace: str, dataset_id: str) -> str:
    """The key a validated dataset's CSV is kept at: `datasets/<workspace>/<dataset id>.csv`."""
    return f"{DATASETS_PREFIX}{workspace}/{dataset_id}.csv"


def parse_upload_key(key: str) -> tuple[str, str] | None:
    """(workspace, dataset id) of an upload key, or None when the key is not one tunelab hands out."""
    match = _UPLOAD_KEY.match(key)
    return (match["workspace"], match["dataset_id"]) if match else None


# --- the platform's artifacts bucket (the Bedrock and local providers) ---------------------------

# PrepareData writes a model's training data under the first; Bedrock customization jobs write their
# output under the second. Bedrock's service role reads and writes only there.
TRAINING_DATA_PREFIX = "training-data/"
BEDROCK_OUTPUT_PREFIX = "bedrock-output/"

# --- a BYOK customer's account ---------------------------------------------------------------------

# Every resource tunelab creates in a customer's account carries this tag, with the workspace id as
# value; the connector's role may change or delete only resources that carry it, and the connector
# forwards only the events of resources that carry it.
PROVIDER_RESOURCE_TAG = "tunelab-workspace"
# The tag naming the fine-tuned model a provider resource belongs to.
MODEL_TAG = "tunelab-model"
# The cross-account role of the BYOK connector is named with this prefix; the platform may assume
# only roles so named (`arn:aws:iam::*:role/tunelab-*`).
CONNECTOR_ROLE_PREFIX = "tunelab-"
# Where SageMaker writes a training job's log in the customer's account (one stream per instance,
# `<job name>/algo-<n>-<time>`): the connector lets tunelab read it.
SAGEMAKER_TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# tunelab's objects in a customer's artifact bucket: training data, the trainer's source, job
# outputs and checkpoints. The connector's roles are limited to it.
CONNECTOR_BUCKET_PREFIX = "tunelab/"


def connector_prefix(workspace: str) -> str:
    """One workspace's folder in its artifact bucket (`tunelab/<workspace>/`): every object tunelab
    writes there, and all the connector (deployed for that workspace) lets its roles touch."""
    return f"{CONNECTOR_BUCKET_PREFIX}{workspace}/"


def connector_session_name(workspace: str) -> str:
    """The STS role session name tunelab assumes a workspace's connector role with; the connector's
    trust policy requires exactly this (`tunelab-<workspace>`), so the customer's CloudTrail names
    the workspace and no other workspace's session can use the role."""
    return f"tunelab-{workspace}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def s3_split(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"not an S3 URI: {uri}")
    return bucket, key
