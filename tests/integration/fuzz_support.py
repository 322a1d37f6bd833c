"""What the API fuzz tests share (in-process here, over HTTP in tests/e2e/test_fuzz_openapi.py): the
contract's rules that every answer keeps, and the explicit probes the OpenAPI document implies.

The rules: no answer is a 5xx; every 4xx has the contract's error body (`{"error": {"code", "message",
"details"?}}`, JSON); a 405 says what is allowed (`Allow`). The probes, for every path and operation of
the document: each method a known path does not take (405), and for each operation with a JSON body,
a body that is not UTF-8, JSON nested 5,000 deep, and broken JSON (400 `validation_error`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, settings

# Methods probed on every known path (TRACE, CONNECT and HEAD are left to each transport).
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A value for each path parameter of the document that passes the routes' own checks.
PATH_VALUES = {"model_id": "amazon.nova-micro-v1:0:128k", "dataset_id": "ds_01jdqz8k3m4n5p6q7r8s9t0v1w"}
DEFAULT_PATH_VALUE = "support-bot"
NESTING = 5000
_ERROR_KEYS = {"code", "message", "details"}
_DETAIL_KEYS = {"field", "message", "row", "column"}


def fuzz_settings(max_examples: int) -> settings:
    """Bounded and repeatable: the same requests every run, no shrinking, no example database."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@dataclass(frozen=True)
class Probe:
    """One request and the answer the contract asks for."""

    method: str
    path: str
    body: bytes | None
    content_type: str | None
    status: int
    code: str
    says: str | None = None  # a part of the message
    allow: str | None = None  # the `Allow` header of a 405

    @property
    def id(self) -> str:
        what = {405: "method", 400: self.says or "body"}.get(self.status, str(self.status))
        return f"{self.method} {self.path} {what}"


def concrete(template: str) -> str:
    """A path of the document with a sample value for each parameter."""
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), DEFAULT_PATH_VALUE), template)


def probes(document: Mapping[str, Any]) -> list[Probe]:
    """The explicit probes for every path and operation of an OpenAPI document."""
    found: list[Probe] = []
    for template, operations in document["paths"].items():
        path = concrete(template)
        taken = sorted(m.upper() for m in operations if m.upper() in {*METHODS, "HEAD", "OPTIONS"})
        allow = ", ".join(taken)
        for method in METHODS:
            if method not in taken:
                found.append(Probe(method, path, None, None, 405, "method_not_allowed", allow=allow))
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content") or {}
            if "application/json" not in content:
                continue
            json_probe = {"method": method.upper(), "path": path, "content_type": "application/json"}
            found += [
                Probe(
                    **json_probe,
                    body=b'{"name": "caf\xe9 \xff"}',
                    status=400,
                    code="validation_error",
                    says="UTF-8",
                ),
                Probe(
                    **json_probe,
                    body=b"[" * NESTING + b"]" * NESTING,
                    status=400,
                    code="validation_error",
                    says="64 levels",
                ),
                Probe(**json_probe, body=b'{"name": ', status=400, code="validation_error", says="JSON"),
            ]
    return found


def check_answer(status: int, headers: Mapping[str, Any], body: bytes, request: str) -> dict[str, Any] | None:
    """Assert the contract's rules for an answer; the error body of a 4xx."""
    assert status < 500, f"{request} answered {status}: {body[:500]!r}"
    if status < 400:
        return None
    lower = {k.lower(): v if isinstance(v, str) else ", ".join(v) for k, v in headers.items()}
    assert lower.get("content-type", "").startswith("application/json"), f"{request}: {status} {lower}"
    payload = json.loads(body)
    assert isinstance(payload, dict), f"{request}: {body[:300]!r}"
    assert set(payload) == {"error"}, f"{request}: {payload}"
    error = payload["error"]
    assert isinstance(error, dict), f"{request}: {payload}"
    assert set(error) <= _ERROR_KEYS, f"{request}: {error}"
    assert isinstance(error.get("code"), str), f"{request}: {error}"
    assert error["code"], f"{request}: {error}"
    assert isinstance(error.get("message"), str), f"{request}: {error}"
    assert error["message"], f"{request}: {error}"
    for detail in error.get("details", []):
        assert isinstance(detail, dict), f"{request}: {error}"
        assert set(detail) <= _DETAIL_KEYS, f"{request}: {error}"
        assert isinstance(detail.get("message"), str), f"{request}: {error}"
    if status == 405:
        assert lower.get("allow"), f"{request}: a 405 without Allow"
    return error


def check_probe(probe: Probe, status: int, headers: Mapping[str, Any], body: bytes) -> None:
    """Assert the answer a probe asks for."""
    error = check_answer(status, headers, body, probe.id)
    assert status == probe.status, f"{probe.id}: {status} {body[:300]!r}"
    assert error is not None
    assert error["code"] == probe.code, f"{probe.id}: {error}"
    if probe.says is not None:
        assert probe.says in error["message"], f"{probe.id}: {error}"
    if probe.allow is not None:
        lower = {k.lower(): v if isinstance(v, str) else ", ".join(v) for k, v in headers.items()}
        assert lower["allow"] == probe.allow, f"{probe.id}: {lower}"
