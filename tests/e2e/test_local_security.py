"""The local runtime's defences over HTTP, against a started `tunelab local up`: its AWS endpoint
answers only this run's signed requests at its own loopback address (no moto management to
strangers, no CORS, no Host but its own), its Lambda functions run only tunelab's handlers, the API
front keeps its body limit and answers every method and every unreadable request in the contract's
shape, the data dir is the operator's alone, tokens carry the claims an id token carries, and base
models show tenants no path of the operator's machine."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import socket
import stat
import struct
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import REPO_ROOT, LocalApi, runtime_environment
from tunelab.local.models import register_model_folder
from tunelab.local.tokens import claims_for, encode, load_or_create_secret

pytestmark = pytest.mark.xdist_group("e2e")

STACK = "tunelab"
LOCAL_COMMAND = (sys.executable, "-m", "tunelab.client.cli", "local")
# A bit over the front's limit (10 MiB).
OVER_THE_LIMIT = 11 * 1024 * 1024


def _stranger(local: LocalApi, service: str, **credentials: str) -> Any:
    """A client of the AWS endpoint with credentials that are not this run's (moto's usual ones)."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=local.aws_endpoint,
        aws_access_key_id=credentials.get("key", "testing"),
        aws_secret_access_key=credentials.get("secret", "testing"),
    )


