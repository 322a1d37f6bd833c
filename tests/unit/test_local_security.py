"""The local runtime's defences, piece by piece: its AWS endpoint's guard (signatures, Host, CORS),
the in-process Lambda dispatch (tunelab's handlers only), the HTTP front over raw sockets (body
limits, methods, Host, CORS, no HTML), the data dir and token secret's permissions, and the token
verifier's claims. The same, end to end over HTTP, in `tests/e2e/test_local_security.py`."""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tunelab.domain.errors import ValidationFailed
from tunelab.local import http_front, moto_lambda
from tunelab.local.aws_access import AwsAccess, new_access, read_access, write_access
from tunelab.local.aws_guard import AwsGuard
from tunelab.local.cli_local import add_local_commands
from tunelab.local.files import UnsafeFile, read_private_file, secure_data_dir
from tunelab.local.http_front import HttpFront
from tunelab.local.tokens import (
    SECRET_FILE,
    InvalidToken,
    claims_for,
    encode,
    load_or_create_secret,
    mint_token,
    verify_token,
)

THIS = __name__
SECRET = bytes(range(32))
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RAN: list[Any] = []


def marker(event: Any, context: Any) -> dict[str, Any]:
    """A callable any module could hold: the dispatcher must not run it for a function."""
    RAN.append(event)
    return {"ran": True}


# --- the AWS endpoint's guard ----------------------------------------------------------------------


def _ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Access-Control-Allow-Origin", environ.get("HTTP_ORIGIN", "*")),
            ("Access-Control-Allow-Credentials", "true"),
        ],
    )
    return [json.dumps({"path": environ["PATH_INFO"], "body": body.decode()}).encode()]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[AwsAccess]:
    """`AwsGuard` in front of a small WSGI app on a loopback port (moto's place)."""
    from werkzeug.serving import make_server  # noqa: PLC0415  # werkzeug comes with moto's server

    guard = AwsGuard(_ok_app)
    server = make_server("127.0.0.1", 0, guard, threaded=True)
    port = server.server_address[1]
    access = new_access(f"http://127.0.0.1:{port}", "us-east-1")
    guard.configure(access, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield access
    server.shutdown()
    server.server_close()


def _send(url: str, method: str = "POST", body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _signed(
    access: AwsAccess,
    url: str,
    body: bytes = b"",
    *,
    service: str = "dynamodb",
    secret: str | None = None,
    key_id: str | None = None,
    method: str = "POST",
) -> dict[str, str]:
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
        },
    )
    credentials = Credentials(key_id or access.access_key_id, secret or access.secret_access_key)
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(credentials, service, access.region).add_auth(request)
    return dict(request.headers.items())


def test_a_request_signed_with_the_runs_credentials_passes_without_cors(endpoint: AwsAccess) -> None:
    url = f"{endpoint.endpoint_url}/some/path?b=2&a=1"
    headers = _signed(endpoint, url, b'{"x": 1}')

    status, answer_headers, body = _send(
        url, body=b'{"x": 1}', headers={**headers, "Origin": "https://evil.example"}
    )

    assert status == 200
    assert json.loads(body) == {"path": "/some/path", "body": '{"x": 1}'}
    assert not [name for name in answer_headers if name.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({}, "MissingAuthenticationToken"),
        ({"key_id": "testing", "secret": "testing"}, "InvalidClientTokenId"),
        ({"secret": "not-the-secret"}, "SignatureDoesNotMatch"),
    ],
)
def test_requests_not_signed_by_this_run_are_refused(
    endpoint: AwsAccess, change: dict[str, str], code: str
) -> None:
    url = f"{endpoint.endpoint_url}/"
    headers = (
        _signed(endpoint, url, b"{}", **change) if change else {"X-Amz-Target": "DynamoDB_20120810.Scan"}
    )

    status, answer_headers, body = _send(url, body=b"{}", headers=headers)

    assert status == 403
    assert json.loads(body)["__type"] == code
    assert answer_headers["x-amzn-ErrorType"] == code


