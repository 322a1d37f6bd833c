"""Search and filters over HTTP in the local runtime: datasets and models of a workspace of their own,
filtered, sorted and paged as a user would, with another workspace's look-alikes never shown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import LocalApi
from tests.e2e.jobs import TINY, create, csv_of, quick_job, unique, upload

pytestmark = pytest.mark.xdist_group("e2e")


def _names(local: LocalApi, path: str, token: str, **params: Any) -> list[str]:
    answer = local.call("GET", path, token=token, params=params)
    assert answer.status_code == 200, answer.text
    return [item["name"] for item in answer.json()["items"]]


def test_lists_filtered_sorted_and_paged_over_http(local: LocalApi) -> None:
    workspace = unique("ws-search")
    ada = local.token(workspace=workspace, email="ada@example.com")
    grace = local.token(workspace=workspace, email="grace@example.com")
    other = local.token(workspace=unique("ws-search-other"))
    prefix = unique("find")

    # Given three ready datasets and an invalid one, and three models, one of them Grace's
    data = [upload(local, rows=16, token=ada) for _ in range(3)]
    bad = local.call(
        "POST",
        "/v1/datasets",
        token=ada,
        params={"name": f"{prefix}-broken"},
        content=csv_of([("a prompt", "")]),
        headers={"Content-Type": "text/csv"},
    )
    assert bad.json()["status"] == "invalid", bad.text
    first = create(local, quick_job(f"{prefix}-a", data[0]["id"]), token=ada)
    create(local, quick_job(f"{prefix}-b", data[1]["id"]), token=grace)
    create(local, quick_job(f"{prefix}-c", data[0]["id"]), token=ada)
    create(local, quick_job(f"{prefix}-a", upload(local, rows=16, token=other)["id"]), token=other)
    models = "/v1/fine-tuned-models"

    # Then each filter, and several together, find exactly what they name
    everything = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    assert _names(local, models, ada) == everything
    assert _names(local, models, ada, status="training,not_deployed", provider="local") == everything
    assert _names(local, models, ada, status="deployed") == []
    assert _names(local, models, ada, creator="grace@example.com") == [f"{prefix}-b"]
    assert _names(local, models, ada, dataset_id=data[0]["id"], base_model_id=TINY) == [
        f"{prefix}-a",
        f"{prefix}-c",
    ]
    assert _names(local, models, ada, name_prefix=f"{prefix}-A".upper(), sort="name", order="desc") == [
        f"{prefix}-a"
    ]
    assert _names(local, models, ada, sort="created_at", order="desc") == everything[::-1]
    assert (
        _names(local, models, ada, created_after=first["created_at"], created_before=first["created_at"])
        == []
    )
    assert _names(local, models, ada, created_after=first["created_at"], sort="created_at") == everything

    # And a filtered list pages one model at a time, each once
    seen, token = [], None
    while True:
        params = {
            "provider": "local",
            "sort": "created_at",
            "limit": 1,
            **({"next_token": token} if token else {}),
        }
        page = local.call("GET", models, token=ada, params=params).json()
        seen += [m["name"] for m in page["items"]]
        token = page["next_token"]
        if token is None:
            break
    assert seen == everything

    # Datasets: by status and name, either way
    assert _names(local, "/v1/datasets", ada, status="invalid") == [f"{prefix}-broken"]
    ready = _names(local, "/v1/datasets", ada, status="ready", sort="name", order="desc")
    assert ready == sorted((d["name"] for d in data), key=str.lower, reverse=True)

    # A bad parameter is a 400 naming it
    answer = local.call("GET", models, token=ada, params={"sort": "size"})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"][0]["field"] == "sort"
    instances = local.call("GET", "/v1/instance-types", token=ada, params={"min_vram_gb": 80}).json()["items"]
    assert instances
    assert all(i["vram_gb"] >= 80 for i in instances)
