"""Datasets through the API under moto: CSV in the body (validated at once), presigned uploads (validated
by the upload handler on S3's "Object Created" event), lists, details, deletes, idempotency and tenants."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from tests.integration import factories
from tests.integration.api_support import GOOD_CSV, OTHER_WS, WS, Api, api_fixture  # noqa: F401  # the `api` fixture
from tests.integration.apigw import api_event, call, claims_for
from tests.integration.handler_support import event
from tunelab.composition.settings import get_settings
from tunelab.entrypoints.api.app import MAX_BODY_BYTES
from tunelab.entrypoints.messages import EventEnvelope, handle_upload

pytestmark = pytest.mark.moto

BAD_CSV = b"prompt,completion\nMy invoice is wrong,billing\n,account\nThe app crashes,\n"


def _objects(api: Api) -> list[str]:
    listed = api.services.s3.list_objects_v2(Bucket=get_settings().datasets_bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_a_csv_in_the_body_is_validated_stored_and_listed(api: Api) -> None:
    created = api.upload_csv("support-tickets")

    assert created.status == 201, created.body
    dataset = created.body
    assert dataset["status"] == "ready"
    assert dataset["id"].startswith("ds_")
    assert dataset["name"] == "support-tickets"
    assert dataset["rows"] == 200
    assert dataset["size_bytes"] == len(GOOD_CSV)
    assert dataset["stats"]["prompt_tokens"] > 0
    assert dataset["stats"]["completion_tokens"] > 0
    assert dataset["error_count"] == 0
    assert dataset["errors"] == []
    assert dataset["created_by"] == {"email": "ada@example.com", "sub": None}
    # the CSV is kept where the workflows read it, byte for byte
    key = f"datasets/{WS}/{dataset['id']}.csv"
    assert _objects(api) == [key]
    stored = api.services.s3.get_object(Bucket=get_settings().datasets_bucket, Key=key)
    assert stored["Body"].read() == GOOD_CSV
    assert stored["ContentType"] == "text/csv"
    # and reads back the same, alone and in the list
    assert api.call("GET", f"/v1/datasets/{dataset['id']}").body == dataset
    listed = api.call("GET", "/v1/datasets").body
    assert listed == {"items": [dataset], "next_token": None}


def test_an_invalid_csv_is_kept_as_a_report_naming_rows_and_columns(api: Api) -> None:
    created = api.upload_csv("broken", BAD_CSV)

    assert created.status == 201
    body = created.body
    assert body["status"] == "invalid"
    assert body["error_count"] == 2
    assert {(e["row"], e["column"]) for e in body["errors"]} == {(2, "prompt"), (3, "completion")}
    assert _objects(api) == []  # only ready datasets keep their file


def test_a_base64_body_is_read_as_bytes(api: Api) -> None:
    # API Gateway base64-encodes bodies of binary media types; a BOM is allowed
    data = b"\xef\xbb\xbf" + GOOD_CSV
    answer = call(
        api_event(
            "POST", "/v1/datasets?name=bom", raw_body=data, content_type="text/csv", claims=claims_for(WS)
        )
    )
    assert answer.status == 201, answer.body
    assert answer.body["status"] == "ready"
    assert answer.body["size_bytes"] == len(data)


@pytest.mark.parametrize(
    ("path", "content_type", "field"),
    [
        ("/v1/datasets", "text/csv", "name"),
        ("/v1/datasets?name=has%20space", "text/csv", "name"),
        ("/v1/datasets?name=-starts-with-hyphen", "text/csv", "name"),
        ("/v1/datasets?name=ok", "application/xml", "Content-Type"),
    ],
)
def test_bad_csv_requests_are_400_naming_the_field(
    api: Api, path: str, content_type: str, field: str
) -> None:
    answer = api.call("POST", path, raw_body=GOOD_CSV.decode(), content_type=content_type)
    assert answer.status == 400, answer.body
    assert answer.error_code == "validation_error"
    assert answer.body["error"]["details"][0]["field"] == field
    assert _objects(api) == []


def test_a_name_longer_than_100_characters_is_refused(api: Api) -> None:
    assert api.upload_csv("a" * 100).status == 201
    answer = api.upload_csv("b" * 101)
    assert answer.status == 400
    assert answer.body["error"]["details"][0]["field"] == "name"


def test_a_body_over_5_mib_is_413(api: Api) -> None:
    big = b"prompt,completion\n" + b"x" * MAX_BODY_BYTES
    answer = api.upload_csv("too-big", big)
    assert answer.status == 413
    assert answer.error_code == "payload_too_large"
    assert "upload" in answer.body["error"]["message"]


def test_names_are_unique_in_the_workspace_regardless_of_case(api: Api) -> None:
    api.dataset("support-tickets")

    again = api.upload_csv("Support-Tickets")

    assert again.status == 409
    assert again.error_code == "name_taken"
    assert len(api.call("GET", "/v1/datasets").body["items"]) == 1
    assert len(_objects(api)) == 1  # the second file was not left behind
    # the same name in another workspace is fine
    assert api.upload_csv("support-tickets", workspace=OTHER_WS).status == 201


def test_json_gives_a_presigned_upload_that_the_upload_handler_validates(api: Api) -> None:
    created = api.call("POST", "/v1/datasets", {"name": "big-tickets"})

    assert created.status == 201, created.body
    dataset, upload = created.body["dataset"], created.body["upload"]
    assert dataset["status"] == "uploading"
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "text/csv"}
    key = f"uploads/{WS}/{dataset['id']}.csv"
    assert f"/{key}?" in upload["url"]
    assert upload["expires_at"].endswith("Z")

    # the client uploads to the URL as told; S3 announces it; the upload handler validates it
    put = requests.put(upload["url"], data=GOOD_CSV, headers=upload["headers"], timeout=10)
    assert put.status_code == 200
    head = api.services.s3.head_object(Bucket=get_settings().datasets_bucket, Key=key)
    obj = {"key": key, "size": len(GOOD_CSV), "etag": head["ETag"].strip('"')}
    s3_event = event("s3_object_created", bucket={"name": get_settings().datasets_bucket}, object=obj)
    result = handle_upload(api.services, EventEnvelope.model_validate(s3_event))

    assert result.action == "validated"
    ready = api.call("GET", f"/v1/datasets/{dataset['id']}").body
    assert ready["status"] == "ready"
    assert ready["rows"] == 200


def test_a_json_body_must_name_the_dataset(api: Api) -> None:
    for body, field in (({}, "name"), ({"name": "x", "size": 3}, "size"), ({"name": "a b"}, "name")):
        answer = api.call("POST", "/v1/datasets", body)
        assert answer.status == 400, body
        assert answer.body["error"]["details"][0]["field"] == field
    broken = api.call("POST", "/v1/datasets", raw_body="{not json", content_type="application/json")
    assert broken.status == 400
    assert "not valid JSON" in broken.body["error"]["message"]


def test_idempotency_key_returns_the_first_answer_and_refuses_another_body(api: Api) -> None:
    headers = {"Idempotency-Key": "4f1c7d2e-0000-4000-8000-000000000001"}
    first = api.upload_csv("tickets", headers=headers)
    again = api.upload_csv("tickets", headers=headers)
    other = api.upload_csv("tickets", BAD_CSV, headers=headers)

    assert first.status == again.status == 201
    assert again.body == first.body
    assert other.status == 409
    assert other.error_code == "idempotency_conflict"
    assert len(api.call("GET", "/v1/datasets").body["items"]) == 1

    json_key = {"Idempotency-Key": "4f1c7d2e-0000-4000-8000-000000000002"}
    one = api.call("POST", "/v1/datasets", {"name": "uploaded"}, headers=json_key)
    two = api.call("POST", "/v1/datasets", {"name": "uploaded"}, headers=json_key)
    assert one.status == two.status == 201
    assert one.body == two.body
    assert len(api.call("GET", "/v1/datasets").body["items"]) == 2
    # the same key in another workspace is another request
    assert api.upload_csv("tickets", headers=headers, workspace=OTHER_WS).body["id"] != first.body["id"]


def test_lists_are_paged_oldest_first(api: Api) -> None:
    ids = [api.dataset(f"set-{i}") for i in range(3)]

    first = api.call("GET", "/v1/datasets?limit=2").body
    second = api.call("GET", f"/v1/datasets?limit=2&next_token={first['next_token']}").body

    assert [d["id"] for d in first["items"]] == ids[:2]
    assert [d["id"] for d in second["items"]] == ids[2:]
    assert second["next_token"] is None
    assert api.call("GET", "/v1/datasets?limit=0").status == 400
    assert api.call("GET", "/v1/datasets?next_token=garbage").status == 400


def test_delete_removes_the_record_and_its_file(api: Api) -> None:
    dataset_id = api.dataset()

    deleted = api.call("DELETE", f"/v1/datasets/{dataset_id}")

    assert deleted.status == 204
    assert deleted.text == ""
    assert api.call("GET", f"/v1/datasets/{dataset_id}").status == 404
    assert _objects(api) == []
    assert api.call("DELETE", f"/v1/datasets/{dataset_id}").status == 404
    # the name is free again
    assert api.upload_csv("support-tickets").status == 201


def test_a_dataset_a_model_uses_cannot_be_deleted(api: Api) -> None:
    dataset_id = api.dataset()
    api.repo.models.create(factories.model(WS, "support-bot-v1", dataset_id=dataset_id))

    answer = api.call("DELETE", f"/v1/datasets/{dataset_id}")

    assert answer.status == 409
    assert answer.error_code == "in_use"
    assert "support-bot-v1" in answer.body["error"]["message"]
    assert len(_objects(api)) == 1


def test_another_workspace_sees_none_of_it(api: Api) -> None:
    dataset_id = api.dataset()

    answers: list[Any] = [
        api.call("GET", f"/v1/datasets/{dataset_id}", workspace=OTHER_WS),
        api.call("DELETE", f"/v1/datasets/{dataset_id}", workspace=OTHER_WS),
    ]

    assert [a.status for a in answers] == [404, 404]
    assert {a.error_code for a in answers} == {"not_found"}
    assert api.call("GET", "/v1/datasets", workspace=OTHER_WS).body["items"] == []
    assert api.call("GET", f"/v1/datasets/{dataset_id}").status == 200


def test_unknown_and_malformed_ids_are_404(api: Api) -> None:
    assert api.call("GET", "/v1/datasets/ds_00000000000000000000000000").status == 404
    assert api.call("GET", "/v1/datasets/not-an-id").status == 404
    assert api.call("DELETE", "/v1/datasets/not-an-id").status == 404


def test_without_a_token_every_dataset_route_is_401(api: Api) -> None:
    for method, path in (
        ("POST", "/v1/datasets?name=x"),
        ("GET", "/v1/datasets"),
        ("GET", "/v1/datasets/ds_00000000000000000000000000"),
        ("DELETE", "/v1/datasets/ds_00000000000000000000000000"),
    ):
        answer = call(api_event(method, path, raw_body=base64.b64encode(b"x").decode(), claims=None))
        assert answer.status == 401, (method, path)
        assert answer.error_code == "unauthorized"
