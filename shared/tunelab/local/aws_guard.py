"""The local runtime's AWS endpoint: moto's server behind a guard that lets in only this run.

moto's server accepts any credentials, answers any `Host` and reflects any `Origin` in CORS, and
serves its management paths (`/moto-api/reset`, `/moto-api/data.json`, ...) to anyone. On a shared
machine that is every local process — and, through DNS rebinding, any web page the operator opens —
reading every workspace's records and datasets, invoking the API function with forged claims, or
creating functions. `AwsEndpoint` serves moto's own WSGI application (as `ThreadedMotoServer` does)
behind `AwsGuard`, which answers a request only when

* its `Host` is the loopback address the endpoint listens on (`127.0.0.1:<port>`, `localhost:<port>`
  or `<bucket>.localhost:<port>`): a page whose name was rebound to 127.0.0.1 sends its own name;
* it is signed with AWS Signature Version 4 — an `Authorization` header, or a presigned URL's query —
  by this run's access key id, and the signature is right (the canonical request is rebuilt as
  botocore builds it: method, path, query, the signed headers, the payload's hash); the signing time
  is within 15 minutes, and a presigned URL has not expired. An S3 URL presigned the older way
  (Signature Version 2 query: `AWSAccessKeyId`, `Expires`, `Signature`, as boto3 presigns for
  us-east-1) is checked the same way, by its own rules.

Anything else gets 403 with an AWS-shaped error (XML, or JSON for JSON protocols). The management
paths are moto's like any other: signed requests only. No answer carries CORS headers. The payload of
an S3 request is not hashed again here (its `x-amz-content-sha256`, signed, stands for it), so large
uploads stream through.

moto's Step Functions executor calls the other services over HTTP with fixed credentials ("ak");
`sign_step_functions_calls` makes it use this run's instead (checked on moto 5.2.x).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from botocore.auth import HmacV1Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path

from tunelab.local.aws_access import AwsAccess, new_access

logger = logging.getLogger("tunelab.local")

ALGORITHM = "AWS4-HMAC-SHA256"
# AWS refuses a signature whose time is further than this from its own clock.
MAX_SKEW = timedelta(minutes=15)
# The longest a presigned URL may live (S3's limit).
MAX_PRESIGNED = timedelta(days=7)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$")
_AWS_TIME = "%Y%m%dT%H%M%SZ"
# The query parameters a Signature Version 2 resource includes.
_V2_SUBRESOURCES = frozenset(HmacV1Auth.QSAOfInterest)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Refused(Exception):  # noqa: N818  # a refusal, answered, not raised out
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _environ_key(header: str) -> str:
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"


def _raw_target(environ: dict[str, Any]) -> tuple[str, str]:
    """The path and the query as the client sent them (still percent-encoded)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        return quote(environ.get("PATH_INFO", "") or "/", safe="/~"), str(environ.get("QUERY_STRING", ""))
    text = raw.encode("latin-1").decode("utf-8", "replace")
    if "://" in text.split("?", 1)[0]:  # an absolute-form target
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    path, _, query = text.partition("?")
    return path or "/", query


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for pair in query.split("&") if query else []:
        key, _, value = pair.partition("=")
        pairs.append((key, value))
    return pairs


def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_time(value: str) -> datetime:
    try:
        return datetime.strptime(value, _AWS_TIME).replace(tzinfo=UTC)
    except ValueError:
        raise Refused("IncompleteSignature", f"The signing time {value!r} is not YYYYMMDDTHHMMSSZ.") from None


