"""cdk-nag (AwsSolutions, Serverless) with no unacknowledged finding; cfn-lint with no error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra.config import REPO_ROOT
from infra.nag import acknowledgements, render_acknowledgements
from tests.infra.conftest import REGIONAL_STACKS, Synthesized

pytestmark = pytest.mark.xdist_group("infra")

ACKNOWLEDGEMENTS_FILE = REPO_ROOT / "infra" / "NAG_ACKNOWLEDGEMENTS.md"


def test_rule_packs_report_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    # The packs run on every stack of the app: the platform, the connector and each regional stack
    assert set(synthesized.templates) == {"Tunelab", "TunelabConnector", *REGIONAL_STACKS}
    report_file = synthesized.outdir / "validation-report.json"
    errors = []
    if report_file.exists():
        report = json.loads(report_file.read_text())
        errors = [
            f"{violation['ruleName']}: {[c['constructPath'] for c in violation['violatingConstructs']]}"
            for plugin in report["pluginReports"]
            for violation in plugin["violations"]
            if violation["severity"] == "error"
        ]
    assert errors == []
    assert synthesized.error is None


def test_every_acknowledgement_is_scoped_reasoned_and_documented(synthesized: Synthesized) -> None:
    rows = acknowledgements(synthesized.outdir)
    assert rows
    for path, rule, reason in rows:
        # CloudFormation's own validation reports template-level findings on the stack.
        if not rule.startswith("CloudFormation-Validate::"):
            assert path.count("/") >= 2, f"{rule} acknowledged on a whole stack: {path}"
        assert len(reason) > 30, f"{rule} on {path}: no real reason"
        if "IAM5" in rule:
            assert "[Resource::" in rule, f"{rule} on {path} is not limited to its findings (applies_to)"
    expected = render_acknowledgements(rows)
    if os.environ.get("TUNELAB_WRITE_NAG_ACKNOWLEDGEMENTS") == "1":
        ACKNOWLEDGEMENTS_FILE.write_text(expected)
    assert ACKNOWLEDGEMENTS_FILE.read_text() == expected, (
        "infra/NAG_ACKNOWLEDGEMENTS.md is out of date: rerun this test with "
        "TUNELAB_WRITE_NAG_ACKNOWLEDGEMENTS=1 and review the difference"
    )


def test_every_acknowledgement_suppresses_a_finding(synthesized: Synthesized) -> None:
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    used = {
        ("/" + suppressed["acknowledgedAt"], suppressed["acknowledgedId"])
        for plugin in report["pluginReports"]
        for suppressed in plugin.get("suppressedViolations", [])
    }
    stale = [
        (path, rule) for path, rule, _ in acknowledgements(synthesized.outdir) if (path, rule) not in used
    ]
    assert stale == []


@pytest.mark.parametrize("stack", ["Tunelab", "TunelabConnector", *REGIONAL_STACKS])
def test_cfn_lint_finds_no_error(synthesized: Synthesized, stack: str) -> None:
    from cfnlint.api import lint_file  # noqa: PLC0415  # heavy import, only here

    matches = lint_file(Path(synthesized.outdir / f"{stack}.template.json"))
    errors = [f"{m.rule.id} {m.message} ({m.linenumber})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
