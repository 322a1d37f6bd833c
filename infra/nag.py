"""cdk-nag: the rule packs the app runs and the one way this project acknowledges a finding.

Every acknowledgement names one construct, one rule (with its finding for wildcard rules, e.g.
`AwsSolutions-IAM5[Resource::*]`) and a reason; infra/NAG_ACKNOWLEDGEMENTS.md lists them all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk.aws_s3 import IBucket
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, *, applies_to: tuple[str, ...] = ()) -> None:
    """Acknowledge `rule` on `scope` (and its children); with `applies_to`, only those findings."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    # The plugin's prefix (`AwsSolutions::`, `Serverless::`) is the form the validation report asks for.
    prefixed = rule if "::" in rule else f"{rule.split('-', maxsplit=1)[0]}::{rule}"
    ids = [f"{prefixed}[{finding}]" for finding in applies_to] if applies_to else [prefixed]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in ids))


def add_rule_packs(app: App) -> None:
    """Run AwsSolutions and Serverless on every stack: an unacknowledged finding fails synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def resource_finding(scope: IConstruct, resource: str) -> str:
    """The IAM5 finding cdk-nag reports for `resource` (an ARN, tokens and all) in a policy of `scope`."""
    return f"Resource::{_flatten(Stack.of(scope).resolve(resource))}"


def objects_finding(bucket: IBucket, prefix: str = "") -> str:
    """The IAM5 finding cdk-nag reports for `bucket.arn_for_objects(prefix + "*")` in a policy."""
    return resource_finding(bucket, bucket.arn_for_objects(f"{prefix}*"))


def _flatten(node: Any) -> str:
    # cdk-nag's flattenCfnReference: references as `<Name>` / `<Id.Attr>`, joins joined.
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict) and "Fn::Join" in node:
        delimiter, items = node["Fn::Join"]
        return str(delimiter).join(_flatten(item) for item in items)
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        resource, attribute = node["Fn::GetAtt"]
        return f"<{_flatten(resource)}.{_flatten(attribute)}>"
    if isinstance(node, dict) and "Ref" in node:
        return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


ACKNOWLEDGED = "aws:cdk:acknowledged-rules"


def acknowledgements(assembly_dir: Path) -> list[tuple[str, str, str]]:
    """(construct path, rule id, reason) of every acknowledgement in a synthesized assembly."""
    found: set[tuple[str, str, str]] = set()
    for metadata_file in sorted(assembly_dir.glob("*.metadata.json")):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry["type"] == ACKNOWLEDGED:
                    found.update((path, rule, reason) for rule, reason in entry["data"].items())
    return sorted(found)


def render_acknowledgements(rows: list[tuple[str, str, str]]) -> str:
    """infra/NAG_ACKNOWLEDGEMENTS.md: every acknowledgement and why it stands."""
    lines = [
        "# cdk-nag acknowledgements",
        "",
        "Every finding of the AwsSolutions and Serverless packs (and of CloudFormation's own",
        "validation) that tunelab acknowledges instead of fixing, with the reason it stands. The",
        "infrastructure tests check that this list is the app's; to regenerate it, run",
        "`TUNELAB_WRITE_NAG_ACKNOWLEDGEMENTS=1 .venv/bin/pytest tests/infra/test_nag_and_lint.py`.",
        "Wildcard findings (`AwsSolutions-IAM5[...]`) are acknowledged one resource pattern at a time.",
        "",
        "| construct | rule (finding) | why it stands |",
        "|---|---|---|",
    ]
    lines += [f"| `{path}` | `{rule}` | {reason} |" for path, rule, reason in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_acknowledgements(acknowledgements(Path(sys.argv[1]))))
