"""`POST /v1/datasets` (CSV in the body, or JSON for a presigned upload), `GET /v1/datasets`,
`GET /v1/datasets/{id}`, `DELETE /v1/datasets/{id}`.

`POST /v1/datasets` takes two bodies, told apart by `Content-Type`: `text/csv` (the file itself, up to
5 MiB, `?name=` names it; validated before the answer) or `application/json` (`{"name"}`; the answer
carries a presigned PUT for a file of any size). The route reads the body itself, so its OpenAPI
request body is written out in `OPENAPI_REQUEST_BODIES` (app.py adds it to the document).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import TypeAdapter, ValidationError

from tunelab.application import datasets
from tunelab.composition.wiring import Services
from tunelab.domain.errors import NotFound, ValidationFailed
from tunelab.domain.identity import Identity
from tunelab.domain.listing import DatasetQuery, SortField, parse_dataset_statuses, parse_time
from tunelab.entrypoints.api.contracts import (
    DATASET_ID_PATTERN,
    CreateDatasetIn,
    CreateDatasetOut,
    DatasetName,
    DatasetOut,
    Page,
    UploadOut,
)
from tunelab.entrypoints.api.deps import current_identity, services
from tunelab.entrypoints.api.errors import validation_failed
from tunelab.entrypoints.api.idempotency import idempotency_key, idempotent
from tunelab.entrypoints.api.routes.common import (
    DEFAULT_LIMIT,
    CreatedAfter,
    CreatedBefore,
    Limit,
    NamePrefix,
    NextToken,
    Order,
    responses,
)
from tunelab.entrypoints.api.views import dataset_out

router = APIGatewayRouter()  # type: ignore[no-untyped-call]

ROUTE = "POST /v1/datasets"
CSV_TYPES = ("text/csv", "application/csv")
_NAME = TypeAdapter(DatasetName)

# The request body of `POST /v1/datasets`, as OpenAPI 3.1 (the route reads its body itself; app.py
# adds it to the document).
OPENAPI_REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/datasets"): {
        "required": True,
        "description": 'The CSV itself (`text/csv`, up to 5 MiB, with `?name=`), or JSON `{"name": ...}` '
        "for a presigned upload of a file of any size.",
        "content": {
            "text/csv": {
                "schema": {"type": "string", "description": "A prompt,completion header, then rows."}
            },
            "application/json": {"schema": CreateDatasetIn.model_json_schema()},
        },
    }
}
CREATED = responses(
    201, "Created: a `Dataset` (CSV body) or `{dataset, upload}` (JSON body)", conflict=True, payload=True
)


def _dataset_id(dataset_id: str) -> str:
    # A malformed id names no dataset: 404, like an unknown one.
    if not re.fullmatch(DATASET_ID_PATTERN, dataset_id):
        raise NotFound(f"There is no dataset {dataset_id} in this workspace.")
    return dataset_id


def _content_type() -> str:
    headers = router.current_event.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return value.split(";", 1)[0].strip().lower()


def _raw_body() -> bytes:
    event = router.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed("The body is not valid base64.") from None
    return body.encode("utf-8")


@router.post(
    "/v1/datasets",
    summary="Create a dataset: upload its CSV in the body, or get a presigned upload URL",
    description="With `Content-Type: text/csv` and `?name=`, the body is the CSV (up to 5 MiB), validated "
    'before the answer (201 `Dataset`, status `ready` or `invalid`). With JSON `{"name": ...}`, the answer '
    "(201 `{dataset, upload}`) carries a presigned PUT; the upload is validated when it lands. "
    "`Idempotency-Key` makes a retry return the first answer.",
    tags=["datasets"],
    responses=CREATED,
    operation_id="createDataset",
)
def create_dataset(
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    name: Annotated[
        str | None, Query(description="The dataset's name, with a `text/csv` body (JSON bodies carry it).")
    ] = None,
) -> Response[DatasetOut | CreateDatasetOut]:
    key = idempotency_key(router.current_event.headers)
    kind = _content_type()
    if kind in CSV_TYPES:
        if name is None:
            raise ValidationFailed.of("name", "Name the dataset: POST /v1/datasets?name=<name> with the CSV.")
        checked = _check_name(name, "name")
        data = _raw_body()
        fingerprint = {"name": checked, "sha256": hashlib.sha256(data).hexdigest()}
        out = idempotent(
            identity,
            ROUTE,
            key,
            fingerprint,
            lambda: dataset_out(datasets.create_from_csv(ctx, identity, checked, data)).model_dump(
                mode="json"
            ),
            context=router.lambda_context,
        )
    elif kind in ("", content_types.APPLICATION_JSON):
        request = _json_request()
        if name is not None and name != request.name:
            raise ValidationFailed.of("name", "Give the name once: in the JSON body.")

        def upload() -> dict[str, Any]:
            dataset, link = datasets.create_upload(ctx, identity, request.name)
            out = UploadOut(url=link.url, headers=link.headers, expires_at=link.expires_at)
            return CreateDatasetOut(dataset=dataset_out(dataset), upload=out).model_dump(mode="json")

        out = idempotent(
            identity, ROUTE, key, request.model_dump(mode="json"), upload, context=router.lambda_context
        )
    else:
        raise ValidationFailed.of(
            "Content-Type",
            f"POST /v1/datasets takes 'text/csv' (the file) or 'application/json' "
            f"({{\"name\"}}), not '{kind}'.",
        )
    created = DatasetOut.model_validate(out) if kind in CSV_TYPES else CreateDatasetOut.model_validate(out)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)


def _check_name(name: str, field: str) -> str:
    try:
        return _NAME.validate_python(name)
    except ValidationError as error:
        raise ValidationFailed.of(field, f"Invalid dataset name: {error.errors()[0]['msg']}.") from None


def _json_request() -> CreateDatasetIn:
    try:
        body = router.current_event.json_body
    except ValueError as error:
        raise ValidationFailed(f"The body is not valid JSON ({error}).") from None
    if body is None:
        raise ValidationFailed.of(
            None,
            'Send JSON {"name": ...} for an upload URL, or the CSV with Content-Type: text/csv and ?name=.',
        )
    try:
        return CreateDatasetIn.model_validate(body)
    except ValidationError as error:
        raise validation_failed(list(error.errors()), body) from None


@router.get(
    "/v1/datasets",
    summary="The workspace's datasets, filtered and sorted (oldest first unless asked)",
    description="Every filter given must hold. Pages are full until the last, whatever the filters.",
    tags=["datasets"],
    responses=responses(),
    operation_id="listDatasets",
)
def list_datasets(  # noqa: PLR0917  # one parameter per filter of the contract
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
    status: Annotated[
        list[str] | None,
        Query(description="Only datasets in these statuses: `ready,invalid`, or the parameter repeated."),
    ] = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    name_prefix: NamePrefix = None,
    sort: Annotated[SortField, Query(description="`created_at` (the default) or `name`.")] = "created_at",
    order: Order = "asc",
    limit: Limit = DEFAULT_LIMIT,
    next_token: NextToken = None,
) -> Page[DatasetOut]:
    query = DatasetQuery(
        statuses=parse_dataset_statuses(status),
        created_after=parse_time(created_after, "created_after"),
        created_before=parse_time(created_before, "created_before"),
        name_prefix=name_prefix,
        sort=sort,
        order=order,
    )
    page = datasets.list_datasets(ctx, identity, limit=limit, next_token=next_token, query=query)
    return Page[DatasetOut](items=[dataset_out(d) for d in page.items], next_token=page.next_token)


@router.get(
    "/v1/datasets/<dataset_id>",
    summary="One dataset, with its validation report",
    tags=["datasets"],
    responses=responses(),
    operation_id="getDataset",
)
def get_dataset(
    dataset_id: Annotated[str, Path(description="The dataset's id (`ds_...`).")],
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> DatasetOut:
    return dataset_out(datasets.get(ctx, identity, _dataset_id(dataset_id)))


@router.delete(
    "/v1/datasets/<dataset_id>",
    summary="Delete a dataset and its file (refused while a fine-tuned model uses it)",
    tags=["datasets"],
    responses=responses(204, "Deleted", conflict=True),
    operation_id="deleteDataset",
)
def delete_dataset(
    dataset_id: Annotated[str, Path(description="The dataset's id (`ds_...`).")],
    identity: Annotated[Identity, Depends(current_identity)],
    ctx: Annotated[Services, Depends(services)],
) -> Response[None]:
    datasets.delete(ctx, identity, _dataset_id(dataset_id))
    return Response(status_code=204)
