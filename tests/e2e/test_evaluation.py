"""Did the fine-tuning help? Over HTTP on the local runtime, with real training and real generations: a
tiny model trained on the triage rows is evaluated against its random base on the 40 validation rows,
the scores reach the model's details, `GET .../evaluation`, the CLI and the training email."""

from __future__ import annotations

import email
import email.policy

import pytest

from tests.e2e.conftest import LocalApi, wait_for
from tests.e2e.jobs import TINY, create, csv_of, outbox_messages, unique, upload, wait_status
from tunelab.client.demo import sample_rows

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]


def _emails(local: LocalApi, subject: str) -> list[str]:
    """The plain-text bodies of the outbox's emails whose subject has `subject`."""
    found = []
    for path in outbox_messages(local):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if subject in str(message["Subject"]):
            body = message.get_body(preferencelist=("plain",))
            found.append(body.get_content() if body is not None else "")
    return found


def _validation_dataset(local: LocalApi) -> str:
    answer = local.call(
        "POST",
        "/v1/datasets",
        params={"name": unique("held-out")},
        content=csv_of(sample_rows("support-triage-validation.csv")),
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["rows"] == 40
    return str(answer.json()["id"])


def test_a_model_that_learned_the_task_scores_higher_than_its_base_on_the_same_rows(local: LocalApi) -> None:
    train = upload(local, rows=200)
    name = unique("evaluated")
    create(
        local,
        {
            "name": name,
            "base_model_id": TINY,
            "dataset_id": train["id"],
            "validation": {"mode": "dataset", "dataset_id": _validation_dataset(local)},
            # The tiny model's demo plan: enough for a random model to learn the labels' patterns.
            "hyperparameters": {"epochs": 8, "learning_rate": 0.01, "batch_size": 8},
            "optional_hyperparameters": {"evaluation_config": {"samples": 40}},
            "acknowledge": True,
        },
    )
    trained = wait_status(local, name, {"training", "stopping_training"})
    assert trained["status"] == "not_deployed", trained["training"]

    # The model's details carry the summary ...
    summary = trained["evaluation"]
    assert summary is not None, trained.get("evaluation_note")
    assert summary["rows"] == 40
    assert summary["fine_tuned"]["exact_match"] > summary["base"]["exact_match"]
    assert summary["fine_tuned"]["token_f1"] > summary["base"]["token_f1"]
    assert summary["headline"].startswith("exact match ")

    # ... and the whole report holds every row's answers, from which the scores are computed.
    answer = local.call("GET", f"/v1/fine-tuned-models/{name}/evaluation")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert len(report["samples"]) == 40
    right = [s for s in report["samples"] if s["fine_tuned"].strip() == s["expected"].strip()]
    assert report["fine_tuned"]["exact_match"] == pytest.approx(len(right) / 40, abs=1e-4)
    base_right = [s for s in report["samples"] if s["base"].strip() == s["expected"].strip()]
    assert report["base"]["exact_match"] == pytest.approx(len(base_right) / 40, abs=1e-4)
    assert report["decoding"] == "greedy"

    # The training email states the headline.
    ready = wait_for(lambda: _emails(local, f"{name} is ready"), timeout=60, what="the training email")
    assert f"Evaluation, base model → fine-tuned: {summary['headline']}." in ready[-1]

    local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})
