"""The API container's memory of the workspaces it has entered (`composition.wiring.SeenWorkspaces`):
most requests cost no store call, a plan the operator sets through this process is followed at once,
and what another process wrote is not hidden for long."""

from __future__ import annotations

from tests.fakes.context import Clock
from tests.fakes.stores import MemoryTable, MemoryWorkspaces
from tunelab.composition.wiring import SeenWorkspaces
from tunelab.domain.identity import Plan
from tunelab.domain.records import WorkspaceRecord


class CountingWorkspaces(MemoryWorkspaces):
    def __init__(self) -> None:
        super().__init__(MemoryTable(Clock()))
        self.ensured = 0

    def ensure(self, workspace: str, *, default_plan: Plan) -> WorkspaceRecord:
        self.ensured += 1
        return super().ensure(workspace, default_plan=default_plan)


def test_a_workspace_is_ensured_once_while_remembered() -> None:
    store, ticks = CountingWorkspaces(), [0.0]
    seen = SeenWorkspaces(store, ttl_s=300, clock=lambda: ticks[0])

    for _ in range(5):
        assert seen.ensure("ws-acme", default_plan="trial").plan == "trial"

    assert store.ensured == 1


def test_a_plan_set_through_it_is_followed_at_once() -> None:
    store = CountingWorkspaces()
    seen = SeenWorkspaces(store, ttl_s=300, clock=lambda: 0.0)
    seen.ensure("ws-acme", default_plan="pay_as_you_go")

    seen.set_plan("ws-acme", "subscription", default_plan="pay_as_you_go")

    assert seen.ensure("ws-acme", default_plan="pay_as_you_go").plan == "subscription"
    assert store.get("ws-acme").plan == "subscription"


def test_what_is_remembered_expires() -> None:
    store, ticks = CountingWorkspaces(), [0.0]
    seen = SeenWorkspaces(store, ttl_s=300, clock=lambda: ticks[0])
    seen.ensure("ws-acme", default_plan="trial")
    # An operator changed the plan through another process; this one learns it once its memory expired.
    store.set_plan("ws-acme", "subscription", default_plan="trial")
    ticks[0] = 299.0
    assert seen.ensure("ws-acme", default_plan="trial").plan == "trial"
    ticks[0] = 301.0
    assert seen.ensure("ws-acme", default_plan="trial").plan == "subscription"