def test_a_changed_body_breaks_the_signature(endpoint: AwsAccess) -> None:
    url = f"{endpoint.endpoint_url}/"
    headers = _signed(endpoint, url, b'{"TableName": "mine"}')

    status, _, body = _send(url, body=b'{"TableName": "yours"}', headers=headers)

    assert status == 403
    assert json.loads(body)["__type"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("path", ["/moto-api/reset", "/moto-api/data.json", "/moto-api/seed"])
def test_motos_management_paths_need_the_runs_signature(endpoint: AwsAccess, path: str) -> None:
    status, headers, body = _send(f"{endpoint.endpoint_url}{path}", body=b"{}")

    assert status == 403
    assert b"<Code>MissingAuthenticationToken</Code>" in body
    assert headers["Content-Type"] == "application/xml"


def test_another_host_is_refused_even_when_signed(endpoint: AwsAccess) -> None:
    """DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1 sends its own Host."""
    port = urlsplit(endpoint.endpoint_url).port
    url = f"{endpoint.endpoint_url}/"
    headers = _signed(endpoint, f"http://evil.example:{port}/", b"{}")

    status, _, body = _send(url, body=b"{}", headers={**headers, "Host": f"evil.example:{port}"})

    assert status == 403
    assert json.loads(body)["__type"] == "AccessDenied"
    assert "evil.example" in json.loads(body)["message"]


def test_localhost_and_bucket_subdomains_of_localhost_are_the_endpoint(endpoint: AwsAccess) -> None:
    port = urlsplit(endpoint.endpoint_url).port
    for host in (f"localhost:{port}", f"my-bucket.localhost:{port}"):
        headers = _signed(endpoint, f"http://{host}/key", b"", service="s3", method="GET")
        status, _, _ = _send(f"{endpoint.endpoint_url}/key", method="GET", headers={**headers, "Host": host})
        assert status == 200, host


def _presign_v4(access: AwsAccess, url: str, expires: int) -> str:
    request = AWSRequest(method="PUT", url=url, headers={"Content-Type": "text/csv"})
    S3SigV4QueryAuth(
        Credentials(access.access_key_id, access.secret_access_key), "s3", "us-east-1", expires
    ).add_auth(request)
    return str(request.url)


def _presign_v2(access: AwsAccess, url: str, expires: int) -> str:
    request = AWSRequest(method="PUT", url=url, headers={"Content-Type": "text/csv"})
    request.auth_path = urlsplit(url).path
    HmacV1QueryAuth(Credentials(access.access_key_id, access.secret_access_key), expires).add_auth(request)
    return str(request.url)


@pytest.mark.parametrize("presign", [_presign_v4, _presign_v2])
def test_a_presigned_upload_passes_until_it_expires(endpoint: AwsAccess, presign: Any) -> None:
    good = presign(endpoint, f"{endpoint.endpoint_url}/datasets/uploads/ws/a%20b.csv", 300)
    expired = presign(endpoint, f"{endpoint.endpoint_url}/datasets/uploads/ws/a.csv", -10)
    other = new_access(endpoint.endpoint_url, "us-east-1")
    forged = presign(
        AwsAccess(endpoint.endpoint_url, "us-east-1", endpoint.access_key_id, other.secret_access_key),
        f"{endpoint.endpoint_url}/datasets/uploads/ws/a.csv",
        300,
    )

    assert _send(good, method="PUT", body=b"a,b\n", headers={"Content-Type": "text/csv"})[0] == 200
    assert _send(expired, method="PUT", body=b"a,b\n", headers={"Content-Type": "text/csv"})[0] == 403
    assert _send(forged, method="PUT", body=b"a,b\n", headers={"Content-Type": "text/csv"})[0] == 403
    # The signature covers the path: the URL cannot be moved to another object.
    moved = good.replace("/ws/a%20b.csv", "/other/a%20b.csv")
    assert _send(moved, method="PUT", body=b"a,b\n", headers={"Content-Type": "text/csv"})[0] == 403


def test_a_signature_from_another_time_is_refused(
    endpoint: AwsAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{endpoint.endpoint_url}/datasets/x.csv"
    two_hours_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: two_hours_ago)
    old_url = _presign_v4(endpoint, url, 3600)
    old_headers = _signed(endpoint, f"{endpoint.endpoint_url}/", b"{}")
    monkeypatch.undo()

    assert _send(old_url, method="PUT", body=b"a", headers={"Content-Type": "text/csv"})[0] == 403
    status, _, body = _send(f"{endpoint.endpoint_url}/", body=b"{}", headers=old_headers)
    assert status == 403
    assert json.loads(body)["__type"] == "RequestTimeTooSkewed"


def test_the_credentials_file_is_private_and_read_back(tmp_path: Path) -> None:
    access = new_access("http://127.0.0.1:5999", "us-east-1")
    path = write_access(tmp_path, access)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_access(tmp_path) == access
    assert access.secret_access_key not in repr(access)
    path.chmod(0o644)
    with pytest.raises(UnsafeFile, match="chmod 600"):
        read_access(tmp_path)


# --- the in-process Lambda dispatch ------------------------------------------------------------------


class _Function:
    """The attributes of moto's LambdaFunction that the seam reads."""

    def __init__(self, handler: str) -> None:
        self.function_name = "attacker"
        self.function_arn = "arn:aws:lambda:us-east-1:123456789012:function:attacker"
        self.handler = handler
        self.memory_size = 128
        self.timeout = 3


@pytest.mark.parametrize("handler", [f"{THIS}.marker", "pty.spawn", "os.system", "builtins.exec"])
def test_a_function_whose_handler_is_not_tunelabs_does_not_run(handler: str, tmp_path: Path) -> None:
    RAN.clear()
    touched = tmp_path / "touched"
    event = f"touch {touched}" if handler == "os.system" else ["touch", str(touched)]

    payload, errored, _ = moto_lambda._in_process(_Function(handler), json.dumps(event))

    assert errored
    assert json.loads(payload)["errorType"] == "HandlerNotAllowed"
    assert "tunelab's own functions" in json.loads(payload)["errorMessage"]
    time.sleep(0.2)
    assert not RAN
    assert not touched.exists()


def test_tunelabs_own_handlers_are_the_stacks() -> None:
    handlers = moto_lambda.tunelab_handlers()

    assert "functions.api.handler" in handlers
    assert all(name.startswith("functions.") and name.endswith(".handler") for name in handlers)
    with pytest.raises(moto_lambda.HandlerNotAllowed):
        moto_lambda.resolve_handler("os.system")
    assert callable(moto_lambda.resolve_handler("functions.api.handler"))


def test_a_lambda_context_is_still_made_for_tunelabs_handlers() -> None:
    context = moto_lambda.LambdaContext("f", "arn", 128, 3)
    assert 0 < context.get_remaining_time_in_millis() <= 3000


# --- the HTTP front over raw sockets ---------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {
            "statusCode": 200,
            "headers": {
                "Content-Type": "application/json",
                "Access-Control-Allow-Origin": event["headers"].get("Origin", "*"),
            },
            "body": json.dumps({"size": len(event["body"] or "")}),
        }