class AwsGuard:
    """WSGI middleware: `app` answers only requests signed by this run (see the module's description)."""

    def __init__(self, app: WsgiApp, *, now: Callable[[], datetime] | None = None) -> None:
        self._app = app
        self._now = now or (lambda: datetime.now(UTC))
        self._access: AwsAccess | None = None
        self._hosts: frozenset[str] = frozenset()
        self._port = 0
        self._after_write: Callable[[str, dict[str, Any], int], None] | None = None

    def keep_writes(self, after_write: Callable[[str, dict[str, Any], int], None] | None) -> None:
        """Call `after_write(service, environ, status)` once moto has answered a write (any method but
        GET, HEAD and OPTIONS) with a 2xx or 4xx, before the answer leaves; a failure there answers 500."""
        self._after_write = after_write

    def configure(self, access: AwsAccess, port: int) -> None:
        """Accept `access`'s credentials, at loopback `port`."""
        self._access = access
        self._port = port
        self._hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})

    # --- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            service = self.check(environ)
        except Refused as refusal:
            logger.warning(
                "AWS endpoint refused %s %s from %s: %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                environ.get("REMOTE_ADDR"),
                refusal.code,
            )
            return self._refuse(environ, start_response, refusal)

        def start_without_cors(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            kept = [
                (name, value) for name, value in headers if not name.lower().startswith("access-control-")
            ]
            return start_response(status, kept, *exc_info)

        method = str(environ.get("REQUEST_METHOD") or "").upper()
        if self._after_write is None or method in ("GET", "HEAD", "OPTIONS"):
            return self._app(environ, start_without_cors)
        # A write: its answer waits until the runtime has kept it (`tunelab.local.persistence`).
        answered: list[tuple[str, list[tuple[str, str]]]] = []

        def hold(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Callable[[bytes], Any]:
            answered[:] = [(status, headers)]
            return lambda data: None  # moto returns its body; it never writes through this

        body = self._app(environ, hold)
        if not answered:  # an application that starts its answer only when its body is read
            body = list(body)
        status, headers = answered[0]
        if status[:1] in ("2", "4"):  # applied, or refused (a refused transaction may change state too)
            try:
                self._after_write(service, environ, int(status[:3]))
            except Exception:
                logger.exception("keeping a %s write on disk failed; it is answered as failed", service)
                close = getattr(body, "close", None)
                if close is not None:
                    close()
                return self._refuse(
                    environ,
                    start_response,
                    Refused("InternalFailure", "The local runtime could not keep the write on disk."),
                    status="500 Internal Server Error",
                )
        start_without_cors(status, headers)
        return body

    # --- the checks ---------------------------------------------------------------------------

    def check(self, environ: dict[str, Any]) -> str:
        """The signing service of an acceptable request; `Refused` saying why otherwise."""
        access = self._access
        if access is None:
            raise Refused("ServiceUnavailable", "The local runtime's AWS endpoint is starting.")
        self._check_host(str(environ.get("HTTP_HOST") or ""))
        path, query = _raw_target(environ)
        pairs = _query_pairs(query)
        authorization = str(environ.get("HTTP_AUTHORIZATION") or "")
        presigned = {unquote(k): unquote(v) for k, v in pairs if k.startswith("X-Amz-")}
        expires = 0
        if authorization:
            fields = self._authorization_fields(authorization)
            credential, signed_headers, signature = (
                fields["Credential"],
                fields["SignedHeaders"],
                fields["Signature"],
            )
            stamp = str(environ.get("HTTP_X_AMZ_DATE") or "")
            if not stamp:
                raise Refused("IncompleteSignature", "The request has no X-Amz-Date header.")
            canonical_pairs = pairs
        elif {"AWSAccessKeyId", "Signature", "Expires"} <= {key for key, _ in pairs}:
            self._check_v2_query(environ, access, path, query)
            return "s3"
        elif presigned.get("X-Amz-Algorithm") == ALGORITHM:
            try:
                credential = presigned["X-Amz-Credential"]
                signed_headers = presigned["X-Amz-SignedHeaders"]
                signature = presigned["X-Amz-Signature"]
                stamp = presigned["X-Amz-Date"]
                expires = int(presigned["X-Amz-Expires"])
            except (KeyError, ValueError):
                raise Refused(
                    "AuthorizationQueryParametersError", "The presigned URL is incomplete."
                ) from None
            canonical_pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
        else:
            raise Refused(
                "MissingAuthenticationToken",
                "The local runtime's AWS endpoint answers only requests signed (AWS Signature Version 4) "
                'with the running runtime\'s credentials: `eval "$(tunelab local aws-env)"` sets them.',
            )

        key_id, day, region, service = self._credential(credential)
        if not hmac.compare_digest(key_id.encode(), access.access_key_id.encode()):
            raise Refused(
                "InvalidClientTokenId",
                "The access key id is not this run's: each start of the local runtime makes new "
                "credentials (`tunelab local aws-env`).",
            )
        when = _parse_time(stamp)
        if stamp[:8] != day:
            raise Refused("SignatureDoesNotMatch", "The credential's date is not the signing date.")
        now = self._now()
        if authorization:
            if abs(now - when) > MAX_SKEW:
                raise Refused("RequestTimeTooSkewed", "The signing time is more than 15 minutes away.")
        elif not 0 < expires <= MAX_PRESIGNED.total_seconds() or when - MAX_SKEW > now:
            raise Refused("AuthorizationQueryParametersError", "The presigned URL's times are invalid.")
        elif now > when + timedelta(seconds=expires):
            raise Refused("AccessDenied", "The presigned URL has expired.")

        header_names = [name for name in signed_headers.split(";") if name]
        if "host" not in header_names:
            raise Refused("SignatureDoesNotMatch", "The signature does not cover the Host header.")
        canonical_headers = "".join(
            f"{name}:{' '.join(str(environ.get(_environ_key(name), '')).split())}\n" for name in header_names
        )
        if "x-amz-content-sha256" in header_names:
            payload = str(environ.get("HTTP_X_AMZ_CONTENT_SHA256", ""))
        elif not authorization and service == "s3":
            payload = UNSIGNED_PAYLOAD
        else:
            payload = hashlib.sha256(self._body(environ)).hexdigest()
        canonical_path = path if service == "s3" else quote(normalize_url_path(path), safe="/~")
        canonical_query = "&".join(f"{k}={v}" for k, v in sorted(canonical_pairs))
        canonical_request = "\n".join(
            [
                str(environ.get("REQUEST_METHOD", "")).upper(),
                canonical_path,
                canonical_query,
                canonical_headers,
                ";".join(header_names),
                payload,
            ]
        )
        string_to_sign = "\n".join(
            [
                ALGORITHM,
                stamp,
                f"{day}/{region}/{service}/aws4_request",
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            ]
        )
        key = _signing_key(access.secret_access_key, day, region, service)
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Refused(
                "SignatureDoesNotMatch",
                "The request signature does not match: sign with this run's secret key "
                "(`tunelab local aws-env`).",
            )
        return service

    def _check_v2_query(self, environ: dict[str, Any], access: AwsAccess, path: str, query: str) -> None:
        """An S3 URL presigned with Signature Version 2 (HMAC-SHA1 over method, Content-MD5,
        Content-Type, expiry, x-amz-* values and the resource), as botocore's `HmacV1QueryAuth`."""
        values = {unquote(key): unquote(value) for key, value in _query_pairs(query)}
        if not hmac.compare_digest(values["AWSAccessKeyId"].encode(), access.access_key_id.encode()):
            raise Refused(
                "InvalidAccessKeyId",
                "The access key id is not this run's: each start of the local runtime makes new "
                "credentials (`tunelab local aws-env`).",
            )
        expires = values["Expires"]
        if not expires.isdigit() or self._now().timestamp() > int(expires):
            raise Refused("AccessDenied", "The presigned URL has expired.")
        signed: dict[str, str] = {}
        for name in ("content-md5", "content-type"):
            signed[name] = values.get(name, str(environ.get(_environ_key(name), ""))).strip()
        custom = {
            key.lower(): value.strip() for key, value in values.items() if key.lower().startswith("x-amz-")
        }
        for key, value in environ.items():
            if key.startswith("HTTP_X_AMZ_"):
                custom.setdefault(key[5:].lower().replace("_", "-"), str(value).strip())
        resource = path
        host = str(environ.get("HTTP_HOST") or "").lower()
        if ".localhost:" in host:  # virtual-hosted: the resource names the bucket
            resource = f"/{host.split('.localhost:', 1)[0]}{path}"
        subresources = sorted(
            (parts[0], "=".join([parts[0], unquote(parts[1])]) if len(parts) > 1 else parts[0])
            for parts in (pair.split("=", 1) for pair in query.split("&") if query)
            if parts[0] in _V2_SUBRESOURCES
        )
        if subresources:
            resource += "?" + "&".join(text for _, text in subresources)
        string_to_sign = "\n".join(
            [
                str(environ.get("REQUEST_METHOD", "")).upper(),
                signed["content-md5"],
                signed["content-type"],
                expires,
                *(f"{key}:{custom[key]}" for key in sorted(custom)),
                resource,
            ]
        )
        digest = hmac.new(access.secret_access_key.encode(), string_to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest), values["Signature"].encode()):
            raise Refused(
                "SignatureDoesNotMatch",
                "The presigned URL's signature does not match (signed by another run, or changed).",
            )

    def _check_host(self, host: str) -> None:
        name = host.strip().lower()
        if name in self._hosts:
            return
        subdomain, _, rest = name.rpartition(".localhost:")
        if subdomain and rest == str(self._port) and _LABEL.fullmatch(subdomain):
            return  # a virtual-hosted bucket: <bucket>.localhost is loopback by definition
        raise Refused(
            "AccessDenied",
            f"The local runtime's AWS endpoint answers only at 127.0.0.1:{self._port} or localhost:"
            f"{self._port}, not at Host {host[:100]!r}.",
        )

    @staticmethod
    def _authorization_fields(authorization: str) -> dict[str, str]:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise Refused(
                "IncompleteSignature",
                f"Only {ALGORITHM} (Signature Version 4) signatures are accepted, not {algorithm[:40]!r}.",
            )
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        if not all(fields.get(name) for name in ("Credential", "SignedHeaders", "Signature")):
            raise Refused(
                "IncompleteSignature",
                "The Authorization header lacks Credential, SignedHeaders or Signature.",
            )
        return fields

    @staticmethod
    def _credential(credential: str) -> tuple[str, str, str, str]:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts[:4]):
            raise Refused(
                "IncompleteSignature", "The credential is not KEY/DATE/REGION/SERVICE/aws4_request."
            )
        return parts[0], parts[1], parts[2], parts[3]

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes:
        """The request's body, read once and put back for moto."""
        stream = environ.get("wsgi.input")
        if stream is None:
            return b""
        length = str(environ.get("CONTENT_LENGTH") or "").strip()
        if environ.get("wsgi.input_terminated"):
            body = stream.read()
        elif length.isdigit():
            body = stream.read(int(length)) if int(length) else b""
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return bytes(body)

    # --- the refusal --------------------------------------------------------------------------

    @staticmethod
    def _refuse(
        environ: dict[str, Any],
        start_response: StartResponse,
        refusal: Refused,
        status: str = "403 Forbidden",
    ) -> list[bytes]:
        request_id = str(uuid.uuid4())
        content_type = str(environ.get("CONTENT_TYPE") or "")
        if environ.get("HTTP_X_AMZ_TARGET") or "json" in content_type:
            body = json.dumps({"__type": refusal.code, "message": refusal.message}).encode()
            headers = [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("x-amzn-ErrorType", refusal.code),
                ("x-amzn-RequestId", request_id),
            ]
        else:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{escape(refusal.code)}</Code>"
                f"<Message>{escape(refusal.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers = [("Content-Type", "application/xml"), ("x-amzn-RequestId", request_id)]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]


