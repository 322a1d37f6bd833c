"""`tunelab-admin plan`: the operator's path to a workspace's plan, under moto; the API follows it."""

from __future__ import annotations

import pytest

from tests.integration.apigw import api_event, call, claims_for
from tests.integration.conftest import Aws
from tunelab.composition.wiring import Services
from tunelab.entrypoints.admin import main

pytestmark = pytest.mark.moto


def test_the_operator_sets_a_plan_the_api_then_shows(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    before = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-acme")))
    assert before.body["plan"] == "pay_as_you_go"

    code = main(["plan", "set", "--table", aws.table_name, "--workspace", "ws-acme", "--plan", "internal"])

    assert code == 0
    assert capsys.readouterr().out.strip() == "Workspace ws-acme is on the internal plan."
    assert Services().workspaces.get("ws-acme").plan == "internal"
    after = call(api_event("GET", "/v1/workspace", claims=claims_for("ws-acme", email="bob@example.com")))
    assert (after.body["plan"], after.body["byok_allowed"]) == ("internal", True)
    assert main(["plan", "show", "--table", aws.table_name, "--workspace", "ws-acme"]) == 0
    assert capsys.readouterr().out.strip() == "internal"


def test_bad_values_are_refused_with_what_is_wrong(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as unknown_plan:
        main(["plan", "set", "--table", aws.table_name, "--workspace", "ws-acme", "--plan", "platinum"])
    assert unknown_plan.value.code == 2
    assert "invalid choice: 'platinum'" in capsys.readouterr().err

    bad_id = main(["plan", "set", "--table", aws.table_name, "--workspace", "ws/../x", "--plan", "trial"])
    missing = main(["plan", "show", "--table", aws.table_name, "--workspace", "ws-nobody"])
    no_table = main(["plan", "show", "--table", "no-such-table", "--workspace", "ws-acme"])

    err = capsys.readouterr().err
    assert (bad_id, missing, no_table) == (2, 2, 1)
    assert "not a workspace id" in err
    assert "There is no workspace 'ws-nobody'" in err
    assert "could not reach the table no-such-table" in err


def test_the_list_index_backfill_reports_what_it_gave(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lists", "backfill", "--table", aws.table_name]) == 0
    assert capsys.readouterr().out.strip() == "0 models, datasets and connections got their index keys."