@pytest.fixture(scope="module")
def served_front() -> Iterator[tuple[HttpFront, _Recorder]]:
    recorder = _Recorder()
    http = HttpFront(
        handler=lambda: recorder,
        verify=lambda token: {},
        context=lambda: None,
        public_paths=frozenset({"/v1/health"}),
        port=0,
        allowed_origins=lambda: ("https://app.example",),
    )
    http.start()
    yield http, recorder
    http.stop()


@pytest.fixture
def front(served_front: tuple[HttpFront, _Recorder]) -> tuple[HttpFront, _Recorder]:
    served_front[1].events.clear()
    return served_front


def _raw(
    front: HttpFront, request: bytes, *, chunks: list[bytes] | None = None
) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as connection:
        connection.sendall(request)
        for chunk in chunks or []:
            try:
                connection.sendall(chunk)
            except OSError:
                break  # the server answered and closed
        data = b""
        while True:
            try:
                part = connection.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not part:
                break
            data += part
            head, _, body = data.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


def _request(front: HttpFront, method: str = "POST", headers: str = "", host: str | None = None) -> bytes:
    host = host if host is not None else f"127.0.0.1:{front.port}"
    return f"{method} /v1/datasets HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()


def _error(body: bytes) -> dict[str, Any]:
    parsed = json.loads(body)
    assert set(parsed) == {"error"}
    return dict(parsed["error"])


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " 12 34", "0x10"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_400(
    front: tuple[HttpFront, _Recorder], length: str
) -> None:
    http, recorder = front

    status, headers, body = _raw(http, _request(http, headers=f"Content-Length: {length}\r\n") + b"x" * 64)

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert _error(body)["code"] == "validation_error"
    assert not recorder.events


@pytest.mark.parametrize("size", [b"-1", b"zz", b"", b"+5", b"1" * 40])
def test_a_bad_chunk_size_is_400(front: tuple[HttpFront, _Recorder], size: bytes) -> None:
    http, recorder = front

    status, _, body = _raw(
        http, _request(http, headers="Transfer-Encoding: chunked\r\n") + size + b"\r\nabc\r\n0\r\n\r\n"
    )

    assert status == 400
    assert _error(body)["code"] == "validation_error"
    assert not recorder.events


