"""Over HTTP in the local runtime: the estimate answers the whole plan and a quote, a job starts only
at the quoted plan and price (or under a maximum), a cloud model is priced but not runnable here, and
a trained model is cloned with a change — each job really training the tiny model."""

from __future__ import annotations

from typing import Any

from tests.e2e import jobs
from tests.e2e.conftest import LocalApi

NOVA = "amazon.nova-micro-v1:0:128k"


def _estimate(local: LocalApi, body: dict[str, Any]) -> dict[str, Any]:
    answer = local.call("POST", "/v1/cost-estimates", json=body)
    assert answer.status_code == 200, answer.text
    estimate: dict[str, Any] = answer.json()
    return estimate


def test_a_quote_starts_exactly_its_plan_and_a_clone_retrains_with_a_change(local: LocalApi) -> None:
    dataset = jobs.upload(local, rows=24)
    name = jobs.unique("quoted")
    body = {k: v for k, v in jobs.quick_job(name, dataset["id"], epochs=2).items() if k != "acknowledge"}

    estimate = _estimate(local, body)
    plan = estimate["plan"]
    assert estimate["runnable"] is True
    assert (plan["base_model_id"], plan["provider"]) == (jobs.TINY, "local")
    assert plan["hyperparameters"]["epochs"] == 2
    assert plan["optional_hyperparameters"]["sft_config"]["logging_steps"] == 2
    assert estimate["total_usd"] == 0
    assert estimate["quote_id"].startswith("q1.")

    # Another plan under the quote: refused, nothing started.
    changed = {**body, "hyperparameters": {**body["hyperparameters"], "epochs": 3}}
    refused = local.call(
        "POST",
        "/v1/fine-tuned-models",
        json={**changed, "acknowledge": True, "quote_id": estimate["quote_id"]},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"][0]["field"] == "quote_id"
    assert local.call("GET", f"/v1/fine-tuned-models/{name}").status_code == 404

    # The quoted plan starts and trains.
    started = jobs.create(local, {**body, "acknowledge": True, "quote_id": estimate["quote_id"]})
    assert started["hyperparameters"]["epochs"] == 2
    trained = jobs.wait_status(local, name, {"training"})
    assert trained["status"] == "not_deployed", trained

    # The clone: its estimate first, then it starts with the source's request and one change.
    clone = f"{name}-c"
    asked = local.call(
        "POST", f"/v1/fine-tuned-models/{name}/clone", json={"name": clone, "hyperparameters": {"epochs": 1}}
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["plan"]["hyperparameters"]["epochs"] == 1
    assert local.call("GET", f"/v1/fine-tuned-models/{clone}").status_code == 404
    cloned = local.call(
        "POST",
        f"/v1/fine-tuned-models/{name}/clone",
        json={
            "name": clone,
            "hyperparameters": {"epochs": 1},
            "acknowledge": True,
            "quote_id": asked.json()["quote_id"],
        },
    )
    assert cloned.status_code == 202, cloned.text
    done = jobs.wait_status(local, clone, {"training"})
    assert done["status"] == "not_deployed", done
    assert done["hyperparameters"]["epochs"] == 1
    assert done["dataset"]["id"] == dataset["id"]
    assert done["optional_hyperparameters"] == trained["optional_hyperparameters"]
    # It really trained its own job: 24 rows / batch 8 = 3 steps for its one epoch.
    assert done["training"]["metrics"]["step"] == 3
    assert trained["training"]["metrics"]["step"] == 6


def test_a_cloud_model_is_priced_here_but_not_runnable_and_a_maximum_is_kept(local: LocalApi) -> None:
    dataset = jobs.upload(local, rows=24)
    cloud = _estimate(local, {"base_model_id": NOVA, "dataset_id": dataset["id"]})
    assert cloud["runnable"] is False
    assert "local runtime" in cloud["unrunnable_reason"]
    assert cloud["quote_id"] is None
    # Priced at Bedrock's figures all the same: the trained tokens, a month of storage.
    assert cloud["training"]["trained_tokens"] > 0
    assert cloud["storage_per_month_usd"] > 0

    name = jobs.unique("capped")
    over = local.call(
        "POST",
        "/v1/fine-tuned-models",
        json={**jobs.quick_job(name, dataset["id"], base_model_id=NOVA), "max_total_usd": 0.0},
    )
    assert over.status_code == 400  # a cloud model: refused for what it is, before any price
    assert over.json()["error"]["details"][0]["field"] == "base_model_id"
    # A local job costs nothing: any maximum lets it start.
    started = jobs.create(local, {**jobs.quick_job(name, dataset["id"]), "max_total_usd": 0.0})
    assert started["status"] == "training"
    assert jobs.wait_status(local, name, {"training"})["status"] == "not_deployed"
