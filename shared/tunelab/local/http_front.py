"""The local runtime's HTTP front: what API Gateway and its Cognito authorizer do on AWS.

Each request becomes an API Gateway REST API proxy event (the shape of the Lambda developer guide's
"Example REST API proxy event", resource `/{proxy+}`) for the API handler, called in this process.
A bearer token is verified here (`tokens.verify_token`) and its claims go to the handler in
`requestContext.authorizer.claims`, as the authorizer passes them (strings). Without a token the
handler gets no claims and answers 401 itself; a token that fails verification is answered 401
here, in the contract's error shape, except on the public paths (health, OpenAPI), which need none.

The API handler is one Lambda container: one request at a time (its resolver keeps the current
event on a module-level object, as Lambda's one-request-per-container model allows).

What the front refuses itself, always in the contract's error shape (JSON, never an HTML page):

* a `Host` that is not this loopback listener (`127.0.0.1:<port>`, `localhost:<port>`,
  `[::1]:<port>`): 403 `forbidden` — a web page whose name was rebound to 127.0.0.1 (DNS
  rebinding) sends its own name;
* a method API Gateway does not pass on (anything but GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS):
  405 `method_not_allowed` with `Allow`;
* a body over `MAX_REQUEST_BYTES` (413 `payload_too_large`, counted as read for a chunked body), a
  `Content-Length` that is not a number of bytes or a malformed chunk (400 `validation_error`), and
  a request line or headers `http.server` cannot read.

CORS is the API function's: its `Access-Control-*` headers reach the browser only for an `Origin`
the runtime allows (`allowed_origins`); none otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tunelab.domain.errors import Forbidden, PayloadTooLarge, TunelabError, Unauthorized, ValidationFailed
from tunelab.entrypoints.api.errors import code_for_status, proxy_error
from tunelab.local.tokens import InvalidToken

logger = logging.getLogger("tunelab.local.http")

# API Gateway's payload limit; the API handler applies the contract's own (5 MiB) below it.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
STAGE = "local"
API_ID = "local"
ACCOUNT_ID = "123456789012"
# The methods API Gateway's `ANY` passes to the function; the front answers any other with 405.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
# A chunk-size line: hex digits, optional extensions; longer lines are refused.
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n$")
_MAX_LINE = 4096
_MAX_TRAILERS = 64
# The contract's codes of the refusals http.server makes itself (others: `code_for_status`).
_PROTOCOL_ERROR_CODES = {
    414: "uri_too_long",
    431: "headers_too_large",
    505: "http_version_not_supported",
}

ApiHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
Verifier = Callable[[str], Mapping[str, Any]]


class PortInUse(OSError):  # noqa: N818  # named for what happened
    """The port the front (or runtime) was asked to listen on is taken."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(
            f"port {port} is in use: is another tunelab local runtime running? Stop it or use --port"
        )
        self.port = port
        self.host = host


def authorizer_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway's Cognito authorizer passes them: every value a string."""
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in claims.items()}


def proxy_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    claims: Mapping[str, str] | None,
    source_ip: str = "127.0.0.1",
    now: datetime | None = None,
) -> dict[str, Any]:
    """A REST API proxy event for one request (`target` is the request line's path and query)."""
    split = urlsplit(target)
    path = split.path or "/"
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value  # the last value wins, as API Gateway's `headers`
        multi.setdefault(name, []).append(value)
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query_single[name] = value
        query_multi.setdefault(name, []).append(value)
    text: str | None
    encoded = False
    if not body:
        text = None
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    request_id = str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.upper(),
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single or None,
        "multiValueQueryStringParameters": query_multi or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "authorizer": {"claims": dict(claims)} if claims is not None else None,
            "domainName": single.get("Host", "127.0.0.1"),
            "domainPrefix": API_ID,
            "extendedRequestId": request_id,
            "httpMethod": method.upper(),
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": source_ip,
                "user": None,
                "userAgent": single.get("User-Agent"),
                "userArn": None,
            },
            "path": f"/{STAGE}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(moment.timestamp() * 1000),
            "resourceId": "proxy",
            "resourcePath": "/{proxy+}",
            "stage": STAGE,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def _error_answer(error: TunelabError) -> dict[str, Any]:
    # The API's own answer for the error: the same status and body the function would give.
    return proxy_error(error)


