"""Workspace plans in the local runtime: the operator's own settings, as `tunelab-admin plan` sets them
on AWS.

`tunelab local token --plan P` is the local runtime's operator path: it records the plan in the data
dir (`workspace-plans.json`, 0600 in the 0700 data dir, so only the operator writes it) and, when a
runtime runs on that data dir, gives the workspace the plan at once through its AWS endpoint (with
the run's own credentials); a runtime applies every recorded plan when it starts. A token never
carries a plan: the API ignores such a claim. A workspace with no recorded plan gets the runtime's
default (`paths.DEFAULT_LOCAL_PLAN`, subscription).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.application.workspaces import set_plan
from tunelab.composition.wiring import operator_workspaces
from tunelab.domain.identity import PLANS
from tunelab.local.aws_access import AwsAccess
from tunelab.local.files import read_private_file, write_private_file
from tunelab.local.paths import DEFAULT_LOCAL_PLAN, records_table

PLANS_FILE = "workspace-plans.json"


def recorded_plans(data_dir: Path) -> dict[str, str]:
    """The plans recorded for the data dir's workspaces (none recorded: empty)."""
    path = data_dir / PLANS_FILE
    if not path.exists():
        return {}
    data = json.loads(read_private_file(path))
    return {str(k): str(v) for k, v in data.items() if v in PLANS} if isinstance(data, dict) else {}


def record_plan(data_dir: Path, workspace: str, plan: str) -> None:
    """Record `plan` for `workspace` (the caller checked both)."""
    plans = {**recorded_plans(data_dir), workspace: plan}
    write_private_file(data_dir / PLANS_FILE, json.dumps(plans, indent=2, sort_keys=True) + "\n")


def apply_plans(access: AwsAccess, plans: dict[str, str], *, table_name: str | None = None) -> None:
    """Give each workspace its recorded plan in the runtime that `access` reaches."""
    workspaces = operator_workspaces(
        table_name or records_table(), session=access.session(), endpoint_url=access.endpoint_url
    )
    for workspace, plan in sorted(plans.items()):
        set_plan(workspaces, workspace, plan, default_plan=DEFAULT_LOCAL_PLAN)
