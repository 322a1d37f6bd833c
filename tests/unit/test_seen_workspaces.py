"""The API container's memory of the workspaces it has entered (`composition.wiring.SeenWorkspaces`):
most requests cost no write, a plan claim that differs always reaches the store, and what another
container wrote is not hidden for long."""

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

    def ensure(self, workspace: str, *, plan: Plan | None, default_plan: Plan) -> WorkspaceRecord:
        self.ensured += 1
        return super().ensure(workspace, plan=plan, default_plan=default_plan)


def test_a_workspace_is_ensured_once_while_its_plan_claim_stays_the_same() -> None:
    store, ticks = CountingWorkspaces(), [0.0]
    seen = SeenWorkspaces(store, ttl_s=300, clock=lambda: ticks[0])

    for _ in range(5):
        assert seen.ensure("ws-acme", plan=None, default_plan="trial").plan == "trial"
        assert seen.ensure("ws-acme", plan="trial", default_plan="trial").plan == "trial"

    assert store.ensured == 1


def test_a_new_plan_claim_reaches_the_store_and_back_again() -> None:
    store = CountingWorkspaces()
    seen = SeenWorkspaces(store, ttl_s=300, clock=lambda: 0.0)

    plans = [
        seen.ensure("ws-acme", plan=plan, default_plan="pay_as_you_go").plan
        for plan in ("trial", "subscription", "trial")
    ]

    assert plans == ["trial", "subscription", "trial"]
    assert store.get("ws-acme").plan == "trial"
    assert store.ensured == 3


def test_what_is_remembered_expires() -> None:
    store, ticks = CountingWorkspaces(), [0.0]
    seen = SeenWorkspaces(store, ttl_s=300, clock=lambda: ticks[0])
    seen.ensure("ws-acme", plan=None, default_plan="trial")
    # Another container changed the plan; this one learns it once its memory has expired.
    store.ensure("ws-acme", plan="subscription", default_plan="trial")
    ticks[0] = 299.0
    assert seen.ensure("ws-acme", plan=None, default_plan="trial").plan == "trial"
    ticks[0] = 301.0
    assert seen.ensure("ws-acme", plan=None, default_plan="trial").plan == "subscription"
