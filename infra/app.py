"""The CDK app: the platform stack, a stack in each other Bedrock region, and the BYOK connector stack
(`cdk synth` runs this file)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by the CDK CLI: import from the repository's root
    _here = Path(__file__).resolve().parent
    # The script's own folder must not shadow libraries (`infra/` is not a top-level package).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path[:0] = [str(_here.parent), str(_here.parent / "shared")]

from aws_cdk import App

from infra.bedrock_region_stack import BedrockRegionStack
from infra.config import ConnectorConfig, PlatformConfig, load_cdk_json_context
from infra.connector_stack import ConnectorStack
from infra.nag import add_rule_packs
from infra.stack import TunelabStack


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> App:
    """The app with its stacks and the nag rule packs; `context` overrides cdk.json's context."""
    merged = {**load_cdk_json_context(), **(context or {})}
    app = App(context=merged, outdir=outdir)
    values = _context(app)
    platform = PlatformConfig.model_validate({k: v for k, v in values.items() if v is not None})
    connector = ConnectorConfig.model_validate({k: v for k, v in values.items() if v is not None})
    TunelabStack(app, platform.stack_name, config=platform)
    for region in platform.regional_bedrock_regions:
        BedrockRegionStack(
            app, platform_stack_name=platform.stack_name, home_region=platform.region, region=region
        )
    ConnectorStack(app, connector.stack_name, config=connector)
    add_rule_packs(app)
    return app


def _context(app: App) -> dict[str, Any]:
    # The app's context holds cdk.json's, `-c key=value`'s and `context`'s values, merged by CDK.
    keys = {
        field.alias for model in (PlatformConfig, ConnectorConfig) for field in model.model_fields.values()
    }
    return {key: app.node.try_get_context(key) for key in keys if key}


def main() -> None:
    build_app().synth()


if __name__ == "__main__":
    main()
