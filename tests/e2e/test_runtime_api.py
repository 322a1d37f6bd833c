"""The local runtime's API over HTTP: health, tokens and 401s, the workspace, base models."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT, LocalApi, runtime_environment, wait_for
from tunelab.local.tokens import claims_for, encode, load_or_create_secret

pytestmark = pytest.mark.xdist_group("e2e")

TOKEN_COMMAND = (sys.executable, "-m", "tunelab.client.cli", "local", "token")


def test_health_answers_without_a_token(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/health", token=None)

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_health_ignores_a_bad_token(local: LocalApi) -> None:
    assert local.call("GET", "/v1/health", token="not-a-token").status_code == 200


def test_a_request_without_a_token_is_401_in_the_contracts_shape(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/workspace", token=None)

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("garbage", "not a tunelab local token"),
        ("a.b.c", "cannot be read"),
    ],
)
def test_an_unreadable_token_is_401(local: LocalApi, token: str, says: str) -> None:
    answer = local.call("GET", "/v1/workspace", token=token)

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert says in answer.json()["error"]["message"]


def test_a_token_signed_with_another_secret_is_401(local: LocalApi) -> None:
    forged = encode(claims_for("ws-e2e", "ada@example.com"), b"another runtime's secret" * 2)

    answer = local.call("GET", "/v1/workspace", token=forged)

    assert answer.status_code == 401
    assert "not signed by this local runtime" in answer.json()["error"]["message"]


def test_an_expired_token_is_401(local: LocalApi) -> None:
    claims = claims_for("ws-e2e", "ada@example.com")
    claims["exp"] = int(time.time()) - 60
    expired = encode(claims, load_or_create_secret(local.data_dir))

    answer = local.call("GET", "/v1/workspace", token=expired)

    assert answer.status_code == 401
    assert answer.json() == {
        "error": {
            "code": "unauthorized",
            "message": "The bearer token has expired. "
            "Mint a new one with 'tunelab local token --workspace W --email E'.",
        }
    }


def test_a_non_bearer_authorization_is_401(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/workspace", token=None, headers={"Authorization": "Basic YWRhOnB3"})

    assert answer.status_code == 401


def test_the_token_names_the_workspace_on_the_local_default_plan(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/workspace", token=local.token("ws-plans"))

    assert answer.status_code == 200
    assert answer.json() == {"id": "ws-plans", "plan": "subscription", "byok_allowed": True}


def test_a_plan_claim_in_a_token_changes_nothing(local: LocalApi) -> None:
    # A token signed with the runtime's own secret, claiming another plan: the claim is not read.
    claims = {**claims_for("ws-claims", "eve@example.com"), "custom:plan": "trial"}
    forged = encode(claims, load_or_create_secret(local.data_dir))

    answer = local.call("GET", "/v1/workspace", token=forged)

    assert answer.status_code == 200
    assert answer.json()["plan"] == "subscription"


def test_local_token_prints_the_token_alone_and_it_works(local: LocalApi) -> None:
    done = subprocess.run(
        [
            *TOKEN_COMMAND,
            "--workspace",
            "ws-cli",
            "--email",
            "bo@example.com",
            "--plan",
            "internal",
            "--data-dir",
            str(local.data_dir),
        ],
        cwd=REPO_ROOT,
        env=runtime_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    lines = done.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    assert token.count(".") == 2
    answer = local.call("GET", "/v1/workspace", token=token)
    # --plan is the operator's path: the running runtime has the workspace on that plan at once,
    # for every token of the workspace, and the plan is recorded for the runtime's next start.
    assert answer.json() == {"id": "ws-cli", "plan": "internal", "byok_allowed": True}
    other_user = local.call("GET", "/v1/workspace", token=local.token("ws-cli", "al@example.com"))
    assert other_user.json()["plan"] == "internal"
    assert json.loads((local.data_dir / "workspace-plans.json").read_text())["ws-cli"] == "internal"
    assert stat.S_IMODE((local.data_dir / "workspace-plans.json").stat().st_mode) == 0o600


def test_local_token_refuses_a_bad_workspace(local: LocalApi) -> None:
    done = subprocess.run(
        [
            *TOKEN_COMMAND,
            "--workspace",
            "no/slashes",
            "--email",
            "bo@example.com",
            "--data-dir",
            str(local.data_dir),
        ],
        check=False,
        cwd=REPO_ROOT,
        env=runtime_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert "workspace" in done.stderr


def test_cloud_base_models_are_unavailable_with_the_reason(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/base-models")

    assert answer.status_code == 200
    models = answer.json()["items"]
    cloud = [m for m in models if m["provider"] in {"bedrock", "sagemaker"}]
    assert cloud, "the catalog lists Bedrock and SageMaker models"
    for model in cloud:
        assert model["available"] is False, model["id"]
        assert model["unavailable_reason"], model["id"]


def test_providers_say_bedrock_is_not_available_locally(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/providers")

    assert answer.status_code == 200
    bedrock = next(p for p in answer.json()["items"] if p["provider"] == "bedrock")
    assert bedrock["status"] != "connected"
    assert "local runtime" in bedrock["message"]


def test_an_unknown_route_is_404_for_a_signed_in_caller(local: LocalApi) -> None:
    answer = local.call("GET", "/v1/no-such-thing")

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


# --- datasets through the API -------------------------------------------------------------------

SAMPLE_CSV = REPO_ROOT / "shared" / "tunelab" / "sample_data" / "support-triage.csv"


def test_a_csv_posted_to_the_api_is_validated_at_once(local: LocalApi) -> None:
    token = local.token("ws-datasets")
    answer = local.call(
        "POST",
        "/v1/datasets",
        token=token,
        params={"name": "support-sync"},
        content=SAMPLE_CSV.read_bytes(),
        headers={"Content-Type": "text/csv"},
    )

    assert answer.status_code == 201, answer.text
    dataset = answer.json()
    assert dataset["status"] == "ready"
    assert dataset["rows"] == 200
    assert dataset["created_by"]["email"] == "ada@example.com"
    again = local.call("GET", f"/v1/datasets/{dataset['id']}", token=token)
    assert again.json()["status"] == "ready"
    # Another workspace does not see it.
    assert (
        local.call("GET", f"/v1/datasets/{dataset['id']}", token=local.token("ws-other")).status_code == 404
    )


def test_a_dataset_uploaded_to_its_presigned_url_becomes_ready(local: LocalApi) -> None:
    """The presigned PUT goes to the embedded S3; S3 → EventBridge → SQS → the DatasetUploaded function."""
    token = local.token("ws-datasets")
    created = local.call("POST", "/v1/datasets", token=token, json={"name": "support-presigned"})
    assert created.status_code == 201, created.text
    dataset, upload = created.json()["dataset"], created.json()["upload"]
    assert dataset["status"] == "uploading"
    assert upload["url"].startswith(local.aws_endpoint)

    put = httpx.request(
        upload["method"],
        upload["url"],
        content=SAMPLE_CSV.read_bytes(),
        headers=upload["headers"],
        timeout=120,
    )
    assert put.status_code == 200, put.text

    def settled() -> dict[str, object] | None:
        found = local.call("GET", f"/v1/datasets/{dataset['id']}", token=token).json()
        return found if found["status"] in {"ready", "invalid"} else None

    ready = wait_for(settled, timeout=120, what="the uploaded dataset to be validated")
    assert ready["status"] == "ready", ready
    assert ready["rows"] == 200