class AwsEndpoint:
    """moto's server application behind `AwsGuard` on a loopback port, in a thread of this process.

    Bound on construction (`port=0`: a free port), so that `access` — this run's fresh credentials,
    with the endpoint's URL — exists before anything starts; `start()` serves, `stop()` closes.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, region: str = "us-east-1") -> None:
        from moto.moto_server.werkzeug_app import (  # noqa: PLC0415  # moto is the local runtime's
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server  # noqa: PLC0415

        self.guard = AwsGuard(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, self.guard, threaded=True, request_handler=MotoRequestHandler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self.access = new_access(self.url, region)
        self.guard.configure(self.access, self.port)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="tunelab-aws", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


def sign_step_functions_calls(access: AwsAccess) -> Callable[[], None]:
    """Make moto's Step Functions executor call the endpoint with `access` (it signs with fixed
    credentials otherwise, which the guard refuses); returns the undo."""
    from moto.stepfunctions.parser.asl.utils import boto_client  # noqa: PLC0415

    module: Any = boto_client
    original: Any = module.__dict__.get("boto3")
    if original is None or not callable(getattr(original, "client", None)):
        raise RuntimeError("moto's Step Functions executor makes its clients another way; check the moto pin")

    class _SignedBoto3:
        """boto3 as the executor's module sees it, with this run's credentials."""

        def __getattr__(self, name: str) -> Any:
            return getattr(original, name)

        @staticmethod
        def client(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("aws_session_token", None)
            kwargs.update(
                aws_access_key_id=access.access_key_id, aws_secret_access_key=access.secret_access_key
            )
            return original.client(*args, **kwargs)

    module.boto3 = _SignedBoto3()

    def undo() -> None:
        module.boto3 = original

    return undo


def signed_request_headers(
    access: AwsAccess, method: str, url: str, body: bytes = b"", service: str = "moto"
) -> dict[str, str]:
    """The headers that sign `method url` with `access` (for calls that are not boto3's, such as
    moto's management paths)."""
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    credentials = Credentials(access.access_key_id, access.secret_access_key)
    SigV4Auth(credentials, service, access.region).add_auth(request)
    return dict(request.headers.items())
