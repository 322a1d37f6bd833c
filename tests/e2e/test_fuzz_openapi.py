"""The local runtime fuzzed over HTTP: schemathesis reads `GET /v1/openapi.json` from the running runtime
and sends valid and invalid requests for every operation (as a workspace with a real token), then the
explicit probes the document implies (bodies that are not UTF-8, JSON nested 5,000 deep, broken JSON,
each method a known path does not take). No answer may be a 5xx, every 4xx has the contract's error body.

Bounded: MAX_EXAMPLES requests drawn over all operations, no shrinking, derandomized. TRACE and other
methods API Gateway itself refuses are the local front's to answer (its own tests cover them); the probes
here use the methods API Gateway passes to the function.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.e2e.conftest import LocalApi
from tests.integration.fuzz_support import check_answer, check_probe, fuzz_settings, probes

pytestmark = pytest.mark.xdist_group("e2e")

MAX_EXAMPLES = 300
OPENAPI_PATH = "/v1/openapi.json"


@cache
def _cases(base_url: str) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Requests for every operation of the document the runtime at `base_url` serves, valid or not."""
    schema = schemathesis.openapi.from_url(f"{base_url}{OPENAPI_PATH}")
    schema.config.generation.update(deterministic=True)
    return st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))


@pytest.fixture(scope="module")
def bearer(local: LocalApi) -> dict[str, str]:
    """A workspace's token: generated requests go as far as a user's would."""
    return {"Authorization": f"Bearer {local.token(workspace='ws-fuzz')}"}


@fuzz_settings(MAX_EXAMPLES)
@given(data=st.data())
def test_no_generated_request_gets_a_5xx_and_every_4xx_has_the_error_body(
    local: LocalApi, bearer: dict[str, str], data: st.DataObject
) -> None:
    case = data.draw(_cases(local.base_url))

    response = case.call(base_url=local.base_url, headers=bearer)

    check_answer(
        response.status_code, response.headers, response.content, f"{case.method} {case.formatted_path}"
    )


def test_explicit_probes_from_the_served_document(local: LocalApi) -> None:
    document = local.call("GET", OPENAPI_PATH, token=None).json()
    found = probes(document)
    failures: list[str] = []

    for probe in found:
        headers = {"Content-Type": probe.content_type} if probe.content_type else {}
        answer = local.call(probe.method, probe.path, content=probe.body, headers=headers)
        try:
            check_probe(probe, answer.status_code, dict(answer.headers), answer.content)
        except AssertionError as failed:
            failures.append(str(failed))

    assert len(found) > 50  # every path, every JSON body
    assert failures == []
