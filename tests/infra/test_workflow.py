"""Workflow: state machines from the shared ASL files, their task references, logs and tracing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.config import REPO_ROOT
from tests.infra.conftest import Synthesized, actions_on, render, resources, statements_of_role
from tunelab.composition.stack_definitions import (
    STATE_MACHINES,
    StateMachineSpec,
    placeholders,
    state_machine_variables,
)

pytestmark = pytest.mark.xdist_group("infra")

WORKFLOWS = REPO_ROOT / "shared" / "tunelab" / "composition" / "state_machines"


def machine(template: dict[str, Any], spec: StateMachineSpec) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key, value)
        for key, value in resources(template, "AWS::StepFunctions::StateMachine").items()
        if value["Properties"]["StateMachineName"] == f"Tunelab-{spec.name_suffix}"
    ]
    return found


@pytest.mark.parametrize("spec", STATE_MACHINES, ids=lambda s: s.name_suffix)
def test_state_machine_is_standard_logs_without_execution_data_and_traces(
    synthesized: Synthesized, spec: StateMachineSpec
) -> None:
    _, value = machine(synthesized.platform, spec)
    props = value["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False


@pytest.mark.parametrize("spec", STATE_MACHINES, ids=lambda s: s.name_suffix)
def test_every_placeholder_is_filled_and_the_role_invokes_exactly_the_tasks_functions(
    synthesized: Synthesized, spec: StateMachineSpec
) -> None:
    template = synthesized.platform
    _, value = machine(template, spec)
    props = value["Properties"]
    used = placeholders((WORKFLOWS / spec.asl_file).read_text())
    substitutions = props.get("DefinitionSubstitutions", {})
    assert set(substitutions) == used
    definition = render(props["DefinitionString"])
    assert not (set(re.findall(r"\$\{([A-Za-z]+)\}", definition)) - used), "an unfilled placeholder"
    variables = state_machine_variables()
    expected_functions = set()
    for name in used:
        target = variables[name]
        if name.endswith("FunctionArn"):
            assert substitutions[name]["Fn::GetAtt"][0].startswith(f"Functions{target}")
            expected_functions.add(render(substitutions[name]))
    role_id = props["RoleArn"]["Fn::GetAtt"][0]
    granted = actions_on(statements_of_role(template, role_id))
    assert {render(r) for r in granted.get("lambda:InvokeFunction", [])} == expected_functions
    if "TableName" in used:
        assert {"dynamodb:UpdateItem", "dynamodb:GetItem"} <= set(granted)


def test_definitions_parse_and_every_lambda_task_times_out_and_retries() -> None:
    for spec in STATE_MACHINES:
        definition = json.loads((WORKFLOWS / spec.asl_file).read_text())
        for name, state in definition["States"].items():
            if state["Type"] == "Task" and "lambda:invoke" in state["Resource"]:
                assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name


def build_workflow(tmp_path: Path, asl: dict[str, Any] | None) -> Any:
    """A small app with only the workflow construct, over a definition written to tmp_path (or none)."""
    from aws_cdk import App, Stack  # noqa: PLC0415
    from aws_cdk import aws_lambda as lambda_  # noqa: PLC0415

    from infra.capabilities.workflow import Workflow  # noqa: PLC0415

    if asl is not None:
        (tmp_path / "fine_tuning.asl.json").write_text(json.dumps(asl))
    stack = Stack(App(), "Probe")
    fn = lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(e, c): pass"),
    )
    Workflow(
        stack,
        "Workflow",
        stack_name="Probe",
        workflows_dir=tmp_path,
        functions={"Notify": fn},
        resource_values={},
        resource_statements={},
        specs=(STATE_MACHINES[0],),
    )
    return stack


def test_a_placeholder_the_stack_cannot_fill_fails_synth(tmp_path: Path) -> None:
    from infra.capabilities.workflow import UnknownPlaceholderError  # noqa: PLC0415

    asl = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Task", "Resource": "${NoSuchFunctionArn}", "TimeoutSeconds": 5, "End": True}
        },
    }
    with pytest.raises(UnknownPlaceholderError, match="NoSuchFunctionArn"):
        build_workflow(tmp_path, asl)


def test_a_missing_definition_leaves_its_state_machine_out_with_a_warning(tmp_path: Path) -> None:
    from aws_cdk.assertions import Annotations, Match, Template  # noqa: PLC0415

    stack = build_workflow(tmp_path, None)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::StepFunctions::StateMachine", 0)
    Annotations.from_stack(stack).has_warning("*", Match.string_like_regexp("does not exist"))
