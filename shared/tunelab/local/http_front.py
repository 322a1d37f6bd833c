"""The local runtime's HTTP front: what API Gateway and its Cognito authorizer do on AWS.

Each request becomes an API Gateway REST API proxy event (the shape of the Lambda developer guide's
"Example REST API proxy event", resource `/{proxy+}`) for the API handler, called in this process.
A bearer token is verified here (`tokens.verify_token`) and its claims go to the handler in
`requestContext.authorizer.claims`, as the authorizer passes them (strings). Without a token the
handler gets no claims and answers 401 itself; a token that fails verification is answered 401
here, in the contract's error shape, except on the public paths (health, OpenAPI), which need none.

The API handler is one Lambda container: one request at a time (its resolver keeps the current
event on a module-level object, as Lambda's one-request-per-container model allows).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tunelab.domain.errors import PayloadTooLarge, TunelabError, Unauthorized
from tunelab.entrypoints.api.errors import proxy_error
from tunelab.local.tokens import InvalidToken

logger = logging.getLogger("tunelab.local.http")

# API Gateway's payload limit; the API handler applies the contract's own (5 MiB) below it.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
STAGE = "local"
API_ID = "local"
ACCOUNT_ID = "123456789012"

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
    ) -> None:
        self._handler_factory = handler
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

        def _serve(self) -> None:
            started = time.monotonic()
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

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                raise PayloadTooLarge(f"The request is over {MAX_REQUEST_BYTES // (1024 * 1024)} MiB.")
            return self.rfile.read(length) if length else b""

        def _read_chunked(self) -> bytes:
            parts: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > MAX_REQUEST_BYTES:
                    raise PayloadTooLarge(f"The request is over {MAX_REQUEST_BYTES // (1024 * 1024)} MiB.")
                parts.append(self.rfile.read(size))
                self.rfile.readline()

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
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            self.send_response(status, phrase)
            for name, values in headers.items():
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            logger.debug(format, *args)

        # http.server dispatches on these names.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    return RequestHandler
