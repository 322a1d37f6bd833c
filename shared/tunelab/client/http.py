"""A small HTTP client of tunelab's API (contract v1, design/api.md), over httpx.

`TunelabClient.from_environment()` reads the API's root URL from `TUNELAB_API_URL` and the bearer
token from `TUNELAB_TOKEN`. Without them it talks to the embedded local runtime's defaults: the URL
`http://127.0.0.1:8642` and, for a loopback URL, a token minted with the local runtime's secret
(its data dir: `TUNELAB_LOCAL_DATA_DIR`, else `~/.tunelab/local`) for the default local workspace.

Answers are the API's JSON as plain dicts: the contract lets the server add fields, and a client
must not break when it does. Every error answer becomes an `ApiError(status, code, message,
details)`; a server that cannot be reached becomes `ApiUnreachable` (an `ApiError` with status 0).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tunelab.local.paths import default_data_dir

API_URL_VARIABLE = "TUNELAB_API_URL"
TOKEN_VARIABLE = "TUNELAB_TOKEN"  # noqa: S105  # the variable's name, not a token
DEFAULT_API_URL = "http://127.0.0.1:8642"
# The workspace and user a token is minted for when talking to the local runtime without a token.
DEFAULT_LOCAL_WORKSPACE = "local"
DEFAULT_LOCAL_EMAIL = "you@tunelab.local"
# The API's own limit for a CSV in the request body; bigger files go through a presigned upload.
DIRECT_UPLOAD_LIMIT = 5 * 1024 * 1024
DEFAULT_TIMEOUT_S = 60.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ErrorDetail:
    """One problem of an error answer: a field, or a dataset's row and column."""

    message: str
    field: str | None = None
    row: int | None = None
    column: str | None = None

    def describe(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        if self.field:
            where.append(self.field)
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ApiError(Exception):
    """An error answer of the API, in the contract's shape (or made to look like it)."""

    def __init__(
        self, status: int, code: str, message: str, details: list[ErrorDetail] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r})"


class ApiUnreachable(ApiError):  # noqa: N818  # named for what happened
    """The API could not be reached (refused, timed out, bad address): no HTTP answer at all."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, "unreachable", f"Cannot reach the tunelab API at {url}: {reason}")
        self.url = url


def error_from_response(response: httpx.Response) -> ApiError:
    """The `ApiError` an error answer stands for; bodies not in the contract's shape keep the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = [
            ErrorDetail(
                message=str(item.get("message", "")),
                field=item.get("field"),
                row=item.get("row"),
                column=item.get("column"),
            )
            for item in error.get("details") or []
            if isinstance(item, dict)
        ]
        return ApiError(response.status_code, error["code"], str(error.get("message", "")), details)
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    code = "internal_error" if response.status_code >= 500 else f"http_{response.status_code}"
    return ApiError(response.status_code, code, f"HTTP {response.status_code} from the API: {text}")


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


def local_token(
    data_dir: Path | None = None,
    *,
    workspace: str = DEFAULT_LOCAL_WORKSPACE,
    email: str = DEFAULT_LOCAL_EMAIL,
) -> str:
    """A token of the local runtime whose data dir is `data_dir` (default: the runtime's default)."""
    # Minting loads pydantic (a quarter of a second): only a command that needs a local token pays it.
    from tunelab.local.tokens import issue_token  # noqa: PLC0415  # start-up time, not a cycle

    return issue_token(data_dir or default_data_dir(), workspace=workspace, email=email)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _segment(value: str) -> str:
    """One path segment, percent-encoded (base model ids hold ':' and '.')."""
    return quote(value, safe="")