def test_a_chunked_body_is_counted_and_cut_at_the_limit(
    front: tuple[HttpFront, _Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, recorder = front
    monkeypatch.setattr(http_front, "MAX_REQUEST_BYTES", 1024 * 1024)
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"a" * 64 * 1024)

    status, _, body = _raw(
        http, _request(http, headers="Transfer-Encoding: chunked\r\n"), chunks=[chunk] * 17
    )

    assert status == 413
    assert _error(body)["code"] == "payload_too_large"
    assert not recorder.events


def test_a_chunk_claiming_more_than_the_limit_is_413_at_once(front: tuple[HttpFront, _Recorder]) -> None:
    http, recorder = front
    assert not recorder.events

    status, _, body = _raw(
        http, _request(http, headers="Transfer-Encoding: chunked\r\n") + b"ffffffffff\r\nabc"
    )

    assert status == 413
    assert _error(body)["code"] == "payload_too_large"


def test_a_chunked_body_within_the_limit_reaches_the_handler(front: tuple[HttpFront, _Recorder]) -> None:
    http, _ = front

    status, _, body = _raw(
        http,
        _request(http, headers="Transfer-Encoding: chunked\r\n") + b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )

    assert status == 200
    assert json.loads(body) == {"size": 5}


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "get", "BREW"])
def test_methods_api_gateway_does_not_pass_are_405_in_the_contracts_shape(
    front: tuple[HttpFront, _Recorder], method: str
) -> None:
    http, recorder = front

    status, headers, body = _raw(http, _request(http, method=method))

    assert status == 405
    assert headers["content-type"] == "application/json"
    assert headers["allow"] == "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
    assert _error(body)["code"] == "method_not_allowed"
    assert not recorder.events


@pytest.mark.parametrize(
    "request_line",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\r\n\r\n",
    ],
)
def test_a_request_http_server_cannot_read_is_answered_in_json_not_html(
    front: tuple[HttpFront, _Recorder], request_line: bytes
) -> None:
    http, _ = front

    status, headers, body = _raw(http, request_line)

    assert 400 <= status < 600
    assert b"<html" not in body.lower()
    assert headers["content-type"] == "application/json"
    assert _error(body)["message"]


@pytest.mark.parametrize(
    "host", ["evil.example", f"evil.example:{8642}", "127.0.0.1:1", "", "localhost.evil.example"]
)
def test_a_host_that_is_not_the_loopback_listener_is_403(
    front: tuple[HttpFront, _Recorder], host: str
) -> None:
    http, recorder = front

    status, _, body = _raw(http, _request(http, method="GET", host=host))

    assert status == 403
    assert _error(body)["code"] == "forbidden"
    assert not recorder.events


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_loopback_names_are_the_listener(front: tuple[HttpFront, _Recorder], name: str) -> None:
    http, _ = front

    status, _, _ = _raw(http, _request(http, method="GET", host=f"{name}:{http.port}"))

    assert status == 200


def test_cors_headers_reach_only_the_allowed_origins(front: tuple[HttpFront, _Recorder]) -> None:
    http, _ = front

    _, evil, _ = _raw(http, _request(http, method="GET", headers="Origin: https://evil.example\r\n"))
    _, allowed, _ = _raw(http, _request(http, method="GET", headers="Origin: https://app.example\r\n"))

    assert "access-control-allow-origin" not in evil
    assert allowed["access-control-allow-origin"] == "https://app.example"


# --- the data dir and the token secret ----------------------------------------------------------------


def test_the_data_dir_is_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    load_or_create_secret(data_dir)

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / SECRET_FILE).stat().st_mode) == 0o600


def test_an_existing_data_dir_open_to_others_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)

    secure_data_dir(data_dir)

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_a_data_dir_or_secret_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    mine = tmp_path / "mine"
    load_or_create_secret(mine)
    # Seen by another user (giving the files away would need root): what this user made is theirs.
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 4242)
    with pytest.raises(UnsafeFile, match="not to you"):
        secure_data_dir(theirs)
    with pytest.raises(UnsafeFile, match="not to you") as refused:
        read_private_file(mine / SECRET_FILE)  # `check_private_file`, as the token secret's reader
    assert SECRET_FILE in str(refused.value)


def test_a_planted_world_readable_secret_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / SECRET_FILE
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o644)

    with pytest.raises(UnsafeFile) as caught:
        load_or_create_secret(data_dir)

    assert str(path) in str(caught.value)
    assert f"chmod 600 {path}" in str(caught.value)