def _status_answer(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An answer in the contract's error shape for a status no domain error names."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }


def method_not_allowed(method: str) -> dict[str, Any]:
    shown = method if method.isprintable() and len(method) <= 40 else "This method"
    return _status_answer(
        405,
        "method_not_allowed",
        f"{shown} is not supported; the API answers {', '.join(METHODS)}.",
        {"Allow": ", ".join(METHODS)},
    )


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"The request is over {MAX_REQUEST_BYTES // (1024 * 1024)} MiB.")


class HttpFront:
    """A threading HTTP server on `host:port` that answers with `handler` (the API's Lambda entry)."""

    def __init__(
        self,
        *,
        handler: Callable[[], ApiHandler],
        verify: Verifier,
        context: Callable[[], Any],
        public_paths: frozenset[str],
        host: str = "127.0.0.1",
        port: int = 8642,
        allowed_origins: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self._handler_factory = handler
        self._allowed_origins = allowed_origins
        self._handler: ApiHandler | None = None
        self._verify = verify
        self._context = context
        self._public_paths = public_paths
        self._container = threading.Lock()
        try:
            self._server = _Server((host, port), _make_request_handler(self))
        except OSError as error:
            if error.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise PortInUse(port, host) from error
            raise
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="tunelab-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    # --- one request ---------------------------------------------------------------------------

    def host_allowed(self, host: str | None) -> bool:
        """Whether `host` (a request's Host header) names this listener by a loopback name."""
        text = (host or "").strip().lower()
        if text.startswith("["):  # an IPv6 literal: [::1]:port
            literal, _, rest = text.partition("]")
            name, port = f"{literal}]", rest.removeprefix(":")
            if rest and not rest.startswith(":"):
                return False
        else:
            name, _, port = text.partition(":")
        if port != str(self.port) and not (port == "" and self.port == 80):
            return False
        return name in LOOPBACK_NAMES or name == self.host.lower()

    def cors_allowed(self, origin: str | None) -> bool:
        """Whether a response may carry the API function's CORS headers for `origin`."""
        return bool(origin) and origin in set(self._allowed_origins())

    def answer(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> dict[str, Any]:
        """The proxy response for one request."""
        path = urlsplit(target).path
        claims: dict[str, str] | None = None
        authorization = next((v for k, v in headers if k.lower() == "authorization"), None)
        if authorization is not None and path not in self._public_paths:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return _error_answer(Unauthorized("Send the token as 'Authorization: Bearer <token>'."))
            try:
                claims = authorizer_claims(self._verify(token.strip()))
            except InvalidToken as error:
                return _error_answer(error)
        event = proxy_event(
            method=method, target=target, headers=headers, body=body, claims=claims, source_ip=source_ip
        )
        with self._container:
            if self._handler is None:
                self._handler = self._handler_factory()
            try:
                return self._handler(event, self._context())
            except Exception:  # API Gateway answers 502 when the function itself fails
                logger.exception("the API handler failed on %s %s", method, path)
                failure = TunelabError("The API failed on this request; see the runtime's log.")
                return {**_error_answer(failure), "statusCode": 502}


class _Server(ThreadingHTTPServer):
    """Tracks its connections so that stopping closes kept-alive ones and joins their threads."""

    # server_close joins the connection threads (after `close_connections` unblocked them).
    daemon_threads = False
    block_on_close = True
    # An address in use must fail; SO_REUSEADDR is still set (as http.server does) so a port left in
    # TIME_WAIT by a runtime that just stopped can be bound again at once.
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closing = False
        super().__init__(*args, **kwargs)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if self._closing:
                self.shutdown_request(request)
                return
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """End every open connection: a kept-alive one waits for its next request until then."""
        with self._connections_lock:
            self._closing = True
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (or a connection closed by stop) is not the runtime's error.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


def _make_request_handler(front: HttpFront) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tunelab-local"
        error_content_type = "application/json"

        def _serve(self) -> None:
            started = time.monotonic()
            if not front.host_allowed(self.headers.get("Host")):
                self.close_connection = True
                host = (self.headers.get("Host") or "")[:100]
                self._send(
                    _error_answer(
                        Forbidden(
                            f"This local runtime answers only at {front.host}:{front.port} or "
                            f"localhost:{front.port}, not at Host {host!r}."
                        )
                    )
                )
                return
            if self.command not in METHODS:
                self._not_allowed()
                return
            try:
                body = self._read_body()
            except TunelabError as error:
                self.close_connection = True
                self._send(_error_answer(error))
                return
            answer = front.answer(
                self.command, self.path, list(self.headers.items()), body, self.client_address[0]
            )
            self._send(answer)
            logger.info(
                "%s %s %s %.0f ms",
                self.command,
                urlsplit(self.path).path,
                answer.get("statusCode"),
                (time.monotonic() - started) * 1000,
            )

        def _not_allowed(self) -> None:
            # The body (if any) is not read: the connection cannot carry another request.
            self.close_connection = True
            self._send(method_not_allowed(self.command))

        def __getattr__(self, name: str) -> Any:
            # http.server looks up `do_<METHOD>` and answers 501 with an HTML page when there is
            # none; here every method has one, and those API Gateway does not pass answer 405.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def _read_body(self) -> bytes:
            encodings = [v.strip().lower() for v in self.headers.get_all("Transfer-Encoding") or []]
            if encodings:
                if encodings != ["chunked"]:
                    raise ValidationFailed.of(
                        "Transfer-Encoding", "Only 'Transfer-Encoding: chunked' is supported."
                    )
                return self._read_chunked()
            lengths = {v.strip() for v in self.headers.get_all("Content-Length") or []}
            if not lengths:
                return b""
            length_text = lengths.pop()
            if lengths or not (length_text.isascii() and length_text.isdigit()):
                raise ValidationFailed.of(
                    "Content-Length", "Content-Length must be one number of bytes (0 or more)."
                )
            length = int(length_text)
            if length > MAX_REQUEST_BYTES:
                raise _too_large()
            body = self.rfile.read(length) if length else b""
            if len(body) != length:
                raise ValidationFailed.of("body", "The body ended before its Content-Length.")
            return body

        def _read_chunked(self) -> bytes:
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(_MAX_LINE + 1)
                match = _CHUNK_SIZE.match(line)
                if match is None:
                    raise ValidationFailed.of("body", "A chunk size is not a hexadecimal number of bytes.")
                size = int(match.group(1), 16)
                if size == 0:
                    for _ in range(_MAX_TRAILERS):
                        if self.rfile.readline(_MAX_LINE + 1) in (b"\r\n", b"\n"):
                            return b"".join(parts)
                    raise ValidationFailed.of("body", "The chunked body does not end.")
                total += size
                if total > MAX_REQUEST_BYTES:
                    raise _too_large()
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise ValidationFailed.of("body", "A chunk is shorter than its size says.")
                parts.append(chunk)

        def _send(self, answer: Mapping[str, Any]) -> None:
            status = int(answer.get("statusCode", 500))
            raw = answer.get("body") or ""
            payload = base64.b64decode(raw) if answer.get("isBase64Encoded") else str(raw).encode("utf-8")
            headers: dict[str, list[str]] = {}
            for name, value in (answer.get("headers") or {}).items():
                headers[name.lower()] = [str(value)]
            for name, values in (answer.get("multiValueHeaders") or {}).items():
                headers[name.lower()] = [str(v) for v in values]
            headers.pop("content-length", None)
            headers.pop("transfer-encoding", None)
            request_headers = getattr(self, "headers", None)  # absent when the request line was unreadable
            if not front.cors_allowed(request_headers.get("Origin") if request_headers else None):
                for name in [n for n in headers if n.startswith("access-control-")]:
                    del headers[name]
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            self.send_response(status, phrase)
            for name, values in headers.items():
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(payload)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # http.server's own refusals (a request line or headers it cannot read, a line too long)
            # in the contract's shape instead of an HTML page. Nothing more is read from the stream.
            self.close_connection = True
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                self.request_version = "HTTP/1.0"  # a status line and headers, even for an unreadable line
            if code == HTTPStatus.NOT_IMPLEMENTED:  # no do_<METHOD> (cannot happen: see __getattr__)
                self._send(method_not_allowed(str(getattr(self, "command", "") or "")))
                return
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Bad request"
            error_code = _PROTOCOL_ERROR_CODES.get(code) or code_for_status(code)
            self._send(_status_answer(code, error_code, f"{message or phrase}."))

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            logger.debug(format, *args)

        # http.server dispatches on these names.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    return RequestHandler
