"""One synthesized app per test session (jsii start-up and synthesis take seconds).

The app is built as `cdk synth` builds it (cdk.json's context), with bundling skipped and a few
context values set so the tests can see them in the templates. The rule packs run during the
synthesis; a nag failure is kept and reported by test_nag, while the templates (written before
validation) still serve the other tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tunelab.composition.stack_definitions import bedrock_training_regions

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ORIGINS = ["https://app.tunelab.test", "https://console.tunelab.test"]
CONNECTED_ACCOUNTS = ["111122223333", "444455556666"]
SENDER = "notifications@tunelab.test"
RATE_LIMIT = 25
BURST_LIMIT = 60
CALLER_LIMIT = 120
HEALTH_LIMIT = 30
IP_LIMIT = 900
RATE_WINDOW = 300
PLATFORM_BUS = "arn:aws:events:eu-west-1:999988887777:event-bus/Tunelab-events"
# A home region where AWS fine-tunes no Bedrock model: a regional stack in each region of the catalog.
HOME_REGION = "eu-west-1"
REGIONAL_BEDROCK_REGIONS = tuple(r for r in bedrock_training_regions() if r != HOME_REGION)
REGIONAL_STACKS = tuple(f"Tunelab-Bedrock-{region}" for region in REGIONAL_BEDROCK_REGIONS)

CONTEXT: dict[str, Any] = {
    "skipBundling": True,
    "region": HOME_REGION,
    "allowedOrigins": ORIGINS,
    "connectedAccounts": CONNECTED_ACCOUNTS,
    "senderEmail": SENDER,
    "apiRateLimit": RATE_LIMIT,
    "apiBurstLimit": BURST_LIMIT,
    "callerRateLimit": CALLER_LIMIT,
    "healthRateLimit": HEALTH_LIMIT,
    "ipRateLimit": IP_LIMIT,
    "rateWindowSeconds": RATE_WINDOW,
    "platformEventBusArn": PLATFORM_BUS,
}


@dataclass
class Synthesized:
    outdir: Path
    templates: dict[str, dict[str, Any]]
    error: str | None
    stacks: dict[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> dict[str, Any]:
        return self.templates["Tunelab"]

    @property
    def connector(self) -> dict[str, Any]:
        return self.templates["TunelabConnector"]


def synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    from infra.app import build_app  # noqa: PLC0415  # jsii starts only when a test needs the app

    app = build_app(context, outdir=str(outdir))
    error = None
    try:
        app.synth()
    except RuntimeError as exc:  # a failed validation (nag) raises after the templates are written
        error = str(exc)
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return Synthesized(outdir=outdir, templates=templates, error=error)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"), CONTEXT)


# Two more configurations, each synthesized once, only for the tests of the Bedrock regions.
@pytest.fixture(scope="session")
def synthesized_in_us_east_1(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Home in us-east-1, where Amazon Nova trains: only the other regions get a stack."""
    return synthesize(tmp_path_factory.mktemp("cdk.out.us-east-1"), {**CONTEXT, "region": "us-east-1"})


@pytest.fixture(scope="session")
def synthesized_narrowed(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The home region with `bedrockRegions` narrowed to us-west-2 (e.g. for data residency)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out.narrowed"), {**CONTEXT, "bedrockRegions": "us-west-2"})


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == type_}


def only(template: dict[str, Any], type_: str, prefix: str = "") -> tuple[str, dict[str, Any]]:
    found = [(k, v) for k, v in resources(template, type_).items() if k.startswith(prefix)]
    assert len(found) == 1, f"expected one {type_} starting {prefix!r}, found {[k for k, _ in found]}"
    return found[0]


def logical_id(template: dict[str, Any], type_: str, prefix: str) -> str:
    return only(template, type_, prefix)[0]


def statements_of_role(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to a role (inline and AWS::IAM::Policy)."""
    found: list[dict[str, Any]] = []
    role = template["Resources"][role_id]
    for policy in role["Properties"].get("Policies", []):
        found += policy["PolicyDocument"]["Statement"]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions_on(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Action → the resources it is allowed on, over all Allow statements."""
    allowed: dict[str, list[Any]] = {}
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        for action in as_list(statement["Action"]):
            allowed.setdefault(action, []).extend(as_list(statement.get("Resource", [])))
    return allowed


def render(value: Any) -> str:
    """An intrinsic-function value as readable text: `${Ref}` / `${Id.Attr}` for references."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return "${" + str(arg) + "}"
        if key == "Fn::GetAtt":
            return "${" + ".".join(as_list(arg)) + "}"
        if key == "Fn::Join":
            return str(arg[0]).join(render(part) for part in arg[1])
        if key == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
        if key == "Fn::Select":
            return "${Select(" + render(arg[1]) + ")}"
        if key == "Fn::Split":
            return "${Split(" + render(arg[1]) + ")}"
        if key == "Fn::FindInMap":
            return "${Map(" + ",".join(render(part) for part in arg) + ")}"
        if key == "Fn::If":
            return "${If(" + ",".join(render(part) for part in arg[1:]) + ")}"
    return json.dumps(value, sort_keys=True)