@dataclass
class TunelabClient:
    """The API's calls, one method each; see design/api.md for what each answers."""

    base_url: str
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = None
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "tunelab-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=self.timeout, transport=self.transport
        )
        # Presigned URLs (uploads, downloads) carry their own signature: no bearer token goes there.
        self._plain = httpx.Client(timeout=max(self.timeout, 300.0), transport=self.transport)

    @classmethod
    def from_environment(
        cls,
        *,
        base_url: str | None = None,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> TunelabClient:
        """A client for `base_url`/`token`, else `$TUNELAB_API_URL`/`$TUNELAB_TOKEN`, else the local
        runtime's defaults (a token is minted only for a loopback URL: the secret is this machine's)."""
        env = os.environ if environ is None else environ
        url = base_url or env.get(API_URL_VARIABLE) or DEFAULT_API_URL
        bearer = token or env.get(TOKEN_VARIABLE)
        if not bearer and is_loopback(url):
            data_dir = env.get("TUNELAB_LOCAL_DATA_DIR")
            bearer = local_token(Path(data_dir).expanduser() if data_dir else None)
        return cls(url, bearer, transport=transport)

    def close(self) -> None:
        self._http.close()
        self._plain.close()

    def __enter__(self) -> TunelabClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call; a 2xx answer, else `ApiError` (or `ApiUnreachable` without an answer)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, json=json, content=content, params=query, headers=dict(headers or {})
            )
        except httpx.TimeoutException as error:
            raise ApiUnreachable(self.base_url, f"no answer within {self.timeout:g} s ({error})") from error
        except httpx.TransportError as error:
            raise ApiUnreachable(self.base_url, str(error) or type(error).__name__) from error
        if response.is_success:
            return response
        raise error_from_response(response)

    def _json(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        body = self.request(method, path, **kwargs).json()
        if not isinstance(body, dict):
            raise ApiError(502, "internal_error", f"The API answered {method} {path} with a non-object body.")
        return body

    def _pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[JsonObject]:
        """Every item of a list, following `next_token`."""
        query = dict(params or {})
        while True:
            page = self._json("GET", path, params=query)
            yield from page.get("items") or []
            token = page.get("next_token")
            if not token:
                return
            query["next_token"] = token

    @staticmethod
    def _created_headers(idempotency_key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": idempotency_key or new_idempotency_key()}

    # --- health, workspace, providers ------------------------------------------------------------

    def health(self) -> JsonObject:
        return self._json("GET", "/v1/health")

    def workspace(self) -> JsonObject:
        return self._json("GET", "/v1/workspace")

    def providers(self) -> list[JsonObject]:
        return list(self._pages("/v1/providers"))

    def sagemaker_connector(self) -> JsonObject:
        return self._json("GET", "/v1/providers/sagemaker/connector")

    def connect_sagemaker(self, body: Mapping[str, Any]) -> JsonObject:
        return self._json("PUT", "/v1/providers/sagemaker", json=dict(body))

    def disconnect_sagemaker(self) -> None:
        self.request("DELETE", "/v1/providers/sagemaker")

    # --- base models -----------------------------------------------------------------------------

    def base_models(self) -> list[JsonObject]:
        return list(self._pages("/v1/base-models"))

    def instance_types(self, min_vram_gb: float | None = None) -> list[JsonObject]:
        return list(self._pages("/v1/instance-types", {"min_vram_gb": min_vram_gb}))

    def base_model(self, model_id: str) -> JsonObject:
        return self._json("GET", f"/v1/base-models/{_segment(model_id)}")

    # --- datasets --------------------------------------------------------------------------------

    def upload_dataset_csv(self, name: str, data: bytes, *, idempotency_key: str | None = None) -> JsonObject:
        """`POST /v1/datasets?name=` with the CSV as the body (up to 5 MiB): validated at once."""
        headers = {"Content-Type": "text/csv", **self._created_headers(idempotency_key)}
        return self._json("POST", "/v1/datasets", content=data, params={"name": name}, headers=headers)

    def create_dataset_upload(self, name: str, *, idempotency_key: str | None = None) -> JsonObject:
        """`POST /v1/datasets` with `{"name"}`: `{"dataset", "upload"}` with a presigned PUT."""
        return self._json(
            "POST", "/v1/datasets", json={"name": name}, headers=self._created_headers(idempotency_key)
        )

    def put_upload(self, upload: Mapping[str, Any], data: bytes) -> None:
        """Send the file to a presigned upload (no bearer token: the URL carries its own signature)."""
        try:
            response = self._plain.request(
                str(upload.get("method", "PUT")),
                str(upload["url"]),
                content=data,
                headers=dict(upload.get("headers") or {}),
            )
        except httpx.TransportError as error:
            raise ApiUnreachable(str(upload["url"]).split("?", 1)[0], str(error)) from error
        if not response.is_success:
            raise ApiError(
                response.status_code,
                "upload_failed",
                f"The upload was refused (HTTP {response.status_code}).",
            )

    def upload_dataset(self, name: str, data: bytes, *, idempotency_key: str | None = None) -> JsonObject:
        """Create a dataset from `data`: in the body up to 5 MiB, else through a presigned upload
        (the dataset answered is then `uploading`; poll `dataset()` until `ready` or `invalid`)."""
        if len(data) <= DIRECT_UPLOAD_LIMIT:
            return self.upload_dataset_csv(name, data, idempotency_key=idempotency_key)
        created = self.create_dataset_upload(name, idempotency_key=idempotency_key)
        self.put_upload(created["upload"], data)
        dataset: JsonObject = created["dataset"]
        return dataset

    def datasets(self, **filters: Any) -> list[JsonObject]:
        """Every dataset matching `filters` (the list's query parameters: `status`, `name_prefix`,
        `created_after`, `created_before`, `sort`, `order`; None leaves one out)."""
        return list(self._pages("/v1/datasets", filters))

    def dataset(self, dataset_id: str) -> JsonObject:
        return self._json("GET", f"/v1/datasets/{_segment(dataset_id)}")

    def delete_dataset(self, dataset_id: str) -> None:
        self.request("DELETE", f"/v1/datasets/{_segment(dataset_id)}")

    # --- estimates -------------------------------------------------------------------------------

    def estimate_cost(self, body: Mapping[str, Any]) -> JsonObject:
        return self._json("POST", "/v1/cost-estimates", json=dict(body))

    def estimate_resources(self, body: Mapping[str, Any]) -> JsonObject:
        return self._json("POST", "/v1/resource-estimates", json=dict(body))

    # --- fine-tuned models -----------------------------------------------------------------------

    def create_model(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> JsonObject:
        """`POST /v1/fine-tuned-models` (202, status `training`), with an `Idempotency-Key`."""
        return self._json(
            "POST", "/v1/fine-tuned-models", json=dict(body), headers=self._created_headers(idempotency_key)
        )

    def clone_model(
        self, name: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> JsonObject:
        """`POST /v1/fine-tuned-models/{name}/clone`: the clone's estimate (not acknowledged) or the new
        model (202)."""
        return self._json(
            "POST",
            f"/v1/fine-tuned-models/{_segment(name)}/clone",
            json=dict(body),
            headers=self._created_headers(idempotency_key),
        )

    def resume_model(
        self, name: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> JsonObject:
        """`POST /v1/fine-tuned-models/{name}/resume`: what resuming costs (not acknowledged) or the model,
        training again (202)."""
        return self._json(
            "POST",
            f"/v1/fine-tuned-models/{_segment(name)}/resume",
            json=dict(body),
            headers=self._created_headers(idempotency_key),
        )

    def models(self, status: str | None = None, **filters: Any) -> list[JsonObject]:
        """Every fine-tuned model matching the filters (the list's query parameters: `status`,
        `provider`, `base_model_id`, `dataset_id`, `creator`, `created_after`, `created_before`,
        `name_prefix`, `sort`, `order`; None leaves one out)."""
        return list(self._pages("/v1/fine-tuned-models", {"status": status, **filters}))

    def model(self, name: str) -> JsonObject:
        return self._json("GET", f"/v1/fine-tuned-models/{_segment(name)}")

    def events_page(self, name: str, next_token: str | None = None, limit: int | None = None) -> JsonObject:
        """One page of the model's history (oldest first), for readers that follow it as it grows."""
        params = {"next_token": next_token, "limit": limit}
        return self._json("GET", f"/v1/fine-tuned-models/{_segment(name)}/events", params=params)

    def events(self, name: str) -> list[JsonObject]:
        return list(self._pages(f"/v1/fine-tuned-models/{_segment(name)}/events"))

    def evaluation(self, name: str) -> JsonObject:
        """The model's evaluation after training: base beside fine-tuned scores, and sample rows."""
        return self._json("GET", f"/v1/fine-tuned-models/{_segment(name)}/evaluation")

    def checkpoints(self, name: str) -> JsonObject:
        """The checkpoints the model's training job kept (`items`, by step; `message` where none)."""
        return self._json("GET", f"/v1/fine-tuned-models/{_segment(name)}/checkpoints")

    def logs_page(self, name: str, next_token: str | None = None, limit: int | None = None) -> JsonObject:
        """One page of the model's training log (oldest first). Its `next_token` stays set while the
        model trains, so this is read page by page, never to the end in one go."""
        params = {"next_token": next_token, "limit": limit}
        return self._json("GET", f"/v1/fine-tuned-models/{_segment(name)}/logs", params=params)

    def stop(self, name: str) -> JsonObject:
        return self._json("POST", f"/v1/fine-tuned-models/{_segment(name)}/stop")

    def deploy(
        self,
        name: str,
        auto_undeploy: Mapping[str, Any] | None = None,
        *,
        instance_type: str | None = None,
        instance_count: int | None = None,
    ) -> JsonObject:
        """Deploy; `auto_undeploy` is `{"after_hours": H}`, `{"at": "<RFC 3339>"}` or None (never).
        A SageMaker model's endpoint instance type and count are sent only when given."""
        body: dict[str, Any] = {"auto_undeploy": dict(auto_undeploy) if auto_undeploy is not None else None}
        if instance_type is not None:
            body["instance_type"] = instance_type
        if instance_count is not None:
            body["instance_count"] = instance_count
        return self._json("POST", f"/v1/fine-tuned-models/{_segment(name)}/deploy", json=body)

    def undeploy(self, name: str) -> JsonObject:
        return self._json("POST", f"/v1/fine-tuned-models/{_segment(name)}/undeploy")

    def update_deployment(self, name: str, auto_undeploy: Mapping[str, Any] | None) -> JsonObject:
        """Move a deployed model's automatic undeploy (`{"after_hours": H}`, counted from now, or
        `{"at": "<RFC 3339>"}`), or cancel it (None)."""
        body = {"auto_undeploy": dict(auto_undeploy) if auto_undeploy is not None else None}
        return self._json("PATCH", f"/v1/fine-tuned-models/{_segment(name)}/deployment", json=body)

    def invoke(
        self,
        name: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
    ) -> JsonObject:
        body: JsonObject = {"prompt": prompt}
        for key, value in (("max_tokens", max_tokens), ("temperature", temperature), ("top_p", top_p)):
            if value is not None:
                body[key] = value
        return self._json("POST", f"/v1/fine-tuned-models/{_segment(name)}/invoke", json=body)

    def download_link(self, name: str, *, variant: str | None = None) -> JsonObject:
        """`GET .../download`: the link to the archive of `variant` (`merged`, the default, or `adapter`)."""
        params = {"variant": variant} if variant else None
        return self._json("GET", f"/v1/fine-tuned-models/{_segment(name)}/download", params=params)

    def fetch(self, url: str, out: Path) -> int:
        """Stream a presigned URL to `out` (no bearer token); the bytes written."""
        written = 0
        partial = out.with_name(out.name + ".partial")
        try:
            with self._plain.stream("GET", url) as response:
                if not response.is_success:
                    raise ApiError(
                        response.status_code,
                        "download_failed",
                        f"The download was refused (HTTP {response.status_code}).",
                    )
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes(1 << 20):
                        file.write(chunk)
                        written += len(chunk)
        except httpx.TransportError as error:
            partial.unlink(missing_ok=True)
            raise ApiUnreachable(url.split("?", 1)[0], str(error)) from error
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(out)
        return written

    def delete_model(self, name: str, *, acknowledge: bool = True) -> None:
        """Delete for good; the API refuses (400) without the acknowledgement."""
        params = {"acknowledge": "true"} if acknowledge else None
        self.request("DELETE", f"/v1/fine-tuned-models/{_segment(name)}", params=params)


__all__ = [
    "API_URL_VARIABLE",
    "DEFAULT_API_URL",
    "DEFAULT_LOCAL_EMAIL",
    "DEFAULT_LOCAL_WORKSPACE",
    "TOKEN_VARIABLE",
    "ApiError",
    "ApiUnreachable",
    "ErrorDetail",
    "JsonObject",
    "TunelabClient",
    "error_from_response",
    "local_token",
]
