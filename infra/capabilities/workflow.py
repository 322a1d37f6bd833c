"""Workflow: Standard state machines built from the shared ASL definitions.

Each definition names its Lambda tasks with `${<Function>FunctionArn}` placeholders (and may use
the resource placeholders of `STATE_MACHINE_RESOURCE_VARIABLES`). The state machine's role may
invoke exactly the functions its definition names. A placeholder that names nothing fails synth:
CloudFormation would otherwise deploy the literal `${...}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Annotations, Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.capabilities.functions import RETENTION
from infra.nag import acknowledge
from tunelab.composition.stack_definitions import (
    STATE_MACHINES,
    StateMachineSpec,
    placeholders,
    state_machine_variables,
)


class UnknownPlaceholderError(ValueError):
    """An ASL definition uses a `${...}` placeholder the stack cannot fill."""


class Workflow(Construct):
    """`state_machines[logical_id]`; definitions not (yet) in `workflows_dir` are skipped with a warning."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stack_name: str,
        workflows_dir: Path,
        functions: Mapping[str, lambda_.IFunction],
        resource_values: Mapping[str, str],
        resource_statements: Mapping[str, iam.PolicyStatement],
        specs: tuple[StateMachineSpec, ...] = STATE_MACHINES,
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_machines: dict[str, sfn.StateMachine] = {}
        self.roles: dict[str, iam.Role] = {}
        variables = state_machine_variables()
        for spec in specs:
            path = workflows_dir / spec.asl_file
            if not path.exists():
                Annotations.of(self).add_warning_v2(
                    f"tunelab:workflow-missing:{spec.logical_id}",
                    f"{path} does not exist: state machine {spec.logical_id} is left out of this synth.",
                )
                continue
            used = placeholders(path.read_text())
            unknown = sorted(used - set(variables))
            if unknown:
                raise UnknownPlaceholderError(
                    f"{path.name} uses placeholders the stack does not define: {unknown}; "
                    f"known: {sorted(variables)}"
                )
            substitutions: dict[str, str] = {}
            invoked: list[lambda_.IFunction] = []
            for name in sorted(used):
                target = variables[name]
                if target in functions:
                    substitutions[name] = functions[target].function_arn
                    invoked.append(functions[target])
                else:
                    substitutions[name] = resource_values[name]
            self._add(
                spec=spec,
                name=f"{stack_name}-{spec.name_suffix}",
                path=path,
                substitutions=substitutions,
                invoked=invoked,
                statements=[resource_statements[n] for n in sorted(used) if n in resource_statements],
            )

    def _add(
        self,
        *,
        spec: StateMachineSpec,
        name: str,
        path: Path,
        substitutions: dict[str, str],
        invoked: list[lambda_.IFunction],
        statements: list[iam.PolicyStatement],
    ) -> None:
        role = iam.Role(
            self,
            f"{spec.logical_id}Role",
            assumed_by=iam.ServicePrincipal(
                "states.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        if invoked:
            # Exactly the unqualified ARNs the definition names (no `:*` version wildcard).
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[fn.function_arn for fn in invoked]
                )
            )
        for statement in statements:
            role.add_to_policy(statement)
        log_group = logs.LogGroup(
            self,
            f"{spec.logical_id}Logs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            self,
            spec.logical_id,
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            # Inline (not an S3 asset): the template shows the definition and cfn-lint checks it.
            definition_body=sfn.DefinitionBody.from_string(path.read_text()),
            definition_substitutions=substitutions,
            role=role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Step Functions' log delivery (logs:*LogDelivery*, DescribeLogGroups, resource policies) and "
            "X-Ray tracing support no resource-level permissions.",
            applies_to=("Resource::*",),
        )
        self.state_machines[spec.logical_id] = machine
        self.roles[spec.logical_id] = role
