"""The wider optional hyperparameters over HTTP on the local runtime: a tiny-model job with several of
them trains to not_deployed and shows them in its details; a bad one is refused naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import LocalApi
from tests.e2e.jobs import create, quick_job, unique, upload, wait_status

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

OPTIONS: dict[str, Any] = {
    "use_lora": True,
    "lora_config": {"use_rslora": True, "use_dora": True},
    "sft_config": {
        "logging_steps": 2,
        "lr_scheduler_type": "cosine",
        "weight_decay": 0.01,
        "max_grad_norm": 0.5,
        "max_length": 256,
        "neftune_noise_alpha": 5,
        "seed": 7,
        "save_total_limit": 1,
    },
}


def test_a_job_with_the_wider_options_trains_and_shows_them(local: LocalApi) -> None:
    # Given a dataset and a request with several of the new options
    dataset = upload(local, rows=16)
    name = unique("options")

    # When the job is created and trains
    create(local, quick_job(name, dataset["id"], optional_hyperparameters=OPTIONS))
    model = wait_status(local, name, {"training", "stopping_training"})

    # Then it ends trained, and its details show the options as it ran them
    assert model["status"] == "not_deployed", model
    shown = model["optional_hyperparameters"]
    assert (shown["lora_config"]["use_rslora"], shown["lora_config"]["use_dora"]) == (True, True)
    assert {k: shown["sft_config"][k] for k in OPTIONS["sft_config"]} == OPTIONS["sft_config"]
    # and the defaults of the options it did not set
    assert (shown["sft_config"]["packing"], shown["sft_config"]["gradient_checkpointing"]) == (False, False)
    assert shown["sft_config"]["save_strategy"] == "epoch"
    # The trainer got max_length and seed as its own hyperparameters.
    handed = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in (local.data_dir / "jobs").glob("*/input/config/hyperparameters.json")
    ]
    ours = [h for h in handed if json.loads(h.get("sft_config", "{}")).get("neftune_noise_alpha") == 5]
    assert len(ours) == 1
    assert (ours[0]["max_length"], ours[0]["seed"]) == ("256", "7")

    local.call("DELETE", f"/v1/fine-tuned-models/{name}", params={"acknowledge": "true"})


def test_a_bad_option_is_refused_naming_the_field_and_the_range(local: LocalApi) -> None:
    dataset = upload(local, rows=16)
    body = quick_job(
        unique("bad-options"),
        dataset["id"],
        optional_hyperparameters={"sft_config": {"weight_decay": 2, "num_train_epochs": 3}},
    )

    answer = local.call("POST", "/v1/fine-tuned-models", json=body)

    assert answer.status_code == 400, answer.text
    details = {d["field"]: d["message"] for d in answer.json()["error"]["details"]}
    assert (
        "weight_decay must be a number from 0 to 1 (got 2)"
        in details["optional_hyperparameters.sft_config.weight_decay"]
    )
    assert (
        "set hyperparameters.epochs instead"
        in details["optional_hyperparameters.sft_config.num_train_epochs"]
    )