# --- the AWS endpoint --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("dynamodb", lambda c: c.scan(TableName=f"{STACK}-records")),
        ("s3", lambda c: c.list_objects_v2(Bucket=f"{STACK}-datasets")),
        ("lambda", lambda c: c.list_functions()),
        ("sts", lambda c: c.get_caller_identity()),
    ],
)
def test_the_aws_endpoint_refuses_credentials_that_are_not_this_runs(
    local: LocalApi, service: str, call: Any
) -> None:
    with pytest.raises(ClientError) as refused:
        call(_stranger(local, service))

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_right_key_id_with_a_wrong_secret_is_refused(local: LocalApi) -> None:
    key_id = local.client("sts")._request_signer._credentials.access_key  # this run's key id, a wrong secret

    with pytest.raises(ClientError) as refused:
        _stranger(local, "dynamodb", key=key_id, secret="guessed").scan(TableName=f"{STACK}-records")

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_forged_api_invocation_is_refused(local: LocalApi) -> None:
    """Invoking the API function directly with made-up authorizer claims (any workspace)."""
    event: dict[str, Any] = {"httpMethod": "GET", "path": "/v1/workspace", "headers": {}, "body": None}
    event["requestContext"] = {"authorizer": {"claims": {"custom:workspace": "ws-victim", "sub": "x"}}}

    with pytest.raises(ClientError) as refused:
        _stranger(local, "lambda").invoke(FunctionName=f"{STACK}-api", Payload=json.dumps(event))

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize(("method", "path"), [("POST", "/moto-api/reset"), ("GET", "/moto-api/data.json")])
def test_motos_management_paths_are_refused_to_strangers_and_the_state_stays(
    local: LocalApi, method: str, path: str
) -> None:
    created = local.call("POST", "/v1/datasets", json={"name": f"keep-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201

    answer = httpx.request(method, f"{local.aws_endpoint}{path}", content=b"{}", timeout=30)

    assert answer.status_code == 403
    assert "records" not in answer.text
    dataset_id = created.json()["dataset"]["id"]
    assert local.call("GET", f"/v1/datasets/{dataset_id}").status_code == 200


def test_the_aws_endpoint_reflects_no_origin(local: LocalApi) -> None:
    origin = "https://evil.example"
    preflight = httpx.options(
        f"{local.aws_endpoint}/{STACK}-datasets",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        timeout=30,
    )
    simple = httpx.get(f"{local.aws_endpoint}/{STACK}-datasets", headers={"Origin": origin}, timeout=30)

    for answer in (preflight, simple):
        assert "access-control-allow-origin" not in answer.headers
        assert answer.status_code == 403


def test_the_aws_endpoint_answers_no_other_host(local: LocalApi) -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 still sends its own name."""
    port = urlsplit(local.aws_endpoint).port
    client = local.client("dynamodb")

    def rebind(request: Any, **_: Any) -> None:
        request.headers["Host"] = f"evil.example:{port}"

    client.meta.events.register("before-sign.dynamodb.ListTables", rebind)
    with pytest.raises(ClientError) as refused:
        client.list_tables()

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert local.client("dynamodb").list_tables()["TableNames"]  # by its own name it answers


def test_this_runs_credentials_are_the_operators_alone(local: LocalApi) -> None:
    access = local.data_dir / "aws-access.json"
    content = json.loads(access.read_text())

    assert stat.S_IMODE(local.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(access.stat().st_mode) == 0o600
    assert stat.S_IMODE((local.data_dir / "token-secret").stat().st_mode) == 0o600
    assert content["endpoint_url"] == local.aws_endpoint
    assert content["access_key_id"] != "testing"


def test_local_aws_env_points_the_aws_tools_at_this_run(local: LocalApi) -> None:
    done = subprocess.run(
        [*LOCAL_COMMAND, "aws-env", "--data-dir", str(local.data_dir)],
        cwd=REPO_ROOT,
        env=runtime_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    exported = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in done.stdout.splitlines()
        if line.startswith("export ")
    )

    assert exported["AWS_ENDPOINT_URL"] == local.aws_endpoint
    dynamodb = boto3.client(
        "dynamodb",
        region_name=exported["AWS_REGION"],
        endpoint_url=exported["AWS_ENDPOINT_URL"],
        aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"],
    )
    assert f"{STACK}-records" in dynamodb.list_tables()["TableNames"]


# --- the in-process Lambda dispatch --------------------------------------------------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "nothing here runs\n")
    return buffer.getvalue()


@pytest.mark.parametrize("handler", ["pty.spawn", "os.system", "subprocess.run"])
def test_a_function_with_a_handler_that_is_not_tunelabs_does_not_run(
    local: LocalApi, handler: str, tmp_path: Path
) -> None:
    lam = local.client("lambda")
    role = local.client("iam").get_role(RoleName=f"{STACK}-lambda")["Role"]["Arn"]
    name = f"intruder-{uuid.uuid4().hex[:8]}"
    touched = tmp_path / "touched"
    command = ["sh", "-c", f"touch {touched}"]
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler=handler,
        Code={"ZipFile": _zip()},
        Timeout=10,
    )

    answer = lam.invoke(FunctionName=name, Payload=json.dumps(command))

    payload = json.loads(answer["Payload"].read())
    time.sleep(1.0)
    assert not touched.exists(), f"{handler} ran the command"
    assert answer.get("FunctionError")
    assert payload["errorType"] == "HandlerNotAllowed"
    assert "tunelab's own functions" in payload["errorMessage"]


# --- the API front -----------------------------------------------------------------------------------


def _raw(
    local: LocalApi, head: str, body: bytes = b"", *, close_write: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (request line and headers, CRLF-separated, without the blank line) and `body`."""
    address = urlsplit(local.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as connection:
        connection.sendall(head.encode("latin-1") + b"\r\n\r\n")
        try:
            for start in range(0, len(body), 1024 * 1024):
                connection.sendall(body[start : start + 1024 * 1024])
        except OSError:
            pass  # the front answered before the rest was sent, and closed
        if close_write:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                part = connection.recv(65536)
            except OSError:
                break
            if not part:
                break
            data += part
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def _lines(local: LocalApi, first: str, *headers: str, token: bool = True) -> str:
    host = urlsplit(local.base_url).netloc
    auth = (f"Authorization: Bearer {local.token()}",) if token else ()
    return "\r\n".join([first, f"Host: {host}", *auth, *headers])


def _error(payload: bytes) -> dict[str, Any]:
    body = json.loads(payload)
    assert list(body) == ["error"]
    return dict(body["error"])


def test_a_negative_content_length_is_400_not_a_way_past_the_limit(local: LocalApi) -> None:
    body = json.dumps({"name": f"sneaky-{uuid.uuid4().hex[:8]}"}).encode()
    head = _lines(local, "POST /v1/datasets HTTP/1.1", "Content-Type: application/json", "Content-Length: -1")

    status, headers, payload = _raw(local, head, body)

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert _error(payload)["code"] == "validation_error"


@pytest.mark.parametrize("size", ["-1", "-100000", "zz", "0x10"])
def test_a_bad_chunk_size_is_400(local: LocalApi, size: str) -> None:
    """A negative size once made the front read to the end of the stream, past any limit."""
    body = json.dumps({"name": f"sneaky-{uuid.uuid4().hex[:8]}"}).encode()
    head = _lines(
        local, "POST /v1/datasets HTTP/1.1", "Content-Type: application/json", "Transfer-Encoding: chunked"
    )

    status, _, payload = _raw(local, head, f"{size}\r\n".encode() + body)

    assert status == 400
    assert _error(payload)["code"] == "validation_error"


def test_a_chunked_body_over_the_limit_is_413(local: LocalApi) -> None:
    chunk = 1024 * 1024
    body = (
        b"".join(b"%x\r\n%s\r\n" % (chunk, b"a" * chunk) for _ in range(OVER_THE_LIMIT // chunk))
        + b"0\r\n\r\n"
    )
    head = _lines(local, "POST /v1/datasets HTTP/1.1", "Content-Type: text/csv", "Transfer-Encoding: chunked")

    status, _, payload = _raw(local, head, body)

    assert status == 413
    assert _error(payload)["code"] == "payload_too_large"


def test_a_content_length_over_the_limit_is_413_before_the_body(local: LocalApi) -> None:
    head = _lines(
        local, "POST /v1/datasets HTTP/1.1", "Content-Type: text/csv", f"Content-Length: {OVER_THE_LIMIT}"
    )

    status, _, payload = _raw(local, head, close_write=False)

    assert status == 413
    assert _error(payload)["code"] == "payload_too_large"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_methods_api_gateway_does_not_pass_are_405_in_json(local: LocalApi, method: str) -> None:
    status, headers, payload = _raw(local, _lines(local, f"{method} /v1/health HTTP/1.1"))

    assert status == 405
    assert headers["content-type"] == "application/json"
    assert headers["allow"] == "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
    assert _error(payload)["code"] == "method_not_allowed"


@pytest.mark.parametrize("line", ["GARBAGE", "GET /v1/health HTTP/7.0", "GET /v1/health HTTP/1.1 extra"])
def test_an_unreadable_request_is_answered_in_json_never_html(local: LocalApi, line: str) -> None:
    status, headers, payload = _raw(local, line)

    assert 400 <= status < 600
    assert headers["content-type"] == "application/json"
    assert b"<html" not in payload.lower()
    assert _error(payload)["message"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8642", "127.0.0.1.nip.io"])
def test_the_api_answers_no_other_host(local: LocalApi, host: str) -> None:
    answer = httpx.get(
        f"{local.base_url}/v1/workspace", headers={"Host": host, "Authorization": f"Bearer {local.token()}"}
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


def test_the_api_reflects_no_stranger_origin(local: LocalApi) -> None:
    origin = "https://evil.example"
    preflight = local.call(
        "OPTIONS",
        "/v1/workspace",
        token=None,
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    simple = local.call("GET", "/v1/workspace", headers={"Origin": origin})

    assert simple.status_code == 200
    for answer in (preflight, simple):
        assert answer.headers.get("access-control-allow-origin") not in (origin, "*")


# --- tokens ----------------------------------------------------------------------------------------


def _claims(**changes: Any) -> dict[str, Any]:
    claims = claims_for("ws-e2e", "ada@example.com", ttl=timedelta(hours=1))
    claims.update(changes)
    return claims


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-api"},
        {"token_use": "access"},
        {"iat": int((datetime.now(UTC) + timedelta(hours=2)).timestamp())},
        {"exp": int((datetime.now(UTC) + timedelta(days=400)).timestamp())},
    ],
    ids=["audience", "token_use", "issued-in-the-future", "lives-a-year"],
)
def test_a_token_with_claims_an_id_token_would_not_carry_is_401(
    local: LocalApi, changes: dict[str, Any]
) -> None:
    token = encode(_claims(**changes), load_or_create_secret(local.data_dir))

    answer = local.call("GET", "/v1/workspace", token=token)

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("hours", ["0", "-5", "721"])
def test_local_token_refuses_a_ttl_out_of_bounds(local: LocalApi, hours: str) -> None:
    done = subprocess.run(
        [*LOCAL_COMMAND, "token", "--workspace", "ws-e2e", "--email", "a@b.c", "--ttl-hours", hours],
        cwd=REPO_ROOT,
        env={**runtime_environment(), "TUNELAB_LOCAL_DATA_DIR": str(local.data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert "--ttl-hours" in done.stderr
    assert not done.stdout


def test_a_planted_world_readable_secret_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    secret = data_dir / "token-secret"
    secret.write_text("00" * 32 + "\n")
    secret.chmod(0o644)

    done = subprocess.run(
        [*LOCAL_COMMAND, "token", "--workspace", "ws", "--email", "a@b.c", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=runtime_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode != 0
    assert not done.stdout
    assert str(secret) in done.stderr
    assert "chmod 600" in done.stderr
    assert "Traceback" not in done.stderr


# --- base models ---------------------------------------------------------------------------------------


def _hf_folder(root: Path) -> Path:
    """A minimal Hugging Face folder: config, tokenizer and a safetensors file of zeros."""
    root.mkdir(parents=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 512}
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (root / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    return root


@pytest.fixture
def operator_folder(local: LocalApi) -> Iterator[Path]:
    """A model folder inside the data dir, registered for the running runtime (removed after)."""
    registry = local.data_dir / "models.json"
    before = registry.read_bytes() if registry.exists() else None
    folder = _hf_folder(local.data_dir / "operator-models" / f"m{uuid.uuid4().hex[:8]}")
    register_model_folder("secret-path-probe", folder, local.data_dir)
    try:
        yield folder
    finally:
        if before is None:
            registry.unlink(missing_ok=True)
        else:
            registry.write_bytes(before)
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink()
        folder.rmdir()


def test_base_models_show_tenants_no_path_of_the_operators_machine(
    local: LocalApi, operator_folder: Path
) -> None:
    listed = local.call("GET", "/v1/base-models")
    one = local.call("GET", "/v1/base-models/local.secret-path-probe")

    assert listed.status_code == one.status_code == 200
    assert "local.secret-path-probe" in {m["id"] for m in listed.json()["items"]}
    for answer in (listed, one):
        assert str(local.data_dir) not in answer.text
        assert str(operator_folder) not in answer.text
        assert os.path.expanduser("~") + "/" not in answer.text
