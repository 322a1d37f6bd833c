"""A test-only Lambda handler for the local runtime's seam: records each event it gets.

Created in the embedded moto with `Handler=tests.e2e.probe.handler`, it runs in the runtime's process
(like every function there) and writes the event to the artifacts bucket under
`probe/<function name>/<request id>.json`, where a test reads it back over the AWS endpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

PREFIX = "probe/"


def handler(event: Any, context: Any) -> dict[str, Any]:
    s3 = boto3.client("s3")  # the runtime's environment points it at the embedded endpoint
    s3.put_object(
        Bucket=os.environ["ARTIFACTS_BUCKET"],
        Key=f"{PREFIX}{context.function_name}/{context.aws_request_id}.json",
        Body=json.dumps(event).encode(),
    )
    return {"probe": context.function_name, "echo": event, "batchItemFailures": []}
