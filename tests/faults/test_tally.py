"""The suite's figures add up across workers and print what a reader needs."""

from __future__ import annotations

from tests.faults.tally import Tally


def test_figures_add_up_across_workers_and_name_each_fault_kind() -> None:
    one, two, total = Tally(), Tally(), Tally()
    one.injected("s3 5xx", 3)
    one.outcome()
    two.injected("s3 5xx", 2)
    two.injected("sigkill mid-training")
    two.outcome(transient=1)
    total.add(one.to_json())
    total.add(two.to_json())
    text = "\n".join(total.lines())
    assert total.faults["s3 5xx"] == 5
    assert "fault cases settled: 2" in text
    assert "sigkill mid-training" in text
    assert total.outcomes["transient"] == 1
