"""The command line and its HTTP client against a fake API (httpx.MockTransport): what a user types,
what goes over the wire, what is printed, and the exit codes scripts rely on."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tunelab.client import cli
from tunelab.client.http import ApiError, ApiUnreachable, TunelabClient, error_from_response
from tunelab.client.progress import EventFollower, ModelWatcher, Progress, render
from tunelab.local.tokens import load_or_create_secret, verify_token

BASE = "http://api.test"
Route = Callable[[httpx.Request], httpx.Response]


def error(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return httpx.Response(status, json=body)


def model(name: str = "bot", status: str = "training", **extra: Any) -> dict[str, Any]:
    labels = {
        "training": "Training",
        "not_deployed": "Not deployed",
        "training_failed": "Training failed",
        "deploying": "Deploying",
        "deployed": "Deployed",
        "stopping_training": "Stopping training",
        "training_stopped": "Training stopped",
    }
    return {
        "name": name,
        "status": status,
        "status_label": labels[status],
        "provider": "local",
        "hosting": "local",
        "base_model": {"id": "local.tiny-llama", "name": "Tiny"},
        "dataset": {"id": "ds_0123456789", "name": "triage", "rows": 200},
        "validation": {"mode": "none"},
        "hyperparameters": {"epochs": 3, "learning_rate": 0.01},
        "cost": {"storage_per_month_usd": 0.0},
        "created_by": {"email": "ada@example.com"},
        "created_at": "2026-11-28T12:00:00Z",
        "updated_at": "2026-11-28T12:00:00Z",
        "training": extra.pop("training", {}),
        **extra,
    }


ESTIMATE = {
    "currency": "USD",
    "training": {
        "tokens_per_epoch": 12000,
        "epochs": 3,
        "trained_tokens": 36000,
        "cost_usd": 1.5,
        "low_usd": 1.2,
        "high_usd": 1.8,
        "hours": None,
    },
    "storage_per_month_usd": 1.95,
    "deployment_per_hour_usd": 7.1,
    "total_usd": 3.45,
    "notes": ["Token counts are estimated."],
}


def _fixed(answer: httpx.Response) -> Route:
    def route(request: httpx.Request) -> httpx.Response:
        return answer

    return route


@dataclass
class FakeApi:
    """Routes by (method, path); every request is kept for the test to read."""

    routes: dict[tuple[str, str], Route | list[Route]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Route | httpx.Response | dict[str, Any]) -> None:
        """Answer `method path` with these, in turn (the last one repeats)."""
        routes: list[Route] = []
        for answer in answers:
            if isinstance(answer, httpx.Response):
                routes.append(_fixed(answer))
            elif isinstance(answer, dict):
                routes.append(_fixed(httpx.Response(200, json=answer)))
            else:
                routes.append(answer)
        self.routes[(method, path)] = routes

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return error(404, "not_found", f"no route {request.method} {request.url.path}")
        assert isinstance(answers, list)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def client(self) -> TunelabClient:
        return TunelabClient(BASE, "tok", transport=httpx.MockTransport(self))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(cli, "make_client", lambda args: fake.client())
    monkeypatch.setattr("tunelab.client.progress.time.sleep", lambda seconds: None)
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the client -----------------------------------------------------------------------------------


def test_an_error_answer_becomes_an_api_error_with_its_details() -> None:
    answer = error(
        400,
        "validation_error",
        "The dataset is not valid.",
        [
            {"row": 17, "column": "completion", "message": "empty completion"},
            {"field": "name", "message": "bad"},
        ],
    )

    failure = error_from_response(answer)

    assert (failure.status, failure.code, failure.message) == (
        400,
        "validation_error",
        "The dataset is not valid.",
    )
    assert [d.describe() for d in failure.details] == [
        "row 17, column completion: empty completion",
        "name: bad",
    ]


def test_an_answer_not_in_the_contracts_shape_keeps_its_status() -> None:
    failure = error_from_response(httpx.Response(502, text="<html>Bad Gateway</html>"))

    assert failure.status == 502
    assert failure.code == "internal_error"
    assert "Bad Gateway" in failure.message


def test_no_answer_at_all_is_api_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = TunelabClient(BASE, "tok", transport=httpx.MockTransport(refuse))

    with pytest.raises(ApiUnreachable) as caught:
        client.workspace()
    assert caught.value.status == 0
    assert "Cannot reach the tunelab API at http://api.test" in caught.value.message


def test_url_and_token_come_from_the_environment() -> None:
    fake = FakeApi()
    fake.on("GET", "/v1/workspace", {"id": "ws", "plan": "trial", "byok_allowed": False})
    client = TunelabClient.from_environment(
        environ={"TUNELAB_API_URL": "https://api.example.com/", "TUNELAB_TOKEN": "secret-token"},
        transport=httpx.MockTransport(fake),
    )

    client.workspace()

    assert str(fake.requests[0].url) == "https://api.example.com/v1/workspace"
    assert fake.requests[0].headers["Authorization"] == "Bearer secret-token"


def test_without_a_token_the_local_runtime_gets_one_minted_with_its_secret(tmp_path: Path) -> None:
    fake = FakeApi()
    fake.on("GET", "/v1/workspace", {"id": "local", "plan": "subscription", "byok_allowed": True})
    client = TunelabClient.from_environment(
        environ={"TUNELAB_LOCAL_DATA_DIR": str(tmp_path)}, transport=httpx.MockTransport(fake)
    )

    client.workspace()

    request = fake.requests[0]
    assert str(request.url) == "http://127.0.0.1:8642/v1/workspace"
    token = request.headers["Authorization"].removeprefix("Bearer ")
    claims = verify_token(load_or_create_secret(tmp_path), token)
    assert claims["custom:workspace"] == "local"


def test_a_remote_api_without_a_token_gets_none() -> None:
    fake = FakeApi()
    fake.on("GET", "/v1/health", {"status": "ok"})
    client = TunelabClient.from_environment(
        environ={"TUNELAB_API_URL": "https://api.example.com"}, transport=httpx.MockTransport(fake)
    )

    client.health()

    assert "Authorization" not in fake.requests[0].headers


def test_lists_follow_next_token_to_the_last_page() -> None:
    fake = FakeApi()
    fake.on(
        "GET",
        "/v1/fine-tuned-models",
        {"items": [model("a")], "next_token": "page2"},
        {"items": [model("b")], "next_token": None},
    )

    names = [m["name"] for m in fake.client().models(status="training")]

    assert names == ["a", "b"]
    assert fake.requests[1].url.params["next_token"] == "page2"
    assert all(r.url.params["status"] == "training" for r in fake.requests)


def test_creates_carry_an_idempotency_key_a_new_one_each_time_unless_given() -> None:
    fake = FakeApi()
    fake.on("POST", "/v1/fine-tuned-models", httpx.Response(202, json=model()))
    client = fake.client()

    client.create_model({"name": "bot"})
    client.create_model({"name": "bot"})
    client.create_model({"name": "bot"}, idempotency_key="retry-1")

    keys = [r.headers["Idempotency-Key"] for r in fake.requests]
    assert len(keys[0]) == 36
    assert keys[0] != keys[1]
    assert keys[2] == "retry-1"


def test_a_base_model_id_is_sent_as_one_path_segment() -> None:
    fake = FakeApi()
    fake.on("GET", "/v1/base-models/meta.llama3-1-8b-instruct-v1:0:128k", {"id": "x"})

    fake.client().base_model("meta.llama3-1-8b-instruct-v1:0:128k")

    assert fake.requests[0].url.raw_path == b"/v1/base-models/meta.llama3-1-8b-instruct-v1%3A0%3A128k"


def test_a_small_csv_goes_in_the_body_and_a_big_one_through_a_presigned_upload() -> None:
    fake = FakeApi()
    fake.on("POST", "/v1/datasets", lambda r: httpx.Response(201, json=_created_dataset(r)))
    fake.on("PUT", "/upload/ds_big", httpx.Response(200))
    client = fake.client()

    small = client.upload_dataset("small", b"prompt,completion\na,b\n")
    big_csv = b"prompt,completion\n" + b"a,b\n" * (2 * 1024 * 1024)
    big = client.upload_dataset("big", big_csv)

    first, second, put = fake.requests
    assert first.headers["Content-Type"] == "text/csv"
    assert first.url.params["name"] == "small"
    assert small["status"] == "ready"
    assert json.loads(second.content) == {"name": "big"}
    assert put.headers["x-amz-meta-dataset"] == "ds_big"  # the upload's own headers, exactly
    assert "Authorization" not in put.headers
    assert put.content == big_csv
    assert big["status"] == "uploading"


def _created_dataset(request: httpx.Request) -> dict[str, Any]:
    if request.headers["Content-Type"] == "text/csv":
        return {"id": "ds_small0000", "name": "small", "status": "ready", "rows": 1}
    return {
        "dataset": {"id": "ds_big", "name": "big", "status": "uploading"},
        "upload": {
            "url": "http://s3.test/upload/ds_big?X-Amz-Signature=abc",
            "method": "PUT",
            "headers": {"x-amz-meta-dataset": "ds_big"},
            "expires_at": "2026-11-28T13:00:00Z",
        },
    }


# --- exit codes and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (error(400, "validation_error", "Bad."), cli.EXIT_API_ERROR),
        (error(401, "unauthorized", "No token."), cli.EXIT_API_ERROR),
        (error(403, "forbidden", "Not on this plan."), cli.EXIT_API_ERROR),
        (
            error(404, "not_found", "There is no fine-tuned model 'bot' in this workspace."),
            cli.EXIT_NOT_FOUND,
        ),
        (error(409, "invalid_state", "bot is training."), cli.EXIT_CONFLICT),
        (error(500, "internal_error", "Boom."), cli.EXIT_UNAVAILABLE),
        (httpx.Response(503, text="unavailable"), cli.EXIT_UNAVAILABLE),
    ],
)
def test_each_kind_of_error_has_its_exit_code(
    api: FakeApi, capsys: pytest.CaptureFixture[str], answer: httpx.Response, code: int
) -> None:
    api.on("GET", "/v1/fine-tuned-models/bot", answer)

    exit_code, out, err = run(capsys, "models", "show", "bot")

    assert exit_code == code
    assert out == ""
    assert err.startswith("tunelab: ")


def test_an_unreachable_api_exits_5_naming_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(
        cli, "make_client", lambda args: TunelabClient(BASE, "t", transport=httpx.MockTransport(refuse))
    )

    exit_code, _, err = run(capsys, "workspace")

    assert exit_code == cli.EXIT_UNAVAILABLE
    assert "Cannot reach the tunelab API at http://api.test" in err


def test_validation_details_are_listed_and_json_mode_prints_the_error(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "POST",
        "/v1/fine-tuned-models",
        error(
            400,
            "validation_error",
            "The request is not valid.",
            [{"field": "hyperparameters.epochs", "message": "at most 10"}],
        ),
    )

    exit_code, out, err = run(
        capsys, "models", "create", "bot", "--base-model", "m", "--dataset", "ds_1", "--acknowledge", "--json"
    )

    assert exit_code == cli.EXIT_API_ERROR
    assert "  - hyperparameters.epochs: at most 10" in err
    assert json.loads(out)["error"]["details"] == [
        {"message": "at most 10", "field": "hyperparameters.epochs"}
    ]


def test_bad_arguments_are_usage_errors_before_any_request(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["models", "create", "bot", "--base-model", "m", "--dataset", "d", "--validation", "half"])

    assert exited.value.code == cli.EXIT_USAGE
    assert "split:PERCENT" in capsys.readouterr().err
    assert api.requests == []


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])

    out = capsys.readouterr().out
    for code, _ in cli.EXIT_CODES:
        assert f"\n  {code:<4} " in out


# --- commands --------------------------------------------------------------------------------------


def test_create_sends_every_choice_in_the_contracts_shape(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.on("POST", "/v1/fine-tuned-models", httpx.Response(202, json=model()))
    options = tmp_path / "options.json"
    options.write_text('{"use_lora": true}', encoding="utf-8")

    exit_code, out, _ = run(
        capsys,
        "models", "create", "bot",
        "--base-model", "local.tiny-llama",
        "--dataset", "ds_0123456789",
        "--validation", "split:10",
        "--epochs", "3",
        "--learning-rate", "0.0002",
        "--batch-size", "4",
        "--warmup-steps", "5",
        "--early-stopping", "3,0.01",
        "--optional-json", str(options),
        "--instance-type", "ml.g5.2xlarge",
        "--instance-count", "2",
        "--volume-gb", "50",
        "--idempotency-key", "key-1",
        "--acknowledge",
    )  # fmt: skip

    assert exit_code == 0
    sent = api.sent("POST", "/v1/fine-tuned-models")[0]
    assert sent.headers["Idempotency-Key"] == "key-1"
    assert json.loads(sent.content) == {
        "name": "bot",
        "base_model_id": "local.tiny-llama",
        "dataset_id": "ds_0123456789",
        "validation": {"mode": "split", "percent": 10},
        "hyperparameters": {
            "epochs": 3,
            "learning_rate": 0.0002,
            "batch_size": 4,
            "warmup_steps": 5,
            "early_stopping": {"patience": 3, "threshold": 0.01},
        },
        "optional_hyperparameters": {"use_lora": True},
        "resources": {"instance_type": "ml.g5.2xlarge", "instance_count": 2, "volume_size_gb": 50},
        "acknowledge": True,
    }
    assert "Training started: bot (Training)." in out


def test_create_shows_the_plan_and_its_quote_then_starts_with_the_quote_and_a_maximum(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    quoted = {
        **ESTIMATE,
        "runnable": True,
        "plan": {
            "base_model_id": "local.tiny-llama",
            "dataset": {"id": "ds_1", "name": "tickets"},
            "hyperparameters": {"epochs": 3, "learning_rate": 0.01, "batch_size": None},
        },
        "quote_id": "q1.1764806400.0123456789abcdef0123456789abcdef",
        "quote_expires_at": "2026-12-04T00:00:00Z",
    }
    api.on("POST", "/v1/cost-estimates", quoted)
    api.on("POST", "/v1/fine-tuned-models", httpx.Response(202, json=model()))
    args = ("models", "create", "bot", "--base-model", "local.tiny-llama", "--dataset", "ds_1")

    exit_code, out, err = run(capsys, *args, "--max-total-usd", "5")

    assert exit_code == cli.EXIT_USAGE
    assert "Hyperparameters: epochs 3, learning_rate 0.01" in out
    assert "Quote:" in out
    assert "q1.1764806400.0123456789abcdef0123456789abcdef (valid until 2026-12-04T00:00:00Z)" in out
    assert "--acknowledge --quote q1.1764806400.0123456789abcdef0123456789abcdef" in err
    assert json.loads(api.sent("POST", "/v1/cost-estimates")[0].content)["max_total_usd"] == 5

    exit_code, _, _ = run(
        capsys, *args, "--acknowledge", "--quote", str(quoted["quote_id"]), "--max-total-usd", "5"
    )

    assert exit_code == 0
    sent = json.loads(api.sent("POST", "/v1/fine-tuned-models")[0].content)
    assert (sent["quote_id"], sent["max_total_usd"], sent["acknowledge"]) == (quoted["quote_id"], 5, True)


def test_clone_shows_the_clones_estimate_then_starts_it(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "POST",
        "/v1/fine-tuned-models/bot/clone",
        lambda r: httpx.Response(
            202 if json.loads(r.content).get("acknowledge") else 200,
            json=model(name="bot-2")
            if json.loads(r.content).get("acknowledge")
            else {**ESTIMATE, "quote_id": "q1.9.ab"},
        ),
    )

    exit_code, out, err = run(capsys, "models", "clone", "bot", "bot-2", "--epochs", "4")

    assert exit_code == cli.EXIT_USAGE
    assert "--acknowledge --quote q1.9.ab" in err
    asked = json.loads(api.sent("POST", "/v1/fine-tuned-models/bot/clone")[0].content)
    # Only the change is sent: the API joins it to what the source ran with.
    assert asked == {"name": "bot-2", "hyperparameters": {"epochs": 4}}

    exit_code, out, _ = run(capsys, "models", "clone", "bot", "bot-2", "--acknowledge", "--quote", "q1.9.ab")

    assert exit_code == 0
    started = json.loads(api.sent("POST", "/v1/fine-tuned-models/bot/clone")[1].content)
    assert started == {"name": "bot-2", "acknowledge": True, "quote_id": "q1.9.ab"}
    assert "a clone of bot" in out


def test_resume_shows_what_resuming_costs_then_resumes(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    quote = {**ESTIMATE, "model": "bot", "checkpoint": "checkpoint-30", "step": 30, "total_steps": 120}
    api.on(
        "POST",
        "/v1/fine-tuned-models/bot/resume",
        lambda r: (
            httpx.Response(202, json=model(status="training"))
            if json.loads(r.content).get("acknowledge")
            else httpx.Response(200, json={**quote, "quote_id": "q1.9.cd"})
        ),
    )

    exit_code, out, err = run(capsys, "models", "resume", "bot")

    assert exit_code == cli.EXIT_USAGE
    assert "continues from checkpoint-30 (step 30 of 120)" in out
    assert "--acknowledge --quote q1.9.cd" in err
    assert json.loads(api.sent("POST", "/v1/fine-tuned-models/bot/resume")[0].content) == {}

    exit_code, out, _ = run(capsys, "models", "resume", "bot", "--acknowledge", "--quote", "q1.9.cd")

    assert exit_code == 0
    started = json.loads(api.sent("POST", "/v1/fine-tuned-models/bot/resume")[1].content)
    assert started == {"acknowledge": True, "quote_id": "q1.9.cd"}
    assert "Training resumed: bot" in out


def test_create_without_acknowledge_shows_the_cost_and_starts_nothing(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/v1/cost-estimates", ESTIMATE)

    exit_code, out, err = run(
        capsys,
        "models",
        "create",
        "bot",
        "--from-model",
        "bot-v0",
        "--from-checkpoint",
        "checkpoint-8",
        "--dataset",
        "ds_1",
        "--validation",
        "dataset:ds_2",
    )

    assert exit_code == cli.EXIT_USAGE
    assert api.sent("POST", "/v1/fine-tuned-models") == []
    estimate_body = json.loads(api.sent("POST", "/v1/cost-estimates")[0].content)
    assert estimate_body["base_fine_tuned_model"] == "bot-v0"
    assert estimate_body["base_checkpoint"] == "checkpoint-8"
    assert estimate_body["validation"] == {"mode": "dataset", "dataset_id": "ds_2"}
    assert "$1.50 (between $1.20 and $1.80)" in out
    assert "$3.45" in out
    assert "--acknowledge" in err


def test_optional_json_that_is_not_json_is_a_usage_error(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, _, err = run(
        capsys,
        "models",
        "create",
        "bot",
        "--base-model",
        "m",
        "--dataset",
        "d",
        "--optional-json",
        "{nope",
        "--acknowledge",
    )

    assert exit_code == cli.EXIT_USAGE
    assert "--optional-json is not valid JSON" in err
    assert api.requests == []


@pytest.mark.parametrize(
    ("flags", "schedule"),
    [
        (["--auto-undeploy-hours", "4"], {"after_hours": 4.0}),
        (["--auto-undeploy-at", "2026-11-28T18:00:00+01:00"], {"at": "2026-11-28T17:00:00Z"}),
        (["--auto-undeploy-at", "2026-11-28T18:00:00"], {"at": "2026-11-28T18:00:00Z"}),
        (["--no-auto-undeploy"], None),
        ([], None),
    ],
)
def test_deploy_sends_the_automatic_undeploy(
    api: FakeApi, capsys: pytest.CaptureFixture[str], flags: list[str], schedule: Any
) -> None:
    api.on("POST", "/v1/fine-tuned-models/bot/deploy", httpx.Response(202, json=model(status="deploying")))

    exit_code, out, _ = run(capsys, "models", "deploy", "bot", *flags)

    assert exit_code == 0
    assert json.loads(api.requests[0].content) == {"auto_undeploy": schedule}
    assert "bot: Deploying (deploying)" in out


def test_deploy_sends_the_instance_type_and_count_when_given(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/v1/fine-tuned-models/bot/deploy", httpx.Response(202, json=model(status="deploying")))

    exit_code, _, _ = run(
        capsys, "models", "deploy", "bot", "--instance-type", "ml.g6e.12xlarge", "--instance-count", "2"
    )

    assert exit_code == 0
    assert json.loads(api.requests[0].content) == {
        "auto_undeploy": None,
        "instance_type": "ml.g6e.12xlarge",
        "instance_count": 2,
    }


def test_deploy_wait_polls_until_deployed(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("POST", "/v1/fine-tuned-models/bot/deploy", httpx.Response(202, json=model(status="deploying")))
    deployed = model(status="deployed", deployment={"auto_undeploy_at": "2026-11-28T16:00:00Z"})
    api.on("GET", "/v1/fine-tuned-models/bot", model(status="deploying"), deployed)

    exit_code, out, _ = run(capsys, "models", "deploy", "bot", "--auto-undeploy-hours", "4", "--wait")

    assert exit_code == 0
    assert "bot: Deployed (deployed)" in out
    assert "Automatic undeploy at 2026-11-28T16:00:00Z" in out


def test_delete_needs_the_acknowledgement(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("DELETE", "/v1/fine-tuned-models/bot", httpx.Response(204))

    refused, _, err = run(capsys, "models", "delete", "bot")
    deleted, out, _ = run(capsys, "models", "delete", "bot", "--acknowledge")

    assert refused == cli.EXIT_USAGE
    assert "--acknowledge" in err
    assert deleted == 0
    assert out.strip() == "Deleted bot."
    assert [r.url.params.get("acknowledge") for r in api.requests] == ["true"]


def test_list_prints_a_table_and_json_either_side_of_the_command(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [model("alpha", training={"phase": "Training 4/10 steps"}), model("beta-two", status="deployed")]
    api.on("GET", "/v1/fine-tuned-models", {"items": items, "next_token": None})

    _, table_out, _ = run(capsys, "models", "list")
    _, after, _ = run(capsys, "models", "list", "--json")
    _, before, _ = run(capsys, "--json", "models", "list")

    lines = table_out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "BASE", "MODEL", "DATASET", "PHASE", "CREATED"]
    assert lines[1].split()[:2] == ["alpha", "training"]
    assert "Training 4/10 steps" in lines[1]
    assert lines[2].split()[:2] == ["beta-two", "deployed"]
    assert json.loads(after) == json.loads(before) == {"items": items}


def test_upload_of_an_invalid_dataset_lists_the_rows_and_exits_6(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    invalid = {
        "id": "ds_0123456789",
        "name": "tickets",
        "status": "invalid",
        "rows": 2,
        "errors": [{"row": 2, "column": "completion", "message": "empty completion"}],
        "error_count": 1,
    }
    api.on("POST", "/v1/datasets", httpx.Response(201, json=invalid))
    csv_file = tmp_path / "tickets.csv"
    csv_file.write_text("prompt,completion\na,b\nc,\n", encoding="utf-8")

    exit_code, out, _ = run(capsys, "datasets", "upload", str(csv_file))

    assert exit_code == cli.EXIT_FAILED
    assert api.requests[0].url.params["name"] == "tickets"
    assert api.requests[0].content == csv_file.read_bytes()
    assert "error   row 2, completion: empty completion" in out


def test_upload_of_a_missing_file_is_a_usage_error(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    exit_code, _, err = run(capsys, "datasets", "upload", str(tmp_path / "nope.csv"), "--name", "x")

    assert exit_code == cli.EXIT_USAGE
    assert "cannot read" in err
    assert api.requests == []


def test_invoke_prints_the_completion_alone_on_stdout(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "POST",
        "/v1/fine-tuned-models/bot/invoke",
        {
            "completion": "category=bug; priority=low",
            "usage": {"input_tokens": 12, "output_tokens": 9},
            "latency_ms": 40,
        },
    )

    exit_code, out, err = run(
        capsys, "models", "invoke", "bot", "Triage this", "--max-tokens", "20", "--temperature", "0"
    )

    assert exit_code == 0
    assert out == "category=bug; priority=low\n"
    assert "12 tokens in, 9 out, 40 ms" in err
    assert json.loads(api.requests[0].content) == {
        "prompt": "Triage this",
        "max_tokens": 20,
        "temperature": 0.0,
    }


def test_download_saves_the_archive_and_lists_its_files(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in (("model.safetensors", b"w" * 2000), ("config.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    link = {"url": "http://s3.test/bucket/bot.tar.gz?X-Amz-Signature=s", "expires_at": "2026-11-28T13:00:00Z"}
    api.on("GET", "/v1/fine-tuned-models/bot/download", link | {"size_bytes": 1, "files": []})
    api.on("GET", "/bucket/bot.tar.gz", httpx.Response(200, content=archive.getvalue()))

    exit_code, out, _ = run(capsys, "models", "download", "bot", "--out", str(tmp_path))

    assert exit_code == 0
    # No variant named: the API's default (merged; an old unmerged LoRA model's adapter).
    assert "variant" not in api.requests[0].url.params
    saved = tmp_path / "bot.tar.gz"
    assert saved.read_bytes() == archive.getvalue()
    assert "Authorization" not in api.requests[1].headers
    assert f"Saved {saved}" in out
    assert "model.safetensors  2.0 KB" in out
    assert "config.json" in out


def test_download_of_the_adapter_asks_for_that_variant_and_keeps_its_own_file(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("adapter/adapter_model.safetensors")
        info.size = 300
        tar.addfile(info, io.BytesIO(b"a" * 300))
    link = {
        "url": "http://s3.test/bucket/bot/model.tar.gz?X-Amz-Signature=s",
        "expires_at": "2026-11-28T13:00:00Z",
        "size_bytes": 1,
        "files": [],
        "variant": "adapter",
        "model_path": "adapter/",
        "contents": "The LoRA adapter in adapter/.",
    }
    api.on("GET", "/v1/fine-tuned-models/bot/download", link)
    api.on("GET", "/bucket/bot/model.tar.gz", httpx.Response(200, content=archive.getvalue()))

    exit_code, out, _ = run(
        capsys, "models", "download", "bot", "--variant", "adapter", "--out", str(tmp_path)
    )

    assert exit_code == 0
    assert api.requests[0].url.params["variant"] == "adapter"
    # Next to the model's own archive, not over it
    assert (tmp_path / "bot-adapter.tar.gz").read_bytes() == archive.getvalue()
    assert "The LoRA adapter in adapter/." in out
    assert "adapter/adapter_model.safetensors" in out


def test_models_show_says_what_the_model_can_be_downloaded_as(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "GET",
        "/v1/fine-tuned-models/bot",
        {
            "name": "bot",
            "status": "not_deployed",
            "status_label": "Not deployed",
            "artifacts": {
                "size_bytes": 2_000_000,
                "files": ["adapter_config.json", "adapter_model.safetensors"],
                "merged": False,
                "merged_archive": {"path": "merged/", "size_bytes": 270_000_000, "files": []},
                "download_variants": ["merged", "adapter"],
            },
        },
    )

    exit_code, out, _ = run(capsys, "models", "show", "bot")

    assert exit_code == 0
    rows = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if ":" in line
    }
    assert rows["Merged copy"] == "merged/ of the download's merged variant (270.0 MB)"
    assert rows["Downloads"] == "merged, adapter"


def test_download_refuses_an_unknown_variant_before_asking(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["models", "download", "bot", "--variant", "weights"])

    assert exited.value.code == cli.EXIT_USAGE
    assert "choose from 'merged', 'adapter'" in capsys.readouterr().err
    assert api.requests == []


def test_base_models_show_says_where_a_bedrock_model_trains(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "GET",
        "/v1/base-models/meta.llama3-3-70b-instruct-v1:0:128k",
        {
            "id": "meta.llama3-3-70b-instruct-v1:0:128k",
            "name": "Meta Llama 3.3 70B Instruct",
            "provider": "bedrock",
            "hosting": "managed",
            "available": True,
            "regions": ["us-west-2"],
            "training_region": "us-west-2",
            "context_length": 128000,
            "hyperparameters": {"epochs": {"min": 1, "max": 5, "default": 2}},
            "pricing": {"training_per_1k_tokens_usd": 0.0033, "storage_per_month_usd": 1.95},
        },
    )

    exit_code, out, _ = run(capsys, "base-models", "show", "meta.llama3-3-70b-instruct-v1:0:128k")

    assert exit_code == 0
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith(" "))
    assert lines["Regions"].strip() == "us-west-2"
    assert lines["Trains in"].strip() == "us-west-2"
    assert lines["Training"].strip() == "$0.0033 per 1k tokens"


def test_base_models_show_lists_the_ranges(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on(
        "GET",
        "/v1/base-models/local.tiny-llama",
        {
            "id": "local.tiny-llama",
            "name": "Tiny",
            "provider": "local",
            "hosting": "local",
            "available": True,
            "parameter_count": 229696,
            "context_length": 2048,
            "hyperparameters": {
                "epochs": {"min": 1, "max": 50, "default": 8},
                "learning_rate": {"min": 1e-05, "max": 0.05, "default": 0.01},
                "batch_size": None,
                "warmup_steps": None,
                "early_stopping": {
                    "patience": {"min": 1, "max": 20, "default": 3},
                    "threshold": {"min": 0, "max": 0.1, "default": 0.01},
                },
            },
            "pricing": {
                "training_per_1k_tokens_usd": 0,
                "storage_per_month_usd": 0,
                "deployment_per_hour_usd": 0,
            },
        },
    )

    exit_code, out, _ = run(capsys, "base-models", "show", "local.tiny-llama")

    assert exit_code == 0
    assert "Parameters:" in out
    assert "229,696" in out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.startswith(("epochs", "batch", "early"))
    }
    assert rows["epochs"] == ["1", "50", "8"]
    assert rows["batch_size"] == ["not", "supported", "-", "-"]
    assert rows["early_stopping.patience"] == ["1", "20", "3"]


def test_resources_estimate_needs_a_model_or_a_parameter_count(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, _, err = run(capsys, "resources", "estimate", "--method", "full")

    assert exit_code == cli.EXIT_USAGE
    assert "--base-model or --parameter-count" in err


# --- watching training -----------------------------------------------------------------------------


def _training(step: int, of: int, eta: str, loss: float) -> dict[str, Any]:
    return model(
        training={
            "phase": f"Training {step}/{of} steps, ETA {eta}",
            "metrics": {"train_loss": loss, "step": step, "epoch": step / of * 2},
        }
    )


def test_watch_shows_the_bar_and_the_history_and_exits_0_when_trained(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    done = model(
        status="not_deployed", training={"phase": "Completed", "metrics": {"train_loss": 0.2, "step": 8}}
    )
    api.on(
        "GET",
        "/v1/fine-tuned-models/bot",
        model(training={"phase": "Preparing the base model"}),
        _training(4, 8, "0:10", 1.5),
        done,
    )
    event = {
        "at": "2026-11-28T12:00:01Z",
        "type": "status_changed",
        "status": "training",
        "message": "Training started",
    }
    finished = {
        "at": "2026-11-28T12:00:30Z",
        "type": "status_changed",
        "status": "not_deployed",
        "message": None,
    }
    metrics = {"at": "2026-11-28T12:00:20Z", "type": "metrics", "metrics": {"train_loss": 1.5}}
    api.on(
        "GET",
        "/v1/fine-tuned-models/bot/events",
        {"items": [event], "next_token": None},
        {"items": [event, metrics], "next_token": None},
        {"items": [event, metrics, finished], "next_token": None},
    )

    exit_code, out, _ = run(capsys, "models", "watch", "bot")

    assert exit_code == 0
    lines = out.splitlines()
    assert lines.count("12:00:01  status: training - Training started") == 1
    assert "12:00:30  status: not_deployed" in lines
    assert "Training  - Preparing the base model" in lines
    assert "Training  [############............]  4/8 steps  50%  loss 1.5000  epoch 1.00  ETA 0:10" in lines
    assert lines[-1] == "bot: Not deployed (not_deployed)"
    assert "\r" not in out  # not a terminal: plain lines


def test_watch_of_a_failed_training_exits_6_with_the_reason(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = model(status="training_failed", training={"failure_reason": "CUDA out of memory"})
    api.on("GET", "/v1/fine-tuned-models/bot", failed)
    api.on("GET", "/v1/fine-tuned-models/bot/events", {"items": [], "next_token": None})

    exit_code, _, err = run(capsys, "models", "watch", "bot")

    assert exit_code == cli.EXIT_FAILED
    assert "training of bot failed: CUDA out of memory" in err


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    fake = FakeApi()
    fake.on(
        "GET",
        "/v1/fine-tuned-models/bot",
        _training(1, 4, "0:09", 2.0),
        _training(2, 4, "0:06", 1.0),
        model(status="not_deployed"),
    )
    fake.on("GET", "/v1/fine-tuned-models/bot/events", {"items": [], "next_token": None})
    out = io.StringIO()

    ModelWatcher(fake.client(), "bot", out=out, tty=True, sleep=lambda s: None).follow()

    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 3
    assert "1/4 steps" in text
    assert "2/4 steps" in text
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_off_a_terminal_lines_are_printed_at_most_every_interval() -> None:
    fake = FakeApi()
    fake.on(
        "GET",
        "/v1/fine-tuned-models/bot",
        *[_training(step, 100, "1:00", 1.0) for step in range(1, 31)],
        model(status="not_deployed"),
    )
    fake.on("GET", "/v1/fine-tuned-models/bot/events", {"items": [], "next_token": None})
    now = [0.0]

    def tick(seconds: float) -> None:
        now[0] += 1.0

    out = io.StringIO()
    ModelWatcher(
        fake.client(), "bot", out=out, tty=False, line_every_s=10.0, clock=lambda: now[0], sleep=tick
    ).follow()

    bar_lines = [line for line in out.getvalue().splitlines() if "steps" in line]
    # 30 polls a second apart: the first at once, then one every 10 s.
    assert [line.split()[2] for line in bar_lines] == ["1/100", "11/100", "21/100"]


def test_the_event_follower_returns_each_entry_once_across_pages() -> None:
    pages: dict[str | None, list[dict[str, Any]]] = {None: [{"n": 1}, {"n": 2}], "p2": [{"n": 3}]}
    next_of = {None: "p2", "p2": None}

    def events(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("next_token")
        return httpx.Response(200, json={"items": pages[token], "next_token": next_of[token]})

    fake = FakeApi()
    fake.on("GET", "/v1/fine-tuned-models/bot/events", events)
    follower = EventFollower(fake.client(), "bot")

    first = follower.new()
    pages["p2"].append({"n": 4})
    second = follower.new()
    third = follower.new()

    assert [e["n"] for e in first] == [1, 2, 3]
    assert [e["n"] for e in second] == [4]
    assert third == []


def test_progress_reads_steps_and_eta_from_the_phase() -> None:
    progress = Progress.of(_training(40, 120, "0:35", 1.23456))

    assert (progress.step, progress.max_steps, progress.eta) == (40, 120, "0:35")
    assert render(progress, width=12) == (
        "Training  [####........]  40/120 steps  33%  loss 1.2346  epoch 0.67  ETA 0:35"
    )


def test_api_error_keeps_status_code_and_details() -> None:
    failure = ApiError(409, "invalid_state", "bot is deployed.")

    assert cli.exit_code_for(failure) == cli.EXIT_CONFLICT
    assert str(failure) == "bot is deployed."


# --- the demo --------------------------------------------------------------------------------------


def test_the_sample_rows_ship_with_the_package_and_survive_a_csv_round_trip() -> None:
    from tunelab.client.demo import sample_rows, to_csv  # noqa: PLC0415

    rows = sample_rows("support-triage.csv")
    held = sample_rows("support-triage-validation.csv")

    assert len(rows) == 200
    assert len(held) == 40
    assert all(completion.startswith("category=") for _, completion in rows + held)
    assert "\n" in rows[0][0]  # prompts span lines: quoting must hold
    again = to_csv(rows[:5]).decode("utf-8")
    assert again.startswith("prompt,completion\n")
    import csv as csv_module  # noqa: PLC0415

    assert [tuple(r) for r in csv_module.reader(io.StringIO(again))][1:] == rows[:5]


def _failing_demo_api() -> FakeApi:
    """An API on which everything before training works, and training fails."""
    fake = FakeApi()
    base = {"id": "local.tiny-llama", "name": "Tiny", "available": True, "parameter_count": 229696}
    fake.on("GET", "/v1/health", {"status": "ok"})
    fake.on("GET", "/v1/workspace", {"id": "local", "plan": "subscription", "byok_allowed": True})
    fake.on("GET", "/v1/base-models/local.tiny-llama", base)

    def dataset(request: httpx.Request) -> httpx.Response:
        name = request.url.params["name"]
        return httpx.Response(201, json={"id": "ds_0123456789", "name": name, "status": "ready", "rows": 3})

    fake.on("POST", "/v1/datasets", dataset)
    fake.on("POST", "/v1/cost-estimates", ESTIMATE)
    advice = {"vram_gb": {}, "storage_gb": {}, "instances": [], "instance_count": 1, "notes": []}
    fake.on("POST", "/v1/resource-estimates", advice)

    def created(request: httpx.Request) -> httpx.Response:
        name = json.loads(request.content)["name"]
        reason = {"failure_reason": "The trainer was killed by signal 9."}
        fake.on(
            "GET", f"/v1/fine-tuned-models/{name}", model(name, status="training_failed", training=reason)
        )
        fake.on("GET", f"/v1/fine-tuned-models/{name}/events", {"items": [], "next_token": None})
        return httpx.Response(202, json=model(name))

    fake.on("POST", "/v1/fine-tuned-models", created)
    return fake


def test_a_demo_whose_training_fails_names_the_stage_and_exits_6(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = _failing_demo_api()
    monkeypatch.setattr(TunelabClient, "from_environment", classmethod(lambda cls, **kw: fake.client()))
    monkeypatch.setattr("tunelab.client.progress.time.sleep", lambda seconds: None)

    code, out, err = run(capsys, "--api-url", BASE, "demo", "--model", "local.tiny-llama")

    assert code == cli.EXIT_FAILED
    assert (
        "the training stage failed: training ended training_failed: The trainer was killed by signal 9."
        in err
    )
    summary = out.split("== Summary (the training stage failed)", 1)[1]
    stages = [line[2:].split("  ")[0] for line in summary.splitlines() if line.startswith("  ")]
    assert stages == ["local runtime", "datasets", "estimates", "training", "total"]
    assert "FAILED" in summary
    assert not [r for r in fake.requests if r.url.path.endswith("/deploy")]  # nothing ran after it
    created = json.loads(fake.sent("POST", "/v1/fine-tuned-models")[0].content)
    assert created["validation"]["mode"] == "dataset"
    assert created["acknowledge"] is True


def test_stop_wait_succeeds_once_stopped_and_deploy_wait_fails_if_the_deployment_does(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "POST", "/v1/fine-tuned-models/bot/stop", httpx.Response(202, json=model(status="stopping_training"))
    )
    api.on("POST", "/v1/fine-tuned-models/bot/deploy", httpx.Response(202, json=model(status="deploying")))
    api.on(
        "GET",
        "/v1/fine-tuned-models/bot",
        model(status="stopping_training"),
        model(status="training_stopped"),
        model(status="deploying"),
        model(status="not_deployed"),
    )

    stopped, out, _ = run(capsys, "models", "stop", "bot", "--wait")
    failed, _, err = run(capsys, "models", "deploy", "bot", "--wait")

    assert stopped == 0
    assert "bot: Training stopped (training_stopped)" in out
    assert failed == cli.EXIT_FAILED
    assert "bot is not_deployed, not deployed" in err


@pytest.mark.parametrize(
    ("flags", "schedule"),
    [
        (["--auto-undeploy-hours", "6"], {"after_hours": 6.0}),
        (["--auto-undeploy-at", "2026-11-28T18:00:00+01:00"], {"at": "2026-11-28T17:00:00Z"}),
        (["--no-auto-undeploy"], None),
    ],
)
def test_models_deployment_moves_or_cancels_the_automatic_undeploy(
    api: FakeApi, capsys: pytest.CaptureFixture[str], flags: list[str], schedule: Any
) -> None:
    api.on("PATCH", "/v1/fine-tuned-models/bot/deployment", model(status="deployed"))

    exit_code, out, _ = run(capsys, "models", "deployment", "bot", *flags)

    assert exit_code == 0
    assert api.requests[0].method == "PATCH"
    assert json.loads(api.requests[0].content) == {"auto_undeploy": schedule}
    assert "Deployed (deployed)" in out


def test_models_deployment_needs_one_change(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["models", "deployment", "bot"])

    assert exited.value.code == cli.EXIT_USAGE
    assert "--no-auto-undeploy" in capsys.readouterr().err
    assert api.requests == []


def test_show_gives_the_actual_cost_beside_the_prediction_and_the_deployment_so_far(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cost = {
        "storage_per_month_usd": 1.95,
        "predicted": {"total_usd": 3.05, "training": {"cost_usd": 1.1}},
        "actual": {
            "cost_usd": 1.23,
            "basis": "billable_seconds",
            "estimated": False,
            "billable_seconds": 4021,
            "predicted_usd": 1.1,
            "actual_vs_predicted": 1.12,
            "note": "",
        },
        "deployment": {
            "deployed_at": "2026-11-28T12:00:00Z",
            "hours": 2.5,
            "hourly_usd": 7.1,
            "cost_usd": 17.75,
        },
    }
    api.on("GET", "/v1/fine-tuned-models/bot", model(status="deployed", cost=cost))

    exit_code, out, _ = run(capsys, "models", "show", "bot")

    assert exit_code == 0
    assert "$1.23 (predicted $1.10, 1.12×), 4,021 billable seconds" in out
    assert "2.50 hours, $17.75 at $7.10 an hour" in out


def _shown_with_actual_cost(
    api: FakeApi, capsys: pytest.CaptureFixture[str], status: str, **actual: Any
) -> str:
    """What `models show` prints of a model in `status` whose `cost.actual` is `actual` (by default a
    measured SageMaker figure)."""
    fields = {"basis": "billable_seconds", "estimated": False, "note": "", **actual}
    api.on("GET", "/v1/fine-tuned-models/bot", model(status=status, cost={"actual": fields}))
    _, out, _ = run(capsys, "models", "show", "bot")
    return out


def test_show_says_when_the_cost_is_an_estimate(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    out = _shown_with_actual_cost(
        api,
        capsys,
        "not_deployed",
        cost_usd=1.56,
        basis="estimated_tokens",
        estimated=True,
        predicted_usd=1.56,
    )

    assert "$1.56 (predicted $1.56) — an estimate: the provider reports no usage" in out


def test_show_says_what_of_the_cost_was_spent_before_a_resume(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _shown_with_actual_cost(
        api,
        capsys,
        "not_deployed",
        cost_usd=4.2,
        billable_seconds=3600,
        predicted_usd=3.0,
        actual_vs_predicted=1.4,
        earlier_attempts_usd=1.4,
    )

    assert (
        "$4.20 (predicted $3.00, 1.40×, $1.40 of it before the resume), this job: 3,600 billable seconds"
        in out
    )


def test_show_says_a_stopped_jobs_prediction_was_for_the_whole_run(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _shown_with_actual_cost(
        api, capsys, "training_stopped", cost_usd=0.5, billable_seconds=1800, predicted_usd=2.0
    )

    assert "$0.50 (predicted $2.00 for the whole run), 1,800 billable seconds" in out


# --- search and filters ---------------------------------------------------------------------------


def test_models_list_sends_each_filter_as_the_apis_query_parameter(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/v1/fine-tuned-models", {"items": [model("bot-a")], "next_token": None})

    code, out, _ = run(
        capsys,
        "models", "list",
        "--status", "training,deployed", "--provider", "local", "--base-model", "local.tiny-llama",
        "--dataset", "ds_01jdq8k2m3n4p5q6r7s8t9v0w1", "--creator", "ada@example.com",
        "--created-after", "2026-11-01", "--created-before", "2026-12-01T00:00:00Z",
        "--name-prefix", "bot", "--sort", "name", "--order", "desc",
    )  # fmt: skip

    assert code == 0
    assert "bot-a" in out
    (request,) = api.sent("GET", "/v1/fine-tuned-models")
    assert dict(request.url.params) == {
        "status": "training,deployed",
        "provider": "local",
        "base_model_id": "local.tiny-llama",
        "dataset_id": "ds_01jdq8k2m3n4p5q6r7s8t9v0w1",
        "creator": "ada@example.com",
        "created_after": "2026-11-01",
        "created_before": "2026-12-01T00:00:00Z",
        "name_prefix": "bot",
        "sort": "name",
        "order": "desc",
    }


def test_lists_without_filters_send_none_and_follow_the_filtered_pages(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on(
        "GET",
        "/v1/datasets",
        {"items": [{"id": "ds_1", "name": "faq", "status": "ready"}], "next_token": "t1"},
        {"items": [{"id": "ds_2", "name": "chat", "status": "ready"}], "next_token": None},
    )

    _, plain, _ = run(capsys, "datasets", "list", "--json")
    api.routes.clear()
    api.on("GET", "/v1/datasets", {"items": [], "next_token": None})
    run(capsys, "datasets", "list", "--status", "ready", "--sort", "name", "--name-prefix", "f")

    assert [d["name"] for d in json.loads(plain)["items"]] == ["faq", "chat"]
    first, second, filtered = api.sent("GET", "/v1/datasets")
    assert dict(first.url.params) == {}
    assert dict(second.url.params) == {"next_token": "t1"}
    assert dict(filtered.url.params) == {"status": "ready", "sort": "name", "name_prefix": "f"}


def test_a_bad_sort_or_provider_is_a_usage_error_before_any_request(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["models", "list", "--sort", "size"], ["models", "list", "--provider", "azure"]):
        with pytest.raises(SystemExit) as exited:
            run(capsys, *argv)
        assert exited.value.code == 2
    assert api.requests == []


def test_instance_types_list_prints_gpus_memory_and_price(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    g5 = {
        "name": "ml.g5.12xlarge", "gpus": 4, "gpu_model": "NVIDIA A10G", "vram_per_gpu_gb": 24, "vram_gb": 96,
        "local_storage_gb": 3800, "vcpus": 48, "memory_gb": 192, "price_per_hour_usd": 7.09,
        "price_source": {"url": "https://aws.amazon.com/sagemaker/pricing/", "as_of": "2026-11-28"},
    }  # fmt: skip
    api.on("GET", "/v1/instance-types", {"items": [g5], "next_token": None})

    code, out, _ = run(capsys, "instance-types", "list", "--min-vram-gb", "80")

    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["TYPE", "GPUS", "GPU", "VRAM/GPU"]
    assert row.split()[:2] == ["ml.g5.12xlarge", "4"]
    assert "96 GB" in row
    assert "7.09" in row
    assert "2026-11-28" in row
    (request,) = api.sent("GET", "/v1/instance-types")
    assert dict(request.url.params) == {"min_vram_gb": "80.0"}


# --- evaluation ------------------------------------------------------------------------------------

EVALUATION = {
    "rows": 40,
    "validation_rows": 40,
    "max_new_tokens": 24,
    "decoding": "greedy",
    "base": {"exact_match": 0.0, "token_f1": 0.31, "format_match": 0.05},
    "fine_tuned": {"exact_match": 0.625, "token_f1": 0.9, "format_match": 1.0},
    "headline": "exact match 0 % → 62.5 % on 40 validation rows (token F1 0.31 → 0.90, format 5 % → 100 %)",
    "seconds": {"base": 12.5, "fine_tuned": 8.25},
    "samples": [
        {
            "prompt": "Triage this support ticket.\nTicket: my invoice is wrong",
            "expected": "category=billing; priority=medium",
            "base": "Category: Billing\nPriority: Medium\nThe customer reports...",
            "fine_tuned": "category=billing; priority=medium",
        }
    ],
    "notes": [],
}


def test_evaluation_prints_base_beside_fine_tuned_with_the_change_and_samples(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/v1/fine-tuned-models/bot/evaluation", EVALUATION)

    exit_code, out, _ = run(capsys, "models", "evaluation", "bot")

    assert exit_code == 0
    assert "Evaluation on 40 validation rows (greedy decoding, answers up to 24 tokens)" in out
    exact = next(line for line in out.splitlines() if line.startswith("exact match"))
    assert exact.split() == ["exact", "match", "0.0", "%", "62.5", "%", "+62", "pts"]
    f1 = next(line for line in out.splitlines() if line.startswith("token F1"))
    assert f1.split() == ["token", "F1", "0.31", "0.90", "+0.59"]  # a score from 0 to 1, not a percentage
    assert "Ticket: my invoice is wrong" in out
    assert "base:       Category: Billing Priority: Medium The customer reports..." in out  # one line
    assert "Generating the answers took: base 12.5 s, fine-tuned 8.2 s." in out


def test_evaluation_missing_says_why_and_show_names_the_headline(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    why = "'bot' was not evaluated: the job has no validation data."
    api.on("GET", "/v1/fine-tuned-models/bot/evaluation", error(404, "not_found", why))

    exit_code, _, err = run(capsys, "models", "evaluation", "bot")
    assert exit_code != 0
    assert why in err

    api.on("GET", "/v1/fine-tuned-models/bot", model(status="not_deployed", evaluation=EVALUATION))
    _, out, _ = run(capsys, "models", "show", "bot")
    assert "exact match 0 % → 62.5 % on 40 validation rows" in out
