"""`GET /v1/fine-tuned-models/{name}/evaluation` over the API handler (moto), with a provider double that
holds the job's report; the model's details carry the summary. The real trainer's report is tested end to
end in the local runtime (tests/e2e)."""

from __future__ import annotations

import pytest

from tests.integration.api_support import (
    WS,
    Api,
    api_fixture,  # noqa: F401  # the `api` fixture
)
from tests.integration.handler_support import RecordingProvider
from tests.integration.test_api_checkpoints import _created, _double
from tunelab.domain.evaluation import EvaluationReport, EvaluationSample, EvaluationScores, EvaluationSkipped
from tunelab.domain.providers import TrainingJobRef
from tunelab.domain.records import ModelChanges
from tunelab.domain.status import ModelStatus

pytestmark = pytest.mark.moto

REPORT = EvaluationReport(
    rows=40,
    validation_rows=40,
    max_new_tokens=24,
    base=EvaluationScores(exact_match=0.1, token_f1=0.3, format_match=0.25),
    fine_tuned=EvaluationScores(exact_match=0.8, token_f1=0.9, format_match=1.0),
    samples=[EvaluationSample(prompt="p", expected="a=b", base="no idea", fine_tuned="a=b")],
)


class EvaluationDouble(RecordingProvider):
    """A provider double whose job wrote `REPORT`."""

    def evaluation_report(self, ref: TrainingJobRef) -> EvaluationReport | EvaluationSkipped | None:
        self._call("evaluation_report", ref)
        return REPORT


@pytest.fixture
def double(api: Api) -> EvaluationDouble:
    return _double(api, EvaluationDouble("bedrock"))


def _trained(api: Api, name: str) -> None:
    _created(api, name)
    record = api.repo.models.get(WS, name)
    training = record.training.model_copy(update={"evaluation": REPORT.summary()})
    api.repo.models.transition(
        WS, name, {ModelStatus.TRAINING}, ModelStatus.NOT_DEPLOYED, ModelChanges(training=training)
    )


def test_a_trained_model_shows_its_summary_and_the_report_is_served(
    api: Api, double: EvaluationDouble
) -> None:
    _trained(api, "support-bot-v1")

    details = api.call("GET", "/v1/fine-tuned-models/support-bot-v1").body
    assert details["evaluation"]["base"] == {"exact_match": 0.1, "token_f1": 0.3, "format_match": 0.25}
    assert details["evaluation"]["headline"].startswith(
        "exact match 10 % → 80 % on 40 validation rows (token F1 0.30 → 0.90, format 25 % → 100 %)"
    )
    answer = api.call("GET", "/v1/fine-tuned-models/support-bot-v1/evaluation")
    assert answer.status == 200
    assert answer.body["rows"] == 40
    assert answer.body["fine_tuned"]["exact_match"] == 0.8
    assert answer.body["samples"] == [
        {"prompt": "p", "expected": "a=b", "base": "no idea", "fine_tuned": "a=b"}
    ]


def test_while_training_the_evaluation_is_a_404_that_says_why(api: Api, double: EvaluationDouble) -> None:
    _created(api, "support-bot-v2")

    answer = api.call("GET", "/v1/fine-tuned-models/support-bot-v2/evaluation")
    assert answer.status == 404
    assert answer.body["error"]["code"] == "not_found"
    assert "still training" in answer.body["error"]["message"]
    assert api.call("GET", "/v1/fine-tuned-models/nobody/evaluation").status == 404


def test_the_openapi_document_has_the_evaluation_route(api: Api) -> None:
    paths = api.call("GET", "/v1/openapi.json").body["paths"]
    operation = paths["/v1/fine-tuned-models/{name}/evaluation"]["get"]
    assert operation["operationId"] == "getFineTunedModelEvaluation"