@pytest.mark.parametrize(
    "content", ["00" * 32, "ab" * 32, "0123456789abcdef" * 4, "c3a1f09e7b52d884", "not hex"]
)
def test_a_secret_that_is_not_random_enough_is_refused(tmp_path: Path, content: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / SECRET_FILE
    path.write_text(content + "\n")
    path.chmod(0o600)

    with pytest.raises(UnsafeFile, match="delete it"):
        load_or_create_secret(data_dir)


def test_a_made_secret_is_read_back(tmp_path: Path) -> None:
    assert load_or_create_secret(tmp_path / "d") == load_or_create_secret(tmp_path / "d")


# --- the token's claims ----------------------------------------------------------------------------


def _forged(**changes: Any) -> str:
    claims = claims_for("ws", "a@b.c", now=T0)
    claims.update(changes)
    for name in [name for name, value in changes.items() if value is None]:
        del claims[name]
    return encode(claims, SECRET)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aud": "another-api"}, "not an id token"),
        ({"aud": None}, "not an id token"),
        ({"token_use": "access"}, "not an id token"),
        ({"token_use": None}, "not an id token"),
        ({"iat": int((T0 + timedelta(hours=1)).timestamp())}, "issued in the future"),
        ({"iat": None}, "says not when"),
        ({"exp": None}, "says not when"),
        ({"exp": "never"}, "says not when"),
        ({"exp": int((T0 + timedelta(days=365)).timestamp())}, "longer than 30 days"),
    ],
)
def test_tokens_with_wrong_claims_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        verify_token(SECRET, _forged(**changes), now=T0 + timedelta(minutes=1))


def test_a_minted_token_is_an_id_token_for_the_api() -> None:
    claims = verify_token(SECRET, mint_token(SECRET, workspace="ws", email="a@b.c", now=T0), now=T0)

    assert claims["aud"] == "tunelab"
    assert claims["token_use"] == "id"


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(hours=-1), timedelta(days=30, seconds=1)])
def test_no_token_is_minted_for_no_time_or_over_30_days(ttl: timedelta) -> None:
    with pytest.raises(ValidationFailed, match="ttl"):
        claims_for("ws", "a@b.c", ttl=ttl)


def _token_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunelab")
    add_local_commands(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("hours", ["0", "-1", "721", "nan", "inf", "soon"])
def test_local_token_refuses_a_ttl_out_of_bounds_as_a_usage_error(
    hours: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _token_parser().parse_args(
            ["local", "token", "--workspace", "w", "--email", "a@b.c", "--ttl-hours", hours]
        )

    assert exit_info.value.code == 2
    assert "--ttl-hours" in capsys.readouterr().err


def test_local_token_takes_a_ttl_within_bounds() -> None:
    args = _token_parser().parse_args(
        ["local", "token", "--workspace", "w", "--email", "a@b.c", "--ttl-hours", "720"]
    )

    assert args.ttl_hours == 720


def test_the_signature_helper_builds_valid_v4_headers() -> None:
    """botocore's signer, as the runtime uses it for moto's management paths, is what the guard checks."""
    access = new_access("http://127.0.0.1:1", "us-east-1")
    from tunelab.local.aws_guard import signed_request_headers  # noqa: PLC0415

    headers = signed_request_headers(access, "POST", "http://127.0.0.1:1/moto-api/reset", b"{}")

    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={access.access_key_id}/")


# --- base models -------------------------------------------------------------------------------------


def _hf_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 64})
    )
    (root / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    (root / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    return root


def test_an_operators_folder_shows_tenants_no_path(tmp_path: Path) -> None:
    from tunelab.entrypoints.api.contracts import BaseModelOut  # noqa: PLC0415
    from tunelab.local.models import register_model_folder, registered_folders  # noqa: PLC0415

    folder = _hf_folder(tmp_path / "data" / "weights" / "mine")
    spec = register_model_folder("mine", folder, tmp_path / "data")

    seen = BaseModelOut.from_spec(spec, runtime="local", region="us-east-1").model_dump_json()
    assert str(tmp_path) not in seen
    assert str(tmp_path) not in spec.model_dump_json(exclude={"hf_id"})
    assert registered_folders(tmp_path / "data") == [("local.mine", str(folder.resolve()))]
    assert stat.S_IMODE((tmp_path / "data" / "models.json").stat().st_mode) == 0o600


def test_an_unusable_operators_folder_is_named_in_the_log_not_to_the_tenant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tunelab.domain.errors import ProviderError  # noqa: PLC0415
    from tunelab.local.models import base_model_folder, register_model_folder  # noqa: PLC0415

    folder = _hf_folder(tmp_path / "data" / "weights" / "mine")
    spec = register_model_folder("mine", folder, tmp_path / "data")
    (folder / "model.safetensors").unlink()

    with caplog.at_level("WARNING", logger="tunelab.local"), pytest.raises(ProviderError) as caught:
        base_model_folder(spec, tmp_path / "data")

    assert str(tmp_path) not in caught.value.message
    assert str(folder) in caplog.text
